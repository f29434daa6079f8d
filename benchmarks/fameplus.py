"""FAME+ on the embedded world: do facets land on their heads, and does the gate route by them?

    python benchmarks/fameplus.py                 # three worlds, ~20 min on 2 CPU cores
    python benchmarks/fameplus.py --worlds default --out fameplus-out
    python benchmarks/fameplus.py --worlds default --seed 1 --models "FAME+ (joint only)" \
        "FAME+ (pretrain + kept, default)" --out fameplus-seed1   # another seed, two schedules

Trains, with the synthetic recipe (famekit.workspace.RECIPES["synthetic"]):

* on the default world: SASRec, FAME, FAME+ under each facet schedule (pretrain / joint /
  both, the default), and SASRec + metadata (the same facet loss on SASRec's whole item
  embedding: without it no accuracy gain can be credited to the heads);
* on two other worlds (other facet sizes, seeds and assignment orders): FAME and FAME+ with
  the default schedule and with pre-training only.

and prints, per world and model: the chance-corrected alignment of each assigned facet on its
head and the margin over the runner-up head (famekit.analysis.alignment.facet_margins; target
>= 1.5x), the share of users whose top-gated assigned head is their driving facet's head
(famekit.analysis.recovery.facet_routing_accuracy; target >= 0.8), the oracle's margins, test
NDCG@10 / HR@10, and pre-training seconds against sequential-training seconds.

Runs are kept under --runs (default $FAMEKIT_RUNS/fameplus-bench) and a finished one is reused,
so an interrupted benchmark continues where it stopped. Results: ``<out>/fameplus.json`` and
``<out>/fameplus.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from famekit.analysis.activations import collect_activations
from famekit.analysis.alignment import alignment_matrix, facet_margins
from famekit.analysis.oracle import oracle_model
from famekit.analysis.recovery import facet_routing_accuracy
from famekit.datasets import load
from famekit.runs import RunDir, runs_root
from famekit.training import train
from famekit.workspace import recipe

# name -> (dataset options, facet assignment order)
WORLDS = {
    "default": ({}, ("genre", "brand", "price_tier")),
    "B": ({"n_genres": 6, "n_brands": 12, "n_price_tiers": 5, "seed": 3},
          ("price_tier", "genre", "brand")),
    "C": ({"n_genres": 10, "n_brands": 20, "n_price_tiers": 3, "seed": 7},
          ("brand", "price_tier", "genre")),
}
# model label -> TrainConfig options (facets filled in per world)
MODELS_DEFAULT_WORLD = {
    "SASRec": {"kind": "sasrec"},
    "SASRec+metadata": {"kind": "sasrec", "facet_target": "embedding"},
    "FAME": {"kind": "fame"},
    "FAME+ (pretrain only)": {"kind": "fame", "facet_schedule": "pretrain"},
    "FAME+ (joint only)": {"kind": "fame", "facet_schedule": "joint"},
    "FAME+ (pretrain + kept, default)": {"kind": "fame"},
}
MODELS_OTHER_WORLDS = ("FAME", "FAME+ (pretrain only)", "FAME+ (joint only)",
                       "FAME+ (pretrain + kept, default)")


def _options(label: str, facets: tuple[str, ...]) -> dict:
    options = dict(MODELS_DEFAULT_WORLD[label])
    if label.startswith("FAME+") or label == "SASRec+metadata":
        options["facets"] = facets
    return options


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _train(world: str, label: str, runs: Path, dataset_options: dict,
           facets: tuple[str, ...], progress: bool, seed: int) -> Path:
    folder = runs / f"{world}-{_slug(label)}" if seed == 0 else (
        runs / f"{world}-{_slug(label)}-seed{seed}")
    if RunDir(folder).status == "finished":
        return folder
    config = recipe("synthetic").config
    options = {**_options(label, facets), "seed": seed}
    config = dataclasses.replace(config, **{k: v for k, v in options.items()})
    resume = RunDir(folder).status == "running"
    if resume:
        train(resume=folder, progress=progress)
    else:
        train("synthetic", config, out_dir=folder, overwrite=True, progress=progress,
              dataset_options=dataset_options or None)
    return folder


def _measure(folder: Path, facets: tuple[str, ...]) -> dict:
    run_dir = RunDir(folder)
    data = run_dir.load_dataset()
    run = run_dir.load(dataset=data)
    summary = run.meta["summary"]
    history = run_dir.metrics().get("history", [])
    row = {
        "test_NDCG@10": summary["test"]["NDCG@10"], "test_HR@10": summary["test"]["HR@10"],
        "best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"],
        "train_seconds": float(sum(r.get("train_seconds", 0.0) for r in history)),
        "pretrain_seconds": float((summary.get("pretrain") or {}).get("seconds", 0.0)),
    }
    if run.config.kind == "fame":
        alignment = alignment_matrix(run.model, data, fields=list(facets))
        margins = facet_margins(alignment, facets)
        acts = collect_activations(run.model, data, split="test")
        routing = facet_routing_accuracy(acts, data, facets)
        row["margins"] = margins.to_dict(orient="records")
        row["routing"] = routing.to_dict(orient="records")
    return row


def _oracle(dataset_options: dict, facets: tuple[str, ...]) -> dict:
    data = load("synthetic", **dataset_options)
    alignment = alignment_matrix(oracle_model(data, facets), data, fields=list(facets))
    return {"margins": facet_margins(alignment, facets).to_dict(orient="records")}


def _fmt_margins(row: dict) -> str:
    if "margins" not in row:
        return "-"
    return ", ".join(f"{m['facet']} {m['chance_corrected']:.2f} ({m['margin']:.1f}x)"
                     for m in row["margins"])


def _routing_all(row: dict) -> str:
    if "routing" not in row:
        return "-"
    last = row["routing"][-1]
    per = " / ".join(f"{r['accuracy']:.2f}" for r in row["routing"][:-1])
    return f"{last['accuracy']:.3f} (chance {last['chance']:.3f}; per facet {per})"


def to_markdown(results: dict) -> str:
    lines = ["# FAME+ on the embedded world", "",
             (f"Made by `python benchmarks/fameplus.py` (2-core CPU; training seed "
              f"{results['seed']}). Margins: chance-corrected "
              "kNN agreement of each assigned facet on its head, and in brackets that over the "
              "best other head (target >= 1.5x). Routing: share of users whose top-gated "
              "assigned head is their driving facet's head (target >= 0.8). The oracle is "
              "built, not trained: it has no trained gate, so it has no routing figure."), ""]
    for world, block in results["worlds"].items():
        opts, facets = block["dataset_options"], block["facets"]
        lines += [f"## World {world}: {opts or 'defaults'}; heads 0-2 = {', '.join(facets)}", "",
                  ("| model | margins: facet cc (x runner-up) | passes | routing accuracy | "
                   "test NDCG@10 | test HR@10 | pre-train s | sequential s (epochs) |"),
                  "|---|---|---|---|---|---|---|---|"]
        oracle = block["oracle"]
        lines.append(f"| oracle | {_fmt_margins(oracle)} | "
                     f"{all(m['passes'] for m in oracle['margins'])} | no trained gate | - | - "
                     "| - | - |")
        for label, row in block["models"].items():
            passes = all(m["passes"] for m in row["margins"]) if "margins" in row else "-"
            lines.append(
                f"| {label} | {_fmt_margins(row)} | {passes} | {_routing_all(row)} | "
                f"{row['test_NDCG@10']:.4f} | {row['test_HR@10']:.4f} | "
                f"{row['pretrain_seconds']:.1f} | {row['train_seconds']:.0f} "
                f"({row['epochs_run']}) |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the worlds keep "
                        "theirs)")
    parser.add_argument("--models", nargs="+", default=None, choices=list(MODELS_DEFAULT_WORLD),
                        help="train only these (default: all of each world)")
    args = parser.parse_args(argv)
    runs = args.runs or Path(os.environ.get("FAMEKIT_RUNS") or runs_root()) / "fameplus-bench"
    started = time.perf_counter()
    results: dict = {"seed": args.seed, "worlds": {}}
    for world in args.worlds:
        dataset_options, facets = WORLDS[world]
        labels = (list(MODELS_DEFAULT_WORLD) if world == "default"
                  else list(MODELS_OTHER_WORLDS))
        labels = [label for label in labels if args.models is None or label in args.models]
        block = {"dataset_options": dataset_options, "facets": list(facets), "models": {},
                 "oracle": _oracle(dataset_options, facets)}
        for label in labels:
            print(f"[{time.perf_counter() - started:6.0f}s] world {world}: {label}", flush=True)
            folder = _train(world, label, runs, dataset_options, facets, args.progress,
                            args.seed)
            block["models"][label] = _measure(folder, facets)
        results["worlds"][world] = block
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fameplus.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    text = to_markdown(results)
    (args.out / "fameplus.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    pd.set_option("display.width", 160)
    np.set_printoptions(precision=3)
    sys.exit(main())
