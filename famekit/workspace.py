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

import copy
from dataclasses import dataclass, replace
from pathlib import Path

from famekit.checkpoints import Run
from famekit.datasets import SeqDataset
from famekit.errors import ParameterError
from famekit.runs import RunDir, default_run_dir, runs_root
from famekit.train_config import TrainConfig

__all__ = [
    "FACETED_DATASETS",
    "QUICK_RECIPE",
    "RECIPES",
    "RUN_KINDS",
    "Opened",
    "Recipe",
    "default_run",
    "ensure_run",
    "open_facet_runs",
    "open_run",
    "recipe",
    "runs_root",
]


@dataclass(frozen=True)
class Recipe:
    """How a dataset's default runs are trained: a training configuration and the options the
    dataset is loaded with (``famekit.datasets.load(name, **dataset_options)``)."""

    config: TrainConfig
    dataset_options: dict | None = None


# Real datasets weigh every training target equally (loss_weighting="target"), chosen on
# Beauty's validation split; the measurement is in docs/decisions.md.
_REAL = TrainConfig(loss_weighting="target")
# The recipes of the benchmarks: overrides of TrainConfig's defaults (d=64, L=2, H=4, N=4,
# dropout 0.2, 200 epochs at most, patience 10).
RECIPES: dict[str, Recipe] = {
    # the embedded default: small batches give enough optimizer steps on 4,000 users
    "synthetic": Recipe(TrainConfig(batch_size=64, lr=2e-3, epochs=15, patience=3)),
    "beauty": Recipe(_REAL.with_options(dropout=0.5)),
    "sports": Recipe(_REAL.with_options(dropout=0.5)),
    "toys": Recipe(_REAL.with_options(dropout=0.5)),
    "ml-100k": Recipe(replace(_REAL, max_len=200)),
    "ml-1m": Recipe(replace(_REAL, max_len=200)),
    "ml-20m": Recipe(replace(_REAL, max_len=200)),
}
# What CI runs notebooks with: a tiny world and a few epochs (seconds, not minutes).
QUICK_RECIPE = Recipe(
    TrainConfig(max_len=30, epochs=3, patience=3, batch_size=64, lr=3e-3,
                model_options=dict(d_model=16, n_experts=3)),
    dataset_options=dict(n_users=400, n_items=240, n_brands=12))


# The default runs a report and the notebooks can ask for, by name: the model kinds, FAME+
# (FAME with a facet on each of its first heads) and SASRec + metadata (SASRec trained with the
# same facet loss on its whole item embedding: the baseline FAME+'s accuracy is measured
# against). The two faceted kinds exist where FACETED_DATASETS names the facets.
RUN_KINDS: dict[str, dict] = {
    "fame": {"kind": "fame"},
    "sasrec": {"kind": "sasrec"},
    "fameplus": {"kind": "fame"},
    "sasrec-meta": {"kind": "sasrec", "facet_target": "embedding"},
}
# Datasets whose default FAME+ runs famekit knows the facets of (heads 0..k-1, in order).
FACETED_DATASETS: dict[str, tuple[str, ...]] = {"synthetic": ("genre", "brand", "price_tier")}


def run_config(dataset: str, kind: str, seed: int = 0, quick: bool = False) -> TrainConfig:
    """The configuration of the default ``kind`` run (a :data:`RUN_KINDS` name) of
    ``dataset``: its recipe, with the kind's options and, for a faceted kind, the facets."""
    if kind not in RUN_KINDS:
        raise ParameterError(f"unknown run kind {kind!r}. Fix: use one of "
                             f"{', '.join(RUN_KINDS)}")
    options = dict(RUN_KINDS[kind], seed=seed)
    if kind in ("fameplus", "sasrec-meta"):
        if dataset not in FACETED_DATASETS:
            raise ParameterError(
                f"famekit has no default {kind} run for {dataset!r}: it knows the facets of "
                f"{', '.join(FACETED_DATASETS)} only. Fix: train one yourself (famekit train "
                f"--dataset {dataset} --facets FIELD,...) and pass its folder as RUN_DIR")
        options["facets"] = FACETED_DATASETS[dataset]
    return replace(recipe(dataset, quick).config, **options)


def recipe(dataset: str, quick: bool = False) -> Recipe:
    """The recipe of a dataset's default runs (``quick``: the tiny CI profile, synthetic only);
    a copy, so that changing it changes no later run."""
    if quick:
        if dataset != "synthetic":
            raise ParameterError(
                f"quick=True only shrinks the synthetic world, not {dataset!r}. "
                "Fix: use DATASET='synthetic' with QUICK, or QUICK=False"
            )
        return copy.deepcopy(QUICK_RECIPE)
    if dataset not in RECIPES:
        raise ParameterError(
            f"no training recipe for dataset {dataset!r}. Fix: use one of {sorted(RECIPES)}, "
            "or train it yourself (famekit train) and pass RUN_DIR"
        )
    return copy.deepcopy(RECIPES[dataset])


