"""Edge: TPM. What this TPM can do, probed once: vendor, firmware, PCR banks, symmetric
commands and AES modes, asymmetric support, dictionary-attack state (TPM 2.0 Part 3 §30
GetCapability, §10.4 TestParms).

Every later choice follows the probe: the AKA keyholder mode (:func:`choose_aka_mode`, docs/tpm.md
"AKA with K inside the TPM" — EncryptDecrypt/EncryptDecrypt2 are optional in the PC Client
profile and ECB is "should not"), AK algorithms, PIN lockout expectations.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tpm.connection import TpmConnection
from tpm.tss import (
    TPM2_ALG,
    TPM2_CAP,
    TPM2_CC,
    TPM2_ECC,
    TPM2_PT,
    TPMA_PERMANENT,
    TPMS_ECC_PARMS,
    TPMS_RSA_PARMS,
    TPMS_SYMCIPHER_PARMS,
    TPMT_ECC_SCHEME,
    TPMT_KDF_SCHEME,
    TPMT_PUBLIC_PARMS,
    TPMT_RSA_SCHEME,
    TPMT_SYM_DEF_OBJECT,
    TPMU_PUBLIC_PARMS,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
    TSS2_Exception,
)
from trelab.errors import Unavailable

__all__ = [
    "AES_MODES",
    "AkaMode",
    "AlgorithmProposal",
    "DictionaryAttack",
    "TpmInfo",
    "aka_mode_guarantee",
    "choose_aka_mode",
    "hmac_supported",
    "probe",
    "propose_algorithm",
    "provisioned_outlook",
]

AkaMode = Literal["ecb", "cfb", "sealed"]
AES_MODES = ("ecb", "cfb", "cbc", "ctr", "ofb")
_MODE_ALG = {
    "ecb": TPM2_ALG.ECB,
    "cfb": TPM2_ALG.CFB,
    "cbc": TPM2_ALG.CBC,
    "ctr": TPM2_ALG.CTR,
    "ofb": TPM2_ALG.OFB,
}
_VENDOR_STRINGS = (0x106, 0x107, 0x108, 0x109)  # TPM_PT_VENDOR_STRING_1..4
_FIRMWARE_1, _FIRMWARE_2 = 0x10B, 0x10C
_HASH_NAMES = {
    int(TPM2_ALG.SHA1): "sha1",
    int(TPM2_ALG.SHA256): "sha256",
    int(TPM2_ALG.SHA384): "sha384",
    int(TPM2_ALG.SHA512): "sha512",
    int(TPM2_ALG.SM3_256): "sm3_256",
}
_CURVE_NAMES = {
    int(TPM2_ECC.NIST_P192): "nist_p192",
    int(TPM2_ECC.NIST_P224): "nist_p224",
    int(TPM2_ECC.NIST_P256): "nist_p256",
    int(TPM2_ECC.NIST_P384): "nist_p384",
    int(TPM2_ECC.NIST_P521): "nist_p521",
    int(TPM2_ECC.BN_P256): "bn_p256",
    int(TPM2_ECC.BN_P638): "bn_p638",
    int(TPM2_ECC.SM2_P256): "sm2_p256",
}


@dataclass(frozen=True)
class DictionaryAttack:
    """DA protection state (Part 1 §19.8): after ``max_tries`` failures the TPM is locked out
    TPM-wide; one failure is forgiven every ``recovery_time`` s; lockoutAuth may retry after
    ``lockout_recovery`` s."""

    max_tries: int
    recovery_time: int
    lockout_recovery: int
    failed_tries: int
    locked_out: bool


@dataclass(frozen=True)
class TpmInfo:
    """The probe's result; :meth:`to_json` is the ``trelab tpm info --json`` document."""

    tcti: str
    manufacturer: str
    vendor: str
    firmware: str
    spec_revision: str
    spec_date: str
    pcr_banks: dict[str, list[int]]
    pcr_count: int
    encrypt_decrypt: bool
    encrypt_decrypt2: bool
    aes_modes: dict[str, bool]
    aes_key_bits: list[int]
    rsa: bool
    rsa_key_bits: list[int]
    ecc: bool
    ecc_curves: list[str]
    hashes: list[str]
    dictionary_attack: DictionaryAttack
    owner_auth_set: bool
    endorsement_auth_set: bool
    lockout_auth_set: bool
    notes: list[str] = field(default_factory=list)
    hmac_command: bool = False  # TPM2_HMAC listed, with the KEYEDHASH and HMAC algorithms

    @property
    def aka_mode(self) -> AkaMode:
        return choose_aka_mode(self)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["aka_mode"] = self.aka_mode
        proposal = propose_algorithm(self)
        data["aka_proposal"] = proposal.to_json()
        data["aka_mode_guarantee"] = aka_mode_guarantee(self, proposal)
        return data


