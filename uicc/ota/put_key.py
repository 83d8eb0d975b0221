"""Pure. OTA key set management by RAM (GlobalPlatform Card Specification v2.3 §11.8 PUT KEY,
§11.2 DELETE)."""

from __future__ import annotations

import hmac

from trelab.errors import BadInput
from uicc.ota.secured_packet import BLOCK, Keyset, aes_cbc

__all__ = [
    "build_delete_keyset",
    "build_put_key",
    "key_check_value",
    "parse_delete_keyset",
    "parse_put_key",
]


# ---- RAM: key set management (GlobalPlatform Card Spec v2.3 §11.8 PUT KEY, §11.2 DELETE) ----------

_AES_KEY_TYPE = 0x88
_KEY_INDICES = ("kic", "kid", "dek")  # key identifiers 1, 2, 3 of an OTA key set


def key_check_value(key: bytes) -> bytes:
    """AES KCV: the first 3 bytes of AES_K(01…01) (GlobalPlatform Amendment D §7.2)."""
    return aes_cbc(key, b"\x01" * BLOCK, decrypt=False)[:3]  # one block: CBC, zero IV = ECB


def build_put_key(new: Keyset, *, kek: bytes, replace_kvn: int = 0) -> bytes:
    """PUT KEY (``80 D8 P1 81``): KIc, KID and DEK of ``new`` as key identifiers 1…3, each AES
    value encrypted with ``kek`` (AES-CBC, zero IV) and followed by its KCV. ``replace_kvn``
    0 adds a key set, else replaces that version. Returned as a compact-format TPDU.

    Raises: BadInput: ``new`` has no DEK, or keys that are not 16 or 32 bytes.
    """
    if new.dek is None:
        raise BadInput("PUT KEY: the new key set needs a DEK")
    fields = b""
    for key in (new.kic, new.kid, new.dek):
        if len(key) not in (16, 32):
            raise BadInput("PUT KEY: AES keys of 16 or 32 bytes only")
        component = bytes([len(key)]) + aes_cbc(kek, key, decrypt=False)
        fields += bytes([_AES_KEY_TYPE, len(component)]) + component
        fields += bytes([3]) + key_check_value(key)
    data = bytes([new.kvn]) + fields
    return bytes([0x80, 0xD8, replace_kvn, 0x81, len(data)]) + data


def parse_put_key(p1: int, p2: int, data: bytes, *, kek: bytes) -> tuple[int, Keyset, bytes]:
    """(version replaced or 0, new key set, response data KVN ‖ KCVs) of a PUT KEY.

    Raises:
        BadInput: not three AES keys with identifiers 1…3, or a KCV that does not match (a key
            decrypted with the wrong KEK).
    """
    if p2 != 0x81:
        raise BadInput("PUT KEY: expected P2 81 (key identifier 1, several keys)")
    if not data or not 1 <= data[0] <= 15:
        raise BadInput("PUT KEY: new KVN must be 1…15")
    kvn, rest = data[0], data[1:]
    keys: list[bytes] = []
    kcvs = b""
    while rest:
        if len(rest) < 2 or rest[0] != _AES_KEY_TYPE:
            raise BadInput("PUT KEY: expected AES key data (type 88)")
        length = rest[1]
        component, rest = rest[2 : 2 + length], rest[2 + length :]
        if len(component) != length or length < 17 or component[0] != length - 1:
            raise BadInput("PUT KEY: key component malformed")
        if component[0] not in (16, 32):
            raise BadInput("PUT KEY: AES keys of 16 or 32 bytes only")
        key = aes_cbc(kek, component[1:], decrypt=True)
        if len(rest) < 4 or rest[0] != 3:
            raise BadInput("PUT KEY: KCV missing")
        kcv, rest = rest[1:4], rest[4:]
        if not hmac.compare_digest(kcv, key_check_value(key)):
            raise BadInput("PUT KEY: key check value does not match")
        keys.append(key)
        kcvs += kcv
    if len(keys) != len(_KEY_INDICES):
        raise BadInput("PUT KEY: expected KIc, KID and DEK")
    return p1, Keyset(kvn, keys[0], keys[1], keys[2]), bytes([kvn]) + kcvs


def build_delete_keyset(kvn: int) -> bytes:
    """DELETE (``80 E4 00 00``) of every key of version ``kvn``: tag D2 (GP §11.2.2.3)."""
    if not 1 <= kvn <= 15:
        raise BadInput("KVN must be 1…15")
    return bytes([0x80, 0xE4, 0x00, 0x00, 0x03, 0xD2, 0x01, kvn])


def parse_delete_keyset(data: bytes) -> int:
    """The KVN a DELETE names. Raises: BadInput: not ``D2 01 kvn``."""
    if len(data) != 3 or data[:2] != b"\xd2\x01" or not 1 <= data[2] <= 15:
        raise BadInput("DELETE: expected D2 01 KVN")
    return data[2]
