"""FAME+'s facet objective: put a named metadata field on each of FAME's heads.

FAME+ (docs/fame-spec.md §8) trains head h's item sub-embeddings x_v^h with a supervised
contrastive loss on field h of the item metadata, so that items sharing a value of that field
(a brand, a genre) lie close together in that head and nowhere in particular in the others.

    facets = resolve_facets(dataset, ["genre", "brand", "price_tier"], n_heads=4)
    objective = FacetObjective(facets, heads=[0, 1, 2], items_per_step=512, temperature=0.1)
    loss = objective.loss(model, np.random.default_rng(0), step=7)   # facet 7 % 3 this step

Heads 0..k-1 get the k fields in order; the other heads stay free. With ``heads=None`` the
loss acts on the whole item embedding instead (the SASRec + metadata baseline: the same
objective, nowhere to put it but the one table).

The loss (choices in docs/decisions.md, "FAME+ facet objective"):

* **Supervised contrastive** (SupCon, the "outside the log" form): each sampled item is an
  anchor; its positives are the other sampled items with the same value; its denominator all
  other sampled items. Vectors are L2-normalised, logits divided by the temperature tau.
  Anchors without a positive in the sample are skipped.
* **Items without a value** are never sampled for that facet (they are neither anchors nor
  negatives).
* **Multi-label fields** (MovieLens ``genres``, Amazon ``categories``): two items are
  positives when they share at least one value.
* **One facet per step, in turn** (step s trains facet s mod k): each step costs one
  [M, d'] x [d', M] product, whatever the number of facets.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from famekit.datasets import SeqDataset
from famekit.datasets.missing import is_missing_label
from famekit.errors import ParameterError

__all__ = [
    "FACET_SCHEDULES",
    "FACET_TARGETS",
    "FacetLabels",
    "FacetObjective",
    "FacetWarning",
    "facet_fields",
    "head_label",
    "head_labels",
    "resolve_facets",
    "supervised_contrastive_loss",
]

# When the facet loss acts: "pretrain" = only before sequential training (the paper's recipe),
# "joint" = only during it (added to every step's cross-entropy), "both" = pre-training, then
# kept during training.
FACET_SCHEDULES = ("pretrain", "joint", "both")
# Where it acts: "heads" = head h's item sub-embeddings (FAME), "embedding" = the whole item
# embedding (any model; SASRec + metadata).
FACET_TARGETS = ("heads", "embedding")
# A field must label at least this many items, and this share of them, to be a facet: with
# fewer, a 512-item sample holds almost no positive pairs and the head learns nothing.
MIN_LABELLED_ITEMS = 20
MIN_LABELLED_SHARE = 0.05
# Fields derived from a list column (the first element), as the analyses derive them.
_DERIVED = {"genre": "genres", "top_category": "categories"}


class FacetWarning(UserWarning):
    """A facet assignment that trains but cannot do what it asks (nested fields)."""


@dataclass(frozen=True)
class FacetLabels:
    """One field's values over the items, as the objective needs them.

    ``codes``: int64 [V+1], the value index of every item (-1 = no value; single-label fields);
    ``multi``: bool [V+1, C] for multi-label fields (else None); ``labelled``: int64 ids of the
    items with a value; ``classes``: the value names.
    """

    name: str
    classes: list[str]
    labelled: np.ndarray
    codes: np.ndarray | None = None
    multi: np.ndarray | None = None

    @property
    def multi_label(self) -> bool:
        return self.multi is not None

    def positives(self, items: np.ndarray) -> torch.Tensor:
        """bool [M, M]: True where two of ``items`` share a value (the diagonal included)."""
        if self.multi is None:
            codes = torch.from_numpy(self.codes[items])  # [M]
            return codes[:, None] == codes[None, :]  # [M, M]
        hot = torch.from_numpy(self.multi[items]).float()  # [M, C]
        return (hot @ hot.T) > 0  # [M, M]


# ---------------------------------------------------------------------------- fields
def _is_value(value) -> bool:
    return isinstance(value, str) and not is_missing_label(value, placeholders=True)


def _column(dataset: SeqDataset, field: str) -> pd.Series | None:
    items = dataset.items
    if items is None:
        return None
    if field in items.columns:
        return items[field]
    source = _DERIVED.get(field)
    if source in items.columns:
        return items[source].map(lambda v: v[0] if isinstance(v, list) and v else None)
    return None


def _is_list_column(column: pd.Series) -> bool:
    return bool(column.map(lambda v: isinstance(v, (list, tuple))).any())


def facet_fields(dataset: SeqDataset) -> list[str]:
    """The metadata fields of ``dataset`` that can be facets: text columns and list columns
    (multi-label) with at least 2 values, plus ``genre`` / ``top_category`` derived from a list
    column's first element. ``title`` (one value per item) is left out."""
    items = dataset.items
    if items is None:
        return []
    names = [c for c in items.columns if c != "title"]
    names += [d for d, source in _DERIVED.items() if source in items.columns and d not in names]
    usable = []
    for name in names:
        column = _column(dataset, name)
        if _is_list_column(column):
            values = {v for row in column if isinstance(row, (list, tuple)) for v in row
                      if _is_value(v)}
        else:
            values = {v for v in column if _is_value(v)}
        if 2 <= len(values) < len(column):
            usable.append(name)
    return usable


