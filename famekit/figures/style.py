"""One look for every famekit figure: the template, the colours and a few layout helpers.

Every builder in :mod:`famekit.figures` calls :func:`apply_style`, so all views share a font,
margins, a white background and these colour conventions:

* **heads** (facets) get :data:`HEAD_COLORS`, the Okabe-Ito colour-blind-safe palette
  reordered so that the first 4 are the most distinct; head ``h`` always has colour ``h`` (a
  filtered view keeps each head's colour);
* **experts** get :data:`EXPERT_COLORS`, a second, visibly different palette;
* **metadata labels** get :data:`LABEL_COLORS` (Tableau 10), with ``"other"`` dark grey and
  missing values light grey;
* ratios (lift) use a diverging red/blue scale on log2 around 1, signed changes a diverging
  scale around 0, shares and probabilities a sequential one from 0.

The template is also registered as ``plotly.io.templates["famekit"]`` so that users can style
their own figures the same way (``fig.update_layout(template="famekit")``); importing famekit
never changes plotly's global default.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar

import plotly.graph_objects as go
import plotly.io as pio

from famekit.datasets.missing import is_missing_label

__all__ = [
    "CHANCE_COLOR",
    "DIVERGING_SCALE",
    "EXPERT_COLORS",
    "HEAD_COLORS",
    "LABEL_COLORS",
    "MEASURED_COLOR",
    "MISSING_COLOR",
    "OTHER_COLOR",
    "SEQUENTIAL_SCALE",
    "TEMPLATE",
    "apply_style",
    "expert_color",
    "grid_shape",
    "head_color",
    "label_color",
    "legend_below",
    "log2_lift_colorbar",
    "reference_line",
    "shorten",
    "without_template",
]

# Okabe & Ito (2008), colour-blind safe; the yellow is darkened to read on white.
HEAD_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#B8A200",
               "#000000")
# A second qualitative palette so that experts are never confused with heads.
EXPERT_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3",
                 "#8C8C8C")
# Tableau 10 for metadata labels (top-N of a field), then "other" and "missing".
LABEL_COLORS = ("#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1",
                "#FF9DA7", "#9C755F", "#BAB0AC")
OTHER_COLOR = "#6B6B6B"
MISSING_COLOR = "#D3D3D3"
MEASURED_COLOR = "#0072B2"
CHANCE_COLOR = "#A0A0A0"
SEQUENTIAL_SCALE = "Blues"
# Red for "more than expected" (lift > 1, a rise), blue for "less"; white at the centre.
DIVERGING_SCALE = "RdBu_r"

FONT_FAMILY = "Inter, 'Helvetica Neue', Helvetica, Arial, sans-serif"


def _build_template() -> go.layout.Template:
    template = go.layout.Template(pio.templates["plotly_white"])
    template.layout.update(
        font={"family": FONT_FAMILY, "size": 13, "color": "#222222"},
        title={"font": {"size": 16}, "x": 0.0, "xanchor": "left", "xref": "container",
               "pad": {"l": 16}},
        colorway=list(HEAD_COLORS),
        margin={"l": 70, "r": 30, "t": 70, "b": 60},
        legend={"bgcolor": "rgba(255,255,255,0.8)", "font": {"size": 12}},
        hoverlabel={"font": {"family": FONT_FAMILY, "size": 12}, "align": "left"},
        bargap=0.2,
    )
    return template


TEMPLATE = _build_template()
pio.templates["famekit"] = TEMPLATE


# Applying the template costs ~30-45 ms a figure (plotly validates and copies it); the
# explorer's in-place updates keep the template their widgets already have.
_WITH_TEMPLATE: ContextVar[bool] = ContextVar("famekit_figure_template", default=True)


@contextmanager
def without_template():
    """Inside this block :func:`apply_style` leaves the template out: for figures whose data
    and layout update a figure that already has it (``figures.explorer.refresh_figure``)."""
    token = _WITH_TEMPLATE.set(False)
    try:
        yield
    finally:
        _WITH_TEMPLATE.reset(token)


def reference_line(fig: go.Figure, *, x: float | None = None, y: float | None = None,
                   text: str = "", color: str = "#555555", dash: str = "dash") -> go.Figure:
    """A vertical line at ``x`` or a horizontal one at ``y`` across the plot, labelled at its
    top or right end: what ``fig.add_vline`` / ``add_hline`` draw, at a tenth of their cost
    (the explorer redraws these on every interaction)."""
    line = {"color": color, "dash": dash, "width": 2}
    if x is not None:
        fig.add_shape(type="line", xref="x", yref="y domain", x0=x, x1=x, y0=0, y1=1, line=line)
        label = {"x": x, "xref": "x", "y": 1, "yref": "y domain", "yanchor": "bottom"}
    else:
        fig.add_shape(type="line", xref="x domain", yref="y", x0=0, x1=1, y0=y, y1=y, line=line)
        label = {"x": 1, "xref": "x domain", "xanchor": "right", "y": y, "yref": "y",
                 "yanchor": "bottom"}
    if text:
        fig.add_annotation(text=text, showarrow=False, font={"size": 11}, **label)
    return fig


def head_color(head: int) -> str:
    """The colour of head ``head`` (cycles beyond 8 heads)."""
    return HEAD_COLORS[int(head) % len(HEAD_COLORS)]


def expert_color(expert: int) -> str:
    """The colour of expert ``expert`` (cycles beyond 8 experts)."""
    return EXPERT_COLORS[int(expert) % len(EXPERT_COLORS)]


def integer_tick_step(n: int, max_ticks: int = 20) -> int:
    """A whole tick step (1, 2, 5, 10, 20, 50, ...) that puts at most ``max_ticks`` ticks on an
    axis of ``n`` whole-numbered cells."""
    step, scale = 1, 1
    while n / step > max_ticks:
        for factor in (2, 5, 10):
            step = factor * scale
            if n / step <= max_ticks:
                return step
        scale *= 10
    return step


def label_color(rank: int) -> str:
    """The colour of the ``rank``-th most frequent label (cycles beyond 10)."""
    return LABEL_COLORS[int(rank) % len(LABEL_COLORS)]


def apply_style(fig: go.Figure, title: str | None = None, subtitle: str | None = None,
                height: int | None = None, width: int | None = None,
                top_extra: int = 0) -> go.Figure:
    """Apply the famekit template, a title (with an optional smaller subtitle) and a size.

    The title sits at the top of the figure; the top margin grows with a subtitle and by
    ``top_extra`` pixels for what sits above the plot area (subplot titles, a top x axis), so
    the title never overlaps them.
    """
    if _WITH_TEMPLATE.get():
        fig.update_layout(template=TEMPLATE)
    top = 30
    if title is not None:
        text = title if not subtitle else f"{title}<br><sup>{subtitle}</sup>"
        # plotly places a two-line (sub)title from its first line: it needs more padding
        fig.update_layout(title={"text": text, "yref": "container", "y": 1.0, "yanchor": "top",
                                 "pad": {"t": 30 if subtitle else 14}})
        top = 92 if subtitle else 60
    fig.update_layout(margin={"t": top + int(top_extra)})
    if height is not None:
        fig.update_layout(height=int(height))
    if width is not None:
        fig.update_layout(width=int(width))
    return fig


def legend_below(fig: go.Figure, rows: int = 1) -> go.Figure:
    """A horizontal legend at the bottom of the figure, below the x-axis title (the bottom
    margin grows to hold ``rows`` legend rows)."""
    fig.update_layout(
        legend={"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom",
                "x": 0.0, "xanchor": "left"},
        margin={"b": 78 + 24 * int(rows)},
    )
    return fig


def log2_lift_colorbar(max_abs_log2: float, title: str = "lift over base rate (x)") -> dict:
    """Colour-bar settings for a heatmap coloured by log2(lift): ticks read as lifts (0.5x, 2x)."""
    span = max(1, math.ceil(max_abs_log2))
    ticks = list(range(-span, span + 1))
    step = max(1, len(ticks) // 7)  # at most ~7 tick labels
    ticks = [t for t in ticks if t % step == 0]
    labels = [f"{2.0 ** t:g}x" for t in ticks]
    return {"title": {"text": title, "side": "right"}, "tickvals": ticks, "ticktext": labels}


def grid_shape(n_panels: int, max_cols: int = 4) -> tuple[int, int]:
    """(rows, cols) of a small-multiples grid holding ``n_panels`` panels."""
    cols = max(1, min(max_cols, n_panels))
    return math.ceil(n_panels / cols), cols


def shorten(text, limit: int = 40) -> str:
    """``text`` as a string of at most ``limit`` characters (an ellipsis marks the cut)."""
    text = "" if is_missing_label(text) else str(text)
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "\u2026"
