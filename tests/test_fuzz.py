"""Property-based fuzzing (hypothesis) of everything that parses bytes a user or a disk hands
famekit: the sequence file, the item TSV, ``load_files``, ``ModelConfig.from_dict`` and the
JSON files of a run directory (``config.json``, ``train_state.json``).

The property is the same everywhere: any input gives either a valid result (checked against the
invariants the rest of famekit relies on) or a documented famekit error, never another exception
and never a hang (hypothesis deadlines; example counts are bounded so the module runs in ~15 s).
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from famekit.checkpoints import load_run, load_train_state, save_model, save_train_state
from famekit.datasets import SeqDataset, load_files, read_items_tsv, read_sequences
from famekit.datasets.files import MAX_ITEM_ID
from famekit.errors import CheckpointError, DataFormatError, ParameterError
from famekit.model import ModelConfig, build_model

# Bounded and derandomised (the same examples every run); FAMEKIT_FUZZ_EXAMPLES=5000 digs deeper.
EXAMPLES = int(os.environ.get("FAMEKIT_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(FUZZ, max_examples=max(1, EXAMPLES * 2 // 5))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One folder per module: examples overwrite the same files (hypothesis runs many per test)."""
    return tmp_path_factory.mktemp("fuzz")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------ input shapes
# Tokens that exercise the parsers' branches: good ids, zero, negatives, huge values, numbers
# Python's int() accepts in odd spellings, and junk.
TOKENS = st.one_of(
    st.integers(1, 60).map(str),
    st.sampled_from(["0", "-3", "+7", "1_0", "٣", "2.5", "1e3", "x", "NaN", "\x00", "\ufeff",
                     str(MAX_ITEM_ID), str(MAX_ITEM_ID + 1), "9" * 30, "9" * 4400]),
    st.text(alphabet=string.printable, max_size=6),
)
SEPARATORS = st.sampled_from([" ", "  ", "\t", " \t "])
LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r", "\n\n", "\x0b", "\u2028"])


