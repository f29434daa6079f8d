"""Files written whole or not at all, and JSON read with one error policy.

The lowest layer of famekit's own files (run directories, reports, figures, the dataset
cache): every writer goes through :func:`atomic_write_bytes`, every reader of a JSON file that
famekit wrote through :func:`read_json`, so a kill never leaves half a file and a damaged file
always gives the same kind of message (file, line and column, and the fix).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from famekit.errors import CheckpointError, DataFormatError, FamekitError

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "exclusive_lock",
           "read_json"]



def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask can only be read by setting it


def atomic_write_bytes(path, data: bytes, error: type[FamekitError] = CheckpointError,
                       fix: str | None = None) -> Path:
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
            f"cannot write {path}: {err}. Fix: {fix or 'choose a directory you can write to'}"
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
                f"cannot write {path}: {err}. Fix: "
                f"{fix or 'free disk space or choose a writable directory'}"
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
                      error: type[FamekitError] = CheckpointError, fix: str | None = None) -> Path:
    """:func:`atomic_write_bytes` for text."""
    return atomic_write_bytes(path, text.encode(encoding), error=error, fix=fix)


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


# Lock files are the only files famekit opens in place (every other file is written to a fresh
# temporary name and renamed): they must never follow a link planted there (a symlink committed
# in a repository would make famekit truncate the file it points to), nor block on a FIFO.
_LOCK_FLAGS = (os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))


def _open_lock_file(path: Path, error: type[FamekitError]) -> int:
    try:
        fd = os.open(path, _LOCK_FLAGS, 0o666)
    except OSError as err:
        if err.errno == errno.ELOOP or path.is_symlink():
            raise error(f"{path} is a symbolic link; famekit never writes through a link (it "
                        f"would overwrite the file the link points to). Fix: remove the link "
                        f"(rm {path}) and run again") from None
        raise error(f"cannot create the lock file {path} ({err.strerror or err}). Fix: choose "
                    "a folder you can write to") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        what = "a hard link to another file" if stat.S_ISREG(info.st_mode) else "not a file"
        raise error(f"{path} is {what}; famekit only locks with a file of its own. Fix: remove "
                    f"it (rm {path}) and run again")
    return fd


@contextlib.contextmanager
def exclusive_lock(path, busy: Callable[[str], FamekitError],
                   error: type[FamekitError] = CheckpointError) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the ``with`` block.

    While another process holds it, raises ``busy(holder)`` (``holder``: what that process
    wrote into the file, e.g. ``"pid 123"``). The lock is released when the process dies, so
    a killed writer never leaves a folder locked. A link or a non-file at ``path`` is ``error``.
    """
    import fcntl

    path = Path(path)
    fd = _open_lock_file(path, error)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            raise busy(holder or "another process") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
