"""Packaging invariants: environment.yml mirrors pyproject, torch stays pinned, CI runs make test."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge spells a few packages differently from PyPI
CONDA_TO_PYPI = {"pytorch": "torch", "python-kaleido": "kaleido"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    return names


def environment_packages() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name = _name(dep)
            if name not in ("python", "pip"):
                names.add(CONDA_TO_PYPI.get(name, name))
    return names


def test_environment_yml_lists_the_same_packages_as_pyproject():
    py, env = pyproject_packages(), environment_packages()
    assert py == env, f"only in pyproject: {sorted(py - env)}; only in environment.yml: {sorted(env - py)}"


def test_torch_is_pinned_where_pip_installs_it():
    req = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", req, flags=re.MULTILINE)
    env = (ROOT / "environment.yml").read_text()
    assert "pytorch=2.13.0" in env
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements.txt" in makefile, "make must install with the pinned requirements"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^make (\w+)$", readme.split("##", 1)[0], flags=re.MULTILINE)
    assert commands == ["report", "test"], "the README opens with exactly two commands"
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.MULTILINE)


def test_pytest_markers_are_declared():
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    declared = {m.split(":")[0] for m in ini["markers"]}
    assert {"slow", "real_data", "notebooks", "browser", "gpu"} <= declared


# An absolute path of a machine: a home or root folder, this workplace's work folder, a temp
# folder, or a Windows drive. System paths a user types (the browser, a device) are not the
# machine's own.
_MACHINE_PATH = re.compile(r"(?<![\w.~/-])(/(?:home|root|work|tmp|Users|private/var)/[\w.-]+"
                           r"|[A-Z]:" r"\\Users)")  # (split: this file holds no such path)


def _tracked_text_files():
    import subprocess

    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        path = ROOT / name
        data = path.read_bytes() if path.is_file() else b""
        if b"\0" not in data[:8192]:  # text, not safetensors or images
            yield name, data.decode("utf-8", errors="replace")


def test_no_tracked_file_carries_a_path_of_the_machine_that_wrote_it():
    found = [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
             for name, text in _tracked_text_files() for m in _MACHINE_PATH.finditer(text)]
    assert not found, "absolute paths in tracked files (write relative ones):\n" + "\n".join(
        found[:20])


def test_the_path_scan_sees_what_it_is_meant_to_see():
    root, sep = "/", "\\"  # spelled apart, so that this file holds no path it looks for
    for text in (f'"input_path": "{root}work/main/notebooks/00.ipynb"', f"run_dir: {root}root/x",
                 f"see {root}home/ana/famekit", f"cd {root}tmp/abc123", f"C:{sep}Users{sep}ana"):
        assert _MACHINE_PATH.search(text), text
    for text in (f"{root}usr/bin/chromium", f"--sequences {root}dev/zero",
                 "reports/synthetic/runs/x", f"https://example.org{root}work/x",
                 "~/.cache/famekit"):
        assert not _MACHINE_PATH.search(text), text
