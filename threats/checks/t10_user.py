"""Edge: TPM, PC/SC. Threat 10 (§7.1.2.1): access to TRE or MID functions by masquerading as
the legitimate user. Extra attack: PIN brute force — the USIM's PIN retry counter and the TPM's
dictionary-attack lockout.
"""

from __future__ import annotations

import os
from typing import Any

from threats.checks import common
from threats.checks.t09_monitoring import bus_recording
from threats.context import ThreatLab
from threats.result import Finding, Recorder

__all__ = ["run"]

_SW_SECURITY = 0x6982
_SW_BLOCKED = 0x6983
_GUESSES = ("0000", "1111", "2222", "3333", "4444", "5555", "6666", "7777", "8888", "9999")


class _ApduTap:
    """A Link that keeps every command APDU it forwards (what crosses the ME–UICC interface)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[bytes] = []

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def atr(self) -> bytes | None:
        atr: bytes | None = self.inner.atr
        return atr

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        reply: bytes = self.inner.transmit(apdu)
        return reply

    def close(self) -> None:
        self.inner.close()


def run(ctx: ThreatLab) -> list[Finding]:
    rec = Recorder("10", tre="tpm")

    with ctx.attack(
        rec,
        ("1", "2", "3", "12"),
        "masquerade-tpm",
        "use a PIN-protected MID as someone who does not know the PIN (a guess)",
    ) as a:
        error = common.wrong_pin(ctx, b"8642", b"1111")
        if error is None:
            a.not_blocked("the TPM used K with a wrong PIN")
        else:
            a.blocked(f"the TRE authenticates the user (TPM checks K's authValue): {error}")

    with ctx.attack(
        rec,
        ("1", "2", "12"),
        "masquerade-usim",
        "run AUTHENTICATE on the USIM without having verified the PIN",
        tre="usim",
    ) as a:
        from uicc.errors import CardRefused
        from uicc.usim import UsimClient

        with ctx.usim_link() as link:
            client = UsimClient(link)
            status = client.pin_status()
            if status.verified:
                a.not_run(
                    "the PIN is already verified on this card (another application)",
                    missing="environment",
                )
            else:
                try:
                    client.authenticate(os.urandom(16), os.urandom(16))
                    sw = None
                except CardRefused as exc:
                    sw = exc.sw
                if sw == _SW_SECURITY:
                    a.blocked(
                        "the USIM requires PIN1 for AUTHENTICATE: 6982 security status"
                        " not satisfied",
                        sw="6982",
                    )
                else:
                    a.not_blocked(f"AUTHENTICATE without PIN answered {sw}")

    with ctx.attack(
        rec,
        ("4", "5"),
        "pin-eavesdrop-tpm",
        "record the TPM bus while the user's PIN authorises K",
    ) as a:
        bus = bus_recording(ctx)
        a.note(pin_on_bus=bus.pin_seen, bytes_recorded=bus.bytes_recorded)
        if bus.pin_seen:
            a.not_blocked("the PIN crossed the TPM bus in clear")
        else:
            a.ffs(
                "TR 33.812 leaves 4 and 5 FFS; tested: the PIN never crosses the TPM bus (HMAC"
                " of a salted session)"
            )

    with ctx.attack(
        rec,
        ("4", "5"),
        "pin-eavesdrop-usim",
        "record the APDUs between the ME and the USIM while the user's PIN is verified",
        tre="usim",
    ) as a:
        from threats.usim_tools import usim_client

        profile = ctx.card_profile()
        with ctx.usim_link() as link:
            tap = _ApduTap(link)
            usim_client(tap, profile)
        in_clear = any(profile.pin1.encode() in apdu for apdu in tap.sent)
        a.note(pin_in_apdu=in_clear, apdus=len(tap.sent))
        if in_clear:
            a.not_blocked(
                "VERIFY PIN carries the PIN digits in clear over the ME–UICC interface (TS 102"
                " 221 §11.1.9 has no secure channel); TR 33.812 leaves protecting it FFS",
                should_block=False,
            )
        else:
            a.ffs("the PIN did not appear in the APDUs")

    locked: dict[str, Any] = {}
    with ctx.attack(
        rec,
        ("6",),
        "pin-brute-force-tpm",
        "guess the PIN of a TPM-held MID until the TPM stops answering, then try the right one",
        extra="pin-brute-force",
    ) as a:
        from threats.tpm_tools import local_aka, local_mid
        from tpm.mid_errors import PinRejected, TpmLockedOut

        rand = os.urandom(16)
        tries = 0
        with common.scratch_tpm(ctx) as (conn, registry):
            esys = conn.esys
            esys.dictionary_attack_parameters(3, 1000, 1000)
            esys.dictionary_attack_lock_reset()
            mid = local_mid(conn, registry, kind="use", pin=b"97531")
            noda = local_mid(conn, registry, kind="use")
            try:
                for guess in _GUESSES:
                    tries += 1
                    try:
                        local_aka(conn, registry, mid, rand, pin=guess.encode())
                    except PinRejected:
                        continue
                    except TpmLockedOut:
                        break
                locked_out = common.refusal(
                    lambda: local_aka(conn, registry, mid, rand, pin=b"97531"), TpmLockedOut
                )
                right = "accepted" if locked_out is None else locked_out
                # a MID without PIN (NODA) keeps working while the TPM is locked out
                locked["noda"] = local_aka(conn, registry, noda, rand).result.to_json()["result"]
            finally:
                esys.dictionary_attack_lock_reset()
        a.note(wrong_guesses=tries - 1, right_pin_after=right)
        if right == "accepted":
            a.not_blocked(f"the right PIN still worked after {tries} guesses")
        else:
            a.blocked(
                f"TPM dictionary-attack lockout after {tries - 1} wrong PINs: even the"
                f" right PIN → TPM_RC_LOCKOUT ({right})",
                tpm_rc="TPM_RC_LOCKOUT",
            )

    with ctx.attack(
        rec,
        ("6",),
        "pin-brute-force-usim",
        "guess the USIM's PIN1 until the card blocks it, then try the right PIN",
        tre="usim",
        extra="pin-brute-force",
    ) as a:
        from uicc.errors import CardRefused
        from uicc.usim import UsimClient

        profile = ctx.card_profile()
        sws: list[str] = []
        with ctx.usim_link() as link:
            client = UsimClient(link)
            before = client.pin_status()
            if before.state != "enabled":
                a.not_run(f"PIN1 is {before.state} on the lab card", missing="environment")
            else:
                try:
                    for guess in (g for g in _GUESSES if g != profile.pin1):
                        try:
                            client.verify_pin(guess)
                            sws.append("9000")
                            break
                        except CardRefused as exc:
                            sws.append(f"{exc.sw:04X}")
                            if exc.sw == _SW_BLOCKED:
                                break
                    try:
                        client.verify_pin(profile.pin1)
                        right = "9000"
                    except CardRefused as exc:
                        right = f"{exc.sw:04X}"
                finally:
                    client.unblock_pin(profile.puk1, profile.pin1)  # put the lab card back
                restored = client.pin_status()
                a.note(answers=sws, right_pin_after=right, restored=restored.state)
                if right == "9000":
                    a.not_blocked(f"the right PIN worked after {len(sws)} wrong ones")
                else:
                    a.blocked(
                        f"PIN retry counter: {' → '.join(sws)}; right PIN → {right}"
                        " (blocked until UNBLOCK PIN with the PUK)",
                        sw=right,
                    )

    with ctx.attack(
        rec,
        ("7",),
        "remote-lockout",
        "lock the user out from the network side: send PIN attempts remotely, and lock the TPM"
        " so that MIDs without a PIN stop working too",
    ) as a:
        from protocol.messages import MESSAGE_TYPES

        pin_fields = [
            f"{name}.{f.name}"
            for name, cls in MESSAGE_TYPES.items()
            for f in cls.body_fields()
            if "pin" in f.name.lower()
        ]
        a.note(
            message_types=len(MESSAGE_TYPES),
            pin_fields=pin_fields,
            noda_mid_during_lockout=locked.get("noda", "not measured"),
        )
        if pin_fields:
            a.not_blocked(f"network messages carry PINs: {pin_fields}")
        elif locked.get("noda") != "success":
            a.not_run("the lockout step above did not complete", missing="environment")
        else:
            a.blocked(
                "no protocol message carries a PIN (no remote authentication attempts);"
                " MIDs without a PIN are NODA: AKA succeeded while the TPM was locked out"
            )

    with ctx.attack(
        rec,
        ("9",),
        "clock-rollback",
        "set the TRE's clock back (TPM2_ClockSet) to make an expired authentication or MID"
        " valid again",
    ) as a:
        from threats.tpm_tools import tpm_refusal
        from tpm.tss import ESYS_TR

        with common.scratch_tpm(ctx) as (conn, _):
            now = int(conn.esys.read_clock().clockInfo.clock)
            code = tpm_refusal(lambda: conn.esys.clock_set(max(now - 60_000, 0), ESYS_TR.OWNER))
            later = int(conn.esys.read_clock().clockInfo.clock)
        a.note(clock_ms=now, after_ms=later, tpm_rc=code)
        if code is None or later < now:
            a.not_blocked("the TPM clock went back")
        else:
            a.blocked(
                f"TPMS_CLOCK_INFO.clock only moves forward: ClockSet back → {code}"
                " (the inactivity timeout itself is not implemented)"
            )

    with ctx.attack(
        rec,
        ("10",),
        "auth-after-reset",
        "verify the PIN, reset the card (as at reboot), and authenticate without verifying again",
        tre="usim",
    ) as a:
        from threats.usim_tools import usim_client
        from uicc.errors import CardRefused
        from uicc.usim import UsimClient

        profile = ctx.card_profile()
        with ctx.usim_link() as link:
            usim_client(link, profile)  # verified; closing resets the card
        with ctx.usim_link() as link:
            try:
                UsimClient(link).authenticate(os.urandom(16), os.urandom(16))
                answer = "accepted"
            except CardRefused as exc:
                answer = f"{exc.sw:04X}"
        a.note(sw=answer)
        if answer == "accepted":
            a.not_blocked("the verified state survived a card reset")
        else:
            a.ffs(
                f"which alternative applies is FFS in TR 33.812; tested: after a reset the USIM"
                f" asks again ({answer}); a TPM MID's PIN is checked on every use of K"
            )

    with ctx.attack(
        rec,
        ("11",),
        "remove-pin-tpm",
        "the user removes the PIN from a PIN-protected MID (TPM2_ObjectChangeAuth to empty)",
    ) as a:
        from threats.tpm_tools import change_k_auth, local_mid

        with common.scratch_tpm(ctx) as (conn, registry):
            mid = local_mid(conn, registry, kind="use", pin=b"5555")
            code = change_k_auth(conn, mid, b"")
        if code is None:
            a.not_blocked("the PIN was removed")
        else:
            a.blocked(
                f"the PIN is part of K's policy (PolicyAuthValue); its ADMIN role allows"
                f" no ObjectChangeAuth: {code}",
                tpm_rc=code,
            )

    with ctx.attack(
        rec,
        ("11",),
        "disable-pin-usim",
        "the user disables PIN1 on the USIM (DISABLE PIN)",
        tre="usim",
    ) as a:
        from uicc.errors import CardRefused
        from uicc.usim import UsimClient

        profile = ctx.card_profile()
        with ctx.usim_link() as link:
            client = UsimClient(link)
            try:
                client.disable_pin(profile.pin1)
                disabled = True
            except CardRefused:
                disabled = False
            finally:
                if client.pin_status().state == "disabled":
                    client.enable_pin(profile.pin1)
        if disabled:
            a.not_blocked(
                "the USIM lets its user switch PIN1 off (TS 102 221 DISABLE PIN); TR 33.812"
                " notes UICCs allow this and leaves the counter-measure FFS",
                should_block=False,
            )
        else:
            a.blocked("the USIM refused DISABLE PIN")

    return rec.findings
