"""The famekit command line: train / evaluate / data info / report, and its error contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from famekit.cli import build_parser, main

TINY_FLAGS = ["--d-model", "16", "--heads", "2", "--experts", "2", "--max-len", "10",
              "--batch-size", "16", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def sequence_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "shop.txt"
    rng = np.random.default_rng(0)
    lines = [f"{u} " + " ".join(map(str, rng.integers(1, 40, size=rng.integers(3, 12))))
             for u in range(1, 81)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def finished_run(sequence_file, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "shop-fame"
    assert main(["train", "--sequences", str(sequence_file), "--epochs", "2",
                 "--out", str(run_dir), *TINY_FLAGS]) == 0
    return run_dir


def famekit(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, as a user would."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "famekit.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env, check=False)


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("famekit: error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# ---------------------------------------------------------------------------------- train
def test_train_writes_the_run_and_prints_test_metrics(finished_run, capsys):
    args = json.loads((finished_run / "train_args.json").read_text())
    assert args["kind"] == "fame" and args["epochs"] == 2 and args["batch_size"] == 16
    assert args["model_options"] == {"d_model": 16, "n_heads": 2, "n_experts": 2}
    assert args["dataset"]["name"] == "shop"
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["status"] == "finished" and len(metrics["history"]) == 2


def test_train_resume_extends_a_run_from_the_command_line(finished_run, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    assert main(["train", "--resume", str(run_dir), "--epochs", "3", "--no-progress",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"run: {run_dir}" in out and "3 epochs" in out and "NDCG@10" in out
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    original = json.loads((finished_run / "metrics.json").read_text())["history"]
    assert history[:2] == [{**row, "seconds": history[i]["seconds"],
                            "train_seconds": history[i]["train_seconds"]}
                           for i, row in enumerate(original)]


def test_train_on_a_named_dataset_with_options(tmp_path, capsys):
    run_dir = tmp_path / "syn"
    assert main(["train", "--dataset", "synthetic", "--data-option", "n_users=60",
                 "--data-option", "n_items=150", "--model", "sasrec", "--epochs", "1",
                 "--out", str(run_dir), *TINY_FLAGS]) == 0
    args = json.loads((run_dir / "train_args.json").read_text())
    assert args["dataset"]["name"] == "synthetic" and args["kind"] == "sasrec"
    assert args["dataset"]["options"] == {"n_users": 60, "n_items": 150}
    assert "test" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- evaluate
def test_evaluate_prints_the_metrics_of_the_best_weights(finished_run, capsys):
    assert main(["evaluate", str(finished_run), "--split", "valid", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "split valid" in out and "history excluded" in out
    best = json.loads((finished_run / "metrics.json").read_text())["best_valid"]
    row = out.strip().splitlines()[-1].split()
    header = out.strip().splitlines()[-2].split()
    assert row[0] == "fame"
    assert float(row[1 + header.index("NDCG@10")]) == pytest.approx(best["NDCG@10"], abs=5e-5)

    assert main(["evaluate", str(finished_run), "--include-history", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "split test" in out and "history included" in out


# ---------------------------------------------------------------------------------- report
@pytest.mark.notebooks
def test_report_runs_the_notebooks_and_exits_1_when_one_fails(tmp_path, monkeypatch, capsys):
    import nbformat

    from famekit import workspace

    def fake_run(dataset, kind="fame", seed=0, quick=False, progress=True):  # no training here
        path = tmp_path / "runs" / f"{dataset}-{kind}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    monkeypatch.setattr(workspace, "ensure_run", fake_run)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name, body in [("00_ok", "print(DATASET, EXTRA)"), ("01_bad", "1 / 0")]:
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell("DATASET = 'x'\nRUN_DIR = None\nSEED = 0\n"
                                           "QUICK = False\nEXTRA = 0")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(body)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, nbs / f"{name}.ipynb")
    out = tmp_path / "rep"
    code = main(["report", "--notebooks", str(nbs), "--out", str(out), "-p", "EXTRA=7",
                 "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "00_ok" in printed and "01_bad" in printed and "ZeroDivisionError" in printed
    executed = nbformat.read(out / "synthetic" / "00_ok.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["text"].strip() == "synthetic 7"
    assert code == main(["report", "--notebooks", str(nbs), "--out", str(out), "--only", "00",
                         "--no-progress"]) + 1  # only the good one: exit 0


@pytest.mark.notebooks
def test_report_check_passes_on_its_own_report_and_fails_on_a_change(tmp_path, monkeypatch,
                                                                      capsys):
    import nbformat

    from famekit import workspace

    def fake_run(dataset, kind="fame", seed=0, quick=False, progress=True):  # no training here
        path = tmp_path / "runs" / f"{dataset}-{kind}-seed{seed}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "model.safetensors").write_bytes(b"weights")
        (path / "optimizer_noise.bin").write_bytes(b"not bundled")
        return path

    monkeypatch.setattr(workspace, "ensure_run", fake_run)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("DATASET = 'x'\nRUN_DIR = None\nSEED = 0\nQUICK = False")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print(DATASET, 41 + 1, 1 / 3)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, nbs / "00_answer.ipynb")
    out = tmp_path / "rep"
    assert main(["report", "--notebooks", str(nbs), "--out", str(out), "--no-progress"]) == 0
    bundled = out / "synthetic" / "runs" / "synthetic-fame-seed0"
    assert sorted(p.name for p in bundled.iterdir()) == ["model.safetensors"]
    status = json.loads((out / "synthetic" / "report.json").read_text())
    assert status["metrics"] == {} or all(
        m["run_dir"].startswith("runs/") for m in status["metrics"].values())
    executed = nbformat.read(out / "synthetic" / "00_answer.ipynb", as_version=4)
    assert executed.metadata["papermill"]["input_path"] == "00_answer.ipynb"
    capsys.readouterr()

    check = ["report", "--check", "--notebooks", str(nbs), "--out", str(out), "--no-retrain",
             "--no-progress"]
    status["metrics"] = {"fame": {"run_dir": "runs/synthetic-fame-seed0"}}
    (out / "synthetic" / "report.json").write_text(json.dumps(status))
    assert main(check) == 0
    assert "matches the committed report" in capsys.readouterr().out

    executed.cells[-1].outputs[0]["text"] = "synthetic 43 0.3333333333333333\n"
    nbformat.write(executed, out / "synthetic" / "00_answer.ipynb")
    assert main(check) == 1
    assert "integers must be equal" in capsys.readouterr().out

    nb.cells[-1].source = "print(DATASET, 41 + 1, 1 / 4)"
    nbformat.write(nb, nbs / "00_answer.ipynb")
    assert main(check) == 1
    assert "the code changed since the report was made" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- errors
def test_unknown_dataset_is_one_line_and_status_2(tmp_path):
    done = famekit("train", "--dataset", "nosuchdata", "--out", str(tmp_path / "r"))
    assert_one_line_error(done, "unknown dataset 'nosuchdata'", "beauty")
    assert not (tmp_path / "r").exists()


def test_missing_run_directory_is_one_line_and_status_2(tmp_path):
    done = famekit("evaluate", str(tmp_path / "nowhere"))
    assert_one_line_error(done, "does not exist", "nowhere")


def test_negative_epochs_is_one_line_and_status_2(sequence_file, tmp_path):
    done = famekit("train", "--sequences", str(sequence_file), "--epochs", "-3",
                   "--out", str(tmp_path / "r"))
    assert_one_line_error(done, "epochs must be a whole number >= 1", "--epochs")


def test_malformed_sequence_file_names_the_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3 4\n2 5 x 7\n")
    done = famekit("train", "--sequences", str(bad), "--out", str(tmp_path / "r"))
    assert_one_line_error(done, "bad.txt", "line 2")


def test_argparse_errors_exit_2(capsys):
    for argv in (["train", "--model", "gru"], ["evaluate"], ["frobnicate"],
                 ["train", "--epochs", "many"], ["evaluate", "x", "--split", "train"]):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2, argv
    assert "invalid choice: 'gru'" in capsys.readouterr().err


def test_items_without_sequences_is_a_parameter_error(capsys):
    assert main(["train", "--items", "x.tsv"]) == 2
    assert capsys.readouterr().err.startswith("famekit: error: --items needs --sequences")


def test_every_documented_flag_exists():
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for flag in ("--dataset", "--sequences", "--items", "--model", "--epochs", "--patience",
                 "--batch-size", "--lr", "--seed", "--device", "--out", "--resume", "--d-model",
                 "--layers", "--heads", "--experts", "--dropout", "--max-len"):
        assert flag in help_text, flag


# ---------------------------------------------------------------------------------- data info
def test_data_info_prints_the_statistics_table(capsys):
    from famekit.datasets import load

    assert main(["data", "info", "synthetic", "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    assert header[0] == "dataset" and row[0] == "synthetic"
    dataset = load("synthetic")
    assert int(row[header.index("users")]) == dataset.n_users
    assert int(row[header.index("interactions")]) == dataset.n_interactions
    assert main(["data", "info", "nosuchdata"]) == 2
    assert capsys.readouterr().err.startswith("famekit: error: unknown dataset 'nosuchdata'")


def test_a_damaged_run_directory_is_a_one_line_error(finished_run, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(finished_run, broken)
    (broken / "train_args.json").write_text("{not json")
    assert main(["evaluate", str(broken), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("famekit: error: ") and "train_args.json" in err
    assert len(err.strip().splitlines()) == 1


def test_allow_unverified_is_an_explicit_flag_of_the_data_loading_commands(monkeypatch,
                                                                          tmp_path):
    import os

    from famekit.datasets.fetch import UNVERIFIED_ENV

    for argv in (["evaluate", str(tmp_path / "none")], ["train", "--resume", str(tmp_path / "no")],
                 ["report", "--check", "--out", str(tmp_path)]):
        monkeypatch.setenv(UNVERIFIED_ENV, "0")
        assert main(argv) == 2 and os.environ[UNVERIFIED_ENV] == "0"  # not without the flag
        assert main([*argv, "--allow-unverified"]) == 2
        assert os.environ[UNVERIFIED_ENV] == "1"
    assert build_parser().parse_args(["data", "info", "--allow-unverified"]).allow_unverified
