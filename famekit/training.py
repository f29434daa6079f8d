"""Training FAME and SASRec: the loop, early stopping, the run directory and resume.

>>> from famekit.training import train
>>> result = train("synthetic", kind="fame", epochs=60, patience=10)
>>> result.run_dir, result.best_epoch, result.test["NDCG@10"]

What one epoch does (spec §4): every user's training sequence ``s`` gives ``s[:-1] -> s[1:]``
(the last ``max_len`` items, left-padded); rows are grouped into length-bucketed batches (sort by
length with seeded noise, chunk, shuffle the chunks, trim each to its longest row) and the model
scores only the non-padding target positions with cross-entropy over all items; Adam updates.
After each evaluation epoch the validation NDCG@10 decides early stopping and the best weights
are saved; at the end the best weights are reloaded and evaluated on the test split.

The run directory (default ``runs/<dataset>-<kind>-seed<seed>`` under ``$FAMEKIT_RUNS`` or the
current directory) holds everything needed to reload, resume and report:

==========================  ==========================================================
``config.json``             model config, dataset fingerprint, summary (best epoch,
                            validation and test metrics) -- written by
                            :func:`famekit.checkpoints.save_model`
``model.safetensors``       weights of the best validation epoch
``train_state.*``           the last finished epoch, what resume continues from: weights,
                            optimizer, epoch, early-stopping counters, history, RNG states
                            (:func:`famekit.checkpoints.save_train_state`, no pickle)
``metrics.csv``             one row per epoch: epoch, train_loss, valid_* metrics, seconds
``metrics.json``            the same history plus status, best epoch and test metrics
``train_args.json``         the exact arguments of the run (what resume rebuilds it from)
==========================  ==========================================================

Reproducibility: every epoch draws its batches from ``numpy.random.default_rng([seed, epoch])``
and re-seeds torch (dropout) from ``(seed, epoch, rank)``, so an epoch depends only on the weights
and optimizer state it starts from. That is why a resumed run equals an uninterrupted one and why
two CPU runs with the same seed (and the same thread count) agree to the last digit.

Threads: CPU training uses ``threads`` torch threads; the default is every core this process may
run on (divided among the local ranks of a torchrun job), unless ``OMP_NUM_THREADS`` is set, in
which case torch's own setting is kept. Set it with ``threads=`` / ``famekit train --threads N``
or ``OMP_NUM_THREADS=N``. On a busy machine, use the number of idle cores (spec §4).

Distributed: under ``torchrun`` (see :mod:`famekit.distributed`) the same call trains with DDP.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import famekit
from famekit import datasets as datasets_module
from famekit import distributed
from famekit.batching import NextItemBatches
from famekit.checkpoints import (
    atomic_write_json,
    atomic_write_text,
    load_run,
    load_train_state,
    restore_rng_state,
    save_model,
    save_train_state,
)
from famekit.datasets import SeqDataset
from famekit.errors import CheckpointError, ParameterError
from famekit.evaluation import evaluate
from famekit.model import ModelConfig, build_model

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_PATIENCE",
    "SELECTION_METRIC",
    "TrainResult",
    "dataset_of_run",
    "default_run_dir",
    "load_dataset_of",
    "run_status",
    "train",
]

DEFAULT_EPOCHS = 200  # an upper bound: early stopping usually ends the run long before
DEFAULT_PATIENCE = 10  # evaluations without a better validation NDCG@10 before stopping
SELECTION_METRIC = "NDCG@10"  # validation metric that picks the best epoch
METRIC_NAMES = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR")

TRAIN_ARGS_FILE = "train_args.json"
METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
# Files a run writes; `overwrite=True` removes exactly these (never anything else in the folder).
RUN_FILES = (
    "config.json",
    "model.safetensors",
    "train_state.json",
    "train_state.safetensors",
    METRICS_CSV,
    METRICS_JSON,
    TRAIN_ARGS_FILE,
    "model.safetensors.prev",  # the committed half of a pair, kept while a save is in flight
    "train_state.safetensors.prev",
)

# Arguments that define a run; resume takes them from train_args.json, and a call that resumes
# may not change them (it may pass them unchanged, or leave them at these defaults).
_RUN_DEFAULTS: dict[str, Any] = {
    "kind": "fame",
    "batch_size": 256,
    "lr": 1e-3,
    "seed": 0,
    "max_len": 50,
    "eval_every": 1,
    "eval_batch_size": 256,
    "loss_weighting": "batch",
}
# Arguments added after runs were first written: a train_args.json without them means this.
_ADDED_RUN_ARGS = {"loss_weighting": "batch"}
LOSS_WEIGHTINGS = ("batch", "target")


@dataclass
class TrainResult:
    """What :func:`train` returns (rank 0 holds the metrics; other ranks get empty dicts)."""

    run_dir: Path  # the run directory (see the module docstring)
    best_epoch: int | None  # 1-based epoch with the best validation NDCG@10
    best_valid: dict[str, float]  # validation metrics of that epoch
    test: dict[str, float]  # test metrics of the best weights
    history: list[dict[str, Any]] = field(default_factory=list)  # the rows of metrics.csv
    stopped_early: bool = False  # True when patience ran out before `epochs`


# ------------------------------------------------------------------------------- small helpers
def default_run_dir(dataset_name: str, kind: str, seed: int) -> Path:
    """``$FAMEKIT_RUNS/<dataset>-<kind>-seed<seed>`` (``runs/`` under the current directory)."""
    root = Path(os.environ.get("FAMEKIT_RUNS") or "runs")
    return root / f"{dataset_name}-{kind}-seed{seed}"


def run_status(run_dir) -> str | None:
    """``"finished"``, ``"running"`` (started, not finished: resumable) or None (no run)."""
    run_dir = Path(run_dir)
    metrics = run_dir / METRICS_JSON
    if metrics.is_file():
        status = _read_json(metrics).get("status")
        return "finished" if status == "finished" else "running"
    return "running" if (run_dir / TRAIN_ARGS_FILE).is_file() else None


def usable_cores() -> int:
    """CPU cores this process may run on (respects taskset/cgroup affinity where available)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _read_json(path: Path) -> dict:
    """A run file's JSON object; anything else (unreadable, invalid, not an object) is a
    CheckpointError naming the file."""
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: absurd nesting
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise CheckpointError(
            f"{path}: cannot read JSON ({problem}). Fix: delete the run directory and train "
            "again, or restore the file"
        ) from None
    if not isinstance(value, dict):
        raise CheckpointError(
            f"{path} holds a JSON {type(value).__name__}, not an object. Fix: delete the run "
            "directory and train again, or restore the file"
        )
    return value


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ParameterError(f"{name}={value!r} is invalid. Fix: use one of "
                             + ", ".join(repr(c) for c in choices))
    return value


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(
            f"{name} must be a whole number >= {minimum}, got {value!r}. "
            f"Fix: pass {name}={minimum} or more (CLI --{name.replace('_', '-')})"
        )
    return int(value)


