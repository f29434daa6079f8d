"""Analyses over a tiny trained FAME run, and on constructed cases whose answer is known."""

import numpy as np
import pandas as pd
import pytest
import torch

from famekit import analysis as A
from famekit.analysis.activations import GATES, Activations
from famekit.analysis.anatomy import head_scores
from famekit.analysis.knockouts import force_expert_hook, remove_heads_hook
from famekit.batching import pad_left
from famekit.datasets.synthetic import generate
from famekit.errors import ParameterError
from famekit.model import ModelConfig, build_model
from famekit.training import train


@pytest.fixture(scope="module")
def world():
    return generate(n_users=240, n_items=240, n_brands=12, seed=5)


@pytest.fixture(scope="module")
def fame(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(world, kind="fame", out_dir=out / "fame", epochs=2, progress=False, d_model=16,
          n_heads=4, n_experts=3, seed=0)
    from famekit.checkpoints import load_run

    return load_run(out / "fame", dataset=world).model


@pytest.fixture(scope="module")
def acts(fame, world):
    return A.collect_activations(fame, world, batch_size=64)


def test_collected_activations_are_distributions_aligned_with_the_data(acts, world):
    assert acts.gates.shape == (len(acts.items), 4) and acts.router.shape == (len(acts.items), 4, 3)
    assert np.allclose(acts.gates.sum(1), 1, atol=1e-5)
    assert np.allclose(acts.router.sum(2), 1, atol=1e-5)
    assert np.array_equal(world.item_ids[acts.flat_index], acts.items)
    # the last collected position of each user is the item just before the test target
    for i in (0, 17, len(acts.users) - 1):
        seq = world.sequence(acts.users[i])
        assert acts.items[acts.last_positions[i]] == seq[-2] and acts.targets[i] == seq[-1]


def test_batch_size_does_not_change_activations(fame, world, acts):
    other = A.collect_activations(fame, world, batch_size=7)
    assert np.allclose(other.gates, acts.gates, atol=1e-6)
    assert np.allclose(other.router, acts.router, atol=1e-6)


def test_gate_and_routing_summaries(acts, world):
    summary = A.gate_summary(acts)
    assert summary["top_head_share"].sum() == pytest.approx(1.0)
    assert summary["mean_gate"].sum() == pytest.approx(1.0, abs=1e-5)
    assert 0 <= summary.attrs["mean_entropy"] <= summary.attrs["max_entropy"] + 1e-9
    load = A.expert_load(acts)
    assert np.allclose(load.groupby("head")["soft_load"].sum(), 1.0, atol=1e-5)
    assert np.allclose(load.groupby("head")["top_share"].sum(), 1.0)
    ent = A.routing_entropy(acts)
    assert ((ent["normalised_entropy"] >= 0) & (ent["normalised_entropy"] <= 1 + 1e-9)).all()
    user = int(acts.users[3])
    along = A.gates_along_sequence(acts, user)
    assert len(along) == len(world.sequence(user)) - 1
    routing = A.user_routing(acts, user, head=1)
    assert np.allclose(routing.filter(like="expert").sum(axis=1), 1.0, atol=1e-5)
    groups = A.user_majority_labels(world, "genre", [world.sequence(u)[:-1] for u in acts.users])
    by_group = A.gates_by_group(acts, groups, min_users=1)
    assert np.allclose(by_group.groupby("group")["mean_gate"].sum(), 1.0, atol=1e-5)
    with pytest.raises(ParameterError, match="one label per"):
        A.gates_by_group(acts, groups[:-1])
    with pytest.raises(ParameterError, match="head 9"):
        A.user_routing(acts, user, head=9)


def _constructed(items, router, gates=None, users=None, offsets=None):
    t = len(items)
    gates = np.full((t, 2), 0.5, dtype=np.float32) if gates is None else gates
    offsets = np.array([0, t]) if offsets is None else offsets
    users = np.arange(len(offsets) - 1) if users is None else users
    return Activations(users, offsets, np.asarray(items), np.arange(t), gates,
                       np.asarray(router, dtype=np.float32), None, np.zeros(len(users)), "test")


def test_enrichment_lift_on_a_constructed_routing():
    # items 1,2 are "A", 3 is "B"; head 0 routes A -> expert 0 and B -> expert 1
    items = np.array([1, 2, 3, 1, 3, 2] * 10)
    labels = np.array([None, "A", "A", "B"], dtype=object)
    router = np.zeros((len(items), 2, 2))
    router[:, 0, 0] = np.isin(items, [1, 2])
    router[:, 0, 1] = items == 3
    router[:, 1, :] = 0.5
    table = A.expert_enrichment(_constructed(items, router), labels, min_count=1)
    head0 = table[table["head"] == 0].set_index(["expert", "label"])
    base_a = 40 / 60
    assert head0.loc[(0, "A"), "lift"] == pytest.approx(1 / base_a)
    assert head0.loc[(0, "B"), "lift"] == pytest.approx(0.0)
    assert head0.loc[(1, "B"), "lift"] == pytest.approx(1 / (1 - base_a))
    assert np.allclose(table[table["head"] == 1]["lift"], 1.0)  # uniform router: no preference
    with pytest.raises(ParameterError, match="item_labels"):
        A.expert_enrichment(_constructed(items, router), labels[:2])


def test_knn_agreement_and_permutation_null_on_known_cases():
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(4), 50)
    centres = rng.normal(size=(4, 8)) * 5
    clustered = centres[codes] + rng.normal(size=(200, 8)) * 0.1
    res = A.agreement_with_nulls(clustered, codes, k=10, n_permutations=20)
    assert res["agreement"] == pytest.approx(1.0)
    assert abs(res["perm_mean"] - 0.25) < 0.05  # four equal classes: chance is ~1/4
    assert res["p_value"] == pytest.approx(1 / 21)
    noise = rng.normal(size=(200, 8))
    null = A.agreement_with_nulls(noise, codes, k=10, n_permutations=20)
    assert abs(null["agreement"] - 0.25) < 0.08 and null["p_value"] > 0.05
    # unlabelled items (-1) are ignored entirely
    partly = codes.copy()
    partly[::2] = -1
    assert A.knn_agreement(clustered, partly) == pytest.approx(1.0)


