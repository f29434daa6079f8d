"""The run directory object (famekit.runs.RunDir), the training configuration
(famekit.train_config.TrainConfig) and the rules they own: where runs live, what resume may
change, where every default is written."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from famekit import cli, runs, workspace
from famekit.datasets import SeqDataset, load_files
from famekit.errors import CheckpointError, ParameterError
from famekit.fileio import read_json
from famekit.model import ModelConfig
from famekit.runs import RunDir
from famekit.train_config import MODEL_FLAGS, RESUMABLE, TrainConfig
from famekit.training import train

TINY = dict(kind="fame", epochs=1, patience=5, batch_size=16, progress=False, threads=1,
            max_len=10, d_model=16, n_heads=2, n_experts=2)


def tiny_files_dataset(tmp_path, name="mine"):
    path = tmp_path / f"{name}.txt"
    rng = np.random.default_rng(4)
    path.write_text("".join(
        f"{u} " + " ".join(str(i) for i in rng.integers(1, 40, size=rng.integers(3, 12))) + "\n"
        for u in range(1, 61)))
    return load_files(path, name=name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished tiny run on a dataset read from files (so that it can be reloaded)."""
    tmp = tmp_path_factory.mktemp("runs")
    dataset = tiny_files_dataset(tmp)
    train(dataset, out_dir=tmp / "run", **TINY)
    return RunDir(tmp / "run"), dataset


# ------------------------------------------------------------------------ the run object
def test_a_run_answers_its_status_summary_config_and_dataset(trained):
    run, dataset = trained
    assert run.status == "finished" and runs.run_status(run.path) == "finished"
    assert run.summary()["best_epoch"] == 1 and "NDCG@10" in run.summary()["test"]
    assert run.metrics()["status"] == "finished"
    config = run.train_config()
    assert (config.kind, config.epochs, config.batch_size) == ("fame", 1, 16)
    assert config.model_options == {"d_model": 16, "n_heads": 2, "n_experts": 2}
    assert run.load_dataset().fingerprint == dataset.fingerprint
    loaded = run.load(dataset=dataset)
    assert loaded.config.d_model == 16 and not loaded.model.training


def test_status_of_missing_and_started_runs(tmp_path):
    assert RunDir(tmp_path / "none").status is None
    started = tmp_path / "started"
    started.mkdir()
    (started / runs.TRAIN_ARGS_FILE).write_text("{}")
    assert RunDir(started).status == "running"
    with pytest.raises(CheckpointError, match="does not exist"):
        RunDir(tmp_path / "none").require()


def test_a_copy_keeps_what_reloading_needs_and_no_optimizer_state(trained, tmp_path):
    run, dataset = trained
    copy = run.copy_to(tmp_path / "bundle" / run.name)
    assert sorted(p.name for p in copy.path.iterdir()) == sorted(runs.PORTABLE_FILES)
    assert copy.load(dataset=dataset).config == run.load().config
    again = run.copy_to(copy.path)  # replacing an older copy leaves no staging folders
    assert again.path == copy.path
    assert [p.name for p in copy.path.parent.iterdir()] == [run.name]


def test_an_edited_run_file_is_one_clear_error_naming_file_and_line(trained, tmp_path):
    run, _ = trained
    copy = run.copy_to(tmp_path / "edited")
    (copy.path / runs.TRAIN_ARGS_FILE).write_text('{"kind": "fame",\n  oops}')
    with pytest.raises(CheckpointError, match=r"train_args.json, line 2: invalid JSON at column 3"):
        copy.train_config()
    (copy.path / runs.TRAIN_ARGS_FILE).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="train_args.json: holds a JSON list, not an object"):
        copy.train_args()
    (copy.path / runs.TRAIN_ARGS_FILE).write_text(json.dumps({"dataset": {"name": "mine"}}))
    with pytest.raises(CheckpointError, match="lacks kind, epochs"):
        copy.train_config()


def test_a_run_without_train_args_names_its_dataset_from_config_json(trained, tmp_path):
    run, dataset = trained
    copy = run.copy_to(tmp_path / "weights-only")
    (copy.path / runs.TRAIN_ARGS_FILE).unlink()
    assert copy.dataset_description()["fingerprint"] == dataset.fingerprint
    copy.check_dataset(dataset)
    other = SeqDataset.from_sequences("mine", [np.array([1, 2, 3])] * 5, n_items=3)
    with pytest.raises(CheckpointError, match="same data the run was trained on"):
        copy.check_dataset(other)


