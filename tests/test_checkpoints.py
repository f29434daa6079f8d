"""Run directories (docs/fame-spec.md §7): atomic writes, safetensors + JSON round trips, and every way a
checkpoint can be wrong, including pickles that must never be executed."""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import random

import numpy as np
import pytest
import safetensors.torch
import torch

from famekit.checkpoints import (
    CONFIG_FILE,
    TRAIN_STATE_JSON_FILE,
    TRAIN_STATE_TENSORS_FILE,
    WEIGHTS_FILE,
    Run,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    capture_rng_state,
    load_run,
    load_train_state,
    restore_rng_state,
    save_model,
    save_train_state,
)
from famekit.datasets import SeqDataset
from famekit.errors import CheckpointError
from famekit.evaluation import evaluate
from famekit.model import ModelConfig, build_model


def _config(kind: str = "fame", **overrides) -> ModelConfig:
    fields = {"n_items": 20, "kind": kind, "max_len": 8, "d_model": 16, "n_layers": 2,
              "n_heads": 2, "n_experts": 2, "dropout": 0.1}
    return ModelConfig(**{**fields, **overrides})


def _dataset() -> SeqDataset:
    rng = np.random.default_rng(0)
    return SeqDataset.from_sequences(
        "tiny", [rng.integers(1, 21, size=rng.integers(3, 10)) for _ in range(12)], n_items=20)


def _inputs() -> torch.Tensor:
    return torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 7]])


@pytest.fixture
def saved_run(tmp_path):
    torch.manual_seed(0)
    model = build_model(_config())
    ds = _dataset()
    run_dir = save_model(tmp_path / "run", model, dataset_name=ds.name,
                         dataset_fingerprint=ds.fingerprint, summary={"best_epoch": 3})
    return run_dir, model, ds


def _no_temp_files(directory) -> bool:
    return not [p for p in os.listdir(directory) if p.endswith(".tmp")]


# --------------------------------------------------------------------------------- atomic writes
def test_atomic_writes_replace_whole_files_and_create_parents(tmp_path):
    target = tmp_path / "a" / "b" / "file.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    atomic_write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    atomic_write_json(tmp_path / "m.json", {"n": np.int64(3), "x": np.float32(0.5),
                                            "a": np.arange(3), "t": torch.tensor([1.5])})
    assert json.loads((tmp_path / "m.json").read_text()) == {"n": 3, "x": 0.5, "a": [0, 1, 2],
                                                             "t": [1.5]}
    assert _no_temp_files(target.parent) and _no_temp_files(tmp_path)


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "keep.json"
    atomic_write_json(target, {"version": 1})

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CheckpointError, match="keep.json"):
        atomic_write_json(target, {"version": 2})
    assert json.loads(target.read_text()) == {"version": 1}
    assert _no_temp_files(tmp_path)


# ------------------------------------------------------------------------------ save / load runs
@pytest.mark.parametrize("kind", ["fame", "sasrec"])
def test_save_and_load_round_trip(tmp_path, kind):
    torch.manual_seed(1)
    model = build_model(_config(kind))
    with torch.no_grad():  # move the weights away from their initial values
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ds = _dataset()
    save_model(tmp_path, model, dataset_name="tiny", dataset_fingerprint=ds.fingerprint,
               summary={"best_epoch": 7}, extra={"lr": 1e-3})
    assert sorted(os.listdir(tmp_path)) == [CONFIG_FILE, WEIGHTS_FILE]
    run = load_run(tmp_path, dataset=ds, device="cpu")
    assert isinstance(run, Run) and run.run_dir == tmp_path
    assert run.config == model.config
    assert not run.model.training
    assert run.meta["kind"] == kind and run.meta["n_items"] == 20
    assert run.meta["dataset"] == {"name": "tiny", "fingerprint": ds.fingerprint}
    assert run.meta["summary"] == {"best_epoch": 7} and run.meta["extra"] == {"lr": 1e-3}
    assert run.meta["format_version"] == 1 and run.meta["famekit_version"]
    model.eval()
    with torch.no_grad():
        assert torch.equal(run.model.score_last(_inputs()), model.score_last(_inputs()))
    for name, tensor in model.state_dict().items():
        assert torch.equal(run.model.state_dict()[name], tensor), name
    assert evaluate(run.model, ds, progress=False) == evaluate(model, ds, progress=False)


def test_save_unwraps_torch_compile(tmp_path):
    model = build_model(_config("sasrec"))
    save_model(tmp_path, torch.compile(model), dataset_name="x", dataset_fingerprint="f")
    names = safetensors.torch.load((tmp_path / WEIGHTS_FILE).read_bytes()).keys()
    assert set(names) == set(model.state_dict())
    load_run(tmp_path, device="cpu")


