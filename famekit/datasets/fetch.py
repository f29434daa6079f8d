"""Fetching and caching: downloads verified by sha256, and a processed-dataset cache.

Where files come from
    Every real dataset is built from files famekit downloads itself from the public location its
    provenance names (GitHub raw files at pinned commits, GroupLens zips). The tables of those
    files live next to the code that parses them (:mod:`famekit.datasets.amazon`,
    :mod:`famekit.datasets.movielens`) as :class:`RemoteFile` entries with their sha256.

Where files go
    ``cache_root()``: the ``cache_dir`` argument, else ``$FAMEKIT_CACHE``, else
    ``~/.cache/famekit``. Downloads land in ``<root>/downloads/<source>/``, processed datasets in
    ``<root>/processed/``. Every file appears there by an atomic rename of a complete, verified
    temporary file, so an interrupted download or build never leaves a half-written file behind.

Mirrors
    ``FAMEKIT_MIRROR=http://host:port`` rewrites every URL ``https://HOST/PATH`` to
    ``$FAMEKIT_MIRROR/HOST/PATH`` (one variable for every source). The test suite serves the
    shared data folder this way (``tests/mirror.py``); an organisation can do the same with any
    static file server laid out like that.

Failures are famekit errors whose message names the URL or file and the fix:
:class:`~famekit.errors.DownloadError` (offline, HTTP error, truncated body, after bounded
retries with exponential backoff), :class:`~famekit.errors.ChecksumError` (wrong bytes, corrupt
zip) and :class:`~famekit.errors.CacheError` (cache directory not writable).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from famekit.datasets.core import SeqDataset
from famekit.errors import CacheError, ChecksumError, DataFormatError, DownloadError, ParameterError
from famekit.fileio import atomic_write_text

__all__ = [
    "CACHE_ENV",
    "MIRROR_ENV",
    "RemoteFile",
    "Source",
    "cache_root",
    "cached_build",
    "check_zip",
    "download",
    "fetch_source",
    "github_raw",
    "is_downloaded",
    "load_processed",
    "load_source",
    "pack_dataset",
    "processed_key",
    "resolve_url",
    "save_processed",
    "sha256_file",
    "unpack_dataset",
]

CACHE_ENV = "FAMEKIT_CACHE"
_CACHE_FIX = (f"free disk space, pass a writable cache_dir=..., or set {CACHE_ENV} to a writable "
              "directory")
MIRROR_ENV = "FAMEKIT_MIRROR"
UNVERIFIED_ENV = "FAMEKIT_ALLOW_UNVERIFIED"  # "1": load zip members nobody recorded a hash of
# A zip member is inflated only when its declared size and compression ratio are plausible
# (MovieLens' largest member, ml-20m's ratings.csv, is 533 MB at a ratio of about 4); the
# ratio only matters for members large enough to cost something (small test files compress
# far better than real data).
MAX_MEMBER_BYTES = 4 << 30
MAX_COMPRESSION_RATIO = 100
RATIO_CHECKED_FROM = 16 << 20
GITHUB_RAW = "https://raw.githubusercontent.com"

# Retries: a bounded number of extra attempts with exponential backoff (BACKOFF_S, 2x, 4x ...).
# Tests lower these module constants; callers may also pass retries=/backoff= explicitly.
RETRIES = 3
BACKOFF_S = 1.0
TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 16
USER_AGENT = "famekit (+https://github.com/famekit) python-urllib"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a source: where it lives upstream and what it must hash to.

    Attributes:
        filename: local name under ``downloads/<source>/`` (unique within the source).
        url: upstream https URL (rewritten by ``$FAMEKIT_MIRROR`` when set).
        sha256: expected sha256 of the downloaded bytes, or ``None`` where nobody published it
            (the GroupLens zips); such files are checked by ``members`` and zip integrity.
        size: expected size in bytes, or ``None``.
        members: for zips, ``{member path: sha256}`` of members whose hash is known.
        origin: one line saying where the file comes from (repository @ commit : path).
        parsed: for zips, the members famekit reads; one without a hash in ``members`` is
            refused unless the user opts in (``$FAMEKIT_ALLOW_UNVERIFIED=1``).
    """

    filename: str
    url: str
    sha256: str | None = None
    size: int | None = None
    members: dict[str, str] = field(default_factory=dict)
    origin: str = ""
    parsed: tuple[str, ...] = ()

    @property
    def is_zip(self) -> bool:
        return self.filename.endswith(".zip")


