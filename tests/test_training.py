"""Training: length-bucketed batches, the loop, the run directory, determinism and resume."""

from __future__ import annotations

import json
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from worlds import random_dataset

from famekit import training
from famekit.batching import NextItemBatches, bucketed_batches, next_item_pairs
from famekit.checkpoints import load_run
from famekit.datasets import SeqDataset
from famekit.errors import CheckpointError, ParameterError
from famekit.evaluation import evaluate
from famekit.training import EarlyStopping, TrainResult, default_run_dir, run_status, train

TINY_MODEL = {"d_model": 16, "n_heads": 2, "n_experts": 2, "n_layers": 2}


def tiny_dataset(n_users: int = 90, n_items: int = 50, seed: int = 0) -> SeqDataset:
    return random_dataset("tiny", n_users, n_items, longest=14, seed=seed)


def tiny_train(dataset, out_dir, **overrides) -> TrainResult:
    options = {"kind": "fame", "epochs": 2, "patience": 5, "batch_size": 16, "progress": False,
               "threads": 1, "max_len": 10, **TINY_MODEL}
    options.update(overrides)
    return train(dataset, out_dir=out_dir, **options)


def csv_without_timings(path) -> list[list[str]]:
    """metrics.csv without its two wall-clock columns (the only ones allowed to differ)."""
    rows = [line.split(",") for line in path.read_text().splitlines()]
    keep = [i for i, name in enumerate(rows[0]) if name not in ("train_seconds", "seconds")]
    return [[row[i] for i in keep] for row in rows]


# ---------------------------------------------------------------------------------- batching
def test_next_item_pairs_shift_by_one_and_keep_the_last_max_len():
    inputs, targets = next_item_pairs(np.array([5, 6, 7, 8, 9]), max_len=3)
    assert inputs.tolist() == [6, 7, 8]
    assert targets.tolist() == [7, 8, 9]
    inputs, targets = next_item_pairs(np.array([5, 6]), max_len=3)
    assert inputs.tolist() == [5] and targets.tolist() == [6]


def test_bucketed_batches_cover_every_row_once_and_depend_only_on_the_seed():
    lengths = np.random.default_rng(1).integers(1, 50, size=1000)
    batches = bucketed_batches(lengths, 64, np.random.default_rng(7))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    assert [len(b) for b in batches].count(64) == 15 and len(batches) == 16
    again = bucketed_batches(lengths, 64, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    other = bucketed_batches(lengths, 64, np.random.default_rng(8))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))


def test_bucketing_cuts_padding_compared_with_random_batches():
    rng = np.random.default_rng(2)
    lengths = rng.geometric(0.15, size=2000).clip(1, 50)

    def padded_cells(batches):
        return sum(len(b) * lengths[b].max() for b in batches)

    bucketed = bucketed_batches(lengths, 128, np.random.default_rng(3))
    shuffled = np.array_split(rng.permutation(2000), len(bucketed))
    assert padded_cells(bucketed) < 0.6 * padded_cells(shuffled)
    # The order of the batches is shuffled, not sorted by length.
    widths = [lengths[b].max() for b in bucketed]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)


def test_a_tail_batch_smaller_than_min_rows_joins_the_previous_one():
    batches = bucketed_batches(np.arange(1, 11), 4, np.random.default_rng(0), min_rows=3)
    assert sorted(len(b) for b in batches) == [4, 6]
    batches = bucketed_batches(np.arange(1, 11), 4, np.random.default_rng(0), min_rows=1)
    assert sorted(len(b) for b in batches) == [2, 4, 4]


