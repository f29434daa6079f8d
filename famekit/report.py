"""`famekit report`: execute every notebook with papermill and publish the results.

For a dataset, the runner

1. makes sure the runs exist (FAME, and SASRec for the overview: :mod:`famekit.workspace`
   trains them once and caches them);
2. executes each ``notebooks/NN_*.ipynb`` with papermill, injecting ``DATASET``, ``RUN_DIR``,
   ``SEED`` and ``QUICK``;
3. writes ``reports/<dataset>/<notebook>.ipynb`` and ``<notebook>.html`` next to it, and
   ``reports/index.html``, a landing page linking every report with its status, the run's
   metrics and the generation time.

Guarantees:

* **Nothing good is lost.** Every file is written to a temporary name and renamed into place,
  and only after its notebook ran without error; a failing notebook is recorded as failed in the
  index (with the error), its partial output kept as ``<notebook>.failed.ipynb``, and the
  previous good report stays. The command then exits non-zero, after running the others.
* **One writer at a time.** A lock file per dataset folder: a second ``famekit report`` into the
  same folder is refused with a clear message while the first runs.
* **Offline HTML, sensible size.** Figures are stored in the notebooks as plotly JSON
  (``application/vnd.plotly.v1+json``, small); the HTML gets a ``div`` per figure rendered by one
  shared copy of plotly.js (``reports/assets/plotly.min.js``, from the installed plotly package),
  referenced relatively: the reports render without network, and 14 reports cost one plotly.js,
  not fourteen; nbconvert's page theme is shared the same way (``assets/notebook-<hash>.css``).
  Widget state that papermill stores in the notebook metadata is dropped (saved widgets
  cannot run Python; each explorer shows a static view instead).
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from famekit.errors import FamekitError, ParameterError
from famekit.fileio import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    exclusive_lock,
    read_json,
)
from famekit.report_page import Neighbours, notebook_to_html, script_json
from famekit.validation import check_int, is_whole_number

__all__ = [
    "NotebookResult",
    "ReportBusyError",
    "ReportResult",
    "bundle_runs",
    "default_notebooks_dir",
    "find_notebooks",
    "generate_benchmark_report",
    "generate_reports",
    "notebook_to_html",
    "read_status",
    "script_json",
    "write_index",
]

ASSETS = "assets"
RUNS_FOLDER = "runs"  # <report>/runs/<run name>/: the weights the report was made from
PLOTLY_JS = "plotly.min.js"
STATUS_FILE = "report.json"


class ReportBusyError(FamekitError):
    """Another ``famekit report`` is writing into the same folder."""


@dataclass
class NotebookResult:
    name: str
    status: str  # "ok" or "failed"
    seconds: float
    ipynb: str | None = None  # path relative to the reports root
    html: str | None = None
    error: str | None = None


@dataclass
class ReportResult:
    dataset: str
    out: Path
    notebooks: list[NotebookResult] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(n.status == "ok" for n in self.notebooks)


def default_notebooks_dir() -> Path:
    """``notebooks/`` of the source checkout famekit runs from, else of the current directory."""
    here = Path(__file__).resolve().parents[1] / "notebooks"
    return here if here.is_dir() else Path("notebooks").absolute()


def find_notebooks(notebooks_dir) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) of a folder, in order."""
    folder = Path(notebooks_dir)
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise ParameterError(
            f"no notebooks named NN_*.ipynb in {folder}. Fix: pass --notebooks pointing at "
            "famekit's notebooks/ folder"
        )
    for path in found:  # all readable before any is run: no traceback half-way through
        _read_notebook(path)
    return found


