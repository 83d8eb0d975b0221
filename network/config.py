"""Edge: files. The operator side's configuration: trusted manufacturer CAs, reference PCR
values, SHOs and their signing keys, the PVA and DPF keys, policies and the store key.

The file is JSON (or TOML by suffix); paths in it are relative to its folder. Keys are PEM
(PKCS#8, P-256) files of mode 0600 beside it, made by :func:`init_config`; the store key is 32
random bytes in hex. A config without ``trusted_cas`` trusts the bundle its reader names
(the CLI names the lab's manufacturer CA, what swtpm_localca signed the EK certificates with). Anything malformed is :class:`BadConfig` with one line naming the field.

``device-trust.json`` (written next to the config) holds the public keys a TRE pins: the PVA's,
the DPF's and each SHO's.

An operator that is its own deployment (Alternative 3a of TR 33.812: SHO-A and SHO-B apart)
holds only its own private keys; the other operators it deals with are ``peers``: each SHO's
public key and the CA of that deployment's TLS certificate, copied from the peer's
``device-trust.json`` by :func:`add_peers` (``trelab network add-peer``). A peer can sign Ki
transfer requests and packages here, nothing else (no lifecycle order, no device trusts it).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from network.store import STORE_KEY_SIZE
from network.tls import DEFAULT_NAMES, issue_tls
from protocol.errors import BadConfig
from protocol.messages import SigningKey
from tpm.pcrsel import DIGEST_SIZES, format_selection, parse_selection
from trelab.atomic import atomic_write_bytes, atomic_write_text
from trelab.digits import is_decimal
from trelab.errors import BadInput

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_PCR_SELECTION",
    "NetworkConfig",
    "PeerConfig",
    "ShoConfig",
    "add_peers",
    "device_trust",
    "init_config",
    "load_config",
]

CONFIG_NAME = "network.json"
DEFAULT_PCR_SELECTION = "sha256:0,1,2,3,4,5,6,7"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_PLMN = re.compile(r"[0-9]{5,6}")
_MAX_CONFIG = 1 << 20


@dataclass(frozen=True)
class ShoConfig:
    """One selected home operator: its signing key (LifecycleCommand), PLMN (MCC+MNC, the IMSI
    prefix), AKA algorithm and its parameters, AMF, and whether it activates on install."""

    name: str
    key: SigningKey = field(repr=False)
    plmn: str = "00101"
    algorithm: str = "milenage"
    params: Mapping[str, int] = field(default_factory=dict)
    amf: bytes = b"\x80\x00"
    auto_activate: bool = True


@dataclass(frozen=True)
class PeerConfig:
    """Another operator's SHO, pinned: its public signing key and the CA its deployment's TLS
    certificate chains to (None: that deployment was made without TLS)."""

    name: str
    public_key: ec.EllipticCurvePublicKey = field(repr=False)
    tls_ca: x509.Certificate | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NetworkConfig:
    """The whole operator-side configuration, loaded and checked."""

    trusted_cas: tuple[x509.Certificate, ...] = field(repr=False)
    pva_key: SigningKey = field(repr=False)
    dpf_key: SigningKey = field(repr=False)
    shos: Mapping[str, ShoConfig]
    store_key: bytes = field(repr=False)
    pcr_selection: str = DEFAULT_PCR_SELECTION
    reference: Mapping[str, Mapping[int, bytes]] = field(default_factory=dict)
    accept_unreferenced: bool = False
    verdict_lifetime: int = 300
    session_lifetime: int = 900
    package_lifetime: int = 3600
    revoked_devices: frozenset[str] = frozenset()
    icf_operator: str = "icf"
    require_pcid: bool = False
    grant_lifetime: int = 900
    max_body: int = 64 * 1024
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    tls_ca: x509.Certificate | None = field(default=None, repr=False)
    peers: Mapping[str, PeerConfig] = field(default_factory=dict)
    path: Path | None = None

    def transfer_key(self, sho: str) -> ec.EllipticCurvePublicKey | None:
        """The public key a Ki transfer message of ``sho`` must verify with: one of this
        deployment's SHOs, or a pinned peer; None if ``sho`` is neither."""
        own = self.shos.get(sho)
        if own is not None:
            return own.key.public_key
        peer = self.peers.get(sho)
        return peer.public_key if peer is not None else None

    def signer_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        """Public keys by signer name (``pva``, ``dpf``, each SHO)."""
        keys = {
            self.pva_key.name: self.pva_key.public_key,
            self.dpf_key.name: self.dpf_key.public_key,
        }
        keys.update({name: sho.key.public_key for name, sho in self.shos.items()})
        return keys


