"""One batched pass over a split's users: the loop behind evaluation, activations and anatomy.

Scoring users of a split means: take each user's input sequence (validation: the training
sequence; test: everything but the last item), sort users by input length so that similar
lengths share a batch, left-pad each batch to its longest ``max_len``-truncated input, and run
the model without gradients and without dropout. :class:`UserBatches` owns that loop once, so
the rules (which users exist, on which device, in which mode) cannot drift apart between
:func:`famekit.evaluation.evaluate`, :func:`famekit.analysis.collect_activations` and
:func:`famekit.analysis.recommendation_anatomy`.

>>> with UserBatches(model, dataset, "test", batch_size=256) as users:
...     for batch in users:
...         scores = model.score_last(batch.input_ids)            # [B, V+1]

Sorting and trimming never change a row's result (position ids count from each row's first
real item, see :mod:`famekit.batching`); callers write results back through ``batch.index``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from famekit.batching import pad_left
from famekit.datasets.core import SeqDataset
from famekit.errors import ParameterError
from famekit.validation import check_int, is_whole_number

__all__ = ["UserBatch", "UserBatches", "model_device"]


def model_device(model) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); CPU for a parameter-free scorer."""
    if isinstance(model, torch.nn.Module):
        for tensor in model.parameters():
            return tensor.device
        for tensor in model.buffers():
            return tensor.device
    return torch.device("cpu")


def _max_len(model) -> int:
    max_len = getattr(getattr(model, "config", None), "max_len", None)
    if not is_whole_number(max_len) or max_len < 1:
        raise ParameterError(
            f"model ({type(model).__name__}) has no positive integer config.max_len "
            f"(got {max_len!r}). Fix: give the model a config with max_len"
        )
    return int(max_len)


def _refuse_users(dataset: SeqDataset, split: str, missing: list[int] | None = None):
    """The one error for "these users cannot be scored": an empty split, or rows that are not
    in it (fewer than 3 items, or no such row)."""
    rule = "only users with at least 3 items are evaluated"
    if missing is None:
        return ParameterError(
            f"dataset {dataset.name!r} has no user with at least 3 items, so split {split!r} "
            f"is empty ({rule}). Fix: use a dataset where users have >= 3 interactions"
        )
    shown = ", ".join(str(u) for u in missing[:5]) + (", ..." if len(missing) > 5 else "")
    return ParameterError(
        f"user rows [{shown}] are not in split {split!r} of dataset {dataset.name!r} ({rule}; "
        f"rows run 0..{dataset.n_users - 1}). Fix: choose users with at least 3 items"
    )


@dataclass
class UserBatch:
    """One padded batch of users, sorted by input length.

    Attributes:
        index: int64 [B], positions of these users in the pass (``UserBatches.users`` etc.):
            where the caller writes their results back.
        users: int64 [B], their dataset rows.
        input_ids: int64 [B, n] on the pass's device, left-padded with 0, ``n`` = the longest
            ``max_len``-truncated input of the batch.
        inputs: the B whole input sequences (not truncated), e.g. for history exclusion.
        targets: int64 [B], the split's held-out item of each user.
    """

    index: np.ndarray
    users: np.ndarray
    input_ids: torch.Tensor
    inputs: list[np.ndarray]
    targets: np.ndarray