def test_alignment_matrix_finds_a_planted_head_and_random_init_does_not(world):
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_items=world.n_items, kind="fame", d_model=16, n_heads=4,
                                    n_experts=2, max_len=20)).eval()
    codes = world.ground_truth["item_facet_codes"][:, 1]  # brand of every item (row 0 = -1)
    centres = torch.randn(12, 4) * 3
    with torch.no_grad():  # plant brand structure in head 2's slice of E (W_f starts at identity)
        model.item_embed.weight[1:, 8:12] = centres[codes[1:]] + 0.05 * torch.randn(240, 4)
    table = A.alignment_matrix(model, world, fields=["brand", "genre"])
    with pytest.raises(ParameterError, match="n_permutations"):
        A.alignment_matrix(model, world, n_permutations=10)
    cell = table.set_index(["embedding", "field"])
    assert cell.loc[("head 2", "brand"), "aligned"]
    assert cell.loc[("head 2", "brand"), "agreement"] > 0.9
    assert cell.loc[("head 2", "brand"), "random_init"] < 0.3
    assert not cell.loc[("head 0", "brand"), "aligned"]
    assert not cell.loc[("head 2", "genre"), "aligned"]
    assert set(table["embedding"]) == {"head 0", "head 1", "head 2", "head 3", "full"}