def _read_notebook(path: Path):
    """The notebook in ``path``, or a ParameterError naming it (not JSON, not a notebook)."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ParameterError(
            f"{path} is not a readable Jupyter notebook ({reason}). Fix: repair or remove it, "
            "or pass --notebooks a folder of famekit's notebooks"
        ) from None


# ------------------------------------------------------------------------------- HTML
_HEAD_STYLE = re.compile(r"<style[^>]*>.*?</style>\s*", re.DOTALL)


def share_head_styles(page: str, out: Path, href_prefix: str) -> str:
    """Move the page's ``<head>`` styles (nbconvert's ~300 kB lab theme, the same for every
    report) into one ``assets/notebook-<hash>.css`` under ``out`` and link it instead."""
    head_end = page.find("</head>")
    if head_end < 0:
        return page
    head, rest = page[:head_end], page[head_end:]
    styles = _HEAD_STYLE.findall(head)
    if not styles:
        return page
    css = "\n".join(re.sub(r"^<style[^>]*>|</style>\s*$", "", block.strip()) for block in styles)
    name = f"notebook-{hashlib.sha256(css.encode()).hexdigest()[:12]}.css"
    target = out / ASSETS / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, css)
    head = _HEAD_STYLE.sub("", head)
    link = f'<link rel="stylesheet" href="{href_prefix}{ASSETS}/{name}">\n'
    return head + link + rest


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _strip_widget_state(nb) -> None:
    """Drop the live widgets' state (a saved page cannot run them) and give each widget view a
    fixed model id: the kernel draws a random one per run, which would change the page."""
    nb.metadata.pop("widgets", None)
    for c, cell in enumerate(nb.cells):
        for o, output in enumerate(cell.get("outputs", [])):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if isinstance(view, dict) and "model_id" in view:
                view["model_id"] = f"saved-widget-{c}-{o}"


# ------------------------------------------------------------------------------- the run
def _lock(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)

    def busy(holder: str) -> ReportBusyError:
        return ReportBusyError(
            f"another famekit report ({holder}) is writing {folder}. Fix: wait for it to "
            "finish, or write elsewhere with --out"
        )

    return exclusive_lock(folder / ".lock", busy, error=ParameterError)


def _check_timeout(timeout) -> int:
    # papermill reads 0 or a negative timeout as "no limit": a typo must not disable it
    return check_int("timeout", timeout, minimum=1,
                     fix="pass --timeout SECONDS, at least 1 (the default is 900)")


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")  # a fresh name: no link
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ParameterError(
            f"cannot write reports to {out} ({e.strerror}). Fix: pass --out to a writable folder"
        ) from None


def _install_plotly_js(out: Path) -> str:
    """Copy plotly.js into ``out/assets`` (once per version); return its path under ``out``."""
    import plotly

    source = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    target = out / ASSETS / PLOTLY_JS
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, source.read_bytes())
    return f"{ASSETS}/{PLOTLY_JS}"


def _run_metrics(run_dirs: dict) -> dict:
    """Test metrics of each run (its training summary), naming the run by its bundled copy
    (``runs/<name>``, relative to the report folder: no machine's path is recorded)."""
    from famekit.runs import RunDir

    metrics = {}
    for kind, run_dir in run_dirs.items():
        if run_dir is None:
            continue
        run = RunDir(run_dir)
        try:
            summary = run.summary()
        except FamekitError:  # a damaged run: its notebooks say so, the index just lacks it
            continue
        test = summary.get("test") or {}
        metrics[kind] = {"run_dir": f"{RUNS_FOLDER}/{run.name}",
                         "best_epoch": summary.get("best_epoch"),
                         **{k: v for k, v in test.items() if isinstance(v, (int, float))}}
    return metrics


def _execute(src: Path, dest: Path, parameters: dict, cwd: Path, timeout: int):
    """papermill writes ``dest`` as it goes, so a failed run leaves its partial notebook there.

    The kernel talks to papermill over IPC sockets (files in Jupyter's private runtime folder)
    rather than TCP on localhost: nothing else on the machine can connect to it, and ipykernel
    has no reason to print its "running over TCP without encryption" warning per notebook.
    """
    import papermill
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    nb = papermill.execute_notebook(
        str(src), str(dest), parameters=parameters, kernel_name="python3", progress_bar=False,
        cwd=str(cwd), execution_timeout=timeout, log_output=False, config=config,
    )
    _relative_papermill_paths(nb, src, dest)
    return nb


def _relative_papermill_paths(nb, src: Path, dest: Path) -> None:
    """papermill records absolute input/output paths; keep names only, so that a committed
    report carries no path of the machine that wrote it."""
    meta = nb.metadata.get("papermill")
    if meta is not None:
        meta["input_path"] = f"notebooks/{src.name}" if src.parent.name == "notebooks" \
            else src.name
        meta["output_path"] = dest.name.removeprefix(".").replace(".running", "")


def _declared_parameters(src: Path) -> set[str]:
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node

    _read_notebook(src)  # a clear error for a file that is no notebook
    nb = load_notebook_node(str(src))  # papermill's reading (every cell gets its tags list)
    if not nb.metadata.get("kernelspec"):  # famekit runs every notebook on python3 anyway
        nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                     "display_name": "Python 3"}
    return {p.name for p in _infer_parameters(nb)}


