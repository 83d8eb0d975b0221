"""Pure modules stay pure: no sockets, serial, PC/SC, TPM, subprocesses or clocks — neither
imported directly nor reached through another trelab module (every import counts, also those
inside functions)."""

from __future__ import annotations

import ast
import tomllib
from functools import cache
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {"socket", "serial", "smartcard", "tpm2_pytss", "subprocess", "time"}


def _config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]


ROOTS: list[str] = _config()["root_packages"]


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*ROOTS, include_external_packages=True, cache_dir=None)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def pure_modules() -> list[Path]:
    """Modules whose docstring says "Pure." are the sans-I/O cores."""
    found = []
    for path in sorted(REPO.glob("*/**/*.py")):
        if ".venv" in path.parts or "tests" in path.parts or "build" in path.parts:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if doc.startswith("Pure"):
            found.append(path)
    return found


def test_there_are_pure_modules() -> None:
    names = {p.relative_to(REPO).as_posix() for p in pure_modules()}
    assert {"aka/milenage.py", "aka/sqn.py", "bench/stats.py"} <= names


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_pure_module_reaches_no_io(path: Path) -> None:
    module = module_name(path)
    reached = graph().find_upstream_modules(module)
    for name in sorted(FORBIDDEN & reached):
        chain = graph().find_shortest_chain(importer=module, imported=name)
        pytest.fail(f"{module} reaches {name}: {' -> '.join(chain or ())}")


def test_the_graph_counts_imports_inside_functions() -> None:
    """``trelab threats`` imports the suite only when it runs (inside a function)."""
    assert graph().direct_import_exists(importer="host.cli.threats_cmd", imported="threats.main")


def test_every_package_and_agent_module_has_a_layer() -> None:
    """A new top-level package or host module must be placed in the layer contract."""
    layers = next(c for c in _config()["contracts"] if c["id"] == "layers")["layers"]
    placed = {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}
    packages = {p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name != "tests"}
    assert packages - {"host"} <= placed
    agent = {module_name(p) for p in (REPO / "host").glob("*.py") if p.name != "__init__.py"} | {
        "host.cli"
    }
    assert agent <= placed
