"""Edge: TPM, sockets. Threat 9 (§7.1.2.1): obtaining sensitive information by monitoring the
interactions between a TRE and the M2ME — here, a relay on the TPM's command port records
every byte of a PIN-protected AKA, as a logic analyser on a TPM's SPI/LPC bus would.

The sniffer then decodes the recording with the spec in hand. It follows every session from
its TPM2_StartAuthSession (seeing tpmKey, encryptedSalt and both nonces), tracks the nonces of
each command and response that uses it, and derives the parameter-encryption key as far as the
recording allows (TPM 2.0 Part 1 §21.3: AES-128-CFB, key ‖ IV = KDFa(SHA-256, sessionKey ‖
authValue, "CFB", nonceNewer, nonceOlder, 256)). An unsalted, unbound session has an empty
sessionKey, so its key follows from the nonces on the bus (and the authValue: the sniffer
tries an empty one and, worst case, the PIN); a salted session's sessionKey comes from a salt
encrypted to a TPM key, which the recording cannot give. On each hypothesis it reads OPc off
the first E_K input (RAND ⊕ OPc, TS 35.206 TEMP; RAND is public) and RES/CK/IK off the
OUT2–OUT4 outputs.

Three recordings on the second lab's TPM: the default AKA (bus protection: a session salted to
the MID parent with decrypt|encrypt, :class:`tpm.mid.LoadedMid`), the same MID with the
``bus_protection=False`` opt-out (``trelab tpm aka --no-bus-protection``), and a *control*:
TPM2_EncryptDecrypt2 in an unsalted decrypt|encrypt session, whose plaintext the same decoder
must recover — so that "nothing recovered" means the salt, not a broken decoder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from threats.checks import common
from threats.context import ThreatLab
from threats.result import Finding, Recorder

__all__ = ["BusRecording", "EkExchange", "bus_recording", "decode_recording", "run"]

_C2 = (1).to_bytes(16, "big")  # Milenage c2 (TS 35.206 §4.1); r2 = 0
_ST_SESSIONS = 0x8002
_CC_START_AUTH_SESSION = 0x176
_CC_FLUSH_CONTEXT = 0x165
_CC_ENCRYPT_DECRYPT2 = 0x193
#: (command handles, response handles) of the commands that carry the MID's sessions (Part 3):
#: Unseal, EncryptDecrypt2, EncryptDecrypt, Load, Import. The sniffer needs the counts to find
#: the authorisation areas, whose nonces key the parameter encryption.
_HANDLES = {0x15E: (1, 0), 0x193: (1, 0), 0x164: (1, 0), 0x157: (1, 1), 0x156: (1, 0)}
_TPM_RH_NULL = 0x40000007
_DECRYPT = 0x20  # TPMA_SESSION (Part 2 §8.4)
_ENCRYPT = 0x40


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "big")


@dataclass
class _Session:
    """What the bus shows of one session: was it salted or bound, its latest nonceTPM."""

    salted: bool
    bound: bool
    salt_bytes: int
    nonce_tpm: bytes


@dataclass(frozen=True)
class EkExchange:
    """One TPM2_EncryptDecrypt2 exchange as the sniffer decoded it: the bytes as seen, the
    attributes of the session that carried parameter encryption, and the plaintext under each
    hypothesis the sniffer could form ("clear", "unsalted, empty auth", "unsalted, PIN")."""

    in_data: bytes = field(repr=False)
    out_data: bytes = field(repr=False)
    decrypt: bool
    encrypt: bool
    salted: bool | None
    guesses: tuple[tuple[str, bytes, bytes], ...] = field(repr=False)


def _kdfa_cfb(session_value: bytes, newer: bytes, older: bytes) -> tuple[bytes, bytes]:
    """AES-128-CFB key and IV of parameter encryption (TPM 2.0 Part 1 §21.3, KDFa §11.4.10.2:
    SP 800-108 counter mode, HMAC-SHA-256, label "CFB")."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

    kdf = KBKDFHMAC(
        algorithm=hashes.SHA256(),
        mode=Mode.CounterMode,
        length=32,
        rlen=4,
        llen=4,
        location=CounterLocation.BeforeFixed,
        label=b"CFB",
        context=newer + older,
        fixed=None,
    )
    out = kdf.derive(session_value)
    return out[:16], out[16:]


