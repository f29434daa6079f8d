"""Interrupted and concurrent work: SIGKILL during training, during checkpoint/cache writes,
and two report runners writing into the same folder.

Every kill here is a real ``SIGKILL`` of a real process (nothing can clean up after it), so what
these tests see is what a user sees after a power cut, an OOM kill or ``kill -9``.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from famekit.checkpoints import (
    atomic_write_bytes,
    atomic_write_json,
    load_run,
    load_train_state,
    save_model,
    save_train_state,
)
from famekit.datasets import fetch
from famekit.model import ModelConfig, build_model

TESTS_DIR = Path(__file__).resolve().parent


def _env() -> dict:
    """The environment of child processes: one thread each (2 cores are shared)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _wait_for(condition, timeout: float, what: str, poll: float = 0.01):
    """Poll ``condition()`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _stop(process: subprocess.Popen) -> None:
    """Kill a process this test started (by its own pid) if it is still running."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


# ================================================================ 1. training killed mid-epoch
TRAIN = [sys.executable, "-m", "famekit.cli", "train", "--dataset", "synthetic",
         "--data-option", "n_users=700", "--data-option", "n_items=150", "--epochs", "5",
         "--patience", "5", "--seed", "3", "--d-model", "16", "--heads", "2", "--experts", "2",
         "--max-len", "20", "--batch-size", "16", "--threads", "1", "--no-progress"]
RESUME = [sys.executable, "-m", "famekit.cli", "train", "--threads", "1", "--no-progress",
          "--resume"]
TIME_COLUMNS = ("train_seconds", "seconds")


def _epochs_in_csv(run_dir: Path) -> int:
    try:
        with open(run_dir / "metrics.csv", newline="") as f:
            return sum(1 for _ in csv.DictReader(f))
    except OSError:
        return 0


def _saved_epoch(run_dir: Path) -> int:
    return json.loads((run_dir / "train_state.json").read_text())["epoch"]


def _history_without_times(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS}
                for row in csv.DictReader(f)]


def _start_training(run_dir: Path, log: Path) -> subprocess.Popen:
    with open(log, "a") as handle:
        return subprocess.Popen([*TRAIN, "--out", str(run_dir)], stdout=handle,
                                stderr=subprocess.STDOUT, env=_env())


def _start_resume(run_dir: Path, log: Path) -> subprocess.Popen:
    with open(log, "a") as handle:
        return subprocess.Popen([*RESUME, str(run_dir)], stdout=handle,
                                stderr=subprocess.STDOUT, env=_env())


