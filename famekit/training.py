"""Training FAME and SASRec: the loop, early stopping and resume.

>>> from famekit.training import train
>>> result = train("synthetic", kind="fame", epochs=60, patience=10)
>>> result.run_dir, result.best_epoch, result.test["NDCG@10"]

What one epoch does (docs/fame-spec.md §4): every user's training sequence ``s`` gives
``s[:-1] -> s[1:]`` (the last ``max_len`` items, left-padded); rows are grouped into
length-bucketed batches (sort by length with seeded noise, chunk, shuffle the chunks, trim each
to its longest row) and the model scores only the non-padding target positions with
cross-entropy over all items; Adam updates. After each evaluation epoch the validation NDCG@10
decides early stopping and the best weights are saved; at the end the best weights are reloaded
and evaluated on the test split.

FAME+ (``facets=[...]``, docs/fame-spec.md §8): before epoch 1 the run pre-trains its item
embedding with the facet loss alone (:func:`pretrain_facets`), and/or adds the facet loss to
every step (:func:`facet_step_loss`, through ``train_epoch``'s ``extra_loss``), as
``facet_schedule`` says. The pre-training record goes into the run's summary.

What a run is trained with is a :class:`famekit.train_config.TrainConfig` (every default lives
there); where it is written and what it holds is :class:`famekit.runs.RunDir`'s business.

Reproducibility: every epoch draws its batches from :func:`epoch_rng` (``[seed, epoch]``) and
re-seeds torch (dropout) with :func:`seed_torch_for_epoch` (``seed, epoch, rank``), so an epoch
depends only on the weights and optimizer state it starts from. That is why a resumed run
equals an uninterrupted one and why two CPU runs with the same seed (and the same thread count)
agree to the last digit.

Threads: CPU training uses ``threads`` torch threads; the default is every core this process may
run on (divided among the local ranks of a torchrun job), unless ``OMP_NUM_THREADS`` is set, in
which case torch's own setting is kept. Set it with ``threads=`` / ``famekit train --threads N``
or ``OMP_NUM_THREADS=N``. On a busy machine, use the number of idle cores.

Distributed: under ``torchrun`` (see :mod:`famekit.distributed`) the same call trains with DDP.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from famekit import distributed
from famekit.batching import NextItemBatches
from famekit.checkpoints import restore_rng_state
from famekit.datasets import DEFAULT_DATASET, SeqDataset
from famekit.errors import CheckpointError, ParameterError
from famekit.evaluation import METRIC_NAMES, evaluate
from famekit.facets import FacetObjective, FacetWarning
from famekit.fameplus import facet_objective, facet_step_loss, pretrain_facets
from famekit.model import ModelConfig, build_model
from famekit.runs import (
    TRAIN_ARGS_FILE,
    TRAIN_STATE_JSON,
    TRAIN_STATE_TENSORS,
    RunDir,
    check_fingerprint,
    dataset_of_run,
    default_run_dir,
    describe_dataset,
    load_described_dataset,
    run_status,
)
from famekit.train_config import LOSS_WEIGHTINGS, SELECTION_METRIC, TrainConfig  # noqa: F401
from famekit.validation import check_fits_in_memory, check_int

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_PATIENCE",
    "SELECTION_METRIC",
    "EarlyStopping",
    "TrainConfig",
    "TrainResult",
    "dataset_of_run",
    "default_run_dir",
    "epoch_rng",
    "facet_step_loss",
    "load_dataset_of",
    "pretrain_facets",
    "run_status",
    "seed_torch_for_epoch",
    "train",
    "train_epoch",
    "usable_cores",
]

# Kept for code written against the first version: the run layer and the configuration own
# these now (the values are read from TrainConfig, not written again here).
load_dataset_of = load_described_dataset
DEFAULT_EPOCHS = TrainConfig().epochs
DEFAULT_PATIENCE = TrainConfig().patience


@dataclass
class TrainResult:
    """What :func:`train` returns (rank 0 holds the metrics; other ranks get empty dicts)."""

    run_dir: Path  # the run directory (see famekit.runs)
    best_epoch: int | None  # 1-based epoch with the best validation NDCG@10
    best_valid: dict[str, float]  # validation metrics of that epoch
    test: dict[str, float]  # test metrics of the best weights
    history: list[dict[str, Any]] = field(default_factory=list)  # the rows of metrics.csv
    stopped_early: bool = False  # True when patience ran out before `epochs`


# ------------------------------------------------------------------------------- small helpers
def usable_cores() -> int:
    """CPU cores this process may run on (respects taskset/cgroup affinity where available)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The batch-order generator of ``epoch`` (identical on every rank)."""
    return np.random.default_rng([seed, epoch])


def seed_torch_for_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Re-seed torch (dropout masks) from (seed, epoch, rank): each rank gets its own masks."""
    state = np.random.SeedSequence([seed, epoch, rank, 0x70C4]).generate_state(1)
    torch.manual_seed(int(state[0]))