@dataclass(frozen=True)
class Source:
    """A dataset source: its files plus the one-line facts its dataset info records."""

    name: str
    files: tuple[RemoteFile, ...]
    licence: str
    citation: str

    def file(self, filename: str) -> RemoteFile:
        for remote in self.files:
            if remote.filename == filename:
                return remote
        raise KeyError(filename)


def github_raw(repo: str, commit: str, path: str) -> str:
    """The raw.githubusercontent.com URL of ``path`` in ``repo`` at ``commit``."""
    return f"{GITHUB_RAW}/{repo}/{commit}/{path}"


# ---------------------------------------------------------------------------------- locations
def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache root: ``cache_dir``, else ``$FAMEKIT_CACHE``, else ``~/.cache/famekit``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    value = os.environ.get(CACHE_ENV)
    if value:
        return Path(value).expanduser()
    return Path.home() / ".cache" / "famekit"


def _ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) or raise :class:`CacheError` saying how to fix it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(
            f"cannot create the cache directory {path} ({e.strerror or e}). Fix: pass a writable "
            f"cache_dir=..., or set {CACHE_ENV} to a writable directory"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CacheError(
            f"the cache directory {path} is not writable. Fix: pass a writable cache_dir=..., "
            f"or set {CACHE_ENV} to a writable directory"
        )
    return path


def resolve_url(url: str) -> str:
    """``url`` itself, or its ``$FAMEKIT_MIRROR/HOST/PATH`` form when the variable is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    try:
        base = urllib.parse.urlsplit(mirror)
        usable = base.scheme in ("http", "https") and bool(base.hostname)
        base.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        usable = False
    if not usable or any(c.isspace() or ord(c) < 32 for c in mirror):
        raise ParameterError(
            f"{MIRROR_ENV}={mirror!r} is not an http(s) URL. Fix: set it to e.g. "
            f"http://127.0.0.1:8000 (files served at /HOST/PATH), or unset it"
        )
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"{mirror.rstrip('/')}/{parts.netloc}{path}"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- download
class _Retryable(Exception):
    """A failure worth another attempt (connection problem, 5xx, truncated body)."""


def _unlink_quietly(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def _temporary_file(directory: Path, prefix: str) -> Iterator[Path]:
    """A temp file in ``directory`` (same file system, so the final rename is atomic).

    It is removed on any failure; the caller renames it into place on success.
    """
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=f".{prefix}.", suffix=".part")
    except OSError as e:
        raise CacheError(
            f"cannot write in the cache directory {directory} ({e.strerror or e}). Fix: pass a "
            f"writable cache_dir=..., or set {CACHE_ENV} to a writable directory"
        ) from None
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        _unlink_quietly(path)  # a no-op after a successful rename


def _fetch_once(url: str, shown: str, target: Path, label: str, expected_size: int | None,
                progress: bool, timeout: float) -> str:
    """Stream ``url`` into ``target``; return the sha256 of the bytes written.

    ``shown`` is how messages name the URL (with the upstream URL when a mirror serves it).
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code >= 500 or e.code in (408, 429):
            raise _Retryable(f"HTTP {e.code} {e.reason}") from None
        raise DownloadError(
            f"{shown} answered HTTP {e.code} {e.reason}. Fix: check that the URL still exists "
            f"(the provenance pins it); if you use a mirror ({MIRROR_ENV}), check that it serves "
            f"this path"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise _Retryable(f"cannot connect ({reason})") from None
    from tqdm.auto import tqdm

    h = hashlib.sha256()
    received = 0
    with response:
        length_header = response.headers.get("Content-Length")
        announced = int(length_header) if length_header and length_header.isdigit() else None
        if expected_size is not None and announced is not None and announced > expected_size:
            raise DownloadError(
                f"{shown} announces {announced} bytes, more than the recorded {expected_size}. "
                f"Fix: the file changed upstream or a mirror ({MIRROR_ENV}) serves another one")
        total = announced if announced is not None else expected_size
        try:
            out = open(target, "wb")  # noqa: SIM115 - closed by the with block below
        except OSError as e:
            raise CacheError(f"cannot write {target} ({e.strerror or e}). Fix: pass a writable "
                             f"cache_dir=..., or set {CACHE_ENV}") from None
        with out, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                       disable=not progress, leave=False) as bar:
            while True:
                try:
                    block = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as e:
                    raise _Retryable(f"connection broken after {received} bytes ({e})") from None
                if not block:
                    break
                if expected_size is not None and received + len(block) > expected_size:
                    raise DownloadError(  # cut off: never store more than the recorded size
                        f"{shown} sent more than the recorded {expected_size} bytes. Fix: the "
                        f"file changed upstream or a mirror ({MIRROR_ENV}) serves another one")
                try:
                    out.write(block)
                except OSError as e:
                    raise CacheError(
                        f"cannot write {target} ({e.strerror or e}; is the disk full?). Fix: "
                        f"free space, or pass another cache_dir=... / set {CACHE_ENV}"
                    ) from None
                h.update(block)
                received += len(block)
                bar.update(len(block))
    if announced is not None and received != announced:
        raise _Retryable(f"truncated body: {received} of {announced} bytes")
    if expected_size is not None and received < expected_size:
        raise _Retryable(f"truncated body: {received} of {expected_size} bytes")
    return h.hexdigest()


def unverified_allowed() -> bool:
    """Has the user opted in to loading zip members without a recorded hash?"""
    return os.environ.get(UNVERIFIED_ENV, "").strip() == "1"


def check_zip(path: Path, members: dict[str, str], url: str, parsed: tuple[str, ...] = ()
              ) -> None:
    """Raise :class:`ChecksumError` unless ``path`` is an intact zip with these member hashes,
    every member it will parse has one (or the user opted in), and no member is a bomb."""
    fix = "Fix: delete the file if it is in the cache and run again; if it keeps failing, the " \
          "upstream archive changed (report it)"
    unpinned = [m for m in parsed if m not in members]
    if unpinned and not unverified_allowed():
        raise ChecksumError(
            f"{url}: famekit has no recorded sha256 for {', '.join(unpinned)}, so a forged "
            f"archive would load as the real one. Fix: if you trust this copy, opt in with "
            f"--allow-unverified (famekit commands) or {UNVERIFIED_ENV}=1 (the dataset is then "
            "loaded unverified)")
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():  # declared sizes, before anything is inflated
                ratio = info.file_size / max(1, info.compress_size)
                if info.file_size > MAX_MEMBER_BYTES or (
                        info.file_size > RATIO_CHECKED_FROM and ratio > MAX_COMPRESSION_RATIO):
                    raise ChecksumError(
                        f"{url}: zip member {info.filename} declares {info.file_size} bytes "
                        f"from {info.compress_size} (ratio {ratio:.0f}; limits "
                        f"{MAX_MEMBER_BYTES} bytes, ratio {MAX_COMPRESSION_RATIO}): refused "
                        f"before inflating. {fix}")
            bad = archive.testzip()
            if bad is not None:
                raise ChecksumError(f"{url}: zip member {bad} fails its CRC check. {fix}")
            names = set(archive.namelist())
            for member, expected in members.items():
                if member not in names:
                    raise ChecksumError(f"{url}: the zip has no member {member}. {fix}")
                h = hashlib.sha256()
                with archive.open(member) as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                if h.hexdigest() != expected:
                    raise ChecksumError(
                        f"{url}: zip member {member} has sha256 {h.hexdigest()}, expected "
                        f"{expected}. {fix}"
                    )
    except ChecksumError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as e:
        raise ChecksumError(f"{url}: not a valid zip archive ({e}). {fix}") from None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_sidecar(path: Path, digest: str) -> None:
    atomic_write_text(_sidecar(path), digest + "\n", error=CacheError, fix=_CACHE_FIX)


def download(remote: RemoteFile, directory: str | os.PathLike, *, progress: bool = True,
             retries: int | None = None, backoff: float | None = None,
             timeout: float | None = None) -> Path:
    """Download ``remote`` into ``directory`` (unless a verified copy is there) and return it.

    The body streams into a temporary file next to the target, hashed on the way; it is
    renamed into place only when complete and verified (sha256, or zip integrity and member
    hashes). A ``<file>.sha256`` sidecar records the hash of what was installed, so that
    processed caches can be keyed by it even when upstream publishes no hash.
    """
    retries = RETRIES if retries is None else retries
    backoff = BACKOFF_S if backoff is None else backoff
    timeout = TIMEOUT_S if timeout is None else timeout
    directory = _ensure_dir(Path(directory))
    target = directory / remote.filename
    if target.exists() and _verified_copy(remote, target):
        return target
    url = resolve_url(remote.url)
    shown = url if url == remote.url else f"{url} (mirror of {remote.url})"
    last_problem = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        with _temporary_file(directory, remote.filename) as tmp:
            try:
                digest = _fetch_once(url, shown, tmp, remote.filename, remote.size, progress,
                                     timeout)
            except _Retryable as e:
                last_problem = str(e)
                continue
            if remote.sha256 is not None and digest != remote.sha256:
                raise ChecksumError(
                    f"{shown}: downloaded bytes have sha256 {digest}, expected {remote.sha256} "
                    f"({remote.origin or remote.filename}). Fix: the file changed upstream or a "
                    f"proxy/mirror altered it; check {MIRROR_ENV} and your network, then retry"
                )
            if remote.is_zip:
                check_zip(tmp, remote.members, shown, remote.parsed)
            os.replace(tmp, target)
        _write_sidecar(target, digest)
        return target
    raise DownloadError(
        f"cannot download {shown} after {retries + 1} attempts ({last_problem}). Fix: check your "
        f"internet connection, or set {MIRROR_ENV} to a mirror that serves /HOST/PATH, or put "
        f"the file (sha256 {remote.sha256 or 'unpublished'}) at {target}"
    )


def _verified_copy(remote: RemoteFile, target: Path) -> bool:
    """Is the file already in the cache the right one? (It got there by an atomic rename.)"""
    if remote.sha256 is None:
        if not _sidecar(target).exists():  # placed by hand: check it once, then record it
            if remote.is_zip:
                check_zip(target, remote.members, str(target), remote.parsed)
            _write_sidecar(target, sha256_file(target))
        return True
    digest = sha256_file(target)
    if digest == remote.sha256:
        if not _sidecar(target).exists():
            _write_sidecar(target, digest)
        return True
    # A corrupted or foreign file: drop it and download again.
    _unlink_quietly(target)
    _unlink_quietly(_sidecar(target))
    return False


def downloads_dir(source: Source, cache_dir=None) -> Path:
    return cache_root(cache_dir) / "downloads" / source.name


def fetch_source(source: Source, cache_dir=None, *, progress: bool = True) -> dict[str, Path]:
    """Download every file of ``source`` (verified) and return ``{filename: path}``."""
    directory = downloads_dir(source, cache_dir)
    return {remote.filename: download(remote, directory, progress=progress)
            for remote in source.files}


def is_downloaded(source: Source, cache_dir=None) -> bool:
    """Are all of ``source``'s files in the cache (without checking their bytes)?"""
    directory = downloads_dir(source, cache_dir)
    return all((directory / r.filename).exists() for r in source.files)


def source_digests(source: Source, cache_dir=None) -> list[str] | None:
    """The sha256 of every file of ``source`` without reading the files.

    Pinned hashes come from the table; unpinned ones (GroupLens zips) from the sidecar written
    at download time. ``None`` when an unpinned file is not downloaded yet.
    """
    directory = downloads_dir(source, cache_dir)
    digests = []
    for remote in source.files:
        if remote.sha256 is not None:
            digests.append(remote.sha256)
            continue
        sidecar = _sidecar(directory / remote.filename)
        if not (directory / remote.filename).exists() or not sidecar.exists():
            return None
        digests.append(sidecar.read_text(encoding="utf-8").strip())
    return digests


# ---------------------------------------------------------------------------------- processed
def processed_key(name: str, version: str, digests: list[str], options: dict[str, Any]) -> str:
    """A short key: builder version + source hashes + build options (changes -> rebuild)."""
    payload = json.dumps({"name": name, "version": version, "sources": digests,
                          "options": options}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _processed_path(name: str, key: str, cache_dir=None) -> Path:
    return cache_root(cache_dir) / "processed" / f"{name}-{key}.npz"


def save_processed(name: str, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any],
                   cache_dir=None) -> Path:
    """Write arrays + a JSON document as one ``.npz`` (no pickle), atomically.

    Older entries of the same dataset (other keys) are removed afterwards.
    """
    path = _processed_path(name, key, cache_dir)
    directory = _ensure_dir(path.parent)
    payload = dict(arrays)
    payload["meta_json"] = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"),
                                         dtype=np.uint8)
    # Streamed to a temporary file (not built in memory: a large dataset's arrays would be
    # held twice), then renamed into place.
    with _temporary_file(directory, path.name) as tmp:
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **payload)
            os.replace(tmp, path)
        except OSError as e:  # e.g. a full disk: the dataset is built, only its cache fails
            raise CacheError(f"cannot write the processed dataset {path} ({e.strerror or e}). "
                             f"Fix: {_CACHE_FIX}") from None
    for stale in directory.glob(f"{name}-*.npz"):
        if stale != path and len(stale.stem) == len(path.stem):
            _unlink_quietly(stale)
    return path


