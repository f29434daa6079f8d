"""Run directories: safe, atomic checkpoints of models and training state (docs/fame-spec.md §7).

A run directory holds::

    model.safetensors       the weights (safetensors: a JSON header + raw tensor bytes)
    config.json             everything needed to rebuild the model and to check it is used
                            with the right data: model config and kind, dataset name and
                            fingerprint, n_items, training summary, famekit and format versions,
                            and the sha256 of model.safetensors
    train_state.safetensors optimizer tensors and torch RNG states   } only while training,
    train_state.json        the rest of the training state           } for resume

Nothing here ever unpickles: no ``torch.load``, no ``pickle``. A pickle renamed to
``.safetensors`` (for instance a ``torch.save`` file) is recognised by its magic bytes and refused
before anything reads it as data, because unpickling runs arbitrary code.

Every file is written atomically (temporary file in the same directory, fsync, ``os.replace``),
and the JSON file is written *after* the tensors it describes and records their sha256: it is the
commit point of the pair. While a save is in flight the committed tensors are kept as
``<name>.prev`` (a hard link), and readers use that copy when the tensors file does not match the
JSON, so a kill at any moment leaves the old pair or the new one, never a mixed or unloadable run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from famekit.errors import CheckpointError
from famekit.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from famekit.validation import available_memory

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "TRAIN_STATE_JSON_FILE",
    "TRAIN_STATE_TENSORS_FILE",
    "WEIGHTS_FILE",
    "Run",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "capture_rng_state",
    "load_run",
    "load_train_state",
    "restore_rng_state",
    "save_model",
    "save_train_state",
]

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAIN_STATE_TENSORS_FILE = "train_state.safetensors"
TRAIN_STATE_JSON_FILE = "train_state.json"


# -------------------------------------------------------------------- tensors + JSON pairs
def _backup_of(tensors_path: Path) -> Path:
    return tensors_path.with_name(tensors_path.name + ".prev")


def _sha256_of_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _recorded_sha256(json_path: Path, recorded) -> str | None:
    """The tensors' sha256 that ``json_path`` commits to (``recorded(meta)``), or None."""
    try:
        return recorded(json.loads(json_path.read_text(encoding="utf-8")))
    except (OSError, ValueError, RecursionError, TypeError, AttributeError, KeyError):
        return None


def _write_pair(tensors_path: Path, data: bytes, json_path: Path, meta: dict, recorded) -> None:
    """Write a tensors file, then the JSON that records its sha256 (the commit point), so that
    a kill at any moment leaves a loadable pair.

    Each rename is atomic, but between the two the new tensors sit next to the old JSON. So the
    committed tensors are first hard-linked to ``<name>.prev`` (an uncommitted leftover of a
    killed save is not: then the ``.prev`` already there is the committed copy); readers fall
    back to it when the tensors do not match the JSON (:func:`_read_committed_safetensors`),
    and it is removed once the new JSON is in place.
    """
    backup = _backup_of(tensors_path)
    committed = _recorded_sha256(json_path, recorded) if json_path.is_file() else None
    if committed is not None and _sha256_of_file(tensors_path) == committed:
        try:
            backup.unlink(missing_ok=True)
            os.link(tensors_path, backup)
        except OSError:  # no hard links on this file system: keep a copy instead
            atomic_write_bytes(backup, tensors_path.read_bytes())
    atomic_write_bytes(tensors_path, data)
    atomic_write_json(json_path, meta)
    try:
        backup.unlink(missing_ok=True)
    except OSError:
        pass


# --------------------------------------------------------------------------------- reading safely
# A safetensors file starts with an 8-byte little-endian header length, then a JSON header.
# Pickles (protocol >= 2) start with 0x80 and the protocol number; torch.save writes a zip.
_PICKLE_MAGIC = tuple(bytes([0x80, proto]) for proto in range(2, 6))
_ZIP_MAGIC = b"PK\x03\x04"


_MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit for the JSON header