def autocast_for(precision: str, device: torch.device) -> Callable[[], Any]:
    """A factory of the autocast context of one training step: bf16 autocast or none (fp32).

    ``precision`` is TrainConfig.precision: "auto" means bf16 on CUDA (its tensor cores run bf16
    matmuls; measured in reports/benchmarks/gpu/) and fp32 on the CPU, "bf16" asks for bf16
    autocast on any device, "fp32" for none.
    """
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def _set_threads(threads: int | None, ctx: distributed.DistContext) -> int:
    if threads is not None:
        threads = check_int("threads", threads, 1, fix="pass threads=1 or more (CLI --threads)")
    elif "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    else:
        threads = max(1, usable_cores() // ctx.local_world_size)
    torch.set_num_threads(threads)
    return threads


# ------------------------------------------------------------------------------- early stopping
@dataclass
class EarlyStopping:
    """Tracks the best validation score; stops after ``patience`` evaluations without a better
    one."""

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


# ------------------------------------------------------------------------------- the loop
def train_epoch(model, optimizer, batches: NextItemBatches, epoch_batches, ctx=None,
                autocast=nullcontext, bar=None, loss_weighting: str = "batch",
                extra_loss: Callable[[int], torch.Tensor] | None = None) -> tuple[float, int]:
    """One pass over the epoch's batches; returns (mean train loss, targets) over all ranks.

    ``loss_weighting="batch"``: each step minimises its batch's mean cross-entropy, so every
    batch weighs the same; with length-bucketed batches that gives each *user* about the same
    weight (a batch of long sequences holds many more targets than one of short sequences).
    ``"target"``: each step's summed cross-entropy is divided by the epoch's mean number of
    targets per batch, so every (prefix, next item) pair weighs the same over the epoch, as in
    prefix-augmented training (RecBole's SASRec).

    ``epoch_batches`` is ``batches.epoch(epoch_rng(seed, epoch))``; ``ctx`` the process's place
    in a torchrun job (default: one process); ``autocast`` a context factory (bf16 on CUDA);
    ``bar`` a tqdm bar advanced per batch. Benchmarks time exactly this function.
    ``extra_loss(step)``: a term added to every step's objective after the weighting above
    (FAME+'s facet loss, :meth:`famekit.facets.FacetObjective.loss`); the returned mean loss
    stays the cross-entropy alone, so that it is comparable with runs without it.
    """
    if ctx is None:  # one process, wherever the model is
        ctx = distributed.DistContext(device=next(model.parameters()).device)
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
        if extra_loss is not None:
            objective = objective + extra_loss(step)
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



def train(dataset: str | SeqDataset | None = None, config: TrainConfig | None = None, *,
          out_dir=None, device=None, progress: bool = True, resume=None,
          overwrite: bool = False, threads: int | None = None,
          dataset_options: dict | None = None, **options) -> TrainResult:
    """Train a FAME, FAME+ or SASRec model with early stopping; see the module docstring.

    Args:
        dataset: a registered name (``"synthetic"``, ``"beauty"``, ...) or a :class:`SeqDataset`;
            default ``"synthetic"`` (on resume: the run's own dataset).
        config: a :class:`~famekit.train_config.TrainConfig` (default: its defaults).
        **options: fields of the configuration by name, replacing the config's (``kind``,
            ``epochs``, ``patience``, ``batch_size``, ``lr``, ``seed``, ``max_len``,
            ``eval_every``, ``eval_batch_size``, ``loss_weighting``, ``facets`` and the other
            ``facet_*`` options of FAME+) and model options
            (:class:`famekit.model.ModelConfig` fields: ``d_model``, ``n_layers``, ``n_heads``,
            ``n_experts``, ``dropout``, ...). On resume only ``epochs`` and ``patience`` may
            change (a new total extends a run); any other option must equal the saved value.
            ``None`` means "not given". Options are keywords only.
        out_dir: run directory; default :func:`famekit.runs.default_run_dir`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; default CUDA when available (bf16 autocast).
        progress: tqdm bars over pre-training, epochs and batches.
        resume: a run directory to continue from its last finished epoch (its own
            ``train_args.json`` defines the run).
        overwrite: replace an existing run in ``out_dir`` instead of refusing.
        threads: torch CPU threads (see the module docstring).
        dataset_options: options for :func:`famekit.datasets.load` (e.g. synthetic sizes).

    Raises:
        ParameterError: an invalid argument.  CheckpointError: the run directory already holds
        a run (without ``overwrite``/``resume``), or a resumed run is missing or damaged.
    """
    if config is not None and not isinstance(config, TrainConfig):
        raise ParameterError(
            f"config must be a TrainConfig, got {type(config).__name__} ({config!r}). Fix: pass "
            "options by name, e.g. train('synthetic', kind='sasrec')"
        )
    # None means "not given" (the config's value, or on resume the saved one), as it always did
    options = {name: value for name, value in options.items() if value is not None}
    ctx = distributed.setup(device)
    try:
        _set_threads(threads, ctx)
        with ExitStack() as held:  # the run's lock, held by rank 0 until training ends
            if resume is not None:
                if config is not None:
                    raise ParameterError("config= cannot be given with resume=: the run's own "
                                         "configuration is used. Fix: pass only epochs/patience")
                run, config, data, described = _resumed_run(RunDir(resume), out_dir, dataset,
                                                            options)
                if ctx.is_main:
                    held.enter_context(run.lock())
            else:
                run, config, data, described = _new_run(out_dir, dataset, dataset_options,
                                                        (config or TrainConfig()), options)
                if ctx.is_main:  # one writer per folder; no lock file left in a foreign one
                    run.refuse_foreign(overwrite)
                    run.create()
                    held.enter_context(run.lock())
                # Every rank checks and creates (so that all raise together); rank 0 alone clears.
                run.refuse_to_clobber(overwrite)
                if ctx.is_main and run.status is not None:
                    run.clear()
                run.create()
                ctx.barrier()  # no rank looks at the folder again before rank 0 is done with it
            return _fit(ctx, run, data, described, config, progress,
                        resumed=resume is not None)
    finally:
        distributed.teardown(ctx)


def _signature_with_config_fields() -> inspect.Signature:
    """train()'s signature, with the configuration's fields shown as keyword options (so that
    ``help(train)`` lists them with their defaults, taken from TrainConfig itself)."""
    import dataclasses

    base = inspect.signature(train)
    params = [p for p in base.parameters.values()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    defaults = TrainConfig()
    params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                 default=getattr(defaults, f.name), annotation=f.type)
               for f in dataclasses.fields(TrainConfig) if f.name != "model_options"]
    params.append(base.parameters["options"])
    return base.replace(parameters=params)


