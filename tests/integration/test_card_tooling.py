"""The emulated card as widely used card tooling sees it: cardpeek (a smart-card reader utility)
runs its own standard scripts through pcscd + vpcd against `trelab card serve` with the lab's
default profile: the GSM SIM script ("gsm (beta).lua": CLA A0, VERIFY CHV1, SELECT — 9Fxx and
GET RESPONSE over T=0, the response at once over T=1, which pcscd picks —, READ BINARY/RECORD
over MF, DF.TELECOM and DF.GSM per TS 51.011) and the ATR script. The ATR it received is
decoded by pcsc-tools' ATR_analysis.

The card is one of this test's own (reader 1, unique ICCID): the wrong-PIN run decrements a
counter no other test shares."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from firmware_stubs.usim.contents import initial_files
from firmware_stubs.usim.engine import ATR
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from lab.lab import LabStatus
from tests.card_process import READER_1, CardProcess
from tests.usim_vectors import unique_iccid
from uicc import fs

pytestmark = pytest.mark.lab

CARDPEEK_SCRIPTS = Path("/usr/share/cardpeek")
PIN1 = "1234"  # the default profile's PIN1
OUTPUT_LIMIT = 1 << 20  # cardpeek's console re-prompts forever on a closed stdin: never let it
TIMEOUT = 60.0

# Records the APDUs the tool sends and the status words it gets (card.send is what every
# command of cardpeek's apdu library goes through), answers the tool's prompts, saves its view.
DRIVER = """
local trace = io.open({trace}, "w")
local send = card.send
card.send = function(apdu)
  local sw, resp = send(apdu)
  trace:write(bytes.format(apdu, "%D"), " ", string.format("%04X", sw), " ",
              bytes.format(resp or bytes.new(8), "%D"), "\\n")
  trace:flush()
  return sw, resp
end
ui.readline = function(msg, len, default) return {pin} end
ui.question = function(msg, answers) log.print(log.ERROR, "QUESTION: " .. msg); return 1 end
dofile({script})
ui.save_view({view})
trace:close()
os.exit(0)
"""


def _cardpeek() -> str:
    found = shutil.which("cardpeek")
    if found is None or not (CARDPEEK_SCRIPTS / "gsm (beta).lua").is_file():
        pytest.fail(
            "cardpeek and cardpeek-data are needed (scripts/setup.sh installs them)", pytrace=False
        )
    return found


def _run(argv: list[str], home: Path, stdin: bytes) -> str:
    """Run a console tool with ``stdin``; its output is capped and the run timed out (both
    fail the test), since on a closed stdin cardpeek's console prompts without end."""
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        cwd=home, env=env,
    ) as process:  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        timer = threading.Timer(TIMEOUT, process.kill)
        timer.start()
        try:
            process.stdin.write(stdin)
            process.stdin.close()
            out = bytearray()
            while chunk := os.read(process.stdout.fileno(), 65536):
                out += chunk
                if len(out) > OUTPUT_LIMIT:
                    process.kill()
                    pytest.fail(f"{argv[0]} kept writing (prompting?): {bytes(out[-300:])!r}")
            process.wait()
        finally:
            timer.cancel()
    text = out.decode("utf-8", "replace")
    assert process.returncode == 0, text[-2000:]
    return text


@dataclass
class Exchange:
    apdu: bytes
    sw: int
    response: bytes


@dataclass
class Node:
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)

    def find(self, classname: str, ident: str) -> Node | None:
        return next(
            (c for c in self.children if c.attrs.get("classname") == classname
             and c.attrs.get("id") == ident),
            None,
        )  # fmt: skip

    def named(self, classname: str) -> list[Node]:
        return [c for c in self.children if c.attrs.get("classname") == classname]

    def value(self) -> bytes:
        """A node's ``val`` (cardpeek writes bytes as ``8:<hex>``)."""
        width, _, text = self.attrs["val"].partition(":")
        assert width == "8", self.attrs["val"]
        return bytes.fromhex(text)


def _node(element: ET.Element) -> Node:
    attrs = {a.get("name", ""): a.text or "" for a in element.findall("attr")}
    return Node(attrs, [_node(child) for child in element.findall("node")])


def _parse_view(path: Path) -> Node:
    # cardpeek's XML declaration says type= where XML says encoding=: parse the elements only
    text = path.read_text(encoding="utf-8")
    body = text[text.index("<cardpeek>") :]
    root = ET.fromstring(body)
    nodes = root.findall("node")
    assert len(nodes) == 1, body[:500]
    return _node(nodes[0])


@pytest.fixture
def cardpeek_home(tmp_path: Path) -> Path:
    """A HOME whose ~/.cardpeek exists: cardpeek's first run asks to create it (yes) and then
    to restart (ok), and only then runs the command."""
    cardpeek = _cardpeek()
    home = tmp_path / "home"
    home.mkdir()
    (home / ".cache").mkdir()
    # ATR_analysis looks cards up in this list and fetches it when missing or old: not here
    (home / ".cache" / "smartcard_list.txt").write_text("")
    _run([cardpeek, "-c", "-r", f"pcsc://{READER_1}", "-e", "os.exit(0)"], home, stdin=b"1\n1\n")
    assert (home / ".cardpeek" / "config.lua").is_file()
    return home


