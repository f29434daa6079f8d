"""Hostile inputs, table-driven: every way a user's files, a download, a checkpoint or a
parameter can be wrong, and what famekit must do about it.

One table of case objects per category and one parametrized test per category:

* ``FILE_CASES``: sequence files and item TSVs (``famekit.datasets.load_files``);
* ``DOWNLOAD_CASES``: the fetch layer against the loopback mirror (``tests/mirror.py``);
* ``CHECKPOINT_CASES``: run directories (``famekit.checkpoints``, resume);
* ``PARAMETER_CASES``: notebook parameters (``famekit.workspace``, ``famekit.report``, analysis);
* ``CLI_CASES``: the same mistakes made at the command line, checked twice: in-process for the
  error type, and in a fresh ``python -m famekit.cli`` for the user's view (one line on stderr,
  exit status 2, no traceback).

An error case asserts the famekit error type, that the message names the file (and line) or the
parameter, and that it says how to fix it ("Fix:"). A few inputs are valid although they look
odd (blank lines, Windows line ends, a byte-order mark): those cases assert what they load to.

Running as root (CI containers): permission bits do not stop root, so "not writable" is a path
under a regular FILE (``.../file.txt/run``) or under ``/proc``, which no user can create.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from mirror import closed_port
from worlds import zip_bytes

from famekit.checkpoints import load_run, save_model
from famekit.datasets import SeqDataset, fetch, load, load_files
from famekit.errors import (
    CacheError,
    CheckpointError,
    ChecksumError,
    DataFormatError,
    DownloadError,
    FamekitError,
    ParameterError,
    UnknownNameError,
)
from famekit.model import ModelConfig, build_model


@dataclass(frozen=True)
class Case:
    """One hostile input.

    ``act(tmp, ctx)`` builds the input under the empty folder ``tmp`` and calls famekit (``ctx``
    holds what a category needs: the mirror, a trained run). ``error`` is the famekit error it
    must raise, or None for an input that is valid. ``names`` must all appear in the message
    (``{tmp}`` stands for the folder). ``check(result_or_error, tmp)`` adds what else must hold:
    what a valid input loads to, or that nothing was executed or written.
    """

    id: str
    act: Callable[[Path, Any], Any]
    error: type[FamekitError] | None
    names: tuple[str, ...] = ()
    check: Callable[[Any, Path], None] | None = None


def _expect(case: Case, tmp: Path, ctx=None) -> None:
    """Run a case and assert its contract (the body of every category's test)."""
    if case.error is None:
        result = case.act(tmp, ctx)
        assert case.check is not None, "a valid-input case must say what it loads to"
        case.check(result, tmp)
        return
    with pytest.raises(FamekitError) as info:
        case.act(tmp, ctx)
    error = info.value
    assert type(error) is case.error, f"{type(error).__name__}: {error}"
    message = str(error)
    for fragment in case.names:
        assert fragment.format(tmp=tmp) in message, (fragment, message)
    assert "Fix:" in message, message
    if case.check is not None:
        case.check(error, tmp)


def _ids(cases) -> list[str]:
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    return ids


# ======================================================================================== files
def _files(seq: bytes, items: bytes | None = None) -> Callable[[Path, Any], SeqDataset]:
    """An act that writes ``seq.txt`` (and ``items.tsv``) and loads them with load_files."""

    def act(tmp: Path, ctx) -> SeqDataset:
        (tmp / "seq.txt").write_bytes(seq)
        items_path = None
        if items is not None:
            items_path = tmp / "items.tsv"
            items_path.write_bytes(items)
        return load_files(tmp / "seq.txt", items_path)

    return act


def _loads(sequences: list[list[int]], titles: dict[int, str] | None = None):
    """A check: the dataset holds exactly these sequences (and item titles)."""

    def check(dataset: SeqDataset, tmp: Path) -> None:
        assert [dataset.sequence(u).tolist() for u in range(dataset.n_users)] == sequences
        for item, title in (titles or {}).items():
            assert dataset.items.loc[item, "title"] == title
        dataset.split().eval_inputs("test")  # usable downstream

    return check


SEQ = "{tmp}/seq.txt"
ITEMS = "{tmp}/items.tsv"
GOOD_SEQ = b"1 1 2 3\n2 3 4 5\n"

FILE_CASES = [
    Case("binary-junk", _files(bytes(range(256)) * 4), DataFormatError, (SEQ, "NUL bytes")),
    Case("binary-junk-without-nul", _files(b"\xff\xd8\xff\xe0\x10JFIF\x01\x02 1 2\n"),
         DataFormatError, (SEQ, "line 1", "not valid UTF-8", "iconv")),
    Case("utf16-encoding", _files("1 1 2 3\n".encode("utf-16")), DataFormatError,
         (SEQ, "NUL bytes", "UTF-8")),
    Case("latin1-item-titles", _files(GOOD_SEQ, "item_id\ttitle\n1\tCaf\xe9\n".encode("latin-1")),
         DataFormatError, (ITEMS, "line 2", "not valid UTF-8")),
    Case("huge-id", _files(b"1 1 2\n2 3 123456789012345678901234567890\n"), DataFormatError,
         (SEQ, "line 2", "exceeds the limit")),
    Case("five-thousand-digit-id", _files(b"1 1 2\n2 3 " + b"9" * 5000 + b"\n"),
         DataFormatError, (SEQ, "line 2", "not an integer id")),
    Case("negative-id", _files(b"1 1 2\n2 3 -4 5\n"), DataFormatError,
         (SEQ, "line 2", "id -4 is not positive")),
    Case("zero-item-id", _files(b"1 1 0 2\n"), DataFormatError,
         (SEQ, "line 1", "id 0 is not positive", "padding")),
    Case("zero-user-id", _files(b"0 1 2 3\n"), DataFormatError, (SEQ, "line 1", "id 0")),
    Case("duplicate-user", _files(b"1 1 2 3\n2 2 3 4\n1 4 5 6\n"), DataFormatError,
         (SEQ, "line 3", "user 1 already appeared on line 1")),
    Case("user-without-items", _files(b"1 1 2 3\n2\n"), DataFormatError,
         (SEQ, "line 2", "user 2 has no items")),
    Case("decimal-id", _files(b"1 1 2.0 3\n"), DataFormatError, (SEQ, "line 1", "'2.0'")),
    Case("empty-file", _files(b""), DataFormatError, (SEQ, "no sequences")),
    Case("directory-instead-of-file", lambda tmp, ctx: load_files(tmp), DataFormatError,
         ("{tmp}", "cannot read")),
    Case("missing-file", lambda tmp, ctx: load_files(tmp / "absent.txt"), DataFormatError,
         ("{tmp}/absent.txt", "cannot read")),
    Case("blank-lines-are-valid", _files(b"\n\n1 1 2 3\n\n   \n\t\n2 3 4 5\n\n"), None,
         check=_loads([[1, 2, 3], [3, 4, 5]])),
    Case("windows-line-ends-are-valid",
         _files(b"1 1 2 3\r\n2 3 4 5\r\n", b"item_id\ttitle\r\n1\tOne\r\n5\tFive\r\n"), None,
         check=_loads([[1, 2, 3], [3, 4, 5]], {1: "One", 5: "Five"})),
    Case("utf8-byte-order-mark-is-valid",
         _files(b"\xef\xbb\xbf1 1 2 3\n2 3 4 5\n", "\ufeffitem_id\ttitle\n2\tTwo\n".encode()),
         None, check=_loads([[1, 2, 3], [3, 4, 5]], {2: "Two"})),
    Case("tsv-missing-column", _files(GOOD_SEQ, b"item_id\ttitle\tbrand\n1\tOne\n"),
         DataFormatError, (ITEMS, "line 2", "2 fields, the header has 3")),
    Case("tsv-extra-column", _files(GOOD_SEQ, b"item_id\ttitle\n1\tOne\tSurplus\n"),
         DataFormatError, (ITEMS, "line 2", "3 fields, the header has 2")),
    Case("tsv-without-item-id-header", _files(GOOD_SEQ, b"id\ttitle\n1\tOne\n"),
         DataFormatError, (ITEMS, "line 1", "no 'item_id' column")),
    Case("tsv-names-items-absent-from-sequences",
         _files(GOOD_SEQ, b"item_id\ttitle\n1\tOne\n42\tNobody bought me\n"), DataFormatError,
         (ITEMS, "line 3", "item_id 42", "1..5")),
    Case("tsv-item-id-zero", _files(GOOD_SEQ, b"item_id\ttitle\n0\tPadding\n"),
         DataFormatError, (ITEMS, "line 2", "item_id 0")),
    Case("tsv-duplicate-item", _files(GOOD_SEQ, b"item_id\ttitle\n2\tA\n2\tB\n"),
         DataFormatError, (ITEMS, "line 3", "repeats line 2")),
    Case("tsv-field-over-csv-limit",
         _files(GOOD_SEQ, b"item_id\ttitle\n1\t" + b"x" * 200_000 + b"\n"), DataFormatError,
         (ITEMS, "line 2", "field larger than field limit")),
]


@pytest.mark.parametrize("case", FILE_CASES, ids=_ids(FILE_CASES))
def test_sequence_and_metadata_files(case: Case, tmp_path):
    _expect(case, tmp_path)


# ===================================================================================== downloads
URL = "https://example.org/hostile/payload.bin"
ZIP_URL = "https://example.org/hostile/archive.zip"
PAYLOAD = bytes(range(256)) * 64  # 16 KiB


def _remote(url: str = URL) -> fetch.RemoteFile:
    return fetch.RemoteFile(url.rsplit("/", 1)[1], url, hashlib.sha256(PAYLOAD).hexdigest(),
                            len(PAYLOAD))


def _download(fault: str | None = None, retries: int = 1, url: str = URL):
    def act(tmp: Path, ctx):
        ctx.mirror.add(url, PAYLOAD)
        if fault is not None:
            ctx.mirror.fault(url, fault)
        return fetch.download(_remote(url), tmp / "cache", progress=False, retries=retries)

    return act


def _nothing_left_in(folder: str):
    """A check: a failed download leaves no file, not even a partial one."""

    def check(error, tmp: Path) -> None:
        directory = tmp / folder
        assert not directory.exists() or not list(directory.rglob("*")), list(directory.rglob("*"))

    return check


def _offline(tmp: Path, ctx):
    ctx.monkeypatch.setenv("FAMEKIT_MIRROR", f"http://127.0.0.1:{closed_port()}")
    return fetch.download(_remote(), tmp / "cache", progress=False, retries=1)


def _corrupt_zip(tmp: Path, ctx):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x/ratings.dat", b"1::2::5::978300760\n" * 500)
    data = bytearray(buffer.getvalue())
    data[60] ^= 0xFF  # inside the compressed member: the CRC check fails
    ctx.mirror.add(ZIP_URL, bytes(data))
    return fetch.download(fetch.RemoteFile("archive.zip", ZIP_URL), tmp / "cache",
                          progress=False)


def _cache_under_a_file(tmp: Path, ctx):
    ctx.mirror.add(URL, PAYLOAD)
    (tmp / "file.txt").write_text("a file, not a folder")
    return fetch.download(_remote(), tmp / "file.txt" / "cache", progress=False)


def _real_source(name: str, url: str, fault: str):
    """Load a registered dataset whose upstream file the mirror answers with ``fault``."""

    def act(tmp: Path, ctx):
        ctx.mirror.fault(url, fault)
        return load(name, cache_dir=tmp / "cache", progress=False)

    return act


def _bad_mirror_variable(tmp: Path, ctx):
    ctx.monkeypatch.setenv("FAMEKIT_MIRROR", "ftp://mirror.example.org")
    return fetch.download(_remote(), tmp / "cache", progress=False)


ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"

DOWNLOAD_CASES = [
    Case("checksum-mismatch", _download("corrupt"), ChecksumError,
         ("/example.org/hostile/payload.bin", "sha256", "FAMEKIT_MIRROR"),
         _nothing_left_in("cache")),
    Case("truncated-file", _download("truncate", retries=1), DownloadError,
         ("payload.bin", "truncated", "2 attempts"), _nothing_left_in("cache")),
    Case("http-404", _download("404"), DownloadError, (URL, "HTTP 404"),
         _nothing_left_in("cache")),
    Case("http-500", _download("500"), DownloadError, (URL, "HTTP 500", "2 attempts"),
         _nothing_left_in("cache")),
    Case("no-network", _offline, DownloadError, (URL, "refused", "internet connection"),
         _nothing_left_in("cache")),
    Case("corrupt-zip", _corrupt_zip, ChecksumError, ("archive.zip", "not a valid zip"),
         _nothing_left_in("cache")),
    Case("cache-dir-under-a-file", _cache_under_a_file, CacheError,
         ("{tmp}/file.txt/cache", "FAMEKIT_CACHE")),
    Case("mirror-variable-not-http", _bad_mirror_variable, ParameterError,
         ("FAMEKIT_MIRROR", "ftp://mirror.example.org")),
    Case("dataset-source-404", _real_source("ml-100k", ML100K_URL, "404"), DownloadError,
         (ML100K_URL, "HTTP 404")),
]


@pytest.mark.parametrize("case", DOWNLOAD_CASES, ids=_ids(DOWNLOAD_CASES))
def test_downloads(case: Case, tmp_path, mirror_env, monkeypatch):
    _expect(case, tmp_path, SimpleNamespace(mirror=mirror_env, monkeypatch=monkeypatch))


# =================================================================================== checkpoints
TINY = {"n_items": 20, "kind": "fame", "max_len": 8, "d_model": 16, "n_layers": 2,
        "n_heads": 2, "n_experts": 2, "dropout": 0.1}


def _tiny_dataset(name: str = "tiny", seed: int = 0) -> SeqDataset:
    rng = np.random.default_rng(seed)
    return SeqDataset.from_sequences(
        name, [rng.integers(1, 21, size=rng.integers(3, 10)) for _ in range(12)], n_items=20)


def _saved_run(tmp: Path) -> Path:
    torch.manual_seed(0)
    dataset = _tiny_dataset()
    return save_model(tmp / "run", build_model(ModelConfig(**TINY)), dataset_name=dataset.name,
                      dataset_fingerprint=dataset.fingerprint)


def _pickle_payload(sentinel: Path) -> bytes:
    """A pickle that creates ``sentinel`` when unpickled (it calls open(sentinel, "w"))."""

    class CreatesFile:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    return pickle.dumps({"state_dict": {}, "trap": CreatesFile()}, protocol=4)


def _nothing_executed(error, tmp: Path) -> None:
    assert not (tmp / "pwned.txt").exists(), "the checkpoint's payload was executed"
    # The payload is live: unpickling it for real (here, on purpose) does create the file.
    pickle.loads(_pickle_payload(tmp / "proof.txt"))["trap"].close()
    assert (tmp / "proof.txt").exists()


def _pickle_as_safetensors(tmp: Path, ctx):
    run = _saved_run(tmp)
    (run / "model.safetensors").write_bytes(_pickle_payload(tmp / "pwned.txt"))
    return load_run(run, device="cpu")


def _torch_save_as_safetensors(tmp: Path, ctx):
    run = _saved_run(tmp)

    class CreatesFile:
        def __reduce__(self):
            return (open, (str(tmp / "pwned.txt"), "w"))

    torch.save({"model": build_model(ModelConfig(**TINY)).state_dict(), "trap": CreatesFile()},
               run / "model.safetensors")
    return load_run(run, device="cpu")


def _only_a_pt_file(tmp: Path, ctx):
    run = _saved_run(tmp)
    (run / "model.safetensors").unlink()
    (run / "model.pt").write_bytes(_pickle_payload(tmp / "pwned.txt"))
    return load_run(run, device="cpu")


def _truncated_weights(tmp: Path, ctx):
    run = _saved_run(tmp)
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    return load_run(run, device="cpu")


def _tampered_config(**changes):
    """config.json edited so that its model no longer matches the weights (checksum kept)."""

    def act(tmp: Path, ctx):
        run = _saved_run(tmp)
        meta = json.loads((run / "config.json").read_text())
        meta["model_config"].update(changes)
        (run / "config.json").write_text(json.dumps(meta))
        return load_run(run, device="cpu")

    return act


def _config_text(text: str):
    def act(tmp: Path, ctx):
        run = _saved_run(tmp)
        (run / "config.json").write_text(text)
        return load_run(run, device="cpu")

    return act


def _other_dataset(tmp: Path, ctx):
    run = _saved_run(tmp)
    return load_run(run, dataset=_tiny_dataset("other", seed=1), device="cpu")


def _weights_of_another_run(tmp: Path, ctx):
    run = _saved_run(tmp)
    other = save_model(tmp / "other", build_model(ModelConfig(**TINY)), dataset_name="tiny",
                       dataset_fingerprint="x")
    shutil.copy(other / "model.safetensors", run / "model.safetensors")
    return load_run(run, device="cpu")


def _lying_safetensors_header(tmp: Path, ctx):
    """A header that promises a 10^12-element tensor in a file of a few bytes."""
    run = _saved_run(tmp)
    header = json.dumps({"w": {"dtype": "F32", "shape": [1_000_000, 1_000_000],
                               "data_offsets": [0, 4_000_000_000_000]}}).encode()
    (run / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    return load_run(run, device="cpu")


def _resume_with_train_args(text: str):
    def act(tmp: Path, ctx):
        from famekit.training import train

        run = ctx.copy_of_run(tmp)
        (run / "train_args.json").write_text(text)
        return train(resume=run, progress=False)

    return act


def _resume_with_train_state(key: str, value):
    """train_state.json with one entry of its extra state / RNG replaced (checksums intact:
    the tensors file is untouched, only the JSON was edited)."""

    def act(tmp: Path, ctx):
        from famekit.training import train

        run = ctx.copy_of_run(tmp)
        path = run / "train_state.json"
        meta = json.loads(path.read_text())
        section, name = key.split(".")
        meta[section][name] = value
        path.write_text(json.dumps(meta))
        return train(resume=run, epochs=2, progress=False)

    return act


CONFIG = "{tmp}/run/config.json"
WEIGHTS = "{tmp}/run/model.safetensors"

CHECKPOINT_CASES = [
    Case("pickle-renamed-to-safetensors", _pickle_as_safetensors, CheckpointError,
         (WEIGHTS, "Python pickle", "never unpickles"), _nothing_executed),
    Case("torch-save-renamed-to-safetensors", _torch_save_as_safetensors, CheckpointError,
         (WEIGHTS, "torch.save zip archive", "never unpickles"), _nothing_executed),
    Case("only-a-pickled-pt-file", _only_a_pt_file, CheckpointError,
         (WEIGHTS, "is missing", "model.pt", "never loads pickled"), _nothing_executed),
    Case("truncated-safetensors", _truncated_weights, CheckpointError, (WEIGHTS, "truncated")),
    Case("safetensors-header-lies-about-sizes", _lying_safetensors_header, CheckpointError,
         (WEIGHTS,)),
    Case("config-shapes-disagree-with-weights", _tampered_config(d_model=32), CheckpointError,
         (WEIGHTS, CONFIG, "item_embed.weight (file (21, 16), config (21, 32))")),
    Case("config-asks-for-a-huge-table", _tampered_config(n_items=10**12), CheckpointError,
         (CONFIG, "shape mismatch", "(1000000000001, 16)")),
    Case("config-unknown-model-kind", _tampered_config(kind="gru4rec"), CheckpointError,
         (CONFIG, "kind", "'fame' or 'sasrec'")),
    Case("config-not-json", _config_text('{"format_version": 1,\n  oops}'), CheckpointError,
         (CONFIG, "line 2", "invalid JSON")),
    Case("config-nested-too-deep", _config_text("[" * 100_000 + "]" * 100_000),
         CheckpointError, (CONFIG, "nested too deeply")),
    Case("config-is-a-list", _config_text("[1, 2, 3]"), CheckpointError, (CONFIG, "list")),
    Case("checkpoint-of-another-dataset", _other_dataset, CheckpointError,
         (CONFIG, "'tiny'", "'other'", _tiny_dataset().fingerprint)),
    Case("weights-of-another-run", _weights_of_another_run, CheckpointError,
         (WEIGHTS, CONFIG, "sha256", "replaced or damaged")),
    Case("run-directory-missing", lambda tmp, ctx: load_run(tmp / "nowhere"), CheckpointError,
         ("{tmp}/nowhere", "does not exist")),
    Case("resume-train-args-is-a-list", _resume_with_train_args("[1]"), CheckpointError,
         ("{tmp}/run/train_args.json", "list")),
    Case("resume-train-state-rng-edited", _resume_with_train_state("rng.python", 5),
         CheckpointError, ("{tmp}/run/train_state.json", "damaged or was edited")),
    Case("resume-train-state-history-edited", _resume_with_train_state("extra_state.history", 7),
         CheckpointError, ("{tmp}/run/train_state.json", "damaged or was edited")),
    Case("resume-train-args-lacks-fields", _resume_with_train_args('{"dataset": {}}'),
         CheckpointError, ("{tmp}/run/train_args.json", "batch_size")),
]


@dataclass
class TrainedRun:
    """A finished 1-epoch run on a sequence file, trained once per module."""

    run_dir: Path
    sequences: Path

    def copy_of_run(self, tmp: Path) -> Path:
        return Path(shutil.copytree(self.run_dir, tmp / "run"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> TrainedRun:
    from famekit.training import train

    folder = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(0)
    sequences = folder / "shop.txt"
    sequences.write_text("".join(
        f"{u} " + " ".join(map(str, rng.integers(1, 40, size=rng.integers(3, 10)))) + "\n"
        for u in range(1, 61)))
    threads = torch.get_num_threads()
    try:
        train(load_files(sequences, name="shop"), out_dir=folder / "run", epochs=1,
              d_model=16, n_heads=2, n_experts=2, max_len=10, batch_size=32, threads=1,
              progress=False)
    finally:
        torch.set_num_threads(threads)  # train() set it for this process
    return TrainedRun(folder / "run", sequences)


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=_ids(CHECKPOINT_CASES))
def test_checkpoints(case: Case, tmp_path, trained_run):
    _expect(case, tmp_path, trained_run)


# ========================================================================= notebook parameters
@dataclass
class Analysed:
    """An untrained FAME on a small synthetic world: enough for parameter checks."""

    model: Any
    dataset: SeqDataset


@pytest.fixture(scope="module")
def analysed() -> Analysed:
    from famekit.datasets import synthetic

    dataset = synthetic.generate(n_users=60, n_items=150, n_brands=12)
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_items=dataset.n_items, d_model=16, n_heads=2,
                                    n_experts=2, max_len=20))
    return Analysed(model.eval(), dataset)


def _open_run(*args, **kwargs):
    def act(tmp: Path, ctx):
        from famekit import workspace

        return workspace.open_run(*args, **kwargs, progress=False)

    return act


def _nothing_trained(error, tmp: Path) -> None:
    assert not list(tmp.glob("runs/*")), "a run directory was created"


def _report_into(out: str):
    def act(tmp: Path, ctx):
        from famekit import report

        (tmp / "file.txt").write_text("a file, not a folder")
        return report.generate_reports("synthetic", out=out.format(tmp=tmp), progress=False)

    return act


def _report_on(dataset: str):
    def act(tmp: Path, ctx):
        from famekit import report

        return report.generate_reports(dataset, out=tmp / "reports", progress=False)

    return act


def _analysis(call: Callable[[Analysed], Any]):
    return lambda tmp, ctx: call(ctx)


def _alignment(**kwargs):
    from famekit import analysis

    return _analysis(lambda a: analysis.alignment_matrix(a.model, a.dataset, **kwargs))


def _knockouts(**kwargs):
    from famekit import analysis

    return _analysis(lambda a: analysis.head_knockout_table(
        a.model, a.dataset, analysis.item_labels(a.dataset, "genre"), **kwargs))


def _routing(user: int, head: int):
    from famekit import analysis

    return _analysis(lambda a: analysis.user_routing(
        analysis.collect_activations(a.model, a.dataset), user, head))


PARAMETER_CASES = [
    Case("DATASET-unknown", _open_run("beuty"), ParameterError, ("'beuty'", "beauty")),
    Case("RUN_DIR-does-not-exist", _open_run("synthetic", "/nonexistent/famekit-run"),
         CheckpointError, ("/nonexistent/famekit-run", "does not exist")),
    Case("SEED-negative", _open_run("synthetic", None, -1, quick=True), ParameterError,
         ("seed", "-1"), _nothing_trained),
    Case("QUICK-on-a-real-dataset", _open_run("beauty", None, 0, quick=True), ParameterError,
         ("quick", "'beauty'"), _nothing_trained),
    Case("K-negative", _alignment(k=-1), ParameterError, ("k=-1",)),
    Case("N_PERMUTATIONS-negative", _alignment(n_permutations=-1), ParameterError,
         ("n_permutations=-1",)),
    Case("MAX_USERS-negative", _knockouts(max_users=-5), ParameterError, ("max_users=-5",)),
    Case("HEAD-out-of-range", _routing(0, 7), ParameterError, ("head 7", "0..1")),
    Case("report-out-under-a-file", _report_into("{tmp}/file.txt/reports"), ParameterError,
         ("{tmp}/file.txt/reports", "--out")),
    Case("report-out-in-proc", _report_into("/proc/famekit-reports"), ParameterError,
         ("/proc/famekit-reports", "--out")),
    Case("report-unknown-dataset", _report_on("beuty"), ParameterError, ("'beuty'",)),
]


@pytest.mark.parametrize("case", PARAMETER_CASES, ids=_ids(PARAMETER_CASES))
def test_notebook_parameters(case: Case, tmp_path, monkeypatch, analysed):
    monkeypatch.setenv("FAMEKIT_RUNS", str(tmp_path / "runs"))
    _expect(case, tmp_path, analysed)


# =========================================================================================== CLI
@dataclass(frozen=True)
class CliCase:
    """A command line that must fail with ``error``: one line on stderr, exit status 2.

    ``argv`` may use ``{tmp}`` (an empty folder), ``{run}`` (a copy of a finished run) and
    ``{seq}`` (that run's sequence file); ``setup(tmp, run)`` damages what it needs first.
    """

    id: str
    argv: tuple[str, ...]
    error: type[FamekitError]
    names: tuple[str, ...]
    setup: Callable[[Path, Path], None] | None = None
    fault: tuple[str, str] | None = None  # (url, kind) the loopback mirror answers with
    check: Callable[[Path], None] | None = field(default=None)


SMALL_WORLD = ("--data-option", "n_users=60", "--data-option", "n_items=150", "--epochs", "1",
               "--no-progress")


def _write(name: str, content: bytes):
    return lambda tmp, run: (tmp / name).write_bytes(content)


def _damage_weights_with_a_pickle(tmp: Path, run: Path) -> None:
    (run / "model.safetensors").write_bytes(_pickle_payload(tmp / "pwned.txt"))


def _no_file_executed(tmp: Path) -> None:
    assert not (tmp / "pwned.txt").exists()


def _make_file(tmp: Path, run: Path) -> None:
    (tmp / "file.txt").write_text("a file, not a folder")


def _change_the_data(tmp: Path, run: Path) -> None:
    """The run's sequence file now holds other interactions than those it was trained on."""
    changed = tmp / "changed.txt"
    changed.write_text("1 1 2 3 4\n2 4 3 2 1\n")
    args = json.loads((run / "train_args.json").read_text())
    args["dataset"]["sequences"] = str(changed)
    (run / "train_args.json").write_text(json.dumps(args))


CLI_CASES = [
    CliCase("unknown-dataset", ("train", "--dataset", "nosuchdata", "--out", "{tmp}/r"),
            UnknownNameError, ("unknown dataset 'nosuchdata'", "beauty")),
    CliCase("negative-epochs", ("train", "--sequences", "{seq}", "--epochs", "-3",
                                "--out", "{tmp}/r"),
            ParameterError, ("epochs", "-3", "--epochs")),
    CliCase("negative-batch-size", ("train", "--sequences", "{seq}", "--batch-size", "-8",
                                    "--out", "{tmp}/r"),
            ParameterError, ("batch_size", "-8", "--batch-size")),
    CliCase("negative-dataset-size", ("train", "--dataset", "synthetic", "--data-option",
                                      "n_users=-5", "--out", "{tmp}/r"),
            ParameterError, ("n_users=-5",)),
    CliCase("zero-eval-batch-size", ("evaluate", "{run}", "--batch-size", "0", "--no-progress"),
            ParameterError, ("batch_size", "0")),
    CliCase("run-directory-does-not-exist", ("evaluate", "{tmp}/nowhere"), CheckpointError,
            ("{tmp}/nowhere", "does not exist")),
    CliCase("resume-directory-does-not-exist", ("train", "--resume", "{tmp}/nowhere"),
            CheckpointError, ("{tmp}/nowhere", "does not exist")),
    CliCase("out-under-a-regular-file", ("train", *SMALL_WORLD, "--out", "{tmp}/file.txt/run"),
            ParameterError, ("{tmp}/file.txt/run", "--out"), setup=_make_file),
    CliCase("out-in-proc", ("train", *SMALL_WORLD, "--out", "/proc/famekit-run"),
            ParameterError, ("/proc/famekit-run", "--out")),
    CliCase("malformed-sequence-file", ("train", "--sequences", "{tmp}/bad.txt"),
            DataFormatError, ("{tmp}/bad.txt", "line 2"),
            setup=_write("bad.txt", b"1 2 3 4\n2 5 x 7\n")),
    CliCase("pickle-as-weights", ("evaluate", "{run}", "--no-progress"), CheckpointError,
            ("{run}/model.safetensors", "never unpickles"),
            setup=_damage_weights_with_a_pickle, check=_no_file_executed),
    CliCase("data-changed-since-training", ("evaluate", "{run}", "--no-progress"),
            CheckpointError, ("'shop'", "fingerprint", "same data"), setup=_change_the_data),
    CliCase("report-out-under-a-regular-file", ("report", "--out", "{tmp}/file.txt/reports",
                                                "--no-progress"),
            ParameterError, ("{tmp}/file.txt/reports", "--out"), setup=_make_file),
    CliCase("unknown-dataset-info", ("data", "info", "nosuchdata"), UnknownNameError,
            ("nosuchdata",)),
    CliCase("download-404", ("data", "info", "ml-100k", "--cache-dir", "{tmp}/cache",
                             "--no-progress"),
            DownloadError, (ML100K_URL, "HTTP 404"), fault=(ML100K_URL, "404")),
]


def _run_in_process(argv: list[str]) -> None:
    """The CLI's command function itself, so that the raised error keeps its type."""
    from famekit.cli import COMMANDS, build_parser

    args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    try:
        COMMANDS[args.command](args)
    finally:
        torch.set_num_threads(threads)  # train() sets it for the whole process


@pytest.mark.slow  # a fresh interpreter per case (~2-3 s each)
@pytest.mark.parametrize("case", CLI_CASES, ids=_ids(CLI_CASES))
def test_command_line(case: CliCase, tmp_path, trained_run, mirror_env):
    run = trained_run.copy_of_run(tmp_path) if "{run}" in " ".join(case.argv) else None
    if case.setup is not None:
        case.setup(tmp_path, run)
    if case.fault is not None:
        mirror_env.fault(*case.fault)
    argv = [a.format(tmp=tmp_path, run=run, seq=trained_run.sequences) for a in case.argv]
    names = [n.format(tmp=tmp_path, run=run) for n in case.names]

    with pytest.raises(FamekitError) as info:
        _run_in_process(argv)
    assert type(info.value) is case.error, f"{type(info.value).__name__}: {info.value}"
    for fragment in (*names, "Fix:"):
        assert fragment in str(info.value), (fragment, str(info.value))

    done = subprocess.run([sys.executable, "-m", "famekit.cli", *argv], capture_output=True,
                          text=True, timeout=180, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0] == "famekit: error: " + " ".join(str(info.value).split())
    if case.check is not None:
        case.check(tmp_path)


# ================================================================ round 2: HTML written by famekit
# Every value that reaches a page (run files, report.json, metadata titles in figures, notebook
# parameters) is escaped for where it lands: text, an attribute, a link, or JSON in a <script>.
XSS = "<img src=x onerror=alert(1)>"
SWALLOW = "<!--<script>"  # unescaped in a <script>, this hides the rest of the page
JSONISH = "</script><script>alert(1)</script>&\u2028\u2029"


class _PageScan:
    """What an HTML page would do when opened: its tags, attributes and scripts."""

    def __init__(self, page: str):
        from html.parser import HTMLParser

        self.tags, self.attrs, self.scripts = [], [], []
        scan = self

        class Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                scan.tags.append(tag)
                scan.attrs += [(tag, k, v or "") for k, v in attrs]

            def handle_data(self, data):
                if self.lasttag == "script":
                    scan.scripts.append(data)

        Parser(convert_charrefs=True).feed(page)


def _harmless(page: str, scripts: int = 0) -> None:
    """No injected element or handler, no scheme in a link, no markup inside a script."""
    scan = _PageScan(page)
    assert "img" not in scan.tags, "an injected element was parsed"
    assert not [a for a in scan.attrs if a[1].startswith("on")], "an event handler was parsed"
    assert not [a for a in scan.attrs if a[1] == "href" and ":" in a[2]], "a link has a scheme"
    assert scan.tags.count("script") == scripts, scan.tags.count("script")
    for body in (b for b in scan.scripts if "var f=" in b):  # famekit's figure scripts
        assert "<" not in body and "\u2028" not in body and "\u2029" not in body, body[:200]


def _index_with(**fields):
    """write_index over one report.json whose fields (top level, notebook or metrics) are
    replaced by hostile values; returns the page."""

    def act(tmp: Path, ctx):
        from famekit.report import write_index

        status = {"dataset": "synthetic", "generated_at": "2026-12-01T00:00:00+00:00",
                  "seconds": 1.0, "parameters": {},
                  "metrics": {"fame": {"run_dir": "runs/x", "best_epoch": 3, "NDCG@10": 0.1}},
                  "notebooks": [{"name": "01_overview", "status": "ok", "seconds": 2.0,
                                 "ipynb": "synthetic/01_overview.ipynb",
                                 "html": "synthetic/01_overview.html", "error": None}]}
        for key, value in fields.items():
            where, _, name = key.partition("__")
            target = {"top": status, "nb": status["notebooks"][0],
                      "metric": status["metrics"]["fame"]}[where]
            if where == "metric" and name == "kind":
                status["metrics"] = {value: status["metrics"]["fame"]}
            else:
                target[name] = value
        (tmp / "synthetic").mkdir()
        (tmp / "synthetic" / "report.json").write_text(json.dumps(status))
        return write_index(tmp).read_text()

    return act


def _figure_page(*texts: str, title: str = "synthetic - 01"):
    """A notebook whose figures carry ``texts`` (as item titles would), rendered to HTML."""

    def act(tmp: Path, ctx):
        import nbformat

        from famekit.report import notebook_to_html

        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("fig", outputs=[nbformat.v4.new_output(
            "display_data", data={"application/vnd.plotly.v1+json": {
                "data": [{"type": "bar", "x": [text], "y": [1], "hovertext": [text]}],
                "layout": {"title": {"text": text}}}})]) for text in texts]
        return notebook_to_html(nb, "../assets/plotly.min.js", title)

    return act