def _check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ParameterError(f"lr must be a positive number, got {lr!r}. Fix: pass lr=1e-3")
    return float(lr)


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The batch-order generator of ``epoch`` (identical on every rank)."""
    return np.random.default_rng([seed, epoch])


def _seed_torch_for_epoch(seed: int, epoch: int, rank: int) -> None:
    """Re-seed torch (dropout masks) from (seed, epoch, rank): each rank gets its own masks."""
    state = np.random.SeedSequence([seed, epoch, rank, 0x70C4]).generate_state(1)
    torch.manual_seed(int(state[0]))


def _set_threads(threads: int | None, ctx: distributed.DistContext) -> int:
    if threads is not None:
        threads = _check_int("threads", threads, 1)
    elif "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    else:
        threads = max(1, usable_cores() // ctx.local_world_size)
    torch.set_num_threads(threads)
    return threads


# ------------------------------------------------------------------------------- datasets
def _resolve_dataset(dataset, dataset_options: dict | None) -> tuple[SeqDataset, dict]:
    """The dataset and a JSON description that can load it again (for resume and reports)."""
    if isinstance(dataset, SeqDataset):
        if dataset_options:
            raise ParameterError(
                "dataset_options only apply to a dataset given by name. Fix: build the "
                "SeqDataset with those options yourself, or pass the name"
            )
        described: dict[str, Any] = {"name": dataset.name}
        source = dataset.info.get("sequences_path") if isinstance(dataset.info, dict) else None
        if source:
            described["sequences"] = str(Path(source).resolve())
            items = dataset.info.get("items_path")
            described["items"] = str(Path(items).resolve()) if items else None
        else:
            described["in_memory"] = True
        described["fingerprint"] = dataset.fingerprint
        return dataset, described
    if not isinstance(dataset, str):
        raise ParameterError(
            f"dataset must be a name or a SeqDataset, got {type(dataset).__name__}. "
            f"Fix: pass one of {', '.join(datasets_module.names())} or a SeqDataset"
        )
    options = dict(dataset_options or {})
    loaded = datasets_module.load(dataset, **options)
    return loaded, {"name": dataset, "options": options, "fingerprint": loaded.fingerprint}


def load_dataset_of(described: dict) -> SeqDataset:
    """Load the dataset a run's ``train_args.json`` describes (checking its fingerprint)."""
    if described.get("in_memory"):
        raise CheckpointError(
            f"the run was trained on an in-memory dataset {described.get('name')!r} that "
            "famekit cannot reload. Fix: pass the same SeqDataset again (dataset=...)"
        )
    if described.get("sequences"):
        dataset = datasets_module.load_files(
            described["sequences"], described.get("items"), name=described.get("name", "files")
        )
    else:
        dataset = datasets_module.load(described["name"], **described.get("options", {}))
    _check_fingerprint(dataset, described)
    return dataset


