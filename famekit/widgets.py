"""An ipywidgets explorer of one user at a time: routing, gates, history and top-k per head.

>>> from famekit.widgets import UserExplorer
>>> explorer = UserExplorer(run, dataset)        # or UserExplorer(model, dataset)
>>> explorer                                      # the live widget box in Jupyter
>>> explorer.show_static()                        # plain figures (saved notebooks, HTML)

A thin shell: :class:`famekit.analysis.user_view.UserView` computes (and caches) the user's
DataFrames, :mod:`famekit.figures.explorer` draws them, and this module only wires controls to
the two. Every control calls a plain method (:meth:`UserExplorer.select_user`,
:meth:`~UserExplorer.select_position`, :meth:`~UserExplorer.select_head`) that updates the
existing ``go.FigureWidget`` objects in place; tests and scripts call the same methods.

Saved notebooks cannot run Python, so widgets there show nothing useful: call
:meth:`UserExplorer.show_static` (or :meth:`~UserExplorer.static_figures`) for a static
rendering of the current view; the HTML representation carries the history and top-k tables.
"""

from __future__ import annotations

import html

from famekit.analysis.user_view import DEFAULT_MAX_USERS, UserView
from famekit.checkpoints import Run
from famekit.datasets import SeqDataset
from famekit.errors import FamekitError, ParameterError
from famekit.figures.explorer import explorer_figures, history_html, refresh_figure, topk_html
from famekit.figures.facets import name_heads
from famekit.runs import dataset_for_run

__all__ = ["UserExplorer"]


