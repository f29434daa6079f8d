"""Cross-entropy over the whole catalogue without materialising the [rows, items] logits.

The training loss of both models is a softmax over every item at every scored position:
``logits = queries @ table.T`` ([R, d] x [d, V]) followed by cross-entropy. With the plain
``F.cross_entropy(queries @ table.T, targets)`` the [R, V] logits (111 MB for one Beauty batch:
~2,300 rows x 12,101 items) and their gradient are written and read back by ~6 separate
passes (matmul, log-softmax, its backward, the two backward matmuls), and each of those
buffers is freshly ``mmap``-ed and page-faulted by the allocator every step: a training step
is bound by that memory traffic, not by the matmuls (profiled with ``benchmarks/speed.py``;
docs/decisions.md, "The training loss never holds the [rows, items] logits").

:func:`softmax_cross_entropy` computes the same loss row-chunk by row-chunk: each chunk's logits
are turned into (log-sum-exp, target logit) in place; the backward pass recomputes the chunk's
logits and forms ``softmax - onehot`` in place. 8 MiB chunks (cache-resident, the default
:data:`CHUNK_ELEMENTS`) make a Beauty training step faster than one chunk. It trades one extra
[R, d] x [d, V] matmul (4/3 of the GEMM FLOPs) for never holding more than one chunk; results
equal ``F.cross_entropy`` up to float rounding (tests/test_losses.py).
"""

from __future__ import annotations

import torch

__all__ = ["CHUNK_ELEMENTS", "softmax_cross_entropy"]

# Logit elements per chunk: 2^21 float32 = 8 MiB, small enough to stay in cache while the
# chunk's softmax is formed in place. Faster than one chunk and bit-reproducible on one machine
# (measured with benchmarks/speed.py loss; docs/decisions.md, "8 MiB row chunks").
CHUNK_ELEMENTS = 1 << 21


def _compute_dtype(device_type: str, fallback: torch.dtype) -> torch.dtype:
    """The dtype matmuls run in here: autocast's if it is on for this device, else ``fallback``."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return fallback


class _ChunkedSoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, queries, table, targets, chunk_rows: int, dtype: torch.dtype):
        # queries [R, d], table [V, d], targets [R] (0-based columns of table)
        n_rows = queries.shape[0]
        q, t = queries.to(dtype), table.to(dtype)
        lse = torch.empty(n_rows, dtype=torch.float32, device=queries.device)  # [R]
        picked = torch.empty(n_rows, dtype=torch.float32, device=queries.device)  # [R]
        for start in range(0, n_rows, chunk_rows):
            rows = slice(start, start + chunk_rows)
            logits = (q[rows] @ t.T).float()  # [r, V]
            picked[rows] = logits.gather(1, targets[rows, None]).squeeze(1)
            # log-sum-exp in place in the chunk's buffer (no second [r, V] tensor)
            top = logits.amax(dim=1, keepdim=True)  # [r, 1]
            lse[rows] = logits.sub_(top).exp_().sum(dim=1).log_() + top.squeeze(1)
        ctx.save_for_backward(queries, table, targets, lse)
        ctx.chunk_rows, ctx.dtype = chunk_rows, dtype
        return (lse - picked).mean()

    @staticmethod
    def backward(ctx, grad_loss):
        queries, table, targets, lse = ctx.saved_tensors
        n_rows, dtype = queries.shape[0], ctx.dtype
        q, t = queries.to(dtype), table.to(dtype)
        scale = grad_loss.float() / n_rows
        grad_q = torch.empty_like(queries) if ctx.needs_input_grad[0] else None  # [R, d]
        grad_t = torch.zeros(table.shape, dtype=torch.float32, device=table.device)  # [V, d]
        for start in range(0, n_rows, ctx.chunk_rows):
            rows = slice(start, start + ctx.chunk_rows)
            # d loss / d logits = (softmax - onehot) / R, built in place in the chunk's buffer
            grad = (q[rows] @ t.T).float()  # [r, V]
            grad.sub_(lse[rows, None]).exp_()
            grad.scatter_add_(1, targets[rows, None],
                              torch.full_like(lse[rows, None], -1.0))
            grad.mul_(scale)
            grad_c = grad.to(dtype)
            if grad_q is not None:
                grad_q[rows] = (grad_c @ t).to(queries.dtype)  # [r, V] x [V, d]
            grad_t += (grad_c.T @ q[rows]).float()  # [V, r] x [r, d]
        return grad_q, grad_t.to(table.dtype), None, None, None


def softmax_cross_entropy(queries: torch.Tensor, table: torch.Tensor, targets: torch.Tensor,
                          chunk_elements: int | None = None) -> torch.Tensor:
    """Mean of ``F.cross_entropy(queries @ table.T, targets)``, computed in row chunks.

    ``queries``: [R, d]; ``table``: [V, d] (the candidate items, no padding row);
    ``targets``: [R] int64 in 0..V-1. Gradients flow to ``queries`` and ``table``. Under
    autocast the matmuls run in autocast's dtype and the softmax in float32, as
    ``F.cross_entropy(logits.float(), ...)`` would. ``chunk_elements``: logits held at once
    (default :data:`CHUNK_ELEMENTS`, read at call time so that a benchmark can change it).
    """
    if queries.ndim != 2 or table.ndim != 2 or queries.shape[1] != table.shape[1]:
        raise ValueError(f"need queries [R, d] and table [V, d], got {tuple(queries.shape)} "
                         f"and {tuple(table.shape)}")
    chunk_elements = CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    chunk_rows = max(1, chunk_elements // max(1, table.shape[0]))
    dtype = _compute_dtype(queries.device.type, queries.dtype)
    with torch.autocast(queries.device.type, enabled=False):
        return _ChunkedSoftmaxCrossEntropy.apply(queries, table, targets, chunk_rows, dtype)
