"""Reproduction table: popularity, our SASRec, FAME and RecBole's SASRec, one protocol.

    nice -n 19 .venv/bin/python benchmarks/reproduce.py --datasets ml-100k \
        --models popularity sasrec fame recbole-sasrec --seeds 0 1 2 --threads 1

Every model is scored by the same full-ranking leave-one-out protocol (docs/fame-spec.md §5,
:mod:`famekit.evaluation`): all items are candidates except the padding id and every item of the
user's whole input sequence (**history items are excluded**; the target itself is always
ranked); ties count pessimistically. RecBole's own full ranking does not mask history, so its
trained model is re-scored by ``benchmarks/recbole_bridge.py`` with this protocol (its unmasked
numbers are kept beside, for orientation only).

Resumable: each (dataset, model, seed) has a run folder under ``--runs-dir``; a finished run is
read back, an interrupted famekit run resumes from its last epoch
(:func:`famekit.training.run_status`), a RecBole run without ``result.json`` starts again.

Writes under ``--out`` (default reports/benchmarks/):

* ``runs.csv``: one row per finished run (test metrics, best epoch, epochs, seconds).
* ``results.csv`` / ``results.md``: mean ± std (sample std, n-1) over seeds per dataset/model.
* ``commands.md``: the exact command lines and the hyperparameters of every run.

Datasets: registered famekit names (beauty, sports, toys, ml-100k, ...) and ``ml-1m-prefix``, the
MovieLens-1M prefix file of ``$FAMEKIT_SHARED_DATA/ml-1m`` (not shipped; read directly). Popularity
has no randomness: it is run once per dataset (seed column "-").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from famekit import datasets
from famekit.baselines import Popularity
from famekit.checkpoints import atomic_write_json, atomic_write_text
from famekit.evaluation import METRIC_NAMES, evaluate, metrics_from_ranks
from famekit.runs import RunDir
from famekit.training import run_status, train
from famekit.workspace import RECIPES

MODELS = ("popularity", "sasrec", "fame", "recbole-sasrec")
# Variants are named "KIND:KEY=VALUE[,KEY=VALUE]" (KIND sasrec or fame): FAME ablations with
# ModelConfig fields (fame:n_heads=2, fame:n_experts=1, fame:router=uniform, fame:gate=uniform)
# and, for either model, the optimisation settings of a search (sasrec:batch_size=64,lr=0.002).
ABLATION_KEYS = {"n_heads": int, "n_experts": int, "router": str, "gate": str,
                 "batch_size": int, "lr": float, "loss_weighting": str, "precision": str}
FAME_ONLY_KEYS = ("n_experts", "router", "gate")
OPTIMISATION_KEYS = ("batch_size", "lr", "loss_weighting", "precision")
TABLE_METRICS = tuple(m for m in METRIC_NAMES if m != "MRR")  # HR and NDCG at every cut-off
PREFIX_DATASET = "ml-1m-prefix"
TRAIN_KEYS = ("d_model", "n_layers", "n_heads", "n_experts", "dropout", "max_len", "epochs",
              "patience", "batch_size", "lr", "loss_weighting")


# ------------------------------------------------------------------------------------ datasets
def shared_data() -> Path:
    return Path(os.environ.get("FAMEKIT_SHARED_DATA") or ROOT.parent / "shared" / "data")


def load_dataset(name: str):
    """The SeqDataset of a table dataset name (registered name or ``ml-1m-prefix``)."""
    if name == PREFIX_DATASET:
        folder = shared_data() / "ml-1m"
        data = datasets.load_files(folder / "ml-1m_prefix.txt", folder / "items.tsv",
                                   name=PREFIX_DATASET)
        return data
    return datasets.load(name)


def recipe(name: str, args) -> dict:
    """Hyperparameters of a dataset: famekit.workspace.RECIPES, command-line overrides on top."""
    config = RECIPES["ml-1m" if name == PREFIX_DATASET else name].config
    config = dataclasses.replace(config, **{k: getattr(args, k) for k in ("epochs", "patience")
                                            if getattr(args, k) is not None})
    model = config.model_config(n_items=1)  # the model options with ModelConfig's defaults
    flat = {**config.to_dict(), **{k: getattr(model, k) for k in TRAIN_KEYS if hasattr(model, k)}}
    return {k: flat[k] for k in TRAIN_KEYS if k in flat}


def parse_model(name: str) -> tuple[str, dict]:
    """("fame", {"n_heads": 2}) from "fame:n_heads=2"; plain names have no overrides."""
    kind, _, spec = name.partition(":")
    if kind not in MODELS or (spec and kind not in ("fame", "sasrec")):
        raise SystemExit(f"unknown model {name!r}: use one of {', '.join(MODELS)} or a FAME "
                         "ablation fame:KEY=VALUE[,KEY=VALUE] with KEY in "
                         + ", ".join(ABLATION_KEYS))
    overrides = {}
    for item in filter(None, spec.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in ABLATION_KEYS or (kind == "sasrec" and key in FAME_ONLY_KEYS):
            raise SystemExit(f"bad ablation {item!r} in {name!r}: KEY=VALUE with KEY in "
                             + ", ".join(ABLATION_KEYS))
        overrides[key] = ABLATION_KEYS[key](value)
    return kind, overrides


# ---------------------------------------------------------------------------------- the runs
def run_popularity(data, run_dir: Path) -> dict:
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    start = time.perf_counter()
    model = Popularity.fit(data)
    test = evaluate(model, data, split="test", progress=False)
    valid = evaluate(model, data, split="valid", progress=False)
    result = {"status": "finished", "test": test, "valid": valid, "best_epoch": None,
              "epochs": 0, "seconds": time.perf_counter() - start}
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result_path, result)
    return result


def run_famekit(source, kind: str, seed: int, hyper: dict, run_dir: Path, args,
                overrides: dict | None = None) -> dict:
    """Train (or resume, or read back) one famekit run; its metrics.json summary."""
    status = run_status(run_dir)
    model_options = {k: hyper[k] for k in ("d_model", "n_layers", "n_heads", "n_experts",
                                           "dropout")}
    overrides = dict(overrides or {})
    hyper = {**hyper, **{k: overrides.pop(k) for k in OPTIMISATION_KEYS if k in overrides}}
    model_options.update(overrides)
    common = {"progress": args.progress, "threads": args.threads}
    if status == "running":
        train(source, resume=run_dir, epochs=hyper["epochs"], patience=hyper["patience"], **common)
    elif status is None:
        train(source, kind=kind, out_dir=run_dir, seed=seed, epochs=hyper["epochs"],
              patience=hyper["patience"], batch_size=hyper["batch_size"], lr=hyper["lr"],
              max_len=hyper["max_len"], device=args.device,
              loss_weighting=hyper.get("loss_weighting", "batch"),
              precision=hyper.get("precision", "auto"), **common, **model_options)
    metrics = RunDir(run_dir).metrics()
    history = metrics.get("history") or []
    return {"status": metrics.get("status"), "test": metrics.get("test") or {},
            "best_epoch": metrics.get("best_epoch"), "epochs": len(history),
            "seconds": float(sum(float(row.get("seconds") or 0.0) for row in history))}


def export_for_recbole(data, folder: Path, atomic_name: str) -> None:
    """The same leave-one-out split as RecBole atomic files + famekit's evaluation inputs.

    ``<atomic_name>.inter``: every user's whole sequence, ``timestamp`` = position (0-based), so
    RecBole's "TO" ordering + "LS valid_and_test" split holds out the same last two items as
    famekit. ``eval_inputs.npz``: famekit's valid/test inputs (flat + offsets) and targets, which
    the bridge scores with famekit's protocol.
    """
    inter_dir = folder / atomic_name
    inter_dir.mkdir(parents=True, exist_ok=True)
    users, items, stamps = [], [], []
    for u in range(data.n_users):
        seq = data.sequence(u)
        users.append(np.full(len(seq), u + 1, dtype=np.int64))
        items.append(np.asarray(seq, dtype=np.int64))
        stamps.append(np.arange(len(seq), dtype=np.int64))
    frame = pd.DataFrame({"user_id:token": np.concatenate(users),
                          "item_id:token": np.concatenate(items),
                          "timestamp:float": np.concatenate(stamps)})
    text = frame.to_csv(sep="\t", index=False)
    atomic_write_text(inter_dir / f"{atomic_name}.inter", text)
    arrays = {}
    split = data.split()
    for name in ("valid", "test"):
        inputs, targets, user_rows = split.eval_inputs(name)
        lengths = np.array([len(s) for s in inputs], dtype=np.int64)
        arrays[f"{name}_flat"] = np.concatenate(inputs).astype(np.int64)
        arrays[f"{name}_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        arrays[f"{name}_targets"] = targets.astype(np.int64)
        arrays[f"{name}_users"] = user_rows.astype(np.int64)  # RecBole user token = row + 1
    arrays["n_items"] = np.array([data.n_items], dtype=np.int64)
    np.savez(folder / "eval_inputs.npz", **arrays)


def recbole_command(data_dir: Path, atomic_name: str, seed: int, hyper: dict, run_dir: Path,
                    args) -> list[str]:
    return [str(args.recbole_python), str(ROOT / "benchmarks" / "recbole_bridge.py"), "train",
            "--data-dir", str(Path(data_dir).absolute()), "--dataset", atomic_name,
            "--out", str(Path(run_dir).absolute()),
            "--seed", str(seed), "--epochs", str(hyper["epochs"]),
            "--patience", str(hyper["patience"]), "--max-len", str(hyper["max_len"]),
            "--d-model", str(hyper["d_model"]), "--n-layers", str(hyper["n_layers"]),
            "--n-heads", str(hyper["n_heads"]), "--dropout", str(hyper["dropout"]),
            "--batch-size", str(hyper["batch_size"]), "--lr", str(hyper["lr"]),
            "--threads", str(args.threads or 1),
            *(["--max-seconds", str(args.recbole_max_seconds)]
              if getattr(args, "recbole_max_seconds", None) else [])]


def run_recbole(data, name: str, seed: int, hyper: dict, run_dir: Path, args) -> dict:
    result_path = run_dir / "result.json"
    if not result_path.is_file():
        data_dir = Path(args.runs_dir) / "recbole-data" / f"{name}-{data.fingerprint}"
        atomic_name = name.replace("-", "_")
        if not (data_dir / "eval_inputs.npz").is_file():
            export_for_recbole(data, data_dir, atomic_name)
        command = recbole_command(data_dir, atomic_name, seed, hyper, run_dir, args)
        print("+", shlex.join(command), flush=True)
        env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
        subprocess.run(command, check=True, env=env)
    result = json.loads(result_path.read_text())
    ranks = np.load(run_dir / "test_ranks.npy", allow_pickle=False)
    result["test"] = metrics_from_ranks(ranks)  # famekit's own metric code on the bridge's ranks
    return result


# ---------------------------------------------------------------------------------- tables
PROTOCOL = (
    "Protocol: full ranking over all items, leave-one-out (valid = second-to-last item, "
    "test = last), **history items excluded** from the candidates (the target is always "
    "ranked), pessimistic ties, metrics averaged over users with >= 3 items "
    "(famekit.evaluation, docs/fame-spec.md §5). RecBole's model is re-scored with this protocol "
    "by benchmarks/recbole_bridge.py; model selection (early stopping on valid NDCG@10) "
    "uses the same protocol for every trained model."
)
RECBOLE_SETTINGS = (
    "RecBole SASRec: same d_model/n_layers/n_heads/dropout (hidden_dropout_prob), "
    "attn_dropout_prob=0 (famekit's default attn_dropout), inner_size=4*d, GELU, "
    "layer_norm_eps=1e-8, initializer_range=0.02, loss CE over all items, Adam, "
    "MAX_ITEM_LIST_LENGTH=max_len, no negative sampling; "
    "torch.autograd.set_detect_anomaly(False) after importing recbole (it turns it on)."
)


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    grouped = rows.groupby(["dataset", "model"], sort=False)
    out = grouped[list(TABLE_METRICS)].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out["seeds"] = grouped["seed"].apply(lambda s: " ".join(str(x) for x in s))
    return out.reset_index()


def markdown(table: pd.DataFrame, note: str) -> str:
    header = "| dataset | model | seeds | " + " | ".join(TABLE_METRICS) + " |"
    lines = [note, "", header, "|" + "---|" * (3 + len(TABLE_METRICS))]
    for _, row in table.iterrows():
        cells = []
        for m in TABLE_METRICS:
            std = row[f"{m}_std"]
            cells.append(f"{row[f'{m}_mean']:.4f}" + ("" if pd.isna(std) else f" ± {std:.4f}"))
        lines.append(f"| {row['dataset']} | {row['model']} | {row['seeds']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_commands(out: Path, invocations: list[str], hypers: dict, recbole_cmds: list[str]) -> None:
    lines = ["# Commands and hyperparameters of the reproduction table", "",
             "Regenerate (resumable; finished runs are read back; rows accumulate in runs.csv):",
             "", "```", *(f"nice -n 19 .venv/bin/python {line}" for line in invocations),
             "```", "",
             PROTOCOL, "",
             "## Hyperparameters per dataset", ""]
    for name, hyper in hypers.items():
        lines.append(f"- **{name}**: " + ", ".join(f"{k}={v}" for k, v in hyper.items()))
    lines += ["", RECBOLE_SETTINGS, ""]
    if recbole_cmds:
        lines += ["## RecBole bridge command lines", "", "```", *recbole_cmds, "```", ""]
    atomic_write_text(out / "commands.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k"])
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        help=f"some of {', '.join(MODELS)}, or FAME ablations such as "
                             "fame:n_heads=2 fame:router=uniform fame:gate=uniform")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmarks"))
    parser.add_argument("--runs-dir", default=str(ROOT / "runs" / "bench"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default=None, help="cpu / cuda (default: CUDA if available)")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--patience", type=int, default=None, help="override the recipe's")
    parser.add_argument("--recbole-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--recbole-max-seconds", type=float, default=None,
                        help="time budget of a RecBole run: stop after the epoch that passes "
                             "it and score the best epoch so far (runs.csv status says so)")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--table-only", action="store_true",
                        help="only rebuild the tables from finished runs (train nothing)")
    args = parser.parse_args(argv)
    for name in args.models:
        parse_model(name)  # unknown names stop here, before any training
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(args.runs_dir)

    # Rows of earlier invocations stay (a later one replaces a (dataset, model, seed) it re-reads).
    rows = (pd.read_csv(out / "runs.csv", dtype={"seed": str}).to_dict("records")
            if (out / "runs.csv").is_file() else [])
    log_path = out / "invocations.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {"argv": [], "hypers": {},
                                                                        "recbole": []}
    # The commands that trained these runs (a --table-only call trains nothing: not recorded).
    invocation = shlex.join(["benchmarks/reproduce.py",
                             *(argv if argv is not None else sys.argv[1:])])
    if not args.table_only and invocation not in log["argv"]:
        log["argv"].append(invocation)
    atomic_write_json(log_path, log)
    hypers, recbole_cmds = log["hypers"], log["recbole"]
    for name in args.datasets:
        data = load_dataset(name)
        hyper = recipe(name, args)
        hypers[name] = hyper
        # Seed-major order: a job stopped early leaves every model with its first seeds done.
        jobs = [(model, seed) for seed in args.seeds for model in args.models
                if model != "popularity" or seed == args.seeds[0]]
        for model, seed in jobs:
            run_dir = runs_dir / f"{name}-{model.replace(':', '-').replace(',', '-')}-seed{seed}"
            label = f"{name} {model} seed {seed}"
            if model == "recbole-sasrec":
                line = shlex.join(recbole_command(
                    runs_dir / "recbole-data" / f"{name}-{data.fingerprint}",
                    name.replace("-", "_"), seed, hyper, run_dir, args))
                if line not in recbole_cmds:
                    recbole_cmds.append(line)
            finished = ((run_dir / "result.json").is_file() if model in
                        ("popularity", "recbole-sasrec") else run_status(run_dir) == "finished")
            if args.table_only and not finished:
                print(f"skip {label}: not finished", flush=True)
                continue
            print(f"== {label} ({'read back' if finished else 'running'})", flush=True)
            if model == "popularity":
                result = run_popularity(data, run_dir)
            elif model == "recbole-sasrec":
                result = run_recbole(data, name, seed, hyper, run_dir, args)
            else:
                kind, overrides = parse_model(model)
                result = run_famekit(name if name != PREFIX_DATASET else data,
                                     kind, seed, hyper, run_dir, args, overrides)
            seed_label = "-" if model == "popularity" else str(seed)
            rows = [r for r in rows if (r["dataset"], r["model"], str(r["seed"])) !=
                    (name, model, seed_label)]
            row = {"dataset": name, "model": model, "seed": seed_label,
                   "best_epoch": result.get("best_epoch"), "epochs": result.get("epochs"),
                   "seconds": round(float(result.get("seconds") or 0.0), 1),
                   "status": result.get("status"), "exclude_history": True}
            row.update({m: result["test"].get(m) for m in METRIC_NAMES})
            rows.append(row)
            print(f"   test NDCG@10 {row['NDCG@10']:.4f} HR@10 {row['HR@10']:.4f}", flush=True)
            # Tables after every run: a stopped job still leaves what it finished.
            frame = pd.DataFrame(rows)
            frame.to_csv(out / "runs.csv", index=False)
            table = aggregate(frame)
            table.to_csv(out / "results.csv", index=False)
            note = ("Test metrics, mean ± sample std over seeds; full ranking, history items "
                    "excluded, pessimistic ties (docs/fame-spec.md §5). Runs included: "
                    + ", ".join(f"{d}/{m}: {s}" for d, m, s in
                                table[["dataset", "model", "seeds"]].itertuples(index=False)))
            atomic_write_text(out / "results.md", markdown(table, note))
        atomic_write_json(log_path, log)
        write_commands(out, log["argv"], hypers, recbole_cmds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
