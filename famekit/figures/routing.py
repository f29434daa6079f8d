"""Routing views: how each head's router spreads positions over its experts.

Inputs come from :mod:`famekit.analysis.routing`: :func:`~famekit.analysis.expert_load`,
:func:`~famekit.analysis.router_distribution`, :func:`~famekit.analysis.routing_entropy`,
:func:`~famekit.analysis.user_routing` and :func:`~famekit.analysis.expert_enrichment`.
A balanced router gives every expert 1/N; a uniform one has entropy log N.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from famekit.errors import ParameterError
from famekit.figures.checks import item_hover, one_of, positive_int, require_frame, select
from famekit.figures.style import (
    DIVERGING_SCALE,
    SEQUENTIAL_SCALE,
    apply_style,
    expert_color,
    grid_shape,
    head_color,
    integer_tick_step,
    legend_below,
    log2_lift_colorbar,
)

__all__ = [
    "expert_enrichment_heatmap",
    "expert_load_heatmap",
    "router_distribution_histogram",
    "routing_entropy_bar",
    "user_routing_heatmap",
]

PROB_AXIS = "router probability (0-1)"


def _expert_names(frame: pd.DataFrame) -> list[int]:
    return sorted(frame["expert"].astype(int).unique().tolist())


def expert_load_heatmap(load: pd.DataFrame, *, heads=None, annotate: bool = True,
                        title: str | None = None, height: int | None = None) -> go.Figure:
    """Heads x experts, two panels: soft load (mean router probability) and hard load (share
    of positions whose top expert it is). A balanced head reads 1/N in every cell.

    ``load``: :func:`famekit.analysis.expert_load`.
    """
    producer = "famekit.analysis.expert_load(acts)"
    require_frame(load, "load", ["head", "expert", "soft_load", "top_share"], producer)
    chosen = select(heads, sorted(load["head"].astype(int).unique()), "heads", "head")
    experts = _expert_names(load)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14, subplot_titles=(
        "soft load: mean router probability", "hard load: share of positions routed (argmax)"))
    top = float(max(load["soft_load"].max(), load["top_share"].max(), 1e-9))
    for col, column in ((1, "soft_load"), (2, "top_share")):
        z = load.pivot_table(index="head", columns="expert", values=column).loc[chosen, experts]
        z = z.to_numpy(dtype=float)  # [H', N]
        fig.add_trace(go.Heatmap(
            z=z, x=[f"expert {e}" for e in experts], y=[f"head {h}" for h in chosen],
            zmin=0.0, zmax=top, colorscale=SEQUENTIAL_SCALE,
            showscale=col == 2, colorbar={"title": {"text": "share (0-1)", "side": "right"}},
            text=np.round(z, 3) if annotate else None,
            texttemplate="%{text}" if annotate else None,
            hovertemplate="%{y}, %{x}<br>" + column.replace("_", " ") + " %{z:.3f}"
                          "<extra></extra>",
        ), row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(title_text="head", row=1, col=1)
    fig.update_xaxes(title_text="expert")
    balanced = 1.0 / len(experts)
    return apply_style(fig, title or "Expert load per head",
                       f"balanced = 1/N = {balanced:.2f} in every cell",
                       height=height or max(300, 170 + 40 * len(chosen)), top_extra=28)


def router_distribution_histogram(dist: pd.DataFrame, *, heads=None, experts=None,
                                  log_y: bool = False, title: str | None = None,
                                  height: int | None = None) -> go.Figure:
    """Histogram of router probabilities, one panel per head, one outline per expert.

    A confident router piles mass near 0 and 1; a uniform one near 1/N.
    ``dist``: :func:`famekit.analysis.router_distribution`.
    """
    producer = "famekit.analysis.router_distribution(acts)"
    require_frame(dist, "dist", ["head", "expert", "bin_left", "bin_right", "share"], producer)
    chosen_heads = select(heads, sorted(dist["head"].astype(int).unique()), "heads", "head")
    chosen_experts = select(experts, _expert_names(dist), "experts", "expert")
    rows, cols = grid_shape(len(chosen_heads), max_cols=4)
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes=True,
                        subplot_titles=[f"head {h}" for h in chosen_heads],
                        horizontal_spacing=0.04, vertical_spacing=0.16)
    for i, h in enumerate(chosen_heads):
        r, c = i // cols + 1, i % cols + 1
        for e in chosen_experts:
            part = dist[(dist["head"] == h) & (dist["expert"] == e)].sort_values("bin_left")
            centre = (part["bin_left"] + part["bin_right"]) / 2
            # one outline per expert (a step line over the bins): overlaid filled bars of
            # four experts blend into one colour
            fig.add_trace(go.Scatter(
                x=centre, y=part["share"], mode="lines", line={"shape": "hvh", "width": 2,
                                                               "color": expert_color(e)},
                name=f"expert {e}", legendgroup=f"expert {e}", showlegend=i == 0,
                customdata=np.stack([part["bin_left"], part["bin_right"]], axis=1),
                hovertemplate=f"head {h}, expert {e}<br>"
                              "p in [%{customdata[0]:.2f}, %{customdata[1]:.2f})"
                              "<br>%{y:.1%} of positions<extra></extra>",
            ), row=r, col=c)
        fig.update_xaxes(range=[0, 1], row=r, col=c)
    fig.update_yaxes(title_text="share of positions (0-1)", col=1)
    # one x title under the whole grid (one per panel would collide)
    fig.add_annotation(text=PROB_AXIS, x=0.5, y=0, xref="paper", yref="paper", yshift=-32,
                       yanchor="top", showarrow=False, font={"size": 14})
    if log_y:
        fig.update_yaxes(type="log")
    n_experts = int(dist["expert"].max()) + 1
    return apply_style(fig, title or "Router probability distribution",
                       f"uniform router: every probability = 1/N = {1.0 / n_experts:.2f}",
                       height=height or 170 + 240 * rows, top_extra=28)


def routing_entropy_bar(entropy: pd.DataFrame, *, heads=None, title: str | None = None,
                        height: int = 380) -> go.Figure:
    """Per head: mean per-position router entropy and the entropy of the average load, in
    nats, against the maximum log N (a dashed line: a uniform router).

    ``entropy``: :func:`famekit.analysis.routing_entropy`.
    """
    producer = "famekit.analysis.routing_entropy(acts)"
    require_frame(entropy, "entropy", ["head", "mean_entropy", "max_entropy"], producer)
    chosen = select(heads, entropy["head"].astype(int).tolist(), "heads", "head")
    rows = entropy.set_index(entropy["head"].astype(int)).loc[chosen]
    names = [f"head {h}" for h in chosen]
    fig = go.Figure(go.Bar(
        x=names, y=rows["mean_entropy"], name="per-position routing entropy",
        marker_color=[head_color(h) for h in chosen],
        hovertemplate="%{x}<br>mean entropy %{y:.3f} nats<extra></extra>",
    ))
    if "load_entropy" in rows.columns:
        fig.add_trace(go.Bar(
            x=names, y=rows["load_entropy"], name="entropy of the average load",
            marker={"color": "rgba(0,0,0,0)", "line": {"color": "#333333", "width": 1.5}},
            hovertemplate="%{x}<br>load entropy %{y:.3f} nats<extra></extra>",
        ))
    max_entropy = float(rows["max_entropy"].iloc[0])
    fig.add_hline(y=max_entropy, line_dash="dash", line_color="#C00000",
                  annotation_text=f"maximum log N = {max_entropy:.3f} nats (uniform)",
                  annotation_position="top left", annotation_font_size=11)
    fig.update_yaxes(title_text="entropy (nats)", range=[0, max_entropy * 1.15])
    fig.update_xaxes(title_text="head")
    fig.update_layout(barmode="group")
    legend_below(fig)
    return apply_style(fig, title or "Routing entropy per head",
                       "low = the router commits to few experts", height=height)


def user_routing_heatmap(routing: pd.DataFrame, *, items=None, head: int | None = None,
                         position: int | None = None, title: str | None = None,
                         height: int = 320) -> go.Figure:
    """One user's router probabilities for one head: experts (rows) x positions (columns),
    item titles on hover, the column of ``position`` outlined.

    ``routing``: :func:`famekit.analysis.user_routing` (already for one head; ``head`` only
    labels the figure); ``items``: ``dataset.items`` for the hover texts.
    """
    producer = "famekit.analysis.user_routing(acts, user_row, head)"
    require_frame(routing, "routing", ["position", "item"], producer)
    experts = sorted(int(c.split()[1]) for c in routing.columns
                     if isinstance(c, str) and c.startswith("expert ") and c.split()[1].isdigit())
    if not experts:
        raise ParameterError(
            f"routing has no 'expert <e>' columns (it has {list(routing.columns)[:12]}). "
            f"Fix: pass the result of {producer}"
        )
    positions = routing["position"].to_numpy()
    if position is not None and position not in set(positions.tolist()):
        raise ParameterError(
            f"position={position!r} is not in this sequence (positions {positions.min()}.."
            f"{positions.max()}). Fix: choose a position in that range"
        )
    z = routing[[f"expert {e}" for e in experts]].to_numpy(dtype=float).T  # [N, n]
    hover = np.array(item_hover(items, routing["item"].to_numpy()), dtype=object)
    fig = go.Figure(go.Heatmap(
        z=z, x=positions, y=[f"expert {e}" for e in experts], zmin=0.0, zmax=1.0,
        colorscale=SEQUENTIAL_SCALE, customdata=np.tile(hover, (len(experts), 1)),
        colorbar={"title": {"text": PROB_AXIS, "side": "right"}},
        hovertemplate="position %{x}, %{y}: p = %{z:.3f}<br>%{customdata}<extra></extra>",
    ))
    if position is not None:
        fig.add_shape(type="rect", x0=position - 0.5, x1=position + 0.5, y0=-0.5,
                      y1=len(experts) - 0.5, line={"color": "#C00000", "width": 2.5})
    row_name, column_name = "expert", "position"  # the axes and the caption say the same
    x_title, y_title = f"{column_name} in the input sequence (0 = oldest item)", row_name
    # positions and experts are whole numbers: ticks every 1 (or every 5, 10, ... on long
    # sequences), never at the half-cell edges plotly picks for short axes
    step = integer_tick_step(len(positions))
    titles = sequence_titles(items, routing["item"].to_numpy())
    if titles is not None and len(positions) <= MAX_TITLED_POSITIONS:
        # each tick names its item ("12 · Lip balm by Burt's…"); angled, under a taller plot
        ticks = positions[::step]
        fig.update_xaxes(tickmode="array", tickvals=ticks, tickangle=-45, automargin=True,
                         ticktext=[f"{p} · {t}" for p, t in zip(ticks, titles[::step])])
        height += TITLE_TICKS_HEIGHT
    else:
        fig.update_xaxes(tickmode="linear", tick0=0, dtick=step)
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title, autorange="reversed")
    label = f" (head {head})" if head is not None else ""
    return apply_style(fig, title or f"Routing along one user's sequence{label}",
                       f"rows: {row_name}s; columns: {column_name}s; colour: router "
                       "probability", height=height)


MAX_TITLED_POSITIONS = 60  # longer sequences keep numbered ticks (titles would overlap)
TITLE_TICKS_HEIGHT = 110  # px added below the plot for the angled item titles
TICK_TITLE_CHARS = 22


def sequence_titles(items, item_ids) -> list[str] | None:
    """Each item's title cut to :data:`TICK_TITLE_CHARS` characters (blank titles: the id);
    None when ``items`` has no titles."""
    if not isinstance(items, pd.DataFrame) or "title" not in items.columns:
        return None
    ids = np.asarray(item_ids).astype(np.int64)
    raw = items["title"].reindex(ids).tolist()
    out = []
    for item, title in zip(ids, raw):
        text = str(title).strip() if isinstance(title, str) and title.strip() else f"item {item}"
        out.append(text if len(text) <= TICK_TITLE_CHARS
                   else text[: TICK_TITLE_CHARS - 1].rstrip() + "…")
    return out


def expert_enrichment_heatmap(enrichment: pd.DataFrame, head: int, *,
                              top_labels: int | None = 12, field: str | None = None,
                              annotate: bool = True, title: str | None = None,
                              height: int | None = None) -> go.Figure:
    """Lift of each metadata label (rows) in each expert (columns) of one head: red = the
    expert takes more of the label than its base rate, blue = less, white = 1x.

    The colour is log2(lift), so 2x and 0.5x are equally strong; zero lift is drawn at the
    scale's end. ``enrichment``: :func:`famekit.analysis.expert_enrichment`; ``top_labels``:
    keep the most frequent labels (by positions).
    """
    producer = "famekit.analysis.expert_enrichment(acts, item_labels)"
    require_frame(enrichment, "enrichment", ["head", "expert", "label", "positions", "lift"],
                  producer, allow_empty=True)
    if enrichment.empty:
        raise ParameterError(
            "enrichment has no rows: no label reached min_count positions. Fix: lower "
            "min_count in expert_enrichment, or use a field with more labelled items"
        )
    top_labels = positive_int(top_labels, "top_labels")
    heads = sorted(enrichment["head"].astype(int).unique())
    head = one_of(head, heads, "head", "head")
    part = enrichment[enrichment["head"] == head]
    counts = part.groupby("label")["positions"].max().sort_values(ascending=False,
                                                                  kind="stable")
    labels = list(counts.index[:top_labels] if top_labels else counts.index)
    experts = _expert_names(part)
    lift = part.pivot_table(index="label", columns="expert", values="lift")
    lift = lift.loc[labels, experts].to_numpy(dtype=float)  # [L, N]
    logs = np.log2(np.clip(lift, 2.0 ** -4, None))
    span = float(max(1.0, np.nanmax(np.abs(logs)))) if np.isfinite(logs).any() else 1.0
    fig = go.Figure(go.Heatmap(
        z=logs, x=[f"expert {e}" for e in experts],
        y=[f"{label} ({int(counts[label])})" for label in labels],
        zmid=0.0, zmin=-span, zmax=span, colorscale=DIVERGING_SCALE,
        colorbar=log2_lift_colorbar(span), customdata=lift,
        text=np.vectorize(lambda v: f"{v:.2f}x")(lift) if annotate else None,
        texttemplate="%{text}" if annotate else None,
        hovertemplate="%{y}, %{x}<br>lift %{customdata:.3f}x over the base rate"
                      "<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", title_text=f"{field or 'label'} (positions)")
    fig.update_xaxes(side="top")
    what = f"{field} labels" if field else "labels"
    return apply_style(fig, title or f"Expert enrichment of {what}, head {head}",
                       "lift over base rate (x): share of the expert's routing mass / share of "
                       "all labelled positions",
                       height=height or max(320, 150 + 26 * len(labels)), top_extra=30)
