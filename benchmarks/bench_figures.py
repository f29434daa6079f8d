"""What the heaviest views cost at a real dataset's size: build time, HTML size, PNG time.

The views only draw what they are given, so the inputs here are random arrays and frames with
the shapes of the analyses of a Beauty-sized run (12,101 items, 22,363 users, H heads, N
experts; sizes are options). Prints one line per view: seconds to build the figure, seconds
and megabytes to write its HTML without plotly.js (the part that grows with the data), and
seconds to render a PNG when a Chromium is installed.

    .venv/bin/python benchmarks/bench_figures.py
    .venv/bin/python benchmarks/bench_figures.py --items 3000 --heads 8 --experts 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from famekit import figures as F


def fake_items(n_items: int, rng: np.random.Generator) -> pd.DataFrame:
    """An item table like Amazon's: title, brand (some missing), top category."""
    brands = np.array([f"Brand {i}" for i in range(400)] + [None] * 100, dtype=object)
    return pd.DataFrame(
        {"title": [f"Product number {i} with a longish descriptive title" for i in
                   range(1, n_items + 1)],
         "brand": rng.choice(brands, n_items),
         "top_category": rng.choice(["Makeup", "Skin Care", "Hair Care", "Fragrance",
                                     "Tools & Accessories", "Bath & Body"], n_items)},
        index=pd.RangeIndex(1, n_items + 1, name="item_id"))


def build_views(args, rng) -> dict:
    V, U, H, N = args.items, args.users, args.heads, args.experts
    items = fake_items(V, rng)
    labels = np.concatenate([[None], items["brand"].to_numpy()])
    layouts = {h: rng.normal(size=(V, 2)).astype(np.float32) for h in range(H)}
    layouts["full"] = rng.normal(size=(V, 2)).astype(np.float32)
    gates = rng.dirichlet(np.ones(H), size=U)
    user_gates = pd.DataFrame(gates, columns=[f"head {h}" for h in range(H)])
    user_gates.insert(0, "user", np.arange(U))
    categories = items["top_category"].unique()
    enrichment = pd.DataFrame(
        [(h, e, c, int(rng.integers(50, 5000)), 1.0, 0.1, 0.1, float(rng.lognormal(0, 0.5)))
         for h in range(H) for e in range(N) for c in categories],
        columns=["head", "expert", "label", "positions", "mass", "share", "base_rate", "lift"])
    n = 50
    routing = pd.DataFrame(rng.dirichlet(np.ones(N), size=n),
                           columns=[f"expert {e}" for e in range(N)])
    routing.insert(0, "item", rng.integers(1, V + 1, size=n))
    routing.insert(0, "position", np.arange(n))
    timed = {
        "embedding_scatter": lambda: F.embedding_scatter(layouts[0], labels, items=items,
                                                         field="brand"),
        "embedding_grid": lambda: F.embedding_grid(layouts, labels, items=items,
                                                   field="brand"),
        "gate_distribution": lambda: F.gate_distribution(user_gates),
        "expert_enrichment_heatmap": lambda: F.expert_enrichment_heatmap(enrichment, 0),
        "user_routing_heatmap": lambda: F.user_routing_heatmap(routing, items=items,
                                                               position=n - 1),
    }
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=12101)
    parser.add_argument("--users", type=int, default=22363)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--no-png", action="store_true", help="skip the PNG renders")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    chromium = None if args.no_png else F.find_chromium()
    print(f"items={args.items} users={args.users} heads={args.heads} experts={args.experts} "
          f"png={'yes (' + chromium + ')' if chromium else 'no'}")
    print(f"{'view':28s} {'build s':>8s} {'html s':>7s} {'html MB':>8s} {'png s':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in build_views(args, rng).items():
            start = time.perf_counter()
            fig = build()
            built = time.perf_counter() - start
            start = time.perf_counter()
            path = F.save_html(fig, Path(tmp) / f"{name}.html", include_plotlyjs=False)
            html_s = time.perf_counter() - start
            size = path.stat().st_size / 1e6
            png_s = float("nan")
            if chromium:
                start = time.perf_counter()
                F.save_png(fig, Path(tmp) / f"{name}.png")
                png_s = time.perf_counter() - start
            print(f"{name:28s} {built:8.3f} {html_s:7.3f} {size:8.2f} {png_s:7.3f}")


if __name__ == "__main__":
    main()