train.__signature__ = _signature_with_config_fields()


def _new_run(out_dir, dataset, dataset_options, config: TrainConfig, options: dict
             ) -> tuple[RunDir, TrainConfig, SeqDataset, dict]:
    """(run, configuration, dataset, dataset description) of a fresh run; every argument is
    checked before the disk is touched."""
    config = config.with_options(**options)
    data, described = describe_dataset(DEFAULT_DATASET if dataset is None else dataset,
                                       dataset_options)
    _check_memory(config, data)
    # the facet assignment is checked against the data now: a refused one leaves no folder
    facet_objective(config, data, config.model_config(data.n_items))
    if not any(len(s) >= 2 for s in data.split().train_sequences()):
        raise ParameterError(
            f"dataset {data.name!r} has no user with >= 2 training items: leave-one-out keeps "
            "each sequence's last item for test and the one before for validation, so a user "
            "needs at least 4 items to train on. Fix: pass longer sequences")
    run = RunDir(out_dir if out_dir is not None
                 else default_run_dir(described["name"], config.kind, config.seed))
    return run, config, data, described


def _check_memory(config: TrainConfig, data: SeqDataset) -> None:
    """Refuse a configuration the machine cannot hold before any of it is allocated: the
    parameters are counted on a skeleton on the meta device (no memory)."""
    model_config = config.model_config(data.n_items)
    with torch.device("meta"):
        n_params = sum(p.numel() for p in build_model(model_config).parameters())
    d, layers = model_config.d_model, model_config.n_layers
    needed = (4 * 4 * n_params  # fp32 weights, gradients and Adam's two moments
              + 4 * 16 * config.batch_size * config.max_len * d * layers  # activations
              + 4 * config.eval_batch_size * (data.n_items + 1))  # one batch of full scores
    try:
        check_fits_in_memory(
            f"training {config.kind} on {data.name!r} ({n_params:,} parameters, max_len "
            f"{config.max_len}, batch {config.batch_size})", needed,
            "lower max_len, batch_size or the model size, or train on a larger machine")
    except ParameterError as err:
        distinct = len(np.unique(data.item_ids))  # only now: a sort of every interaction
        if data.n_items <= 10 * distinct + 1000:
            raise
        raise ParameterError(f"{err}. The item ids are sparse ({distinct} distinct ids up to "
                             f"{data.n_items}): renumber them densely from 1") from None