def _check_size_before_reading(path: Path, what: str) -> None:
    """Refuse a file whose size disagrees with its own header (a sparse or padded file) or
    that cannot fit in memory, before a byte of it is read whole."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            header = (json.loads(handle.read(header_len))
                      if 2 <= header_len <= min(_MAX_HEADER_BYTES, size - 8) else None)
    except (OSError, ValueError, RecursionError):
        header = None  # unreadable or not JSON: the full read below says what is wrong
    described = None
    if isinstance(header, dict):
        try:
            described = 8 + header_len + max(
                (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                default=0)
        except (TypeError, KeyError, IndexError, ValueError):
            described = None
    if described is not None and described != size:
        raise CheckpointError(
            f"{path} is {size} bytes but its safetensors header describes {described} bytes "
            f"(padded, sparse or truncated). Fix: re-save the {what}, or restore it from a "
            "backup")
    available = available_memory()
    if available is not None and size > available:
        raise CheckpointError(
            f"{path} is {size / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB of "
            f"memory available to read it. Fix: load it on a machine with more memory, or "
            f"check that it is the {what} famekit saved")


def _read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors on CPU, sha256 of the file), refusing anything that is not safetensors."""
    _check_size_before_reading(path, what)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err}. Fix: check the file's permissions") from err
    if data.startswith(_PICKLE_MAGIC) or data.startswith(_ZIP_MAGIC):
        kind = "a torch.save zip archive" if data.startswith(_ZIP_MAGIC) else "a Python pickle"
        raise CheckpointError(
            f"{path} is {kind}, not a safetensors file; famekit never unpickles files because "
            f"unpickling can run arbitrary code. Fix: re-create the {what} with famekit "
            "(save_model / save_train_state), or convert trusted weights yourself with "
            "safetensors.torch.save_file"
        )
    header_len = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if header_len < 2 or 8 + header_len > len(data) or data[8:9] != b"{":
        raise CheckpointError(
            f"{path} is not a valid safetensors file ({len(data)} bytes; truncated or "
            f"corrupt). Fix: re-save the {what}, or restore it from a backup"
        )
    try:
        tensors = safetensors.torch.load(data)
    except Exception as err:  # SafetensorError does not derive from a narrower base class
        raise CheckpointError(
            f"{path} is corrupt or truncated ({err}). Fix: re-save the {what}, or restore it "
            "from a backup"
        ) from err
    return tensors, hashlib.sha256(data).hexdigest()


def _read_committed_safetensors(path: Path, recorded_sha: str | None, what: str
                                ) -> tuple[dict[str, torch.Tensor], str]:
    """:func:`_read_safetensors`, falling back to the ``.prev`` copy that :func:`_write_pair`
    keeps when ``path`` is the uncommitted half of an interrupted save."""
    tensors, sha256 = _read_safetensors(path, what)
    backup = _backup_of(path)
    if recorded_sha is not None and sha256 != recorded_sha and backup.is_file():
        try:
            old_tensors, old_sha = _read_safetensors(backup, what)
        except CheckpointError:
            return tensors, sha256
        if old_sha == recorded_sha:
            return old_tensors, old_sha
    return tensors, sha256


def _read_json(path: Path) -> Any:
    return read_json(path, fix="repair the file by hand or re-save the run", expect=None)


def _require_run_files(run_dir, names: tuple[str, ...], what: str) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        problem = "is not a directory" if run_dir.exists() else "does not exist"
        raise CheckpointError(
            f"run directory {run_dir} {problem}. Fix: pass the directory written by save_model "
            "(it holds model.safetensors and config.json)"
        )
    for name in names:
        if not (run_dir / name).is_file():
            pickles = sorted(p.name for p in run_dir.glob("*.pt")) + sorted(
                p.name for p in run_dir.glob("*.pth"))
            hint = (f" (found {', '.join(pickles)}: famekit never loads pickled torch files)"
                    if pickles else "")
            raise CheckpointError(
                f"{run_dir / name} is missing{hint}. Fix: {what}"
            )
    return run_dir


