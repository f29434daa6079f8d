"""Fill famekit's dataset cache from ../shared/data through the loopback mirror (no network).

Machines without internet (like our CI and dev boxes) cannot reach the datasets' public
sources, but hold the same files in ../shared/data. This serves them at their upstream URL
paths on 127.0.0.1 (tests/mirror.py), points FAMEKIT_MIRROR at it and loads each dataset once,
so that the normal fetch path (download, sha256 check, join, cache) fills the cache. Afterwards
`famekit train --dataset beauty` and the notebooks load from the warm cache.

    FAMEKIT_SHARED_DATA=../shared/data python benchmarks/warm_cache.py beauty ml-100k
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="datasets to cache (beauty, sports, ...)")
    parser.add_argument("--shared-data", default=os.environ.get("FAMEKIT_SHARED_DATA"),
                        help="the shared data folder (default $FAMEKIT_SHARED_DATA)")
    args = parser.parse_args()
    if not args.shared_data or not Path(args.shared_data).is_dir():
        print("error: set FAMEKIT_SHARED_DATA (or --shared-data) to the shared/data folder",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT / "tests"))
    import tempfile

    from mirror import Mirror

    from famekit import datasets

    with tempfile.TemporaryDirectory() as tmp, \
            Mirror.serving_shared_data(args.shared_data, tmp).start() as server:
        os.environ["FAMEKIT_MIRROR"] = server.base_url
        for name in args.names:
            start = time.perf_counter()
            ds = datasets.load(name)
            print(f"{name}: {ds.n_users:,} users, {ds.n_items:,} items, "
                  f"{ds.n_interactions:,} interactions cached in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