def _page_is_harmless(scripts: int):
    return lambda page, tmp: _harmless(page, scripts)


def _figures_round_trip(*texts: str):
    """Each figure's JSON, read back by a JSON parser, holds exactly the text it was given."""

    def check(page: str, tmp: Path) -> None:
        plain = _figure_page(*["x"] * len(texts))(tmp, None)  # nbconvert's own scripts
        _harmless(page, scripts=_PageScan(plain).tags.count("script"))
        bodies = [b for b in _PageScan(page).scripts if "var f=" in b]
        assert len(bodies) == len(texts)
        for body, text in zip(bodies, texts):
            payload = body.split("var f=", 1)[1].split(";Plotly.newPlot", 1)[0]
            assert json.loads(payload)["layout"]["title"]["text"] == text

    return check


HTML_CASES = [
    Case("index-best-epoch-markup", _index_with(metric__best_epoch=XSS), None,
         check=_page_is_harmless(0)),
    Case("index-seconds-markup", _index_with(top__seconds=XSS), None, check=_page_is_harmless(0)),
    Case("index-dataset-markup", _index_with(top__dataset=XSS), None, check=_page_is_harmless(0)),
    Case("index-generated-at-markup", _index_with(top__generated_at=XSS), None,
         check=_page_is_harmless(0)),
    Case("index-metric-kind-markup", _index_with(metric__kind=XSS), None,
         check=_page_is_harmless(0)),
    Case("index-metric-value-markup", _index_with(**{"metric__NDCG@10": XSS}), None,
         check=_page_is_harmless(0)),
    Case("index-notebook-name-markup", _index_with(nb__name=XSS), None,
         check=_page_is_harmless(0)),
    Case("index-status-breaks-attribute", _index_with(nb__status="ok' onmouseover='alert(1)"),
         None, check=_page_is_harmless(0)),
    Case("index-error-markup", _index_with(nb__status="failed", nb__error=XSS), None,
         check=_page_is_harmless(0)),
    Case("index-notebook-seconds-not-a-number", _index_with(nb__seconds=XSS), None,
         check=_page_is_harmless(0)),
    Case("index-link-javascript-scheme", _index_with(nb__html="javascript:alert(1)"), None,
         check=_page_is_harmless(0)),
    Case("index-link-breaks-attribute", _index_with(nb__ipynb="x' onclick='alert(1)"), None,
         check=_page_is_harmless(0)),
    Case("index-link-other-site", _index_with(nb__html="//evil.example/x.html"), None,
         check=lambda page, tmp: "evil.example" not in page),
    Case("index-entries-of-wrong-types", _index_with(top__notebooks=[1, None, "x"],
                                                     top__metrics=[XSS]), None,
         check=_page_is_harmless(0)),
    Case("figure-title-opens-a-comment", _figure_page(SWALLOW, "after"), None,
         check=_figures_round_trip(SWALLOW, "after")),
    Case("figure-title-closes-the-script", _figure_page(JSONISH), None,
         check=_figures_round_trip(JSONISH)),
    Case("figure-title-markup", _figure_page(XSS), None, check=_figures_round_trip(XSS)),
    Case("page-title-markup", _figure_page("x", title=XSS), None,
         check=_figures_round_trip("x")),
]


