"""Pure. JSON and TOML documents from outside (state files, profiles, reports, evidence).

``json.loads`` lets a ``UnicodeDecodeError`` (bytes that are not UTF-8), a ``RecursionError``
(arrays nested a few thousand deep) and infinite floats (``1e999``, ``NaN``, ``Infinity``; then
``int()`` raises ``OverflowError``) through to the caller. :func:`load_json` turns each of
them into the one-line :class:`~trelab.errors.BadInput` every other malformed input gets;
:func:`load_toml` does the same for ``tomllib`` (its arrays nest by recursion too).
"""

from __future__ import annotations

import json
import math
import tomllib
from typing import Any

from .errors import BadInput

__all__ = ["load_json", "load_toml"]


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_json(data: bytes | str, what: str) -> Any:
    """The document in ``data`` (UTF-8 when bytes).

    Raises:
        BadInput: not UTF-8, not JSON, nested too deep, or a number that is not finite.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError:
        raise BadInput(f"{what}: not UTF-8 text") from None
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what}: not JSON (line {exc.lineno}, column {exc.colno})") from None
    except ValueError:
        raise BadInput(f"{what}: a number is not finite") from None
    except RecursionError:
        raise BadInput(f"{what}: nested too deeply") from None


def load_toml(data: bytes | str, what: str) -> dict[str, Any]:
    """The TOML document in ``data`` (UTF-8 when bytes).

    Raises:
        BadInput: not UTF-8, not TOML, nested too deep, or a float that is not finite.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError:
        raise BadInput(f"{what}: not UTF-8 text") from None
    try:
        return tomllib.loads(text, parse_float=_finite)
    except tomllib.TOMLDecodeError as exc:  # names the position, never the content
        raise BadInput(f"{what}: not TOML ({str(exc).splitlines()[0]})") from None
    except ValueError:
        raise BadInput(f"{what}: a number is not finite") from None
    except RecursionError:
        raise BadInput(f"{what}: nested too deeply") from None
