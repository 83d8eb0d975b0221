"""Alternative 3a on the lab: Ki transfer SHO-A → SHO-B and the card updated over the air, through
the real PC/SC stack (pyscard → pcscd → vpcd → `trelab card serve` on reader 1) and through the
modem emulator on a pty (ENVELOPE inside AT+CSIM). The operators are a real `trelab network
init-config` directory and SQLite store in tmp_path."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.usim.profile import DEFAULT_PROFILE
from lab.lab import LabStatus
from network.config import init_config, load_config
from network.store import Store
from network.transfer import KiTransfer, OtaKeyring, deliver
from tests.card_process import READER_1, CardProcess
from tests.conftest import ModemProcess
from tests.helpers import REPO
from tests.usim_vectors import unique_iccid
from trelab.errors import TrelabError
from uicc.links.at_csim import AtCsimLink
from uicc.links.pcsc import PcscLink
from uicc.ota import (
    TAR_RFM_USIM,
    Keyset,
    PorStatus,
    build_command_packet,
    build_envelope_sms_pp,
    build_sms_deliver,
    encode_compact,
)
from uicc.usim import UsimClient

pytestmark = pytest.mark.lab

OLD_IMSI = str(DEFAULT_PROFILE["imsi"])


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=180, check=False,
    )  # fmt: skip


@pytest.fixture
def card(tmp_path: Path, lab: LabStatus) -> Iterator[CardProcess]:
    own = CardProcess(tmp_path / "card", dict(DEFAULT_PROFILE) | {"iccid": unique_iccid()})
    try:
        yield own.start()
    finally:
        own.stop()


@pytest.fixture
def operators(tmp_path: Path, lab: LabStatus) -> dict[str, Path]:
    """A real operator configuration (SHO-A, SHO-B, …) and the path of its store."""
    path = init_config(tmp_path / "network", ca_bundle=lab.ca.bundle)
    return {"config": path.parent, "db": tmp_path / "network.db"}


def transfer_cli(operators: dict[str, Path], *where: str, profile: Path, rotate: bool) -> Any:
    done = cli(
        "transfer", "ki", "--imsi", OLD_IMSI, "--from", "sho-a", "--to", "sho-b",
        "--config", str(operators["config"]), "--db", str(operators["db"]),
        "--card-profile", str(profile), *(["--rotate-k"] if rotate else []), *where, "--json",
        env={"TRELAB_CARD_PIN": "1234"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def check_report(report: dict[str, Any], iccid: str) -> str:
    transfer = report["transfer"]
    new_imsi = transfer["new_imsi"]
    assert new_imsi.startswith("00102") and transfer["old_imsi"] == OLD_IMSI
    steps = [p["step"] for p in transfer["packets"]]
    assert steps == ["keys-add", "keys-delete", "imsi", "k-rotation"]
    assert all(p["por"] == "PoR OK" and p["last_sw"] == "9000" for p in transfer["packets"])
    assert report["card"] == {"iccid": iccid, "imsi": new_imsi}
    assert report["attach"]["before_k_rotation"]["accepted"]
    assert report["attach"]["after_k_rotation"]["accepted"]
    before, after = report["threats"]["before_k_rotation"], report["threats"]["after_k_rotation"]
    assert before["impersonation"] and before["false_network"]  # seed threat 2 is real …
    assert not after["impersonation"] and not after["false_network"]  # … until K is rotated
    assert after["card_answer_to_old_operator"] == "mac_failure"
    assert report["old_operator_ota"]["accepted"] is False
    assert "unidentified security error" in report["old_operator_ota"]["por"]
    return str(new_imsi)


def test_transfer_over_pcsc_with_k_rotation(card: CardProcess, operators: dict[str, Path]) -> None:
    report = transfer_cli(operators, "--reader", READER_1, profile=card.profile_file, rotate=True)
    new_imsi = check_report(report, card.iccid)
    on_disk = json.loads(card.state.read_text())["ota"]
    assert [ks["kvn"] for ks in on_disk["keysets"]] == [2] and "credentials" in on_disk
    # the same command again: everything is done, nothing is sent twice
    again = cli(
        "transfer", "ki", "--imsi", OLD_IMSI, "--from", "sho-a", "--to", "sho-b",
        "--config", str(operators["config"]), "--db", str(operators["db"]),
        "--reader", READER_1, "--json",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    redo = json.loads(again.stdout)["transfer"]
    assert redo["packets"] == [] and redo["new_imsi"] == new_imsi and redo["k_rotated"]
    assert len(redo["steps_done_before"]) == 6


def test_transfer_through_the_modem(tmp_path: Path, operators: dict[str, Path]) -> None:
    profile = tmp_path / "modem-profile.json"
    profile.write_text(json.dumps(dict(DEFAULT_PROFILE)))
    modem = ModemProcess(profile, tmp_path / "modem-state.json", tmp_path / "modem.log")
    try:
        report = transfer_cli(operators, "--serial", modem.device, profile=profile, rotate=True)
        new_imsi = check_report(report, str(DEFAULT_PROFILE["iccid"]))
        with AtCsimLink(modem.device) as link:
            if "SIM PIN" in link.command("AT+CPIN?")[0]:
                link.command('AT+CPIN="1234"')
            assert link.command("AT+CIMI") == (new_imsi,)  # what the modem attaches with
    finally:
        modem.stop()


def ota_env(keyset: Keyset) -> dict[str, str]:
    return {"TRELAB_OTA_KIC": keyset.kic.hex(), "TRELAB_OTA_KID": keyset.kid.hex()}


def test_replay_tamper_and_wrong_key_are_refused_by_the_card(
    card: CardProcess, operators: dict[str, Path]
) -> None:
    transfer_cli(operators, "--reader", READER_1, profile=card.profile_file, rotate=False)
    config = load_config(operators["config"] / "network.json")
    keyring = OtaKeyring(Store(operators["db"], config.store_key))
    held = keyring.card("sho-b", card.iccid)
    assert held is not None
    keyset = held[0].keysets[0]

    def imsi_apdu(imsi: str) -> str:
        from uicc import fs

        return "00d6870009" + fs.EF_IMSI.codec.encode(imsi, 9).hex()

    def ota_send(*args: str) -> tuple[int, dict[str, Any]]:
        done = cli("ota", "send", "--reader", READER_1, "--kvn", str(keyset.kvn), *args,
                   "--json", env=ota_env(keyset))  # fmt: skip
        assert "Traceback" not in done.stderr and done.stdout, done.stderr
        return done.returncode, json.loads(done.stdout)

    first_counter = keyring.reserve_counter("sho-b", card.iccid, keyset.kvn)
    code, first = ota_send("--counter", str(first_counter), "--apdu", imsi_apdu("001020000000111"))
    assert code == 0 and first["por"]["status"] == "PoR OK" and first["por"]["authenticated"]
    second = keyring.reserve_counter("sho-b", card.iccid, keyset.kvn)
    code, _ = ota_send("--counter", str(second), "--apdu", imsi_apdu("001020000000222"))
    assert code == 0
    code, replay = ota_send("--envelope", first["envelope"])
    assert code == 1 and replay["por"]["status"] == "CNTR low" and replay["por"]["code"] == "02"

    def read_imsi() -> str:
        with PcscLink(READER_1) as link:
            client = UsimClient(link)
            client.verify_pin("1234")
            return client.read_imsi()

    assert read_imsi() == "001020000000222"  # the replay changed nothing
    third = keyring.reserve_counter("sho-b", card.iccid, keyset.kvn)
    script = encode_compact([bytes.fromhex(imsi_apdu("001020000000333"))])

    def envelope(keys: Keyset, counter: int, tamper: bool = False) -> bytes:
        packet = build_command_packet(keys, tar=TAR_RFM_USIM, counter=counter, data=script)
        if tamper:
            packet = packet[:-1] + bytes([packet[-1] ^ 0x80])
        return build_envelope_sms_pp(build_sms_deliver(packet))

    with PcscLink(READER_1) as link:
        tampered = deliver(link.transmit, envelope(keyset, third, tamper=True), keyset)
        wrong_kic = Keyset(keyset.kvn, bytes(16), keyset.kid)
        wrong = deliver(link.transmit, envelope(wrong_kic, third), keyset)
        lower = deliver(link.transmit, envelope(keyset, first_counter), keyset)
    assert (tampered.status, tampered.authenticated) == (PorStatus.CC_FAILED, False)
    assert (wrong.status, wrong.authenticated) == (PorStatus.CC_FAILED, False)
    assert (lower.status, lower.authenticated) == (PorStatus.CNTR_LOW, True)
    assert read_imsi() == "001020000000222"
    with PcscLink(READER_1) as link:  # the refused packets did not spend the counter
        assert deliver(link.transmit, envelope(keyset, third), keyset).status is PorStatus.OK
    assert read_imsi() == "001020000000333"


def test_kill_9_of_the_card_between_packets_then_retry_completes(
    card: CardProcess, operators: dict[str, Path]
) -> None:
    from host.cli.transfer_cmd import _subscription_from_profile

    config = load_config(operators["config"] / "network.json")
    store = Store(operators["db"], config.store_key)
    keyring = OtaKeyring(store)
    transfer = KiTransfer(config, store, keyring, now=lambda: 1_800_000_000)
    transfer.register_card("sho-a", _subscription_from_profile(str(card.profile_file)))
    envelopes = {"n": 0}
    try:
        with PcscLink(READER_1) as link:

            def send_then_kill(apdu: bytes) -> bytes:
                response = link.transmit(apdu)
                if apdu[1] == 0xC2:
                    envelopes["n"] += 1
                    if envelopes["n"] == 2:  # keys-add and keys-delete are on the card
                        card.kill9()
                return response

            with pytest.raises(TrelabError):  # the card is gone before the IMSI packet
                transfer.run(
                    holder="sho-a", requester="sho-b", imsi=OLD_IMSI, iccid=card.iccid,
                    send=send_then_kill, rotate_k=True,
                )  # fmt: skip
        state = json.loads(card.state.read_text())  # whole: written atomically
        assert [ks["kvn"] for ks in state["ota"]["keysets"]] == [2]
        card.start()  # same profile and state file, a new process
        with PcscLink(READER_1) as link:
            report = transfer.run(
                holder="sho-a", requester="sho-b", imsi=OLD_IMSI, iccid=card.iccid,
                send=link.transmit, rotate_k=True,
            )  # fmt: skip
            # keys-delete's PoR was read before the kill: done; the rest runs now
            assert report["resumed"] and [p["step"] for p in report["packets"]] == [
                "imsi", "k-rotation",
            ]  # fmt: skip
            client = UsimClient(link)
            client.verify_pin("1234")
            assert client.read_imsi() == report["new_imsi"]

            def authenticate(rand: bytes, autn: bytes) -> Any:
                client.forget_selection()
                return client.authenticate(rand, autn)

            assert transfer.attach(report["new_imsi"], authenticate)["accepted"]
        with store.transaction() as tx:
            assert tx.hss_count("sho-b") == 1
    finally:
        store.close()


def test_cli_refusals_are_one_line_and_change_nothing(
    card: CardProcess, operators: dict[str, Path]
) -> None:
    base = ["transfer", "ki", "--from", "sho-a", "--to", "sho-b", "--config",
            str(operators["config"]), "--db", str(operators["db"]), "--reader", READER_1]  # fmt: skip
    unknown = cli(*base, "--imsi", OLD_IMSI, "--json")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert "give --card-profile" in unknown.stderr
    assert json.loads(unknown.stdout)["error"]["type"] == "BadInput"
    wrong = cli(*base, "--imsi", "001019999999999", "--card-profile", str(card.profile_file))
    assert wrong.returncode == 2 and "another card or IMSI" in wrong.stderr
    no_keys = cli("ota", "send", "--reader", READER_1, "--counter", "1", "--apdu", "00b0870009")
    assert no_keys.returncode == 2 and "TRELAB_OTA_KIC" in no_keys.stderr
    assert "ota" not in json.loads(card.state.read_text())  # no packet reached the card


def _private_points(folder: Path) -> set[bytes]:
    """The public points of every PEM private key anywhere under ``folder``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    points = set()
    for path in folder.rglob("*"):
        if path.is_file() and b"PRIVATE KEY" in path.read_bytes():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            points.add(
                key.public_key().public_bytes(
                    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
                )
            )
    return points


