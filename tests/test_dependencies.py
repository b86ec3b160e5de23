"""Every third-party import is declared in pyproject.toml, so that a fresh machine runs what a developer's runs.

A package installed by hand makes the tests pass on one machine and fail on a
fresh one. The check reads the imports of every Python file (and the Python
code of the Markdown docs), maps each top-level module to the distribution
that installs it (``importlib.metadata.packages_distributions``) and compares
with ``pyproject.toml``: tests, examples and docs must be covered by the
dependencies plus the ``test`` extra (the README's test command installs
``.[test]``); the package and the benchmarks by the dependencies plus any
extra. A declared requirement covers what it pulls in (``dask[distributed]``
covers ``distributed``).
"""

import ast
import importlib
import importlib.metadata as md
import re
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement

# The standard library's from Python 3.11; tomli (the test extra's, on 3.10) before.
tomllib = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")

ROOT = Path(__file__).resolve().parents[1]
#: Folders whose code the README's test command runs: dependencies plus the ``test`` extra.
STRICT = ("tests", "examples", "docs")
SKIP = {".git", ".venv", "venv", "build", "_build", "node_modules", ".tox"}


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements):
    """The distributions named and, recursively, what each requires as installed here.

    A requirement's extras count (``dask[distributed]`` brings ``distributed``);
    another package's optional extras do not.
    """
    seen, todo = set(), [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = _norm(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            needs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in needs:
            need = Requirement(text)
            if need.marker is None or any(need.marker.evaluate({"extra": extra})
                                          for extra in ("", *requirement.extras)):
                todo.append(need)
    return {name for name, _ in seen}


def _python_sources(path):
    """The Python code of a file: all of a ``.py``; the ``python`` blocks and doctests of a ``.md``."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".md":
        return [text]
    blocks = re.findall(r"```(?:python|py|\{code-cell\}[^\n]*)\n(.*?)```", text, re.S)
    doctest = "\n".join(line.strip()[4:] for line in text.splitlines() if line.strip().startswith((">>> ", "... ")))
    return [textwrap.dedent(block) for block in blocks] + [doctest]


def _top_level_imports(path):
    for source in _python_sources(path):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                yield from (alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield node.module.split(".")[0]


def undeclared_imports(root):
    """``"file: why"`` for each third-party import of ``root`` that its pyproject.toml does not declare."""
    root = Path(root)
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    base = list(project.get("dependencies", []))
    for_tests = _closure(base + extras.get("test", [])) | {_norm(project["name"])}
    for_any = _closure(base + [r for rs in extras.values() for r in rs]) | {_norm(project["name"])}
    distributions = {module: {_norm(d) for d in dists} for module, dists in md.packages_distributions().items()}
    files = [p for p in sorted([*root.rglob("*.py"), *root.rglob("*.md")])
             if not SKIP & set(p.relative_to(root).parts)
             and not any(part.endswith(".egg-info") for part in p.relative_to(root).parts)]
    local = {p.stem for p in files if p.suffix == ".py"} | {p.name for p in root.rglob("*") if p.is_dir()}
    standard = set(sys.stdlib_module_names) | {"__future__"}
    problems = []
    for path in files:
        relative = path.relative_to(root)
        strict = relative.parts[0] in STRICT or path.name == "conftest.py"
        allowed = for_tests if strict else for_any
        for module in sorted(set(_top_level_imports(path)) - standard - local):
            provided_by = distributions.get(module)
            if not provided_by:
                problems.append(f"{relative}: imports {module}, which no installed distribution provides")
            elif not provided_by & allowed:
                where = "the dependencies or the test extra" if strict else "the dependencies or any extra"
                problems.append(f"{relative}: imports {module} ({', '.join(sorted(provided_by))}), "
                                f"not declared in {where}")
    return problems


def test_every_third_party_import_is_declared():
    assert undeclared_imports(ROOT) == []


def _project(tmp_path, dependencies, extras):
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "demo"\ndependencies = {dependencies!r}\n'
        "[project.optional-dependencies]\n" + "".join(f"{k} = {v!r}\n" for k, v in extras.items()))
    (tmp_path / "demo").mkdir()
    (tmp_path / "tests").mkdir()
    return tmp_path


@pytest.mark.parametrize("undeclared", ["hypothesis", "pytest"])
def test_an_undeclared_test_import_is_reported(tmp_path, undeclared):
    root = _project(tmp_path, ["numpy"], {"test": ["pytest" if undeclared == "hypothesis" else "hypothesis"]})
    (root / "tests" / "test_x.py").write_text(f"import numpy\nimport {undeclared}\nfrom demo import thing\n")
    problems = undeclared_imports(root)
    assert len(problems) == 1 and problems[0].startswith(f"tests/test_x.py: imports {undeclared} ")


def test_a_test_import_declared_only_in_another_extra_is_reported(tmp_path):
    root = _project(tmp_path, ["numpy"], {"test": ["pytest"], "plot": ["hypothesis"]})
    (root / "tests" / "test_x.py").write_text("import hypothesis\n")
    (root / "demo" / "core.py").write_text("import hypothesis\n")  # the package may use any extra
    assert undeclared_imports(root) == [
        "tests/test_x.py: imports hypothesis (hypothesis), not declared in the dependencies or the test extra"]


def test_doc_code_and_doctests_are_read_and_requirements_cover_what_they_pull_in(tmp_path):
    root = _project(tmp_path, ["numpy"], {"test": ["pytest"]})
    (root / "docs").mkdir()
    (root / "docs" / "guide.md").write_text(
        "```python\nimport numpy\nimport _pytest\nimport pluggy\n```\n\n>>> import hypothesis\n")
    assert undeclared_imports(root) == [
        "docs/guide.md: imports hypothesis (hypothesis), not declared in the dependencies or the test extra"]