class UserExplorer:
    """Explore one user at a time: routing heatmap (positions x experts) of a chosen head,
    gate weights at a chosen position and along the sequence, the history with metadata and
    each head's top-k list.

    Args:
        model: a FAME model, or a :class:`famekit.checkpoints.Run` (its model; its dataset is
            reloaded from the run directory when ``dataset`` is None, and checked otherwise).
        dataset: the :class:`~famekit.datasets.SeqDataset` the model was trained on.
        split, users, top_k, max_users: as in :class:`~famekit.analysis.user_view.UserView`
            (users typed in the box outside ``users`` are collected on demand).
    """

    def __init__(self, model, dataset: SeqDataset | None = None, split: str = "test",
                 users=None, top_k: int = 10, max_users: int = DEFAULT_MAX_USERS,
                 head_labels=None):
        if isinstance(model, Run):  # a FAME+ run names its heads by facet ("head 0 · genre")
            head_labels = model.head_labels if head_labels is None else head_labels
            model, dataset = model.model, dataset_for_run(model, dataset)
        self.view = view = UserView(model, dataset, split, users, top_k, max_users)
        self.head_labels = (list(head_labels) if head_labels is not None
                            else [f"head {h}" for h in range(view.n_heads)])
        if len(self.head_labels) != view.n_heads or not all(
                isinstance(label, str) for label in self.head_labels):
            raise ParameterError(
                f"head_labels={head_labels!r} must be {view.n_heads} names, one per head. Fix: "
                "pass the run's own (Run.head_labels / opened.head_labels) or leave it out")
        self.model, self.dataset, self.split, self.top_k = model, dataset, split, view.top_k
        self.activations, self.users, self.n_heads = view.activations, view.users, view.n_heads
        self.user, self.head = int(self.users[0]), 0
        self.position = view.n_positions(self.user) - 1
        self._syncing = False  # True while controls are set from code (no feedback loops)
        self._build()

    @property
    def user_activations(self):
        """The :class:`~famekit.analysis.Activations` holding the current user: ``activations``
        for the users collected up front, a one-user collection for a typed-in user."""
        return self.view.activations_of(self.user)

    # ------------------------------------------------------------------------ views
    def _figures(self, parts=None) -> dict:
        view, row = self.view, self.user
        figures = explorer_figures(view.routing(row, self.head), view.gates(row),
                                   view.anatomy(row), items=self.dataset.items, user=row,
                                   head=self.head, position=self.position, top_k=self.top_k,
                                   parts=parts, history_row=view.history_row(row, self.position))
        return {name: name_heads(fig, self.head_labels) for name, fig in figures.items()}

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
            return topk_html(self.view.anatomy(self.user), self.top_k, self.head_labels)
        return history_html(self.view.history(self.user),
                            self.view.history_row(self.user, self.position))

    def _repr_html_(self) -> str:
        """Static HTML fallback (tables only) for frontends that cannot show widgets."""
        return (f"<div><p><b>famekit UserExplorer</b>: user row {self.user}, head {self.head}, "
                f"position {self.position}. Run the notebook for the live explorer, or call "
                f"<code>explorer.show_static()</code>.</p>"
                f"{self._html('topk')}<br>{self._html('history')}</div>")

    def _repr_mimebundle_(self, **kwargs):
        """Jupyter shows the widget box (``display(explorer)`` or the explorer as a cell's
        result); :meth:`_repr_html_` adds the static fallback."""
        return self.widget._repr_mimebundle_(**kwargs)

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
            options=[(self.head_labels[h], h) for h in range(self.n_heads)], value=self.head,
            description="head")
        self.status = W.HTML("")
        figures = self._figures(["routing", "gate_bar", "gates"])
        self.routing_widget = go.FigureWidget(figures["routing"])
        self.gate_bar_widget = go.FigureWidget(figures["gate_bar"])
        self.gates_widget = go.FigureWidget(figures["gates"])
        self.history_html = W.HTML(self._html("history"))
        self.topk_html = W.HTML(self._html("topk"))
        for control, action in [
                (self.user_slider, lambda i: self.select_user(int(self.users[int(i)]))),
                (self.user_box, self.select_user), (self.position_slider, self.select_position),
                (self.head_selector, self.select_head)]:
            control.observe(lambda change, act=action: self._guarded(act, change["new"]),
                            names="value")
        controls = W.VBox([W.HBox([self.user_slider, self.user_box]),
                           W.HBox([self.position_slider]), self.head_selector, self.status])
        self.widget = W.VBox([
            controls, self.routing_widget,
            W.HBox([self.gate_bar_widget, self.gates_widget],
                   layout=W.Layout(flex_flow="row wrap")),
            W.HBox([self.topk_html]), W.HBox([self.history_html]),
        ])

    def _guarded(self, action, value) -> None:
        """Run a control's action; show famekit errors in the status line, not a traceback."""
        if self._syncing:
            return
        try:
            action(value)
            self.status.value = ""
        except FamekitError as err:
            self.status.value = f'<span style="color:#c00000">{html.escape(str(err))}</span>'

    def _update(self, *parts) -> None:
        """Set the controls to the current state, then redraw ``parts`` in place."""
        self._syncing = True
        try:
            if (self.users == self.user).any():
                self.user_slider.value = int((self.users == self.user).argmax())
            self.user_box.value = self.user
            self.position_slider.max = max(self.view.n_positions(self.user) - 1, 0)
            self.position_slider.value, self.head_selector.value = self.position, self.head
        finally:
            self._syncing = False
        for name, fig in self._figures([p for p in parts if p not in ("history", "topk")]).items():
            refresh_figure(getattr(self, f"{name}_widget"), fig)
        for table in {"history", "topk"} & set(parts):
            getattr(self, f"{table}_html").value = self._html(table)

    # ------------------------------------------------------------------------ callbacks
    def select_user(self, row) -> None:
        """Show dataset row ``row`` (its last position); collects it first if needed."""
        row = self.view.check_user(row)  # a clear error for users not in the split
        self.view.anatomy(row)  # before the state changes: an error leaves the view as it was
        self.user, self.position = row, self.view.n_positions(row) - 1
        self._update("routing", "gate_bar", "gates", "history", "topk")

    def select_position(self, position) -> None:
        """Mark input position ``position`` (0 = the oldest item the model sees)."""
        self.position = self.view.check_position(self.user, position)
        self._update("routing", "gate_bar", "gates", "history")

    def select_head(self, head) -> None:
        """Show the routing of head ``head``."""
        self.head = self.view.check_head(head)
        self._update("routing")
