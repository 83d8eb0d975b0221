"""The WSGI-like app (status codes, Error bodies, refusals audited) and the configuration
(init-config files and modes, one-line BadConfig, the CLI verb)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from host.cli import main
from network.config import NetworkConfig, init_config, load_config
from network.server import CBOR, NetworkApp, parse_listen
from network.store import Store
from protocol import messages as m
from protocol.errors import BadConfig

from .conftest import make_ca

HEADERS = {"Content-Type": CBOR}


def error_of(body: bytes) -> m.Error:
    msg = m.decode(body)
    assert isinstance(msg, m.Error)
    return msg


def test_status_codes_and_error_bodies(app: NetworkApp) -> None:
    ok = app.handle("GET", "/v1/health", {}, b"")
    assert ok.status == 200 and json.loads(ok.body) == {"status": "ok"}
    trust = json.loads(app.handle("GET", "/v1/trust", {}, b"").body)
    assert set(trust["shos"]) == {"sho-a", "sho-b"} and "PRIVATE" not in json.dumps(trust)
    assert app.handle("GET", "/v1/drf/register", {}, b"").status == 405
    assert (
        app.handle("POST", "/v1/drf/register", {"Content-Type": "application/json"}, b"{}").status
        == 415
    )
    big = app.handle("POST", "/v1/drf/register", HEADERS, b"\x00" * (app.config.max_body + 1))
    assert big.status == 413 and error_of(big.body).code == "too-large"
    bad = app.handle("POST", "/v1/drf/register", HEADERS, b"\xa1\x00")
    assert bad.status == 400 and error_of(bad.body).code == "protocol"
    grant = app.handle(
        "POST", "/v1/drf/register", {**HEADERS, "Authorization": "Bearer x"}, b"\x00"
    )
    assert grant.status == 400 and error_of(grant.body).code == "bad-grant"


def test_refusals_are_audited_and_change_nothing(app: NetworkApp) -> None:
    s = m.AttachRequest(
        session_id=os.urandom(32), transcript=m.INITIAL_TRANSCRIPT, imsi="001019999999999"
    )
    response = app.handle("POST", "/v1/sho/attach", HEADERS, m.encode(s))
    assert response.status == 403
    error = error_of(response.body)
    assert error.code == "unknown-subscriber" and error.session_id == s.session_id
    events = app.store.audit_events()
    assert [(e.event, e.detail["code"]) for e in events] == [("refused", "unknown-subscriber")]
    with app.store.transaction() as tx:
        assert tx.session(s.session_id) is None


def test_unknown_register_refusal_names_the_check(app: NetworkApp) -> None:
    ek, ak, nonce = b"\x30\x03\x02\x01\x01", b"\x00\x01x", os.urandom(16)
    reg = m.RegisterRequest(session_id=m.derive_session_id(ek, ak, nonce), transcript=m.INITIAL_TRANSCRIPT,
                            ek_cert=ek, ak_public=ak, device_nonce=nonce, sho="sho-z")  # fmt: skip
    assert (
        error_of(app.handle("POST", "/v1/drf/register", HEADERS, m.encode(reg)).body).code
        == "unknown-sho"
    )
    reg = m.RegisterRequest(session_id=m.derive_session_id(ek, ak, nonce), transcript=m.INITIAL_TRANSCRIPT,
                            ek_cert=ek, ak_public=ak, device_nonce=nonce, sho="sho-a")  # fmt: skip
    assert (
        error_of(app.handle("POST", "/v1/drf/register", HEADERS, m.encode(reg)).body).code
        == "bad-ek-cert"
    )


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:9") == ("::1", 9)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen("localhost:http")


# ---- configuration ----------------------------------------------------------------------------


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    cert, _ = make_ca()
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_init_config_writes_private_keys_and_loads_back(tmp_path: Path, ca_file: Path) -> None:
    path = init_config(
        tmp_path / "net",
        ca_bundle=ca_file,
        shos=("op-1", "op-2"),
        reference={"sha256": {0: bytes(32)}},
    )
    config = load_config(path)
    assert set(config.shos) == {"op-1", "op-2"} and config.reference == {"sha256": {0: bytes(32)}}
    for key in (tmp_path / "net" / "keys").iterdir():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    key_hex = (tmp_path / "net" / "keys" / "store.key").read_text().strip()
    assert key_hex not in repr(config) and "PRIVATE" not in repr(config)
    trust = json.loads((tmp_path / "net" / "device-trust.json").read_text())
    assert "BEGIN PUBLIC KEY" in trust["pva"] and "PRIVATE" not in json.dumps(trust)
    with pytest.raises(BadConfig, match="exists"):
        init_config(tmp_path / "net", ca_bundle=ca_file)


def _write(tmp_path: Path, doc: dict, name: str = "network.json") -> Path:
    path = tmp_path / "net" / name
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("store_key"), "store_key: missing"),
        (lambda d: d.update(extra=1), "unknown key 'extra'"),
        (lambda d: d["shos"]["sho-a"].update(plmn="1"), "shos.sho-a.plmn"),
        (lambda d: d["shos"]["sho-a"].update(key="keys/nope.pem"), "shos.sho-a.key"),
        (lambda d: d["validation"].update(pcr_selection="sha999:0"), "validation.pcr_selection"),
        (
            lambda d: d["validation"].update(reference={"sha256": {"0": "00"}}),
            "not a sha256 digest",
        ),
        (lambda d: d["pva"].update(verdict_lifetime=-5), "pva.verdict_lifetime"),
        (lambda d: d.update(shos={}), "at least one SHO"),
        (lambda d: d.update(trusted_cas=["missing.pem"]), "trusted_cas"),
    ],
)
def test_bad_config_is_one_line(
    tmp_path: Path, ca_file: Path, change: object, message: str
) -> None:
    path = init_config(tmp_path / "net", ca_bundle=ca_file)
    doc = json.loads(path.read_text())
    change(doc)  # type: ignore[operator]
    with pytest.raises(BadConfig, match=message) as caught:
        load_config(_write(tmp_path, doc))
    assert "\n" not in str(caught.value)


def test_config_key_must_be_p256_and_toml_is_accepted(tmp_path: Path, ca_file: Path) -> None:
    path = init_config(tmp_path / "net", ca_bundle=ca_file)
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "net" / "keys" / "dpf.pem").write_bytes(p384)
    with pytest.raises(BadConfig, match="P-256"):
        load_config(path)
    (tmp_path / "net" / "broken.toml").write_text("version = [")
    with pytest.raises(BadConfig, match="not TOML"):
        load_config(tmp_path / "net" / "broken.toml")


def test_cli_init_config_json(
    tmp_path: Path, ca_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "network",
            "init-config",
            "--config",
            str(tmp_path / "c"),
            "--ca",
            str(ca_file),
            "--sho",
            "op-x",
            "--json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["shos"] == ["op-x"] and Path(data["config"]).is_file()
    code = main(
        ["network", "init-config", "--dir", str(tmp_path / "c"), "--ca", str(ca_file), "--json"]
    )
    out = capsys.readouterr()
    assert code == 2 and json.loads(out.out)["error"]["type"] == "BadConfig"
    assert out.err.startswith("trelab: error:") and out.err.count("\n") == 1


def test_cli_audit_verifies_the_chain(
    tmp_path: Path, ca_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = init_config(tmp_path / "c", ca_bundle=ca_file)
    config: NetworkConfig = load_config(path)
    store = Store(tmp_path / "n.db", config.store_key)
    with store.transaction() as tx:
        tx.audit(1, "drf", "register", "dev", {})
    store.close()
    code = main(
        ["network", "audit", "--config", str(path), "--db", str(tmp_path / "n.db"), "--json"]
    )
    data = json.loads(capsys.readouterr().out)
    assert (
        code == 0
        and data["verified"]
        and data["entries"] == 1
        and data["last"][0]["event"] == "register"
    )


def _private_keys_in(folder: Path) -> list[bytes]:
    """The public points of every PEM private key under ``folder`` (whatever the file name)."""
    points = []
    for path in folder.rglob("*"):
        if path.is_file() and b"PRIVATE KEY" in path.read_bytes():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            points.append(
                key.public_key().public_bytes(
                    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
                )
                if isinstance(key, ec.EllipticCurvePrivateKey)
                else path.read_bytes()
            )
    return points


def test_two_deployments_each_hold_their_own_keys_and_pin_the_other(
    tmp_path: Path, ca_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`init-config --sho` per operator, then `add-peer` both ways: each configuration holds
    only its own private keys, and the other's SHO public key and TLS CA, pinned."""
    a, b = tmp_path / "sho-a", tmp_path / "sho-b"
    for folder, sho, plmn in ((a, "sho-a", "00101"), (b, "sho-b", "00102")):
        assert main(["network", "init-config", "--config", str(folder), "--ca", str(ca_file),
                     "--sho", sho, "--plmn", plmn, "--json"]) == 0  # fmt: skip
    capsys.readouterr()
    for here, there, name in ((a, b, "sho-b"), (b, a, "sho-a")):
        code = main(["network", "add-peer", "--config", str(here), "--trust",
                     str(there / "device-trust.json"), "--json"])  # fmt: skip
        out = capsys.readouterr()
        assert code == 0, out.err
        assert json.loads(out.out)["pinned"] == {name: {"tls_ca": True}}
    config_a, config_b = load_config(a / "network.json"), load_config(b / "network.json")
    assert set(config_a.shos) == {"sho-a"} and set(config_a.peers) == {"sho-b"}
    assert set(config_b.shos) == {"sho-b"} and set(config_b.peers) == {"sho-a"}
    assert config_b.shos["sho-b"].plmn == "00102"
    point = serialization.PublicFormat.UncompressedPoint
    x962 = serialization.Encoding.X962
    a_private = set(_private_keys_in(a))
    b_private = set(_private_keys_in(b))
    assert len(a_private) == len(b_private) == 5  # PVA, DPF, the SHO, TLS CA and server
    assert not a_private & b_private  # SHO-B's folder holds none of SHO-A's private keys
    assert config_b.peers["sho-a"].public_key.public_bytes(x962, point) in a_private
    assert config_b.transfer_key("sho-a") == config_a.shos["sho-a"].key.public_key
    assert config_a.transfer_key("sho-b") == config_b.shos["sho-b"].key.public_key
    assert config_b.transfer_key("sho-c") is None
    assert config_b.peers["sho-a"].tls_ca == config_a.tls_ca  # SHO-A's server CA, pinned
    assert "sho-a" not in json.loads((b / "device-trust.json").read_text())["shos"]
    assert str(a) not in (b / "network.json").read_text()  # nothing points into SHO-A's folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda trust: trust, "pinned already"),
        (lambda trust: {**trust, "shos": {"sho-b": trust["shos"]["sho-a"]}}, "this deployment"),
        (lambda trust: {**trust, "shos": {"sho-x": "-----BEGIN PRIVATE KEY-----"}}, "public key"),
        (lambda trust: {**trust, "tls_ca": "not pem"}, "tls_ca"),
        (lambda trust: {"pva": trust["pva"]}, "no shos"),
    ],
)
def test_add_peer_refusals_change_nothing(
    tmp_path: Path, ca_file: Path, change: object, message: str
) -> None:
    from network.config import add_peers

    a = init_config(tmp_path / "a", ca_bundle=ca_file, shos=("sho-a",))
    b = init_config(tmp_path / "b", ca_bundle=ca_file, shos=("sho-b",), plmns=("00102",))
    assert add_peers(b, a.parent / "device-trust.json") == ["sho-a"]
    before = b.read_text(), sorted(p.name for p in (b.parent / "peers").iterdir())
    trust = json.loads((a.parent / "device-trust.json").read_text())
    changed = tmp_path / "trust.json"
    changed.write_text(json.dumps(change(trust)))  # type: ignore[operator]
    with pytest.raises(BadConfig, match=message) as caught:
        add_peers(b, changed, force=message != "pinned already")
    assert "\n" not in str(caught.value)
    assert (b.read_text(), sorted(p.name for p in (b.parent / "peers").iterdir())) == before


def test_a_peer_pinned_by_a_private_key_file_is_refused(tmp_path: Path, ca_file: Path) -> None:
    a = init_config(tmp_path / "a", ca_bundle=ca_file, shos=("sho-a",))
    doc = json.loads(a.read_text())
    doc["peers"] = {"sho-b": {"key": "keys/dpf.pem"}}
    a.write_text(json.dumps(doc))
    with pytest.raises(BadConfig, match=r"peers\.sho-b\.key .*a private key"):
        load_config(a)
    trust = json.loads((a.parent / "device-trust.json").read_text())
    (a.parent / "pva.pub.pem").write_text(trust["pva"])
    doc["peers"] = {"sho-a": {"key": "pva.pub.pem"}}
    a.write_text(json.dumps(doc))
    with pytest.raises(BadConfig, match="peers: 'sho-a'"):
        load_config(a)
