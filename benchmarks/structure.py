"""Print the figures of famekit's structure: module and definition sizes, and who knows what.

    python benchmarks/structure.py            # the package as it is in this checkout
    python benchmarks/structure.py --top 8

Figures (all read from the source with ``ast``, nothing is imported or run):

* the largest modules (lines) and the largest classes and functions (lines, methods);
* modules that name a run directory's files (string constants such as ``"train_args.json"``):
  the run directory should have one owner;
* modules that pad users' inputs for a forward pass (calls of ``pad_left``): the batched pass
  over a split's users should be written once;
* ``isinstance(x, bool)`` guards written by hand (argument checks belong to
  ``famekit.validation``).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = {"train_args.json", "config.json", "metrics.json", "metrics.csv",
             "model.safetensors", "train_state.json", "train_state.safetensors"}


def _modules(package: Path):
    for path in sorted(package.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def _is_bool_guard(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance"
            and len(node.args) == 2 and getattr(node.args[1], "id", None) == "bool")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--top", type=int, default=6)
    args = parser.parse_args()
    package = ROOT / "famekit"
    sizes, definitions, run_files, padding, guards = [], [], set(), set(), 0
    for path, tree in _modules(package):
        name = path.relative_to(ROOT).as_posix()
        sizes.append((len(path.read_text(encoding="utf-8").splitlines()), name))
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                methods = sum(isinstance(n, ast.FunctionDef) for n in node.body)
                label = f"{name}:{node.name}" + (f" ({methods} methods)"
                                                 if isinstance(node, ast.ClassDef) else "")
                definitions.append((node.end_lineno - node.lineno + 1, label))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in RUN_FILES:
                run_files.add(name)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "pad_left":
                padding.add(name)
            guards += _is_bool_guard(node)
    print(f"famekit/: {len(sizes)} modules, {sum(s for s, _ in sizes)} lines")
    print("largest modules:")
    for lines, name in sorted(sizes, reverse=True)[: args.top]:
        print(f"  {lines:5d}  {name}")
    print("largest classes and functions:")
    for lines, label in sorted(definitions, reverse=True)[: args.top]:
        print(f"  {lines:5d}  {label}")
    print(f"modules naming a run's files: {len(run_files)}  ({', '.join(sorted(run_files))})")
    print(f"modules padding users' inputs (pad_left): {len(padding)}  "
          f"({', '.join(sorted(padding))})")
    print(f"hand-written isinstance(x, bool) guards: {guards}")


if __name__ == "__main__":
    main()
