"""The layout's rules, checked on the code itself, and model files of 0.1 loading under today's layout.

import-linter (``lint-imports``, in the README's test command) checks the layers
and the torch-free packages; these tests check what it cannot.
"""

import ast
from pathlib import Path

import numpy as np
import pytest

from skcovid import load_model

from conftest import make_images

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skcovid"
DATA = Path(__file__).resolve().parent / "data"
#: Where third-party private names may be imported.
COMPAT = PACKAGE / "_core" / "compat.py"
#: What a deferred (function-level) import must say it defers.
DEFERRED = ("PyTorch", "scikit-learn", "optional", "heavy")


def _python_files(*folders):
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if "_build" not in p.parts)


def _imports(path):
    """``(node, module, names, inside_a_function)`` of every ``from ... import`` of a file."""
    tree = ast.parse(path.read_text())
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f)}
    return [(node, node.module or "", [a.name for a in node.names], id(node) in in_function)
            for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level]


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in _python_files("skcovid")
            if (n := len(p.read_text().splitlines())) > 500}
    assert not long


def test_few_private_modules_at_the_top():
    flat = sorted(p.name for p in PACKAGE.glob("_*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(flat) <= 8, flat


@pytest.mark.parametrize("folder", ["skcovid", "tests", "benchmarks", "examples", "tools"])
def test_no_private_name_is_imported_from_another_module(folder):
    offending = [f"{path.relative_to(ROOT)}:{node.lineno}: from {module} import {name}"
                 for path in _python_files(folder) for node, module, names, _ in _imports(path)
                 for name in names if name.startswith("_") and not name.startswith("__")
                 and path != COMPAT]
    assert not offending


def test_third_party_private_modules_enter_through_one_module():
    offending = [f"{path.relative_to(ROOT)}:{node.lineno}: {module}"
                 for path in _python_files("skcovid") for node, module, _, _ in _imports(path)
                 if not module.startswith("skcovid") and any(part.startswith("_") for part in module.split("."))
                 and path != COMPAT]
    assert not offending


def test_deferred_imports_say_what_they_defer():
    """A function-level import defers PyTorch, scikit-learn, a heavy or an optional package, and says so."""
    offending = []
    for path in _python_files("skcovid"):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not any(
                        word in lines[node.lineno - 1] for word in DEFERRED):
                    offending.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not offending


def test_public_faces_only_re_export():
    for face in ("metrics", "report", "explain", "model_selection"):
        tree = ast.parse((PACKAGE / f"{face}.py").read_text())
        kinds = {type(node).__name__ for node in tree.body}
        assert kinds <= {"Expr", "ImportFrom", "Assign"}, (face, kinds)


@pytest.mark.parametrize("name", ["transfer-0.1.skcovid", "pruned-0.1.skcovid", "transfer-0.1.joblib"])
def test_model_files_of_0_1_predict_as_they_did(name):
    """Safe files and trusted pickles written by 0.1 (tests/data/README.md) give 0.1's probabilities."""
    model = load_model(DATA / name, trusted=name.endswith(".joblib"), runtime="torch")
    expected = np.load(DATA / f"{name.split('-0.1')[0]}-0.1-proba.npy")
    np.testing.assert_allclose(model.predict_proba(make_images()[0]), expected, rtol=0, atol=1e-6)


def test_old_module_names_exist_only_while_a_trusted_pickle_loads():
    import sys

    load_model(DATA / "transfer-0.1.joblib", trusted=True)
    assert "skcovid._classifier" not in sys.modules
