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

from trelab.errors import BadInput, Unavailable

# ESYS prints its own error lines on stderr when the TPM refuses a command; trelab reports
# every refusal itself in one line, so silence the library unless the user asked for its logs.
os.environ.setdefault("TSS2_LOG", "all+NONE")

__all__ = ["TpmConnection", "parse_tcti"]


def parse_tcti(tcti: str) -> tuple[str, str]:
    """``"name:conf"`` → (name, conf).

    Raises:
        BadInput: empty or without a name.
    """
    name, _, conf = tcti.strip().partition(":")
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise BadInput(f"--tpm: {tcti!r} is not a TCTI string (e.g. device:/dev/tpmrm0)")
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
    """An open ESAPI context on one TPM; use as a context manager so it is always closed."""

    def __init__(self, tcti: str) -> None:
        from tpm2_pytss import ESAPI, TCTILdr, TSS2_Exception

        self.tcti = tcti
        name, conf = parse_tcti(tcti)
        if name == "tabrmd":  # a lab's tpm2-abrmd runs on a private bus: find its address
            _tabrmd_environment(conf)
        try:
            self._tctildr = TCTILdr(name, conf or None)
        except TSS2_Exception as exc:
            raise Unavailable(
                f"cannot open TPM {tcti!r}: {exc}",
                fix="check the TCTI (trelab lab status / lab detect) and that libtss2-tcti-* is installed",
            ) from None
        try:
            self.esys: Any = ESAPI(self._tctildr)
        except TSS2_Exception as exc:
            self._tctildr.close()
            raise Unavailable(f"TPM {tcti!r} does not answer: {exc}", fix="trelab lab up") from None
        #: Facts about this TPM that hold for the connection's life (which NV indices exist,
        #: where the EK is), so hot paths do not ask the TPM again; whoever changes such a
        #: fact (undefine, TPM2_Clear) calls :meth:`forget`.
        self.memo: dict[Any, Any] = {}

    def forget(self, key: Any = None) -> None:
        """Drop one memo entry, or all of them (``key`` None: after TPM2_Clear)."""
        if key is None:
            self.memo.clear()
        else:
            self.memo.pop(key, None)

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
        with contextlib.suppress(Exception):
            self._tctildr.close()

    def flush(self, handle: Any) -> None:
        """Flush a transient object or session (swtpm has no resource manager)."""
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
