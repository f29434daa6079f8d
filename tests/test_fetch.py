"""The fetch/cache layer against the loopback mirror: verification, retries, faults, caching.

None of these tests needs the shared data folder: they serve small generated files.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mirror import build_zip, closed_port
from worlds import zip_bytes

from famekit import datasets
from famekit.datasets import fetch
from famekit.datasets.core import SeqDataset
from famekit.errors import (
    CacheError,
    ChecksumError,
    DownloadError,
    FamekitError,
    ParameterError,
    UnknownNameError,
)

URL = "https://example.org/data/payload.bin"
PAYLOAD = bytes(range(256)) * 40  # 10 KiB


def _remote(payload: bytes = PAYLOAD, url: str = URL, **kwargs) -> fetch.RemoteFile:
    return fetch.RemoteFile("payload.bin", url, hashlib.sha256(payload).hexdigest(),
                            len(payload), **kwargs)


def _leftovers(directory: Path) -> list[str]:
    """Anything in the directory that is not a complete, verified file (partial downloads)."""
    return sorted(p.name for p in directory.rglob("*") if p.is_file() and p.name.endswith(".part"))


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


# ------------------------------------------------------------------ locations and URLs
def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("FAMEKIT_CACHE", str(tmp_path / "env"))
    assert fetch.cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert fetch.cache_root() == tmp_path / "env"
    monkeypatch.delenv("FAMEKIT_CACHE")
    assert fetch.cache_root() == Path.home() / ".cache" / "famekit"


def test_mirror_variable_rewrites_host_and_path(monkeypatch):
    monkeypatch.delenv("FAMEKIT_MIRROR", raising=False)
    assert fetch.resolve_url(URL) == URL
    monkeypatch.setenv("FAMEKIT_MIRROR", "http://127.0.0.1:9999/")
    assert fetch.resolve_url(URL) == "http://127.0.0.1:9999/example.org/data/payload.bin"
    monkeypatch.setenv("FAMEKIT_MIRROR", "ftp:/nowhere")
    with pytest.raises(ParameterError, match="FAMEKIT_MIRROR"):
        fetch.resolve_url(URL)


def test_every_source_url_is_pinned_https():
    from famekit.datasets import amazon, movielens

    for source in (*amazon.SOURCES.values(), *movielens.SOURCES.values()):
        for remote in source.files:
            assert remote.url.startswith("https://"), remote.url
            if "raw.githubusercontent.com" in remote.url:
                commit = remote.url.split("/")[5]
                assert len(commit) >= 12 and all(c in "0123456789abcdef" for c in commit)
                assert remote.sha256 is not None and len(remote.sha256) == 64
            else:
                assert remote.url.startswith("https://files.grouplens.org/datasets/movielens/")


# ------------------------------------------------------------------ downloads
def test_download_verifies_installs_atomically_and_reuses(mirror_env, tmp_path):
    mirror_env.add(URL, PAYLOAD)
    remote = _remote()
    path = fetch.download(remote, tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert (tmp_path / "payload.bin.sha256").read_text().strip() == remote.sha256
    assert _files(tmp_path) == ["payload.bin", "payload.bin.sha256"]
    # A verified copy is reused without asking the server again.
    fetch.download(remote, tmp_path, progress=False)
    assert mirror_env.requests_for(URL) == [200]


def test_damaged_cached_file_is_downloaded_again(mirror_env, tmp_path):
    mirror_env.add(URL, PAYLOAD)
    remote = _remote()
    path = fetch.download(remote, tmp_path, progress=False)
    path.write_bytes(b"damaged")
    assert fetch.download(remote, tmp_path, progress=False).read_bytes() == PAYLOAD
    assert mirror_env.requests_for(URL) == [200, 200]


def test_checksum_mismatch_is_a_checksum_error_and_leaves_nothing(mirror_env, tmp_path):
    mirror_env.add(URL, PAYLOAD)
    mirror_env.fault(URL, "corrupt")
    with pytest.raises(ChecksumError) as err:
        fetch.download(_remote(), tmp_path, progress=False)
    message = str(err.value)
    assert "/example.org/data/payload.bin" in message and "Fix:" in message
    assert "sha256" in message
    assert _files(tmp_path) == []


def test_truncated_body_is_retried_then_reported(mirror_env, tmp_path):
    mirror_env.add(URL, PAYLOAD)
    mirror_env.fault(URL, "truncate")
    with pytest.raises(DownloadError) as err:
        fetch.download(_remote(), tmp_path, progress=False, retries=2)
    assert not isinstance(err.value, ChecksumError)
    assert "truncated" in str(err.value) and "payload.bin" in str(err.value)
    assert mirror_env.requests_for(URL) == [200, 200, 200]  # 1 try + 2 retries, bounded
    assert _files(tmp_path) == []


def test_transient_truncation_and_server_error_recover(mirror_env, tmp_path):
    mirror_env.add(URL, PAYLOAD)
    mirror_env.fault(URL, "500", times=1)
    mirror_env.fault(URL, "truncate", times=1)
    path = fetch.download(_remote(), tmp_path, progress=False, retries=3)
    assert path.read_bytes() == PAYLOAD
    assert mirror_env.requests_for(URL) == [500, 200, 200]
    assert _leftovers(tmp_path) == []


def test_http_404_is_not_retried(mirror_env, tmp_path):
    mirror_env.fault(URL, "404")
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        fetch.download(_remote(), tmp_path, progress=False, retries=3)
    assert "payload.bin" in str(err.value) and "Fix:" in str(err.value)
    assert f"mirror of {URL}" in str(err.value)  # the upstream URL is named too
    assert mirror_env.requests_for(URL) == [404]
    assert _files(tmp_path) == []


def test_persistent_http_500_gives_up_after_bounded_retries(mirror_env, tmp_path):
    mirror_env.add(URL, PAYLOAD)
    mirror_env.fault(URL, "500")
    with pytest.raises(DownloadError, match="HTTP 500"):
        fetch.download(_remote(), tmp_path, progress=False, retries=1)
    assert mirror_env.requests_for(URL) == [500, 500]
    assert _files(tmp_path) == []


def test_offline_is_a_clear_download_error(monkeypatch, tmp_path):
    monkeypatch.setenv("FAMEKIT_MIRROR", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setattr(fetch, "BACKOFF_S", 0.01)
    with pytest.raises(DownloadError) as err:
        fetch.download(_remote(), tmp_path, progress=False, retries=1)
    message = str(err.value)
    assert "refused" in message.lower() and "FAMEKIT_MIRROR" in message
    assert "payload.bin" in message and "2 attempts" in message
    assert _files(tmp_path) == []


def test_unwritable_cache_dir_is_a_cache_error(mirror_env, tmp_path):
    mirror_env.add(URL, PAYLOAD)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheError) as err:
        fetch.download(_remote(), blocker / "cache", progress=False)
    assert str(blocker) in str(err.value) and "FAMEKIT_CACHE" in str(err.value)
    assert mirror_env.requests_for(URL) == []  # failed before touching the network


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_cache_dir_is_a_cache_error(mirror_env, tmp_path):
    mirror_env.add(URL, PAYLOAD)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(CacheError):
            fetch.download(_remote(), tmp_path, progress=False)
    finally:
        tmp_path.chmod(0o700)


def test_unknown_dataset_name():
    with pytest.raises(UnknownNameError) as err:
        datasets.load("beuty")
    assert "beuty" in str(err.value) and "beauty" in str(err.value)
    assert isinstance(err.value, FamekitError)


def test_unknown_option_names_the_option(mirror_env, tmp_path):
    with pytest.raises(ParameterError, match="n_users"):
        datasets.load("beauty", cache_dir=tmp_path, n_users=5)


# ------------------------------------------------------------------ zips
ZIP_URL = "https://example.org/data/archive.zip"


_zip_bytes = zip_bytes


def _zip_remote(members: dict[str, str]) -> fetch.RemoteFile:
    return fetch.RemoteFile("archive.zip", ZIP_URL, None, None, members)


def test_zip_member_hashes_are_checked(mirror_env, tmp_path):
    good = b"1::Toy Story (1995)::Animation\n"
    mirror_env.add(ZIP_URL, _zip_bytes({"x/movies.dat": good}))
    expected = {"x/movies.dat": hashlib.sha256(good).hexdigest()}
    path = fetch.download(_zip_remote(expected), tmp_path / "ok", progress=False)
    assert zipfile.ZipFile(path).read("x/movies.dat") == good
    # The sidecar records the hash of the installed zip (upstream publishes none).
    digest = (tmp_path / "ok" / "archive.zip.sha256").read_text().strip()
    assert digest == fetch.sha256_file(path)

    with pytest.raises(ChecksumError, match="x/movies.dat") as err:
        fetch.download(_zip_remote({"x/movies.dat": "0" * 64}), tmp_path / "bad", progress=False)
    assert "archive.zip" in str(err.value) and "not a valid zip" not in str(err.value)
    assert _files(tmp_path / "bad") == []
    with pytest.raises(ChecksumError, match="no member x/users.dat"):
        fetch.download(_zip_remote({"x/users.dat": "0" * 64}), tmp_path / "bad", progress=False)


def test_corrupt_zip_is_rejected(mirror_env, tmp_path):
    data = bytearray(_zip_bytes({"x/ratings.dat": b"1::2::5::978300760\n" * 500}))
    # Damage the compressed stream of the member (after its 30-byte local header + name).
    data[60] ^= 0xFF
    mirror_env.add(ZIP_URL, bytes(data))
    with pytest.raises(ChecksumError) as err:
        fetch.download(_zip_remote({}), tmp_path, progress=False)
    assert "archive.zip" in str(err.value)
    assert _files(tmp_path) == []


# ------------------------------------------------------------------ processed cache
def _small_dataset() -> SeqDataset:
    items = pd.DataFrame(
        {"title": ["a", None, "c"], "categories": [["x", "y"], [], ["z"]],
         "year": pd.array([1995, None, 2001], dtype="Int64"), "n_ratings": [3, 1, 2]},
        index=pd.RangeIndex(1, 4, name="item_id"),
    )
    users = pd.DataFrame({"zip": ["12345", "99999"]}, index=pd.Index([7, 9], name="user_id"))
    return SeqDataset.from_sequences("tiny", [[1, 2, 3], [3, 1, 1, 2]], 3, items, [7, 9],
                                     users=users, info={"order": "as given"})


def test_processed_round_trip_is_exact(tmp_path):
    ds = _small_dataset()
    arrays, meta = fetch.pack_dataset(ds)
    fetch.save_processed("tiny", "k1", arrays, meta, tmp_path)
    loaded = fetch.unpack_dataset(*fetch.load_processed("tiny", "k1", tmp_path))
    assert loaded.fingerprint == ds.fingerprint
    np.testing.assert_array_equal(loaded.user_ids, ds.user_ids)
    assert loaded.items["categories"].tolist() == [["x", "y"], [], ["z"]]
    assert loaded.items["title"].isna().tolist() == [False, True, False]
    assert loaded.items["year"].dtype == "Int64" and loaded.items["year"].isna().sum() == 1
    assert loaded.items["n_ratings"].tolist() == [3, 1, 2]
    assert loaded.users.loc[9, "zip"] == "99999"
    assert loaded.info == {"order": "as given"}
    # A new key replaces the old entry; a damaged entry is dropped, not trusted.
    fetch.save_processed("tiny", "k2", arrays, meta, tmp_path)
    assert fetch.load_processed("tiny", "k1", tmp_path) is None
    entry = tmp_path / "processed" / "tiny-k2.npz"
    entry.write_bytes(entry.read_bytes()[:100])
    assert fetch.load_processed("tiny", "k2", tmp_path) is None
    assert not entry.exists()


def test_cached_build_builds_once_and_rebuilds_when_stale(mirror_env, tmp_path):
    mirror_env.add(URL, PAYLOAD)
    source = fetch.Source("tiny", (_remote(),), "test data", "none")
    calls = []

    def build(paths):
        calls.append(paths["payload.bin"].read_bytes() == PAYLOAD)
        return fetch.pack_dataset(_small_dataset())

    for _ in range(2):
        arrays, meta = fetch.cached_build("tiny", "v1", source, {}, build, tmp_path,
                                          progress=False)
    assert calls == [True]
    assert mirror_env.requests_for(URL) == [200]
    assert fetch.unpack_dataset(arrays, meta).fingerprint == _small_dataset().fingerprint
    fetch.cached_build("tiny", "v2", source, {}, build, tmp_path, progress=False)  # new version
    fetch.cached_build("tiny", "v2", source, {}, build, tmp_path, progress=False, rebuild=True)
    assert calls == [True, True, True]
    assert len(list((tmp_path / "processed").glob("tiny-*.npz"))) == 1
    assert _leftovers(tmp_path) == []


def test_build_zip_helper_matches_official_layout(tmp_path):
    path = build_zip(tmp_path / "ml-100k.zip", {"ml-100k/u.info": b"943 users\n"})
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["ml-100k/u.info"]
        assert archive.testzip() is None
