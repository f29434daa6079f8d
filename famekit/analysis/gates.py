"""Gate weights: how much each head (facet) contributes to a user's recommendations.

All functions take :class:`~famekit.analysis.activations.Activations` and return DataFrames.
Heads are numbered 0..H-1 everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from famekit.analysis.activations import Activations
from famekit.analysis.stats import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_PERMUTATIONS,
    group_means,
    groups_differ,
    holm,
)
from famekit.errors import ParameterError

__all__ = ["GateGroups", "entropy", "gate_group_test", "gate_summary", "gates_along_sequence",
           "gates_by_group", "user_gates"]


def entropy(probs: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis`` (0 log 0 = 0), computed in float64."""
    probs = np.asarray(probs, dtype=np.float64)
    logs = np.log(np.where(probs > 0, probs, 1.0))
    return -(probs * logs).sum(axis=axis)


def user_gates(acts: Activations) -> pd.DataFrame:
    """One row per user: gate weight of each head at the last position, top head, entropy."""
    g = acts.last_gates  # [U, H]
    frame = pd.DataFrame(g, columns=[f"head {h}" for h in range(acts.n_heads)])
    frame.insert(0, "user", acts.users)
    frame["top_head"] = g.argmax(axis=1)
    frame["entropy"] = entropy(g)
    return frame


def gate_summary(acts: Activations) -> pd.DataFrame:
    """Per head: mean and std of its gate weight over users (last position), the share of users
    whose top head it is, and the mean over all positions.

    The frame's ``attrs`` carry the mean per-user gate entropy and its maximum, log(H).
    """
    g = acts.last_gates  # [U, H]
    top = np.bincount(g.argmax(axis=1), minlength=acts.n_heads) / max(1, len(g))
    frame = pd.DataFrame(
        {
            "head": np.arange(acts.n_heads),
            "mean_gate": g.mean(axis=0),
            "std_gate": g.std(axis=0),
            "top_head_share": top,
            "mean_gate_all_positions": acts.gates.mean(axis=0),
        }
    )
    frame.attrs["mean_entropy"] = float(entropy(g).mean())
    frame.attrs["max_entropy"] = float(np.log(acts.n_heads))
    return frame


def _check_groups(acts: Activations, groups) -> np.ndarray:
    groups = np.asarray(groups, dtype=object)
    if groups.shape != (len(acts.users),):
        raise ParameterError(
            f"groups has shape {groups.shape}, expected ({len(acts.users)},) = one label per "
            "collected user. Fix: derive the groups from the same Activations' users"
        )
    return groups


@dataclass(frozen=True)
class GateGroups:
    """FAME's question, asked of its gate: is each head's mean gate different for different
    groups of users?

    ``cells``: one row per (group, head): users, mean_gate, its bootstrap ci_low / ci_high,
    and ``centred`` = mean_gate minus the head's mean over the grouped users (the group effect
    with the head effect taken out). ``tests``: one row per head: eta_squared (share of the
    head's gate variance the groups explain), p_value (permutation), p_floor, p_adjusted (Holm
    across heads), differs (p_adjusted < alpha).
    """

    cells: pd.DataFrame
    tests: pd.DataFrame
    alpha: float


def gate_group_test(acts: Activations, groups, min_users: int = 5, alpha: float = 0.05,
                    n_boot: int = DEFAULT_BOOTSTRAP,
                    n_permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> GateGroups:
    """Mean last-position gate per head and user group with bootstrap intervals, and per head a
    permutation test of "every group has the same mean gate" (groups with fewer than
    ``min_users`` users and users without a group are left out)."""
    groups = _check_groups(acts, groups)
    counts = pd.Series([g for g in groups if g is not None]).value_counts()
    kept = set(counts[counts >= min_users].index)
    member = np.array([g in kept for g in groups], dtype=bool)  # [U]
    if len(kept) < 2:
        raise ParameterError(
            f"{len(kept)} user group(s) with >= {min_users} users: comparing groups needs two. "
            "Fix: group by another field or lower min_users")
    g = acts.last_gates[member]  # [U', H]
    labels = np.array([str(v) for v in groups[member]])
    cells, tests = [], []
    for h in range(acts.n_heads):
        means = group_means(g[:, h], labels, n_boot, seed=seed + 100 * h)
        means.insert(1, "head", h)
        means["centred"] = means["mean"] - g[:, h].mean()
        cells.append(means)
        tests.append({"head": h, **groups_differ(g[:, h], labels, n_permutations, seed + h)})
    cells = pd.concat(cells, ignore_index=True).rename(columns={"n": "users",
                                                                "mean": "mean_gate"})
    tests = pd.DataFrame(tests).rename(columns={"statistic": "eta_squared"})
    tests.insert(tests.columns.get_loc("p_floor") + 1, "p_adjusted", holm(tests["p_value"]))
    tests["differs"] = tests["p_adjusted"] < alpha
    return GateGroups(cells, tests, alpha)


def gates_by_group(acts: Activations, groups: np.ndarray, min_users: int = 5) -> pd.DataFrame:
    """Mean last-position gate weight of each head per user group (e.g. favourite category).

    ``groups`` is an object array [U] aligned with ``acts.users`` (None = no group). Groups with
    fewer than ``min_users`` users are dropped. Long format: group, head, mean_gate, users.
    """
    groups = _check_groups(acts, groups)
    g = acts.last_gates
    rows = []
    for label in sorted({v for v in groups if v is not None}):
        members = np.array([v == label for v in groups])
        if members.sum() < min_users:
            continue
        means = g[members].mean(axis=0)
        rows += [(label, h, float(means[h]), int(members.sum())) for h in range(acts.n_heads)]
    return pd.DataFrame(rows, columns=["group", "head", "mean_gate", "users"])


def gates_along_sequence(acts: Activations, user_row: int) -> pd.DataFrame:
    """Gate weights of one user at every position: columns position, item, head 0..H-1."""
    i = acts.index_of(user_row)
    sl = acts.user_slice(i)
    frame = pd.DataFrame(acts.gates[sl], columns=[f"head {h}" for h in range(acts.n_heads)])
    frame.insert(0, "item", acts.items[sl])
    frame.insert(0, "position", np.arange(sl.stop - sl.start))
    return frame
