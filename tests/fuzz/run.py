"""``python -m tests.fuzz.run TARGET [libFuzzer flags] [CORPUS_DIR ...]``: one harness under
atheris, with the project's packages instrumented for coverage.

``python -m tests.fuzz.run --corpus`` rewrites the committed starting corpora (``corpus/<target>/``)
from each harness's ``starting_inputs()``; ``--list`` names the targets.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
PACKAGES = [
    "trelab",
    "aka",
    "tpm",
    "uicc",
    "firmware_stubs",
    "host",
    "protocol",
    "network",
    "lab",
    "bench",
    "threats",
]
TARGETS = sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py"))


def write_corpus() -> None:
    for target in TARGETS:
        module = importlib.import_module(f"tests.fuzz.fuzz_{target}")
        out = CORPUS / target
        out.mkdir(parents=True, exist_ok=True)
        for old in out.iterdir():
            old.unlink()
        inputs = list(module.starting_inputs())
        for item in inputs:
            (out / hashlib.sha1(item).hexdigest()).write_bytes(item)
        print(f"{target}: {len(inputs)} starting inputs")


def _warm_up(module: object, target: str) -> None:
    """Run the starting inputs once, so that modules the code imports inside functions load now."""
    for path in sorted((CORPUS / target).iterdir()):
        with contextlib.suppress(Exception):  # findings are for the fuzzing run to report
            module.test_one_input(path.read_bytes())  # type: ignore[attr-defined]


def main() -> None:
    if sys.argv[1:2] == ["--list"]:
        print("\n".join(TARGETS))
        return
    if sys.argv[1:2] == ["--corpus"]:
        write_corpus()
        return
    import atheris

    target, flags = sys.argv[1], sys.argv[2:]
    if target not in TARGETS:
        raise SystemExit(f"unknown fuzz target {target!r}; targets: {', '.join(TARGETS)}")
    with atheris.instrument_imports(include=PACKAGES):
        module = importlib.import_module(f"tests.fuzz.fuzz_{target}")
        _warm_up(module, target)  # what the code under test imports lazily is instrumented too
    if hasattr(module, "prepare"):
        module.prepare()
    atheris.Setup([sys.argv[0], *flags], module.test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
