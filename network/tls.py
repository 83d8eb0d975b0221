"""Edge: files. TLS for the operator's HTTP service: a CA of the operator's own and the server
certificate it issues (P-256, ECDSA-SHA256, made with ``cryptography``), and the server's
``ssl.SSLContext``.

The CA is the operator's, made by ``trelab network init-config`` beside the signing keys; the
device pins its certificate in ``device-trust.json`` (``tls_ca``) next to the PVA, DPF and SHO
keys, and accepts a server only if its certificate chains to that CA and names the host it
dialled. Why not the TPM manufacturer's CA (the one that signs EK certificates): the operator
trusts that CA to vouch for TPMs, not for itself — a server certificate from it would let
whoever holds the manufacturer key pose as the operator. Several app servers behind one name
share a certificate or get one each from the same CA; the device pins only the CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocol.errors import BadConfig
from trelab.atomic import atomic_write_bytes

__all__ = ["DEFAULT_NAMES", "TlsFiles", "issue_tls", "server_context"]

#: What a server certificate names unless told more: the loopback names a lab dials.
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
_DNS_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_CA_DAYS = 3650
_SERVER_DAYS = 825  # the longest server-certificate life common clients accept


@dataclass(frozen=True)
class TlsFiles:
    """Where init-config put them (``certificate`` is the server's, ``key`` its private key,
    ``ca`` the certificate devices pin; the CA's private key stays in ``ca_key``)."""

    certificate: Path
    key: Path
    ca: Path
    ca_key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue_tls(
    directory: Path, names: Sequence[str] = DEFAULT_NAMES, *, operator: str = "trelab network"
) -> TlsFiles:
    """Make a CA and a server certificate for ``names`` (DNS names or IP addresses) in
    ``directory`` (private keys 0600). Returns where they are.

    Raises:
        BadConfig: no name, or a name that is neither a DNS name nor an IP address.
    """
    if not names:
        raise BadConfig("tls: at least one server name is needed")
    for name in names:
        if not (_is_ip(name) or _DNS_NAME.fullmatch(name)):
            raise BadConfig(f"tls name {name!r}: expected a DNS name or an IP address")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{operator} TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        certificate=directory / "server.pem",
        key=directory / "server-key.pem",
        ca=directory / "ca.pem",
        ca_key=directory / "ca-key.pem",
    )
    atomic_write_bytes(files.ca_key, _pem_key(ca_key), mode=0o600)
    atomic_write_bytes(files.key, _pem_key(key), mode=0o600)
    atomic_write_bytes(files.ca, ca.public_bytes(serialization.Encoding.PEM), mode=0o644)
    atomic_write_bytes(
        files.certificate, server.public_bytes(serialization.Encoding.PEM), mode=0o644
    )
    return files


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def server_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """The built-in server's TLS context (TLS 1.2 or newer).

    Raises:
        BadConfig: the certificate or key cannot be loaded, or they do not match.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise BadConfig(f"tls: cannot load {certificate} with {key}: {reason}") from None
    return context
