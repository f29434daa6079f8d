"""The explorer's data (famekit.analysis.user_view) as plain DataFrames, and its HTML tables
(famekit.figures.explorer), which must escape every value."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from famekit import analysis as A
from famekit.analysis.user_view import UserView, topk_lists
from famekit.datasets import SeqDataset
from famekit.errors import ParameterError
from famekit.figures.explorer import explorer_figures, history_html, topk_html
from famekit.model import ModelConfig, build_model

MAX_LEN = 5
HOSTILE = '<script>alert("x")</script> & <b>'


@pytest.fixture(scope="module")
def data() -> SeqDataset:
    rng = np.random.default_rng(1)
    seqs = [rng.integers(1, 21, size=rng.integers(3, 12)) for _ in range(12)]
    seqs.insert(2, np.array([4, 5]))  # row 2: too short for the split
    titles = [f"item {v}" for v in range(1, 21)]
    titles[6] = HOSTILE  # item 7
    items = pd.DataFrame({"title": titles, "brand": ["b"] * 20},
                         index=pd.RangeIndex(1, 21, name="item_id"))
    return SeqDataset.from_sequences("view", seqs, n_items=20, items=items)


@pytest.fixture(scope="module")
def model(data):
    torch.manual_seed(0)
    return build_model(ModelConfig(n_items=data.n_items, kind="fame", d_model=8, n_heads=2,
                                   n_experts=3, max_len=MAX_LEN))


@pytest.fixture(scope="module")
def view(model, data):
    return UserView(model, data, users=[0, 1, 3], top_k=4)


def _long_user(data) -> int:
    inputs, _, rows = data.split().eval_inputs("test")
    return int(next(r for r, s in zip(rows, inputs) if len(s) > MAX_LEN))


def test_frames_of_one_user(view, data):
    row = _long_user(data)
    seq = data.split().eval_inputs("test")[0][list(data.split().eval_inputs("test")[2]).index(row)]
    assert view.n_positions(row) == MAX_LEN
    routing = view.routing(row, 1)
    assert len(routing) == MAX_LEN and np.allclose(routing.filter(like="expert").sum(axis=1), 1, atol=1e-5)
    gates = view.gates(row)
    assert gates["item"].tolist() == seq[-MAX_LEN:].tolist()
    history = view.history(row)
    assert history["item"].tolist() == seq.tolist() and {"title", "brand"} <= set(history)
    # model position 0 is the oldest item the model sees, not the user's first item
    assert history["item"].iloc[view.history_row(row, 0)] == seq[-MAX_LEN]
    assert view.history_row(row, MAX_LEN - 1) == len(seq) - 1


def test_topk_lists_are_the_anatomy_in_one_frame(view):
    anatomy = view.anatomy(0)
    assert view.anatomy(0) is anatomy  # cached: one forward pass per user
    lists = view.topk(0)
    assert lists["list"].unique().tolist() == ["fused", "head 0", "head 1"]
    fused = lists[lists["list"] == "fused"]
    assert fused["item"].tolist() == anatomy.fused["item"].tolist()
    assert np.allclose(fused["score"], anatomy.fused["score"]) and fused["gate"].isna().all()
    head1 = lists[lists["list"] == "head 1"]
    assert np.allclose(head1["score"], anatomy.per_head[1]["head_score"])
    assert np.allclose(head1["gate"], anatomy.gates[1])
    assert head1["rank"].tolist() == list(range(1, 5))
    assert head1["label"].tolist() == anatomy.per_head[1]["title"].tolist()
    no_titles = topk_lists(A.Anatomy(0, anatomy.history, anatomy.gates,
                                     anatomy.fused.drop(columns="title"), anatomy.per_head,
                                     anatomy.target, anatomy.target_rank))
    assert no_titles["label"].iloc[0] == anatomy.fused["item"].iloc[0]


def test_users_outside_the_collection_are_collected_once(view, data):
    row = 5
    assert row not in view.users
    acts = view.activations_of(row)
    assert view.activations_of(row) is acts and acts.users.tolist() == [row]
    assert view.activations_of(0) is view.activations


def test_checks_give_clear_errors(view, model, data):
    assert view.check_user(np.int64(4)) == 4
    with pytest.raises(ParameterError, match="not an integer"):
        view.check_user("7")
    with pytest.raises(ParameterError, match="not an integer"):
        view.check_user(True)
    with pytest.raises(ParameterError, match="user row 99 does not exist"):
        view.check_user(99)
    with pytest.raises(ParameterError, match=r"user rows \[2\] are not in split"):
        view.check_user(2)
    with pytest.raises(ParameterError, match="position 9 is outside"):
        view.check_position(0, 9)
    with pytest.raises(ParameterError, match="position True is outside"):
        view.check_position(0, True)
    with pytest.raises(ParameterError, match="head 2 does not exist"):
        view.check_head(2)
    with pytest.raises(ParameterError, match="top_k=0"):
        UserView(model, data, top_k=0)
    with pytest.raises(ParameterError, match="users is empty"):
        UserView(model, data, users=[])
    with pytest.raises(ParameterError, match="SeqDataset"):
        UserView(model, "view")
    acts = A.collect_activations(model, data, split="valid")
    assert UserView(model, data, split="valid", activations=acts).activations is acts
    with pytest.raises(ParameterError, match="split 'valid'"):
        UserView(model, data, split="test", activations=acts)
    assert UserView(model, data, max_users=2).users.tolist() == [0, 1]


def test_html_tables_escape_every_value(view, data):
    hostile_user = next(u for u in range(data.n_users) if 7 in data.sequence(u)[:-1].tolist()
                        and u != 2)
    history = view.history(hostile_user)
    page = history_html(history, highlight=0)
    assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert page.count('font-weight:600"') == 1
    anatomy = view.anatomy(hostile_user)
    first = anatomy.per_head[0].copy()
    first.loc[0, "title"] = HOSTILE  # as if head 0 recommended item 7 first
    table = topk_html(replace(anatomy, per_head={**anatomy.per_head, 0: first}), 4)
    assert "<script" not in table and "&lt;b&gt;" in table
    assert "Top-4 at the last position" in table and "head 1 (gate" in table


def test_explorer_figures_by_part(view):
    row, position = 0, 1
    args = (view.routing(row, 0), view.gates(row), view.anatomy(row))
    figures = explorer_figures(*args, items=view.dataset.items, user=row, head=0,
                               position=position, history_row=view.history_row(row, position),
                               top_k=4)
    assert list(figures) == ["routing", "gate_bar", "gates", "history", "topk"]
    assert "user row 0" in figures["routing"].layout.title.text
    only = explorer_figures(*args, items=view.dataset.items, user=row, head=0,
                            position=position, history_row=0, top_k=4, parts=["gates"])
    assert list(only) == ["gates"]
    with pytest.raises(ParameterError, match="part 'nope' does not exist"):
        explorer_figures(*args, items=None, user=row, head=0, position=0, history_row=0,
                         top_k=4, parts=["nope"])


def test_user_table_ranks_every_user_as_the_evaluation_does(view, model, data):
    table = view.table
    from famekit.evaluation import evaluate

    _, expected = evaluate(model, data, split="test", progress=False, return_ranks=True)
    expected = expected.sort_values("user").reset_index(drop=True)
    assert table["user"].tolist() == expected["user"].tolist()  # every test user, by row
    assert (table["rank"] == expected["rank"] + 1).all()  # 1 = best
    assert (table["target"] == expected["target"]).all()
    assert table.loc[table["target"] == 7, "target_label"].eq(HOSTILE).all()
    acts = A.collect_activations(model, data, split="test")
    gates = acts.last_gates  # [U, H] in the collection's order
    order = np.argsort(acts.users)
    entropy = -(gates * np.log(gates)).sum(axis=1) / np.log(gates.shape[1])
    np.testing.assert_allclose(table["gate_entropy"], entropy[order], atol=1e-5)
    assert (table["top_head"] == gates.argmax(axis=1)[order]).all()
    assert "driving_facet" not in table  # no planted truth in this dataset


def test_default_user_is_the_first_hit_else_the_best_ranked(view):
    table = view.table
    assert (table["rank"] <= view.top_k).any(), "the fixture needs a hit"
    first_hit = table.loc[table["rank"] <= view.top_k, "user"].iloc[0]
    assert view.default_user() == first_hit
    strict = UserView.__new__(UserView)  # the same table, no hit in the top-1
    strict.table, strict.top_k = table.assign(rank=table["rank"] + 1), 0
    assert strict.default_user() == table.loc[table["rank"].idxmin(), "user"]


def test_anatomy_at_a_position_targets_the_next_item_with_each_heads_rank(view, model, data):
    row = _long_user(data)
    seq = view.history(row)["item"].to_numpy()
    position = 1
    anatomy = view.anatomy(row, position)
    assert view.anatomy(row, position) is anatomy  # cached per (user, position)
    assert view.anatomy(row, MAX_LEN - 1) is view.anatomy(row)  # the last: one entry
    seen = view.history_row(row, position) + 1
    assert not anatomy.at_last_position and anatomy.target == seq[seen]
    # the training path: every column of the window predicts the next item in one pass
    window = torch.tensor(seq[-MAX_LEN:], dtype=torch.long)[None]  # [1, n]
    model.eval()  # no dropout, as in the view's passes
    with torch.no_grad():
        fused_all = (model.queries(window) @ model.item_table().T)[0, position].numpy()
    gates_along = view.gates(row).filter(like="head").to_numpy()  # [n, H]
    np.testing.assert_allclose(anatomy.gates, gates_along[position], atol=1e-5)
    _, scores = A.head_scores(model, window, position)  # [1, V+1, H]
    blocked = np.zeros(data.n_items + 1, bool)
    blocked[0] = True
    blocked[seq[:seen]] = True
    blocked[anatomy.target] = False
    for h in range(2):
        head = np.where(blocked, -np.inf, scores[0, :, h])
        expected = int((head >= head[anatomy.target]).sum()) - 1
        assert anatomy.head_target_ranks[h] == expected
    fused = np.where(blocked, -np.inf, fused_all)
    assert anatomy.target_rank == int((fused >= fused[anatomy.target]).sum()) - 1
    last = view.anatomy(row)
    assert last.at_last_position and last.target == view.table.set_index("user").loc[
        row, "target"]
    assert last.target_rank + 1 == view.table.set_index("user").loc[row, "rank"]
    page = topk_html(anatomy, 4)
    assert "Top-4 at position 1" in page and "the next item" in page
    assert f"fused (target #{anatomy.target_rank + 1})" in page
    assert f"target #{anatomy.head_target_ranks[1] + 1})" in page
