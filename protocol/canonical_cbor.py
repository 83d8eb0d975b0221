"""Deterministically encoded CBOR (RFC 8949 §4.2) through one reused encoder per thread.

``cbor2.dumps(value, canonical=True)`` builds a new encoder for every call, and building one
costs several times what encoding a message-sized value does; the operator encodes dozens of
small values per request (envelopes, signature structures, store rows, audit entries). The
bytes are exactly ``cbor2.dumps(value, canonical=True)``'s: same encoder, same options.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import cbor2

__all__ = ["dumps"]


class _Encoders(threading.local):
    """This thread's encoder and its buffer (an encoder is not safe to share between threads)."""

    buffer: io.BytesIO | None = None
    encoder: cbor2.CBOREncoder | None = None


_LOCAL = _Encoders()


def dumps(value: Any) -> bytes:
    """``value`` as deterministically encoded CBOR (same bytes as ``cbor2.dumps(value,
    canonical=True)``).

    Raises:
        cbor2.CBOREncodeError: a value CBOR cannot carry (as ``cbor2.dumps``).
    """
    local = _LOCAL
    buffer, encoder = local.buffer, local.encoder
    if buffer is None or encoder is None:
        buffer = io.BytesIO()
        encoder = cbor2.CBOREncoder(buffer, canonical=True)
        local.buffer, local.encoder = buffer, encoder
    buffer.seek(0)
    buffer.truncate()
    try:
        encoder.encode(value)
    except BaseException:
        local.buffer = local.encoder = None  # whatever state a failed encode left: start afresh
        raise
    return buffer.getvalue()