def test_keeping_one_head_equals_that_heads_own_scores(fame, world):
    inputs, _, _ = world.split().eval_inputs("test")
    ids = torch.from_numpy(pad_left(inputs[:16], fame.config.max_len))
    _, per_head = head_scores(fame, ids)  # [B, V+1, H]
    for h in range(4):
        others = [x for x in range(4) if x != h]
        with fame.hooks([(GATES, remove_heads_hook(others, 4))]), torch.no_grad():
            alone = fame.score_last(ids)
        expected = fame.fused_scale * torch.from_numpy(per_head[:, :, h])
        assert torch.allclose(alone, expected, atol=1e-4)


def test_anatomy_contributions_add_up_to_the_model_score(fame, world):
    anatomy = A.recommendation_anatomy(fame, world, user_row=11, k=8)
    seq = world.split().eval_inputs("test")[0][11]
    with torch.no_grad():
        ids = torch.from_numpy(pad_left([seq], fame.config.max_len))
        scores = fame.eval().score_last(ids)[0]
    fused = anatomy.fused
    contrib = fused.filter(like="contrib").sum(axis=1).to_numpy()
    assert np.allclose(contrib, fused["score"], atol=1e-5)
    items = torch.tensor(fused["item"].to_numpy())  # a copy: pandas hands out read-only views
    assert np.allclose(fused["score"], scores[items].numpy(), atol=1e-4)
    assert not set(fused["item"]) & (set(seq.tolist()) - {anatomy.target})
    assert len(fused) == 8 and len(anatomy.per_head) == 4
    assert {"genre", "brand", "title"} <= set(fused.columns)
    assert anatomy.gates.sum() == pytest.approx(1.0, abs=1e-5)


def test_knockout_tables(fame, world):
    labels = A.item_labels(world, "genre")
    table = A.head_knockout_table(fame, world, labels)
    assert set(table["intervention"]) == {"none"} | {f"remove head {h}" for h in range(4)}
    none = table[table["intervention"] == "none"]
    assert (none["delta NDCG@10"] == 0).all()
    assert set(none["group"]) - {"all"} <= set(labels[1:])
    # paired intervals: around each delta, 0 for the unmodified model; a removal that moves
    # every user's score gets an interval that is much narrower than the metric itself
    for metric in ("HR@10", "NDCG@10"):
        low, high = table[f"delta {metric} low"], table[f"delta {metric} high"]
        assert ((low <= table[f"delta {metric}"] + 1e-12)
                & (table[f"delta {metric}"] <= high + 1e-12)).all()
        assert (none[f"delta {metric} low"] == 0).all() and (none[f"delta {metric} high"] == 0).all()
    from famekit.analysis.knockouts import _per_user, evaluate_intervention
    from famekit.analysis.stats import bootstrap_ci

    _, base = evaluate_intervention(fame, world)
    _, knocked = evaluate_intervention(
        fame, world, [("fame.hook_gate_weights", remove_heads_hook([1], 4))])
    paired = (_per_user(knocked["rank"].to_numpy())["NDCG@10"]
              - _per_user(base["rank"].to_numpy())["NDCG@10"])
    row = table[(table["intervention"] == "remove head 1") & (table["group"] == "all")].iloc[0]
    assert paired.mean() == pytest.approx(row["delta NDCG@10"], abs=1e-12)
    assert (row["delta NDCG@10 low"], row["delta NDCG@10 high"]) == pytest.approx(
        bootstrap_ci(paired))
    forcing = A.expert_forcing_table(fame, world, heads=[0], max_users=60)
    assert len(forcing[forcing["group"] == "all"]) == 1 + 3
    assert {"delta NDCG@10 low", "delta HR@10 high"} <= set(forcing.columns)
    assert forcing["users"].max() == 60
    with pytest.raises(ParameterError, match="every head"):
        remove_heads_hook(range(4), 4)
    with pytest.raises(ParameterError, match="expert 5"):
        force_expert_hook(0, 5, 4, 3)