def test_fingerprint_mismatch_names_both(saved_run):
    run_dir, _, ds = saved_run
    other = SeqDataset.from_sequences("other", [[1, 2, 3, 4]], n_items=20)
    with pytest.raises(CheckpointError) as info:
        load_run(run_dir, dataset=other)
    message = str(info.value)
    assert ds.fingerprint in message and other.fingerprint in message and "Fix:" in message
    assert load_run(run_dir, dataset=ds, device="cpu").meta["dataset"]["name"] == "tiny"


def test_missing_directory_and_files(tmp_path, saved_run):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run(tmp_path / "nowhere")
    run_dir, _, _ = saved_run
    (run_dir / WEIGHTS_FILE).rename(run_dir / "model.pt")
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing.*model\.pt"):
        load_run(run_dir)
    (run_dir / "model.pt").rename(run_dir / WEIGHTS_FILE)
    (run_dir / CONFIG_FILE).unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_run(run_dir)


def test_truncated_and_corrupt_weights(saved_run):
    run_dir, _, _ = saved_run
    path = run_dir / WEIGHTS_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors.*(truncated|corrupt)"):
        load_run(run_dir)
    path.write_bytes(b"\x00" * 5)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_run(run_dir)
    # Same length, one byte of tensor data flipped: parses, but the recorded sha256 catches it.
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="sha256"):
        load_run(run_dir)


def _payload_pickle(sentinel, protocol: int) -> bytes:
    class CreatesFile:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    data = pickle.dumps(CreatesFile(), protocol=protocol)
    # Prove the payload is live without running it: it looks up io.open and calls it (REDUCE).
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    assert ("REDUCE", None) in ops
    assert any(arg in ("io open", "open") for _, arg in ops)
    return data


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_pickled_weights_are_refused_without_unpickling(saved_run, tmp_path, protocol):
    run_dir, _, _ = saved_run
    sentinel = tmp_path / "pwned.txt"
    (run_dir / WEIGHTS_FILE).write_bytes(_payload_pickle(sentinel, protocol))
    with pytest.raises(CheckpointError, match="model.safetensors") as info:
        load_run(run_dir)
    if protocol >= 2:
        assert "pickle" in str(info.value) and "never unpickles" in str(info.value)
    assert not sentinel.exists()


def test_torch_save_file_renamed_is_refused(saved_run, tmp_path):
    run_dir, model, _ = saved_run
    sentinel = tmp_path / "pwned_zip.txt"

    class CreatesFile:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    torch.save({"state": model.state_dict(), "trap": CreatesFile()}, run_dir / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="torch.save zip archive"):
        load_run(run_dir)
    assert not sentinel.exists()


def test_invalid_json_names_line(saved_run):
    run_dir, _, _ = saved_run
    (run_dir / CONFIG_FILE).write_text('{\n  "format_version": 1,\n  oops\n}\n')
    with pytest.raises(CheckpointError, match=r"config.json, line 3"):
        load_run(run_dir)
    (run_dir / CONFIG_FILE).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not an object"):
        load_run(run_dir)


def _rewrite(run_dir, meta=None, tensors=None):
    """Edit a run behind save_model's back, keeping the recorded checksum consistent."""
    meta = meta or json.loads((run_dir / CONFIG_FILE).read_text())
    if tensors is not None:
        data = safetensors.torch.save(tensors)
        (run_dir / WEIGHTS_FILE).write_bytes(data)
        import hashlib

        meta["weights"]["sha256"] = hashlib.sha256(data).hexdigest()
    (run_dir / CONFIG_FILE).write_text(json.dumps(meta))


