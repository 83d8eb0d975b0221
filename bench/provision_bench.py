"""Edge: TPM, lab, clock, filesystem. End-to-end MID provisioning on the lab swtpm:
the host agent (:func:`host.provision.provision`, ECC P-256 AK and SRK, the RSA-2048 EK as the
package's transport key) against the real operator side, once per client layer in the same
run — ``lean`` (the sessions of credential activation, import and the lifecycle writes on
:mod:`tpm.lean`) and ``esys`` (the same commands through ESYS: the labelled reference) — and
the split of each run into

- **TPM time**: wall time inside the connection's transport (:meth:`tpm.tss.Transport.observe`):
  each command's bytes out to swtpm and its response back, whichever layer built them;
- **fsync time**: each fsync and rename of the agent's durable writes (journal, MID registry;
  :func:`trelab.atomic.observe_fsync`);
- **operator time**: inside the operator side (``NetworkApp``: COSE signatures, MakeCredential,
  quote and receipt verification, package wrapping, SQLite commits with ``synchronous=FULL``
  — SQLite's own fsyncs happen in C and stay in this part);
- **agent time**: the rest — the host agent's own work (CBOR/COSE checks, the client layer's
  session HMACs and marshalling, registry JSON, Python around the TPM calls).

"Our own time" is agent + operator; the goal is ≤ 0.5 × (TPM + fsync) (``own_ratio``; the
agent alone: ``agent_ratio``). Each round is one fresh provisioning (register → validate →
package → import → receipt → activation) into a new MID slot of the same TPM; rounds alternate
the layers (the order flips every round), and each layer's first run (cold caches, AK
creation) is a warm-up reported apart.

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


LAYERS = ("lean", "esys")


def _row(
    layer: str, runs: list[dict[str, float]], commands: dict[str, list[float]]
) -> dict[str, Any]:
    """One layer's medians and ratios over its timed runs."""
    warm = runs[1:]
    own = [r["operator"] + r["agent"] for r in warm]
    base = [r["tpm"] + r["fsync"] for r in warm]
    top = sorted(commands.items(), key=lambda kv: -kv[1][1])[:12]
    return {
        "layer": layer,
        "label": "lean layer" if layer == "lean" else "ESYS (reference)",
        "rounds": len(warm),
        "first_round_ms": round(runs[0]["total"] * 1000, 1),
        "total": _summary([r["total"] for r in warm]),
        "tpm": _summary([r["tpm"] for r in warm]),
        "fsync": _summary([r["fsync"] for r in warm]),
        "operator": _summary([r["operator"] for r in warm]),
        "agent": _summary([r["agent"] for r in warm]),
        "own": _summary(own),
        # per-run ratios, then the median: each run's parts come from the same moment
        "own_ratio": round(statistics.median(o / b for o, b in zip(own, base, strict=True)), 3),
        "agent_ratio": round(
            statistics.median(r["agent"] / (r["tpm"] + r["fsync"]) for r in warm), 3
        ),
        "tpm_commands_per_run": statistics.median(r["tpm_commands"] for r in warm),
        "fsyncs_per_run": statistics.median(r["fsyncs"] for r in warm),
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


def run_provision_bench(
    *,
    rounds: int = 10,
    layers: tuple[str, ...] = LAYERS,
    lab_dir: str | Path | None = None,
    files_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Provision ``rounds`` (+1 warm-up) MIDs per layer of ``layers`` on a lab of its own
    (started in ``lab_dir`` or a temporary folder, and stopped) and return the timing split,
    one row per layer. The network store, the MID registry and the agent file go to a
    temporary folder under ``files_dir`` (default: the system's temp dir); on a tmpfs
    (``/dev/shm``) fsync is free, which shows what durability costs.

    Raises:
        BadInput: an unknown layer.
        Unavailable: the lab cannot start.
    """
    from host.provision import provision
    from lab.lab import Lab
    from protocol.client import InProcessTransport
    from tpm.connection import TpmConnection
    from tpm.registry import Registry
    from trelab.errors import BadInput

    if not layers or any(layer not in LAYERS for layer in layers):
        raise BadInput(f"layers: each one of {', '.join(LAYERS)}", field="layer")
    say = progress or (lambda text: None)
    where = str(files_dir) if files_dir is not None else None
    runs: dict[str, list[dict[str, float]]] = {layer: [] for layer in layers}
    commands: dict[str, dict[str, list[float]]] = {layer: {} for layer in layers}
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
            try:
                with TpmConnection(status.tcti) as conn:
                    for i in range(rounds + 1):
                        order = layers if i % 2 == 0 else tuple(reversed(layers))
                        for layer in order:
                            transport = _TimedTransport(InProcessTransport(app))
                            split = _Split(conn.transport)
                            start = time.perf_counter()
                            with split:
                                done = provision(
                                    conn, registry, transport, trust, sho="sho-a",
                                    network="bench", layer=layer,  # type: ignore[arg-type]
                                )  # fmt: skip
                            total = time.perf_counter() - start
                            tpm, fsync = split.tpm, split.fsync
                            runs[layer].append(
                                {
                                    "total": total,
                                    "tpm": tpm,
                                    "fsync": fsync,
                                    "operator": transport.seconds,
                                    "agent": total - tpm - fsync - transport.seconds,
                                    "tpm_commands": float(split.commands),
                                    "fsyncs": float(split.fsyncs),
                                    "requests": float(transport.requests),
                                }
                            )
                            if i > 0:
                                for name, (count, seconds) in done.tpm_commands.items():
                                    entry = commands[layer].setdefault(name, [0.0, 0.0])
                                    entry[0] += count
                                    entry[1] += seconds
                            say(f"round {i} {layer}: {total * 1000:.0f} ms")
            finally:
                operator.close()
        finally:
            lab.down()
    rows = [_row(layer, runs[layer], commands[layer]) for layer in layers]
    result: dict[str, Any] = {
        "benchmark": "provisioning",
        "tre": "swtpm (lab), AK ECC P-256, SRK ECC P-256, EK RSA-2048 (transport key)",
        "transport": "in-process (NetworkApp)",
        "files": str(files_dir or tempfile.gettempdir()),
        "goal_ratio": 0.5,
        "rows": rows,
    }
    if len(rows) == 2:
        lean_row, esys_row = rows if rows[0]["layer"] == "lean" else rows[::-1]
        result["lean_over_esys"] = {
            "own": round(lean_row["own"]["median_ms"] / esys_row["own"]["median_ms"], 3),
            "agent": round(lean_row["agent"]["median_ms"] / esys_row["agent"]["median_ms"], 3),
            "total": round(lean_row["total"]["median_ms"] / esys_row["total"]["median_ms"], 3),
        }
    return result


class _Split:
    """Inside the block: the time of every TPM command in the transport and of every fsync
    and rename of :mod:`trelab.atomic`, and how many of each."""

    def __init__(self, transport: Any) -> None:
        self.tpm = self.fsync = 0.0
        self.commands = self.fsyncs = 0
        self._transport = transport
        self._scope = contextlib.ExitStack()

    def _command(self, event: Any) -> None:
        self.tpm += event.seconds
        self.commands += 1

    def _durable(self, step: Callable[[], None]) -> None:
        start = time.perf_counter()
        try:
            step()
        finally:
            self.fsync += time.perf_counter() - start
            self.fsyncs += 1

    def __enter__(self) -> _Split:
        from trelab.atomic import observe_fsync

        self._scope.enter_context(self._transport.observe(self._command))
        self._scope.enter_context(observe_fsync(self._durable))
        return self

    def __exit__(self, *exc: object) -> None:
        self._scope.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.provision_bench [--rounds N] [--layer lean|esys|both] [--lab-dir DIR]
    [--files-dir DIR]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m bench.provision_bench",
        description="Time provisionings on a lab of its own and split them into TPM time, "
        "fsync time and trelab's own, per TPM client layer; prints JSON.",
    )
    parser.add_argument("--rounds", type=int, default=10, help="timed provisionings (10)")
    parser.add_argument("--lab-dir", help="where the lab goes (default: a temporary folder)")
    parser.add_argument(
        "--files-dir", help="parent of the store/registry folder (/dev/shm: fsync is free)"
    )
    parser.add_argument(
        "--layer",
        choices=(*LAYERS, "both"),
        default="both",
        help="client layer of the TPM sessions: lean, esys (the reference) or both, "
        "alternating in one run (default)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds: must be ≥ 1")
    result = run_provision_bench(
        rounds=args.rounds,
        layers=LAYERS if args.layer == "both" else (args.layer,),
        lab_dir=args.lab_dir,
        files_dir=args.files_dir,
        progress=lambda text: print(text, file=sys.stderr),
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