@dataclass(frozen=True)
class AlgorithmProposal:
    """What provisioning should ask the operator for on this TPM: the algorithm set, how K
    is held (``k_form``), the mode AKA then runs in, whether K stays inside the TPM during
    AKA, and why."""

    algorithm: Literal["milenage", "hmac-sha256"]
    k_form: Literal["symcipher", "hmac", "sealed"]
    mode: Literal["ecb", "cfb", "hmac", "sealed"]
    k_inside: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def hmac_supported(info: TpmInfo) -> bool:
    """TPM2_HMAC with SHA-256 on a keyed-hash key: what the HMAC-SHA-256 set needs."""
    return info.hmac_command and "sha256" in info.hashes


def propose_algorithm(info: TpmInfo) -> AlgorithmProposal:
    """The operator algorithm set to provision on this TPM (docs/hmac-aka.md §7): Milenage
    with K as an AES key when the TPM has EncryptDecrypt(2) with ECB or CFB; else the
    HMAC-SHA-256 set with K as an HMAC key (TPM2_HMAC, in every PC Client TPM); else Milenage
    with K sealed — the last resort: K enters host memory during each AKA."""
    mode = choose_aka_mode(info)
    if mode != "sealed":
        return AlgorithmProposal(
            "milenage", "symcipher", mode, True, f"EncryptDecrypt with AES-{mode.upper()}"
        )
    if hmac_supported(info):
        return AlgorithmProposal(
            "hmac-sha256",
            "hmac",
            "hmac",
            True,
            "no usable EncryptDecrypt/EncryptDecrypt2: K as an HMAC key, TPM2_HMAC per function",
        )
    return AlgorithmProposal(
        "milenage",
        "sealed",
        "sealed",
        False,
        "neither EncryptDecrypt nor TPM2_HMAC: K sealed, unsealed into host memory per AKA",
    )


def aka_mode_guarantee(info: TpmInfo, proposal: AlgorithmProposal | None = None) -> str:
    """What the AKA mode trelab proposes on this TPM (:func:`propose_algorithm`) guarantees
    about K and the bus (threat 9 of TR 33.812 §7.1.2.1), in one line for ``trelab tpm info``."""
    mode = (proposal or propose_algorithm(info)).mode
    if mode == "hmac":
        return (
            "K stays inside the TPM as an HMAC key (TPM2_HMAC, the HMAC-SHA-256 operator "
            "algorithm set, which the operator must provision); its inputs and outputs cross "
            "the bus encrypted in a salted session. Milenage here would need sealed K"
        )
    if mode in ("ecb", "cfb"):
        how = f"AES-128 {mode.upper()}" + (" (the CFB decrypt trick)" if mode == "cfb" else "")
        return (
            f"K stays inside the TPM (TPM2_EncryptDecrypt2, {how}); with bus protection "
            "(the default) E_K's inputs and outputs cross the bus encrypted in a salted session"
        )
    sealed = (
        "last resort: K is sealed in the TPM and unsealed over a salted, encrypted session "
        "into host memory for each AKA — K is outside the TPM while the AKA runs"
    )
    if info.encrypt_decrypt and (info.aes_modes.get("ecb") or info.aes_modes.get("cfb")):
        sealed += (
            "; TPM2_EncryptDecrypt could keep K inside, but only with --no-bus-protection "
            "(E_K's inputs and outputs in clear on the bus)"
        )
    return sealed


def choose_aka_mode(info: TpmInfo) -> AkaMode:
    """The fastest way this TPM can serve Milenage/TUAK with K inside (docs/tpm.md) *and* the bus
    protected (the default): ECB on TPM2_EncryptDecrypt2 (2 commands per Milenage AKA), else
    the CFB trick (one CFB decrypt yields every block), else K sealed and unsealed per AKA
    (weaker: K enters host memory). TPM2_EncryptDecrypt alone does not count: its inData
    cannot be parameter-encrypted, so it runs only with ``--no-bus-protection``."""
    has_command = info.encrypt_decrypt2
    if has_command and info.aes_modes.get("ecb"):
        return "ecb"
    if has_command and info.aes_modes.get("cfb"):
        return "cfb"
    return "sealed"


