"""Dataset loading times: load("beauty") from a warm cache (target <= 2 s) and load("synthetic").

With ``FAMEKIT_SHARED_DATA`` set (the shared data folder), Beauty is fetched from the loopback
mirror of that folder (``tests/mirror.py``) into a temporary cache: the first load is the cold
one (download + verify + join + cache), the next ones are warm (one ``.npz`` read). Without it,
an existing cache (``--cache-dir`` or ``$FAMEKIT_CACHE``) is used if it holds Beauty; otherwise
Beauty is skipped with a note. ``--ratings N`` also times the vectorised ratings-to-sequences
step on N synthetic ratings (ML-20M has 20,000,263); ``--ml20m-rows N`` writes an ML-20M-format
zip with N random ratings, serves it from the mirror and times ``load("ml-20m")`` in a child
process, printing that process's peak memory (the parser must not hold the text in memory).

    FAMEKIT_SHARED_DATA=../shared/data .venv/bin/python benchmarks/bench_datasets.py
    .venv/bin/python benchmarks/bench_datasets.py --ratings 20000263 --ml20m-rows 5000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from famekit import datasets
from famekit.datasets import amazon, fetch, movielens


def best_of(repeats: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def bench_beauty(cache_dir: Path | None, repeats: int) -> None:
    shared = os.environ.get("FAMEKIT_SHARED_DATA")
    if shared and Path(shared).is_dir():
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from mirror import Mirror

        with tempfile.TemporaryDirectory() as tmp:
            server = Mirror.serving_shared_data(shared, Path(tmp) / "mirror").start()
            try:
                os.environ[fetch.MIRROR_ENV] = server.base_url
                cache = Path(tmp) / "cache"
                cold, ds = best_of(1, lambda: datasets.load("beauty", cache_dir=cache,
                                                           progress=False))
                warm, _ = best_of(repeats, lambda: datasets.load("beauty", cache_dir=cache))
            finally:
                server.stop()
                os.environ.pop(fetch.MIRROR_ENV, None)
        print(f"beauty  cold (mirror download + verify + join + cache): {cold:6.3f} s")
    elif fetch.is_downloaded(amazon.SOURCES["beauty"], cache_dir):
        warm, ds = best_of(repeats, lambda: datasets.load("beauty", cache_dir=cache_dir))
    else:
        print("beauty  skipped: set FAMEKIT_SHARED_DATA (mirror) or download it once first")
        return
    print(f"beauty  warm cache, best of {repeats}: {warm:6.3f} s  (target <= 2 s; "
          f"{ds.n_users:,} users, {ds.n_items:,} items, {ds.n_interactions:,} interactions)")


def bench_synthetic(repeats: int) -> None:
    seconds, ds = best_of(repeats, lambda: datasets.load("synthetic"))
    print(f"synthetic  default generation, best of {repeats}: {seconds:6.3f} s  "
          f"({ds.n_users:,} users, {ds.n_items:,} items, {ds.n_interactions:,} interactions)")


def bench_ratings(n: int) -> None:
    rng = np.random.default_rng(0)
    users = rng.integers(1, 138_494, n, dtype=np.int64)
    movies = rng.integers(1, 131_263, n, dtype=np.int64)
    timestamps = rng.integers(789_652_009, 1_427_784_002, n, dtype=np.int64)
    start = time.perf_counter()
    dense, _ = movielens._dense_items(movies)
    flat, offsets, _ = movielens.sequences_from_ratings(users, dense, timestamps)
    seconds = time.perf_counter() - start
    print(f"ratings -> sequences  {n:,} ratings (dense ids + stable sort): {seconds:6.3f} s, "
          f"result {flat.nbytes / 2**20:.0f} MiB + {offsets.nbytes / 2**20:.1f} MiB offsets")


# VmHWM (this process image's peak RSS), not ru_maxrss: Linux carries the parent's high-water
# mark across fork + exec into ru_maxrss, and the parent held the generated ratings.
_CHILD = """
import json, sys, time
from famekit import datasets
start = time.perf_counter()
ds = datasets.load("ml-20m", cache_dir=sys.argv[1], progress=False)
seconds = time.perf_counter() - start
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
peak = int(status[0]) / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak, "users": ds.n_users,
                  "items": ds.n_items, "interactions": ds.n_interactions}))
"""


def bench_ml20m(rows: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import pandas as pd
    from mirror import Mirror

    rng = np.random.default_rng(1)
    movie_ids = np.unique(rng.integers(1, 131_263, 27_000))
    ratings = pd.DataFrame({
        "userId": np.sort(rng.integers(1, 138_494, rows)),
        "movieId": rng.choice(movie_ids, rows),
        "rating": rng.integers(1, 11, rows) / 2,
        "timestamp": rng.integers(789_652_009, 1_427_784_002, rows),
    })
    movies = pd.DataFrame({"movieId": movie_ids, "title": [f"Movie {m} (1999)" for m in movie_ids],
                           "genres": "Comedy|Drama"})
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "ml-20m.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            zf.writestr("ml-20m/ratings.csv", ratings.to_csv(index=False))
            zf.writestr("ml-20m/movies.csv", movies.to_csv(index=False))
        del ratings
        with Mirror() as server:
            server.add(movielens.SOURCES["ml-20m"].files[0].url, archive)
            # generated members, not GroupLens' own: loaded unverified on purpose
            env = dict(os.environ, **{fetch.MIRROR_ENV: server.base_url,
                                      fetch.UNVERIFIED_ENV: "1"})
            child = subprocess.run([sys.executable, "-c", _CHILD, str(Path(tmp) / "cache")],
                                   env=env, capture_output=True, text=True, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"ml-20m format, {rows:,} generated ratings ({archive.name} via the mirror): cold load "
          f"{result['seconds']:6.2f} s, peak RSS of the loading process "
          f"{result['peak_mib']:.0f} MiB ({result['interactions']:,} interactions, "
          f"{result['items']:,} items)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="warm loads to time (best of)")
    parser.add_argument("--cache-dir", type=Path, help="cache root to use without the mirror")
    parser.add_argument("--ratings", type=int, default=0,
                        help="also time ratings->sequences on this many synthetic ratings")
    parser.add_argument("--ml20m-rows", type=int, default=0,
                        help="also time load('ml-20m') on a generated zip with this many ratings")
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    bench_beauty(args.cache_dir, args.repeats)
    bench_synthetic(max(1, args.repeats // 2))
    if args.ratings:
        bench_ratings(args.ratings)
    if args.ml20m_rows:
        bench_ml20m(args.ml20m_rows)


if __name__ == "__main__":
    main()
