"""Speed and cost: RecBole SASRec vs our SASRec vs FAME, one run, one machine.

    FAMEKIT_SHARED_DATA=../shared/data nice -n 19 .venv/bin/python benchmarks/speed.py \
        --dataset beauty --epochs 2 --threads 1

What it measures, each system in its own child process (so ``ru_maxrss`` of that child is the
system's peak resident memory: interpreter + torch + data + training + evaluation):

* **epoch time** (training only) and **evaluation time** (famekit's full-ranking protocol over
  every validation user, history masked) per epoch, same batch size (256), sequence length
  (the recipe's max_len), hidden size (64), layers, heads, dropout. RecBole's epoch is a pass
  over every *prefix* of every training sequence (data augmentation), ours over every sequence
  (all positions scored at once), so per-epoch ratios compare different amounts of work;
* **wall time to reach RecBole SASRec's best validation NDCG@10** (the honest comparison):
  cumulative seconds (training + validation) to the first epoch whose validation NDCG@10 is
  >= RecBole's best, read from the histories (famekit ``metrics.csv``, the bridge's
  ``result.json``). Pass converged runs (e.g. those of benchmarks/reproduce.py, trained side by
  side on this machine) with ``--recbole-run/--sasrec-run/--fame-run``: their histories give
  time-to-target and per-epoch means over every epoch; the short runs of this invocation
  still give peak memory and the one-invocation epoch times. Without them the short runs are
  used for everything;
* **FLOP/s of a training step** (forward + backward + Adam on real length-bucketed batches of
  the dataset; FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``) against the
  machine's measured fp32 GEMM peak (``torch.matmul`` of 2048x2048 on ``--gemm-threads``).

Writes ``speed.json`` and ``speed.md`` under ``--out`` (default reports/benchmarks/). The
machine is shared: the load average before and after is recorded; timings taken under load are
upper bounds.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


# ------------------------------------------------------------------------------ histories
def time_to_target(rows: list[dict], target: float) -> tuple[float | None, int | None]:
    """(cumulative seconds, epoch) of the first row with valid NDCG@10 >= target, else (None, None).

    ``rows``: per-epoch dicts with ``valid_NDCG@10`` and ``cumulative_seconds``.
    """
    for row in rows:
        if float(row["valid_NDCG@10"]) >= target:
            return float(row["cumulative_seconds"]), int(row["epoch"])
    return None, None


def famekit_history(run_dir: Path) -> list[dict]:
    """metrics.csv rows with cumulative seconds (training + validation of every epoch)."""
    rows, total = [], 0.0
    with open(run_dir / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            total += float(row["seconds"])
            rows.append({"epoch": int(row["epoch"]), "valid_NDCG@10": float(row["valid_NDCG@10"]),
                         "train_seconds": float(row["train_seconds"]),
                         "eval_seconds": float(row["seconds"]) - float(row["train_seconds"]),
                         "cumulative_seconds": total})
    return rows


def recbole_history(run_dir: Path) -> list[dict]:
    """The bridge's per-epoch history (result.json, or history.json of a run still going)."""
    path = run_dir / "result.json"
    if not path.is_file():
        path = run_dir / "history.json"
    return json.loads(path.read_text())["history"]