@pytest.mark.parametrize("case", HTML_CASES, ids=_ids(HTML_CASES))
def test_html_is_escaped_for_its_context(case: Case, tmp_path):
    _expect(case, tmp_path)


# ============================================================ round 2: files written through links
VICTIM = b"a file famekit must never touch\n"


def _victim(tmp: Path) -> Path:
    victim = tmp / "victim.txt"
    victim.write_bytes(VICTIM)
    return victim


def _victim_untouched(result, tmp: Path) -> None:
    assert (tmp / "victim.txt").read_bytes() == VICTIM, "famekit wrote through a link"


def _planted(kind: str, at: Path, tmp: Path) -> None:
    """Put a link (or another non-file) where famekit will create a file of its own."""
    at.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink":
        at.symlink_to(_victim(tmp))
    elif kind == "dangling-symlink":
        at.symlink_to(tmp / "created-through-the-link.txt")
    elif kind == "hardlink":
        os.link(_victim(tmp), at)
    elif kind == "fifo":
        os.mkfifo(at)
    elif kind == "directory":
        at.mkdir()


def _report_lock_is(kind: str):
    def act(tmp: Path, ctx):
        from famekit import report

        _planted(kind, tmp / "reports" / "synthetic" / ".lock", tmp)
        return report.generate_reports("synthetic", out=tmp / "reports", progress=False)

    return act


