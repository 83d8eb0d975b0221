"""Pure. PCR selections as data, in tpm2-tools' text form (``sha256:0,1,2,3,16``, banks joined
by ``+``), and the digest sizes of PCR banks (TPM 2.0 Part 2 §10.6 TPMS_PCR_SELECTION).

A selection is an ordered tuple of (bank, PCR indices ascending): the order in which the TPM
concatenates PCR values for a quote's pcrDigest and tpm2-tools writes the ``pcrs`` file.
"""

from __future__ import annotations

import hashlib
import re

from trelab.errors import BadInput

__all__ = [
    "DIGEST_SIZES",
    "MAX_PCR",
    "PcrSelection",
    "format_selection",
    "normalise",
    "parse_selection",
    "selection_from_bitmaps",
    "selection_to_bitmaps",
    "values_digest",
]

PcrSelection = tuple[tuple[str, tuple[int, ...]], ...]
DIGEST_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64, "sm3_256": 32}
MAX_PCR = 31  # a 4-byte select bitmap; PC Client TPMs have 24
_INDEX = re.compile(r"[0-9]{1,3}")  # ASCII digits only: str.isdigit() accepts '²'


def parse_selection(text: str, *, what: str = "pcr_selection") -> PcrSelection:
    """``"sha256:0,1,16+sha1:0"`` → ``(("sha256", (0, 1, 16)), ("sha1", (0,)))``; errors name
    the field ``what``. The one parser of PCR selections in trelab.

    Raises:
        BadInput: unknown bank, bad or duplicate index, repeated bank, empty selection.
    """
    text = text.strip()
    if not text:
        raise BadInput("empty", field=what)
    banks: list[tuple[str, tuple[int, ...]]] = []
    for part in text.split("+"):
        bank, sep, indices = part.strip().partition(":")
        bank = bank.strip().lower()
        if not sep or bank not in DIGEST_SIZES:
            raise BadInput(
                f"{part!r} is not BANK:INDICES (banks: {', '.join(DIGEST_SIZES)})", field=what
            )
        if any(b == bank for b, _ in banks):
            raise BadInput(f"bank {bank} appears twice", field=what)
        numbers: list[int] = []
        for item in indices.split(","):
            item = item.strip()
            if not _INDEX.fullmatch(item) or int(item) > MAX_PCR:
                raise BadInput(f"{item!r} is not a PCR index 0..{MAX_PCR}", field=what)
            numbers.append(int(item))
        if len(set(numbers)) != len(numbers):
            raise BadInput(f"a PCR index repeats in bank {bank}", field=what)
        banks.append((bank, tuple(sorted(numbers))))
    return tuple(banks)


def format_selection(selection: PcrSelection) -> str:
    """The tpm2-tools text of ``selection`` (inverse of :func:`parse_selection`)."""
    return "+".join(f"{bank}:{','.join(str(i) for i in pcrs)}" for bank, pcrs in selection)


def normalise(selection: PcrSelection) -> PcrSelection:
    """Drop banks with no PCR selected (the TPM may list them with an empty bitmap)."""
    return tuple((bank, tuple(sorted(pcrs))) for bank, pcrs in selection if pcrs)


def selection_to_bitmaps(selection: PcrSelection) -> list[tuple[str, bytes]]:
    """Per bank the pcrSelect bitmap (bit i of byte i//8 = PCR i; at least 3 bytes)."""
    out = []
    for bank, pcrs in selection:
        size = max(3, (max(pcrs, default=0) // 8) + 1)
        bitmap = bytearray(size)
        for i in pcrs:
            bitmap[i // 8] |= 1 << (i % 8)
        out.append((bank, bytes(bitmap)))
    return out


def selection_from_bitmaps(banks: list[tuple[str, bytes]]) -> PcrSelection:
    """Inverse of :func:`selection_to_bitmaps`."""
    out = []
    for bank, bitmap in banks:
        bits = int.from_bytes(bitmap, "little")  # bit i of byte i//8 is bit i of this number
        pcrs = []
        while bits:
            lowest = bits & -bits
            pcrs.append(lowest.bit_length() - 1)
            bits ^= lowest
        out.append((bank, tuple(pcrs)))
    return tuple(out)


def values_digest(hash_name: str, values: bytes) -> bytes:
    """H(PCR values concatenated in selection order): a quote's pcrDigest (Part 3 §18.4).

    Raises:
        BadInput: hash not available here.
    """
    try:
        return hashlib.new("sm3" if hash_name == "sm3_256" else hash_name, values).digest()
    except ValueError:
        raise BadInput(f"hash {hash_name} is not available to the verifier") from None
