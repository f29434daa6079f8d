"""`famekit report --check`: prove that a committed report is what the current code produces.

Trained numbers are bit-identical only on one machine with one thread count and one set of CPU
kernels; another CPU changes the 7th digit of a loss, and a retrained model can then stop at
another epoch. So a committed report is checked in two parts, each blind to float noise and
sensitive to real changes:

1. **Re-execution over the same weights.** A report carries the runs it was made from
   (``<report>/runs/``: weights + JSON, see :func:`famekit.report.bundle_runs`). The check
   copies them into a scratch folder, executes every notebook again exactly as ``famekit report``
   did (same parameters), and compares the result with the committed notebook cell by cell: the
   code must be the same (else the report is stale), every text output must hold the same words,
   and every number must agree within :class:`Tolerances` (``rel`` of its size, or one unit of
   its last printed digit); figures must have the same traces and titles. The dataset is rebuilt
   and its fingerprint checked against the one the runs recorded, so a changed dataset is caught
   before any number is compared.
2. **Retraining from scratch.** The report's runs are trained again (same recipe and seed) in
   another scratch folder, and each run's test NDCG@10 and best epoch must lie within a band of
   the bundled run's: training still learns what it learnt, wherever it runs.

The tolerances and the measurements behind them are in ``docs/decisions.md``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from famekit.errors import FamekitError, ParameterError

__all__ = ["CheckResult", "Difference", "Tolerances", "check_report", "compare_notebooks",
           "compare_text"]


@dataclass(frozen=True)
class Tolerances:
    """How far a re-executed or retrained report may be from the committed one."""

    # Re-execution over the same weights: float32 sums over up to ~10^5 terms, done by another
    # kernel (AVX2 vs AVX-512, 1 vs 2 threads), move a result by ~1e-6 of its size; 1e-4 is 100x
    # that, and still 100x smaller than any change a behaviour change made (docs/decisions.md).
    rel: float = 1e-4
    # A printed number may round the other way: its last digit may differ by one unit.
    last_digit_units: float = 1.0
    # Retraining from scratch: test NDCG@10 within this many absolute points of the bundled run.
    retrain_ndcg_abs: float = 0.01
    # ... and the best epoch within this many epochs.
    retrain_epochs: int = 5


@dataclass
class Difference:
    """One way the re-executed report differs from the committed one."""

    notebook: str
    where: str  # e.g. "cell 12, line 3" or "retrain fame"
    expected: str
    actual: str
    why: str

    def __str__(self) -> str:
        return (f"{self.notebook} {self.where}: {self.why}\n    committed: {self.expected}\n"
                f"    now:       {self.actual}")


@dataclass
class CheckResult:
    """What :func:`check_report` compared and what differed."""

    folder: Path
    compared: dict = field(default_factory=dict)  # notebook -> numbers compared
    # notebook -> (numbers that differed within tolerance, largest deviation / allowed)
    wiggles: dict = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    retrained: dict = field(default_factory=dict)  # kind -> {committed, now}
    not_retrained: dict = field(default_factory=dict)  # kind -> why it was not retrained
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences


# ------------------------------------------------------------------------------- text
# Outputs that differ from run to run by nature, replaced before comparing.
_SANITIZERS = [
    (re.compile(r"\d+%\|[^|\n]*\|[^\n]*"), "TQDM"),  # progress bars
    (re.compile(r"0x[0-9a-fA-F]{6,16}"), "0xADDRESS"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)?"),
     "TIMESTAMP"),
    (re.compile(r"\d+\.\d+ ?s\b"), "N.N s"),  # durations
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "UUID"),
    (re.compile(r"model_id='?[0-9a-f]{32}'?"), "model_id=MODEL_ID"),
]
# A number: optional sign (not the hyphen inside a word), digits, decimals, exponent.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|(?<=\w)\d+(?:\.\d+)?")
_SPACE = re.compile(r"\s+")


def sanitize(text: str) -> str:
    for pattern, replacement in _SANITIZERS:
        text = pattern.sub(replacement, text)
    return text


def _last_digit_unit(token: str) -> float:
    """The value of one unit in the last printed digit: 0.0923 -> 1e-4, 2.6e-05 -> 1e-6."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _is_integer(token: str) -> bool:
    return re.fullmatch(r"-?\d+", token) is not None


def deviation(expected: str, actual: str, tol: Tolerances) -> float:
    """How far apart two printed numbers are, as a fraction of what ``tol`` allows (0 = equal;
    above 1 = a real difference). Integers (counts, ids, epochs) allow nothing; decimals allow
    ``tol.rel`` of their size or ``tol.last_digit_units`` units of the coarser last digit."""
    if _is_integer(expected) and _is_integer(actual):
        return 0.0 if int(expected) == int(actual) else math.inf
    a, b = float(expected), float(actual)
    if not (math.isfinite(a) and math.isfinite(b)):
        return 0.0 if expected == actual else math.inf
    unit = max(_last_digit_unit(expected), _last_digit_unit(actual))
    # the 1e-9 absorbs the binary representation of the decimal unit itself
    allowed = max(tol.rel * max(abs(a), abs(b)), tol.last_digit_units * unit * (1 + 1e-9))
    return abs(a - b) / allowed


