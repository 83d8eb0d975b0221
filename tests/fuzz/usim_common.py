"""Shared by the USIM harnesses: profiles, valid-looking commands the fuzzer can steer past the
MAC and PIN checks (genuine AUTN, correctly keyed OTA packets, right PINs), and the invariants
of a card: every answer ends in a valid status word, no internal error (6F00), SQN and OTA
counters never go down."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aka.autn import build_autn
from firmware_stubs.usim import engine as engine_module
from firmware_stubs.usim.engine import UsimEngine, initial_state
from firmware_stubs.usim.profile import DEFAULT_PROFILE, CardProfile, parse_profile
from firmware_stubs.usim.state import CardState, CardStore
from tests.fuzz.oracle import Reader
from uicc import fs
from uicc.ota import (
    TAR_RAM_ISD,
    TAR_RFM_UICC,
    TAR_RFM_USIM,
    Keyset,
    Spi,
    build_command_packet,
    build_envelope_sms_pp,
    build_sms_deliver,
    encode_expanded,
)
from uicc.sw import is_valid_sw

MILENAGE = parse_profile(DEFAULT_PROFILE)
_TUAK: dict[str, Any] = {
    key: value for key, value in DEFAULT_PROFILE.items() if key not in ("opc", "op")
}
_TUAK.update(
    algorithm="tuak",
    k="abababababababababababababababababababababababababababababababab",
    topc="bd04d9530e87513c5d837ac2ad954623a8e2330c115305a73eb45d1f40cccbff",
    iterations=1,
    res_bits=256,
    mac_bits=128,
    ck_bits=256,
    ik_bits=256,
)
TUAK = parse_profile(_TUAK)
PROFILES = (MILENAGE, TUAK)
TARS = (TAR_RFM_USIM, TAR_RFM_UICC, TAR_RAM_ISD)
PIN1 = b"1234" + b"\xff" * 4
ADM1 = b"88888888"
USIM_AID = bytes.fromhex("a0000000871002")


_personalise = engine_module._initial_files


@functools.lru_cache(maxsize=16)
def _personalised(profile: CardProfile) -> Mapping[str, Any]:
    return MappingProxyType(_personalise(profile))


def _base_files_once(profile: CardProfile) -> dict[str, Any]:
    """The engine's file contents of a fresh card, computed once per profile (a pure function
    of the profile; the contents are immutable bytes and tuples, the dict is the caller's)."""
    return dict(_personalised(profile))


engine_module._initial_files = _base_files_once


@functools.lru_cache(maxsize=16)
def _fresh_state(profile: CardProfile) -> CardState:
    return initial_state(profile)


def fresh_engine(profile: CardProfile) -> UsimEngine:
    """A card fresh from personalisation, as ``UsimEngine(profile)`` makes it, without redoing
    the personalisation for every input: most of the per-input time of the card harnesses went
    into building the same files and state again (the state is frozen, so one is shared)."""
    store = CardStore(None)
    store.save(_fresh_state(profile))
    return UsimEngine(profile, store)


def keyset(profile: CardProfile) -> Keyset:
    first = profile.ota_keysets[0]
    return Keyset(first.kvn, first.kic, first.kid)


def genuine_autn(profile: CardProfile, rand: bytes, sqn: bytes) -> bytes:
    algorithm = profile.make_algorithm()
    mac = algorithm.f1(rand, sqn, profile.amf)
    return build_autn(sqn, algorithm.f2345(rand).ak, profile.amf, mac)


COUNTER_MODES = ("higher", "one-higher", "none", "available")
POR_MODES = ("required", "on-error", "none")


def ota_envelope(profile: CardProfile, reader: Reader) -> bytes:
    """The ENVELOPE (SMS-PP download) of a correctly keyed command packet with a fuzzed
    script, counter, TAR and SPI."""
    tar = TARS[reader.pick(len(TARS))]
    counter = reader.byte() % 48
    spi = Spi(
        counter=COUNTER_MODES[reader.pick(4)],  # type: ignore[arg-type]
        por=POR_MODES[reader.pick(3)],  # type: ignore[arg-type]
    )
    if reader.flag():
        script = encode_expanded(
            [reader.take(reader.byte() % 25) for _ in range(1 + reader.pick(3))]
        )
    else:
        script = reader.chunk(48)
    packet = build_command_packet(keyset(profile), tar=tar, counter=counter, data=script, spi=spi)
    return build_envelope_sms_pp(build_sms_deliver(packet))