def _cfb_decrypt(key_iv: tuple[bytes, bytes], data: bytes) -> bytes:
    import importlib

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    try:  # cryptography ≥ 47 keeps CFB among the "decrepit" modes
        modes: Any = importlib.import_module("cryptography.hazmat.decrepit.ciphers.modes")
    except ImportError:  # pragma: no cover - older cryptography
        modes = importlib.import_module("cryptography.hazmat.primitives.ciphers.modes")
    key, iv = key_iv
    decryptor = Cipher(algorithms.AES(key), modes.CFB(iv)).decryptor()
    out: bytes = decryptor.update(data) + decryptor.finalize()
    return out


def _first_tpm2b(data: bytes) -> bytes:
    size = int.from_bytes(data[:2], "big")
    return data[2 : 2 + size]


def _command_auths(command: bytes, handles: int) -> tuple[list[tuple[int, bytes, int]], bytes]:
    """(session handle, nonceCaller, attributes) per session of a command, and its
    parameters (Part 1 §18.7)."""
    from tpm.tss import TPMS_AUTH_COMMAND

    offset = 10 + 4 * handles
    if int.from_bytes(command[:2], "big") != _ST_SESSIONS:
        return [], command[offset:]
    size = _u32(command, offset)
    area = command[offset + 4 : offset + 4 + size]
    auths = []
    pos = 0
    while pos < len(area):
        auth, used = TPMS_AUTH_COMMAND.unmarshal(area[pos:])
        auths.append((int(auth.sessionHandle), bytes(auth.nonce), int(auth.sessionAttributes)))
        pos += used
    return auths, command[offset + 4 + size :]


def _response_auths(response: bytes, handles: int, sessions: int) -> tuple[bytes, list[bytes]]:
    """A successful response's parameters and the nonceTPM per session (Part 1 §18.8)."""
    from tpm.tss import TPMS_AUTH_RESPONSE

    offset = 10 + 4 * handles
    if int.from_bytes(response[:2], "big") != _ST_SESSIONS:
        return response[offset:], []
    size = _u32(response, offset)
    params = response[offset + 4 : offset + 4 + size]
    pos = offset + 4 + size
    nonces = []
    for _ in range(sessions):
        auth, used = TPMS_AUTH_RESPONSE.unmarshal(response[pos:])
        nonces.append(bytes(auth.nonce))
        pos += used
    return params, nonces


def _start_auth_session(command: bytes, response: bytes) -> tuple[int, _Session] | None:
    """TPM2_StartAuthSession (Part 3 §11.1): handles tpmKey, bind; nonceCaller, encryptedSalt,
    …; the response's session handle and nonceTPM."""
    from tpm.tss import TPM2B_ENCRYPTED_SECRET, TPM2B_NONCE

    if _u32(response, 6) != 0:
        return None
    tpm_key, bind = _u32(command, 10), _u32(command, 14)
    params = command[18:]
    if int.from_bytes(command[:2], "big") == _ST_SESSIONS:
        params = command[22 + _u32(command, 18) :]
    _, used = TPM2B_NONCE.unmarshal(params)
    salt, _ = TPM2B_ENCRYPTED_SECRET.unmarshal(params[used:])
    handle = _u32(response, 10)
    rparams = response[14:]
    if int.from_bytes(response[:2], "big") == _ST_SESSIONS:
        rparams = response[18:]
    nonce_tpm, _ = TPM2B_NONCE.unmarshal(rparams)
    return handle, _Session(
        salted=tpm_key != _TPM_RH_NULL,
        bound=bind != _TPM_RH_NULL,
        salt_bytes=len(bytes(salt)),
        nonce_tpm=bytes(nonce_tpm),
    )


