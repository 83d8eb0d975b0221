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
        print(f"trelab: error: {self.prog.removeprefix('trelab ')}: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from host.cli import aka_cmd, bench_cmd, lab_cmd

    parser = _Parser(prog="trelab", description=__doc__.splitlines()[0] if __doc__ else None)
    nouns = parser.add_subparsers(dest="noun", metavar="NOUN", parser_class=_Parser)
    nouns.required = True
    for module in (lab_cmd, aka_cmd, bench_cmd):
        module.register(nouns)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return output.run_verb(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
