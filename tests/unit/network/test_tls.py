"""TLS of the operator service: the CA and server certificate init-config makes, the pin in
device-trust.json, the device's transport trusting only that CA, plain HTTP refused off
loopback (client and server), and a served round trip over TLS (the built-in server in this
process; gunicorn's in tests/integration/test_network_serve.py)."""

from __future__ import annotations

import ipaddress
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from host.agent import parse_device_trust
from host.cli import main
from network.config import init_config, load_config
from network.server import NetworkApp, running_server
from network.store import Store
from network.tls import issue_tls, server_context
from protocol.client import HttpTransport, is_loopback
from protocol.errors import BadConfig, BadInput, RemoteProtocolError, ServerNotTrusted

from .conftest import make_ca


@pytest.fixture
def ca_bundle(tmp_path: Path) -> Path:
    cert, _ = make_ca()
    bundle = tmp_path / "manufacturer.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return bundle


def test_issue_tls_makes_a_ca_and_a_server_certificate_for_the_names(tmp_path: Path) -> None:
    files = issue_tls(tmp_path / "tls", ("localhost", "127.0.0.1", "op.example"))
    for private in (files.key, files.ca_key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    server = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    assert server.issuer == ca.subject
    server.verify_directly_issued_by(ca)  # raises if the signature does not verify
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "op.example"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    with pytest.raises(BadConfig, match="bad name"):
        issue_tls(tmp_path / "t2", ("bad name",))


def test_init_config_pins_the_tls_ca_in_device_trust(tmp_path: Path, ca_bundle: Path) -> None:
    path = init_config(tmp_path / "net", ca_bundle=ca_bundle)
    config = load_config(path)
    assert config.tls_certificate is not None and config.tls_certificate.is_file()
    trust_doc = json.loads((path.parent / "device-trust.json").read_text())
    assert "PRIVATE" not in json.dumps(trust_doc)
    trust = parse_device_trust(trust_doc)
    assert trust.tls_ca == (path.parent / "tls" / "ca.pem").read_text()
    with pytest.raises(BadInput, match="tls_ca"):
        parse_device_trust({**trust_doc, "tls_ca": "not a certificate"})
    doc = json.loads(path.read_text())
    doc["tls"]["key"] = "tls/missing.pem"
    path.write_text(json.dumps(doc))
    with pytest.raises(BadConfig, match=r"tls\.key"):
        load_config(path)


def test_loopback_and_the_transport_s_refusals() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.10") and is_loopback("::1")
    assert is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("192.0.2.1") and not is_loopback("example.org")
    HttpTransport("http://127.0.0.1:1")  # plain HTTP on loopback: allowed
    with pytest.raises(BadInput, match="plain HTTP only to a loopback"):
        HttpTransport("http://192.0.2.1:8731")
    with pytest.raises(BadInput, match="pinned TLS CA"):
        HttpTransport("https://192.0.2.1:8731")
    with pytest.raises(BadInput, match="not a PEM certificate"):
        HttpTransport("https://192.0.2.1:8731", tls_ca="garbage")


def test_served_over_tls_the_pinned_ca_is_accepted_another_refused(
    tmp_path: Path, ca_bundle: Path
) -> None:
    path = init_config(tmp_path / "net", ca_bundle=ca_bundle)
    other = init_config(tmp_path / "other", ca_bundle=ca_bundle)
    config = load_config(path)
    assert config.tls_certificate is not None and config.tls_key is not None
    pinned = json.loads((path.parent / "device-trust.json").read_text())["tls_ca"]
    stranger = json.loads((other.parent / "device-trust.json").read_text())["tls_ca"]
    store = Store(tmp_path / "n.db", config.store_key)
    try:
        app = NetworkApp(config, store)
        tls = server_context(config.tls_certificate, config.tls_key)
        with running_server(app, tls=tls) as url:
            assert url.startswith("https://127.0.0.1:")
            with pytest.raises(RemoteProtocolError):  # the round trip: a 400 Error over TLS
                HttpTransport(url, tls_ca=pinned).post("drf/register", b"\xff\x00")
            with pytest.raises(ServerNotTrusted, match="not the pinned network's") as refused:
                HttpTransport(url, tls_ca=stranger).post("drf/register", b"\xff\x00")
            assert "\n" not in str(refused.value)
            localhost = url.replace("127.0.0.1", "localhost")  # also named in the certificate
            with pytest.raises(RemoteProtocolError):
                HttpTransport(localhost, tls_ca=pinned).post("drf/register", b"\xff\x00")
        assert app.counts == {400: 2}  # the refused handshake never reached the app
    finally:
        store.close()


def test_serve_refuses_plain_http_off_loopback_and_without_a_certificate(
    tmp_path: Path, ca_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = init_config(tmp_path / "net", ca_bundle=ca_bundle)
    base = ["network", "serve", "--config", str(path), "--db", str(tmp_path / "n.db")]
    assert main([*base, "--listen", "0.0.0.0:0", "--plain-http"]) == 2
    err = capsys.readouterr().err
    assert "--plain-http: only on a loopback address" in err and err.count("\n") == 1
    doc = json.loads(path.read_text())
    del doc["tls"]
    path.write_text(json.dumps(doc))
    assert main([*base, "--listen", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert "no TLS certificate" in err and err.count("\n") == 1
