"""Edge: TPM, HTTP, processes, clock. Provisioning throughput of one operator server with many
concurrent devices: the curve of provisions/s, latency and CPU against
the number of devices provisioning at once.

One real server, ``trelab network serve`` on a free loopback port, with a config made by
:func:`bench.provision_bench.operator_config`. For each concurrency level ``c``: ``c`` fresh
swtpm instances (manufactured for this run with :mod:`lab.swtpm`, as the bench TPM of
:mod:`bench.tres.tpm` is; MID slots are spent for good, so no level reuses a TPM) and ``c``
agent processes, one per TPM (processes, not threads: the GIL), each running
:func:`host.provision.provision` over :class:`protocol.client.HttpTransport` ``k`` times back to
back — what ``trelab provision`` does, without paying Python start-up per provisioning.
Agents import and open their TPM first, report ``ready``, and all start on one ``go``.

Every swtpm's EK certificates are signed by one manufacturer CA: the devices share one
``swtpm_localca`` state directory (its lock file serialises the signing; its serial counter
keeps serials unique), so the server trusts one bundle, and fresh swtpms have equal PCRs 0-7,
so one set of reference values fits them all.

Measured per level: wall time from the first provisioning's start to the last one's end
(``time.monotonic()``, one clock for all processes), successful provisionings per second,
latency per provisioning (median, p95), the agents' time in TPM calls, and CPU time of the
server (``/proc/PID/stat``), the agents (their own ``time.process_time()``) and the swtpms.
At the end the server is stopped and its store is counted: it must hold exactly as many
ACTIVE MIDs as the agents saw.

Every process started here (server, swtpms, agents) is stopped here by pid, also on Ctrl-C.
``python -m bench.provision_throughput`` is the agent process (internal).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from trelab.atomic import atomic_write_text
from trelab.errors import TrelabError, Unavailable

from .throughput import ProvisionSample, cpu_ticks, host_busy_ticks, summarize_level, verdict

__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_PER_DEVICE",
    "MATRIX_STORES",
    "MATRIX_WORKERS",
    "run_throughput",
    "run_throughput_matrix",
    "worker_main",
]

DEFAULT_LEVELS = (1, 2, 4, 8)
DEFAULT_PER_DEVICE = 3
MATRIX_STORES = ("sqlite", "postgres")
MATRIX_WORKERS = (1, 2)
_SHO = "sho-a"
_READY_TIMEOUT = 60.0  # a Python process importing tpm2-pytss on a loaded 2-core machine
_PER_PROVISION_TIMEOUT = 60.0
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) of a live process; None once it is gone."""
    try:
        return cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) / _TICK
    except (OSError, TrelabError):
        return None


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from each thread's ``children`` list)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of ``pid`` and all its live descendants (gunicorn's arbiter and workers,
    PostgreSQL's postmaster and backends); None once ``pid`` is gone."""
    own = _cpu_seconds(pid)
    if own is None:
        return None
    return own + sum(_tree_cpu_seconds(child) or 0.0 for child in _children(pid))


def _read_line(stream: IO[str], deadline: float, what: str) -> str:
    """One line from a child's pipe, or Unavailable once ``deadline`` (monotonic) passes."""
    remaining = deadline - time.monotonic()
    ready, _, _ = select.select([stream], [], [], max(remaining, 0.0))
    if not ready:
        raise Unavailable(f"{what}: no answer in time")
    return stream.readline()


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def _child_env() -> dict[str, str]:
    """The environment for server and agents, without the test hooks that would crash them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRELAB_TEST_")}


# ---- the processes ----------------------------------------------------------------------------


class _Device:
    """A fresh swtpm for one device: manufactured under ``directory`` with EK certificates
    from the shared CA in ``ca_private``, started on a free port pair, stopped by pid."""

    def __init__(self, directory: Path, ca_private: Path) -> None:
        from lab import swtpm

        self.paths = swtpm.SwtpmPaths(directory)
        self.paths.ca_dir.mkdir(parents=True)
        self.paths.localca_dir.symlink_to(ca_private, target_is_directory=True)
        swtpm.manufacture(self.paths)
        self.process: swtpm.SwtpmProcess | None = None

    def start(self) -> str:
        """Start it; returns its TCTI."""
        from lab import swtpm

        for attempt in range(3):
            try:
                self.process = swtpm.start(self.paths, swtpm.find_free_port_pair())
                break
            except swtpm.PortInUse:  # another process took the pair in between: next one
                if attempt == 2:
                    raise
        assert self.process is not None
        return swtpm.tcti(self.process.port)

    def export_ca(self) -> Path:
        """The manufacturer CA bundle, after checking this TPM's EK certificates chain to it."""
        from lab import swtpm

        assert self.process is not None
        return swtpm.export_ca(self.paths, swtpm.read_nv_certificates(self.process.port)).bundle

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        from lab import swtpm

        process, self.process = self.process, None
        if process is not None:
            swtpm.stop(self.paths, process.pid, process.start)


