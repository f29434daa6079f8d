"""The synthetic facet world: determinism, planted truth consistency, parameter validation."""

import numpy as np
import pytest

from famekit import datasets
from famekit.datasets.synthetic import FacetWorldParams, generate
from famekit.errors import ParameterError

SMALL = dict(n_users=300, n_items=400, seed=3)


@pytest.fixture(scope="module")
def world():
    return generate(**SMALL)


def test_same_seed_same_world_other_seed_other_world(world):
    again = generate(**SMALL)
    assert again.fingerprint == world.fingerprint
    assert np.array_equal(again.ground_truth["interest"], world.ground_truth["interest"])
    assert generate(**{**SMALL, "seed": 4}).fingerprint != world.fingerprint


def test_registry_loads_the_default():
    ds = datasets.load("synthetic", n_users=50, n_items=200)
    assert ds.name == "synthetic" and ds.n_users == 50 and ds.n_items == 200


def test_shapes_and_lengths(world):
    p = FacetWorldParams(**SMALL)
    assert world.n_users == p.n_users and world.n_items == p.n_items
    assert world.lengths.min() >= p.min_length and world.lengths.max() <= p.max_length
    assert list(world.items.columns) == ["genre", "brand", "price_tier", "title"]
    assert world.items.index.tolist() == list(range(1, p.n_items + 1))
    gt = world.ground_truth
    assert gt["interest"].shape == world.item_ids.shape
    assert gt["item_facet_codes"].shape == (p.n_items + 1, 3)
    assert len(gt["user_interests"]) == world.n_users


def test_every_planted_step_draws_from_the_active_interest(world):
    gt = world.ground_truth
    codes = gt["item_facet_codes"]
    for u in range(world.n_users):
        lo, hi = world.offsets[u], world.offsets[u + 1]
        items, interest = world.item_ids[lo:hi], gt["interest"][lo:hi]
        facet = gt["user_facet"][u]
        planted = interest >= 0
        # the item's value of the user's driving facet is the active interest
        assert np.array_equal(codes[items[planted], facet], interest[planted])
        assert set(interest[planted]) <= set(gt["user_interests"][u])
        assert len(set(items.tolist())) == len(items), "items never repeat within a user"


def test_metadata_names_match_codes(world):
    gt = world.ground_truth
    for f, (facet, names) in enumerate(gt["facets"].items()):
        expected = [names[c] for c in gt["item_facet_codes"][1:, f]]
        assert world.items[facet].tolist() == expected


def test_noise_share_and_switching_follow_parameters():
    ds = generate(n_users=600, n_items=1200, n_brands=10, noise=0.2, switch_prob=0.0, seed=1)
    interest = ds.ground_truth["interest"]
    share = (interest == -1).mean()
    assert 0.15 < share < 0.25
    # with switch_prob 0 a user never leaves its first interest
    for u in range(ds.n_users):
        steps = interest[ds.offsets[u] : ds.offsets[u + 1]]
        assert len(set(steps[steps >= 0].tolist())) <= 1


def test_popularity_is_skewed(world):
    pop = np.sort(world.item_popularity()[1:])[::-1]
    top_decile = pop[: len(pop) // 10].sum() / pop.sum()
    assert top_decile > 0.2  # uniform would give 0.1


@pytest.mark.parametrize(
    "bad",
    [dict(n_users=0), dict(n_items=-5), dict(min_length=2), dict(switch_prob=1.5),
     dict(noise=1.0), dict(max_length=3), dict(n_items=50), dict(max_interests=9, n_price_tiers=4)],
)
def test_bad_parameters_name_the_parameter(bad):
    with pytest.raises(ParameterError) as err:
        generate(**bad)
    assert list(bad)[0] in str(err.value) and "Fix:" in str(err.value)


def test_unknown_parameter_lists_the_known_ones():
    with pytest.raises(ParameterError, match="n_users"):
        datasets.load("synthetic", n_user=10)


def test_split_of_the_world(world):
    split = world.split()
    inputs, targets, users = split.eval_inputs("test")
    assert len(inputs) == world.n_users  # every user has >= 5 items
    u = 7
    seq = world.sequence(u)
    assert targets[u] == seq[-1] and np.array_equal(inputs[u], seq[:-1])
    v_inputs, v_targets, _ = split.eval_inputs("valid")
    assert v_targets[u] == seq[-2] and np.array_equal(v_inputs[u], split.train_sequence(u))
