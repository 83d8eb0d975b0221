"""uicc.usim.UsimClient against the real emulated USIM, in-process (no pcscd): 3GPP vectors,
AUTS and resynchronisation, MAC failure, PIN blocking and PUK, card info, refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aka.autn import recover_sqn_ms
from aka.hss import Hss
from aka.usim import AkaMacFailure, AkaSuccess, AkaSyncFailure
from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.personalise import hss_subscriber
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from firmware_stubs.usim.state import CardStore
from tests.usim_vectors import TestCard, milenage_cards, tuak_cards
from trelab.errors import BadInput, CheckFailed
from uicc.errors import CardRefused
from uicc.links.inprocess import InProcessLink
from uicc.usim import UsimClient


def _client(profile: object = DEFAULT_PROFILE, store: CardStore | None = None) -> UsimClient:
    engine = UsimEngine(parse_profile(profile), store)  # type: ignore[arg-type]
    return UsimClient(InProcessLink(engine))


@pytest.fixture
def client() -> UsimClient:
    return _client()


# ---- files and PIN ---------------------------------------------------------------------------


def test_info_before_the_pin(client: UsimClient) -> None:
    info = client.info()
    assert info.iccid == DEFAULT_PROFILE["iccid"]
    assert info.usim_aid.hex().startswith("a0000000871002")
    assert info.imsi is None and "6982" in (info.imsi_error or "")
    assert info.pin.to_json() == {"state": "enabled", "verified": False, "tries_left": 3}
    data = info.to_json()
    assert data["atr"] == client.link.atr.hex()  # type: ignore[union-attr]


def test_pin_then_imsi(client: UsimClient) -> None:
    client.verify_pin("1234")
    assert client.read_imsi() == DEFAULT_PROFILE["imsi"]
    status = client.pin_status()
    assert (status.state, status.verified) == ("enabled", True)
    assert client.info().imsi == DEFAULT_PROFILE["imsi"]


def test_pin_blocks_after_three_wrong_tries_and_the_puk_unblocks_it(client: UsimClient) -> None:
    for left in (2, 1):
        with pytest.raises(CardRefused) as caught:
            client.verify_pin("0000")
        assert caught.value.sw == 0x63C0 | left
        assert f"{left} retries remaining" in str(caught.value)
        assert "0000" not in str(caught.value)  # the PIN never appears in a message
    with pytest.raises(CardRefused) as caught:
        client.verify_pin("0000")
    assert caught.value.sw == 0x6983 and "blocked" in str(caught.value)
    assert client.pin_status().to_json() == {"state": "blocked", "verified": False, "tries_left": 0}
    with pytest.raises(CardRefused) as caught:
        client.verify_pin("1234")  # the right PIN does not help any more
    assert caught.value.sw == 0x6983
    with pytest.raises(CardRefused) as caught:
        client.unblock_pin("87654321", "4321")
    assert caught.value.sw == 0x63C9  # PUK: 10 tries, one spent
    client.unblock_pin("12345678", "4321")
    assert client.pin_status().verified
    assert client.read_imsi() == DEFAULT_PROFILE["imsi"]
    fresh = UsimClient(InProcessLink(client.link._engine))  # type: ignore[attr-defined]
    fresh.verify_pin("4321")  # the new PIN, after a power cycle
    with pytest.raises(CardRefused):
        fresh.verify_pin("1234")


def test_pin_blocking_survives_a_new_engine_on_the_same_state(tmp_path: Path) -> None:
    store = tmp_path / "state.json"
    first = _client(store=CardStore(store))
    for _ in range(3):
        with pytest.raises(CardRefused):
            first.verify_pin("9999")
    second = _client(store=CardStore(store))
    assert second.pin_status().state == "blocked"


def test_disabled_pin(client: UsimClient) -> None:
    client.disable_pin("1234")
    again = UsimClient(InProcessLink(client.link._engine))  # type: ignore[attr-defined]
    assert again.pin_status().state == "disabled"
    assert again.read_imsi() == DEFAULT_PROFILE["imsi"]  # no VERIFY needed now
    again.enable_pin("1234")
    third = UsimClient(InProcessLink(client.link._engine))  # type: ignore[attr-defined]
    assert third.pin_status().state == "enabled"
    with pytest.raises(CardRefused):
        third.read_imsi()


def test_change_pin(client: UsimClient) -> None:
    client.change_pin("1234", "98765432")
    again = UsimClient(InProcessLink(client.link._engine))  # type: ignore[attr-defined]
    again.verify_pin("98765432")


def test_a_malformed_pin_is_refused_before_anything_is_sent(client: UsimClient) -> None:
    sent = client.link.apdus  # type: ignore[attr-defined]
    with pytest.raises(BadInput):
        client.verify_pin("12")
    assert client.link.apdus == sent  # type: ignore[attr-defined]
    assert client.pin_status().tries_left == 3


def test_authenticate_needs_the_pin(client: UsimClient) -> None:
    card = milenage_cards()[0]
    with pytest.raises(CardRefused) as caught:
        client.authenticate(card.rand, card.autn)
    assert caught.value.sw == 0x6982 and isinstance(caught.value, CheckFailed)


# ---- 3GPP vectors --------------------------------------------------------------------------


def _run_vector(card: TestCard) -> UsimClient:
    client = _client(card.profile)
    client.verify_pin("1234")
    result = client.authenticate(card.rand, card.autn)
    assert isinstance(result, AkaSuccess), card.name
    got = result.to_json()
    for key in ("res", "ck", "ik", "kc"):
        if key in card.expected:
            assert got[key] == card.expected[key], (card.name, key)
    return client


@pytest.mark.parametrize("card", milenage_cards(), ids=lambda c: c.name.split()[-1])
def test_milenage_35208_sets(card: TestCard) -> None:
    client = _run_vector(card)
    gsm = client.authenticate_gsm(card.rand)
    assert (gsm.sres.hex(), gsm.kc.hex()) == (card.expected["sres"], card.expected["kc"])
    # The same AUTN again is a replay: AUTS, from which the network recovers SQN_MS = SQN.
    replay = client.authenticate(card.rand, card.autn)
    assert isinstance(replay, AkaSyncFailure)
    algorithm = parse_profile(card.profile).make_algorithm()
    assert recover_sqn_ms(algorithm, card.rand, replay.auts) == card.sqn


@pytest.mark.parametrize("card", tuak_cards(), ids=lambda c: c.name.split()[-1])
def test_tuak_35233_sets(card: TestCard) -> None:
    client = _run_vector(card)
    replay = client.authenticate(card.rand, card.autn)
    assert isinstance(replay, AkaSyncFailure)
    algorithm = parse_profile(card.profile).make_algorithm()
    assert recover_sqn_ms(algorithm, card.rand, replay.auts) == card.sqn


def test_wrong_mac_is_a_mac_failure_and_changes_nothing(client: UsimClient) -> None:
    card = milenage_cards()[0]  # the default profile is Test Set 1
    client.verify_pin("1234")
    forged = card.autn[:-1] + bytes([card.autn[-1] ^ 1])
    assert isinstance(client.authenticate(card.rand, forged), AkaMacFailure)
    assert client.authenticate(card.rand, card.autn).to_json()["res"] == card.expected["res"]


def test_network_resynchronises_from_auts(client: UsimClient) -> None:
    hss = Hss(os.urandom)
    hss.add(hss_subscriber(parse_profile(DEFAULT_PROFILE)))
    imsi = DEFAULT_PROFILE["imsi"]
    client.verify_pin("1234")
    first = hss.generate_vectors(imsi)[0]
    ok = client.authenticate(first.rand, first.autn)
    assert isinstance(ok, AkaSuccess) and ok.res == first.xres and ok.ck == first.ck
    replay = client.authenticate(first.rand, first.autn)
    assert isinstance(replay, AkaSyncFailure)
    assert hss.resynchronise(imsi, first.rand, replay.auts) == client.link._engine.state.sqn.sqn_ms  # type: ignore[attr-defined]
    after = hss.generate_vectors(imsi)[0]
    assert isinstance(client.authenticate(after.rand, after.autn), AkaSuccess)


def test_bad_lengths_are_bad_input_and_nothing_is_sent(client: UsimClient) -> None:
    sent = client.link.apdus  # type: ignore[attr-defined]
    with pytest.raises(BadInput, match="RAND"):
        client.authenticate(bytes(15), bytes(16))
    with pytest.raises(BadInput, match="AUTN"):
        client.authenticate(bytes(16), bytes(10))
    assert client.link.apdus == sent  # type: ignore[attr-defined]