def test_next_item_batches_are_trimmed_left_padded_and_aligned():
    sequences = [np.array([3]), np.array([1, 2]), np.array([4, 5, 6, 7]), np.arange(1, 30)]
    batches = NextItemBatches(sequences, max_len=5, batch_size=8)
    assert len(batches) == 3  # the one-item sequence has no target
    assert batches.n_targets.tolist() == [1, 3, 5] and batches.total_targets == 9
    inputs, targets = batches.materialise(np.array([0, 1]))
    assert inputs.tolist() == [[0, 0, 1], [4, 5, 6]]  # trimmed to the longest row (3)
    assert targets.tolist() == [[0, 0, 2], [5, 6, 7]]
    inputs, targets = batches.materialise(np.array([2]))
    assert inputs.tolist() == [[24, 25, 26, 27, 28]] and targets.tolist() == [[25, 26, 27, 28, 29]]
    assert inputs.dtype == np.int64 and targets.dtype == np.int64


# ---------------------------------------------------------------------------------- early stopping
def test_early_stopping_counts_evaluations_without_a_strictly_better_score():
    stopper = EarlyStopping(patience=2)
    scores = [0.1, 0.3, 0.3, 0.2]
    improved = [stopper.update(e + 1, {"NDCG@10": s}) for e, s in enumerate(scores)]
    assert improved == [True, True, False, False]
    assert stopper.stopped and stopper.best_epoch == 2 and stopper.best_score == 0.3
    restored = EarlyStopping.from_dict(stopper.to_dict(), patience=5)
    assert not restored.stopped and restored.bad_evaluations == 2 and restored.best_epoch == 2


# ---------------------------------------------------------------------------------- the loop
@pytest.mark.parametrize("kind", ["fame", "sasrec"])
def test_one_small_run_writes_a_complete_run_directory(tmp_path, kind):
    dataset = tiny_dataset()
    result = tiny_train(dataset, tmp_path / "run", kind=kind, epochs=2)
    run_dir = tmp_path / "run"
    for name in ("config.json", "model.safetensors", "train_state.json", "train_state.safetensors",
                 "metrics.csv", "metrics.json", "train_args.json"):
        assert (run_dir / name).is_file(), name
    assert result.run_dir == run_dir and len(result.history) == 2
    assert result.best_epoch in (1, 2)
    assert set(result.test) >= {"HR@10", "NDCG@10", "MRR"} and result.test["users"] == 90
    assert np.isfinite([row["train_loss"] for row in result.history]).all()

    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["epoch", "train_loss"] and "valid_NDCG@10" in header
    assert header[-1] == "seconds"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["test"] == result.test
    assert run_status(run_dir) == "finished"

    args = json.loads((run_dir / "train_args.json").read_text())
    assert args["kind"] == kind and args["batch_size"] == 16 and args["max_len"] == 10
    assert args["model_options"] == TINY_MODEL
    assert args["dataset"]["fingerprint"] == dataset.fingerprint

    # The saved model is the best validation epoch, and the summary holds its test metrics.
    run = load_run(run_dir, dataset=dataset)
    assert run.config.kind == kind and run.config.d_model == 16
    valid = evaluate(run.model, dataset, split="valid", progress=False)
    assert valid["NDCG@10"] == pytest.approx(result.best_valid["NDCG@10"], abs=1e-12)
    assert json.dumps(result.test["NDCG@10"]) in (run_dir / "config.json").read_text()


def test_training_reduces_the_loss_on_a_learnable_world(tmp_path):
    # Every user walks 1 -> 2 -> ... (cyclically): the next item is always predictable.
    sequences = [((np.arange(12) + start) % 30) + 1 for start in range(60)]
    dataset = SeqDataset.from_sequences("cycle", sequences, n_items=30)
    result = tiny_train(dataset, tmp_path / "run", epochs=6, lr=1e-2, dropout=0.0)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.test["HR@5"] > 0.5