def numbers_agree(expected: str, actual: str, tol: Tolerances) -> bool:
    """Whether two printed numbers are the same result up to float noise (see
    :func:`deviation`)."""
    return deviation(expected, actual, tol) <= 1.0


def compare_text(expected: str, actual: str, tol: Tolerances, notebook: str = "",
                 where: str = "", seen: list | None = None) -> tuple[int, list[Difference]]:
    """Compare two text outputs line by line: words exactly (white space folded, since a wider
    number re-aligns a table), numbers with ``tol``. Returns (numbers compared, differences);
    ``seen`` collects the :func:`deviation` of every pair of unequal numbers that agreed."""
    expected_lines = sanitize(expected).rstrip("\n").split("\n")
    actual_lines = sanitize(actual).rstrip("\n").split("\n")
    if len(expected_lines) != len(actual_lines):
        return 0, [Difference(notebook, where, f"{len(expected_lines)} lines",
                              f"{len(actual_lines)} lines", "the output has another length")]
    compared, differences = 0, []
    for n, (old, new) in enumerate(zip(expected_lines, actual_lines), start=1):
        here = f"{where}, line {n}" if where else f"line {n}"
        old_words = [_SPACE.sub(" ", w).strip() for w in _NUMBER.split(old)]
        new_words = [_SPACE.sub(" ", w).strip() for w in _NUMBER.split(new)]
        old_numbers, new_numbers = _NUMBER.findall(old), _NUMBER.findall(new)
        if old_words != new_words or len(old_numbers) != len(new_numbers):
            differences.append(Difference(notebook, here, old.strip(), new.strip(),
                                          "the words differ"))
            continue
        for a, b in zip(old_numbers, new_numbers):
            compared += 1
            off = deviation(a, b, tol)
            if seen is not None and 0 < off <= 1:
                seen.append(off)
            if off > 1:
                kind = "integers must be equal" if _is_integer(a) else (
                    f"{a} vs {b} is beyond rel {tol.rel:g} and {tol.last_digit_units:g} unit(s) "
                    "of the last digit")
                differences.append(Difference(notebook, here, old.strip(), new.strip(), kind))
                break
    return compared, differences


# ------------------------------------------------------------------------------- notebooks
_TEXT_SKIPPED_WITH = ("application/vnd.jupyter.widget-view+json",)  # a widget's repr
_PLOTLY = "application/vnd.plotly.v1+json"


def _cell_texts(cell) -> list[tuple[str, object]]:
    """A code cell's comparable outputs, in order: ("text", str), ("figure", dict),
    ("error", str). stdout streams are joined (their chunking varies); stderr (warnings,
    progress bars) is not compared."""
    items: list[tuple[str, object]] = []
    stdout = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            if output.get("name") == "stdout":
                stdout.append(output.get("text", ""))
            continue
        if stdout:
            items.append(("text", "".join(stdout)))
            stdout = []
        if kind == "error":
            items.append(("error", f"{output.get('ename')}: {output.get('evalue')}"))
            continue
        data = output.get("data", {})
        if _PLOTLY in data:
            items.append(("figure", data[_PLOTLY]))
        elif "text/plain" in data and not any(m in data for m in _TEXT_SKIPPED_WITH):
            items.append(("text", data["text/plain"]))
    if stdout:
        items.append(("text", "".join(stdout)))
    return items


def _figure_outline(figure: dict) -> list[str]:
    """What a figure must keep whatever the floats: its traces (type, name) and its titles.

    Coordinates are not compared: UMAP layouts are computed by code compiled for the CPU and
    move from machine to machine; the numbers behind the other figures are compared as text.
    """
    layout = figure.get("layout", {}) or {}

    def title(obj) -> str:
        value = (obj or {}).get("title")
        return value.get("text", "") if isinstance(value, dict) else str(value or "")

    lines = [f"title: {title(layout)}"]
    for key in sorted(k for k in layout if re.fullmatch(r"[xy]axis\d*", k)):
        lines.append(f"{key}: {title(layout[key])}")
    for trace in figure.get("data", []) or []:
        lines.append(f"trace {trace.get('type', 'scatter')}: {trace.get('name', '')}")
    return lines


