"""The emulated USIM's OTA receiver: SMS-PP download ENVELOPEs with secured packets, through the
real engine (T=0 exchange with GET RESPONSE), with in-memory and file-backed card stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aka.hss import Hss
from aka.usim import AkaMacFailure, AkaSuccess, usim_authenticate
from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.ota import MAX_COUNTER_STEP, current_keysets, stored_counter
from firmware_stubs.usim.personalise import hss_subscriber
from firmware_stubs.usim.profile import DEFAULT_PROFILE, make_algorithm, parse_profile
from firmware_stubs.usim.state import CardState, CardStore
from tests.unit.firmware_stubs.conftest import Card, make_card
from trelab.errors import BadInput
from uicc import fs
from uicc.ota import (
    DEFAULT_SPI,
    RAM_OUTGOING_INS,
    RFM_OUTGOING_INS,
    TAR_RAM_ISD,
    TAR_RFM_UICC,
    TAR_RFM_USIM,
    Keyset,
    PorStatus,
    ResponsePacket,
    Spi,
    build_command_packet,
    build_delete_keyset,
    build_envelope_sms_pp,
    build_put_key,
    build_set_credentials,
    build_sms_deliver,
    encode_compact,
    encode_expanded,
    parse_remote_response,
    parse_response_packet,
)

PROFILE = parse_profile(DEFAULT_PROFILE)
KEYS = Keyset(1, PROFILE.ota_keysets[0].kic, PROFILE.ota_keysets[0].kid)
NEW_KEYS = Keyset(2, bytes(range(100, 116)), bytes(range(116, 132)), bytes(range(132, 148)))
SELECT_USIM = bytes.fromhex("00a4040c07a0000000871002")


def update_imsi(imsi: str) -> bytes:
    return bytes([0x00, 0xD6, 0x87, 0x00, 0x09]) + fs.EF_IMSI.codec.encode(imsi, 9)


def envelope(
    apdus: list[bytes],
    counter: int,
    *,
    keys: Keyset = KEYS,
    tar: bytes = TAR_RFM_USIM,
    spi: Spi = DEFAULT_SPI,
    expanded: bool = False,
) -> bytes:
    outgoing = RAM_OUTGOING_INS if tar == TAR_RAM_ISD else RFM_OUTGOING_INS
    script = encode_expanded(apdus) if expanded else encode_compact(apdus, outgoing=outgoing)
    packet = build_command_packet(keys, tar=tar, counter=counter, data=script, spi=spi)
    return build_envelope_sms_pp(build_sms_deliver(packet))


def deliver(card: Card, apdu: bytes, keys: Keyset = KEYS, spi: Spi = DEFAULT_SPI) -> ResponsePacket:
    data, sw = card.send(apdu)
    assert sw == 0x9000 and data, f"{sw:04X}"
    return parse_response_packet(data, spi=spi, keyset=keys)


def imsi_of(card: Card) -> str | None:
    return card.engine.imsi


def test_rfm_updates_imsi_and_answers_a_verified_por(card: Card) -> None:
    por = deliver(card, envelope([update_imsi("001020000000001")], 1))
    assert (por.status, por.tar, por.counter, por.authenticated, por.ciphered) == (
        PorStatus.OK, TAR_RFM_USIM, 1, True, True,
    )  # fmt: skip
    result = parse_remote_response(por.data, expanded=False)
    assert (result.executed, result.last_sw) == (1, 0x9000)
    assert imsi_of(card) == "001020000000001"
    card.select_usim()
    card.verify_pin1()
    assert card.send("00a4000c026f07")[1] == 0x9000
    data, sw = card.send("00b0000009")  # the terminal reads what the RFM wrote
    assert (sw, fs.decode_imsi(data)) == (0x9000, "001020000000001")
    assert card.engine.state.ota.counters == {1: 1}


def test_replayed_and_lower_counters_are_refused_and_change_nothing(card: Card) -> None:
    first = envelope([update_imsi("001020000000001")], 5)
    assert deliver(card, first).status is PorStatus.OK
    assert deliver(card, envelope([update_imsi("001020000000002")], 6)).status is PorStatus.OK
    writes = card.engine.store.writes
    replay = deliver(card, first)
    assert (replay.status, replay.authenticated) == (PorStatus.CNTR_LOW, True)  # secured refusal
    assert deliver(card, envelope([update_imsi("001020000000003")], 3)).status is PorStatus.CNTR_LOW
    assert imsi_of(card) == "001020000000002"
    assert card.engine.store.writes == writes  # nothing committed for a refused packet
    jump = envelope([update_imsi("001020000000004")], 6 + MAX_COUNTER_STEP + 1)
    assert deliver(card, jump).status is PorStatus.CNTR_HIGH
    assert deliver(card, envelope([update_imsi("001020000000004")], 7)).status is PorStatus.OK


def test_blocked_counter() -> None:
    data = dict(DEFAULT_PROFILE)
    data["ota_keysets"] = [{**DEFAULT_PROFILE["ota_keysets"][0], "counter": "ffffffffff"}]
    card = make_card(data)
    assert deliver(card, envelope([update_imsi("001020000000001")], 1)).status is (
        PorStatus.CNTR_BLOCKED
    )
    assert imsi_of(card) == PROFILE.imsi


@pytest.mark.parametrize(
    ("name", "build", "status"),
    [
        ("tampered CC", lambda e: e[:-2] + bytes([e[-2] ^ 0x01]) + e[-1:], PorStatus.CC_FAILED),
        ("wrong KIc", "wrong-kic", PorStatus.CC_FAILED),
        ("wrong KID", "wrong-kid", PorStatus.CC_FAILED),
        ("unknown KVN", "kvn3", PorStatus.SECURITY_ERROR),
        ("unknown TAR", "tar", PorStatus.TAR_UNKNOWN),
        ("no counter", "no-counter", PorStatus.INSUFFICIENT_SECURITY),
        ("no ciphering", "clear", PorStatus.INSUFFICIENT_SECURITY),
    ],
)
def test_insecure_or_forged_packets_get_a_clear_refusal(
    card: Card, name: str, build: Any, status: PorStatus
) -> None:
    apdus = [update_imsi("001020000000009")]
    if build == "wrong-kic":
        apdu = envelope(apdus, 1, keys=Keyset(1, bytes(16), KEYS.kid))
    elif build == "wrong-kid":
        apdu = envelope(apdus, 1, keys=Keyset(1, KEYS.kic, bytes(16)))
    elif build == "kvn3":
        apdu = envelope(apdus, 1, keys=Keyset(3, KEYS.kic, KEYS.kid))
    elif build == "tar":
        apdu = envelope(apdus, 1, tar=bytes.fromhex("b0ffff"))
    elif build == "no-counter":
        apdu = envelope(apdus, 1, spi=Spi(counter="none"))
    elif build == "clear":
        apdu = envelope(apdus, 1, spi=Spi(ciphered=False))
    else:
        apdu = build(envelope(apdus, 1))
    writes = card.engine.store.writes
    por = deliver(card, apdu)
    assert (por.status, por.authenticated, por.ciphered) == (status, False, False), name
    assert imsi_of(card) == PROFILE.imsi and card.engine.store.writes == writes
    # the counter was not spent: the genuine packet with the same counter still works
    assert deliver(card, envelope(apdus, 1)).status is PorStatus.OK


def test_des_algorithm_is_refused(card: Card) -> None:
    packet = build_command_packet(
        KEYS, tar=TAR_RFM_USIM, counter=1, data=update_imsi("001020000000009")
    )
    assert packet[5] == KEYS.kic_byte == 0x12
    forged = packet[:5] + b"\x15" + packet[6:]  # KIc: KVN 1, triple DES with two keys
    por = deliver(card, build_envelope_sms_pp(build_sms_deliver(forged)))
    assert (por.status, por.authenticated) == (PorStatus.SECURITY_ERROR, False)


def test_malformed_envelopes_are_refused_with_a_status_word(card: Card) -> None:
    good = envelope([update_imsi("001020000000001")], 1)
    body = good[5:-1]
    cases = {
        "not D1": b"\xd0" + body[1:],
        "truncated": body[:-3],
        "PID not 7F": body.replace(b"\x7f\xf6", b"\x00\xf6", 1),
        "no CPI": body.replace(b"\x02\x70\x00", b"\x02\x71\x00", 1),
    }
    for name, data in cases.items():
        out = card.send(bytes([0x80, 0xC2, 0x00, 0x00, len(data)]) + data)
        assert out == (b"", 0x6A80), name
    assert card.send(b"\x80\xc2\x01\x00" + good[4:])[1] == 0x6A86  # wrong P1
    assert card.send(b"\x00\xc2\x00\x00" + good[4:])[1] == 0x6E00  # ENVELOPE is class 8X
    assert imsi_of(card) == PROFILE.imsi and card.engine.state.ota.counters == {}


def test_por_modes(card: Card) -> None:
    silent = Spi(por="none")
    assert card.send(envelope([update_imsi("001020000000001")], 1, spi=silent)) == (b"", 0x9000)
    assert imsi_of(card) == "001020000000001"
    on_error = Spi(por="on-error")
    assert card.send(envelope([update_imsi("001020000000002")], 2, spi=on_error)) == (b"", 0x9000)
    replay = envelope([update_imsi("001020000000002")], 2, spi=on_error)
    assert deliver(card, replay, spi=on_error).status is PorStatus.CNTR_LOW


def test_script_stops_at_the_first_error_and_keeps_what_ran(card: Card) -> None:
    ad = bytes.fromhex("00d6830004000000ff")  # EF.AD: runs only if the script goes on
    apdus = [update_imsi("001020000000001"), bytes.fromhex("00d69c0001ff"), ad]  # SFI 1C: none
    por = deliver(card, envelope(apdus, 1))
    result = parse_remote_response(por.data, expanded=False)
    assert (result.executed, result.last_sw) == (2, 0x6A82)
    assert imsi_of(card) == "001020000000001"
    assert card.engine.state.files.get(fs.EF_AD.name, b"")[-1:] != b"\xff"


def test_expanded_script_returns_every_r_apdu(card: Card) -> None:
    apdus = [
        update_imsi("001020000000007"),
        bytes.fromhex("00a4000c026f07"),  # SELECT EF.IMSI, no FCP
        bytes.fromhex("00b0000009"),  # READ BINARY: data + 9000
    ]
    por = deliver(card, envelope(apdus, 1, expanded=True))
    result = parse_remote_response(por.data, expanded=True)
    assert result.executed == 3 and [r[-2:] for r in result.responses] == [b"\x90\x00"] * 3
    assert fs.decode_imsi(result.last_data) == "001020000000007" == imsi_of(card)


def test_terminal_context_is_untouched_by_remote_commands(card: Card) -> None:
    card.send("00a4000c022fe2")  # the terminal selects EF.ICCID under the MF
    assert deliver(card, envelope([update_imsi("001020000000001")], 1)).status is PorStatus.OK
    data, sw = card.send("00b000000a")  # still EF.ICCID, and no PIN was verified meanwhile
    assert sw == 0x9000 and fs.decode_iccid(data) == PROFILE.iccid
    card.select_usim()
    assert card.send("00b0870009")[1] == 0x6982  # EF.IMSI needs PIN1: not granted to us


def test_rfm_uicc_starts_at_the_mf(card: Card) -> None:
    por = deliver(card, envelope([bytes.fromhex("00b0820000")], 1, tar=TAR_RFM_UICC))
    result = parse_remote_response(por.data, expanded=False)
    assert result.last_sw == 0x9000 and fs.decode_iccid(result.last_data) == PROFILE.iccid


# ---- RAM: key sets --------------------------------------------------------------------------------


def ram(card: Card, apdus: list[bytes], counter: int, keys: Keyset = KEYS) -> tuple[int, Any]:
    por = deliver(card, envelope(apdus, counter, keys=keys, tar=TAR_RAM_ISD), keys=keys)
    assert por.status is PorStatus.OK
    result = parse_remote_response(por.data, expanded=False)
    return result.last_sw, result


def test_key_rotation_add_then_delete(card: Card) -> None:
    sw, result = ram(card, [build_put_key(NEW_KEYS, kek=KEYS.kek)], 1)
    assert sw == 0x9000 and result.last_data[0] == 2  # KVN ‖ KCVs
    assert ram(card, [build_put_key(NEW_KEYS, kek=KEYS.kek)], 2)[0] == 0x9000  # a retry
    conflicting = Keyset(2, bytes(16), NEW_KEYS.kid, NEW_KEYS.dek)
    assert ram(card, [build_put_key(conflicting, kek=KEYS.kek)], 3)[0] == 0x6A80
    wrong_kek = build_put_key(Keyset(4, *[bytes([4]) * 16] * 3), kek=bytes(16))
    assert ram(card, [wrong_kek], 4)[0] == 0x6A80
    assert ram(card, [build_delete_keyset(1)], 5)[0] == 0x6985  # the key set in use
    assert ram(card, [build_delete_keyset(1)], 1, keys=NEW_KEYS)[0] == 0x9000
    assert ram(card, [build_delete_keyset(1)], 2, keys=NEW_KEYS)[0] == 0x6A88  # already gone
    assert ram(card, [build_delete_keyset(2)], 3, keys=NEW_KEYS)[0] == 0x6985  # the last one
    assert [k.kvn for k in current_keysets(PROFILE, card.engine.state)] == [2]
    old = deliver(card, envelope([update_imsi("001020000000009")], 9))
    assert (old.status, old.authenticated) == (PorStatus.SECURITY_ERROR, False)
    new = deliver(card, envelope([update_imsi("001020000000009")], 4, keys=NEW_KEYS), NEW_KEYS)
    assert new.status is PorStatus.OK and imsi_of(card) == "001020000000009"


def test_rfm_and_ram_refuse_what_they_do_not_do(card: Card) -> None:
    assert ram(card, [bytes.fromhex("80f24000024f00")], 1)[0] == 0x6D00
    assert ram(card, [bytes.fromhex("00d8008100")], 2)[0] == 0x6E00
    por = deliver(card, envelope([bytes.fromhex("80c2000002d100")], 3))
    assert parse_remote_response(por.data, expanded=False).last_sw == 0x6985  # no nested ENVELOPE


# ---- AKA credentials over the air ---------------------------------------------------------------


def test_k_rotation_over_the_air_changes_aka(card: Card) -> None:
    new_k, new_opc = bytes(range(1, 17)), bytes(range(17, 33))
    por = deliver(card, envelope([SELECT_USIM, build_set_credentials(new_k, new_opc)], 1))
    assert parse_remote_response(por.data, expanded=False).last_sw == 0x9000
    old_hss, new_hss = Hss(lambda n: b"\x11" * n), Hss(lambda n: b"\x22" * n)
    old_hss.add(hss_subscriber(PROFILE))
    rotated = parse_profile({**dict(DEFAULT_PROFILE), "k": new_k.hex(), "opc": new_opc.hex()})
    new_hss.add(hss_subscriber(rotated))
    card.select_usim()
    card.verify_pin1()
    v = old_hss.generate_vectors(PROFILE.imsi)[0]
    assert card.authenticate(v.rand, v.autn)[1] == 0x9862  # the old K: MAC failure
    v = new_hss.generate_vectors(PROFILE.imsi)[0]
    data, sw = card.authenticate(v.rand, v.autn)
    assert sw == 0x9000 and data[2 : 2 + len(v.xres)] == v.xres
    assert card.engine.state.ota.credentials is not None
    assert new_k.hex() not in repr(card.engine.state)


def test_credentials_command_needs_adm_and_the_right_length(card: Card) -> None:
    card.select_usim()
    command = build_set_credentials(bytes(16), bytes(16))
    assert card.send(command)[1] == 0x6982
    card.verify_adm1()
    assert card.send(command[:4] + bytes([31]) + bytes(31))[1] == 0x6700
    assert card.send(b"\x80\xda\xdf\x02" + command[4:])[1] == 0x6A88
    assert card.send(command) == (b"", 0x9000)  # local personalisation with ADM works
    assert card.engine.state.ota.credentials is not None
    card.engine.power_on()  # after a reset no application is active
    card.verify_adm1()
    assert card.send(command)[1] == 0x6985


def test_tuak_card_takes_new_credentials() -> None:
    from tests.usim_vectors import tuak_cards

    test = tuak_cards()[0]
    card = make_card({**test.profile, "ota_keysets": DEFAULT_PROFILE["ota_keysets"]})
    profile = card.engine.profile
    new_k = bytes(len(profile.k))
    por = deliver(card, envelope([SELECT_USIM, build_set_credentials(new_k, bytes(32))], 1))
    assert parse_remote_response(por.data, expanded=False).last_sw == 0x9000
    wrong = build_set_credentials(bytes(32 if len(profile.k) == 16 else 16), bytes(32))
    por = deliver(card, envelope([SELECT_USIM, wrong], 2))
    assert parse_remote_response(por.data, expanded=False).last_sw == 0x6A80


# ---- persistence and crashes --------------------------------------------------------------------


class DyingStore(CardStore):
    """A file store whose process dies (the write never happens) at save number ``die_at``."""

    def __init__(self, path: Path, die_at: int) -> None:
        super().__init__(path)
        self.die_at = die_at

    def save(self, state: CardState) -> None:
        if self.writes + 1 == self.die_at:
            raise OSError("power lost")
        super().save(state)


def test_power_loss_after_the_counter_commit_spends_the_counter_only(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    UsimEngine(PROFILE, CardStore(path))  # personalised: write 1
    first = envelope([update_imsi("001020000000001")], 1)
    dying = Card(UsimEngine(PROFILE, DyingStore(path, die_at=2)))  # counter saved, effects lost
    assert dying.send(first) == (b"", 0x6F00)
    reborn = Card(UsimEngine(PROFILE, CardStore(path)))
    assert imsi_of(reborn) == PROFILE.imsi
    assert stored_counter(PROFILE, reborn.engine.state, 1) == 1
    assert deliver(reborn, first).status is PorStatus.CNTR_LOW  # never runs twice
    assert deliver(reborn, envelope([update_imsi("001020000000001")], 2)).status is PorStatus.OK
    assert imsi_of(Card(UsimEngine(PROFILE, CardStore(path)))) == "001020000000001"


def test_power_loss_before_the_counter_commit_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    UsimEngine(PROFILE, CardStore(path))
    dying = Card(UsimEngine(PROFILE, DyingStore(path, die_at=1)))
    assert dying.send(envelope([update_imsi("001020000000001")], 1)) == (b"", 0x6F00)
    reborn = Card(UsimEngine(PROFILE, CardStore(path)))
    assert reborn.engine.state.ota.counters == {} and imsi_of(reborn) == PROFILE.imsi
    assert deliver(reborn, envelope([update_imsi("001020000000001")], 1)).status is PorStatus.OK


def test_ota_state_survives_restart_and_old_states_load(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    card = Card(UsimEngine(PROFILE, CardStore(path)))
    assert "ota" not in json.loads(path.read_text())  # untouched cards keep the old format
    ram(card, [build_put_key(NEW_KEYS, kek=KEYS.kek)], 1)
    new_k = bytes(range(1, 17))
    deliver(card, envelope([SELECT_USIM, build_set_credentials(new_k, bytes(16))], 2))
    on_disk = json.loads(path.read_text())["ota"]
    assert on_disk["counters"] == {"1": 2} and len(on_disk["keysets"]) == 2
    reborn = UsimEngine(PROFILE, CardStore(path))
    assert reborn.state == card.engine.state
    rotated = parse_profile({**dict(DEFAULT_PROFILE), "k": new_k.hex(), "opc": "00" * 16})
    algorithm = make_algorithm(rotated)
    hss = Hss(lambda n: b"\x33" * n)
    hss.add(hss_subscriber(rotated))
    v = hss.generate_vectors(PROFILE.imsi)[0]
    result, _ = usim_authenticate(algorithm, reborn.state.sqn, v.rand, v.autn)
    assert isinstance(result, AkaSuccess)
    result, _ = usim_authenticate(PROFILE.make_algorithm(), reborn.state.sqn, v.rand, v.autn)
    assert isinstance(result, AkaMacFailure)
    for bad in (
        {"counters": {"16": 1}},
        {"counters": {"1": -1}},
        {"counters": {}, "keysets": [{"kvn": 1}]},
    ):
        doc = json.loads(path.read_text())
        doc["ota"] = bad
        path.write_text(json.dumps(doc))
        with pytest.raises(BadInput):
            CardStore(path).load()