def default_run(dataset: str, kind: str = "fame", seed: int = 0, quick: bool = False) -> Path:
    """The default run directory of a dataset, model kind and seed."""
    return default_run_dir(dataset, kind, seed, quick)


def ensure_run(dataset: str = "synthetic", kind: str = "fame", seed: int = 0,
               quick: bool = False, progress: bool = True) -> Path:
    """The default run of ``dataset``/``kind``/``seed``, trained first if it is missing
    (``kind``: a :data:`RUN_KINDS` name: ``"fame"``, ``"sasrec"``, ``"fameplus"`` or
    ``"sasrec-meta"``).

    An interrupted run (started, not finished) is resumed, not restarted.
    """
    from famekit.training import train

    run = RunDir.default(dataset, kind, seed, quick)
    status = run.status
    if status == "finished":
        return run.path
    chosen = recipe(dataset, quick)
    config = run_config(dataset, kind, seed, quick)
    # Said before a notebook cell goes quiet for a while (notebooks train without bars).
    print(f"famekit: {'resuming' if status == 'running' else 'training'} the default {kind} run "
          f"of {dataset!r} in {run.path} ({'the quick profile' if quick else 'its recipe'}; "
          f"up to {chosen.config.epochs} epochs). It is cached there for the next notebook; "
          "set FAMEKIT_RUNS to keep runs elsewhere, or RUN_DIR to use a run you trained.",
          flush=True)
    if status == "running":
        train(resume=run.path, progress=progress)
    else:
        train(dataset, config, out_dir=run.path, progress=progress,
              dataset_options=chosen.dataset_options)
    return run.path


@dataclass
class Opened:
    """A loaded run and the dataset it was trained on."""

    dataset: SeqDataset
    run: Run
    run_dir: Path

    @property
    def model(self):
        return self.run.model

    @property
    def facets(self) -> tuple[str, ...]:
        """The fields on heads 0..k-1 of a FAME+ run; ``()`` otherwise."""
        return self.run.facets

    @property
    def head_labels(self) -> list[str]:
        """``"head 0 · genre"`` where a head carries a facet, else ``"head h"``."""
        return self.run.head_labels


def open_run(dataset: str = "synthetic", run_dir=None, seed: int = 0, kind: str = "fame",
             quick: bool = False, progress: bool = True) -> Opened:
    """Load ``run_dir`` (or the dataset's default run, trained if needed) with its dataset.

    The dataset is reloaded exactly as the run recorded it (name, options) and its fingerprint
    is checked, so a notebook can never analyse a model against the wrong data.
    """
    if run_dir is None:
        run_dir = ensure_run(dataset, kind=kind, seed=seed, quick=quick, progress=progress)
    run = RunDir(run_dir).require()
    data = run.load_dataset()
    return Opened(data, run.load(dataset=data), run.path)


@dataclass
class FacetRuns:
    """What notebook 07 compares: a FAME+ run and the plain FAME run beside it (None where the
    dataset has no default FAME run to compare with)."""

    plus: Opened
    fame: Opened | None

    @property
    def dataset(self) -> SeqDataset:
        return self.plus.dataset

    @property
    def facets(self) -> tuple[str, ...]:
        return self.plus.facets


def open_facet_runs(dataset: str = "synthetic", run_dir=None, fameplus_run_dir=None,
                    seed: int = 0, quick: bool = False, progress: bool = True
                    ) -> FacetRuns | None:
    """The FAME+ run to look at and its FAME baseline, or None when there is none to show.

    ``run_dir``: a FAME run, or a FAME+ run (then it is the one looked at);
    ``fameplus_run_dir``: a FAME+ run. Without either, the dataset's default runs (trained if
    missing) where :data:`FACETED_DATASETS` knows its facets, else None. A "FAME+ run" without
    facets on its heads is refused.
    """
    given = open_run(dataset, run_dir, seed, quick=quick, progress=progress) if run_dir else None
    if given is not None and given.facets:  # RUN_DIR is itself the FAME+ run
        plus = given
        fame = (open_run(dataset, None, seed, "fame", quick, progress)
                if dataset in RECIPES else None)
        return FacetRuns(plus, fame)
    if fameplus_run_dir is None and dataset not in FACETED_DATASETS:
        return None
    plus = open_run(dataset, fameplus_run_dir, seed, "fameplus", quick, progress)
    if not plus.facets:  # refused before a baseline is trained for it
        raise ParameterError(
            f"{plus.run_dir} has no facet on its heads. Fix: pass a run trained with famekit "
            "train --facets FIELD,... (FAMEPLUS_RUN_DIR)")
    return FacetRuns(plus, given or open_run(dataset, None, seed, "fame", quick, progress))
