"""A physical card reader and a physical modem, through the same commands as the lab's virtual
card. They skip unless hardware is there: a PC/SC reader whose name is not "Virtual PCD" (or
``TRELAB_TEST_READER=<name|index|regex>``), and ``TRELAB_TEST_MODEM=/dev/ttyUSB2`` for a modem.
``TRELAB_TEST_PIN`` lets them verify the PIN and read the IMSI; nothing here authenticates, so
a real SIM's SQN is never touched."""

from __future__ import annotations

import os

import pytest

from trelab.errors import Unavailable
from uicc.errors import CardRefused
from uicc.links.at_csim import AtCsimLink
from uicc.links.pcsc import PcscLink, list_readers
from uicc.survey import survey
from uicc.usim import UsimClient

pytestmark = pytest.mark.hardware


def _physical_reader() -> str | None:
    explicit = os.environ.get("TRELAB_TEST_READER")
    if explicit:
        return explicit
    try:
        readers = list_readers()
    except Unavailable:
        return None
    physical = [r for r in readers if not r.startswith("Virtual PCD")]
    return physical[0] if physical else None


def _check(client: UsimClient) -> None:
    info = client.info()
    assert info.iccid.isdigit() and 18 <= len(info.iccid) <= 20
    assert info.usim_aid.hex().startswith("a0000000871002")
    pin = os.environ.get("TRELAB_TEST_PIN")
    if pin:
        client.verify_pin(pin)
        assert client.read_imsi().isdigit()
    elif info.pin.state == "enabled":
        with pytest.raises(CardRefused):
            client.read_imsi()
    # `card info`'s whole reading: a real card's files decode or are reported, never a crash
    found = survey(client)
    assert any(app.is_usim for app in found.applications)
    assert found.value("MF/EF.ICCID") == info.iccid
    statuses = {f.status for f in found.files}
    assert statuses <= {"read", "absent", "refused", "withheld", "undecodable"}
    assert all(f.value is None for f in found.files if f.status == "withheld")


def test_physical_reader() -> None:
    reader = _physical_reader()
    if reader is None:
        pytest.skip("no physical PC/SC reader (set TRELAB_TEST_READER to name one)")
    try:
        link = PcscLink(reader)
    except Unavailable as exc:
        pytest.skip(f"reader {reader!r}: {exc}")
    with link:
        assert link.atr and link.atr[0] in (0x3B, 0x3F)
        _check(UsimClient(link))


def test_physical_modem() -> None:
    port = os.environ.get("TRELAB_TEST_MODEM")
    if not port:
        pytest.skip("no modem (set TRELAB_TEST_MODEM=/dev/ttyUSB2 or similar)")
    with AtCsimLink(port) as link:
        assert link.command("AT") == ()
        assert any(line.startswith("+CPIN:") for line in link.command("AT+CPIN?"))
        _check(UsimClient(link))