def _nothing_through_links(error, tmp: Path) -> None:
    if (tmp / "victim.txt").exists():
        _victim_untouched(error, tmp)
    assert not (tmp / "created-through-the-link.txt").exists(), "a link's target was created"
    assert not list(tmp.glob("runs/*")), "work started although the lock was refused"


def _write_probe_is_a_symlink(tmp: Path, ctx):
    from famekit import report

    _planted("symlink", tmp / "reports" / f".write-test-{os.getpid()}", tmp)
    report._check_writable(tmp / "reports")
    return tmp / "reports"


def _running_notebook_is_a_symlink(tmp: Path, ctx):
    """A link where the in-progress notebook used to be written; the notebook runs for real."""
    import nbformat

    from famekit import report

    folder = tmp / "reports" / "synthetic"
    _planted("symlink", folder / ".01_tiny.running.ipynb", tmp)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1 + 1")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    (tmp / "01_tiny.ipynb").write_text(nbformat.writes(nb))
    return report._render_notebooks([tmp / "01_tiny.ipynb"], folder, tmp / "reports", {},
                                    "../assets/plotly.min.js", "t", 120, False)


def _rendered_without_the_link(results, tmp: Path) -> None:
    _victim_untouched(results, tmp)
    assert [r.status for r in results] == ["ok"], results
    assert (tmp / "reports" / "synthetic" / "01_tiny.ipynb").is_file()
    leftovers = [p.name for p in (tmp / "reports" / "synthetic").iterdir()
                 if p.name.startswith(".01_tiny.") and not p.is_symlink()]
    assert not leftovers, leftovers


