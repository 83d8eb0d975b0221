"""Card profiles: JSON and TOML, every key checked, secrets never shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.usim.profile import DEFAULT_PROFILE, CardProfile, load_profile, parse_profile
from trelab.errors import BadInput

from .test_engine_aka import MILENAGE, TUAK

SECRETS = ("k", "opc", "pin1", "puk1", "adm1")


def with_(**changes: Any) -> dict[str, Any]:
    data = dict(DEFAULT_PROFILE)
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return data


def test_default_profile_parses() -> None:
    profile = parse_profile(DEFAULT_PROFILE)
    assert profile.imsi == "001010123456789" and profile.algorithm == "milenage"
    assert profile.k.hex() == MILENAGE[0]["K"] and profile.opc is not None
    assert profile.opc.hex() == MILENAGE[0]["OPc"]
    assert profile.amf == b"\x80\x00" and profile.pin1 == "1234"
    assert len(profile.ota_keysets) == 1 and profile.ota_keysets[0].tar == bytes.fromhex("b00001")


def test_op_is_turned_into_opc() -> None:
    vector = MILENAGE[2]
    profile = parse_profile(with_(opc=None, op=vector["OP"], k=vector["K"]))
    assert profile.opc is not None and profile.opc.hex() == vector["OPc"]


def test_top_is_turned_into_topc() -> None:
    vector = TUAK[5]  # two Keccak iterations
    data = with_(opc=None, algorithm="tuak", k=vector["K"], top=vector["TOP"])
    data["iterations"] = vector["keccak_iterations"]
    profile = parse_profile(data)
    assert profile.topc is not None and profile.topc.hex() == vector["TOPc"]
    assert (profile.res_bits, profile.mac_bits, profile.ck_bits, profile.ik_bits) == (
        64,
        64,
        128,
        128,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (with_(colour="blue"), "unknown key 'colour'"),
        (with_(imsi=None), "missing key 'imsi'"),
        (with_(k=None), "missing key 'k'"),
        (with_(opc=None), "missing key 'opc' (or 'op')"),
        (with_(op="00" * 16), "give 'opc' or 'op', not both"),
        (with_(k="zz" * 16), "profile: k: not hex"),
        (with_(k="00" * 15), "profile: k: 15 bytes, expected 16"),
        (with_(opc="abc"), "profile: opc: odd number of hex digits"),
        (with_(amf="800"), "profile: amf"),
        (with_(sqn_ms="00"), "profile: sqn_ms: 1 bytes, expected 6"),
        (with_(algorithm="comp128"), "algorithm must be"),
        (with_(imsi="00101abc"), "imsi must be 6 to 15 digits"),
        (with_(iccid="123"), "iccid must be 18 to 20 digits"),
        (with_(pin1="12"), "pin1 must be 4 to 8 digits"),
        (with_(puk1="1234"), "puk1 must be 8 to 8 digits"),
        (with_(adm1="12"), "adm1: expected 4 to 8 digits"),
        (with_(k=123), "k must be a string"),
        (with_(res_bits=64), "key 'res_bits' is for TUAK profiles"),
        (with_(pin1_enabled="yes"), "pin1_enabled must be true or false"),
        (with_(mnc_length=4), "mnc_length must be one of 2, 3"),
        (with_(spn="Ünicode"), "profile: spn: SPN: letters"),
        (with_(spn="x" * 17), "spn must be a string of at most 16"),
        (with_(ota_keysets={}), "ota_keysets must be a list"),
        (
            with_(ota_keysets=[{"kic": "00" * 16, "kid": "00" * 16}]),
            "missing key ota_keysets[0].tar",
        ),
        (
            with_(ota_keysets=[{"kic": "00" * 16, "kid": "00" * 16, "tar": "b00001", "x": 1}]),
            "unknown key ota_keysets[0].x",
        ),
        (
            with_(ota_keysets=[{"kic": "00" * 15, "kid": "00" * 16, "tar": "b00001"}]),
            "ota_keysets[0].kic: 15 bytes",
        ),
        (
            with_(ota_keysets=[{"kic": "00" * 16, "kid": "00" * 16, "tar": "b00001", "kvn": 16}]),
            "kvn must be 1…15",
        ),
    ],
)
def test_profile_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_profile(data)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    for key in SECRETS:
        value = data.get(key)
        if isinstance(value, str) and len(value) >= 4 and key != "adm1":
            assert value not in text


def test_tuak_profile_errors() -> None:
    base = with_(opc=None, algorithm="tuak", topc="00" * 32)
    parse_profile(base)
    with pytest.raises(BadInput, match="key 'opc' is for Milenage profiles"):
        parse_profile({**base, "opc": "00" * 16})
    with pytest.raises(BadInput, match="res_bits must be one of"):
        parse_profile({**base, "res_bits": 48})
    with pytest.raises(BadInput, match="iterations must be"):
        parse_profile({**base, "iterations": 0})
    with pytest.raises(BadInput, match="missing key 'topc' \\(or 'top'\\)"):
        parse_profile(with_(opc=None, algorithm="tuak"))
    assert parse_profile({**base, "k": "00" * 32}).k == bytes(32)


def test_hmac_sha256_profile_errors() -> None:
    from firmware_stubs.usim.personalise import new_profile_data

    base = with_(opc="11" * 32, algorithm="hmac-sha256")
    assert parse_profile(base).res_bits == 64 and parse_profile(base).opc == bytes([0x11]) * 32
    with pytest.raises(BadInput, match="opc"):
        parse_profile({**base, "opc": "00" * 16})  # OPc is 32 bytes in this set
    with pytest.raises(BadInput, match="res_bits must be one of"):
        parse_profile({**base, "res_bits": 256})
    for tuak_only in ("topc", "iterations", "mac_bits"):
        with pytest.raises(BadInput, match=f"key '{tuak_only}' is for TUAK profiles"):
            parse_profile({**base, tuak_only: 1})
    assert parse_profile({**base, "k": "00" * 32}).k == bytes(32)
    generated = new_profile_data("001010000000077", "8988211000000000777", lambda n: b"\x07" * n,
                                 algorithm="hmac-sha256")  # fmt: skip
    assert parse_profile(generated).algorithm == "hmac-sha256" and len(generated["opc"]) == 64


def test_repr_and_str_hide_secrets() -> None:
    profile = parse_profile(DEFAULT_PROFILE)
    for text in (repr(profile), str(profile), repr(profile.ota_keysets)):
        for key in SECRETS:
            assert str(DEFAULT_PROFILE[key]) not in text.replace("001010123456789", "")
        assert DEFAULT_PROFILE["ota_keysets"][0]["kic"] not in text
        assert DEFAULT_PROFILE["ota_keysets"][0]["kid"] not in text
    assert "<hidden>" in repr(profile.make_algorithm()) or "hidden" in repr(
        profile.make_algorithm()
    )


def test_load_json_and_toml(tmp_path: Path) -> None:
    json_path = tmp_path / "card.json"
    json_path.write_text(json.dumps(dict(DEFAULT_PROFILE)))
    toml_path = tmp_path / "card.toml"
    lines = [
        f'{key} = "{value}"' for key, value in DEFAULT_PROFILE.items() if isinstance(value, str)
    ]
    keyset = DEFAULT_PROFILE["ota_keysets"][0]
    lines.append("[[ota_keysets]]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in keyset.items()]
    suci = DEFAULT_PROFILE["suci"]
    lines.append("[suci]")
    lines.append(f'routing_indicator = "{suci["routing_indicator"]}"')
    lines.append(f"schemes = {json.dumps(suci['schemes'])}")
    for key in suci["home_network_keys"]:
        lines.append("[[suci.home_network_keys]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in key.items()]
    toml_path.write_text("\n".join(lines) + "\n")
    from_json, from_toml = load_profile(json_path), load_profile(toml_path)
    assert isinstance(from_json, CardProfile)
    assert from_json == from_toml == parse_profile(DEFAULT_PROFILE)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot read"):
        load_profile(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"k": "465b5ce8b199b49faa5f0a2ee238a6bc",')
    with pytest.raises(BadInput, match="not JSON") as info:
        load_profile(bad)
    assert "465b5ce8" not in str(info.value)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('k = "465b5ce8b199b49faa5f0a2ee238a6bc"\nk = 1\n')
    with pytest.raises(BadInput, match="not TOML") as info:
        load_profile(bad_toml)
    assert "465b5ce8" not in str(info.value)
    array = tmp_path / "array.json"
    array.write_text("[]")
    with pytest.raises(BadInput, match="expected an object"):
        load_profile(array)
