"""Figures of FAME+ (notebook 07): facets on heads, routing by driving facet, knockouts.

* :func:`facet_alignment_grid` — one chance-corrected alignment heatmap per model (FAME,
  FAME+, the oracle), the assigned (head, facet) cells outlined;
* :func:`routing_accuracy_bar` — per facet and overall, the share of users routed to their
  facet's head, per model, with the chance levels;
* :func:`facet_knockout_heatmap` — NDCG@10 change of each driving-facet group when one
  assigned head is removed; the own facet's cell outlined;
* :func:`name_heads` — relabel ``"head h"`` as ``"head h · genre"`` in any famekit figure.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from famekit.figures.checks import require_frame
from famekit.figures.style import (
    CHANCE_COLOR,
    DIVERGING_SCALE,
    SEQUENTIAL_SCALE,
    apply_style,
    legend_below,
)

__all__ = ["facet_alignment_grid", "facet_knockout_heatmap", "name_heads",
           "routing_accuracy_bar"]

_HEAD = re.compile(r"\bhead (\d+)\b(?! ·)")
MODEL_COLORS = ("#7F7F7F", "#0072B2", "#009E73", "#CC79A7")


def _relabel(text, labels: list[str]):
    if not isinstance(text, str):
        return text
    return _HEAD.sub(lambda m: labels[int(m.group(1))] if int(m.group(1)) < len(labels)
                     else m.group(0), text)


def name_heads(fig: go.Figure, labels) -> go.Figure:
    """``fig`` with every ``"head h"`` in its categories, trace names, hover templates, titles
    and annotations replaced by ``labels[h]`` (e.g. ``opened.head_labels``: ``"head 0 ·
    genre"``). Labels that are plain ``"head h"`` change nothing, so it is safe on any run."""
    labels = list(labels)
    for trace in fig.data:
        for attr in ("name", "hovertemplate", "legendgroup"):
            if getattr(trace, attr, None) is not None:
                setattr(trace, attr, _relabel(getattr(trace, attr), labels))
        for attr in ("x", "y", "text"):
            values = getattr(trace, attr, None)
            if values is not None and len(values) and all(isinstance(v, str) for v in values):
                setattr(trace, attr, [_relabel(v, labels) for v in values])
    for annotation in fig.layout.annotations or ():
        annotation.text = _relabel(annotation.text, labels)
    if fig.layout.title and fig.layout.title.text:
        fig.layout.title.text = _relabel(fig.layout.title.text, labels)
    fig.for_each_xaxis(lambda a: a.update(ticktext=[_relabel(t, labels) for t in a.ticktext])
                       if a.ticktext else None)
    fig.for_each_yaxis(lambda a: a.update(ticktext=[_relabel(t, labels) for t in a.ticktext])
                       if a.ticktext else None)
    return fig


def facet_alignment_grid(alignments: dict, facets, *, include_full: bool = True,
                         title: str | None = None, height: int | None = None) -> go.Figure:
    """Chance-corrected kNN agreement, embeddings (rows) x facets (columns), one panel per
    model; ``alignments``: label -> :func:`famekit.analysis.alignment_matrix` frame;
    ``facets``: the fields of heads 0..k-1 (their cells are outlined)."""
    facets = list(facets)
    names = None
    panels = []
    for label, frame in alignments.items():
        require_frame(frame, f"alignments[{label!r}]",
                      ["embedding", "head", "field", "chance_corrected"],
                      "famekit.analysis.alignment_matrix(model, dataset)")
        rows = frame.drop_duplicates("embedding").sort_values(
            "head", key=lambda h: h.where(h >= 0, 10**9), kind="stable")
        rows = rows if include_full else rows[rows["head"] >= 0]
        names = names or rows["embedding"].tolist()
        table = frame.pivot_table(index="embedding", columns="field", values="chance_corrected")
        panels.append((label, table.reindex(index=names, columns=facets).to_numpy(float)))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels],
                        horizontal_spacing=0.06, shared_yaxes=True)
    for i, (label, z) in enumerate(panels, start=1):
        fig.add_trace(go.Heatmap(
            z=z, x=facets, y=[n.replace(" · ", "<br>") for n in names], zmin=-0.1, zmax=1.0,
            colorscale=SEQUENTIAL_SCALE, showscale=i == len(panels),
            colorbar={"title": {"text": "chance-corrected agreement", "side": "right"}},
            text=np.vectorize(_two_decimals, otypes=[object])(z), texttemplate="%{text}",
            hovertemplate=f"{label}<br>%{{y}}, %{{x}}<br>chance-corrected %{{z:.3f}}"
                          "<extra></extra>"), row=1, col=i)
        for h, _ in enumerate(facets):  # the assigned cells: head h x facet h
            fig.add_shape(type="rect", x0=h - 0.5, x1=h + 0.5, y0=h - 0.5, y1=h + 0.5,
                          line={"color": "#000000", "width": 2.5}, row=1, col=i)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="facet")
    return apply_style(
        fig, title or "Does each facet sit on its head?",
        "chance-corrected kNN agreement (0 = chance, 1 = all neighbours share the value); "
        "outlined = the assigned head of each facet",
        height=height or max(340, 200 + 46 * len(names)), top_extra=20)