# ------------------------------------------------------------------------------ child processes
def run_child(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run a command; (wall seconds, peak RSS GiB of that child alone, via wait4)."""
    print("+", shlex.join(command), flush=True)
    began = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"child failed ({process.returncode}): {shlex.join(command)}")
    return time.perf_counter() - began, usage.ru_maxrss / (1 << 20)  # Linux: KiB


def famekit_child(args) -> int:
    """Child mode: train one famekit model for --epochs (the run folder holds the history)."""
    import torch
    from reproduce import load_dataset, recipe

    from famekit.training import train

    torch.set_num_threads(args.threads)
    hyper = recipe(args.dataset, args)
    train(load_dataset(args.dataset), kind=args.kind, out_dir=args.run_dir, seed=0,
          epochs=args.epochs, patience=args.epochs, batch_size=hyper["batch_size"],
          lr=hyper["lr"], max_len=hyper["max_len"], threads=args.threads, progress=False,
          overwrite=True, device="cpu", loss_weighting=hyper["loss_weighting"],
          d_model=hyper["d_model"], n_layers=hyper["n_layers"],
          n_heads=hyper["n_heads"], n_experts=hyper["n_experts"], dropout=hyper["dropout"])
    return 0


# ------------------------------------------------------------------------------ FLOP/s
def gemm_peak(threads: int, size: int = 2048, repeats: int = 10) -> float:
    """Best fp32 GFLOP/s of torch.matmul [size, size] @ [size, size] on ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best / 1e9


def step_flops(dataset_name: str, kind: str, threads: int, n_batches: int, args) -> dict:
    """Counted FLOPs and achieved GFLOP/s of training steps on real batches (median time)."""
    import numpy as np
    import torch
    from reproduce import load_dataset, recipe
    from torch.utils.flop_counter import FlopCounterMode

    from famekit.batching import NextItemBatches
    from famekit.model import ModelConfig, build_model

    torch.set_num_threads(threads)
    data = load_dataset(dataset_name)
    hyper = recipe(dataset_name, args)
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_items=data.n_items, kind=kind, max_len=hyper["max_len"],
                                    d_model=hyper["d_model"], n_layers=hyper["n_layers"],
                                    n_heads=hyper["n_heads"], n_experts=hyper["n_experts"],
                                    dropout=hyper["dropout"]))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=hyper["lr"])
    batches = NextItemBatches(data.split().train_sequences(), hyper["max_len"],
                              hyper["batch_size"])
    order = batches.epoch(np.random.default_rng(0))[: n_batches + 2]
    tensors = [tuple(torch.from_numpy(x) for x in batches.materialise(rows)) for rows in order]

    def step(inputs, targets):
        optimizer.zero_grad(set_to_none=True)
        loss = model(inputs, targets)
        loss.backward()
        optimizer.step()

    for inputs, targets in tensors[:2]:  # warm-up
        step(inputs, targets)
    flops, seconds = [], []
    # FLOPs of the algorithm, not of our implementation: the chunked loss (famekit.losses)
    # recomputes the [R, d] x [d, V] scoring matmul in its backward pass; those 2*R*d*V are
    # not credited.
    for inputs, targets in tensors[2:]:
        with FlopCounterMode(display=False) as counter:
            step(inputs, targets)
        recomputed = 2 * int((targets != 0).sum()) * hyper["d_model"] * data.n_items
        flops.append(counter.get_total_flops() - recomputed)
        began = time.perf_counter()
        step(inputs, targets)
        seconds.append(time.perf_counter() - began)
    total_flops, total_seconds = float(sum(flops)), float(sum(seconds))
    return {"kind": kind, "threads": threads, "batches": len(seconds),
            "gflop_per_step": total_flops / len(flops) / 1e9,
            "seconds_per_step": total_seconds / len(seconds),
            "gflops_achieved": total_flops / total_seconds / 1e9}


