"""Statistics that the report pages state their verdicts with.

Pure numpy: arrays in, numbers and DataFrames out, every random draw seeded.

* :func:`holm` - Holm's step-down adjustment of a family of p-values (controls the
  family-wise error rate without assuming independence; the alignment grid's heads share one
  model, so Benjamini-Hochberg's positive-dependence condition is not given for free).
* :func:`bootstrap_ci` - percentile bootstrap interval of a mean (or of any statistic that
  maps a ``[n_boot, n]`` array of resamples to ``[n_boot]``).
* :func:`wilson_ci` - interval of a proportion (accuracy over users), analytic;
* :func:`group_means` - per group: users, mean and its bootstrap interval.
* :func:`groups_differ` - permutation test of "the group means are all equal" with the
  between-group sum of squares as the statistic (a one-way ANOVA without the normality).

Permutation p-values are ``(1 + #{null >= observed}) / (1 + n)``: never 0, and their floor
``1 / (1 + n)`` is reported beside them so that a reader can tell "p at the floor" from "p small".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from famekit.errors import ParameterError
from famekit.validation import is_whole_number

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_PERMUTATIONS",
    "LEVEL",
    "bootstrap_ci",
    "group_means",
    "groups_differ",
    "holm",
    "permutation_p",
    "wilson_ci",
]

DEFAULT_BOOTSTRAP = 1000  # resamples of a bootstrap interval
DEFAULT_PERMUTATIONS = 999  # draws of a permutation null: p can reach 0.001
LEVEL = 0.95  # confidence level of every interval the pages show
_BLOCK_ELEMENTS = 4_000_000  # bootstrap resamples are drawn in blocks of at most this many values


def _check_draws(name: str, value, least: int = 1) -> int:
    if not is_whole_number(value) or value < least:
        raise ParameterError(f"{name}={value!r} is invalid. Fix: pass a whole number >= {least} "
                             f"(e.g. {name}={DEFAULT_BOOTSTRAP})")
    return int(value)


def permutation_p(observed: float, null: np.ndarray) -> float:
    """One-sided p of ``observed`` against permutation draws ``null`` (larger = more extreme)."""
    null = np.asarray(null, dtype=float)
    return float((1 + np.count_nonzero(null >= observed)) / (1 + len(null)))


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values, in the order given (NaN stays NaN and does not count)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if len(finite) == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])  # step-down, monotone
    out[order] = np.minimum(adjusted, 1.0)
    return out


def wilson_ci(successes: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` ((nan, nan) when n is 0)."""
    from statistics import NormalDist

    if n <= 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def bootstrap_ci(values, n_boot: int = DEFAULT_BOOTSTRAP, level: float = LEVEL, seed: int = 0,
                 statistic=None) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` (default: the mean, NaN ignored) of
    ``values`` [n] (or [n, ...]: rows are resampled together). ``(nan, nan)`` when empty."""
    n_boot = _check_draws("n_boot", n_boot)
    if not 0 < level < 1:
        raise ParameterError(f"level={level!r} is invalid. Fix: pass a level in (0, 1), e.g. 0.95")
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(values), size=(n_boot, len(values)))  # [B, n]
    per_resample = max(1, values.size)
    block = max(1, _BLOCK_ELEMENTS // per_resample)  # resamples held in memory at once
    stats = np.concatenate([
        np.nanmean(values[rows[i:i + block]], axis=1) if statistic is None
        else statistic(values[rows[i:i + block]]) for i in range(0, n_boot, block)])
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(stats, [tail, 100 - tail], axis=0)
    return float(low), float(high)


def group_means(values, groups, n_boot: int = DEFAULT_BOOTSTRAP, level: float = LEVEL,
                seed: int = 0, min_count: int = 1) -> pd.DataFrame:
    """Per group (sorted): ``n``, ``mean`` of ``values`` [n] and its bootstrap ``ci_low`` /
    ``ci_high``; groups with fewer than ``min_count`` members are left out."""
    values = np.asarray(values, dtype=float)
    groups = np.asarray(groups)
    if values.shape != groups.shape:
        raise ParameterError(f"{len(values)} values but {len(groups)} group labels. Fix: pass "
                             "one group label per value")
    rows = []
    for i, group in enumerate(sorted(set(groups.tolist()), key=str)):
        member = values[groups == group]
        if len(member) < min_count:
            continue
        low, high = bootstrap_ci(member, n_boot, level, seed + i)
        rows.append({"group": group, "n": len(member), "mean": float(member.mean()),
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["group", "n", "mean", "ci_low", "ci_high"])


def groups_differ(values, groups, n_permutations: int = DEFAULT_PERMUTATIONS,
                  seed: int = 0) -> dict:
    """Permutation test of "every group has the same mean": ``statistic`` (between-group sum
    of squares over the total, i.e. eta squared, the share of variance the groups explain),
    ``p_value``, ``p_floor``, ``groups``. Needs at least two groups."""
    n_permutations = _check_draws("n_permutations", n_permutations)
    values = np.asarray(values, dtype=float)
    groups = np.asarray(groups)
    _, codes = np.unique(groups.astype(str), return_inverse=True)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    if n_groups < 2:
        raise ParameterError(f"{n_groups} group(s): a difference between groups needs at least "
                             "two. Fix: group by a field with more than one value")
    centred = values - values.mean()
    total = float((centred ** 2).sum())
    counts = np.bincount(codes, minlength=n_groups)

    def eta_squared(labels: np.ndarray) -> np.ndarray:  # labels [P, n] -> [P]
        sums = np.stack([np.bincount(row, weights=centred, minlength=n_groups) for row in labels])
        return (sums ** 2 / counts).sum(axis=1) / total if total > 0 else np.zeros(len(labels))

    observed = float(eta_squared(codes[None])[0])
    rng = np.random.default_rng(seed)
    null = eta_squared(np.stack([rng.permutation(codes) for _ in range(n_permutations)]))
    return {"statistic": observed, "p_value": permutation_p(observed, null),
            "p_floor": 1.0 / (1 + n_permutations), "groups": n_groups}