LINK_CASES = [
    Case("report-lock-is-a-symlink", _report_lock_is("symlink"), ParameterError,
         ("{tmp}/reports/synthetic/.lock", "symbolic link", "rm "), _nothing_through_links),
    Case("report-lock-is-a-dangling-symlink", _report_lock_is("dangling-symlink"),
         ParameterError, ("{tmp}/reports/synthetic/.lock", "symbolic link"),
         _nothing_through_links),
    Case("report-lock-is-a-hard-link", _report_lock_is("hardlink"), ParameterError,
         ("{tmp}/reports/synthetic/.lock", "hard link"), _nothing_through_links),
    Case("report-lock-is-a-fifo", _report_lock_is("fifo"), ParameterError,
         ("{tmp}/reports/synthetic/.lock", "not a file"), _nothing_through_links),
    Case("report-lock-is-a-directory", _report_lock_is("directory"), ParameterError,
         ("{tmp}/reports/synthetic/.lock",), _nothing_through_links),
    Case("report-write-probe-is-a-symlink", _write_probe_is_a_symlink, None,
         check=_victim_untouched),
    Case("report-running-notebook-is-a-symlink", _running_notebook_is_a_symlink, None,
         check=_rendered_without_the_link),
]


@pytest.mark.parametrize("case", LINK_CASES, ids=_ids(LINK_CASES))
def test_links_are_never_followed(case: Case, tmp_path, monkeypatch):
    monkeypatch.setenv("FAMEKIT_RUNS", str(tmp_path / "runs"))
    _expect(case, tmp_path)


# ========================================================= round 2: run folders famekit did not make
TINY_TRAINING = {"epochs": 1, "d_model": 16, "n_heads": 2, "n_experts": 2, "max_len": 8,
                 "batch_size": 32, "threads": 1, "progress": False}


def _train_into(overwrite: bool = False, **files: bytes):
    """train() into ``{tmp}/out`` after writing ``files`` there (names with '__' for '.')."""

    def act(tmp: Path, ctx):
        from famekit.training import train

        out = tmp / "out"
        out.mkdir()
        for name, content in files.items():
            (out / name.replace("__", ".")).write_bytes(content)
        threads = torch.get_num_threads()
        try:
            return train(_tiny_dataset(), out_dir=out, overwrite=overwrite, **TINY_TRAINING)
        finally:
            torch.set_num_threads(threads)

    return act


def _untouched(**files: bytes):
    def check(result, tmp: Path) -> None:
        for name, content in files.items():
            assert (tmp / "out" / name.replace("__", ".")).read_bytes() == content, name
        if isinstance(result, FamekitError):
            assert not (tmp / "out" / ".lock").exists(), "a lock file was left in the folder"

    return check


def _trained_keeping(name: str, content: bytes):
    def check(result, tmp: Path) -> None:
        assert (tmp / "out" / "metrics.json").is_file() and result.best_epoch == 1
        assert (tmp / "out" / name).read_bytes() == content

    return check


def _while_locked(call: Callable[[Path], Any]):
    """``call(run folder)`` while another writer holds the run's lock."""

    def act(tmp: Path, ctx):
        from famekit.runs import RunDir

        run = ctx.copy_of_run(tmp)
        threads = torch.get_num_threads()
        try:
            with RunDir(run).lock():
                return call(run)
        finally:
            torch.set_num_threads(threads)

    return act


def _train_over(run: Path):
    from famekit.training import train

    return train(_tiny_dataset(), out_dir=run, overwrite=True, **TINY_TRAINING)


def _resume(run: Path):
    from famekit.training import train

    return train(resume=run, epochs=2, progress=False)


def _run_lock_is_a_symlink(tmp: Path, ctx):
    from famekit.training import train

    run = ctx.copy_of_run(tmp)
    (run / ".lock").unlink(missing_ok=True)
    _planted("symlink", run / ".lock", tmp)
    return train(resume=run, epochs=2, progress=False)


def _default_run(*args):
    def act(tmp: Path, ctx):
        from famekit.runs import default_run_dir

        return default_run_dir(*args)

    return act


FOREIGN = b'{"learning_rate": 0.1, "not": "famekit"}'
NOTES = b"my notes\n"

RUN_FOLDER_CASES = [
    Case("train-into-folder-with-foreign-config", _train_into(config__json=FOREIGN,
                                                               metrics__csv=b"a,b\n1,2\n"),
         CheckpointError, ("{tmp}/out", "not empty", "config.json", "--overwrite"),
         _untouched(config__json=FOREIGN, metrics__csv=b"a,b\n1,2\n")),
    Case("train-into-folder-with-other-files", _train_into(notes__txt=NOTES), CheckpointError,
         ("{tmp}/out", "notes.txt", "new or empty --out"), _untouched(notes__txt=NOTES)),
    Case("train-into-foreign-folder-when-told", _train_into(True, notes__txt=NOTES), None,
         check=_trained_keeping("notes.txt", NOTES)),
    Case("train-into-empty-existing-folder", _train_into(), None,
         check=lambda r, tmp: r.best_epoch == 1 and (tmp / "out" / "model.safetensors").is_file()),
    Case("train-while-another-writes-the-run", _while_locked(_train_over), CheckpointError,
         ("{tmp}/run", f"pid {os.getpid()}", "another famekit process", "wait")),
    Case("resume-while-another-writes-the-run", _while_locked(_resume), CheckpointError,
         ("{tmp}/run", "another famekit process")),
    Case("run-lock-is-a-symlink", _run_lock_is_a_symlink, CheckpointError,
         ("{tmp}/run/.lock", "symbolic link"), _nothing_through_links),
    Case("open-run-dataset-is-a-path", _open_run("../x"), ParameterError,
         ("dataset", "'../x'", "plain name"), _nothing_trained),
    Case("open-run-kind-is-a-path", _open_run("synthetic", None, 0, "../../etc"),
         ParameterError, ("kind", "'../../etc'"), _nothing_trained),
    Case("open-run-seed-is-a-string", _open_run("synthetic", None, "0/../../x"),
         ParameterError, ("seed", "'0/../../x'"), _nothing_trained),
    Case("default-run-absolute-name", _default_run("/etc/passwd"), ParameterError,
         ("'/etc/passwd'",)),
    Case("default-run-hidden-name", _default_run(".."), ParameterError, ("'..'",)),
    Case("default-run-empty-name", _default_run(""), ParameterError, ("dataset", "''")),
    Case("default-run-control-character", _default_run("synthetic\n"), ParameterError,
         ("'synthetic\\n'",)),
    Case("default-run-windows-separator", _default_run("a\\..\\b"), ParameterError,
         ("dataset",)),
]


@pytest.mark.parametrize("case", RUN_FOLDER_CASES, ids=_ids(RUN_FOLDER_CASES))
def test_run_folders_are_famekits_and_locked(case: Case, tmp_path, monkeypatch, trained_run):
    monkeypatch.setenv("FAMEKIT_RUNS", str(tmp_path / "runs"))
    _expect(case, tmp_path, trained_run)