def test_same_seed_gives_identical_metrics_and_weights(tmp_path):
    dataset = tiny_dataset()
    tiny_train(dataset, tmp_path / "a", epochs=2, seed=3)
    tiny_train(dataset, tmp_path / "b", epochs=2, seed=3)
    tiny_train(dataset, tmp_path / "c", epochs=2, seed=4)
    first, second = csv_without_timings(tmp_path / "a" / "metrics.csv"), csv_without_timings(
        tmp_path / "b" / "metrics.csv")
    assert first == second
    assert first != csv_without_timings(tmp_path / "c" / "metrics.csv")
    weights_a = load_file(str(tmp_path / "a" / "model.safetensors"))
    weights_b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_resume_after_two_epochs_equals_four_straight_epochs(tmp_path):
    dataset = tiny_dataset()
    straight = tiny_train(dataset, tmp_path / "straight", epochs=4, patience=10)
    tiny_train(dataset, tmp_path / "resumed", epochs=2, patience=10)
    resumed = train(dataset, resume=tmp_path / "resumed", epochs=4, progress=False, threads=1)
    assert csv_without_timings(tmp_path / "straight" / "metrics.csv") == csv_without_timings(
        tmp_path / "resumed" / "metrics.csv")
    assert resumed.test == straight.test and resumed.best_epoch == straight.best_epoch
    for name in ("model.safetensors", "train_state.safetensors"):  # best; last + Adam moments
        a = load_file(str(tmp_path / "straight" / name))
        b = load_file(str(tmp_path / "resumed" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert json.loads((tmp_path / "resumed" / "train_args.json").read_text())["epochs"] == 4


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    dataset = tiny_dataset()
    straight = tiny_train(dataset, tmp_path / "straight", epochs=3, patience=10)

    real_train_epoch = training.train_epoch
    calls = {"n": 0}

    def interrupt_in_epoch_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of epoch 3
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", interrupt_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        tiny_train(dataset, tmp_path / "cut", epochs=3, patience=10)
    monkeypatch.setattr(training, "train_epoch", real_train_epoch)
    assert run_status(tmp_path / "cut") == "running"
    assert len(json.loads((tmp_path / "cut" / "metrics.json").read_text())["history"]) == 2

    with pytest.raises(CheckpointError, match="unfinished run.*resume"):
        tiny_train(dataset, tmp_path / "cut", epochs=3)
    resumed = train(dataset, resume=tmp_path / "cut", progress=False, threads=1)
    assert csv_without_timings(tmp_path / "straight" / "metrics.csv") == csv_without_timings(
        tmp_path / "cut" / "metrics.csv")
    assert resumed.test == straight.test


def test_patience_stops_a_run_that_no_longer_improves(tmp_path):
    # lr so small that the weights (and so the validation ranks) do not move after epoch 1.
    result = tiny_train(tiny_dataset(), tmp_path / "run", epochs=6, patience=2, lr=1e-12)
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["stopped_early"] is True


def test_eval_every_evaluates_periodically_and_at_the_last_epoch(tmp_path):
    result = tiny_train(tiny_dataset(), tmp_path / "run", epochs=3, eval_every=2)
    evaluated = [row["epoch"] for row in result.history if "valid_NDCG@10" in row]
    assert evaluated == [2, 3]
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert lines[1].split(",")[2] == ""  # epoch 1 has an empty valid_HR@5 cell


def test_a_finished_run_is_not_overwritten_unless_asked(tmp_path):
    dataset = tiny_dataset()
    tiny_train(dataset, tmp_path / "run", epochs=1)
    with pytest.raises(CheckpointError, match="already holds a finished run.*overwrite"):
        tiny_train(dataset, tmp_path / "run", epochs=1)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    result = tiny_train(dataset, tmp_path / "run", epochs=1, seed=5, overwrite=True)
    assert result.history[0]["epoch"] == 1
    assert json.loads((tmp_path / "run" / "train_args.json").read_text())["seed"] == 5
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # not ours: left alone


def test_default_run_dir_follows_famekit_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAMEKIT_RUNS", raising=False)
    assert default_run_dir("beauty", "fame", 0) == tmp_path / "runs" / "beauty-fame-seed0"
    monkeypatch.setenv("FAMEKIT_RUNS", str(tmp_path / "elsewhere"))
    result = tiny_train(tiny_dataset(), None, epochs=1, kind="sasrec", seed=2)
    assert result.run_dir == tmp_path / "elsewhere" / "tiny-sasrec-seed2"
    assert run_status(result.run_dir) == "finished"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs": -1}, "epochs must be a whole number >= 1"),
        ({"patience": 0}, "patience must be"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"lr": -0.1}, "lr must be a positive number"),
        ({"kind": "gru"}, "kind must be 'fame' or 'sasrec'"),
        ({"n_expertz": 3}, "unknown model option"),
        ({"dropout": 1.5}, "dropout"),
        ({"device": "tpu"}, "device"),
        ({"loss_weighting": "user"}, "loss_weighting='user' is invalid"),
        ({"precision": "fp16"}, "precision='fp16' is invalid"),
    ],
)
def test_bad_arguments_raise_parameter_errors_before_writing(tmp_path, overrides, message):
    with pytest.raises(ParameterError, match=message):
        tiny_train(tiny_dataset(), tmp_path / "run", **overrides)
    assert not (tmp_path / "run").exists()


