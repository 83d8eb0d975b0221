"""The emulated USIM, stateful: a sequence of commands (raw bytes, or steered past the AID,
PIN, MAC and OTA checks) against a fresh Milenage or TUAK card. Every answer ends in a valid
status word, none is an internal error, SQN and OTA counters never go down."""

from __future__ import annotations

from collections.abc import Iterator

from tests.fuzz.oracle import Reader
from tests.fuzz.usim_common import FIDS, PROFILES, Watched
from uicc import fs
from uicc.fs import USIM_AID

MAX_COMMANDS = 24


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    card = Watched(PROFILES[reader.pick(len(PROFILES))])
    for _ in range(MAX_COMMANDS):
        if not reader.remaining():
            break
        card.send(card.command(reader))


def starting_inputs() -> Iterator[bytes]:
    # after the profile byte, each command starts with its kind (Watched.command): 1 header,
    # 2 SELECT USIM, 3 PIN1, 4 ADM1, 5 AUTHENTICATE (RAND, SQN, context), 6 GET RESPONSE,
    # 7 OTA (TAR, counter, counter mode, PoR mode, format, script), 8 reset, 9 SELECT by FID,
    # 10 SELECT ISIM / ARA-M, 11 GET IDENTITY, 12 GET DATA, 13 SELECT by path,
    # 14 MANAGE CHANNEL, 15 a GSM class command, 16 a command on a logical channel
    rand, sqn = bytes(range(16)), bytes.fromhex("000000000021")
    imsi = FIDS.index(fs.EF_IMSI.fid)
    read_binary = bytes([1, 0, 0, 0xB0, 0, 0, 0, 0, 9])  # kind 1: CLA 00, no data, Le 9
    for profile in (0, 1):
        yield bytes([profile, 2, 3, 5]) + rand + sqn + b"\x01" + b"\x06\x10"
        yield bytes([profile, 2, 3, 5]) + rand + sqn + b"\x00" + b"\x06\x0e"
        yield bytes([profile, 10, 0, 3, 5]) + rand + sqn + b"\x01" + b"\x06\x10"  # IMS AKA
        yield bytes([profile, 2, 3, 11, 1, 6, 0x38])  # GET IDENTITY (SUCI), GET RESPONSE
    yield bytes([0, 2, 3, 9, imsi]) + read_binary  # SELECT USIM, PIN, EF.IMSI, READ BINARY
    yield bytes([0, 10, 1, 12, 0, 12, 1, 12, 2])  # ARA-M: GET DATA FF40, DF20, FF50
    suci_info = FIDS.index(fs.EF_SUCI_CALC_INFO.fid)  # DF.5GS/EF.SUCI_Calc_Info of the USIM
    yield bytes([0, 2, 3, 13, 0, FIDS.index(0x5FC0), suci_info]) + read_binary
    telecom, arr = FIDS.index(0x7F10), FIDS.index(fs.EF_TELECOM_ARR.fid)
    yield bytes([0, 13, 1, telecom, arr, 1, 0, 0, 0xB2, 1, 4, 0, 0, 0x10])  # READ RECORD 1
    gsm = FIDS.index(0x7F20)  # DF.GSM
    # GSM class: SELECT DF.GSM, VERIFY CHV1, RUN GSM ALGORITHM, GET RESPONSE
    yield bytes([0, 15, 0, gsm, 15, 5, 15, 6]) + rand + bytes([15, 7, 12])
    # GSM class: SELECT DF.GSM, STATUS, VERIFY CHV1, SELECT EF.IMSI, READ BINARY
    yield bytes([0, 15, 0, gsm, 15, 1, 0x16, 15, 5, 15, 0, imsi, 15, 2, 0, 0, 9])
    # channel 1 opened by the card; SELECT USIM, PIN, AUTHENTICATE, GET RESPONSE on it; close
    yield (
        bytes([0, 14, 1, 0, 16, 2, 1, 16, 3, 1, 16, 5])
        + rand
        + sqn
        + bytes([1, 1, 16, 6, 0x10, 1, 14, 0, 1])
    )
    yield bytes([0, 14, 1, 5, 16, 2, 5, 16, 2, 19])  # channel 5; SELECT USIM on 5 and on 19
    yield (
        bytes([0, 7, 0, 1, 0, 0, 1, 1, 11]) + bytes.fromhex("00a40004023f00") + b"\x00\x00\x00\x00"
    )
    yield bytes([0, 7, 2, 1, 0, 0, 1, 1, 2]) + b"\x80\xd8"  # RAM script with a 2-byte C-APDU
    yield bytes([0, 4, 9, 1, 1, 0x00, 0xD6, 0x00, 0x00, 3, 1, 2, 3, 1])
    yield bytes([0, 8, 6, 0x10, 0, 0x00, 0xA4, 0x00, 0x04, 2, 0x3F, 0x00, 0])

    def header(
        cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
    ) -> bytes:
        # kind 1; the class byte is read before the pick (3: take that byte as it is)
        tail = b"\x01" if le is None else bytes([0, le])
        return bytes([1, cla, 3, ins, p1, p2, len(data)]) + data + tail

    pin1 = b"1234" + b"\xff" * 4
    # the GSM SIM class: DF.GSM, CHV1, RUN GSM ALGORITHM and its GET RESPONSE, SEEK in EF.DIR
    yield bytes([0]) + b"".join(
        (
            header(0xA0, 0xA4, 0, 0, b"\x7f\x20"),
            header(0xA0, 0xC0, 0, 0, le=0x16),
            header(0xA0, 0x20, 0, 1, pin1),
            header(0xA0, 0x88, 0, 0, rand),
            header(0xA0, 0xC0, 0, 0, le=0x0C),
        )
    )
    yield bytes([1]) + header(0xA0, 0xA4, 0, 0, b"\x2f\x00") + header(0xA0, 0xA2, 0, 0x10, b"a")
    # logical channels: open one, the USIM on it, STATUS there, close it
    yield bytes([0]) + b"".join(
        (
            header(0x00, 0x70, 0, 0, le=1),
            header(0x01, 0xA4, 4, 4, USIM_AID),
            header(0x81, 0xF2, 0, 0, le=0),
            header(0x00, 0x70, 0x80, 1, le=0),
        )
    )
    # PIN2 (key reference 81): verify it, update EF.FDN under it, read the record back, then
    # SEARCH RECORD there (simple forward from record 1, and enhanced: forward, offset 0)
    pin2, puk2 = b"5678" + b"\xff" * 4, b"23456789"
    fdn_record = b"Home".ljust(14, b"\xff") + bytes.fromhex("058121436587ffffffffffffffff")
    yield bytes([0, 2, 3, 9, FIDS.index(fs.EF_FDN.fid)]) + b"".join(
        (
            header(0x00, 0x20, 0, 0x81, pin2),
            header(0x00, 0xDC, 1, 4, fdn_record),
            header(0x00, 0xB2, 1, 4, le=28),
            header(0x00, 0xA2, 1, 4, b"Home", le=0),
            header(0x00, 0xA2, 0, 6, b"\x04\x00Home", le=0),
            header(0x00, 0xA2, 0, 5, b"\xff\xff", le=0),
        )
    )
    # PIN2 blocked by three wrong tries, unblocked with PUK2, changed, disabled
    wrong = header(0x00, 0x20, 0, 0x81, b"0000" + b"\xff" * 4)
    yield bytes([0, 2]) + b"".join(
        (
            wrong,
            wrong,
            wrong,
            header(0x00, 0x2C, 0, 0x81, puk2 + pin2),
            header(0x00, 0x24, 0, 0x81, pin2 + b"8765" + b"\xff" * 4),
            header(0x00, 0x26, 0, 0x81, b"8765" + b"\xff" * 4),
        )
    )

    def raw(apdu: bytes) -> bytes:  # kind 0: the command as it is (up to 48 bytes)
        return bytes([0, len(apdu)]) + apdu

    # extended length (ISO/IEC 7816-4 §5.1): READ BINARY with a 2-byte Le (9, and 0000 for
    # 65536), UPDATE BINARY with a 2-byte Lc under ADM1, SET DATA and RETRIEVE DATA
    imsi_file = bytes.fromhex("0849061010325476f8")
    yield bytes([0, 2, 3, 9, imsi]) + b"".join(
        (
            raw(bytes.fromhex("00b00000000009")),
            raw(bytes.fromhex("00b00000000000")),
            bytes([4]),
            raw(bytes.fromhex("00d60000000009") + imsi_file),
            raw(bytes.fromhex("00b0000009")),
        )
    )
    yield bytes([0, 3]) + b"".join(
        (
            header(0x00, 0xA4, 8, 0x0C, bytes.fromhex("7f105f3b4f47")),
            raw(bytes.fromhex("80db0080000005") + bytes.fromhex("8003010203")),
            raw(bytes.fromhex("80cb008000000180") + b"\x00\x00"),
        )
    )
    # ARA-M STORE DATA under ADM1 (GlobalPlatform SEAC v1.1 §3.5): store a rule for every
    # application of one device application (Command-Store-REF-AR-DO), read the rules and the
    # refresh tag, store it again (a conflict), move the refresh tag, delete by AID and all
    store_rule = (
        bytes.fromhex("f021e21fe1184f00c114") + bytes(range(20)) + bytes.fromhex("e303d00101")
    )
    store = [header(0x80, 0xE2, 0x90, 0, command) for command in (
        store_rule, bytes.fromhex("f200"), bytes.fromhex("f1024f00"), bytes.fromhex("f100")
    )]  # fmt: skip
    yield bytes([0, 4, 10, 1]) + store[0] + bytes([12, 0, 12, 1]) + store[0] + store[1]
    yield bytes([0, 4, 10, 1]) + store[0] + store[2] + store[3] + bytes([12, 0])
    # a BER-TLV EF (EF.MML under DF.TELECOM/DF.MULTIMEDIA): SET DATA, RETRIEVE DATA, tag list
    yield bytes([0, 3]) + b"".join(
        (
            header(0x00, 0xA4, 8, 0x0C, bytes.fromhex("7f105f3b4f47")),
            header(0x80, 0xDB, 0, 0x80, bytes.fromhex("8003010203")),
            header(0x80, 0xCB, 0, 0x80, b"\x80", le=0),
            header(0x80, 0xCB, 0, 0x80, b"\x5c", le=0),
        )
    )
    # PIN2 (key reference 81): VERIFY, then EF.FDN updated under it and SEARCH RECORD in it
    pin2, puk2 = b"5678" + b"\xff" * 4, b"23456789"
    fdn = FIDS.index(fs.EF_FDN.fid)
    yield bytes([0, 2, 3, 9, fdn]) + b"".join(
        (
            header(0x00, 0x20, 0, 0x81, pin2),
            header(0x00, 0xDC, 1, 4, bytes.fromhex("486f6d65") + b"\xff" * 10 + bytes(14)),
            header(0x00, 0xA2, 1, 4, b"\x00\x00"),  # simple search forward
            header(0x00, 0xA2, 0, 6, b"\x06\x00\xff"),  # enhanced: from the next record
            header(0x00, 0x2C, 0, 0x81, puk2 + pin2),  # UNBLOCK PIN2 with PUK2
        )
    )
    # the GSM class's CHV2: VERIFY, CHANGE, UNBLOCK (P2 02)
    yield bytes([0]) + b"".join(
        (
            header(0xA0, 0x20, 0, 2, pin2),
            header(0xA0, 0x24, 0, 2, pin2 + pin2),
            header(0xA0, 0x2C, 0, 2, puk2 + pin2),
        )
    )
    # the ARA-M: ADM1, STORE DATA of an allow-all rule, GET DATA FF40 and DF20, delete all
    # F0 { E2 { E1 { 4F 00, C1 00 }, E3 { D0 01 01, D1 01 01, DB 08 … } } }
    rule = bytes.fromhex("f01ae218e1044f00c100e310d00101d10101db080000000000000004")
    yield bytes([0, 10, 1, 4]) + b"".join(
        (
            header(0x80, 0xE2, 0x90, 0x00, rule),
            bytes([12, 0]),  # GET DATA FF40
            bytes([12, 1]),  # GET DATA DF20
            header(0x80, 0xE2, 0x90, 0x00, b"\xf1\x00"),
            header(0x80, 0xCA, 0xFF, 0x60, le=0),  # Get-Next with nothing left
        )
    )
    # extended length: READ BINARY of EF.IMSI with Le 0000, SET DATA of EF.MML with Lc 0003
    yield (
        bytes([0, 2, 3, 9, imsi, 0, 7])
        + bytes.fromhex("00b00000000000")
        + b"".join(
            (
                header(0x00, 0xA4, 8, 0x0C, bytes.fromhex("7f105f3b4f47")),
                bytes([0, 10]) + bytes.fromhex("80db008000000380" + "01aa"),
            )
        )
    )
    # INCREASE of EF.ACM (advice of charge) after PIN1, in both classes
    acm = FIDS.index(fs.EF_ACM.fid)
    yield bytes([0, 2, 3, 9, acm]) + header(0x80, 0x32, 0, 0, b"\x00\x00\x64") + bytes([15, 6, 6])
