"""The verdicts each report page opens with, computed from that page's own results.

Every function here is pure: it takes the numbers an analysis returned and gives back a
:class:`Finding` (a short verdict, the sentence with its numbers, and whether something was
found). No sentence that states a result is written by hand in a notebook: a page collects
its findings and :func:`famekit.figures.findings_box` draws them above everything else.

The thresholds that turn a number into a verdict are named constants, so that a reader of
``docs/decisions.md`` ("Report statistics and verdicts") and of the tests can see where each
verdict flips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from famekit.analysis.stats import LEVEL, wilson_ci

__all__ = [
    "NEAR_UNIFORM",
    "NO_DIFFERENCE_BAND",
    "Finding",
    "accuracy_comparison",
    "alignment_counts",
    "epochs_comparison",
    "facet_placement",
    "facet_routing",
    "gate_groups",
    "gate_uniformity",
    "knockout_costs",
    "planted_recovery",
    "routing_sharpness",
    "specialisation",
]

FOUND, ABSENT, NEUTRAL = "found", "absent", "neutral"

# Entropy at or above this share of its maximum (log H heads, log N experts) counts as "near
# uniform": the gate or router barely prefers anything.
NEAR_UNIFORM = 0.9
# Test NDCG@10 differences inside this band are not claimed either way: retraining the same
# recipe on another machine or thread count moves NDCG@10 by up to 0.01 (docs/decisions.md,
# "Committed reports are checked over the weights they were made from").
NO_DIFFERENCE_BAND = 0.01


@dataclass(frozen=True)
class Finding:
    """One computed verdict: ``verdict`` (a few words), ``detail`` (the numbers behind it) and
    ``kind``: ``"found"`` (the page sees the structure it looks for), ``"absent"`` (it does
    not) or ``"neutral"`` (a plain measurement)."""

    verdict: str
    detail: str
    kind: str = NEUTRAL

    @property
    def sentence(self) -> str:
        return f"{self.verdict}: {self.detail}"

    def __str__(self) -> str:
        return self.sentence


def _p(value: float, floor: float | None = None) -> str:
    text = f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"
    return f"p_adj {text}" + (" (the floor)" if floor is not None and value <= floor else "")


# --------------------------------------------------------------------------- gates (01)
def gate_uniformity(mean_entropy: float, max_entropy: float,
                    near: float = NEAR_UNIFORM) -> Finding:
    """Is the gate near uniform? Mean per-user gate entropy against its maximum log H."""
    share = mean_entropy / max_entropy if max_entropy > 0 else 1.0
    detail = f"mean entropy {mean_entropy:.2f} of at most {max_entropy:.2f} nats ({share:.0%})"
    if share >= near:
        return Finding("gate near uniform", detail + ": every head gets about 1/H", ABSENT)
    return Finding("gate selective", detail + ": users lean on some heads more", FOUND)


def gate_groups(tests: pd.DataFrame, field: str, alpha: float = 0.05) -> Finding:
    """FAME's own question: does any head's mean gate differ between user groups?
    ``tests``: :attr:`famekit.analysis.GateGroups.tests`."""
    differs = tests[tests["p_adjusted"] < alpha]
    if differs.empty:
        best = tests.loc[tests["p_adjusted"].idxmin()]
        return Finding(
            f"the gate does not depend on the users' {field}",
            f"no head's mean gate differs between groups after Holm correction (smallest "
            f"{_p(best['p_adjusted'])} on head {int(best['head'])}, groups explain at most "
            f"{tests['eta_squared'].max():.1%} of a head's gate variance)", ABSENT)
    heads = ", ".join(str(int(h)) for h in differs["head"])
    strongest = differs.loc[differs["eta_squared"].idxmax()]
    return Finding(
        f"the gate depends on the users' {field}",
        f"heads {heads} differ between groups after Holm correction (head "
        f"{int(strongest['head'])}: groups explain {strongest['eta_squared']:.1%} of its gate "
        f"variance, {_p(strongest['p_adjusted'], strongest['p_floor'])})", FOUND)


# --------------------------------------------------------------------------- routing (02)
def routing_sharpness(entropy: pd.DataFrame, near: float = NEAR_UNIFORM) -> Finding:
    """Do the routers pick experts? ``entropy``: :func:`famekit.analysis.routing_entropy`."""
    sharpest = entropy.loc[entropy["normalised_entropy"].idxmin()]
    value = float(sharpest["normalised_entropy"])
    detail = (f"the most decisive head, {int(sharpest['head'])}, has normalised router entropy "
              f"{value:.2f} (1 = uniform over experts)")
    if value >= near:
        return Finding("routers near uniform", detail, ABSENT)
    return Finding("routers pick experts", detail, FOUND)


# --------------------------------------------------------------------------- alignment (03)
def alignment_counts(alignment: pd.DataFrame, alpha: float = 0.05) -> Finding:
    """How many head x field pairs beat both nulls after the grid's correction."""
    heads = alignment[alignment["head"] >= 0]
    n, hits = len(heads), int(heads["aligned"].sum())
    floor = float(heads["p_floor"].iloc[0]) if "p_floor" in heads and n else float("nan")
    detail = (f"{hits} of {n} head x field pairs beat the permuted-label and random-init nulls "
              f"(Holm-adjusted p < {alpha:g}; the permutations cannot give p below {floor:.2g})")
    if hits == n and n:
        return Finding("every head is aligned with every field", detail
                       + ": alignment alone does not say that heads differ", NEUTRAL)
    return Finding("aligned pairs", detail, FOUND if hits else ABSENT)


