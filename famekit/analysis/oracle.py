"""The oracle: a FAME built, not trained, whose head h carries facet h by construction.

It is the positive control of every facet view. If the alignment matrix, the recovery measures
or the UMAP panels cannot see the facets of a model where they were put on purpose, they cannot
be trusted to say that a trained model has none.

Construction (no training, deterministic for a seed):

* ``W_f`` is the identity, so head h's item sub-embedding is the h-th d'-slice of E;
* for an assigned head h (field ``facets[h]``), each value of the field gets a random centroid
  in R^{d'} (standard normal), and an item's slice is its value's centroid plus Gaussian noise
  of standard deviation ``noise`` per coordinate (a multi-label item: the mean of its values'
  centroids); an item without a value gets the noise alone;
* free heads (h >= k) are pure noise; every other weight keeps FAME's initialisation.

The oracle has **no trained gate**: its gate, router and attention are at initialisation, so
its gate weights and routing say nothing about facets. Use it for the item-side views only
(alignment, margins, UMAP); the gate-side question is for trained FAME+ runs.
"""

from __future__ import annotations

import numpy as np
import torch

from famekit.datasets import SeqDataset
from famekit.errors import ParameterError
from famekit.facets import FacetLabels, resolve_facets
from famekit.model import FAME, ModelConfig, build_model
from famekit.validation import check_number

__all__ = ["oracle_model"]


def _head_slice(labels: FacetLabels, n_rows: int, d_head: int, noise: float,
                rng: np.random.Generator) -> np.ndarray:
    """float32 [V+1, d']: centroid of each item's value(s) + noise (row 0 is overwritten)."""
    centroids = rng.standard_normal((len(labels.classes), d_head))  # [C, d']
    if labels.multi is None:
        has = labels.codes >= 0  # [V+1]
        base = np.where(has[:, None], centroids[np.maximum(labels.codes, 0)], 0.0)
    else:
        counts = labels.multi.sum(axis=1, keepdims=True)  # [V+1, 1]
        base = (labels.multi @ centroids) / np.maximum(counts, 1)  # [V+1, d']
    return (base + noise * rng.standard_normal((n_rows, d_head))).astype(np.float32)


def oracle_model(dataset: SeqDataset, facets, noise: float = 0.5, seed: int = 0,
                 **model_options) -> FAME:
    """A FAME for ``dataset`` whose heads 0..k-1 encode ``facets`` by construction (see the
    module docstring). ``model_options``: ModelConfig fields (``d_model``, ``n_heads``, ...);
    the model is in eval mode."""
    noise = check_number("noise", noise, minimum=0.0,
                         fix="pass noise=0.5 (0 = items sit on their centroid)")
    try:
        cfg = ModelConfig(n_items=dataset.n_items, kind="fame", sub_embedding="learned",
                          **model_options)
    except TypeError as exc:
        raise ParameterError(f"unknown model option ({exc}). Fix: pass ModelConfig fields, "
                             "e.g. d_model=64, n_heads=4") from None
    labels = resolve_facets(dataset, facets, cfg.n_heads)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_model(cfg)
    finally:
        torch.random.set_rng_state(state)  # the caller's random stream is left alone
    rng = np.random.default_rng([seed, 0x0AC1E])
    n_rows, dh = cfg.n_items + 1, cfg.d_head
    table = noise * rng.standard_normal((n_rows, cfg.n_heads, dh)).astype(np.float32)
    for h, field in enumerate(labels):
        table[:, h] = _head_slice(field, n_rows, dh, noise, rng)
    table[0] = 0.0  # padding
    with torch.no_grad():
        model.item_embed.weight.copy_(torch.from_numpy(table.reshape(n_rows, cfg.d_model)))
        model.item_projection.copy_(torch.eye(cfg.d_model))
    return model.eval()
