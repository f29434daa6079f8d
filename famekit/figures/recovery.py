"""Ground-truth recovery view (synthetic facet world): each measure next to its chance level.

Inputs, from :mod:`famekit.analysis.recovery` (any subset, at least one):

* ``facets``: :func:`~famekit.analysis.facet_recovery` - per planted facet, the best head's kNN
  agreement vs the permuted-label level;
* ``driving``: :func:`~famekit.analysis.driving_facet_accuracy` - accuracy of "driving facet =
  facet of the top-gated head" vs the majority-class rate;
* ``nmi``: :func:`~famekit.analysis.interest_expert_nmi` - NMI between the active interest and
  the routed expert vs the NMI after shuffling experts.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from famekit.errors import ParameterError
from famekit.figures.checks import require_frame
from famekit.figures.style import CHANCE_COLOR, MEASURED_COLOR, apply_style, legend_below

__all__ = ["recovery_bar"]


def _pair(fig, row_col, x, measured, chance, first: bool, fmt: str) -> None:
    r, c = row_col
    fig.add_trace(go.Bar(x=x, y=measured, name="measured", legendgroup="measured",
                         showlegend=first, marker_color=MEASURED_COLOR,
                         hovertemplate="%{x}<br>measured %{y:" + fmt + "}<extra></extra>"),
                  row=r, col=c)
    fig.add_trace(go.Bar(x=x, y=chance, name="chance level", legendgroup="chance",
                         showlegend=first, marker_color=CHANCE_COLOR,
                         hovertemplate="%{x}<br>chance %{y:" + fmt + "}<extra></extra>"),
                  row=r, col=c)


def recovery_bar(facets=None, driving: dict | None = None, nmi=None, *,
                 title: str | None = None, height: int = 420) -> go.Figure:
    """Measured vs chance for the three ground-truth measures (one panel each given)."""
    panels = []
    if facets is not None:
        require_frame(facets, "facets", ["facet", "best_head", "agreement", "chance"],
                      "famekit.analysis.facet_recovery(alignment, dataset)")
        panels.append("facets")
    if driving is not None:
        if not isinstance(driving, dict) or not {"accuracy", "chance"} <= set(driving):
            raise ParameterError(
                "driving must be the dict of famekit.analysis.driving_facet_accuracy (with "
                "'accuracy' and 'chance'). Fix: pass driving_facet_accuracy(acts, dataset, "
                "head_facet)"
            )
        panels.append("driving")
    if nmi is not None:
        require_frame(nmi, "nmi", ["facet", "head", "nmi", "chance"],
                      "famekit.analysis.interest_expert_nmi(acts, dataset, head_facet)",
                      allow_empty=True)
        panels.append("nmi")
    if not panels:
        raise ParameterError("recovery_bar needs at least one of facets=, driving=, nmi=. "
                             "Fix: pass the results of famekit.analysis.facet_recovery, "
                             "driving_facet_accuracy or interest_expert_nmi")
    titles = {"facets": "facet \u2192 best head",
              "driving": "driving facet \u2190 top gate",
              "nmi": "interest \u2192 routed expert"}
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[titles[p] for p in panels],
                        horizontal_spacing=0.12)
    for i, panel in enumerate(panels):
        where, first = (1, i + 1), i == 0
        if panel == "facets":
            x = [f"{f} (head {int(h)})" for f, h in zip(facets["facet"], facets["best_head"])]
            _pair(fig, where, x, facets["agreement"], facets["chance"], first, ".3f")
            fig.update_yaxes(title_text="kNN label agreement (0-1)", row=1, col=i + 1)
        elif panel == "driving":
            users = f" ({driving['users']})" if "users" in driving else ""
            _pair(fig, where, [f"users{users}"], [driving["accuracy"]], [driving["chance"]],
                  first, ".3f")
            fig.update_yaxes(title_text="accuracy (0-1)", range=[0, 1], row=1, col=i + 1)
        else:
            x = [f"{f} (head {int(h)})" for f, h in zip(nmi["facet"], nmi["head"])]
            _pair(fig, where, x, nmi["nmi"], nmi["chance"], first, ".3f")
            fig.update_yaxes(title_text="NMI (0-1)", range=[0, 1],
                             row=1, col=i + 1)
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(barmode="group")
    legend_below(fig)
    return apply_style(fig, title or "Recovery of the planted ground truth",
                       "measurements, not targets: chance = the same measure on shuffled answers",
                       height=height, top_extra=28)
