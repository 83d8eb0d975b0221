"""Pure. Errors of the UICC side: a card refusing a command, with its status word explained.

``CardRefused`` is a failed check (exit 1), not bad input: the command was well formed and the
card said no (PIN wrong or blocked, file not found, security status not satisfied…). Spec
outcomes of AUTHENTICATE (sync failure, MAC failure) are results, never this error.
"""

from __future__ import annotations

from trelab.errors import CheckFailed

from .sw import explain_sw

__all__ = ["CardRefused", "NoUsimApplication"]


class CardRefused(CheckFailed):
    """The card answered a status word other than success; ``.sw`` keeps it.

    The message names the operation and explains the SW (``VERIFY PIN: 63C2 verification
    failed, 2 retries remaining``) and never carries the command's data (a PIN).
    """

    def __init__(self, operation: str, sw: int) -> None:
        self.operation = operation
        self.sw = sw
        hint = _HINTS.get(sw, "")
        super().__init__(f"{operation}: card answered {sw:04X} ({explain_sw(sw)}){hint}")


#: What a user does about the status words that have one remedy.
_HINTS = {
    0x6982: " — PIN1 is enabled and not verified: pass --pin (or $TRELAB_CARD_PIN)",
    0x6983: " — PIN1 is blocked: `trelab card unblock --puk PUK --new-pin PIN`",
}


class NoUsimApplication(CheckFailed):
    """EF.DIR lists no USIM application (AID A0000000871002…): not a USIM."""
