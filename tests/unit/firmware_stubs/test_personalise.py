"""Alternative 2: a pre-personalised card and the HSS record that matches it."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from aka.hss import Hss
from aka.sqn import split_sqn
from firmware_stubs.usim.personalise import HssRecord, hss_subscriber, new_profile_data, personalise
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from trelab.errors import BadInput

from .conftest import Card, make_card
from .test_engine_aka import parse_success


def counter_random() -> Callable[[int], bytes]:
    state = {"n": 0}

    def draw(n: int) -> bytes:
        out = bytes((state["n"] + i) % 256 for i in range(n))
        state["n"] += n
        return out

    return draw


def test_record_matches_profile() -> None:
    card, record = personalise(DEFAULT_PROFILE)
    assert card == parse_profile(DEFAULT_PROFILE)
    assert (record.imsi, record.k, record.opc, record.amf) == (
        card.imsi,
        card.k,
        card.opc,
        card.amf,
    )
    seq_ms, _ = split_sqn(card.sqn_ms)
    assert record.seq_he == seq_ms and split_sqn(record.next_sqn)[0] == seq_ms + 1
    data = record.to_json()
    assert data["k"] == DEFAULT_PROFILE["k"] and data["opc"] == DEFAULT_PROFILE["opc"]
    assert DEFAULT_PROFILE["k"] not in repr(record) and DEFAULT_PROFILE["opc"] not in repr(record)
    assert personalise(card)[1] == record


@pytest.mark.parametrize("algorithm", ["milenage", "tuak"])
def test_fresh_card_authenticates_with_its_record(algorithm: str) -> None:
    data = new_profile_data(
        "001010000000042", "8988211000000000033", os.urandom, algorithm=algorithm
    )  # type: ignore[arg-type]
    card_profile, record = personalise(data)
    card = make_card(data)
    card.select_usim()
    assert card.send(b"\x00\x20\x00\x01\x08" + data["pin1"].encode() + b"\xff" * 4)[1] == 0x9000
    hss = Hss(os.urandom)
    hss.add(hss_subscriber(record))
    (vector,) = hss.generate_vectors(record.imsi, 1)
    reply, sw = card.authenticate(vector.rand, vector.autn)
    assert sw == 0x9000 and parse_success(reply)[0] == vector.xres
    # a second AuC built straight from the profile starts at the same SQN_HE: its first
    # vector reuses an SQN the card has accepted, so the card answers AUTS, and the
    # resynchronised AuC then authenticates
    other = Hss(os.urandom)
    other.add(hss_subscriber(card_profile))
    (stale,) = other.generate_vectors(record.imsi, 1)
    reply, sw = card.authenticate(stale.rand, stale.autn)
    assert sw == 0x9000 and reply[0] == 0xDC
    other.resynchronise(record.imsi, stale.rand, reply[2:])
    (fresh,) = other.generate_vectors(record.imsi, 1)
    reply, sw = card.authenticate(fresh.rand, fresh.autn)
    assert sw == 0x9000 and parse_success(reply)[0] == fresh.xres


def test_new_profile_data_is_random_and_valid() -> None:
    a = new_profile_data("001010000000042", "8988211000000000033", counter_random())
    b = new_profile_data("001010000000042", "8988211000000000033", os.urandom)
    assert a["k"] != b["k"] and a["opc"] != b["opc"]
    for key in ("pin1", "puk1", "adm1"):
        assert a[key].isdigit()
    assert len(a["pin1"]) == 4 and len(a["puk1"]) == 8
    with pytest.raises(BadInput, match="imsi"):
        new_profile_data("12", "8988211000000000033", os.urandom)
    with pytest.raises(BadInput, match="algorithm"):
        new_profile_data("001010000000042", "8988211000000000033", os.urandom, algorithm="x")  # type: ignore[arg-type]


def test_hss_record_from_tuak_profile() -> None:
    data = new_profile_data(
        "001010000000042", "8988211000000000033", counter_random(), algorithm="tuak"
    )
    _card, record = personalise(data)
    assert isinstance(record, HssRecord) and record.topc is not None
    assert record.to_json()["topc"] == data["topc"]
    assert "opc" not in record.to_json()


def test_card_fixture_is_personalised_by_default(card: Card) -> None:
    _profile, record = personalise(card.engine.profile)
    assert record.imsi == card.engine.imsi
