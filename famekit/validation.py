"""Argument checks shared by every public function: one rule per kind of value.

Each check returns the value in its plain Python type or raises :class:`ParameterError` with
the parameter's name, what it got and how to fix it. ``bool`` is never accepted as a number
(``True`` is an ``int`` to Python, but ``epochs=True`` is a mistake, not 1 epoch).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from famekit.errors import ParameterError

__all__ = ["available_memory", "check_choice", "check_fits_in_memory", "check_int",
           "check_name", "check_number", "is_real_number", "is_whole_number"]


def is_whole_number(value) -> bool:
    """True for ints and numpy integers, False for ``bool`` and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real_number(value) -> bool:
    """True for ints, floats and numpy numbers, False for ``bool`` and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int | None = None, fix: str | None = None) -> int:
    """``value`` as an ``int``, refusing non-integers, bools and values below ``minimum``."""
    if not is_whole_number(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ParameterError(
            f"{name} must be a whole number{bound}, got {value!r}. "
            f"Fix: {fix or f'pass {name}={minimum if minimum is not None else 0} or more'}"
        )
    return int(value)


def check_number(name: str, value, *, positive: bool = False, minimum: float | None = None,
                 below: float | None = None, fix: str | None = None) -> float:
    """``value`` as a finite ``float``; ``positive`` (> 0), ``minimum`` (>=), ``below`` (<)."""
    ok = is_real_number(value) and math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if ok and minimum is not None:
        ok = value >= minimum
    if ok and below is not None:
        ok = value < below
    if not ok:
        wanted = ("a positive number" if positive else "a finite number") + (
            f" >= {minimum:g}" if minimum is not None else "") + (
            f" below {below:g}" if below is not None else "")
        raise ParameterError(f"{name} must be {wanted}, got {value!r}. "
                             f"Fix: {fix or f'pass a valid {name}'}")
    return float(value)


def check_choice(name: str, value, choices: Iterable[str], fix: str | None = None) -> str:
    """``value`` when it is one of ``choices``, else a ParameterError listing them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ParameterError(
            f"{name}={value!r} is invalid. "
            f"Fix: {fix or 'use one of ' + ', '.join(repr(c) for c in choices)}"
        )
    return value


def check_name(name: str, value, fix: str | None = None) -> str:
    """``value`` when it is a plain name, usable as one component of a path: a non-empty string
    without a path separator or control character that is not ``.``/``..`` and does not start
    with a dot. A name is never a path: ``"../x"`` is refused, not resolved."""
    if (not isinstance(value, str) or not value or value[0] == "." or "/" in value
            or "\\" in value or any(ord(c) < 32 or ord(c) == 127 for c in value)):
        raise ParameterError(
            f"{name} must be a plain name (no '/', '\\', leading '.' or control characters), "
            f"got {value!r}. Fix: {fix or f'pass {name} as a name such as synthetic'}"
        )
    return value


def available_memory() -> int | None:
    """Bytes of memory the machine can still give (Linux ``MemAvailable``), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_fits_in_memory(what: str, needed: int, fix: str) -> None:
    """Refuse ``what`` before allocating when it needs more bytes than the machine has free
    (nothing is refused where the free memory cannot be read)."""
    free = available_memory()
    if free is not None and needed > free:
        raise ParameterError(
            f"{what} needs about {needed / 2**30:.1f} GiB, more than the "
            f"{free / 2**30:.1f} GiB of memory available. Fix: {fix}")
