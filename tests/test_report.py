"""The report runner on small stand-in notebooks: outputs, failure handling, locking, HTML."""

import json
import os

import nbformat
import pytest

from famekit import report
from famekit.errors import ParameterError

pytestmark = pytest.mark.notebooks


def _notebook(path, body: str):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('DATASET = "x"\nRUN_DIR = None\nSEED = 0\nQUICK = False')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


FIGURE = (
    "import plotly.graph_objects as go, plotly.io as pio\n"
    "pio.renderers.default = 'plotly_mimetype'\n"
    "print('dataset', DATASET, 'seed', SEED)\n"
    "go.Figure(go.Bar(x=[1, 2], y=[3, 4]))"
)


@pytest.fixture
def fake_runs(monkeypatch, tmp_path):
    """Skip training: the runner gets fixed run directories."""
    from famekit import workspace

    made = {}

    def ensure_run(dataset, kind="fame", seed=0, quick=False, progress=True):
        path = tmp_path / "runs" / f"{dataset}-{kind}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(
            {"summary": {"best_epoch": 3, "test": {"HR@10": 0.5, "NDCG@10": 0.25}}}))
        made[kind] = path
        return path

    monkeypatch.setattr(workspace, "ensure_run", ensure_run)
    return made


def test_reports_notebooks_html_and_index(tmp_path, fake_runs):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_first.ipynb", FIGURE)
    _notebook(nbs / "01_second.ipynb", "print(DATASET)")
    out = tmp_path / "reports"
    result = report.generate_reports("synthetic", out=out, notebooks_dir=nbs, progress=False)
    assert result.ok and [n.name for n in result.notebooks] == ["00_first", "01_second"]
    executed = nbformat.read(out / "synthetic" / "00_first.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'DATASET = "synthetic"' in injected[0].source
    assert "dataset synthetic seed 0" in executed.cells[-1].outputs[0]["text"]
    page = (out / "synthetic" / "00_first.html").read_text()
    assert 'src="../assets/plotly.min.js"' in page and "Plotly.newPlot" in page
    assert "cdn.plot.ly" not in page and "cdn.jsdelivr" not in page
    assert 'src="http' not in page, "nothing is loaded from the network"
    assert (out / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    styles = list((out / "assets").glob("notebook-*.css"))
    assert len(styles) == 1 and styles[0].stat().st_size > 10_000  # one theme for all reports
    assert f'href="../assets/{styles[0].name}"' in page and "<style type" not in page
    second = (out / "synthetic" / "01_second.html").read_text()
    assert f'href="../assets/{styles[0].name}"' in second
    index = (out / "index.html").read_text()
    assert "synthetic/00_first.html" in index and "0.2500" in index  # NDCG@10 of the run
    status = json.loads((out / "synthetic" / "report.json").read_text())
    assert [n["status"] for n in status["notebooks"]] == ["ok", "ok"]


def test_a_failing_notebook_keeps_the_previous_report_and_the_others(tmp_path, fake_runs):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_good.ipynb", "print('fine')")
    _notebook(nbs / "01_flaky.ipynb", "print('first version')")
    out = tmp_path / "reports"
    assert report.generate_reports("synthetic", out=out, notebooks_dir=nbs, progress=False).ok
    good_before = (out / "synthetic" / "01_flaky.html").read_text()
    _notebook(nbs / "01_flaky.ipynb", "raise RuntimeError('boom in cell')")
    _notebook(nbs / "02_after.ipynb", "print('still runs')")
    result = report.generate_reports("synthetic", out=out, notebooks_dir=nbs, progress=False)
    assert not result.ok
    assert [n.status for n in result.notebooks] == ["ok", "failed", "ok"]
    assert "boom in cell" in result.notebooks[1].error
    assert (out / "synthetic" / "01_flaky.html").read_text() == good_before
    assert (out / "synthetic" / "01_flaky.failed.ipynb").exists()
    assert (out / "synthetic" / "02_after.html").exists()
    index = (out / "index.html").read_text()
    assert "failed" in index and "boom in cell" in index
    leftovers = [p.name for p in (out / "synthetic").iterdir()
                 if "tmp" in p.name or "running" in p.name]
    assert not leftovers


def test_a_partial_run_keeps_the_other_notebooks_in_the_index(tmp_path, fake_runs):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_a.ipynb", "print('a')")
    _notebook(nbs / "01_b.ipynb", "print('b')")
    _notebook(nbs / "02_c.ipynb", "print('c')")
    out = tmp_path / "reports"
    report.generate_reports("synthetic", out=out, notebooks_dir=nbs, progress=False)
    whole = (out / "synthetic" / "01_b.html").read_text()
    report.generate_reports("synthetic", out=out, notebooks_dir=nbs, progress=False, only=["01"])
    status = json.loads((out / "synthetic" / "report.json").read_text())
    assert [n["name"] for n in status["notebooks"]] == ["00_a", "01_b", "02_c"]
    assert "00_a.html" in (out / "index.html").read_text()
    again = (out / "synthetic" / "01_b.html").read_text()  # re-run alone: same neighbours
    assert 'href="00_a.html"' in again and 'href="02_c.html"' in again and again == whole


def test_a_second_report_into_the_same_folder_is_refused(tmp_path, fake_runs):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_a.ipynb", "print(1)")
    out = tmp_path / "reports"
    with report._lock(out / "synthetic"):
        with pytest.raises(report.ReportBusyError, match="another famekit report"):
            report.generate_reports("synthetic", out=out, notebooks_dir=nbs, progress=False)


def test_bad_arguments(tmp_path, fake_runs):
    with pytest.raises(ParameterError, match="unknown dataset"):
        report.generate_reports("nope", out=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ParameterError, match="no notebooks"):
        report.generate_reports("synthetic", out=tmp_path / "r", notebooks_dir=empty)
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ParameterError, match="cannot write"):
            report.generate_reports("synthetic", out=locked / "r", notebooks_dir=empty)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ParameterError, match="cannot write"):
        report.generate_reports("synthetic", out=blocker / "r")