class UserBatches:
    """The users of one split, scored in length-sorted, trimmed batches (see the module doc).

    Use it as a context manager: inside ``with``, the model (an ``nn.Module``) is in eval mode
    and torch in inference mode; on exit both are restored, even after an error. Iterate
    inside the ``with`` to get :class:`UserBatch` objects.

    Args:
        model: anything with ``config.max_len`` (FAME, SASRec, a baseline).
        dataset: the :class:`SeqDataset` the model was trained on.
        split: ``"valid"`` or ``"test"``.
        users: dataset rows to score, in this order (duplicates allowed); None: every user of
            the split. A row that is not in the split is refused with one clear error.
        batch_size: users per batch; memory is O(batch_size x V) for a full ranking.
        device: where to run. None: the model's device. Given: an ``nn.Module`` model is moved
            there (like ``model.to(device)``) when the pass starts.
        progress: show a tqdm bar over users, labelled ``desc``.

    Attributes:
        users: int64 [U] dataset rows; inputs: U whole input sequences; targets: int64 [U];
        lengths: int64 [U] whole input lengths; max_len; device.
    """

    def __init__(self, model, dataset: SeqDataset, split: str = "test", users=None,
                 batch_size: int = 256, device=None, progress: bool = False,
                 desc: str | None = None):
        self.model, self.dataset, self.split = model, dataset, split
        self.max_len = _max_len(model)
        self.batch_size = check_int("batch_size", batch_size, minimum=1,
                                    fix="pass batch_size=256 (or smaller if memory is short)")
        inputs, targets, rows = dataset.split().eval_inputs(split)  # also validates `split`
        if not len(rows):
            raise _refuse_users(dataset, split)
        if users is not None:
            keep = self._positions(users, rows)
            inputs, targets, rows = [inputs[i] for i in keep], targets[keep], rows[keep]
        self.inputs: list[np.ndarray] = inputs
        self.targets = targets.astype(np.int64)  # [U]
        self.users = rows.astype(np.int64)  # [U]
        self.lengths = np.fromiter((len(s) for s in inputs), dtype=np.int64, count=len(inputs))
        self.device = model_device(model) if device is None else torch.device(device)
        self._move = device is not None
        self.progress, self.desc = progress, desc or f"score {split}"
        self._active = False

    def _positions(self, users, rows: np.ndarray) -> list[int]:
        """Positions in the split of the requested dataset rows (one error for all misses)."""
        wanted = np.asarray(users if hasattr(users, "__len__") else list(users))
        if wanted.ndim != 1 or (wanted.size and not np.issubdtype(wanted.dtype, np.integer)):
            raise ParameterError(
                f"users must be a list of dataset rows (whole numbers), got {wanted.dtype} "
                f"values of shape {wanted.shape}. Fix: pass rows in "
                f"0..{self.dataset.n_users - 1}")
        if not wanted.size:
            raise ParameterError(f"users is empty. Fix: pass some dataset rows, or users=None "
                                 f"for every user of split {self.split!r}")
        # rows are ascending (LeaveOneOutSplit.eval_users): a binary search per wanted row
        wanted = wanted.astype(np.int64)
        found = np.minimum(np.searchsorted(rows, wanted), max(len(rows) - 1, 0))
        missing = [int(u) for u in wanted[rows[found] != wanted]] if len(rows) else list(wanted)
        if missing:
            raise _refuse_users(self.dataset, self.split, missing)
        return found.tolist()

    def __len__(self) -> int:
        """Number of users in the pass."""
        return len(self.users)

    def __enter__(self):
        module = self.model if isinstance(self.model, torch.nn.Module) else None
        if module is not None and self._move:
            module.to(self.device)
        self._was_training = module.training if module is not None else None
        if module is not None:
            module.eval()  # no dropout: scores are a function of the inputs only
        self._inference = torch.inference_mode()
        self._inference.__enter__()
        self._bar = tqdm(total=len(self), unit="user", desc=self.desc, disable=not self.progress)
        self._active = True
        return self

    def __exit__(self, *exc) -> None:
        self._active = False
        try:
            self._bar.close()
            self._inference.__exit__(*exc)
        finally:
            if self._was_training is not None:
                self.model.train(self._was_training)

    def __iter__(self) -> Iterator[UserBatch]:
        if not self._active:
            raise RuntimeError("iterate over UserBatches inside `with UserBatches(...) as b:`, "
                               "which sets eval and inference mode and restores them")
        # Similar lengths share a batch, so trimming each batch to its longest row pays off.
        order = np.argsort(self.lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]  # [B]
            inputs = [self.inputs[i] for i in index]
            input_ids = torch.from_numpy(pad_left(inputs, self.max_len)).to(self.device)  # [B, n]
            yield UserBatch(index, self.users[index], input_ids, inputs, self.targets[index])
            self._bar.update(len(index))