def compare_notebooks(committed, fresh, name: str, tol: Tolerances,
                      seen: list | None = None) -> tuple[int, list]:
    """Compare a committed report notebook with a fresh execution of the same notebook."""
    old_cells = [c for c in committed.cells if c.cell_type == "code"]
    new_cells = [c for c in fresh.cells if c.cell_type == "code"]
    if len(old_cells) != len(new_cells):
        return 0, [Difference(name, "cells", f"{len(old_cells)} code cells",
                              f"{len(new_cells)} code cells",
                              "the notebook changed since the report was made: run make report")]
    compared, differences = 0, []
    for index, (old, new) in enumerate(zip(old_cells, new_cells)):
        where = f"code cell {index}"
        injected = "injected-parameters" in old.get("metadata", {}).get("tags", [])
        if not injected and old.source != new.source:
            differences.append(Difference(
                name, where, old.source.splitlines()[0] if old.source else "",
                new.source.splitlines()[0] if new.source else "",
                "the code changed since the report was made: run make report"))
            continue
        old_items, new_items = _cell_texts(old), _cell_texts(new)
        if [k for k, _ in old_items] != [k for k, _ in new_items]:
            differences.append(Difference(
                name, where, str([k for k, _ in old_items]), str([k for k, _ in new_items]),
                "the cell shows other kinds of output" + next(
                    (f" ({v})" for k, v in new_items if k == "error"), "")))
            continue
        for (kind, a), (_, b) in zip(old_items, new_items):
            if kind == "figure":
                a, b = "\n".join(_figure_outline(a)), "\n".join(_figure_outline(b))
            elif kind == "error":
                differences.append(Difference(name, where, a, b, "the cell raised"))
                continue
            n, found = compare_text(a, b, tol, name, where, seen)
            compared += n
            differences += found
    return compared, differences


