"""``trelab aka …``: exact JSON keys, 3GPP values, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from host.cli import main
from tests.helpers import milenage_sets

SET1 = milenage_sets()[0]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def milenage_argv(v: dict[str, str], *, op: bool = True) -> list[str]:
    key = ["--op", v["OP"]] if op else ["--opc", v["OPc"]]
    return [
        "aka",
        "milenage",
        "--k",
        v["K"],
        *key,
        "--rand",
        v["RAND"],
        "--sqn",
        v["SQN"],
        "--amf",
        v["AMF"],
        "--json",
    ]


@pytest.mark.parametrize("op", [True, False])
@pytest.mark.parametrize("v", milenage_sets(), ids=lambda v: v["name"])
def test_milenage_json(v: dict[str, str], op: bool, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(milenage_argv(v, op=op), capsys)
    assert code == 0, err
    data = json.loads(out)
    assert list(data) == [
        "opc",
        "f1",
        "f1star",
        "f2",
        "f3",
        "f4",
        "f5",
        "f5star",
        "autn",
        "sres",
        "kc",
    ]
    assert data["opc"] == v["OPc"]
    assert (data["f1"], data["f1star"], data["f2"]) == (v["f1"], v["f1_star"], v["f2_res"])
    assert (data["f3"], data["f4"], data["f5"]) == (v["f3_ck"], v["f4_ik"], v["f5_ak"])
    assert data["f5star"] == v["f5_star_ak"]
    if "derived" in v:
        assert data["autn"] == v["derived"]["AUTN"]
        assert (data["sres"], data["kc"]) == (v["derived"]["sres_c2"], v["derived"]["kc_c3"])


def test_milenage_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    argv = milenage_argv(SET1)[:-1]
    code, out, _ = run(argv, capsys)
    assert code == 0 and f"f1      {SET1['f1']}" in out


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("--k", "abc"), "--k: odd number of hex digits"),
        (("--k", "zz" * 16), "--k: not hex"),
        (("--rand", "00" * 15), "--rand: 15 bytes, expected 16"),
        (("--sqn", "00" * 7), "--sqn: 7 bytes, expected 6"),
        (("--amf", "0"), "--amf: odd number"),
    ],
)
def test_malformed_hex_exits_2_with_one_line(
    change: tuple[str, str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = milenage_argv(SET1)
    argv[argv.index(change[0]) + 1] = change[1]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and needle in err and err.startswith("trelab: error:")
    assert json.loads(out)["error"]["type"] == "BadInput"
    assert SET1["K"] not in err + out or change[0] == "--k"


@pytest.mark.parametrize(
    "argv",
    [
        ["aka", "milenage", "--k", "00" * 16, "--rand", "00" * 16, "--sqn", "00" * 6],
        ["aka", "milenage", "--frobnicate"],
        [
            "aka",
            "milenage",
            "--k",
            "00",
            "--op",
            "00",
            "--opc",
            "00",
            "--rand",
            "0",
            "--sqn",
            "0",
            "--amf",
            "0",
        ],
        ["aka", "tuak", "--mac-bits", "65"],
        ["aka", "nonsense"],
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("trelab: error:")


def test_console_script_end_to_end() -> None:
    """The installed entry point, as a user runs it, with real exit codes."""
    ok = subprocess.run(
        [sys.executable, "-m", "host.cli", *milenage_argv(SET1)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["f1"] == SET1["f1"]
    bad = subprocess.run(
        [sys.executable, "-m", "host.cli", "aka", "milenage", "--k", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_bench_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["aka", "bench", "--subscribers", "50", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    for key in ("aka_ns_median", "av_per_s", "subscribers"):
        assert key in data
    assert data["subscribers"] == 50
    assert data["aka_ns_median"] > 0 and data["av_per_s"] > 0
    assert data["raw_aes_ns_median"] > 0


def test_bench_rejects_zero_subscribers(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["aka", "bench", "--subscribers", "0"], capsys)
    assert code == 2 and "--subscribers" in err
