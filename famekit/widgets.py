"""An ipywidgets explorer of one user at a time: routing, gates, history and top-k per head.

>>> from famekit.widgets import UserExplorer
>>> explorer = UserExplorer(run, dataset)        # or UserExplorer(model, dataset)
>>> explorer                                      # the live widget box in Jupyter
>>> explorer.show_static()                        # plain figures (saved notebooks, HTML)

A thin shell over :mod:`famekit.analysis` and :mod:`famekit.figures`: the activations of the
explorer's users are collected **once** (:func:`famekit.analysis.collect_activations`), so
moving the position slider or switching heads only redraws from memory; changing the user
computes that user's top-k lists once (one forward pass) and caches them. A user typed in
the box who is not among the collected ones is collected on demand.

Every control calls a plain method (:meth:`UserExplorer.select_user`,
:meth:`~UserExplorer.select_position`, :meth:`~UserExplorer.select_head`) that updates the
existing ``go.FigureWidget`` objects in place; tests and scripts call the same methods.
Positions count the items the model sees (the last ``max_len`` of the input, 0 = the oldest);
the last position is the state that scores the held-out item, so the top-k lists belong to it.

Saved notebooks cannot run Python, so widgets there show nothing useful: call
:meth:`UserExplorer.show_static` (or :meth:`~UserExplorer.static_figures`) for a static
rendering of the current view, and the HTML representation of the explorer carries the
history and top-k tables as a plain-HTML fallback.
"""

from __future__ import annotations

import html
import json
import numbers

import numpy as np
import pandas as pd

from famekit.analysis import (
    Activations,
    collect_activations,
    gates_along_sequence,
    recommendation_anatomy,
    user_routing,
)
from famekit.analysis.activations import require_fame
from famekit.checkpoints import Run
from famekit.datasets import SeqDataset
from famekit.errors import FamekitError, ParameterError
from famekit.figures import (
    gates_along_sequence_chart,
    gates_at_position_bar,
    history_table,
    per_head_topk_table,
    user_routing_heatmap,
)
from famekit.figures.style import head_color

__all__ = ["UserExplorer"]

DEFAULT_MAX_USERS = 500  # users collected up front when `users` is None (the first ones)
# The two gate charts share a row (they wrap on narrow screens): ~940 px together.
GATE_BAR_WIDTH, GATES_WIDTH = 400, 540


def _dataset_of_run(run: Run) -> SeqDataset:
    """The dataset a run was trained on, reloaded from its ``train_args.json``."""
    from famekit.training import TRAIN_ARGS_FILE, load_dataset_of

    path = run.run_dir / TRAIN_ARGS_FILE
    if not path.is_file():
        raise ParameterError(
            f"{run.run_dir} has no {TRAIN_ARGS_FILE} to reload its dataset from. "
            "Fix: pass the dataset explicitly: UserExplorer(run, dataset)"
        )
    try:
        described = json.loads(path.read_text(encoding="utf-8"))["dataset"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ParameterError(
            f"{path} does not describe the run's dataset ({err}). "
            "Fix: pass the dataset explicitly: UserExplorer(run, dataset)"
        ) from err
    return load_dataset_of(described)


def _html_table(frame: pd.DataFrame, highlight: int | None = None,
                header_colours: list[str] | None = None) -> str:
    """A small, escaped HTML table (row ``highlight`` marked), no JavaScript."""
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


def _text(value) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return " > ".join(str(v) for v in list(value)[:3])
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}"
    return str(value)


def _refresh(widget, fig) -> None:
    """Replace the data and layout of FigureWidget ``widget`` by those of ``fig``, in place
    (the widget object, and the view showing it, stay the same)."""
    with widget.batch_update():
        same_traces = len(widget.data) == len(fig.data) and all(
            old.type == new.type for old, new in zip(widget.data, fig.data))
        if same_traces:
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


