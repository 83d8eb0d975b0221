"""``python -m tests.fuzz.run TARGET [libFuzzer flags] [CORPUS_DIR ...]``: one harness under
atheris, with the project's packages instrumented for coverage.

``python -m tests.fuzz.run --seeds`` rewrites the committed seed corpora (``corpus/<target>/``)
from each harness's ``seeds()``; ``--list`` names the targets.
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


def write_seeds() -> None:
    for target in TARGETS:
        module = importlib.import_module(f"tests.fuzz.fuzz_{target}")
        out = CORPUS / target
        out.mkdir(parents=True, exist_ok=True)
        for old in out.iterdir():
            old.unlink()
        seeds = list(module.seeds())
        for seed in seeds:
            (out / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        print(f"{target}: {len(seeds)} seeds")


def _warm_up(module: object, target: str) -> None:
    """Run the seeds once, so that modules the code imports inside functions load now."""
    for seed in sorted((CORPUS / target).iterdir()):
        with contextlib.suppress(Exception):  # findings are for the fuzzing run to report
            module.test_one_input(seed.read_bytes())  # type: ignore[attr-defined]


def main() -> None:
    if sys.argv[1:2] == ["--list"]:
        print("\n".join(TARGETS))
        return
    if sys.argv[1:2] == ["--seeds"]:
        write_seeds()
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
