"""Edge: which TREs the harness can reach here, each built by one factory.

A factory returns a provider or raises :class:`trelab.errors.Unavailable` with the reason; the
harness reports unreachable TREs as "not run" with that reason instead of dropping them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trelab.errors import TrelabError

from ..harness import TreProvider, TreSkipped
from .software import SoftwareTre

__all__ = ["TRE_FACTORIES", "LabContext", "build_providers"]


@dataclass(frozen=True)
class LabContext:
    """What a factory may use: the lab's status (None when no lab runs) and run settings."""

    lab: Any
    subscribers: int
    quick: bool


Factory = Callable[[LabContext], TreProvider]

TRE_FACTORIES: dict[str, Factory] = {
    "software (native kernel)": lambda ctx: SoftwareTre("native", subscribers=ctx.subscribers),
    "software (python kernel)": lambda ctx: SoftwareTre("python", subscribers=ctx.subscribers),
}


def build_providers(
    ctx: LabContext, selected: list[str] | None = None
) -> tuple[list[TreProvider], list[TreSkipped]]:
    """Providers for the selected TREs (``--tre``: names or name prefixes; default all)."""
    providers: list[TreProvider] = []
    skipped: list[TreSkipped] = []
    for name, factory in TRE_FACTORIES.items():
        if selected and not any(name == s or name.startswith(s) for s in selected):
            continue
        try:
            providers.append(factory(ctx))
        except TrelabError as exc:
            skipped.append(TreSkipped(name, str(exc)))
    return providers, skipped
