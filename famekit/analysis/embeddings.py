"""Item sub-embeddings per head, cosine nearest neighbours, and cached 2-D UMAP layouts.

``model.item_sub_embeddings()`` gives x_v^h for every item and head ([V+1, H, d'], row 0 =
padding). The full item table (``model.item_table()``, [V+1, d]) is the reference "all facets
together" view. UMAP is seeded and fed a precomputed cosine kNN graph (computed here with
torch, exact), which keeps the first fit of a process short; layouts are cached in memory and
on disk under ``$FAMEKIT_CACHE/umap`` keyed by a hash of the embedding and the parameters.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch

from famekit.errors import FamekitError, ParameterError
from famekit.fileio import atomic_write_bytes

__all__ = ["cosine_knn", "full_embedding", "head_embeddings", "head_layouts", "umap_layout"]

_MEMORY_CACHE: dict[str, np.ndarray] = {}


def head_embeddings(model) -> np.ndarray:
    """float32 [V+1, H, d']: every item's sub-embedding in every head (row 0 = padding)."""
    if not hasattr(model, "item_sub_embeddings"):
        raise ParameterError(
            f"{type(model).__name__} has no per-head item sub-embeddings. "
            "Fix: load a run trained with --model fame"
        )
    with torch.no_grad():
        return model.item_sub_embeddings().float().cpu().numpy()


def full_embedding(model) -> np.ndarray:
    """float32 [V+1, d]: the table fused scores are computed against (row 0 = padding)."""
    with torch.no_grad():
        return model.item_table().float().cpu().numpy()


def cosine_knn(
    vectors: np.ndarray, k: int, include_self: bool = False, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k nearest neighbours of every row: (indices int64 [M, k], distances [M, k]).

    ``include_self=True`` keeps each row as its own first neighbour (what UMAP expects);
    otherwise a row's own index is never returned. Zero vectors have distance 1 to everything.
    """
    x = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32))  # [M, d]
    m = x.shape[0]
    wanted = k if include_self else k + 1
    if wanted > m:
        raise ParameterError(f"k={k} neighbours need more than {m} points. Fix: use a smaller k")
    x = torch.nn.functional.normalize(x, dim=1)
    idx_out = np.empty((m, k), dtype=np.int64)
    dist_out = np.empty((m, k), dtype=np.float32)
    for start in range(0, m, chunk):
        sims = x[start : start + chunk] @ x.T  # [c, M]
        rows = torch.arange(sims.shape[0])
        # the row itself always ranks first: force it there (ties with duplicates otherwise)
        sims[rows, rows + start] = 2.0 if include_self else -3.0
        top = sims.topk(k, dim=1)
        idx_out[start : start + chunk] = top.indices.numpy()
        dist_out[start : start + chunk] = (1.0 - top.values.clamp(max=1.0)).numpy()
    return idx_out, dist_out


def _cache_dir() -> Path:
    from famekit.datasets.fetch import cache_root

    return cache_root() / "umap"


def umap_layout(
    vectors: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
    use_disk_cache: bool = True,
) -> np.ndarray:
    """float32 [M, 2]: a seeded UMAP of ``vectors`` (cosine), cached by content and parameters."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    key = hashlib.sha256(
        vectors.tobytes() + f"|{vectors.shape}|{seed}|{n_neighbors}|{min_dist}|v1".encode()
    ).hexdigest()[:24]
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    path = _cache_dir() / f"{key}.npy"
    if use_disk_cache and path.exists():
        try:
            layout = np.load(path, allow_pickle=False)
            if layout.shape == (len(vectors), 2):
                _MEMORY_CACHE[key] = layout
                return layout
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed and overwritten
    import umap  # imported lazily: ~1.5 s, and numba JIT on the first fit

    n_neighbors = min(n_neighbors, len(vectors) - 1)
    knn = cosine_knn(vectors, n_neighbors, include_self=True)
    reducer = umap.UMAP(
        n_neighbors=n_neighbors, min_dist=min_dist, metric="cosine", random_state=seed,
        precomputed_knn=knn, n_jobs=1, verbose=False,
    )
    with warnings.catch_warnings():
        # we never transform new points, so UMAP's missing search index does not matter
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        layout = reducer.fit_transform(vectors).astype(np.float32)
    _MEMORY_CACHE[key] = layout
    if use_disk_cache:
        buffer = io.BytesIO()
        np.save(buffer, layout, allow_pickle=False)
        try:
            atomic_write_bytes(path, buffer.getvalue())
        except FamekitError:
            pass  # caching is an optimisation; an unwritable cache must not fail the analysis
    return layout


def head_layouts(model, heads=None, seed: int = 0, include_full: bool = True) -> dict:
    """{head index or "full": float32 [V, 2]} UMAP layouts of items 1..V (row i = item i+1)."""
    sub = head_embeddings(model)[1:]  # [V, H, d']
    heads = range(sub.shape[1]) if heads is None else heads
    layouts = {h: umap_layout(sub[:, h], seed=seed) for h in heads}
    if include_full:
        layouts["full"] = umap_layout(full_embedding(model)[1:], seed=seed)
    return layouts