@pytest.fixture
def gsm_card(tmp_path: Path, lab: LabStatus) -> Iterator[CardProcess]:
    """A default-profile card with a unique ICCID on reader 1, stopped after the test."""
    card = CardProcess(tmp_path / "card", dict(DEFAULT_PROFILE) | {"iccid": unique_iccid()})
    try:
        yield card.start()
    finally:
        card.stop()


def _lua(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cardpeek_script(
    home: Path, script: str, pin: str, name: str
) -> tuple[str, list[Exchange], Node]:
    trace, view = home / f"{name}.trace", home / f"{name}.xml"
    driver = home / f"{name}.lua"
    driver.write_text(
        DRIVER.format(
            trace=_lua(str(trace)), pin=_lua(pin), script=_lua(str(CARDPEEK_SCRIPTS / script)),
            view=_lua(str(view)),
        )
    )  # fmt: skip
    log = _run(
        [_cardpeek(), "-c", "-r", f"pcsc://{READER_1}", "-e", f"dofile({_lua(str(driver))})"],
        home, stdin=b"",
    )  # fmt: skip
    exchanges = []
    for line in trace.read_text().splitlines():
        apdu, sw, response = [*line.split(" "), ""][:3]
        exchanges.append(Exchange(bytes.fromhex(apdu), int(sw, 16), bytes.fromhex(response)))
    return log, exchanges, _parse_view(view)


# access condition levels of TS 51.011 §9.3 (0 always, 1 CHV1, 2 CHV2, 4–E ADM, F never); cardpeek's
# own naming of them is checked no further than this (it calls F "ADM")
GSM_LEVELS = {
    fs.Access.ALW: range(0, 1),
    fs.Access.PIN1: range(1, 2),
    fs.Access.PIN2: range(2, 3),
    fs.Access.ADM1: range(4, 15),
    fs.Access.NEV: range(15, 16),
}

# The files of TS 51.011 §10.1–10.5 (and TS 102 221 §13 at the MF) among those the script asks
# for, as the specifications place them (written out, not read from the declarations).
# 7F10/6F53, which the script also asks for, is DF.GSM's EF.LOCIGPRS in TS 51.011.
SIM_FILES = {
    0x3F00: {0x2F00, 0x2F05, 0x2F06, 0x2FE2},
    0x7F10: {
        *(0x6F06, 0x6F3A, 0x6F3B, 0x6F3C, 0x6F3D, 0x6F40, 0x6F42, 0x6F43, 0x6F44, 0x6F47),
        *(0x6F49, 0x6F4A, 0x6F4B, 0x6F4C, 0x6F4D, 0x6F4E, 0x6F4F, 0x6F54, 0x6FE0, 0x6FE1),
        0x6FE5,
    },
    0x7F20: {
        *(0x6F05, 0x6F07, 0x6F20, 0x6F30, 0x6F31, 0x6F37, 0x6F38, 0x6F39, 0x6F3E, 0x6F3F),
        *(0x6F41, 0x6F45, 0x6F46, 0x6F74, 0x6F78, 0x6F7B, 0x6F7E, 0x6FAD, 0x6FAE),
    },
}

# the folders cardpeek's GSM script walks, by FID, as the card declares them
FOLDERS: dict[int, fs.DF] = {0x3F00: fs.MF, 0x7F10: fs.DF_TELECOM, 0x7F20: fs.DF_GSM}


def _selections(trace: list[Exchange]) -> list[tuple[int, int, Exchange | None]]:
    """(folder FID, FID, exchange carrying the SELECT response or None when not found) of each
    SELECT in the trace, the folder being the last MF/DF the tool selected. Over T=0 the
    response comes with 9Fxx and GET RESPONSE, over T=1 at once with 9000."""
    out: list[tuple[int, int, Exchange | None]] = []
    folder = 0x3F00
    for i, ex in enumerate(trace):
        if ex.apdu[:5] != bytes.fromhex("a0a4000002"):
            continue
        fid = int.from_bytes(ex.apdu[5:7], "big")
        answer: Exchange | None = ex
        if ex.sw >> 8 == 0x9F:
            answer = trace[i + 1]
            assert answer.apdu == bytes([0xA0, 0xC0, 0, 0, ex.sw & 0xFF]), answer
            assert len(answer.response) == ex.sw & 0xFF
        elif ex.sw == 0x9404:  # TS 51.011 §9.4.4: file ID not found
            answer = None
        assert answer is None or answer.sw == 0x9000, f"SELECT {fid:04X}: {ex.sw:04X}"
        if fid in FOLDERS and answer is not None:
            folder = fid
        out.append((0x3F00 if fid in FOLDERS else folder, fid, answer))
    return out


def _declared(folder: int, fid: int) -> fs.EF | fs.DF | None:
    """What the card declares at ``fid`` in the folder, as a SIM can see it (BER-TLV EFs and
    applications are UICC-only)."""
    if fid in FOLDERS:
        return FOLDERS[fid]
    child = next((c for c in FOLDERS[folder].children if c.fid == fid), None)
    return None if isinstance(child, fs.BerTlvEF) else child


def test_gsm_script_finds_the_sim_and_reads_every_file_it_declares(
    gsm_card: CardProcess, cardpeek_home: Path
) -> None:
    # a wrong CHV1: 98 04 (TS 51.011 §9.4.5), and the script stops there
    log, trace, _ = _cardpeek_script(cardpeek_home, "gsm (beta).lua", "9999", "wrong")
    assert trace[0].apdu == bytes.fromhex("a020000108") + b"9999" + b"\xff" * 4
    assert trace[0].sw == 0x9804 and len(trace) == 1
    assert "PIN Verification failed" in log

    log, trace, view = _cardpeek_script(cardpeek_home, "gsm (beta).lua", PIN1, "right")
    assert "does not seem to be a GSM SIM card" not in log
    assert all(ex.apdu[0] == 0xA0 for ex in trace)  # the GSM class throughout
    assert trace[0].apdu[:5] == bytes.fromhex("a020000108") and trace[0].sw == 0x9000
    selections = _selections(trace)
    # the MF answers with the SIM's 22-byte MF response (TS 51.011 §9.2.1, file type 01); CHV1
    # has its 3 tries again after the right PIN (status byte: b8 initialised, b4–b1 tries)
    folder, fid, mf = selections[0]
    assert fid == 0x3F00 and mf is not None and len(mf.response) == 22
    assert mf.response[6] == 0x01 and mf.response[18] == 0x83
    assert all(ex.sw == 0x9000 for ex in trace if ex.apdu[1] in (0xB0, 0xB2)), "a read failed"

    contents = initial_files(parse_profile(gsm_card.profile))
    card = view.named("folder")
    assert view.attrs["label"] == "GSM" and [c.attrs["id"] for c in card] == ["3F00"]
    folders = {0x3F00: card[0]}
    asked, found = 0, 0
    for folder, fid, answer in selections:
        declared = _declared(folder, fid)
        where = f"{folder:04X}/{fid:04X}"
        assert (answer is not None) == (declared is not None), f"{where}: declared {declared}"
        if fid in FOLDERS:
            if answer is not None and fid != 0x3F00:
                node = folders[0x3F00].find("folder", f"{fid:04X}")
                assert node is not None, where
                folders[fid] = node
            continue
        asked += 1
        if answer is None:
            continue
        found += 1
        assert isinstance(declared, fs.TransparentEF | fs.LinearFixedEF)
        node = folders[folder].find("file", f"{fid:04X}")
        assert node is not None, where
        # the access conditions in the response the script shows: READ, then UPDATE nibble
        (header,) = node.named("header")
        (conditions,) = (c for c in header.children if c.attrs["label"] == "Access conditions")
        levels = conditions.value()[0]
        assert levels >> 4 in GSM_LEVELS[declared.read], where
        assert levels & 0x0F in GSM_LEVELS[declared.update], where
        # and what it read is what the card holds
        content = contents[declared.name]
        if isinstance(declared, fs.LinearFixedEF):
            assert [r.value() for r in node.named("record")] == list(content), where
        else:
            (body,) = node.named("body")
            assert body.value() == content, where
    # every TS 51.011 file the card has in MF, DF.TELECOM and DF.GSM that the script asks for
    wanted = {
        (folder, fid) for folder, fid, _ in selections
        if fid not in FOLDERS and _declared(folder, fid) is not None
    }  # fmt: skip
    assert found == len(wanted) == sum(map(len, SIM_FILES.values())), (found, asked)
    assert wanted == {(folder, fid) for folder, fids in SIM_FILES.items() for fid in fids}

    # ICCID and IMSI as the script decodes them
    def alt(folder: int, fid: str) -> str:
        node = folders[folder].find("file", fid)
        assert node is not None
        (body,) = node.named("body")
        return body.attrs["alt"]

    assert alt(0x3F00, "2FE2") == "(89)" + gsm_card.iccid[2:]
    assert alt(0x7F20, "6F07") == DEFAULT_PROFILE["imsi"]


def test_atr_script_and_analysis(gsm_card: CardProcess, cardpeek_home: Path) -> None:
    log, trace, view = _cardpeek_script(cardpeek_home, "atr.lua", PIN1, "atr")
    assert trace == []  # reading the ATR sends nothing
    (atr_node,) = view.named("atr")
    atr = atr_node.value()
    assert atr == ATR
    assert "Connection successful, protocol is T=" in log
    analysis = shutil.which("ATR_analysis")
    if analysis is None:
        pytest.fail("ATR_analysis (pcsc-tools) is needed: scripts/setup.sh installs it")
    text = _run([analysis, atr.hex().upper()], cardpeek_home, stdin=b"")
    assert "Protocol T = 0" in text and "Protocol T = 1" in text, text
    assert f"TCK = {atr[-1]:02X} (correct checksum)" in text, text
    assert "Updating" not in text  # looked up offline
