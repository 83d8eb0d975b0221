"""Edge: TPM, HTTP, processes, clock. The operator server's own cost, apart from the devices:

1. **CPU per provisioning against the cryptography it must do.** One fresh swtpm device
   provisions ``k`` times through the real operator WSGI application in this process; the
   application's CPU time (``time.thread_time`` around each request: the device side runs
   outside it), summed over one provisioning's requests, is the server's CPU per
   provisioning (the median of the ``k``). A second pass under ``cProfile`` (timed by the
   thread's CPU clock, so neither other processes nor the store's disk waits count) counts
   the cryptographic operations the server ran (signatures, verifications, RSA-OAEP wraps,
   ECDH and its key generation, AES-GCM seals — the calls into ``cryptography``'s bindings
   and ``hashlib``) and their time inside the profile; then each counted primitive is timed
   **alone** (same process, same run, median of repeated calls on fresh keys of the same
   kind) and counts × times is the cryptography the server cannot avoid; a call not reproduced
   alone (hashes, HMAC, the EK chain check) counts at its profiled time less the profiler's own
   per-call cost, measured in the same run. The functions outside cryptography that cost most
   are listed: where the rest goes.

2. **The server alone, scaling with workers.** ``trelab network serve --workers w`` on a fresh
   store, driven by client threads in this process that send *fresh* registrations: each a new
   RegisterRequest carrying a recorded device's EK certificate and AK (from pass 1) and a new
   device nonce, so a new session — full work for the server each time (EK certificate chain
   check, MakeCredential's RSA-OAEP wrap to the EK, one store transaction with its audit
   entry). Later steps cannot be replayed fresh: every message is bound to a transcript that
   hashes the server's own randomised replies (ECDSA signatures, OAEP padding), so a recorded
   evidence or receipt fits only the session it was made in; a replayed identical request is
   answered from the stored reply (idempotence) and costs the server almost nothing — not a
   fair load. Requests/s and the server's CPU (arbiter and workers, ``/proc``) per level.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["measure_server_alone", "measure_server_cpu"]

_TICK = os.sysconf("SC_CLK_TCK")

_BUILTIN = re.compile(r"<method '(\w+)' of '([\w.]+)' objects>")
_CRYPTO_MODULES = ("cryptography.hazmat.bindings", "_hashlib", "_hmac", "_sha2", "_blake2")
# the bindings' module-level functions cProfile names without their package: key generation
# (a fresh per-MID parent key; each ECDH wrap's ephemeral key) and cipher set-up
_CRYPTO_FUNCTIONS = ("<built-in method ec.generate_private_key>",
                     "<built-in method ciphers.create_encryption_ctx>")  # fmt: skip
# a public key made from its numbers (a TPM's AK or EK): the point is checked to lie on the
# curve (EC) or the modulus checked (RSA) — cryptography's Rust code, registered under the
# primitives' module names
_CRYPTO_METHODS = re.compile(
    r"<method 'public_key' of 'cryptography\.hazmat\.primitives\.asymmetric\."
    r"(ec\.EllipticCurve|rsa\.RSA)PublicNumbers' objects>"
)


def _is_crypto(name: str) -> bool:
    return (
        name in _CRYPTO_FUNCTIONS
        or _CRYPTO_METHODS.fullmatch(name) is not None
        or any(module in name for module in _CRYPTO_MODULES)
    )


def _profiler_overhead() -> float:
    """Seconds cProfile (thread CPU clock) adds to the profiled time of one call into a C
    function: a call it cannot reproduce alone is counted at its profiled time less this,
    so hundreds of microsecond-sized hash calls are not counted at twice their cost."""
    import hashlib

    data = bytes(64)
    calls = 2000

    def loop() -> None:
        for _ in range(calls):
            hashlib.sha256(data)

    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    loop()
    profile.disable()
    raw: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    profiled: float = next(
        tottime / ncalls
        for (filename, _line, name), (_cc, ncalls, tottime, _ct, _callers) in raw.items()
        if filename == "~" and "openssl_sha256" in name
    )
    alone = _median_seconds(lambda: hashlib.sha256(data), repeat=calls)
    return max(0.0, profiled - alone)


class _Profiled:
    """WSGI middleware: the wrapped app's CPU time, and optionally a profile of it."""

    def __init__(self, app: Any, profile: cProfile.Profile | None = None) -> None:
        self.app = app
        self.profile = profile
        self.cpu = 0.0

    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        started = time.thread_time()
        if self.profile is not None:
            self.profile.enable()
        try:
            return list(self.app(environ, start_response))
        finally:
            if self.profile is not None:
                self.profile.disable()
            self.cpu += time.thread_time() - started