def test_resume_rejects_missing_runs_changed_arguments_and_other_data(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        train(tiny_dataset(), resume=tmp_path / "nowhere", progress=False)
    dataset = tiny_dataset()
    tiny_train(dataset, tmp_path / "run", epochs=1)
    with pytest.raises(ParameterError, match="cannot change lr"):
        train(dataset, resume=tmp_path / "run", lr=0.5, progress=False)
    with pytest.raises(ParameterError, match="cannot change model options"):
        train(dataset, resume=tmp_path / "run", d_model=32, progress=False)
    with pytest.raises(CheckpointError, match="fingerprint"):
        train(tiny_dataset(seed=9), resume=tmp_path / "run", epochs=2, progress=False)
    with pytest.raises(CheckpointError, match="in-memory dataset"):
        train(resume=tmp_path / "run", epochs=2, progress=False)
    tiny_train(dataset, tmp_path / "two", epochs=2)
    with pytest.raises(ParameterError, match="already trained 2 epochs"):
        train(dataset, resume=tmp_path / "two", epochs=1, progress=False)
    assert json.loads((tmp_path / "two" / "train_args.json").read_text())["epochs"] == 2


def test_a_dataset_loaded_from_files_can_be_resumed_by_path(tmp_path):
    from famekit.datasets import load_files

    path = tmp_path / "seqs.txt"
    rng = np.random.default_rng(4)
    path.write_text("".join(
        f"{u} " + " ".join(str(i) for i in rng.integers(1, 40, size=rng.integers(3, 12))) + "\n"
        for u in range(1, 61)))
    dataset = load_files(path, name="mine")
    tiny_train(dataset, tmp_path / "run", epochs=1)
    described = json.loads((tmp_path / "run" / "train_args.json").read_text())["dataset"]
    assert described["sequences"] == str(path.resolve()) and described["name"] == "mine"
    resumed = train(resume=tmp_path / "run", epochs=2, progress=False, threads=1)
    assert [row["epoch"] for row in resumed.history] == [1, 2]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (bf16 autocast path)")
def test_training_on_cuda_uses_bf16_autocast_and_saves_cpu_loadable_weights(tmp_path):
    dataset = tiny_dataset()
    result = tiny_train(dataset, tmp_path / "run", epochs=2, device="cuda")
    assert np.isfinite([row["train_loss"] for row in result.history]).all()
    assert json.loads((tmp_path / "run" / "train_args.json").read_text())["epochs"] == 2
    run = load_run(tmp_path / "run", dataset=dataset, device="cpu")
    assert next(run.model.parameters()).device.type == "cpu"
    # Same best weights scored on CPU: a float-order difference may move a user's rank or two
    # (each moves a metric by at most 1/90).
    assert evaluate(run.model, dataset, split="test", progress=False) == pytest.approx(
        result.test, abs=0.03)


def test_target_weighting_gives_every_target_the_same_weight(tmp_path, monkeypatch):
    # Record the objective each step minimises, per weighting: "batch" = the batch's mean CE,
    # "target" = batch sum / the epoch's mean targets per batch (so the epoch's objectives sum
    # to the mean over all its targets times the number of batches).
    from famekit import training

    seen = {}

    def recording(kind):
        real_backward = torch.Tensor.backward

        def backward(self, *args, **kwargs):
            seen.setdefault(kind, []).append(float(self.detach()))
            return real_backward(self, *args, **kwargs)
        return backward

    dataset = tiny_dataset()
    for kind in ("batch", "target"):
        monkeypatch.setattr(torch.Tensor, "backward", recording(kind))
        tiny_train(dataset, tmp_path / kind, epochs=1, loss_weighting=kind, lr=1e-9)
        monkeypatch.undo()
    batch, target = np.array(seen["batch"]), np.array(seen["target"])
    assert len(batch) == len(target) > 2
    batches = training.NextItemBatches(dataset.split().train_sequences(), 10, 16)
    order = batches.epoch(training.epoch_rng(0, 1))
    counts = np.array([batches.n_targets[rows].sum() for rows in order], dtype=float)
    # lr ~ 0: both runs see (almost) the same losses, only the weights differ
    np.testing.assert_allclose(target, batch * counts / counts.mean(), rtol=1e-4)
    assert json.loads((tmp_path / "target" / "train_args.json").read_text())[
        "loss_weighting"] == "target"


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # a CUDA context built on a CPU box
def test_precision_auto_is_bf16_autocast_on_cuda_only():
    from famekit.training import autocast_for

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_for("auto", cpu) is nullcontext and autocast_for("fp32", cuda) is nullcontext
    for precision, device in (("auto", cuda), ("bf16", cuda), ("bf16", cpu)):
        context = autocast_for(precision, device)()
        assert isinstance(context, torch.autocast)
        assert (context.device, context.fast_dtype) == (device.type, torch.bfloat16)


def test_bf16_precision_reaches_the_training_step_and_is_recorded(tmp_path):
    # bf16 autocast on the CPU rounds the matmuls: the losses move away from fp32's, the weights
    # stay fp32, and the run records its precision (fp32 runs resume without one).
    dataset = tiny_dataset()
    fp32 = tiny_train(dataset, tmp_path / "fp32", epochs=1, precision="fp32")
    bf16 = tiny_train(dataset, tmp_path / "bf16", epochs=1, precision="bf16")
    assert bf16.history[0]["train_loss"] != fp32.history[0]["train_loss"]
    assert bf16.history[0]["train_loss"] == pytest.approx(fp32.history[0]["train_loss"], rel=0.05)
    assert json.loads((tmp_path / "bf16" / "train_args.json").read_text())["precision"] == "bf16"
    weights = load_run(tmp_path / "bf16", dataset=dataset, device="cpu").model.parameters()
    assert {p.dtype for p in weights} == {torch.float32}


def test_runs_written_before_loss_weighting_still_resume(tmp_path):
    dataset = tiny_dataset()
    tiny_train(dataset, tmp_path / "old", epochs=1)
    args_path = tmp_path / "old" / "train_args.json"
    saved = json.loads(args_path.read_text())
    del saved["loss_weighting"], saved["precision"]
    args_path.write_text(json.dumps(saved))
    result = train(dataset, resume=tmp_path / "old", epochs=2, progress=False, threads=1)
    assert result.best_epoch in (1, 2)



def test_two_thread_training_is_bit_reproducible(tmp_path):
    # same seed, same machine, same 2 threads: identical weights, with the default chunked loss
    # (the synthetic world is big enough for multi-threaded GEMMs and several loss chunks)
    from famekit.datasets import load

    data = load("synthetic", n_users=600, n_items=4000)
    for name in ("a", "b"):
        train(data, kind="fame", out_dir=tmp_path / name, epochs=1, batch_size=64, threads=2,
              progress=False, max_len=50)
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
