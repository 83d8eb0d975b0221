"""A network URL without its scheme is bad input (exit 2), not an unavailable lab part (3)."""

from __future__ import annotations

import pytest


def test_url_check_itself_is_bad_input() -> None:
    from protocol.client import HttpTransport
    from trelab.errors import BadInput

    with pytest.raises(BadInput, match="expected https://HOST:PORT"):
        HttpTransport("127.0.0.1:8731")
