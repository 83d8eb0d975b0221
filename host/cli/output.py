"""Edge: how a verb's result or error reaches the user (text or ``--json``) and the exit code."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trelab.errors import TrelabError

__all__ = ["JSON_VERSION", "Outcome", "add_json_flag", "run_verb"]

JSON_VERSION = 1


@dataclass
class Outcome:
    """What a verb produced: data for ``--json``, lines for a person, and the exit code."""

    data: dict[str, Any]
    text: str = ""
    exit_code: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


Verb = Callable[[argparse.Namespace], Outcome]


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def run_verb(args: argparse.Namespace) -> int:
    """Run ``args.func``, print its outcome, and turn trelab errors into exit codes."""
    verb: Verb = args.func
    as_json = bool(getattr(args, "json", False))
    try:
        outcome = verb(args)
    except TrelabError as exc:
        print(f"trelab: error: {exc}", file=sys.stderr)
        if as_json:
            _print_json({"error": {"type": type(exc).__name__, "message": str(exc)}})
        return exc.exit_code
    except KeyboardInterrupt:
        print("trelab: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: show it in full
        traceback.print_exc()
        return 4
    if as_json:
        _print_json(outcome.data)
    elif outcome.text:
        print(outcome.text)
    return outcome.exit_code