def _labels_of(dataset: SeqDataset, name: str) -> FacetLabels:
    column = _column(dataset, name)
    n = dataset.n_items + 1
    ids = np.asarray(column.index, dtype=np.int64)
    inside = (ids >= 1) & (ids < n)
    if _is_list_column(column):
        rows = [[v for v in (row if isinstance(row, (list, tuple)) else []) if _is_value(v)]
                for row in column]
        classes = sorted({v for row in rows for v in row})
        index = {c: i for i, c in enumerate(classes)}
        multi = np.zeros((n, len(classes)), dtype=bool)
        for item, row, ok in zip(ids, rows, inside):
            if ok:
                multi[item, [index[v] for v in row]] = True
        labelled = np.flatnonzero(multi.any(axis=1)).astype(np.int64)
        return FacetLabels(name, classes, labelled, multi=multi)
    values = [v if _is_value(v) else None for v in column]
    classes = sorted({v for v in values if v is not None})
    index = {c: i for i, c in enumerate(classes)}
    codes = np.full(n, -1, dtype=np.int64)
    for item, value, ok in zip(ids, values, inside):
        if ok and value is not None:
            codes[item] = index[value]
    return FacetLabels(name, classes, np.flatnonzero(codes >= 0).astype(np.int64), codes=codes)


def _nested_pairs(labels: list[FacetLabels]) -> list[tuple[str, str]]:
    """(A, B) pairs of single-label fields where every value of A implies one value of B."""
    pairs = []
    for a in labels:
        for b in labels:
            if a is b or a.multi_label or b.multi_label:
                continue
            both = (a.codes >= 0) & (b.codes >= 0)
            if both.sum() < 2:
                continue
            frame = pd.DataFrame({"a": a.codes[both], "b": b.codes[both]})
            implied = frame.groupby("a")["b"].nunique().max() == 1
            if implied and frame["b"].nunique() > 1:
                pairs.append((a.name, b.name))
    return pairs


def resolve_facets(dataset: SeqDataset, facets, n_heads: int | None = None
                   ) -> list[FacetLabels]:
    """Check a facet assignment against ``dataset`` and return each field's labels.

    Refused with a :class:`ParameterError` naming the field and the fields available: an
    unknown field, a field with fewer than 2 values or on too few items, the same field twice,
    more facets than ``n_heads``. Nested fields (every value of A implies one of B) train, but
    cannot take separate heads: a :class:`FacetWarning` says so.
    """
    names = list(facets)
    available = facet_fields(dataset)
    shown = ", ".join(available) or "(none: this dataset has no item metadata)"
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ParameterError(f"facet field(s) {repeated} given twice. Fix: give each field "
                             f"once; the fields of {dataset.name!r} are {shown}")
    if n_heads is not None and len(names) > n_heads:
        raise ParameterError(
            f"{len(names)} facets ({', '.join(names)}) for {n_heads} heads: each facet takes "
            f"one head. Fix: pass at most {n_heads} facets, or more heads (--heads)")
    labels = []
    for name in names:
        if not isinstance(name, str) or _column(dataset, name) is None:
            raise ParameterError(f"dataset {dataset.name!r} has no metadata field {name!r} to "
                                 f"use as a facet. Fix: use some of {shown}")
        found = _labels_of(dataset, name)
        needed = max(MIN_LABELLED_ITEMS, int(np.ceil(MIN_LABELLED_SHARE * dataset.n_items)))
        if len(found.classes) < 2:
            raise ParameterError(
                f"facet field {name!r} of {dataset.name!r} has {len(found.classes)} value(s); a "
                f"facet needs at least 2 to contrast. Fix: use another of {shown}")
        sizes = (found.multi.sum(axis=0) if found.multi_label
                 else np.bincount(found.codes[found.labelled]))
        if len(found.classes) >= 2 and sizes.max() < 2:
            raise ParameterError(
                f"facet field {name!r} of {dataset.name!r} gives every item a value of its own "
                f"({len(found.classes)} values): no two items share one, so there is nothing "
                f"to pull together. Fix: use a categorical field, one of {shown}")
        if len(found.labelled) < needed:
            raise ParameterError(
                f"facet field {name!r} of {dataset.name!r} labels only {len(found.labelled)} of "
                f"{dataset.n_items} items (a facet needs {needed}: "
                f"{MIN_LABELLED_SHARE:.0%} and at least {MIN_LABELLED_ITEMS}). Fix: use "
                f"another of {shown}, or fill in the field")
        labels.append(found)
    for a, b in _nested_pairs(labels):
        warnings.warn(
            f"facet field {a!r} is nested in {b!r} on {dataset.name!r} (every value of {a} "
            f"implies one value of {b}): a head trained on {a} carries {b} too, so the two "
            "cannot take separate heads. Fix: drop one of them", FacetWarning, stacklevel=2)
    return labels


