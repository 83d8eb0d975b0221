"""`trelab card` and `trelab modem` without hardware: the parser, input errors before any link is
opened, and `card personalise` (Alternative 2: profile → HSS record) on files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aka.hss import Hss
from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.personalise import hss_subscriber
from firmware_stubs.usim.profile import DEFAULT_PROFILE, load_profile
from host.cli import build_parser, main
from uicc.links.inprocess import InProcessLink
from uicc.usim import UsimClient


def test_parser_has_the_verbs() -> None:
    parser = build_parser()
    args = parser.parse_args(["card", "aka", "--reader", "0", "--rand", "00", "--autn", "00"])
    assert (args.reader, args.serial, args.protocol) == ("0", None, "auto")
    args = parser.parse_args(["card", "info", "--serial", "/dev/ttyUSB2", "--json"])
    assert (args.serial, args.baud, args.json) == ("/dev/ttyUSB2", 115200, True)
    args = parser.parse_args(["modem", "serve", "--profile", "p.json", "--pty"])
    assert args.pty and args.device is None
    for argv in (
        ["card", "serve", "--profile", "p"],
        ["card", "personalise", "--profile", "p", "--out-hss", "h"],
        ["card", "unblock", "--reader", "0"],
    ):
        assert callable(parser.parse_args(argv).func)


def test_reader_and_serial_are_exclusive_and_one_is_required(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["card", "info"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit):
        main(["card", "info", "--reader", "0", "--serial", "/dev/x"])
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rand", "zz", "--autn", "00" * 16], "--rand: not hex"),
        (["--rand", "00" * 16, "--autn", "00" * 15], "--autn: 15 bytes"),
        (["--rand", "00" * 16], "--autn is required"),
        (["--rand", "00" * 16, "--autn", "00" * 16, "--gsm"], "GSM context takes RAND only"),
        (["--rand", "00" * 16, "--gsm", "--isim"], "IMS AKA has no GSM context"),
    ],
)
def test_bad_aka_input_is_exit_2_before_any_link(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # --reader names a reader that cannot exist: reaching PC/SC would be exit 3, not 2.
    assert main(["card", "aka", "--reader", "no such reader", *args, "--json"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1
    assert json.loads(captured.out)["error"]["type"] == "BadInput"


def test_personalise_writes_the_hss_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "card.json"
    profile.write_text(json.dumps(dict(DEFAULT_PROFILE)))
    out = tmp_path / "hss.json"
    assert (
        main(["card", "personalise", "--profile", str(profile), "--out-hss", str(out), "--json"])
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown["imsi"] == DEFAULT_PROFILE["imsi"] and shown["hss_record"] == str(out)
    assert DEFAULT_PROFILE["k"] not in json.dumps(shown)  # K goes to the file, not the screen
    record = json.loads(out.read_text())
    assert record["k"] == DEFAULT_PROFILE["k"] and record["opc"] == DEFAULT_PROFILE["opc"]
    assert out.stat().st_mode & 0o777 == 0o600


def test_personalise_generate_makes_a_card_the_hss_can_authenticate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile, out = tmp_path / "new.json", tmp_path / "hss.json"
    argv = ["card", "personalise", "--profile", str(profile), "--out-hss", str(out), "--generate",
            "--imsi", "001019876543210", "--iccid", "8988211999999999990", "--json"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["generated"] is True
    assert profile.stat().st_mode & 0o777 == 0o600
    assert main(argv) == 2  # never overwrites a profile
    assert "never overwrites" in capsys.readouterr().err
    # The operator side, from the record alone, authenticates the personalised card.
    card = load_profile(profile)
    hss = Hss(os.urandom)
    hss.add(hss_subscriber(card))
    client = UsimClient(InProcessLink(UsimEngine(card)))
    client.verify_pin(card.pin1)
    vector = hss.generate_vectors(card.imsi)[0]
    assert client.authenticate(vector.rand, vector.autn).to_json()["res"] == vector.xres.hex()


def test_personalise_bad_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(DEFAULT_PROFILE) | {"surprise": 1}))
    assert (
        main(["card", "personalise", "--profile", str(bad), "--out-hss", str(tmp_path / "h")]) == 2
    )
    assert "unknown key 'surprise'" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()
