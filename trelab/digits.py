"""Pure. Decimal numbers from outside text (CLI arguments, JSON fields, AT lines, HTTP headers).

``str.isdigit()`` and ``str.isdecimal()`` are true for '²', '٣' and other non-ASCII digits that
``int()`` then refuses or reads differently, and ``int()`` raises on more than 4300 digits: a
decoder that checks with them lets a ``ValueError`` out. Every check of decimal text goes
through :func:`is_decimal` (ASCII 0–9 only, bounded length) or :func:`parse_decimal`.
"""

from __future__ import annotations

import re

from .errors import BadInput

__all__ = ["MAX_DIGITS", "is_decimal", "parse_decimal"]

MAX_DIGITS = 40  # longer than any counter, port, index or length we read; far below int()'s limit
_DECIMAL = re.compile(r"[0-9]+")


def is_decimal(text: object, *, max_digits: int | None = MAX_DIGITS) -> bool:
    """True when ``text`` is a str of 1…``max_digits`` ASCII digits (no sign, no spaces);
    ``max_digits=None`` for digit strings never given to ``int()`` whole (BCD, IMSIs)."""
    return (
        isinstance(text, str)
        and 0 < len(text) <= (len(text) if max_digits is None else max_digits)
        and _DECIMAL.fullmatch(text) is not None
    )


def parse_decimal(
    name: str,
    text: object,
    *,
    low: int = 0,
    high: int | None = None,
    max_digits: int = MAX_DIGITS,
) -> int:
    """The value of ``text`` (ASCII digits) within ``low``…``high``.

    Raises:
        BadInput: naming ``name``: not 1…``max_digits`` ASCII digits, or out of range.
    """
    if not is_decimal(text, max_digits=max_digits):
        raise BadInput("not a decimal number", field=name)
    assert isinstance(text, str)
    value = int(text)
    if value < low or (high is not None and value > high):
        bound = f"{low}…{high}" if high is not None else f"≥ {low}"
        raise BadInput(f"{value} is out of range ({bound})", field=name)
    return value
