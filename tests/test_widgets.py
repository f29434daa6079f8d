"""The UserExplorer widget: callbacks update the FigureWidgets in place, controls stay in
sync, errors reach the status line, and a static view exists without a kernel."""

import re

import numpy as np
import plotly.graph_objects as go
import pytest

from famekit.checkpoints import load_run, save_model
from famekit.datasets import load as load_dataset
from famekit.errors import FamekitError, ParameterError
from famekit.model import ModelConfig, build_model
from famekit.training import train
from famekit.widgets import UserExplorer

# Sequences (5..60 items) are longer than the model's window, so positions and history differ.
OPTIONS = {"n_users": 80, "n_items": 150, "n_brands": 8, "seed": 4}
MAX_LEN = 12


@pytest.fixture(scope="module")
def world():
    return load_dataset("synthetic", **OPTIONS)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("widget-run") / "fame"
    train("synthetic", dataset_options=OPTIONS, kind="fame", out_dir=out, epochs=1,
          progress=False, d_model=16, n_heads=4, n_experts=3, max_len=MAX_LEN, seed=0)
    return load_run(out)


@pytest.fixture
def explorer(run, world):
    return UserExplorer(run, world, users=range(10), top_k=5)


def _z(widget):
    return np.asarray(widget.data[0].z, dtype=float)


def test_callbacks_update_the_figure_widgets_in_place(explorer, world):
    routing, gates = explorer.routing_widget, explorer.gates_widget
    first = explorer.user
    assert isinstance(routing, go.FigureWidget) and first == explorer.view.default_user()
    first_z, first_gates = _z(routing), np.asarray(gates.data[0].y)
    assert first_z.shape == (3, min(MAX_LEN, len(world.sequence(first)) - 1))

    row = max(set(range(10)) - {first}, key=lambda u: len(world.sequence(u)))  # > the window
    seq = world.sequence(row)[:-1]  # the test input
    assert len(seq) > MAX_LEN
    explorer.select_user(row)
    assert explorer.routing_widget is routing  # same widget, new data
    assert explorer.user == row and explorer.order[explorer.user_slider.value] == row
    assert explorer.user_box.value == row
    assert not np.array_equal(np.asarray(gates.data[0].y), first_gates)
    assert _z(routing).shape[1] == explorer.position + 1  # the last position is selected
    assert f"user row {row}" in routing.layout.title.text
    assert explorer.position == MAX_LEN - 1

    before = _z(routing)
    explorer.select_head(2)
    assert not np.array_equal(_z(routing), before)
    assert explorer.head_selector.value == 2 and "head 2" in routing.layout.title.text

    bar_before = np.asarray(explorer.gate_bar_widget.data[0].y)
    explorer.select_position(0)
    assert explorer.position_slider.value == 0
    assert not np.array_equal(np.asarray(explorer.gate_bar_widget.data[0].y), bar_before)
    assert explorer.gates_widget.layout.shapes[0].x0 == 0  # the marker moved
    assert routing.layout.shapes[0].x0 == -0.5
    # position 0 is the oldest item the model sees, not the user's first item
    marked = re.search(r'font-weight:600"><td[^>]*>(\d+)</td><td[^>]*>(\d+)</td>',
                       explorer.history_html.value)
    assert marked and int(marked.group(2)) == seq[len(seq) - MAX_LEN]
    assert int(marked.group(1)) == len(seq) - MAX_LEN


def test_controls_drive_the_callbacks_and_show_errors(explorer):
    explorer.user_slider.value = 3
    assert explorer.user == int(explorer.users[3])
    explorer.head_selector.value = 1
    assert explorer.head == 1
    explorer.position_slider.value = 1
    assert explorer.position == 1
    explorer.user_box.value = 10_000  # no such row: reported, not raised
    assert "user row 10000 does not exist" in explorer.status.value
    assert explorer.user == int(explorer.users[3])
    explorer.user_box.value = 40  # not collected up front: collected on demand
    assert explorer.user == 40 and explorer.status.value == ""
    assert explorer.order[explorer.user_slider.value] == 40  # slider and box agree
    assert 40 not in explorer.activations.users and list(explorer.user_activations.users) == [40]
    assert explorer.position == explorer.position_slider.max
    with pytest.raises(ParameterError, match="head 9 does not exist"):
        explorer.select_head(9)
    with pytest.raises(ParameterError, match="position 99 is outside"):
        explorer.select_position(99)
    with pytest.raises(ParameterError, match="not an integer"):
        explorer.select_user("7")


def test_static_view_and_display(explorer, monkeypatch):
    figures = explorer.static_figures()
    assert set(figures) == {"routing", "gate_bar", "gates", "history", "topk"}
    assert all(type(f) is go.Figure for f in figures.values())  # plain, not widgets
    assert np.allclose(figures["routing"].data[0].z, _z(explorer.routing_widget))
    assert len(figures["topk"].data[0].header.values) == 2 + 4
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    explorer.show_static()
    assert len(shown) == 5 and all(isinstance(f, go.Figure) for f in shown)
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == \
        explorer.widget.model_id
    fallback = explorer._repr_html_()
    assert "Top-5 at the last position" in fallback and "<script" not in fallback
    assert f"user row {explorer.user} (" in fallback and "held-out item" in fallback