class _Recording:
    """A transport that keeps each request it passes on (endpoint, wire)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[tuple[str, bytes]] = []

    def post(self, endpoint: str, wire: bytes, *, grant: bytes | None = None) -> bytes:
        self.sent.append((endpoint, wire))
        return bytes(self.inner.post(endpoint, wire, grant=grant))


def _median_seconds(operation: Callable[[], object], repeat: int = 30) -> float:
    operation()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        operation()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _alone(method: str, kind: str) -> float | None:
    """Seconds one such call takes alone (fresh keys, typical inputs), or None for a call
    this module does not reproduce (its profile time is used instead)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data = os.urandom(32)
    if method == "<built-in method ec.generate_private_key>":
        return _median_seconds(lambda: ec.generate_private_key(ec.SECP256R1()))
    if kind.endswith("ec.ECPrivateKey") and method == "sign":
        key = ec.generate_private_key(ec.SECP256R1())
        return _median_seconds(lambda: key.sign(data, ec.ECDSA(hashes.SHA256())))
    if kind.endswith("ec.ECPublicKey") and method == "verify":
        key = ec.generate_private_key(ec.SECP256R1())
        sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
        ec_public = key.public_key()
        return _median_seconds(lambda: ec_public.verify(sig, data, ec.ECDSA(hashes.SHA256())))
    if kind.endswith("ec.ECPrivateKey") and method == "exchange":
        key = ec.generate_private_key(ec.SECP256R1())
        peer = ec.generate_private_key(ec.SECP256R1()).public_key()
        return _median_seconds(lambda: key.exchange(ec.ECDH(), peer))
    if kind.endswith("rsa.RSAPublicKey") and method == "encrypt":
        rsa_public = rsa.generate_private_key(65537, 2048).public_key()
        oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
        return _median_seconds(lambda: rsa_public.encrypt(data, oaep))
    if kind.endswith("rsa.RSAPublicKey") and method == "verify":
        private = rsa.generate_private_key(65537, 2048)
        rsa_sig = private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        signer = private.public_key()
        return _median_seconds(
            lambda: signer.verify(rsa_sig, data, padding.PKCS1v15(), hashes.SHA256())
        )
    if kind.endswith("AESGCM") and method in ("encrypt", "decrypt"):
        aead = AESGCM(os.urandom(32))
        nonce, plain = os.urandom(12), os.urandom(64)
        sealed = aead.encrypt(nonce, plain, b"aad")
        if method == "encrypt":
            return _median_seconds(lambda: aead.encrypt(nonce, plain, b"aad"))
        return _median_seconds(lambda: aead.decrypt(nonce, sealed, b"aad"))
    return None


