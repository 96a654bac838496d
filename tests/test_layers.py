"""The import graph of src/leanfit, built from the source, against docs/architecture.md.

Every import counts: module level, inside functions, relative, and
``importlib.import_module`` with a literal name (imports under ``if TYPE_CHECKING:``
never run and are left out). The graph must have no cycle, no module may import a
``_private`` name from another package, and every import must go down the layer
order that docs/architecture.md writes in its "Layers" list.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "leanfit"
LAYERS = re.compile(r"^\d+\. (.+)$")


def modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class Imports(ast.NodeVisitor):
    """``(target module, imported name or None, line)`` of every runtime import."""

    def __init__(self, module: str, package: bool, known: set[str]):
        self.module, self.package, self.known = module, package, known
        self.found: list[tuple[str, str | None, int]] = []
        self.type_only = 0

    def base(self, level: int, name: str | None) -> str:
        if level == 0:
            return name or ""
        parts = (self.module if self.package else self.module.rsplit(".", 1)[0]).split(".")
        parts = parts[: len(parts) - (level - 1)]
        return ".".join([*parts, name] if name else parts)

    def add(self, target: str, name: str | None, line: int) -> None:
        if not self.type_only and (target == "leanfit" or target.startswith("leanfit.")):
            self.found.append((target, name, line))

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING":
            self.type_only += 1
            for child in node.body:
                self.visit(child)
            self.type_only -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.add(alias.name, None, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self.base(node.level, node.module)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in self.known:
                self.add(sub, None, node.lineno)
            else:
                self.add(base, alias.name, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = getattr(func, "attr", getattr(func, "id", ""))
        if name in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self.add(first.value, None, node.lineno)
        self.generic_visit(node)


def graph() -> dict[str, list[tuple[str, str | None, int]]]:
    known = modules()
    edges = {}
    for module, (path, package) in known.items():
        visitor = Imports(module, package, set(known))
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        edges[module] = [(t, n, line) for t, n, line in visitor.found if t in known]
    return edges


def package_of(module: str) -> str:
    _, package = modules()[module]
    if package:
        return module
    parent = module.rsplit(".", 1)[0]
    return module if parent == "leanfit" else parent


def layer_list() -> list[list[str]]:
    """The "Layers" list of docs/architecture.md: units per layer, lowest first."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = []
    for line in section.splitlines():
        match = LAYERS.match(line.strip())
        if match:
            layers.append(re.findall(r"`([^`]+)`", match[1]))
    return layers


def unit_of(module: str, units: dict[str, int]) -> str:
    """The longest unit of the layer list that ``module`` belongs to."""
    name = module.removeprefix("leanfit.") if module != "leanfit" else "leanfit"
    best = None
    for unit in units:
        if name == unit or name.startswith(unit + ".") or (unit == "leanfit" and module == unit):
            best = unit if best is None or len(unit) > len(best) else best
    if best is None:
        raise AssertionError(f"{module} is in no layer of docs/architecture.md")
    return best


def test_no_import_cycles():
    edges = {m: {t for t, _, _ in found if t != m} for m, found in graph().items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_no_private_names_across_packages():
    bad = [
        f"{m}:{line} imports {name} from {t}"
        for m, found in graph().items()
        for t, name, line in found
        if name and is_private(name) and package_of(t) != package_of(m)
    ]
    assert not bad, bad


def test_imports_go_down_the_layers():
    layers = layer_list()
    assert len(layers) >= 8, "docs/architecture.md lists the layers as '1. `unit`, ...'"
    units = {unit: i for i, names in enumerate(layers) for unit in names}
    bad = []
    for module, found in graph().items():
        mine = unit_of(module, units)
        for target, _, line in found:
            theirs = unit_of(target, units)
            if theirs != mine and units[theirs] >= units[mine]:
                bad.append(f"{module}:{line} ({mine}, layer {units[mine] + 1}) imports {target}")
    assert not bad, "\n".join(bad)


def test_no_module_over_500_lines():
    long = {
        str(p.relative_to(SOURCE)): n
        for p in SOURCE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert not long, long


@pytest.mark.parametrize("probe", ["cycle", "layer"])
def test_the_checks_can_fail(probe, monkeypatch):
    """An import against the rules, added to the real graph, is caught."""
    real = graph()
    added = (
        ("leanfit.errors", "leanfit.cli")
        if probe == "cycle"
        else ("leanfit.io.scan", "leanfit.model")
    )
    fake = {**real, added[0]: [*real[added[0]], (added[1], None, 1)]}
    monkeypatch.setitem(globals(), "graph", lambda: fake)
    check = test_no_import_cycles if probe == "cycle" else test_imports_go_down_the_layers
    with pytest.raises(AssertionError):
        check()


def test_importing_leanfit_loads_no_model_or_dataframe_library():
    """inspect pays only for Polars and NumPy: the model libraries load on first use
    (XGBoost and scikit-learn then without pandas and pyarrow, see models.registry)."""
    import subprocess
    import sys

    code = (
        "import sys, leanfit, leanfit.cli; from leanfit.schema import inspect; "
        "print(sorted(m for m in ('pandas', 'pyarrow', 'sklearn', 'xgboost') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