def specialisation(spec: pd.DataFrame) -> Finding:
    """Do heads put different fields first? ``spec``: :func:`famekit.analysis.
    head_specialisation`."""
    special = spec[spec["specialised"]]
    if special.empty:
        rankings = spec["ranking"].unique()
        if len(rankings) == 1:
            return Finding("no head specialises", f"every head ranks {rankings[0]} "
                           "(chance-corrected kNN agreement)", ABSENT)
        firsts = spec["best_field"].unique()
        if len(firsts) == 1:
            return Finding("no head specialises",
                           f"every head puts {firsts[0]} first", ABSENT)
        return Finding("no head specialises significantly",
                       "heads put different fields first, but no margin's "
                       f"{LEVEL:.0%} bootstrap interval excludes 0", ABSENT)
    parts = [f"head {int(r['head'])} puts {r['best_field']} first (+{r['margin']:.2f} "
             f"chance-corrected over {r['others_field']}, {LEVEL:.0%} CI {r['ci_low']:.2f} to "
             f"{r['ci_high']:.2f})" for _, r in special.iterrows()]
    return Finding("heads specialise", "; ".join(parts), FOUND)


# --------------------------------------------------------------------------- accuracy (00)
def accuracy_comparison(a: str, a_value: float, b: str, b_value: float, metric: str = "NDCG@10",
                        band: float = NO_DIFFERENCE_BAND,
                        band_reason: str = "that retraining alone moves it") -> Finding:
    """Does ``a`` beat ``b``? Differences inside ``band`` (the noise named by
    ``band_reason``) are not claimed either way."""
    diff = a_value - b_value
    detail = f"test {metric} {a_value:.4f} vs {b_value:.4f} ({diff:+.4f})"
    if abs(diff) <= band:
        return Finding(f"{a} and {b} are level",
                       detail + f", inside the ±{band:.2g} {band_reason}", NEUTRAL)
    if diff > 0:
        return Finding(f"{a} beats {b}", detail, FOUND)
    return Finding(f"{a} does not beat {b}", detail, ABSENT)


def seed_band(std_a: float, n_a: int, std_b: float, n_b: int, z: float = 2.0) -> float:
    """The no-difference band of two multi-seed means: ``z`` standard errors of their
    difference (Welch); the retraining band when either has a single seed."""
    if n_a < 2 or n_b < 2 or not (np.isfinite(std_a) and np.isfinite(std_b)):
        return NO_DIFFERENCE_BAND
    return float(z * np.sqrt(std_a ** 2 / n_a + std_b ** 2 / n_b))


def epochs_comparison(epochs: dict) -> Finding:
    """Which model needed more epochs to its best validation score? ``epochs``: name -> best
    epoch (two or more models)."""
    ordered = sorted(epochs.items(), key=lambda kv: kv[1])
    text = ", ".join(f"{name} {epoch}" for name, epoch in ordered)
    (first, low), (last, high) = ordered[0], ordered[-1]
    if low == high:
        return Finding("same number of epochs", f"best epoch {text}")
    return Finding(f"{first} needed fewer epochs than {last}", f"best epoch {text}")


