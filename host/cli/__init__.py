"""Edge: the ``trelab`` command line — ``trelab <noun> <verb>``, one function per verb.

Each noun module exposes ``register(subparsers)``; a verb is a function ``(args) -> Outcome``.
Errors are mapped to exit codes once, here (0 ok, 1 check failed, 2 usage or bad input,
3 lab part unavailable, 4 bug).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from host.cli import output
from host.cli.output import Outcome

__all__ = ["Outcome", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage mistakes as one line and exit code 2 (and, when the command
    line asked for ``--json``, the same ``{"error": …}`` object as every other failure)."""

    json_requested = False  # set by main() from the raw command line

    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.removeprefix("trelab").strip()
        prefix = f"{where}: " if where else ""
        print(f"trelab: error: {prefix}{message}", file=sys.stderr)
        if _Parser.json_requested:
            try:
                sys.stdout.write(
                    json.dumps(output.error_json(f"{prefix}{message}", kind="UsageError")) + "\n"
                )
                sys.stdout.flush()
            except BrokenPipeError:
                output.exit_like_sigpipe()
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
    raw = list(sys.argv[1:] if argv is None else argv)
    _Parser.json_requested = "--json" in raw
    parser = build_parser()
    try:
        args = parser.parse_args(raw)
    except BrokenPipeError:  # `trelab --help | head -1`
        output.exit_like_sigpipe()
        raise
    return output.run_verb(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
