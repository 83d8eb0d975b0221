"""``trelab aka 5g | eps | eap-aka-prime | suci | suci-deconceal``: exact JSON keys, the
standards' values where they publish them, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aka.kdf import Plmn, five_g_keys, kasme
from tests.helpers import milenage_sets
from tests.unit.cli.test_aka_cli import run

DATA = Path(__file__).resolve().parents[3] / "aka" / "data"
EAP = json.loads((DATA / "eap_aka_prime_rfc9048.json").read_text())["eap_aka_prime"]
SUCI = {s["profile"]: s for s in json.loads((DATA / "suci_33501_c4.json").read_text())["suci"]}
(SET19,) = [s for s in milenage_sets() if s["name"].endswith("Test Set 19")]
SNN = "5G:mnc093.mcc208.3gppnetwork.org"
h = bytes.fromhex


def inputs(v: dict[str, Any] = SET19) -> list[str]:
    return [
        "--k",
        v["K"],
        "--op",
        v["OP"],
        "--rand",
        v["RAND"],
        "--sqn",
        v["SQN"],
        "--amf",
        v["AMF"],
    ]


def ok(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = run([*argv, "--json"], capsys)
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_eap_aka_prime_gives_rfc_9048_case_1(capsys: pytest.CaptureFixture[str]) -> None:
    case = EAP[0]
    argv = ["aka", "eap-aka-prime", *inputs(), "--network-name", "WLAN"]
    data = ok([*argv, "--identity", case["identity"]], capsys)
    assert list(data) == [
        "res",
        "ck",
        "ik",
        "ak",
        "autn",
        "ck_prime",
        "ik_prime",
        "k_encr",
        "k_aut",
        "k_re",
        "msk",
        "emsk",
    ]
    assert (data["ck_prime"], data["ik_prime"]) == (case["CK'"], case["IK'"])
    assert (data["k_encr"], data["k_aut"], data["k_re"]) == (
        case["K_encr"],
        case["K_aut"],
        case["K_re"],
    )
    assert (data["msk"], data["emsk"]) == (case["MSK"], case["EMSK"])
    assert data["autn"] == case["AUTN"]
    assert list(ok(argv, capsys)) == ["res", "ck", "ik", "ak", "autn", "ck_prime", "ik_prime"]


def test_eap_aka_prime_hrpd(capsys: pytest.CaptureFixture[str]) -> None:
    data = ok(["aka", "eap-aka-prime", *inputs(), "--network-name", "HRPD"], capsys)
    assert (data["ck_prime"], data["ik_prime"]) == (EAP[1]["CK'"], EAP[1]["IK'"])


def test_5g_keys(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["aka", "5g", *inputs(), "--snn", SNN]
    data = ok(base, capsys)
    assert list(data) == [
        "res",
        "ck",
        "ik",
        "ak",
        "autn",
        "res_star",
        "hxres_star",
        "kausf",
        "kseaf",
    ]
    assert (data["res"], data["ck"], data["ik"]) == (
        SET19["f2_res"],
        SET19["f3_ck"],
        SET19["f4_ik"],
    )
    full = ok([*base, "--supi", "imsi-208930000000001", "--abba", "0000"], capsys)
    assert list(full)[-1] == "kamf"
    keys = five_g_keys(
        h(SET19["f3_ck"]),
        h(SET19["f4_ik"]),
        h(SET19["f2_res"]),
        h(SET19["RAND"]),
        h(SET19["derived"]["AUTN"])[:6],
        SNN,
        supi="imsi-208930000000001",
    )
    assert keys.kamf is not None and full["kamf"] == keys.kamf.hex()
    assert (full["res_star"], full["kseaf"]) == (keys.res_star.hex(), keys.kseaf.hex())
    assert {k: full[k] for k in data} == data


def test_eps_kasme(capsys: pytest.CaptureFixture[str]) -> None:
    data = ok(["aka", "eps", *inputs(), "--plmn", "20893"], capsys)
    assert list(data) == ["res", "ck", "ik", "ak", "autn", "kasme"]
    expected = kasme(
        h(SET19["f3_ck"]), h(SET19["f4_ik"]), Plmn("208", "93"), h(SET19["derived"]["AUTN"])[:6]
    )
    assert data["kasme"] == expected.hex()


@pytest.mark.parametrize("profile", ["A", "B"])
def test_suci_gives_annex_c4(profile: str, capsys: pytest.CaptureFixture[str]) -> None:
    v = SUCI[profile]
    data = ok(
        [
            "aka",
            "suci",
            "--profile",
            profile,
            "--supi",
            v["supi"],
            "--hn-pub",
            v["hn_public"],
            "--hn-key-id",
            "27",
            "--mnc-length",
            "3",
            "--routing-indicator",
            "678",
            "--eph-priv",
            v["eph_private"],
        ],
        capsys,
    )
    assert list(data) == ["suci", "scheme_output"]
    assert data["scheme_output"] == v["scheme_output"]
    scheme = {"A": 1, "B": 2}[profile]
    assert data["suci"] == f"suci-0-274-012-678-{scheme}-27-{v['scheme_output']}"
    back = ok(
        ["aka", "suci-deconceal", "--hn-priv", v["hn_private"], "--suci", data["suci"]], capsys
    )
    assert back == {"supi": v["supi"]}


def test_suci_null_and_fresh_ephemeral(capsys: pytest.CaptureFixture[str]) -> None:
    null = ok(
        ["aka", "suci", "--profile", "null", "--supi", "imsi-274012001002086", "--mnc-length", "3"],
        capsys,
    )
    assert null == {"suci": "suci-0-274-012-0-0-0-001002086", "scheme_output": "00012080f6"}
    v = SUCI["A"]
    argv = ["aka", "suci", "--profile", "A", "--supi", v["supi"], "--hn-pub", v["hn_public"]]
    one, two = ok(argv, capsys), ok(argv, capsys)
    assert one["suci"] != two["suci"]  # a fresh ephemeral key each time
    for item in (one, two):
        back = ok(
            ["aka", "suci-deconceal", "--hn-priv", v["hn_private"], "--suci", item["suci"]], capsys
        )
        assert back == {"supi": v["supi"]}


@pytest.mark.parametrize(
    ("argv", "needle", "code"),
    [
        (["aka", "5g", *inputs(), "--snn", SNN, "--abba", "0000"], "--abba", 2),
        (["aka", "5g", *inputs(), "--snn", SNN, "--supi", "imsi-12x"], "SUPI", 2),
        (["aka", "eps", *inputs(), "--plmn", "2089"], "PLMN", 2),
        (["aka", "eps", *inputs(), "--plmn", "2０893"], "PLMN", 2),
        (["aka", "eap-aka-prime", *inputs(), "--network-name", ""], "network name", 2),
        (["aka", "suci", "--profile", "A", "--supi", "imsi-001010123456789"], "--hn-pub", 2),
        (
            [
                "aka",
                "suci",
                "--profile",
                "A",
                "--supi",
                "imsi-001010123456789",
                "--hn-pub",
                "00" * 31,
            ],
            "--hn-pub",
            2,
        ),
        (
            [
                "aka",
                "suci",
                "--profile",
                "null",
                "--supi",
                "imsi-001010123456789",
                "--hn-key-id",
                "²",
            ],
            "--hn-key-id",
            2,
        ),
        (
            [
                "aka",
                "suci",
                "--profile",
                "null",
                "--supi",
                "imsi-00101",
                "--routing-indicator",
                "12345",
            ],
            "SUPI",
            2,
        ),
        (["aka", "suci", "--profile", "C", "--supi", "imsi-001010123456789"], "--profile", 2),
        (["aka", "suci-deconceal", "--suci", "suci-0-001-01-0-1-1-00"], "SUCI", 2),
        (
            [
                "aka",
                "suci-deconceal",
                "--hn-priv",
                SUCI["A"]["hn_private"],
                "--suci",
                "suci-0-274-012-678-1-27-" + SUCI["A"]["scheme_output"][:-2] + "00",
            ],
            "MAC tag",
            1,
        ),
    ],
)
def test_bad_input_one_line(
    argv: list[str], needle: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    got, _, err = run(argv, capsys)
    assert got == code
    assert err.count("\n") == 1 and err.startswith("trelab: error:") and needle in err
    assert SET19["K"] not in err
