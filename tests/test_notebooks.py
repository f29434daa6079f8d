"""The notebooks' shared template, checked statically (nbval executes them separately)."""

import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["00_overview", "01_head_gates", "02_expert_routing", "03_facet_embeddings",
            "04_user_explorer", "05_knockouts", "06_ground_truth", "07_facet_pretraining"]


def test_the_suite_is_complete():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_template(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "**Question.**" in first.source
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    names = re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=", tagged[0].source, flags=re.M)
    assert {"DATASET", "RUN_DIR", "SEED"} <= set(names)
    assert all(n.isupper() for n in names), f"parameters must be UPPERCASE: {names}"
    assert nb.cells.index(tagged[0]) == 1, "parameters come right after the title"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs cleared"
    assert "results" in code[-1].metadata.get("tags", []), "results recorded at the end"
    findings = [c for c in code if "findings" in c.metadata.get("tags", [])]
    assert len(findings) == 1, "one cell tagged 'findings' (the box the page opens with)"
    assert "findings_box(" in findings[0].source and "print(" not in findings[0].source
    source = "\n".join(c.source for c in code)
    assert "import torch" not in source and "nn.Module" not in source, "no model code"
    assert "workspace.open_run" in source, "runs come from famekit, not from training cells"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_documents_the_parameters(path, caplog):
    papermill = pytest.importorskip("papermill")
    params = papermill.inspect_notebook(str(path))
    # a comment papermill cannot parse (a quote or "=" in it) loses that parameter's help
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()]
    assert {"DATASET", "RUN_DIR", "SEED", "QUICK"} <= set(params)
    assert all(p["help"] for name, p in params.items() if name != "QUICK"), json.dumps(params)
