"""An ipywidgets explorer of one user at a time: routing, gates, history and top-k per head.

>>> from famekit.widgets import UserExplorer
>>> explorer = UserExplorer(run, dataset)        # or UserExplorer(model, dataset)
>>> explorer                                      # the live widget box in Jupyter
>>> explorer.show_static()                        # plain figures (saved notebooks, HTML)

A thin shell: :class:`famekit.analysis.user_view.UserView` computes (and caches) the user's
DataFrames, :mod:`famekit.figures.explorer` draws them, and this module only wires controls to
the two. Every control calls a plain method (:meth:`UserExplorer.select_user`,
:meth:`~UserExplorer.select_position`, :meth:`~UserExplorer.select_head`,
:meth:`~UserExplorer.sort_users`, :meth:`~UserExplorer.filter_users`,
:meth:`~UserExplorer.search_users`) that updates the existing ``go.FigureWidget`` objects in
place; tests and scripts call the same methods.

One source of truth: ``explorer.user`` (a dataset row) is the selected user, and every control
is set from it. The user slider walks ``explorer.order``, every user of the split after the
current sort, filter and search; the row box takes any row of the split, and typing a row
that the filter hides clears the filter (the status line says so).

Saved notebooks cannot run Python, so widgets there show nothing useful: call
:meth:`UserExplorer.show_static` (or :meth:`~UserExplorer.static_figures`) for a static
rendering of the current view; the HTML representation carries the history and top-k tables.
"""

from __future__ import annotations

import html

import numpy as np

from famekit.analysis.user_view import DEFAULT_MAX_USERS, UserView
from famekit.checkpoints import Run
from famekit.datasets import SeqDataset
from famekit.errors import FamekitError, ParameterError
from famekit.figures.explorer import explorer_figures, history_html, refresh_figure, topk_html
from famekit.figures.facets import name_heads
from famekit.figures.style import without_template
from famekit.runs import dataset_for_run

__all__ = ["UserExplorer"]


