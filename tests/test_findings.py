"""famekit.analysis.findings and the Findings box: every verdict is computed, and each test
gives crafted numbers on both sides of the verdict's threshold so that the verdict must flip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from famekit.analysis import findings as V
from famekit.errors import ParameterError
from famekit.figures import findings_box


def test_gate_uniformity_flips_at_the_near_uniform_share():
    at = V.gate_uniformity(1.34, np.log(4))
    assert at.verdict == "gate near uniform" and at.kind == "absent"
    assert "1.34 of at most 1.39 nats" in at.detail
    assert V.gate_uniformity(0.8, np.log(4)).verdict == "gate selective"


def _tests(p_adjusted, eta=0.001):
    return pd.DataFrame({"head": range(len(p_adjusted)), "eta_squared": eta, "p_value": p_adjusted,
                         "p_floor": 0.001, "p_adjusted": p_adjusted})


def test_gate_groups_says_whether_any_head_differs_after_correction():
    none = V.gate_groups(_tests([0.41, 0.9, 1.0]), "genre")
    assert none.verdict == "the gate does not depend on the users' genre" and "0.410" in none.detail
    some = V.gate_groups(_tests([0.001, 0.9, 0.04], eta=0.2), "genre")
    assert some.verdict == "the gate depends on the users' genre" and some.kind == "found"
    assert "heads 0, 2" in some.detail and "(the floor)" in some.detail


def test_routing_sharpness():
    frame = pd.DataFrame({"head": [0, 1], "normalised_entropy": [0.97, 0.95]})
    assert V.routing_sharpness(frame).verdict == "routers near uniform"
    frame.loc[1, "normalised_entropy"] = 0.4
    found = V.routing_sharpness(frame)
    assert found.verdict == "routers pick experts" and "head, 1," in found.detail


def _alignment(aligned):
    return pd.DataFrame({"head": [0, 1, -1], "aligned": aligned, "p_floor": 0.005})


def test_alignment_counts_calls_an_all_aligned_grid_uninformative():
    every = V.alignment_counts(_alignment([True, True, True]))
    assert every.verdict == "every head is aligned with every field" and "2 of 2" in every.detail
    assert V.alignment_counts(_alignment([True, False, True])).verdict == "aligned pairs"
    assert V.alignment_counts(_alignment([False, False, True])).kind == "absent"


def _spec(rankings, specialised=(False, False), margins=(0.0, 0.0)):
    return pd.DataFrame({"head": [0, 1], "ranking": rankings,
                         "best_field": [r.split(" > ")[0] for r in rankings],
                         "others_field": ["brand", "genre"], "margin": margins,
                         "ci_low": [m / 2 for m in margins], "ci_high": [m * 2 for m in margins],
                         "specialised": specialised})


def test_specialisation_needs_a_significant_different_first_field():
    same = V.specialisation(_spec(["brand > genre", "brand > genre"]))
    assert same.verdict == "no head specialises" and "every head ranks brand > genre" in same.detail
    first = V.specialisation(_spec(["brand > genre > tier", "brand > tier > genre"]))
    assert first.detail == "every head puts brand first"
    unsure = V.specialisation(_spec(["genre > brand", "brand > genre"]))
    assert unsure.verdict == "no head specialises significantly"
    yes = V.specialisation(_spec(["genre > brand", "brand > genre"], (True, True), (0.4, 0.3)))
    assert yes.verdict == "heads specialise" and "head 0 puts genre first (+0.40" in yes.detail


def test_accuracy_comparison_claims_nothing_inside_the_band():
    assert V.accuracy_comparison("FAME", 0.0923, "SASRec", 0.0998).verdict == \
        "FAME and SASRec are level"
    assert V.accuracy_comparison("FAME", 0.0823, "SASRec", 0.0998).verdict == \
        "FAME does not beat SASRec"
    win = V.accuracy_comparison("FAME+", 0.1231, "FAME", 0.0923)
    assert win.verdict == "FAME+ beats FAME" and "+0.0308" in win.detail


def test_epochs_comparison_orders_by_the_numbers_not_by_expectation():
    assert V.epochs_comparison({"FAME": 5, "SASRec": 9}).verdict == \
        "FAME needed fewer epochs than SASRec"
    assert V.epochs_comparison({"FAME": 12, "SASRec": 9}).verdict == \
        "SASRec needed fewer epochs than FAME"
    assert V.epochs_comparison({"FAME": 9, "SASRec": 9}).verdict == "same number of epochs"


def test_knockout_costs_flags_a_cost_that_just_follows_the_gate():
    overall = pd.DataFrame({"relative NDCG@10": [0.0, -0.30, -0.02]},
                           index=["none", "remove head 0", "remove head 1"])
    found = V.knockout_costs(overall, gate_means=[0.6, 0.4])
    assert found.verdict == "heads matter unequally" and "may just follow its weight" in found.detail
    assert "may just follow" not in V.knockout_costs(overall, gate_means=[0.4, 0.6]).detail
    overall["relative NDCG@10"] = [0.0, -0.03, -0.02]
    assert V.knockout_costs(overall).verdict == "heads matter about equally"
    overall = overall.assign(**{"delta NDCG@10": [0.0, -0.003, -0.002],
                                "delta NDCG@10 low": [0.0, -0.005, -0.004],
                                "delta NDCG@10 high": [0.0, -0.001, 0.001]})
    assert "(Δ -0.0030, 95% CI -0.0050 to -0.0010)" in V.knockout_costs(overall).detail
    overall["relative NDCG@10"] = [0.0, -0.30, -0.02]  # a large cost ...
    assert V.knockout_costs(overall).verdict == "heads matter unequally"
    overall["delta NDCG@10 high"] = [0.0, 0.0005, 0.001]  # ... that its interval cannot tell from 0
    found = V.knockout_costs(overall)
    assert found.verdict == "no head's removal costs significantly" and found.kind == V.ABSENT


def test_planted_recovery_needs_the_interval_above_chance():
    assert V.planted_recovery(0.334, 0.339, 1500).verdict == "planted facet recovered at chance"
    assert V.planted_recovery(0.40, 0.339, 1500).verdict == \
        "planted facet recovered above chance"
    assert V.planted_recovery(0.40, 0.339, 30).verdict == "planted facet recovered at chance"


def test_facet_placement_and_routing():
    margins = pd.DataFrame({"facet": ["genre", "brand"], "head": [0, 1],
                            "margin": [2.8, float("inf")], "passes": [True, True]})
    held = V.facet_placement(margins)
    assert held.verdict == "FAME+: every facet sits on its head" and "x2.8" in held.detail
    margins.loc[1, "passes"] = False
    assert V.facet_placement(margins).verdict == "FAME+: 1 of 2 facets sit on their head"
    row = pd.Series({"accuracy": 0.909, "chance": 0.339, "users": 1500})
    assert V.facet_routing(row, "FAME+").verdict == "FAME+ routes users by facet"
    row["accuracy"] = 0.6
    assert V.facet_routing(row, "FAME+").verdict == "FAME+ routes above chance, below the target"
    row["accuracy"] = 0.33
    assert V.facet_routing(row, "FAME").verdict == "FAME routes at chance"


def test_the_box_escapes_metadata_and_reads_as_text():
    evil = V.Finding("<script>alert(1)</script>", "brand <img src=x onerror=1> & co", "found")
    box = findings_box([evil])
    page = box._repr_html_()
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page
    assert repr(box) == "Findings:\n- <script>alert(1)</script>: brand <img src=x onerror=1> & co"
    with pytest.raises(ParameterError, match="non-empty list of Finding"):
        findings_box([])
    with pytest.raises(ParameterError, match="Finding objects"):
        findings_box(["gate near uniform"])


def test_the_seed_band_is_two_standard_errors_of_the_difference():
    assert V.seed_band(0.003, 3, 0.004, 3) == pytest.approx(2 * np.sqrt(0.000009 / 3 + 0.000016 / 3))
    assert V.seed_band(0.003, 1, 0.004, 3) == V.NO_DIFFERENCE_BAND  # one seed: no spread known
    tight = V.accuracy_comparison("FAME", 0.0549, "SASRec", 0.0569, band=V.seed_band(
        0.0005, 3, 0.0006, 3), band_reason="of 3 seeds")
    assert tight.verdict == "FAME does not beat SASRec"
