"""Edge: the ``trelab`` command line — ``trelab <noun> <verb>``, one function per verb.

Each noun module exposes ``register(subparsers)``; a verb is a function ``(args) -> Outcome``.
Errors are mapped to exit codes once, here (0 ok, 1 check failed, 2 usage or bad input,
3 lab part unavailable, 4 bug).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from host.cli import output
from host.cli.output import Outcome

__all__ = ["Outcome", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage mistakes as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.removeprefix("trelab").strip()
        prefix = f"{where}: " if where else ""
        print(f"trelab: error: {prefix}{message}", file=sys.stderr)
        raise SystemExit(2)


def _noun_modules() -> list[str]:
    """Every ``host/cli/*_cmd.py``: a noun is added by dropping its module here."""
    import pkgutil

    import host.cli

    return sorted(
        m.name for m in pkgutil.iter_modules(host.cli.__path__) if m.name.endswith("_cmd")
    )


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(
        prog="trelab",
        description="trelab: TR 33.812 lab — TPM and UICC TREs, AKA, attestation, benchmarks",
    )
    nouns = parser.add_subparsers(dest="noun", metavar="NOUN", parser_class=_Parser)
    nouns.required = True
    for name in _noun_modules():
        importlib.import_module(f"host.cli.{name}").register(nouns)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return output.run_verb(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