def dataset_of_run(run_dir) -> SeqDataset:
    """Load the dataset a run directory was trained on (its train_args.json, else config.json)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(
            f"run directory {run_dir} does not exist. Fix: pass a directory written by "
            "famekit train (e.g. runs/synthetic-fame-seed0)"
        )
    if (run_dir / TRAIN_ARGS_FILE).is_file():
        described = _read_json(run_dir / TRAIN_ARGS_FILE).get("dataset")
    else:  # a run saved by save_model alone names its dataset in config.json
        config = run_dir / "config.json"
        if not config.is_file():
            raise CheckpointError(f"{config} is missing. Fix: pass a run directory written by "
                                  "famekit train")
        described = _read_json(config).get("dataset")
    if not isinstance(described, dict) or not described.get("name"):
        raise CheckpointError(
            f"{run_dir} does not say which dataset it was trained on. Fix: train it again with "
            "famekit train"
        )
    return load_dataset_of(described)


def _check_fingerprint(dataset: SeqDataset, described: dict) -> None:
    expected = described.get("fingerprint")
    if expected and dataset.fingerprint != expected:
        raise CheckpointError(
            f"dataset {dataset.name!r} has fingerprint {dataset.fingerprint} but the run was "
            f"trained on fingerprint {expected}. Fix: resume with the same data the run started "
            "with, or start a new run (another --out)"
        )


# ------------------------------------------------------------------------------- metrics files
def _history_csv(history: list[dict]) -> str:
    columns = ["epoch", "train_loss", *[f"valid_{m}" for m in METRIC_NAMES],
               "train_seconds", "seconds"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in history:
        # repr() keeps every digit, so two identical runs give byte-identical files.
        writer.writerow(["" if row.get(c) is None else repr(row[c]) for c in columns])
    return buffer.getvalue()


def _write_metrics(run_dir: Path, status: str, history: list[dict], summary: dict) -> None:
    atomic_write_text(run_dir / METRICS_CSV, _history_csv(history))
    atomic_write_json(run_dir / METRICS_JSON, {"status": status, **summary, "history": history})


def _load_weights(model: torch.nn.Module, state: dict, run_dir: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{run_dir / 'train_state.safetensors'} does not match the model that "
            f"{run_dir / TRAIN_ARGS_FILE} describes ({exc}). Fix: start the run again "
            "(overwrite=True / --overwrite)"
        ) from None


# ------------------------------------------------------------------------------- early stopping
@dataclass
class EarlyStopping:
    """Tracks the best validation score; stops after ``patience`` evaluations without a better one."""

    patience: int
    best_score: float = -math.inf
    best_epoch: int | None = None
    best_valid: dict[str, float] = field(default_factory=dict)
    bad_evaluations: int = 0
    stopped: bool = False

    def update(self, epoch: int, valid: dict[str, float]) -> bool:
        """Record an evaluation; True when it is a new best (strictly better)."""
        score = float(valid[SELECTION_METRIC])
        if score > self.best_score:
            self.best_score, self.best_epoch, self.best_valid = score, epoch, dict(valid)
            self.bad_evaluations = 0
            return True
        self.bad_evaluations += 1
        self.stopped = self.bad_evaluations >= self.patience
        return False

    def to_dict(self) -> dict:
        return {"patience": self.patience, "best_score": self.best_score,
                "best_epoch": self.best_epoch, "best_valid": self.best_valid,
                "bad_evaluations": self.bad_evaluations, "stopped": self.stopped}

    @classmethod
    def from_dict(cls, state: dict, patience: int) -> EarlyStopping:
        stopper = cls(patience=patience)
        stopper.best_score = float(state["best_score"])
        stopper.best_epoch = state["best_epoch"]
        stopper.best_valid = dict(state["best_valid"])
        stopper.bad_evaluations = int(state["bad_evaluations"])
        # A larger patience on resume may revive a run that stopped early.
        stopper.stopped = stopper.bad_evaluations >= patience
        return stopper


# ------------------------------------------------------------------------------- arguments
def _merge_resume_arguments(saved: dict, requested: dict, run_dir: Path) -> dict:
    """The saved arguments, with ``epochs``/``patience`` taken from the call when given.

    Any other run-defining argument that the call sets to a value different from both its
    default and the saved one is an error: a resumed run must stay the run it was.
    """
    merged = dict(saved)
    for name in ("epochs", "patience"):
        if requested.get(name) is not None:
            merged[name] = requested[name]
    for name, default in _RUN_DEFAULTS.items():
        value = requested[name]
        if value != default and value != saved.get(name):
            raise ParameterError(
                f"cannot change {name} when resuming {run_dir} (saved {saved.get(name)!r}, "
                f"asked {value!r}). Fix: leave {name} out, or start a new run (another --out)"
            )
    options = requested["model_options"]
    if options and options != {k: saved["model_options"].get(k) for k in options}:
        raise ParameterError(
            f"cannot change model options {sorted(options)} when resuming {run_dir} (saved "
            f"{saved['model_options']}). Fix: leave them out, or start a new run"
        )
    return merged


def _model_config(n_items: int, kind: str, max_len: int, model_options: dict) -> ModelConfig:
    reserved = {"n_items", "kind", "max_len"} & set(model_options)
    if reserved:
        raise ParameterError(
            f"model option(s) {sorted(reserved)} are set by train() itself. Fix: pass "
            "max_len=/kind= directly; n_items comes from the dataset"
        )
    try:
        return ModelConfig(n_items=n_items, kind=kind, max_len=max_len, **model_options)
    except TypeError as exc:  # an unknown keyword
        known = sorted(f for f in ModelConfig.__dataclass_fields__ if f not in
                       ("n_items", "kind", "max_len"))
        raise ParameterError(
            f"unknown model option ({exc}). Fix: use some of {', '.join(known)}"
        ) from None


def _prepare_run_dir(run_dir: Path, overwrite: bool, clear: bool = True) -> None:
    """Refuse to clobber an existing run unless ``overwrite``; then (``clear``) remove its files."""
    status = run_status(run_dir)
    if status is not None and not overwrite:
        if status == "finished":
            raise CheckpointError(
                f"{run_dir} already holds a finished run. Fix: evaluate it (famekit evaluate "
                f"{run_dir}), choose another --out, or pass overwrite=True (--overwrite)"
            )
        raise CheckpointError(
            f"{run_dir} holds an unfinished run. Fix: continue it with resume={str(run_dir)!r} "
            f"(--resume {run_dir}) or start over with overwrite=True (--overwrite)"
        )
    if status is not None and clear:
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)


def _make_run_dir(run_dir: Path) -> None:
    """Create the run directory, or say which path is in the way and how to fix it."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ParameterError(
            f"cannot create the run directory {run_dir} ({exc.strerror or exc}). Fix: pass "
            "out_dir= (--out) a folder you can write to"
        ) from None


