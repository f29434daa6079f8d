"""Shared pytest fixtures and the `../shared/data` lookup.

Tests that need the real datasets take the `shared_data` fixture: it reads the folder from
$FAMEKIT_SHARED_DATA (the Makefile and .ci/run set it when ../shared/data exists) and skips
with a reason when it is unset or missing.

Tests of views and analyses take `tiny_world` (a small synthetic facet world) and
`tiny_fame_run` (a FAME trained on it for 2 epochs): both are built once per session.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _shared_data_dir() -> Path | None:
    value = os.environ.get("FAMEKIT_SHARED_DATA")
    if not value:
        return None
    path = Path(value)
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _shared_data_dir()
    if path is None:
        pytest.skip(
            "real data not available: set FAMEKIT_SHARED_DATA to the shared/data folder "
            "(make test does this when ../shared/data exists)"
        )
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never let a test read or write the user's real cache (~/.cache/famekit)."""
    monkeypatch.setenv("FAMEKIT_CACHE", str(tmp_path_factory.getbasetemp() / "famekit-cache"))


# ------------------------------------------------------------------ dataset mirror (tests/mirror.py)
@pytest.fixture(scope="session")
def mirror(tmp_path_factory):
    """A loopback mirror of the dataset sources, started once per session.

    It serves the shared data folder at the upstream URL paths when FAMEKIT_SHARED_DATA is set,
    and nothing else otherwise; tests add generated files and faults through ``mirror_env``.
    """
    from mirror import Mirror

    shared = _shared_data_dir()
    server = (Mirror.serving_shared_data(shared, tmp_path_factory.mktemp("mirror"))
              if shared is not None else Mirror())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mirror_env(mirror, monkeypatch):
    """Point FAMEKIT_MIRROR at the session mirror with fast retries; forget faults afterwards."""
    from famekit.datasets import fetch

    monkeypatch.setenv("FAMEKIT_MIRROR", mirror.base_url)
    monkeypatch.setattr(fetch, "BACKOFF_S", 0.01)
    yield mirror
    mirror.reset()


# ------------------------------------------------------------------ a tiny world and a tiny run
# Parameters of the shared synthetic world and of the FAME trained on it.
TINY_WORLD = {"n_users": 160, "n_items": 160, "n_brands": 8, "seed": 3}
TINY_FAME = {"kind": "fame", "epochs": 2, "d_model": 16, "n_heads": 4, "n_experts": 3, "seed": 0}


@dataclass(frozen=True)
class TinyRun:
    """A finished run directory and what it was trained with; tests must not write into it."""

    path: Path  # the run directory (model.safetensors, metrics.json, history.csv, ...)
    world: object  # the SeqDataset it was trained on (= the tiny_world fixture)
    n_heads: int  # H of the FAME layer
    n_experts: int  # N experts per head


@pytest.fixture(scope="session")
def tiny_world():
    """The synthetic facet world of TINY_WORLD: 160 users, 160 items, genre/brand/price facets."""
    from famekit.datasets.synthetic import generate

    return generate(**TINY_WORLD)


@pytest.fixture(scope="session")
def tiny_fame_run(tiny_world, tmp_path_factory) -> TinyRun:
    """FAME (TINY_FAME) trained once per session on tiny_world."""
    from famekit.training import train

    path = tmp_path_factory.mktemp("tiny-run") / "fame"
    train(tiny_world, out_dir=path, progress=False, **TINY_FAME)
    return TinyRun(path, tiny_world, TINY_FAME["n_heads"], TINY_FAME["n_experts"])
