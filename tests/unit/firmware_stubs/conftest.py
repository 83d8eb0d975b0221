"""Helpers for the emulated USIM tests: a card in memory and a T=0 exchange with GET RESPONSE."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from firmware_stubs.usim.state import CardStore

PIN1 = b"1234" + b"\xff" * 4
PUK1 = b"12345678"
ADM1 = b"88888888"


class Card:
    """An engine plus the T=0 dance a reader driver does: 61xx → GET RESPONSE with that length."""

    def __init__(self, engine: UsimEngine) -> None:
        self.engine = engine

    def raw(self, apdu: bytes | str) -> bytes:
        if isinstance(apdu, str):
            apdu = bytes.fromhex(apdu.replace(" ", ""))
        return self.engine.process(apdu)

    def send(self, apdu: bytes | str) -> tuple[bytes, int]:
        """(data, SW) after following 61xx with GET RESPONSE."""
        out = self.raw(apdu)
        data = b""
        while out[-2] == 0x61:
            data += out[:-2]
            out = self.engine.process(bytes([0x00, 0xC0, 0x00, 0x00, out[-1]]))
        return data + out[:-2], int.from_bytes(out[-2:], "big")

    def select_usim(self) -> bytes:
        data, sw = self.send("00a4040407a0000000871002")
        assert sw == 0x9000
        return data

    def verify_pin1(self) -> None:
        assert self.send(b"\x00\x20\x00\x01\x08" + PIN1)[1] == 0x9000

    def verify_adm1(self) -> None:
        assert self.send(b"\x00\x20\x00\x0a\x08" + ADM1)[1] == 0x9000

    def authenticate(self, rand: bytes, autn: bytes) -> tuple[bytes, int]:
        body = bytes([len(rand)]) + rand + bytes([len(autn)]) + autn
        return self.send(bytes([0x00, 0x88, 0x00, 0x81, len(body)]) + body)


def make_profile(**overrides: Any) -> Any:
    data: dict[str, Any] = dict(DEFAULT_PROFILE)
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return parse_profile(data)


def make_card(data: Mapping[str, Any] | None = None, path: Path | None = None) -> Card:
    profile = parse_profile(data if data is not None else DEFAULT_PROFILE)
    return Card(UsimEngine(profile, CardStore(path)))


@pytest.fixture
def card() -> Card:
    return make_card()