def provisioned_outlook(algorithm: str, k_form: str, *, symmetric_command: bool) -> dict[str, Any]:
    """How a provisioned MID will run on a TPM (``symmetric_command``: EncryptDecrypt or
    EncryptDecrypt2 present): the mode, whether K stays inside, and a note proposing the
    hmac-sha256 set where the MID's form leaves K outside or cannot run (docs/hmac-aka.md §7).
    Pure: what ``trelab provision`` reports after the import."""
    proposal = (
        "the hmac-sha256 operator set keeps K inside this TPM (TPM2_HMAC): ask the SHO for it"
        " (docs/hmac-aka.md)"
    )
    if k_form == "hmac":
        return {"mode": "hmac", "k_inside": True, "note": None}
    if k_form == "sealed":
        note = "K is sealed: it is unsealed into host memory for each AKA (the last resort)"
        if algorithm != "tuak" and not symmetric_command:
            note += f"; {proposal}"
        return {"mode": "sealed", "k_inside": False, "note": note}
    if symmetric_command:
        return {"mode": "symcipher", "k_inside": True, "note": None}
    return {
        "mode": None,
        "k_inside": False,
        "note": "this TPM has no EncryptDecrypt/EncryptDecrypt2, so this MID's AES K cannot run"
        f" here; {proposal}",
    }


def _properties(esys: Any, first: int, count: int) -> dict[int, int]:
    out: dict[int, int] = {}
    more = True
    while more and count > 0:
        more, caps = esys.get_capability(TPM2_CAP.TPM_PROPERTIES, first, count)
        props = list(caps.data.tpmProperties)
        if not props:
            break
        for prop in props:
            out[int(prop.property)] = int(prop.value)
        last = int(props[-1].property)
        count -= last + 1 - first
        first = last + 1
    return out


def _iterate(esys: Any, cap: int, first: int, attribute: str) -> Iterator[Any]:
    more = True
    while more:
        more, caps = esys.get_capability(cap, first, 256)
        items = list(getattr(caps.data, attribute))
        if not items:
            return
        yield from items
        last = items[-1]
        first = (int(last.alg) if hasattr(last, "alg") else int(last) & 0xFFFF) + 1


def _text(*words: int) -> str:
    raw = b"".join(w.to_bytes(4, "big") for w in words)
    return raw.replace(b"\x00", b"").decode("ascii", "replace").strip()


def _spec_date(year: int, day: int) -> str:
    try:
        return (datetime.date(year, 1, 1) + datetime.timedelta(days=day - 1)).isoformat()
    except (ValueError, OverflowError):
        return f"{year}/{day}"


def _test_parms(esys: Any, parms: Any) -> bool:
    try:
        esys.test_parms(parms)
    except TSS2_Exception:
        return False
    return True


def _aes_parms(bits: int, mode: int) -> Any:
    return TPMT_PUBLIC_PARMS(
        type=TPM2_ALG.SYMCIPHER,
        parameters=TPMU_PUBLIC_PARMS(
            symDetail=TPMS_SYMCIPHER_PARMS(
                sym=TPMT_SYM_DEF_OBJECT(
                    algorithm=TPM2_ALG.AES,
                    keyBits=TPMU_SYM_KEY_BITS(aes=bits),
                    mode=TPMU_SYM_MODE(aes=mode),
                )
            )
        ),
    )


def _rsa_parms(bits: int) -> Any:
    return TPMT_PUBLIC_PARMS(
        type=TPM2_ALG.RSA,
        parameters=TPMU_PUBLIC_PARMS(
            rsaDetail=TPMS_RSA_PARMS(
                symmetric=TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL),
                scheme=TPMT_RSA_SCHEME(scheme=TPM2_ALG.NULL),
                keyBits=bits,
                exponent=0,
            )
        ),
    )


def _ecc_parms(curve: int) -> Any:
    return TPMT_PUBLIC_PARMS(
        type=TPM2_ALG.ECC,
        parameters=TPMU_PUBLIC_PARMS(
            eccDetail=TPMS_ECC_PARMS(
                symmetric=TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL),
                scheme=TPMT_ECC_SCHEME(scheme=TPM2_ALG.NULL),
                curveID=curve,
                kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL),
            )
        ),
    )


