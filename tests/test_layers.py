"""Guard rails of the layout: layers (no upward import), docstring examples, old pickles still load."""

import ast
import doctest
import importlib
import pickle
import pkgutil
from pathlib import Path

import pytest
import torch

import fxtract

SRC = Path(fxtract.__file__).resolve().parent

# Lowest first; a module may import from its own layer or below (README, "Layout").
LAYERS = [
    {"_errors", "_options", "_select", "_info", "_checks"},
    {"_inputs", "_runtime", "_model_state", "_fake", "_naming", "_graph_module"},
    {"_strategies"},
    {"_describe", "_feature_info"},
    {"_api"},
    {"store", "_data", "_extract", "_distributed", "_rank_plan", "viz"},
    {"_cli"},
]
# Shims and the package: the pickled import paths of 0.1, the lazy map, ``python -m fxtract``.
TOP = {"__init__", "__main__", "_export", "_hooks"}
# Within the dataset tier, the store is the lowest: torch-free vocabulary only.
ONLY = {"store": {0}}
STRATEGY_FAMILIES = {
    "fx": {"fx", "fx_passes"},
    "export": {"export", "export_trace", "export_graph"},
    "hooks": {"hooks"},
}


def _layer(top: str) -> int:
    if top in TOP:
        return len(LAYERS)
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"fxtract.{top} is in no layer: add it to LAYERS (and to README's Layout)")


def _modules(root: Path = SRC) -> list[Path]:
    return sorted(p for p in root.rglob("*.py"))


def _dotted(path: Path, root: Path = SRC) -> list[str]:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def _imports(path: Path, root: Path = SRC) -> list[tuple[int, list[str]]]:
    """``(line, fxtract-relative dotted target)`` of every import, those inside functions included."""
    tree = ast.parse(path.read_text())
    exempt = _type_checking_lines(tree)
    here = _dotted(path, root)
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in exempt:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else list(package)
                mod = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "fxtract":
                mod = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                sub = root.joinpath(*mod, alias.name)
                if node.module is None and (sub.is_dir() or sub.with_suffix(".py").exists()):
                    out.append((node.lineno, [*mod, alias.name]))  # ``from . import fx``: the module
                elif mod:
                    out.append((node.lineno, mod))
                # else an attribute of the package itself (``__version__``): torch-free, allowed
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fxtract":
                    out.append((node.lineno, alias.name.split(".")[1:]))
    return out


def _violations(root: Path = SRC) -> list[str]:
    bad = []
    for path in _modules(root):
        here = _dotted(path, root)
        if not here:  # fxtract/__init__.py: the lazy map may name anything
            continue
        mine = _layer(here[0])
        for line, target in _imports(path, root):
            theirs = _layer(target[0])
            where = f"{path.relative_to(root)}:{line} imports fxtract.{'.'.join(target)}"
            module = root.joinpath(*target)
            if not (module.is_dir() or module.with_suffix(".py").exists()):
                bad.append(where + " (no such module)")
            if theirs > mine or (here[0] in ONLY and theirs not in ONLY[here[0]] and target[0] != here[0]):
                bad.append(where)
            if here[0] == target[0] == "_strategies" and len(here) > 1 and len(target) > 1:
                mine_f = next((f for f, ms in STRATEGY_FAMILIES.items() if here[1] in ms), None)
                theirs_f = next((f for f, ms in STRATEGY_FAMILIES.items() if target[1] in ms), None)
                if mine_f and theirs_f and mine_f != theirs_f:
                    bad.append(where + " (fx, export and hooks never import each other)")
    return bad


def test_no_module_imports_from_a_higher_layer():
    assert _violations() == []


def test_the_layer_check_sees_imports_inside_functions_and_exempts_type_checking(tmp_path):
    (tmp_path / "_strategies").mkdir()
    (tmp_path / "_errors.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._api import describe\n"
    )
    (tmp_path / "_naming.py").write_text("def f():\n    from fxtract._api import describe\n")
    (tmp_path / "_strategies" / "hooks.py").write_text("from . import fx\nfrom .export import X\n")
    (tmp_path / "_strategies" / "fx.py").write_text("from .base import Request\n")
    (tmp_path / "_strategies" / "base.py").write_text("from .._model_state import snapshot\n")
    (tmp_path / "_strategies" / "export.py").write_text("")
    (tmp_path / "_api.py").write_text("")
    assert _violations(tmp_path) == [
        "_naming.py:2 imports fxtract._api",
        "_strategies/base.py:1 imports fxtract._model_state (no such module)",
        "_strategies/hooks.py:1 imports fxtract._strategies.fx (fx, export and hooks never import each other)",
        "_strategies/hooks.py:2 imports fxtract._strategies.export (fx, export and hooks never import each other)",
    ]


def test_no_module_is_much_over_700_lines():
    long = {str(p.relative_to(SRC)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 750}
    assert long == {}


def _all_modules() -> list[str]:
    names = ["fxtract"]
    for info in pkgutil.walk_packages([str(SRC)], prefix="fxtract."):
        if not info.name.startswith("fxtract._cli"):
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _all_modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


def test_extractors_pickled_by_0_1_still_load():
    data = pickle.loads((Path(__file__).parent / "data" / "extractors_0_1.pkl").read_bytes())
    assert set(data["extractors"]) == {"fx", "export", "hooks"}
    x = data["input"]
    for strategy, extractor in data["extractors"].items():
        assert extractor.strategy == strategy
        with torch.no_grad():
            got = extractor(x)
        assert list(got) == list(data["expected"][strategy])
        for key, want in data["expected"][strategy].items():
            torch.testing.assert_close(got[key], want)