def _error_of(exc: BaseException) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    return f"{ename}: {evalue}".strip()[:2000]


def generate_reports(
    dataset: str = "synthetic",
    run_dir=None,
    out="reports",
    notebooks_dir=None,
    seed: int = 0,
    quick: bool = False,
    timeout: int = 900,
    progress: bool = True,
    only=None,
    parameters: dict | None = None,
) -> ReportResult:
    """Execute the notebooks for ``dataset`` and write ``out/<dataset>/`` + ``out/index.html``.

    ``run_dir``: a trained FAME run to report on (default: the dataset's default run, trained
    if missing). ``only``: names (or prefixes like ``"03"``) of notebooks to run.
    ``parameters``: extra notebook parameters (e.g. ``{"COLOR_FIELDS": ["top_category"]}``);
    a notebook ignores the ones it does not declare.
    """
    from famekit import datasets, workspace

    timeout = _check_timeout(timeout)
    if dataset not in datasets.names():
        raise ParameterError(
            f"unknown dataset {dataset!r}. Fix: use one of {', '.join(datasets.names())}"
        )
    out = Path(out).absolute()
    _check_writable(out)
    folder = out / dataset
    notebooks = every_notebook = find_notebooks(notebooks_dir or default_notebooks_dir())
    if only:
        notebooks = [p for p in notebooks if any(p.stem.startswith(o) for o in only)]
        if not notebooks:
            raise ParameterError(f"no notebook matches {list(only)}. Fix: use names like 03")
    started = time.perf_counter()
    result = ReportResult(dataset, out)
    with _lock(folder):
        # Runs first (training happens here, with its own progress bars, never in a cell).
        os.environ.setdefault("FAMEKIT_RUNS", str(workspace.runs_root()))
        # The default run is injected as RUN_DIR=None: the notebooks find it through
        # FAMEKIT_RUNS, so an executed report re-runs anywhere (nbval in CI retrains it there).
        injected_run = None
        if run_dir is None:
            run_dir = workspace.ensure_run(dataset, "fame", seed, quick, progress)
        else:
            run_dir = Path(run_dir).absolute()
            if not run_dir.is_dir():
                raise ParameterError(f"run directory {run_dir} does not exist. Fix: pass --run "
                                     "with a directory written by famekit train")
            injected_run = str(run_dir)
        # The baselines, and where famekit knows the dataset's facets, FAME+ and SASRec +
        # metadata (notebook 07 compares them; the report bundles every run it shows).
        kinds = ["sasrec"] + (["fameplus", "sasrec-meta"]
                              if dataset in workspace.FACETED_DATASETS else [])
        run_dirs = {"fame": run_dir, **{kind: workspace.ensure_run(dataset, kind, seed, quick,
                                                                   progress) for kind in kinds}}
        result.metrics = _run_metrics(run_dirs)
        plotly_src = "../" + _install_plotly_js(out)
        parameters = {**(parameters or {}), "DATASET": dataset, "RUN_DIR": injected_run,
                      "SEED": seed, "QUICK": quick}
        result.notebooks += _render_notebooks(notebooks, folder, out, parameters, plotly_src,
                                              dataset, timeout, progress, every_notebook)
        if result.ok and not only:  # a failed or partial report keeps the runs it was made from
            bundle_runs(list(run_dirs.values()), folder)
        result.seconds = time.perf_counter() - started
        _write_timings(folder, result)
        entries = [_entry(n) for n in result.notebooks]
        if only:  # a partial run keeps the other notebooks' previous entries
            fresh = {n.name for n in result.notebooks}
            entries = sorted(entries + [e for e in _previous_entries(folder)
                                        if e.get("name") not in fresh],
                             key=lambda e: e["name"])
        atomic_write_json(folder / STATUS_FILE, {
            "dataset": dataset,
            "parameters": parameters,
            "metrics": result.metrics,
            "notebooks": entries,
        })
    write_index(out)
    return result


# When and how fast a report was made: machine-specific, so kept beside the committed files in
# a git-ignored file (``make report`` on unchanged code leaves ``git status`` clean).
TIMINGS_FILE = ".timings.json"


