"""famekit report --benchmarks and the benchmark figures, on small hand-made tables."""

import json
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from famekit import figures as F
from famekit import report
from famekit.cli import main as cli_main
from famekit.errors import DataFormatError, ParameterError
from famekit.evaluation import METRIC_NAMES
from famekit.report_page import recorded_results

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
METRICS = tuple(m for m in METRIC_NAMES if m != "MRR")  # the columns of results.csv


def _results(rows):
    """results.csv rows: (dataset, model, NDCG@10 mean, std or None, seeds)."""
    records = []
    for dataset, model, mean, std, seeds in rows:
        record = {"dataset": dataset, "model": model, "seeds": seeds}
        for m in METRICS:
            record[f"{m}_mean"], record[f"{m}_std"] = mean, std
        records.append(record)
    return pd.DataFrame(records)


ROWS = [("beauty", "popularity", 0.01, None, "-"), ("beauty", "sasrec", 0.048, 0.001, "0 1 2"),
        ("beauty", "fame", 0.052, 0.002, "0 1 2"), ("beauty", "recbole-sasrec", 0.041, None, "0"),
        ("beauty", "fame:gate=uniform", 0.047, None, "0"),
        ("toys", "sasrec", 0.05, None, "0"), ("toys", "fame", 0.051, None, "0")]


@pytest.fixture
def tables(tmp_path):
    folder = tmp_path / "reports" / "benchmarks"
    folder.mkdir(parents=True)
    _results(ROWS).to_csv(folder / "results.csv", index=False)
    pd.DataFrame([{"dataset": d, "model": m, "seed": s} for d, m, _, _, s in ROWS]).to_csv(
        folder / "runs.csv", index=False)
    history = [{"epoch": e, "valid_NDCG@10": 0.01 * e, "cumulative_seconds": 10.0 * e}
               for e in (1, 2, 3)]
    summary = {"systems": {name: {"epochs": 3, "epoch_seconds_mean": sec,
                                  "eval_seconds_mean": 1.0, "best_valid_NDCG@10": 0.03,
                                  "peak_rss_gib": None}
                           for name, sec in (("recbole-sasrec", 100.0), ("sasrec", 10.0),
                                             ("fame", 11.0))},
               "ratios": {"recbole_epoch / sasrec_epoch": 10.0},
               "time_to_recbole_best": {"recbole-sasrec": {"seconds": 300.0, "epoch": 3},
                                        "sasrec": {"seconds": 30.0, "epoch": 3},
                                        "fame": {"seconds": None, "epoch": None}},
               "recbole_best_valid_NDCG@10": 0.03,
               "time_to_common_target": {"recbole-sasrec": {"seconds": 200.0, "epoch": 2},
                                         "sasrec": {"seconds": 20.0, "epoch": 2},
                                         "fame": {"seconds": 22.0, "epoch": 2}},
               "common_target_valid_NDCG@10": 0.02}
    speed = {**summary, "converged": summary, "gemm_threads": 2,
             "converged_histories": {"recbole-sasrec": history, "sasrec": history}}
    (folder / "speed.json").write_text(json.dumps(speed))
    return folder


def test_benchmark_report_renders_the_tables(tables):
    out = tables.parent
    shutil.copy(NOTEBOOKS / "benchmarks.ipynb", out.parent / "benchmarks.ipynb")
    result = report.generate_benchmark_report(out=out, notebooks_dir=out.parent, progress=False)
    assert result.ok, [n.error for n in result.notebooks]
    nb = nbformat.read(tables / "benchmarks.ipynb", as_version=4)
    recorded = recorded_results(nb)
    assert recorded["fame_over_sasrec"] == {"beauty": pytest.approx(0.052 / 0.048, abs=1e-3),
                                            "toys": pytest.approx(1.02, abs=1e-3)}
    assert recorded["datasets_fame_reaches_target"] == 1  # beauty 1.083 >= 1.05, toys 1.02 not
    assert recorded["ablations"] == {"beauty fame:gate=uniform": 0.047}
    plots = sum(PLOTLY in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                for o in c.outputs)
    assert plots == 6  # accuracy, two ratios, ablations, speed bars, time-to-quality
    html = (tables / "benchmarks.html").read_text()
    assert "../assets/plotly.min.js" in html
    index = (out / "index.html").read_text()
    assert "benchmarks/benchmarks.html" in index
    status = json.loads((tables / "report.json").read_text())
    assert status["parameters"] == {"RESULTS_DIR": str(tables)}  # not the default folder


PLOTLY = "application/vnd.plotly.v1+json"


def test_benchmark_report_without_tables_is_a_clear_error(tmp_path):
    with pytest.raises(ParameterError, match=r"results\.csv does not exist.*reproduce\.py"):
        report.generate_benchmark_report(out=tmp_path, progress=False)
    assert cli_main(["report", "--benchmarks", "--out", str(tmp_path), "--no-progress"]) == 2


def test_benchmark_figures(tables):
    results, speed = F.read_benchmarks(tables)
    bars = F.results_bar(results, models=["sasrec", "fame"])
    assert [t.name for t in bars.data] == ["SASRec", "FAME"]
    assert list(bars.data[1].y) == [0.052, 0.051]
    assert list(bars.data[0].error_y.array) == [0.001, 0.0]  # one seed: no whisker
    ratio = F.ratio_bar(results)
    assert list(ratio.data[0].y) == pytest.approx([0.052 / 0.048, 0.051 / 0.05])
    assert F.model_label("fame:n_heads=2,gate=uniform") == "FAME n_heads=2 gate=uniform"
    speed_fig = F.speed_bars(speed)
    assert list(speed_fig.data[1].text) == ["300", "30", "not reached"]
    assert list(speed_fig.data[2].y) == [200.0, 20.0, 22.0]  # the common target
    curves = F.time_to_quality_curves(speed["converged_histories"], target=0.03)
    assert list(curves.data[0].x) == pytest.approx([10 / 60, 20 / 60, 30 / 60])
    with pytest.raises(ParameterError, match="model 'recbole-sasrec'"):
        F.ratio_bar(results[results["model"] != "recbole-sasrec"], denominator="recbole-sasrec")
    with pytest.raises(ParameterError, match="no rows left"):
        F.results_bar(results, datasets=["ml-20m"])
    with pytest.raises(ParameterError, match="speed.json"):
        F.speed_bars({"nothing": 1})
    (tables / "results.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises((DataFormatError, ParameterError)):
        F.read_benchmarks(tables)
