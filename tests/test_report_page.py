"""famekit.report_page: what a reader meets on a report page (findings first, no results cell,
code collapsed behind a button, contents, index / previous / next)."""

from __future__ import annotations

import nbformat

from famekit.report_page import Neighbours, notebook_to_html


def _notebook():
    v4 = nbformat.v4
    nb = v4.new_notebook()
    findings = v4.new_code_cell("F.findings_box(findings)", outputs=[v4.new_output(
        "display_data", data={"text/html": '<div class="famekit-findings">FINDINGS-BOX</div>',
                              "text/plain": "Findings"})])
    findings.metadata["tags"] = ["findings"]
    results = v4.new_code_cell("print(RESULTS)", outputs=[v4.new_output(
        "stream", name="stdout", text="RESULTS-JSON")])
    results.metadata["tags"] = ["results"]
    nb.cells = [v4.new_markdown_cell("# 01 · Title\n\n**Question.** Q?"),
                v4.new_code_cell("SETUP_CODE = 1"),
                v4.new_markdown_cell("## 1. First section"),
                v4.new_markdown_cell("## 2. Second section"),
                findings, results]
    return nb


def test_the_findings_box_comes_right_after_the_title_and_the_results_are_gone():
    page = notebook_to_html(_notebook(), "../assets/plotly.min.js", "t",
                            Neighbours("../index.html", "00_overview.html", "02_x.html"))
    assert page.index("01 · Title") < page.index("FINDINGS-BOX") < page.index("SETUP_CODE")
    assert "F.findings_box" not in page  # the box's code is dropped
    assert "RESULTS-JSON" not in page and "print(RESULTS)" not in page
    assert 'href="../index.html"' in page and 'href="00_overview.html"' in page
    assert 'href="02_x.html"' in page and "Show code" in page
    assert "famekit-hide-code" in page  # code starts collapsed
    contents = page[page.index("famekit-toc"):]
    assert contents.index("1. First section") < contents.index("2. Second section")


def test_the_first_and_last_pages_have_no_link_past_the_ends():
    page = notebook_to_html(_notebook(), "p.js", "t", Neighbours("../index.html", None, None))
    assert "Previous" not in page and "Next" not in page and "Index" in page


def test_the_same_notebook_gives_the_same_page_bytes():
    nb = _notebook()
    nb.cells.append(nbformat.v4.new_code_cell("fig", outputs=[nbformat.v4.new_output(
        "display_data", data={"application/vnd.plotly.v1+json": {"data": [], "layout": {}}})]))
    first = notebook_to_html(nb, "p.js", "t")
    assert "plotly-graph-div" in first and first == notebook_to_html(nb, "p.js", "t")


def test_times_and_versions_stamped_by_papermill_are_not_committed():
    from famekit.report import _without_volatile_metadata

    nb = _notebook()
    nb.metadata["papermill"] = {"duration": 1.5, "start_time": "x", "end_time": "y",
                                "parameters": {"SEED": 0}}
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    nb.cells[1].metadata.update(execution={"iopub.status.busy": "t"},
                                papermill={"duration": 0.1, "status": "completed"})
    _without_volatile_metadata(nb)
    assert nb.metadata["papermill"] == {"parameters": {"SEED": 0}}
    assert nb.metadata["language_info"] == {"name": "python"}
    assert "execution" not in nb.cells[1].metadata
    assert nb.cells[1].metadata["papermill"] == {"status": "completed"}


def test_widget_views_keep_one_model_id_across_executions():
    from famekit.report import WIDGET_VIEW, _strip_widget_state

    views = []
    for model_id in ("809ea132746b4d728f3daaca192d0af6", "c5eb1a0dcca0413b86fb4bb8583e7c73"):
        nb = _notebook()
        nb.metadata["widgets"] = {"state": {model_id: {}}}
        nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={
            WIDGET_VIEW: {"model_id": model_id, "version_major": 2}, "text/plain": "VBox()"})]
        _strip_widget_state(nb)
        assert "widgets" not in nb.metadata
        views.append(nb.cells[1].outputs[0]["data"][WIDGET_VIEW]["model_id"])
    assert views[0] == views[1] == "saved-widget-1-0"


def test_the_injected_parameters_cell_keeps_one_id_across_executions():
    from famekit.report import INJECTED_CELL_ID, _without_volatile_metadata

    ids = []
    for random_id in ("4148ae40", "acabf53c"):  # papermill's ids of two runs of one report
        nb = _notebook()
        injected = nbformat.v4.new_code_cell("SEED = 0")
        injected.metadata["tags"] = ["injected-parameters"]
        injected["id"] = random_id
        nb.cells.insert(1, injected)
        _without_volatile_metadata(nb)
        ids.append(nb.cells[1]["id"])
        nbformat.validate(nb)
    assert ids == [INJECTED_CELL_ID, INJECTED_CELL_ID]