def _kill(process: subprocess.Popen, run_dir: Path) -> int:
    """SIGKILL ``process``; return the last epoch its run directory had saved."""
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    status = json.loads((run_dir / "metrics.json").read_text())["status"] \
        if (run_dir / "metrics.json").exists() else None
    assert status != "finished", "the run ended before the kill: the test proved nothing"
    return _saved_epoch(run_dir)


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_to_the_uninterrupted_run(tmp_path):
    """Two SIGKILLs (right after the first save, then in the middle of epoch 4), two resumes:
    the final weights and every metric equal a run that was never interrupted (same seed,
    one thread each, CPU)."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    log = tmp_path / "train.log"
    reference = _start_training(straight, tmp_path / "straight.log")  # runs alongside
    try:
        first = _start_training(killed, log)
        _wait_for(lambda: (killed / "train_state.json").exists(), 120, "the first epoch's save")
        saved_at_first_kill = _kill(first, killed)  # at once: during or just after saving
        assert saved_at_first_kill < 5  # usually 1: killed during or just after that save

        second = _start_resume(killed, log)
        _wait_for(lambda: _epochs_in_csv(killed) >= 3, 120, "epoch 3 in metrics.csv")
        started = time.monotonic()
        time.sleep(0.15)  # into epoch 4's batches (an epoch takes ~0.5 s, a save a few ms)
        saved_at_second_kill = _kill(second, killed)
        assert 3 <= saved_at_second_kill < 5, (saved_at_second_kill, time.monotonic() - started)

        done = subprocess.run([*RESUME, str(killed)], capture_output=True, text=True,
                              env=_env(), timeout=300, check=False)
        assert done.returncode == 0, done.stderr + log.read_text()
        assert reference.wait(timeout=300) == 0, (tmp_path / "straight.log").read_text()
    finally:
        _stop(reference)

    weights = safetensors.torch.load_file(killed / "model.safetensors")
    expected = safetensors.torch.load_file(straight / "model.safetensors")
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name
    assert _history_without_times(killed) == _history_without_times(straight)
    assert len(_history_without_times(killed)) == 5
    summary = json.loads((killed / "metrics.json").read_text())
    reference_summary = json.loads((straight / "metrics.json").read_text())
    assert summary["status"] == reference_summary["status"] == "finished"
    assert summary["test"] == reference_summary["test"]
    assert summary["best_epoch"] == reference_summary["best_epoch"]


# ================================================================ 2. atomic writes under SIGKILL
# A child process rewrites, in a loop, one of every kind of file famekit saves: a JSON document
# and a bytes file (atomic_write_json / atomic_write_bytes, which reports and caches use), a
# model run (save_model: weights + config.json), a training state (save_train_state: tensors +
# JSON) and a processed-dataset cache entry (fetch.save_processed). Version v of each is
# recognisable from its content, so after a kill the parent can tell a complete version from a
# torn one. Children are forked from one "zygote" process that imported torch once, so that a
# kill costs milliseconds, not an interpreter start.
KILL_CONFIG = ModelConfig(n_items=20_000, kind="fame", max_len=8, d_model=32, n_heads=2,
                          n_experts=2, dropout=0.0)
BLOB_WORDS = 250_000  # 2 MB of bytes: long enough writes to be killed in the middle
JSON_ITEMS = 50_000
# os.replace calls per loop iteration, in order: state.json, blob.bin, model.safetensors,
# config.json, train_state.safetensors, train_state.json, the processed cache entry.
REPLACES_PER_VERSION = 7


def _blob(version: int) -> bytes:
    return version.to_bytes(8, "little") * BLOB_WORDS


def _write_version(directory: Path, version: int, model, optimizer) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float(version))
    atomic_write_json(directory / "state.json", {"version": version,
                                                 "payload": [version] * JSON_ITEMS})
    atomic_write_bytes(directory / "blob.bin", _blob(version))
    save_model(directory / "run", model, dataset_name="kill-test",
               dataset_fingerprint=f"v{version}")
    save_train_state(directory / "run", optimizer, epoch=version, rng={},
                     extra_state={"marker": torch.full((512, 512), float(version))})
    fetch.save_processed("kill", "key", {"values": np.full(200_000, version)},
                         {"version": version}, directory / "cache")


def _model_and_optimizer():
    model = build_model(KILL_CONFIG)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _child(directory: Path, first_version: int, kill_spec: str) -> None:
    """Rewrite every file forever (until killed); ``kill_spec`` "before:N"/"after:N" makes the
    child SIGKILL itself around its N-th ``os.replace``: a chosen point between two renames."""
    torch.set_num_threads(1)
    if kill_spec != "none":
        when, at = kill_spec.split(":")
        real_replace, calls = os.replace, [0]

        def replace(src, dst):
            calls[0] += 1
            if calls[0] == int(at) and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)
            if calls[0] == int(at) and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace
    model, optimizer = _model_and_optimizer()
    version = first_version
    while True:
        _write_version(directory, version, model, optimizer)
        version += 1


def _zygote() -> None:
    """Read "DIR FIRST_VERSION KILL_SPEC" lines; fork a child for each; answer "pid N", then
    "exit SIGNAL" once the child has died."""
    torch.set_num_threads(1)  # before any torch op: no thread pool exists when we fork
    print("ready", flush=True)
    for line in sys.stdin:
        directory, first_version, kill_spec = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                _child(Path(directory), int(first_version), kill_spec)
            finally:
                os._exit(3)  # only reached on an exception: the parent sees "exit -3"
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)}",
              flush=True)


def _blob_version(directory: Path) -> int:
    with open(directory / "blob.bin", "rb") as handle:  # replaced atomically: always whole
        return int.from_bytes(handle.read(8), "little")


def _read_versions(directory: Path) -> dict[str, int]:
    """The version of every file, checking that each is complete and consistent with its pair."""
    versions = {}
    state = json.loads((directory / "state.json").read_text())
    assert state["payload"] == [state["version"]] * JSON_ITEMS
    versions["state.json"] = state["version"]

    blob = (directory / "blob.bin").read_bytes()
    versions["blob.bin"] = int.from_bytes(blob[:8], "little")
    assert blob == _blob(versions["blob.bin"])

    run = load_run(directory / "run", device="cpu")  # checks the weights' sha256 too
    version = int(run.meta["dataset"]["fingerprint"][1:])
    assert all(torch.all(p == float(version)) for p in run.model.parameters())
    versions["run"] = version

    _, optimizer = _model_and_optimizer()
    state = load_train_state(directory / "run", optimizer)
    assert torch.all(state["extra_state"]["marker"] == float(state["epoch"]))
    versions["train_state"] = state["epoch"]

    cached = fetch.load_processed("kill", "key", directory / "cache")
    assert cached is not None, "the cache entry was lost"
    arrays, meta = cached
    assert np.all(arrays["values"] == meta["version"])
    versions["cache"] = meta["version"]
    return versions


def _stray_files(directory: Path) -> list[str]:
    """Files that are neither a real file nor a hidden temporary one (.NAME.*.tmp/.part).

    ``*.safetensors.prev`` is the committed half of a pair that a killed save kept (see
    famekit.checkpoints._write_pair): readers use it only when its sha256 is the committed one.
    """
    real = {"state.json", "blob.bin", "model.safetensors", "config.json",
            "train_state.safetensors", "train_state.json", "kill-key.npz",
            "model.safetensors.prev", "train_state.safetensors.prev"}
    stray = []
    for path in directory.rglob("*"):
        if not path.is_file() or path.name in real:
            continue
        if path.name.startswith(".") and path.name.endswith((".tmp", ".part")):
            continue  # a torn temporary file: never opened by any reader
        stray.append(path.name)
    return stray


@pytest.mark.slow
def test_files_survive_sigkill_at_any_moment(tmp_path):
    """Kills at chosen points (between the two renames of a pair, before a rename) and after
    several delays: every file still parses, is one complete version, pairs agree, and no
    file goes back to an older version than the last one known complete."""
    directory = tmp_path / "files"
    model, optimizer = _model_and_optimizer()
    _write_version(directory, 0, model, optimizer)
    floor = _read_versions(directory)
    assert set(floor.values()) == {0}

    # Self-kills in the child's second iteration (its first one completed, so it is the floor)
    # and kills from outside, each in its own child: once the child's first blob.bin is in
    # place (it is writing in its loop by then, whatever the machine's load), after a delay.
    second = REPLACES_PER_VERSION
    schedule = [("after:3", None),  # new weights renamed, config.json not yet
                ("after:5", None),  # new train_state tensors renamed, train_state.json not yet
                (f"before:{second + 1}", None),  # complete temp file, not renamed
                (f"after:{second + 3}", None),
                (f"after:{second + 5}", None),
                ("none", 0.0), ("none", 0.03), ("none", 0.1), ("none", 0.25), ("none", 0.5)]
    start = (f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r}); "
             "import test_interrupts; test_interrupts._zygote()")
    zygote = subprocess.Popen([sys.executable, "-c", start], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert zygote.stdout.readline().strip() == "ready"
        for round_, (kill_spec, delay) in enumerate(schedule, start=1):
            first_version = round_ * 1000
            zygote.stdin.write(f"{directory} {first_version} {kill_spec}\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline().split()[1])
            if delay is not None:
                _wait_for(lambda first=first_version: _blob_version(directory) >= first, 120,
                          f"round {round_}'s first blob.bin")
                time.sleep(delay)
                os.kill(pid, signal.SIGKILL)  # the zygote's child, started by this test
            assert zygote.stdout.readline().split() == ["exit", str(-signal.SIGKILL)], kill_spec
            versions = _read_versions(directory)
            for name, version in versions.items():
                assert version == floor[name] or first_version <= version, (kill_spec, versions)
                assert version >= floor[name], (kill_spec, name, "went back", versions)
            if kill_spec == "after:3":  # the weights were replaced, config.json was not
                assert versions["run"] == floor["run"] and versions["state.json"] > floor[
                    "state.json"]
            if kill_spec == "after:5":
                assert versions["train_state"] == floor["train_state"] < versions["run"]
            assert _stray_files(directory) == [], kill_spec
            floor = versions
        assert floor["blob.bin"] >= len(schedule) * 1000  # the last child wrote before its kill
    finally:
        zygote.stdin.close()
        _stop(zygote)


# ================================================================ 3. two report runners
REPORT_CHILD = """
import json, sys
from pathlib import Path
from famekit import report, workspace
from famekit.errors import FamekitError