def probe(conn: TpmConnection) -> TpmInfo:
    """Ask the TPM what it is and what it can do. Only TestParms for algorithms the TPM lists
    (so a chip without ECB is not asked to test it); creates no object.

    Raises:
        Unavailable: the TPM does not answer GetCapability.
    """
    esys = conn.esys
    notes: list[str] = []
    try:
        fixed = _properties(esys, int(TPM2_PT.FIXED), 0x100)
        var = _properties(esys, int(TPM2_PT.VAR), 0x20)
        algs = {int(a.alg) for a in _iterate(esys, TPM2_CAP.ALGS, 0, "algorithms")}
        commands = {int(c) & 0xFFFF for c in _iterate(esys, TPM2_CAP.COMMANDS, 0, "command")}
        _, caps = esys.get_capability(TPM2_CAP.PCRS, 0, 16)
        banks: dict[str, list[int]] = {}
        for sel in caps.data.assignedPCR:
            bitmap = bytes(sel.pcrSelect)[: int(sel.sizeofSelect)]
            pcrs = [i for i in range(len(bitmap) * 8) if bitmap[i // 8] >> (i % 8) & 1]
            name = _HASH_NAMES.get(int(sel.hash), f"0x{int(sel.hash):04x}")
            if pcrs:
                banks[name] = pcrs
        _, caps = esys.get_capability(TPM2_CAP.ECC_CURVES, 0, 64)
        curves = [int(c) for c in caps.data.eccCurves]
        aes = int(TPM2_ALG.AES) in algs
        aes_modes = {
            mode: aes and int(alg) in algs and _test_parms(esys, _aes_parms(128, alg))
            for mode, alg in _MODE_ALG.items()
        }
        probe_mode = next((int(_MODE_ALG[m]) for m in ("cfb", "ecb") if aes_modes[m]), None)
        aes_bits = (
            [b for b in (128, 192, 256) if _test_parms(esys, _aes_parms(b, probe_mode))]
            if probe_mode is not None
            else []
        )
        rsa = int(TPM2_ALG.RSA) in algs
        rsa_bits = [b for b in (1024, 2048, 3072, 4096) if rsa and _test_parms(esys, _rsa_parms(b))]
        ecc = int(TPM2_ALG.ECC) in algs
        ecc_curves = [
            _CURVE_NAMES.get(c, f"0x{c:04x}")
            for c in curves
            if ecc and _test_parms(esys, _ecc_parms(c))
        ]
    except TSS2_Exception as exc:
        raise Unavailable(f"TPM {conn.tcti} does not answer GetCapability: {exc}") from None
    fw1, fw2 = fixed.get(_FIRMWARE_1, 0), fixed.get(_FIRMWARE_2, 0)
    revision = fixed.get(int(TPM2_PT.REVISION), 0)
    permanent = var.get(int(TPM2_PT.PERMANENT), 0)
    hmac_command = (
        int(TPM2_CC.HMAC) in commands
        and int(TPM2_ALG.HMAC) in algs
        and int(TPM2_ALG.KEYEDHASH) in algs
    )
    if not (int(TPM2_CC.EncryptDecrypt2) in commands or int(TPM2_CC.EncryptDecrypt) in commands):
        notes.append(
            "no symmetric command: Milenage/TUAK fall back to sealed K (weaker);"
            " the hmac-sha256 set keeps K inside"
            if hmac_command
            else "no symmetric command: AKA falls back to sealed K (weaker)"
        )
    return TpmInfo(
        tcti=conn.tcti,
        manufacturer=_text(fixed.get(int(TPM2_PT.MANUFACTURER), 0)),
        vendor=_text(*(fixed.get(p, 0) for p in _VENDOR_STRINGS)),
        firmware=f"{fw1:08x}.{fw2:08x}",  # vendor-defined: shown raw, as tpm2_getcap does
        spec_revision=f"{revision // 100}.{revision % 100:02d}",
        spec_date=_spec_date(
            fixed.get(int(TPM2_PT.YEAR), 0), fixed.get(int(TPM2_PT.DAY_OF_YEAR), 0)
        ),
        pcr_banks=banks,
        pcr_count=fixed.get(0x112, 0),  # TPM_PT_PCR_COUNT
        encrypt_decrypt=int(TPM2_CC.EncryptDecrypt) in commands,
        encrypt_decrypt2=int(TPM2_CC.EncryptDecrypt2) in commands,
        hmac_command=hmac_command,
        aes_modes=aes_modes,
        aes_key_bits=aes_bits,
        rsa=rsa,
        rsa_key_bits=rsa_bits,
        ecc=ecc,
        ecc_curves=ecc_curves,
        hashes=sorted(name for alg, name in _HASH_NAMES.items() if alg in algs),
        dictionary_attack=DictionaryAttack(
            max_tries=var.get(int(TPM2_PT.MAX_AUTH_FAIL), 0),
            recovery_time=var.get(int(TPM2_PT.LOCKOUT_INTERVAL), 0),
            lockout_recovery=var.get(int(TPM2_PT.LOCKOUT_RECOVERY), 0),
            failed_tries=var.get(int(TPM2_PT.LOCKOUT_COUNTER), 0),
            locked_out=bool(permanent & int(TPMA_PERMANENT.INLOCKOUT)),
        ),
        owner_auth_set=bool(permanent & int(TPMA_PERMANENT.OWNERAUTHSET)),
        endorsement_auth_set=bool(permanent & int(TPMA_PERMANENT.ENDORSEMENTAUTHSET)),
        lockout_auth_set=bool(permanent & int(TPMA_PERMANENT.LOCKOUTAUTHSET)),
        notes=notes,
    )
