"""Files written whole or not at all, and JSON read with one error policy.

The lowest layer of famekit's own files (run directories, reports, figures, the dataset
cache): every writer goes through :func:`atomic_write_bytes`, every reader of a JSON file that
famekit wrote through :func:`read_json`, so a kill never leaves half a file and a damaged file
always gives the same kind of message (file, line and column, and the fix).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from famekit.errors import CheckpointError, DataFormatError, FamekitError

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "read_json"]



def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask can only be read by setting it


def atomic_write_bytes(path, data: bytes, error: type[FamekitError] = CheckpointError) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same directory (same filesystem, so the rename is
    atomic), are fsync'ed, and replace ``path`` with ``os.replace``; the directory is fsync'ed
    too where the platform allows, so the rename survives a power cut. Parent directories are
    created. A failure is ``error`` (naming the file and the fix) and leaves no temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise error(
            f"cannot write {path}: {err}. Fix: choose a directory you can write to"
        ) from err
    try:
        # mkstemp creates the file 0600; give it the permissions a plain open() would
        # (0666 minus the umask), so that reports and runs stay readable by others.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as err:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise error(
                f"cannot write {path}: {err}. Fix: free disk space or choose a writable directory"
            ) from err
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text: str, encoding: str = "utf-8",
                      error: type[FamekitError] = CheckpointError) -> Path:
    """:func:`atomic_write_bytes` for text."""
    return atomic_write_bytes(path, text.encode(encoding), error=error)


def _json_default(obj):
    """Let results holding numpy scalars/arrays, tensors or paths be written as JSON."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if type(obj).__module__.startswith("torch") and hasattr(obj, "detach"):  # a tensor; no
        return obj.detach().cpu().tolist()  # torch import for this low module
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def atomic_write_json(path, obj, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (numpy values, tensors and paths converted) atomically."""
    text = json.dumps(obj, indent=indent, default=_json_default)
    return atomic_write_text(path, text + "\n")


def read_json(path, *, fix: str, error: type[FamekitError] = CheckpointError,
              expect: type | None = dict) -> Any:
    """The JSON value in ``path``, or ``error`` naming the file, the problem and ``fix``.

    Unreadable, not UTF-8, invalid (with line and column), nested too deeply to parse, or (with
    ``expect``) of another JSON type than ``expect``: every case is one clear error of the same
    shape, ``<file>[, line N]: <problem>. Fix: <fix>``, never a traceback.
    """
    path = Path(path)
    line, problem = None, None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = "the file is missing"
    except OSError as err:
        problem = f"cannot read the file ({err.strerror or err})"
    except UnicodeDecodeError as err:
        problem = f"not UTF-8 text ({err.reason})"
    if problem is None:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            line, problem = err.lineno, f"invalid JSON at column {err.colno} ({err.msg})"
        except RecursionError:  # nesting deeper than the interpreter's recursion limit
            problem = "invalid JSON (nested too deeply to parse)"
    if problem is None and expect is not None and not isinstance(value, expect):
        names = {dict: "an object", list: "an array", str: "a string"}
        problem = f"holds a JSON {type(value).__name__}, not {names.get(expect, expect.__name__)}"
    if problem is None:
        return value
    if issubclass(error, DataFormatError):
        raise error(path, line, problem, fix)
    where = f"{path}, line {line}" if line is not None else str(path)
    raise error(f"{where}: {problem}. Fix: {fix}")
