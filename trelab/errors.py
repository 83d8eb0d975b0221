"""Pure. The one error tree of trelab, and what each branch means for the CLI exit code.

::

    TrelabError (exit 1)
    ├── BadInput (also ValueError; exit 2)   malformed hex, file, option, message
    ├── CheckFailed (exit 1)                 a verification said no
    │   ├── MacMismatch
    │   └── RemoteProtocolError              the peer broke a protocol rule
    ├── Unavailable (exit 3)                 a lab part or hardware is missing or down
    └── LocalProtocolError (exit 4)          we broke a protocol rule: a bug

Messages never carry secrets: name the check or the field, never the bytes.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadInput",
    "CheckFailed",
    "LocalProtocolError",
    "MacMismatch",
    "RemoteProtocolError",
    "TrelabError",
    "Unavailable",
]


class TrelabError(Exception):
    """Base of every error trelab raises on purpose."""

    exit_code: ClassVar[int] = 1


class BadInput(TrelabError, ValueError):
    """The caller gave something malformed; nothing was changed. ``field`` names what was
    malformed as the library knows it (``rand``, ``pcr_selection``); the CLI shows it as the
    option that carried it (``--rand``)."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message if field is None else f"{field}: {message}")
        self.field = field
        self.detail = message


class CheckFailed(TrelabError):
    """A verification failed (signature, MAC, quote, card refusal)."""

    exit_code = 1


class MacMismatch(CheckFailed):
    """A MAC did not verify (compared in constant time)."""


class RemoteProtocolError(CheckFailed):
    """The peer sent something the protocol does not allow here."""


class Unavailable(TrelabError):
    """A lab component or piece of hardware is absent, stopped or unreachable."""

    exit_code = 3

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message if fix is None else f"{message} (fix: {fix})")
        self.fix = fix


class LocalProtocolError(TrelabError):
    """We broke a protocol rule ourselves: a bug in trelab."""

    exit_code = 4