@contextlib.contextmanager
def serving(config: Path, store: str, log_path: Path) -> Iterator[str]:
    """`trelab network serve` (HTTPS, its config's certificate) on a free port; its URL."""
    import select
    import signal

    log = log_path.open("w")
    serve = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "network", "serve", "--listen", "127.0.0.1:0",
         "--config", str(config), "--store", store, "--json"],
        stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert serve.stdout is not None
        ready, _, _ = select.select([serve.stdout], [], [], 60)
        url = json.loads(serve.stdout.readline())["listening"] if ready else None
        assert url and url.startswith("https://"), log_path.read_text()[-800:]
        yield str(url)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
        log.close()


def test_two_operator_deployments_over_http(
    card: CardProcess, lab: LabStatus, tmp_path: Path, postgres: Any
) -> None:
    """SHO-A and SHO-B as two deployments: each its own `network init-config` (its own private
    keys only), the other pinned with `network add-peer`, its own `network serve` over HTTPS and
    its own store (SHO-A on PostgreSQL, SHO-B on SQLite). SHO-B's `transfer ki --holder`
    reaches SHO-A under the TLS CA it pinned; SHO-A checks the request with the key it pinned
    for SHO-B; and SHO-B's server checks SHO-A's requests likewise. A deployment that did not
    pin the other refuses."""
    import time

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from network.transfer import build_request, http_exporter, open_package
    from protocol.errors import SignatureInvalid
    from protocol.messages import SigningKey

    dir_a, dir_b = tmp_path / "sho-a", tmp_path / "sho-b"
    for folder, sho, plmn in ((dir_a, "sho-a", "00101"), (dir_b, "sho-b", "00102")):
        done = cli("network", "init-config", "--config", str(folder), "--ca", str(lab.ca.bundle),
                   "--sho", sho, "--plmn", plmn, "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr
    done = cli("network", "add-peer", "--config", str(dir_a), "--trust",
               str(dir_b / "device-trust.json"), "--json")  # fmt: skip
    assert done.returncode == 0 and json.loads(done.stdout)["pinned"] == {"sho-b": {"tls_ca": True}}
    name = f"sho_a_{os.getpid()}"
    store_a = postgres.create_database(name)
    store_b = tmp_path / "sho-b.db"
    done = cli("transfer", "register-card", "--sho", "sho-a", "--card-profile",
               str(card.profile_file), "--config", str(dir_a), "--store", store_a, "--json")  # fmt: skip
    assert done.returncode == 0 and json.loads(done.stdout)["created"], done.stderr
    transfer = ["transfer", "ki", "--imsi", OLD_IMSI, "--from", "sho-a", "--to", "sho-b",
                "--config", str(dir_b), "--store", str(store_b), "--reader", READER_1, "--json"]  # fmt: skip
    with serving(dir_a, store_a, tmp_path / "sho-a.log") as url_a:
        unpinned = cli(*transfer, "--holder", url_a, "--rotate-k")  # SHO-B has not pinned A
        assert unpinned.returncode == 2 and "add-peer" in unpinned.stderr
        assert unpinned.stderr.count("\n") == 1
        done = cli("network", "add-peer", "--config", str(dir_b), "--trust",
                   str(dir_a / "device-trust.json"))  # fmt: skip
        assert done.returncode == 0, done.stderr
        done = cli(*transfer, "--holder", url_a, "--rotate-k",
                   env={"TRELAB_CARD_PIN": "1234"})  # fmt: skip
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    with serving(dir_b, str(store_b), tmp_path / "sho-b.log") as url_b:
        report = json.loads(done.stdout)
        new_imsi = report["transfer"]["new_imsi"]
        # SHO-B's own server answers SHO-A's signed requests — checked with the key it
        # pinned — and refuses one signed by any other key under SHO-A's name
        config_a, config_b = (
            load_config(dir_a / "network.json"),
            load_config(dir_b / "network.json"),
        )
        b_ca = config_a.peers["sho-b"].tls_ca
        assert b_ca is not None
        export_b = http_exporter(url_b, tls_ca=b_ca.public_bytes(serialization.Encoding.PEM))
        impostor = SigningKey("sho-a", ec.generate_private_key(ec.SECP256R1()))
        forged, _ = build_request(impostor, holder="sho-b", imsi=new_imsi,
                                  iccid=card.iccid, now=int(time.time()))  # fmt: skip
        with pytest.raises(SignatureInvalid):
            export_b("sho-b", forged.wire)
        back, ephemeral = build_request(config_a.shos["sho-a"].key, holder="sho-b",
                                        imsi=new_imsi, iccid=card.iccid, now=int(time.time()))  # fmt: skip
        package = export_b("sho-b", back.wire)
        returned = open_package(package, back, ephemeral, config_a.peers["sho-b"].public_key)
        assert returned.imsi == new_imsi and returned.iccid == card.iccid
    assert [p["step"] for p in report["transfer"]["packets"]] == [
        "keys-add", "keys-delete", "imsi", "k-rotation"
    ]  # fmt: skip
    assert new_imsi.startswith("00102")
    assert report["card"] == {"iccid": card.iccid, "imsi": new_imsi}
    assert report["attach"]["after_k_rotation"]["accepted"]
    assert "deployment" in report["skipped"] and report["threats"] == {}
    # each configuration holds its own private keys only; SHO-B's none of SHO-A's
    a_keys, b_keys = _private_points(dir_a), _private_points(dir_b)
    assert len(a_keys) == len(b_keys) == 5 and not a_keys & b_keys
    assert set(config_b.shos) == {"sho-b"} and set(config_b.peers) == {"sho-a"}
    assert config_b.store_key != config_a.store_key
    a, b = Store(store_a, config_a.store_key), Store(store_b, config_b.store_key)
    try:
        with a.transaction() as tx:
            old = tx.hss(OLD_IMSI)
            assert old is not None and old.state == "transferred" and tx.hss(new_imsi) is None
        with b.transaction() as tx:
            new = tx.hss(new_imsi)
            assert new is not None and new.state == "transferred" and tx.hss(OLD_IMSI) is None
        events_a = {(e.actor, e.event) for e in a.audit_events()}
        events_b = {(e.actor, e.event) for e in b.audit_events()}
        assert ("sho-a", "ki-export") in events_a and ("sho-b", "ki-export") not in events_a
        assert ("sho-b", "ki-import") in events_b and ("sho-b", "ki-export") in events_b
        assert ("sho", "refused") in events_b  # the impostor's request, audited
        a.verify_audit()
        b.verify_audit()
    finally:
        a.close()
        b.close()
        postgres.drop_database(name)