def _resumed_run(run: RunDir, out_dir, dataset, options: dict
                 ) -> tuple[RunDir, TrainConfig, SeqDataset, dict]:
    """(run, saved configuration with the allowed changes, dataset, description) to resume."""
    if out_dir is not None and Path(out_dir).resolve() != run.path.resolve():
        raise ParameterError(
            f"out_dir={str(out_dir)!r} and resume={str(run.path)!r} differ. Fix: a resumed "
            "run stays in its own directory; pass only resume"
        )
    if run.status is None:
        what = "does not exist" if not run.path.exists() else f"has no {TRAIN_ARGS_FILE}"
        raise CheckpointError(
            f"cannot resume {run.path}: it {what}. Fix: pass the directory of a run started "
            f"by famekit train (it holds {TRAIN_ARGS_FILE})"
        )
    config = run.train_config().resumed_with(options, run.path)
    described = run.dataset_description()
    if isinstance(dataset, SeqDataset):
        check_fingerprint(dataset, described)
        return run, config, dataset, described
    if dataset is not None and dataset != described.get("name"):
        raise ParameterError(
            f"cannot change the dataset when resuming {run.path} (saved "
            f"{described.get('name')!r}, asked {dataset!r}). Fix: leave the dataset out, or "
            "start a new run"
        )
    return run, config, load_described_dataset(described), described


def _fit(ctx, run: RunDir, data: SeqDataset, described: dict, config: TrainConfig,
         progress: bool, resumed: bool) -> TrainResult:
    """Build (or restore) the model and optimizer, run the epochs, evaluate the best on test."""
    session = _Session(ctx, run, data, described, config, progress and ctx.is_main)
    session.start(resumed)
    session.run_epochs()
    result = TrainResult(run_dir=run.path, best_epoch=session.stopper.best_epoch,
                         best_valid=dict(session.stopper.best_valid), test={},
                         history=session.history, stopped_early=session.stopper.stopped)
    if ctx.is_main:
        result.test = session.finish(progress)
    ctx.barrier()
    return result


