"""The provisioning protocol both ends share: CBOR/COSE messages, the transition table, stored
records, errors and the device's transport. Pure except the HTTP transport."""

from __future__ import annotations

__all__: list[str] = []