def _entry(notebook: NotebookResult) -> dict:
    """A notebook's line in ``report.json``: everything but its duration."""
    return {k: v for k, v in asdict(notebook).items() if k != "seconds"}


def _write_timings(folder: Path, result: ReportResult) -> None:
    atomic_write_json(folder / TIMINGS_FILE, {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(result.seconds, 1),
        "notebooks": {n.name: round(n.seconds, 1) for n in result.notebooks},
    })


# Notebook metadata that papermill and the kernel stamp with times and versions; none of it is
# a result, and it would change every committed notebook on every run.
_VOLATILE_NOTEBOOK_KEYS = ("duration", "start_time", "end_time")


INJECTED_CELL_ID = "injected-parameters"


def _without_volatile_metadata(nb) -> None:
    for key in _VOLATILE_NOTEBOOK_KEYS:
        nb.metadata.get("papermill", {}).pop(key, None)
    nb.metadata.get("language_info", {}).pop("version", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for key in _VOLATILE_NOTEBOOK_KEYS:
            cell.metadata.get("papermill", {}).pop(key, None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = INJECTED_CELL_ID  # papermill draws a random id per execution


def bundle_runs(run_dirs, folder: Path) -> list[Path]:
    """Copy the runs a report is made from into ``folder/runs/<name>/`` (weights and JSON, no
    optimizer state), replacing older copies and removing runs of an earlier report.

    With them a committed report can be re-executed over the same weights on any machine
    (:func:`famekit.report_check.check_report`), where retraining would give other floats.
    """
    import shutil

    from famekit.runs import RunDir

    root = folder / RUNS_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    bundled = [RunDir(run_dir).copy_to(root / Path(run_dir).name).path for run_dir in run_dirs]
    keep = {p.name for p in bundled}
    for stale in root.iterdir():  # runs of an earlier report (another seed, another --run)
        if stale.is_dir() and stale.name not in keep and not stale.name.startswith("."):
            shutil.rmtree(stale)
    return bundled


def _render_notebooks(notebooks: list[Path], folder: Path, out: Path, parameters: dict,
                      plotly_src: str, title: str, timeout: int, progress: bool,
                      sequence: list[Path] | None = None) -> list[NotebookResult]:
    """Execute each notebook into ``folder`` (``.ipynb`` + ``.html``), atomically; a failure
    keeps the previous good files and leaves ``<name>.failed.ipynb``. ``sequence``: every
    page of the report in order (default ``notebooks``), for the previous / next links, so a
    page re-run alone (``--only``) keeps its neighbours."""
    import nbformat
    from tqdm.auto import tqdm

    results = []
    pages = [f"{src.stem}.html" for src in (sequence or notebooks)]
    for src in tqdm(notebooks, desc=f"report {title}", unit="notebook", disable=not progress):
        at = pages.index(f"{src.stem}.html")
        neighbours = Neighbours("../index.html", pages[at - 1] if at else None,
                                pages[at + 1] if at + 1 < len(pages) else None)
        t0 = time.perf_counter()
        name = src.stem
        # papermill writes its output in place as it runs: into a folder made fresh for it
        # (mkdtemp, mode 0700), never through a name that a link could already occupy.
        scratch = Path(tempfile.mkdtemp(dir=folder, prefix=f".{name}."))
        running = scratch / f".{name}.running.ipynb"
        declared = _declared_parameters(src)
        given = {k: v for k, v in parameters.items() if k in declared}
        try:
            nb = _execute(src, running, given, src.parent, timeout)
        except Exception as exc:  # papermill raises on any cell error or timeout
            if running.exists():
                os.replace(running, folder / f"{name}.failed.ipynb")
            shutil.rmtree(scratch, ignore_errors=True)
            results.append(NotebookResult(
                name, "failed", time.perf_counter() - t0,
                ipynb=_relative(folder / f"{name}.ipynb", out), error=_error_of(exc)))
            continue
        shutil.rmtree(scratch, ignore_errors=True)
        _strip_widget_state(nb)
        _without_volatile_metadata(nb)
        nb.metadata.setdefault("famekit", {}).update(parameters)
        html_text = share_head_styles(
            notebook_to_html(nb, plotly_src, f"{title} - {name}", neighbours), out, "../")
        atomic_write_text(folder / f"{name}.ipynb", nbformat.writes(nb))
        atomic_write_text(folder / f"{name}.html", html_text)
        (folder / f"{name}.failed.ipynb").unlink(missing_ok=True)
        results.append(NotebookResult(
            name, "ok", time.perf_counter() - t0,
            ipynb=_relative(folder / f"{name}.ipynb", out),
            html=_relative(folder / f"{name}.html", out)))
    return results


BENCHMARKS = "benchmarks"  # reports/benchmarks/: reproduce.py's tables + the notebook's page


def generate_benchmark_report(out="reports", notebooks_dir=None, timeout: int = 900,
                              progress: bool = True) -> ReportResult:
    """Render ``notebooks/benchmarks.ipynb`` over ``out/benchmarks/`` (the tables that
    ``benchmarks/reproduce.py`` and ``benchmarks/speed.py`` committed there) and add it to
    ``out/index.html``. Trains nothing: the benchmark runs take hours and are not re-run here.
    """
    timeout = _check_timeout(timeout)
    out = Path(out).absolute()
    _check_writable(out)
    folder = out / BENCHMARKS
    src = Path(notebooks_dir or default_notebooks_dir()) / f"{BENCHMARKS}.ipynb"
    if not src.is_file():
        raise ParameterError(f"{src} does not exist. Fix: pass --notebooks pointing at "
                             "famekit's notebooks/ folder")
    if not (folder / "results.csv").is_file():
        raise ParameterError(
            f"{folder / 'results.csv'} does not exist: there is nothing to plot. Fix: run "
            "benchmarks/reproduce.py --out " + str(folder) + " first (see "
            "reports/benchmarks/README.md)")
    started = time.perf_counter()
    result = ReportResult(BENCHMARKS, out)
    with _lock(folder):
        plotly_src = "../" + _install_plotly_js(out)
        # The notebook's default RESULTS_DIR is ../reports/benchmarks (from notebooks/): only a
        # different folder is injected, so the committed report holds no machine's paths.
        default = (src.parent.parent / "reports" / BENCHMARKS).resolve()
        parameters = {} if folder.resolve() == default else {"RESULTS_DIR": str(folder)}
        result.notebooks = _render_notebooks([src], folder, out, parameters, plotly_src,
                                             BENCHMARKS, timeout, progress)
        result.seconds = time.perf_counter() - started
        _write_timings(folder, result)
        atomic_write_json(folder / STATUS_FILE, {
            "dataset": BENCHMARKS,
            "parameters": parameters,
            "metrics": {},
            "notebooks": [_entry(n) for n in result.notebooks],
        })
    write_index(out)
    return result


def read_status(folder: Path) -> dict:
    """A report folder's ``report.json`` (dataset, parameters, run metrics, notebook entries);
    a missing or damaged one is a ParameterError naming it."""
    status = read_json(folder / STATUS_FILE, error=ParameterError,
                       fix="pass a folder written by famekit report (reports/<dataset>), or "
                           "regenerate it with famekit report")
    problem = _status_problem(status)
    if problem:
        raise ParameterError(f"{folder / STATUS_FILE} is not a famekit report status file "
                             f"({problem}). Fix: regenerate the report with famekit report")
    return status


def _status_problem(status: dict) -> str | None:
    """What is wrong with a report.json's shape (every reader may then index it freely)."""
    parameters = status.get("parameters")
    if not isinstance(parameters, dict):
        return "no 'parameters' object"
    for name, ok in (("DATASET", lambda v: isinstance(v, str)),
                     ("SEED", lambda v: v is None or (is_whole_number(v) and v >= 0)),
                     ("QUICK", lambda v: v is None or isinstance(v, bool)),
                     ("RUN_DIR", lambda v: v is None or isinstance(v, str))):
        if name in parameters and not ok(parameters[name]):
            return f"parameter {name}={parameters[name]!r}"
    notebooks = status.get("notebooks", [])
    if not isinstance(notebooks, list) or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) for e in notebooks):
        return "'notebooks' is not a list of named entries"
    metrics = status.get("metrics", {})
    if not isinstance(metrics, dict) or not all(isinstance(m, dict) for m in metrics.values()):
        return "'metrics' is not an object of objects"
    return None


