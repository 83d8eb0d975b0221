"""SUCI concealment properties: round trips for every profile, the home network refusing a
wrong key, an unknown key id and any altered tag, ciphertext or ephemeral key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from aka.suci import Profile, Suci, conceal, deconceal, msin_bcd
from trelab.errors import BadInput, MacMismatch

msins = st.text(alphabet="0123456789", min_size=5, max_size=9)
mccs = st.text(alphabet="0123456789", min_size=3, max_size=3)
ris = st.text(alphabet="0123456789", min_size=1, max_size=4)


def home_pair(profile: Profile) -> tuple[bytes, bytes]:
    """(private, public) of a fresh home network key."""
    if profile is Profile.A:
        x = x25519.X25519PrivateKey.generate()
        public = x.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return x.private_bytes_raw(), public
    p = ec.generate_private_key(ec.SECP256R1())
    public = p.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return p.private_numbers().private_value.to_bytes(32, "big"), public


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([Profile.NULL, Profile.A, Profile.B]),
    mccs,
    st.sampled_from([2, 3]),
    msins,
    ris,
    st.integers(0, 255),
)
def test_round_trip(
    profile: Profile, mcc: str, mnc_length: int, msin: str, ri: str, key_id: int
) -> None:
    supi = f"imsi-{mcc}{'0' * mnc_length}{msin}"
    private, public = home_pair(profile) if profile is not Profile.NULL else (b"", b"")
    kid = key_id if profile is not Profile.NULL else 0
    suci = conceal(
        supi, profile, hn_public=public, key_id=kid, mnc_length=mnc_length, routing_indicator=ri
    )
    for carried in (Suci.parse(suci.to_string()), Suci.from_bytes(suci.to_bytes())):
        assert carried == suci
        assert deconceal(carried, private) == supi
    if profile is not Profile.NULL:
        assert msin_bcd(msin) not in suci.scheme_output  # concealed, not copied


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([Profile.A, Profile.B]), msins, st.data())
def test_any_altered_byte_is_refused(profile: Profile, msin: str, data: st.DataObject) -> None:
    private, public = home_pair(profile)
    suci = conceal(f"imsi-00101{msin}", profile, hn_public=public, key_id=3)
    out = bytearray(suci.scheme_output)
    index = data.draw(st.integers(0, len(out) - 1))
    out[index] ^= data.draw(st.integers(1, 255))
    try:
        tampered = Suci(suci.mcc, suci.mnc, "0", profile, 3, bytes(out))
    except BadInput:
        return  # not even a well-formed SUCI any more
    with pytest.raises((MacMismatch, BadInput)):
        deconceal(tampered, private)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([Profile.A, Profile.B]), msins)
def test_tampered_tag_is_a_mac_failure(profile: Profile, msin: str) -> None:
    private, public = home_pair(profile)
    suci = conceal(f"imsi-00101{msin}", profile, hn_public=public)
    out = suci.scheme_output[:-1] + bytes([suci.scheme_output[-1] ^ 1])
    with pytest.raises(MacMismatch, match="MAC tag"):
        deconceal(Suci(suci.mcc, suci.mnc, "0", profile, 0, out), private)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([Profile.A, Profile.B]), msins)
def test_another_home_key_is_a_mac_failure(profile: Profile, msin: str) -> None:
    _, public = home_pair(profile)
    other, _ = home_pair(profile)
    suci = conceal(f"imsi-00101{msin}", profile, hn_public=public)
    with pytest.raises(MacMismatch):
        deconceal(suci, other)


class UnknownKey(BadInput):
    pass


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([Profile.A, Profile.B]), st.integers(0, 255), st.integers(0, 255))
def test_key_id_selects_the_key(profile: Profile, used: int, known: int) -> None:
    private, public = home_pair(profile)
    suci = conceal("imsi-001010123456789", profile, hn_public=public, key_id=used)

    def lookup(p: Profile, key_id: int) -> bytes:
        if (p, key_id) != (profile, known):
            raise UnknownKey(f"no home network key {key_id}")
        return private

    if used == known:
        assert deconceal(suci, lookup) == "imsi-001010123456789"
    else:
        with pytest.raises(UnknownKey):
            deconceal(suci, lookup)


@pytest.mark.parametrize(
    "text",
    [
        "suci-1-001-01-0-0-0-0123",
        "suci-0-001-01-0-3-0-0123",
        "suci-0-001-01-0-0-1-0123",
        "suci-0-001-01-12345-0-0-0123",
        "suci-0-001-01-0-1-1-abcd",
        "suci-0-001-01-0-1-1-zz",
        "suci-0-00١-01-0-0-0-0123",
        "imsi-001010123",
    ],
)
def test_malformed_suci_strings(text: str) -> None:
    with pytest.raises(BadInput):
        Suci.parse(text)


def test_profile_b_refuses_an_uncompressed_ephemeral_key() -> None:
    private, public = home_pair(Profile.B)
    suci = conceal("imsi-001010123456789", Profile.B, hn_public=public)
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), suci.scheme_output[:33])
    long = point.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    forged = Suci("001", "01", "0", Profile.B, 0, long + suci.scheme_output[33:])
    with pytest.raises(BadInput, match="compressed"):
        deconceal(forged, private)


def test_bad_home_keys() -> None:
    with pytest.raises(BadInput, match="Profile A needs 32"):
        conceal("imsi-001010123456789", "A", hn_public=b"\1" * 33)
    with pytest.raises(BadInput, match="P-256"):
        conceal("imsi-001010123456789", "B", hn_public=b"\2" + b"\xff" * 32)
    with pytest.raises(BadInput, match="low-order"):
        conceal("imsi-001010123456789", "A", hn_public=b"\0" * 32)