def _two_decimals(value: float) -> str:
    """0.00 for |v| < 0.005 (never "-0.00"), "n/a" for NaN."""
    if not np.isfinite(value):
        return "n/a"
    return f"{0.0 if abs(value) < 0.005 else value:.2f}"


def routing_accuracy_bar(tables: dict, *, title: str | None = None,
                         height: int = 420) -> go.Figure:
    """Share of users whose top-gated assigned head is their driving facet's head, per facet
    and overall ("all"), one bar group per model; ``tables``: label ->
    :func:`famekit.analysis.recovery.facet_routing_accuracy` frame. Chance as grey ticks."""
    fig = go.Figure()
    chance = None
    for i, (label, table) in enumerate(tables.items()):
        require_frame(table, f"tables[{label!r}]", ["facet", "accuracy", "chance", "users"],
                      "famekit.analysis.recovery.facet_routing_accuracy(acts, dataset, facets)")
        fig.add_trace(go.Bar(
            x=table["facet"], y=table["accuracy"], name=label,
            marker_color=MODEL_COLORS[i % len(MODEL_COLORS)],
            text=[f"{v:.2f}" for v in table["accuracy"]], textposition="outside",
            customdata=table["users"],
            hovertemplate=f"{label}<br>%{{x}}: %{{y:.3f}} of %{{customdata}} users"
                          "<extra></extra>"))
        chance = table
    if chance is not None:
        fig.add_trace(go.Scatter(
            x=chance["facet"], y=chance["chance"], mode="markers", name="chance",
            marker={"symbol": "line-ew-open", "size": 40, "color": CHANCE_COLOR,
                    "line": {"width": 3}},
            hovertemplate="chance %{y:.3f}<extra></extra>"))
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.12], title_text="users routed to their facet's head")
    fig.update_xaxes(title_text="driving facet (all = every user)")
    legend_below(fig)
    return apply_style(fig, title or "Does the gate send each user to their facet's head?",
                       "top-gated head among the assigned heads (gates averaged over the "
                       "user's positions); chance per facet = 1/k, overall = majority rate",
                       height=height)


def facet_knockout_heatmap(knockouts: pd.DataFrame, *, title: str | None = None,
                           height: int | None = None) -> go.Figure:
    """Relative NDCG@10 change (rows: removed head, columns: users' driving facet);
    ``knockouts``: :func:`famekit.analysis.facet_heads.facet_knockouts`. Own facet outlined."""
    require_frame(knockouts, "knockouts", ["head", "head_label", "facet", "relative", "own"],
                  "famekit.analysis.facet_heads.facet_knockouts(model, dataset, facets)")
    rows = knockouts.drop_duplicates("head").sort_values("head")["head_label"].tolist()
    cols = list(dict.fromkeys(knockouts["facet"]))
    table = knockouts.pivot_table(index="head_label", columns="facet", values="relative")
    z = table.reindex(index=rows, columns=cols).to_numpy(float) * 100  # [removed, facet] %
    span = float(max(5.0, np.nanmax(np.abs(z)))) if np.isfinite(z).any() else 5.0
    fig = go.Figure(go.Heatmap(
        z=z, x=cols, y=[f"remove {r}" for r in rows], zmid=0.0, zmin=-span, zmax=span,
        colorscale=DIVERGING_SCALE, colorbar={"title": {"text": "NDCG@10 change (%)",
                                                        "side": "right"}},
        text=np.vectorize(lambda v: "n/a" if not np.isfinite(v) else f"{v:+.1f}%",
                          otypes=[object])(z),
        texttemplate="%{text}",
        hovertemplate="%{y}<br>users driven by %{x}: NDCG@10 %{z:+.1f}%<extra></extra>"))
    for _, row in knockouts[knockouts["own"]].iterrows():
        r, c = rows.index(row["head_label"]), cols.index(row["facet"])
        fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                      line={"color": "#000000", "width": 2.5})
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="top", title_text="users driven by")
    return apply_style(fig, title or "Which users lose when a facet's head is removed?",
                       "relative change of NDCG@10 per group of users; outlined = the head "
                       "assigned to that facet", height=height or max(300, 170 + 50 * len(rows)),
                       top_extra=40)