@st.composite
def sequence_text(draw) -> bytes:
    """A mostly well-formed sequence file with hostile details."""
    lines = draw(st.lists(st.lists(TOKENS, max_size=8), max_size=12))
    body = "".join(draw(SEPARATORS).join(tokens) + draw(LINE_ENDS) for tokens in lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    return body.encode(encoding, errors="replace")


CELLS = st.one_of(st.integers(-2, 12).map(str), st.text(max_size=8),
                  st.sampled_from(["a|b", "|", "", " ", "x\ty", "\r", '"quoted"', "\x00"]))


@st.composite
def items_text(draw) -> bytes:
    """A mostly well-formed item TSV: a header (usually with item_id) and rows of cells."""
    columns = draw(st.lists(st.sampled_from(["item_id", "title", "categories", "genres",
                                             "brand", "", "item_id "]),
                            min_size=1, max_size=4))
    rows = draw(st.lists(st.lists(CELLS, min_size=len(columns) - 1, max_size=len(columns) + 1),
                         max_size=8))
    end = draw(LINE_ENDS)
    body = "\t".join(columns) + end + "".join("\t".join(row) + end for row in rows)
    return body.encode(draw(st.sampled_from(["utf-8", "latin-1"])), errors="replace")


# ------------------------------------------------------------------------------ invariants
def _check_parsed_sequences(users: np.ndarray, sequences: list[np.ndarray]) -> None:
    assert len(users) == len(sequences) >= 1
    assert len(set(users.tolist())) == len(users) and users.min() >= 1
    for seq in sequences:
        assert seq.dtype == np.int32 and len(seq) >= 1
        assert 1 <= seq.min() and seq.max() <= MAX_ITEM_ID


def _check_dataset(dataset: SeqDataset) -> None:
    assert dataset.n_users >= 1
    assert dataset.item_ids.min() >= 1 and dataset.item_ids.max() == dataset.n_items
    assert dataset.offsets[0] == 0 and dataset.offsets[-1] == len(dataset.item_ids)
    assert list(dataset.items.index) == list(range(1, dataset.n_items + 1))
    assert len(dataset.fingerprint) == 16


# ------------------------------------------------------------------------------ data files
@FUZZ
@given(data=st.one_of(st.binary(max_size=600), sequence_text()))
def test_any_bytes_as_a_sequence_file(scratch, data):
    path = _write(scratch / "seq.txt", data)
    try:
        users, sequences = read_sequences(path)
    except DataFormatError as err:
        assert str(path) in str(err) and "Fix:" in str(err)
        return
    _check_parsed_sequences(users, sequences)


@FUZZ
@given(data=st.one_of(st.binary(max_size=600), items_text()),
       n_items=st.one_of(st.none(), st.integers(1, 12)))
def test_any_bytes_as_an_item_table(scratch, data, n_items):
    path = _write(scratch / "items.tsv", data)
    try:
        frame = read_items_tsv(path, n_items=n_items)
    except DataFormatError as err:
        assert str(path) in str(err) and "Fix:" in str(err)
        return
    assert frame.index.name == "item_id" and "item_id" not in frame.columns
    assert frame.index.is_unique and (frame.index >= 1).all()
    if n_items is not None:
        assert list(frame.index) == list(range(1, n_items + 1))


@FEW
@given(sequences=sequence_text(), items=st.one_of(st.none(), items_text()))
def test_any_pair_of_files_loads_or_fails_cleanly(scratch, sequences, items):
    seq_path = _write(scratch / "pair-seq.txt", sequences)
    items_path = None if items is None else _write(scratch / "pair-items.tsv", items)
    try:
        dataset = load_files(seq_path, items_path)
    except DataFormatError as err:
        assert "Fix:" in str(err)
        return
    _check_dataset(dataset)


# ------------------------------------------------------------------------------ model configs
VALID_CONFIG = ModelConfig(n_items=20, kind="fame", max_len=8, d_model=16, n_layers=2,
                           n_heads=2, n_experts=2, dropout=0.1).to_dict()
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
              st.sampled_from(["fame", "sasrec", "learned", "slice", "heads", "none"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def config_dicts(draw) -> dict:
    """A valid config with some fields replaced, dropped or added."""
    config = dict(VALID_CONFIG)
    for name in draw(st.lists(st.sampled_from(sorted(config)), max_size=3, unique=True)):
        action = draw(st.sampled_from(["replace", "replace", "drop"]))
        if action == "drop":
            del config[name]
        else:
            config[name] = draw(JSON_VALUES)
    if draw(st.booleans()) and draw(st.booleans()):
        config[draw(st.text(max_size=6))] = draw(JSON_VALUES)
    return config


@FUZZ
@given(data=st.one_of(config_dicts(), JSON_VALUES))
def test_model_config_from_any_dict(data):
    try:
        config = ModelConfig.from_dict(data)
    except ParameterError as err:
        assert "Fix:" in str(err)
        return
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.kind in ("fame", "sasrec") and config.d_model % config.n_heads == 0


# ------------------------------------------------------------------------------ run directories
@pytest.fixture(scope="module")
def run_dir(scratch) -> Path:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict(VALID_CONFIG))
    run = save_model(scratch / "run", model, dataset_name="fuzz", dataset_fingerprint="f")
    save_train_state(run, torch.optim.Adam(model.parameters()), epoch=1)
    return run


@st.composite
def run_config_bytes(draw, saved: dict) -> bytes:
    """config.json as bytes: junk, JSON of any shape, or the saved one with fields edited."""
    kind = draw(st.sampled_from(["junk", "json", "edited", "edited"]))
    if kind == "junk":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    meta = {**saved, "model_config": draw(config_dicts())}
    for key in draw(st.lists(st.sampled_from(["format_version", "dataset", "weights"]),
                             max_size=2, unique=True)):
        meta[key] = draw(JSON_VALUES)
    return json.dumps(meta).encode()


@FUZZ
@given(data=st.data())
def test_any_config_json_loads_or_is_refused(run_dir, data):
    path = run_dir / "config.json"
    saved_text = path.read_text()
    path.write_bytes(data.draw(run_config_bytes(json.loads(saved_text))))
    try:
        run = load_run(run_dir, device="cpu")
    except CheckpointError as err:
        assert "Fix:" in str(err)
        return
    finally:
        path.write_text(saved_text)
    assert run.config == ModelConfig.from_dict(VALID_CONFIG)  # only a faithful config loads


def _train_state_edits(saved: dict):
    """train_state.json with its entries replaced by anything, or tagged values broken."""
    tagged = st.sampled_from([{"__tensor__": "nope"}, {"__tensor__": 3},
                              {"__ndarray__": [1, 2], "dtype": "not-a-dtype", "shape": [2]},
                              {"__ndarray__": [1, 2], "dtype": "<i8", "shape": [5]},
                              {"__tuple__": 7}, {"__items__": [[1]]}, {"__items__": 3}])
    value = st.one_of(JSON_VALUES, tagged)
    return st.dictionaries(st.sampled_from(sorted(saved)), value, min_size=1, max_size=3).map(
        lambda edits: {**saved, **edits})


@FEW
@given(data=st.data())
def test_any_train_state_json_loads_or_is_refused(run_dir, data):
    path = run_dir / "train_state.json"
    saved_text = path.read_text()
    edited = data.draw(st.one_of(_train_state_edits(json.loads(saved_text)).map(json.dumps),
                                 st.text(max_size=200)))
    path.write_text(edited)
    model = build_model(ModelConfig.from_dict(VALID_CONFIG))
    try:
        state = load_train_state(run_dir, torch.optim.Adam(model.parameters()))
    except CheckpointError as err:
        assert "Fix:" in str(err)
        return
    finally:
        path.write_text(saved_text)
    assert isinstance(state["epoch"], int)


# ------------------------------------------------------------------------------ ranking
SCORES = st.sampled_from([float("nan"), float("inf"), -float("inf"), -2.0, -1.0, 0.0, 0.5, 1.0,
                          2.0])


@FUZZ
@given(data=st.data(), rows=st.integers(1, 4), n_items=st.integers(1, 12))
def test_target_ranks_match_a_plain_count(data, rows, n_items):
    """evaluation.target_ranks (in-place masks, a cleaned copy only for NaN/inf batches) equals
    its definition: candidates (not padding, history or the target) scoring >= the target,
    with NaN below every number, -inf included (a NaN target ranks last)."""
    from famekit.evaluation import target_ranks

    scores = np.array(data.draw(st.lists(st.lists(SCORES, min_size=n_items + 1,
                                                  max_size=n_items + 1),
                                         min_size=rows, max_size=rows)), dtype=np.float32)
    targets = np.array(data.draw(st.lists(st.integers(1, n_items), min_size=rows,
                                          max_size=rows)))
    width = data.draw(st.integers(0, 4))
    history = np.array(data.draw(st.lists(st.lists(st.integers(0, n_items), min_size=width,
                                                   max_size=width),
                                          min_size=rows, max_size=rows)),
                       dtype=np.int64).reshape(rows, width)
    def key(value: float) -> tuple:  # NaN sorts below -inf
        return (0, 0.0) if np.isnan(value) else (1, float(value))

    expected = []
    for row in range(rows):
        excluded = {0, int(targets[row]), *history[row].tolist()}
        target = key(scores[row, targets[row]])
        expected.append(sum(1 for item in range(n_items + 1)
                            if item not in excluded and key(scores[row, item]) >= target))
    got = target_ranks(torch.from_numpy(scores), torch.from_numpy(targets),
                       torch.from_numpy(history))
    assert got.tolist() == expected