def _pem_public(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def device_trust(config: NetworkConfig) -> dict[str, Any]:
    """What a TRE pins: ``{"version": 1, "pva": PEM, "dpf": PEM, "shos": {name: PEM}}``, and
    ``tls_ca`` (PEM certificate) when the service speaks TLS."""
    doc: dict[str, Any] = {
        "version": 1,
        "pva": _pem_public(config.pva_key.public_key),
        "dpf": _pem_public(config.dpf_key.public_key),
        "shos": {name: _pem_public(sho.key.public_key) for name, sho in config.shos.items()},
        "pcr_selection": config.pcr_selection,
    }
    if config.tls_ca is not None:  # the CA the server's TLS certificate must chain to
        doc["tls_ca"] = config.tls_ca.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return doc


# ---- reading --------------------------------------------------------------------------------


def _get(
    doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any, where: str
) -> Any:
    value = doc.get(key, default)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int,))):
        raise BadConfig(f"{where}{key}: wrong type")
    return value


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _read(path: Path, what: str, limit: int = _MAX_CONFIG) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise BadConfig(f"{what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise BadConfig(f"{what} {path}: too large")
    return data


def _load_key(base: Path, value: Any, name: str, what: str) -> SigningKey:
    if not isinstance(value, str):
        raise BadConfig(f"{what}: expected the path of a PEM private key")
    path = _resolve(base, value)
    try:
        key = serialization.load_pem_private_key(_read(path, what), password=None)
    except (ValueError, TypeError):
        raise BadConfig(f"{what} {path}: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadConfig(f"{what} {path}: not a P-256 key (ES256)")
    return SigningKey(name, key)


def _load_cas(base: Path, value: Any, default: Path | None) -> tuple[x509.Certificate, ...]:
    if value is None:
        if default is None:
            raise BadConfig("trusted_cas: missing (the manufacturer CA bundle to trust)")
        paths = [default]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        paths = [_resolve(base, v) for v in value]
    else:
        raise BadConfig("trusted_cas: expected a non-empty list of PEM bundle paths")
    certs: list[x509.Certificate] = []
    for path in paths:
        if not path.is_file():
            raise BadConfig(f"trusted_cas: {path} does not exist (trelab lab up makes the lab CA)")
        try:
            certs += x509.load_pem_x509_certificates(_read(path, "trusted_cas"))
        except (ValueError, x509.InvalidVersion):
            raise BadConfig(f"trusted_cas: {path} holds no PEM certificate") from None
    return tuple(certs)


def _load_reference(value: Any) -> dict[str, dict[int, bytes]]:
    if not isinstance(value, dict):
        raise BadConfig("validation.reference: expected {bank: {index: hex}}")
    out: dict[str, dict[int, bytes]] = {}
    for bank, values in value.items():
        if bank not in DIGEST_SIZES or not isinstance(values, dict):
            raise BadConfig(f"validation.reference: {bank!r} is not a PCR bank")
        out[bank] = {}
        for index, digest in values.items():
            if not (isinstance(index, str) and is_decimal(index) and isinstance(digest, str)):
                raise BadConfig(f"validation.reference.{bank}: {index!r} is not index → hex")
            try:
                raw = bytes.fromhex(digest)
            except ValueError:
                raise BadConfig(f"validation.reference.{bank}.{index}: not hex") from None
            if len(raw) != DIGEST_SIZES[bank]:
                raise BadConfig(f"validation.reference.{bank}.{index}: not a {bank} digest")
            out[bank][int(index)] = raw
    return out


def _positive(doc: Mapping[str, Any], key: str, default: int, where: str = "") -> int:
    value = _get(doc, key, int, default, where)
    if value <= 0:
        raise BadConfig(f"{where}{key}: must be positive")
    return int(value)


def _load_sho(base: Path, name: str, doc: Any) -> ShoConfig:
    where = f"shos.{name}."
    if not _NAME.fullmatch(name):
        raise BadConfig(f"shos: {name!r} is not a short lower-case name")
    if not isinstance(doc, dict):
        raise BadConfig(f"shos.{name}: expected a table")
    plmn = _get(doc, "plmn", str, "00101", where)
    if not _PLMN.fullmatch(plmn):
        raise BadConfig(f"{where}plmn: MCC+MNC, 5 or 6 digits")
    algorithm = _get(doc, "algorithm", str, "milenage", where)
    if algorithm not in ("milenage", "tuak", "hmac-sha256"):
        raise BadConfig(f"{where}algorithm: milenage, tuak or hmac-sha256")
    params = _get(doc, "params", dict, {}, where)
    allowed = {"mac_bits", "res_bits", "ck_bits", "ik_bits", "iterations", "key_bits"}
    if algorithm == "milenage" and params:
        raise BadConfig(f"{where}params: Milenage takes none")
    if algorithm == "hmac-sha256":
        allowed = {"key_bits", "res_bits"}
        if params.get("key_bits", 128) not in (128, 256):
            raise BadConfig(f"{where}params.key_bits: 128 or 256")
        if params.get("res_bits", 64) not in (32, 64, 128):
            raise BadConfig(f"{where}params.res_bits: 32, 64 or 128")
    if set(params) - allowed or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in params.values()
    ):
        raise BadConfig(f"{where}params: only integer {', '.join(sorted(allowed))}")
    try:
        amf = bytes.fromhex(_get(doc, "amf", str, "8000", where))
    except ValueError:
        raise BadConfig(f"{where}amf: not hex") from None
    if len(amf) != 2:
        raise BadConfig(f"{where}amf: 2 bytes")
    return ShoConfig(
        name=name,
        key=_load_key(base, doc.get("key"), name, f"{where}key"),
        plmn=plmn,
        algorithm=algorithm,
        params=dict(params),
        amf=amf,
        auto_activate=_get(doc, "auto_activate", bool, True, where),
    )


def parse_config(
    doc: Any, base: Path, path: Path | None = None, *, default_trusted_cas: Path | None = None
) -> NetworkConfig:
    """Check a decoded configuration document (paths relative to ``base``); a document without
    ``trusted_cas`` trusts ``default_trusted_cas``.

    Raises:
        BadConfig: naming the first bad field.
    """
    if not isinstance(doc, dict):
        raise BadConfig("configuration: expected a table at the top")
    if doc.get("version", 1) != 1:
        raise BadConfig("version: only 1 is understood")
    known = {
        "version", "trusted_cas", "store_key", "pva", "dpf", "validation", "shos", "icf",
        "revoked_devices", "session_lifetime", "max_body", "tls", "peers",
    }  # fmt: skip
    unknown = set(doc) - known
    if unknown:
        raise BadConfig(f"configuration: unknown key {sorted(unknown)[0]!r}")
    key_path = _get(doc, "store_key", str, None, "") if "store_key" in doc else None
    if key_path is None:
        raise BadConfig("store_key: missing (the path of a file with 32 bytes in hex)")
    try:
        store_key = bytes.fromhex(
            _read(_resolve(base, key_path), "store_key", 200).decode().strip()
        )
    except (ValueError, UnicodeDecodeError):
        raise BadConfig("store_key: the file does not hold hex") from None
    if len(store_key) != STORE_KEY_SIZE:
        raise BadConfig(f"store_key: {STORE_KEY_SIZE} bytes expected")
    pva = _get(doc, "pva", dict, {}, "")
    dpf = _get(doc, "dpf", dict, {}, "")
    validation = _get(doc, "validation", dict, {}, "")
    icf = _get(doc, "icf", dict, {}, "")
    shos_doc = _get(doc, "shos", dict, {}, "")
    if not shos_doc:
        raise BadConfig("shos: at least one SHO is needed")
    selection = _get(validation, "pcr_selection", str, DEFAULT_PCR_SELECTION, "validation.")
    try:
        selection = format_selection(parse_selection(selection, what="validation.pcr_selection"))
    except BadInput as exc:
        raise BadConfig(str(exc)) from None
    revoked = _get(doc, "revoked_devices", list, [], "")
    if not all(isinstance(r, str) for r in revoked):
        raise BadConfig("revoked_devices: expected a list of device ids (hex EK names)")
    shos = {name: _load_sho(base, name, sho) for name, sho in shos_doc.items()}
    icf_operator = _get(icf, "operator", str, "icf", "icf.")
    if icf_operator in shos or not _NAME.fullmatch(icf_operator):
        raise BadConfig("icf.operator: a name that no SHO uses")
    names = {"pva", "dpf"} & set(shos)
    if names:
        raise BadConfig(f"shos: {sorted(names)[0]!r} is the name of a network key")
    tls_certificate, tls_key, tls_ca = _load_tls(base, doc.get("tls"))
    peers = _load_peers(base, _get(doc, "peers", dict, {}, ""))
    clash = (set(shos) | {"pva", "dpf", icf_operator}) & set(peers)
    if clash:
        raise BadConfig(f"peers: {sorted(clash)[0]!r} is a name of this deployment")
    return NetworkConfig(
        trusted_cas=_load_cas(base, doc.get("trusted_cas"), default_trusted_cas),
        pva_key=_load_key(base, pva.get("key"), "pva", "pva.key"),
        dpf_key=_load_key(base, dpf.get("key"), "dpf", "dpf.key"),
        shos=shos,
        store_key=store_key,
        pcr_selection=selection,
        reference=_load_reference(validation.get("reference", {})),
        accept_unreferenced=_get(validation, "accept_unreferenced", bool, False, "validation."),
        verdict_lifetime=_positive(pva, "verdict_lifetime", 300, "pva."),
        session_lifetime=_positive(doc, "session_lifetime", 900),
        package_lifetime=_positive(dpf, "package_lifetime", 3600, "dpf."),
        revoked_devices=frozenset(r.lower() for r in revoked),
        icf_operator=icf_operator,
        require_pcid=_get(icf, "require_pcid", bool, False, "icf."),
        grant_lifetime=_positive(icf, "grant_lifetime", 900, "icf."),
        max_body=_positive(doc, "max_body", 64 * 1024),
        tls_certificate=tls_certificate,
        tls_key=tls_key,
        tls_ca=tls_ca,
        peers=peers,
        path=path,
    )


def _load_public_key(path: Path, what: str) -> ec.EllipticCurvePublicKey:
    data = _read(path, what)
    if b"PRIVATE KEY" in data:  # a peer's private key has no business here
        raise BadConfig(f"{what} {path}: a private key; a peer is pinned by its public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise BadConfig(f"{what} {path}: not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadConfig(f"{what} {path}: not a P-256 key (ES256)")
    return key


def _load_peers(base: Path, doc: Mapping[str, Any]) -> dict[str, PeerConfig]:
    """``peers: {name: {key, tls_ca?}}`` → the pinned SHOs of other deployments."""
    peers: dict[str, PeerConfig] = {}
    for name, value in doc.items():
        where = f"peers.{name}."
        if not _NAME.fullmatch(name):
            raise BadConfig(f"peers: {name!r} is not a short lower-case name")
        if not isinstance(value, dict) or not set(value) <= {"key", "tls_ca"}:
            raise BadConfig(f"peers.{name}: expected {{key, tls_ca}} (paths of PEM files)")
        key_path = _get(value, "key", str, None, where)
        if key_path is None:
            raise BadConfig(f"{where}key: missing (the path of the peer's PEM public key)")
        ca: x509.Certificate | None = None
        if "tls_ca" in value:
            ca_path = _resolve(base, _get(value, "tls_ca", str, "", where))
            try:
                ca = x509.load_pem_x509_certificate(_read(ca_path, f"{where}tls_ca"))
            except ValueError:
                raise BadConfig(f"{where}tls_ca: {ca_path} holds no PEM certificate") from None
        public = _load_public_key(_resolve(base, key_path), f"{where}key")
        peers[name] = PeerConfig(name, public, ca)
    return peers


def _load_tls(base: Path, value: Any) -> tuple[Path | None, Path | None, x509.Certificate | None]:
    """``tls: {certificate, key, ca}`` → the server's certificate and key files (checked to
    exist) and the CA certificate devices pin; all None without a ``tls`` table."""
    if value is None:
        return None, None, None
    if not isinstance(value, dict) or set(value) != {"certificate", "key", "ca"}:
        raise BadConfig("tls: expected {certificate, key, ca} (paths of PEM files)")
    paths = {}
    for name in ("certificate", "key", "ca"):
        if not isinstance(value[name], str):
            raise BadConfig(f"tls.{name}: expected the path of a PEM file")
        paths[name] = _resolve(base, value[name])
        if not paths[name].is_file():
            raise BadConfig(f"tls.{name}: {paths[name]} does not exist")
    try:
        ca = x509.load_pem_x509_certificate(_read(paths["ca"], "tls.ca"))
    except ValueError:
        raise BadConfig(f"tls.ca: {paths['ca']} holds no PEM certificate") from None
    return paths["certificate"], paths["key"], ca


def load_config(
    path: str | os.PathLike[str], *, default_trusted_cas: Path | None = None
) -> NetworkConfig:
    """Read and check the configuration file (JSON, or TOML if it ends in ``.toml``); one
    without ``trusted_cas`` trusts ``default_trusted_cas``.

    Raises:
        BadConfig: unreadable, not JSON/TOML, or a bad field (one line naming it).
    """
    where = Path(path)
    data = _read(where, "config")
    try:
        text = data.decode("utf-8")
        doc = tomllib.loads(text) if where.suffix == ".toml" else json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        kind = "TOML" if where.suffix == ".toml" else "JSON"
        raise BadConfig(f"config {where}: not {kind} ({str(exc).splitlines()[0]})") from None
    return parse_config(doc, where.parent, where, default_trusted_cas=default_trusted_cas)


# ---- writing --------------------------------------------------------------------------------


def _new_key(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write_bytes(path, pem, mode=0o600)


def init_config(
    directory: str | os.PathLike[str],
    *,
    shos: Sequence[str] = ("sho-a", "sho-b"),
    plmns: Sequence[str] = (),
    ca_bundle: str | os.PathLike[str],
    reference: Mapping[str, Mapping[int, bytes]] | None = None,
    pcr_selection: str = DEFAULT_PCR_SELECTION,
    tls_names: Sequence[str] = DEFAULT_NAMES,
    force: bool = False,
) -> Path:
    """Write a fresh configuration into ``directory``: P-256 keys for the PVA, the DPF and each
    SHO (0600), a random store key (0600), a TLS CA and a server certificate naming
    ``tls_names`` (:mod:`network.tls`), ``network.json`` and ``device-trust.json``.
    ``plmns``: each SHO's MCC+MNC in the order of ``shos`` (default 00101, 00102, …).
    Returns the config path.

    Raises:
        BadConfig: the config exists (without ``force``), or a name or selection is bad.
    """
    out = Path(directory)
    config_path = out / CONFIG_NAME
    if config_path.exists() and not force:
        raise BadConfig(f"{config_path} exists (use --force to replace it and its keys)")
    for name in shos:
        if not _NAME.fullmatch(name) or name in ("pva", "dpf", "icf"):
            raise BadConfig(f"SHO name {name!r}: a short lower-case name, not pva/dpf/icf")
    if len(set(shos)) != len(shos):
        raise BadConfig("SHO names: each once")
    if plmns and len(plmns) != len(shos):
        raise BadConfig(f"PLMNs: one per SHO ({len(shos)}), in the order of the SHOs")
    for plmn in plmns:
        if not _PLMN.fullmatch(plmn):
            raise BadConfig(f"PLMN {plmn!r}: MCC+MNC, 5 or 6 digits")
    plmn_of = list(plmns) or [f"0010{i + 1}" for i in range(len(shos))]
    try:
        selection = format_selection(parse_selection(pcr_selection, what="pcr_selection"))
    except BadInput as exc:
        raise BadConfig(str(exc)) from None
    if not Path(ca_bundle).is_file():
        raise BadConfig(
            f"ca_bundle: no manufacturer CA at {ca_bundle} (`trelab lab up` makes the lab's)"
        )
    out.mkdir(parents=True, exist_ok=True)
    keys = out / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    for name in ("pva", "dpf", *shos):
        _new_key(keys / f"{name}.pem")
    atomic_write_text(keys / "store.key", os.urandom(STORE_KEY_SIZE).hex() + "\n", mode=0o600)
    tls = issue_tls(out / "tls", tls_names)
    validation: dict[str, Any] = {"pcr_selection": selection}
    if reference:
        validation["reference"] = {
            bank: {str(i): v.hex() for i, v in sorted(values.items())}
            for bank, values in reference.items()
        }
    doc: dict[str, Any] = {
        "version": 1,
        "store_key": "keys/store.key",
        "pva": {"key": "keys/pva.pem", "verdict_lifetime": 300},
        "dpf": {"key": "keys/dpf.pem", "package_lifetime": 3600},
        "validation": validation,
        "shos": {
            name: {"key": f"keys/{name}.pem", "plmn": plmn_of[i], "algorithm": "milenage"}
            for i, name in enumerate(shos)
        },
        "icf": {"operator": "icf", "require_pcid": False},
        "revoked_devices": [],
        "session_lifetime": 900,
        "tls": {
            name: str(path.relative_to(out))
            for name, path in (("certificate", tls.certificate), ("key", tls.key), ("ca", tls.ca))
        },
    }
    doc["trusted_cas"] = [str(Path(ca_bundle).resolve())]
    atomic_write_text(config_path, json.dumps(doc, indent=2) + "\n", mode=0o644)
    config = load_config(config_path)
    atomic_write_text(
        out / "device-trust.json", json.dumps(device_trust(config), indent=2) + "\n", mode=0o644
    )
    return config_path


def add_peers(
    config_path: str | os.PathLike[str],
    trust_path: str | os.PathLike[str],
    *,
    shos: Sequence[str] = (),
    force: bool = False,
    default_trusted_cas: Path | None = None,
) -> list[str]:
    """Pin another deployment's SHOs in the configuration at ``config_path`` (JSON): their
    public keys and that deployment's TLS CA, read from its ``device-trust.json`` at
    ``trust_path`` (public material only), copied into ``peers/`` beside the config and named
    under ``peers`` in it. ``shos``: only these (default: every SHO the file names). Returns
    the names pinned. Nothing is written unless all of it checks.

    Raises:
        BadConfig: unreadable files, a name this deployment already uses, a peer pinned
            already (without ``force``), or a trust file without the SHOs asked for.
    """
    where = Path(config_path)
    if where.is_dir():
        where = where / CONFIG_NAME
    if where.suffix == ".toml":
        raise BadConfig(f"{where}: add-peer writes JSON configurations only")
    config = load_config(where, default_trusted_cas=default_trusted_cas)
    try:
        trust = json.loads(_read(Path(trust_path), "peer trust").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadConfig(f"peer trust {trust_path}: not JSON") from None
    if not isinstance(trust, dict) or not isinstance(trust.get("shos"), dict):
        raise BadConfig(f"peer trust {trust_path}: no shos (expected a device-trust.json)")
    offered: dict[str, Any] = trust["shos"]
    names = list(dict.fromkeys(shos)) or sorted(offered)
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for name in names:
        if name not in offered:
            raise BadConfig(f"peer trust {trust_path}: names no SHO {name!r}")
        if name in config.shos or name in ("pva", "dpf", config.icf_operator):
            raise BadConfig(f"peer {name!r}: a name of this deployment")
        if name in config.peers and not force:
            raise BadConfig(f"peer {name!r} is pinned already (use --force to replace it)")
        value = offered[name]
        try:
            if not isinstance(value, str) or "PRIVATE KEY" in value:
                raise ValueError
            key = serialization.load_pem_public_key(value.encode("ascii"))
        except (ValueError, TypeError, UnicodeEncodeError):
            raise BadConfig(f"peer trust {trust_path}: shos.{name}: not a PEM public key") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise BadConfig(f"peer trust {trust_path}: shos.{name}: not a P-256 key")
        keys[name] = key
    ca_pem: str | None = None
    if trust.get("tls_ca") is not None:
        try:
            ca = x509.load_pem_x509_certificate(str(trust["tls_ca"]).encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise BadConfig(f"peer trust {trust_path}: tls_ca: not a PEM certificate") from None
        ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode("ascii")
    doc = json.loads(_read(where, "config").decode("utf-8"))
    pinned = dict(doc.get("peers", {}))
    folder = where.parent / "peers"
    folder.mkdir(mode=0o755, exist_ok=True)
    for name, key in keys.items():
        atomic_write_text(folder / f"{name}.pem", _pem_public(key), mode=0o644)
        entry = {"key": f"peers/{name}.pem"}
        if ca_pem is not None:
            atomic_write_text(folder / f"{name}-tls-ca.pem", ca_pem, mode=0o644)
            entry["tls_ca"] = f"peers/{name}-tls-ca.pem"
        pinned[name] = entry
    doc["peers"] = pinned
    atomic_write_text(where, json.dumps(doc, indent=2) + "\n", mode=0o644)
    return names
