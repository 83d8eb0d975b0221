"""The contract every harness checks: outside input either decodes or raises an error of the
project's tree (:class:`trelab.errors.TrelabError`); anything else escapes and is a finding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from trelab.errors import TrelabError

T = TypeVar("T")


def typed(call: Callable[..., T], *args: Any, **kwargs: Any) -> T | TrelabError:
    """``call(*args)``, or the typed error it raised; any other exception propagates."""
    try:
        return call(*args, **kwargs)
    except TrelabError as exc:
        text = str(exc)
        if "\n" in text.strip():
            raise AssertionError(f"error message is not one line: {text!r}") from exc
        return exc


class Reader:
    """Fuzzer bytes read strictly front to back (atheris' FuzzedDataProvider takes integers from
    the end), so an input built from real messages reads back as the same choices and bytes."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def remaining(self) -> int:
        return len(self._data) - self._at

    def byte(self) -> int:
        """The next byte (0 once the input is used up)."""
        if self._at >= len(self._data):
            return 0
        self._at += 1
        return self._data[self._at - 1]

    def pick(self, n: int) -> int:
        """A choice among ``n`` (one byte)."""
        return self.byte() % n

    def flag(self) -> bool:
        return bool(self.byte() & 1)

    def take(self, n: int) -> bytes:
        out = self._data[self._at : self._at + n]
        self._at += len(out)
        return out

    def chunk(self, most: int) -> bytes:
        """A length byte (1…``most``), then that many bytes."""
        return self.take(1 + self.byte() % most)

    def rest(self) -> bytes:
        return self.take(self.remaining())
