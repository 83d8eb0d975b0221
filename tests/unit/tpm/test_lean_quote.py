"""The quote path's bytes without a TPM: TPMS_ATTEST and TPMT_SIGNATURE read by offsets held
to tpm2-tss' own unmarshalling (same result, or the same refusal, on random and mutated
input), and TPM2_Quote marshalled once (:class:`tpm.lean_quote.PreparedQuote`) held to the
general lean layer's ``wrap``/``unwrap`` (TPM 2.0 Part 2 §10.12, §11.3.4; Part 3 §18.4)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpm import lean, lean_quote, marshal
from tpm.lean import CC, Auth, TpmRefused
from tpm.verify import Signature
from trelab.errors import BadInput, RemoteProtocolError

# ---- TPMS_ATTEST / TPMT_SIGNATURE: by offsets vs tpm2-tss ------------------------------------


def _attest_by_tss(data: bytes) -> object:
    return marshal._attest_from_c(marshal._unmarshal_c("TPMS_ATTEST", data, "quote.msg"))


def _signature_by_tss(data: bytes) -> Signature:
    c = marshal._unmarshal_c("TPMT_SIGNATURE", data, "quote.sig")
    alg = int(c.sigAlg)
    name = marshal._SIG_NAMES.get(alg, f"0x{alg:04x}")
    if name == "ecdsa":
        ecdsa = c.signature.ecdsa
        return Signature(
            alg=name,
            hash=marshal.hash_name(ecdsa.hash),
            ecdsa_r=int.from_bytes(marshal._bytes(ecdsa.signatureR), "big"),
            ecdsa_s=int.from_bytes(marshal._bytes(ecdsa.signatureS), "big"),
        )
    if name in ("rsassa", "rsapss"):
        body = c.signature.rsassa if name == "rsassa" else c.signature.rsapss
        sig = marshal._bytes(body.sig)
        return Signature(alg=name, hash=marshal.hash_name(body.hash), rsa_signature=sig)
    return Signature(alg=name, hash="")


def _outcome(parse, data: bytes) -> tuple[str, object]:
    try:
        return "parsed", parse(data)
    except BadInput as exc:
        return "refused", str(exc)


def _sized(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


# sizes at and around each limit tpm2-tss holds a field to
_names = st.sampled_from([0, 2, 34, 66, 68, 69]).flatmap(
    lambda n: st.binary(min_size=n, max_size=n)
)
_extra = st.sampled_from([0, 1, 16, 32, 64, 65]).flatmap(
    lambda n: st.binary(min_size=n, max_size=n)
)
_digest = st.sampled_from([0, 20, 32, 64, 65]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
_ecc_parameter = st.sampled_from([0, 31, 32, 128, 129]).flatmap(
    lambda n: st.binary(min_size=n, max_size=n)
)
_magic = st.sampled_from([0xFF544347, 0])
_attest_type = st.sampled_from([0x8018, 0x8018, 0x8018, 0x8014, 0x8017, 0x1234])
_bank = st.tuples(
    st.sampled_from([0x0004, 0x000B, 0x000C, 0x000D, 0x0012, 0x0014, 0x0000]),
    st.sampled_from([0, 1, 3, 4, 5]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
)


@st.composite
def _attests(draw: st.DrawFn) -> bytes:
    banks = draw(st.lists(_bank, max_size=3) | st.lists(_bank, min_size=16, max_size=17))
    body = (
        struct.pack(">IH", draw(_magic), draw(_attest_type))
        + _sized(draw(_names))
        + _sized(draw(_extra))
        + struct.pack(
            ">QIIBQ",
            draw(st.integers(0, 2**64 - 1)),
            draw(st.integers(0, 2**32 - 1)),
            draw(st.integers(0, 2**32 - 1)),
            draw(st.sampled_from([0, 1, 2, 255])),
            draw(st.integers(0, 2**64 - 1)),
        )
        + struct.pack(">I", len(banks))
        + b"".join(struct.pack(">HB", alg, len(bitmap)) + bitmap for alg, bitmap in banks)
        + _sized(draw(_digest))
    )
    return _mutated(draw, body)


def _mutated(draw: st.DrawFn, body: bytes) -> bytes:
    how = draw(st.sampled_from(["as is", "as is", "cut", "extended", "byte"]))
    if how == "cut":
        return body[: draw(st.integers(0, len(body)))]
    if how == "extended":
        return body + draw(st.binary(min_size=1, max_size=3))
    if how == "byte":
        at = draw(st.integers(0, len(body) - 1))
        return body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
    return body


@st.composite
def _signatures(draw: st.DrawFn) -> bytes:
    alg = draw(st.sampled_from([0x0018, 0x0018, 0x0014, 0x0016, 0x001A, 0x0010, 0x1234]))
    hash_alg = draw(st.sampled_from([0x000B, 0x000C, 0x0004, 0x0010, 0x9999]))
    if alg in (0x0014, 0x0016):
        size = draw(st.sampled_from([0, 256, 512, 513]))
        body = struct.pack(">HHH", alg, hash_alg, size) + draw(
            st.binary(min_size=size, max_size=size)
        )
    else:
        r, s = (draw(_ecc_parameter) for _ in range(2))
        body = struct.pack(">HH", alg, hash_alg) + _sized(r) + _sized(s)
    return _mutated(draw, body)


@settings(max_examples=600, deadline=None)
@given(_attests())
def test_attest_by_offsets_is_tss_unmarshalling(data: bytes) -> None:
    """Whatever tpm2-tss refuses is refused with the same message; whatever it reads comes
    out field for field the same (other attestation types go to tpm2-tss itself)."""
    assert _outcome(marshal.parse_attest, data) == _outcome(_attest_by_tss, data)


@settings(max_examples=400, deadline=None)
@given(_signatures())
def test_signature_by_offsets_is_tss_unmarshalling(data: bytes) -> None:
    assert _outcome(marshal.parse_signature, data) == _outcome(_signature_by_tss, data)


def test_offsets_read_a_quote() -> None:
    """A hand-made quote attestation, field by field (not only agreement with tpm2-tss)."""
    data = (
        struct.pack(">IH", 0xFF544347, 0x8018)
        + _sized(b"\x00\x0b" + bytes(32))
        + _sized(b"nonce")
        + struct.pack(">QIIBQ", 1234, 5, 6, 1, 0x0102030405060708)
        + struct.pack(">I", 1)
        + struct.pack(">HB", 0x000B, 3)
        + bytes([0b0000_0011, 0, 0b0000_0001])
        + _sized(b"D" * 32)
    )
    attest = marshal._quote_attest(data, "quote.msg")
    assert attest is not None
    assert attest.extra_data == b"nonce" and attest.pcr_digest == b"D" * 32
    assert attest.pcr_select == (("sha256", (0, 1, 16)),)
    assert attest.clock_info.clock == 1234 and attest.clock_info.reset_count == 5
    assert attest.clock_info.restart_count == 6 and attest.clock_info.safe
    assert attest.firmware_version == 0x0102030405060708
    assert marshal._quote_attest(data[:4] + b"\x80\x14" + data[6:], "quote.msg") is None


# ---- TPM2_Quote bytes: prepared vs the general wrap/unwrap ---------------------------------

_SELECTION = bytes.fromhex("00000001000b03030001")  # sha256:0,1,16


@settings(max_examples=100, deadline=None)
@given(
    handle=st.integers(0x81000000, 0x81FFFFFF),
    nonce=st.binary(min_size=1, max_size=64),
    auth_value=st.binary(max_size=32),
    selection=st.sampled_from([_SELECTION, bytes.fromhex("00000002000b0301000000040300ff00")]),
)
def test_prepared_quote_is_the_wrapped_command(
    handle: int, nonce: bytes, auth_value: bytes, selection: bytes
) -> None:
    prepared = lean_quote.PreparedQuote(handle, selection, auth_value)
    params = lean.tpm2b(nonce) + struct.pack(">H", lean.ALG_NULL) + selection
    wrapped, _ = lean.wrap(CC.QUOTE, [handle], [b""], params, [Auth(None, auth_value)])
    assert prepared.command(nonce) == wrapped


def _response(
    quoted: bytes = b"Q" * 90,
    signature: bytes = b"\x00\x18\x00\x0b" + _sized(b"r" * 32) + _sized(b"s" * 32),
    nonce_tpm: bytes = b"",
    mac: bytes = b"",
) -> bytes:
    params = _sized(quoted) + signature
    body = struct.pack(">I", len(params)) + params + _sized(nonce_tpm) + b"\x01" + _sized(mac)
    return struct.pack(">HII", lean.ST_SESSIONS, 10 + len(body), 0) + body


def _by_pending(response: bytes) -> tuple[bytes, bytes]:
    """What the general layer makes of a response: Pending.unwrap, then the parameters split
    as :func:`tpm.lean_commands.quote` splits them."""
    _, pending = lean.wrap(CC.QUOTE, [0x81010002], [b""], b"", [Auth(None)])
    _, out = pending.unwrap(response)
    message, end = lean.parse_tpm2b(out, 0)
    if len(out) - end < 4:
        raise RemoteProtocolError("Quote response without a signature")
    return message, out[end:]


def _unwrapped(unwrap, response: bytes) -> tuple[str, object]:
    try:
        return "ok", unwrap(response)
    except (RemoteProtocolError, TpmRefused) as exc:
        return "refused", type(exc).__name__


def test_unwrap_quote_splits_the_response() -> None:
    signature = b"\x00\x18\x00\x0b" + _sized(b"r" * 32) + _sized(b"s" * 32)
    response = _response(b"attested", signature)
    assert lean_quote.unwrap_quote(response) == (b"attested", signature)


@settings(max_examples=300, deadline=None)
@given(
    quoted=st.binary(max_size=40),
    signature=st.binary(max_size=12),
    nonce_tpm=st.binary(max_size=4),
    mac=st.binary(max_size=4),
    how=st.sampled_from(["as is", "cut", "extended", "byte"]),
    data=st.data(),
)
def test_unwrap_quote_is_pending_unwrap(quoted, signature, nonce_tpm, mac, how, data) -> None:
    """Every response, whole, cut, extended or with one byte changed: the prepared quote's
    unwrap accepts exactly what the general layer accepts, with the same result."""
    response = _response(quoted, signature, nonce_tpm, mac)
    if how == "cut":
        response = response[: data.draw(st.integers(0, len(response) - 1))]
    elif how == "extended":
        response += data.draw(st.binary(min_size=1, max_size=3))
    elif how == "byte":
        at = data.draw(st.integers(0, len(response) - 1))
        response = response[:at] + bytes([data.draw(st.integers(0, 255))]) + response[at + 1 :]
    assert _unwrapped(lean_quote.unwrap_quote, response) == _unwrapped(_by_pending, response)


def test_unwrap_quote_refusals() -> None:
    good = _response()
    with pytest.raises(TpmRefused) as refused:
        lean_quote.unwrap_quote(struct.pack(">HII", lean.ST_NO_SESSIONS, 10, 0x1C4))
    assert refused.value.rc == 0x1C4
    with pytest.raises(RemoteProtocolError):
        lean_quote.unwrap_quote(good + b"\x00")  # size disagrees
    with pytest.raises(RemoteProtocolError):
        lean_quote.unwrap_quote(struct.pack(">H", lean.ST_NO_SESSIONS) + good[2:])
    with pytest.raises(RemoteProtocolError):
        lean_quote.unwrap_quote(_response(signature=b"\x00\x18"))  # no hash after sigAlg
