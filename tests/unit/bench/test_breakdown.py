"""Where a sample's time goes: the harness splits each observed round into the parts the TPM
transport, trelab.atomic and the card link measured, plus the host's remainder, and the parts
of one round sum to that round. The TPM and the card are in-process stand-ins here (the
observers under test sit above them); the bench on swtpm and vpcd runs them for real."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest

from bench.breakdown import FSYNC, HOST, LINK, TPM, TimedLink, observe_tpm
from bench.harness import Case, run_cases
from bench.lean_bench import _observed, _Split
from bench.schema import validate_report
from tpm.tss import Transport
from trelab.atomic import atomic_write_bytes
from trelab.errors import BadInput

from .test_harness_report import report_from

_SUCCESS = struct.pack(">HII", 0x8001, 10, 0)


class _AnsweringTransport(Transport):
    """Answers every command with TPM_RC_SUCCESS (the transport's observer is what runs)."""

    def _exchange(self, command: bytes) -> bytes:
        return _SUCCESS


class _EchoCard:
    """A Link that answers 9000 to every APDU."""

    name = "test:echo"
    atr = None

    def __init__(self) -> None:
        self.apdus = 0

    def transmit(self, apdu: bytes) -> bytes:
        self.apdus += 1
        return b"\x90\x00"

    def close(self) -> None:
        return None


def _command(code: int) -> bytes:
    return struct.pack(">HII", 0x8001, 10, code)


class _TpmAndCardTre:
    tre = "stand-in"

    def __init__(self, state: Path) -> None:
        self.transport = _AnsweringTransport()
        self.link = TimedLink(_EchoCard())
        self._state = state

    def environment(self) -> dict[str, Any]:
        return {"kind": "tpm"}

    def cases(self, quick: bool) -> list[Case]:
        transport, link, state = self.transport, self.link, self._state

        def aka(n: int) -> None:
            for i in range(n):
                for code in (0x164, 0x157, 0x164):  # three TPM commands
                    transport.execute(_command(code))
                atomic_write_bytes(state, b"sqn %d" % i)  # fsync + rename + fsync dir
                sum(range(2000))  # our own code

        def card(n: int) -> None:
            for _ in range(n):
                link.transmit(b"\x00\x88\x00\x81\x22")
                link.transmit(b"\x00\xc0\x00\x00\x35")
                sum(range(2000))

        return [
            Case(self.tre, "raw: command", lambda n: None, raw=True),
            Case(self.tre, "aka-milenage", aka, batch=2,
                 observe=lambda into: observe_tpm(transport, into)),
            Case(self.tre, "card aka", card, observe=link.observe),
            Case(self.tre, "unobserved", lambda n: None),
        ]  # fmt: skip

    def close(self) -> None:
        return None


@pytest.fixture
def run_and_tre(tmp_path: Path) -> tuple[Any, _TpmAndCardTre]:
    tre = _TpmAndCardTre(tmp_path / "state")
    run = run_cases([tre], rounds=5, quick=True, seed=7, progress=lambda _: None)
    return run, tre


def test_each_round_splits_into_measured_parts_that_sum_to_it(run_and_tre: Any) -> None:
    run, tre = run_and_tre
    by_op = {c.operation: c for c in run.cases}
    aka = by_op["aka-milenage"]
    assert len(aka.breakdowns) == len(aka.samples_ns) == 5
    for sample, parts in zip(aka.samples_ns, aka.breakdowns, strict=True):
        assert set(parts) == {TPM, FSYNC, HOST}
        assert parts[TPM] > 0 and parts[FSYNC] > 0
        assert parts[HOST] >= 0  # observers run inside the timed span, never beyond it
        assert math.isclose(sum(parts.values()), sample, rel_tol=1e-9)
    card = by_op["card aka"]
    for sample, parts in zip(card.samples_ns, card.breakdowns, strict=True):
        assert set(parts) == {LINK, HOST} and parts[LINK] > 0 and parts[HOST] >= 0
        assert math.isclose(sum(parts.values()), sample, rel_tol=1e-9)
    assert by_op["unobserved"].breakdowns == [] and by_op["raw: command"].breakdowns == []
    # warm-up + 5 rounds × batch 2 × 3 commands: outside the observed block nothing is counted
    assert tre.transport.commands == 6 * 2 * 3


def test_records_carry_the_breakdown_and_validate(run_and_tre: Any) -> None:
    run, _ = run_and_tre
    data = json.loads(json.dumps(report_from(run)))
    validate_report(data)
    by_op = {r["operation"]: r for r in data["records"]}
    breakdown = by_op["aka-milenage"]["breakdown"]
    assert list(breakdown["median"]) == [TPM, FSYNC, HOST]
    rounds = zip(*(breakdown["samples"][p] for p in breakdown["median"]), strict=True)
    for sample, parts in zip(by_op["aka-milenage"]["samples"], rounds, strict=True):
        assert math.isclose(sum(parts), sample, rel_tol=1e-9)
    assert "breakdown" not in by_op["unobserved"]  # older readers see the same record
    by_op["aka-milenage"]["breakdown"]["median"][TPM] = "slow"
    with pytest.raises(BadInput, match="breakdown"):
        validate_report(data)


def test_lean_bench_split_comes_from_the_same_observers(tmp_path: Path) -> None:
    class Conn:
        transport = _AnsweringTransport()

    split = _Split()
    with _observed(Conn(), split):
        Conn.transport.execute(_command(0x164))
        atomic_write_bytes(tmp_path / "f", b"x")
    assert split.commands == 1 and split.tpm > 0 and split.fsync > 0
