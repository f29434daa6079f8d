"""The training configuration: one frozen dataclass holding every training default.

:class:`TrainConfig` is what a run is trained with (stored in ``train_args.json``), what
:func:`famekit.training.train` takes, what the CLI's ``famekit train`` flags are generated from
(names, defaults, choices and help texts come from the field metadata here) and what the
per-dataset recipes of :mod:`famekit.workspace` override. Model shape options (``d_model``,
``n_heads``, ...) are :class:`famekit.model.ModelConfig` fields; a configuration carries the
ones that differ from the model's defaults in ``model_options``.

>>> config = TrainConfig(kind="sasrec", epochs=30)
>>> import dataclasses; dataclasses.replace(config, patience=5)   # validated again
>>> config.with_options(d_model=32, lr=2e-3)   # training fields or model options by name
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from famekit.errors import CheckpointError, ParameterError
from famekit.facets import FACET_SCHEDULES, FACET_TARGETS
from famekit.model import MIXERS, MODEL_KINDS, MODELS, ModelConfig
from famekit.validation import check_choice, check_int, check_name, check_number

__all__ = ["LOSS_WEIGHTINGS", "MODEL_FLAGS", "PRECISIONS", "RESUMABLE", "SELECTION_METRIC",
           "TrainConfig"]

LOSS_WEIGHTINGS = ("batch", "target")
PRECISIONS = ("auto", "fp32", "bf16")
SELECTION_METRIC = "NDCG@10"  # validation metric that picks the best epoch and stops early
# Fields a resumed run may change (extend a run, give it more patience); any other change
# would make it another run.
RESUMABLE = ("epochs", "patience")
# ModelConfig fields that train() and the dataset set themselves, not model options.
_SET_BY_TRAINING = ("n_items", "kind", "max_len")
# Fields added after runs were first written: a train_args.json without them means this.
_ADDED_FIELDS = {"loss_weighting": "batch", "facets": (), "facet_schedule": "both",
                 "facet_target": "heads", "facet_weight": 1.0, "facet_temperature": 0.1,
                 "facet_items": 512, "facet_pretrain_steps": 600, "precision": "auto"}


def _option(help: str, flag: str | None = None, choices: tuple[str, ...] | None = None,
            minimum: int | None = None) -> dict:
    """Field metadata: the CLI flag (default ``--<field-name>``), its help text, choices."""
    return {"help": help, "flag": flag, "choices": choices, "minimum": minimum}


@dataclass(frozen=True)
class TrainConfig:
    """How a FAME or SASRec run is trained (every default of famekit's training lives here)."""

    kind: str = field(default="fame", metadata=_option(
        "model kind", flag="--model", choices=MODEL_KINDS))
    # An upper bound: early stopping usually ends a run long before.
    epochs: int = field(default=200, metadata=_option("most epochs", minimum=1))
    patience: int = field(default=10, metadata=_option(
        "evaluations without a better valid NDCG@10 before stopping", minimum=1))
    batch_size: int = field(default=256, metadata=_option(
        "sequences per batch (split across ranks under torchrun)", minimum=1))
    lr: float = field(default=1e-3, metadata=_option("Adam learning rate"))
    seed: int = field(default=0, metadata=_option(
        "seeds weights, batch order and dropout", minimum=0))
    # The longest input window: 50 suits Amazon's short sequences, MovieLens uses 200
    # (docs/fame-spec.md §4).
    max_len: int = field(default=50, metadata=_option("longest input window", minimum=1))
    eval_every: int = field(default=1, metadata=_option(
        "validate every N epochs (and after the last)", minimum=1))
    eval_batch_size: int = field(default=256, metadata=_option(
        "users per evaluation batch", flag="", minimum=1))  # "": no CLI flag
    # "batch": each step minimises its batch's mean cross-entropy (every batch weighs the
    # same); "target": every training target weighs the same over the epoch, as in
    # prefix-augmented training (see famekit.training.train_epoch).
    loss_weighting: str = field(default="batch", metadata=_option(
        "'batch': every batch's mean weighs the same; 'target': every training target "
        "weighs the same over the epoch", choices=LOSS_WEIGHTINGS))
    # Training steps under bf16 autocast or in fp32 (famekit.training.autocast_for): "auto" is
    # bf16 on CUDA and fp32 on the CPU; measured in reports/benchmarks/gpu/ (docs/decisions.md).
    precision: str = field(default="auto", metadata=_option(
        "'auto' (bf16 autocast on CUDA, fp32 on the CPU), 'fp32' or 'bf16' (autocast on any "
        "device)", choices=PRECISIONS))
    # FAME+ (famekit.facets, docs/fame-spec.md §8): metadata fields put on heads 0..k-1 by a
    # supervised contrastive loss on their item sub-embeddings; () = plain FAME / SASRec.
    facets: tuple[str, ...] = field(default=(), metadata=_option(
        "FAME+: metadata fields for heads 0..k-1, comma-separated (e.g. genre,brand,price_tier)"))
    # Choice: "both" (pre-train, then keep the loss in every step), measured against the
    # paper's pre-training only: docs/decisions.md, "FAME+: the loss is kept during training".
    facet_schedule: str = field(default="both", metadata=_option(
        "FAME+: 'pretrain' (before sequential training only), 'joint' (during it only) or "
        "'both'", choices=FACET_SCHEDULES))
    facet_target: str = field(default="heads", metadata=_option(
        "FAME+: 'heads' (facet k on head k) or 'embedding' (the whole item embedding: the "
        "SASRec + metadata baseline)", choices=FACET_TARGETS))
    facet_weight: float = field(default=1.0, metadata=_option(
        "FAME+: weight of the facet loss beside the cross-entropy"))
    facet_temperature: float = field(default=0.1, metadata=_option(
        "FAME+: temperature of the supervised contrastive loss"))
    facet_items: int = field(default=512, metadata=_option(
        "FAME+: items sampled per facet-loss step", minimum=2))
    facet_pretrain_steps: int = field(default=600, metadata=_option(
        "FAME+: pre-training steps (one facet per step, in turn)", minimum=1))
    # ModelConfig fields that differ from the model's own defaults (d_model, n_heads, ...).
    model_options: Mapping[str, Any] = field(default_factory=dict, metadata={"flag": ""})

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ParameterError(f"kind must be {' or '.join(map(repr, MODELS))}, got "
                                 f"{self.kind!r}. Fix: pass kind='fame' (--model fame) or "
                                 "'sasrec'")
        for spec in dataclasses.fields(self):
            minimum = spec.metadata.get("minimum")
            if minimum is not None:
                value = check_int(spec.name, getattr(self, spec.name), minimum,
                                  fix=f"pass {spec.name}={minimum} or more (CLI "
                                      f"--{spec.name.replace('_', '-')})")
                object.__setattr__(self, spec.name, value)
        object.__setattr__(self, "lr", check_number("lr", self.lr, positive=True,
                                                    fix="pass lr=1e-3"))
        check_choice("loss_weighting", self.loss_weighting, LOSS_WEIGHTINGS)
        check_choice("precision", self.precision, PRECISIONS)
        for name in ("facet_weight", "facet_temperature"):
            object.__setattr__(self, name, check_number(
                name, getattr(self, name), positive=True,
                fix=f"pass {name}={TrainConfig.__dataclass_fields__[name].default}"))
        check_choice("facet_schedule", self.facet_schedule, FACET_SCHEDULES)
        check_choice("facet_target", self.facet_target, FACET_TARGETS)
        object.__setattr__(self, "facets", _facet_names(self.facets))
        if not isinstance(self.model_options, Mapping):
            raise ParameterError(f"model_options must be a dict of ModelConfig fields, got "
                                 f"{type(self.model_options).__name__}. Fix: e.g. "
                                 "model_options={'d_model': 32}")
        object.__setattr__(self, "model_options", dict(self.model_options))
        model = self.model_config(n_items=1)  # unknown or invalid model options fail here
        if self.facets and self.facet_target == "heads":
            if not hasattr(MODELS[self.kind], "item_sub_embeddings"):
                raise ParameterError(
                    f"facets={list(self.facets)} for a {self.kind} run: {self.kind} has no heads "
                    "to assign facets to. Fix: pass facet_target='embedding' (--facet-target "
                    "embedding) to train its whole item embedding with the same objective (the "
                    "SASRec + metadata baseline), or kind='fame' for FAME+")
            if len(self.facets) > model.n_heads:
                raise ParameterError(
                    f"{len(self.facets)} facets ({', '.join(self.facets)}) for {model.n_heads} "
                    f"heads: each facet takes one head. Fix: pass at most {model.n_heads} "
                    "facets, or more heads (n_heads=, --heads)")

    # ------------------------------------------------------------------- derived
    def model_config(self, n_items: int) -> ModelConfig:
        """The :class:`ModelConfig` of this configuration for a dataset of ``n_items`` items."""
        reserved = set(_SET_BY_TRAINING) & set(self.model_options)
        if reserved:
            raise ParameterError(
                f"model option(s) {sorted(reserved)} are set by train() itself. Fix: pass "
                "max_len=/kind= directly; n_items comes from the dataset"
            )
        try:
            return ModelConfig(n_items=n_items, kind=self.kind, max_len=self.max_len,
                               **self.model_options)
        except TypeError as exc:  # an unknown keyword
            raise ParameterError(
                f"unknown model option ({exc}). Fix: use some of {', '.join(model_option_names())}"
            ) from None

    def with_options(self, **options) -> TrainConfig:
        """A copy with training fields and model options replaced by name (validated)."""
        fields = {f.name for f in dataclasses.fields(self)} - {"model_options"}
        changes = {k: v for k, v in options.items() if k in fields}
        model = {k: v for k, v in options.items() if k not in fields}
        if "model_options" in options:  # a whole dict of model options, merged
            model = {**dict(options["model_options"] or {}),
                     **{k: v for k, v in model.items() if k != "model_options"}}
        if model:
            changes["model_options"] = {**self.model_options, **model}
        return dataclasses.replace(self, **changes)

    def resumed_with(self, options: Mapping[str, Any], where: Path) -> TrainConfig:
        """This (saved) configuration with the :data:`RESUMABLE` fields that ``options``
        gives; any other option whose value differs from the saved one is refused."""
        wanted = self.with_options(**options)
        for spec in dataclasses.fields(self):
            name = spec.name
            if name in RESUMABLE or name == "model_options":
                continue
            if getattr(wanted, name) != getattr(self, name):
                raise ParameterError(
                    f"cannot change {name} when resuming {where} (saved {getattr(self, name)!r}, "
                    f"asked {getattr(wanted, name)!r}). Fix: leave {name} out, or start a new "
                    "run (another --out)"
                )
        saved_model, wanted_model = self.model_config(1), wanted.model_config(1)
        changed = sorted(f for f in ModelConfig.__dataclass_fields__
                         if getattr(saved_model, f) != getattr(wanted_model, f))
        if changed:
            raise ParameterError(
                f"cannot change model options {changed} when resuming {where} (saved "
                f"{self.model_options}). Fix: leave them out, or start a new run"
            )
        return dataclasses.replace(self, **{k: getattr(wanted, k) for k in RESUMABLE})

    # ------------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values, in declaration order (``train_args.json``)."""
        def plain(value):
            return dict(value) if isinstance(value, Mapping) else (
                list(value) if isinstance(value, tuple) else value)
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_saved(cls, saved: dict, path: Path) -> TrainConfig:
        """The configuration a ``train_args.json`` holds (extra keys such as the dataset
        description are ignored); a damaged file is a CheckpointError naming it."""
        saved = {**_ADDED_FIELDS, **saved}
        if isinstance(saved.get("facets"), list):  # JSON has no tuples
            saved["facets"] = tuple(saved["facets"])
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in saved]
        if missing or not isinstance(saved.get("model_options"), dict):
            raise CheckpointError(
                f"{path} lacks {', '.join(missing) or 'a model_options object'}. Fix: restore "
                "the file, or start the run again (overwrite=True / --overwrite)"
            )
        try:
            return cls(**{n: saved[n] for n in names})
        except ParameterError as exc:
            raise CheckpointError(f"{path} holds an invalid configuration ({exc}). Fix: "
                                  "restore the file, or start the run again") from None


