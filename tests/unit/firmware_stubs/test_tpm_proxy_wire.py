"""The TPM proxy's pure core on hand-built commands and responses (TPM 2.0 Part 2/3 layouts),
and every shipped profile loads with its sources."""

from __future__ import annotations

import struct

import pytest

from firmware_stubs.tpm_proxy import profiles
from firmware_stubs.tpm_proxy.wire import (
    ALGORITHMS,
    COMMANDS,
    FIXED_PROPERTIES,
    RC_COMMAND_CODE,
    RC_COMMAND_SIZE,
    RC_FAILURE,
    Erratum,
    PartFilter,
    PartRules,
    WireError,
    error_response,
    frame_size,
    response_code,
)
from trelab.errors import BadInput

NO_SESSIONS, SESSIONS = 0x8001, 0x8002


def command(code: int, body: bytes = b"", tag: int = NO_SESSIONS) -> bytes:
    return struct.pack(">HII", tag, 10 + len(body), code) + body


def getcap(capability: int, first: int, count: int) -> bytes:
    return command(COMMANDS["GetCapability"], struct.pack(">III", capability, first, count))


def cap_response(capability: int, items: list[bytes], more: int = 0) -> bytes:
    body = struct.pack(">BII", more, capability, len(items)) + b"".join(items)
    return struct.pack(">HII", NO_SESSIONS, 10 + len(body), 0) + body


def sym_parms(mode: str, bits: int = 128) -> bytes:
    """TPMT_PUBLIC_PARMS for an AES SYMCIPHER."""
    return struct.pack(">HHHH", ALGORITHMS["symcipher"], ALGORITHMS["aes"], bits, ALGORITHMS[mode])


def rsa_parms(bits: int) -> bytes:
    null = ALGORITHMS["null"]
    return struct.pack(">HHHHI", ALGORITHMS["rsa"], null, null, bits, 0)


def ecc_parms(curve: int) -> bytes:
    null = ALGORITHMS["null"]
    return struct.pack(">HHHHH", ALGORITHMS["ecc"], null, null, curve, null)


SLB = PartRules.from_names(
    absent_commands=["EncryptDecrypt", "EncryptDecrypt2"],
    absent_algorithms=["ecb", "sha384"],
    absent_curves=["nist_p384"],
    fixed={"MANUFACTURER": 0x49465800, "MAX_COMMAND_SIZE": 0x500},
    errata=[Erratum("ps", "PolicySecret", "hmac-session", "failure-mode")],
    rsa_key_bits=[2048],
)


def test_unimplemented_command_is_answered_with_command_code() -> None:
    part = PartFilter(SLB)
    decision, _ = part.on_command(command(COMMANDS["EncryptDecrypt2"], b"\x80\x00\x00\x01"))
    assert decision.action == "answer"
    assert response_code(decision.data) == RC_COMMAND_CODE
    assert decision.data == error_response(RC_COMMAND_CODE) and len(decision.data) == 10
    forwarded, _ = part.on_command(command(COMMANDS["GetRandom"], b"\x00\x08"))
    assert forwarded.action == "forward" and forwarded.data == command(
        COMMANDS["GetRandom"], b"\x00\x08"
    )


def test_oversized_command_is_refused() -> None:
    decision, _ = PartFilter(SLB).on_command(command(COMMANDS["GetRandom"], bytes(0x500)))
    assert response_code(decision.data) == RC_COMMAND_SIZE


@pytest.mark.parametrize(
    ("parms", "rc"),
    [
        (sym_parms("ecb"), 0x1C9),  # TPM_RC_MODE + P + parameter 1
        (rsa_parms(3072), 0x1C7),  # TPM_RC_KEY_SIZE
        (ecc_parms(0x0004), 0x1E6),  # TPM_RC_CURVE (NIST P-384)
    ],
)
def test_test_parms_refuses_what_the_part_lacks(parms: bytes, rc: int) -> None:
    decision, _ = PartFilter(SLB).on_command(command(COMMANDS["TestParms"], parms))
    assert decision.action == "answer" and response_code(decision.data) == rc


@pytest.mark.parametrize("parms", [sym_parms("cfb"), rsa_parms(2048), ecc_parms(0x0003)])
def test_test_parms_forwards_what_the_part_has(parms: bytes) -> None:
    decision, _ = PartFilter(SLB).on_command(command(COMMANDS["TestParms"], parms))
    assert decision.action == "forward"


def test_create_primary_with_an_absent_name_algorithm_is_refused() -> None:
    public = struct.pack(">HHIH", ALGORITHMS["symcipher"], ALGORITHMS["sha384"], 0x60072, 0)
    public += sym_parms("cfb")[2:]
    auth = struct.pack(">IHBH", 0x40000009, 0, 0, 0)  # password session, empty
    body = struct.pack(">I", 0x40000001) + struct.pack(">I", len(auth)) + auth
    body += struct.pack(">H", 4) + bytes(4)  # inSensitive
    body += struct.pack(">H", len(public)) + public
    decision, _ = PartFilter(SLB).on_command(command(COMMANDS["CreatePrimary"], body, SESSIONS))
    assert response_code(decision.data) == 0x2C3  # TPM_RC_HASH + P + parameter 2


