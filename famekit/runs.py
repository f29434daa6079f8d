"""A run directory: where it lives, what it holds, and the one object that reads and writes it.

Everything famekit trains is a folder; :class:`RunDir` is the only code that knows its files,
so the training loop, ``famekit.load``, the notebooks' workspace, the report runner, the
explorer and the CLI all ask it instead of opening JSON themselves:

==========================  ==========================================================
``config.json``             model config, dataset fingerprint, summary (best epoch,
                            validation and test metrics); the commit point of the weights
``model.safetensors``       weights of the best validation epoch
``train_state.*``           the last finished epoch, what resume continues from: weights,
                            optimizer, epoch, early-stopping counters, history, RNG states
``metrics.csv``             one row per epoch: epoch, train_loss, valid_* metrics, seconds
``metrics.json``            the same history plus status, best epoch and test metrics
``train_args.json``         the training configuration and the dataset description (what
                            resume rebuilds the run from)
==========================  ==========================================================

The tensor files and their JSON partners are written by :mod:`famekit.checkpoints` (safetensors,
never pickle; each pair committed atomically); the rest through :mod:`famekit.fileio`.

Where runs live, one rule: ``$FAMEKIT_RUNS/<dataset>-<kind>-seed<seed>`` (``runs/`` under the
current directory when the variable is unset), with ``-quick`` for the tiny profile CI runs
(:func:`default_run_dir`).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from famekit import checkpoints
from famekit.errors import CheckpointError, ParameterError
from famekit.evaluation import METRIC_NAMES
from famekit.fileio import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    exclusive_lock,
    read_json,
)
from famekit.validation import check_int, check_name

if TYPE_CHECKING:  # the dataset layer is imported when a dataset is loaded, not before
    from famekit.datasets import SeqDataset
    from famekit.train_config import TrainConfig

__all__ = [
    "RunDir",
    "dataset_for_run",
    "dataset_of_run",
    "default_run_dir",
    "describe_dataset",
    "load_described_dataset",
    "run_status",
    "runs_root",
]

CONFIG_FILE = checkpoints.CONFIG_FILE
WEIGHTS_FILE = checkpoints.WEIGHTS_FILE
TRAIN_STATE_JSON = checkpoints.TRAIN_STATE_JSON_FILE
TRAIN_STATE_TENSORS = checkpoints.TRAIN_STATE_TENSORS_FILE
TRAIN_ARGS_FILE = "train_args.json"
METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
LOCK_FILE = ".lock"  # held while a process trains into the folder (famekit.fileio.exclusive_lock)
# Files a run writes; clearing a run removes exactly these (never anything else in the folder).
RUN_FILES = (
    CONFIG_FILE,
    WEIGHTS_FILE,
    TRAIN_STATE_JSON,
    TRAIN_STATE_TENSORS,
    METRICS_CSV,
    METRICS_JSON,
    TRAIN_ARGS_FILE,
    WEIGHTS_FILE + ".prev",  # the committed half of a pair, kept while a save is in flight
    TRAIN_STATE_TENSORS + ".prev",
)
# What a copy of a run keeps (a report's bundled runs): enough to load it and to re-execute a
# notebook over it, no optimizer state.
PORTABLE_FILES = (CONFIG_FILE, WEIGHTS_FILE, TRAIN_ARGS_FILE, METRICS_CSV, METRICS_JSON)
_DAMAGED_FIX = "restore the file, or start the run again (overwrite=True / --overwrite)"


# ------------------------------------------------------------------------------- locations
def runs_root() -> Path:
    """``$FAMEKIT_RUNS``, else ``runs/`` under the current directory (absolute)."""
    return Path(os.environ.get("FAMEKIT_RUNS") or "runs").absolute()


def default_run_dir(dataset_name: str, kind: str = "fame", seed: int = 0,
                    quick: bool = False) -> Path:
    """Where the default run of a dataset, model kind and seed lives (the one rule)."""
    suffix = "-quick" if quick else ""
    # names, never paths: "../x" must not reach outside the runs root
    dataset_name = check_name("dataset", dataset_name, fix="pass a dataset name, or out_dir= "
                              "(--out / RUN_DIR) for a folder of your choice")
    kind = check_name("kind", kind)
    seed = check_int("seed", seed, minimum=0)
    return runs_root() / f"{dataset_name}-{kind}-seed{seed}{suffix}"


def run_status(run_dir) -> str | None:
    """``"finished"``, ``"running"`` (started, not finished: resumable) or None (no run)."""
    return RunDir(run_dir).status


# ------------------------------------------------------------------------------- datasets
def describe_dataset(dataset, options: dict | None = None) -> tuple[SeqDataset, dict]:
    """The dataset (loaded when given by name) and the JSON description that loads it again.

    The description goes into ``train_args.json``: a registered name with its options, or the
    files of a dataset read with :func:`famekit.datasets.load_files`, or (for a dataset built
    in memory) a marker that it cannot be reloaded; always with its fingerprint.
    """
    from famekit import datasets

    if isinstance(dataset, datasets.SeqDataset):
        if options:
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
            f"Fix: pass one of {', '.join(datasets.names())} or a SeqDataset"
        )
    options = dict(options or {})
    loaded = datasets.load(dataset, **options)
    return loaded, {"name": dataset, "options": options, "fingerprint": loaded.fingerprint}


def load_described_dataset(described: dict) -> SeqDataset:
    """Load the dataset a :func:`describe_dataset` description names, checking its fingerprint."""
    from famekit import datasets

    if described.get("in_memory"):
        raise CheckpointError(
            f"the run was trained on an in-memory dataset {described.get('name')!r} that "
            "famekit cannot reload. Fix: pass the same SeqDataset again (dataset=...)"
        )
    if described.get("sequences"):
        dataset = datasets.load_files(
            described["sequences"], described.get("items"), name=described.get("name", "files")
        )
    else:
        dataset = datasets.load(described["name"], **described.get("options", {}))
    check_fingerprint(dataset, described)
    return dataset


def check_fingerprint(dataset: SeqDataset, described: dict, where: str = "the run") -> None:
    """Refuse ``dataset`` when it is not the data ``described`` (a run's record) was made on."""
    expected = described.get("fingerprint")
    if expected and dataset.fingerprint != expected:
        raise CheckpointError(
            f"dataset {dataset.name!r} has fingerprint {dataset.fingerprint} but {where} was "
            f"trained on {described.get('name')!r} with fingerprint {expected}. Fix: use the "
            "same data the run was trained on (same source, options and files), or train a "
            "new run on this one (another --out)"
        )


# ------------------------------------------------------------------------------- the run
class RunDir:
    """One run directory (see the module docstring); cheap to make, reads files on demand.

    >>> run = RunDir("runs/synthetic-fame-seed0")
    >>> run.status, run.summary()["best_epoch"]
    >>> loaded = run.load()              # the model, with the dataset's fingerprint checked
    """

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @classmethod
    def default(cls, dataset_name: str, kind: str = "fame", seed: int = 0,
                quick: bool = False) -> RunDir:
        """The default run of a dataset (:func:`default_run_dir`)."""
        return cls(default_run_dir(dataset_name, kind, seed, quick))

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------- what it holds
    @property
    def status(self) -> str | None:
        """``"finished"``, ``"running"`` (started, not finished: resumable) or None (no run)."""
        if (self.path / METRICS_JSON).is_file():
            return "finished" if self.metrics().get("status") == "finished" else "running"
        return "running" if (self.path / TRAIN_ARGS_FILE).is_file() else None

    def _read(self, name: str, fix: str = _DAMAGED_FIX) -> dict:
        return read_json(self.path / name, fix=fix)

    def require(self) -> RunDir:
        """This run, or a CheckpointError when the directory does not exist."""
        if not self.path.is_dir():
            problem = "is not a directory" if self.path.exists() else "does not exist"
            raise CheckpointError(
                f"run directory {self.path} {problem}. Fix: pass a directory written by "
                "famekit train (famekit train --out DIR creates one), or RUN_DIR=None in a "
                "notebook to use the dataset's default run"
            )
        return self

    def train_args(self) -> dict:
        """``train_args.json`` as written: the configuration, the dataset description, the
        famekit version and the number of processes."""
        return self._read(TRAIN_ARGS_FILE)

    def train_config(self) -> TrainConfig:
        """The training configuration the run was started with."""
        from famekit.train_config import TrainConfig

        return TrainConfig.from_saved(self.train_args(), self.path / TRAIN_ARGS_FILE)

    def config(self) -> dict:
        """``config.json`` (model config, dataset record, summary) as written."""
        return self._read(CONFIG_FILE)

    def summary(self) -> dict:
        """The training summary of the saved weights (``config.json``'s ``summary``): status,
        best epoch, validation and test metrics; empty when the run has no weights yet."""
        if not (self.path / CONFIG_FILE).is_file():
            return {}
        summary = self.config().get("summary")
        return summary if isinstance(summary, dict) else {}

    def metrics(self) -> dict:
        """``metrics.json``: status, summary and the per-epoch history."""
        return self._read(METRICS_JSON)

    @property
    def history_csv(self) -> Path:
        """``metrics.csv``, one row per finished epoch (what learning-curve figures read)."""
        return self.path / METRICS_CSV

    def dataset_description(self) -> dict:
        """How the run's dataset is loaded again (``train_args.json``, else the record a run
        saved by :func:`famekit.checkpoints.save_model` alone keeps in ``config.json``)."""
        self.require()
        if (self.path / TRAIN_ARGS_FILE).is_file():
            described = self.train_args().get("dataset")
        elif (self.path / CONFIG_FILE).is_file():
            described = self.config().get("dataset")
        else:
            raise CheckpointError(f"{self.path / CONFIG_FILE} is missing. Fix: pass a run "
                                  "directory written by famekit train")
        if not isinstance(described, dict) or not described.get("name"):
            raise CheckpointError(
                f"{self.path} does not say which dataset it was trained on. Fix: train it again "
                "with famekit train, or pass the dataset yourself"
            )
        return described

    def load_dataset(self) -> SeqDataset:
        """The dataset the run was trained on, reloaded and fingerprint-checked.

        A run saved by :func:`famekit.checkpoints.save_model` alone records only the dataset's
        name and fingerprint: it is reloaded as that registered dataset with default options,
        and refused (pass its dataset yourself) when there is no such dataset or its data differ.
        """
        described = self.dataset_description()
        if (self.path / TRAIN_ARGS_FILE).is_file():
            return load_described_dataset(described)
        from famekit.errors import UnknownNameError

        try:
            return load_described_dataset(described)
        except (CheckpointError, UnknownNameError):
            raise CheckpointError(
                f"{self.path} has no {TRAIN_ARGS_FILE} to reload its dataset from, and its "
                f"{CONFIG_FILE} names {described['name']!r}, which is not a registered dataset "
                "with default options and the recorded fingerprint. Fix: pass the dataset "
                "explicitly, e.g. famekit.load(run_dir, dataset=...) or UserExplorer(run, "
                "dataset)"
            ) from None

    def check_dataset(self, dataset: SeqDataset) -> None:
        """Refuse a dataset other than the one the run was trained on (fingerprints differ)."""
        check_fingerprint(dataset, self.dataset_description(), where=str(self.path))

    def load(self, dataset: SeqDataset | None = None, device=None) -> checkpoints.Run:
        """The saved model (eval mode); with ``dataset``, its fingerprint is checked first."""
        return checkpoints.load_run(self.path, dataset=dataset, device=device)

    # ------------------------------------------------------------------- writing
    def refuse_to_clobber(self, overwrite: bool) -> None:
        """Refuse a directory that already holds a run, or a non-empty folder that holds none
        (:meth:`refuse_foreign`), unless ``overwrite``."""
        self.refuse_foreign(overwrite)
        status = self.status
        if status is None or overwrite:
            return
        if status == "finished":
            raise CheckpointError(
                f"{self.path} already holds a finished run. Fix: evaluate it (famekit evaluate "
                f"{self.path}), choose another --out, or pass overwrite=True (--overwrite)"
            )
        raise CheckpointError(
            f"{self.path} holds an unfinished run. Fix: continue it with "
            f"resume={str(self.path)!r} (--resume {self.path}) or start over with "
            "overwrite=True (--overwrite)"
        )

    def lock(self):
        """A context manager holding this run's lock (``.lock``, never through a link): one
        writer at a time; a second train or resume into the folder is refused while it runs."""
        def busy(holder: str) -> CheckpointError:
            return CheckpointError(
                f"another famekit process ({holder}) is writing the run {self.path}. Fix: wait "
                "for it to finish, or train into another --out")

        return exclusive_lock(self.path / LOCK_FILE, busy)

    def foreign_files(self) -> list[str]:
        """Names in the folder that no famekit run explains: non-empty for a folder famekit
        did not create (a run's own files and its lock are not foreign)."""
        if not self.path.is_dir() or self.status is not None or self._is_saved_model():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.name != LOCK_FILE)

    def _is_saved_model(self) -> bool:
        """config.json written by famekit.checkpoints.save_model (weights without a training)."""
        if not (self.path / CONFIG_FILE).is_file():
            return False
        try:
            meta = self.config()
        except CheckpointError:
            return False
        return "format_version" in meta and "model_config" in meta

    def refuse_foreign(self, overwrite: bool) -> None:
        """Refuse a non-empty folder that holds no famekit run, unless ``overwrite``."""
        found = self.foreign_files()
        if found and not overwrite:
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5
                                            else "")
            raise CheckpointError(
                f"{self.path} is not empty and holds no famekit run ({shown}); famekit does "
                "not write into a folder it did not create. Fix: choose a new or empty --out, "
                "or pass overwrite=True (--overwrite) to write there anyway (famekit then "
                "replaces only its own file names: " + ", ".join(RUN_FILES[:7]) + ")")

    def clear(self) -> None:
        """Remove the files a run writes (and nothing else in the folder)."""
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)

    def create(self) -> None:
        """Create the directory, or say which path is in the way and how to fix it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ParameterError(
                f"cannot create the run directory {self.path} ({exc.strerror or exc}). Fix: "
                "pass out_dir= (--out) a folder you can write to"
            ) from None

    def write_train_args(self, config: TrainConfig, dataset_description: dict,
                         world_size: int, famekit_version: str | None = None) -> None:
        """``train_args.json``; ``famekit_version``: the version that started the run (a
        resumed run keeps it), default this one."""
        import famekit

        atomic_write_json(self.path / TRAIN_ARGS_FILE, {
            "famekit_version": famekit_version or famekit.__version__,
            "dataset": dataset_description, **config.to_dict(), "world_size": world_size})

    def write_metrics(self, status: str, history: list[dict], summary: dict) -> None:
        """``metrics.csv`` (one row per epoch) and ``metrics.json`` (status, summary, history)."""
        atomic_write_text(self.path / METRICS_CSV, _history_csv(history))
        atomic_write_json(self.path / METRICS_JSON, {"status": status, **summary,
                                                     "history": history})

    def save_model(self, model, dataset_name: str, dataset_fingerprint: str,
                   summary: dict) -> None:
        """The weights and ``config.json`` (with the dataset's name and fingerprint)."""
        checkpoints.save_model(self.path, model, dataset_name=dataset_name,
                               dataset_fingerprint=dataset_fingerprint, summary=summary)

    def has_weights(self) -> bool:
        return (self.path / WEIGHTS_FILE).is_file()

    def has_train_state(self) -> bool:
        return (self.path / TRAIN_STATE_JSON).is_file()

    def save_train_state(self, optimizer, epoch: int, extra_state: dict) -> None:
        checkpoints.save_train_state(self.path, optimizer, epoch, extra_state=extra_state)

    def load_train_state(self, optimizer) -> dict:
        return checkpoints.load_train_state(self.path, optimizer)

    def copy_to(self, target) -> RunDir:
        """Copy the portable files (weights and JSON, no optimizer state) into ``target``,
        replacing an older copy there in one rename (a reader sees the old copy or the new)."""
        target = Path(target)
        if target.resolve() == self.path.resolve():
            return RunDir(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            for name in PORTABLE_FILES:
                if (self.path / name).is_file():
                    atomic_write_bytes(staging / name, (self.path / name).read_bytes())
            old = target.parent / f".{target.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return RunDir(target)


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


# ------------------------------------------------------------------------------- shortcuts
def dataset_of_run(run_dir) -> SeqDataset:
    """Load the dataset a run directory was trained on (fingerprint checked)."""
    return RunDir(run_dir).load_dataset()


def dataset_for_run(run: checkpoints.Run, dataset: SeqDataset | None = None) -> SeqDataset:
    """The dataset to analyse a loaded run with: ``dataset`` after checking it is the one the
    run was trained on, or (None) the run's own dataset reloaded from its directory.

    A wrong or missing dataset is the caller's argument to fix, so it is a ParameterError (with
    the run layer's message).
    """
    try:
        if dataset is None:
            return RunDir(run.run_dir).load_dataset()
        recorded = run.meta.get("dataset") if isinstance(run.meta, dict) else None
        check_fingerprint(dataset, recorded if isinstance(recorded, dict) else {},
                          where=str(run.run_dir))
    except CheckpointError as exc:
        raise ParameterError(str(exc)) from None
    return dataset