def _previous_entries(folder: Path) -> list[dict]:
    try:
        return list(read_status(folder).get("notebooks", []))
    except (ParameterError, TypeError):  # no usable previous report: nothing to keep
        return []


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# ------------------------------------------------------------------------------- index
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:980px;color:#1f2933;padding:0 1rem}
h1{font-size:1.6rem} h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #d9e2ec}
table{border-collapse:collapse;margin:.5rem 0 1rem} td,th{padding:.3rem .7rem;text-align:left;
border-bottom:1px solid #e4e7eb} th{background:#f5f7fa}
.ok{color:#1b7f3b;font-weight:600}.failed{color:#b42318;font-weight:600}
.err{font-family:monospace;font-size:.8rem;color:#b42318;white-space:pre-wrap}
.muted{color:#7b8794;font-size:.85rem}
"""


def write_index(out) -> Path:
    """(Re)write ``out/index.html`` from every ``out/<dataset>/report.json``."""
    out = Path(out)
    sections = []
    for status_file in sorted(out.glob(f"*/{STATUS_FILE}")):
        try:
            status = read_status(status_file.parent)
        except ParameterError:  # a damaged folder is left out of the index, not fatal
            continue
        sections.append(_index_section(status))
    body = "\n".join(sections) or "<p>No reports yet: run <code>famekit report</code>.</p>"
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>famekit reports</title>"
        f"<style>{_STYLE}</style></head><body><h1>famekit reports</h1>"
        "<p class='muted'>Each notebook was executed by <code>famekit report</code> "
        "(papermill); HTML versions render offline.</p>"
        f"{body}</body></html>"
    )
    atomic_write_text(out / "index.html", page)
    _prune_page_styles(out)
    return out / "index.html"


def _prune_page_styles(out: Path) -> None:
    """Remove ``assets/notebook-<hash>.css`` files that no page links any more (the theme
    changed): they would otherwise pile up in the committed reports."""
    styles = list((out / ASSETS).glob("notebook-*.css"))
    if not styles:
        return
    pages = "".join(p.read_text(encoding="utf-8", errors="replace")
                    for p in out.glob("*/*.html"))
    for style in styles:
        if style.name not in pages:
            style.unlink(missing_ok=True)


def _text(value) -> str:
    """Any value read from a status file, as escaped HTML text."""
    return html.escape(str(value))


def _number(value, spec: str, missing: str = "-") -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(
        value, bool) else (missing if value is None else _text(value))


def _href(value) -> str | None:
    """A link from a status file: a relative path without a scheme (``javascript:``,
    ``http:``), escaped for an attribute; None for anything else."""
    if not isinstance(value, str) or not value or ":" in value or value[0] in "/\\" \
            or any(ord(c) < 32 or c.isspace() and c != " " for c in value):
        return None
    return html.escape(value)


def _index_section(status: dict) -> str:
    esc = _text
    rows = []
    notebooks = status.get("notebooks")
    for nb in notebooks if isinstance(notebooks, list) else []:
        if not isinstance(nb, dict):
            continue
        links = []
        ok = nb.get("status") == "ok"
        if ok and _href(nb.get("html")):
            links.append(f"<a href='{_href(nb['html'])}'>HTML</a>")
        if ok and _href(nb.get("ipynb")):
            links.append(f"<a href='{_href(nb['ipynb'])}'>notebook</a>")
        error = f"<div class='err'>{esc(nb['error'])}</div>" if nb.get("error") else ""
        rows.append(
            f"<tr><td>{esc(nb.get('name', '?'))}</td><td class='{esc(nb.get('status'))}'>"
            f"{esc(nb.get('status'))}{error}</td><td>{' · '.join(links)}</td>"
            "</tr>"
        )
    metric_rows = []
    names = ["HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR"]
    metrics = status.get("metrics")
    for kind, m in (metrics.items() if isinstance(metrics, dict) else ()):
        if not isinstance(m, dict):
            continue
        cells = "".join(f"<td>{_number(m.get(n), '.4f')}</td>" for n in names)
        metric_rows.append(f"<tr><td>{esc(kind)}</td>{cells}<td>{esc(m.get('best_epoch'))}</td>"
                           "</tr>")
    header = "".join(f"<th>{n}</th>" for n in names)
    return (
        f"<h2>{esc(status.get('dataset', '?'))}</h2>"
        "<table><tr><th>notebook</th><th>status</th><th>open</th></tr>"
        f"{''.join(rows)}</table>"
        + ("<table><tr><th>test metrics</th>" + header + "<th>best epoch</th></tr>"
           f"{''.join(metric_rows)}</table>" if metric_rows else "")
    )
