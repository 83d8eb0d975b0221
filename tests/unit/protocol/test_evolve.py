"""evolve: dataclasses.replace's result for the stored records, through the same __init__."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from protocol.records import MidRecord, SessionRecord, evolve


def test_same_as_replace() -> None:
    session = SessionRecord(bytes(32), "provision", "start", bytes(32), 1, 2, data={"a": b"1"})
    for changes in ({}, {"phase": "challenged"}, {"data": {"b": 2}, "secrets": {"s": b"x"}}):
        assert evolve(session, **changes) == dataclasses.replace(session, **changes)
    mid = MidRecord("m1", "d1", "sho-a", "00101", "PENDING", 1, bytes(32), 0, names={})
    again = evolve(mid, state="INSTALLED", command_seq=1)
    assert again == dataclasses.replace(mid, state="INSTALLED", command_seq=1)
    assert (mid.state, mid.command_seq) == ("PENDING", 0)  # the original is untouched


def test_unknown_field_and_uninitialised_fields_are_refused() -> None:
    session = SessionRecord(bytes(32), "provision", "start", bytes(32), 1, 2)
    with pytest.raises(TypeError):
        evolve(session, no_such_field=1)

    @dataclass(frozen=True)
    class Derived:
        a: int
        b: int = field(init=False, default=0)

    with pytest.raises(TypeError, match="use replace"):
        evolve(Derived(1), a=2)


def test_init_checks_still_run() -> None:
    @dataclass(frozen=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("negative")

    with pytest.raises(ValueError, match="negative"):
        evolve(Checked(1), n=-1)
