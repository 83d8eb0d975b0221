"""Pure. Errors of the MID store (TPM TRE), under trelab's one tree (:mod:`trelab.errors`).

::

    CheckFailed (exit 1)
    ├── PackageRejected     tampered, replayed, for another TPM, or inconsistent with its manifest
    ├── MidRefused          the TPM refused to use K (PCRs changed, MID not ACTIVE, policy)
    ├── PinRejected         wrong PIN: the TPM's dictionary-attack counter went up
    ├── TpmLockedOut        dictionary-attack lockout: refused even with the right PIN
    └── RegistryRollback    the host registry is older than the TPM's REG_CTR says
    BadInput (exit 2)
    └── UnknownMid          no MID with that id in the registry

Messages name the check, never K, OPc, TOPc, PINs or other secrets.
"""

from __future__ import annotations

from trelab.errors import BadInput, CheckFailed

__all__ = [
    "MidRefused",
    "PackageRejected",
    "PinRejected",
    "RegistryRollback",
    "TpmLockedOut",
    "UnknownMid",
]


class PackageRejected(CheckFailed):
    """A MID package failed a device-side check or the TPM refused to import it; nothing
    was changed (TR 33.812 §7.1.2.1: secure provisioning — integrity, freshness, binding)."""


class MidRefused(CheckFailed):
    """The TPM refused to authorise K or its sealed data: the platform state (PCRs), the
    lifecycle state (MID_STATE) or the authorisation policy does not hold."""


class PinRejected(CheckFailed):
    """The PIN did not match K's authValue (counts towards dictionary-attack lockout)."""


class TpmLockedOut(CheckFailed):
    """The TPM is in dictionary-attack lockout: every DA-protected key is refused until the
    recovery time passes or the lockout owner resets it."""


class RegistryRollback(CheckFailed):
    """The registry file is not the last one written (an older copy was restored, or the TPM
    was cleared): using it could accept a replayed AUTN."""


class UnknownMid(BadInput):
    """No MID with that id in the registry."""
