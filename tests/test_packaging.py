"""Hybrid AI as a package: what it imports is declared, its layers hold, and a wheel installed with
the lock into a fresh virtual environment outside the checkout answers a question."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO

FIRST_PARTY = {"hybrid", "graphs", "retrieval", "ui", "data", "tests"}
# Libraries one optional command imports, and only there: (the extra declaring them, that module).
OPTIONAL = {
    "schemathesis": ("fuzz", "hybrid/evals/fuzz.py"),
    "hypothesis": ("fuzz", "hybrid/evals/fuzz.py"),
}
SOURCES = ("hybrid", "graphs", "retrieval", "ui")


def _imported_modules() -> dict[str, str]:
    """Every top-level module the shipped code imports, with one place that imports it (for a
    library of an optional command, a place outside that command's module if there is one)."""
    found: dict[str, str] = {}
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    module, where = name.split(".")[0], f"{path.relative_to(REPO)}:{node.lineno}"
                    optional = OPTIONAL.get(module)
                    if optional and not where.startswith(optional[1] + ":"):
                        found[module] = where  # imported outside its command: must be declared
                    else:
                        found.setdefault(module, where)
    return found


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.mark.unit
def test_every_directly_imported_library_is_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_normal(Requirement(spec).name) for spec in project["dependencies"]}
    extras = {
        name: {_normal(Requirement(spec).name) for spec in specs}
        for name, specs in project["optional-dependencies"].items()
    }
    distributions = importlib.metadata.packages_distributions()
    undeclared = []
    for module, where in _imported_modules().items():
        if module in FIRST_PARTY or module in sys.stdlib_module_names or module == "__future__":
            continue
        owners = {_normal(d) for d in distributions.get(module, [])}
        optional = OPTIONAL.get(module)
        if optional and where.startswith(optional[1] + ":") and owners & extras[optional[0]]:
            continue  # only its optional command imports it, and that command's extra declares it
        if not owners & declared:
            undeclared.append(
                f"{module} ({', '.join(sorted(owners)) or 'no distribution'}), imported at {where}"
            )
    assert not undeclared, "imported but not declared in pyproject.toml: " + "; ".join(undeclared)


@pytest.mark.unit
def test_the_import_layers_hold() -> None:
    linter = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([str(linter)], check=False, cwd=REPO, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "0 broken" in result.stdout


@pytest.mark.e2e
def test_the_wheel_installs_with_the_lock_outside_the_checkout_and_answers(tmp_path: Path) -> None:
    dist, venv, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    python, hybrid = str(venv / "bin" / "python"), str(venv / "bin" / "hybrid")
    wheelhouse = os.environ.get("HYBRID_WHEELHOUSE") or str(Path.home() / ".cache" / "hybrid" / "wheels")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    # Nothing of the checkout may leak in: no PYTHONPATH, no settings, another working directory.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRID_", "PYTHON"))}

    def run(command: list[str]) -> str:
        result = subprocess.run(command, check=False, capture_output=True, text=True, cwd=elsewhere, env=env)
        assert result.returncode == 0, f"{command[:4]}...: {result.stdout[-2000:]}{result.stderr[-3000:]}"
        return result.stdout

    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)])
    run([sys.executable, "-m", "venv", str(venv)])
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text().splitlines()
    torch = next(line.split("=", 1)[1] for line in bootstrap if line.startswith("TORCH_VERSION="))
    run([*pip, f"torch=={torch}"])
    run([*pip, "--find-links", wheelhouse, "-r", str(REPO / "requirements" / "lock.txt")])
    run([*pip, str(next(dist.glob("hybrid_ai-*.whl")))])

    env |= {"HYBRID_DATA_DIR": str(tmp_path / "data"), "HYBRID_CACHE": "off"}
    record = json.loads(run([hybrid, "ask", "What is the capital of France?", "--json"]))
    assert record["status"] in ("answered", "pending_review")
    assert record["route"]["router"].startswith("learned")  # the shipped router came with the wheel
    assert record["verifications"]
    shipped = run(
        [python, "-c", "import hybrid.settings as s; print(s.DEFAULT_ROUTER_PATH, s.DEFAULT_VERIFIER_PATH)"]
    )
    assert shipped.count(str(venv)) == 2
    assert str(REPO) not in shipped
