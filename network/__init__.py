"""network: the operator side of TR 33.812 remote MID provisioning (issue 5).

Pure cores: :mod:`network.messages` (CBOR/COSE messages, transcript binding),
:mod:`network.protocol` (the role-agnostic transition table and :class:`Session`),
:mod:`network.records` (stored records, the Ledger interface), :mod:`network.roles` (DRF, PVA,
DPF, SHO AuC, ICF). Edges: :mod:`network.trust` (tpm2-pytss marshaling, no TPM),
:mod:`network.store` (SQLite), :mod:`network.config` (files), :mod:`network.server` (HTTP app
and server), :mod:`network.client` (HTTP or in-process transport for the device side).
"""

from __future__ import annotations

__all__: list[str] = []
