"""famekit.analysis.stats: each statistic checked against a case worked by hand or by a
known distribution, and each shown to move when the data does."""

from __future__ import annotations

import numpy as np
import pytest

from famekit.analysis.stats import (
    bootstrap_ci,
    group_means,
    groups_differ,
    holm,
    permutation_p,
    wilson_ci,
)
from famekit.errors import ParameterError


def test_holm_matches_the_step_down_rule_worked_by_hand():
    # sorted 0.01, 0.02, 0.04 (m = 3): 3*0.01 = 0.03, 2*0.02 = 0.04, max(0.04, 1*0.04) = 0.04
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([0.01, np.nan, 0.03])  # NaN does not count towards m
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.03)
    assert np.all(holm(np.full(12, 0.01)) == pytest.approx(0.12))  # the grid pays for its size


def test_permutation_p_is_never_zero_and_has_a_floor():
    assert permutation_p(5.0, np.zeros(199)) == pytest.approx(1 / 200)
    assert permutation_p(0.0, np.zeros(199)) == 1.0


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 50), rng.normal(1.0, 1.0, 5000)
    lo_s, hi_s = bootstrap_ci(small, seed=1)
    lo_l, hi_l = bootstrap_ci(large, seed=1)
    assert lo_l < 1.0 < hi_l and lo_s < small.mean() < hi_s
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # width ~ 1/sqrt(n): 100x the data, ~10x narrower
    assert bootstrap_ci(small, seed=1) == (lo_s, hi_s)  # seeded
    # a statistic over paired rows: the mean difference of two columns
    pair = np.stack([large, large - 0.5], axis=1)
    lo, hi = bootstrap_ci(pair, statistic=lambda r: r[..., 0].mean(1) - r[..., 1].mean(1))
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)


def test_bootstrap_in_blocks_equals_one_block(monkeypatch):
    import famekit.analysis.stats as S

    values = np.random.default_rng(3).random(300)
    whole = bootstrap_ci(values, seed=2)
    monkeypatch.setattr(S, "_BLOCK_ELEMENTS", 1000)  # 3 resamples per block
    assert bootstrap_ci(values, seed=2) == pytest.approx(whole)


def test_wilson_interval_matches_the_textbook_value():
    lo, hi = wilson_ci(50, 100)  # 0.5 +- 1.96 * sqrt(.25/100) / (1 + 1.96^2/100) ...
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_ci(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_ci(10, 10)[1] == pytest.approx(1.0)
    assert np.isnan(wilson_ci(0, 0)[0])


def test_groups_differ_finds_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    groups = np.repeat(["a", "b", "c"], 200)
    same = rng.normal(0, 1, 600)
    shifted = same + np.repeat([0.0, 0.0, 0.5], 200)
    found = groups_differ(shifted, groups, n_permutations=199, seed=0)
    assert found["p_value"] == pytest.approx(found["p_floor"]) == pytest.approx(1 / 200)
    assert found["statistic"] > 0.03 and found["groups"] == 3
    assert groups_differ(same, groups, n_permutations=199, seed=0)["p_value"] > 0.05
    with pytest.raises(ParameterError, match="at least two"):
        groups_differ(same, np.repeat("a", 600))


def test_group_means_with_intervals_and_a_minimum_size():
    frame = group_means([1.0, 1.0, 3.0, 3.0, 9.0], ["x", "x", "y", "y", "z"], min_count=2)
    assert list(frame["group"]) == ["x", "y"] and list(frame["mean"]) == [1.0, 3.0]
    assert (frame["ci_low"] <= frame["mean"]).all() and (frame["mean"] <= frame["ci_high"]).all()
    with pytest.raises(ParameterError, match="one group label per value"):
        group_means([1.0, 2.0], ["x"])
    with pytest.raises(ParameterError, match="n_boot"):
        bootstrap_ci([1.0], n_boot=0)