class _Server:
    """``trelab network serve`` on a free loopback port, as its own process (``workers``:
    under gunicorn with that many worker processes)."""

    def __init__(self, config: Path, store: str, log: Path, workers: int | None) -> None:
        argv = [sys.executable, "-m", "host.cli", "network", "serve", "--listen", "127.0.0.1:0"]
        argv += ["--config", str(config), "--store", store, "--json", "--plain-http"]
        argv += ["--workers", str(workers)] if workers is not None else []
        self.config, self.db, self.log = config, store, log
        with log.open("wb") as err:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
                env=_child_env(),
            )  # fmt: skip
        self.pid = self._proc.pid
        try:
            assert self._proc.stdout is not None
            line = _read_line(self._proc.stdout, time.monotonic() + _READY_TIMEOUT, "server")
            self.url: str = json.loads(line)["listening"]
        except (ValueError, KeyError, TypeError, Unavailable):
            self.stop()
            raise Unavailable(
                f"trelab network serve did not start: {_tail(log)}", fix=f"see {log}"
            ) from None
        self.responses: dict[str, int] | None = None

    def stop(self) -> None:
        """SIGTERM (finish requests in flight), wait; SIGKILL if it does not stop."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self._proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, _ = self._proc.communicate()
        with contextlib.suppress(ValueError, AttributeError):  # killed: no summary
            self.responses = json.loads(out or "").get("responses")  # what it printed last

    @property
    def running(self) -> bool:
        return self._proc.poll() is None


class _Agent:
    """One agent process provisioning ``count`` MIDs into one device's TPM (see
    :func:`worker_main`)."""

    def __init__(
        self, index: int, tcti: str, url: str, trust: Path, directory: Path, count: int
    ) -> None:
        self.index = index
        self.result_path = directory / "result.json"
        self.log = directory / "agent.log"
        argv = [sys.executable, "-m", "bench.provision_throughput", "--tpm", tcti]
        argv += ["--network", url, "--sho", _SHO, "--trust", str(trust)]
        argv += ["--registry", str(directory / "mids.json"), "--count", str(count)]
        argv += ["--out", str(self.result_path)]
        with self.log.open("wb") as err:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                env=_child_env(),
            )  # fmt: skip
        self.pid = self._proc.pid

    def wait_ready(self, deadline: float) -> None:
        """Raises:
        Unavailable: the agent exited or did not get ready (its last log line).
        """
        assert self._proc.stdout is not None
        try:
            line = _read_line(self._proc.stdout, deadline, f"agent {self.index}")
        except Unavailable:
            line = ""
        if line.strip() != "ready":
            raise Unavailable(f"agent {self.index} did not start: {_tail(self.log)}")

    def go(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write("go\n")
        self._proc.stdin.close()

    def finish(self, deadline: float) -> tuple[list[ProvisionSample], float, str | None]:
        """Wait for the agent; its samples, its CPU seconds, and what went wrong if it did."""
        try:
            code = self._proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            self.kill()
            return [], 0.0, f"agent {self.index}: killed, not done in time"
        try:
            doc = json.loads(self.result_path.read_text())
            samples = [ProvisionSample.from_json(self.index, s) for s in doc["samples"]]
            cpu = float(doc["cpu_seconds"])
        except (OSError, ValueError, KeyError, TypeError, TrelabError):
            return [], 0.0, f"agent {self.index}: exit {code}, no result ({_tail(self.log)})"
        return samples, cpu, None if code == 0 else f"agent {self.index}: exit {code}"

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()

    @property
    def running(self) -> bool:
        return self._proc.poll() is None


# ---- the run ----------------------------------------------------------------------------------


class _Run:
    """Owns every process of one throughput run and stops them all on close (by pid)."""

    def __init__(
        self,
        work: Path,
        say: Callable[[str], None],
        *,
        workers: int | None = None,
        store: str = "sqlite",
    ) -> None:
        self.work = work
        self.say = say
        self.workers = workers
        self.store_engine = store
        self.postgres: Any = None
        self.ca_private = work / "ca-private"  # swtpm_localca's state: CA keys, never exported
        self.ca_private.mkdir(mode=0o700)
        self.server: _Server | None = None
        self.devices: list[_Device] = []
        self.agents: list[_Agent] = []
        self.pids: list[int] = []  # everything started, for the caller to check afterwards
        self.config: Path | None = None

    def _device(self, name: str) -> _Device:
        device = _Device(self.work / "devices" / name, self.ca_private)
        self.devices.append(device)
        return device

    def start_server(self, first: _Device, tcti: str) -> None:
        from .provision_bench import operator_config

        bundle = first.export_ca()
        self.config = operator_config(tcti, bundle, self.work / "network")
        if self.store_engine == "postgres":
            from lab.postgres import PostgresServer

            self.postgres = PostgresServer(self.work / "postgres")
            self.postgres.ensure()
            location = self.postgres.url()
            self.say(f"throughput: PostgreSQL in {self.postgres.directory}")
        else:
            location = str(self.work / "network.db")
        self.server = _Server(self.config, location, self.work / "server.log", self.workers)
        self.pids.append(self.server.pid)
        self.say(f"throughput: server {self.server.url} (pid {self.server.pid})")

    def level(self, concurrency: int, per_device: int, tag: str = "c") -> dict[str, Any]:
        """Run one level on ``concurrency`` fresh devices; stops its swtpms and agents."""
        self.say(f"throughput: {concurrency} devices × {per_device} provisionings ({tag})")
        devices = [self._device(f"{tag}{concurrency}-d{i}") for i in range(concurrency)]
        tctis = []
        for device in devices:
            tctis.append(device.start())
            assert device.pid is not None
            self.pids.append(device.pid)
        if self.server is None:
            self.start_server(devices[0], tctis[0])
        assert self.server is not None and self.config is not None
        trust = self.config.parent / "device-trust.json"
        try:
            for i, tcti in enumerate(tctis):
                folder = self.work / "agents" / f"{tag}{concurrency}-d{i}"
                folder.mkdir(parents=True)
                agent = _Agent(i, tcti, self.server.url, trust, folder, per_device)
                self.agents.append(agent)
                self.pids.append(agent.pid)
            deadline = time.monotonic() + _READY_TIMEOUT
            for agent in self.agents:
                agent.wait_ready(deadline)
            before = self._cpu(devices)
            for agent in self.agents:
                agent.go()
            deadline = time.monotonic() + _PER_PROVISION_TIMEOUT * per_device * concurrency
            samples: list[ProvisionSample] = []
            agents_cpu = 0.0
            errors: list[str] = []
            for agent in self.agents:
                got, seconds, error = agent.finish(deadline)
                samples += got
                agents_cpu += seconds
                errors += [error] if error else []
            after = self._cpu(devices)
        finally:
            self.stop_agents()
            for device in devices:
                device.stop()
        cpu = {
            "server": after["server"] - before["server"],
            "agents": agents_cpu,
            "swtpm": after["swtpm"] - before["swtpm"],
            "host": after["host"] - before["host"],
        }
        if "postgres" in after:
            cpu["postgres"] = after["postgres"] - before["postgres"]
        return summarize_level(concurrency, per_device, samples, cpu, errors)

    def _cpu(self, devices: Sequence[_Device]) -> dict[str, float]:
        assert self.server is not None
        server = _tree_cpu_seconds(self.server.pid)
        if server is None:
            raise Unavailable(f"the server exited: {_tail(self.server.log)}")
        swtpms = [_cpu_seconds(d.pid) if d.pid else None for d in devices]
        host = host_busy_ticks(Path("/proc/stat").read_text()) / _TICK
        cpu = {"server": server, "swtpm": sum(s for s in swtpms if s is not None), "host": host}
        if self.postgres is not None:
            pid = self.postgres.status().pid
            cpu["postgres"] = (_tree_cpu_seconds(pid) or 0.0) if pid else 0.0
        return cpu

    def stop_agents(self) -> None:
        agents, self.agents = self.agents, []
        for agent in agents:
            agent.kill()

    def finish_server(self) -> dict[str, Any]:
        """Stop the server and count the MIDs in its store by state."""
        from network.config import load_config
        from network.store import Store

        assert self.server is not None and self.config is not None
        self.server.stop()
        store = Store(self.server.db, load_config(self.config).store_key)
        try:
            with store.transaction() as tx:
                states = [m.state for m in tx.mids()]
        finally:
            store.close()
        by_state = {s: states.count(s) for s in sorted(set(states))}
        return {
            "responses": self.server.responses,
            "mids_by_state": by_state,
            "active_mids": by_state.get("ACTIVE", 0),
        }

    def _postgres_cpu(self) -> float:
        pid = self.postgres.status().pid if self.postgres is not None else None
        return (_tree_cpu_seconds(pid) or 0.0) if pid else 0.0

    def server_side(
        self, workers: Sequence[int], provisionings: int, requests: int = 400
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """:mod:`bench.server_cpu`'s two passes on a fresh device of their own."""
        from .provision_bench import operator_config
        from .server_cpu import measure_server_alone, measure_server_cpu

        device = self._device("server-side")
        tcti = device.start()
        assert device.pid is not None
        self.pids.append(device.pid)
        folder = self.work / "server-side"
        try:
            config = operator_config(tcti, device.export_ca(), folder / "network")
            self.say(f"server CPU: {provisionings} provisionings in process, then profiled")
            cpu, recorded = measure_server_cpu(
                tcti, config, folder / "network.db", folder / "mids.json", provisionings
            )
        finally:
            device.stop()
        postgres = self.postgres

        def start(location: str, log: str, count: int) -> _Server:
            return _Server(config, location, Path(log), count)

        alone = measure_server_alone(
            recorded,
            start,
            _tree_cpu_seconds,
            folder,
            workers,
            store_url=postgres.create_database if postgres is not None else None,
            store_cpu=self._postgres_cpu if postgres is not None else None,
            say=self.say,
            requests=requests,
        )
        return cpu, alone

    def close(self) -> None:
        self.stop_agents()
        for device in self.devices:
            device.stop()
        if self.server is not None and self.server.running:
            self.server.stop()
        if self.postgres is not None:
            self.postgres.stop()