# ====================================================== round 2: what the command line says back
def _kernelless_parameters(tmp: Path, ctx):
    """A notebook with a parameters cell and no kernelspec (famekit runs it on python3)."""
    import nbformat

    from famekit import report

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("SEED = 0")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    (tmp / "01_x.ipynb").write_text(nbformat.writes(nb))
    return report._declared_parameters(tmp / "01_x.ipynb")


def _mirror_is(value: str):
    def act(tmp: Path, ctx):
        ctx.monkeypatch.setenv("FAMEKIT_MIRROR", value)
        return fetch.download(_remote(), tmp / "cache", progress=False, retries=0)

    return act


def _status_file(text: str):
    def act(tmp: Path, ctx):
        from famekit import report

        (tmp / "report.json").write_text(text)
        return report.read_status(tmp)

    return act


def _report_timeout(value):
    def act(tmp: Path, ctx):
        from famekit import report

        return report.generate_reports("synthetic", out=tmp / "reports", timeout=value,
                                       progress=False)

    return act


def _synthetic(**options):
    def act(tmp: Path, ctx):
        from famekit.datasets import synthetic

        return synthetic.generate(**options)

    return act


REPORT_JSON = "{tmp}/report.json"

MESSAGE_CASES = [
    Case("synthetic-seed-negative", _synthetic(seed=-1), ParameterError, ("seed=-1", ">= 0")),
    Case("synthetic-seed-text", _synthetic(seed="abc"), ParameterError, ("seed='abc'",)),
    Case("synthetic-noise-text", _synthetic(noise="high"), ParameterError,
         ("noise='high'", "finite number")),
    Case("synthetic-noise-nan", _synthetic(noise=float("nan")), ParameterError, ("noise=nan",)),
    Case("synthetic-length-bool", _synthetic(min_length=True), ParameterError,
         ("min_length=True",)),
    Case("synthetic-switch-prob-list", _synthetic(switch_prob=[0.5]), ParameterError,
         ("switch_prob=[0.5]",)),
    Case("mirror-invalid-ipv6", _mirror_is("http://[::1"), ParameterError,
         ("FAMEKIT_MIRROR", "'http://[::1'", "unset it")),
    Case("mirror-port-not-a-number", _mirror_is("http://127.0.0.1:abc"), ParameterError,
         ("FAMEKIT_MIRROR", "127.0.0.1:abc")),
    Case("mirror-with-a-space", _mirror_is("http://a b"), ParameterError, ("FAMEKIT_MIRROR",)),
    Case("mirror-without-host", _mirror_is("http://:8000"), ParameterError, ("FAMEKIT_MIRROR",)),
    Case("report-timeout-zero", _report_timeout(0), ParameterError, ("timeout", "--timeout")),
    Case("report-timeout-negative", _report_timeout(-5), ParameterError, ("timeout", "-5")),
    Case("report-timeout-text", _report_timeout("900"), ParameterError, ("timeout", "'900'")),
    Case("notebook-without-kernelspec", _kernelless_parameters, None,
         check=lambda declared, tmp: declared == {"SEED"}),
    Case("status-seed-not-a-number", _status_file('{"parameters": {"SEED": "x"}}'),
         ParameterError, (REPORT_JSON, "SEED='x'", "regenerate")),
    Case("status-notebooks-not-a-list", _status_file('{"parameters": {}, "notebooks": 5}'),
         ParameterError, (REPORT_JSON, "notebooks")),
    Case("status-metrics-not-objects", _status_file('{"parameters": {}, "metrics": {"a": 1}}'),
         ParameterError, (REPORT_JSON, "metrics")),
    Case("status-dataset-a-list", _status_file('{"parameters": {"DATASET": ["x"]}}'),
         ParameterError, (REPORT_JSON, "DATASET")),
    Case("user-id-above-the-item-limit", _files(b"70000000000 1 2 3 4\n2 4 3 2 1\n"), None,
         check=lambda d, tmp: d.n_users == 2 and d.n_items == 4),
    Case("user-id-above-int64", _files(b"9223372036854775808 1 2 3\n"), DataFormatError,
         (SEQ, "line 1", "user id", "limit")),
]


@pytest.mark.parametrize("case", MESSAGE_CASES, ids=_ids(MESSAGE_CASES))
def test_messages_say_what_is_wrong(case: Case, tmp_path, monkeypatch, mirror_env):
    monkeypatch.setenv("FAMEKIT_RUNS", str(tmp_path / "runs"))
    _expect(case, tmp_path, SimpleNamespace(mirror=mirror_env, monkeypatch=monkeypatch))


def _notebook_file(content: bytes):
    return lambda tmp, run: ((tmp / "nbs").mkdir(), (tmp / "nbs" / "01_x.ipynb")
                             .write_bytes(content))


SHORT_USERS = b"1 1 2 3\n2 4 5 6\n3 7 8 9\n"

CLI_CASES_2 = [
    CliCase("data-option-seed-negative", ("train", "--dataset", "synthetic", "--data-option",
                                          "seed=-1", "--out", "{tmp}/r"),
            ParameterError, ("seed=-1",)),
    CliCase("data-option-seed-text", ("train", "--dataset", "synthetic", "--data-option",
                                      "seed=abc", "--out", "{tmp}/r"),
            ParameterError, ("seed='abc'",)),
    CliCase("data-option-noise-text", ("train", "--dataset", "synthetic", "--data-option",
                                       "noise=high", "--out", "{tmp}/r"),
            ParameterError, ("noise='high'",)),
    CliCase("report-timeout-zero", ("report", "--timeout", "0", "--out", "{tmp}/rep"),
            ParameterError, ("timeout", "got 0")),
    CliCase("report-notebook-not-json", ("report", "--notebooks", "{tmp}/nbs", "--out",
                                         "{tmp}/rep"),
            ParameterError, ("{tmp}/nbs/01_x.ipynb", "not a readable Jupyter notebook"),
            setup=_notebook_file(b"{not json")),
    CliCase("report-notebook-not-a-notebook", ("report", "--notebooks", "{tmp}/nbs", "--out",
                                               "{tmp}/rep"),
            ParameterError, ("{tmp}/nbs/01_x.ipynb",), setup=_notebook_file(b"[1, 2]")),
    CliCase("users-all-too-short", ("train", "--sequences", "{tmp}/short.txt", "--epochs", "1",
                                    "--out", "{tmp}/r", "--no-progress"),
            ParameterError, ("no user with >= 2 training items", "at least 4 items"),
            setup=_write("short.txt", SHORT_USERS)),
    CliCase("train-into-a-foreign-folder", ("train", "--sequences", "{seq}", "--out",
                                            "{tmp}/mine"),
            CheckpointError, ("{tmp}/mine", "not empty", "--overwrite"),
            setup=lambda tmp, run: ((tmp / "mine").mkdir(), (tmp / "mine" / "config.json")
                                    .write_text("{}"))),
]


@pytest.mark.slow  # a fresh interpreter per case (~2-3 s each)
@pytest.mark.parametrize("case", CLI_CASES_2, ids=_ids(CLI_CASES_2))
def test_command_line_round_2(case: CliCase, tmp_path, trained_run, mirror_env):
    test_command_line(case, tmp_path, trained_run, mirror_env)


# ================================================== round 2: sizes checked before memory is spent
def _weights_grown_by(extra: int):
    """model.safetensors extended by ``extra`` bytes (a hole: sparse, no disk used)."""

    def act(tmp: Path, ctx):
        run = _saved_run(tmp)
        path = run / "model.safetensors"
        os.truncate(path, path.stat().st_size + extra)
        return load_run(run, device="cpu")

    return act


def _saved_with(change: Callable[[torch.nn.Module], torch.nn.Module]):
    """A run saved (checksums and all) from a model that ``change`` damaged first."""

    def act(tmp: Path, ctx):
        torch.manual_seed(0)
        dataset = _tiny_dataset()
        model = change(build_model(ModelConfig(**TINY)))
        save_model(tmp / "run", model, dataset_name=dataset.name,
                   dataset_fingerprint=dataset.fingerprint)
        return load_run(tmp / "run", device="cpu")

    return act


def _fill(value: float):
    def change(model):
        with torch.no_grad():
            model.item_embed.weight[3, 0] = value
        return model

    return change


ALLOCATION_CASES = [
    Case("weights-sparse-64-gib", _weights_grown_by(64 << 30), CheckpointError,
         (WEIGHTS, "header describes", "sparse")),
    Case("weights-with-trailing-bytes", _weights_grown_by(17), CheckpointError,
         (WEIGHTS, "padded, sparse or truncated")),
    Case("config-asks-for-15000-layers", _tampered_config(n_layers=15_000), CheckpointError,
         (CONFIG, "15000 layers", "tensors")),
    Case("config-asks-for-3-layers", _tampered_config(n_layers=3), CheckpointError,
         (CONFIG, "3 layers")),
    Case("weights-hold-nan", _saved_with(_fill(float("nan"))), CheckpointError,
         (WEIGHTS, "NaN or infinite", "item_embed.weight")),
    Case("weights-hold-inf", _saved_with(_fill(float("inf"))), CheckpointError,
         (WEIGHTS, "NaN or infinite")),
    Case("weights-are-float64", _saved_with(lambda m: m.double()), CheckpointError,
         (WEIGHTS, "wrong dtype", "torch.float64")),
    Case("weights-are-float16", _saved_with(lambda m: m.half()), CheckpointError,
         (WEIGHTS, "wrong dtype", "torch.float16")),
]


@pytest.mark.parametrize("case", ALLOCATION_CASES, ids=_ids(ALLOCATION_CASES))
def test_sizes_are_checked_before_allocating(case: Case, tmp_path):
    import time

    started = time.perf_counter()
    _expect(case, tmp_path)
    assert time.perf_counter() - started < 20, "refused only after a long allocation"


# ====================================================== round 2: archives and downloads, bounded
_zip_bytes = zip_bytes