class UserExplorer:
    """Explore one user at a time: routing heatmap (positions x experts) of a chosen head,
    gate weights at a chosen position and along the sequence, the history with metadata and
    each head's top-k list.

    Args:
        model: a FAME model, or a :class:`famekit.checkpoints.Run` (its model; its dataset is
            reloaded from the run directory when ``dataset`` is None).
        dataset: the :class:`~famekit.datasets.SeqDataset` the model was trained on.
        split: whose inputs to show, ``"test"`` (default) or ``"valid"``.
        users: dataset rows to collect up front (default: the first ``max_users`` evaluated
            users); others can still be typed in the box.
        top_k: length of the top-k lists.
        max_users: how many users to collect when ``users`` is None.
    """

    def __init__(self, model, dataset: SeqDataset | None = None, split: str = "test",
                 users=None, top_k: int = 10, max_users: int = DEFAULT_MAX_USERS):
        if isinstance(model, Run):
            run = model
            model = run.model
            if dataset is None:
                dataset = _dataset_of_run(run)
            recorded = (run.meta.get("dataset") or {}).get("fingerprint")
            if recorded and recorded != dataset.fingerprint:
                raise ParameterError(
                    f"the run {run.run_dir} was trained on data with fingerprint {recorded}, "
                    f"but dataset {dataset.name!r} has {dataset.fingerprint}. Fix: pass the "
                    "dataset the run was trained on"
                )
        if not isinstance(dataset, SeqDataset):
            raise ParameterError(
                f"dataset must be a famekit SeqDataset, got {type(dataset).__name__}. Fix: "
                "UserExplorer(model, famekit.datasets.load(name)) with the training data"
            )
        require_fame(model)
        if not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or top_k < 1:
            raise ParameterError(f"top_k={top_k!r} is invalid. Fix: pass a positive integer")
        self.model, self.dataset, self.split, self.top_k = model, dataset, split, int(top_k)
        if users is None:
            rows = dataset.split().eval_inputs(split)[2]  # also validates `split`
            if not len(rows):
                raise ParameterError(
                    f"dataset {dataset.name!r} has no user with 3 or more items to explore. "
                    "Fix: use a dataset with longer sequences"
                )
            users = rows[: max(1, int(max_users))]
        else:
            users = np.asarray(list(users), dtype=np.int64)
            if not len(users):
                raise ParameterError("users is empty. Fix: pass some dataset rows, or None for "
                                     f"the first {max_users} evaluated users")
        self.activations: Activations = collect_activations(model, dataset, split, users=users)
        self.users = self.activations.users  # int64 [U], dataset rows, in slider order
        self._extra: dict[int, Activations] = {}  # typed users outside the collection
        self._anatomy: dict[int, object] = {}  # row -> famekit.analysis.Anatomy
        self.user = int(self.users[0])
        self.head = 0
        self.position = self._n_positions(self.user) - 1
        self._syncing = False  # True while controls are set from code (no feedback loops)
        self._build()

    # ------------------------------------------------------------------------ data access
    @property
    def n_heads(self) -> int:
        return self.activations.n_heads

    @property
    def user_activations(self) -> Activations:
        """The :class:`~famekit.analysis.Activations` holding the current user: ``activations``
        for the users collected up front, a one-user collection for a typed-in user."""
        return self._acts_of(self.user)

    def _acts_of(self, row: int) -> Activations:
        if np.any(self.users == row):
            return self.activations
        if row not in self._extra:
            self._extra[row] = collect_activations(self.model, self.dataset, self.split,
                                                   users=[row])
        return self._extra[row]

    def _n_positions(self, row: int) -> int:
        acts = self._acts_of(row)
        sl = acts.user_slice(acts.index_of(row))
        return sl.stop - sl.start

    def _anatomy_of(self, row: int):
        if row not in self._anatomy:
            self._anatomy[row] = recommendation_anatomy(self.model, self.dataset, row,
                                                        k=self.top_k, split=self.split)
        return self._anatomy[row]

    def _along(self) -> pd.DataFrame:
        return gates_along_sequence(self._acts_of(self.user), self.user)

    def _routing(self) -> pd.DataFrame:
        return user_routing(self._acts_of(self.user), self.user, self.head)

    # ------------------------------------------------------------------------ figures
    def _routing_figure(self):
        return user_routing_heatmap(self._routing(), items=self.dataset.items, head=self.head,
                                    position=self.position,
                                    title=f"Routing of head {self.head}, user row {self.user}",
                                    height=300)

    def _gate_bar_figure(self):
        fig = gates_at_position_bar(self._along(), self.position, items=self.dataset.items,
                                    height=300)
        return fig.update_layout(width=GATE_BAR_WIDTH)

    def _gates_figure(self):
        fig = gates_along_sequence_chart(self._along(), items=self.dataset.items,
                                         position=self.position, height=300)
        return fig.update_layout(width=GATES_WIDTH)

    def _history_offset(self) -> int:
        """History rows before the first position the model sees (inputs > max_len)."""
        return len(self._anatomy_of(self.user).history) - self._n_positions(self.user)

    def static_figures(self) -> dict:
        """Plain ``go.Figure`` objects of the current view: ``routing``, ``gate_bar``,
        ``gates``, ``history`` and ``topk`` (they need no running kernel to display)."""
        anatomy = self._anatomy_of(self.user)
        return {
            "routing": self._routing_figure(),
            "gate_bar": self._gate_bar_figure(),
            "gates": self._gates_figure(),
            "history": history_table(anatomy, position=self.position + self._history_offset(),
                                     last=max(10, len(anatomy.history) - self.position
                                              - self._history_offset()),
                                     columns=[c for c in ("title", "brand", "genre",
                                                          "top_category", "price_tier")
                                              if c in anatomy.history.columns] or None,
                                     title=f"History of user row {self.user} (oldest first)"),
            "topk": per_head_topk_table(anatomy, title=f"Top-{self.top_k} per head, user row "
                                                       f"{self.user} (score in brackets)"),
        }

    def show_static(self) -> None:
        """Display :meth:`static_figures` with IPython (works in saved notebooks and HTML)."""
        from IPython.display import display

        for fig in self.static_figures().values():
            display(fig)

    # ------------------------------------------------------------------------ HTML parts
    def _history_html(self) -> str:
        anatomy = self._anatomy_of(self.user)
        frame = anatomy.history.drop(columns=[c for c in ("categories", "genres")
                                              if c in anatomy.history.columns])
        return ("<b>History (oldest first; highlighted = selected position)</b>"
                + _html_table(frame, highlight=self.position + self._history_offset()))

    def _topk_html(self) -> str:
        anatomy = self._anatomy_of(self.user)
        label = "title" if "title" in anatomy.fused.columns else "item"
        columns = {"rank": list(range(1, self.top_k + 1))}

        def names(frame: pd.DataFrame, score: str) -> list[str]:
            out = [f"{_text(v)} ({s:.3g})" for v, s in zip(frame[label], frame[score])]
            return out + [""] * (self.top_k - len(out))

        columns["fused"] = names(anatomy.fused, "score")
        colours = ["#e0e0e0", "#f2f2f2"]
        for h, frame in sorted(anatomy.per_head.items()):
            columns[f"head {h} (gate {anatomy.gates[h]:.2f})"] = names(frame, "head_score")
            colours.append(head_color(h) + "40")  # the head's colour, 25 % opaque
        target = (f"held-out item {anatomy.target}, fused rank {anatomy.target_rank + 1} "
                  "(1 = best)")
        return (f"<b>Top-{self.top_k} at the last position</b> ({html.escape(target)})"
                + _html_table(pd.DataFrame(columns), header_colours=colours))

    def _repr_html_(self) -> str:
        """Static HTML fallback (tables only) for frontends that cannot show widgets."""
        return (f"<div><p><b>famekit UserExplorer</b>: user row {self.user}, head {self.head}, "
                f"position {self.position}. Run the notebook for the live explorer, or call "
                f"<code>explorer.show_static()</code>.</p>{self._topk_html()}<br>"
                f"{self._history_html()}</div>")

    # ------------------------------------------------------------------------ widgets
    def _build(self) -> None:
        import ipywidgets as W
        import plotly.graph_objects as go

        self.user_slider = W.IntSlider(value=0, min=0, max=len(self.users) - 1,
                                       description="user #", continuous_update=False)
        self.user_box = W.IntText(value=self.user, description="dataset row")
        self.position_slider = W.IntSlider(value=self.position, min=0, max=self.position,
                                           description="position", continuous_update=False)
        self.head_selector = W.ToggleButtons(
            options=[(f"head {h}", h) for h in range(self.n_heads)], value=self.head,
            description="head")
        self.status = W.HTML("")
        self.routing_widget = go.FigureWidget(self._routing_figure())
        self.gate_bar_widget = go.FigureWidget(self._gate_bar_figure())
        self.gates_widget = go.FigureWidget(self._gates_figure())
        self.history_html = W.HTML(self._history_html())
        self.topk_html = W.HTML(self._topk_html())

        self.user_slider.observe(self._on_user_slider, names="value")
        self.user_box.observe(self._on_user_box, names="value")
        self.position_slider.observe(self._on_position, names="value")
        self.head_selector.observe(self._on_head, names="value")

        controls = W.VBox([W.HBox([self.user_slider, self.user_box]),
                           W.HBox([self.position_slider]), self.head_selector, self.status])
        self.widget = W.VBox([
            controls,
            self.routing_widget,
            W.HBox([self.gate_bar_widget, self.gates_widget],
                   layout=W.Layout(flex_flow="row wrap")),
            W.HBox([self.topk_html]),
            W.HBox([self.history_html]),
        ])

    def _repr_mimebundle_(self, **kwargs):
        """Jupyter shows the widget box (``display(explorer)`` or the explorer as a cell's
        result); :meth:`_repr_html_` adds the static fallback."""
        return self.widget._repr_mimebundle_(**kwargs)

    def _guarded(self, action, value) -> None:
        """Run a control's action; show famekit errors in the status line, not a traceback."""
        if self._syncing:
            return
        try:
            action(value)
            self.status.value = ""
        except FamekitError as err:
            self.status.value = f'<span style="color:#c00000">{html.escape(str(err))}</span>'

    def _on_user_slider(self, change) -> None:
        self._guarded(lambda i: self.select_user(int(self.users[int(i)])), change["new"])

    def _on_user_box(self, change) -> None:
        self._guarded(self.select_user, change["new"])

    def _on_position(self, change) -> None:
        self._guarded(self.select_position, change["new"])

    def _on_head(self, change) -> None:
        self._guarded(self.select_head, change["new"])

    def _sync_controls(self) -> None:
        self._syncing = True
        try:
            hits = np.flatnonzero(self.users == self.user)
            if len(hits):
                self.user_slider.value = int(hits[0])
            self.user_box.value = self.user
            last = self._n_positions(self.user) - 1
            self.position_slider.max = max(last, 0)
            self.position_slider.value = self.position
            self.head_selector.value = self.head
        finally:
            self._syncing = False

    def _redraw(self, user_changed: bool = False) -> None:
        _refresh(self.routing_widget, self._routing_figure())
        _refresh(self.gate_bar_widget, self._gate_bar_figure())
        _refresh(self.gates_widget, self._gates_figure())
        self.history_html.value = self._history_html()
        if user_changed:
            self.topk_html.value = self._topk_html()

    # ------------------------------------------------------------------------ callbacks
    def select_user(self, row) -> None:
        """Show dataset row ``row`` (its last position); collects it first if needed."""
        if not isinstance(row, numbers.Integral) or isinstance(row, bool):
            raise ParameterError(f"user row {row!r} is not an integer. "
                                 f"Fix: pass a dataset row in 0..{self.dataset.n_users - 1}")
        row = int(row)
        if not 0 <= row < self.dataset.n_users:
            raise ParameterError(f"user row {row} does not exist. "
                                 f"Fix: pass a dataset row in 0..{self.dataset.n_users - 1}")
        n_positions = self._n_positions(row)  # raises a clear error for users not evaluated
        self._anatomy_of(row)
        self.user, self.position = row, n_positions - 1
        self._sync_controls()
        self._redraw(user_changed=True)

    def select_position(self, position) -> None:
        """Mark input position ``position`` (0 = the oldest item the model sees)."""
        last = self._n_positions(self.user) - 1
        if not isinstance(position, numbers.Integral) or not 0 <= int(position) <= last:
            raise ParameterError(f"position {position!r} is outside this user's sequence. "
                                 f"Fix: choose 0..{last}")
        self.position = int(position)
        self._sync_controls()
        self._redraw()

    def select_head(self, head) -> None:
        """Show the routing of head ``head``."""
        if not isinstance(head, numbers.Integral) or not 0 <= int(head) < self.n_heads:
            raise ParameterError(f"head {head!r} does not exist. "
                                 f"Fix: choose 0..{self.n_heads - 1}")
        self.head = int(head)
        self._sync_controls()
        _refresh(self.routing_widget, self._routing_figure())