# ------------------------------------------------------------------------------- the loop
def _train_epoch(model, optimizer, batches: NextItemBatches, epoch_batches, ctx, autocast,
                 bar, loss_weighting: str = "batch") -> tuple[float, int]:
    """One pass over the epoch's batches; returns (mean train loss, targets) over all ranks.

    ``loss_weighting="batch"``: each step minimises its batch's mean cross-entropy, so every
    batch weighs the same; with length-bucketed batches that gives each *user* about the same
    weight (a batch of long sequences holds many more targets than one of short sequences).
    ``"target"``: each step's summed cross-entropy is divided by the epoch's mean number of
    targets per batch, so every (prefix, next item) pair weighs the same over the epoch, as in
    prefix-augmented training (RecBole's SASRec).
    """
    model.train()
    world, rank = ctx.world_size, ctx.rank
    mean_batch_targets = batches.total_targets / max(1, len(epoch_batches))
    loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)  # kept on the device:
    targets_seen = 0  # no host sync per step
    for step, rows in enumerate(epoch_batches):
        shard = rows[rank::world]  # every rank takes its slice of the same global batch
        inputs, targets = batches.materialise(shard)  # [b, w] each
        input_ids = torch.from_numpy(inputs).to(ctx.device, non_blocking=True)
        target_ids = torch.from_numpy(targets).to(ctx.device, non_blocking=True)
        local_targets = int(batches.n_targets[shard].sum())
        with autocast():
            loss = model(input_ids, target_ids)  # mean CE over this rank's targets
        if world > 1:
            # DDP averages gradients over ranks; weighting each rank's mean by its share of
            # the global batch's targets makes that average the global batch's mean gradient,
            # the same one a single process computes on the whole batch.
            global_targets = int(batches.n_targets[rows].sum())
            objective = loss * (local_targets * world / global_targets)
        else:
            objective = loss
            global_targets = local_targets
        if loss_weighting == "target":  # batch mean -> batch sum / epoch's mean batch size
            objective = objective * (global_targets / mean_batch_targets)
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        loss_sum += loss.detach().double() * local_targets
        targets_seen += local_targets
        if bar is not None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
    seen = torch.tensor(float(targets_seen), dtype=torch.float64, device=ctx.device)
    totals = ctx.sum_(torch.stack([loss_sum, seen]))  # [2]: summed over ranks
    return float(totals[0] / totals[1]), int(totals[1])