def _check_npz_sizes(path: Path) -> None:
    """Refuse (ValueError) a cached ``.npz`` whose arrays claim more bytes than their members
    hold: an edited header must not make numpy allocate what the file does not contain."""
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            with archive.open(member) as handle:
                major, _ = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if major == 1
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(handle)
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if claimed > member.file_size:
                    raise ValueError(f"{member.filename} claims {claimed} bytes in a "
                                     f"{member.file_size}-byte member")


def load_processed(name: str, key: str, cache_dir=None
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays and JSON document saved under (name, key), or ``None`` if absent/unreadable."""
    path = _processed_path(name, key, cache_dir)
    if not path.exists():
        return None
    try:
        _check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "meta_json"}
            meta = json.loads(data["meta_json"].tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        _unlink_quietly(path)  # a damaged entry is rebuilt, not trusted
        return None
    return arrays, meta


def cached_build(name: str, version: str, source: Source, options: dict[str, Any],
                 build: Callable[[dict[str, Path]], tuple[dict[str, np.ndarray], dict[str, Any]]],
                 cache_dir=None, *, progress: bool = True, rebuild: bool = False
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return the processed dataset from the cache, or fetch + ``build`` + cache it.

    ``build(paths)`` receives ``{filename: path}`` of the verified downloads and returns the
    arrays and JSON document to cache. The warm path reads one file and hashes nothing.
    """
    digests = source_digests(source, cache_dir)
    if digests is not None and not rebuild:
        key = processed_key(name, version, digests, options)
        hit = load_processed(name, key, cache_dir)
        if hit is not None:
            return hit
    paths = fetch_source(source, cache_dir, progress=progress)
    digests = source_digests(source, cache_dir)
    assert digests is not None  # every file was just downloaded and has a sidecar
    key = processed_key(name, version, digests, options)
    arrays, meta = build(paths)
    save_processed(name, key, arrays, meta, cache_dir)
    return arrays, meta


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """Read a downloaded text file, turning a decoding problem into a DataFormatError."""
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataFormatError(path, line, f"not valid {encoding}",
                              "delete the file from the cache and run again") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"invalid JSON ({e.msg})",
                              "delete the file from the cache and run again") from None
    except RecursionError:  # nesting deeper than the interpreter's recursion limit
        raise DataFormatError(path, None, "invalid JSON (nested too deeply to parse)",
                              "delete the file from the cache and run again") from None