def _forged_movielens(name: str, members: dict[str, bytes], opt_in: bool = False):
    """A well-formed zip served at the official URL of ``name``, its members made up."""

    def act(tmp: Path, ctx):
        from famekit.datasets import movielens

        if opt_in:
            ctx.monkeypatch.setenv("FAMEKIT_ALLOW_UNVERIFIED", "1")
        remote = movielens.SOURCES[name].files[0]
        ctx.mirror.add(remote.url, _zip_bytes(members))
        return fetch.download(remote, tmp / "cache", progress=False)

    return act


def _bomb(size: int):
    """A zip whose one member inflates ``size`` zero bytes from a few kilobytes."""

    def act(tmp: Path, ctx):
        ctx.mirror.add(ZIP_URL, _zip_bytes({"x/ratings.dat": b"\0" * size}))
        return fetch.download(fetch.RemoteFile("archive.zip", ZIP_URL), tmp / "cache",
                              progress=False)

    return act


def _oversized_download(tmp: Path, ctx):
    ctx.mirror.add(URL, PAYLOAD + b"more than was recorded")
    return fetch.download(_remote(), tmp / "cache", progress=False, retries=0)


FORGED_RATINGS = b"1::1::5::978300760\n"
ML20M_URL = "files.grouplens.org/datasets/movielens/ml-20m.zip"

ARCHIVE_CASES = [
    Case("forged-ml-1m-ratings", _forged_movielens("ml-1m", {"ml-1m/ratings.dat": FORGED_RATINGS}),
         ChecksumError, ("ml-1m.zip", "ml-1m/ratings.dat", "FAMEKIT_ALLOW_UNVERIFIED=1"),
         _nothing_left_in("cache")),
    Case("forged-ml-20m", _forged_movielens("ml-20m", {"ml-20m/ratings.csv": b"userId\n"}),
         ChecksumError, (ML20M_URL, "ml-20m/ratings.csv", "ml-20m/movies.csv", "no recorded"),
         _nothing_left_in("cache")),
    Case("ml-20m-unverified-when-told", _forged_movielens(
        "ml-20m", {"ml-20m/ratings.csv": b"userId\n", "ml-20m/movies.csv": b"movieId\n"},
        opt_in=True), None, check=lambda path, tmp: path.name == "ml-20m.zip"),
    Case("zip-bomb-ratio", _bomb(20 << 20), ChecksumError,
         ("archive.zip", "x/ratings.dat", "ratio", "before inflating"), _nothing_left_in("cache")),
    Case("zip-bomb-small-is-fine", _bomb(2000), None,
         check=lambda path, tmp: path.name == "archive.zip"),
    Case("download-larger-than-recorded", _oversized_download, DownloadError,
         ("payload.bin", "more than the recorded", str(len(PAYLOAD))), _nothing_left_in("cache")),
]


@pytest.mark.parametrize("case", ARCHIVE_CASES, ids=_ids(ARCHIVE_CASES))
def test_archives_and_downloads_are_bounded(case: Case, tmp_path, mirror_env, monkeypatch):
    _expect(case, tmp_path, SimpleNamespace(mirror=mirror_env, monkeypatch=monkeypatch))


def _load_from(kind: str, as_items: bool = False):
    """load_files on a device, a FIFO or a folder instead of a text file."""

    def act(tmp: Path, ctx):
        path = {"device": Path("/dev/zero"), "fifo": tmp / "pipe", "folder": tmp}[kind]
        if kind == "fifo":
            os.mkfifo(path)
        if as_items:
            (tmp / "seq.txt").write_bytes(GOOD_SEQ)
            return load_files(tmp / "seq.txt", path)
        return load_files(path)

    return act


STREAM_CASES = [
    Case("sequences-from-dev-zero", _load_from("device"), DataFormatError,
         ("/dev/zero", "not a regular file")),
    Case("sequences-from-a-fifo", _load_from("fifo"), DataFormatError,
         ("{tmp}/pipe", "not a regular file")),
    Case("sequences-from-a-folder", _load_from("folder"), DataFormatError,
         ("not a regular file",)),
    Case("items-from-dev-zero", _load_from("device", as_items=True), DataFormatError,
         ("/dev/zero", "not a regular file")),
]


@pytest.mark.parametrize("case", STREAM_CASES, ids=_ids(STREAM_CASES))
def test_endless_inputs_are_refused_before_reading(case: Case, tmp_path):
    _expect(case, tmp_path)


def _train_with_memory(free: int, sequences=None, **options):
    """train() on a machine that reports ``free`` bytes of available memory."""

    def act(tmp: Path, ctx):
        from famekit.training import train

        ctx.monkeypatch.setattr("famekit.validation.available_memory", lambda: free)
        data = _tiny_dataset() if sequences is None else SeqDataset.from_sequences(
            "sparse", [np.asarray(s) for s in sequences], n_items=max(map(max, sequences)))
        return train(data, out_dir=tmp / "out", **{**TINY_TRAINING, **options})

    return act


def _load_with_memory(free: int):
    def act(tmp: Path, ctx):
        ctx.monkeypatch.setattr("famekit.checkpoints.available_memory", lambda: free)
        return load_run(_saved_run(tmp), device="cpu")

    return act


def _nothing_written(error, tmp: Path) -> None:
    assert not (tmp / "out").exists(), "the run folder was created before the check"


SPARSE = [[1, 2, 3, 50_000_000, 5], [2, 3, 4, 5, 6], [6, 5, 4, 3, 2]]

MEMORY_CASES = [
    Case("item-ids-sparse-up-to-50-million", _train_with_memory(2 << 30, SPARSE),
         ParameterError, ("'sparse'", "GiB", "sparse", "renumber them densely"),
         _nothing_written),
    Case("max-len-10-to-the-8", _train_with_memory(2 << 30, max_len=10**8), ParameterError,
         ("max_len 100000000", "lower max_len"), _nothing_written),
    Case("batch-size-10-to-the-8", _train_with_memory(2 << 30, batch_size=10**8),
         ParameterError, ("batch 100000000",), _nothing_written),
    Case("d-model-huge", _train_with_memory(2 << 30, d_model=2**16), ParameterError,
         ("parameters", "model size"), _nothing_written),
    Case("weights-larger-than-free-memory", _load_with_memory(1000), CheckpointError,
         (WEIGHTS, "memory available")),
]


@pytest.mark.parametrize("case", MEMORY_CASES, ids=_ids(MEMORY_CASES))
def test_memory_is_checked_before_allocating(case: Case, tmp_path, monkeypatch):
    import time

    started = time.perf_counter()
    _expect(case, tmp_path, SimpleNamespace(monkeypatch=monkeypatch))
    assert time.perf_counter() - started < 30, "refused only after a long allocation"


def _nested(depth: int):
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


TRAIN_STATE_CASES = [
    Case("train-state-huge-string-dtype", _resume_with_train_state(
        "rng.numpy", {"__ndarray__": ["a"], "dtype": "<U100000000", "shape": [1]}),
         CheckpointError, ("{tmp}/run/train_state.json", "damaged or was edited", "dtype")),
    Case("train-state-object-dtype", _resume_with_train_state(
        "rng.numpy", {"__ndarray__": [1], "dtype": "|O", "shape": [1]}),
         CheckpointError, ("{tmp}/run/train_state.json", "dtype")),
    Case("train-state-history-900-deep", _resume_with_train_state(
        "extra_state.history", _nested(900)), CheckpointError,
         ("{tmp}/run/train_state.json", "damaged or was edited")),
]


@pytest.mark.parametrize("case", TRAIN_STATE_CASES, ids=_ids(TRAIN_STATE_CASES))
def test_train_state_is_checked_before_allocating(case: Case, tmp_path, trained_run):
    _expect(case, tmp_path, trained_run)


# ======================================================== round 2: the processed-dataset cache
def _forged_npz(claimed_elements: int):
    """A cached entry whose array header claims ``claimed_elements`` int64s in 80 bytes."""
    def act(tmp: Path, ctx):
        import io
        import zipfile

        path = fetch.save_processed("forged", "k", {"a": np.arange(10)}, {"m": 1}, cache_dir=tmp)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<i8", "fortran_order": False, "shape": (claimed_elements,)})
        meta = io.BytesIO()
        np.save(meta, np.frombuffer(b'{"m": 1}', dtype=np.uint8))
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a.npy", header.getvalue() + b"\0" * 80)
            archive.writestr("meta_json.npy", meta.getvalue())
        return fetch.load_processed("forged", "k", cache_dir=tmp), path
    return act


def _cache_on_a_full_disk(tmp: Path, ctx):
    import errno
    from unittest import mock

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch.object(np, "savez", full):
        fetch.save_processed("full", "k", {"a": np.arange(10)}, {"m": 1}, cache_dir=tmp)


def _rebuilt(result, tmp: Path) -> None:
    loaded, path = result
    assert loaded is None and not path.exists()  # refused and removed: the caller rebuilds it


def _nothing_left_behind(error, tmp: Path) -> None:
    assert not [p for p in tmp.rglob("*") if p.is_file()], "a partial cache file was left"


CACHE_CASES = [
    Case("npz-claims-1e11-elements", _forged_npz(10**11), None, check=_rebuilt),
    Case("npz-array-shorter-than-its-header", _forged_npz(11), None, check=_rebuilt),
    Case("cache-write-on-a-full-disk", _cache_on_a_full_disk, CacheError,
         ("full-", "No space left", "FAMEKIT_CACHE"), check=_nothing_left_behind),
]


@pytest.mark.parametrize("case", CACHE_CASES, ids=_ids(CACHE_CASES))
def test_the_processed_cache_is_checked_before_allocating(case: Case, tmp_path):
    _expect(case, tmp_path)