def train(
    dataset: str | SeqDataset = "synthetic",
    kind: str = "fame",
    out_dir=None,
    epochs: int | None = None,
    patience: int | None = None,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    device=None,
    max_len: int = 50,
    eval_every: int = 1,
    progress: bool = True,
    resume=None,
    overwrite: bool = False,
    threads: int | None = None,
    eval_batch_size: int = 256,
    dataset_options: dict | None = None,
    loss_weighting: str = "batch",
    **model_options,
) -> TrainResult:
    """Train a FAME or SASRec model with early stopping; see the module docstring.

    Args:
        dataset: a registered name (``"synthetic"``, ``"beauty"``, ...) or a :class:`SeqDataset`.
        kind: ``"fame"`` or ``"sasrec"``.
        out_dir: run directory; default :func:`default_run_dir`.
        epochs: most epochs to train (default 200). On resume: the new total (extends a run).
        patience: evaluations without a better validation NDCG@10 before stopping (default 10).
        batch_size: sequences per global batch (split across ranks under torchrun).
        lr: Adam learning rate.
        seed: seeds weights, batch order and dropout; same seed -> same run on CPU.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; default CUDA when available (bf16 autocast).
        max_len: longest input window (50 for Amazon, 200 for MovieLens, spec §4).
        eval_every: evaluate on the validation split every this many epochs (and at the end).
        progress: tqdm bars over epochs and batches.
        resume: a run directory to continue from its last finished epoch (the run's own
            ``train_args.json`` defines it; only ``epochs``/``patience`` may change).
        overwrite: replace an existing run in ``out_dir`` instead of refusing.
        threads: torch CPU threads (see the module docstring).
        eval_batch_size: users per evaluation batch.
        dataset_options: options for :func:`famekit.datasets.load` (e.g. synthetic sizes).
        loss_weighting: ``"batch"`` (each batch's mean; every batch weighs the same) or
            ``"target"`` (every training target weighs the same over the epoch); see
            ``_train_epoch``.
        **model_options: :class:`famekit.model.ModelConfig` fields (``d_model``, ``n_layers``,
            ``n_heads``, ``n_experts``, ``dropout``, ...).

    Raises:
        ParameterError: an invalid argument.  CheckpointError: the run directory already holds
        a run (without ``overwrite``/``resume``), or a resumed run is missing or damaged.
    """
    ctx = distributed.setup(device)
    try:
        return _train(ctx, dataset=dataset, out_dir=out_dir, progress=progress, resume=resume,
                      overwrite=overwrite, threads=threads, dataset_options=dataset_options,
                      kind=kind, epochs=epochs, patience=patience, batch_size=batch_size, lr=lr,
                      seed=seed, max_len=max_len, eval_every=eval_every,
                      eval_batch_size=eval_batch_size, loss_weighting=loss_weighting,
                      model_options=model_options)
    finally:
        distributed.teardown(ctx)