class UserExplorer:
    """Explore one user at a time: routing heatmap (positions x experts) of a chosen head,
    gate weights at a chosen position and along the sequence, the history with metadata and
    the fused and per-head top-k lists at that position, over every user of the split (sorted,
    filtered and searched by the held-out item's rank, the gate's entropy, the driving facet).

    Args:
        model: a FAME model, or a :class:`famekit.checkpoints.Run` (its model; its dataset is
            reloaded from the run directory when ``dataset`` is None, and checked otherwise).
        dataset: the :class:`~famekit.datasets.SeqDataset` the model was trained on.
        split, users, top_k, max_users: as in :class:`~famekit.analysis.user_view.UserView`
            (``users`` are collected up front; every other user when first shown).
        head_labels: the heads' names (default ``"head h"``; a FAME+ run names them by facet).
        user: the dataset row shown first (default :meth:`UserView.default_user`: the first
            user whose held-out item is in the top-k).
        progress: show a bar over the pass that ranks every user.
    """

    def __init__(self, model, dataset: SeqDataset | None = None, split: str = "test",
                 users=None, top_k: int = 10, max_users: int = DEFAULT_MAX_USERS,
                 head_labels=None, user=None, progress: bool = False):
        if isinstance(model, Run):  # a FAME+ run names its heads by facet ("head 0 · genre")
            head_labels = model.head_labels if head_labels is None else head_labels
            model, dataset = model.model, dataset_for_run(model, dataset)
        self.view = view = UserView(model, dataset, split, users, top_k, max_users,
                                    progress=progress)
        self.head_labels = (list(head_labels) if head_labels is not None
                            else [f"head {h}" for h in range(view.n_heads)])
        if len(self.head_labels) != view.n_heads or not all(
                isinstance(label, str) for label in self.head_labels):
            raise ParameterError(
                f"head_labels={head_labels!r} must be {view.n_heads} names, one per head. Fix: "
                "pass the run's own (Run.head_labels / opened.head_labels) or leave it out")
        self.model, self.dataset, self.split, self.top_k = model, dataset, split, view.top_k
        self.activations, self.n_heads = view.activations, view.n_heads
        self.table = view.table  # every user of the split (famekit.analysis.user_table)
        self.sort, self.filter, self.query = DEFAULT_SORT, ALL_USERS, ""
        self.order = self.table["user"].to_numpy()  # int64 [U]: the slider's users, in order
        self.user = view.check_user(view.default_user() if user is None else user)
        self.head = 0
        self.position = view.n_positions(self.user) - 1
        self._syncing = False  # True while controls are set from code (no feedback loops)
        self._build()

    @property
    def users(self) -> np.ndarray:
        """The dataset rows on the user slider, in its order (``order``)."""
        return self.order

    @property
    def user_activations(self):
        """The :class:`~famekit.analysis.Activations` holding the current user: ``activations``
        for the users collected up front, a one-user collection for the others."""
        return self.view.activations_of(self.user)

    def sorts(self) -> list[str]:
        """The sort menu: :data:`SORT_KEYS`, by driving facet only where it is known."""
        return [name for name, (column, _) in SORT_KEYS.items() if column in self.table.columns]

    def filters(self) -> list[str]:
        """The filter menu: every user, hits, misses and each planted driving facet."""
        names = [ALL_USERS, f"hits (held-out item in the top-{self.top_k})", "misses"]
        if "driving_facet" in self.table.columns:
            names += [f"{FACET_FILTER}{f}" for f in sorted(self.table["driving_facet"].unique())]
        return names

    def user_summary(self) -> str:
        """One line on the selected user: held-out item, its rank, the gate's entropy."""
        row = self.table.loc[self.table["user"] == self.user].iloc[0]
        facet = (f"; driving facet {row['driving_facet']}" if "driving_facet" in row else "")
        where = np.flatnonzero(self.order == self.user)
        place = (f"{where[0] + 1} of {len(self.order)} on the slider" if len(where)
                 else "not on the slider")
        return (f"user row {self.user} ({place}): {row['length']} items; held-out item "
                f"{row['target_label']} at fused rank {row['rank']}; gate entropy "
                f"{row['gate_entropy']:.2f} of its maximum{facet}")

    # ------------------------------------------------------------------------ views
    def _figures(self, parts=None) -> dict:
        view, row = self.view, self.user
        figures = explorer_figures(view.routing(row, self.head), view.gates(row),
                                   self._anatomy(), items=self.dataset.items, user=row,
                                   head=self.head, position=self.position, top_k=self.top_k,
                                   parts=parts, history_row=view.history_row(row, self.position))
        return {name: name_heads(fig, self.head_labels) for name, fig in figures.items()}

    def _anatomy(self):
        return self.view.anatomy(self.user, self.position)

    def static_figures(self) -> dict:
        """Plain ``go.Figure`` objects of the current view: ``routing``, ``gate_bar``,
        ``gates``, ``history`` and ``topk`` (they need no running kernel to display)."""
        return self._figures()

    def show_static(self) -> None:
        """Display :meth:`static_figures` with IPython (works in saved notebooks and HTML)."""
        from IPython.display import display

        for fig in self.static_figures().values():
            display(fig)

    def _html(self, table: str) -> str:
        """The ``"topk"`` or ``"history"`` HTML table of the current view."""
        if table == "topk":
            return topk_html(self._anatomy(), self.top_k, self.head_labels)
        return history_html(self.view.history(self.user),
                            self.view.history_row(self.user, self.position))

    def _repr_html_(self) -> str:
        """Static HTML fallback (tables only) for frontends that cannot show widgets."""
        return (f"<div><p><b>famekit UserExplorer</b>: {html.escape(self.user_summary())}; "
                f"head {self.head}, position {self.position}. Run the notebook for the live "
                f"explorer, or call <code>explorer.show_static()</code>.</p>"
                f"{self._html('topk')}<br>{self._html('history')}</div>")

    def _repr_mimebundle_(self, **kwargs):
        """Jupyter shows the widget box (``display(explorer)`` or the explorer as a cell's
        result); :meth:`_repr_html_` adds the static fallback."""
        return self.widget._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------------------ widgets
    def _build(self) -> None:
        import ipywidgets as W
        import plotly.graph_objects as go

        self.user_slider = W.IntSlider(value=0, min=0, max=max(len(self.order) - 1, 0),
                                       description="user #", continuous_update=False)
        self.user_box = W.IntText(value=self.user, description="dataset row")
        self.sort_menu = W.Dropdown(options=self.sorts(), value=self.sort, description="sort")
        self.filter_menu = W.Dropdown(options=self.filters(), value=self.filter,
                                      description="show")
        self.search_box = W.Text(value="", description="search", continuous_update=False,
                                 placeholder="row or held-out title")
        self.position_slider = W.IntSlider(value=self.position, min=0, max=self.position,
                                           description="position", continuous_update=False)
        self.head_selector = W.ToggleButtons(
            options=[(self.head_labels[h], h) for h in range(self.n_heads)], value=self.head,
            description="head")
        self.summary = W.HTML("")
        self.status = W.HTML("")
        figures = self._figures(["routing", "gate_bar", "gates"])
        self.routing_widget = go.FigureWidget(figures["routing"])
        self.gate_bar_widget = go.FigureWidget(figures["gate_bar"])
        self.gates_widget = go.FigureWidget(figures["gates"])
        self.history_html = W.HTML(self._html("history"))
        self.topk_html = W.HTML(self._html("topk"))
        for control, action in [
                (self.user_slider, lambda i: self.select_user(int(self.order[int(i)]))),
                (self.user_box, self.select_user), (self.sort_menu, self.sort_users),
                (self.filter_menu, self.filter_users), (self.search_box, self.search_users),
                (self.position_slider, self.select_position),
                (self.head_selector, self.select_head)]:
            control.observe(lambda change, act=action: self._guarded(act, change["new"]),
                            names="value")
        controls = W.VBox([W.HBox([self.sort_menu, self.filter_menu, self.search_box]),
                           W.HBox([self.user_slider, self.user_box]), self.summary,
                           W.HBox([self.position_slider]), self.head_selector, self.status])
        self.widget = W.VBox([
            controls, self.routing_widget,
            W.HBox([self.gate_bar_widget, self.gates_widget],
                   layout=W.Layout(flex_flow="row wrap")),
            W.HBox([self.topk_html]), W.HBox([self.history_html]),
        ])
        self._sync_controls()

    def _guarded(self, action, value) -> None:
        """Run a control's action; its note (or nothing) goes to the status line, and a famekit
        error too, in red, instead of a traceback (the controls go back to the state)."""
        if self._syncing:
            return
        try:
            note = action(value)
            self.status.value = html.escape(note) if note else ""
        except FamekitError as err:
            self._sync_controls()
            self.status.value = f'<span style="color:#c00000">{html.escape(str(err))}</span>'

    def _sync_controls(self) -> None:
        """Set every control from the state (``user``, ``order``, ``position``, ``head``)."""
        if not hasattr(self, "widget"):
            return
        self._syncing = True
        try:
            self.user_slider.max = max(len(self.order) - 1, 0)
            where = np.flatnonzero(self.order == self.user)
            if len(where):
                self.user_slider.value = int(where[0])
            self.user_box.value = self.user
            self.sort_menu.value, self.filter_menu.value = self.sort, self.filter
            self.search_box.value = self.query
            self.position_slider.max = max(self.view.n_positions(self.user) - 1, 0)
            self.position_slider.value, self.head_selector.value = self.position, self.head
            self.summary.value = html.escape(self.user_summary())
        finally:
            self._syncing = False

    def _update(self, *parts) -> None:
        """Set the controls to the current state, then redraw ``parts`` in place."""
        self._sync_controls()
        if not hasattr(self, "widget"):
            return
        figures = [p for p in parts if p not in ("history", "topk")]
        with without_template():  # the widgets keep theirs; building it costs ~40 ms a figure
            built = self._figures(figures) if figures else {}
        for name, fig in built.items():
            refresh_figure(getattr(self, f"{name}_widget"), fig)
        for table in {"history", "topk"} & set(parts):
            getattr(self, f"{table}_html").value = self._html(table)

    # ------------------------------------------------------------------------ the user list
    def _ordered(self, sort: str, filter: str, query: str) -> np.ndarray:
        """int64 [<= U]: the dataset rows that pass ``filter`` and ``query``, sorted."""
        table = self.table
        if filter not in self.filters():
            raise ParameterError(f"filter {filter!r} is not one of {self.filters()}. Fix: "
                                 "choose one of those")
        if filter.startswith("hits"):
            table = table[table["rank"] <= self.top_k]
        elif filter == "misses":
            table = table[table["rank"] > self.top_k]
        elif filter.startswith(FACET_FILTER):
            table = table[table["driving_facet"] == filter[len(FACET_FILTER):]]
        query = query.strip()
        if query.isdigit():
            table = table[table["user"] == int(query)]
        elif query:
            table = table[table["target_label"].str.contains(query, case=False, regex=False)]
        if sort not in self.sorts():
            raise ParameterError(f"sort {sort!r} is not one of {self.sorts()}. Fix: choose one "
                                 "of those")
        column, ascending = SORT_KEYS[sort]
        return table.sort_values([column, "user"], ascending=[ascending, True],
                                 kind="stable")["user"].to_numpy()

    def _reorder(self, sort: str, filter: str, query: str) -> str | None:
        """Make (sort, filter, query) the slider's list; keep the user when the list has them,
        else select its first user. An empty list is refused and changes nothing."""
        order = self._ordered(sort, filter, query)
        if not len(order):
            raise ParameterError(
                f"no user of split {self.split!r} matches (show: {filter!r}, search: "
                f"{query!r}). Fix: clear the search or show all users")
        self.sort, self.filter, self.query, self.order = sort, filter, query, order
        if self.user in order:
            self._update()
            return None
        self.select_user(int(order[0]))
        return f"user row {self.user} is the first of the {len(order)} users listed"

    def sort_users(self, sort: str) -> str | None:
        """Order the slider's users by one of :meth:`sorts`."""
        return self._reorder(sort, self.filter, self.query)

    def filter_users(self, name: str) -> str | None:
        """Show only the users of one of :meth:`filters` on the slider."""
        return self._reorder(self.sort, name, self.query)

    def search_users(self, text: str) -> str | None:
        """Show only the users whose row is ``text`` or whose held-out item's title contains
        it (case-insensitive); an empty text shows them all again."""
        return self._reorder(self.sort, self.filter, str(text))

    # ------------------------------------------------------------------------ callbacks
    def select_user(self, row) -> str | None:
        """Show dataset row ``row`` (its last position); collects it first if needed. A row
        that the filter or search hides clears them, and the note says so."""
        row = self.view.check_user(row)  # a clear error for users not in the split
        self.view.anatomy(row)  # before the state changes: an error leaves the view as it was
        note = None
        if row not in self.order:
            self.filter, self.query = ALL_USERS, ""
            self.order = self._ordered(self.sort, self.filter, self.query)
            note = (f"user row {row} was hidden by the filter or the search: showing all "
                    "users again")
        self.user, self.position = row, self.view.n_positions(row) - 1
        self._update("routing", "gate_bar", "gates", "history", "topk")
        return note

    def select_position(self, position) -> None:
        """Mark input position ``position`` (0 = the oldest item the model sees); the top-k
        lists become those of the state at that position."""
        self.position = self.view.check_position(self.user, position)
        self._update("routing", "gate_bar", "gates", "history", "topk")

    def select_head(self, head) -> None:
        """Show the routing of head ``head``."""
        self.head = self.view.check_head(head)
        self._update("routing")


ALL_USERS = "all users"
FACET_FILTER = "driving facet: "
# The sort menu: label -> (user_table column, ascending); ties go by dataset row.
SORT_KEYS = {
    "dataset row": ("user", True),
    "held-out rank, best first": ("rank", True),
    "held-out rank, worst first": ("rank", False),
    "gate entropy, lowest first": ("gate_entropy", True),
    "gate entropy, highest first": ("gate_entropy", False),
    "driving facet (planted worlds)": ("driving_facet", True),
}
DEFAULT_SORT = "dataset row"
