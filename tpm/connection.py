"""Edge: TPM. Open a TPM from a TCTI string, the one way every ``tpm/`` module gets an ESAPI.

TCTI strings: ``swtpm:host=127.0.0.1,port=P`` (lab), ``device:/dev/tpmrm0`` (a board),
``mssim:host=…,port=…``. Which TPM to open is the caller's choice (the CLI resolves its
default, see :mod:`host.cli.defaults`). swtpm has no resource manager: callers flush what they create
(:meth:`TpmConnection.flush` and the ``transient`` context manager help).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from tpm.tss import TpmFacts, open_esys, open_transport
from trelab.errors import BadInput

__all__ = ["TpmConnection", "parse_tcti"]


def parse_tcti(tcti: str) -> tuple[str, str]:
    """``"name:conf"`` → (name, conf).

    Raises:
        BadInput: empty or without a name.
    """
    name, _, conf = tcti.strip().partition(":")
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise BadInput(f"{tcti!r} is not a TCTI string (e.g. device:/dev/tpmrm0)", field="tcti")
    return name, conf


#: D-Bus names of the lab's tpm2-abrmd instances (``lab.abrmd``) start with this.
TABRMD_BUS_PREFIX = "com.intel.tss2.Tabrmd.trelab_"


def bus_registry_dir() -> Path:
    """Where a lab records the private bus address of its tpm2-abrmd, one file per bus name."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"trelab-buses-{os.getuid()}"


def _tabrmd_environment(conf: str) -> None:
    """Make a lab's ``tabrmd:`` TCTI reachable from this process: point
    ``DBUS_SESSION_BUS_ADDRESS`` at the private bus the lab registered for the TCTI's bus
    name. Other bus names (a tpm2-abrmd that is not a lab's) are left alone."""
    fields = dict(f.partition("=")[::2] for f in conf.split(",") if "=" in f)
    name = fields.get("bus_name", "")
    if not name.startswith(TABRMD_BUS_PREFIX) or "/" in name:
        return
    with contextlib.suppress(OSError):
        address = (bus_registry_dir() / name).read_text().strip()
        if address:
            os.environ["DBUS_SESSION_BUS_ADDRESS"] = address


class TpmConnection:
    """An open TPM: its transport (:mod:`tpm.tss`), an ESAPI context over it, and the facts
    known about it (:class:`tpm.tss.TpmFacts`); use as a context manager so it is closed."""

    def __init__(self, tcti: str) -> None:
        self.tcti = tcti
        name, conf = parse_tcti(tcti)
        if name == "tabrmd":  # a lab's tpm2-abrmd runs on a private bus: find its address
            _tabrmd_environment(conf)
        self.transport = open_transport(name, conf)
        try:
            self.esys, self._esys_tcti = open_esys(self.transport)
        except BaseException:
            self.transport.close()
            raise
        #: facts about this TPM that hold for the connection's life (NV indices that exist,
        #: the EK); whoever changes one (undefine, TPM2_Clear) updates them
        self.facts = TpmFacts()

    def __enter__(self) -> TpmConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.esys.close()
        self.transport.close()

    def flush(self, handle: Any) -> None:
        """Flush a transient object or ESYS session (swtpm has no resource manager)."""
        with contextlib.suppress(Exception):
            self.esys.flush_context(handle)

    @contextlib.contextmanager
    def transient(self, handle: Any) -> Iterator[Any]:
        """Yield ``handle`` and flush it afterwards, whatever happens."""
        try:
            yield handle
        finally:
            self.flush(handle)

    def __repr__(self) -> str:
        return f"TpmConnection({self.tcti!r})"