# ---------------------------------------------------------------------------- head names
def head_label(head: int, facets=()) -> str:
    """``"head 0 · genre"`` where head 0 carries a facet, else ``"head 3"``."""
    facets = tuple(facets or ())
    return f"head {head} · {facets[head]}" if head < len(facets) else f"head {head}"


def head_labels(n_heads: int, facets=()) -> list[str]:
    """:func:`head_label` of heads 0..n_heads-1."""
    return [head_label(h, facets) for h in range(n_heads)]


# ---------------------------------------------------------------------------- the loss
def supervised_contrastive_loss(vectors: torch.Tensor, positives: torch.Tensor,
                                temperature: float) -> torch.Tensor:
    """Mean SupCon loss of ``vectors`` [M, k] given ``positives`` bool [M, M] (the diagonal is
    ignored). Anchors with no positive are skipped; with none at all the loss is a zero that
    is still connected to ``vectors``."""
    z = F.normalize(vectors.float(), dim=1)  # [M, k]
    logits = z @ z.T / temperature  # [M, M]
    m = logits.shape[0]
    self_mask = torch.eye(m, dtype=torch.bool, device=logits.device)  # [M, M]
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # [M, M]
    pos = positives.to(logits.device) & ~self_mask  # [M, M]
    counts = pos.sum(dim=1)  # [M]
    anchors = counts > 0
    if not bool(anchors.any()):
        return vectors.sum() * 0.0
    summed = log_prob.masked_fill(~pos, 0.0).sum(dim=1)  # [M]
    return -(summed[anchors] / counts[anchors]).mean()


class FacetObjective:
    """The facet loss of one step: facet ``step mod k`` on ``items_per_step`` of its items.

    ``heads``: the head each facet trains (``None``: the whole item embedding). The items are
    drawn from ``rng`` (the trainer passes a generator seeded by seed, epoch and step, so that
    a resumed run draws what an uninterrupted one would).
    """

    def __init__(self, facets: list[FacetLabels], heads: list[int] | None,
                 items_per_step: int, temperature: float):
        if heads is not None and len(heads) != len(facets):
            raise ParameterError(f"{len(facets)} facets but {len(heads)} heads. Fix: give one "
                                 "head per facet")
        self.facets, self.heads = facets, heads
        self.items_per_step, self.temperature = items_per_step, temperature

    def facet_of_step(self, step: int) -> int:
        return step % len(self.facets)

    def loss(self, model, rng: np.random.Generator, step: int) -> torch.Tensor:
        """The supervised contrastive loss of this step's facet (see the module docstring)."""
        f = self.facet_of_step(step)
        facet = self.facets[f]
        count = min(self.items_per_step, len(facet.labelled))
        items = np.sort(rng.choice(facet.labelled, size=count, replace=False))  # [M]
        device = model.item_embed.weight.device
        vectors = model.item_vectors(torch.from_numpy(items).to(device))  # [M, d]
        if self.heads is not None:
            cfg = model.config
            h = self.heads[f]
            vectors = vectors.view(count, cfg.n_heads, cfg.d_head)[:, h]  # [M, d']
        return supervised_contrastive_loss(vectors, facet.positives(items), self.temperature)
