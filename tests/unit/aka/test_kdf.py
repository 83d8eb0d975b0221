"""EPS and 5G AKA key derivations against a second implementation written here.

TS 33.401 and TS 33.501 publish no test data for K_ASME, RES*, K_AUSF, K_SEAF or K_AMF, so
each is recomputed from the spec text with ``cryptography``'s HMAC and hash objects and the
digits handled as text (the product code uses :mod:`hmac`/:mod:`hashlib` and nibble arithmetic).
The EAP-AKA' test vectors in tests/vectors cover the KDF itself.
"""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC
from hypothesis import given
from hypothesis import strategies as st

from aka.kdf import (
    Plmn,
    eps_algorithm_key,
    five_g_keys,
    hres_star,
    kamf,
    kasme,
    kausf,
    kdf,
    kenb,
    kseaf,
    parse_supi,
    res_star,
)
from trelab.errors import BadInput

b16 = st.binary(min_size=16, max_size=16)
b6 = st.binary(min_size=6, max_size=6)
digits = st.text(alphabet="0123456789", min_size=1)


def other_kdf(key: bytes, fc: int, *params: bytes) -> bytes:
    mac = HMAC(key, hashes.SHA256())
    mac.update(struct.pack(">B", fc))
    for p in params:
        mac.update(p + struct.pack(">H", len(p)))
    return mac.finalize()


def other_sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def other_plmn(mcc: str, mnc: str) -> bytes:
    """TS 24.008 Figure 10.5.13: MCC2 MCC1 | MNC3 MCC3 | MNC2 MNC1, written as text swaps."""
    text = mcc[1] + mcc[0] + (mnc[2] if len(mnc) == 3 else "f") + mcc[2] + mnc[1] + mnc[0]
    return bytes.fromhex(text)


@given(st.binary(max_size=64), st.integers(0, 255), st.lists(st.binary(max_size=40), max_size=4))
def test_kdf_matches_the_spec_text(key: bytes, fc: int, params: list[bytes]) -> None:
    assert kdf(key, fc, *params) == other_kdf(key, fc, *params)


def test_plmn_encoding_examples() -> None:
    assert Plmn.parse("20893").encoded().hex() == "02f839"
    assert Plmn.parse("274012").encoded().hex() == "722410"
    assert Plmn.parse("20893").serving_network_name() == "5G:mnc093.mcc208.3gppnetwork.org"


@given(
    st.text(alphabet="0123456789", min_size=3, max_size=3),
    st.text(alphabet="0123456789", min_size=2, max_size=3),
    b16,
    b16,
    b6,
)
def test_kasme(mcc: str, mnc: str, ck: bytes, ik: bytes, sqn_xor_ak: bytes) -> None:
    expected = other_kdf(ck + ik, 0x10, other_plmn(mcc, mnc), sqn_xor_ak)
    assert kasme(ck, ik, Plmn(mcc, mnc), sqn_xor_ak) == expected


@given(st.binary(min_size=32, max_size=32), st.integers(0, 2**32 - 1), st.integers(0, 15))
def test_kenb_and_algorithm_keys(k_asme: bytes, count: int, alg: int) -> None:
    assert kenb(k_asme, count) == other_kdf(k_asme, 0x11, count.to_bytes(4, "big"))
    for number, name in enumerate(("nas-enc", "nas-int", "rrc-enc", "rrc-int"), start=1):
        full = other_kdf(k_asme, 0x15, bytes([number]), bytes([alg]))
        assert eps_algorithm_key(k_asme, name, alg) == full[-16:]


@given(
    b16,
    b16,
    st.binary(min_size=4, max_size=16),
    b16,
    b6,
    st.text(min_size=1, max_size=60),
    st.text(alphabet="0123456789", min_size=6, max_size=15),
    st.binary(min_size=1, max_size=4),
)
def test_five_g_chain(
    ck: bytes,
    ik: bytes,
    res: bytes,
    rand: bytes,
    sqn_xor_ak: bytes,
    snn: str,
    imsi: str,
    abba: bytes,
) -> None:
    name = snn.encode()
    keys = five_g_keys(ck, ik, res, rand, sqn_xor_ak, snn, supi=f"imsi-{imsi}", abba=abba)
    want_res_star = other_kdf(ck + ik, 0x6B, name, rand, res)[-16:]
    want_kausf = other_kdf(ck + ik, 0x6A, name, sqn_xor_ak)
    want_kseaf = other_kdf(want_kausf, 0x6C, name)
    assert keys.res_star == want_res_star == res_star(ck, ik, snn, rand, res)
    assert keys.hxres_star == other_sha256(rand + want_res_star)[-16:]
    assert keys.hxres_star == hres_star(rand, keys.res_star)
    assert keys.kausf == want_kausf == kausf(ck, ik, snn, sqn_xor_ak)
    assert keys.kseaf == want_kseaf == kseaf(want_kausf, snn)
    assert keys.kamf == other_kdf(want_kseaf, 0x6D, imsi.encode(), abba)
    assert keys.kamf == kamf(want_kseaf, f"imsi-{imsi}", abba)


def test_five_g_without_supi_has_no_kamf() -> None:
    keys = five_g_keys(b"\1" * 16, b"\2" * 16, b"\3" * 8, b"\4" * 16, b"\5" * 6, "5G:x")
    assert keys.kamf is None and "hidden" in repr(keys)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: kasme(b"\0" * 15, b"\0" * 16, Plmn("001", "01"), b"\0" * 6), "CK"),
        (lambda: kausf(b"\0" * 16, b"\0" * 16, "5G:x", b"\0" * 5), "SQN"),
        (lambda: kausf(b"\0" * 16, b"\0" * 16, "", b"\0" * 6), "serving network name"),
        (lambda: res_star(b"\0" * 16, b"\0" * 16, "5G:x", b"\0" * 16, b"\0" * 3), "RES"),
        (lambda: kamf(b"\0" * 32, "imsi-12", b"\0\0"), "SUPI"),
        (lambda: kamf(b"\0" * 32, "imsi-001010000000001", b""), "ABBA"),
        (lambda: Plmn.parse("2089"), "PLMN"),
        (lambda: Plmn.parse("2O893"), "PLMN"),
        (lambda: parse_supi("imsi-²08930000000001"), "SUPI"),
        (lambda: eps_algorithm_key(b"\0" * 32, "nas-zip", 1), "distinguisher"),
        (lambda: kenb(b"\0" * 32, -1), "NAS COUNT"),
    ],
)
def test_bad_input_is_typed(call: object, needle: str) -> None:
    with pytest.raises(BadInput, match=needle):
        call()  # type: ignore[operator]
