"""lab.lab and its parts without processes: paths, argument checks, pcscd ownership policy,
EK chain verification on generated certificates, the CLI parser."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import NamedTuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from host.cli import lab_cmd
from lab import pcscd, swtpm
from lab.lab import CaStatus, Lab, LabStatus, SwtpmStatus
from trelab import proc
from trelab.errors import BadInput, CheckFailed, Unavailable

# ---- paths and arguments -------------------------------------------------------------------


def test_port_out_of_range_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"^port: "):
        Lab(tmp_path, port=80)
    with pytest.raises(BadInput):
        Lab(tmp_path, port=65535)  # no room for the control port


def _stopped(tmp_path: Path) -> LabStatus:
    registry = tmp_path / "registry"
    return LabStatus(
        lab_dir=tmp_path,
        swtpm=SwtpmStatus("stopped", None, None, None, tmp_path / "state", tmp_path / "log"),
        pcscd=pcscd.PcscdState("stopped", None, False, None, None, (), (), registry),
        ca=CaStatus(tmp_path / "b", tmp_path / "r", tmp_path / "i", {}, False),
    )


def test_tcti_of_a_stopped_lab_says_how_to_fix(tmp_path: Path) -> None:
    status = _stopped(tmp_path)
    assert not status.running
    with pytest.raises(Unavailable, match="lab up"):
        _ = status.tcti
    assert status.to_dict()["tcti"] is None
    assert swtpm.tcti(2321) == "swtpm:host=127.0.0.1,port=2321"


def test_der_length_trims_nv_padding() -> None:
    der = bytes.fromhex("3082000401020304")
    assert swtpm._der_length(der + b"\xff" * 10) == len(der)
    assert swtpm._der_length(bytes.fromhex("300100") + b"\0") == 3


def test_cli_parser_has_the_lab_verbs() -> None:
    parser = argparse.ArgumentParser(prog="trelab")
    nouns = parser.add_subparsers(dest="noun")
    lab_cmd.register(nouns)
    args = parser.parse_args(["lab", "up", "--lab-dir", "/x", "--port", "4000", "--json"])
    assert (args.verb, args.lab_dir, args.port, args.json) == ("up", Path("/x"), 4000, True)
    assert parser.parse_args(["lab", "down", "--dir", "/y"]).lab_dir == Path("/y")  # old spelling
    for verb in ("down", "status", "detect"):
        assert callable(parser.parse_args(["lab", verb]).func)


# ---- pcscd ownership policy (registry files real, processes faked) ---------------------------


@pytest.fixture
def fake_pcscd(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A pretend host: ``pid`` is the running pcscd (None: none), ``killed`` what we stopped."""
    world: dict[str, object] = {"pid": 4242, "killed": []}
    monkeypatch.setattr(pcscd, "running_pid", lambda: world["pid"])
    monkeypatch.setattr(proc, "matches", lambda pid, **_: pid == world["pid"])

    def terminate(pid: int, **_: object) -> None:
        killed = world["killed"]
        assert isinstance(killed, list)
        killed.append(pid)
        world["pid"] = None

    monkeypatch.setattr(proc, "terminate", terminate)
    return world


def _owned(registry: pcscd.PcscdRegistry, pid: int, by: str) -> None:
    registry.set_owner(pcscd.OwnerRecord(pid, 1, "log", by, "now"))


def test_last_lab_down_stops_trelab_pcscd(tmp_path: Path, fake_pcscd: dict[str, object]) -> None:
    registry = pcscd.PcscdRegistry(tmp_path / "reg")
    with registry.locked():
        _owned(registry, 4242, "/labs/a")
        registry.add_user("/labs/a")
        registry.add_user("/labs/b")
    up = {"/labs/a", "/labs/b"}
    first = pcscd.release(registry, "/labs/a", lambda d: d in up)
    up.discard("/labs/a")
    assert not first.stopped and "1 other lab" in first.reason
    assert fake_pcscd["killed"] == []
    last = pcscd.release(registry, "/labs/b", lambda d: d in up)  # b did not start it
    assert last.stopped and fake_pcscd["killed"] == [4242]
    assert registry.owner() is None and registry.users() == []


