"""Edge: processes, HTTP. The operator application (:class:`network.server.NetworkApp`) served by
gunicorn with several worker processes: what ``trelab network serve --workers N`` runs.

gunicorn's arbiter binds the listening socket, forks ``N`` sync workers (one request at a time
each; a worker that dies is replaced) and does what a production server does: limits on the
request line, header count and header size, a worker timeout, graceful shutdown (SIGTERM: stop
accepting, let requests in flight finish within ``graceful_timeout``, then stop) and an access
log line per request — client, method, path, status, size and duration, never bodies, keys or
grants. Each worker opens its own store connection after the fork (``make_app`` runs in the
worker): the store, not the process, is what workers share, so a retry may land on any of
them. Response counts live in shared memory, so the arbiter can report them at the end.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from network.server import NetworkApp, ResponseCounts

__all__ = ["ACCESS_FORMAT", "MAX_WORKERS", "SharedCounts", "WorkerLimits", "serve_workers"]

MAX_WORKERS = 64
_STATUSES = 600  # HTTP status codes index the counters directly


class SharedCounts(ResponseCounts):
    """Response counts in memory shared by the arbiter and its forked workers (a worker
    killed mid-request keeps the counts it had added)."""

    def __init__(self) -> None:
        super().__init__()
        self._shared = multiprocessing.get_context("fork").Array(ctypes.c_long, _STATUSES)

    def add(self, status: int) -> None:
        if 0 <= status < _STATUSES:
            with self._shared.get_lock():
                self._shared[status] += 1

    def snapshot(self) -> dict[int, int]:
        with self._shared.get_lock():
            return {code: n for code, n in enumerate(self._shared[:]) if n}


class WorkerLimits:
    """What gunicorn enforces before the application sees a request (its names)."""

    timeout = 30  # a worker silent this long is killed and replaced
    graceful_timeout = 30  # SIGTERM: requests in flight get this long to finish
    limit_request_line = 4094
    limit_request_fields = 32
    limit_request_field_size = 8190
    backlog = 256


#: h client, m method, U path (no query string), s status, B body bytes, M duration in ms
ACCESS_FORMAT = "%(h)s %(m)s %(U)s %(s)s %(B)s %(M)sms"


def _log_config(level: str) -> dict[str, Any]:
    """gunicorn's logging, all of it on stderr (stdout carries the ready and summary lines)."""
    stderr = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "WARNING", "handlers": ["errors"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["errors"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
            "trelab": {"level": "INFO", "handlers": ["errors"], "propagate": False},
        },
        "handlers": {
            "errors": {**stderr, "formatter": "generic"},
            "access": {**stderr, "formatter": "access"},
        },
        "formatters": {
            "generic": {"format": "[%(process)d] %(levelname)s %(name)s: %(message)s"},
            "access": {"format": "[%(process)d] %(message)s"},
        },
    }


def serve_workers(
    make_app: Callable[[SharedCounts], NetworkApp],
    host: str,
    port: int,
    *,
    workers: int,
    ready: Callable[[str], None] | None = None,
    tls: tuple[Path, Path] | None = None,
    log_level: str = "info",
) -> dict[int, int]:
    """Serve until SIGTERM (graceful) or SIGINT (quick), then return the responses served by
    status. ``make_app`` runs once in each worker after the fork; ``tls`` is (certificate
    chain, private key) PEM files.

    Raises:
        Unavailable: the address is taken, or the workers cannot boot.
    """
    from gunicorn.app.base import BaseApplication
    from gunicorn.errors import HaltServer

    from protocol.errors import Unavailable

    counts = SharedCounts()
    arbiter_pid = os.getpid()
    scheme = "https" if tls else "http"
    apps: list[NetworkApp] = []

    def when_ready(server: Any) -> None:
        bound = server.LISTENERS[0].sock.getsockname()
        if ready is not None:
            ready(f"{scheme}://{bound[0]}:{bound[1]}")

    def worker_exit(server: Any, worker: Any) -> None:
        for app in apps:
            app.store.close()

    options: dict[str, Any] = {
        "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
        "workers": workers,
        "worker_class": "sync",
        "preload_app": False,
        "timeout": WorkerLimits.timeout,
        "graceful_timeout": WorkerLimits.graceful_timeout,
        "keepalive": 2,
        "backlog": WorkerLimits.backlog,
        "limit_request_line": WorkerLimits.limit_request_line,
        "limit_request_fields": WorkerLimits.limit_request_fields,
        "limit_request_field_size": WorkerLimits.limit_request_field_size,
        "access_log_format": ACCESS_FORMAT,
        "logconfig_dict": _log_config(log_level),
        "loglevel": log_level,
        "proc_name": "trelab-network",
        "control_socket_disable": True,
        "when_ready": when_ready,
        "worker_exit": worker_exit,
    }
    if tls is not None:
        options.update(
            certfile=str(tls[0]),
            keyfile=str(tls[1]),
            ssl_version=ssl.PROTOCOL_TLS_SERVER,
            do_handshake_on_connect=True,
        )

    class Application(BaseApplication):  # type: ignore[misc]  # gunicorn ships no types
        def load_config(self) -> None:
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self) -> NetworkApp:
            app = make_app(counts)
            apps.append(app)
            return app

    try:
        Application().run()
    except HaltServer as exc:
        raise Unavailable(f"gunicorn stopped: {exc.reason}") from None
    except SystemExit as exc:
        if os.getpid() != arbiter_pid:  # a worker leaving gunicorn's loop: never our caller's code
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        if exc.code not in (0, None):
            raise Unavailable(
                f"gunicorn exited with status {exc.code} (see its log above)",
                fix="check --listen and that the store and keys are readable",
            ) from None
    return counts.snapshot()
