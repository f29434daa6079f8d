"""Embedding views: 2-D layouts of each head's item sub-embeddings, coloured by metadata.

Layouts come from :func:`famekit.analysis.head_layouts` (``{head: float [V, 2], "full": ...}``,
row ``i`` = item ``i + 1``), labels from :func:`famekit.analysis.item_labels` (object
[V + 1], index = item id, None = missing). The views never fit UMAP themselves.

Colouring: the ``top_n`` most frequent labels get their own colour, the rest are drawn as
"other" and items without a label as "missing" (light grey, drawn first so they stay behind).
An ordinal field (``price_tier``) instead shows every value in its natural order on a
sequential scale. A label keeps its colour in every panel of the grid; the hover names each
point's own value, "other" points included.
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from famekit.datasets.missing import is_missing_label
from famekit.errors import ParameterError
from famekit.figures.checks import item_hover, positive_int, select
from famekit.figures.style import (
    MISSING_COLOR,
    OTHER_COLOR,
    apply_style,
    grid_shape,
    label_color,
)

__all__ = ["embedding_grid", "embedding_scatter"]

OTHER = "other"
MISSING = "missing"
# Above this many points, WebGL keeps panning and hovering fluid.
WEBGL_FROM = 3000
ORDINAL_SCALE = "Viridis_r"  # light (cheap) to dark (dear): order reads without a legend


def _check_layout(layout, arg: str) -> np.ndarray:
    array = np.asarray(layout, dtype=float) if layout is not None else None
    if array is None or array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
        shape = None if array is None else array.shape
        raise ParameterError(
            f"{arg} must be a float array [V, 2] (row i = item i + 1), got shape {shape}. "
            "Fix: pass a layout from famekit.analysis.head_layouts(model)"
        )
    if not np.isfinite(array).all():
        raise ParameterError(f"{arg} contains NaN or infinite coordinates. "
                             "Fix: recompute the layout (famekit.analysis.umap_layout)")
    return array


def _point_labels(labels, n_points: int) -> np.ndarray | None:
    """Labels aligned with the layout rows: accepts [V + 1] (item_labels) or [V]."""
    if labels is None:
        return None
    labels = np.asarray(labels, dtype=object)
    if labels.ndim != 1 or len(labels) not in (n_points, n_points + 1):
        raise ParameterError(
            f"labels has shape {labels.shape} but the layout has {n_points} items: expected "
            f"{n_points + 1} (one per item id, as famekit.analysis.item_labels returns) or "
            f"{n_points}. Fix: take the labels and the layout from the same dataset and model"
        )
    return labels[1:] if len(labels) == n_points + 1 else labels


def _categories(labels: np.ndarray | None, n_points: int, top_n: int, field: str | None = None):
    """(category of each point [V], ordered categories, {category: colour}).

    A categorical field keeps its ``top_n`` most frequent values (one colour each, the rest
    "other"); an ordinal field (:func:`famekit.analysis.metadata.value_order`) keeps every
    value, in its natural order, on a sequential scale (cheap = light, dear = dark)."""
    from famekit.analysis.metadata import value_order

    if labels is None:
        return np.full(n_points, "items", dtype=object), ["items"], {"items": label_color(0)}
    present = np.array([not is_missing_label(v) for v in labels], dtype=bool)
    values, counts = np.unique(labels[present].astype(str), return_counts=True)
    ordinal = value_order(field, values)
    if ordinal is not None:
        top = ordinal
        shades = sample_colorscale(ORDINAL_SCALE, np.linspace(0.05, 0.95, max(2, len(top))))
        colours = dict(zip(top, shades))
    else:
        order = np.lexsort((values, -counts))  # most frequent first, ties by name
        top = [str(v) for v in values[order][:top_n]]
        colours = {c: label_color(i) for i, c in enumerate(top)}
    keep = set(top)
    cats = np.array([MISSING if not present[i] else (str(labels[i]) if str(labels[i]) in keep
                                                      else OTHER)
                     for i in range(n_points)], dtype=object)
    ordered = list(top)
    if (cats == OTHER).any():
        ordered.append(OTHER)
        colours[OTHER] = OTHER_COLOR
    if (cats == MISSING).any():
        ordered.insert(0, MISSING)  # drawn first: behind the labelled points
        colours[MISSING] = MISSING_COLOR
    return cats, ordered, colours


def _scatter_traces(layout: np.ndarray, cats, ordered, colours, hover, marker_size: float,
                    show_legend: bool, field: str | None, values=None):
    """One trace per category; the hover names each point's own value (``values`` [V]), so a
    grey "other" point still says which brand it is."""
    scatter = go.Scattergl if len(layout) >= WEBGL_FROM else go.Scatter
    traces = []
    for cat in ordered:
        sel = np.flatnonzero(cats == cat)
        if not len(sel):
            continue
        own = ([cat] * len(sel) if values is None or cat == MISSING
               else [str(values[i]) for i in sel])
        texts = [hover[i] + (f"<br>{html.escape(field)}: {html.escape(v)}" if field else "")
                 for i, v in zip(sel, own)]
        traces.append(scatter(
            x=layout[sel, 0], y=layout[sel, 1], mode="markers", name=cat, legendgroup=cat,
            showlegend=show_legend,
            marker={"size": marker_size, "color": colours[cat],
                    "opacity": 0.45 if cat == MISSING else 0.8, "line": {"width": 0}},
            text=texts, hovertemplate="%{text}<extra></extra>",
        ))
    return traces


def _hover(items, n_points: int, fields=("title", "brand", "genre", "top_category")):
    return item_hover(items, np.arange(1, n_points + 1), fields=fields)


def embedding_scatter(layout, labels=None, *, items=None, top_n: int = 10,
                      field: str | None = None, marker_size: float = 5,
                      title: str | None = None, height: int = 560) -> go.Figure:
    """One head's items in 2-D (a UMAP layout), coloured by a metadata field.

    ``layout``: float [V, 2]; ``labels``: :func:`famekit.analysis.item_labels` of ``field``
    (or None: one colour); ``items``: ``dataset.items`` for titles and brands on hover.
    """
    layout = _check_layout(layout, "layout")
    top_n = positive_int(top_n, "top_n", allow_none=False)
    point_labels = _point_labels(labels, len(layout))
    cats, ordered, colours = _categories(point_labels, len(layout), top_n, field)
    fig = go.Figure(_scatter_traces(layout, cats, ordered, colours, _hover(items, len(layout)),
                                    marker_size, True, field, point_labels))
    fig.update_xaxes(title_text="UMAP 1 (no unit)", showticklabels=False, zeroline=False)
    fig.update_yaxes(title_text="UMAP 2 (no unit)", showticklabels=False, zeroline=False)
    fig.update_layout(legend={"title": {"text": field or ""}, "itemsizing": "constant"})
    subtitle = (f"{len(layout)} items; top {top_n} {field or 'label'}s, rest = other"
                if point_labels is not None else f"{len(layout)} items")
    return apply_style(fig, title or "Item sub-embeddings (UMAP)", subtitle, height=height)


def embedding_grid(layouts: dict, labels=None, *, keys=None, items=None, top_n: int = 10,
                   field: str | None = None, max_cols: int = 3, marker_size: float = 4,
                   max_points: int | None = None, seed: int = 0,
                   title: str | None = None, height: int | None = None) -> go.Figure:
    """Small multiples: one panel per head (and ``"full"``), same colours for a label in
    every panel, one shared legend.

    ``layouts``: :func:`famekit.analysis.head_layouts` (``{0: [V, 2], ..., "full": [V, 2]}``);
    ``keys``: which panels, in order (default: all heads, then ``"full"``);
    ``max_points``: draw a seeded random subset of that many items (the same in every panel),
    which keeps the figure of a large catalogue small; colours still come from all items.
    """
    if not isinstance(layouts, dict) or not layouts:
        raise ParameterError(
            f"layouts must be a non-empty dict {{head: [V, 2] array}}, got "
            f"{type(layouts).__name__}. Fix: pass famekit.analysis.head_layouts(model)"
        )
    heads_first = sorted((k for k in layouts if not isinstance(k, str)), key=int)
    available = heads_first + [k for k in layouts if isinstance(k, str)]
    chosen = select(keys, available, "keys", "layout key")
    arrays = {k: _check_layout(layouts[k], f"layouts[{k!r}]") for k in chosen}
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) != 1:
        raise ParameterError(
            f"the layouts have different numbers of items {sorted(sizes)}. "
            "Fix: compute them from one model (famekit.analysis.head_layouts)"
        )
    n_points = sizes.pop()
    top_n = positive_int(top_n, "top_n", allow_none=False)
    point_labels = _point_labels(labels, n_points)
    cats, ordered, colours = _categories(point_labels, n_points, top_n, field)
    # Every panel repeats the hover texts: titles only keep a 12k-item grid's HTML small.
    hover = _hover(items, n_points, fields=("title",))
    shown = np.arange(n_points)
    max_points = positive_int(max_points, "max_points")
    if max_points is not None and max_points < n_points:
        shown = np.sort(np.random.default_rng(seed).choice(n_points, max_points, replace=False))
    cats, hover = cats[shown], [hover[i] for i in shown]
    shown_labels = None if point_labels is None else point_labels[shown]
    arrays = {k: a[shown] for k, a in arrays.items()}
    rows, cols = grid_shape(len(chosen), max_cols=max_cols)
    names = [f"head {k}" if not isinstance(k, str) else f"{k} embedding" for k in chosen]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names,
                        horizontal_spacing=0.03, vertical_spacing=0.08)
    for i, key in enumerate(chosen):
        for trace in _scatter_traces(arrays[key], cats, ordered, colours, hover, marker_size,
                                     i == 0, field, shown_labels):
            fig.add_trace(trace, row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(showticklabels=False, zeroline=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, zeroline=False, showgrid=False)
    fig.update_layout(legend={"title": {"text": field or ""}, "itemsizing": "constant"})
    return apply_style(fig, title or "Item sub-embeddings per head (UMAP)",
                       f"{len(shown)} of {n_points} items; axes are UMAP coordinates (no unit)",
                       height=height or 110 + 330 * rows, top_extra=28)
