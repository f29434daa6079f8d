"""Where trained runs live, and how notebooks and reports get one without training in a cell.

A notebook asks for ``open_run(DATASET, RUN_DIR, SEED)``: with ``RUN_DIR`` given it loads that
run; without, it uses the default run of the dataset under :func:`runs_root`, training it first
(through :func:`famekit.training.train`, so with progress bars, checkpoints and resume) when it
does not exist yet. The result is cached on disk: the second notebook, and the next report,
reuse it.

Training recipes per dataset (:data:`RECIPES`) are the protocol of the benchmarks; ``quick=True``
is the tiny profile CI runs the notebooks with (a small world, a few epochs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from famekit import datasets
from famekit.checkpoints import Run, load_run
from famekit.datasets import SeqDataset
from famekit.errors import CheckpointError, ParameterError

__all__ = [
    "QUICK_RECIPE",
    "RECIPES",
    "Opened",
    "default_run",
    "ensure_run",
    "open_run",
    "runs_root",
]

# Model and optimisation settings per dataset (spec §4 defaults: d=64, L=2, H=4, N=4).
# `dataset_options` go to famekit.datasets.load; everything else to famekit.training.train.
_BASE = dict(d_model=64, n_layers=2, n_heads=4, n_experts=4, dropout=0.2, max_len=50,
             epochs=200, patience=10)
# Real datasets weigh every training target equally (loss_weighting="target"): chosen on
# Beauty's validation split (benchmarks/reproduce.py, reports/benchmarks/README.md); with the
# per-batch mean ("batch") SASRec's best valid NDCG@10 was 0.062 instead of 0.07.
_REAL = {**_BASE, "loss_weighting": "target"}
RECIPES: dict[str, dict] = {
    # the embedded default: small batches give enough optimizer steps on 4,000 users
    "synthetic": {**_BASE, "batch_size": 64, "lr": 2e-3, "epochs": 15, "patience": 3},
    "beauty": {**_REAL, "dropout": 0.5},
    "sports": {**_REAL, "dropout": 0.5},
    "toys": {**_REAL, "dropout": 0.5},
    "ml-100k": {**_REAL, "max_len": 200},
    "ml-1m": {**_REAL, "max_len": 200},
    "ml-20m": {**_REAL, "max_len": 200},
}
# What CI runs notebooks with: a tiny world and a few epochs (seconds, not minutes).
QUICK_RECIPE = dict(d_model=16, n_layers=2, n_heads=4, n_experts=3, dropout=0.2, max_len=30,
                    epochs=3, patience=3, batch_size=64, lr=3e-3,
                    dataset_options=dict(n_users=400, n_items=240, n_brands=12))


def runs_root() -> Path:
    """``$FAMEKIT_RUNS``, else ``runs/`` under the current directory."""
    return Path(os.environ.get("FAMEKIT_RUNS") or "runs").absolute()


def _recipe(dataset: str, quick: bool) -> dict:
    if quick:
        if dataset != "synthetic":
            raise ParameterError(
                f"quick=True only shrinks the synthetic world, not {dataset!r}. "
                "Fix: use DATASET='synthetic' with QUICK, or QUICK=False"
            )
        return dict(QUICK_RECIPE)
    if dataset not in RECIPES:
        raise ParameterError(
            f"no training recipe for dataset {dataset!r}. Fix: use one of {sorted(RECIPES)}, "
            "or train it yourself (famekit train) and pass RUN_DIR"
        )
    return dict(RECIPES[dataset])


def default_run(dataset: str, kind: str = "fame", seed: int = 0, quick: bool = False) -> Path:
    """The default run directory of a dataset, model kind and seed."""
    suffix = "-quick" if quick else ""
    return runs_root() / f"{dataset}-{kind}-seed{seed}{suffix}"


def ensure_run(dataset: str = "synthetic", kind: str = "fame", seed: int = 0,
               quick: bool = False, progress: bool = True) -> Path:
    """The default run of ``dataset``/``kind``/``seed``, trained first if it is missing.

    An interrupted run (started, not finished) is resumed, not restarted.
    """
    from famekit.training import run_status, train

    run_dir = default_run(dataset, kind, seed, quick)
    status = run_status(run_dir)
    if status == "finished":
        return run_dir
    recipe = _recipe(dataset, quick)
    options = recipe.pop("dataset_options", None)
    if status == "running":
        train(resume=run_dir, progress=progress)
    else:
        train(dataset, kind=kind, out_dir=run_dir, seed=seed, progress=progress,
              dataset_options=options, **recipe)
    return run_dir


@dataclass
class Opened:
    """A loaded run and the dataset it was trained on."""

    dataset: SeqDataset
    run: Run
    run_dir: Path

    @property
    def model(self):
        return self.run.model


def open_run(dataset: str = "synthetic", run_dir=None, seed: int = 0, kind: str = "fame",
             quick: bool = False, progress: bool = True) -> Opened:
    """Load ``run_dir`` (or the dataset's default run, trained if needed) with its dataset.

    The dataset is reloaded exactly as the run recorded it (name, options) and its fingerprint
    is checked, so a notebook can never analyse a model against the wrong data.
    """
    from famekit.training import load_dataset_of

    if run_dir is None:
        run_dir = ensure_run(dataset, kind=kind, seed=seed, quick=quick, progress=progress)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(
            f"run directory {run_dir} does not exist. Fix: pass an existing run (famekit train "
            "--out DIR creates one), or RUN_DIR=None to use the default run"
        )
    args_path = run_dir / "train_args.json"
    try:
        import json

        described = json.loads(args_path.read_text())["dataset"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):  # tampered or not JSON
        raise CheckpointError(
            f"{args_path} is missing or unreadable, so the run's dataset is unknown. "
            "Fix: pass a run directory written by famekit train"
        ) from None
    data = load_dataset_of(described) if isinstance(described, dict) else datasets.load(described)
    return Opened(data, load_run(run_dir, dataset=data), run_dir)
