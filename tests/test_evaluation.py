"""Full-ranking evaluation (docs/fame-spec.md §5) and the popularity baseline.

Toy scorers stand in for models where a hand-computed answer is needed: their scores are small
integers, so float arithmetic is exact and every rank below can be worked out on paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from worlds import random_dataset

from famekit.baselines import Popularity
from famekit.datasets import SeqDataset
from famekit.errors import ParameterError
from famekit.evaluation import (
    METRIC_NAMES,
    evaluate,
    hit_rate,
    metrics_from_ranks,
    mrr,
    ndcg,
    target_ranks,
)


@dataclass
class ToyConfig:
    n_items: int
    max_len: int


class StaticScorer(torch.nn.Module):
    """Gives every sequence the same scores ``item_scores`` [V+1] (column 0 = padding)."""

    def __init__(self, item_scores, max_len: int = 50):
        super().__init__()
        self.register_buffer("item_scores", torch.as_tensor(item_scores, dtype=torch.float32))
        self.config = ToyConfig(n_items=len(item_scores) - 1, max_len=max_len)
        self.seen_widths: list[int] = []

    def score_last(self, input_ids):
        self.seen_widths.append(input_ids.shape[1])
        return self.item_scores.unsqueeze(0).expand(input_ids.shape[0], -1).clone()


class BagOfPositionsScorer(torch.nn.Module):
    """A scorer that depends on every item of the window and on its position id.

    Integer-valued weights keep every score exact, so batch composition cannot move a single
    comparison through rounding; any change in results would be a real bucketing bug.
    """

    def __init__(self, n_items: int, max_len: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.config = ToyConfig(n_items=n_items, max_len=max_len)
        self.item = torch.nn.Parameter(torch.randint(-3, 4, (n_items + 1, 4), generator=gen).float())
        self.pos = torch.nn.Parameter(torch.randint(-2, 3, (max_len + 1, 4), generator=gen).float())

    def score_last(self, input_ids):  # input_ids [B, n], left-padded
        real = input_ids > 0                                              # [B, n]
        n = input_ids.shape[1]
        # Position ids count from the first real item of each row: 1..len, 0 for padding.
        position = (torch.arange(n, device=input_ids.device) - (n - real.sum(1, keepdim=True)) + 1) * real  # [B, n]
        terms = self.item[input_ids] * self.pos[position]                  # [B, n, 4]
        hidden = (terms * real.unsqueeze(-1)).sum(1)                      # [B, 4], padding adds 0
        return hidden @ self.item.T                                       # [B, V+1]


# ------------------------------------------------------------------------------ metric functions
def test_metric_functions_match_hand_computed_values():
    ranks = [0, 1, 4, 5, 9, 10, 19, 20, 100]
    assert hit_rate(ranks, 5) == pytest.approx(3 / 9)
    assert hit_rate(ranks, 10) == pytest.approx(5 / 9)
    assert hit_rate(ranks, 20) == pytest.approx(7 / 9)
    assert ndcg(ranks, 5) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 9)
    assert ndcg(ranks, 10) == pytest.approx(
        (1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(7) + 1 / math.log2(11)) / 9
    )
    assert mrr(ranks) == pytest.approx(sum(1 / (r + 1) for r in ranks) / 9)
    metrics = metrics_from_ranks(ranks)
    assert list(metrics) == [*METRIC_NAMES, "users"]
    assert metrics["users"] == 9
    assert metrics["NDCG@20"] == pytest.approx(ndcg(ranks, 20))


def test_metrics_reject_negative_ranks():
    with pytest.raises(ParameterError, match="0-based"):
        metrics_from_ranks([0, -1])


def test_target_ranks_counts_ties_pessimistically_and_drops_padding():
    # column:               pad  1    2    3    4    5
    scores = torch.tensor([[9.0, 1.0, 2.0, 2.0, 2.0, 0.0],
                           [9.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                           [9.0, 5.0, 2.0, 2.0, 3.0, 0.0]])
    targets = torch.tensor([3, 2, 1])
    ranks = target_ranks(scores, targets)
    # Row 0: items 2 and 4 tie with the target -> both count. Row 1: every item ties -> last.
    # Row 2: the target is the best real item; the padding score 9 must not count.
    assert ranks.tolist() == [2, 4, 0]


def test_target_ranks_exclusion_never_drops_the_target():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0]])
    # History holds items 1 and 3 (the target) and padding.
    exclude = torch.tensor([[0, 1, 3]])
    assert target_ranks(scores, torch.tensor([3]), exclude).tolist() == [1]  # only item 2
    assert target_ranks(scores, torch.tensor([3])).tolist() == [2]


def test_target_ranks_nan_target_ranks_last():
    scores = torch.tensor([[0.0, 1.0, math.nan, 3.0, -math.inf]])
    assert target_ranks(scores, torch.tensor([2])).tolist() == [3]


# -------------------------------------------------------------------------------------- evaluate
def _hand_dataset() -> SeqDataset:
    return SeqDataset.from_sequences(
        "hand",
        [
            [1, 2, 3],                      # test: input [1, 2], target 3
            [5, 9, 4],                      # test: input [5, 9], target 4
            [2, 3, 4, 5, 6, 7, 8, 1, 10],   # test: input of 8 items, target 10
            [3, 1, 3],                      # test: input [3, 1], target 3 (a repeat)
            [6, 7],                         # too short: never evaluated
        ],
        n_items=10,
    )


def _hand_scorer(max_len: int) -> StaticScorer:
    # item v scores 10 - v (item 1 best); padding gets the highest score of all, which the
    # evaluation must ignore since the model interface leaves column 0 unmasked.
    return StaticScorer([100.0] + [10.0 - v for v in range(1, 11)], max_len=max_len)


def test_evaluate_toy_scorer_end_to_end_hand_computed():
    ds = _hand_dataset()
    # max_len=3 < 8: history exclusion must use the whole input, not the model's window.
    metrics, ranks = evaluate(_hand_scorer(3), ds, progress=False, return_ranks=True)
    # A: 1, 2 are history -> 0. B: 1, 2, 3 beat item 4 -> 3. C: only item 9 is left above
    # item 10 -> 1. D: item 1 is history, item 2 beats item 3 -> 1.
    assert ranks.set_index("user")["rank"].to_dict() == {0: 0, 1: 3, 2: 1, 3: 1}
    assert ranks["target"].tolist() == [3, 4, 10, 3]
    assert ranks["input_length"].tolist() == [2, 2, 8, 2]
    expected = [0, 3, 1, 1]
    assert metrics["users"] == 4
    assert metrics["HR@5"] == 1.0
    assert metrics["NDCG@5"] == pytest.approx((1 + 1 / math.log2(5) + 2 / math.log2(3)) / 4)
    assert metrics["MRR"] == pytest.approx((1 + 1 / 4 + 1 / 2 + 1 / 2) / 4)
    assert metrics == pytest.approx(metrics_from_ranks(expected))


def test_exclude_history_false_only_drops_padding():
    ds = _hand_dataset()
    metrics, ranks = evaluate(_hand_scorer(3), ds, exclude_history=False, progress=False,
                              return_ranks=True)
    # A: 1, 2 above 3 -> 2. B: 3. C: all nine other items beat item 10 -> 9. D: 1, 2 -> 2.
    assert ranks["rank"].tolist() == [2, 3, 9, 2]
    assert metrics["HR@5"] == pytest.approx(3 / 4)
    assert metrics["HR@10"] == 1.0
    assert metrics["NDCG@5"] == pytest.approx((2 / math.log2(4) + 1 / math.log2(5)) / 4)


def test_evaluate_valid_split_uses_training_sequence_as_input():
    ds = _hand_dataset()
    _, ranks = evaluate(_hand_scorer(50), ds, split="valid", progress=False, return_ranks=True)
    # A: input [1], target 2 -> 0. B: input [5], target 9: 1, 2, 3, 4, 6, 7, 8 beat it -> 7.
    assert ranks["rank"].tolist()[:2] == [0, 7]
    assert ranks["input_length"].tolist() == [1, 1, 7, 1]


def _random_dataset(n_users=60, n_items=40, seed=3) -> SeqDataset:
    return random_dataset("random", n_users, n_items, longest=25, seed=seed)


def test_metrics_identical_whatever_the_batch_size():
    ds = _random_dataset()
    model = BagOfPositionsScorer(ds.n_items, max_len=10)
    reference, ref_ranks = evaluate(model, ds, batch_size=len(ds), progress=False,
                                    return_ranks=True)
    for batch_size in (1, 3, 7, 16):
        metrics, ranks = evaluate(model, ds, batch_size=batch_size, progress=False,
                                  return_ranks=True)
        assert metrics == reference
        np.testing.assert_array_equal(ranks["rank"].to_numpy(), ref_ranks["rank"].to_numpy())
    # Ranks must also equal scoring each user alone at full max_len width (no trimming at all).
    inputs, targets, _ = ds.split().eval_inputs("test")
    from famekit.batching import pad_left

    for row in (0, 17, 59):
        ids = torch.from_numpy(pad_left([inputs[row]], 10, width=10))
        exclude = torch.from_numpy(np.asarray(inputs[row], dtype=np.int64)[None])
        alone = target_ranks(model.score_last(ids), torch.tensor([targets[row]]), exclude)
        assert int(alone) == ref_ranks["rank"].iloc[row]


def test_batches_are_trimmed_to_their_longest_input():
    ds = _random_dataset()
    model = StaticScorer(np.arange(ds.n_items + 1, dtype=np.float32), max_len=15)
    evaluate(model, ds, batch_size=8, progress=False)
    # Users are sorted by input length; each batch is as wide as its longest (truncated) input.
    lengths = np.sort([len(s) for s in ds.split().eval_inputs("test")[0]])
    expected = [min(int(lengths[i : i + 8].max()), 15) for i in range(0, len(lengths), 8)]
    assert model.seen_widths == expected
    assert expected[0] < 15 == expected[-1]


def test_exclude_history_never_raises_a_rank():
    ds = _random_dataset(seed=5)
    model = BagOfPositionsScorer(ds.n_items, max_len=8, seed=1)
    _, with_hist = evaluate(model, ds, progress=False, return_ranks=True)
    _, without = evaluate(model, ds, exclude_history=False, progress=False, return_ranks=True)
    assert (with_hist["rank"] <= without["rank"]).all()
    assert (with_hist["rank"] < without["rank"]).any()
    # The difference is exactly the number of distinct history items (other than the target)
    # that score at least as high as the target.
    inputs, targets, _ = ds.split().eval_inputs("test")
    from famekit.batching import pad_left

    for row in range(len(inputs)):
        scores = model.score_last(torch.from_numpy(pad_left([inputs[row]], 8)))[0]
        above = {int(v) for v in inputs[row]
                 if v != targets[row] and scores[v] >= scores[targets[row]]}
        assert without["rank"].iloc[row] - with_hist["rank"].iloc[row] == len(above)


def test_evaluate_restores_training_mode_and_honours_device():
    ds = _hand_dataset()
    model = _hand_scorer(5)
    model.train()
    evaluate(model, ds, device="cpu", progress=False)
    assert model.training


def test_evaluate_rejects_bad_input():
    ds = _hand_dataset()
    with pytest.raises(ParameterError, match="score_last"):
        evaluate(object(), ds)
    with pytest.raises(ParameterError, match="batch_size"):
        evaluate(_hand_scorer(5), ds, batch_size=0)
    with pytest.raises(ParameterError, match="split"):
        evaluate(_hand_scorer(5), ds, split="train")
    wrong_size = StaticScorer(np.zeros(6, dtype=np.float32))
    with pytest.raises(ParameterError, match=r"n_items"):
        evaluate(wrong_size, ds, progress=False)
    tiny = SeqDataset.from_sequences("tiny", [[1, 2]], n_items=2)
    with pytest.raises(ParameterError, match="at least 3 items"):
        evaluate(_hand_scorer(5), tiny)


# ---------------------------------------------------------------------------- popularity baseline
def _popularity_dataset() -> SeqDataset:
    return SeqDataset.from_sequences(
        "pop",
        [
            [1, 1, 2, 3, 4],   # train [1, 1, 2]; test: input [1, 1, 2, 3], target 4
            [2, 5, 6],         # train [2];       test: input [2, 5], target 6
            [1, 7, 8],         # train [1];       test: input [1, 7], target 8
        ],
        n_items=8,
    )


def test_popularity_counts_training_items_only():
    pop = Popularity.fit(_popularity_dataset())
    # Validation/test targets (3, 4, 5, 6, 7, 8) must not be counted.
    assert pop.counts.tolist() == [0, 3, 2, 0, 0, 0, 0, 0, 0]
    scores = pop.score_last(torch.zeros(4, 2, dtype=torch.long))
    assert scores.shape == (4, 9)
    assert torch.equal(scores[3], pop.counts)


def test_popularity_evaluates_with_the_model_interface():
    ds = _popularity_dataset()
    metrics, ranks = evaluate(Popularity.fit(ds), ds, progress=False, return_ranks=True)
    # Row 0: candidates 5-8 all tie with target 4 at count 0 -> 4. Row 1: item 1 beats, 3, 4, 7,
    # 8 tie -> 5. Row 2: item 2 beats, 3, 4, 5, 6 tie -> 5.
    assert ranks["rank"].tolist() == [4, 5, 5]
    assert metrics["HR@5"] == pytest.approx(1 / 3)
    _, no_excl = evaluate(Popularity.fit(ds), ds, exclude_history=False, progress=False,
                          return_ranks=True)
    assert no_excl["rank"].tolist() == [7, 7, 7]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_evaluate_on_cuda_matches_cpu():
    ds = _random_dataset()
    model = BagOfPositionsScorer(ds.n_items, max_len=10)
    cpu = evaluate(model, ds, progress=False)
    gpu = evaluate(model, ds, device="cuda", progress=False)
    assert gpu == cpu


# ------------------------------------------------------------------------------------ real models
@pytest.mark.parametrize("kind", ["fame", "sasrec"])
def test_real_models_give_identical_ranks_whatever_the_batch_size(kind):
    from famekit.model import ModelConfig, build_model

    ds = _random_dataset(n_users=50, n_items=30, seed=11)
    torch.manual_seed(0)
    # float64 keeps the comparison about bucketing, not about BLAS rounding across batch shapes.
    model = build_model(ModelConfig(n_items=30, kind=kind, max_len=12, d_model=16, n_layers=2,
                                    n_heads=2, n_experts=2)).double()
    model.train()
    reference, ref_ranks = evaluate(model, ds, batch_size=50, progress=False, return_ranks=True)
    assert model.training  # restored after evaluation (which ran without dropout)
    for batch_size in (1, 4, 9):
        metrics, ranks = evaluate(model, ds, batch_size=batch_size, progress=False,
                                  return_ranks=True)
        assert metrics == reference
        np.testing.assert_array_equal(ranks["rank"].to_numpy(), ref_ranks["rank"].to_numpy())
    assert reference["users"] == 50
    assert 0.0 <= reference["NDCG@20"] <= reference["HR@20"] <= 1.0
