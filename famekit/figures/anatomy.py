"""Anatomy views: one user's recommendations decomposed into per-head contributions.

Input: :class:`famekit.analysis.Anatomy` from :func:`famekit.analysis.recommendation_anatomy`
(or its parts). FAME's fused score is ``P(v) = sum_h g_h P^h(v)``; the stacked bars show the
terms ``g_h P^h(v)``, which may be negative (a head that argues against the item), so bars
stack in both directions and a black mark shows their sum, the fused score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from famekit.analysis.anatomy import Anatomy
from famekit.datasets.missing import is_missing_label
from famekit.errors import ParameterError
from famekit.figures.checks import positive_int, require_frame, select
from famekit.figures.style import apply_style, head_color, legend_below, shorten

__all__ = ["anatomy_contributions_bar", "history_table", "per_head_topk_table"]

PRODUCER = "famekit.analysis.recommendation_anatomy(model, dataset, user_row)"


def _item_names(frame: pd.DataFrame, label_field: str, limit: int) -> list[str]:
    if label_field in frame.columns:
        values = frame[label_field].tolist()
    else:
        values = [None] * len(frame)
    return [shorten(v, limit) if isinstance(v, str) and v else f"item {int(i)}"
            for v, i in zip(values, frame["item"])]


def anatomy_contributions_bar(anatomy, *, heads=None, label_field: str = "title",
                              label_length: int = 45, title: str | None = None,
                              height: int | None = None) -> go.Figure:
    """The fused top-k as horizontal bars stacked from each head's ``g_h P^h(v)``; rank 1 at
    the top, item titles as labels, the held-out target starred when it is in the list.

    ``anatomy``: an :class:`~famekit.analysis.Anatomy`, or its ``fused`` DataFrame.
    """
    fused, gates, target, user = _unpack(anatomy)
    require_frame(fused, "anatomy.fused", ["rank", "item", "score"], PRODUCER)
    available = sorted(int(c.split()[1]) for c in fused.columns
                       if isinstance(c, str) and c.startswith("contrib "))
    if not available:
        raise ParameterError(f"anatomy.fused has no 'contrib <h>' columns. "
                             f"Fix: pass the result of {PRODUCER}")
    chosen = select(heads, available, "heads", "head")
    fused = fused.sort_values("rank")
    names = _item_names(fused, label_field, label_length)
    labels = [f"{int(r)}. {n}" + (" \u2605" if target is not None and int(i) == target else "")
              for r, n, i in zip(fused["rank"], names, fused["item"])]
    fig = go.Figure()
    for h in chosen:
        gate = f" (gate {gates[h]:.2f})" if gates is not None else ""
        fig.add_trace(go.Bar(
            y=labels, x=fused[f"contrib {h}"], orientation="h", name=f"head {h}{gate}",
            marker_color=head_color(h), customdata=fused["item"],
            hovertemplate=f"head {h}{gate}<br>%{{y}} (item %{{customdata}})"
                          "<br>g\u00b7P = %{x:.3f}<extra></extra>",
        ))
    fig.add_trace(go.Scatter(
        y=labels, x=fused["score"], mode="markers", name="fused score (sum)",
        marker={"symbol": "diamond", "size": 10, "color": "#000000"},
        hovertemplate="%{y}<br>fused score %{x:.3f}<extra></extra>",
    ))
    fig.add_vline(x=0, line_color="#333333", line_width=1)
    fig.update_layout(barmode="relative")
    legend_below(fig, rows=-(-(len(chosen) + 1) // 3))
    fig.update_yaxes(autorange="reversed", title_text=None)
    fig.update_xaxes(title_text="score contribution g_h \u00b7 P^h(v) (logit units)")
    who = f" of user row {user}" if user is not None else ""
    subtitle = "\u2605 = the held-out target" if target is not None else None
    return apply_style(fig, title or f"Top-{len(fused)} recommendations{who}, by head", subtitle,
                       height=height or max(340, 160 + 30 * len(fused)))


def _unpack(anatomy):
    """(fused frame, gates [H] or None, target or None, user or None)."""
    if isinstance(anatomy, Anatomy):
        return anatomy.fused, np.asarray(anatomy.gates), int(anatomy.target), anatomy.user
    if isinstance(anatomy, pd.DataFrame):
        return anatomy, None, None, None
    raise ParameterError(
        f"anatomy must be a famekit.analysis.Anatomy or its fused DataFrame, got "
        f"{type(anatomy).__name__}. Fix: pass the result of {PRODUCER}"
    )


def per_head_topk_table(anatomy, *, heads=None, top_k: int | None = None,
                        label_field: str = "title", label_length: int = 38,
                        title: str | None = None, height: int | None = None) -> go.Figure:
    """A table: rank, then the fused list and each head's own top-k by ``P^h`` (titles with
    scores), so one sees what each facet would recommend on its own.

    ``anatomy``: an :class:`~famekit.analysis.Anatomy`, or a dict ``{head: DataFrame}`` like
    its ``per_head`` (columns rank, item, head_score and metadata).
    """
    if isinstance(anatomy, Anatomy):
        per_head, fused, gates = anatomy.per_head, anatomy.fused, np.asarray(anatomy.gates)
    elif isinstance(anatomy, dict) and anatomy:
        per_head, fused, gates = anatomy, None, None
    else:
        raise ParameterError(
            f"anatomy must be a famekit.analysis.Anatomy or a non-empty dict {{head: "
            f"DataFrame}}, got {type(anatomy).__name__}. Fix: pass the result of {PRODUCER}"
        )
    top_k = positive_int(top_k, "top_k")
    chosen = select(heads, sorted(per_head), "heads", "head")
    columns, headers, fills = [], [], []
    if fused is not None:
        part = require_frame(fused, "anatomy.fused", ["rank", "item", "score"], PRODUCER)
        part = part.sort_values("rank").head(top_k) if top_k else part.sort_values("rank")
        columns.append([f"{n} ({s:.3g})" for n, s in
                        zip(_item_names(part, label_field, label_length), part["score"])])
        headers.append("<b>fused</b>")
        fills.append("#F2F2F2")
    for h in chosen:
        part = require_frame(per_head[h], f"per_head[{h}]", ["rank", "item", "head_score"],
                             PRODUCER, allow_empty=True).sort_values("rank")
        part = part.head(top_k) if top_k else part
        columns.append([f"{n} ({s:.3g})" for n, s in
                        zip(_item_names(part, label_field, label_length), part["head_score"])])
        gate = f" (gate {gates[h]:.2f})" if gates is not None else ""
        headers.append(f"<b>head {h}</b>{gate}")
        fills.append(_tint(head_color(h)))
    depth = max(len(c) for c in columns)
    columns = [c + [""] * (depth - len(c)) for c in columns]
    fig = go.Figure(go.Table(
        columnwidth=[0.5] + [2.0] * len(columns),
        header={"values": ["<b>#</b>"] + headers, "align": "left",
                "fill_color": ["#E0E0E0"] + fills, "font": {"size": 12}},
        cells={"values": [list(range(1, depth + 1))] + columns, "align": "left",
               "font": {"size": 11}, "height": 22},
    ))
    return apply_style(fig, title or "Top-k per head (score in brackets)",
                       height=height or _table_height(headers, columns,
                                                      [0.5] + [2.0] * len(columns)))


def history_table(history, *, position: int | None = None, columns=None, last: int | None = None,
                  title: str | None = None, height: int | None = None) -> go.Figure:
    """A user's input items with their metadata (oldest first), the row of ``position``
    highlighted; ``last`` keeps only the most recent items.

    ``history``: an :class:`~famekit.analysis.Anatomy` or its ``history`` DataFrame (columns
    position, item and metadata).
    """
    frame = history.history if isinstance(history, Anatomy) else history
    require_frame(frame, "history", ["position", "item"], PRODUCER)
    last = positive_int(last, "last")
    meta = [c for c in frame.columns if c not in ("position", "item")]
    shown = select(columns, meta, "columns", "column") if columns is not None else meta
    frame = frame.sort_values("position")
    if last:
        frame = frame.tail(last)
    if position is not None and position not in set(frame["position"].tolist()):
        raise ParameterError(
            f"position={position!r} is not among the shown positions "
            f"{int(frame['position'].min())}..{int(frame['position'].max())}. "
            "Fix: choose a shown position (or a larger last=)"
        )
    cells = [frame["position"].tolist(), frame["item"].tolist()]
    for column in shown:
        cells.append([_cell_text(v) for v in frame[column]])
    fill = ["#FFE8A3" if p == position else "#F7F7F7" for p in frame["position"]]
    widths = [0.7, 0.7] + [2.5 if c == "title" else 1.3 for c in shown]
    headers = ["position", "item", *shown]
    fig = go.Figure(go.Table(
        columnwidth=widths,
        header={"values": [f"<b>{c}</b>" for c in headers],
                "align": "left", "fill_color": "#E0E0E0", "font": {"size": 12}},
        cells={"values": cells, "align": "left", "font": {"size": 11}, "height": 22,
               "fill_color": [fill] * len(cells)},
    ))
    return apply_style(fig, title or "History (oldest first)",
                       f"highlighted: position {position}" if position is not None else None,
                       height=height or min(900, _table_height(
                           headers, [[str(v) for v in c] for c in cells], widths)))


def _cell_text(value, limit: int = 60) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        value = " > ".join(str(v) for v in list(value)[:3])
    if is_missing_label(value):
        return ""
    return shorten(value, limit)


def _table_height(headers: list[str], columns: list[list[str]], widths: list[float],
                  width: int = 700) -> int:
    """Figure height that shows every row of a plotly Table whose cells wrap their text.

    Plotly grows a row to its tallest cell; estimate that from the characters per line of
    each column (~6.5 px a character at 11-12 px font; ``widths`` are plotly's relative
    ``columnwidth``) at the figure's default ``width``. ``columns`` exclude the first
    (``widths[0]``), a narrow number column that never wraps.
    """
    usable = width - 100

    def lines(text: str, share: float) -> int:
        per_line = max(6, int(usable * share / 6.5) - 2)
        plain = str(text).replace("<b>", "").replace("</b>", "")
        return max(1, -(-len(plain) // per_line))

    shares = [w / sum(widths) for w in widths[1:]]
    header = 10 + 17 * max(lines(h, s) for h, s in zip(headers[-len(shares):], shares))
    rows = sum(10 + 16 * max(lines(c[r], s) for c, s in zip(columns[-len(shares):], shares))
               for r in range(len(columns[0])))
    return 160 + header + rows  # + the top (title) and bottom margins


def _tint(hex_colour: str, amount: float = 0.75) -> str:
    """A pale version of ``hex_colour`` (mixed with white) for table headers."""
    rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    mixed = [round(c + (255 - c) * amount) for c in rgb]
    return "#" + "".join(f"{c:02X}" for c in mixed)
