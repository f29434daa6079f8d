"""The error types famekit raises on bad input.

Every error a user can cause is a :class:`FamekitError`. Its message says *what* went wrong,
*where* (file and line, parameter name, URL) and *how to fix it*, so that the CLI can print one
line and exit with status 2 instead of a library traceback.
"""

from __future__ import annotations

__all__ = [
    "FamekitError",
    "DataFormatError",
    "UnknownNameError",
    "DownloadError",
    "ChecksumError",
    "CacheError",
    "CheckpointError",
    "ParameterError",
]


class FamekitError(Exception):
    """Base class of every error famekit raises on purpose (bad input, not a bug)."""


class DataFormatError(FamekitError, ValueError):
    """A sequence or metadata file is malformed (the message names file, line and fix)."""

    def __init__(self, path, line: int | None, problem: str, fix: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}. Fix: {fix}")


class UnknownNameError(FamekitError, KeyError):
    """An unknown dataset, model kind or other registered name."""

    def __init__(self, kind: str, name: str, known):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(
            f"unknown {kind} {name!r}. Fix: use one of {', '.join(self.known)}"
        )

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class DownloadError(FamekitError, OSError):
    """A download failed (offline, HTTP error, truncated body) after all retries."""


class ChecksumError(DownloadError):
    """A downloaded or cached file does not have the sha256 its provenance records."""


class CacheError(FamekitError, OSError):
    """The cache directory cannot be created or written."""


class CheckpointError(FamekitError, ValueError):
    """A run directory or checkpoint is missing, corrupt, unsafe or does not match."""


class ParameterError(FamekitError, ValueError):
    """A parameter (CLI flag, notebook parameter, config field) has an invalid value."""