def _train(ctx: distributed.DistContext, *, dataset, out_dir, progress, resume, overwrite,
           threads, dataset_options, **requested) -> TrainResult:
    _set_threads(threads, ctx)
    if resume is not None:
        run_dir, args, data = _resumed_run(Path(resume), out_dir, dataset, requested)
    else:
        run_dir, args, data = _new_run(out_dir, dataset, dataset_options, requested)
    # Every argument is valid (the config checks the model options) before the disk is touched.
    config = _model_config(data.n_items, args["kind"], args["max_len"], args["model_options"])
    if resume is None:
        # Every rank checks and creates (so that all raise together); rank 0 alone clears.
        _prepare_run_dir(run_dir, overwrite, clear=ctx.is_main)
        _make_run_dir(run_dir)  # every rank: a refusal raises everywhere, none waits below
        ctx.barrier()  # no rank looks at the folder again before rank 0 is done with it
    return _fit(ctx, data, config, args, run_dir, progress, resumed=resume is not None)


def _new_run(out_dir, dataset, dataset_options, requested: dict) -> tuple[Path, dict, SeqDataset]:
    """(run directory, checked arguments, dataset) of a fresh run."""
    kind = requested["kind"]
    if kind not in ("fame", "sasrec"):
        raise ParameterError(f"kind must be 'fame' or 'sasrec', got {kind!r}. "
                             "Fix: pass kind='fame' (--model fame) or 'sasrec'")
    epochs, patience = requested["epochs"], requested["patience"]
    checked = {
        "epochs": _check_int("epochs", DEFAULT_EPOCHS if epochs is None else epochs, 1),
        "patience": _check_int("patience", DEFAULT_PATIENCE if patience is None else patience, 1),
        "batch_size": _check_int("batch_size", requested["batch_size"], 1),
        "lr": _check_lr(requested["lr"]),
        "seed": _check_int("seed", requested["seed"], 0),
        "max_len": _check_int("max_len", requested["max_len"], 1),
        "eval_every": _check_int("eval_every", requested["eval_every"], 1),
        "eval_batch_size": _check_int("eval_batch_size", requested["eval_batch_size"], 1),
        "loss_weighting": _check_choice("loss_weighting", requested["loss_weighting"],
                                        LOSS_WEIGHTINGS),
    }
    data, described = _resolve_dataset(dataset, dataset_options)
    args = {"famekit_version": famekit.__version__, "dataset": described, "kind": kind,
            **checked, "model_options": dict(requested["model_options"])}
    run_dir = (Path(out_dir) if out_dir is not None
               else default_run_dir(described["name"], kind, checked["seed"]))
    return run_dir, args, data


