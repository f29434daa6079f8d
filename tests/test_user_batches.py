"""The one batched pass over a split's users (famekit.user_batches): evaluation, activations
and anatomy all go through it, it restores the model's mode, and it refuses bad users once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from famekit import analysis as A
from famekit.datasets import SeqDataset
from famekit.errors import ParameterError
from famekit.evaluation import evaluate
from famekit.model import ModelConfig, build_model
from famekit.user_batches import UserBatches

MAX_LEN = 6


@pytest.fixture(scope="module")
def data() -> SeqDataset:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 31, size=rng.integers(3, 15)) for _ in range(20)]
    seqs.insert(4, np.array([7, 8]))  # row 4: too short to be evaluated
    return SeqDataset.from_sequences("batches", seqs, n_items=30)


@pytest.fixture(scope="module")
def fame(data):
    torch.manual_seed(0)
    return build_model(ModelConfig(n_items=data.n_items, kind="fame", d_model=16, n_heads=2,
                                   n_experts=2, max_len=MAX_LEN))


@pytest.fixture
def spy(monkeypatch):
    """Records the dataset rows of every batch any caller draws from UserBatches."""
    seen: list[list[int]] = []
    original = UserBatches.__iter__

    def recording(self):
        for batch in original(self):
            seen.append(batch.users.tolist())
            yield batch

    monkeypatch.setattr(UserBatches, "__iter__", recording)
    return seen


def test_batches_are_sorted_trimmed_and_cover_every_user_once(fame, data):
    with UserBatches(fame, data, "test", batch_size=4) as batches:
        drawn = list(batches)
        assert torch.is_inference_mode_enabled() and not fame.training
    assert not torch.is_inference_mode_enabled()
    index = np.concatenate([b.index for b in drawn])
    assert sorted(index.tolist()) == list(range(len(batches))) == list(range(20))
    assert 4 not in batches.users  # the two-item user is not in the split
    lengths = batches.lengths[index]
    assert (np.diff(lengths) >= 0).all()  # sorted by whole input length
    for b in drawn:
        assert b.input_ids.shape == (len(b.index), min(MAX_LEN, max(len(s) for s in b.inputs)))
        assert np.array_equal(b.targets, batches.targets[b.index])
        assert all(int(row[-1]) == int(s[-1]) for row, s in zip(b.input_ids, b.inputs))


def test_evaluation_activations_and_anatomy_all_go_through_the_pass(fame, data, spy):
    calls = []
    original = fame.run_with_cache

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    fame.run_with_cache = counting  # instance attribute: only this test's model is touched
    try:
        evaluate(fame, data, batch_size=8, progress=False)
        assert [len(b) for b in spy] == [8, 8, 4]
        spy.clear()
        A.collect_activations(fame, data, batch_size=8)
        assert [len(b) for b in spy] == [8, 8, 4] and len(calls) == 3  # one forward per batch
        spy.clear()
        A.collect_activations(fame, data, users=[9, 2, 9], batch_size=2)
        assert sorted(row for batch in spy for row in batch) == [2, 9, 9]
        spy.clear()
        calls.clear()
        A.recommendation_anatomy(fame, data, user_row=11, k=3)
        assert spy == [[11]] and len(calls) == 1
    finally:
        del fame.run_with_cache


def test_train_mode_is_restored_even_after_an_error(fame, data):
    fame.train()
    with pytest.raises(RuntimeError, match="in the loop"), UserBatches(fame, data) as batches:
        for _ in batches:
            assert not fame.training
            raise RuntimeError("an error in the loop")
    assert fame.training and not torch.is_inference_mode_enabled()
    A.collect_activations(fame, data)
    A.recommendation_anatomy(fame, data, user_row=0)
    assert fame.training
    fame.eval()
    A.collect_activations(fame, data)
    assert not fame.training


def test_bad_users_are_refused_with_one_message(fame, data):
    message = r"user rows \[4\] are not in split 'test'.*at least 3 items"
    with pytest.raises(ParameterError, match=message):
        UserBatches(fame, data, users=[0, 4])
    with pytest.raises(ParameterError, match=message):
        A.collect_activations(fame, data, users=[4])
    with pytest.raises(ParameterError, match=message):
        A.recommendation_anatomy(fame, data, user_row=4)
    with pytest.raises(ParameterError, match=r"user rows \[999\] .*rows run 0\.\.20"):
        A.collect_activations(fame, data, users=[999])
    with pytest.raises(ParameterError, match="users is empty"):
        UserBatches(fame, data, users=[])
    with pytest.raises(ParameterError, match="whole numbers"):
        UserBatches(fame, data, users=["3"])
    with pytest.raises(ParameterError, match="batch_size"):
        UserBatches(fame, data, batch_size=0)
    empty = SeqDataset.from_sequences("short", [[1, 2], [3]], n_items=30)
    for call in (lambda: evaluate(fame, empty), lambda: A.collect_activations(fame, empty),
                 lambda: A.recommendation_anatomy(fame, empty, 0)):
        with pytest.raises(ParameterError, match="no user with at least 3 items"):
            call()


def test_iterating_outside_the_context_is_a_programming_error(fame, data):
    with pytest.raises(RuntimeError, match="inside `with"):
        list(UserBatches(fame, data))


def test_a_given_device_moves_the_model_once(fame, data):
    batches = UserBatches(fame, data, device="cpu")
    assert batches.device == torch.device("cpu")
    with batches:
        assert all(b.input_ids.device == batches.device for b in batches)
