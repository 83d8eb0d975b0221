"""Edge: how a verb's result or error reaches the user (text or ``--json``) and the exit code."""

from __future__ import annotations

import argparse
import copy
import json
import os
import select
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trelab.errors import BadInput, TrelabError

__all__ = [
    "JSON_VERSION",
    "Outcome",
    "add_json_flag",
    "exit_like_sigpipe",
    "key_value_lines",
    "run_verb",
    "stdout_gone",
]

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


def key_value_lines(data: dict[str, Any]) -> str:
    """``key  value`` lines, keys padded to one width, lists joined with commas."""
    width = max((len(k) for k in data), default=0)
    out = []
    for key, value in data.items():
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "-"
        out.append(f"{key:<{width}}  {value}")
    return "\n".join(out)


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def stdout_gone() -> bool:
    """True when stdout is a pipe whose reader has left (``trelab mid list | head -1``)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError):
        return False


def exit_like_sigpipe() -> None:
    """Leave as a Unix tool does when its reader is gone: silently, killed by SIGPIPE (the
    shell shows 141). Python ignores SIGPIPE, so without this every write to a closed pipe
    becomes a BrokenPipeError traceback."""
    with open(os.devnull, "wb") as devnull:  # the interpreter flushes stdout at exit again
        os.dup2(devnull.fileno(), sys.stdout.fileno())
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    raise SystemExit(128 + signal.SIGPIPE)  # pragma: no cover - where SIGPIPE cannot kill


def error_json(exc: TrelabError | str, *, kind: str | None = None) -> dict[str, Any]:
    """The ``{"error": …}`` object ``--json`` prints on stdout for any failure."""
    if isinstance(exc, TrelabError):
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}
    return {"error": {"type": kind or "Error", "message": exc}}


def as_option(exc: TrelabError, args: argparse.Namespace) -> TrelabError:
    """A library's bad field named as the option that carried it: ``rand: …`` → ``--rand: …``
    when this verb has an option for that field."""
    if isinstance(exc, BadInput) and exc.field and exc.field in vars(args):
        flagged = copy.copy(exc)  # the same type (BadConfig, …) for --json
        flagged.field = "--" + exc.field.replace("_", "-")
        flagged.args = (f"{flagged.field}: {exc.detail}",)
        return flagged
    return exc


def run_verb(args: argparse.Namespace) -> int:
    """Run ``args.func``, print its outcome, and turn trelab errors into exit codes."""
    verb: Verb = args.func
    as_json = bool(getattr(args, "json", False))
    try:
        outcome = verb(args)
    except TrelabError as raised:
        exc = as_option(raised, args)
        print(f"trelab: error: {exc}", file=sys.stderr)
        if as_json:
            _print_json(error_json(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print("trelab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if stdout_gone():  # a verb printing progress to a closed pipe
            exit_like_sigpipe()
        traceback.print_exc()
        return 4
    except Exception:  # a bug: show it in full
        traceback.print_exc()
        return 4
    try:
        if as_json:
            _print_json(outcome.data)
        elif outcome.text:
            print(outcome.text)
        sys.stdout.flush()
    except BrokenPipeError:
        exit_like_sigpipe()
    return outcome.exit_code