def _crypto_breakdown(stats: pstats.Stats, provisionings: int) -> dict[str, Any]:
    """Crypto calls per provisioning from a profile, their profiled time, and the time the
    reproducible ones take alone."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    calls: Counter[tuple[str, str]] = Counter()
    profiled: dict[tuple[str, str], float] = {}
    for (filename, _line, name), (_cc, ncalls, tottime, _ct, _callers) in raw.items():
        if filename != "~" or not _is_crypto(name):
            continue
        found = _BUILTIN.match(name)
        key = (found.group(1), found.group(2)) if found else (name, "")
        calls[key] += ncalls
        profiled[key] = profiled.get(key, 0.0) + tottime
    rows = []
    alone_total = 0.0
    overhead = _profiler_overhead()
    for (method, kind), count in calls.most_common():
        per = count / provisionings
        single = _alone(method, kind)
        if single is not None:
            spent = single * per
        else:  # its profiled time, less what the profiler itself added to each call
            spent = max(0.0, profiled[(method, kind)] - count * overhead) / provisionings
        alone_total += spent
        rows.append(
            {
                "call": f"{kind.rsplit('.', 1)[-1] or 'builtin'}.{method}",
                "per_provisioning": round(per, 2),
                "alone_us_each": round(single * 1e6, 1) if single is not None else None,
                "ms_per_provisioning": round(spent * 1000, 3),
            }
        )
    in_profile = sum(profiled.values()) / provisionings
    return {
        "calls": rows,
        "crypto_alone_ms": round(alone_total * 1000, 2),
        "crypto_in_profile_ms": round(in_profile * 1000, 2),
        "profiler_overhead_us_per_call": round(overhead * 1e6, 2),
    }


def _top_other(stats: pstats.Stats, provisionings: int, count: int = 10) -> list[dict[str, Any]]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = [
        (tottime, f"{Path(filename).name}:{line}({name})" if filename != "~" else name)
        for (filename, line, name), (_cc, _n, tottime, _ct, _callers) in raw.items()
        if not (filename == "~" and _is_crypto(name))
    ]
    rows.sort(reverse=True)
    return [
        {"function": where, "ms_per_provisioning": round(t * 1000 / provisionings, 3)}
        for t, where in rows[:count]
    ]


def measure_server_cpu(
    tcti: str, config_path: Path, db: Path, registry_path: Path, provisionings: int
) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """Pass 1 (module doc) on the device at ``tcti``; returns the section and the requests of
    the first provisioning (the recorded device messages pass 2 takes its EK and AK from)."""
    from host.agent import parse_device_trust
    from host.provision import provision
    from network.config import device_trust, load_config
    from network.server import NetworkApp
    from network.store import Store
    from protocol.client import InProcessTransport
    from tpm.connection import TpmConnection
    from tpm.registry import Registry

    config = load_config(config_path)
    trust = parse_device_trust(device_trust(config))
    store = Store(db, config.store_key)
    registry = Registry(registry_path)
    recorded: list[tuple[str, bytes]] = []
    try:
        app = NetworkApp(config, store)
        plain = _Profiled(app)
        profile = cProfile.Profile(time.thread_time)
        profiled = _Profiled(app, profile)
        with TpmConnection(tcti) as conn:
            first = _Recording(InProcessTransport(plain))
            provision(conn, registry, first, trust, sho="sho-a", network="in-process")  # warm-up
            recorded = first.sent
            per_provisioning = []
            for _ in range(provisionings):
                plain.cpu = 0.0
                provision(conn, registry, InProcessTransport(plain), trust, sho="sho-a",
                          network="in-process")  # fmt: skip
                per_provisioning.append(plain.cpu)
            for _ in range(provisionings):
                provision(conn, registry, InProcessTransport(profiled), trust, sho="sho-a",
                          network="in-process")  # fmt: skip
    finally:
        store.close()
    stats = pstats.Stats(profile)
    crypto = _crypto_breakdown(stats, provisionings)
    server_ms = statistics.median(per_provisioning) * 1000
    section = {
        "provisionings": provisionings,
        "server_cpu_ms": round(server_ms, 2),
        **crypto,
        "ratio_to_crypto_alone": round(server_ms / crypto["crypto_alone_ms"], 2)
        if crypto["crypto_alone_ms"]
        else None,
        "top_other_ms": _top_other(stats, provisionings),
        "method": "in-process WSGI app, SQLite store (WAL, synchronous=FULL); server CPU = "
        "thread CPU time inside the app per provisioning (no profiler; median of the "
        f"{provisionings}); crypto calls counted by cProfile (thread CPU clock) in a second "
        "pass, each timed alone in this process (median of 30); a call not reproduced alone "
        "(hashes, HMAC, chain verification) at its profiled time less the profiler's "
        "measured per-call overhead",
    }
    return section, recorded


def _register_maker(recorded: Sequence[tuple[str, bytes]]) -> Callable[[], bytes]:
    """Fresh RegisterRequests from the recorded one: same EK certificate, AK and SHO, a new
    device nonce (so a new session id) each time."""
    from protocol import messages as m

    wire = next(w for endpoint, w in recorded if endpoint == "drf/register")
    original = m.decode(wire)
    assert isinstance(original, m.RegisterRequest)

    def make() -> bytes:
        nonce = os.urandom(len(original.device_nonce))
        return m.encode(
            m.RegisterRequest(
                session_id=m.derive_session_id(original.ek_cert, original.ak_public, nonce),
                transcript=m.INITIAL_TRANSCRIPT,
                ek_cert=original.ek_cert,
                ak_public=original.ak_public,
                device_nonce=nonce,
                sho=original.sho,
            )
        )

    return make


def measure_server_alone(
    recorded: Sequence[tuple[str, bytes]],
    start_server: Callable[[str, str, int], Any],
    tree_cpu: Callable[[int], float | None],
    work: Path,
    workers: Iterable[int],
    *,
    requests: int = 400,
    store_url: Callable[[str], str] | None = None,
    store_cpu: Callable[[], float] | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> dict[str, Any]:
    """Pass 2 (module doc): for each worker count, a fresh server and store, ``requests``
    fresh registrations sent by ``2 × workers`` client threads. ``start_server(store, log,
    workers)`` starts ``trelab network serve`` (``.url``, ``.pid``, ``.stop()``);
    ``tree_cpu(pid)`` is the CPU time of a process and its children; ``store_url(name)`` gives
    a fresh store location (default: a SQLite file under ``work``); ``store_cpu()`` the CPU
    time of the database server so far (PostgreSQL), counted with the server's."""
    from bench.throughput import host_busy_ticks
    from protocol.client import HttpTransport

    make = _register_maker(recorded)
    levels = []
    for count in workers:
        location = store_url(f"alone_w{count}") if store_url else str(work / f"alone-{count}.db")
        server = start_server(location, str(work / f"alone-{count}.log"), count)
        try:
            transport = HttpTransport(server.url)
            transport.post("drf/register", make())  # every worker imports lazily: warm them
            for _ in range(2 * count):
                transport.post("drf/register", make())
            bodies = [make() for _ in range(requests)]
            lock = threading.Lock()
            errors: list[str] = []

            def client(
                bodies: list[bytes] = bodies,
                errors: list[str] = errors,
                lock: threading.Lock = lock,
                transport: HttpTransport = transport,
            ) -> None:
                while True:
                    with lock:
                        if not bodies:
                            return
                        body = bodies.pop()
                    try:
                        transport.post("drf/register", body)
                    except Exception as exc:  # a failed request is counted, not fatal
                        errors.append(f"{type(exc).__name__}: {exc}")

            threads = [threading.Thread(target=client) for _ in range(2 * count)]
            cpu_before = tree_cpu(server.pid) or 0.0
            db_before = store_cpu() if store_cpu else 0.0
            host_before = host_busy_ticks(Path("/proc/stat").read_text())
            client_before = time.process_time()
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.monotonic() - started
            server_cpu = (tree_cpu(server.pid) or 0.0) - cpu_before
            db_cpu = (store_cpu() if store_cpu else 0.0) - db_before
            host = (host_busy_ticks(Path("/proc/stat").read_text()) - host_before) / _TICK
            client_cpu = time.process_time() - client_before
        finally:
            server.stop()
        done = requests - len(errors)
        level = {
            "workers": count,
            "clients": 2 * count,
            "requests": requests,
            "succeeded": done,
            "wall_s": round(wall, 3),
            "per_s": round(done / wall, 1) if wall > 0 else None,
            "server_cpu_ms_per_request": round(server_cpu * 1000 / done, 2) if done else None,
            "server_cores_busy": round(server_cpu / wall, 2) if wall > 0 else None,
            "database_cpu_ms_per_request": round(db_cpu * 1000 / done, 2) if done else None,
            "host_cores_busy": round(host / wall, 2) if wall > 0 else None,
            "client_cpu_s": round(client_cpu, 2),
            "errors": errors[:3],
        }
        say(
            f"server alone: {count} workers: {level['per_s']} registrations/s, server "
            f"{level['server_cores_busy']} cores busy, host {level['host_cores_busy']}"
        )
        levels.append(level)
    return {
        "load": "fresh RegisterRequests (a recorded device's EK certificate and AK, a new "
        "device nonce each: a new session, full server work); later steps cannot be replayed "
        "fresh (their transcript hashes the server's randomised replies)",
        "levels": levels,
    }