# ---------------------------------------------------------------------------------- model runs
@dataclass
class Run:
    """A loaded run: the rebuilt model (eval mode), its ModelConfig, config.json and location."""

    model: torch.nn.Module
    config: Any  # famekit.model.ModelConfig
    meta: dict[str, Any]
    run_dir: Path

    @property
    def facets(self) -> tuple[str, ...]:
        """The metadata fields on heads 0..k-1 of a FAME+ run (``()`` for any other run, and
        for a run whose facet loss trained the whole embedding). Read from config.json's
        summary; anything but a list of names there counts as none."""
        summary = self.meta.get("summary")
        if not isinstance(summary, dict) or summary.get("facet_target", "heads") != "heads":
            return ()
        facets = summary.get("facets")
        if not isinstance(facets, list) or not all(isinstance(f, str) for f in facets):
            return ()
        n_heads = getattr(self.config, "n_heads", 0)
        return tuple(facets[:n_heads])

    @property
    def head_labels(self) -> list[str]:
        """``["head 0 · genre", ..., "head 3"]`` (plain ``"head h"`` where no facet is set)."""
        from famekit.facets import head_labels

        return head_labels(getattr(self.config, "n_heads", 0), self.facets)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module behind DDP (``.module``) and torch.compile (``._orig_mod``) wrappers,
    so saved names never carry ``module.`` or ``_orig_mod.`` prefixes."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def save_model(run_dir, model, dataset_name: str, dataset_fingerprint: str,
               summary: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` then ``config.json`` into ``run_dir`` (created if needed).

    ``summary`` (training results: best epoch, metrics, ...) and ``extra`` (anything else a
    caller wants to keep, e.g. the training config) must be JSON-serialisable. Tied weights are
    stored once per name; loading copies them back into the same parameter, so ties survive.
    """
    import famekit  # late: famekit/__init__ may import this module

    model = _unwrap(model)
    config = getattr(model, "config", None)
    if config is None or not callable(getattr(config, "to_dict", None)):
        raise CheckpointError(
            f"{type(model).__name__} has no config with to_dict(), so it could not be rebuilt. "
            "Fix: save a model made by famekit.model.build_model"
        )
    # clone(): safetensors refuses tensors that share memory (tied weights, views).
    tensors = {name: t.detach().to("cpu").contiguous().clone()
               for name, t in model.state_dict().items()}
    data = safetensors.torch.save(tensors, metadata={"format": "pt", "famekit_format":
                                                     str(FORMAT_VERSION)})
    run_dir = Path(run_dir)
    config_dict = config.to_dict()
    meta = {
        "format_version": FORMAT_VERSION,
        "famekit_version": famekit.__version__,
        "kind": getattr(config, "kind", None),
        "n_items": getattr(config, "n_items", None),
        "model_config": config_dict,
        "dataset": {"name": dataset_name, "fingerprint": dataset_fingerprint},
        "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(data).hexdigest()},
        "summary": summary or {},
        "extra": extra or {},
    }
    # config.json is the commit point of the pair (it names the weights' checksum).
    _write_pair(run_dir / WEIGHTS_FILE, data, run_dir / CONFIG_FILE, meta,
                lambda saved: saved["weights"]["sha256"])
    return run_dir


def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _check_meta(meta: Any, path: Path) -> None:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} holds a JSON {type(meta).__name__}, not an object. "
                              "Fix: re-save the run with save_model")
    missing = [key for key in ("format_version", "model_config", "dataset") if key not in meta]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}. Fix: re-save the run with "
                              "save_model (this is not a famekit run, or an edited one)")
    version = meta["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {version!r}; this famekit reads up to "
                              f"{FORMAT_VERSION}. Fix: upgrade famekit")
    if not isinstance(meta["model_config"], dict) or not isinstance(meta["dataset"], dict):
        raise CheckpointError(f"{path}: model_config and dataset must be JSON objects. "
                              "Fix: re-save the run with save_model")
    weights = meta.get("weights", {})
    if not isinstance(weights, dict) or not isinstance(weights.get("sha256", ""), str):
        raise CheckpointError(f"{path}: weights must be a JSON object holding the sha256 of "
                              f"{WEIGHTS_FILE}. Fix: re-save the run with save_model")


def _check_tensor_count(config, tensors: dict[str, torch.Tensor], weights_path: Path,
                        config_path: Path) -> None:
    """Refuse a config whose layer count the weights cannot hold, before building it (even a
    skeleton of n_layers=15000 takes half a minute): a model's tensor count is linear in its
    layers, measured on 1- and 2-layer skeletons."""
    import dataclasses

    from famekit.model import build_model

    if not isinstance(config.n_layers, int) or config.n_layers <= 2:
        return
    with torch.device("meta"):
        one, two = (len(build_model(dataclasses.replace(config, n_layers=n)).state_dict())
                    for n in (1, 2))
    expected = one + (two - one) * (config.n_layers - 1)
    if expected != len(tensors):
        raise CheckpointError(
            f"{config_path} describes {config.n_layers} layers ({expected} tensors) but "
            f"{weights_path} holds {len(tensors)} tensors. Fix: keep the config.json saved "
            "with these weights (re-save the run with save_model)")


def _check_state_matches(model: torch.nn.Module, tensors: dict[str, torch.Tensor],
                         weights_path: Path, config_path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = [f"{name} (file {tuple(tensors[name].shape)}, config "
                   f"{tuple(expected[name].shape)})"
                   for name in expected if name in tensors
                   and tensors[name].shape != expected[name].shape]
    problems = []
    if missing:
        problems.append(f"missing tensors {', '.join(missing[:5])}"
                        + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected tensors {', '.join(unexpected[:5])}"
                        + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""))
    if wrong_shape:
        problems.append(f"shape mismatch for {', '.join(wrong_shape[:5])}")
    wrong_dtype = [f"{name} ({tensors[name].dtype}, not {expected[name].dtype})"
                   for name in expected if name in tensors
                   and tensors[name].dtype != expected[name].dtype]
    if wrong_dtype:
        problems.append(f"wrong dtype for {', '.join(wrong_dtype[:5])}")
    not_finite = [name for name in expected if name in tensors and not wrong_dtype
                  and tensors[name].is_floating_point()
                  and not bool(torch.isfinite(tensors[name]).all())]
    if not_finite:  # NaN weights would score every item NaN, i.e. NDCG 0, silently
        problems.append(f"NaN or infinite values in {', '.join(not_finite[:5])}")
    if problems:
        raise CheckpointError(
            f"{weights_path} does not match the model described by {config_path}: "
            f"{'; '.join(problems)}. Fix: keep the config.json saved with these weights "
            "(re-save the run with save_model)"
        )


def load_run(run_dir, dataset=None, device=None) -> Run:
    """Rebuild the model of ``run_dir`` from config.json and load its weights, without pickle.

    Args:
        run_dir: a directory written by :func:`save_model`.
        dataset: optional :class:`~famekit.datasets.SeqDataset`; if given, its fingerprint must
            equal the one recorded at training time (a model is never evaluated on other data).
        device: where to put the model; None = CUDA when available, else CPU.

    Raises:
        CheckpointError: naming the file and the fix, for a missing directory or file, invalid
            JSON, a pickle or corrupt weights file, a checksum or config/weights mismatch
            (naming the tensors), or a dataset fingerprint mismatch.
    """
    run_dir = _require_run_files(run_dir, (CONFIG_FILE, WEIGHTS_FILE),
                                 "pass a complete run directory written by save_model")
    config_path, weights_path = run_dir / CONFIG_FILE, run_dir / WEIGHTS_FILE
    meta = _read_json(config_path)
    _check_meta(meta, config_path)

    if dataset is not None:
        recorded = meta["dataset"].get("fingerprint")
        actual = dataset.fingerprint
        if recorded != actual:
            raise CheckpointError(
                f"{config_path}: the model was trained on dataset "
                f"{meta['dataset'].get('name')!r} with fingerprint {recorded}, but the given "
                f"dataset {getattr(dataset, 'name', '?')!r} has fingerprint {actual}. Fix: load "
                "the dataset the run was trained on (same source, options and files), or "
                "retrain on this one"
            )

    recorded_sha = (meta.get("weights") or {}).get("sha256")
    tensors, sha256 = _read_committed_safetensors(weights_path, recorded_sha, "run")
    if recorded_sha is not None and recorded_sha != sha256:
        raise CheckpointError(
            f"{weights_path} has sha256 {sha256[:16]}..., but {config_path} was saved with "
            f"{str(recorded_sha)[:16]}...: the weights were replaced or damaged after saving (or "
            "a save was interrupted). Fix: re-save the run with save_model, or restore both "
            "files together"
        )

    from famekit.model import ModelConfig, build_model  # late: keeps atomic_write_* light

    try:
        config = ModelConfig.from_dict(meta["model_config"])
        _check_tensor_count(config, tensors, weights_path, config_path)
        # Shapes are checked on a skeleton on the meta device (no memory): a tampered config
        # asking for a huge table is refused here, never allocated.
        with torch.device("meta"):
            skeleton = build_model(config)
    except (TypeError, ValueError, KeyError, RuntimeError, OverflowError) as err:
        raise CheckpointError(
            f"{config_path}: model_config cannot build a model ({err}). Fix: re-save the run "
            "with save_model from this famekit version"
        ) from err
    _check_state_matches(skeleton, tensors, weights_path, config_path)
    model = build_model(config)
    model.load_state_dict(tensors, strict=True)
    model.to(_resolve_device(device))
    model.eval()
    return Run(model=model, config=config, meta=meta, run_dir=run_dir)


# -------------------------------------------------------------------------- training state
# Nested Python state (optimizer.state_dict(), RNG states, caller extras) becomes JSON plus a
# flat dict of tensors: each tensor is replaced by {"__tensor__": name}; tuples, numpy arrays
# and dicts with non-string keys get tagged forms so that they come back with their types.
def _encode(obj, name: str, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, torch.Tensor):
        key = name if name not in tensors else f"{name}#{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{name}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{name}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{name}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, f"{name}.key{i}", tensors),
                               _encode(v, f"{name}.{k}", tensors)]
                              for i, (k, v) in enumerate(obj.items())]}
    raise CheckpointError(
        f"training state entry {name!r} is a {type(obj).__name__}, which famekit cannot store "
        "without pickle. Fix: keep extra_state/rng to tensors, numpy arrays, numbers, strings, "
        "lists, tuples and dicts"
    )


def _decode(obj, tensors: dict[str, torch.Tensor], path: Path):
    if isinstance(obj, list):
        return [_decode(v, tensors, path) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        key = obj["__tensor__"]
        if key not in tensors:
            raise CheckpointError(f"{path} refers to tensor {key!r}, which the tensors file lacks. "
                                  "Fix: save the training state again (save_train_state)")
        return tensors[key]
    if "__ndarray__" in obj:
        # only the numeric dtypes famekit writes (RNG states): an edited "<U100000000" would
        # allocate 400 MB per element before anything else is checked
        dtype = np.dtype(obj["dtype"])
        if dtype.kind not in "biuf" or dtype.itemsize > 8:
            raise ValueError(f"array dtype {obj['dtype']!r} is not one famekit writes")
        return np.asarray(obj["__ndarray__"], dtype=dtype).reshape(obj["shape"])
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors, path) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k, tensors, path): _decode(v, tensors, path) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors, path) for k, v in obj.items()}


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states: Python ``random``, numpy's legacy global, torch CPU and CUDA."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch_cpu": torch.get_rng_state(),  # uint8 tensor
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()  # uint8 tensors, one per device
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured (keys that are absent are left alone)."""
    if "python" in state:
        random.setstate(state["python"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "torch_cpu" in state:
        torch.set_rng_state(state["torch_cpu"].to(torch.uint8))
    if "torch_cuda" in state and torch.cuda.is_available():
        cuda_states = [s.to(torch.uint8) for s in state["torch_cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def save_train_state(run_dir, optimizer: torch.optim.Optimizer, epoch: int,
                     extra_state: dict | None = None, rng: dict | None = None) -> Path:
    """Save what resuming training needs, without pickle.

    Optimizer state tensors (Adam's moments and step counts), tensors in ``extra_state`` and the
    torch RNG states (uint8 tensors) go to ``train_state.safetensors``; param_groups, scalars,
    the epoch and Python/numpy RNG states go to ``train_state.json``, written last with the
    tensors' sha256. ``rng`` defaults to :func:`capture_rng_state` (the global generators now);
    pass your own dict to save other generators (e.g. a ``np.random.Generator``'s
    ``bit_generator.state``).
    """
    tensors: dict[str, torch.Tensor] = {}
    encoded = {
        "optimizer": _encode(optimizer.state_dict(), "optimizer", tensors),
        "extra_state": _encode(extra_state or {}, "extra_state", tensors),
        "rng": _encode(capture_rng_state() if rng is None else rng, "rng", tensors),
    }
    data = safetensors.torch.save(tensors, metadata={"format": "pt"})
    run_dir = Path(run_dir)
    import famekit

    meta = {
        "format_version": FORMAT_VERSION,
        "famekit_version": famekit.__version__,
        "optimizer_class": type(optimizer).__name__,
        "epoch": int(epoch),
        "tensors_sha256": hashlib.sha256(data).hexdigest(),
        **encoded,
    }
    _write_pair(run_dir / TRAIN_STATE_TENSORS_FILE, data, run_dir / TRAIN_STATE_JSON_FILE, meta,
                lambda saved: saved["tensors_sha256"])
    return run_dir


def load_train_state(run_dir, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load the optimizer state saved by :func:`save_train_state` into ``optimizer``.

    Returns ``{"epoch", "extra_state", "rng"}``; call :func:`restore_rng_state` on ``rng`` to
    continue with the same random numbers. Tensors land on the parameters' device.
    """
    run_dir = _require_run_files(run_dir, (TRAIN_STATE_JSON_FILE, TRAIN_STATE_TENSORS_FILE),
                                 "resume only from a run saved with save_train_state, or "
                                 "start training afresh")
    json_path = run_dir / TRAIN_STATE_JSON_FILE
    tensors_path = run_dir / TRAIN_STATE_TENSORS_FILE
    meta = _read_json(json_path)
    if not isinstance(meta, dict) or not {"optimizer", "epoch", "optimizer_class"} <= set(meta):
        raise CheckpointError(f"{json_path} is not a famekit training state (needs optimizer, "
                              "epoch, optimizer_class). Fix: save it with save_train_state")
    if meta["optimizer_class"] != type(optimizer).__name__:
        raise CheckpointError(
            f"{json_path} holds {meta['optimizer_class']} state but the optimizer given is "
            f"{type(optimizer).__name__}. Fix: resume with the same optimizer class"
        )
    tensors, sha256 = _read_committed_safetensors(tensors_path, meta.get("tensors_sha256"),
                                                  "training state")
    if meta.get("tensors_sha256") not in (None, sha256):
        raise CheckpointError(
            f"{tensors_path} does not match the sha256 recorded in {json_path} (replaced, "
            "damaged or an interrupted save). Fix: resume from an intact save or start afresh"
        )
    # A hand-edited or damaged file can hold anything: every surprise is a CheckpointError.
    # RecursionError: a history nested deeper than the interpreter's stack (an edited file)
    damaged = (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError)
    try:
        if isinstance(meta["epoch"], bool) or not isinstance(meta["epoch"], int):
            raise TypeError(f"epoch {meta['epoch']!r} is not a whole number")
        state = _decode(meta["optimizer"], tensors, json_path)
        loaded = {
            "epoch": meta["epoch"],
            "extra_state": _decode(meta.get("extra_state", {}), tensors, json_path),
            "rng": _decode(meta.get("rng", {}), tensors, json_path),
        }
    except damaged as err:
        raise CheckpointError(
            f"{json_path} is damaged or was edited ({type(err).__name__}: {err}). Fix: resume "
            "from an intact save or start afresh"
        ) from err
    try:
        optimizer.load_state_dict(state)
    except (*damaged, RuntimeError) as err:
        raise CheckpointError(
            f"{json_path}: the saved optimizer state does not fit this optimizer ({err}). "
            "Fix: build the model and optimizer with the same config before resuming"
        ) from err
    return loaded
