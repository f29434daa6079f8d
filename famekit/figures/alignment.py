"""Alignment views: which head organises items by which metadata field, against the nulls.

Input: :func:`famekit.analysis.alignment_matrix` (long format, one row per embedding x field:
``embedding`` ("head 0".., "full"), ``head`` (-1 = full), ``field``, ``agreement``,
``perm_mean``, ``perm_std``, ``random_init``, ``lift``, ``aligned``).

* :func:`alignment_heatmap` - embeddings x fields, coloured by agreement (0-1) or by lift over
  the permuted-label level (diverging around 1x); aligned cells carry a star.
* :func:`alignment_nulls_chart` - per field, the agreement of every head as a bar, the
  permuted-label band (mean +- 2 std) as a grey box over it and the random-init level as a
  black tick; aligned heads in their colour, the others pale.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from famekit.figures.checks import choice, require_frame, select
from famekit.figures.style import (
    DIVERGING_SCALE,
    SEQUENTIAL_SCALE,
    apply_style,
    grid_shape,
    head_color,
    legend_below,
    log2_lift_colorbar,
)

__all__ = ["alignment_heatmap", "alignment_nulls_chart"]

PRODUCER = "famekit.analysis.alignment_matrix(model, dataset)"
AGREEMENT_AXIS = "kNN label agreement (0-1)"
FULL_COLOR = "#555555"


def _embeddings(alignment: pd.DataFrame, include_full: bool) -> list[str]:
    """Embedding names in display order: heads by number, then "full"."""
    first = alignment.drop_duplicates("embedding").sort_values(
        "head", key=lambda h: h.where(h >= 0, 10**9), kind="stable")
    names = first["embedding"].tolist()
    return [n for n in names if include_full or n != "full"]


def _fields(alignment: pd.DataFrame, fields) -> list[str]:
    available = list(dict.fromkeys(alignment["field"].tolist()))
    return select(fields, available, "fields", "field")


def alignment_heatmap(alignment: pd.DataFrame, *, value: str = "agreement", fields=None,
                      include_full: bool = True, annotate: bool = True,
                      title: str | None = None, height: int | None = None) -> go.Figure:
    """Embeddings (rows) x metadata fields (columns): agreement, chance-corrected agreement
    (``value="chance_corrected"``: 0 = chance, 1 = perfect; comparable across fields of
    different cardinality) or lift over the permuted null (``value="lift"``); a star marks
    heads that beat both nulls."""
    choice(value, "value", ("agreement", "chance_corrected", "lift"))
    require_frame(alignment, "alignment", ["embedding", "head", "field", value, "aligned"],
                  PRODUCER)
    names = _embeddings(alignment, include_full)
    chosen = _fields(alignment, fields)
    table = alignment.pivot_table(index="embedding", columns="field", values=value)
    z = table.loc[names, chosen].to_numpy(dtype=float)  # [E, F]
    aligned = alignment.pivot_table(index="embedding", columns="field", values="aligned",
                                    aggfunc="max").loc[names, chosen].to_numpy(dtype=bool)
    text = np.vectorize(lambda v, a: ("n/a" if not np.isfinite(v) else
                                      (f"{v:.2f}x" if value == "lift" else f"{v:.3f}"))
                        + (" \u2605" if a else ""), otypes=[object])(z, aligned)
    if value == "agreement":
        trace = go.Heatmap(z=z, zmin=0.0, zmax=1.0, colorscale=SEQUENTIAL_SCALE,
                           colorbar={"title": {"text": AGREEMENT_AXIS, "side": "right"}})
        hover = "%{y}, %{x}<br>agreement %{z:.3f}<extra></extra>"
    elif value == "chance_corrected":  # below chance (< 0) is possible: a diverging scale
        trace = go.Heatmap(z=z, zmid=0.0, zmin=-1.0, zmax=1.0, colorscale=DIVERGING_SCALE,
                           colorbar={"title": {"text": "chance-corrected agreement",
                                               "side": "right"}})
        hover = "%{y}, %{x}<br>chance-corrected agreement %{z:.3f}<extra></extra>"
    else:
        logs = np.log2(np.clip(z, 2.0 ** -4, None))
        span = float(max(1.0, np.nanmax(np.abs(logs)))) if np.isfinite(logs).any() else 1.0
        trace = go.Heatmap(z=logs, customdata=z, zmid=0.0, zmin=-span, zmax=span,
                           colorscale=DIVERGING_SCALE,
                           colorbar=log2_lift_colorbar(span, "lift over permuted labels (x)"))
        hover = "%{y}, %{x}<br>lift %{customdata:.3f}x over permuted labels<extra></extra>"
    trace.update(x=chosen, y=names, hovertemplate=hover,
                 text=text if annotate else None,
                 texttemplate="%{text}" if annotate else None)
    fig = go.Figure(trace)
    fig.update_yaxes(autorange="reversed", title_text="embedding")
    fig.update_xaxes(side="top")
    return apply_style(fig, title or "Facet alignment: kNN label agreement of item embeddings",
                       "\u2605 = aligned: beats the permuted-label null (Holm-adjusted p < "
                       "alpha) and every random initialisation",
                       height=height or max(320, 170 + 42 * len(names)), top_extra=30)


def alignment_nulls_chart(alignment: pd.DataFrame, *, fields=None, include_full: bool = True,
                          band_std: float = 2.0, title: str | None = None,
                          height: int | None = None) -> go.Figure:
    """Per field: agreement of each head (bars) with the permuted-label band (mean +-
    ``band_std`` std, grey) and the random-init level (black tick); aligned heads coloured."""
    require_frame(alignment, "alignment",
                  ["embedding", "head", "field", "agreement", "perm_mean", "perm_std",
                   "random_init", "aligned"], PRODUCER)
    names = _embeddings(alignment, include_full)
    chosen = _fields(alignment, fields)
    rows, cols = grid_shape(len(chosen), max_cols=3)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=chosen, shared_yaxes=True,
                        horizontal_spacing=0.05, vertical_spacing=0.18)
    indexed = alignment.set_index(["embedding", "field"])
    for i, field in enumerate(chosen):
        r, c = i // cols + 1, i % cols + 1
        part = indexed.xs(field, level="field").loc[names]
        heads = part["head"].astype(int).to_numpy()
        aligned = part["aligned"].astype(bool).to_numpy()
        colours = [(head_color(h) if h >= 0 else FULL_COLOR) if a else "#FFFFFF"
                   for h, a in zip(heads, aligned)]
        first = i == 0
        fig.add_trace(go.Bar(
            x=names, y=part["agreement"], marker={"color": colours, "line": {
                "color": [head_color(h) if h >= 0 else FULL_COLOR for h in heads], "width": 1.5}},
            name="agreement (coloured = aligned)", legendgroup="agreement", showlegend=first,
            customdata=part[["perm_mean", "perm_std", "random_init"]].assign(
                aligned=np.where(aligned, "yes", "no")).to_numpy(dtype=object),
            hovertemplate="%{x}: agreement %{y:.3f}<br>permuted labels %{customdata[0]:.3f} "
                          "\u00b1 %{customdata[1]:.3f}<br>random init %{customdata[2]:.3f}"
                          "<br>aligned: %{customdata[3]}<extra></extra>",
        ), row=r, col=c)
        low = part["perm_mean"] - band_std * part["perm_std"]
        fig.add_trace(go.Bar(
            x=names, y=2 * band_std * part["perm_std"], base=low, width=0.8,
            marker={"color": "rgba(90,90,90,0.35)", "line": {"width": 0}},
            name=f"permuted labels: mean \u00b1 {band_std:g} std", legendgroup="perm",
            showlegend=first, hoverinfo="skip",
        ), row=r, col=c)
        fig.add_trace(go.Scatter(
            x=names, y=part["random_init"], mode="markers",
            marker={"symbol": "line-ew", "size": 26, "line": {"width": 3, "color": "#000000"}},
            name="random initialisation", legendgroup="random", showlegend=first,
            hovertemplate="%{x}: random init %{y:.3f}<extra></extra>",
        ), row=r, col=c)
    fig.update_yaxes(title_text=AGREEMENT_AXIS, col=1, rangemode="tozero")
    fig.update_layout(barmode="overlay")
    legend_below(fig, rows=2)
    return apply_style(fig, title or "Alignment against the null baselines",
                       "a head is aligned when its bar clears the grey band and the black tick",
                       height=height or 190 + 320 * rows, top_extra=28)
