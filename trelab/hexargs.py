"""Pure. Parse hex from users (CLI, JSON, profiles) into bytes with a clear one-line error."""

from __future__ import annotations

from .errors import BadInput

__all__ = ["parse_hex"]


def parse_hex(
    name: str,
    text: str,
    *,
    length: int | tuple[int, ...] | None = None,
) -> bytes:
    """Return the bytes of ``text``; ``length`` (bytes) may be one value or the allowed ones.

    Raises:
        BadInput: odd length, non-hex characters, or a length not allowed.
    """
    cleaned = text.strip().removeprefix("0x").removeprefix("0X").replace(" ", "").replace(":", "")
    if len(cleaned) % 2:
        raise BadInput(f"{name}: odd number of hex digits ({len(cleaned)})")
    try:
        value = bytes.fromhex(cleaned)
    except ValueError:
        raise BadInput(f"{name}: not hex") from None
    if length is not None:
        allowed = (length,) if isinstance(length, int) else length
        if len(value) not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise BadInput(f"{name}: {len(value)} bytes, expected {want}")
    return value
