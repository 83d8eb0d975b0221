"""Edge: filesystem. The quote evidence directory in tpm2-tools formats, so ``tpm2_checkquote``
and our verifier read the same files (docs/tpm.md "Identity and attestation"):

=============  =================================================================
``quote.msg``  marshaled TPMS_ATTEST (no size prefix; starts ``ff544347 8018``)
``quote.sig``  marshaled TPMT_SIGNATURE
``ak.pub.pem`` the AK as PEM SubjectPublicKeyInfo
``ak.pub``     the AK's marshaled TPM2B_PUBLIC (name and attributes; optional to load)
``pcrs``       PCR digests concatenated in selection order (tpm2-tools ``-F values``)
``pcrlist``    the claimed selection, e.g. ``sha256:0,1,2,3,16``
``nonce``      the qualifying data, raw (optional to load)
=============  =================================================================

Only ``quote.msg`` and ``quote.sig`` are signed; everything else is a claim the verifier
checks against them. Each file is written atomically (public data, mode 0644).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tpm.marshal import ak_public_from_blob, ak_public_from_pem, parse_attest, parse_signature
from tpm.pcrsel import DIGEST_SIZES, PcrSelection, format_selection, parse_selection
from tpm.verify import AkPublic, Evidence, spki
from trelab.atomic import atomic_write_bytes, atomic_write_text
from trelab.digits import is_decimal
from trelab.errors import BadInput
from trelab.jsontext import load_json

__all__ = [
    "EVIDENCE_FILES",
    "QuoteFiles",
    "evidence_from_files",
    "load_evidence",
    "load_expected_ak",
    "load_reference",
    "read_files",
    "write_evidence",
]

EVIDENCE_FILES = ("quote.msg", "quote.sig", "ak.pub.pem", "ak.pub", "pcrs", "pcrlist", "nonce")
_REQUIRED = ("quote.msg", "quote.sig", "ak.pub.pem", "pcrs", "pcrlist")
_MAX_FILE = 1 << 16  # no evidence file is anywhere near this: refuse to slurp a wrong path


@dataclass(frozen=True)
class QuoteFiles:
    """The evidence as bytes, before or after it touches the disk."""

    message: bytes
    signature: bytes
    ak_pem: bytes
    pcrs: bytes
    selection: PcrSelection
    ak_blob: bytes | None = None
    nonce: bytes | None = None

    @property
    def pcrlist(self) -> str:
        return format_selection(self.selection)


def write_evidence(directory: str | os.PathLike[str], files: QuoteFiles) -> Path:
    """Write the evidence files into ``directory`` (created if needed); returns it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "ak.pub.pem", files.ak_pem, mode=0o644)
    atomic_write_bytes(out / "pcrs", files.pcrs, mode=0o644)
    atomic_write_text(out / "pcrlist", files.pcrlist + "\n", mode=0o644)
    for name, optional in (("ak.pub", files.ak_blob), ("nonce", files.nonce)):
        if optional is not None:
            atomic_write_bytes(out / name, optional, mode=0o644)
        else:  # never leave a previous quote's file next to this one
            (out / name).unlink(missing_ok=True)
    atomic_write_bytes(out / "quote.sig", files.signature, mode=0o644)
    atomic_write_bytes(out / "quote.msg", files.message, mode=0o644)
    return out


def _read(path: Path, *, required: bool) -> bytes | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE + 1)
    except FileNotFoundError:
        if required:
            raise BadInput(f"{path}: missing (not a quote evidence directory?)") from None
        return None
    except OSError as exc:
        raise BadInput(f"{path}: {exc.strerror}") from None
    if len(data) > _MAX_FILE:
        raise BadInput(f"{path}: larger than any evidence file ({_MAX_FILE} bytes)")
    return data


def read_files(directory: str | os.PathLike[str]) -> QuoteFiles:
    """Read an evidence directory back into bytes (pcrlist parsed).

    Raises:
        BadInput: not a directory, a required file missing, pcrlist malformed.
    """
    where = Path(directory)
    if not where.is_dir():
        raise BadInput(f"{where}: not a directory")
    raw = {name: _read(where / name, required=name in _REQUIRED) for name in EVIDENCE_FILES}
    try:
        pcrlist = (raw["pcrlist"] or b"").decode("ascii")
    except UnicodeDecodeError:
        raise BadInput(f"{where / 'pcrlist'}: not text") from None
    return QuoteFiles(
        message=raw["quote.msg"] or b"",
        signature=raw["quote.sig"] or b"",
        ak_pem=raw["ak.pub.pem"] or b"",
        pcrs=raw["pcrs"] or b"",
        selection=parse_selection(pcrlist, what=f"{where / 'pcrlist'}"),
        ak_blob=raw["ak.pub"],
        nonce=raw["nonce"],
    )


def evidence_from_files(files: QuoteFiles) -> Evidence:
    """Unmarshal the evidence for :func:`tpm.verify.verify_quote`.

    Raises:
        BadInput: a file is malformed.
    """
    ak: AkPublic
    if files.ak_blob is not None:
        ak = ak_public_from_blob(files.ak_blob, files.ak_pem)
    else:
        ak = AkPublic(key=ak_public_from_pem(files.ak_pem))
    return Evidence(
        message=files.message,
        attest=parse_attest(files.message),
        signature=parse_signature(files.signature),
        ak=ak,
        pcr_values=files.pcrs,
        claimed=files.selection,
        nonce=files.nonce,
    )


def load_evidence(directory: str | os.PathLike[str]) -> Evidence:
    """:func:`read_files` then :func:`evidence_from_files`."""
    return evidence_from_files(read_files(directory))


def load_reference(path: str | os.PathLike[str]) -> dict[str, dict[int, bytes]]:
    """Reference PCR values: JSON ``{"sha256": {"0": "hex", …}, …}``.

    Raises:
        BadInput: unreadable, not that shape, wrong digest length.
    """
    data = _read(Path(path), required=True) or b""
    doc = load_json(data, str(path))
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: expected {{bank: {{index: hex}}}}")
    out: dict[str, dict[int, bytes]] = {}
    for bank, values in doc.items():
        if bank not in DIGEST_SIZES or not isinstance(values, dict):
            raise BadInput(f"{path}: {bank!r} is not a PCR bank with {{index: hex}}")
        out[bank] = {}
        for index, value in values.items():
            if not (isinstance(index, str) and is_decimal(index) and isinstance(value, str)):
                raise BadInput(f"{path}: {bank}:{index!r} is not index → hex digest")
            try:
                digest = bytes.fromhex(value)
            except ValueError:
                raise BadInput(f"{path}: {bank}:{index} is not hex") from None
            if len(digest) != DIGEST_SIZES[bank]:
                raise BadInput(f"{path}: {bank}:{index} is not a {bank} digest")
            out[bank][int(index)] = digest
    return out


def load_expected_ak(path: str | os.PathLike[str]) -> bytes:
    """The expected AK as SPKI DER, from a PEM public key or a marshaled TPM2B_PUBLIC.

    Raises:
        BadInput: neither.
    """
    data = _read(Path(path), required=True) or b""
    if data.lstrip().startswith(b"-----BEGIN"):
        return spki(ak_public_from_pem(data, what=str(path)))
    return spki(ak_public_from_blob(data, what=str(path)).key)
