"""The harness hooks the TRE rows rely on: ``setup``/``teardown`` around every call of a case's
body (warm-up included), teardown also after a failure, a failing setup recorded as an error."""

from __future__ import annotations

from typing import Any

from bench.harness import Case, run_cases
from trelab.errors import Unavailable


class HookedTre:
    tre = "hooked"

    def __init__(self, *, fail_body_at: int = -1, fail_setup: bool = False) -> None:
        self.log: list[str] = []
        self._calls = 0
        self._fail_body_at = fail_body_at
        self._fail_setup = fail_setup

    def environment(self) -> dict[str, Any]:
        return {"kind": "test"}

    def cases(self, quick: bool) -> list[Case]:
        def setup() -> None:
            self.log.append("setup")
            if self._fail_setup:
                raise Unavailable("key would not load")

        def body(n: int) -> None:
            self._calls += 1
            self.log.append(f"body{n}")
            if self._calls == self._fail_body_at:
                raise Unavailable("card went away")

        def teardown() -> None:
            self.log.append("teardown")

        return [
            Case(self.tre, "raw: nothing", lambda n: None, raw=True),
            Case(self.tre, "op", body, batch=3, setup=setup, teardown=teardown),
        ]

    def close(self) -> None:
        return None


def test_setup_and_teardown_wrap_every_call_including_warm_up() -> None:
    tre = HookedTre()
    run = run_cases([tre], rounds=3, quick=True, seed=1, progress=lambda _: None)
    assert tre.log == ["setup", "body3", "teardown"] * 4  # warm-up + 3 rounds
    op = next(c for c in run.cases if c.operation == "op")
    assert len(op.samples_ns) == 3 and not op.errors


def test_teardown_runs_after_a_failing_body_and_the_error_is_kept() -> None:
    tre = HookedTre(fail_body_at=2)  # fails in round 1 (after the warm-up)
    run = run_cases([tre], rounds=3, quick=True, seed=1, progress=lambda _: None)
    assert tre.log == ["setup", "body3", "teardown"] * 4
    op = next(c for c in run.cases if c.operation == "op")
    assert op.errors == ["card went away"] and len(op.samples_ns) == 2


def test_a_failing_setup_skips_the_body_and_is_recorded() -> None:
    tre = HookedTre(fail_setup=True)
    run = run_cases([tre], rounds=2, quick=True, seed=1, progress=lambda _: None)
    assert tre.log == ["setup"]  # warm-up failed: the case leaves the run
    op = next(c for c in run.cases if c.operation == "op")
    assert op.samples_ns == [] and op.errors == ["warm-up: key would not load"]
