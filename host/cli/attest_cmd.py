"""Edge: ``trelab attest quote | verify`` — TPM quotes as tpm2-tools evidence, and the PVA's
verifier over them (docs/provisioning.md M4).

``verify`` exits 0 when every check passes, 1 when one fails (``verified: false`` with the
check and the reason), 2 when the evidence is malformed. It needs the verifier's own
``--nonce`` and a pinned AK (``--ak-pub`` or ``--ak-name``, from credential activation):
without them freshness or the signer's home is unproven, and that is a failed check (1),
never "verified".
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from host.cli import defaults
from host.cli.output import Outcome, add_json_flag
from trelab.errors import BadInput
from trelab.hexargs import parse_hex

if TYPE_CHECKING:
    from tpm.identity import AkKind

__all__ = ["register"]


def _quote(args: argparse.Namespace) -> Outcome:
    from tpm.connection import TpmConnection
    from tpm.evidence import write_evidence
    from tpm.identity import ensure_ak
    from tpm.pcrsel import parse_selection
    from tpm.quote import MAX_NONCE, quote

    nonce = parse_hex("--nonce", args.nonce, length=tuple(range(1, MAX_NONCE + 1)))
    selection = parse_selection(args.pcrs, what="pcrs")
    kind: AkKind = "rsa" if args.rsa else "ecc"
    earlier = Path(args.out) / "quote.msg"
    if earlier.exists() and not args.force:  # evidence is kept until the user says otherwise
        raise BadInput(
            f"--out {args.out}: holds earlier evidence (quote.msg); choose another directory "
            "or pass --force to replace it"
        )
    with TpmConnection(defaults.tcti(args.tpm)) as conn:
        ak, created = ensure_ak(conn, kind)
        files = quote(conn, ak, nonce, selection)
    out = write_evidence(Path(args.out), files)
    data = {
        "out": str(out),
        "pcrlist": files.pcrlist,
        "nonce": nonce.hex(),
        "ak_kind": kind,
        "ak_handle": f"0x{ak.handle:08x}",
        "ak_name": ak.name.hex(),
        "ak_created": created,
        "files": sorted(p.name for p in out.iterdir() if not p.name.startswith(".")),
    }
    text = f"quote over {files.pcrlist} written to {out}"
    return Outcome(data=data, text=text)


def _verify(args: argparse.Namespace) -> Outcome:
    from tpm.errors import QuoteRejected
    from tpm.evidence import load_evidence, load_expected_ak, load_reference
    from tpm.quote import MAX_NONCE
    from tpm.verify import verify_quote

    nonce = None
    if args.nonce is not None:
        nonce = parse_hex("--nonce", args.nonce, length=tuple(range(1, MAX_NONCE + 1)))
    reference = load_reference(args.reference) if args.reference else None
    expected_ak = load_expected_ak(args.ak_pub) if args.ak_pub else None
    expected_name = parse_hex("--ak-name", args.ak_name) if args.ak_name else None
    evidence = load_evidence(args.dir)
    previous = load_evidence(args.previous) if args.previous else None
    try:
        verdict = verify_quote(
            evidence,
            nonce=nonce,
            reference=reference,
            previous=previous,
            expected_ak=expected_ak,
            expected_ak_name=expected_name,
        )
    except QuoteRejected as exc:
        data: dict[str, Any] = {
            "verified": False,
            "check": exc.code,
            "reason": exc.detail,
            "dir": str(args.dir),
        }
        return Outcome(data=data, text=f"REJECTED ({exc.code}): {exc.detail}", exit_code=1)
    data = verdict.to_json() | {"dir": str(args.dir)}
    return Outcome(data=data, text=f"verified: quote over {data['pcrlist']} by the pinned AK")


def register(nouns: Any) -> None:
    parser = nouns.add_parser("attest", help="TPM quotes and their verification (PVA)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    p = verbs.add_parser("quote", help="TPM2_Quote with the AK into tpm2-tools evidence files")
    p.add_argument("--tpm", metavar="TCTI", help="TCTI (default: $TRELAB_TPM, else the lab)")
    p.add_argument("--nonce", required=True, metavar="HEX", help="the verifier's nonce")
    p.add_argument("--pcrs", required=True, metavar="SEL", help="PCR selection, e.g. sha256:0,1,16")
    p.add_argument("--out", required=True, metavar="DIR", help="evidence directory to write")
    p.add_argument("--force", action="store_true", help="replace earlier evidence in --out")
    p.add_argument("--rsa", action="store_true", help="quote with the RSA AK (default ECC)")
    add_json_flag(p)
    p.set_defaults(func=_quote)

    p = verbs.add_parser("verify", help="verify evidence: pinned AK, signature, nonce, PCRs, clock")
    p.add_argument("dir", metavar="DIR", help="evidence directory (from attest quote)")
    p.add_argument(
        "--nonce", metavar="HEX", help="the nonce the verifier sent (without it: not verified)"
    )
    p.add_argument("--reference", metavar="FILE", help='JSON {"sha256": {"0": "hex", …}}')
    p.add_argument("--previous", metavar="DIR", help="an earlier quote of the same AK (clock)")
    p.add_argument(
        "--ak-pub", metavar="FILE", help="pinned AK (PEM or TPM2B_PUBLIC); this or --ak-name"
    )
    p.add_argument("--ak-name", metavar="HEX", help="pinned AK name (from credential activation)")
    add_json_flag(p)
    p.set_defaults(func=_verify)
