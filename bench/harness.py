"""Edge: clock. Run benchmark cases from every reachable TRE, interleaved, and keep raw samples.

A *case* is one operation on one TRE (``tre`` × ``operation``); each TRE also contributes one
*raw* case — its bare transport (one AES call, one TPM command, one APDU, one AT exchange) —
so every figure gets an overhead ratio measured in the same run. Rounds visit the cases in a
fresh random order so drift on a shared machine hits every TRE alike. Ctrl-C stops after the
current sample and keeps what finished.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from trelab.errors import TrelabError

from .breakdown import Observed, Observer, split_sample
from .stats import Summary, bootstrap_median_ci, ratio, summarize

__all__ = ["Case", "CaseResult", "RunResult", "TreProvider", "TreSkipped", "run_cases"]


@dataclass
class Case:
    """One operation on one TRE. ``body(n)`` performs it ``n`` times; a sample = time / n.

    ``setup`` / ``teardown`` run before / after every call of ``body`` and are not timed:
    loading a key the operation needs resident, topping up pre-drawn vectors, deleting what an
    import created (``teardown`` also runs when ``body`` failed). ``observe`` (optional) watches
    each sample so it can be split into where its time went (:mod:`bench.breakdown`).
    """

    tre: str
    operation: str
    body: Callable[[int], None]
    batch: int = 1
    raw: bool = False
    detail: str = ""
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None
    observe: Observer | None = None


class TreProvider(Protocol):
    """A TRE the harness can measure (software, TPM in some mode, USIM over a link…)."""

    tre: str

    def environment(self) -> dict[str, Any]:
        """What this TRE is: vendor, firmware, reader, ATR, mode actually used…"""
        ...

    def cases(self, quick: bool) -> list[Case]:
        """Its cases, the raw transport reference among them."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TreSkipped:
    """A TRE that could not be measured here, and why (reported, never silently dropped)."""

    tre: str
    reason: str


@dataclass
class CaseResult:
    tre: str
    operation: str
    raw: bool
    detail: str
    batch: int
    samples_ns: list[float]
    errors: list[str] = field(default_factory=list)
    #: per sample, ns per operation by part (summing to that sample); empty when not observed
    breakdowns: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> Summary | None:
        return summarize(self.samples_ns) if self.samples_ns else None


@dataclass
class RunResult:
    cases: list[CaseResult]
    environments: dict[str, dict[str, Any]]
    skipped: list[TreSkipped]
    interrupted: bool
    rounds: int
    seed: int

    def records(self) -> list[dict[str, Any]]:
        """One JSON record per TRE × operation (schema in :mod:`bench.schema`)."""
        raw_median = {}
        for c in self.cases:
            s = c.summary()
            if c.raw and s is not None:
                raw_median[c.tre] = (c.operation, s.median)
        out = []
        rng = random.Random(self.seed)  # noqa: S311 - statistics, not secrets
        for c in self.cases:
            s = c.summary()
            record: dict[str, Any] = {
                "tre": c.tre,
                "operation": c.operation,
                "raw": c.raw,
                "detail": c.detail,
                "batch": c.batch,
                "unit": "ns",
                "summary": s.to_json() if s else None,
                "ci95_median": list(bootstrap_median_ci(c.samples_ns, rng.randrange))
                if len(c.samples_ns) >= 2
                else None,
                "raw_reference": None,
                "overhead_vs_raw": None,
                "samples": c.samples_ns,
                "errors": c.errors,
            }
            if c.breakdowns:
                record["breakdown"] = breakdown_record(c.breakdowns)
            if c.tre in raw_median and s is not None and not c.raw:
                record["raw_reference"] = raw_median[c.tre][0]
                record["overhead_vs_raw"] = ratio(s.median, raw_median[c.tre][1])
            out.append(record)
        return out


def breakdown_record(breakdowns: list[dict[str, float]]) -> dict[str, Any]:
    """The optional ``breakdown`` of a record: per part, the median over samples and the
    per-sample values (the parts of one sample sum to it)."""
    parts = list(dict.fromkeys(part for b in breakdowns for part in b))
    per_sample = {part: [b.get(part, 0.0) for b in breakdowns] for part in parts}
    return {
        "unit": "ns",
        "median": {part: statistics.median(values) for part, values in per_sample.items()},
        "samples": per_sample,
    }


def _say(message: str) -> None:
    print(f"trelab: {message}", file=sys.stderr, flush=True)


def _timed(case: Case, clock: Callable[[], int]) -> tuple[float, dict[str, float] | None]:
    """One sample of ``case``: ns per operation (setup and teardown outside the clock) and,
    for an observed case, its split by part."""
    if case.setup is not None:
        case.setup()
    observed = Observed()
    watch = case.observe(observed) if case.observe is not None else contextlib.nullcontext()
    try:
        with watch:
            start = clock()
            case.body(case.batch)
            took = clock() - start
    finally:
        if case.teardown is not None:
            case.teardown()
    sample = took / case.batch
    if case.observe is None:
        return sample, None
    return sample, split_sample(sample, observed, case.batch)


def run_cases(
    providers: Iterable[TreProvider],
    *,
    rounds: int,
    quick: bool,
    seed: int | None = None,
    progress: Callable[[str], None] = _say,
) -> RunResult:
    """Warm up, then ``rounds`` interleaved rounds over every case of every provider."""
    seed = seed if seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)  # noqa: S311 - shuffling rounds, not secrets
    cases: list[Case] = []
    environments: dict[str, dict[str, Any]] = {}
    skipped: list[TreSkipped] = []
    for provider in providers:
        try:
            environments[provider.tre] = provider.environment()
            cases += provider.cases(quick)
        except TrelabError as exc:
            skipped.append(TreSkipped(provider.tre, str(exc)))
    results = {id(c): CaseResult(c.tre, c.operation, c.raw, c.detail, c.batch, []) for c in cases}
    live = list(cases)
    clock = time.perf_counter_ns
    interrupted = False
    done_rounds = 0
    try:
        for c in list(live):  # warm-up: lazy loads, caches, first-use costs
            try:
                _timed(c, clock)
            except TrelabError as exc:
                results[id(c)].errors.append(f"warm-up: {exc}")
                live.remove(c)
        for r in range(rounds):
            order = live[:]
            rng.shuffle(order)
            for c in order:
                try:
                    sample, parts = _timed(c, clock)
                except TrelabError as exc:
                    results[id(c)].errors.append(str(exc))
                    continue
                results[id(c)].samples_ns.append(sample)
                if parts is not None:
                    results[id(c)].breakdowns.append(parts)
            done_rounds = r + 1
            if rounds >= 5 and (r + 1) % max(1, rounds // 5) == 0:
                progress(f"bench: round {r + 1}/{rounds} over {len(live)} cases")
    except KeyboardInterrupt:
        interrupted = True
        progress(f"bench: interrupted after {done_rounds} rounds; keeping what finished")
    return RunResult(
        cases=[results[id(c)] for c in cases],
        environments=environments,
        skipped=skipped,
        interrupted=interrupted,
        rounds=done_rounds,
        seed=seed,
    )
