"""The synthetic "facet world": famekit's embedded default dataset, with planted ground truth.

Why it exists: real data cannot ship with famekit (Amazon and MovieLens terms forbid
redistribution) and cannot tell us whether an analysis recovers what a model *should* learn.
Here the answer is planted, so the analyses in famekit can be scored against it.

How the world is made (everything drawn from one seeded ``numpy`` generator):

* **Items** carry several independent named facets, each value drawn uniformly at random:
  ``genre`` (8 values), ``brand`` (30) and ``price_tier`` (4) by default. Popularity is skewed:
  item ``i`` gets weight ``rank^-popularity_exponent`` over a random permutation of ranks.
* **Users** are each *driven by one facet* (uniformly chosen) and hold 1-3 *interests*: distinct
  values of that facet. A user's sequence walks through their interests: it starts in a random
  one and at every step switches to another of their interests with probability
  ``switch_prob``. Each item is drawn, by popularity, from the items whose driving-facet value is
  the active interest, never repeating an item within the user. With probability ``noise`` a
  step instead draws any item by popularity (its interest is recorded as -1); so does a step
  whose interest has no unseen item left (rare: long users with one small interest).
* Sequence lengths are ``min_length`` + a geometric tail, capped at ``max_length``.

So a user driven by ``brand`` looks like a shopper loyal to a few brands across genres and price
tiers, and the next item is predictable only by looking at the right facet of the recent items:
the kind of structure FAME's heads are meant to separate.

Ground truth (``SeqDataset.ground_truth``):

* ``facets``: ``{facet name: [value names]}``, in facet order;
* ``item_facet_codes``: int64 [n_items + 1, n_facets], value index of every item (row 0 = -1);
* ``user_facet``: int64 [n_users], index of each user's driving facet;
* ``user_interests``: list of int64 arrays, each user's interest values (indices into the
  driving facet's values);
* ``interest``: int64 [n_interactions], aligned with ``item_ids``: the active interest value
  at every position (-1 for a noise step);
* ``params``: the generator parameters.

The metadata frame ``items`` has one column per facet (value names) plus a ``title``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from famekit.datasets.core import SeqDataset
from famekit.errors import ParameterError
from famekit.validation import is_real_number, is_whole_number

__all__ = ["FACET_VALUE_NAMES", "FacetWorldParams", "generate", "load"]

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Documentary", "Animation",
          "Thriller", "Western", "Musical", "Mystery"]
PRICE_TIERS = ["budget", "mid-range", "premium", "luxury", "collector", "bulk"]


def _brand_names(n: int) -> list[str]:
    return [f"Brand {i + 1:02d}" for i in range(n)]


# Value names of each known facet, by size (the generator takes the first `size` names).
FACET_VALUE_NAMES = {
    "genre": lambda n: GENRES[:n] if n <= len(GENRES) else [f"Genre {i + 1}" for i in range(n)],
    "brand": _brand_names,
    "price_tier": lambda n: (
        PRICE_TIERS[:n] if n <= len(PRICE_TIERS) else [f"Tier {i + 1}" for i in range(n)]
    ),
}


@dataclass(frozen=True)
class FacetWorldParams:
    """Parameters of the facet world. The defaults train in about a minute on 2 CPU cores."""

    n_users: int = 4000  # users (rows of the dataset)
    n_items: int = 1500  # items; ids 1..n_items
    n_genres: int = 8  # values of the `genre` facet
    n_brands: int = 30  # values of the `brand` facet
    n_price_tiers: int = 4  # values of the `price_tier` facet
    max_interests: int = 3  # each user holds 1..max_interests values of their driving facet
    switch_prob: float = 0.2  # chance, per step, to switch to another of the user's interests
    noise: float = 0.05  # chance, per step, of an item drawn by popularity alone
    popularity_exponent: float = 0.8  # item weight = rank ** -exponent (0 = uniform)
    min_length: int = 5  # shortest sequence (leave-one-out needs >= 3)
    mean_extra_length: float = 15.0  # mean of the geometric tail added to min_length
    max_length: int = 60  # longest sequence
    seed: int = 0  # everything is drawn from numpy.random.default_rng(seed)

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ParameterError(
                    f"synthetic dataset parameter {name}={getattr(self, name)!r} is invalid. "
                    f"Fix: {name} must be {rule}"
                )

        for name in ("n_users", "n_items", "n_genres", "n_brands", "n_price_tiers",
                     "max_interests"):
            value = getattr(self, name)
            need(is_whole_number(value) and value >= 1, name, "a whole number >= 1")
        # types first: a command line's seed=abc or noise=high must not reach a comparison
        for name in ("min_length", "max_length", "seed"):
            value = getattr(self, name)
            need(is_whole_number(value) and value >= 0, name, "a whole number >= 0")
        for name in ("switch_prob", "noise", "popularity_exponent", "mean_extra_length"):
            value = getattr(self, name)
            need(is_real_number(value) and math.isfinite(value), name, "a finite number")
        need(self.min_length >= 3, "min_length", "at least 3 (train + valid + test)")
        need(self.max_length >= self.min_length, "max_length", f">= min_length ({self.min_length})")
        need(0.0 <= self.switch_prob <= 1.0, "switch_prob", "between 0 and 1")
        need(0.0 <= self.noise < 1.0, "noise", "in [0, 1)")
        need(self.popularity_exponent >= 0.0, "popularity_exponent", ">= 0")
        need(self.mean_extra_length >= 0.0, "mean_extra_length", ">= 0")
        smallest = min(self.n_genres, self.n_brands, self.n_price_tiers)
        need(self.max_interests <= smallest, "max_interests",
             f"<= the smallest facet size ({smallest})")
        # Every (facet, value) pool must hold enough items for a user never to run dry.
        largest = max(self.n_genres, self.n_brands, self.n_price_tiers)
        need(self.n_items >= 4 * largest and self.n_items >= 2 * self.max_length, "n_items",
             f">= 4 x the largest facet size ({4 * largest}) and >= 2 x max_length "
             f"({2 * self.max_length}) so that every value has items")

    @property
    def facet_sizes(self) -> dict[str, int]:
        return {"genre": self.n_genres, "brand": self.n_brands, "price_tier": self.n_price_tiers}


def _item_facets(params: FacetWorldParams, rng: np.random.Generator) -> np.ndarray:
    """int64 [n_items + 1, n_facets]: facet value of every item; row 0 (padding) is -1.

    Values are dealt round-robin and then shuffled, so every value owns ~n_items/size items.
    """
    codes = np.full((params.n_items + 1, len(params.facet_sizes)), -1, dtype=np.int64)
    for f, size in enumerate(params.facet_sizes.values()):
        codes[1:, f] = rng.permutation(np.arange(params.n_items) % size)
    return codes


def _popularity(params: FacetWorldParams, rng: np.random.Generator) -> np.ndarray:
    """float64 [n_items + 1]: unnormalised popularity of every item (0 for padding)."""
    ranks = rng.permutation(params.n_items) + 1.0
    weights = np.zeros(params.n_items + 1)
    weights[1:] = ranks ** -params.popularity_exponent
    return weights


def _draw(
    pool: np.ndarray, cumulative: np.ndarray, taken: set, rng: np.random.Generator
) -> int | None:
    """One item of ``pool`` by popularity, avoiding ``taken``; None when the pool is used up."""
    total = cumulative[-1]
    for _ in range(32):
        item = int(pool[np.searchsorted(cumulative, rng.random() * total, side="right")])
        if item not in taken:
            return item
    free = [int(i) for i in pool if int(i) not in taken]
    return free[rng.integers(len(free))] if free else None


def generate(params: FacetWorldParams | None = None, **overrides) -> SeqDataset:
    """Generate the facet world (deterministic for a given parameter set)."""
    if params is None:
        known = {f.name for f in fields(FacetWorldParams)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ParameterError(
                f"unknown synthetic dataset parameter(s) {unknown}. "
                f"Fix: use some of {sorted(known)}"
            )
        params = FacetWorldParams(**overrides)
    rng = np.random.default_rng(params.seed)
    facet_names = list(params.facet_sizes)
    codes = _item_facets(params, rng)
    weights = _popularity(params, rng)

    # Item pools per (facet, value) with cumulative popularity, for O(log n) draws.
    pools: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for f, size in enumerate(params.facet_sizes.values()):
        for v in range(size):
            pool = np.flatnonzero(codes[:, f] == v)
            pools[f, v] = (pool, np.cumsum(weights[pool]))
    all_items = np.arange(1, params.n_items + 1)
    all_cumulative = np.cumsum(weights[1:])

    p_geom = 1.0 / (1.0 + params.mean_extra_length)
    lengths = params.min_length + rng.geometric(p_geom, size=params.n_users) - 1
    lengths = np.minimum(lengths, params.max_length)
    user_facet = rng.integers(len(facet_names), size=params.n_users)

    sequences, interests_per_step, user_interests = [], [], []
    for u in range(params.n_users):
        f = int(user_facet[u])
        n_interests = int(rng.integers(1, params.max_interests + 1))
        interests = rng.choice(params.facet_sizes[facet_names[f]], size=n_interests, replace=False)
        user_interests.append(interests.astype(np.int64))
        active = int(rng.integers(n_interests))
        taken: set = set()
        seq = np.empty(lengths[u], dtype=np.int32)
        steps = np.empty(lengths[u], dtype=np.int64)
        for t in range(lengths[u]):
            if t > 0 and n_interests > 1 and rng.random() < params.switch_prob:
                # switch to one of the *other* interests
                active = (active + 1 + int(rng.integers(n_interests - 1))) % n_interests
            item, steps[t] = None, interests[active]
            if rng.random() >= params.noise:
                pool, cumulative = pools[f, int(interests[active])]
                item = _draw(pool, cumulative, taken, rng)
            if item is None:  # a noise step, or the active interest's items are used up
                item, steps[t] = _draw(all_items, all_cumulative, taken, rng), -1
            taken.add(item)
            seq[t] = item
        sequences.append(seq)
        interests_per_step.append(steps)

    value_names = {
        name: FACET_VALUE_NAMES[name](size) for name, size in params.facet_sizes.items()
    }
    items = pd.DataFrame(index=pd.RangeIndex(1, params.n_items + 1, name="item_id"))
    for f, name in enumerate(facet_names):
        items[name] = [value_names[name][c] for c in codes[1:, f]]
    items["title"] = [
        f"{g} item {i} by {b} ({p})"
        for i, g, b, p in zip(items.index, items["genre"], items["brand"], items["price_tier"])
    ]
    ground_truth = {
        "facets": value_names,
        "item_facet_codes": codes,
        "user_facet": user_facet.astype(np.int64),
        "user_interests": user_interests,
        "interest": np.concatenate(interests_per_step),
        "params": asdict(params),
    }
    info = {
        "source": "famekit synthetic facet world (generated, no download)",
        "params": asdict(params),
    }
    return SeqDataset.from_sequences(
        "synthetic", sequences, params.n_items, items, ground_truth=ground_truth, info=info
    )


def load(cache_dir=None, **options) -> SeqDataset:
    """Registry entry point: the facet world is generated, never cached (it takes ~1 s)."""
    del cache_dir  # nothing to cache: generation is deterministic and fast
    return generate(**options)
