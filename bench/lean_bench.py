"""Edge: TPM, clock, filesystem. The TPM client-stack ratios, measured in one run on a bench
swtpm: what the lean session layer (:mod:`tpm.lean`) costs over the bare TPM command, with the
ESYS path beside it as the labelled reference.

Cases (one sample = one body call / its batch; rounds visit the cases in a fresh random order):

- ``raw: EncryptDecrypt2 (bytes)`` — one ECB block, K loaded, empty-password session, the
  command prebuilt and sent on the connection's transport: the floor;
- ``raw: EncryptDecrypt2 (ESYS)`` — the same through ESAPI (what ``make bench`` calls raw);
- ``e_k bus-protected (lean|ESYS)`` — one E_K through :class:`tpm.keyholder.TpmBlockCipher`
  in the MID's salted HMAC session, decrypt|encrypt;
- ``raw: 3 × EncryptDecrypt2 (bytes)`` — the three commands of one Milenage AKA (16, 64 and
  16 bytes) sent bare; ``aka K-loaded bus-protected (lean|ESYS)`` — one USIM AKA with K
  resident, SQN in memory;
- ``aka real path (lean|ESYS)`` — :func:`tpm.aka.authenticate`, split into TPM time (inside
  the transport: every command's bytes out and back), fsync time (:mod:`trelab.atomic`) and
  our own time (the rest), with ``--registry-mids`` other MIDs in the registry (default 16,
  about what ``make bench``'s rows leave in their shared registry);
- ``provisioning`` — the host agent against the in-process operator side, split the same way
  plus the operator side's own time;
- ``quote+verify`` (:class:`tpm.quote.Quoter` on the lean layer, then
  :func:`tpm.verify.verify_quote`; ``(ESYS)``: the Quoter's ESYS reference) vs ``bare quote``
  (one TPM2_Quote through ESAPI), ``bare quote (bytes)`` (the command marshalled by hand and
  sent bare) + ``bare verify`` (one ECDSA verification of the quote's signature with
  ``cryptography``, 20 in a row), and ``bare quote (bytes) then bare verify`` (each bare quote
  followed by one verification, as in ``quote+verify``: the verification starts after the
  wait for the TPM in both).

``python -m bench.lean_bench [--rounds N] [--json FILE]`` prints the medians and ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["run_lean_bench"]


@dataclass
class _Split:
    """Seconds of one sample spent in the TPM transport and in fsync."""

    tpm: float = 0.0
    fsync: float = 0.0
    operator: float = 0.0
    commands: int = 0


@dataclass
class _Case:
    name: str
    body: Callable[[int], None]
    batch: int = 1
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None
    split: bool = False
    samples: list[float] = field(default_factory=list)
    splits: list[_Split] = field(default_factory=list)


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 4)


@contextlib.contextmanager
def _observed(conn: Any, split: _Split) -> Iterator[None]:
    """TPM and fsync time of the block into ``split``, by :func:`bench.breakdown.observe_tpm`."""
    from .breakdown import FSYNC, TPM, Observed, observe_tpm

    observed = Observed()
    try:
        with observe_tpm(conn.transport, observed):
            yield
    finally:
        split.tpm += observed.seconds.get(TPM, 0.0)
        split.fsync += observed.seconds.get(FSYNC, 0.0)
        split.commands += observed.commands


#: MIDs besides the bench MID in the bench TPM's registry: about what ``make bench``'s rows
#: leave in their shared registry, so the real path here parses and writes a file of that size
REGISTRY_MIDS = 16


def run_lean_bench(
    rounds: int = 15,
    progress: Callable[[str], None] | None = None,
    *,
    registry_mids: int = REGISTRY_MIDS,
) -> dict[str, Any]:
    """Run every case ``rounds`` times on a bench swtpm made for this run, with
    ``registry_mids`` other MIDs in its registry; returns medians (ms), the splits and the
    ratios the TPM performance goals name.

    Raises:
        Unavailable: swtpm cannot start.
    """

    from aka.sqn import SqnState
    from aka.usim import AkaSuccess, usim_authenticate
    from bench.tres.tpm import _BenchMid, _BenchTpm
    from host.provision import AgentFiles, provision
    from protocol.client import InProcessTransport
    from tpm import lean
    from tpm.aka import authenticate
    from tpm.connection import TpmConnection
    from tpm.evidence import evidence_from_files
    from tpm.identity import ensure_ak
    from tpm.lean_commands import LeanObject
    from tpm.marshal import tpml_from_selection
    from tpm.mid import LoadedMid, delete_mid
    from tpm.package import AlgorithmSpec
    from tpm.pcrsel import parse_selection
    from tpm.quote import Quoter
    from tpm.tss import TPM2_ALG, TPM2B_DATA, TPM2B_IV, TPM2B_MAX_BUFFER
    from tpm.verify import verify_quote
    from trelab.errors import LocalProtocolError

    from .provision_bench import operator_side
    from .quote_floor import BareQuote, BareSignature

    say = progress or (lambda text: None)
    site = _BenchTpm.acquire()
    stack = contextlib.ExitStack()
    stack.callback(site.release)
    try:
        conn = stack.enter_context(TpmConnection(site.tcti))
        say("provisioning the bench MID")
        mid = _BenchMid(
            conn, site.registry, algorithm=AlgorithmSpec(), kind="load", form="symcipher",
            ahead=4 * rounds + 8,
        )  # fmt: skip
        record = mid.record
        if registry_mids:
            say(f"provisioning {registry_mids} more MIDs into the registry")
        for _ in range(registry_mids):
            _BenchMid(
                conn, site.registry, algorithm=AlgorithmSpec(), kind="load", form="symcipher",
                ahead=0,
            )  # fmt: skip
        resident: dict[str, LoadedMid] = {}
        scopes: dict[str, contextlib.ExitStack] = {}

        def load(layer: str) -> Callable[[], None]:
            def setup() -> None:
                scope = contextlib.ExitStack()
                resident[layer] = scope.enter_context(
                    LoadedMid(conn, record, mode="ecb", layer=layer)  # type: ignore[arg-type]
                )
                scopes[layer] = scope

            return setup

        def unload(layer: str) -> Callable[[], None]:
            def teardown() -> None:
                resident.pop(layer, None)
                scope = scopes.pop(layer, None)
                if scope is not None:
                    scope.close()
                mid.pool.top_up()

            return teardown

        block = os.urandom(16)
        ecb = int(TPM2_ALG.ECB)

        prepared: dict[str, list[bytes]] = {}

        def raw_command(size: int) -> bytes:
            key = LeanObject.from_esys(conn, resident["lean"]._key)
            command, _ = lean.wrap(
                lean.CC.ENCRYPT_DECRYPT_2, [key.handle], [key.name],
                lean.encrypt_decrypt2_params(os.urandom(size), decrypt=False, mode=ecb, iv=b""),
                [lean.Auth(None)],
            )  # fmt: skip
            return command

        def load_raw(*sizes: int) -> Callable[[], None]:
            def setup() -> None:  # untimed: K loaded, the commands marshalled once
                load("lean")()
                resident["lean"]._key  # noqa: B018 - ESYS learns of K here, untimed
                prepared["commands"] = [raw_command(size) for size in sizes]

            return setup

        def send_ok(command: bytes, what: str) -> None:
            response = conn.transport.execute(command)
            if struct.unpack_from(">I", response, 6)[0] != 0:
                raise LocalProtocolError(f"{what} refused")

        def send_raw(command: bytes) -> None:
            send_ok(command, "raw EncryptDecrypt2")

        def raw_bytes(n: int) -> None:
            commands = prepared["commands"]
            for _ in range(n):
                for command in commands:
                    send_raw(command)

        empty_iv, data = TPM2B_IV(), TPM2B_MAX_BUFFER(block)

        def raw_esys(n: int) -> None:
            key, ed2 = resident["lean"]._key, conn.esys.encrypt_decrypt_2
            for _ in range(n):
                ed2(key, False, TPM2_ALG.ECB, empty_iv, data)

        def e_k(layer: str) -> Callable[[int], None]:
            def body(n: int) -> None:
                holder = resident[layer].holder
                for _ in range(n):
                    holder.encrypt_blocks(block)

            return body

        sqn = {"lean": SqnState(), "esys": SqnState()}

        def aka(layer: str) -> Callable[[int], None]:
            def body(n: int) -> None:
                algorithm = resident[layer].algorithm
                assert algorithm is not None
                for _ in range(n):
                    vector = mid.pool.take()
                    result, sqn[layer] = usim_authenticate(
                        algorithm, sqn[layer], vector.rand, vector.autn
                    )
                    if not isinstance(result, AkaSuccess):
                        raise LocalProtocolError(f"bench AKA gave {result.result}")

            return body

        def real_aka(layer: str) -> Callable[[int], None]:
            def body(n: int) -> None:
                for _ in range(n):
                    vector = mid.pool.take()
                    outcome = authenticate(
                        conn, site.registry, record.mid, vector.rand, vector.autn,
                        layer=layer,  # type: ignore[arg-type]
                    )  # fmt: skip
                    if not isinstance(outcome.result, AkaSuccess):
                        raise LocalProtocolError(f"bench AKA gave {outcome.result.result}")

            return body

        cases = [
            _Case("raw: EncryptDecrypt2 (bytes)", raw_bytes, 20, load_raw(16), unload("lean"),
                  True),
            _Case("raw: EncryptDecrypt2 (ESYS)", raw_esys, 20, load_raw(), unload("lean")),
            _Case("e_k bus-protected (lean)", e_k("lean"), 20, load("lean"), unload("lean"),
                  True),
            _Case("e_k bus-protected (ESYS)", e_k("esys"), 20, load("esys"), unload("esys")),
            _Case("raw: 3 × EncryptDecrypt2 (bytes)", raw_bytes, 5, load_raw(16, 64, 16),
                  unload("lean"), True),
            _Case("aka K-loaded bus-protected (lean)", aka("lean"), 5, load("lean"),
                  unload("lean"), True),
            _Case("aka K-loaded bus-protected (ESYS)", aka("esys"), 5, load("esys"),
                  unload("esys")),
            _Case("aka real path (lean)", real_aka("lean"), 1, None, mid.pool.top_up, True),
            _Case("aka real path (ESYS)", real_aka("esys"), 1, None, mid.pool.top_up, True),
        ]  # fmt: skip

        # attestation
        ak, _ = ensure_ak(conn, "ecc")
        quoter = stack.enter_context(Quoter(conn, ak))
        esys_quoter = stack.enter_context(Quoter(conn, ak, layer="esys"))
        selection = parse_selection("sha256:0,1,2,3,16")
        tpml = tpml_from_selection(selection)
        made: dict[str, Any] = {}

        def bare_quote(n: int) -> None:  # the ESYS reference's AK handle: opened when entered
            for _ in range(n):
                conn.esys.quote(esys_quoter.handle, tpml, TPM2B_DATA(os.urandom(16)))

        floor = BareQuote(conn.transport, ak.handle, tpml)

        def bare_quote_bytes(n: int) -> None:  # the command marshalled by hand, sent bare
            for _ in range(n):
                floor.send()

        def fresh_quote() -> None:
            nonce = os.urandom(16)
            made["signature"] = BareSignature.of(
                evidence_from_files(quoter.quote(nonce, selection))
            )

        def bare_verify(n: int) -> None:
            verify = made["signature"].verify
            for _ in range(n):
                verify()

        def bare_quote_then_verify(n: int) -> None:  # each bare quote followed by one verify
            verify = made["signature"].verify
            for _ in range(n):
                floor.send()
                verify()

        def quote_verify(using: Quoter) -> Callable[[int], None]:
            def body(n: int) -> None:
                for _ in range(n):
                    nonce = os.urandom(16)
                    files = using.quote(nonce, selection)
                    verify_quote(evidence_from_files(files), nonce=nonce, expected_ak_name=ak.name)

            return body

        cases += [
            _Case("bare quote", bare_quote, 5),
            _Case("bare quote (bytes)", bare_quote_bytes, 5),
            _Case("bare verify", bare_verify, 20, fresh_quote),
            _Case("bare quote (bytes) then bare verify", bare_quote_then_verify, 5, fresh_quote),
            _Case("quote+verify", quote_verify(quoter), 5),
            _Case("quote+verify (ESYS)", quote_verify(esys_quoter), 5),
        ]

        # provisioning (one MID slot per sample)
        import shutil
        import tempfile
        from pathlib import Path

        scratch = Path(tempfile.mkdtemp(prefix="trelab-lean-bench-"))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        if site.ca_bundle is None:
            raise LocalProtocolError("bench TPM without a CA bundle")
        operator = operator_side(site.tcti, site.ca_bundle, scratch)
        stack.callback(operator.close)
        provisioned: list[str] = []
        op_clock = {"seconds": 0.0}

        class _TimedApp:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def post(self, endpoint: str, wire: bytes, *, grant: bytes | None = None) -> bytes:
                start = time.perf_counter()
                try:
                    reply: bytes = self.inner.post(endpoint, wire, grant=grant)
                    return reply
                finally:
                    op_clock["seconds"] += time.perf_counter() - start

        def provisioning_setup() -> None:
            for each in (quoter, esys_quoter):
                each.__exit__(None, None, None)
            op_clock["seconds"] = 0.0

        def provision_once(n: int) -> None:
            for _ in range(n):
                result = provision(
                    conn, site.registry, _TimedApp(InProcessTransport(operator.app)),
                    operator.trust, sho="sho-a", network="bench",
                )  # fmt: skip
                provisioned.append(result.finished.mid_id)

        def provisioning_teardown() -> None:
            from dataclasses import replace

            try:
                files = AgentFiles(site.registry)
                while provisioned:
                    gone = provisioned.pop()
                    delete_mid(conn, site.registry, gone)
                    with files.locked():
                        state = files.read()
                        kept = {k: v for k, v in state.mids.items() if k != gone}
                        files.write(replace(state, mids=kept))
            finally:
                for each in (quoter, esys_quoter):
                    each.__enter__()

        provisioning = _Case(
            "provisioning", provision_once, 1, provisioning_setup, provisioning_teardown, True
        )
        cases.append(provisioning)

        say("warm-up")
        for case in cases:
            _sample(case, conn, op_clock, keep=False)
        for r in range(rounds):
            say(f"round {r + 1}/{rounds}")
            order = list(cases)
            random.shuffle(order)
            for case in order:
                _sample(case, conn, op_clock, keep=True)
        result = _report(cases, rounds, site.tcti)
        result["registry_mids"] = 1 + registry_mids
        return result
    finally:
        stack.close()


def _sample(case: _Case, conn: Any, op_clock: dict[str, float], *, keep: bool) -> None:
    if case.setup is not None:
        case.setup()
    split = _Split()
    try:
        op_clock["seconds"] = 0.0
        with _observed(conn, split) if case.split else contextlib.nullcontext():
            start = time.perf_counter()
            case.body(case.batch)
            elapsed = time.perf_counter() - start
        split.operator = op_clock["seconds"]
    finally:
        if case.teardown is not None:
            case.teardown()
    if keep:
        case.samples.append(elapsed / case.batch)
        if case.split:
            per = case.batch
            case.splits.append(
                _Split(
                    split.tpm / per, split.fsync / per, split.operator / per, split.commands // per
                )
            )


def _report(cases: list[_Case], rounds: int, tcti: str) -> dict[str, Any]:
    med = {c.name: _median_ms(c.samples) for c in cases}
    out: dict[str, Any] = {
        "rounds": rounds,
        "tpm": tcti,
        "median_ms": med,
        "min_ms": {c.name: round(min(c.samples) * 1000, 4) for c in cases},
        "splits": {},
    }
    for c in cases:
        if not c.splits:
            continue
        own = [
            s - sp.tpm - sp.fsync - sp.operator for s, sp in zip(c.samples, c.splits, strict=True)
        ]
        own_ratio = [
            (s - sp.tpm - sp.fsync - sp.operator) / (sp.tpm + sp.fsync)
            for s, sp in zip(c.samples, c.splits, strict=True)
        ]
        with_operator = [
            (s - sp.tpm - sp.fsync) / (sp.tpm + sp.fsync)
            for s, sp in zip(c.samples, c.splits, strict=True)
        ]
        out["splits"][c.name] = {
            "total_ms": med[c.name],
            "tpm_ms": _median_ms([sp.tpm for sp in c.splits]),
            "fsync_rename_ms": _median_ms([sp.fsync for sp in c.splits]),
            "operator_ms": _median_ms([sp.operator for sp in c.splits]),
            "own_ms": _median_ms(own),
            "tpm_commands": statistics.median(sp.commands for sp in c.splits),
            "own_over_tpm_plus_fsync": round(statistics.median(own_ratio), 3),
            "own_with_operator_over_tpm_plus_fsync": round(statistics.median(with_operator), 3),
        }

    def ratio(a: str, b: str, times: float = 1.0) -> float:
        return round(med[a] / (med[b] * times), 3)

    bare = med["bare quote"] + med["bare verify"]
    out["ratios"] = {
        "e_k lean / raw bytes": ratio("e_k bus-protected (lean)", "raw: EncryptDecrypt2 (bytes)"),
        "e_k lean / raw ESYS": ratio("e_k bus-protected (lean)", "raw: EncryptDecrypt2 (ESYS)"),
        "e_k ESYS / raw bytes": ratio("e_k bus-protected (ESYS)", "raw: EncryptDecrypt2 (bytes)"),
        "e_k ESYS / raw ESYS": ratio("e_k bus-protected (ESYS)", "raw: EncryptDecrypt2 (ESYS)"),
        "aka lean / 3 raw bytes": ratio(
            "aka K-loaded bus-protected (lean)", "raw: 3 × EncryptDecrypt2 (bytes)"
        ),
        "aka lean / 3 × raw ESYS": ratio(
            "aka K-loaded bus-protected (lean)", "raw: EncryptDecrypt2 (ESYS)", 3.0
        ),
        "aka ESYS / 3 raw bytes": ratio(
            "aka K-loaded bus-protected (ESYS)", "raw: 3 × EncryptDecrypt2 (bytes)"
        ),
        "quote+verify / (bare quote + bare verify)": round(med["quote+verify"] / bare, 3),
        "quote+verify / (bare quote (bytes) + bare verify)": round(
            med["quote+verify"] / (med["bare quote (bytes)"] + med["bare verify"]), 3
        ),
        "quote+verify / (bare quote (bytes) then bare verify)": ratio(
            "quote+verify", "bare quote (bytes) then bare verify"
        ),
        "quote+verify (ESYS) / (bare quote + bare verify)": round(
            med["quote+verify (ESYS)"] / bare, 3
        ),
        "quote+verify / bare quote": ratio("quote+verify", "bare quote"),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lean_bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--registry-mids",
        type=int,
        default=REGISTRY_MIDS,
        help=f"other MIDs in the bench registry (default {REGISTRY_MIDS})",
    )
    parser.add_argument("--json", dest="json_out", help="also write the result here")
    args = parser.parse_args(argv)
    result = run_lean_bench(
        args.rounds,
        progress=lambda t: print(t, file=sys.stderr),
        registry_mids=args.registry_mids,
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        from trelab.atomic import atomic_write_text

        atomic_write_text(args.json_out, text + "\n", mode=0o644)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
