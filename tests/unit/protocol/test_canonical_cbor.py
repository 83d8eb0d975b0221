"""The reused per-thread encoder gives cbor2's canonical bytes and survives failures."""

from __future__ import annotations

import threading

import cbor2
import pytest

from protocol import canonical_cbor

VALUES = [
    0,
    -1,
    2**64 - 1,
    b"",
    "é",
    [1, [2, b"x"], {"b": 1, "a": [True, None]}],
    {"th": b"\0" * 32, "v": 1, "b": {"zz": 1, "a": 2, 10: 3, -1: 4}},
    cbor2.CBORTag(18, [b"p", {}, b"payload", b"s" * 64]),
    {1: -7, 4: b"kid"},
]


@pytest.mark.parametrize("value", VALUES)
def test_same_bytes_as_cbor2_canonical(value: object) -> None:
    assert canonical_cbor.dumps(value) == cbor2.dumps(value, canonical=True)
    assert canonical_cbor.dumps(value) == cbor2.dumps(value, canonical=True)  # reused


def test_a_failed_encode_leaves_nothing_behind() -> None:
    cyclic: list[object] = [1]
    cyclic.append(cyclic)
    for bad in ({"a": object()}, cyclic):
        with pytest.raises(cbor2.CBOREncodeError):
            canonical_cbor.dumps(bad)
        assert canonical_cbor.dumps({"a": [1, 2]}) == cbor2.dumps({"a": [1, 2]}, canonical=True)


def test_threads_do_not_share_an_encoder() -> None:
    wrong: list[object] = []

    def work(n: int) -> None:
        for i in range(300):
            value = {"n": n, "i": i, "pad": bytes(n * 7 + i % 50)}
            if canonical_cbor.dumps(value) != cbor2.dumps(value, canonical=True):
                wrong.append(value)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
