"""The ``famekit`` command line: train, evaluate, inspect data, report.

    famekit train --dataset beauty --model fame --epochs 200 --patience 10
    famekit train --sequences my_seqs.txt --items my_items.tsv --out runs/mine
    famekit train --resume runs/beauty-fame-seed0 --epochs 300
    torchrun --standalone --nproc_per_node 2 -m famekit.cli train --dataset beauty
    famekit evaluate runs/beauty-fame-seed0 --split test
    famekit data info beauty ml-1m
    famekit report --dataset beauty

A thin shell over :mod:`famekit.training`, :mod:`famekit.evaluation` and
:mod:`famekit.datasets`: the same calls a Python user makes. Every :class:`FamekitError` (bad
input) prints one line ``famekit: error: <message>`` on stderr and exits with status 2, like
argparse's own usage errors; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from famekit.datasets.core import EVAL_SPLITS
from famekit.datasets.stats import add_info_arguments
from famekit.errors import FamekitError, ParameterError

__all__ = ["build_parser", "main"]



# ------------------------------------------------------------------------------- argument types
def _int(text: str) -> int:
    """argparse type for whole numbers; ranges are checked by the library (FamekitError)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _data_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE parsed as JSON when it can be (numbers, true/false), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. n_users=500)")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _config_flags() -> list[tuple[str, str, dict]]:
    """(option name, flag, argparse keywords) of every training option ``famekit train``
    offers, generated from TrainConfig's fields and the model flags (names, types, choices,
    defaults and help texts are written there, not here)."""
    import dataclasses

    from famekit.model import ModelConfig
    from famekit.train_config import MODEL_FLAG_CHOICES, MODEL_FLAGS, TrainConfig

    flags = []
    for spec in dataclasses.fields(TrainConfig):
        flag = spec.metadata.get("flag")
        if flag == "":  # not offered on the command line
            continue
        flags.append((spec.name, flag or "--" + spec.name.replace("_", "-"),
                      _flag_keywords(spec.default, spec.metadata["help"],
                                     spec.metadata.get("choices"))))
    model_fields = ModelConfig.__dataclass_fields__
    for name, (flag, help_text) in MODEL_FLAGS.items():
        flags.append((name, flag, _flag_keywords(model_fields[name].default, help_text,
                                                 MODEL_FLAG_CHOICES.get(name))))
    return flags


def _flag_keywords(default, help_text: str, choices) -> dict:
    shown = (",".join(default) or "none") if isinstance(default, tuple) else default
    keywords: dict = {"help": f"{help_text} (default {shown})"}
    if choices:
        keywords["choices"] = choices
    elif isinstance(default, int):
        keywords["type"] = _int
    elif isinstance(default, float):
        keywords["type"] = float
    return keywords


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    for name, flag, keywords in _config_flags():
        # dest = the option's own name: only flags that were given reach train(), so resume
        # keeps the run's saved values for the others
        if "choices" not in keywords:
            keywords["metavar"] = flag.lstrip("-").replace("-", "_").upper()
        parser.add_argument(flag, dest=name, default=None, **keywords)


