"""The host's USIM client and the file codecs against a hostile card (TS 102 221, TS 31.102):
a card in the middle answers each command genuinely, with its answer changed, or with bytes
of its own choosing; ``card info``, PIN status, both AUTHENTICATE contexts, IMS AKA, GET
IDENTITY (the SUCI) and the GSM class probe raise only typed errors. Every EF codec also
decodes raw contents without any other exception."""

from __future__ import annotations

from collections.abc import Iterator

from tests.fuzz.oracle import Reader, typed
from tests.fuzz.usim_common import MILENAGE, fresh_engine, genuine_autn
from uicc import fs
from uicc.links.inprocess import InProcessLink
from uicc.usim import UsimClient

EFS = sorted(fs.all_efs(), key=lambda ef: ef.name)
RAND = bytes(range(16))
AUTN = genuine_autn(MILENAGE, RAND, bytes.fromhex("000000000041"))


class HostileCard:
    """The genuine card, with each answer replaced or changed as the fuzzer says."""

    def __init__(self, reader: Reader) -> None:
        self._card = fresh_engine(MILENAGE)
        self._reader = reader

    def power_on(self) -> bytes:
        return self._card.power_on()

    def process(self, apdu: bytes) -> bytes:
        genuine = self._card.process(apdu)
        how = self._reader.pick(4) if self._reader.remaining() else 0
        if how == 0:
            return genuine
        if how == 1:  # a few bytes changed
            out = bytearray(genuine)
            for _ in range(1 + self._reader.pick(3)):
                out[self._reader.byte() % len(out)] ^= self._reader.byte()
            return bytes(out)
        if how == 2:  # cut short, or the status word only
            return genuine[: self._reader.byte() % (len(genuine) + 1)]
        return self._reader.take(self._reader.byte() % 64)


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    if reader.flag():  # one EF's raw content
        ef = EFS[reader.pick(len(EFS))]
        typed(ef.codec.decode, reader.rest())
        return
    operation = reader.pick(8)
    client = UsimClient(InProcessLink(HostileCard(reader)))
    if operation == 0:
        typed(client.info)
    elif operation == 7:  # the GSM SIM class: SELECT MF and DF.GSM with CLA A0
        typed(client.probe_gsm)
    elif operation == 1:
        typed(client.applications)
    else:  # PIN1 first, as a terminal does
        typed(client.verify_pin, "1234")
        if operation == 2:
            typed(client.read_imsi)
        elif operation == 3:
            typed(client.authenticate, RAND, AUTN)
        elif operation == 4:
            typed(client.authenticate_gsm, RAND)
        elif operation == 5:  # the SUCI the card computes (TS 31.102 §7.5)
            typed(client.get_identity)
        else:  # IMS AKA with the ISIM (TS 31.103 §7.1.2)
            typed(client.authenticate_ims, RAND, AUTN)


def starting_inputs() -> Iterator[bytes]:
    for operation in range(8):  # every answer genuine, then one changed, then one replaced
        yield bytes([0, operation])
        yield bytes([0, operation]) + b"\x00" * 6 + b"\x01\x00\x05\x01"
        yield bytes([0, operation]) + b"\x00" * 8 + b"\x03\x04\x90\x00\x00\x00"
    for index, ef in enumerate(EFS):
        content = b"\xff" * 4
        if isinstance(ef, fs.TransparentEF):
            content = ef.initial() if callable(getattr(ef, "initial", None)) else content
        yield bytes([1, index]) + bytes(content)
    yield bytes([1, EFS.index(fs.EF_SPN)])  # empty EF.SPN
    yield bytes([1, EFS.index(fs.EF_PL)]) + "é".encode("latin-1") + b"n"