def _df_fids() -> set[int]:
    found: set[int] = set()
    stack: list[fs.DF | fs.ADF] = [fs.MF, *fs.APPLICATIONS]
    while stack:
        node = stack.pop()
        for child in node.children:
            if isinstance(child, fs.DF):
                found.add(child.fid)
                stack.append(child)
    return found


_DF_FIDS = _df_fids()
#: every file identifier of the card's file system, and two it does not have
FIDS = tuple(sorted({0x3F00, 0x7FFF, 0x1234, 0xFFFF} | {ef.fid for ef in fs.all_efs()} | _DF_FIDS))
OTHER_AIDS = (fs.ISIM_AID, fs.ADF_ARA_M.aid, fs.ISIM_AID[:7], bytes.fromhex("a000000087100f"))


def _on_channel(cla: int, channel: int) -> int:
    """``cla`` (00 or 80) naming logical ``channel`` (TS 102 221 §10.1.1)."""
    if channel < 4:
        return cla | channel
    return (cla & 0x80) | 0x40 | (channel - 4)


class Watched:
    """An engine and the invariants checked after every command."""

    def __init__(self, profile: CardProfile, engine: UsimEngine | None = None) -> None:
        self.profile = profile
        self.engine = engine if engine is not None else fresh_engine(profile)
        self._seq = self.engine.state.sqn.seq_ms
        self._counters = dict(self.engine.state.ota.counters)

    def send(self, apdu: bytes) -> bytes:
        answer = self.engine.process(apdu)
        assert self.engine.last_error is None, f"internal error {self.engine.last_error}"
        assert len(answer) >= 2, "answer without a status word"
        sw = int.from_bytes(answer[-2:], "big")
        assert is_valid_sw(sw), f"invalid status word {sw:04X}"
        state = self.engine.state
        seq = state.sqn.seq_ms
        assert len(seq) == len(self._seq) and all(
            a >= b for a, b in zip(seq, self._seq, strict=True)
        ), "SQN rolled back"
        self._seq = seq
        for kvn, value in self._counters.items():
            assert state.ota.counters.get(kvn, value) >= value, "OTA counter rolled back"
        self._counters = dict(state.ota.counters)
        return answer

    def command(self, reader: Reader, depth: int = 0) -> bytes:
        """One command picked by the fuzzer: raw bytes, or one steered past a check."""
        kind = reader.pick(17)
        if kind == 14:  # MANAGE CHANNEL: open (the card picks, or the terminal) or close
            if reader.flag():  # P2 00: the card picks and returns the number (Le 1)
                channel = reader.byte() % 21
                return bytes([0x00, 0x70, 0x00, channel]) + (b"\x01" if channel == 0 else b"")
            return bytes([0x00, 0x70, 0x80, reader.byte() % 21, 0x00])
        if kind == 15:  # the GSM SIM class (TS 51.011 §9.2) on the same files and PINs
            return self._gsm_command(reader)
        if kind == 16 and depth == 0:  # any steered command, sent on a logical channel
            inner = bytearray(self.command(reader, depth + 1))
            if len(inner) >= 4 and inner[0] in (0x00, 0x80):
                inner[0] = _on_channel(inner[0], reader.byte() % 20)
            return bytes(inner)
        if kind == 0:
            return reader.take(reader.byte() % 49)
        if kind == 1:  # a well-formed header with fuzzed fields
            cla = (0x00, 0x80, 0xA0, reader.byte())[reader.pick(4)]
            ins, p1, p2 = reader.byte(), reader.byte(), reader.byte()
            data = reader.take(reader.byte() % 41)
            le = b"" if reader.flag() else bytes([reader.byte()])
            return bytes([cla, ins, p1, p2]) + (bytes([len(data)]) + data if data else b"") + le
        if kind == 2:
            return bytes([0x00, 0xA4, 0x04, 0x04, len(USIM_AID)]) + USIM_AID
        if kind == 3:
            return b"\x00\x20\x00\x01\x08" + PIN1
        if kind == 4:
            return b"\x00\x20\x00\x0a\x08" + ADM1
        if kind == 5:  # AUTHENTICATE with a genuine AUTN for a fuzzed SQN
            rand = reader.take(16).ljust(16, b"\0")
            sqn = reader.take(6).ljust(6, b"\0")
            autn = genuine_autn(self.profile, rand, sqn)
            context = 0x81 if reader.flag() else 0x80
            body = b"\x10" + rand + (bytes([len(autn)]) + autn if context == 0x81 else b"")
            return bytes([0x00, 0x88, 0x00, context, len(body)]) + body
        if kind == 6:  # GET RESPONSE
            return bytes([0x00, 0xC0, 0x00, 0x00, reader.byte()])
        if kind == 7:  # the ENVELOPE command APDU itself
            return ota_envelope(self.profile, reader)
        if kind == 8:
            self.engine.reset()
            return bytes([0x80, 0xF2, 0x00, 0x00, 0x00])
        if kind == 9:  # SELECT by FID: any file of the card (or one it does not have)
            fid = FIDS[reader.pick(len(FIDS))]
            return bytes([0x00, 0xA4, 0x00, 0x04, 0x02]) + fid.to_bytes(2, "big")
        if kind == 10:  # SELECT another application (ISIM, ARA-M, one the card lacks)
            aid = OTHER_AIDS[reader.pick(len(OTHER_AIDS))]
            return bytes([0x00, 0xA4, 0x04, 0x04, len(aid)]) + aid
        if kind == 11:  # GET IDENTITY, SUCI context (or another P2)
            p2 = 0x01 if reader.flag() else reader.byte()
            return bytes([0x80, 0x78, 0x00, p2, 0x00])
        if kind == 12:  # GET DATA of the access rules (ARA-M), or another tag
            which = reader.pick(4)
            tag = (
                (0xFF40, 0xDF20, 0xFF50)[which] if which < 3 else reader.byte() << 8 | reader.byte()
            )
            return bytes([0x80, 0xCA]) + tag.to_bytes(2, "big") + b"\x00"
        if kind >= 14:
            return reader.take(reader.byte() % 49)
        # SELECT by path (from the MF, or from the current DF): DF then EF, as a terminal
        # reaches DF.TELECOM's phone book or the USIM's DF.5GS
        p1 = 0x08 if reader.flag() else 0x09
        first, second = FIDS[reader.pick(len(FIDS))], FIDS[reader.pick(len(FIDS))]
        path = first.to_bytes(2, "big") + second.to_bytes(2, "big")
        return bytes([0x00, 0xA4, p1, 0x04, len(path)]) + path

    def _gsm_command(self, reader: Reader) -> bytes:
        """A GSM SIM command (CLA A0): SELECT by FID, STATUS, READ BINARY/RECORD, SEEK, VERIFY
        CHV1, RUN GSM ALGORITHM, GET RESPONSE, with fuzzed P1/P2/P3 where they matter."""
        which = reader.pick(8)
        if which == 0:
            fid = FIDS[reader.pick(len(FIDS))]
            return bytes([0xA0, 0xA4, 0x00, 0x00, 0x02]) + fid.to_bytes(2, "big")
        if which == 1:
            return bytes([0xA0, 0xF2, 0x00, 0x00, reader.byte()])
        if which == 2:
            return bytes([0xA0, 0xB0, reader.byte() % 4, reader.byte(), reader.byte()])
        if which == 3:
            record, mode = reader.byte() % 8, reader.pick(4)  # next, previous, absolute, other
            p2 = (2, 3, 4)[mode] if mode < 3 else reader.byte()
            return bytes([0xA0, 0xB2, record, p2, reader.byte()])
        if which == 4:  # SEEK: type/mode in P2, a pattern
            pattern = reader.take(1 + reader.byte() % 16)
            return bytes([0xA0, 0xA2, 0x00, reader.byte(), len(pattern)]) + pattern
        if which == 5:
            return b"\xa0\x20\x00\x01\x08" + PIN1
        if which == 6:  # RUN GSM ALGORITHM
            rand = reader.take(16).ljust(16, b"\0")
            return b"\xa0\x88\x00\x00\x10" + rand
        return bytes([0xA0, 0xC0, 0x00, 0x00, reader.byte()])
