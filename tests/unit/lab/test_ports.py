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


def test_pair_candidates_stay_off_the_ephemeral_and_reserved_ports(tmp_path: Path) -> None:
    from lab.ports import ephemeral_range, pair_candidates

    ephemeral = range(32768, 61000)
    pairs = pair_candidates(12345, ephemeral=ephemeral, reserved={20000})
    assert len(pairs) == len(set(pairs))  # each pair once
    every = {p for p in range(10000, 65535) if p not in ephemeral and p + 1 not in ephemeral}
    outside = every - {19999, 20000}
    assert set(pairs[: len(outside)]) == outside  # all of them first: none left to luck
    for port in pairs:
        assert port >= 10000 and port + 1 <= 65535 and 20000 not in (port, port + 1)
    assert pairs[0] != pair_candidates(12346, ephemeral=ephemeral, reserved={20000})[0]
    # an ephemeral range covering everything: the pairs inside it are still tried, all of them
    wide = pair_candidates(7, ephemeral=range(1024, 65536), reserved=())
    assert sorted(wide) == list(range(10000, 65535))
    sysctl = tmp_path / "ip_local_port_range"
    sysctl.write_text("40000\t50000\n")
    assert ephemeral_range(sysctl) == range(40000, 50001)
    sysctl.write_text("garbage")
    assert ephemeral_range(sysctl) == range(32768, 61000)


def test_a_client_s_time_wait_blocks_its_port_and_the_pair_is_chosen_elsewhere() -> None:
    """Real sockets: a client connection closed first leaves TIME_WAIT on its ephemeral local
    port, and binding that port fails even with SO_REUSEADDR — what made a pair picked in the
    ephemeral range a matter of luck. The pair chosen now lies outside that range."""
    import socket

    from lab.ports import ephemeral_range
    from lab.swtpm import find_free_port_pair, port_pair_free

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        local = client.getsockname()[1]
        client.close()  # the client closes first: TIME_WAIT on its side
        server.close()
    assert local in ephemeral_range()
    assert not port_pair_free(local) and not port_pair_free(local - 1)  # blocked by TIME_WAIT
    for _ in range(10):
        port = find_free_port_pair()
        assert port not in ephemeral_range() and port + 1 not in ephemeral_range()
        assert port_pair_free(port)
