"""Distributed data parallel training through torchrun (gloo on CPU).

Tolerance of the DDP-vs-single-process comparison (same global batch, dropout 0): the ranks
split every global batch and weight their mean losses by their share of its targets, so the
averaged gradient is the single process's gradient up to float summation order. Train losses
must agree to a relative 1e-5 and validation/test metrics to 0.01 absolute (a float-order
difference may move a few of the 300 users' ranks; each moves HR by 1/300).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from famekit.distributed import resolve_device, torchrun_env
from famekit.errors import ParameterError
from famekit.evaluation import METRIC_NAMES

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)

FLAGS = ["--batch-size", "32", "--dropout", "0", "--threads", "1", "--d-model", "16",
         "--heads", "2", "--experts", "2", "--max-len", "20", "--no-progress"]
METRICS = METRIC_NAMES


# ---------------------------------------------------------------------------------- unit
def test_torchrun_env_is_read_only_for_more_than_one_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert torchrun_env() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert torchrun_env() is None  # one process needs no process group
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert torchrun_env() == {"world_size": 4, "rank": 3, "local_rank": 1,
                              "local_world_size": 2}
    monkeypatch.setenv("RANK", "three")
    with pytest.raises(ParameterError, match="not integers"):
        torchrun_env()


def test_resolve_device_defaults_and_rejects():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ParameterError, match="not a torch device|not supported"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="no GPU"):
            resolve_device("cuda")


# ---------------------------------------------------------------------------------- torchrun
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """300 users over 80 items, written as a sequence file every process can read."""
    path = tmp_path_factory.mktemp("ddp") / "world.txt"
    rng = np.random.default_rng(0)
    path.write_text("".join(
        f"{u} " + " ".join(map(str, rng.integers(1, 81, size=rng.integers(3, 20)))) + "\n"
        for u in range(1, 301)))
    return path


def _run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def single(*args: str) -> None:
    _run([sys.executable, "-m", "famekit.cli", "train", *args, *FLAGS])


def torchrun(*args: str) -> None:
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
          "2", "-m", "famekit.cli", "train", *args, *FLAGS])


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def assert_same_run(a: dict, b: dict) -> None:
    assert len(a["history"]) == len(b["history"])
    for row_a, row_b in zip(a["history"], b["history"]):
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-5)
        for metric in METRICS:
            assert row_a[f"valid_{metric}"] == pytest.approx(row_b[f"valid_{metric}"], abs=0.01)
    for metric in METRICS:
        assert a["test"][metric] == pytest.approx(b["test"][metric], abs=0.01)


@pytest.fixture(scope="module")
def single_run(world, tmp_path_factory) -> Path:
    """The single-process reference: 3 epochs."""
    run_dir = tmp_path_factory.mktemp("single") / "one"
    single("--sequences", str(world), "--epochs", "3", "--out", str(run_dir))
    return run_dir


@pytest.mark.slow
def test_two_process_ddp_matches_a_single_process_run(world, single_run, tmp_path):
    torchrun("--sequences", str(world), "--epochs", "3", "--out", str(tmp_path / "ddp"))
    args = json.loads((tmp_path / "ddp" / "train_args.json").read_text())
    assert args["world_size"] == 2 and args["batch_size"] == 32  # 32 = the global batch
    one, ddp = metrics_of(single_run), metrics_of(tmp_path / "ddp")
    assert ddp["status"] == "finished"
    assert_same_run(one, ddp)
    # The weights moved the same way (a loose check: float order differs between the two).
    from safetensors.torch import load_file

    w_one = load_file(str(single_run / "model.safetensors"))
    w_ddp = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    assert w_one.keys() == w_ddp.keys()
    assert all(torch.allclose(w_one[k], w_ddp[k], atol=1e-4) for k in w_one)


@pytest.mark.slow
def test_a_ddp_run_resumes_under_torchrun(world, single_run, tmp_path):
    torchrun("--sequences", str(world), "--epochs", "1", "--out", str(tmp_path / "resumed"))
    torchrun("--resume", str(tmp_path / "resumed"), "--epochs", "3")
    resumed = metrics_of(tmp_path / "resumed")
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3]
    assert_same_run(metrics_of(single_run), resumed)


@pytest.mark.slow
def test_ddp_fameplus_matches_a_single_process_run(tmp_path):
    # the facet loss is the same on every rank (same weights, same sample), so averaging the
    # ranks' gradients keeps it whole; pre-training runs on every rank before DDP wraps
    args = ["--dataset", "synthetic", "--data-option", "n_users=300", "--data-option",
            "n_items=150", "--data-option", "n_brands=12", "--facets", "genre,brand",
            "--facet-pretrain-steps", "20", "--facet-items", "64", "--epochs", "2"]
    single(*args, "--out", str(tmp_path / "one"))
    torchrun(*args, "--out", str(tmp_path / "ddp"))
    one, ddp = metrics_of(tmp_path / "one"), metrics_of(tmp_path / "ddp")
    assert ddp["facets"] == ["genre", "brand"]
    assert ddp["pretrain"]["steps"] == 20
    assert_same_run(one, ddp)
