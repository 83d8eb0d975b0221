"""Edge: ``trelab tpm info | ek | ak | activate`` — the TPM's capabilities and identity.

The ``tpm`` noun is registered by ``host/cli/tpm_cmd.py``; it calls :func:`add_identity_verbs`
with its sub-parsers so these verbs sit next to the MID verbs under one noun.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from host.cli import defaults
from host.cli.output import Outcome, add_json_flag

if TYPE_CHECKING:
    from tpm.identity import AkKind

__all__ = ["add_identity_verbs"]


def _lines(data: dict[str, Any], indent: str = "") -> str:
    width = max((len(k) for k in data), default=0)
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            out.append(f"{indent}{key}:")
            out.append(_lines(value, indent + "  "))
        elif isinstance(value, list):
            out.append(f"{indent}{key:<{width}}  {', '.join(str(v) for v in value) or '-'}")
        else:
            out.append(f"{indent}{key:<{width}}  {value}")
    return "\n".join(line for line in out if line)


def _info(args: argparse.Namespace) -> Outcome:
    from tpm.connection import TpmConnection
    from tpm.info import probe

    with TpmConnection(defaults.tcti(args.tpm)) as conn:
        info = probe(conn)
    data = info.to_json()
    return Outcome(data=data, text=_lines(data))


def _cert_json(cert: Any, index: int, template: str) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import Encoding

    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key_text = f"RSA-{key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_text = f"ECC {key.curve.name}"
    else:
        key_text = type(key).__name__
    return {
        "nv_index": f"0x{index:08x}",
        "template": template,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:x}",
        "not_after": cert.not_valid_after_utc.isoformat(),
        "key": key_text,
        "sha256": hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest(),
    }


def _ek(args: argparse.Namespace) -> Outcome:
    from tpm.connection import TpmConnection
    from tpm.ek import find_ek_certificate, load_ca_bundle, trust_anchors, verify_ek_chain
    from tpm.errors import EkCertificateRejected

    bundle = load_ca_bundle(Path(args.ca)) if args.ca else None
    if bundle is not None:  # refuse an anchorless bundle once, before touching the TPM
        trust_anchors(bundle, partial_chain=args.partial_chain)
    with TpmConnection(defaults.tcti(args.tpm)) as conn:
        found = {kind: find_ek_certificate(conn, kind) for kind in ("rsa2048", "ecc")}
    certs: dict[str, Any] = {}
    failed = False
    for kind, hit in found.items():
        if hit is None:
            continue
        index, template, cert = hit
        entry = _cert_json(cert, index, template)
        if bundle is None:
            entry["chain"] = "not checked"
        else:
            try:
                verify_ek_chain(cert, bundle, partial_chain=args.partial_chain)
                entry["chain"] = "verified"
            except EkCertificateRejected as exc:
                entry["chain"] = "rejected"
                entry["reason"] = str(exc)
                failed = True
        certs[kind] = entry
    if bundle is not None and not certs:
        failed = True
    data = {"ca": args.ca, "certificates": certs, "ok": not failed}
    text = _lines({k: v for k, v in certs.items()}) or "no EK certificate in NV"
    return Outcome(data=data, text=text, exit_code=1 if failed else 0)


def _ak(args: argparse.Namespace) -> Outcome:
    from tpm.connection import TpmConnection
    from tpm.identity import ensure_ak, evict_ak

    kind: AkKind = "rsa" if args.rsa else "ecc"
    with TpmConnection(defaults.tcti(args.tpm)) as conn:
        if args.recreate:
            evict_ak(conn, kind)
        ak, created = ensure_ak(conn, kind)
    data = ak.to_json() | {"created": created}
    text = (
        f"AK ({kind}) at {data['handle']}{' (created)' if created else ''}\n"
        f"name  {data['name']}\n{data['public_pem'].rstrip()}"
    )
    return Outcome(data=data, text=text)


def _activate(args: argparse.Namespace) -> Outcome:
    from tpm.connection import TpmConnection
    from tpm.ek import load_ca_bundle, trust_anchors
    from tpm.identity import activation_round_trip, ensure_ak

    bundle = load_ca_bundle(Path(args.ca)) if args.ca else None
    if bundle is not None:
        trust_anchors(bundle, partial_chain=args.partial_chain)
    kind: AkKind = "rsa" if args.rsa else "ecc"
    with TpmConnection(defaults.tcti(args.tpm)) as conn:
        ak, created = ensure_ak(conn, kind)
        result = activation_round_trip(
            conn, ak, ca_bundle=bundle, ek_kind=args.ek, partial_chain=args.partial_chain
        )
    data = result.to_json() | {"ak_created": created}
    text = (
        f"credential activated: AK {data['ak_name']} lives in the TPM of the {args.ek} EK"
        f" (EK from {data['ek_source']}, chain {'verified' if bundle else 'not checked'})"
    )
    return Outcome(data=data, text=text)


def _tpm_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tpm", metavar="TCTI", help="TCTI (default: $TRELAB_TPM, else the lab)")


def _ca_flags(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--ca", metavar="FILE", help=help_text)
    parser.add_argument(
        "--partial-chain",
        action="store_true",
        help="trust every --ca certificate as an anchor (default: the bundle's root only)",
    )


def add_identity_verbs(verbs: Any) -> None:
    """Add ``info``, ``ek``, ``ak`` and ``activate`` to the ``tpm`` noun's sub-parsers."""
    p = verbs.add_parser("info", help="capabilities: vendor, PCR banks, AES modes, DA state")
    _tpm_flag(p)
    add_json_flag(p)
    p.set_defaults(func=_info)

    p = verbs.add_parser("ek", help="EK certificates from NV and their chain to a CA")
    _tpm_flag(p)
    _ca_flags(p, "manufacturer CA bundle (PEM, with its root) to verify against")
    add_json_flag(p)
    p.set_defaults(func=_ek)

    p = verbs.add_parser("ak", help="create (if absent) and show the persisted attestation key")
    _tpm_flag(p)
    p.add_argument("--rsa", action="store_true", help="RSA-2048 AK instead of ECC P-256")
    p.add_argument("--recreate", action="store_true", help="evict the AK and make a new one")
    add_json_flag(p)
    p.set_defaults(func=_ak)

    p = verbs.add_parser("activate", help="credential activation round trip (verifier + TPM)")
    _tpm_flag(p)
    p.add_argument("--rsa", action="store_true", help="use the RSA AK")
    p.add_argument("--ek", choices=("rsa2048", "ecc"), default="rsa2048", help="EK to bind to")
    _ca_flags(p, "verify the EK certificate chain (PEM bundle, with its root) first")
    add_json_flag(p)
    p.set_defaults(func=_activate)