def test_one_rule_for_where_runs_live(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAMEKIT_RUNS", raising=False)
    assert runs.default_run_dir("beauty", "sasrec", 1) == tmp_path / "runs" / "beauty-sasrec-seed1"
    monkeypatch.setenv("FAMEKIT_RUNS", str(tmp_path / "elsewhere"))
    assert workspace.default_run("synthetic", quick=True) == (
        tmp_path / "elsewhere" / "synthetic-fame-seed0-quick")
    assert RunDir.default("synthetic").path == runs.default_run_dir("synthetic")


def test_read_json_has_one_error_policy(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(CheckpointError, match="x.json: the file is missing. Fix: restore it"):
        read_json(path, fix="restore it")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ParameterError, match="not UTF-8"):
        read_json(path, fix="restore it", error=ParameterError)
    path.write_text("[" * 100_000)
    with pytest.raises(CheckpointError, match="nested too deeply|invalid JSON"):
        read_json(path, fix="restore it", expect=None)


# ------------------------------------------------------------------- the configuration
def test_resume_refuses_another_dataset_even_when_it_is_the_default_name(trained, tmp_path):
    run, _ = trained
    copy = run.copy_to(tmp_path / "copy")
    # "synthetic" used to double as "not given": resuming this files run with it was accepted
    with pytest.raises(ParameterError, match="cannot change the dataset"):
        train("synthetic", resume=copy.path, epochs=2, progress=False)


def test_resume_refuses_an_option_equal_to_the_default_but_not_to_the_saved_value(trained):
    run, _ = trained
    # the run was trained with batch_size 16; 256 is TrainConfig's default
    with pytest.raises(ParameterError, match="cannot change batch_size .*saved 16, asked 256"):
        train(resume=run.path, batch_size=256, epochs=2, progress=False)
    with pytest.raises(ParameterError, match="cannot change model options \\['d_model'\\]"):
        train(resume=run.path, d_model=64, epochs=2, progress=False)
    assert run.train_config().epochs == 1  # nothing was written


def test_resumed_with_changes_only_the_resumable_fields():
    saved = TrainConfig(batch_size=16, model_options={"d_model": 16})
    resumed = saved.resumed_with({"epochs": 9, "patience": 2, "batch_size": 16,
                                  "d_model": 16, "n_heads": 4}, "run")
    assert resumed == dataclasses.replace(saved, epochs=9, patience=2)
    assert set(RESUMABLE) == {"epochs", "patience"}


def test_the_configuration_checks_every_field_before_anything_runs():
    for bad, message in [({"epochs": 0}, "epochs must be a whole number >= 1"),
                         ({"epochs": True}, "epochs must be a whole number"),
                         ({"lr": float("nan")}, "lr must be a positive number"),
                         ({"loss_weighting": "user"}, "loss_weighting='user' is invalid"),
                         ({"kind": "gru"}, "kind must be 'fame' or 'sasrec'"),
                         ({"model_options": {"n_items": 3}}, "set by train"),
                         ({"model_options": {"widht": 3}}, "unknown model option")]:
        with pytest.raises(ParameterError, match=message):
            TrainConfig(**bad)


def test_a_configuration_round_trips_through_train_args(trained):
    run, _ = trained
    saved = json.loads((run.path / runs.TRAIN_ARGS_FILE).read_text())
    assert TrainConfig.from_saved(saved, run.path).to_dict() == {
        k: saved[k] for k in TrainConfig().to_dict()}
    # a run written before loss_weighting existed reads as the behaviour of that time
    del saved["loss_weighting"]
    assert TrainConfig.from_saved(saved, run.path).loss_weighting == "batch"


def test_the_cli_flags_are_generated_from_the_configuration():
    parser = cli.build_parser()
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    by_dest = {a.dest: a for a in train_parser._actions}
    defaults = TrainConfig()
    for spec in dataclasses.fields(TrainConfig):
        if spec.metadata.get("flag") == "":
            assert spec.name not in by_dest
            continue
        action = by_dest[spec.name]
        assert action.default is None  # not given = keep (resume) or the config's default
        default = getattr(defaults, spec.name)
        shown = (",".join(default) or "none") if isinstance(default, tuple) else default
        assert f"(default {shown})" in action.help
        if spec.metadata.get("choices"):
            assert tuple(action.choices) == tuple(spec.metadata["choices"])
    for name, (flag, _) in MODEL_FLAGS.items():
        assert flag in by_dest[name].option_strings
        assert f"(default {ModelConfig.__dataclass_fields__[name].default})" in by_dest[name].help
    args = parser.parse_args(["train", "--layers", "3", "--model", "sasrec"])
    assert (args.n_layers, args.kind, args.epochs) == (3, "sasrec", None)
    args = parser.parse_args(["train", "--facets", "genre,brand"])
    assert defaults.with_options(facets=args.facets).facets == ("genre", "brand")


def test_recipes_are_overrides_of_the_configuration():
    for name, recipe in workspace.RECIPES.items():
        assert isinstance(recipe.config, TrainConfig), name
    assert workspace.recipe("beauty").config.model_options == {"dropout": 0.5}
    assert workspace.recipe("beauty").config.loss_weighting == "target"
    assert workspace.recipe("ml-1m").config.max_len == 200
    quick = workspace.recipe("synthetic", quick=True)
    assert quick.dataset_options["n_users"] == 400 and quick.config.epochs == 3
    with pytest.raises(ParameterError, match="only shrinks the synthetic world"):
        workspace.recipe("beauty", quick=True)


# ------------------------------------------------------------------ options are keywords
def test_options_are_keywords_and_none_means_not_given(tmp_path):
    dataset = tiny_files_dataset(tmp_path)
    small = {k: v for k, v in TINY.items() if k not in ("kind", "epochs", "patience")}
    # the first version's positional options (kind, out_dir, epochs, ...) are gone
    with pytest.raises(TypeError, match="positional"):
        train(dataset, "sasrec", tmp_path / "positional", 1)
    with pytest.raises(ParameterError, match="config must be a TrainConfig"):
        train(dataset, "sasrec")
    result = train(dataset, kind="sasrec", out_dir=tmp_path / "named", epochs=1, patience=None,
                   **small)
    config = RunDir(result.run_dir).train_config()
    assert (config.kind, config.epochs, config.patience) == ("sasrec", 1, TrainConfig().patience)
    resumed = train(resume=result.run_dir, epochs=2, patience=None, progress=False)
    assert len(resumed.history) == 2


def test_resume_keeps_the_version_that_started_the_run(tmp_path):
    dataset = tiny_files_dataset(tmp_path)
    train(dataset, out_dir=tmp_path / "run", **TINY)
    path = tmp_path / "run" / runs.TRAIN_ARGS_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "famekit_version": "0.0.1"}))
    train(resume=tmp_path / "run", epochs=2, progress=False)
    assert RunDir(tmp_path / "run").train_args()["famekit_version"] == "0.0.1"


