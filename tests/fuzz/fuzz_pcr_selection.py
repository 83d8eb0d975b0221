"""PCR selections in tpm2-tools' text form (``sha256:0,1,16+sha1:0``): parse, and round-trip
through the bitmaps a TPMS_PCR_SELECTION carries."""

from __future__ import annotations

from collections.abc import Iterator

from tests.fuzz.oracle import typed
from tpm.pcrsel import (
    format_selection,
    parse_selection,
    selection_from_bitmaps,
    selection_to_bitmaps,
)


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "surrogatepass") if _utf8(data) else data.decode("latin-1")
    selection = typed(parse_selection, text)
    if isinstance(selection, Exception):
        return
    assert parse_selection(format_selection(selection)) == selection
    assert selection_from_bitmaps(selection_to_bitmaps(selection)) == selection


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def starting_inputs() -> Iterator[bytes]:
    for text in ("sha256:0,1,2,3,16", "sha1:0+sha256:0,1", "sha384:7", "sha256:²", "sm3_256:31"):
        yield text.encode()
