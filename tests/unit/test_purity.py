"""Pure modules stay pure: no sockets, serial, PC/SC, TPM, subprocesses or clocks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {"socket", "serial", "smartcard", "tpm2_pytss", "subprocess", "time"}


def pure_modules() -> list[Path]:
    """Modules whose docstring says "Pure." are the sans-I/O cores."""
    found = []
    for path in sorted(REPO.glob("*/**/*.py")):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if doc.startswith("Pure"):
            found.append(path)
    return found


def test_there_are_pure_modules() -> None:
    names = {p.relative_to(REPO).as_posix() for p in pure_modules()}
    assert {"aka/milenage.py", "aka/sqn.py", "bench/stats.py"} <= names


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_pure_module_imports_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path}: imports {name}"