def test_foreign_pcscd_is_never_stopped(tmp_path: Path, fake_pcscd: dict[str, object]) -> None:
    registry = pcscd.PcscdRegistry(tmp_path / "reg")
    with registry.locked():
        registry.add_user("/labs/a")
    result = pcscd.release(registry, "/labs/a", lambda d: True)
    assert not result.stopped and "not started by trelab" in result.reason
    assert fake_pcscd["killed"] == []


def test_replaced_pcscd_is_not_ours(tmp_path: Path, fake_pcscd: dict[str, object]) -> None:
    registry = pcscd.PcscdRegistry(tmp_path / "reg")
    with registry.locked():
        _owned(registry, 1111, "/labs/a")  # ours died; 4242 is someone else's
        registry.add_user("/labs/a")
    assert pcscd.inspect(registry).owned is False
    result = pcscd.release(registry, "/labs/a", lambda d: True)
    assert not result.stopped and fake_pcscd["killed"] == []
    assert registry.owner() is None


def test_vanished_labs_are_pruned(tmp_path: Path, fake_pcscd: dict[str, object]) -> None:
    registry = pcscd.PcscdRegistry(tmp_path / "reg")
    with registry.locked():
        _owned(registry, 4242, "/labs/gone")
        registry.add_user("/labs/gone")  # deleted without `lab down`
        registry.add_user("/labs/a")
    result = pcscd.release(registry, "/labs/a", lambda d: d != "/labs/gone")
    assert result.stopped and registry.users() == []


def test_crashed_trelab_pcscd_shows_as_crashed(
    tmp_path: Path, fake_pcscd: dict[str, object]
) -> None:
    registry = pcscd.PcscdRegistry(tmp_path / "reg")
    with registry.locked():
        _owned(registry, 4242, "/labs/a")
    fake_pcscd["pid"] = None
    state = pcscd.inspect(registry)
    assert state.state == "crashed" and "gone" in state.note


# ---- EK chain verification ---------------------------------------------------------------------

_NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
_EK_EKU = x509.ObjectIdentifier("2.23.133.8.1")


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    eku: bool = True,
    days: int = 365,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer if issuer else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1))
        .not_valid_after(_NOW + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        if issuer:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
    else:
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage([_EK_EKU]), False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


class Chain(NamedTuple):
    keys: dict[str, ec.EllipticCurvePrivateKey]
    root: x509.Certificate
    issuer: x509.Certificate

    def ek(self, *, signer: str = "issuer", eku: bool = True, days: int = 365) -> x509.Certificate:
        signed_by = ("issuer", self.keys[signer])
        return _cert("ek", self.keys["ek"], signed_by, ca=False, eku=eku, days=days)


@pytest.fixture(scope="module")
def chain() -> Chain:
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("root", "issuer", "ek", "evil")}
    root = _cert("root", keys["root"], None, ca=True)
    issuer = _cert("issuer", keys["issuer"], ("root", keys["root"]), ca=True)
    return Chain(keys, root, issuer)


def test_good_ek_chain_verifies(chain: Chain) -> None:
    swtpm.verify_ek_chain(chain.ek(), chain.root, chain.issuer, now=_NOW)


def test_ek_from_another_ca_is_rejected(chain: Chain) -> None:
    forged = chain.ek(signer="evil")  # right issuer name, wrong key
    with pytest.raises(CheckFailed, match="does not chain"):
        swtpm.verify_ek_chain(forged, chain.root, chain.issuer, now=_NOW)


def test_expired_ek_is_rejected(chain: Chain) -> None:
    later = _NOW + datetime.timedelta(days=30)
    with pytest.raises(CheckFailed, match="does not chain"):
        swtpm.verify_ek_chain(chain.ek(days=2), chain.root, chain.issuer, now=later)


def test_ek_without_ek_usage_is_rejected(chain: Chain) -> None:
    plain = chain.ek(eku=False)
    with pytest.raises(CheckFailed, match="extended key usage"):
        swtpm.verify_ek_chain(plain, chain.root, chain.issuer, now=_NOW)
    swtpm.verify_ek_chain(plain, chain.root, chain.issuer, now=_NOW, ek=False, name="platform")