def test_command_list_is_filtered_and_more_data_recomputed() -> None:
    part = PartFilter(SLB)
    ask = getcap(0x2, 0x163, 2)
    decision, pending = part.on_command(ask)
    assert decision.action == "forward"
    assert struct.unpack(">I", decision.data[-4:])[0] == 0x1000  # asks swtpm for everything
    listed = [struct.pack(">I", 0x02000000 | c) for c in (0x163, 0x164, 0x165, 0x193)]
    answer = part.on_response(pending, cap_response(0x2, listed))
    more, _, count = struct.unpack(">BII", answer[10:19])
    codes = [struct.unpack(">I", answer[19 + 4 * i : 23 + 4 * i])[0] & 0xFFFF for i in range(count)]
    assert codes == [0x163, 0x165] and more == 0
    _, pending = part.on_command(getcap(0x2, 0x163, 1))
    answer = part.on_response(pending, cap_response(0x2, listed))
    assert struct.unpack(">BII", answer[10:19]) == (1, 0x2, 1)  # one shown, more to come
    assert frame_size(answer) == len(answer)


def test_algorithms_and_curves_are_filtered() -> None:
    part = PartFilter(SLB)
    _, pending = part.on_command(getcap(0x0, 0, 64))
    algs = [struct.pack(">HI", a, 0) for a in (ALGORITHMS["sha256"], ALGORITHMS["sha384"],
                                               ALGORITHMS["cfb"], ALGORITHMS["ecb"])]  # fmt: skip
    answer = part.on_response(pending, cap_response(0x0, algs))
    assert answer[19:] == algs[0] + algs[2]
    _, pending = part.on_command(getcap(0x8, 0, 16))
    curves = [struct.pack(">H", c) for c in (3, 4, 0x10)]
    assert part.on_response(pending, cap_response(0x8, curves))[19:] == curves[0] + curves[2]


def test_fixed_properties_are_the_parts() -> None:
    part = PartFilter(SLB)
    part.set_command_counts([0x02000000 | c for c in (0x163, 0x164, 0x193)] + [0x20000001])
    _, pending = part.on_command(getcap(0x6, 0x105, 2))
    props = [struct.pack(">II", 0x105, 0x49424D20), struct.pack(">II", 0x129, 99)]
    answer = part.on_response(pending, cap_response(0x6, props))
    assert struct.unpack(">II", answer[19:27]) == (0x105, 0x49465800)
    assert struct.unpack(">II", answer[27:35]) == (FIXED_PROPERTIES["TOTAL_COMMANDS"], 2)


def test_policysecret_in_an_hmac_session_is_failure_mode_until_restart() -> None:
    part = PartFilter(SLB)
    auth = struct.pack(">IHBH", 0x02000000, 0, 1, 0)  # an HMAC session
    body = struct.pack(">II", 0x4000000B, 0x03000001) + struct.pack(">I", len(auth)) + auth
    password = body.replace(struct.pack(">I", 0x02000000), struct.pack(">I", 0x40000009))
    ok, _ = part.on_command(command(COMMANDS["PolicySecret"], password, SESSIONS))
    assert ok.action == "forward" and part.failed is None
    failed, _ = part.on_command(command(COMMANDS["PolicySecret"], body, SESSIONS))
    assert response_code(failed.data) == RC_FAILURE and part.failed == "ps"
    after, _ = part.on_command(command(COMMANDS["GetRandom"], b"\x00\x08"))
    assert response_code(after.data) == RC_FAILURE
    cap, _ = part.on_command(getcap(0x6, 0x100, 1))
    assert cap.action == "forward"
    assert PartFilter(SLB).failed is None  # a new part (power cycle) is out of it


def test_no_response_erratum_drops() -> None:
    rules = PartRules.from_names(errata=[Erratum("x", "EncryptDecrypt2", "any", "no-response")])
    decision, _ = PartFilter(rules).on_command(command(COMMANDS["EncryptDecrypt2"], bytes(8)))
    assert decision.action == "drop"


def test_malformed_frames_are_wire_errors() -> None:
    with pytest.raises(WireError):
        frame_size(b"\x80\x01\x00\x00")
    with pytest.raises(WireError):
        frame_size(struct.pack(">HII", 0x8001, 4, 0))
    with pytest.raises(WireError):
        PartFilter(SLB).on_command(command(COMMANDS["GetRandom"], b"\x00\x08")[:-1])


def test_error_responses_pass_unchanged() -> None:
    part = PartFilter(SLB)
    _, pending = part.on_command(getcap(0x2, 0, 8))
    assert part.on_response(pending, error_response(0x1C4)) == error_response(0x1C4)


@pytest.mark.parametrize("name", profiles.names())
def test_every_profile_loads_and_names_its_sources(name: str) -> None:
    part = profiles.load(name)
    assert part.sources and all(s.where for s in part.sources)
    assert "MANUFACTURER" in part.fixed
    part.rules()  # every name resolves to a number
    data = part.to_json()
    assert data["name"] == name and data["sources"]


def test_the_slb9670_lacks_both_symmetric_commands() -> None:
    part = profiles.load("slb9670")
    assert {"EncryptDecrypt", "EncryptDecrypt2"} <= set(part.absent_commands)
    assert part.fixed["MANUFACTURER"] == int.from_bytes(b"IFX\x00", "big")


def test_unknown_profile_is_bad_input() -> None:
    with pytest.raises(BadInput, match="slb9670"):
        profiles.load("no-such-part")