def test_a_run_reloads_its_dataset_and_wrong_inputs_are_refused(run, world, tmp_path):
    explorer = UserExplorer(run, users=[2, 5])  # dataset from the run's train_args.json
    assert explorer.dataset.fingerprint == world.fingerprint
    assert list(explorer.activations.users) == [2, 5]  # collected up front; the rest on demand
    assert explorer.user == explorer.view.default_user()
    assert list(explorer.users) == sorted(explorer.table["user"])  # every test user

    other = load_dataset("synthetic", **{**OPTIONS, "seed": 5})
    with pytest.raises(ParameterError, match="fingerprint"):
        UserExplorer(run, other)
    bare = tmp_path / "bare"  # no train_args.json: config.json names the data, not its options
    save_model(bare, run.model, dataset_name="synthetic", dataset_fingerprint=world.fingerprint)
    with pytest.raises(ParameterError, match="pass the dataset explicitly"):
        UserExplorer(load_run(bare))
    sasrec = build_model(ModelConfig(n_items=world.n_items, kind="sasrec", d_model=16))
    with pytest.raises(ParameterError, match="needs a FAME model"):
        UserExplorer(sasrec, world)
    with pytest.raises(FamekitError, match="split must be"):
        UserExplorer(run.model, world, split="train")
    with pytest.raises(ParameterError, match="users is empty"):
        UserExplorer(run.model, world, users=[])
    with pytest.raises(ParameterError, match="top_k=0"):
        UserExplorer(run.model, world, top_k=0)


def test_heads_are_named_by_facet_in_every_part_of_the_explorer(run, world):
    labels = ["head 0 · genre", "head 1 · brand", "head 2", "head 3"]
    named = UserExplorer(run, world, users=range(3), top_k=3, head_labels=labels)
    assert [label for label, _ in named.head_selector.options] == labels
    assert "head 1 · brand (gate" in named.topk_html.value
    assert "Routing of head 0 · genre" in named.routing_widget.layout.title.text
    assert list(named.gate_bar_widget.data[0].x)[:2] == labels[:2]
    plain = UserExplorer(run, world, users=range(3), top_k=3)  # a FAME run: plain names
    assert plain.head_labels == ["head 0", "head 1", "head 2", "head 3"]
    with pytest.raises(ParameterError, match="4 names, one per head"):
        UserExplorer(run, world, users=range(3), head_labels=["head 0 · genre"])


def test_sort_filter_and_search_keep_one_selected_user(run, world):
    explorer = UserExplorer(run, world, users=range(5), top_k=5)
    table = explorer.table
    assert len(explorer.order) == len(table) > 40  # every test user, not the 5 collected
    assert table.set_index("user").loc[explorer.user, "rank"] <= 5  # the default is a hit

    explorer.sort_menu.value = "held-out rank, worst first"
    ranks = table.set_index("user").loc[explorer.order, "rank"].to_numpy()
    assert (np.diff(ranks) <= 0).all() and explorer.sort == "held-out rank, worst first"
    assert explorer.order[explorer.user_slider.value] == explorer.user  # the user stayed

    explorer.filter_menu.value = "misses"
    assert (table.set_index("user").loc[explorer.order, "rank"] > 5).all()
    assert explorer.user == explorer.order[0] and "is the first of" in explorer.status.value
    facet = next(f for f in explorer.filters() if f.startswith("driving facet: "))
    explorer.filter_users(facet)
    drivers = table.set_index("user").loc[explorer.order, "driving_facet"]
    assert set(drivers) == {facet.split(": ")[1]}

    hidden = int(table.loc[~table["user"].isin(explorer.order), "user"].iloc[-1])
    explorer.user_box.value = hidden  # typed, but filtered out: the filter is cleared
    assert explorer.user == hidden and explorer.filter == "all users"
    assert "hidden by the filter" in explorer.status.value
    assert explorer.order[explorer.user_slider.value] == hidden == explorer.user_box.value
    assert explorer.filter_menu.value == "all users" and len(explorer.order) == len(table)

    explorer.search_box.value = str(hidden)  # a row
    assert list(explorer.order) == [hidden]
    title = table.set_index("user").loc[hidden, "target_label"]
    explorer.search_box.value = title[3:12].upper()  # a piece of a held-out title, any case
    assert hidden in explorer.order and all(
        title[3:12].lower() in t.lower()
        for t in table.set_index("user").loc[explorer.order, "target_label"])
    before = (explorer.user, list(explorer.order))
    explorer.search_box.value = "no such title"  # refused: the list and the user stay
    assert "no user of split &#x27;test&#x27; matches" in explorer.status.value
    assert (explorer.user, list(explorer.order)) == before
    assert explorer.search_box.value == title[3:12].upper()  # the box shows the live query
    with pytest.raises(ParameterError, match="sort 'nope' is not one of"):
        explorer.sort_users("nope")


def test_the_top_k_follows_the_selected_position(explorer):
    last = explorer.topk_html.value
    assert "Top-5 at the last position" in last and "the held-out item" in last
    explorer.select_position(1)
    anatomy = explorer.view.anatomy(explorer.user, 1)
    page = explorer.topk_html.value
    assert "Top-5 at position 1" in page and "the next item" in page
    assert f"fused (target #{anatomy.target_rank + 1})" in page
    assert len(anatomy.head_target_ranks) == explorer.n_heads
