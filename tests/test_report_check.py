"""The committed-report check (famekit.report_check): blind to float noise, not to changes.

Each tolerance is exercised on both sides: a change inside it passes, one just outside fails.
The end-to-end check (re-executing reports/synthetic over its bundled runs, then retraining)
is `make check-reports`, the last step of `make test`.
"""

from __future__ import annotations

import json

import nbformat
import pytest

from famekit.errors import ParameterError
from famekit.report_check import (
    Tolerances,
    check_report,
    compare_notebooks,
    compare_text,
    numbers_agree,
)

TOL = Tolerances()


@pytest.mark.parametrize("old, new, same", [
    ("0.0923", "0.0923", True),
    ("0.0923", "0.0924", True),    # the last digit rounded the other way
    ("0.0923", "0.0925", False),   # two units: a real change
    ("0.103", "0.1031", True),     # JSON drops a trailing zero: the coarser digit counts
    ("1628.0950", "1628.1100", True),   # rel 1e-4 of a large float sum
    ("1628.0950", "1628.3000", False),
    ("76314", "76314", True),
    ("76314", "76315", False),     # integers (counts, epochs, ids) are exact
    ("2.6e-05", "2.7e-05", True),
    ("2.6e-05", "2.9e-05", False),
    ("-0.0000", "0.0000", True),
    ("nan", "nan", True),
])
def test_numbers_agree_within_the_stated_tolerances(old, new, same):
    assert numbers_agree(old, new, TOL) is same


def test_text_words_must_match_and_numbers_may_wiggle():
    old = "Head 2 has the largest mean gate (0.324; uniform would be 0.250)\nusers 4000"
    assert compare_text(old, old.replace("0.324", "0.325"), TOL)[1] == []
    _, found = compare_text(old, old.replace("Head 2", "Head 3"), TOL)
    assert len(found) == 1 and "integers" in found[0].why
    assert compare_text(old, old.replace("largest", "smallest"), TOL)[1][0].why == \
        "the words differ"
    assert compare_text(old, old + "\nmore", TOL)[1][0].why == "the output has another length"
    assert compare_text(old, old, TOL)[0] == 4


def test_white_space_is_folded_because_a_wider_number_realigns_a_table():
    old = "   a     b\n0  9.9999  1\n"
    new = "    a     b\n0  10.0000  1\n"
    assert compare_text(old, new, TOL)[1] == []


def test_sanitized_outputs_do_not_count():
    old = "trained in 12.3 s at 2026-11-27T06:21:04+00:00"
    new = "trained in 99.1 s at 2026-12-01T01:02:03+00:00"
    assert compare_text(old, new, TOL)[1] == []


def _notebook(*cells):
    nb = nbformat.v4.new_notebook()
    for source, outputs in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.outputs = [nbformat.v4.new_output(**o) for o in outputs]
        nb.cells.append(cell)
    return nb


def _stdout(text):
    return {"output_type": "stream", "name": "stdout", "text": text}


def _figure(title):
    return {"output_type": "display_data", "data": {
        "application/vnd.plotly.v1+json": {"data": [{"type": "bar", "name": "FAME", "y": [1.0]}],
                                           "layout": {"title": {"text": title}}}}}


def test_notebooks_compare_code_outputs_and_figure_outlines():
    committed = _notebook(("print(x)", [_stdout("NDCG@10 0.0923\n")]),
                          ("fig", [_figure("accuracy")]))
    same = _notebook(("print(x)", [_stdout("NDCG@10 "), _stdout("0.0924\n")]),
                     ("fig", [_figure("accuracy")]))
    assert compare_notebooks(committed, same, "00", TOL)[1] == []

    stale = _notebook(("print(y)", [_stdout("NDCG@10 0.0923\n")]), ("fig", [_figure("accuracy")]))
    assert "code changed" in compare_notebooks(committed, stale, "00", TOL)[1][0].why

    retitled = _notebook(("print(x)", [_stdout("NDCG@10 0.0923\n")]), ("fig", [_figure("speed")]))
    assert compare_notebooks(committed, retitled, "00", TOL)[1][0].why == "the words differ"

    failed = _notebook(("print(x)", [{"output_type": "error", "ename": "KeyError",
                                      "evalue": "'x'", "traceback": []}]),
                       ("fig", [_figure("accuracy")]))
    difference = compare_notebooks(committed, failed, "00", TOL)[1][0]
    assert "KeyError" in difference.why


def test_a_report_without_bundled_runs_is_refused(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({
        "dataset": "synthetic", "parameters": {"DATASET": "synthetic", "SEED": 0},
        "metrics": {"fame": {"run_dir": "runs/synthetic-fame-seed0"}}, "notebooks": []}))
    with pytest.raises(ParameterError, match="does not carry the fame run"):
        check_report(tmp_path, retrain=False, progress=False)
    (tmp_path / "report.json").write_text("not json")
    with pytest.raises(ParameterError, match="invalid JSON"):
        check_report(tmp_path, retrain=False, progress=False)


def test_the_runs_the_check_skips_retraining_leave_every_model_and_objective_retrained():
    """Trimming the retrain list to save suite time must not drop a code path: FAME, SASRec and
    FAME+ (the facet objective) are always retrained; a skipped kind is a known run kind."""
    from famekit.report_check import NOT_RETRAINED
    from famekit.workspace import RUN_KINDS

    assert set(NOT_RETRAINED) <= set(RUN_KINDS)
    assert not {"fame", "sasrec", "fameplus"} & set(NOT_RETRAINED)
    assert all(len(why) > 20 for why in NOT_RETRAINED.values())  # the CLI prints why