def loss_chunks_child(args) -> int:
    """Training-step time, peak memory and bit-reproducibility of each loss chunk size, SASRec
    and FAME, on real batches of the dataset, in this one process (sizes interleaved, so that
    a change of machine load hits them alike)."""
    import hashlib
    import resource

    import numpy as np
    import torch
    from reproduce import load_dataset, recipe

    from famekit import losses
    from famekit.batching import NextItemBatches
    from famekit.model import ModelConfig, build_model

    torch.set_num_threads(args.gemm_threads)
    data = load_dataset(args.dataset)
    hyper = recipe(args.dataset, args)
    batches = NextItemBatches(data.split().train_sequences(), hyper["max_len"],
                              hyper["batch_size"])
    order = batches.epoch(np.random.default_rng(0))[: args.flop_batches + 2]
    tensors = [tuple(torch.from_numpy(x) for x in batches.materialise(rows)) for rows in order]
    sizes = {"one chunk": 1 << 40, "8 MiB chunks": 1 << 21}

    def steps(kind: str, chunk: int) -> tuple[list[float], str]:
        losses.CHUNK_ELEMENTS = chunk
        torch.manual_seed(0)
        model = build_model(ModelConfig(n_items=data.n_items, kind=kind,
                                        max_len=hyper["max_len"], d_model=hyper["d_model"],
                                        n_layers=hyper["n_layers"], n_heads=hyper["n_heads"],
                                        n_experts=hyper["n_experts"], dropout=0.0))
        optimizer = torch.optim.Adam(model.parameters(), lr=hyper["lr"])
        seconds = []
        for inputs, targets in tensors:
            began = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            model(inputs, targets).backward()
            optimizer.step()
            seconds.append(time.perf_counter() - began)
        digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes()
                                         for p in model.parameters())).hexdigest()[:16]
        return seconds[2:], digest  # the first two steps warm up

    rows = []
    for kind in ("sasrec", "fame"):
        timings = {name: [] for name in sizes}
        digests = {name: set() for name in sizes}
        for _ in range(args.repeats):
            for name, chunk in sizes.items():
                seconds, digest = steps(kind, chunk)
                timings[name] += seconds
                digests[name].add(digest)
        for name, chunk in sizes.items():
            rows.append({"kind": kind, "chunking": name, "chunk_elements": chunk,
                         "median_step_ms": 1000 * float(np.median(timings[name])),
                         "steps": len(timings[name]), "repeats": args.repeats,
                         "bit_identical_repeats": len(digests[name]) == 1})
    out = {"dataset": args.dataset, "threads": args.gemm_threads, "rows": rows,
           "mkl_cbwr": os.environ.get("MKL_CBWR"),
           "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    for kind in ("sasrec", "fame"):
        one, chunked = (r["median_step_ms"] for r in rows if r["kind"] == kind)
        out[f"{kind}_speedup"] = one / chunked
    print(json.dumps(out, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2))
    return 0


def flops_child(args) -> int:
    out = {"gemm_gflops": gemm_peak(args.gemm_threads),
           "steps": [step_flops(args.dataset, kind, args.gemm_threads, args.flop_batches, args)
                     for kind in ("sasrec", "fame")]}
    for row in out["steps"]:
        row["share_of_gemm_peak"] = row["gflops_achieved"] / out["gemm_gflops"]
    Path(args.json_out).write_text(json.dumps(out, indent=2))
    return 0


# ------------------------------------------------------------------------------ the report
def summarise(histories: dict[str, list[dict]], rss: dict[str, float]) -> dict:
    systems = {}
    for name, rows in histories.items():
        train_s = [r["train_seconds"] for r in rows]
        eval_s = [r["eval_seconds"] for r in rows]
        systems[name] = {"epochs": len(rows),
                         "epoch_seconds_mean": sum(train_s) / len(train_s),
                         "eval_seconds_mean": sum(eval_s) / len(eval_s),
                         "best_valid_NDCG@10": max(r["valid_NDCG@10"] for r in rows),
                         "peak_rss_gib": rss.get(name)}
    out = {"systems": systems, "ratios": {}, "time_to_recbole_best": {}}
    if "recbole-sasrec" in systems:
        base = systems["recbole-sasrec"]["epoch_seconds_mean"]
        for name in ("sasrec", "fame"):
            if name in systems:
                out["ratios"][f"recbole_epoch / {name}_epoch"] = base / systems[name][
                    "epoch_seconds_mean"]
        target = systems["recbole-sasrec"]["best_valid_NDCG@10"]
        out["recbole_best_valid_NDCG@10"] = target
        for name, rows in histories.items():
            seconds, epoch = time_to_target(rows, target)
            out["time_to_recbole_best"][name] = {"seconds": seconds, "epoch": epoch}
        rec = out["time_to_recbole_best"]["recbole-sasrec"]["seconds"]
        for name in ("sasrec", "fame"):
            if name not in systems:
                continue
            ours = out["time_to_recbole_best"][name]["seconds"]
            out["ratios"][f"time_to_target recbole / {name}"] = (
                rec / ours if ours else None)  # None: not reached within these epochs
        # If a system never reaches RecBole's best, the ratio above is undefined; the quality
        # every system reaches (the lowest of the bests) still gives a time-to-quality ratio.
        common = min(s["best_valid_NDCG@10"] for s in systems.values())
        out["common_target_valid_NDCG@10"] = common
        out["time_to_common_target"] = {}
        for name, rows in histories.items():
            seconds, epoch = time_to_target(rows, common)
            out["time_to_common_target"][name] = {"seconds": seconds, "epoch": epoch}
        rec = out["time_to_common_target"]["recbole-sasrec"]["seconds"]
        for name in ("sasrec", "fame"):
            if name in systems:
                ours = out["time_to_common_target"][name]["seconds"]
                out["ratios"][f"time_to_common_target recbole / {name}"] = rec / ours
    if "sasrec" in systems and "fame" in systems:
        out["ratios"]["fame_epoch / sasrec_epoch"] = (systems["fame"]["epoch_seconds_mean"]
                                                      / systems["sasrec"]["epoch_seconds_mean"])
    return out


def normalised_times(report: dict) -> dict:
    """Time to target with every system's epoch priced at this invocation's measurement.

    The converged runs may have trained while the machine was shared (their wall times then
    depend on what else ran); epochs-to-target do not. Seconds = epochs to reach the target
    (from the converged histories) x (train + validation seconds per epoch of this invocation's
    short runs, one system after the other on the same machine).
    """
    short, converged = report["systems"], report["converged"]
    out: dict = {"per_epoch_seconds": {}, "seconds": {}, "ratios": {}}
    for key in ("time_to_recbole_best", "time_to_common_target"):
        out["seconds"][key] = {}
        for name, reach in converged.get(key, {}).items():
            if name not in short:
                continue
            per_epoch = short[name]["epoch_seconds_mean"] + short[name]["eval_seconds_mean"]
            out["per_epoch_seconds"][name] = per_epoch
            out["seconds"][key][name] = reach["epoch"] * per_epoch if reach["epoch"] else None
        times = out["seconds"][key]
        for name in ("sasrec", "fame"):
            if times.get("recbole-sasrec") and times.get(name):
                out["ratios"][f"{key} recbole / {name}"] = times["recbole-sasrec"] / times[name]
    return out


def _summary_lines(title: str, summary: dict) -> list[str]:
    """A markdown table of one ``summarise`` result, then its ratios."""
    lines = [f"## {title}", "",
             ("| system | epochs | train s/epoch | eval s (all valid users) | best valid NDCG@10 "
              "| peak RSS GiB | s to RecBole's best valid NDCG@10 | s to the common target |"),
             "|---|---|---|---|---|---|---|---|"]

    def reached(key: str, name: str) -> str:
        reach = summary.get(key, {}).get(name, {})
        return (f"{reach['seconds']:.0f} (epoch {reach['epoch']})" if reach.get("seconds")
                else "not reached" if key in summary else "-")

    for name, s in summary["systems"].items():
        rss = f"{s['peak_rss_gib']:.2f}" if s.get("peak_rss_gib") else "-"
        lines.append(f"| {name} | {s['epochs']} | {s['epoch_seconds_mean']:.1f} | "
                     f"{s['eval_seconds_mean']:.1f} | {s['best_valid_NDCG@10']:.4f} | {rss} | "
                     f"{reached('time_to_recbole_best', name)} | "
                     f"{reached('time_to_common_target', name)} |")
    if "common_target_valid_NDCG@10" in summary:
        common = summary["common_target_valid_NDCG@10"]
        lines += ["", f"Common target = the lowest best valid NDCG@10 of the systems: {common:.4f}."]
    lines += ["", "Ratios:", ""]
    lines += [f"- {k}: {v:.2f}" if v is not None else f"- {k}: n/a (target not reached)"
              for k, v in summary["ratios"].items()]
    return lines + [""]


def markdown(report: dict) -> str:
    lines = ["# Speed: RecBole SASRec vs famekit SASRec vs FAME", "",
             f"Command: `{report['command']}`", "",
             (f"Machine: {report['machine']}; load average before/after: "
              f"{report['load_before']} / {report['load_after']} (shared box: upper bounds)."),
             ""]
    if "converged" in report:
        lines += _summary_lines("Converged runs (histories of "
                                + ", ".join(f"{k}: `{v}`" for k, v in
                                            report["histories_from"].items()) + ")",
                                report["converged"])
    lines += _summary_lines(f"This invocation's runs ({report['epochs']} epoch(s) each, "
                            "one after the other)", report)
    norm = report.get("normalised_time_to_target")
    if norm:
        lines += ["## Time to target, load-independent", "",
                  "Epochs to reach the target (converged runs) x seconds per epoch (training + "
                  "validation, this invocation's runs):", ""]
        for key, times in norm["seconds"].items():
            cells = ", ".join(f"{name} {sec:.0f} s" if sec else f"{name} not reached"
                              for name, sec in times.items())
            lines.append(f"- {key.replace('_', ' ')}: {cells}")
        lines += ["", *(f"- {k}: {v:.2f}" for k, v in norm["ratios"].items()), ""]
    if "flops" in report:
        f = report["flops"]
        lines += ["", (f"fp32 GEMM peak (torch.matmul 2048², {report['gemm_threads']} threads): "
                       f"{f['gemm_gflops']:.0f} GFLOP/s"), ""]
        lines += [f"- {s['kind']} training step: {s['gflop_per_step']:.2f} GFLOP, "
                  f"{s['seconds_per_step'] * 1e3:.0f} ms -> {s['gflops_achieved']:.0f} GFLOP/s = "
                  f"{100 * s['share_of_gemm_peak']:.0f} % of peak" for s in f["steps"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="run", choices=("run", "loss", "_famekit", "_flops"),
                        help="run: the speed table; loss: one chunk vs 8 MiB loss chunks "
                             "(step time + bit-reproducibility, one process)")
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every system")
    parser.add_argument("--gemm-threads", type=int, default=2)
    parser.add_argument("--flop-batches", type=int, default=5)
    parser.add_argument("--systems", nargs="+", default=["recbole-sasrec", "sasrec", "fame"])
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench" / "speed"))
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmarks"))
    parser.add_argument("--recbole-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--recbole-run", help="a converged bridge run: its history gives "
                                              "time-to-target (see above)")
    parser.add_argument("--sasrec-run", help="a converged famekit SASRec run (its history)")
    parser.add_argument("--fame-run", help="a converged famekit FAME run (its history)")
    parser.add_argument("--skip-flops", action="store_true")
    parser.add_argument("--repeats", type=int, default=2,
                        help="loss mode: identical runs per chunk size (reproducibility)")
    # child-mode arguments
    parser.add_argument("--kind")
    parser.add_argument("--run-dir")
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    if args.mode == "_famekit":
        return famekit_child(args)
    if args.mode == "_flops":
        return flops_child(args)
    if args.mode == "loss":
        return loss_chunks_child(args)

    import reproduce
    import torch

    from famekit.checkpoints import atomic_write_json, atomic_write_text

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    data = reproduce.load_dataset(args.dataset)
    hyper = reproduce.recipe(args.dataset, args)
    histories, rss, wall = {}, {}, {}
    given = {"recbole-sasrec": args.recbole_run, "sasrec": args.sasrec_run,
             "fame": args.fame_run}
    for system in args.systems:
        if system == "recbole-sasrec":
            data_dir = work / "recbole-data" / f"{args.dataset}-{data.fingerprint}"
            if not (data_dir / "eval_inputs.npz").is_file():
                reproduce.export_for_recbole(data, data_dir, args.dataset.replace("-", "_"))
            run_dir = work / f"{args.dataset}-recbole-sasrec"
            (run_dir / "result.json").unlink(missing_ok=True)
            command = reproduce.recbole_command(
                data_dir, args.dataset.replace("-", "_"), 0, {**hyper, "epochs": args.epochs,
                                                              "patience": args.epochs},
                run_dir, args)
            env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
            wall[system], rss[system] = run_child(command, env)
        else:
            run_dir = work / f"{args.dataset}-{system}"
            command = [sys.executable, str(Path(__file__).resolve()), "_famekit", "--dataset",
                       args.dataset, "--kind", system, "--run-dir", str(run_dir), "--epochs",
                       str(args.epochs), "--threads", str(args.threads)]
            wall[system], rss[system] = run_child(command)
        histories[system] = (recbole_history(run_dir) if system == "recbole-sasrec"
                             else famekit_history(run_dir))
    report = summarise(histories, rss)
    report["short_run_histories"] = histories
    if any(given.values()):
        converged = {name: (recbole_history(Path(run)) if name == "recbole-sasrec"
                            else famekit_history(Path(run)))
                     for name, run in given.items() if run}
        report["converged"] = summarise(converged, {})
        report["converged_histories"] = converged
        report["normalised_time_to_target"] = normalised_times(report)
    report.update(command=shlex.join(["benchmarks/speed.py", *(argv or sys.argv[1:])]),
                  epochs=args.epochs,
                  dataset=args.dataset, hyperparameters=hyper, threads=args.threads,
                  gemm_threads=args.gemm_threads, child_wall_seconds=wall,
                  torch=torch.__version__, machine=f"{os.cpu_count()} CPUs, torch {torch.__version__}",
                  histories_from={k: v for k, v in given.items() if v})
    if not args.skip_flops:
        flops_json = work / "flops.json"
        run_child([sys.executable, str(Path(__file__).resolve()), "_flops", "--dataset",
                   args.dataset, "--gemm-threads", str(args.gemm_threads), "--flop-batches",
                   str(args.flop_batches), "--json-out", str(flops_json)])
        report["flops"] = json.loads(flops_json.read_text())
    report["load_before"] = [round(x, 2) for x in load_before]
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "speed.json", report)
    atomic_write_text(out / "speed.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