# ================================================================================ FAME+ facets
# A facet name, a facet assignment and a FAME+ run folder are new inputs: each mistake is a
# ParameterError naming the field (and the fields there are) before anything is written, and a
# run folder whose facet record was edited still loads with no facet on its heads.
FACET_WORLD = {"n_users": 60, "n_items": 150, "n_brands": 12}
FACET_TRAIN = {"epochs": 1, "d_model": 16, "n_experts": 2, "max_len": 10, "batch_size": 32,
               "threads": 1, "progress": False, "facet_pretrain_steps": 5, "facet_items": 32}


def _train_facets(facets, dataset="synthetic", **options):
    def act(tmp: Path, ctx):
        from famekit.training import train

        threads = torch.get_num_threads()
        try:
            return train(dataset if isinstance(dataset, str) else dataset(tmp),
                         out_dir=tmp / "runs" / "r", facets=facets,
                         dataset_options=FACET_WORLD if dataset == "synthetic" else None,
                         **{**FACET_TRAIN, **options})
        finally:
            torch.set_num_threads(threads)

    return act


def _own_items(tsv: bytes):
    """A user's own data whose item TSV is ``tsv`` (8 items, 6 users)."""
    def build(tmp: Path) -> SeqDataset:
        (tmp / "seq.txt").write_bytes(b"".join(
            f"{u} {' '.join(str(1 + (u + k) % 8) for k in range(6))}\n".encode()
            for u in range(1, 7)))
        (tmp / "items.tsv").write_bytes(tsv)
        return load_files(tmp / "seq.txt", tmp / "items.tsv", name="own")

    return build


def _titles_tsv() -> bytes:
    rows = "".join(f"{i}\tTitle {i}\t{'<script>alert(1)</script>' if i % 2 else 'b'}\n"
                   for i in range(1, 9))
    return ("item_id\ttitle\tbrand\n" + rows).encode()


def _oracle(**kwargs):
    def act(tmp: Path, ctx):
        from famekit.analysis import oracle_model

        return oracle_model(load("synthetic", **FACET_WORLD), **kwargs)

    return act


def _resume_with_other_facets(tmp: Path, ctx):
    from famekit.training import train

    _train_facets(["genre"])(tmp, ctx)
    return train(resume=tmp / "runs" / "r", facets=["brand"], progress=False, threads=1)


def _edited_facet_record(value):
    def act(tmp: Path, ctx):
        from famekit.runs import RunDir

        _train_facets(["genre", "brand"])(tmp, ctx)
        run = RunDir(tmp / "runs" / "r")
        path = run.path / "train_args.json"
        args = json.loads(path.read_text())
        args["facets"] = value
        path.write_text(json.dumps(args))
        return run.train_config()

    return act


def _edited_summary_facets(tmp: Path, ctx):
    from famekit.runs import RunDir

    _train_facets(["genre", "brand"])(tmp, ctx)
    path = tmp / "runs" / "r" / "config.json"
    meta = json.loads(path.read_text())
    meta["summary"]["facets"] = ["<img src=x onerror=alert(1)>"] * 50
    path.write_text(json.dumps(meta))
    return RunDir(tmp / "runs" / "r").load()


def _labels_stay_plain_and_bounded(run, tmp: Path) -> None:
    # an edited record cannot name more heads than the model has; names stay data (the
    # figures escape them like every metadata value)
    assert len(run.facets) == run.config.n_heads and len(run.head_labels) == run.config.n_heads


def _default_run_of(kind: str, dataset: str):
    def act(tmp: Path, ctx):
        from famekit import workspace

        return workspace.open_run(dataset, None, 0, kind=kind, progress=False)

    return act


FACET_CASES = [
    Case("facet-unknown-field", _train_facets(["colour"]), ParameterError,
         ("'colour'", "genre, brand, price_tier"), _nothing_trained),
    Case("facet-twice", _train_facets(["genre", "genre"]), ParameterError,
         ("'genre'", "given twice"), _nothing_trained),
    Case("facet-path-as-name", _train_facets(["../etc/passwd"]), ParameterError,
         ("'../etc/passwd'", "plain name"), _nothing_trained),
    Case("facet-not-a-list", _train_facets(7), ParameterError, ("facets", "list of field"),
         _nothing_trained),
    Case("facets-more-than-heads", _train_facets(["genre", "brand", "price_tier"],
                                                  n_heads=2), ParameterError,
         ("3 facets", "2 heads", "--heads"), _nothing_trained),
    Case("facets-on-sasrec", _train_facets(["genre"], kind="sasrec"), ParameterError,
         ("sasrec", "facet_target='embedding'"), _nothing_trained),
    Case("facet-temperature-zero", _train_facets(["genre"], facet_temperature=0),
         ParameterError, ("facet_temperature",), _nothing_trained),
    Case("facet-weight-nan", _train_facets(["genre"], facet_weight=float("nan")),
         ParameterError, ("facet_weight",), _nothing_trained),
    Case("facet-schedule-unknown", _train_facets(["genre"], facet_schedule="later"),
         ParameterError, ("facet_schedule", "pretrain"), _nothing_trained),
    Case("facet-one-value-per-item", _train_facets(["title"], dataset=_own_items(_titles_tsv())),
         ParameterError, ("'title'", "value of its own"), _nothing_trained),
    Case("facet-on-data-without-metadata",
         _train_facets(["brand"], dataset=_own_items(b"item_id\ttitle\n1\tOne\n")),
         ParameterError, ("'brand'", "no metadata field"), _nothing_trained),
    Case("facet-resume-with-other-facets", _resume_with_other_facets, ParameterError,
         ("cannot change facets", "'genre'", "'brand'")),
    Case("facet-record-edited-to-a-number", _edited_facet_record(42), CheckpointError,
         ("train_args.json", "invalid configuration")),
    Case("facet-record-edited-to-a-path", _edited_facet_record(["genre", "/etc"]),
         CheckpointError, ("train_args.json", "plain name")),
    Case("facet-summary-edited-to-markup", _edited_summary_facets, None,
         check=_labels_stay_plain_and_bounded),
    Case("oracle-negative-noise", _oracle(facets=["genre"], noise=-1), ParameterError,
         ("noise", "noise=0.5")),
    Case("oracle-unknown-model-option", _oracle(facets=["genre"], widht=3), ParameterError,
         ("unknown model option", "d_model")),
    Case("fameplus-default-run-on-real-data", _default_run_of("fameplus", "beauty"),
         ParameterError, ("fameplus", "'beauty'", "--facets"), _nothing_trained),
    Case("unknown-run-kind", _default_run_of("famepluss", "synthetic"), ParameterError,
         ("'famepluss'", "fameplus"), _nothing_trained),
]


@pytest.mark.parametrize("case", FACET_CASES, ids=_ids(FACET_CASES))
def test_facets(case: Case, tmp_path, monkeypatch):
    monkeypatch.setenv("FAMEKIT_RUNS", str(tmp_path / "runs"))
    _expect(case, tmp_path)


def test_a_fame_run_given_as_the_fameplus_run_is_refused(tmp_path, monkeypatch):
    from famekit import workspace

    monkeypatch.setenv("FAMEKIT_RUNS", str(tmp_path / "runs"))
    _train_facets([])(tmp_path, None)  # a plain FAME run
    with pytest.raises(ParameterError, match="no facet on its heads.*--facets"):
        workspace.open_facet_runs("synthetic", fameplus_run_dir=tmp_path / "runs" / "r",
                                  progress=False)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["r"]  # no baseline trained
    assert workspace.open_facet_runs("beauty", progress=False) is None  # nothing to show


# ============================================================================ explorer controls
def _explorer(ctx, **kwargs):
    from famekit.widgets import UserExplorer

    return UserExplorer(ctx.model, ctx.dataset, users=range(5), top_k=5, **kwargs)


def _explore(**kwargs):
    return lambda tmp, ctx: _explorer(ctx, **kwargs)


def _control(method: str, value):
    """An act: one control of a fresh explorer given ``value``, as the widget would."""

    def act(tmp: Path, ctx):
        explorer = _explorer(ctx)
        before = (explorer.user, list(explorer.order), explorer.sort, explorer.filter)
        explorer._guarded(getattr(explorer, method), value)
        return explorer, before

    return act


def _status_escaped_and_state_kept(result, tmp: Path) -> None:
    explorer, before = result
    status = explorer.status.value
    assert "<img" not in status and "<script" not in status and "&lt;" in status, status
    assert (explorer.user, list(explorer.order), explorer.sort, explorer.filter) == before


def _literal_search(result, tmp: Path) -> None:
    explorer, _ = result  # regex characters are searched as text: no error, nobody matches
    assert "no user" in explorer.status.value and len(explorer.order) == len(explorer.table)


EXPLORER_CASES = [
    Case("first-user-not-a-row", _explore(user="7"), ParameterError, ("'7'", "not an integer")),
    Case("first-user-beyond-the-data", _explore(user=10**9), ParameterError,
         ("1000000000", "does not exist")),
    Case("first-user-negative", _explore(user=-1), ParameterError,
         ("-1", "does not exist")),
    Case("search-with-markup", _control("search_users", '<img src=x onerror="alert(1)">'),
         None, check=_status_escaped_and_state_kept),
    Case("search-with-regex-characters", _control("search_users", "(.*[+"), None,
         check=_literal_search),
    Case("sort-not-on-the-menu", _control("sort_users", "<script>x</script>"), None,
         check=_status_escaped_and_state_kept),
    Case("filter-not-on-the-menu", _control("filter_users", "driving facet: <b>nope</b>"), None,
         check=_status_escaped_and_state_kept),
]


@pytest.mark.parametrize("case", EXPLORER_CASES, ids=_ids(EXPLORER_CASES))
def test_explorer_controls(case: Case, tmp_path, analysed):
    _expect(case, tmp_path, analysed)