def decode_recording(
    exchanges: Sequence[tuple[bytes, bytes]], auth_guesses: Sequence[bytes] = (b"",)
) -> tuple[list[EkExchange], dict[str, int]]:
    """Every successful EncryptDecrypt2 exchange of a recording, decoded as a sniffer can
    (module docstring), and counts of what the recording showed about the sessions."""
    sessions: dict[int, _Session] = {}
    seen = {"sessions": 0, "salted_sessions": 0, "salt_bytes": 0}
    found: list[EkExchange] = []
    for command, response in exchanges:
        if len(command) < 10 or len(response) < 10:
            continue
        code = _u32(command, 6)
        if code == _CC_START_AUTH_SESSION:
            started = _start_auth_session(command, response)
            if started is not None:
                handle, session = started
                sessions[handle] = session
                seen["sessions"] += 1
                seen["salted_sessions"] += session.salted
                seen["salt_bytes"] = max(seen["salt_bytes"], session.salt_bytes)
            continue
        if code == _CC_FLUSH_CONTEXT:
            sessions.pop(_u32(command, 10), None)
            continue
        if code not in _HANDLES or _u32(response, 6) != 0:
            continue
        command_handles, response_handles = _HANDLES[code]
        auths, params = _command_auths(command, command_handles)
        rparams, nonces_tpm = _response_auths(response, response_handles, len(auths))
        keys_in: list[tuple[str, tuple[bytes, bytes]]] = []
        keys_out: list[tuple[str, tuple[bytes, bytes]]] = []
        decrypt = encrypt = False
        salted: bool | None = None
        for (handle, nonce_caller, attrs), nonce_tpm in zip(auths, nonces_tpm, strict=False):
            tracked = sessions.get(handle)
            if tracked is None:
                continue
            if attrs & (_DECRYPT | _ENCRYPT):
                salted = tracked.salted or tracked.bound
                for i, auth in enumerate(auth_guesses):
                    # the sniffer's best: sessionKey empty (true only if unsalted and unbound)
                    label = "unsalted, empty auth" if not auth else f"unsalted, auth guess {i}"
                    if attrs & _DECRYPT:
                        decrypt = True
                        keys_in.append((label, _kdfa_cfb(auth, nonce_caller, tracked.nonce_tpm)))
                    if attrs & _ENCRYPT:
                        encrypt = True
                        keys_out.append((label, _kdfa_cfb(auth, nonce_tpm, nonce_caller)))
            tracked.nonce_tpm = nonce_tpm
        if code != _CC_ENCRYPT_DECRYPT2:
            continue
        in_data, out_data = _first_tpm2b(params), _first_tpm2b(rparams)
        guesses = [("clear", in_data, out_data)]
        labels = {label for label, _ in keys_in + keys_out}
        for label in sorted(labels):
            key_in = dict(keys_in).get(label)
            key_out = dict(keys_out).get(label)
            guesses.append(
                (
                    label,
                    _cfb_decrypt(key_in, in_data) if key_in else in_data,
                    _cfb_decrypt(key_out, out_data) if key_out else out_data,
                )
            )
        found.append(EkExchange(in_data, out_data, decrypt, encrypt, salted, tuple(guesses)))
    return found, seen


@dataclass(frozen=True)
class BusRecording:
    """What the bus showed during one AKA, and what the attacker derived from it alone."""

    bus_protection: bool
    bytes_recorded: int
    commands: int
    k_seen: bool
    pin_seen: bool
    opc_seen: bool
    opc_recovered: bool
    session_keys_recovered: bool
    result: str
    ek_commands: int
    ek_parameters_encrypted: int
    salted_sessions: int
    sessions: int
    salt_bytes: int
    pin: bytes = field(repr=False, default=b"")


@dataclass(frozen=True)
class _Victim:
    lab: Any
    registry: Any
    mid: Any  # threats.tpm_tools.LocalMid
    pin: bytes = field(repr=False)


def _victim(ctx: ThreatLab) -> _Victim:
    """A PIN-protected, use-gated MID on the second TPM (made once per run)."""

    def make() -> _Victim:
        from threats.tpm_tools import local_mid
        from tpm.connection import TpmConnection

        other = ctx.scratch()
        registry = ctx.registry(other)
        pin = b"24681357"
        with TpmConnection(other.tcti) as conn:
            mid = local_mid(conn, registry, kind="use", pin=pin)
        return _Victim(other, registry, mid, pin)

    return ctx.once("bus-victim", make)