out, notebooks, runs = (Path(a) for a in sys.argv[1:4])

def ensure_run(dataset, kind="fame", seed=0, quick=False, progress=True):
    # A stand-in for training: a run directory with the summary the index page reads.
    path = runs / f"{dataset}-{kind}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"summary": {"test": {"NDCG@10": 0.25}}}))
    return path

workspace.ensure_run = ensure_run
try:
    result = report.generate_reports("synthetic", out=out, notebooks_dir=notebooks,
                                     progress=False, timeout=120)
except FamekitError as exc:  # what the famekit CLI does with every FamekitError
    print("famekit: error: " + " ".join(str(exc).split()), file=sys.stderr)
    sys.exit(2)
sys.exit(0 if result.ok else 1)
"""

SLOW_CELL = """
import pathlib, time
pathlib.Path({started!r}).write_text("running")
release = pathlib.Path({release!r})
for _ in range(1200):  # at most 2 minutes
    if release.exists():
        break
    time.sleep(0.1)
print("released", release.exists())
"""


@pytest.mark.slow
@pytest.mark.notebooks
def test_a_second_report_into_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    import nbformat

    from famekit import report

    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    started, release = tmp_path / "started", tmp_path / "release"
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('DATASET = "x"\nRUN_DIR = None\nSEED = 0\nQUICK = False')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        SLOW_CELL.format(started=str(started), release=str(release)))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, notebooks / "00_slow.ipynb")
    out = tmp_path / "reports"
    command = [sys.executable, "-c", REPORT_CHILD, str(out), str(notebooks), str(tmp_path / "runs")]

    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env())
    try:
        _wait_for(started.exists, 180, "the first report's notebook to start", poll=0.05)
        second = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=180,
                                check=False)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
        assert lines[0].startswith("famekit: error: another famekit report")
        assert f"pid {first.pid}" in lines[0] and str(out / "synthetic") in lines[0]
        assert "Fix:" in lines[0] and "--out" in lines[0]
        assert first.poll() is None  # the refusal did not disturb the running report
        release.write_text("go")
        _, first_err = first.communicate(timeout=180)
        assert first.returncode == 0, first_err
    finally:
        release.write_text("go")
        _stop(first)

    folder = out / "synthetic"
    executed = nbformat.read(folder / "00_slow.ipynb", as_version=4)
    assert "released True" in executed.cells[-1].outputs[0]["text"]
    status = json.loads((folder / "report.json").read_text())
    assert [n["status"] for n in status["notebooks"]] == ["ok"]
    assert (folder / "00_slow.html").stat().st_size > 0
    assert not [p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".running.ipynb"))]
    with report._lock(folder):  # released when the first run ended
        pass