def test_config_and_weights_mismatch_name_the_tensors(saved_run):
    run_dir, model, _ = saved_run
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    meta = json.loads((run_dir / CONFIG_FILE).read_text())

    meta["model_config"]["n_items"] = 25
    _rewrite(run_dir, meta)
    with pytest.raises(CheckpointError, match=r"shape mismatch for item_embed\.weight \(file "
                                              r"\(21, 16\), config \(26, 16\)\)"):
        load_run(run_dir)

    meta["model_config"]["n_items"] = 20
    missing = dict(tensors)
    del missing["fame.router"]
    _rewrite(run_dir, meta, missing)
    with pytest.raises(CheckpointError, match=r"missing tensors fame\.router"):
        load_run(run_dir)

    _rewrite(run_dir, meta, {**tensors, "surprise.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match=r"unexpected tensors surprise\.weight"):
        load_run(run_dir)

    meta["model_config"]["kind"] = "transformer-xl"
    _rewrite(run_dir, meta, tensors)
    with pytest.raises(CheckpointError, match="model_config cannot build a model"):
        load_run(run_dir)

    meta["model_config"]["kind"] = "fame"
    meta["format_version"] = 99
    _rewrite(run_dir, meta)
    with pytest.raises(CheckpointError, match="upgrade famekit"):
        load_run(run_dir)


def test_weights_of_another_model_are_caught_by_checksum(saved_run, tmp_path):
    run_dir, _, ds = saved_run
    other = save_model(tmp_path / "other", build_model(_config()), dataset_name="tiny",
                       dataset_fingerprint=ds.fingerprint)
    (run_dir / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match="replaced or damaged"):
        load_run(run_dir)


# ---------------------------------------------------------------------------------- train state
def _train_steps(model, optimizer, steps: int) -> None:
    gen_inputs = torch.Generator().manual_seed(42)
    for _ in range(steps):
        ids = torch.randint(1, 21, (4, 6), generator=gen_inputs)
        targets = torch.randint(1, 21, (4, 6), generator=gen_inputs)
        optimizer.zero_grad()
        model(ids, targets).backward()  # dropout draws from the global torch RNG
        optimizer.step()


def test_adam_resume_is_bit_identical(tmp_path):
    torch.manual_seed(0)
    model = build_model(_config())
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    _train_steps(model, optimizer, 3)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    save_train_state(tmp_path, optimizer, epoch=3, extra_state={"best": 0.5})
    _train_steps(model, optimizer, 3)
    original = {k: v.clone() for k, v in model.state_dict().items()}

    torch.manual_seed(123)  # scramble the global RNG; the restore must undo this
    resumed = build_model(_config())
    resumed.load_state_dict(weights)
    resumed.train()
    new_optimizer = torch.optim.Adam(resumed.parameters(), lr=1e-2, betas=(0.8, 0.95))
    state = load_train_state(tmp_path, new_optimizer)
    assert state["epoch"] == 3 and state["extra_state"] == {"best": 0.5}
    assert new_optimizer.param_groups[0]["betas"] == (0.8, 0.95)
    restore_rng_state(state["rng"])
    _train_steps(resumed, new_optimizer, 3)
    for name, tensor in original.items():
        assert torch.equal(resumed.state_dict()[name], tensor), name


def test_train_state_round_trips_nested_extra_state_and_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    extra = {"history": [{"epoch": 1, "ndcg": 0.25}], "pair": (1, "a"), 7: "int key",
             "table": torch.arange(6).reshape(2, 3), "array": np.arange(4, dtype=np.uint32),
             "nothing": None, "__dunder": True}
    random.seed(5)
    np.random.seed(5)
    rng = capture_rng_state()
    save_train_state(tmp_path, optimizer, epoch=2, extra_state=extra, rng=rng)
    assert (tmp_path / TRAIN_STATE_TENSORS_FILE).is_file()
    state = load_train_state(tmp_path, optimizer)
    back = state["extra_state"]
    assert back["history"] == extra["history"] and back["pair"] == (1, "a")
    assert back[7] == "int key" and back["nothing"] is None and back["__dunder"] is True
    assert torch.equal(back["table"], extra["table"])
    assert back["array"].dtype == np.uint32 and back["array"].tolist() == [0, 1, 2, 3]
    expected_python, expected_numpy = random.random(), np.random.random()
    random.seed(9)
    np.random.seed(9)
    restore_rng_state(state["rng"])
    assert random.random() == expected_python and np.random.random() == expected_numpy
    assert state["rng"]["torch_cpu"].dtype == torch.uint8


def test_train_state_errors(tmp_path):
    model = torch.nn.Linear(3, 2)
    adam = torch.optim.Adam(model.parameters())
    with pytest.raises(CheckpointError, match="train_state.json is missing"):
        load_train_state(tmp_path, adam)
    save_train_state(tmp_path, adam, epoch=1)
    with pytest.raises(CheckpointError, match="holds Adam state but the optimizer given is SGD"):
        load_train_state(tmp_path, torch.optim.SGD(model.parameters(), lr=0.1))
    bigger = torch.optim.Adam(torch.nn.Linear(3, 4).parameters())
    bigger.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))]})
    with pytest.raises(CheckpointError, match="does not fit this optimizer"):
        load_train_state(tmp_path, bigger)
    with pytest.raises(CheckpointError, match="'extra_state.fn'.*without pickle"):
        save_train_state(tmp_path, adam, epoch=1, extra_state={"fn": print})
    sentinel = tmp_path / "pwned_state.txt"
    (tmp_path / TRAIN_STATE_TENSORS_FILE).write_bytes(_payload_pickle(sentinel, 4))
    with pytest.raises(CheckpointError, match="train_state.safetensors is a Python pickle"):
        load_train_state(tmp_path, adam)
    assert not sentinel.exists()
    (tmp_path / TRAIN_STATE_JSON_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="train_state.json, line 1"):
        load_train_state(tmp_path, adam)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_load_run_on_cuda(saved_run):
    run_dir, model, _ = saved_run
    run = load_run(run_dir, device="cuda")
    assert next(run.model.parameters()).is_cuda
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(run.model.score_last(_inputs().cuda()).cpu(),
                                   model.score_last(_inputs()))
