"""network.transfer: Alternative 3a between SHO-A and SHO-B of one configuration, with a real
SQLite store, the OTA key file, and the emulated USIM in-process (the same engine the vpcd card
and the modem run; the lab tests are in tests/integration/test_ki_transfer.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from aka.sqn import SqnGenerator
from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.ota import current_keysets
from firmware_stubs.usim.personalise import hss_record
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from firmware_stubs.usim.state import CardStore
from network.store import Store
from network.transfer import (
    CardKeys,
    KiTransfer,
    OtaKeyring,
    Subscription,
    build_package,
    build_request,
    deliver,
    imsi_update_script,
    open_package,
    open_request,
)
from protocol.errors import Refused, RemoteProtocolError, SignatureInvalid
from protocol.messages import SigningKey
from tests.unit.network.conftest import make_config
from threats import ki_transfer as ki_attacks
from trelab.errors import BadInput, CheckFailed
from uicc.links.inprocess import InProcessLink
from uicc.ota import Keyset, OtaRejected, PorStatus
from uicc.usim import UsimClient

NOW = 1_800_000_000
PROFILE = parse_profile(DEFAULT_PROFILE)


def subscription_of(profile: Any = PROFILE) -> Subscription:
    record = hss_record(profile)
    return Subscription(
        profile.imsi, profile.iccid, "milenage", {}, profile.k, profile.opc, profile.amf,
        SqnGenerator(record.seq_he, record.ind, record.ind_bits, record.delta).to_json(),
        CardKeys(tuple(Keyset(k.kvn, k.kic, k.kid) for k in profile.ota_keysets), {1: 0}),
    )  # fmt: skip


def ota_rows(store: Store) -> list[object]:
    """The OTA key sets, counters and transfer journal as stored."""
    with store.transaction() as tx:
        return [
            tuple(row)
            for table in ("ota_cards", "ota_transfers")
            for row in tx._db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
        ]


class Lab:
    """Both operators, the store (with their OTA keys) and a card with its link."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = make_config()
        self.store = Store(tmp / "network.db", self.config.store_key)
        self.keyring = OtaKeyring(self.store)
        self.clock = NOW
        self.transfer = KiTransfer(self.config, self.store, self.keyring, now=lambda: self.clock)
        self.card_path = tmp / "card.json"
        self.insert_card()
        self.transfer.register_card("sho-a", subscription_of())

    def insert_card(self) -> None:
        self.engine = UsimEngine(PROFILE, CardStore(self.card_path))
        self.link = InProcessLink(self.engine)
        self.client = UsimClient(self.link)
        self.client.verify_pin("1234")

    def authenticate(self, rand: bytes, autn: bytes) -> Any:
        self.client.forget_selection()
        return self.client.authenticate(rand, autn)

    def run(self, send: Callable[[bytes], bytes] | None = None, rotate_k: bool = False) -> Any:
        return self.transfer.run(
            holder="sho-a", requester="sho-b", imsi=PROFILE.imsi, iccid=PROFILE.iccid,
            send=send or self.link.transmit, rotate_k=rotate_k,
        )  # fmt: skip


@pytest.fixture
def lab(tmp_path: Path) -> Any:
    lab = Lab(tmp_path)
    yield lab
    lab.store.close()


# ---- the channel between the operators ----------------------------------------------------------


def keys_of(config: Any) -> dict[str, ec.EllipticCurvePublicKey]:
    return {name: sho.key.public_key for name, sho in config.shos.items()}


