"""Card profiles (JSON or TOML files) and card state files, as the emulated USIM loads them:
only typed errors; a profile that loads personalises a card, and a state that loads runs the
commands a terminal starts with (select, PIN, read, authenticate) without an internal error."""

from __future__ import annotations

import json
from collections.abc import Iterator

from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.profile import DEFAULT_PROFILE, load_profile, parse_profile
from firmware_stubs.usim.state import CardStore
from tests.fuzz.oracle import typed
from tests.fuzz.scratch import scratch_dir
from tests.fuzz.usim_common import MILENAGE, PIN1, USIM_AID, Watched, genuine_autn

_DIR = scratch_dir("card")
RAND = bytes(range(16))
START = [
    bytes([0x00, 0xA4, 0x04, 0x04, len(USIM_AID)]) + USIM_AID,
    b"\x00\x20\x00\x01\x08" + PIN1,
    bytes.fromhex("00a40004026f07"),
    bytes.fromhex("00b0000009"),
    bytes.fromhex("00a40004026fad"),
    bytes.fromhex("00b0000000"),
    bytes.fromhex("00a40004026f46"),
    bytes.fromhex("00b0000011"),
]


def _run(engine: UsimEngine) -> None:
    card = Watched(engine.profile, engine)
    for apdu in START:
        card.send(apdu)
    autn = genuine_autn(engine.profile, RAND, bytes.fromhex("000000000041"))
    body = b"\x10" + RAND + bytes([len(autn)]) + autn
    card.send(bytes([0x00, 0x88, 0x00, 0x81, len(body)]) + body)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    kind, body = data[0] % 3, data[1:]
    if kind == 2:  # a card state file for the default profile's card
        path = _DIR / "state.json"
        path.write_bytes(body)
        engine = typed(UsimEngine, MILENAGE, CardStore(path))
    else:
        path = _DIR / ("profile.toml" if kind else "profile.json")
        path.write_bytes(body)
        profile = typed(load_profile, path)
        if isinstance(profile, Exception):
            return
        engine = typed(UsimEngine, profile)
    if not isinstance(engine, Exception):
        _run(engine)


def starting_inputs() -> Iterator[bytes]:
    yield b"\x00" + json.dumps(dict(DEFAULT_PROFILE), indent=1).encode()
    toml = "\n".join(
        f"{k} = {json.dumps(v)}" for k, v in DEFAULT_PROFILE.items() if k != "ota_keysets"
    )
    yield b"\x01" + toml.encode()
    tuak = {k: v for k, v in DEFAULT_PROFILE.items() if k != "opc"}
    tuak.update(algorithm="tuak", k="ab" * 32, topc="cd" * 32, res_bits=128, mac_bits=64)
    yield b"\x00" + json.dumps(tuak).encode()
    engine = UsimEngine(parse_profile(DEFAULT_PROFILE))
    _run(engine)
    yield b"\x02" + json.dumps(engine.state.to_json(), separators=(",", ":")).encode()
    yield b"\x02" + b'{"version": 1, "iccid": "8988211000000000017", "sqn": 1e999}'
    yield b"\x02" + b"[" * 5000
