"""network: the operator side of TR 33.812 remote MID provisioning (DRF, PVA, DPF, SHO AuC, ICF).

Pure core: :mod:`network.roles` (the roles over the shared :mod:`protocol`). Edges:
:mod:`network.trust` (tpm2-pytss marshaling, no TPM), :mod:`network.store` (SQLite),
:mod:`network.config` (files), :mod:`network.server` (HTTP app and server),
:mod:`network.transfer` (moving subscriptions between operators). The device side imports
:mod:`protocol`, never this package.
"""

from __future__ import annotations

__all__: list[str] = []
