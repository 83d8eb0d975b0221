"""The lab's card as card tooling meets it, through pyscard → pcscd → vpcd → `trelab card serve`:
a USIM+ISIM card (EF.DIR, both applications selectable, their files), GET IDENTITY giving a SUCI
the home network opens, the ARA-M's rules, and `trelab card info` reading all of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aka.suci import Suci, deconceal
from firmware_stubs.usim.profile import DEFAULT_PROFILE
from lab.lab import LabStatus
from tests.helpers import REPO
from uicc import fs
from uicc.apdu import CommandApdu, build_select_aid, build_select_fid
from uicc.links.pcsc import PcscLink
from uicc.usim import UsimClient

pytestmark = pytest.mark.lab

C4 = {
    s["profile"]: s
    for s in json.loads((REPO / "aka" / "data" / "suci_33501_c4.json").read_text())["suci"]
}


def test_usim_and_isim_navigation_and_get_identity(lab: LabStatus, usim_reader: str) -> None:
    with PcscLink(usim_reader) as link:
        link.reset_on_close = True  # the PIN verified here does not outlive the test
        client = UsimClient(link)
        apps = client.applications()
        assert [(a.label, a.aid) for a in apps] == [("USIM", fs.USIM_AID), ("ISIM", fs.ISIM_AID)]
        client.verify_pin("1234")
        # ISIM by AID, then its files by FID: EF.IMPI, EF.IST
        assert client.send(build_select_aid(fs.ISIM_AID)).sw == 0x9000
        assert client.send(build_select_fid(0x6F02)).sw == 0x9000
        impi = client.send(CommandApdu(0x00, 0xB0, 0, 0, le=fs.EF_IMPI.size))
        assert fs.EF_IMPI.codec.decode(impi.data) == {
            "nai": "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"
        }
        # back to the USIM by AID, DF.5GS by path: the SUCI calculation info
        client.forget_selection()
        suci = client.get_identity()
        assert isinstance(suci, Suci) and suci.key_id == 2
        supi = deconceal(suci, bytes.fromhex(C4["B"]["hn_private"]))
        assert supi == f"imsi-{DEFAULT_PROFILE['imsi']}"
        # the ARA-M by its AID
        assert client.send(build_select_aid(fs.ARA_M_AID)).sw == 0x9000
        rules = client.send(CommandApdu(0x80, 0xCA, 0xFF, 0x40, le=256))
        assert (rules.sw, rules.data) == (0x9000, bytes.fromhex("ff4000"))


def test_card_info_reads_the_whole_card(lab: LabStatus, usim_reader: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "host.cli", "card", "info", "--reader", usim_reader, "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "TRELAB_CARD_PIN": "1234"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert [a["label"] for a in info["applications"]] == ["USIM", "ISIM"]
    files = {f["path"]: f for f in info["files"]}
    assert files["ADF.USIM/EF.IMSI"]["value"] == DEFAULT_PROFILE["imsi"]
    assert {124, 125} <= set(files["ADF.USIM/EF.UST"]["value"])
    assert files["ADF.USIM/DF.5GS/EF.5GAUTHKEYS"]["status"] == "withheld"
    assert files["ADF.ISIM/EF.IST"]["value"] == [1]
    assert info["suci"]["calculated_by"] == "usim"
    supi = deconceal(Suci.parse(info["suci"]["suci"]), bytes.fromhex(C4["B"]["hn_private"]))
    assert supi == f"imsi-{DEFAULT_PROFILE['imsi']}"
    assert info["access_rules"] == {"ara_m": True, "rules": []}
    assert not any(f["status"] == "undecodable" for f in info["files"])
    text = subprocess.run(
        [sys.executable, "-m", "host.cli", "card", "info", "--reader", usim_reader],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "TRELAB_CARD_PIN": "1234"},
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "(by the USIM)" in text.stdout and "ISIM a0000000871004" in text.stdout
    impi = next(line for line in text.stdout.splitlines() if line.startswith("ADF.ISIM/EF.IMPI"))
    assert "@ims.mnc001.mcc001.3gppnetwork.org" in impi


def test_ims_aka_with_card_aka_isim(lab: LabStatus, tmp_path: Path) -> None:
    """A card of its own on reader 1 (TS 35.208 Test Set 1): IMS AKA in its ISIM gives the
    set's RES, CK and IK; the same challenge again is a synchronisation failure."""
    from tests.card_process import READER_1, CardProcess
    from tests.usim_vectors import milenage_cards, unique_iccid

    v = milenage_cards()[0]
    card = CardProcess(tmp_path / "card", dict(DEFAULT_PROFILE) | {"iccid": unique_iccid()})
    card.start()
    try:
        argv = ["card", "aka", "--reader", READER_1, "--isim", "--rand", v.rand.hex(),
                "--autn", v.autn.hex(), "--json"]  # fmt: skip
        env = {**os.environ, "TRELAB_CARD_PIN": "1234"}
        runs = [
            subprocess.run(
                [sys.executable, "-m", "host.cli", *argv],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            for _ in range(2)
        ]
    finally:
        card.stop()
    first, again = (json.loads(r.stdout) for r in runs)
    assert runs[0].returncode == 0, runs[0].stderr
    assert (first["res"], first["ck"], first["ik"]) == (
        v.expected["res"], v.expected["ck"], v.expected["ik"],
    )  # fmt: skip
    assert "kc" not in first
    assert runs[1].returncode == 0 and again["result"] == "sync_failure"
