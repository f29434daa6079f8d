"""A loopback HTTP mirror of the dataset sources, for tests and benchmarks (no network needed).

``FAMEKIT_MIRROR=http://127.0.0.1:PORT`` makes famekit fetch ``https://HOST/PATH`` from
``http://127.0.0.1:PORT/HOST/PATH``; this server answers those paths:

* :meth:`Mirror.serving_shared_data` serves every file of the shared data folder whose sha256
  appears in famekit's own provenance tables (``famekit.datasets.amazon.SOURCES``,
  ``famekit.datasets.movielens.SOURCES``) at that file's upstream URL path, and builds
  ``ml-100k.zip`` from ``ml-100k/source`` (members under ``ml-100k/`` like the official zip);
* :meth:`Mirror.add` serves any bytes or file at an upstream URL (tests generate small zips);
* :meth:`Mirror.fault` injects failures: ``"404"``, ``"500"``, ``"truncate"`` (a full
  Content-Length, half the body, then the connection closes) and ``"corrupt"`` (right length,
  wrong bytes), for the next ``times`` requests or for every request.

It binds 127.0.0.1 only, handles each request in a daemon thread with a socket timeout, keeps
a log of (path, status) for assertions, and :meth:`Mirror.stop` shuts it down (also on
``with`` exit).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path

FAULT_KINDS = ("404", "500", "truncate", "corrupt")
# The largest file the mirror indexes (the shared folder holds nothing near this).
MAX_INDEXED_BYTES = 64 << 20


def url_path(url: str) -> str:
    """The mirror path of an upstream URL: ``https://HOST/PATH`` -> ``/HOST/PATH``."""
    parts = urllib.parse.urlsplit(url)
    return f"/{parts.netloc}{parts.path}"


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_zip(path: Path, members: dict[str, bytes | Path]) -> Path:
    """Write a zip with ``{member name: bytes or file}`` (deflated, fixed member order)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            data = content.read_bytes() if isinstance(content, Path) else content
            archive.writestr(zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0)), data,
                             compress_type=zipfile.ZIP_DEFLATED)
    return path


@dataclass
class _Fault:
    kind: str
    remaining: int | None  # None = every request


class Mirror:
    """A threaded loopback server; see the module docstring."""

    def __init__(self) -> None:
        self._base: dict[str, bytes | Path] = {}
        self._extra: dict[str, bytes | Path] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._lock = threading.Lock()
        self.log: list[tuple[str, int]] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ content
    @classmethod
    def serving_shared_data(cls, shared_dir: str | os.PathLike, workdir: str | os.PathLike
                            ) -> Mirror:
        """A mirror of every provenance-table file found (by sha256) in ``shared_dir``."""
        from famekit.datasets import amazon, movielens

        mirror = cls()
        shared_dir, workdir = Path(shared_dir), Path(workdir)
        by_hash: dict[str, Path] = {}
        for path in sorted(shared_dir.rglob("*")):
            if path.is_file() and path.stat().st_size <= MAX_INDEXED_BYTES:
                by_hash.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
        for source in (*amazon.SOURCES.values(), *movielens.SOURCES.values()):
            for remote in source.files:
                if remote.sha256 is not None and remote.sha256 in by_hash:
                    mirror._base[url_path(remote.url)] = by_hash[remote.sha256]
        ml100k = shared_dir / "ml-100k" / "source"
        if ml100k.is_dir():
            workdir.mkdir(parents=True, exist_ok=True)
            members = {f"ml-100k/{p.name}": p for p in sorted(ml100k.iterdir()) if p.is_file()}
            archive = build_zip(workdir / "ml-100k.zip", members)
            mirror._base[url_path(movielens.SOURCES["ml-100k"].files[0].url)] = archive
        return mirror

    def add(self, url: str, content: bytes | Path) -> None:
        """Serve ``content`` at the mirror path of ``url`` (until :meth:`reset`)."""
        with self._lock:
            self._extra[url_path(url)] = content

    def serves(self, url: str) -> bool:
        path = url_path(url)
        return path in self._extra or path in self._base

    def fault(self, url: str, kind: str, times: int | None = None) -> None:
        """Make the next ``times`` requests for ``url`` (all, if None) fail with ``kind``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {kind!r}")
        with self._lock:
            self._faults.setdefault(url_path(url), []).append(_Fault(kind, times))

    def reset(self) -> None:
        """Forget faults, the log and the content added with :meth:`add`."""
        with self._lock:
            self._faults.clear()
            self._extra.clear()
            self.log.clear()

    def requests_for(self, url: str) -> list[int]:
        """The statuses answered for ``url`` so far, in order."""
        path = url_path(url)
        with self._lock:
            return [status for p, status in self.log if p == path]

    # ------------------------------------------------------------------ serving
    def _next_fault(self, path: str) -> str | None:
        with self._lock:
            queue = self._faults.get(path, [])
            while queue:
                fault = queue[0]
                if fault.remaining is None:
                    return fault.kind
                if fault.remaining > 0:
                    fault.remaining -= 1
                    return fault.kind
                queue.pop(0)
            return None

    def _content(self, path: str) -> bytes | None:
        with self._lock:
            content = self._extra.get(path, self._base.get(path))
        if content is None:
            return None
        return content.read_bytes() if isinstance(content, Path) else content

    def _record(self, path: str, status: int) -> None:
        with self._lock:
            self.log.append((path, status))

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the mirror is not running: call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Mirror:
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10  # seconds a silent client may hold a handler thread
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._answer(send_body=False)

            def do_GET(self):
                self._answer(send_body=True)

            def _answer(self, send_body: bool) -> None:
                path = urllib.parse.urlsplit(self.path).path
                fault = mirror._next_fault(path)
                body = mirror._content(path)
                if fault in ("404", "500") or body is None:
                    status = 500 if fault == "500" else 404
                    mirror._record(path, status)
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    return
                mirror._record(path, 200)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                if not send_body:
                    return
                if fault == "truncate":
                    body = body[: len(body) // 2]
                elif fault == "corrupt":
                    body = bytes(b ^ 0x5A for b in body[:64]) + body[64:]
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="famekit-test-mirror", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