# ---------------------------------------------------------------------------------- codec
def _encode_frame(frame: pd.DataFrame | None) -> dict[str, Any] | None:
    """A DataFrame as JSON-ready columns; list columns stay lists, missing values become null."""
    if frame is None:
        return None
    columns = {}
    for name in frame.columns:
        values = frame[name]
        if pd.api.types.is_bool_dtype(values.dtype):
            kind = "bool"
        elif pd.api.types.is_integer_dtype(values.dtype):
            kind = "int" if not isinstance(values.dtype, pd.api.extensions.ExtensionDtype) \
                else "Int64"
        elif pd.api.types.is_float_dtype(values.dtype):
            kind = "float"
        elif len(values) and values.map(lambda v: isinstance(v, list)).any():
            kind = "list"
        else:
            kind = "str"
        if kind == "list":
            data = [list(v) if isinstance(v, (list, tuple)) else [] for v in values]
        elif kind in ("int", "bool"):
            data = values.tolist()
        else:
            data = [None if pd.isna(v) else v for v in values.tolist()]
        columns[str(name)] = {"kind": kind, "data": data}
    return {"index_name": frame.index.name, "index": [int(i) for i in frame.index],
            "columns": columns}


def _decode_frame(doc: dict[str, Any] | None) -> pd.DataFrame | None:
    if doc is None:
        return None
    index = pd.Index(np.asarray(doc["index"], dtype=np.int64), name=doc["index_name"])
    data = {}
    for name, column in doc["columns"].items():
        kind, values = column["kind"], column["data"]
        if kind == "list":
            series = pd.Series(values, index=index, dtype=object)
        elif kind == "int":
            series = pd.Series(np.asarray(values, dtype=np.int64), index=index)
        elif kind == "bool":
            series = pd.Series(np.asarray(values, dtype=bool), index=index)
        elif kind == "Int64":
            series = pd.Series(values, index=index, dtype="Int64")
        elif kind == "float":
            series = pd.Series([np.nan if v is None else v for v in values], index=index,
                               dtype=float)
        else:
            series = pd.Series(values, index=index, dtype="str")
        data[name] = series
    return pd.DataFrame(data, index=index)


