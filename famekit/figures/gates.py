"""Gate views: how much each head (facet) weighs in the fused recommendation.

Inputs come from :mod:`famekit.analysis.gates`: :func:`~famekit.analysis.gate_summary`,
:func:`~famekit.analysis.user_gates`, :func:`~famekit.analysis.gates_by_group` and
:func:`~famekit.analysis.gates_along_sequence`. Gate weights are probabilities over heads, so a
uniform gate is 1/H; every view marks that level.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from famekit.errors import ParameterError
from famekit.figures.checks import (
    choice,
    head_columns,
    item_hover,
    item_label,
    positive_int,
    require_frame,
    select,
)
from famekit.figures.style import (
    DIVERGING_SCALE,
    SEQUENTIAL_SCALE,
    apply_style,
    head_color,
    reference_line,
)

__all__ = [
    "gate_distribution",
    "gate_summary_bar",
    "gates_along_sequence_chart",
    "gates_at_position_bar",
    "gates_by_group_heatmap",
]

GATE_AXIS = "gate weight (0-1)"


def gate_summary_bar(summary: pd.DataFrame, *, heads=None, title: str | None = None,
                     height: int = 380) -> go.Figure:
    """Two panels per head: mean last-position gate weight (error bar = std over users) and
    the share of users whose top head it is; dashed lines mark the uniform level 1/H.

    ``summary``: :func:`famekit.analysis.gate_summary`.
    """
    producer = "famekit.analysis.gate_summary(acts)"
    require_frame(summary, "summary", ["head", "mean_gate", "std_gate", "top_head_share"],
                  producer)
    n_heads = int(summary["head"].max()) + 1
    chosen = select(heads, summary["head"].astype(int).tolist(), "heads", "head")
    rows = summary.set_index(summary["head"].astype(int)).loc[chosen]
    names = [f"head {h}" for h in chosen]
    colors = [head_color(h) for h in chosen]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        "mean gate weight (last position)", "users whose top head it is"))
    fig.add_trace(go.Bar(
        x=names, y=rows["mean_gate"], marker_color=colors, name="mean gate",
        error_y={"type": "data", "array": rows["std_gate"], "visible": True, "thickness": 1.2},
        hovertemplate="%{x}<br>mean gate %{y:.3f} \u00b1 %{error_y.array:.3f} (std)"
                      "<extra></extra>",
    ), row=1, col=1)
    fig.add_trace(go.Bar(
        x=names, y=rows["top_head_share"], marker_color=colors, name="top-head share",
        hovertemplate="%{x}<br>top head of %{y:.1%} of users<extra></extra>",
    ), row=1, col=2)
    for col in (1, 2):
        fig.add_hline(y=1.0 / n_heads, line_dash="dash", line_color="#555555", row=1, col=col,
                      annotation_text=f"uniform 1/H = {1.0 / n_heads:.2f}",
                      annotation_position="top right", annotation_font_size=11)
    fig.update_yaxes(title_text=GATE_AXIS, rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="share of users (0-1)", rangemode="tozero", row=1, col=2)
    fig.update_layout(showlegend=False)
    subtitle = None
    if "mean_entropy" in summary.attrs and "max_entropy" in summary.attrs:
        subtitle = (f"mean gate entropy {summary.attrs['mean_entropy']:.3f} nats "
                    f"(maximum log H = {summary.attrs['max_entropy']:.3f})")
    return apply_style(fig, title or "Gate weights per head", subtitle, height=height,
                       top_extra=28)


def gate_distribution(user_gates: pd.DataFrame, *, heads=None, kind: str = "box",
                      title: str | None = None, height: int = 420) -> go.Figure:
    """Distribution over users of each head's gate weight at the last position.

    ``user_gates``: :func:`famekit.analysis.user_gates`; ``kind``: ``"box"`` or ``"violin"``.
    """
    producer = "famekit.analysis.user_gates(acts)"
    require_frame(user_gates, "user_gates", [], producer)
    available = head_columns(user_gates, "user_gates", producer)
    chosen = select(heads, available, "heads", "head")
    choice(kind, "kind", ("box", "violin"))
    users = user_gates["user"].to_numpy() if "user" in user_gates.columns else None
    fig = go.Figure()
    for h in chosen:
        values = user_gates[f"head {h}"].to_numpy()
        common = {"y": values, "name": f"head {h}", "marker_color": head_color(h),
                      "line_color": head_color(h), "customdata": users,
                      "hovertemplate": f"head {h}<br>gate %{{y:.3f}}"
                                    + ("<br>user row %{customdata}" if users is not None else "")
                                    + "<extra></extra>"}
        if kind == "box":
            fig.add_trace(go.Box(boxpoints="outliers", boxmean=True, **common))
        else:
            fig.add_trace(go.Violin(box_visible=True, meanline_visible=True, points="outliers",
                                    **common))
    fig.add_hline(y=1.0 / len(available), line_dash="dash", line_color="#555555",
                  annotation_text=f"uniform 1/H = {1.0 / len(available):.2f}",
                  annotation_position="top right", annotation_font_size=11)
    fig.update_yaxes(title_text=f"{GATE_AXIS}, last position")
    fig.update_xaxes(title_text="head")
    fig.update_layout(showlegend=False)
    return apply_style(fig, title or "Per-user gate weights",
                       f"{len(user_gates)} users", height=height)


def gates_by_group_heatmap(by_group: pd.DataFrame, *, heads=None, top_k: int | None = 15,
                           centred: bool = True, annotate: bool = True,
                           title: str | None = None, height: int | None = None) -> go.Figure:
    """Mean last-position gate weight per user group (rows) and head (columns).

    ``centred=True`` (default) shows each cell minus its head's mean over the groups shown
    (weighted by users) on a diverging scale: the head effect (one head gets more weight from
    everyone) would otherwise swamp the group effect, which is the question. ``by_group``:
    :func:`famekit.analysis.gates_by_group`; ``top_k``: keep the groups with the most users
    (None = all).
    """
    producer = "famekit.analysis.gates_by_group(acts, groups)"
    require_frame(by_group, "by_group", ["group", "head", "mean_gate", "users"], producer)
    top_k = positive_int(top_k, "top_k")
    chosen = select(heads, sorted(by_group["head"].astype(int).unique()), "heads", "head")
    sizes = by_group.groupby("group")["users"].max().sort_values(ascending=False, kind="stable")
    groups = list(sizes.index[:top_k] if top_k else sizes.index)
    table = by_group.pivot_table(index="group", columns="head", values="mean_gate")
    gates = table.loc[groups, chosen].to_numpy(dtype=float)  # [G, H']
    weights = sizes.loc[groups].to_numpy(dtype=float)  # [G]
    head_means = weights @ gates / weights.sum()  # [H']
    y = [f"{g} ({int(sizes[g])} users)" for g in groups]
    x = [f"head {h}" for h in chosen]
    if centred:
        z = gates - head_means  # [G, H']
        span = float(np.abs(z).max()) or 1e-3
        trace = go.Heatmap(
            z=z, customdata=gates, zmid=0.0, zmin=-span, zmax=span, colorscale=DIVERGING_SCALE,
            colorbar={"title": {"text": "gate − head's mean", "side": "right"}},
            text=[[f"{v:+.3f}" for v in row] for row in z] if annotate else None,
            hovertemplate="%{y}<br>%{x}: mean gate %{customdata:.3f} (%{z:+.3f} vs the "
                          "head's mean)<extra></extra>")
        subtitle = ("each cell minus its head's mean over these groups ("
                    + ", ".join(f"{h}: {m:.3f}" for h, m in zip(x, head_means))
                    + "); 0 everywhere = the gate ignores the group")
    else:
        trace = go.Heatmap(
            z=gates, colorscale=SEQUENTIAL_SCALE,
            colorbar={"title": {"text": GATE_AXIS, "side": "right"}},
            text=np.round(gates, 3) if annotate else None,
            hovertemplate="%{y}<br>%{x}: mean gate %{z:.3f}<extra></extra>")
        n_heads = int(by_group["head"].max()) + 1
        subtitle = f"mean over each group's users; uniform = 1/H = {1.0 / n_heads:.2f}"
    trace.update(x=x, y=y, texttemplate="%{text}" if annotate else None)
    fig = go.Figure(trace)
    fig.update_yaxes(autorange="reversed", title_text="user group")
    fig.update_xaxes(side="top")
    return apply_style(fig, title or "Gate weights by user group", subtitle,
                       height=height or max(320, 130 + 28 * len(groups)), top_extra=30)


def gates_at_position_bar(along: pd.DataFrame, position: int | None = None, *, items=None,
                          heads=None, title: str | None = None, height: int = 320) -> go.Figure:
    """One user's gate weights at one position (default: the last, which scores the next
    item), one bar per head, the input item named in the subtitle.

    ``along``: :func:`famekit.analysis.gates_along_sequence`.
    """
    producer = "famekit.analysis.gates_along_sequence(acts, user_row)"
    require_frame(along, "along", ["position", "item"], producer)
    available = head_columns(along, "along", producer)
    chosen = select(heads, available, "heads", "head")
    positions = along["position"].to_numpy()
    if position is None:
        position = int(positions.max())
    hits = np.flatnonzero(positions == position)
    if not len(hits):
        raise ParameterError(
            f"position={position!r} is not in this sequence (positions "
            f"{positions.min()}..{positions.max()}). Fix: choose a position in that range"
        )
    row = along.iloc[int(hits[0])]
    values = [float(row[f"head {h}"]) for h in chosen]
    fig = go.Figure(go.Bar(
        x=[f"head {h}" for h in chosen], y=values, marker_color=[head_color(h) for h in chosen],
        text=[f"{v:.3f}" for v in values], textposition="inside", insidetextanchor="middle",
        hovertemplate="%{x}: gate %{y:.3f}<extra></extra>",
    ))
    reference_line(fig, y=1.0 / len(available),
                   text=f"uniform 1/H = {1.0 / len(available):.2f}")
    fig.update_yaxes(title_text=GATE_AXIS, range=[0, max(1.15 * max(values), 1.3 / len(available))])
    fig.update_xaxes(title_text="head")
    item = int(row["item"])
    name = item_label(items, item, limit=48)
    what = f"input item {item}" + (f": {name}" if name != f"item {item}" else "")
    return apply_style(fig, title or f"Gate weights at position {position}",
                       what,
                       height=height)


def gates_along_sequence_chart(along: pd.DataFrame, *, items=None, heads=None,
                               stacked: bool = False, position: int | None = None,
                               title: str | None = None, height: int = 400) -> go.Figure:
    """One user's gate weights at every position of the input (lines, or a stacked area that
    fills 0-1 since gates sum to 1), item titles on hover, ``position`` marked.

    ``along``: :func:`famekit.analysis.gates_along_sequence`; ``items``: ``dataset.items`` for
    the hover texts.
    """
    producer = "famekit.analysis.gates_along_sequence(acts, user_row)"
    require_frame(along, "along", ["position", "item"], producer)
    chosen = select(heads, head_columns(along, "along", producer), "heads", "head")
    positions = along["position"].to_numpy()
    if position is not None and position not in set(positions.tolist()):
        raise ParameterError(
            f"position={position!r} is not in this sequence (positions "
            f"{positions.min()}..{positions.max()}). Fix: choose a position in that range"
        )
    hover = item_hover(items, along["item"].to_numpy())
    fig = go.Figure()
    for i, h in enumerate(chosen):
        # unified hover: the item is told once (first head), then every head's weight
        extra = "<br>%{text}" if i == 0 else ""
        fig.add_trace(go.Scatter(
            x=positions, y=along[f"head {h}"], name=f"head {h}", mode="lines+markers",
            line={"color": head_color(h), "width": 2}, marker={"size": 5},
            stackgroup="gates" if stacked else None, text=hover if i == 0 else None,
            hovertemplate=f"head {h}: %{{y:.3f}}{extra}<extra></extra>",
        ))
    if position is not None:
        reference_line(fig, x=position, text=f"position {position}", color="#333333",
                       dash="dot")
    fig.update_xaxes(title_text="position in the input sequence (0 = oldest item)")
    fig.update_yaxes(title_text=GATE_AXIS, range=[0, 1] if stacked else None,
                     rangemode="tozero")
    fig.update_layout(hovermode="x unified")
    return apply_style(fig, title or "Gate weights along the sequence", height=height)
