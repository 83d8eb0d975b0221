"""Pure. Errors of the operator side, under trelab's one tree (:mod:`trelab.errors`).

::

    CheckFailed (exit 1)
    ├── RemoteProtocolError      a malformed, reordered, replayed or mis-bound message
    ├── SignatureInvalid         a COSE_Sign1 signature does not verify for the named signer
    ├── Refused(code)            a role said no: unknown CA, revoked device, stale verdict,
    │                            wrong SHO, MID not ACTIVE … (``code`` is a short code)
    └── ServerNotTrusted         the network's TLS certificate is not from the pinned CA or
                                 does not name the host dialled
    BadInput (exit 2)
    └── BadConfig                the network configuration file is malformed
    Unavailable (exit 3)         a part the role needs (e.g. the MID package builder) is absent

Messages name the check, never key material, K, OPc, XRES or credential secrets.
"""

from __future__ import annotations

from trelab.errors import (
    BadInput,
    CheckFailed,
    LocalProtocolError,
    RemoteProtocolError,
    Unavailable,
)

__all__ = [
    "BadConfig",
    "BadInput",
    "CheckFailed",
    "LocalProtocolError",
    "Refused",
    "RemoteProtocolError",
    "ServerNotTrusted",
    "SignatureInvalid",
    "Unavailable",
]


class SignatureInvalid(CheckFailed):
    """A signed message (Verdict, MidPackage, LifecycleCommand) does not verify (RFC 9052 §4.4)."""


class Refused(CheckFailed):
    """A role refused a well-formed request; ``code`` is a stable short code for the audit
    trail and the Error message (``unknown-ca``, ``revoked``, ``stale-verdict``, …) — the same
    attribute every trelab error with a short code has."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def reason(self) -> str:
        """The earlier name of :attr:`code`."""
        return self.code


class ServerNotTrusted(CheckFailed):
    """The server at the network URL did not prove to be the network the device pinned: its
    TLS certificate does not chain to the pinned CA, or names another host."""


class BadConfig(BadInput):
    """The network configuration (file, keys, reference values) is malformed."""