def _record(ctx: ThreatLab, *, bus_protection: bool) -> BusRecording:
    from aka.usim import AkaSuccess
    from threats.tpm_tools import BusTap, fresh_autn
    from tpm.aka import authenticate
    from tpm.connection import TpmConnection

    victim = _victim(ctx)
    mid, pin = victim.mid, victim.pin
    seq = ctx.once("bus-seq", lambda: [0])  # one fresh SQN per recorded AKA
    seq[0] += 1
    rand = os.urandom(16)
    if victim.lab.swtpm.port is None:
        raise RuntimeError("the second lab's swtpm has no port")
    with BusTap(victim.lab.swtpm.port) as tap:
        with TpmConnection(tap.tcti) as conn:
            outcome = authenticate(
                conn,
                victim.registry,
                mid.record.mid,
                rand,
                fresh_autn(mid.k, mid.opc, rand, seq[0]),
                pin=pin,
                bus_protection=bus_protection,
            )
        capture = tap.captured()
        exchanges = tap.exchanges()
    result = outcome.result
    if outcome.bus_protection != bus_protection:
        raise RuntimeError(f"asked for bus_protection={bus_protection}, the AKA ran without")
    # worst case for the defender: the sniffer also knows the PIN (K's authValue)
    decoded, seen = decode_recording(exchanges, auth_guesses=(b"", pin))
    opc_recovered = keys = False
    if decoded:
        first = decoded[0]
        for label, in1, out1 in first.guesses:
            opc = bytes(x ^ y for x, y in zip(in1[:16], rand, strict=True))
            if opc == mid.opc:
                opc_recovered = True
            temp = out1[:16]
            in2 = bytes(t ^ o ^ c for t, o, c in zip(temp, opc, _C2, strict=True))
            for other in decoded[1:]:
                for other_label, in_data, out_data in other.guesses:
                    if other_label != label or len(in_data) < 64 or in_data[:16] != in2:
                        continue  # not the OUT2…OUT5 call under this hypothesis
                    out2, out3, out4 = (
                        bytes(x ^ y for x, y in zip(out_data[i : i + 16], opc, strict=True))
                        for i in (0, 16, 32)
                    )
                    keys = keys or (
                        isinstance(result, AkaSuccess)
                        and (out2[8:16], out3, out4) == (result.res, result.ck, result.ik)
                    )
    return BusRecording(
        bus_protection=outcome.bus_protection,
        bytes_recorded=len(capture),
        commands=len(exchanges),
        k_seen=mid.k in capture,
        pin_seen=pin in capture,
        opc_seen=mid.opc in capture,
        opc_recovered=opc_recovered,
        session_keys_recovered=keys,
        result=result.to_json()["result"],
        ek_commands=len(decoded),
        ek_parameters_encrypted=sum(1 for d in decoded if d.decrypt and d.encrypt),
        salted_sessions=seen["salted_sessions"],
        sessions=seen["sessions"],
        salt_bytes=seen["salt_bytes"],
        pin=pin,
    )


def bus_recording(ctx: ThreatLab) -> BusRecording:
    """One PIN-protected, use-gated AKA through :class:`BusTap` on the second TPM, with the
    default bus protection (made once per run: threats 9 and 10 read it)."""
    return ctx.once("bus-recording", lambda: _record(ctx, bus_protection=True))


