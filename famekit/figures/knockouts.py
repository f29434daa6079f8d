"""Knockout views: what accuracy loses when a head is removed or a router is forced.

Input: :func:`famekit.analysis.head_knockout_table` or
:func:`famekit.analysis.expert_forcing_table` (one row per intervention x group, with
``delta HR@10``, ``relative HR@10``, ``delta NDCG@10``, ``relative NDCG@10`` against the
unmodified model, ``intervention == "none"``, in the same group).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from famekit.errors import ParameterError
from famekit.figures.checks import one_of, positive_int, require_frame
from famekit.figures.style import apply_style, legend_below

__all__ = ["knockout_delta_bar", "knockout_heatmap"]

PRODUCER = ("famekit.analysis.head_knockout_table(model, dataset) or "
            "famekit.analysis.expert_forcing_table(model, dataset)")
DELTA_METRICS = ("HR@10", "NDCG@10")
METRIC_COLORS = {"HR@10": "#0072B2", "NDCG@10": "#E69F00"}
# Signed changes: red = a loss, blue = a gain, white = no change.
CHANGE_SCALE = "RdBu"


def _check_metrics(table: pd.DataFrame, metrics, relative: bool) -> list[str]:
    prefix = "relative" if relative else "delta"
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    for metric in metrics:
        if f"{prefix} {metric}" not in table.columns:
            have = sorted(c.split(" ", 1)[1] for c in table.columns
                          if isinstance(c, str) and c.startswith(f"{prefix} "))
            raise ParameterError(
                f"metric {metric!r} has no '{prefix} {metric}' column in the knockout table. "
                f"Fix: use one of {have or list(DELTA_METRICS)}"
            )
    return metrics


def _interventions(table: pd.DataFrame) -> list[str]:
    return [i for i in dict.fromkeys(table["intervention"].tolist()) if i != "none"]


def knockout_delta_bar(table: pd.DataFrame, *, metrics=DELTA_METRICS, group: str = "all",
                       relative: bool = False, title: str | None = None,
                       height: int = 420) -> go.Figure:
    """Change of HR@10 / NDCG@10 under each intervention (bars grouped by metric), for one
    target group (default: all users). ``relative=True`` shows the change in percent."""
    require_frame(table, "table", ["intervention", "group"], PRODUCER)
    metrics = _check_metrics(table, metrics, relative)
    group = one_of(group, list(dict.fromkeys(table["group"].tolist())), "group", "group")
    part = table[table["group"] == group].set_index("intervention")
    interventions = [i for i in _interventions(table) if i in part.index]
    if not interventions:
        raise ParameterError(f"table has no intervention besides 'none' in group {group!r}. "
                             f"Fix: pass the full result of {PRODUCER}")
    fig = go.Figure()
    for metric in metrics:
        column = f"{'relative' if relative else 'delta'} {metric}"
        values = part.loc[interventions, column].to_numpy(dtype=float)
        values = values * 100 if relative else values
        base = part.loc["none", metric] if "none" in part.index and metric in part.columns \
            else np.nan
        error = None
        if {f"delta {metric} low", f"delta {metric} high"} <= set(part.columns):
            # the paired bootstrap interval of the delta, scaled like the bar
            scale = 100 / base if relative else 1.0
            low = part.loc[interventions, f"delta {metric} low"].to_numpy(dtype=float) * scale
            high = part.loc[interventions, f"delta {metric} high"].to_numpy(dtype=float) * scale
            error = {"type": "data", "symmetric": False, "array": high - values,
                     "arrayminus": values - low, "color": "#333333", "thickness": 1.2}
        fig.add_trace(go.Bar(
            x=interventions, y=values, name=f"{metric} (unmodified {base:.4f})",
            marker_color=METRIC_COLORS.get(metric), error_y=error,
            hovertemplate="%{x}<br>" + metric + (" %{y:+.1f} %" if relative else " %{y:+.4f}")
                          + "<extra></extra>",
        ))
    fig.add_hline(y=0, line_color="#333333", line_width=1)
    unit = "relative change (%)" if relative else "absolute change (0-1 scale)"
    fig.update_yaxes(title_text=unit)  # short: a long vertical title runs into the title
    fig.update_xaxes(title_text="intervention")
    fig.update_layout(barmode="group")
    legend_below(fig)
    users = part.loc["none", "users"] if "users" in part.columns and "none" in part.index \
        else None
    subtitle = (f"vs the unmodified model; target group {group!r}"
                + (f", {int(users)} users" if users is not None else "")
                + ("; whiskers: 95 % paired bootstrap interval"
                   if any(f"delta {m} low" in part.columns for m in metrics) else ""))
    return apply_style(fig, title or "Accuracy change under knockouts", subtitle, height=height)


def _cell_text(relative: bool):
    """A cell's label: one decimal where a whole percent would round to "-0%" or hide a
    change; never a signed zero."""
    def text(value: float) -> str:
        if not np.isfinite(value):
            return ""
        if relative:
            shown = f"{value:+.0f}%" if abs(value) >= 9.5 else f"{value:+.1f}%"
        else:
            shown = f"{value:+.3f}"
        return shown.replace("+0.0%", "0%").replace("-0.0%", "0%").replace(
            "+0.000", "0").replace("-0.000", "0")
    return text


def knockout_heatmap(table: pd.DataFrame, *, metric: str = "NDCG@10", relative: bool = True,
                     top_k: int | None = 12, annotate: bool = True, title: str | None = None,
                     height: int | None = None) -> go.Figure:
    """Interventions (rows) x target groups (columns, "all" first, then the ``top_k`` largest
    groups): change of ``metric``, diverging around 0 (red = loss). Cells whose unmodified
    metric is 0 have no relative change and stay blank."""
    require_frame(table, "table", ["intervention", "group"], PRODUCER)
    (metric,) = _check_metrics(table, [metric], relative)
    top_k = positive_int(top_k, "top_k")
    column = f"{'relative' if relative else 'delta'} {metric}"
    interventions = _interventions(table)
    if not interventions:
        raise ParameterError(f"table has no intervention besides 'none'. "
                             f"Fix: pass the full result of {PRODUCER}")
    groups = [g for g in dict.fromkeys(table["group"].tolist()) if g != "all"]
    if "users" in table.columns:
        sizes = table[table["intervention"] == "none"].set_index("group")["users"]
        groups.sort(key=lambda g: -float(sizes.get(g, 0)))
    groups = (["all"] if "all" in set(table["group"]) else []) + groups[:top_k]
    pivot = table.pivot_table(index="intervention", columns="group", values=column,
                              dropna=False)
    z = pivot.reindex(index=interventions, columns=groups).to_numpy(dtype=float)  # [I, G]
    z = z * 100 if relative else z
    finite = np.abs(z[np.isfinite(z)])
    span = float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
    text = np.vectorize(_cell_text(relative), otypes=[object])(z)
    labels = groups
    if "users" in table.columns:
        sizes = table[table["intervention"] == "none"].set_index("group")["users"]
        labels = [f"{g} ({int(sizes[g])})" if g in sizes.index else str(g) for g in groups]
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=interventions, zmid=0.0, zmin=-span, zmax=span,
        colorscale=CHANGE_SCALE,
        colorbar={"title": {"text": "relative change (%)" if relative else "absolute change",
                            "side": "right"}},
        text=text if annotate else None, texttemplate="%{text}" if annotate else None,
        hovertemplate="%{y}<br>group %{x}<br>" + metric
                      + (" %{z:+.1f} %" if relative else " %{z:+.4f}") + "<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", title_text="intervention")
    fig.update_xaxes(title_text="group of the target item (users)", tickangle=-30)
    what = "relative" if relative else "absolute"
    kind = ("Expert forcing" if all("->" in i for i in interventions)
            else "Knockouts")  # the title names what the rows are (expert_forcing_table: "head h -> expert e")
    return apply_style(fig, title or f"{kind}: {what} change of {metric} by target group",
                       "vs the unmodified model in the same group; blank = unmodified metric is 0",
                       height=height or max(360, 260 + 30 * len(interventions)))
