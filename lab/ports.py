"""Edge: /proc. Who holds a TCP port on this host, keeping the kernel from handing lab ports
out as ephemeral ones, and where to look for ports to listen on.

vpcd listens on fixed ports (35963, 35964) that lie inside Linux's default ephemeral range
(32768–60999). Any client socket the kernel gave one of them — a swtpm TCTI connection, of
which a benchmark opens thousands, lingering 60 s in TIME_WAIT — makes vpcd's ``bind`` fail
with "Address already in use" and pcscd comes up without the Virtual PCD reader. Two remedies,
both here: reserve the ports (``net.ipv4.ip_local_reserved_ports``, so the kernel never picks
them as a client's local port), and before starting pcscd, look for sockets still on them and
wait for TIME_WAIT to end, saying so.

The same sockets decide where a lab listens. A TIME_WAIT left by a client socket (opened
without SO_REUSEADDR, as every TCTI connection is) blocks ``bind`` on its port even with
SO_REUSEADDR, and after a TPM-heavy run tens of thousands of them cover the ephemeral range —
so a swtpm's port pair (P and P + 1) picked there is found only by luck.
:func:`pair_candidates` lists the pairs outside the ephemeral range (and off the reserved
ports), where no client socket ever lands; scanning them all finds a free pair whenever there
is one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "LOCAL_PORT_RANGE_FILE",
    "RESERVED_PORTS_FILE",
    "describe_holders",
    "ephemeral_range",
    "pair_candidates",
    "parse_port_ranges",
    "reserve_ports",
    "sockets_on",
]

RESERVED_PORTS_FILE = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
LOCAL_PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_EPHEMERAL = range(32768, 61000)  # Linux's default ip_local_port_range
_LISTEN_LOW = 10000  # below: well-known services' registered ports
_PROC_TCP = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
    "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
    "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}  # fmt: skip


def sockets_on(ports: Iterable[int]) -> dict[int, Counter[str]]:
    """TCP sockets whose *local* port is one of ``ports``, counted by state (from
    /proc/net/tcp and tcp6); ports nobody holds are absent."""
    wanted = set(ports)
    found: dict[int, Counter[str]] = {}
    for table in _PROC_TCP:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4:
                continue
            port = int(fields[1].rpartition(":")[2], 16)
            if port in wanted:
                found.setdefault(port, Counter())[_TCP_STATES.get(fields[3], fields[3])] += 1
    return found


def describe_holders(holders: dict[int, Counter[str]]) -> str:
    """``port 35963: 3 TIME_WAIT, 1 ESTABLISHED`` for a message."""
    return "; ".join(
        f"port {port}: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        for port, states in sorted(holders.items())
    )


def parse_port_ranges(text: str) -> set[int]:
    """``"35963-35964,8080"`` → the ports (the kernel's list syntax)."""
    ports: set[int] = set()
    for part in text.replace("\n", "").split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        start = int(low, 10)
        ports.update(range(start, int(high or low, 10) + 1))
    return ports


def _format_ranges(ports: set[int]) -> str:
    out: list[str] = []
    for port in sorted(ports):
        if out and "-" in out[-1] and int(out[-1].rpartition("-")[2]) == port - 1:
            out[-1] = f"{out[-1].partition('-')[0]}-{port}"
        elif out and "-" not in out[-1] and int(out[-1]) == port - 1:
            out[-1] = f"{out[-1]}-{port}"
        else:
            out.append(str(port))
    return ",".join(out)


def reserve_ports(ports: Iterable[int], path: Path = RESERVED_PORTS_FILE) -> str | None:
    """Add ``ports`` to the kernel's reserved ports (kept: whatever else is reserved).
    Returns what was done — None when they already were reserved — or why it could not be
    (not root, read-only /proc): then the caller's wait for free ports is the remedy left."""
    wanted = set(ports)
    try:
        current = parse_port_ranges(path.read_text())
    except (OSError, ValueError):
        return f"cannot read {path}: ports {_format_ranges(wanted)} not reserved"
    if wanted <= current:
        return None
    try:
        path.write_text(_format_ranges(current | wanted) + "\n")
    except OSError as exc:
        return (
            f"could not reserve ports {_format_ranges(wanted)} in {path} ({exc.strerror}); "
            f"as root: sysctl -w net.ipv4.ip_local_reserved_ports={_format_ranges(current | wanted)}"
        )
    return (
        f"reserved ports {_format_ranges(wanted)} (net.ipv4.ip_local_reserved_ports): "
        "the kernel no longer gives them to client sockets"
    )


def ephemeral_range(path: Path = LOCAL_PORT_RANGE_FILE) -> range:
    """The ports the kernel gives client sockets (``net.ipv4.ip_local_port_range``), or
    Linux's default range when the file cannot be read."""
    try:
        low, high = (int(field, 10) for field in path.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return range(low, high + 1) if 0 < low <= high < 65536 else _DEFAULT_EPHEMERAL


def pair_candidates(
    start: int,
    *,
    ephemeral: range | None = None,
    reserved: Iterable[int] | None = None,
) -> list[int]:
    """Every P such that P and P + 1 lie in 10000..65535, outside ``ephemeral`` (default: the
    kernel's) and off the ``reserved`` ports (default: the kernel's reserved list) — each once,
    in a rotation beginning near ``start`` (callers pass something of their own, so concurrent
    ones rarely try the same pair first). When the ephemeral range leaves no such pair, the
    pairs inside it come last: a machine set up so still gets every pair tried."""
    busy = ephemeral if ephemeral is not None else ephemeral_range()
    if reserved is None:
        try:
            reserved = parse_port_ranges(RESERVED_PORTS_FILE.read_text())
        except (OSError, ValueError):
            reserved = ()
    avoid = set(reserved)
    usable = [p for p in range(_LISTEN_LOW, 65535) if p not in avoid and p + 1 not in avoid]
    outside = [p for p in usable if p not in busy and p + 1 not in busy]
    inside = [p for p in usable if p in busy or p + 1 in busy]
    if not outside:
        outside, inside = inside, []
    first = start % len(outside) if outside else 0
    return outside[first:] + outside[:first] + inside