def _facet_names(value) -> tuple[str, ...]:
    """facets as a tuple of field names: a list/tuple, or one comma-separated string (the
    CLI's ``--facets genre,brand``); repeated names are refused."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise ParameterError(f"facets must be a list of field names, got "
                             f"{type(value).__name__}. Fix: e.g. facets=['genre', 'brand']")
    names = tuple(check_name("facet", name, fix="pass metadata field names, e.g. "
                                               "facets=['genre', 'brand']") for name in value)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ParameterError(f"facet field(s) {repeated} given twice. Fix: give each field once "
                             "(heads 0..k-1 take the fields in order)")
    return names


def model_option_names() -> list[str]:
    """ModelConfig fields that can be given as model options."""
    return sorted(f for f in ModelConfig.__dataclass_fields__ if f not in _SET_BY_TRAINING)


# The model options ``famekit train`` offers as flags: field -> (flag, help). Defaults come
# from ModelConfig; the other ModelConfig fields stay reachable from Python.
MODEL_FLAGS: dict[str, tuple[str, str]] = {
    "d_model": ("--d-model", "hidden size d"),
    "n_layers": ("--layers", "layers L"),
    "n_heads": ("--heads", "heads H = facets"),
    "n_experts": ("--experts", "experts N per head"),
    "dropout": ("--dropout", "dropout rate"),
    "router": ("--router", "FAME ablation: 'uniform' weighs every expert 1/N"),
    "gate": ("--gate", "FAME ablation: 'uniform' weighs every head 1/H"),
}
MODEL_FLAG_CHOICES = {"router": MIXERS, "gate": MIXERS}