# ------------------------------------------------------------------------------- the check
@contextlib.contextmanager
def _environment(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _bundled_runs(folder: Path, status: dict) -> dict[str, Path]:
    """kind -> bundled run directory, as recorded in report.json's metrics."""
    from famekit.report import RUNS_FOLDER
    from famekit.runs import RunDir

    runs = {}
    for kind, metrics in (status.get("metrics") or {}).items():
        name = Path(str((metrics or {}).get("run_dir", ""))).name
        path = folder / RUNS_FOLDER / name
        if not name or not RunDir(path).has_weights():
            raise ParameterError(
                f"{folder} does not carry the {kind} run it was made from ({path} is missing), "
                "so it cannot be re-executed over the same weights. Fix: regenerate it with "
                "`make report` (famekit report bundles its runs in <report>/runs/)")
        runs[kind] = path
    if "fame" not in runs:
        raise ParameterError(f"{folder}/report.json names no FAME run. Fix: regenerate it")
    return runs


def _dataset_changes(runs: dict) -> list[Difference]:
    """A difference per bundled run whose dataset this code no longer builds identically (a
    changed default of a world, a changed loader): every notebook would fail on it."""
    from famekit import datasets
    from famekit.runs import RunDir

    found = []
    for kind, run_dir in runs.items():
        try:
            described = RunDir(run_dir).dataset_description()
        except FamekitError:
            continue  # the notebooks' own loading reports an unreadable run
        if not isinstance(described, dict) or not described.get("name") or \
                described.get("sequences") or described.get("in_memory"):
            continue  # users' files are not rebuilt here; the notebooks check them
        data = datasets.load(described.get("name"), **(described.get("options") or {}))
        if data.fingerprint != described.get("fingerprint"):
            found.append(Difference(
                "dataset", f"{kind} run {run_dir.name}",
                f"{described.get('name')} fingerprint {described.get('fingerprint')}",
                f"{data.name} fingerprint {data.fingerprint}",
                "this code builds another dataset than the report's runs were trained on (a "
                "changed default or loader?); if intended, run make report"))
    return found


def check_report(folder, notebooks_dir=None, retrain: bool = True, tol: Tolerances | None = None,
                 timeout: int = 900, progress: bool = True) -> CheckResult:
    """Re-execute the report in ``folder`` over its bundled runs and compare (see the module
    docstring); with ``retrain``, also retrain its runs from scratch and compare their metrics.
    """
    import nbformat
    from tqdm.auto import tqdm

    from famekit.report import (
        _check_timeout,
        _declared_parameters,
        _execute,
        default_notebooks_dir,
        find_notebooks,
        read_status,
    )
    from famekit.runs import default_run_dir

    tol = tol or Tolerances()
    timeout = _check_timeout(timeout)
    folder = Path(folder)
    status = read_status(folder)
    parameters = dict(status["parameters"])
    dataset, seed = parameters.get("DATASET"), int(parameters.get("SEED") or 0)
    quick = bool(parameters.get("QUICK"))
    runs = _bundled_runs(folder, status)
    sources = Path(notebooks_dir or default_notebooks_dir())
    started = time.perf_counter()
    result = CheckResult(folder)
    with tempfile.TemporaryDirectory(prefix="famekit-check-") as scratch:
        scratch = Path(scratch)
        runs_root = scratch / "runs"
        for path in runs.values():  # a copy: executing a report must not touch the committed
            shutil.copytree(path, runs_root / path.name)
        if parameters.get("RUN_DIR") is not None:
            parameters["RUN_DIR"] = str(runs_root / runs["fame"].name)
        entries = [e for e in status.get("notebooks", []) if e.get("status") == "ok"]
        reported = {e.get("name") for e in entries}
        for src in find_notebooks(sources):
            if src.stem not in reported:
                result.differences.append(Difference(
                    src.stem, "notebook", "not in the report", f"{src}",
                    "a notebook has no (successful) page in the report: run make report"))
        changed = _dataset_changes(runs)
        if changed:  # every notebook would fail on the fingerprint: say it once
            result.differences += changed
            entries = []
        with _environment(FAMEKIT_RUNS=runs_root):
            for kind in runs:
                if parameters.get("RUN_DIR") is None and (
                        default_run_dir(dataset, kind, seed, quick).name != runs[kind].name):
                    raise ParameterError(f"the bundled {kind} run {runs[kind].name} is not the "
                                         f"default run of {dataset}. Fix: regenerate the report")
            for entry in tqdm(entries, desc=f"check {folder.name}", unit="notebook",
                              disable=not progress):
                name = entry["name"]
                src = sources / f"{name}.ipynb"
                if not src.is_file():
                    result.differences.append(Difference(
                        name, "notebook", str(src), "missing", "the source notebook is gone"))
                    continue
                committed = nbformat.read(folder / f"{name}.ipynb", as_version=4)
                declared = _declared_parameters(src)
                given = {k: v for k, v in parameters.items() if k in declared}
                fresh_path = scratch / f"{name}.ipynb"
                try:
                    fresh = _execute(src, fresh_path, given, src.parent, timeout)
                except Exception as exc:  # papermill raises on a cell error or a timeout
                    from famekit.report import _error_of

                    result.differences.append(Difference(
                        name, "execution", "ran without error", _error_of(exc),
                        "the notebook failed"))
                    continue
                seen: list[float] = []
                n, found = compare_notebooks(committed, fresh, name, tol, seen)
                result.compared[name] = n
                result.wiggles[name] = (len(seen), max(seen, default=0.0))
                result.differences += found
        if retrain:
            # a report on a given run (--run) retrains only its default baseline: famekit
            # cannot know how the given run was trained
            defaults = runs if parameters.get("RUN_DIR") is None else {
                k: v for k, v in runs.items() if k != "fame"}
            result.not_retrained = {k: NOT_RETRAINED[k] for k in defaults if k in NOT_RETRAINED}
            defaults = {k: v for k, v in defaults.items() if k not in result.not_retrained}
            _retrain_and_compare(defaults, dataset, seed, quick, scratch / "retrained", tol,
                                 progress, result)
    result.seconds = time.perf_counter() - started
    return result


# Bundled runs that the check re-executes over but does not retrain, and why: each retrain
# costs a minute or more of the 15-minute suite (docs/decisions.md, "What the check retrains").
NOT_RETRAINED = {
    "sasrec-meta": "its code paths are retrained with sasrec (the model) and fameplus (the "
                   "facet objective); its bundled weights are still re-executed",
}


def _summary_of(run_dir: Path) -> dict:
    from famekit.runs import RunDir

    summary = RunDir(run_dir).summary()
    return {"NDCG@10": (summary.get("test") or {}).get("NDCG@10"),
            "best_epoch": summary.get("best_epoch")}


def _retrain_and_compare(runs: dict, dataset: str, seed: int, quick: bool, root: Path,
                         tol: Tolerances, progress: bool, result: CheckResult) -> None:
    from famekit import workspace

    with _environment(FAMEKIT_RUNS=root):
        for kind, bundled in runs.items():
            fresh_dir = workspace.ensure_run(dataset, kind, seed, quick, progress)
            old, new = _summary_of(bundled), _summary_of(fresh_dir)
            result.retrained[kind] = {"committed": old, "now": new}
            where = f"retrained {kind}"
            if abs(new["NDCG@10"] - old["NDCG@10"]) > tol.retrain_ndcg_abs:
                result.differences.append(Difference(
                    "training", where, f"test NDCG@10 {old['NDCG@10']:.4f}",
                    f"test NDCG@10 {new['NDCG@10']:.4f}",
                    f"beyond ±{tol.retrain_ndcg_abs} of the bundled run"))
            if abs(new["best_epoch"] - old["best_epoch"]) > tol.retrain_epochs:
                result.differences.append(Difference(
                    "training", where, f"best epoch {old['best_epoch']}",
                    f"best epoch {new['best_epoch']}",
                    f"beyond ±{tol.retrain_epochs} epochs of the bundled run"))
