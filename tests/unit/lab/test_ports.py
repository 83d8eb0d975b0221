"""lab.ports: the kernel's reserved-port list is merged, never overwritten."""

from __future__ import annotations

from pathlib import Path

from lab.ports import describe_holders, parse_port_ranges, reserve_ports


def test_reserve_keeps_what_else_is_reserved(tmp_path: Path) -> None:
    sysctl = tmp_path / "ip_local_reserved_ports"
    sysctl.write_text("8080,35960-35962\n")
    done = reserve_ports((35963, 35964), sysctl)
    assert done is not None and "reserved ports 35963-35964" in done
    assert sysctl.read_text() == "8080,35960-35964\n"
    assert reserve_ports((35963, 35964), sysctl) is None  # idempotent


def test_reserve_says_why_it_could_not(tmp_path: Path) -> None:
    missing = tmp_path / "absent" / "ip_local_reserved_ports"
    done = reserve_ports((35963,), missing)
    assert done is not None and "not reserved" in done


def test_parse_and_describe() -> None:
    assert parse_port_ranges("") == set()
    assert parse_port_ranges("1-3,7\n") == {1, 2, 3, 7}
    from collections import Counter

    text = describe_holders({35963: Counter({"TIME_WAIT": 2, "ESTABLISHED": 1})})
    assert text == "port 35963: 1 ESTABLISHED, 2 TIME_WAIT"
