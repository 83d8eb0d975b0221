"""Edge: TPM, lab, clock. End-to-end MID provisioning on the lab swtpm:
the host agent (:func:`host.provision.provision`, ECC P-256 AK and SRK, the RSA-2048 EK as the
package's transport key) against the real operator side, and the split of each run into

- **TPM time**: wall time inside ESAPI calls (every call through :func:`host.provision.instrumented`
  is timed: the TPM's work, ESYS marshaling, the TCP round trip to swtpm and tpm2-pytss's
  Python wrapper); the part inside the C ``Esys_*`` functions alone (``tpm_c``: TPM + ESYS +
  TCP, measured by wrapping tpm2-pytss's cffi ``lib`` for the run) is reported too, so the
  Python wrapper's share (``pytss_wrapper``) is visible;
- **operator time**: inside the operator side (``NetworkApp``: COSE signatures, MakeCredential,
  quote and receipt verification, package wrapping, SQLite commits with ``synchronous=FULL``);
- **agent time**: the rest — the host agent's own work (CBOR/COSE checks, journal writes with
  fsync, registry writes, Python around the TPM calls).

"Our overhead" is operator + agent time; the goal is ≤ 50 % of the TPM time (``overhead_ratio``
against ESAPI time, ``overhead_ratio_c`` against the C-level time). Each round is one
fresh provisioning (register → validate → package → import → receipt → activation) into a new
MID slot of the same TPM; the first round (cold imports, AK creation) is reported apart.

``run_provision_bench()`` returns a dict (JSON-ready); ``python -m bench.provision_bench``
prints it. :func:`operator_side` (config, keys, store, app, device trust for one TPM) is shared
with the harness's ``provisioning`` case (:mod:`bench.tres.tpm`); :func:`operator_config` (the
config alone) with the throughput bench (:mod:`bench.provision_throughput`).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OperatorSide", "operator_config", "operator_side", "run_provision_bench"]

PVA_PCRS = "sha256:0,1,2,3,4,5,6,7"  # the operator's default PCR selection (network.config)


@dataclass
class OperatorSide:
    """The in-process operator side of a provisioning bench on one TPM: ``app`` (a
    :class:`network.server.NetworkApp` over a fresh config and store) and the ``trust`` the
    device pins. ``close()`` closes the store."""

    app: Any
    trust: Any = field(repr=False)
    store: Any = field(repr=False)

    def close(self) -> None:
        self.store.close()


def operator_config(tcti: str, ca_bundle: str | Path, directory: Path) -> Path:
    """Write a fresh operator config into ``directory`` (keys, ``network.json``,
    ``device-trust.json``) whose DRF trusts ``ca_bundle`` (the TPM's manufacturer CA) and whose
    PVA reference values are the TPM's current PCRs 0-7 (read once here); returns its path.
    Shared by :func:`operator_side` (in process) and :mod:`bench.provision_throughput` (served
    by ``trelab network serve``).

    Raises:
        Unavailable: the TPM does not answer.
    """
    from network.config import init_config
    from tpm.connection import TpmConnection
    from tpm.pcrsel import parse_selection
    from tpm.quote import read_pcrs
    from tpm.verify import split_pcr_values

    selection = parse_selection(PVA_PCRS)
    with TpmConnection(tcti) as conn:
        reference = split_pcr_values(selection, read_pcrs(conn, selection))
    return init_config(directory, ca_bundle=ca_bundle, reference=reference)


def operator_side(tcti: str, ca_bundle: str | Path, base: Path) -> OperatorSide:
    """A fresh operator under ``base`` (``network/`` config and keys, ``network.db``), as
    :func:`operator_config` makes it, served in process.

    Raises:
        Unavailable: the TPM does not answer.
    """
    from host.agent import parse_device_trust
    from network.config import device_trust, load_config
    from network.server import NetworkApp
    from network.store import Store

    config = load_config(operator_config(tcti, ca_bundle, base / "network"))
    store = Store(base / "network.db", config.store_key)
    try:
        app = NetworkApp(config, store)
        trust = parse_device_trust(device_trust(config))
    except BaseException:
        store.close()
        raise
    return OperatorSide(app=app, trust=trust, store=store)


class _CTimer:
    """Times every C ``Esys_*`` call of tpm2-pytss (swaps the ESAPI's cffi library)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._swap: contextlib.AbstractContextManager[None] | None = None

    def __enter__(self) -> _CTimer:
        from tpm.tss import swapped_esys_library

        self._swap = swapped_esys_library(lambda lib: _LibProxy(lib, self))
        self._swap.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._swap is not None:
            self._swap.__exit__(None, None, None)
            self._swap = None


class _LibProxy:
    def __init__(self, lib: Any, timer: _CTimer) -> None:
        self._lib, self._timer = lib, timer

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._lib, name)
        if not (name.startswith("Esys_") and callable(attr)):
            return attr
        timer = self._timer

        def timed(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                return attr(*args)
            finally:
                timer.seconds += time.perf_counter() - start

        return timed


class _TimedTransport:
    """In-process transport to the app that accumulates the time spent in the operator side."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.requests = 0

    def post(self, endpoint: str, wire: bytes, *, grant: bytes | None = None) -> bytes:
        start = time.perf_counter()
        try:
            reply: bytes = self.inner.post(endpoint, wire, grant=grant)
            return reply
        finally:
            self.seconds += time.perf_counter() - start
            self.requests += 1


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def run_provision_bench(
    *,
    rounds: int = 10,
    lab_dir: str | Path | None = None,
    files_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Provision ``rounds`` (+1 warm-up) MIDs on a lab of its own (started in ``lab_dir`` or a
    temporary folder, and stopped) and return the timing split. The network store, the MID
    registry and the agent file go to a temporary folder under ``files_dir`` (default: the
    system's temp dir); on a tmpfs (``/dev/shm``) fsync is free, which shows what durability
    costs.

    Raises:
        Unavailable: the lab cannot start.
    """
    from host.provision import provision
    from lab.lab import Lab
    from protocol.client import InProcessTransport
    from tpm.connection import TpmConnection
    from tpm.registry import Registry

    say = progress or (lambda text: None)
    where = str(files_dir) if files_dir is not None else None
    with (
        tempfile.TemporaryDirectory(prefix="trelab-provision-bench-", dir=where) as scratch,
        tempfile.TemporaryDirectory(prefix="trelab-provision-lab-") as lab_tmp,
    ):
        base = Path(scratch)
        lab = Lab(Path(lab_dir) if lab_dir else Path(lab_tmp))
        status = lab.up()
        try:
            operator = operator_side(status.tcti, status.ca.bundle, base)
            app, trust = operator.app, operator.trust
            registry = Registry(base / "mids.json")
            runs: list[dict[str, float]] = []
            commands: dict[str, list[float]] = {}
            try:
                with TpmConnection(status.tcti) as conn, _CTimer() as c_timer:
                    for i in range(rounds + 1):
                        transport = _TimedTransport(InProcessTransport(app))
                        c_before = c_timer.seconds
                        start = time.perf_counter()
                        result = provision(
                            conn, registry, transport, trust, sho="sho-a", network="bench"
                        )
                        total = time.perf_counter() - start
                        tpm = result.timing["tpm_seconds"]
                        tpm_c = c_timer.seconds - c_before
                        runs.append(
                            {
                                "total": total,
                                "tpm": tpm,
                                "tpm_c": tpm_c,
                                "pytss_wrapper": tpm - tpm_c,
                                "operator": transport.seconds,
                                "agent": total - tpm - transport.seconds,
                                "tpm_commands": result.timing["tpm_commands"],
                                "requests": float(transport.requests),
                            }
                        )
                        if i > 0:
                            for name, (count, seconds) in result.tpm_commands.items():
                                entry = commands.setdefault(name, [0.0, 0.0])
                                entry[0] += count
                                entry[1] += seconds
                        say(f"round {i}: {total * 1000:.0f} ms")
            finally:
                operator.close()
        finally:
            lab.down()
    warm = runs[1:]
    tpm_med = statistics.median(r["tpm"] for r in warm)
    tpm_c_med = statistics.median(r["tpm_c"] for r in warm)
    ours = [r["operator"] + r["agent"] for r in warm]
    ours_c = [r["total"] - r["tpm_c"] for r in warm]
    top = sorted(commands.items(), key=lambda kv: -kv[1][1])[:12]
    return {
        "benchmark": "provisioning",
        "tre": "swtpm (lab), AK ECC P-256, SRK ECC P-256, EK RSA-2048 (transport key)",
        "transport": "in-process (NetworkApp)",
        "files": str(files_dir or tempfile.gettempdir()),
        "rounds": len(warm),
        "first_round_ms": round(runs[0]["total"] * 1000, 1),
        "total": _summary([r["total"] for r in warm]),
        "tpm": _summary([r["tpm"] for r in warm]),
        "tpm_c": _summary([r["tpm_c"] for r in warm]),
        "pytss_wrapper": _summary([r["pytss_wrapper"] for r in warm]),
        "operator": _summary([r["operator"] for r in warm]),
        "agent": _summary([r["agent"] for r in warm]),
        "ours": _summary(ours),
        "overhead_ratio": round(statistics.median(ours) / tpm_med, 3),
        "overhead_ratio_c": round(statistics.median(ours_c) / tpm_c_med, 3),
        "goal_ratio": 0.5,
        "tpm_commands_per_run": statistics.median(r["tpm_commands"] for r in warm),
        "requests_per_run": statistics.median(r["requests"] for r in warm),
        "top_tpm_commands": [
            {
                "command": name,
                "calls_per_run": round(count / len(warm), 1),
                "ms_per_run": round(seconds / len(warm) * 1000, 2),
            }
            for name, (count, seconds) in top
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.provision_bench [--rounds N] [--lab-dir DIR] [--files-dir DIR]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m bench.provision_bench",
        description="Time provisionings on a lab of its own and split them into TPM time and "
        "trelab's own; prints JSON.",
    )
    parser.add_argument("--rounds", type=int, default=10, help="timed provisionings (10)")
    parser.add_argument("--lab-dir", help="where the lab goes (default: a temporary folder)")
    parser.add_argument(
        "--files-dir", help="parent of the store/registry folder (/dev/shm: fsync is free)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds: must be ≥ 1")
    result = run_provision_bench(
        rounds=args.rounds,
        lab_dir=args.lab_dir,
        files_dir=args.files_dir,
        progress=lambda text: print(text, file=sys.stderr),
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
