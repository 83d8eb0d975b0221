"""Pure. The provisioning-throughput curve: what one operator server
does with ``c`` devices provisioning at once, from what the agents and ``/proc`` reported.

:mod:`bench.provision_throughput` runs the processes and hands the raw numbers here; this
module turns them into one level of the curve (provisions/s, latency median and p95, CPU time
by process kind, cores busy) and parses the ``--levels`` option and ``/proc/PID/stat``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trelab.digits import is_decimal
from trelab.errors import BadInput

from .stats import median, percentile

__all__ = [
    "MAX_LEVEL",
    "ProvisionSample",
    "cpu_ticks",
    "host_busy_ticks",
    "parse_levels",
    "summarize_level",
    "verdict",
]

MAX_LEVEL = 64  # devices at once: each is an swtpm and an agent process


@dataclass(frozen=True)
class ProvisionSample:
    """One provisioning by one device, as its agent process reported it: when it started and
    ended (``time.monotonic()``, one clock for every process on the host), the MID state it
    reached, the agent's time inside TPM calls, or why it failed."""

    device: int
    start: float
    end: float
    state: str | None = None
    tpm_seconds: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.state == "ACTIVE"

    @classmethod
    def from_json(cls, device: int, doc: Mapping[str, Any]) -> ProvisionSample:
        """Raises:
        BadInput: a field is missing or of the wrong type (a broken worker).
        """
        try:
            start, end = float(doc["start"]), float(doc["end"])
        except (KeyError, TypeError, ValueError):
            raise BadInput("worker sample: start/end missing or not numbers") from None
        state, error, tpm = doc.get("state"), doc.get("error"), doc.get("tpm_seconds")
        if not isinstance(state, str | None) or not isinstance(error, str | None):
            raise BadInput("worker sample: state/error must be strings")
        if not isinstance(tpm, int | float | None) or isinstance(tpm, bool):
            raise BadInput("worker sample: tpm_seconds must be a number")
        return cls(device, start, end, state, None if tpm is None else float(tpm), error)


def parse_levels(text: str) -> tuple[int, ...]:
    """``"1,2,4,8"`` → (1, 2, 4, 8): distinct concurrency levels, ascending.

    Raises:
        BadInput: not a comma-separated list of integers in 1..MAX_LEVEL.
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(is_decimal(p) for p in parts):
        raise BadInput(f"{text!r}: expected comma-separated integers, e.g. 1,2,4,8", field="levels")
    levels = sorted({int(p) for p in parts})
    if levels[0] < 1 or levels[-1] > MAX_LEVEL:
        raise BadInput(f"{text!r}: each level must be within 1..{MAX_LEVEL}", field="levels")
    return tuple(levels)


def cpu_ticks(stat: str) -> int:
    """utime + stime (clock ticks, all threads) from the text of ``/proc/PID/stat``.

    Raises:
        BadInput: not that file's layout.
    """
    # comm (field 2) may hold spaces and ')': the fields after it start after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    if (
        ")" not in stat
        or len(fields) < 13
        or not (is_decimal(fields[11]) and is_decimal(fields[12]))
    ):
        raise BadInput("not a /proc/PID/stat line")
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 overall


def host_busy_ticks(stat: str) -> int:
    """Clock ticks all CPUs spent busy (not idle, not waiting for I/O) since boot, from the
    text of ``/proc/stat``: what every process on the host used, ours and others'.

    Raises:
        BadInput: not that file's layout.
    """
    first = stat.split("\n", 1)[0].split()
    if len(first) < 6 or first[0] != "cpu" or not all(is_decimal(f) for f in first[1:]):
        raise BadInput("not a /proc/stat cpu line")
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    ticks = [int(f) for f in first[1:9]]
    return sum(ticks) - ticks[3] - ticks[4]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def summarize_level(
    concurrency: int,
    per_device: int,
    samples: Sequence[ProvisionSample],
    cpu_seconds: Mapping[str, float],
    errors: Iterable[str] = (),
) -> dict[str, Any]:
    """One point of the curve. Wall time runs from the first provisioning's start to the last
    one's end (process start-up and shut-down excluded); throughput counts the successful
    provisionings in it; latency is per provisioning (successful ones); ``cores_busy`` is the
    CPU time of server, agents, swtpms (and PostgreSQL, when it is the store) over the wall
    time (at most the machine's cores)."""
    good = [s for s in samples if s.ok]
    wall = max(s.end for s in samples) - min(s.start for s in samples) if samples else 0.0
    latencies = [s.end - s.start for s in good]
    tpm = [s.tpm_seconds for s in good if s.tpm_seconds is not None]
    cpu = {name: round(value, 2) for name, value in cpu_seconds.items()}
    ours = sum(cpu_seconds.get(name, 0.0) for name in ("server", "agents", "swtpm", "postgres"))
    problems = list(errors) + [
        f"device {s.device}: {s.error or f'ended in state {s.state}'}" for s in samples if not s.ok
    ]
    return {
        "concurrency": concurrency,
        "per_device": per_device,
        "attempted": concurrency * per_device,
        "succeeded": len(good),
        "failed": concurrency * per_device - len(good),
        "states": dict(sorted(Counter(s.state or "none" for s in samples).items())),
        "wall_s": round(wall, 3),
        "throughput_per_s": round(len(good) / wall, 3) if wall > 0 else None,
        "latency_ms": (
            {
                "median": _ms(median(latencies)),
                "p95": _ms(percentile(latencies, 95)),
                "min": _ms(min(latencies)),
                "max": _ms(max(latencies)),
            }
            if latencies
            else None
        ),
        "tpm_ms_median": _ms(median(tpm)) if tpm else None,
        "cpu_s": cpu,
        "cores_busy": round(ours / wall, 2) if wall > 0 else None,
        "server_cpu_ms_per_provisioning": (
            _ms(cpu_seconds["server"] / len(good)) if good and "server" in cpu_seconds else None
        ),
        "errors": problems,
    }


def verdict(section: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether every provisioning (warm-up included) ended ACTIVE, the server's store holds
    exactly as many ACTIVE MIDs and no Ctrl-C cut the run short, and one line saying so."""
    levels = section["levels"]
    warm = [section["warmup"]] if section.get("warmup") else []
    attempted = sum(level["attempted"] for level in levels)
    succeeded = sum(level["succeeded"] for level in levels)
    warmed = sum(level["succeeded"] for level in warm)
    active = section["server"]["active_mids"]
    ok = bool(levels) and succeeded == attempted and active == succeeded + warmed
    ok = ok and not section.get("interrupted")  # a curve cut short is not the curve asked for
    if warm and warm[0]["failed"]:
        ok = False
    text = (
        f"provisioning throughput: {succeeded}/{attempted} provisionings ACTIVE at "
        f"{len(levels)} levels ({', '.join(str(level['concurrency']) for level in levels)}); "
        f"server store: {active} ACTIVE MIDs" + (f" ({warmed} from the warm-up)" if warm else "")
    )
    if section.get("interrupted"):
        text += " (interrupted)"
    return ok, text