def _environment() -> dict[str, Any]:
    from .machine import cpu_model
    from .tres.tpm import swtpm_version

    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "swtpm": swtpm_version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }


@contextlib.contextmanager
def _workspace(work_dir: Path | None) -> Iterator[Path]:
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        yield Path(tempfile.mkdtemp(prefix="throughput-", dir=work_dir))
        return
    scratch = Path(tempfile.mkdtemp(prefix="trelab-throughput-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_throughput(
    levels: Sequence[int] = DEFAULT_LEVELS,
    per_device: int = DEFAULT_PER_DEVICE,
    *,
    work_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    started: list[int] | None = None,
    warmup: bool = True,
    workers: int | None = None,
    store: str = "sqlite",
    server_alone: Sequence[int] = (),
    profile_provisionings: int = 5,
    alone_requests: int = 400,
) -> dict[str, Any]:
    """Measure the curve (see the module docstring) and return the report's
    ``provisioning_throughput`` section (:func:`bench.schema.validate_throughput`). Files go to
    a fresh folder under ``work_dir`` (kept, for inspection) or a temporary one (removed).
    ``started`` collects the pid of every process started (all stopped on return).
    ``warmup``: one provisioning on a device of its own first, not counted in the curve, so
    the server's first requests (lazy imports, SQLite pages) do not land on level 1.
    ``workers``: serve under gunicorn with that many processes (default: the built-in server);
    ``store``: ``sqlite`` (a file in the run's folder) or ``postgres`` (a PostgreSQL of the
    run's own, :mod:`lab.postgres`, stopped at the end). ``server_alone``: worker counts for
    :mod:`bench.server_cpu` after the curve (the server's CPU per provisioning against the
    cryptography alone, on ``profile_provisionings`` provisionings, and the server alone under
    ``alone_requests`` fresh registrations at each worker count); empty: not run.
    Ctrl-C stops after the current level and returns the levels done, marked interrupted.

    Raises:
        BadInput: empty levels or ``per_device`` < 1.
        Unavailable: swtpm tools missing, or the server or an agent does not start.
    """
    from lab import swtpm
    from trelab.errors import BadInput

    if not levels or min(levels) < 1 or per_device < 1:
        raise BadInput("throughput: levels and provisionings per device must be ≥ 1")
    if store not in ("sqlite", "postgres"):
        raise BadInput(f"throughput: --store {store!r}: expected sqlite or postgres")
    swtpm.require_tools()
    if store == "postgres":
        from lab import postgres

        postgres.require_tools()
    say = progress or (lambda text: None)
    results: list[dict[str, Any]] = []
    warm: dict[str, Any] | None = None
    interrupted = False
    server_cpu: dict[str, Any] | None = None
    alone: dict[str, Any] | None = None
    with _workspace(work_dir) as work:
        run = _Run(work, say, workers=workers, store=store)
        try:
            if warmup:
                warm = run.level(1, 1, tag="warmup")
            for concurrency in levels:
                try:
                    results.append(run.level(concurrency, per_device))
                except KeyboardInterrupt:
                    interrupted = True
                    say("throughput: interrupted; keeping the levels done")
                    break
                last = results[-1]
                say(
                    f"throughput: c={concurrency}: {last['succeeded']}/{last['attempted']} in "
                    f"{last['wall_s']:.1f} s → {last['throughput_per_s']} /s"
                )
            server = run.finish_server() if run.server is not None else None
            if server_alone and not interrupted:
                server_cpu, alone = run.server_side(
                    server_alone, profile_provisionings, alone_requests
                )
        finally:
            run.close()
            if started is not None:
                started += run.pids
    section: dict[str, Any] = {
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "method": {
            "levels": list(levels),
            "per_device": per_device,
            "sho": _SHO,
            "server": (
                "`trelab network serve` on loopback, plain HTTP: "
                + (
                    f"gunicorn, {workers} sync worker processes"
                    if workers
                    else "one process, the built-in threaded WSGI server"
                )
                + (
                    "; store: PostgreSQL (the run's own cluster, fsync on)"
                    if store == "postgres"
                    else "; store: SQLite (WAL, synchronous=FULL)"
                )
            ),
            "workers": workers,
            "store": store,
            "devices": "one fresh swtpm per device (shared manufacturer CA), none reused "
            "across levels",
            "agents": "one process per device running host.provision.provision over HTTP, "
            "k provisionings back to back; all start together once ready",
            "warmup": "one provisioning on a device of its own before the levels, not in the curve"
            if warmup
            else "none",
            "wall": "first provisioning's start to last one's end (time.monotonic)",
            "latency": "per successful provisioning, agent side",
            "cpu": "server (arbiter and workers) and PostgreSQL (postmaster and backends) from "
            "/proc/PID/stat of the process tree; agents' own process_time; swtpms from "
            "/proc/PID/stat; cores_busy = their sum / wall; host = every process on the "
            "machine (/proc/stat) from go to the last agent's exit (others' load = host − ours)",
        },
        "environment": _environment(),
        "warmup": warm,
        "levels": results,
        "server": server or {"responses": None, "mids_by_state": {}, "active_mids": 0},
        "interrupted": interrupted,
    }
    if server_cpu is not None:
        section["server_cpu"] = server_cpu
    if alone is not None:
        section["server_alone"] = alone
    section["ok"], section["verdict"] = verdict(section)
    return section


def run_throughput_matrix(
    levels: Sequence[int],
    per_device: int,
    *,
    stores: Sequence[str] = MATRIX_STORES,
    worker_counts: Sequence[int] = MATRIX_WORKERS,
    work_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    started: list[int] | None = None,
    warmup: bool = True,
    server_alone: Sequence[int] = (),
    profile_provisionings: int = 5,
    alone_requests: int = 400,
) -> dict[str, Any]:
    """The curve of :func:`run_throughput` once per engine × worker count (each with its own
    server, store and fresh swtpms, the same levels, one after the other), side by side.
    Returns the first combination's section with ``matrix``: every combination's ``store``,
    ``workers``, ``levels``, ``server``, ``ok`` and ``verdict``; ``ok`` only if all are.
    ``server_alone`` (worker counts) runs once, after the last combination, on its engine.
    Ctrl-C keeps the combinations done.

    Raises:
        BadInput: empty stores or worker counts, or what :func:`run_throughput` refuses.
        Unavailable: as :func:`run_throughput`.
    """
    from trelab.errors import BadInput

    if not stores or not worker_counts:
        raise BadInput("throughput: at least one store and one worker count")
    combinations = [(store, workers) for store in stores for workers in worker_counts]
    say = progress or (lambda text: None)
    runs: list[dict[str, Any]] = []
    for i, (store, workers) in enumerate(combinations):
        last = i == len(combinations) - 1
        say(f"throughput: {store}, {workers} worker(s) ({i + 1}/{len(combinations)})")
        runs.append(
            run_throughput(
                levels,
                per_device,
                work_dir=work_dir,
                progress=progress,
                started=started,
                warmup=warmup,
                workers=workers,
                store=store,
                server_alone=server_alone if last else (),
                profile_provisionings=profile_provisionings,
                alone_requests=alone_requests,
            )
        )
        if runs[-1]["interrupted"]:
            break
    section = dict(runs[0])  # the first combination's curve, and all of them side by side
    section["matrix"] = [
        {
            "store": run["method"]["store"],
            "workers": run["method"]["workers"],
            "levels": run["levels"],
            "server": run["server"],
            "ok": run["ok"],
            "verdict": run["verdict"],
        }
        for run in runs
    ]
    for key in ("server_cpu", "server_alone"):
        if key in runs[-1]:
            section[key] = runs[-1][key]
    if "server_alone" in section:
        section["server_alone"] = {**section["server_alone"], "store": runs[-1]["method"]["store"]}
    section["interrupted"] = any(run["interrupted"] for run in runs)
    failed = [f"{r['store']} ×{r['workers']}" for r in section["matrix"] if not r["ok"]]
    section["ok"] = not failed and len(runs) == len(combinations)
    section["verdict"] = (
        f"{len(runs)} of {len(combinations)} engine × worker combinations run"
        + (
            f"; failed: {', '.join(failed)}"
            if failed
            else "; in each, every provisioning ACTIVE and the store agrees"
        )
        + (" (interrupted)" if section["interrupted"] else "")
    )
    return section


# ---- the agent process ------------------------------------------------------------------------


def worker_main(argv: Sequence[str] | None = None) -> int:
    """One device's agent: open the TPM, say ``ready``, wait for ``go`` on stdin, provision
    ``--count`` MIDs back to back, write the samples to ``--out``. A failed provisioning is a
    sample with its error (one line, no secrets), and the next one still runs."""
    parser = argparse.ArgumentParser(prog="python -m bench.provision_throughput")
    for option in ("--tpm", "--network", "--sho", "--registry", "--trust", "--out"):
        parser.add_argument(option, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)

    from host.provision import load_trust, provision
    from protocol.client import HttpTransport
    from tpm.connection import TpmConnection
    from tpm.registry import Registry

    trust = load_trust(args.trust)
    registry = Registry(args.registry)
    transport = HttpTransport(args.network, tls_ca=trust.tls_ca)
    samples: list[dict[str, Any]] = []
    with TpmConnection(args.tpm) as conn:
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1  # the parent gave up before the start
        cpu = time.process_time()
        for _ in range(args.count):
            start = time.monotonic()
            try:
                result = provision(
                    conn, registry, transport, trust, sho=args.sho, network=args.network
                )
            except TrelabError as exc:
                error = f"{type(exc).__name__}: {exc}"
                samples.append({"start": start, "end": time.monotonic(), "error": error})
                continue
            samples.append(
                {
                    "start": start,
                    "end": time.monotonic(),
                    "state": result.finished.state,
                    "tpm_seconds": result.timing.get("tpm_seconds"),
                }
            )
        cpu = time.process_time() - cpu
    atomic_write_text(Path(args.out), json.dumps({"samples": samples, "cpu_seconds": cpu}))
    return 0


if __name__ == "__main__":  # pragma: no cover - the agent process
    sys.exit(worker_main())