def test_request_and_package_round_trip() -> None:
    config = make_config()
    sho_a, sho_b = config.shos["sho-a"].key, config.shos["sho-b"].key
    request, ephemeral = build_request(
        sho_b, holder="sho-a", imsi=PROFILE.imsi, iccid=PROFILE.iccid, now=NOW
    )
    seen = open_request(request.wire, keys_of(config), holder="sho-a", now=NOW)
    assert (seen.requester, seen.imsi, seen.ephemeral) == ("sho-b", PROFILE.imsi, request.ephemeral)
    sub = subscription_of()
    package = build_package(sho_a, seen, sub)
    assert PROFILE.k not in package and PROFILE.opc not in package  # encrypted
    opened = open_package(package, request, ephemeral, sho_a.public_key)
    assert opened == sub and opened.k == PROFILE.k and opened.ota.keysets == sub.ota.keysets
    assert PROFILE.k.hex() not in repr(opened) and PROFILE.k.hex() not in repr(request)


def test_channel_refusals() -> None:
    config = make_config()
    sho_a, sho_b = config.shos["sho-a"].key, config.shos["sho-b"].key
    request, ephemeral = build_request(
        sho_b, holder="sho-a", imsi=PROFILE.imsi, iccid=PROFILE.iccid, now=NOW
    )
    keys = keys_of(config)
    with pytest.raises(RemoteProtocolError, match="expired"):
        open_request(request.wire, keys, holder="sho-a", now=NOW + 601)
    with pytest.raises(RemoteProtocolError, match="not 'sho-b'"):
        open_request(request.wire, keys, holder="sho-b", now=NOW)
    stranger = SigningKey("sho-x", ec.generate_private_key(ec.SECP256R1()))
    forged, _ = build_request(stranger, holder="sho-a", imsi="1" * 15, iccid="2" * 19, now=NOW)
    with pytest.raises(SignatureInvalid, match="unknown SHO"):
        open_request(forged.wire, keys, holder="sho-a", now=NOW)
    impostor = SigningKey("sho-b", ec.generate_private_key(ec.SECP256R1()))
    fake, _ = build_request(impostor, holder="sho-a", imsi=PROFILE.imsi, iccid="2" * 19, now=NOW)
    with pytest.raises(SignatureInvalid):
        open_request(fake.wire, keys, holder="sho-a", now=NOW)
    package = build_package(sho_a, request, subscription_of())
    other, other_key = build_request(
        sho_b, holder="sho-a", imsi=PROFILE.imsi, iccid=PROFILE.iccid, now=NOW
    )
    with pytest.raises(RemoteProtocolError, match="another request"):
        open_package(package, other, other_key, sho_a.public_key)
    with pytest.raises(SignatureInvalid):
        open_package(package, request, ephemeral, sho_b.public_key)
    wrong_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(RemoteProtocolError, match="does not decrypt"):
        open_package(package, request, wrong_key, sho_a.public_key)
    tampered = bytearray(package)
    tampered[len(tampered) // 2] ^= 1
    with pytest.raises((SignatureInvalid, RemoteProtocolError)):
        open_package(bytes(tampered), request, ephemeral, sho_a.public_key)


# ---- the whole transfer through the emulated card ------------------------------------------------


def test_transfer_updates_the_card_and_shows_threat_2_before_and_after(lab: Lab) -> None:
    before = lab.transfer.attach(PROFILE.imsi, lab.authenticate)
    assert before["accepted"]
    report = lab.run()
    new_imsi = report["new_imsi"]
    assert new_imsi.startswith("00102") and new_imsi != PROFILE.imsi
    assert [p["step"] for p in report["packets"]] == ["keys-add", "keys-delete", "imsi"]
    assert all(p["por"] == "PoR OK" and p["last_sw"] == "9000" for p in report["packets"])
    assert max(p["packet_bytes"] for p in report["packets"]) + 3 <= 140  # one SMS each
    lab.client.forget_selection()
    assert lab.client.read_imsi() == new_imsi
    assert lab.engine.state.files["EF.LOCI"][-1] == 0x01  # location "not updated"
    assert lab.engine.state.files["EF.LOCI"][:4] == b"\xff" * 4  # TMSI deleted
    assert [k.kvn for k in current_keysets(PROFILE, lab.engine.state)] == [2]
    assert lab.transfer.attach(new_imsi, lab.authenticate)["accepted"]
    # SHO-A kept K: it passes as the subscriber, and the card accepts its network
    threat = ki_attacks.threat_check(lab.transfer, PROFILE.imsi, new_imsi, lab.authenticate)
    assert threat["impersonation"] and threat["false_network"]
    old = ki_attacks.old_operator_view(lab.transfer, PROFILE.imsi)
    assert old.state == "transferred" and old.k == PROFILE.k
    rotated = lab.run(rotate_k=True)
    assert [p["step"] for p in rotated["packets"]] == ["k-rotation"] and rotated["k_rotated"]
    assert lab.transfer.attach(new_imsi, lab.authenticate)["accepted"]
    threat = ki_attacks.threat_check(lab.transfer, PROFILE.imsi, new_imsi, lab.authenticate)
    assert threat == {
        "impersonation": False, "false_network": False,
        "card_answer_to_old_operator": "mac_failure",
    }  # fmt: skip
    with lab.store.transaction() as tx:
        record = tx.hss(new_imsi)
        assert record is not None and record.state == "active" and record.sho == "sho-b"
        assert record.k != PROFILE.k and tx.hss_count("sho-b") == 1
    # the old operator's OTA keys no longer open the card
    envelope = ki_attacks.old_operator_packet(
        lab.transfer, "sho-a", PROFILE.iccid, [bytes.fromhex("00b0870009")]
    )
    por = deliver(lab.link.transmit, envelope, current_keysets(PROFILE, lab.engine.state)[0])
    assert (por.status, por.authenticated) == (PorStatus.SECURITY_ERROR, False)
    events = [(e.actor, e.event) for e in lab.store.audit_events()]
    for wanted in (("sho-a", "ki-export"), ("sho-b", "ki-import"), ("sho-b", "ota-imsi"),
                   ("sho-b", "k-rotation"), ("sho-b", "ki-activate")):  # fmt: skip
        assert wanted in events
    assert lab.store.verify_audit() == len(events)


def test_old_operator_ota_works_until_the_key_sets_are_rotated(lab: Lab) -> None:
    envelope = ki_attacks.old_operator_packet(
        lab.transfer, "sho-a", PROFILE.iccid, imsi_update_script("001019999999999")[:1]
    )
    keys = lab.transfer.keyring.card("sho-a", PROFILE.iccid)
    assert keys is not None
    por = deliver(lab.link.transmit, envelope, keys[0].keysets[0])
    assert por.status is PorStatus.OK and lab.engine.imsi == "001019999999999"


def test_secrets_stay_sealed_and_out_of_reports(lab: Lab) -> None:
    report = lab.run(rotate_k=True)
    text = json.dumps(report)
    stored = b"".join(p.read_bytes() for p in lab.tmp.glob("network.db*"))
    with lab.store.transaction() as tx:
        record = tx.hss(report["new_imsi"])
    assert record is not None
    new_keys = current_keysets(PROFILE, lab.engine.state)[0]
    for secret in (PROFILE.k, PROFILE.opc, record.k, record.opc, new_keys.kic, new_keys.kid):
        assert (
            secret.hex() not in text
            and secret not in stored
            and secret.hex().encode() not in stored
        )
    assert oct((lab.tmp / "network.db").stat().st_mode & 0o777) == "0o600"


class LostPor(Exception):
    """The operator side died after the card took packet number ``n`` (its PoR never read)."""


@pytest.mark.parametrize("crash_after", [1, 2, 3, 4])
def test_operator_crash_after_any_packet_resumes_and_completes(lab: Lab, crash_after: int) -> None:
    sent = {"n": 0}

    def dying(apdu: bytes) -> bytes:
        response = lab.link.transmit(apdu)
        if apdu[1] == 0xC2:
            sent["n"] += 1
            if sent["n"] == crash_after:
                raise LostPor()
        return response

    with pytest.raises(LostPor):
        lab.run(send=dying, rotate_k=True)
    counters_then = dict(lab.engine.state.ota.counters)
    report = lab.run(rotate_k=True)
    assert report["resumed"] and report["k_rotated"]
    assert len(report["steps_done_before"]) >= 1
    lab.client.forget_selection()
    assert lab.client.read_imsi() == report["new_imsi"]
    assert lab.transfer.attach(report["new_imsi"], lab.authenticate)["accepted"]
    assert not ki_attacks.threat_check(
        lab.transfer, PROFILE.imsi, report["new_imsi"], lab.authenticate
    )["impersonation"]
    for kvn, value in counters_then.items():  # counters only went up
        assert lab.engine.state.ota.counters[kvn] >= value
    with lab.store.transaction() as tx:
        assert tx.hss_count("sho-b") == 1  # never a second record
    card_keys = lab.keyring.card("sho-b", PROFILE.iccid)
    assert card_keys is not None
    assert card_keys[0].keysets == current_keysets(PROFILE, lab.engine.state)


def test_card_reset_between_packets_and_a_rejected_packet_stop_the_run(lab: Lab) -> None:
    calls = {"n": 0}

    def reboot_then_send(apdu: bytes) -> bytes:
        if apdu[1] == 0xC2:
            calls["n"] += 1
            if calls["n"] == 2:
                lab.insert_card()  # the card process restarted from its state file
        return lab.link.transmit(apdu)

    report = lab.run(send=reboot_then_send)
    assert report["new_imsi"] and lab.engine.imsi == report["new_imsi"]
    # a card whose counter is ahead (someone used the keys) refuses: the run stops, typed
    state = lab.engine.state
    lab.engine.commit(replace(state, ota=state.ota.with_counter(2, 1_000)))
    with pytest.raises(OtaRejected) as caught:
        lab.run(rotate_k=True)
    assert caught.value.status is PorStatus.CNTR_LOW


def test_second_export_to_another_transfer_is_refused(lab: Lab) -> None:
    lab.run()
    sho_b = lab.config.shos["sho-b"].key
    request, _ = build_request(
        sho_b, holder="sho-a", imsi=PROFILE.imsi, iccid=PROFILE.iccid, now=NOW
    )
    with pytest.raises(Refused, match="handed over already"):
        lab.transfer.export("sho-a", request.wire)


def test_register_card_is_idempotent_and_guards_the_imsi(lab: Lab) -> None:
    assert not lab.transfer.register_card("sho-a", subscription_of())
    with pytest.raises(Refused, match="sho-a"):
        lab.transfer.register_card("sho-b", subscription_of())


def test_keyring_counters_are_stored_and_never_go_back(store_url: str) -> None:
    key = os.urandom(32)
    store = Store(store_url, key)
    ring = OtaKeyring(store)
    keys = CardKeys((Keyset(1, bytes(16), bytes(16)),), {1: 5})
    ring.put_card("sho-a", "8988", keys)
    again = Store(store_url, key)  # another process, or another server
    assert OtaKeyring(again).reserve_counter("sho-a", "8988", 1) == 6
    ring.put_card("sho-a", "8988", CardKeys(keys.keysets, {1: 0}))
    assert ring.reserve_counter("sho-a", "8988", 1) == 7
    loaded = OtaKeyring(again).card("sho-a", "8988")
    assert loaded is not None and loaded[0].keysets == keys.keysets
    with store.transaction() as tx:  # the key sets are sealed, bound to operator and card
        tx._db.execute("UPDATE ota_cards SET sho = 'sho-b' WHERE sho = 'sho-a' AND iccid = '8988'")
    from trelab.errors import CheckFailed

    with pytest.raises(CheckFailed, match="ota/sho-b/8988/kvn1"):
        ring.card("sho-b", "8988")
    store.close()
    again.close()


def test_imsi_update_script_contents() -> None:
    script = imsi_update_script("001020000000001")
    assert script[0].hex() == "00d6870009" + "080910200000000010"
    assert script[1].hex() == "00d68b000b" + "ffffffff" + "00f120" + "fffe" + "ff" + "01"
    assert script[2].hex() == "00d68c000e" + "ff" * 7 + "00f120" + "fffeff" + "01"
    assert script[3].hex() == "00d69e0012" + "ff" * 12 + "00f120" + "fffe" + "01"
    assert script[4].hex() == "00d68d000c" + "ff" * 12
    assert imsi_update_script("310260000000001", 3)[1][9:12].hex() == "130062"


def test_bad_requests_change_nothing(lab: Lab) -> None:
    before = ota_rows(lab.store)
    with pytest.raises(Refused, match="no subscriber"):
        lab.transfer.run(holder="sho-a", requester="sho-b", imsi="001019999999999",
                         iccid=PROFILE.iccid, send=lab.link.transmit, rotate_k=False)  # fmt: skip
    with pytest.raises(Refused, match="no OTA keys"):
        lab.transfer.run(holder="sho-a", requester="sho-b", imsi=PROFILE.imsi,
                         iccid="8999999999999999999", send=lab.link.transmit, rotate_k=False)  # fmt: skip
    for holder, requester in (("sho-a", "sho-a"), ("sho-a", "sho-z"), ("sho-z", "sho-b")):
        with pytest.raises(BadInput):
            lab.transfer.run(holder=holder, requester=requester, imsi=PROFILE.imsi,
                             iccid=PROFILE.iccid, send=lab.link.transmit, rotate_k=False)  # fmt: skip
    assert ota_rows(lab.store) == before and lab.engine.state.ota.counters == {}
    lab.run()
    with pytest.raises(BadInput, match="transferred for IMSI"):
        lab.transfer.run(holder="sho-a", requester="sho-b", imsi="001019999999999",
                         iccid=PROFILE.iccid, send=lab.link.transmit, rotate_k=False)  # fmt: skip


def test_tuak_subscription_transfer_and_k_rotation(tmp_path: Path) -> None:
    from host.cli.transfer_cmd import _subscription_from_profile
    from tests.usim_vectors import tuak_cards

    data = {**tuak_cards()[1].profile, "ota_keysets": DEFAULT_PROFILE["ota_keysets"]}
    profile_file = tmp_path / "tuak.json"
    profile_file.write_text(json.dumps(data))
    profile = parse_profile(data)
    config = make_config()
    store = Store(tmp_path / "n.db", config.store_key)
    transfer = KiTransfer(config, store, OtaKeyring(store), now=lambda: NOW)
    transfer.register_card("sho-a", _subscription_from_profile(str(profile_file)))
    engine = UsimEngine(profile, CardStore(None))
    link = InProcessLink(engine)
    client = UsimClient(link)
    client.verify_pin("1234")

    def authenticate(rand: bytes, autn: bytes) -> Any:
        client.forget_selection()
        return client.authenticate(rand, autn)

    try:
        report = transfer.run(holder="sho-a", requester="sho-b", imsi=profile.imsi,
                              iccid=profile.iccid, send=link.transmit, rotate_k=True)  # fmt: skip
        assert report["k_rotated"] and engine.imsi == report["new_imsi"]
        assert transfer.attach(report["new_imsi"], authenticate)["accepted"]
        assert not ki_attacks.threat_check(
            transfer, profile.imsi, report["new_imsi"], authenticate
        )["false_network"]
    finally:
        store.close()


def test_every_step_has_an_action_in_the_table() -> None:
    from network.transfer import _STEP_ACTIONS, STEPS

    assert list(_STEP_ACTIONS) == list(STEPS)


def test_the_journal_is_typed_and_round_trips() -> None:
    from network.transfer import TransferJournal

    j = TransferJournal("sho-a", "sho-b", "001010000000001", "8988211000000000001", 5)
    j = replace(j, steps=frozenset({"import"}), new_imsi="001020000000001")
    assert TransferJournal.from_plain("t1", j.to_plain()) == j
    bad = {**j.to_plain(), "steps": {"teleport": True}}
    with pytest.raises(BadInput, match="steps"):
        TransferJournal.from_plain("t1", bad)
    with pytest.raises(CheckFailed, match="no new IMSI"):
        replace(j, new_imsi=None).imported_imsi()


# ---- two operator deployments ---------------------------------------------------------------------


def two_deployments() -> tuple[Any, Any]:
    """SHO-A's and SHO-B's configurations, each with its own private keys and store key only,
    the other operator pinned as a peer (its public key)."""
    from network.config import PeerConfig

    a, b = make_config(), make_config()
    sho_a, sho_b = a.shos["sho-a"], b.shos["sho-b"]
    config_a = replace(
        a, shos={"sho-a": sho_a}, peers={"sho-b": PeerConfig("sho-b", sho_b.key.public_key)}
    )
    config_b = replace(
        b, shos={"sho-b": sho_b}, peers={"sho-a": PeerConfig("sho-a", sho_a.key.public_key)}
    )
    return config_a, config_b


def test_two_operator_deployments_transfer_over_http(store_url: str, tmp_path: Path) -> None:
    """SHO-A and SHO-B as two deployments, each with its own configuration (its own private
    keys, the other pinned) and store (SHO-A's on each engine), SHO-A behind its own HTTP
    server: the signed request and the encrypted package cross the network; each store ends
    with its own operator's records only."""
    import time

    from network.server import NetworkApp, running_server
    from network.transfer import http_exporter
    from tests.unit.network.conftest import opaque_builder

    config_a, config_b = two_deployments()
    store_a = Store(store_url, config_a.store_key)
    store_b = Store(tmp_path / "sho-b.db", config_b.store_key)
    try:
        KiTransfer(config_a, store_a, now=lambda: int(time.time())).register_card(
            "sho-a", subscription_of()
        )
        engine = UsimEngine(PROFILE, CardStore(tmp_path / "card.json"))
        link = InProcessLink(engine)
        client = UsimClient(link)
        client.verify_pin("1234")
        with running_server(NetworkApp(config_a, store_a, builder=opaque_builder)) as url_a:
            sho_b = KiTransfer(
                config_b, store_b, now=lambda: int(time.time()), exporter=http_exporter(url_a)
            )
            report = sho_b.run(holder="sho-a", requester="sho-b", imsi=PROFILE.imsi,
                               iccid=PROFILE.iccid, send=link.transmit, rotate_k=True)  # fmt: skip
            client.forget_selection()
            attached = sho_b.attach(report["new_imsi"], lambda r, a: client.authenticate(r, a))
            again, _ = build_request(config_b.shos["sho-b"].key, holder="sho-a",
                                     imsi=PROFILE.imsi, iccid=PROFILE.iccid, now=int(time.time()))  # fmt: skip
            with pytest.raises(Refused) as caught:  # SHO-A's refusal arrives typed, over HTTP
                http_exporter(url_a)("sho-a", again.wire)
        assert caught.value.code == "already-transferred"
        assert attached["accepted"] and report["k_rotated"]
        assert engine.imsi == report["new_imsi"] != PROFILE.imsi
        with store_a.transaction() as tx:
            old = tx.hss(PROFILE.imsi)
            assert old is not None and old.state == "transferred" and tx.hss_count() == 1
            assert tx.hss(report["new_imsi"]) is None
        card_a = OtaKeyring(store_a).card("sho-a", PROFILE.iccid)
        assert card_a is not None and card_a[1]["state"] == "transferred"
        assert OtaKeyring(store_a).card("sho-b", PROFILE.iccid) is None
        with store_b.transaction() as tx:
            new = tx.hss(report["new_imsi"])
            assert new is not None and (new.sho, new.state) == ("sho-b", "active")
            assert tx.hss(PROFILE.imsi) is None and tx.hss_count() == 1
        assert OtaKeyring(store_b).card("sho-a", PROFILE.iccid) is None
        events_a = {(e.actor, e.event) for e in store_a.audit_events()}
        events_b = {(e.actor, e.event) for e in store_b.audit_events()}
        assert ("sho-a", "ki-export") in events_a and ("sho", "refused") in events_a
        assert not any(event.startswith(("ki-import", "ota-", "k-rot")) for _, event in events_a)
        for wanted in ("ki-import", "ota-imsi", "k-rotation", "ki-activate"):
            assert ("sho-b", wanted) in events_b
        assert ("sho-a", "ki-export") not in events_b
        store_a.verify_audit()
        store_b.verify_audit()
    finally:
        store_a.close()
        store_b.close()


def test_deployments_that_did_not_pin_each_other_refuse(tmp_path: Path) -> None:
    """SHO-A's deployment without SHO-B pinned refuses its request (403, audited, nothing
    exported); SHO-B with a wrong key pinned for SHO-A refuses the package (nothing imported,
    no step done); SHO-B with no SHO-A pinned at all refuses before asking."""
    import time

    from network.config import PeerConfig
    from network.server import NetworkApp, running_server
    from network.transfer import http_exporter
    from tests.unit.network.conftest import opaque_builder

    config_a, config_b = two_deployments()
    lonely_a = replace(config_a, peers={})
    store_a = Store(tmp_path / "sho-a.db", config_a.store_key)
    store_b = Store(tmp_path / "sho-b.db", config_b.store_key)
    engine = UsimEngine(PROFILE, CardStore(tmp_path / "card.json"))
    link = InProcessLink(engine)

    def run(config: Any, url: str) -> Any:
        sho_b = KiTransfer(config, store_b, now=lambda: int(time.time()),
                           exporter=http_exporter(url))  # fmt: skip
        return sho_b.run(holder="sho-a", requester="sho-b", imsi=PROFILE.imsi,
                         iccid=PROFILE.iccid, send=link.transmit, rotate_k=False)  # fmt: skip

    try:
        KiTransfer(config_a, store_a, now=lambda: int(time.time())).register_card(
            "sho-a", subscription_of()
        )
        with (
            running_server(NetworkApp(lonely_a, store_a, builder=opaque_builder)) as url,
            pytest.raises(SignatureInvalid, match="unknown SHO 'sho-b'"),
        ):
            run(config_b, url)
        with store_a.transaction() as tx:
            record = tx.hss(PROFILE.imsi)
            assert record is not None and record.state == "active"  # SHO-A exported nothing
        assert "ki-export" not in {e.event for e in store_a.audit_events()}
        forged = PeerConfig("sho-a", ec.generate_private_key(ec.SECP256R1()).public_key())
        with running_server(NetworkApp(config_a, store_a, builder=opaque_builder)) as url:
            with pytest.raises(SignatureInvalid):
                run(replace(config_b, peers={"sho-a": forged}), url)
            with pytest.raises(BadInput, match="add-peer"):
                run(replace(config_b, peers={}), url)
        with store_b.transaction() as tx:
            assert tx.hss_count() == 0  # SHO-B imported nothing
        journals = [row for row in ota_rows(store_b) if "steps" in str(row)]
        assert journals and all('"steps": {}' in str(row) for row in journals)  # none done
        assert engine.imsi == PROFILE.imsi  # no packet reached the card
        refusals = [e for e in store_a.audit_events() if e.event == "refused"]
        assert refusals and "unknown SHO" in json.dumps(refusals[0].detail)
        store_a.verify_audit()
    finally:
        store_a.close()
        store_b.close()