def _control(ctx: ThreatLab) -> bool:
    """Does the sniffer's decoder recover the plaintext of EncryptDecrypt2 in an *unsalted*
    decrypt|encrypt session (an AES key made for it in the NULL hierarchy, empty auth)?"""
    from threats.tpm_tools import BusTap
    from tpm.connection import TpmConnection
    from tpm.policy_session import start_session
    from tpm.tss import (
        ESYS_TR,
        TPM2_ALG,
        TPM2B_IV,
        TPM2B_PUBLIC,
        TPM2B_SENSITIVE_CREATE,
        TPMA_OBJECT,
    )

    other = ctx.scratch()
    if other.swtpm.port is None:
        raise RuntimeError("the second lab's swtpm has no port")
    data = os.urandom(48)
    template = TPM2B_PUBLIC.parse(
        "aes128",
        objectAttributes=TPMA_OBJECT.DECRYPT
        | TPMA_OBJECT.SIGN_ENCRYPT
        | TPMA_OBJECT.USERWITHAUTH
        | TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.NODA,
    )
    with BusTap(other.swtpm.port) as tap:
        with TpmConnection(tap.tcti) as conn:
            key, _, _, _, _ = conn.esys.create_primary(
                TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.NULL
            )
            try:
                session = start_session(conn, kind="hmac", encrypt=True, decrypt=True)
                try:
                    out, _ = conn.esys.encrypt_decrypt_2(
                        key, False, TPM2_ALG.ECB, TPM2B_IV(), data, session1=session
                    )
                finally:
                    conn.flush(session)
            finally:
                conn.flush(key)
        exchanges = tap.exchanges()
    decoded, _ = decode_recording(exchanges)
    if len(decoded) != 1 or not (decoded[0].decrypt and decoded[0].encrypt):
        return False
    guesses = {label: (i, o) for label, i, o in decoded[0].guesses}
    in_clear, out_clear = guesses["clear"]
    return (
        in_clear != data  # encrypted on the bus, both ways
        and out_clear != bytes(out)
        and guesses.get("unsalted, empty auth") == (data, bytes(out))
    )


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
                "the PIN is K's authValue, proven by PolicyAuthValue: only the HMAC key of a"
                " salted session, never sent (PolicyPassword, which sends it, is not used);"
                " K never leaves the TPM"
            )

    with ctx.attack(
        rec,
        ("2", "5"),
        "bus-sniff-aka",
        "from the recording of a default AKA alone (and the public RAND; worst case also the"
        " PIN), follow every session from StartAuthSession, derive the parameter-encryption"
        " keys the nonces allow, decode the EncryptDecrypt2 exchanges and derive OPc and this"
        " AKA's RES, CK and IK",
    ) as a:
        bus = bus_recording(ctx)
        control = ctx.once("bus-control", lambda: _control(ctx))
        a.note(
            bus_protection=bus.bus_protection,
            aka=bus.result,
            ek_commands=bus.ek_commands,
            ek_parameters_encrypted=bus.ek_parameters_encrypted,
            sessions_started=bus.sessions,
            salted_sessions=bus.salted_sessions,
            encrypted_salt_bytes=bus.salt_bytes,
            opc_in_clear=bus.opc_seen,
            opc_recovered=bus.opc_recovered,
            res_ck_ik_recovered=bus.session_keys_recovered,
            control_unsalted_decoded=control,
        )
        if not control:
            a.error(
                "the sniffer's decoder did not recover the plaintext of the unsalted control"
                " session: a failed sniff below would prove nothing"
            )
        elif bus.opc_seen or bus.opc_recovered or bus.session_keys_recovered:
            a.not_blocked(
                "the default AKA's TPM traffic reveals OPc or the session keys: parameter"
                " encryption is missing or its key is derivable from the recording"
            )
        elif bus.ek_commands == 0 or bus.ek_parameters_encrypted != bus.ek_commands:
            a.not_blocked(
                f"{bus.ek_commands - bus.ek_parameters_encrypted} of {bus.ek_commands}"
                " EncryptDecrypt2 exchanges ran without decrypt|encrypt parameter encryption"
            )
        else:
            a.blocked(
                f"all {bus.ek_commands} EncryptDecrypt2 exchanges carry inData and outData"
                " AES-128-CFB encrypted (TPMA_SESSION decrypt|encrypt) in a session salted to"
                " the MID parent (tpm/mid.py LoadedMid): the recording shows StartAuthSession"
                f" with a {bus.salt_bytes}-byte encryptedSalt, but not the salt, so decoding as"
                " if unsalted (empty auth, or even the PIN) gives neither OPc nor RES/CK/IK —"
                " while the same decoder recovers the plaintext of an unsalted control session"
            )

    with ctx.attack(
        rec,
        ("2", "5"),
        "bus-sniff-aka-opt-out",
        "the same sniff on an AKA run with the explicit opt-out (`trelab tpm aka"
        " --no-bus-protection`, bus_protection=False: for benchmarks only)",
    ) as a:
        bus = ctx.once("bus-recording-opt-out", lambda: _record(ctx, bus_protection=False))
        a.note(
            bus_protection=bus.bus_protection,
            aka=bus.result,
            ek_commands=bus.ek_commands,
            ek_parameters_encrypted=bus.ek_parameters_encrypted,
            opc_in_clear=bus.opc_seen,
            opc_recovered=bus.opc_recovered,
            res_ck_ik_recovered=bus.session_keys_recovered,
            pin_on_bus=bus.pin_seen,
        )
        if bus.opc_recovered or bus.session_keys_recovered:
            a.not_blocked(
                "the opt-out, as labelled: without bus protection EncryptDecrypt2's inData and"
                " outData cross the bus in clear, so RAND ⊕ OPc gives OPc and OUT2–OUT4 give"
                " this AKA's RES, CK, IK (never K, never the PIN). An explicit, reported choice"
                " for benchmarks (`bus_protection: false` in the AKA's JSON), not the default",
                should_block=False,
            )
        else:
            a.blocked("even the opt-out's recording does not reveal OPc or the session keys")

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
