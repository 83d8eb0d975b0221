"""TS 33.102 Annex C SQN handling: properties (hypothesis) and the edge cases by hand."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aka.sqn import DEFAULT_DELTA, SqnGenerator, SqnState, join_sqn, split_sqn
from trelab.errors import BadInput

IND_BITS = 5
SEQ_TOP = 1 << (48 - IND_BITS)

seqs = st.integers(min_value=0, max_value=SEQ_TOP - 1)
inds = st.integers(min_value=0, max_value=(1 << IND_BITS) - 1)


@given(seq=seqs, ind=inds)
def test_split_join_round_trip(seq: int, ind: int) -> None:
    assert split_sqn(join_sqn(seq, ind)) == (seq, ind)


@settings(max_examples=300)
@given(history=st.lists(st.tuples(st.integers(1, 10_000), inds), min_size=1, max_size=40))
def test_never_accepts_the_same_sqn_twice_and_never_goes_back(
    history: list[tuple[int, int]],
) -> None:
    state = SqnState()
    accepted: set[bytes] = set()
    for seq, ind in history:
        sqn = join_sqn(seq, ind)
        before = state.seq_ms[ind]
        verdict, new = state.check(sqn)
        if verdict.accepted:
            assert sqn not in accepted
            assert seq > before
            accepted.add(sqn)
            assert new.seq_ms[ind] == seq
        else:
            assert new is state  # a refusal changes nothing
        assert all(a >= b for a, b in zip(new.seq_ms, state.seq_ms, strict=True))
        assert new.highest_seq == max(new.seq_ms)
        state = new


@given(seq=st.integers(1, DEFAULT_DELTA), ind=inds)
def test_replay_is_refused(seq: int, ind: int) -> None:
    verdict, state = SqnState().check(join_sqn(seq, ind))
    assert verdict.accepted
    again, same = state.check(join_sqn(seq, ind))
    assert not again.accepted and again.reason == "replayed" and same is state


def test_other_index_may_lag_behind_the_highest() -> None:
    """The array lets vectors used out of order (different IND) still be accepted (C.1.2)."""
    state = SqnState()
    _, state = state.check(join_sqn(10, 3))
    verdict, state = state.check(join_sqn(8, 4))
    assert verdict.accepted
    assert state.highest_seq == 10 and state.sqn_ms == join_sqn(10, 3)


def test_delta_protects_against_wrap_around() -> None:
    state = SqnState(delta=100)
    assert not state.check(join_sqn(101, 0))[0].accepted
    assert state.check(join_sqn(101, 0))[0].reason == "too far ahead"
    assert state.check(join_sqn(100, 0))[0].accepted


def test_age_limit_l() -> None:
    state = SqnState(limit=5)
    _, state = state.check(join_sqn(20, 0))
    assert state.check(join_sqn(14, 1))[0].reason == "too old"
    assert state.check(join_sqn(15, 1))[0].accepted
    assert SqnState().check(join_sqn(20, 0))[1].check(join_sqn(1, 1))[0].accepted  # no L


def test_starting_at_accepts_only_higher_seq() -> None:
    state = SqnState.starting_at(join_sqn(1000, 7))
    assert not state.check(join_sqn(1000, 2))[0].accepted
    assert not state.check(join_sqn(999, 7))[0].accepted
    assert state.check(join_sqn(1001, 2))[0].accepted
    assert state.sqn_ms[:6] == join_sqn(1000, state.sqn_ms[-1] & 31)


@given(history=st.lists(st.tuples(st.integers(1, 1000), inds), max_size=20))
def test_json_round_trip(history: list[tuple[int, int]]) -> None:
    state = SqnState(limit=50)
    for seq, ind in history:
        state = state.check(join_sqn(seq, ind))[1]
    again = SqnState.from_json(json.loads(state.dumps()))
    assert again == state and again.sqn_ms == state.sqn_ms


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"version": 2, "ind_bits": 5, "delta": 1, "limit": None, "seq_ms": [0] * 32},
        {"version": 1, "ind_bits": 5, "delta": 1, "limit": None, "seq_ms": [0] * 31},
        {"version": 1, "ind_bits": 5, "delta": 1, "limit": None, "seq_ms": ["x"] * 32},
        {"version": 1, "ind_bits": 5, "delta": 0, "limit": None, "seq_ms": [0] * 32},
        {"version": 1, "ind_bits": 5, "delta": 1, "limit": None, "seq_ms": [-1] * 32},
        [],
    ],
)
def test_malformed_state_is_bad_input(data: object) -> None:
    with pytest.raises(BadInput):
        SqnState.from_json(data)


def test_generator_sequence_and_exhaustion() -> None:
    gen = SqnGenerator()
    first = [gen.next() for _ in range(33)]
    assert [split_sqn(s) for s in first[:3]] == [(1, 0), (2, 1), (3, 2)]
    assert split_sqn(first[32]) == (33, 0)  # IND wraps, SEQ keeps growing
    assert gen.take(3) == [join_sqn(34, 1), join_sqn(35, 2), join_sqn(36, 3)]
    late = SqnGenerator(seq_he=SEQ_TOP - 1)
    with pytest.raises(BadInput):
        late.next()
    with pytest.raises(BadInput):
        late.take(1)


def test_generator_resynchronise_rules() -> None:
    gen = SqnGenerator(seq_he=10)
    assert not gen.resynchronise(join_sqn(5, 0))  # next SQN (11) would be accepted
    assert gen.resynchronise(join_sqn(50, 0)) and gen.seq_he == 50
    far = SqnGenerator(seq_he=10_000, delta=100)
    assert far.resynchronise(join_sqn(5, 0)) and far.seq_he == 5  # HE too far ahead
