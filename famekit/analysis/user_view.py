"""One user at a time: the DataFrames behind the user explorer, with no widgets and no HTML.

:class:`UserView` answers "what does FAME do for this user, at this position, in this head?"
from a model and its dataset: the routing of one head along the sequence, the gate weights
along the sequence, the history with metadata and the fused and per-head top-k lists. The
activations of the view's users are collected **once** up front, so changing position or head
only reads memory; a user outside that collection is collected on demand, and each user's
anatomy (one forward pass) is computed once. :mod:`famekit.figures.explorer` draws these
frames and :class:`famekit.widgets.UserExplorer` wires controls to them.

Positions count the items the model sees (the last ``max_len`` of the input, 0 = the oldest);
the last position is the state that scores the held-out item, so the top-k lists belong to it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from famekit.analysis.activations import Activations, collect_activations, require_fame
from famekit.analysis.anatomy import Anatomy, recommendation_anatomy
from famekit.analysis.gates import gates_along_sequence
from famekit.analysis.routing import user_routing
from famekit.datasets import SeqDataset
from famekit.errors import ParameterError
from famekit.user_batches import UserBatches
from famekit.validation import check_int, is_whole_number

__all__ = ["DEFAULT_MAX_USERS", "UserView", "topk_lists"]

DEFAULT_MAX_USERS = 500  # users collected up front when `users` is None (the first ones)


def topk_lists(anatomy: Anatomy) -> pd.DataFrame:
    """The fused and per-head top-k of an anatomy as one long frame, one row per entry.

    Columns: ``list`` ("fused", "head 0", ...), ``head`` (-1 for fused), ``gate`` (the head's
    gate at the last position, NaN for fused), ``rank`` (1 = best), ``item``, ``label`` (the
    item's title when the metadata has one, else its id) and ``score`` (fused score, or the
    head's own score P^h(v)).
    """
    label = "title" if "title" in anatomy.fused.columns else "item"
    parts = [("fused", -1, np.nan, anatomy.fused, "score")]
    parts += [(f"head {h}", h, float(anatomy.gates[h]), frame, "head_score")
              for h, frame in sorted(anatomy.per_head.items())]
    frames = [pd.DataFrame({"list": name, "head": h, "gate": gate, "rank": frame["rank"],
                            "item": frame["item"], "label": frame[label],
                            "score": frame[score]}) for name, h, gate, frame, score in parts]
    return pd.concat(frames, ignore_index=True)


class UserView:
    """The explorer's data for one user, position and head at a time (see the module doc).

    Args:
        model: a FAME model.
        dataset: the :class:`~famekit.datasets.SeqDataset` the model was trained on.
        split: whose inputs to show, ``"test"`` (default) or ``"valid"``.
        users: dataset rows to collect up front (default: the first ``max_users`` users of the
            split); others are collected when asked for.
        top_k: length of the top-k lists.
        max_users: how many users to collect when ``users`` is None.
        activations: already collected :class:`Activations` of ``split`` to use instead.
    """

    def __init__(self, model, dataset: SeqDataset, split: str = "test", users=None,
                 top_k: int = 10, max_users: int = DEFAULT_MAX_USERS,
                 activations: Activations | None = None):
        if not isinstance(dataset, SeqDataset):
            raise ParameterError(
                f"dataset must be a famekit SeqDataset, got {type(dataset).__name__}. Fix: "
                "UserExplorer(model, famekit.datasets.load(name)) with the training data"
            )
        require_fame(model)
        if not is_whole_number(top_k) or top_k < 1:
            raise ParameterError(f"top_k={top_k!r} is invalid. Fix: pass a positive integer")
        self.model, self.dataset, self.split, self.top_k = model, dataset, split, int(top_k)
        if activations is None:
            if users is None:  # the split's first users (the pass refuses an empty split)
                first = max(1, check_int("max_users", max_users))
                users = UserBatches(model, dataset, split).users[:first]
            else:
                users = list(users)
                if not users:
                    raise ParameterError("users is empty. Fix: pass some dataset rows, or None "
                                         f"for the first {max_users} evaluated users")
            activations = collect_activations(model, dataset, split, users=users)
        elif activations.split != split:
            raise ParameterError(f"the activations are of split {activations.split!r}, not "
                                 f"{split!r}. Fix: pass split={activations.split!r}")
        self.activations = activations
        self.users = activations.users  # int64 [U], dataset rows, in collection order
        self._extra: dict[int, Activations] = {}  # users asked for outside the collection
        self._anatomy: dict[int, Anatomy] = {}

    @property
    def n_heads(self) -> int:
        return self.activations.n_heads

    # ------------------------------------------------------------------------ checks
    def check_user(self, row) -> int:
        """``row`` as an int when it is a user of the split (collecting it if needed)."""
        fix = f"Fix: pass a dataset row in 0..{self.dataset.n_users - 1}"
        if not is_whole_number(row):
            raise ParameterError(f"user row {row!r} is not an integer. {fix}")
        if not 0 <= row < self.dataset.n_users:
            raise ParameterError(f"user row {row} does not exist. {fix}")
        self.activations_of(int(row))  # the one error for users not in the split
        return int(row)

    def check_position(self, row: int, position) -> int:
        """``position`` as an int when it is one of user ``row``'s positions."""
        last = self.n_positions(row) - 1
        if not is_whole_number(position) or not 0 <= position <= last:
            raise ParameterError(f"position {position!r} is outside this user's sequence. "
                                 f"Fix: choose 0..{last}")
        return int(position)

    def check_head(self, head) -> int:
        """``head`` as an int when the model has it."""
        if not is_whole_number(head) or not 0 <= head < self.n_heads:
            raise ParameterError(f"head {head!r} does not exist. "
                                 f"Fix: choose 0..{self.n_heads - 1}")
        return int(head)

    # ------------------------------------------------------------------------ data
    def activations_of(self, row: int) -> Activations:
        """The collection holding user ``row``: the up-front one, or a cached one-user one."""
        if np.any(self.users == row):
            return self.activations
        if row not in self._extra:
            self._extra[row] = collect_activations(self.model, self.dataset, self.split,
                                                   users=[row])
        return self._extra[row]

    def n_positions(self, row: int) -> int:
        """How many positions of user ``row`` the model sees (at most ``max_len``)."""
        acts = self.activations_of(row)
        positions = acts.user_slice(acts.index_of(row))
        return positions.stop - positions.start

    def anatomy(self, row: int) -> Anatomy:
        """User ``row``'s top-k lists and score decomposition at the last position (cached)."""
        if row not in self._anatomy:
            self._anatomy[row] = recommendation_anatomy(self.model, self.dataset, row,
                                                        k=self.top_k, split=self.split)
        return self._anatomy[row]

    def routing(self, row: int, head: int) -> pd.DataFrame:
        """Router probabilities of ``head`` at each of user ``row``'s positions."""
        return user_routing(self.activations_of(row), row, head)

    def gates(self, row: int) -> pd.DataFrame:
        """Gate weights of every head at each of user ``row``'s positions."""
        return gates_along_sequence(self.activations_of(row), row)

    def history(self, row: int) -> pd.DataFrame:
        """User ``row``'s whole input, oldest first, with item metadata."""
        return self.anatomy(row).history

    def history_row(self, row: int, position: int) -> int:
        """The history row of model position ``position`` (inputs can exceed ``max_len``)."""
        return position + len(self.history(row)) - self.n_positions(row)

    def topk(self, row: int) -> pd.DataFrame:
        """User ``row``'s fused and per-head top-k lists (see :func:`topk_lists`)."""
        return topk_lists(self.anatomy(row))