def _add_unverified_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-unverified", action="store_true",
        help="load dataset files famekit has no recorded sha256 for (ml-1m's ratings.dat, "
             "ml-20m's ratings.csv and movies.csv) unverified; the same as "
             "FAMEKIT_ALLOW_UNVERIFIED=1. Without it such files are refused")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="famekit",
        description="Train FAME and SASRec sequential recommenders and look inside them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # -- train
    train = sub.add_parser("train", help="train a model (single process or under torchrun)",
                           description="Train FAME or SASRec with early stopping on valid "
                           "NDCG@10; the run directory keeps the best weights and metrics.")
    data = train.add_mutually_exclusive_group()
    data.add_argument("--dataset", metavar="NAME", help="a registered dataset (default synthetic)")
    data.add_argument("--sequences", metavar="FILE",
                      help="your own sequence file: 'user item item ...' per line")
    train.add_argument("--items", metavar="TSV", help="item metadata for --sequences")
    train.add_argument("--data-option", metavar="KEY=VALUE", type=_data_option, action="append",
                       default=[], help="dataset option, repeatable (e.g. n_users=500)")
    _add_config_flags(train)
    train.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    train.add_argument("--threads", type=_int,
                       help="torch CPU threads (default: all usable cores, or OMP_NUM_THREADS)")
    train.add_argument("--out", metavar="RUN_DIR",
                       help="run directory (default $FAMEKIT_RUNS or runs/<data>-<model>-seed<s>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    train.add_argument("--overwrite", action="store_true",
                       help="replace a finished run, or write into a non-empty folder that holds "
                            "no famekit run (only famekit's own file names are replaced)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_unverified_flag(train)

    # -- evaluate
    evaluate = sub.add_parser("evaluate", help="full-ranking metrics of a trained run",
                              description="Evaluate a run's best weights (leave-one-out, full "
                              "ranking, history excluded unless --include-history).")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("--split", choices=EVAL_SPLITS, default="test")
    evaluate.add_argument("--include-history", action="store_true",
                          help="rank the user's past items too (default: excluded)")
    evaluate.add_argument("--batch-size", type=_int, default=256,
                          help="users per batch (256)")
    evaluate.add_argument("--device", help="cpu, cuda or cuda:N")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_unverified_flag(evaluate)

    # -- data info
    data_cmd = sub.add_parser("data", help="dataset commands")
    data_sub = data_cmd.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    info = data_sub.add_parser("info", help="statistics table of datasets")
    add_info_arguments(info)
    _add_unverified_flag(info)

    # -- report
    report = sub.add_parser(
        "report", help="run every notebook and publish reports/",
        description="Train the dataset's default FAME and SASRec runs if they do not exist yet "
        "(cached), execute every notebook with papermill, and write reports/<dataset>/*.ipynb, "
        "a self-contained HTML next to each, and reports/index.html. Exits 1 if a notebook "
        "failed (the others still run; a previous good report is kept).")
    report.add_argument("--dataset", metavar="NAME", default="synthetic",
                        help="a registered dataset (default synthetic)")
    report.add_argument("--run", metavar="RUN_DIR",
                        help="a trained FAME run to report on (default: the dataset's default run)")
    report.add_argument("--out", metavar="DIR", default="reports", help="output folder (reports)")
    report.add_argument("--seed", type=_int, default=0, help="seed of the default runs (0)")
    report.add_argument("--notebooks", metavar="DIR", help="notebook folder (famekit's notebooks/)")
    report.add_argument("--only", metavar="NN", action="append",
                        help="run only notebooks whose name starts with this (repeatable)")
    report.add_argument("-p", "--param", metavar="NAME=JSON", action="append", default=[],
                        help="extra notebook parameter, e.g. -p 'COLOR_FIELDS=[\"brand\"]'")
    report.add_argument("--quick", action="store_true",
                        help="a tiny world and 3 epochs (what CI runs; synthetic only)")
    report.add_argument("--timeout", type=_int, default=900,
                        help="seconds a notebook cell may run (900)")
    report.add_argument("--benchmarks", action="store_true",
                        help="instead: render notebooks/benchmarks.ipynb over the committed "
                             "tables in <out>/benchmarks/ (trains nothing)")
    report.add_argument("--check", action="store_true",
                        help="instead: prove that the committed <out>/<dataset>/ report is what "
                             "this code produces: re-execute it over the runs it carries and "
                             "compare every text output with tolerances, then retrain its runs "
                             "and compare their metrics (exits 1 on a difference)")
    report.add_argument("--no-retrain", action="store_true",
                        help="with --check: skip the retraining part")
    report.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_unverified_flag(report)
    return parser


# ------------------------------------------------------------------------------- commands
def _is_main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _metrics_table(rows: dict[str, dict]) -> str:
    """A plain text table: one row per model, one column per metric."""
    import pandas as pd

    from famekit.evaluation import METRIC_NAMES

    frame = pd.DataFrame({name: {m: metrics.get(m) for m in (*METRIC_NAMES, "users")}
                          for name, metrics in rows.items()}).T
    frame["users"] = frame["users"].astype("Int64")
    return frame.to_string(float_format=lambda v: f"{v:.4f}")


def _cmd_train(args) -> int:
    from famekit import datasets
    from famekit.training import train

    if args.items and not args.sequences:
        raise ParameterError("--items needs --sequences. Fix: pass --sequences FILE --items TSV")
    options = {name: getattr(args, name) for name, _, _ in _config_flags()
               if getattr(args, name) is not None}
    if args.sequences:
        dataset = datasets.load_files(args.sequences, args.items,
                                      name=Path(args.sequences).stem)
    else:
        dataset = args.dataset  # None: the default dataset, or on resume the run's own
    if args.data_option:
        options["dataset_options"] = dict(args.data_option)
    result = train(dataset, out_dir=args.out, device=args.device, resume=args.resume,
                   overwrite=args.overwrite, threads=args.threads,
                   progress=not args.no_progress, **options)
    if _is_main_rank():
        stop = "stopped early" if result.stopped_early else "ran all epochs"
        print(f"run: {result.run_dir}  ({len(result.history)} epochs, {stop}; best valid "
              f"NDCG@10 {result.best_valid.get('NDCG@10', float('nan')):.4f} at epoch "
              f"{result.best_epoch})")
        print(_metrics_table({"test": result.test}))
        _print_facet_margins(result.run_dir)
    return 0


def _print_facet_margins(run_dir) -> None:
    """After a FAME+ run: does each facet sit on its head? (the alignment's margins)"""
    from famekit.runs import RunDir

    run_dir = RunDir(run_dir)
    data = run_dir.load_dataset()
    run = run_dir.load(dataset=data)
    if not run.facets:
        return
    from famekit.analysis.alignment import alignment_matrix, facet_margins

    margins = facet_margins(alignment_matrix(run.model, data, fields=list(run.facets),
                                             n_random_inits=0), run.facets)
    print("facets on heads (chance-corrected kNN agreement; margin over the best other head, "
          "target >= 1.5x):")
    for _, row in margins.iterrows():
        print(f"  {run.head_labels[row['head']]:24s} {row['chance_corrected']:.3f}   runner-up "
              f"head {row['runner_up_head']} {row['runner_up']:.3f}   margin "
              f"{row['margin']:.1f}x   {'on its head' if row['passes'] else 'NOT on its head'}")


def _cmd_evaluate(args) -> int:
    from famekit.distributed import resolve_device
    from famekit.evaluation import evaluate
    from famekit.runs import RunDir

    run_dir = RunDir(args.run_dir).require()
    dataset = run_dir.load_dataset()
    run = run_dir.load(dataset=dataset, device=resolve_device(args.device))
    metrics = evaluate(run.model, dataset, split=args.split, batch_size=args.batch_size,
                       exclude_history=not args.include_history, progress=not args.no_progress)
    history = "history included" if args.include_history else "history excluded"
    print(f"{run_dir.path}: {run.config.kind} on {dataset.name}, split {args.split}, full ranking, "
          f"{history}")
    print(_metrics_table({run.config.kind: metrics}))
    return 0


def _cmd_data(args) -> int:
    from famekit.datasets.stats import default_info_names, format_table, statistics_table

    names = args.names or default_info_names(args.cache_dir)
    table = statistics_table(names, cache_dir=args.cache_dir, progress=not args.no_progress)
    print(table.to_csv() if args.csv else format_table(table), end="" if args.csv else "\n")
    return 0


def _cmd_report(args) -> int:
    import json

    from famekit.report import generate_benchmark_report, generate_reports

    parameters = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise ParameterError(f"-p {item!r} is not NAME=VALUE. Fix: e.g. -p MAX_USERS=5000")
        try:
            parameters[name] = json.loads(value)
        except ValueError:
            parameters[name] = value  # a bare string
    if args.check:
        return _check_report(args)
    if args.benchmarks:
        result = generate_benchmark_report(out=args.out, notebooks_dir=args.notebooks,
                                           timeout=args.timeout, progress=not args.no_progress)
    else:
        result = generate_reports(
            args.dataset, run_dir=args.run, out=args.out, notebooks_dir=args.notebooks,
            seed=args.seed, quick=args.quick, timeout=args.timeout,
            progress=not args.no_progress, only=args.only, parameters=parameters,
        )
    width = max(len(n.name) for n in result.notebooks)
    for nb in result.notebooks:
        line = f"{nb.name:<{width}}  {nb.status:<6}  {nb.seconds:6.1f} s"
        print(line + (f"  {nb.error.splitlines()[0]}" if nb.error else ""))
    print(f"{result.dataset}: {sum(n.status == 'ok' for n in result.notebooks)}/"
          f"{len(result.notebooks)} notebooks ok in {result.seconds:.0f} s; "
          f"open {Path(result.out) / 'index.html'}")
    return 0 if result.ok else 1


def _check_report(args) -> int:
    from famekit.report_check import Tolerances, check_report

    tol = Tolerances()
    result = check_report(Path(args.out) / args.dataset, notebooks_dir=args.notebooks,
                          retrain=not args.no_retrain, tol=tol, timeout=args.timeout,
                          progress=not args.no_progress)
    print(f"re-executed over the bundled runs (numbers within rel {tol.rel:g} or "
          f"{tol.last_digit_units:g} unit of the last digit; words and integers exact):")
    for name, count in result.compared.items():
        bad = sum(d.notebook == name for d in result.differences)
        moved, largest = result.wiggles.get(name, (0, 0.0))
        print(f"  {name:<22} {count:5d} numbers, {moved:4d} moved (largest {largest:6.2%} of "
              f"the tolerance)  {'ok' if not bad else f'{bad} difference(s)'}")
    if result.retrained:
        print(f"retrained from scratch (test NDCG@10 within ±{tol.retrain_ndcg_abs:g}, best "
              f"epoch within ±{tol.retrain_epochs}):")
        width = max(map(len, result.retrained))
        for kind, pair in result.retrained.items():
            old, new = pair["committed"], pair["now"]
            print(f"  {kind:<{width}} NDCG@10 {old['NDCG@10']:.4f} -> {new['NDCG@10']:.4f}   "
                  f"best epoch {old['best_epoch']} -> {new['best_epoch']}")
    for kind, why in result.not_retrained.items():
        print(f"  {kind}: not retrained ({why})")
    shown = 20  # the first ones tell where to look; the count says how many more
    for difference in result.differences[:shown]:
        print(f"DIFFERENCE {difference}")
    if len(result.differences) > shown:
        print(f"... and {len(result.differences) - shown} more difference(s)")
    verdict = "matches" if result.ok else f"differs in {len(result.differences)} place(s) from"
    print(f"{result.folder}: the current code {verdict} the committed report "
          f"({result.seconds:.0f} s)")
    return 0 if result.ok else 1


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "data": _cmd_data,
            "report": _cmd_report}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: the process arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    if getattr(args, "allow_unverified", False):
        from famekit.datasets.fetch import UNVERIFIED_ENV

        os.environ[UNVERIFIED_ENV] = "1"  # this process and the notebook kernels it starts
    try:
        return COMMANDS[args.command](args)
    except FamekitError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"famekit: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("famekit: interrupted (a training run continues with famekit train --resume "
              "RUN_DIR)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