def test_forcing_an_expert_makes_the_router_one_hot(fame, world):
    inputs, _, _ = world.split().eval_inputs("test")
    ids = torch.from_numpy(pad_left(inputs[:4], fame.config.max_len))
    with fame.hooks([("fame.hook_router_probs", force_expert_hook(1, 2, 4, 3))]):
        _, cache = fame.run_with_cache(ids, names_filter=["fame.hook_router_probs"])
    probs = cache["fame.hook_router_probs"]
    assert (probs[:, :, 1, 2] == 1).all() and (probs[:, :, 1, :2] == 0).all()


def test_nmi_on_known_cases():
    a = np.array([0, 0, 1, 1, 2, 2] * 20)
    assert A.normalized_mutual_information(a, a) == pytest.approx(1.0)
    assert A.normalized_mutual_information(a, (a + 1) % 3) == pytest.approx(1.0)  # renaming
    rng = np.random.default_rng(0)
    assert A.normalized_mutual_information(rng.integers(3, size=6000),
                                           rng.integers(3, size=6000)) < 0.01
    assert A.normalized_mutual_information(a, np.zeros_like(a)) == 0.0


def test_recovery_measures_on_planted_answers(world):
    gt = world.ground_truth
    facets = list(gt["facets"])
    split = world.split()
    inputs, _, rows = split.eval_inputs("test")
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in inputs])])
    flat = np.concatenate([np.arange(world.offsets[r], world.offsets[r] + len(s))
                           for r, s in zip(rows, inputs)])
    t = len(flat)
    # a perfect model: head f is the gate winner for users driven by facet f, and head f's
    # router sends every planted position to the expert numbered by its active interest
    gates = np.zeros((t, 3), dtype=np.float32)
    user_of_pos = np.repeat(np.arange(len(rows)), np.diff(offsets))
    gates[np.arange(t), gt["user_facet"][rows][user_of_pos]] = 1.0
    n_exp = 30
    router = np.full((t, 3, n_exp), 1e-3, dtype=np.float32)
    interest = gt["interest"][flat]
    for h in range(3):
        router[np.arange(t), h, np.where(interest >= 0, interest, 0)] = 1.0
    acts = Activations(rows, offsets, world.item_ids[flat], flat, gates, router, None,
                       np.zeros(len(rows)), "test")
    head_facet = {0: facets[0], 1: facets[1], 2: facets[2]}
    assert A.driving_facet_accuracy(acts, world, head_facet)["accuracy"] == 1.0
    nmi = A.interest_expert_nmi(acts, world, head_facet)
    assert (nmi["nmi"] > 0.99).all() and (nmi["chance"] < 0.2).all()
    # the same measures say "chance" for a model that ignores the facets
    rng = np.random.default_rng(1)
    shuffled = Activations(rows, offsets, acts.items, flat, gates[rng.permutation(t)],
                           router[rng.permutation(t)], None, acts.targets, "test")
    assert A.driving_facet_accuracy(shuffled, world, head_facet)["accuracy"] < 0.5
    assert (A.interest_expert_nmi(shuffled, world, head_facet)["nmi"] < 0.2).all()


def test_recovery_refuses_real_data_and_non_fame_models(world):
    from famekit.datasets import SeqDataset

    plain = SeqDataset.from_sequences("files", [[1, 2, 3]])
    with pytest.raises(ParameterError, match="synthetic"):
        A.facet_recovery(pd.DataFrame(), plain)
    sasrec = build_model(ModelConfig(n_items=world.n_items, kind="sasrec", d_model=16))
    with pytest.raises(ParameterError, match="FAME"):
        A.collect_activations(sasrec, world)


@pytest.mark.slow
def test_umap_layout_is_seeded_cached_and_finite():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6)).astype(np.float32)
    first = A.umap_layout(x, seed=1, use_disk_cache=False)
    assert first.shape == (80, 2) and np.isfinite(first).all()
    assert A.umap_layout(x, seed=1) is first  # served from the in-memory cache