def test_a_run_saved_without_train_args_asks_for_its_dataset(trained, tmp_path):
    run, dataset = trained
    copy = run.copy_to(tmp_path / "weights-only")
    (copy.path / runs.TRAIN_ARGS_FILE).unlink()
    with pytest.raises(CheckpointError, match="pass the dataset explicitly"):
        copy.load_dataset()
    assert copy.load(dataset=dataset).config.d_model == 16


def test_a_notebook_is_told_before_a_default_run_is_trained_in_its_cell(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setenv("FAMEKIT_RUNS", str(tmp_path))
    workspace.open_run("synthetic", quick=True, progress=False)
    said = capsys.readouterr().out
    assert "training the default fame run of 'synthetic'" in said and str(tmp_path) in said
    workspace.open_run("synthetic", quick=True, progress=False)
    assert capsys.readouterr().out == ""  # cached: nothing to say


def test_a_weights_only_run_of_a_registered_dataset_still_reloads_it(tmp_path):
    from famekit.checkpoints import save_model
    from famekit.datasets import load

    world = load("synthetic", n_users=200, n_items=200)
    default = load("synthetic")
    run = tmp_path / "weights-only"
    model = train(world, out_dir=tmp_path / "trained", **TINY).run_dir
    loaded = RunDir(model).load()
    save_model(run, loaded.model, dataset_name="synthetic",
               dataset_fingerprint=default.fingerprint)
    assert RunDir(run).load_dataset().fingerprint == default.fingerprint  # as famekit evaluate did
    save_model(run, loaded.model, dataset_name="synthetic", dataset_fingerprint=world.fingerprint)
    with pytest.raises(CheckpointError, match="pass the dataset explicitly"):
        RunDir(run).load_dataset()  # options not recorded: refused, not guessed
