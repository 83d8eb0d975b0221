"""Fixtures for the operator side without a TPM: a NetworkConfig built in memory (fresh P-256
keys, a throw-away CA), a real store on each engine (SQLite, PostgreSQL), the real Operator.
The TPM-format Trust is the real :class:`network.trust.TpmTrust` (tpm2-pytss marshaling, no TPM); flows that
need a TPM are in tests/integration/test_network_server.py."""

from __future__ import annotations

import datetime
import itertools
import os
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from network.config import NetworkConfig, ShoConfig
from network.roles import BuiltPackage, Operator, PackageInputs
from network.server import NetworkApp
from network.store import Store
from network.trust import TpmTrust
from protocol.messages import SigningKey


def make_ca(
    name: str = "Test Manufacturer CA",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_config(**overrides: Any) -> NetworkConfig:
    ca, _ = make_ca()
    shos = {
        name: ShoConfig(
            name=name, key=SigningKey(name, ec.generate_private_key(ec.SECP256R1())), plmn=plmn
        )
        for name, plmn in (("sho-a", "00101"), ("sho-b", "00102"))
    }
    fields: dict[str, Any] = {
        "trusted_cas": (ca,),
        "pva_key": SigningKey("pva", ec.generate_private_key(ec.SECP256R1())),
        "dpf_key": SigningKey("dpf", ec.generate_private_key(ec.SECP256R1())),
        "shos": shos,
        "store_key": os.urandom(32),
    }
    fields.update(overrides)
    return NetworkConfig(**fields)


class Clock:
    """An injectable clock: tests move time instead of sleeping."""

    def __init__(self, start: int = 1_800_000_000) -> None:
        self.now = start

    def __call__(self) -> float:
        return float(self.now)


def opaque_builder(inputs: PackageInputs) -> BuiltPackage:
    """The DPF treats the TPM package as opaque bytes; this stand-in lets unit tests check the
    DPF's own logic (verdict, sequence, manifest, signature). The real builder
    (network.trust.tpm_package_builder over tpm.package) runs in the integration tests."""
    body = f"package:{inputs.imsi}:{inputs.sequence}:{inputs.slot}".encode()
    return BuiltPackage(package=body, names={"k": b"\x00\x0b" + bytes(32)}, policy={"kind": "test"})


@pytest.fixture
def config() -> NetworkConfig:
    return make_config()


@pytest.fixture
def store(store_url: str, config: NetworkConfig) -> Iterator[Store]:
    """The real store, on each engine (SQLite file, PostgreSQL database)."""
    s = Store(store_url, config.store_key)
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def operator(config: NetworkConfig) -> Operator:
    return Operator(
        config, TpmTrust(config.trusted_cas), random_bytes=os.urandom, builder=opaque_builder
    )


@pytest.fixture
def app(config: NetworkConfig, store: Store, clock: Clock) -> NetworkApp:
    return NetworkApp(config, store, clock=clock, builder=opaque_builder)


@pytest.fixture
def worker_trust() -> type[TpmTrust] | None:
    """The trust class each of :func:`workers` uses (None: the app's default); a module that
    needs another overrides this fixture."""
    return None


@pytest.fixture
def workers(
    store_url: str, config: NetworkConfig, clock: Clock, worker_trust: type[TpmTrust] | None
) -> Iterator[list[NetworkApp]]:
    """Two operator workers, each with its own Store (its own connections) on one database."""
    with ExitStack() as stack:
        apps = []
        for _ in range(2):
            store = Store(store_url, config.store_key)
            stack.callback(store.close)
            trust = worker_trust(config.trusted_cas) if worker_trust is not None else None
            apps.append(NetworkApp(config, store, clock=clock, builder=opaque_builder, trust=trust))
        yield apps


_imsis = itertools.count(1)


def next_imsi(plmn: str = "00101") -> str:
    return plmn + str(next(_imsis)).zfill(10)
