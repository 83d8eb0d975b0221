"""Edge: filesystem (reads one profile file). A card profile: what one USIM is personalised with.

:func:`parse_profile` is pure: a mapping with the keys of a card profile (``iccid``, ``imsi``,
``algorithm``, ``k``, ``opc``/``op`` or ``topc``/``top`` with ``iterations`` and output lengths
(for the HMAC-SHA-256 set of docs/hmac-aka.md: ``opc``/``op`` of 32 bytes and ``res_bits``),
``amf``, ``sqn_ms``, ``pin1``, ``puk1``, ``adm1``, optionally ``pin2`` with ``puk2`` (the second
application PIN of TS 102 221 §9.5.1), ``ota_keysets``, ``suci``) → a frozen
:class:`CardProfile`. Unknown or missing keys and malformed hex give a one-line
:class:`~trelab.errors.BadInput` naming the key, never its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol

from aka.algorithm import AkaAlgorithm
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage, opc_from_op
from aka.native import NATIVE_AVAILABLE, NativeMilenage
from aka.sqn import SqnState
from aka.tuak import CK_BITS, IK_BITS, MAC_BITS, RES_BITS, SoftwareKeccak, Tuak, topc_from_top
from trelab.digits import is_decimal
from trelab.errors import BadInput
from trelab.hexargs import parse_hex
from trelab.jsontext import load_json, load_toml
from uicc import fs

__all__ = [
    "DEFAULT_PROFILE",
    "CardProfile",
    "HomeNetworkPublicKey",
    "OtaKeyset",
    "SuciSettings",
    "encode_pin",
    "load_profile",
    "make_algorithm",
    "parse_profile",
]

Algorithm = Literal["milenage", "tuak", "hmac-sha256"]

_COMMON_REQUIRED = ("iccid", "imsi", "algorithm", "k", "amf", "sqn_ms", "pin1", "puk1", "adm1")
_MILENAGE_KEYS = frozenset({"opc", "op"})
_TUAK_KEYS = frozenset({"topc", "top", "iterations", "res_bits", "mac_bits", "ck_bits", "ik_bits"})
_HMAC_KEYS = frozenset({"opc", "op", "res_bits"})
_OPTIONAL = frozenset(
    {
        "ota_keysets",
        "pin1_enabled",
        "mnc_length",
        "spn",
        "suci",
        "msisdn",
        "pin2",
        "puk2",
        "pin2_enabled",
    }
)
_SUCI_KEYS = frozenset({"routing_indicator", "schemes", "home_network_keys", "calculation"})
_HN_KEY_KEYS = frozenset({"id", "profile", "public"})
_ALL_KEYS = frozenset(_COMMON_REQUIRED) | _MILENAGE_KEYS | _TUAK_KEYS | _OPTIONAL
_OTA_KEYS = frozenset({"kvn", "kic", "kid", "tar", "counter"})


def encode_pin(name: str, text: str, *, digits: tuple[int, int], allow_hex: bool = False) -> bytes:
    """A PIN as the card stores and compares it: ASCII digits padded with FF to 8 bytes
    (TS 102 221 §9.5.1). ADM keys may also be 16 hex digits (8 raw bytes).

    Raises:
        BadInput: not digits, or the wrong number of them (the message never shows the value).
    """
    low, high = digits
    if is_decimal(text) and low <= len(text) <= high:
        return text.encode("ascii") + b"\xff" * (8 - len(text))
    if allow_hex and len(text) == 16:
        return parse_hex(name, text, length=8)
    raise BadInput(f"{name}: expected {low} to {high} digits")


@dataclass(frozen=True)
class OtaKeyset:
    """One OTA keyset (TS 102 225 §5.1): KIc (ciphering), KID (checksum), TAR, 5-byte counter."""

    kvn: int
    kic: bytes = field(repr=False)
    kid: bytes = field(repr=False)
    tar: bytes
    counter: bytes = bytes(5)


@dataclass(frozen=True)
class HomeNetworkPublicKey:
    """One home network public key the card conceals the SUPI with (TS 31.102 §4.4.11.8)."""

    key_id: int
    profile: Literal["A", "B"]
    public: bytes


@dataclass(frozen=True)
class SuciSettings:
    """Subscription identifier privacy on the card: the routing indicator, the protection
    schemes in priority order and the home network public keys. With these the USIM computes
    the SUCI itself (GET IDENTITY; EF.UST services 124 and 125), or with ``calculation`` "me"
    leaves it to the ME (service 124 only; the keys in DF.5GS)."""

    routing_indicator: str = "0"
    schemes: tuple[str, ...] = ("null",)
    home_network_keys: tuple[HomeNetworkPublicKey, ...] = ()
    calculation: Literal["usim", "me"] = "usim"  # who conceals: the USIM (service 125) or the ME

    def key_for(self, scheme: str) -> HomeNetworkPublicKey | None:
        return next((k for k in self.home_network_keys if k.profile == scheme), None)


@dataclass(frozen=True)
class CardProfile:
    """The personalisation of one USIM. Secrets are hidden from repr/str."""

    iccid: str
    imsi: str
    algorithm: Algorithm
    k: bytes = field(repr=False)
    amf: bytes
    sqn_ms: bytes
    pin1: str = field(repr=False)
    puk1: str = field(repr=False)
    adm1: str = field(repr=False)
    opc: bytes | None = field(default=None, repr=False)
    topc: bytes | None = field(default=None, repr=False)
    iterations: int = 1
    res_bits: int = 64
    mac_bits: int = 64
    ck_bits: int = 128
    ik_bits: int = 128
    pin1_enabled: bool = True
    pin2: str | None = field(default=None, repr=False)  # None: the card has no PIN2
    puk2: str | None = field(default=None, repr=False)
    pin2_enabled: bool = True
    mnc_length: int = 2
    spn: str = "trelab"
    ota_keysets: tuple[OtaKeyset, ...] = field(default=(), repr=False)
    suci: SuciSettings | None = None
    msisdn: str | None = None

    def make_algorithm(self) -> AkaAlgorithm:
        """The f1…f5* of this card with K in software (Milenage: native kernel when built)."""
        return make_algorithm(self)

    def initial_sqn_state(self) -> SqnState:
        """SQN state of a fresh card: any SQN with a higher SEQ (within Δ) is fresh (TS 33.102 C.2)."""
        return SqnState.starting_at(self.sqn_ms)

    @property
    def pin1_block(self) -> bytes:
        return encode_pin("pin1", self.pin1, digits=(4, 8))

    @property
    def puk1_block(self) -> bytes:
        return encode_pin("puk1", self.puk1, digits=(8, 8))

    @property
    def pin2_block(self) -> bytes | None:
        return None if self.pin2 is None else encode_pin("pin2", self.pin2, digits=(4, 8))

    @property
    def puk2_block(self) -> bytes | None:
        return None if self.puk2 is None else encode_pin("puk2", self.puk2, digits=(8, 8))

    @property
    def adm1_block(self) -> bytes:
        return encode_pin("adm1", self.adm1, digits=(4, 8), allow_hex=True)


# A built-in test card: TS 35.208 Test Set 1 K/OPc. sqn_ms sits one SEQ below the set's SQN
# (ff9bb4d0b607, IND 7), so the set's own RAND/AUTN authenticate once, then replay gives AUTS.
DEFAULT_PROFILE: Mapping[str, Any] = MappingProxyType(
    {
        "iccid": "8988211000000000017",
        "imsi": "001010123456789",
        "algorithm": "milenage",
        "k": "465b5ce8b199b49faa5f0a2ee238a6bc",
        "opc": "cd63cb71954a9f4e48a5994e37a02baf",
        "amf": "8000",
        "sqn_ms": "ff9bb4d0b5e7",
        "pin1": "1234",
        "puk1": "12345678",
        "pin2": "5678",
        "puk2": "23456789",
        "adm1": "88888888",
        "msisdn": "+491700000001",
        # The home network keys of TS 33.501 Annex C.4 (their private halves are published
        # there, like Test Set 1's K): the card conceals its IMSI itself with Profile B.
        "suci": {
            "routing_indicator": "0",
            "schemes": ["B", "A", "null"],
            "home_network_keys": [
                {
                    "id": 1,
                    "profile": "A",
                    "public": "5a8d38864820197c3394b92613b20b91633cbd897119273bf8e4a6f4eec0a650",
                },
                {
                    "id": 2,
                    "profile": "B",
                    "public": "0272da71976234ce833a6907425867b82e074d44ef907dfb4b3e21c1c2256ebcd1",
                },
            ],
        },
        "ota_keysets": [
            {
                "kvn": 1,
                "kic": "000102030405060708090a0b0c0d0e0f",
                "kid": "101112131415161718191a1b1c1d1e1f",
                "tar": "b00001",
                "counter": "0000000000",
            }
        ],
    }
)


class _AlgorithmParams(Protocol):
    """Read-only view shared by CardProfile and HssRecord."""

    @property
    def algorithm(self) -> Algorithm: ...

    @property
    def k(self) -> bytes: ...

    @property
    def opc(self) -> bytes | None: ...

    @property
    def topc(self) -> bytes | None: ...

    @property
    def iterations(self) -> int: ...

    @property
    def res_bits(self) -> int: ...

    @property
    def mac_bits(self) -> int: ...

    @property
    def ck_bits(self) -> int: ...

    @property
    def ik_bits(self) -> int: ...


def make_algorithm(params: _AlgorithmParams) -> AkaAlgorithm:
    """Milenage (TS 35.206) or TUAK (TS 35.231) with K in software, from profile-like parameters.

    Raises:
        BadInput: OPc (Milenage) or TOPc (TUAK) missing, or lengths the algorithm rejects.
    """
    if params.algorithm == "hmac-sha256":
        from aka.hmac_aka import HmacAka, SoftwareHmac

        if params.opc is None:
            raise BadInput("the HMAC-SHA-256 set needs OPc")
        return HmacAka(SoftwareHmac(params.k), params.opc, res_bits=params.res_bits)
    if params.algorithm == "milenage":
        if params.opc is None:
            raise BadInput("Milenage needs OPc")
        if NATIVE_AVAILABLE:
            return NativeMilenage(params.k, params.opc)
        return Milenage(SoftwareAes(params.k), params.opc)
    if params.topc is None:
        raise BadInput("TUAK needs TOPc")
    return Tuak(
        SoftwareKeccak(params.k),
        params.topc,
        mac_bits=params.mac_bits,
        res_bits=params.res_bits,
        ck_bits=params.ck_bits,
        ik_bits=params.ik_bits,
        iterations=params.iterations,
    )


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise BadInput(f"profile: {key} must be a string")
    return value


def _int(data: Mapping[str, Any], key: str, default: int, allowed: tuple[int, ...]) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise BadInput(f"profile: {key} must be one of {', '.join(map(str, allowed))}")
    return value


def _digits(data: Mapping[str, Any], key: str, low: int, high: int) -> str:
    value = _str(data, key)
    if not (is_decimal(value) and low <= len(value) <= high):
        raise BadInput(f"profile: {key} must be {low} to {high} digits")
    return value


def _ota_hex(
    item: Mapping[str, Any],
    where: str,
    key: str,
    length: int | tuple[int, ...],
    default: str | None = None,
) -> bytes:
    value = item.get(key, default)
    if not isinstance(value, str):
        raise BadInput(f"profile: {where}.{key} must be a hex string")
    return parse_hex(f"profile: {where}.{key}", value, length=length)


def _ota_keysets(raw: Any) -> tuple[OtaKeyset, ...]:
    if not isinstance(raw, list):
        raise BadInput("profile: ota_keysets must be a list")
    out = []
    for index, item in enumerate(raw):
        where = f"ota_keysets[{index}]"
        if not isinstance(item, Mapping):
            raise BadInput(f"profile: {where} must be an object")
        unknown = sorted(set(item) - _OTA_KEYS)
        if unknown:
            raise BadInput(f"profile: unknown key {where}.{unknown[0]}")
        for key in ("kic", "kid", "tar"):
            if key not in item:
                raise BadInput(f"profile: missing key {where}.{key}")
        kvn = item.get("kvn", index + 1)
        if isinstance(kvn, bool) or not isinstance(kvn, int) or not 1 <= kvn <= 15:
            raise BadInput(f"profile: {where}.kvn must be 1…15")

        out.append(
            OtaKeyset(
                kvn=kvn,
                kic=_ota_hex(item, where, "kic", (16, 24, 32)),
                kid=_ota_hex(item, where, "kid", (16, 24, 32)),
                tar=_ota_hex(item, where, "tar", 3),
                counter=_ota_hex(item, where, "counter", 5, "0000000000"),
            )
        )
    return tuple(out)


def _suci(raw: Any) -> SuciSettings:
    if not isinstance(raw, Mapping):
        raise BadInput("profile: suci must be an object")
    unknown = sorted(set(raw) - _SUCI_KEYS)
    if unknown:
        raise BadInput(f"profile: unknown key suci.{unknown[0]}")
    ri = raw.get("routing_indicator", "0")
    if not is_decimal(ri, max_digits=4):
        raise BadInput("profile: suci.routing_indicator must be 1 to 4 digits")
    schemes = raw.get("schemes", ["null"])
    if (
        not isinstance(schemes, list)
        or not schemes
        or len(set(schemes)) != len(schemes)
        or not all(s in ("null", "A", "B") for s in schemes)
    ):
        raise BadInput("profile: suci.schemes must list null, A, B (no repeats), best first")
    keys: list[HomeNetworkPublicKey] = []
    items = raw.get("home_network_keys", [])
    if not isinstance(items, list):
        raise BadInput("profile: suci.home_network_keys must be a list")
    for index, item in enumerate(items):
        where = f"suci.home_network_keys[{index}]"
        if not isinstance(item, Mapping) or set(item) != _HN_KEY_KEYS:
            raise BadInput(f"profile: {where} must hold exactly id, profile, public")
        key_id = item["id"]
        if isinstance(key_id, bool) or not isinstance(key_id, int) or not 1 <= key_id <= 255:
            raise BadInput(f"profile: {where}.id must be 1…255")
        if item["profile"] not in ("A", "B"):
            raise BadInput(f"profile: {where}.profile must be A or B")
        if not isinstance(item["public"], str):
            raise BadInput(f"profile: {where}.public must be a hex string")
        size = (32,) if item["profile"] == "A" else (33, 65)
        public = parse_hex(f"profile: {where}.public", item["public"], length=size)
        from aka.suci import Profile, hn_public_key

        hn_public_key(Profile.A if item["profile"] == "A" else Profile.B, public)
        keys.append(HomeNetworkPublicKey(key_id, item["profile"], public))
    for scheme in schemes:
        if scheme != "null" and not any(k.profile == scheme for k in keys):
            raise BadInput(f"profile: suci.schemes lists {scheme} without a home network key")
    calculation = raw.get("calculation", "usim")
    if calculation not in ("usim", "me"):
        raise BadInput("profile: suci.calculation must be 'usim' or 'me'")
    return SuciSettings(ri, tuple(schemes), tuple(keys), calculation)


def parse_profile(data: Mapping[str, Any]) -> CardProfile:
    """Validate a profile mapping (its JSON/TOML keys) into a :class:`CardProfile`.

    Milenage profiles give exactly one of ``opc``/``op``; TUAK profiles one of ``topc``/``top``
    (OPc/TOPc derived from OP/TOP with K, TS 35.206 §4.1, TS 35.231 §6.1).

    Raises:
        BadInput: unknown, missing or malformed key (named; the value is never shown).
    """
    if not isinstance(data, Mapping):
        raise BadInput("profile: expected an object with the profile keys")
    unknown = sorted(set(data) - _ALL_KEYS)
    if unknown:
        raise BadInput(f"profile: unknown key {unknown[0]!r}")
    for key in _COMMON_REQUIRED:
        if key not in data:
            raise BadInput(f"profile: missing key {key!r}")
    algorithm = _str(data, "algorithm")
    if algorithm not in ("milenage", "tuak", "hmac-sha256"):
        raise BadInput("profile: algorithm must be 'milenage', 'tuak' or 'hmac-sha256'")
    iccid = _digits(data, "iccid", 18, 20)
    imsi = _digits(data, "imsi", 6, 15)
    amf = parse_hex("profile: amf", _str(data, "amf"), length=2)
    sqn_ms = parse_hex("profile: sqn_ms", _str(data, "sqn_ms"), length=6)
    pin1 = _digits(data, "pin1", 4, 8)
    puk1 = _digits(data, "puk1", 8, 8)
    adm1 = _str(data, "adm1")
    encode_pin("profile: adm1", adm1, digits=(4, 8), allow_hex=True)
    if ("pin2" in data) != ("puk2" in data):
        raise BadInput("profile: pin2 and puk2 go together")
    pin2 = _digits(data, "pin2", 4, 8) if "pin2" in data else None
    puk2 = _digits(data, "puk2", 8, 8) if "puk2" in data else None
    pin2_enabled = data.get("pin2_enabled", True)
    if not isinstance(pin2_enabled, bool) or (pin2 is None and "pin2_enabled" in data):
        raise BadInput("profile: pin2_enabled must be true or false, with pin2 and puk2")
    pin1_enabled = data.get("pin1_enabled", True)
    if not isinstance(pin1_enabled, bool):
        raise BadInput("profile: pin1_enabled must be true or false")
    mnc_length = _int(data, "mnc_length", 2, (2, 3))
    spn = data.get("spn", "trelab")
    if not isinstance(spn, str) or len(spn) > 16:
        raise BadInput("profile: spn must be a string of at most 16 characters")
    try:
        fs.EF_SPN.codec.encode({"display_condition": 1, "name": spn}, fs.EF_SPN.size)
    except BadInput as exc:
        raise BadInput(f"profile: spn: {exc}") from None
    ota = _ota_keysets(data.get("ota_keysets", []))
    msisdn = data.get("msisdn")
    if msisdn is not None:
        if not isinstance(msisdn, str):
            raise BadInput("profile: msisdn must be a string")
        try:
            fs.EF_MSISDN.codec.encode({"alpha": "", "number": msisdn}, fs.EF_MSISDN.record_len)
        except BadInput:
            raise BadInput("profile: msisdn must be 1 to 20 digits, optionally after '+'") from None
    common: dict[str, Any] = dict(
        iccid=iccid,
        imsi=imsi,
        amf=amf,
        sqn_ms=sqn_ms,
        pin1=pin1,
        puk1=puk1,
        adm1=adm1,
        pin2=pin2,
        puk2=puk2,
        pin2_enabled=pin2_enabled,
        pin1_enabled=pin1_enabled,
        mnc_length=mnc_length,
        spn=spn,
        ota_keysets=ota,
        suci=_suci(data["suci"]) if "suci" in data else None,
        msisdn=msisdn,
    )
    if algorithm == "milenage":
        extra = sorted(set(data) & _TUAK_KEYS)
        if extra:
            raise BadInput(f"profile: key {extra[0]!r} is for TUAK profiles")
        k = parse_hex("profile: k", _str(data, "k"), length=16)
        opc = _one_of(data, "opc", "op", 16)
        if "op" in data:
            opc = opc_from_op(SoftwareAes(k), opc)
        return CardProfile(algorithm="milenage", k=k, opc=opc, **common)
    if algorithm == "hmac-sha256":
        from aka.hmac_aka import RES_BITS as HMAC_RES_BITS
        from aka.hmac_aka import SoftwareHmac
        from aka.hmac_aka import opc_from_op as hmac_opc_from_op

        extra = sorted(set(data) & (_TUAK_KEYS - _HMAC_KEYS))
        if extra:
            raise BadInput(f"profile: key {extra[0]!r} is for TUAK profiles")
        k = parse_hex("profile: k", _str(data, "k"), length=(16, 32))
        opc = _one_of(data, "opc", "op", 32)
        if "op" in data:
            opc = hmac_opc_from_op(SoftwareHmac(k), opc)
        return CardProfile(
            algorithm="hmac-sha256",
            k=k,
            opc=opc,
            res_bits=_int(data, "res_bits", 64, HMAC_RES_BITS),
            **common,
        )
    extra = sorted(set(data) & _MILENAGE_KEYS)
    if extra:
        raise BadInput(f"profile: key {extra[0]!r} is for Milenage profiles")
    k = parse_hex("profile: k", _str(data, "k"), length=(16, 32))
    iterations = data.get("iterations", 1)
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, int)
        or not 1 <= iterations <= 255
    ):
        raise BadInput("profile: iterations must be 1…255")
    topc = _one_of(data, "topc", "top", 32)
    if "top" in data:
        topc = topc_from_top(SoftwareKeccak(k), topc, iterations)
    return CardProfile(
        algorithm="tuak",
        k=k,
        topc=topc,
        iterations=iterations,
        res_bits=_int(data, "res_bits", 64, RES_BITS),
        mac_bits=_int(data, "mac_bits", 64, MAC_BITS),
        ck_bits=_int(data, "ck_bits", 128, CK_BITS),
        ik_bits=_int(data, "ik_bits", 128, IK_BITS),
        **common,
    )


def _one_of(data: Mapping[str, Any], derived: str, base: str, length: int) -> bytes:
    if derived in data and base in data:
        raise BadInput(f"profile: give {derived!r} or {base!r}, not both")
    if derived not in data and base not in data:
        raise BadInput(f"profile: missing key {derived!r} (or {base!r})")
    key = derived if derived in data else base
    return parse_hex(f"profile: {key}", _str(data, key), length=length)


def load_profile(path: Path) -> CardProfile:
    """Read a profile file: TOML if it ends in ``.toml``, JSON otherwise.

    Raises:
        BadInput: unreadable file, invalid JSON/TOML, or a bad profile (see :func:`parse_profile`).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(
            f"profile {path}: cannot read ({exc.strerror or type(exc).__name__})"
        ) from None
    if str(path).endswith(".toml"):
        data: Any = load_toml(raw, f"profile {path}")
    else:
        data = load_json(raw, f"profile {path}")
    return parse_profile(data)
