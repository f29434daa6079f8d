"""One user at a time: the DataFrames behind the user explorer, with no widgets and no HTML.

:class:`UserView` answers "what does FAME do for this user, at this position, in this head?"
from a model and its dataset: the routing of one head along the sequence, the gate weights
along the sequence, the history with metadata and the fused and per-head top-k lists. One
batched pass ranks every user of the split (:func:`user_table`: the held-out item's rank, the
gate's entropy, the driving facet where it is known), which is what the explorer sorts,
filters and searches. The activations of the first users are collected **once** up front, so
changing position or head only reads memory; any other user is collected on demand, and each
(user, position) anatomy (one forward pass) is computed once. :mod:`famekit.figures.explorer`
draws these frames and :class:`famekit.widgets.UserExplorer` wires controls to them.

Positions count the items the model sees (the last ``max_len`` of the input, 0 = the oldest).
The state at a position predicts the next input item, and the last one the held-out item:
the top-k lists and the target's ranks belong to the selected position.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from famekit.analysis.activations import GATES, Activations, collect_activations, require_fame
from famekit.analysis.anatomy import Anatomy, recommendation_anatomy
from famekit.analysis.facet_heads import driving_facet_names
from famekit.analysis.gates import entropy, gates_along_sequence
from famekit.analysis.routing import user_routing
from famekit.datasets import SeqDataset
from famekit.errors import ParameterError
from famekit.evaluation import batch_target_ranks
from famekit.user_batches import UserBatches
from famekit.validation import check_int, is_whole_number

__all__ = ["DEFAULT_MAX_USERS", "UserView", "topk_lists", "user_table"]

DEFAULT_MAX_USERS = 500  # users collected up front when `users` is None (the first ones)


def user_table(model, dataset: SeqDataset, split: str = "test", batch_size: int = 256,
               progress: bool = False) -> pd.DataFrame:
    """One row per user of ``split`` from one batched pass: what the explorer sorts, filters
    and searches by.

    Columns: ``user`` (dataset row), ``length`` (whole input length), ``target`` (the held-out
    item) and ``target_label`` (its title, else its id), ``rank`` (its fused rank, 1 = best:
    full ranking, history excluded, pessimistic ties, as :func:`famekit.evaluation.evaluate`),
    ``gate_entropy`` (entropy of the last-position gate over log H: 0 = one head takes all,
    1 = uniform), ``top_head`` (the head with the largest gate there) and, on a world with
    planted truth, ``driving_facet``. Rows are in dataset-row order.
    """
    require_fame(model)
    with UserBatches(model, dataset, split, batch_size=batch_size, progress=progress,
                     desc=f"explorer: rank {split} users") as batches:
        ranks = np.empty(len(batches), dtype=np.int64)  # [U], 0-based
        gates = np.empty((len(batches), model.config.n_heads))  # [U, H]
        for batch in batches:
            scores, cache = model.run_with_cache(batch.input_ids, names_filter=[GATES])
            ranks[batch.index] = batch_target_ranks(scores, batch)  # [B]
            gates[batch.index] = cache[GATES][:, -1].float().cpu().numpy()  # [B, H]
    items = dataset.items
    labels = (items["title"].reindex(batches.targets).fillna("").astype(str).to_numpy()
              if "title" in items.columns else batches.targets.astype(str))
    labels = np.where(labels == "", batches.targets.astype(str), labels)
    table = pd.DataFrame({
        "user": batches.users, "length": batches.lengths, "target": batches.targets,
        "target_label": labels, "rank": ranks + 1,
        "gate_entropy": entropy(gates) / np.log(gates.shape[1]),
        "top_head": gates.argmax(axis=1)})
    if "user_facet" in dataset.ground_truth:
        table["driving_facet"] = driving_facet_names(dataset, batches.users)
    return table.sort_values("user", kind="stable").reset_index(drop=True)


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
        users: dataset rows whose activations are collected up front (default: the first
            ``max_users`` users of the split); any other user of the split is collected when
            asked for.
        top_k: length of the top-k lists.
        max_users: how many users to collect when ``users`` is None.
        activations: already collected :class:`Activations` of ``split`` to use instead.
        progress: show a bar over the pass that builds :attr:`table`.

    Attributes:
        table: :func:`user_table` of the split: every user the explorer can show.
    """

    def __init__(self, model, dataset: SeqDataset, split: str = "test", users=None,
                 top_k: int = 10, max_users: int = DEFAULT_MAX_USERS,
                 activations: Activations | None = None, progress: bool = False):
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
        self.table = user_table(model, dataset, split, progress=progress)
        self._extra: dict[int, Activations] = {}  # users asked for outside the collection
        self._anatomy: dict[tuple[int, int | None], Anatomy] = {}

    @property
    def n_heads(self) -> int:
        return self.activations.n_heads

    def default_user(self) -> int:
        """The first user (in dataset-row order) whose held-out item is in the fused top-k,
        else the user ranking it best: a view that shows a recommendation working."""
        hits = self.table[self.table["rank"] <= self.top_k]
        chosen = hits.iloc[0] if len(hits) else self.table.loc[self.table["rank"].idxmin()]
        return int(chosen["user"])

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

    def anatomy(self, row: int, position: int | None = None) -> Anatomy:
        """User ``row``'s top-k lists, score decomposition and target ranks at model position
        ``position`` (None: the last, which predicts the held-out item); cached."""
        if position is not None and position == self.n_positions(row) - 1:
            position = None  # one cache entry for the last position
        key = (row, position)
        if key not in self._anatomy:
            self._anatomy[key] = recommendation_anatomy(
                self.model, self.dataset, row, k=self.top_k, split=self.split,
                position=position)
        return self._anatomy[key]

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

    def topk(self, row: int, position: int | None = None) -> pd.DataFrame:
        """User ``row``'s fused and per-head top-k lists at ``position`` (see
        :func:`topk_lists`)."""
        return topk_lists(self.anatomy(row, position))
