"""FAME+: the facet objective, its checks, the oracle, the chance-corrected alignment and the
routing accuracy (famekit.facets, famekit.analysis.oracle, alignment, recovery)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from famekit import TrainConfig
from famekit.analysis.activations import Activations
from famekit.analysis.alignment import alignment_matrix, chance_corrected, facet_margins
from famekit.analysis.oracle import oracle_model
from famekit.analysis.recovery import facet_routing_accuracy
from famekit.checkpoints import Run
from famekit.datasets import SeqDataset, load
from famekit.errors import ParameterError
from famekit.facets import (
    FacetWarning,
    facet_fields,
    head_labels,
    resolve_facets,
    supervised_contrastive_loss,
)
from famekit.runs import RunDir
from famekit.training import train

FACETS = ("genre", "brand", "price_tier")
WORLD = {"n_users": 400, "n_items": 240, "n_brands": 12}
# A tiny FAME+ (seconds): the quick world, 3 epochs, d' = 8.
TINY_FAMEPLUS = {"dataset_options": WORLD, "batch_size": 64, "lr": 3e-3, "epochs": 3, "patience": 3,
                     "max_len": 30, "d_model": 32, "n_experts": 2, "facet_items": 128,
                     "facet_pretrain_steps": 300, "progress": False, "threads": 1}


@pytest.fixture(scope="module")
def world() -> SeqDataset:
    return load("synthetic", **WORLD)


def _margins(model, data, facets) -> pd.DataFrame:
    alignment = alignment_matrix(model, data, fields=list(facets), n_random_inits=0)
    return facet_margins(alignment, facets)


# ------------------------------------------------------------------------------ the loss
def test_supcon_matches_its_definition_on_three_vectors():
    v = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    positives = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    tau = 0.5
    z = torch.nn.functional.normalize(v, dim=1)
    sim = (z @ z.T / tau).numpy()
    # anchors 0 and 1 have one positive each; anchor 2 has none and is skipped
    expected = []
    for i, p in ((0, 1), (1, 0)):
        others = [j for j in range(3) if j != i]
        expected.append(-(sim[i, p] - math.log(sum(math.exp(sim[i, j]) for j in others))))
    loss = supervised_contrastive_loss(v, positives, tau)
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-5)


def test_supcon_is_lower_when_values_cluster_and_zero_but_connected_without_positives():
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(4), 16)
    positives = torch.from_numpy(codes[:, None] == codes[None, :])
    clustered = torch.from_numpy(np.eye(4)[codes] + 0.05 * rng.standard_normal((64, 4))).float()
    scattered = torch.from_numpy(rng.standard_normal((64, 4))).float()
    assert (supervised_contrastive_loss(clustered, positives, 0.1)
            < supervised_contrastive_loss(scattered, positives, 0.1) - 1.0)
    lonely = scattered.clone().requires_grad_()
    loss = supervised_contrastive_loss(lonely, torch.eye(64, dtype=torch.bool), 0.1)
    loss.backward()
    assert float(loss.detach()) == 0.0 and lonely.grad is not None


def test_multi_label_items_are_positives_when_they_share_a_value():
    items = pd.DataFrame({"genres": [["A", "B"], ["B"], ["C"], ["C", "A"]] * 10},
                         index=pd.RangeIndex(1, 41, name="item_id"))
    data = SeqDataset.from_sequences("multi", [np.arange(1, 41)] * 3, 40, items)
    (genres,) = resolve_facets(data, ["genres"])
    assert genres.multi_label and genres.classes == ["A", "B", "C"]
    pos = genres.positives(np.array([1, 2, 3, 4])).numpy()
    assert pos.tolist() == [[True, True, False, True], [True, True, False, False],
                            [False, False, True, True], [True, False, True, True]]
    assert "genre" in facet_fields(data)  # the first-element field the analyses use


# ------------------------------------------------------------------------------ the checks
@pytest.mark.parametrize("facets, message", [
    (["colour"], "has no metadata field 'colour'.*genre, brand, price_tier"),
    (["genre", "genre"], r"\['genre'\] given twice"),
    (["genre", "brand", "price_tier", "genre"], "given twice"),
    (["a/b"], "must be a plain name"),
    (42, "must be a list of field names"),
])
def test_bad_facet_names_are_refused_naming_the_fields(world, facets, message):
    with pytest.raises(ParameterError, match=message):
        if isinstance(facets, list) and "colour" in facets:
            resolve_facets(world, facets, 4)
        else:
            TrainConfig(facets=facets)


def test_more_facets_than_heads_and_facets_on_sasrec_heads_are_refused():
    with pytest.raises(ParameterError, match="3 facets .* for 2 heads.*at most 2"):
        TrainConfig(facets=FACETS, model_options={"n_heads": 2, "d_model": 32})
    with pytest.raises(ParameterError, match="sasrec has no heads.*facet_target='embedding'"):
        TrainConfig(kind="sasrec", facets=("genre",))
    assert TrainConfig(kind="sasrec", facets=("genre",), facet_target="embedding").facets
    for bad, message in [({"facet_weight": 0}, "facet_weight"),
                         ({"facet_temperature": -1}, "facet_temperature"),
                         ({"facet_schedule": "later"}, "facet_schedule"),
                         ({"facet_items": 1}, "facet_items")]:
        with pytest.raises(ParameterError, match=message):
            TrainConfig(**bad)


def test_fields_with_one_value_or_too_few_items_are_refused_and_nested_ones_warned():
    n = 100
    items = pd.DataFrame({
        "one": ["x"] * n,
        "rare": ["a", "b", "a", "b"] + [None] * (n - 4),
        "leaf": [f"leaf {i % 10}" for i in range(n)],
        "top": [f"top {i % 10 // 5}" for i in range(n)],  # every leaf implies one top
    }, index=pd.RangeIndex(1, n + 1, name="item_id"))
    data = SeqDataset.from_sequences("mine", [np.arange(1, n + 1)] * 3, n, items)
    with pytest.raises(ParameterError, match="'one' of 'mine' has 1 value"):
        resolve_facets(data, ["one"])
    with pytest.raises(ParameterError, match="labels only 4 of 100 items.*needs 20"):
        resolve_facets(data, ["rare"])
    with pytest.warns(FacetWarning, match="'leaf' is nested in 'top'.*cannot take separate"):
        resolve_facets(data, ["leaf", "top"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_facets(data, ["leaf"])  # alone: nothing to say


def test_a_sasrec_facet_run_refuses_before_the_folder_exists(tmp_path):
    with pytest.raises(ParameterError, match="no heads to assign"):
        train("synthetic", kind="sasrec", facets=["genre"], out_dir=tmp_path / "run",
              **{k: v for k, v in TINY_FAMEPLUS.items() if k != "dataset_options"})
    assert not (tmp_path / "run").exists()
    with pytest.raises(ParameterError, match="no metadata field 'colour'"):
        train("synthetic", facets=["colour"], out_dir=tmp_path / "run2", **TINY_FAMEPLUS)


# ------------------------------------------------------------------------------ the oracle
def test_the_oracle_puts_each_field_on_its_head_and_follows_the_assignment(world):
    for facets in (FACETS, ("price_tier", "genre", "brand")):
        margins = _margins(oracle_model(world, facets), world, facets)
        assert margins["passes"].all(), margins
        assert (margins["chance_corrected"] > 0.9).all(), margins
    # the diagonal moves with the assignment: brand sits on head 2 here, not on head 1
    oracle = oracle_model(world, ("price_tier", "genre", "brand"))
    alignment = alignment_matrix(oracle, world, fields=list(FACETS), n_random_inits=0)
    best = alignment[alignment["head"] >= 0].groupby("field")["chance_corrected"].idxmax()
    assert alignment.loc[best, "head"].to_dict() == {best["brand"]: 2, best["genre"]: 1,
                                                      best["price_tier"]: 0}


def test_the_recovery_measures_score_near_their_maxima_on_the_oracle(world):
    from famekit.analysis.recovery import facet_recovery, head_facet_map

    oracle = oracle_model(world, ("brand", "price_tier", "genre"))
    alignment = alignment_matrix(oracle, world, fields=list(FACETS), n_random_inits=0)
    recovered = facet_recovery(alignment, world).set_index("facet")
    assert recovered["best_head"].to_dict() == {"brand": 0, "price_tier": 1, "genre": 2}
    assert (recovered["agreement"] > 0.95).all()  # the maximum is 1
    assert {h: f for h, f in head_facet_map(alignment, world).items() if h < 3} == {
        0: "brand", 1: "price_tier", 2: "genre"}


def test_the_margin_check_fails_where_there_is_nothing_to_see(world):
    # an untrained FAME and an oracle drowned in noise carry no facet on any head
    from famekit.model import ModelConfig, build_model

    torch.manual_seed(0)
    untrained = build_model(ModelConfig(n_items=world.n_items, d_model=32)).eval()
    assert not _margins(untrained, world, FACETS)["passes"].any()
    drowned = oracle_model(world, FACETS, noise=50.0, d_model=32)
    assert not _margins(drowned, world, FACETS)["passes"].all()


def test_specialisation_sees_the_oracle_and_not_an_untrained_model(world):
    from famekit.analysis.alignment import head_specialisation
    from famekit.model import ModelConfig, build_model

    oracle = oracle_model(world, FACETS)
    alignment = alignment_matrix(oracle, world, fields=list(FACETS), n_random_inits=0)
    assert (alignment["p_adjusted"] >= alignment["p_value"]).all()
    assert alignment["p_floor"].eq(1 / 2000).all()
    spec = head_specialisation(oracle, world, alignment, n_boot=200).set_index("head")
    assert spec.loc[[0, 1, 2], "best_field"].tolist() == list(FACETS)
    assert spec.loc[[0, 1, 2], "specialised"].all(), spec
    assert (spec.loc[[0, 1, 2], "ci_low"] > 0.5).all()
    torch.manual_seed(0)
    untrained = build_model(ModelConfig(n_items=world.n_items, d_model=32)).eval()
    blank = alignment_matrix(untrained, world, fields=list(FACETS), n_random_inits=0)
    assert not head_specialisation(untrained, world, blank, n_boot=200)["specialised"].any()


def test_chance_corrected_agreement_is_comparable_across_cardinalities():
    assert chance_corrected(0.25, 0.25) == 0.0 and chance_corrected(1.0, 0.1) == 1.0
    assert chance_corrected(0.0, 0.5) == -1.0 and math.isnan(chance_corrected(1.0, 1.0))
    # lift 4x on a 4-value field is perfect; lift 4x on a 30-value field is not
    assert chance_corrected(1.0, 0.25) > chance_corrected(4 / 30, 1 / 30)


# ------------------------------------------------------------------------------ routing
def _activations(gates_per_user: list[np.ndarray], users: np.ndarray) -> Activations:
    lengths = [len(g) for g in gates_per_user]
    gates = np.concatenate(gates_per_user).astype(np.float32)
    t, h = gates.shape
    return Activations(users=users, offsets=np.concatenate([[0], np.cumsum(lengths)]),
                       items=np.ones(t, dtype=np.int64), flat_index=np.zeros(t, dtype=np.int64),
                       gates=gates, router=np.full((t, h, 2), 0.5, dtype=np.float32),
                       head_repr=None, targets=np.ones(len(users), dtype=np.int64), split="test")


def test_routing_accuracy_counts_the_top_assigned_head_against_the_driving_facet(world):
    users = np.arange(30)
    driving = world.ground_truth["user_facet"][users]  # index into genre, brand, price_tier
    right = [np.tile(np.eye(4)[d] * 0.5 + 0.125, (3, 1)) for d in driving]
    table = facet_routing_accuracy(_activations(right, users), world, FACETS)
    assert table["accuracy"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert table.iloc[-1]["users"] == 30 and table.iloc[0]["chance"] == pytest.approx(1 / 3)
    # head 3 is free: a large gate there does not count; the top *assigned* head does
    wrong = [np.tile(np.eye(4)[(d + 1) % 3] * 0.3 + np.eye(4)[3] * 0.6 + 0.025, (3, 1))
             for d in driving]
    assert facet_routing_accuracy(_activations(wrong, users), world, FACETS)[
        "accuracy"].tolist() == [0.0, 0.0, 0.0, 0.0]
    # another assignment order: brand's head is 0 now
    reordered = facet_routing_accuracy(_activations(right, users), world,
                                       ("brand", "genre", "price_tier"))
    assert reordered.iloc[-1]["accuracy"] < 1.0
    with pytest.raises(ParameterError, match="not all planted facets"):
        facet_routing_accuracy(_activations(right, users), world, ("colour",))


# ------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def fameplus_run(tmp_path_factory) -> RunDir:
    out = tmp_path_factory.mktemp("fameplus") / "run"
    train("synthetic", out_dir=out, facets=list(FACETS), **TINY_FAMEPLUS)
    return RunDir(out)


def test_a_fameplus_run_records_its_facets_and_puts_them_on_their_heads(fameplus_run, world):
    run = fameplus_run.load(dataset=world)
    assert run.facets == FACETS
    assert run.head_labels == ["head 0 · genre", "head 1 · brand", "head 2 · price_tier",
                               "head 3"]
    assert fameplus_run.train_config().facets == FACETS
    pretrain = run.meta["summary"]["pretrain"]
    assert pretrain["steps"] == 300 and pretrain["last_loss"] < pretrain["first_loss"]
    margins = _margins(run.model, world, FACETS)
    assert margins["passes"].all(), margins


def test_a_fameplus_run_resumes_to_the_same_weights(fameplus_run, tmp_path):
    out = tmp_path / "interrupted"
    options = {**TINY_FAMEPLUS, "epochs": 2}
    train("synthetic", out_dir=out, facets=list(FACETS), **options)
    train(resume=out, epochs=3, progress=False, threads=1)
    resumed = RunDir(out).load().model.state_dict()
    straight = fameplus_run.load().model.state_dict()
    # same machine, same threads: the facet samples are keyed by (seed, epoch, step)
    assert all(torch.allclose(resumed[k], straight[k], atol=1e-6) for k in straight)


def test_facets_of_an_edited_config_count_as_none(fameplus_run, tmp_path):
    copy = fameplus_run.copy_to(tmp_path / "copy")
    path = copy.path / "config.json"
    meta = json.loads(path.read_text())
    meta["summary"]["facets"] = {"<script>": 1}
    path.write_text(json.dumps(meta))
    run = RunDir(copy.path).load()
    assert run.facets == () and run.head_labels[0] == "head 0"
    assert head_labels(2, ("genre",)) == ["head 0 · genre", "head 1"]
    assert isinstance(run, Run)


def test_the_cli_trains_fameplus(tmp_path, capsys):
    from famekit import cli

    out = tmp_path / "cli"
    code = cli.main(["train", "--dataset", "synthetic", "--data-option", "n_users=400",
                     "--data-option", "n_items=240", "--data-option", "n_brands=12",
                     "--facets", "genre,brand", "--facet-pretrain-steps", "20", "--epochs", "1",
                     "--d-model", "16", "--out", str(out), "--no-progress", "--threads", "1"])
    assert code == 0
    said = capsys.readouterr().out
    assert "facets on heads" in said and "head 0 · genre" in said and "margin" in said
    assert RunDir(out).train_config().facets == ("genre", "brand")
    assert RunDir(out).load().head_labels[:2] == ["head 0 · genre", "head 1 · brand"]


# ------------------------------------------------------------------------------ the views
def test_knockouts_and_gates_are_read_by_driving_facet(fameplus_run, world):
    from famekit.analysis import facet_heads
    from famekit.analysis.activations import collect_activations

    run = fameplus_run.load(dataset=world)
    knock = facet_heads.facet_knockouts(run.model, world, run.facets, max_users=200)
    assert len(knock) == 3 * 3 and knock["own"].sum() == 3
    assert knock.loc[knock["own"], "head_label"].tolist() == run.head_labels[:3]
    assert np.allclose(knock["delta"], knock["NDCG@10"] - knock["base"])
    gates = facet_heads.gates_by_driving_facet(collect_activations(run.model, world), world)
    assert set(gates["group"]) == set(FACETS) and len(gates) == 3 * 4
    assert np.allclose(gates.groupby("group")["mean_gate"].sum(), 1.0, atol=1e-4)
    table = facet_heads.accuracy_table({"FAME+": run})
    assert table.loc["FAME+", "NDCG@10"] == run.meta["summary"]["test"]["NDCG@10"]


def test_figures_name_heads_by_facet_and_outline_the_assigned_cells(world):
    import famekit.figures as F

    fig = F.gate_summary_bar(pd.DataFrame({"head": range(4), "mean_gate": [0.25] * 4,
                                           "std_gate": [0.0] * 4,
                                           "top_head_share": [0.25] * 4,
                                           "mean_gate_all_positions": [0.25] * 4}))
    labels = head_labels(4, FACETS)
    named = F.name_heads(fig, labels)
    assert list(named.data[0].x) == labels and labels[3] == "head 3"
    assert F.name_heads(go_figure_with("head 10 and head 1"), labels).layout.title.text == (
        "head 10 and head 1 · brand")  # head 10 is not head 1
    alignments = {"oracle": alignment_matrix(oracle_model(world, FACETS), world,
                                             fields=list(FACETS), n_random_inits=0)}
    grid = F.facet_alignment_grid(alignments, FACETS)
    assert len(grid.layout.shapes) == 3
    assert [(s.x0, s.y0) for s in grid.layout.shapes] == [(-0.5, -0.5), (0.5, 0.5), (1.5, 1.5)]


def go_figure_with(title: str):
    import plotly.graph_objects as go

    return go.Figure(layout={"title": {"text": title}})


@pytest.mark.slow
@pytest.mark.notebooks
def test_a_notebook_given_a_fameplus_run_names_its_heads_by_facet(fameplus_run, tmp_path):
    from famekit.report import _execute

    root = Path(__file__).resolve().parents[1]
    src = root / "notebooks" / "01_head_gates.ipynb"
    nb = _execute(src, tmp_path / "01.ipynb", {"RUN_DIR": str(fameplus_run.path)},
                  src.parent, timeout=600)
    shown = json.dumps([c.get("outputs", []) for c in nb.cells], ensure_ascii=False)
    assert "FAME+ run: head 0 · genre, head 1 · brand, head 2 · price_tier, head 3" in shown
    assert "head 1 · brand" in shown.split("Gate weights per head", 1)[-1]  # in the figures