def _resumed_run(run_dir: Path, out_dir, dataset, requested: dict
                 ) -> tuple[Path, dict, SeqDataset]:
    """(run directory, saved arguments with the allowed changes, dataset) of a resumed run."""
    if out_dir is not None and Path(out_dir).resolve() != run_dir.resolve():
        raise ParameterError(
            f"out_dir={str(out_dir)!r} and resume={str(run_dir)!r} differ. Fix: a resumed "
            "run stays in its own directory; pass only resume"
        )
    if not (run_dir / TRAIN_ARGS_FILE).is_file():
        what = "does not exist" if not run_dir.exists() else f"has no {TRAIN_ARGS_FILE}"
        raise CheckpointError(
            f"cannot resume {run_dir}: it {what}. Fix: pass the directory of a run started "
            "by famekit train (it holds train_args.json)"
        )
    saved = _read_json(run_dir / TRAIN_ARGS_FILE)
    if isinstance(saved, dict):
        saved = {**_ADDED_RUN_ARGS, **saved}
    missing = sorted({*_RUN_DEFAULTS, "dataset", "epochs", "patience", "model_options"}
                     - set(saved))
    if missing or not all(isinstance(saved[k], dict) for k in ("dataset", "model_options")):
        raise CheckpointError(
            f"{run_dir / TRAIN_ARGS_FILE} lacks "
            f"{', '.join(missing) or 'dataset and model_options objects'}. "
            "Fix: restore the file, or start the run again (overwrite=True / --overwrite)"
        )
    args = _merge_resume_arguments(saved, requested, run_dir)
    _check_int("epochs", args["epochs"], 1)
    _check_int("patience", args["patience"], 1)
    saved_name = args["dataset"].get("name")
    if isinstance(dataset, SeqDataset):
        _check_fingerprint(dataset, args["dataset"])
        return run_dir, args, dataset
    if dataset not in ("synthetic", saved_name):  # "synthetic" is the default: not asked for
        raise ParameterError(
            f"cannot change the dataset when resuming {run_dir} (saved {saved_name!r}, "
            f"asked {dataset!r}). Fix: leave the dataset out, or start a new run"
        )
    return run_dir, args, load_dataset_of(args["dataset"])


def _fit(ctx, data: SeqDataset, config: ModelConfig, args: dict, run_dir: Path, progress: bool,
         resumed: bool) -> TrainResult:
    """Build (or restore) the model and optimizer, run the epochs, evaluate the best on test."""
    seed = args["seed"]
    torch.manual_seed(seed)  # initial weights (identical on every rank; DDP broadcasts rank 0's)
    model = build_model(config).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args["lr"])
    stopper = EarlyStopping(patience=args["patience"])
    history: list[dict] = []
    epoch = 0
    # A run interrupted before its first epoch finished has no train state: it starts over.
    if resumed and (run_dir / "train_state.json").is_file():
        state = load_train_state(run_dir, optimizer)
        try:  # an edited train_state.json can hold anything: refuse it in one clear line
            extra = state["extra_state"]
            _load_weights(model, extra["model"], run_dir)
            restore_rng_state(state["rng"])
            epoch = int(state["epoch"])
            stopper = EarlyStopping.from_dict(extra["early_stopping"], args["patience"])
            history = list(extra["history"])
            if not all(isinstance(row, dict) for row in history):
                raise TypeError("history rows must be objects")
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise CheckpointError(
                f"{run_dir / 'train_state.json'} is damaged or was edited ({type(exc).__name__}: "
                f"{exc}). Fix: restore the file, or start the run again (--overwrite)"
            ) from None
        if args["epochs"] < epoch:
            raise ParameterError(
                f"{run_dir} has already trained {epoch} epochs, more than epochs="
                f"{args['epochs']}. Fix: pass epochs >= {epoch} (--epochs) to continue it"
            )
    if ctx.is_main:  # after the checks above: a refused resume leaves the run as it was
        atomic_write_json(run_dir / TRAIN_ARGS_FILE, {**args, "world_size": ctx.world_size})

    batches = NextItemBatches(data.split().train_sequences(), args["max_len"], args["batch_size"])
    if len(batches) < ctx.world_size:
        raise ParameterError(
            f"dataset {data.name!r} has {len(batches)} users with >= 2 training items, fewer "
            f"than the {ctx.world_size} ranks. Fix: train on more users or fewer processes"
        )
    train_model = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    use_bf16 = ctx.device.type == "cuda"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()

    show = progress and ctx.is_main
    epoch_bar = tqdm(total=args["epochs"], initial=epoch, desc=f"train {config.kind}",
                     unit="epoch", disable=not show)
    try:
        while epoch < args["epochs"] and not stopper.stopped:
            epoch += 1
            started = time.perf_counter()
            _seed_torch_for_epoch(seed, epoch, ctx.rank)
            epoch_batches = batches.epoch(_epoch_rng(seed, epoch), min_rows=ctx.world_size)
            with tqdm(total=len(epoch_batches), desc=f"epoch {epoch}", unit="batch",
                      leave=False, disable=not show) as batch_bar:
                train_loss, _ = _train_epoch(train_model, optimizer, batches, epoch_batches, ctx,
                                             autocast, batch_bar if show else None,
                                             args["loss_weighting"])
            if not math.isfinite(train_loss):
                raise ParameterError(
                    f"training diverged at epoch {epoch} (loss {train_loss}). Fix: lower lr "
                    f"(now {args['lr']}) or raise dropout"
                )
            row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss,
                                   "train_seconds": time.perf_counter() - started}
            if epoch % args["eval_every"] == 0 or epoch == args["epochs"]:
                _validate(ctx, model, data, args, run_dir, stopper, epoch, row, epoch_bar)
            row["seconds"] = time.perf_counter() - started
            history.append(row)
            if ctx.is_main:
                save_train_state(run_dir, optimizer, epoch,
                                 extra_state={"model": model.state_dict(),
                                              "early_stopping": stopper.to_dict(),
                                              "history": history})
                _write_metrics(run_dir, "running", history,
                               _summary(args, stopper, epoch, status="running"))
            epoch_bar.update(1)
    finally:
        epoch_bar.close()

    result = TrainResult(run_dir=run_dir, best_epoch=stopper.best_epoch,
                         best_valid=dict(stopper.best_valid), test={}, history=history,
                         stopped_early=stopper.stopped)
    if ctx.is_main:
        result.test = _finish(ctx, data, args, run_dir, stopper, epoch, history, progress)
    ctx.barrier()
    return result


