"""Edge: which TREs the harness can reach here, each built by one factory.

A factory returns a provider or raises :class:`trelab.errors.Unavailable` with the reason; the
harness reports unreachable TREs as "not run" with that reason instead of dropping them. Rows:
the software reference (:mod:`.software`), the TPM rows (:mod:`.tpm`: ECB, CFB-only, use-gated,
sealed K on a bench swtpm; the same swtpm as each real part of
:mod:`firmware_stubs.tpm_proxy`; a physical TPM), the UICC rows (:mod:`.uicc`: the lab's USIM over
PC/SC and modem over AT+CSIM; a physical reader or modem). Lab rows need ``ctx.lab``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trelab.errors import TrelabError

from ..harness import TreProvider, TreSkipped
from .software import SoftwareTre
from .tpm import lab_tpm_factory, part_tpm_factory, physical_tpm_factory
from .uicc import (
    in_process_card_factory,
    lab_card_factory,
    lab_modem_factory,
    physical_modem_factory,
    physical_reader_factory,
)

__all__ = ["LAB_TRES", "TRE_FACTORIES", "LabContext", "build_providers"]


@dataclass(frozen=True)
class LabContext:
    """What a factory may use: the lab's status (None when no lab runs), run settings, and the
    MID registry of a physical TPM (None: the physical TPM row does not run)."""

    lab: Any
    subscribers: int
    quick: bool
    mid_registry: Path | None = None


Factory = Callable[[LabContext], TreProvider]


def _part_names() -> list[str]:
    from firmware_stubs.tpm_proxy.profiles import names

    return names()


TRE_FACTORIES: dict[str, Factory] = {
    "software (native kernel)": lambda ctx: SoftwareTre("native", subscribers=ctx.subscribers),
    "software (python kernel)": lambda ctx: SoftwareTre("python", subscribers=ctx.subscribers),
    # the lab's TPM rows run on one bench swtpm made for the run (bench/tres/tpm.py)
    "tpm (ecb, load-gated)": lab_tpm_factory("ecb"),
    "tpm (cfb-only)": lab_tpm_factory("cfb"),
    "tpm (use-gated policy)": lab_tpm_factory("use"),
    "tpm (sealed K)": lab_tpm_factory("sealed"),
    # the same bench swtpm presented as real parts by the TPM proxy (firmware_stubs/tpm_proxy)
    **{f"tpm part {name}": part_tpm_factory(name) for name in _part_names()},
    "usim over PC/SC (emulated)": lab_card_factory,
    # the emulated card's engine in this process, once per algorithm set (no reader)
    "usim in-process (milenage)": in_process_card_factory("milenage"),
    "usim in-process (hmac-sha256)": in_process_card_factory("hmac-sha256"),
    "modem over AT+CSIM (emulated)": lab_modem_factory,
    # hardware that `trelab lab detect` finds; "not run: reason" when absent
    "tpm (physical)": physical_tpm_factory,
    "usim over PC/SC (physical reader)": physical_reader_factory,
    "modem over AT+CSIM (physical)": physical_modem_factory,
}


#: The rows the lab itself provides: when the lab runs and one of them cannot, the lab is
#: damaged (a card whose K was rotated, a crashed part) and the run proves nothing for it.
LAB_TRES = frozenset(
    {
        "tpm (ecb, load-gated)",
        "tpm (cfb-only)",
        "tpm (use-gated policy)",
        "tpm (sealed K)",
        "usim over PC/SC (emulated)",
        "modem over AT+CSIM (emulated)",
    }
)


def build_providers(
    ctx: LabContext, selected: list[str] | None = None
) -> tuple[list[TreProvider], list[TreSkipped]]:
    """Providers for the selected TREs (``--tre``: names or name prefixes; default all).
    Interrupted half-way (Ctrl-C during a TPM manufacture), it closes what it built."""
    providers: list[TreProvider] = []
    skipped: list[TreSkipped] = []
    try:
        for name, factory in TRE_FACTORIES.items():
            if selected and not any(name == s or name.startswith(s) for s in selected):
                continue
            try:
                providers.append(factory(ctx))
            except TrelabError as exc:
                skipped.append(TreSkipped(name, str(exc)))
    except BaseException:
        for provider in providers:
            provider.close()
        raise
    return providers, skipped
