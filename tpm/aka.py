"""Edge: TPM, filesystem. One USIM-side AKA (TS 33.102 §6.3.3) with a MID whose K is in the TPM.

Order of work: lock the registry and check it against REG_CTR (no rollback); refuse a MID that
is not ACTIVE (the TPM refuses too for use-gated and operator-updatable MIDs, via PolicyNV);
load K (policies checked by the TPM); run :func:`aka.usim.usim_authenticate`; if the SQN state
moved, commit it to the registry *before* returning RES (a crash can lose an RES, never roll
SQN back); flush everything.

Bus protection (threat 9, §7.1.2.1) is on by default: the E_K (or, for the HMAC-SHA-256 set,
TPM2_HMAC) commands run in a session salted to the MID parent with parameter encryption both
ways, so a recording of the TPM bus shows neither RAND ⊕ OPc (OPc) nor the outputs
(:class:`tpm.mid.LoadedMid`). ``bus_protection=False``
is an opt-out for benchmarks; the outcome says which ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aka.usim import AkaResult, usim_authenticate
from tpm.connection import TpmConnection
from tpm.keyholder import Mode
from tpm.mid import Layer, LoadedMid, ek_name
from tpm.mid_errors import MidRefused
from tpm.registry import Registry
from trelab.errors import BadInput

__all__ = ["AkaOutcome", "authenticate"]


@dataclass(frozen=True)
class AkaOutcome:
    """The USIM result, the keyholder mode that ran, whether its TPM traffic was
    parameter-encrypted, and how many TPM symmetric commands (or unseals) it took."""

    result: AkaResult
    mode: Mode
    mid: str
    tpm_calls: int
    bus_protection: bool = True
    layer: str = "lean"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = self.result.to_json()
        data["mode"] = self.mode
        data["bus_protection"] = self.bus_protection
        data["layer"] = self.layer
        data["mid"] = self.mid
        if self.mode == "sealed":
            data["note"] = "K was unsealed into host memory for this AKA (weaker than ecb/cfb)"
        elif not self.bus_protection and self.mode == "hmac":
            data["note"] = (
                "bus protection off (opt-out): OPc, RAND and the HMAC outputs crossed the TPM"
                " bus in clear"
            )
        elif not self.bus_protection:
            data["note"] = (
                "bus protection off (opt-out): RAND ⊕ OPc and the E_K outputs crossed the TPM"
                " bus in clear"
            )
        return data


def authenticate(
    conn: TpmConnection,
    registry: Registry,
    mid_id: str,
    rand: bytes,
    autn: bytes,
    *,
    pin: bytes | None = None,
    mode: Mode | None = None,
    check_state: bool = True,
    bus_protection: bool = True,
    layer: Layer = "lean",
) -> AkaOutcome:
    """Run AKA for ``mid_id``; ``check_state=False`` skips only the host's ACTIVE check (tests
    use it to show that the TPM itself refuses a use-gated MID that is not ACTIVE);
    ``bus_protection=False`` sends the E_K parameters in clear (opt-out for benchmarks);
    ``layer="esys"`` sends everything through ESYS (the reference path, :class:`LoadedMid`).

    Raises:
        BadInput: RAND/AUTN lengths, unknown MID, wrong mode for the MID.
        MidRefused: not ACTIVE, or the TPM refused the policy.
        Unavailable: bus protection on a TPM with only TPM2_EncryptDecrypt.
        PinRejected, TpmLockedOut: PIN problems.
        RegistryRollback: the registry is older than REG_CTR.
    """
    if len(rand) != 16:
        raise BadInput(f"{len(rand)} bytes, expected 16", field="rand")
    if len(autn) != 16:
        raise BadInput(f"{len(autn)} bytes, expected 16", field="autn")
    # one AKA is a burst of TPM commands: one kept connection where the transport allows it
    with conn.transport.kept(), registry.locked():
        name = ek_name(conn)
        data = registry.read_checked(conn, name)
        record = data.get(mid_id)
        if check_state and record.state != "active":
            raise MidRefused(f"MID {mid_id} is {record.state}, not active")
        with LoadedMid(
            conn, record, pin=pin, mode=mode, bus_protection=bus_protection, layer=layer
        ) as loaded:
            algorithm = loaded.algorithm
            assert algorithm is not None
            with loaded.session():
                result, new_state = usim_authenticate(algorithm, record.sqn, rand, autn)
            calls = int(getattr(loaded.holder, "calls", getattr(loaded.holder, "unseals", 0)))
            used: Mode = loaded.mode
            protected = loaded.bus_protection
            used_layer = loaded.layer
        if new_state != record.sqn:
            registry.commit(conn, data.with_mid(record.with_sqn(new_state)), name)
    return AkaOutcome(
        result=result, mode=used, mid=mid_id, tpm_calls=calls, bus_protection=protected,
        layer=used_layer,
    )  # fmt: skip