def _validate(ctx, model, data: SeqDataset, args: dict, run_dir: Path, stopper: EarlyStopping,
              epoch: int, row: dict, epoch_bar) -> None:
    """Rank 0 evaluates on "valid" and saves a new best; every rank follows its stop decision."""
    stop = torch.zeros(1, device=ctx.device)
    if ctx.is_main:
        valid = evaluate(model, data, split="valid", batch_size=args["eval_batch_size"],
                         progress=False)
        valid = {m: float(valid[m]) for m in METRIC_NAMES}
        row.update({f"valid_{m}": value for m, value in valid.items()})
        if stopper.update(epoch, valid):
            save_model(run_dir, model, dataset_name=args["dataset"]["name"],
                       dataset_fingerprint=data.fingerprint,
                       summary=_summary(args, stopper, epoch, status="running"))
        stop[0] = float(stopper.stopped)
        epoch_bar.set_postfix(loss=f"{row['train_loss']:.4f}",
                              ndcg10=f"{valid[SELECTION_METRIC]:.4f}",
                              best=f"{stopper.best_score:.4f}@{stopper.best_epoch}")
    stopper.stopped = bool(ctx.broadcast_(stop)[0].item())


def _finish(ctx, data: SeqDataset, args: dict, run_dir: Path, stopper: EarlyStopping,
            epoch: int, history: list[dict], progress: bool) -> dict:
    """Reload the best weights, evaluate them on "test", record the result (rank 0 only)."""
    best = load_run(run_dir, dataset=data, device=ctx.device)
    metrics = evaluate(best.model, data, split="test", batch_size=args["eval_batch_size"],
                       progress=progress)
    test = {m: float(metrics[m]) for m in METRIC_NAMES}
    test["users"] = int(metrics["users"])
    summary = _summary(args, stopper, epoch, status="finished", test=test)
    save_model(run_dir, best.model, dataset_name=args["dataset"]["name"],
               dataset_fingerprint=data.fingerprint, summary=summary)
    _write_metrics(run_dir, "finished", history, summary)
    return test


def _summary(args: dict, stopper: EarlyStopping, epoch: int, status: str,
             test: dict | None = None) -> dict:
    """The training summary stored in config.json and metrics.json."""
    return {
        "status": status,
        "kind": args["kind"],
        "dataset": args["dataset"]["name"],
        "epochs_run": epoch,
        "selection_metric": f"valid {SELECTION_METRIC}",
        "best_epoch": stopper.best_epoch,
        "best_valid": dict(stopper.best_valid),
        "stopped_early": stopper.stopped,
        "test": dict(test or {}),
    }