class _Session:
    """One run being trained: the state the loop's steps share (model, optimizer, early
    stopping, history, the FAME+ objective and its pre-training record), and the steps
    themselves: :meth:`start` (build, restore or pre-train), :meth:`run_epochs`
    (:meth:`validate` inside), :meth:`finish`."""

    def __init__(self, ctx, run: RunDir, data: SeqDataset, described: dict,
                 config: TrainConfig, show: bool):
        self.ctx, self.run, self.data, self.described = ctx, run, data, described
        self.config, self.show = config, show
        torch.manual_seed(config.seed)  # initial weights (identical on every rank; DDP
        self.model_config: ModelConfig = config.model_config(data.n_items)  # broadcasts 0's)
        self.model = build_model(self.model_config).to(ctx.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.stopper = EarlyStopping(patience=config.patience)
        self.history: list[dict] = []
        self.epoch = 0
        self.objective: FacetObjective | None = None
        self.pretrained: dict = {}  # what FAME+ pre-training did (kept with the run)

    # -------------------------------------------------------------------- steps
    def start(self, resumed: bool) -> None:
        """Restore a resumed run's last epoch, record the arguments, pre-train (FAME+)."""
        ctx, run, config = self.ctx, self.run, self.config
        with warnings.catch_warnings():  # a new run's assignment was checked (and warned)
            if not resumed:
                warnings.simplefilter("ignore", FacetWarning)
            self.objective = facet_objective(config, self.data, self.model_config)
        # A run interrupted before its first epoch finished has no train state: it starts over.
        if resumed and run.has_train_state():
            self.restore()
        if ctx.is_main:  # after the checks above: a refused resume leaves the run as it was
            started_by = run.train_args().get("famekit_version") if resumed else None
            run.write_train_args(config, self.described, ctx.world_size,
                                 famekit_version=started_by)
        if (self.objective is not None and self.epoch == 0
                and config.facet_schedule in ("pretrain", "both")):
            self.pretrained = pretrain_facets(self.model, self.objective, config, self.show)

    def restore(self) -> None:
        """Model, optimizer, RNGs, early stopping, history and the pre-training record of the
        last finished epoch. An edited train_state.json can hold anything: refused in one
        line."""
        run, config = self.run, self.config
        state = run.load_train_state(self.optimizer)
        state_file = run.path / TRAIN_STATE_JSON
        try:
            extra = state["extra_state"]
            try:
                self.model.load_state_dict(extra["model"])
            except RuntimeError as exc:
                raise CheckpointError(
                    f"{run.path / TRAIN_STATE_TENSORS} does not match the model that "
                    f"{run.path / TRAIN_ARGS_FILE} describes ({exc}). Fix: start the run again "
                    "(overwrite=True / --overwrite)"
                ) from None
            restore_rng_state(state["rng"])
            epoch = int(state["epoch"])
            stopper = EarlyStopping.from_dict(extra["early_stopping"], config.patience)
            history = list(extra["history"])
            if not all(isinstance(row, dict) for row in history):
                raise TypeError("history rows must be objects")
            pretrained = dict(extra.get("pretrain") or {})
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise CheckpointError(
                f"{state_file} is damaged or was edited ({type(exc).__name__}: {exc}). Fix: "
                "restore the file, or start the run again (--overwrite)"
            ) from None
        if config.epochs < epoch:
            raise ParameterError(
                f"{run.path} has already trained {epoch} epochs, more than epochs="
                f"{config.epochs}. Fix: pass epochs >= {epoch} (--epochs) to continue it"
            )
        self.epoch, self.stopper, self.history, self.pretrained = (epoch, stopper, history,
                                                                   pretrained)

    def run_epochs(self) -> None:
        """Train until ``config.epochs`` or early stopping; every epoch is checkpointed."""
        ctx, config, model, seed = self.ctx, self.config, self.model, self.config.seed
        batches = NextItemBatches(self.data.split().train_sequences(), config.max_len,
                                  config.batch_size)
        if len(batches) < ctx.world_size:
            raise ParameterError(
                f"dataset {self.data.name!r} has {len(batches)} users with >= 2 training items, "
                f"fewer than the {ctx.world_size} ranks. Fix: train on more users or fewer "
                "processes"
            )
        train_model = model
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        autocast = autocast_for(config.precision, ctx.device)

        keep_facet_loss = (self.objective is not None
                           and config.facet_schedule in ("joint", "both"))
        epoch_bar = tqdm(total=config.epochs, initial=self.epoch, desc=f"train {config.kind}",
                         unit="epoch", disable=not self.show)
        try:
            while self.epoch < config.epochs and not self.stopper.stopped:
                self.epoch += 1
                epoch = self.epoch
                started = time.perf_counter()
                seed_torch_for_epoch(seed, epoch, ctx.rank)
                epoch_batches = batches.epoch(epoch_rng(seed, epoch), min_rows=ctx.world_size)
                extra = (facet_step_loss(model, self.objective, config, epoch)
                         if keep_facet_loss else None)
                with tqdm(total=len(epoch_batches), desc=f"epoch {epoch}", unit="batch",
                          leave=False, disable=not self.show) as batch_bar:
                    train_loss, _ = train_epoch(train_model, self.optimizer, batches,
                                                epoch_batches, ctx, autocast,
                                                batch_bar if self.show else None,
                                                config.loss_weighting, extra)
                if not math.isfinite(train_loss):
                    raise ParameterError(
                        f"training diverged at epoch {epoch} (loss {train_loss}). Fix: lower lr "
                        f"(now {config.lr}) or raise dropout"
                    )
                row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss,
                                       "train_seconds": time.perf_counter() - started}
                if epoch % config.eval_every == 0 or epoch == config.epochs:
                    self.validate(row, epoch_bar)
                row["seconds"] = time.perf_counter() - started
                self.history.append(row)
                if ctx.is_main:
                    self.run.save_train_state(
                        self.optimizer, epoch,
                        extra_state={"model": model.state_dict(),
                                     "early_stopping": self.stopper.to_dict(),
                                     "history": self.history, "pretrain": self.pretrained})
                    self.run.write_metrics("running", self.history, self.summary("running"))
                epoch_bar.update(1)
        finally:
            epoch_bar.close()

    def validate(self, row: dict, epoch_bar) -> None:
        """Rank 0 evaluates on "valid" and saves a new best; every rank follows its stop
        decision."""
        ctx, stopper = self.ctx, self.stopper
        stop = torch.zeros(1, device=ctx.device)
        if ctx.is_main:
            valid = evaluate(self.model, self.data, split="valid",
                             batch_size=self.config.eval_batch_size, progress=False)
            valid = {m: float(valid[m]) for m in METRIC_NAMES}
            row.update({f"valid_{m}": value for m, value in valid.items()})
            if stopper.update(self.epoch, valid):
                self.run.save_model(self.model, self.described["name"], self.data.fingerprint,
                                    self.summary("running"))
            stop[0] = float(stopper.stopped)
            epoch_bar.set_postfix(loss=f"{row['train_loss']:.4f}",
                                  ndcg10=f"{valid[SELECTION_METRIC]:.4f}",
                                  best=f"{stopper.best_score:.4f}@{stopper.best_epoch}")
        stopper.stopped = bool(ctx.broadcast_(stop)[0].item())

    def finish(self, progress: bool) -> dict:
        """Reload the best weights, evaluate them on "test", record the result (rank 0)."""
        run, data = self.run, self.data
        best = run.load(dataset=data, device=self.ctx.device)
        metrics = evaluate(best.model, data, split="test",
                           batch_size=self.config.eval_batch_size, progress=progress)
        test = {m: float(metrics[m]) for m in METRIC_NAMES}
        test["users"] = int(metrics["users"])
        summary = self.summary("finished", test=test)
        run.save_model(best.model, self.described["name"], data.fingerprint, summary)
        run.write_metrics("finished", self.history, summary)
        return test

    def summary(self, status: str, test: dict | None = None) -> dict:
        """The training summary stored in config.json and metrics.json (``facets`` and
        ``pretrain`` only for FAME+ runs, so that other runs' files stay as they were)."""
        config, stopper = self.config, self.stopper
        extra = {}
        if config.facets:
            extra = {"facets": list(config.facets), "facet_target": config.facet_target,
                     "facet_schedule": config.facet_schedule,
                     "pretrain": dict(self.pretrained)}
        return {
            "status": status,
            "kind": config.kind,
            "dataset": self.described["name"],
            "epochs_run": self.epoch,
            "selection_metric": f"valid {SELECTION_METRIC}",
            "best_epoch": stopper.best_epoch,
            "best_valid": dict(stopper.best_valid),
            "stopped_early": stopper.stopped,
            "test": dict(test or {}),
            **extra,
        }