def pack_dataset(dataset: SeqDataset) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and JSON document :func:`save_processed` stores for ``dataset``."""
    arrays = {"item_ids": dataset.item_ids, "offsets": dataset.offsets,
              "user_ids": dataset.user_ids}
    meta = {"name": dataset.name, "n_items": int(dataset.n_items), "info": dataset.info,
            "items": _encode_frame(dataset.items), "users": _encode_frame(dataset.users)}
    return arrays, meta


def unpack_dataset(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> SeqDataset:
    """Inverse of :func:`pack_dataset`."""
    return SeqDataset(meta["name"], arrays["item_ids"], arrays["offsets"], meta["n_items"],
                      _decode_frame(meta["items"]), arrays["user_ids"],
                      users=_decode_frame(meta["users"]), info=meta["info"])


def load_source(name: str, version: str, source: Source,
                builder: Callable[[dict[str, Path]], SeqDataset], cache_dir=None,
                options: dict[str, Any] | None = None) -> SeqDataset:
    """The loader every downloaded source shares: cache hit, or fetch + build + cache.

    ``options`` accepts ``progress`` (show download bars, default True) and ``rebuild``
    (ignore the processed cache); anything else is a :class:`ParameterError`.
    """
    options = dict(options or {})
    progress = bool(options.pop("progress", True))
    rebuild = bool(options.pop("rebuild", False))
    if options:
        raise ParameterError(
            f"dataset {name!r} takes no option(s) {', '.join(sorted(options))}. "
            f"Fix: drop them (it accepts cache_dir=, progress=, rebuild=)"
        )
    arrays, meta = cached_build(name, version, source, {},
                                lambda paths: pack_dataset(builder(paths)),
                                cache_dir, progress=progress, rebuild=rebuild)
    return unpack_dataset(arrays, meta)
