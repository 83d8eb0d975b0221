"""Edge: TPM, sockets. Threat 9 (§7.1.2.1): obtaining sensitive information by monitoring the
interactions between a TRE and the M2ME — here, a relay on the TPM's command port records
every byte of a PIN-protected AKA, as a logic analyser on a TPM's SPI/LPC bus would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from host.threats.checks import common
from host.threats.context import ThreatLab
from host.threats.result import Finding, Recorder

__all__ = ["BusRecording", "bus_recording", "run"]

_C2 = (1).to_bytes(16, "big")  # Milenage c2 (TS 35.206 §4.1); r2 = 0


@dataclass(frozen=True)
class BusRecording:
    """What the bus showed during one AKA, and what the attacker derived from it alone."""

    bytes_recorded: int
    commands: int
    k_seen: bool
    pin_seen: bool
    opc_seen: bool
    opc_recovered: bool
    session_keys_recovered: bool
    result: str
    pin: bytes = field(repr=False, default=b"")


def bus_recording(ctx: ThreatLab) -> BusRecording:
    """One PIN-protected, use-gated AKA through :class:`BusTap` on the second TPM (made once
    per run: threats 9 and 10 read it)."""

    def make() -> BusRecording:
        from aka.usim import AkaSuccess
        from host.threats.tpm_tools import BusTap, encrypt_decrypt2_data, fresh_autn, local_mid
        from tpm.aka import authenticate
        from tpm.connection import TpmConnection

        other = ctx.scratch()
        registry = ctx.registry(other)
        pin = b"24681357"
        with TpmConnection(other.tcti) as conn:
            mid = local_mid(conn, registry, kind="use", pin=pin)
        rand = os.urandom(16)
        if other.swtpm.port is None:
            raise RuntimeError("the second lab's swtpm has no port")
        with BusTap(other.swtpm.port) as tap:
            with TpmConnection(tap.tcti) as conn:
                outcome = authenticate(
                    conn,
                    registry,
                    mid.record.mid,
                    rand,
                    fresh_autn(mid.k, mid.opc, rand, 1),
                    pin=pin,
                )
            capture = tap.captured()
            exchanges = tap.exchanges()
        result = outcome.result
        seen = [d for d in (encrypt_decrypt2_data(c, r) for c, r in exchanges) if d is not None]
        # the attacker: the first E_K input is RAND ⊕ OPc (TS 35.206 TEMP); RAND is public
        opc = bytes(x ^ y for x, y in zip(seen[0][0], rand, strict=True)) if seen else b""
        temp = seen[0][1][:16] if seen else b""
        keys = False
        for in_data, out_data in seen[1:]:
            if len(in_data) >= 64 and opc:
                in2 = bytes(t ^ o ^ c for t, o, c in zip(temp, opc, _C2, strict=True))
                if in_data[:16] != in2:
                    continue  # not the OUT2…OUT5 call
                out2, out3, out4 = (
                    bytes(x ^ y for x, y in zip(out_data[i : i + 16], opc, strict=True))
                    for i in (0, 16, 32)
                )
                keys = isinstance(result, AkaSuccess) and (out2[8:16], out3, out4) == (
                    result.res,
                    result.ck,
                    result.ik,
                )
        return BusRecording(
            bytes_recorded=len(capture),
            commands=len(exchanges),
            k_seen=mid.k in capture,
            pin_seen=pin in capture,
            opc_seen=mid.opc in capture,
            opc_recovered=opc == mid.opc,
            session_keys_recovered=keys,
            result=result.to_json()["result"],
            pin=pin,
        )

    return ctx.once("bus-recording", make)


def run(ctx: ThreatLab) -> list[Finding]:
    rec = Recorder("9", tre="tpm")

    with ctx.attack(
        rec,
        ("1",),
        "bus-sniff-auth-values",
        "record the TPM bus during a PIN-protected AKA and look for the PIN and K",
    ) as a:
        bus = bus_recording(ctx)
        a.note(bytes_recorded=bus.bytes_recorded, commands=bus.commands, aka=bus.result)
        if bus.pin_seen or bus.k_seen:
            a.not_blocked(f"on the bus: PIN {bus.pin_seen}, K {bus.k_seen}")
        else:
            a.blocked(
                "the PIN is only the HMAC key of a salted session (never sent); K never"
                " leaves the TPM"
            )

    with ctx.attack(
        rec,
        ("2", "5"),
        "bus-sniff-aka",
        "from the same recording alone (and the public RAND), decode the EncryptDecrypt2"
        " exchanges and derive OPc and this AKA's RES, CK and IK",
    ) as a:
        bus = bus_recording(ctx)
        a.note(
            opc_in_clear=bus.opc_seen,
            opc_recovered=bus.opc_recovered,
            res_ck_ik_recovered=bus.session_keys_recovered,
        )
        if bus.opc_recovered or bus.session_keys_recovered:
            a.not_blocked(
                "EncryptDecrypt2 runs without parameter encryption (tpm/keyholder.py, for"
                " speed): its inData/outData cross the bus in clear, so RAND ⊕ OPc gives OPc"
                " and the OUT2–OUT4 blocks give RES, CK, IK of the session (K stays inside;"
                " CK/IK leave a UICC in clear too). Fix: a decrypt+encrypt session on"
                " EncryptDecrypt2"
            )
        else:
            a.blocked("the AKA's TPM traffic does not reveal OPc or the session keys")

    with ctx.attack(
        rec,
        ("3",),
        "untrusted-components",
        "run the operations needing secure communication with the TRE only in trusted parts",
    ) as a:
        a.organisational(
            "a platform design rule: the lab's host agent is one process with no"
            " trusted/untrusted split to test; see bus-sniff-aka for what an untrusted"
            " observer of the TPM interface learns"
        )

    common.pcid_filtering(ctx, rec, ("4",))
    return rec.findings
