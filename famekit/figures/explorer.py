"""The user explorer's views: its five figures and its two plain-HTML tables.

Inputs come from :class:`famekit.analysis.user_view.UserView` (one user's routing, gates along
the sequence and :class:`~famekit.analysis.Anatomy`); nothing here touches a model. The HTML
tables are what a frontend without widgets shows (the explorer's ``_repr_html_``), so they use
no JavaScript and escape every value: item titles come from downloaded metadata.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from famekit.analysis.anatomy import Anatomy
from famekit.analysis.user_view import topk_lists
from famekit.figures.anatomy import history_table, per_head_topk_table
from famekit.figures.checks import select
from famekit.figures.gates import gates_along_sequence_chart, gates_at_position_bar
from famekit.figures.routing import user_routing_heatmap
from famekit.figures.style import head_color

__all__ = [
    "EXPLORER_PARTS",
    "explorer_figures",
    "history_html",
    "html_table",
    "refresh_figure",
    "topk_html",
]

EXPLORER_PARTS = ("routing", "gate_bar", "gates", "history", "topk")
# The two gate charts share a row (they wrap on narrow screens): ~940 px together.
GATE_BAR_WIDTH, GATES_WIDTH = 400, 540
HISTORY_COLUMNS = ("title", "brand", "genre", "top_category", "price_tier")
LIST_COLUMNS = ("categories", "genres")  # long lists: left out of the HTML history


def explorer_figures(routing: pd.DataFrame, along: pd.DataFrame, anatomy: Anatomy, *, items,
                     user: int, head: int, position: int, history_row: int, top_k: int,
                     parts=None) -> dict[str, go.Figure]:
    """The explorer's figures for one user, head and position, by name (``parts``: a subset
    of :data:`EXPLORER_PARTS`, default all).

    ``routing``: :func:`famekit.analysis.user_routing` of ``head``; ``along``:
    :func:`famekit.analysis.gates_along_sequence`; ``anatomy``: the user's
    :func:`famekit.analysis.recommendation_anatomy`; ``items``: ``dataset.items``;
    ``history_row``: the history row of ``position`` (``UserView.history_row``).
    """
    wanted = select(parts, EXPLORER_PARTS, "parts", "part")
    build = {
        "routing": lambda: user_routing_heatmap(
            routing, items=items, head=head, position=position,
            title=f"Routing of head {head}, user row {user}", height=300),
        "gate_bar": lambda: gates_at_position_bar(
            along, position, items=items, height=300).update_layout(width=GATE_BAR_WIDTH),
        "gates": lambda: gates_along_sequence_chart(
            along, items=items, position=position, height=300).update_layout(width=GATES_WIDTH),
        "history": lambda: history_table(
            anatomy, position=history_row, last=max(10, len(anatomy.history) - history_row),
            columns=[c for c in HISTORY_COLUMNS if c in anatomy.history.columns] or None,
            title=f"History of user row {user} (oldest first)"),
        "topk": lambda: per_head_topk_table(
            anatomy, title=f"Top-{top_k} per head, user row {user} (score in brackets)"),
    }
    return {name: build[name]() for name in wanted}


def refresh_figure(widget: go.FigureWidget, fig: go.Figure) -> None:
    """Replace the data and layout of FigureWidget ``widget`` by those of ``fig``, in place
    (the widget object, and the view showing it, stay the same)."""
    with widget.batch_update():
        if len(widget.data) == len(fig.data) and all(
                old.type == new.type for old, new in zip(widget.data, fig.data)):
            for old, new in zip(widget.data, fig.data):
                props = new.to_plotly_json()
                props.pop("type", None)
                props.pop("uid", None)
                old.update(props, overwrite=True)
        else:
            widget.data = ()
            widget.add_traces(list(fig.data))
        layout = fig.layout.to_plotly_json()
        layout.pop("template", None)  # unchanged: not worth sending to the browser again
        widget.update_layout(layout, overwrite=True)


def _text(value) -> str:
    """A table cell's text: lists shortened to their first three entries, blanks empty."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return " > ".join(str(v) for v in list(value)[:3])
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}"
    return str(value)


def html_table(frame: pd.DataFrame, highlight: int | None = None,
               header_colours: list[str] | None = None) -> str:
    """A small HTML table of ``frame`` (row ``highlight`` marked), every value escaped."""
    cell = "padding:2px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top"
    head = "".join(
        f'<th style="{cell};background:{header_colours[i] if header_colours else "#e0e0e0"}">'
        f"{html.escape(str(c))}</th>" for i, c in enumerate(frame.columns))
    rows = []
    for r, values in enumerate(frame.itertuples(index=False)):
        style = ' style="background:#ffe8a3;font-weight:600"' if r == highlight else ""
        tds = "".join(f'<td style="{cell}">{html.escape(_text(v))}</td>' for v in values)
        rows.append(f"<tr{style}>{tds}</tr>")
    return ('<table style="border-collapse:collapse;font-size:12px;font-family:sans-serif">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def history_html(history: pd.DataFrame, highlight: int | None = None) -> str:
    """The user's history (``UserView.history``) as an HTML table, row ``highlight`` marked."""
    frame = history.drop(columns=[c for c in LIST_COLUMNS if c in history.columns])
    return ("<b>History (oldest first; highlighted = selected position)</b>"
            + html_table(frame, highlight=highlight))


def _cells(lists: pd.DataFrame, name: str, top_k: int) -> list[str]:
    """The "label (score)" cells of one list, padded to ``top_k`` rows."""
    part = lists[lists["list"] == name]
    cells = [f"{_text(v)} ({s:.3g})" for v, s in zip(part["label"], part["score"])]
    return cells + [""] * (top_k - len(cells))


def topk_html(anatomy: Anatomy, top_k: int, head_labels=None) -> str:
    """The fused and per-head top-``top_k`` lists side by side as an HTML table ("title
    (score)" cells, headers in the heads' colours) at the anatomy's position, with the
    target (the held-out item at the last position, else the next input item): its title and
    its rank under the fused score and under each head's own score.
    ``head_labels``: the heads' names (``Run.head_labels``; default ``"head h"``)."""
    lists = topk_lists(anatomy)
    head_ranks = anatomy.head_target_ranks
    columns = {"rank": list(range(1, top_k + 1)),
               f"fused (target #{anatomy.target_rank + 1})": _cells(lists, "fused", top_k)}
    colours = ["#e0e0e0", "#f2f2f2"]
    for h, gate in enumerate(anatomy.gates):
        name = head_labels[h] if head_labels is not None else f"head {h}"
        where = f"; target #{int(head_ranks[h]) + 1}" if head_ranks is not None else ""
        columns[f"{name} (gate {gate:.2f}{where})"] = _cells(lists, f"head {h}", top_k)
        colours.append(head_color(h) + "40")  # the head's colour, 25 % opaque
    if anatomy.at_last_position:
        where, what = "the last position", "held-out item"
    else:
        where, what = f"position {anatomy.position}", "next item"
    label = (f"{anatomy.target_title} (item {anatomy.target})" if anatomy.target_title
             else f"item {anatomy.target}")
    target = (f"target = the {what}: {label}; fused rank {anatomy.target_rank + 1} of the "
              "candidates (1 = best); #r in a header = the target's rank under that score")
    return (f"<b>Top-{top_k} at {html.escape(where)}</b> ({html.escape(target)})"
            + html_table(pd.DataFrame(columns), header_colours=colours))