# --------------------------------------------------------------------------- knockouts (05)
def knockout_costs(overall: pd.DataFrame, gate_means=None) -> Finding:
    """Which head's removal costs most? ``overall``: the ``group == "all"`` rows of
    :func:`famekit.analysis.head_knockout_table` indexed by intervention (with its paired
    bootstrap interval, when the table has one); ``gate_means``: the heads' mean gates (a head
    with a larger gate is expected to cost more when removed)."""
    removed = overall.drop(index="none")
    costs = removed["relative NDCG@10"]
    worst = costs.idxmin()
    interval = ""
    if {"delta NDCG@10 low", "delta NDCG@10 high"} <= set(removed.columns):
        row = removed.loc[worst]
        interval = (f" (Δ {row['delta NDCG@10']:+.4f}, {LEVEL:.0%} CI "
                    f"{row['delta NDCG@10 low']:+.4f} to {row['delta NDCG@10 high']:+.4f})")
    detail = (f"removing {worst.replace('remove ', '')} costs {costs.min():+.1%} NDCG@10"
              f"{interval}, the cheapest removal {costs.max():+.1%}")
    if gate_means is not None:
        biggest = int(np.argmax(gate_means))
        same = worst == f"remove head {biggest}"
        detail += (f"; head {biggest} has the largest mean gate ({max(gate_means):.3f})"
                   + (", so its cost may just follow its weight" if same else ""))
    spread = costs.max() - costs.min()
    if interval and removed.loc[worst, "delta NDCG@10 high"] >= 0:
        # the costliest removal is within the noise of these users: nothing to rank heads by
        return Finding("no head's removal costs significantly",
                       detail + f" (spread {spread:.1%}; the interval includes 0)", ABSENT)
    kind = FOUND if spread > 0.05 else ABSENT
    verdict = "heads matter unequally" if kind == FOUND else "heads matter about equally"
    return Finding(verdict, detail + f" (spread {spread:.1%})", kind)


# --------------------------------------------------------------------------- planted (06, 07)
def planted_recovery(accuracy: float, chance: float, users: int) -> Finding:
    """Does the top-gated head name the user's planted driving facet more often than the
    majority rate? Wilson interval of the accuracy over ``users``."""
    low, high = wilson_ci(accuracy * users, users)
    detail = (f"the top-gated head names the driving facet for {accuracy:.3f} of {users} users "
              f"({LEVEL:.0%} CI {low:.3f} to {high:.3f}) vs {chance:.3f} by always answering "
              "the commonest facet")
    if low > chance:
        return Finding("planted facet recovered above chance", detail, FOUND)
    return Finding("planted facet recovered at chance", detail, ABSENT)


def facet_placement(margins: pd.DataFrame, model: str = "FAME+") -> Finding:
    """Does each assigned facet sit on its head? ``margins``: :func:`famekit.analysis.
    facet_margins`."""
    parts = [f"{r['facet']} on head {int(r['head'])} "
             + (f"(x{r['margin']:.1f} over the runner-up)" if math.isfinite(r["margin"])
                else "(the other heads at chance)") for _, r in margins.iterrows()]
    held = int(margins["passes"].sum())
    if held == len(margins):
        return Finding(f"{model}: every facet sits on its head", "; ".join(parts), FOUND)
    missed = ", ".join(margins.loc[~margins["passes"], "facet"])
    return Finding(f"{model}: {held} of {len(margins)} facets sit on their head",
                   f"not on its head: {missed}; " + "; ".join(parts), ABSENT)


def facet_routing(row: pd.Series, model: str, target: float = 0.8) -> Finding:
    """Does the gate send users to their driving facet's head? ``row``: the ``"all"`` row of
    :func:`famekit.analysis.facet_routing_accuracy`."""
    acc, chance, users = float(row["accuracy"]), float(row["chance"]), int(row["users"])
    low, high = wilson_ci(acc * users, users)
    detail = (f"{acc:.3f} of {users} users go to their facet's head ({LEVEL:.0%} CI "
              f"{low:.3f} to {high:.3f}; chance {chance:.3f}, target {target:g})")
    if acc >= target:
        return Finding(f"{model} routes users by facet", detail, FOUND)
    if low > chance:
        return Finding(f"{model} routes above chance, below the target", detail, NEUTRAL)
    return Finding(f"{model} routes at chance", detail, ABSENT)
