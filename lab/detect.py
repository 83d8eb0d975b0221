"""Edge: devices, PC/SC, serial. Find physical TREs and links: TPM devices, PC/SC readers with
their cards' ATR, serial ports (modems).

Detection never fails because something is absent: a missing device, a stopped pcscd or an
unreadable TPM is a fact in the result (``note``/``error`` fields), not an exception. The lab's
own virtual parts (vpcd readers) are listed apart from hardware, and so are built-in UARTs that
carry no USB/PCI identity (a VM's ``ttyS0``), so that "no hardware" reads as empty lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab import pcscd

__all__ = [
    "Detection",
    "Reader",
    "SerialPort",
    "TpmDevice",
    "decode_ascii_u32",
    "describe_tpm",
    "detect",
    "detect_readers",
    "detect_serial_ports",
    "detect_tpms",
    "format_firmware",
]

TPM_DEVICES = ("tpmrm0", "tpm0")  # tpmrm0 first: the kernel resource manager
_PT_MANUFACTURER = 0x105  # TPM2_PT_FIXED + 5; VENDOR_STRING_1..4 follow, FIRMWARE_VERSION_1 = +0xB
_PT_VENDOR_STRINGS = range(0x106, 0x10A)
_PT_FIRMWARE_1 = 0x10B
_PT_FIRMWARE_2 = 0x10C
_SCARD_STATE_PRESENT = 0x20


def decode_ascii_u32(values: Iterable[int]) -> str:
    """Pure. TPM property words (big-endian ASCII, NUL/space-padded) → text, e.g. 0x49424D00 →
    "IBM"; swtpm's "SW  " + " TPM" → "SW TPM" (padding runs collapse to one space)."""
    raw = b"".join(v.to_bytes(4, "big") for v in values)
    return " ".join(raw.replace(b"\0", b" ").decode("ascii", errors="replace").split())


def format_firmware(v1: int, v2: int) -> str:
    """Pure. FIRMWARE_VERSION_1/2 as four 16-bit parts, the way fwupd and vendors print them
    (e.g. Infineon 7.85.4555.0)."""
    return f"{v1 >> 16}.{v1 & 0xFFFF}.{v2 >> 16}.{v2 & 0xFFFF}"


@dataclass(frozen=True)
class TpmDevice:
    """A TPM character device, with what TPM2_GetCapability said (or why it could not)."""

    path: str
    tcti: str
    manufacturer: str | None = None
    vendor: str | None = None
    firmware: str | None = None
    firmware_raw: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Reader:
    """A PC/SC reader; ``atr`` (hex) when a card is present."""

    name: str
    atr: str | None = None
    card_present: bool = False


@dataclass(frozen=True)
class SerialPort:
    """A serial port as pyserial lists it; ``hwid`` "n/a" means no USB/PCI identity."""

    device: str
    description: str
    hwid: str
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None
    manufacturer: str | None = None


@dataclass(frozen=True)
class Detection:
    """What ``trelab lab detect`` found."""

    tpms: list[TpmDevice] = field(default_factory=list)
    readers: list[Reader] = field(default_factory=list)
    virtual_readers: list[Reader] = field(default_factory=list)
    pcsc: str = "ok"
    serial_ports: list[SerialPort] = field(default_factory=list)
    platform_serial_ports: list[SerialPort] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_tpm(tcti_name: str, tcti_conf: str) -> dict[str, str]:
    """Manufacturer, vendor string and firmware of the TPM behind a TCTI (GetCapability of the
    fixed properties; creates no object, so safe without a resource manager).

    Raises:
        tpm.tss.TSS2_Exception: the TPM cannot be opened or queried (the caller reports it).
    """
    from tpm.tss import ESAPI, TPM2_CAP, TCTILdr

    with TCTILdr(tcti_name, tcti_conf) as tctildr, ESAPI(tctildr) as esys:
        _, caps = esys.get_capability(TPM2_CAP.TPM_PROPERTIES, _PT_MANUFACTURER, 8)
        props = {int(p.property): int(p.value) for p in caps.data.tpmProperties}
    v1, v2 = props.get(_PT_FIRMWARE_1, 0), props.get(_PT_FIRMWARE_2, 0)
    return {
        "manufacturer": decode_ascii_u32([props.get(_PT_MANUFACTURER, 0)]),
        "vendor": decode_ascii_u32(props.get(p, 0) for p in _PT_VENDOR_STRINGS),
        "firmware": format_firmware(v1, v2),
        "firmware_raw": f"{v1:08x}:{v2:08x}",
    }


def detect_tpms(dev_dir: Path = Path("/dev")) -> list[TpmDevice]:
    """TPM devices under ``dev_dir``; one entry per device node that exists."""
    found: list[TpmDevice] = []
    for name in TPM_DEVICES:
        node = dev_dir / name
        if not node.exists():
            continue
        tcti = f"device:{node}"
        try:
            info = describe_tpm("device", str(node))
        except Exception as exc:  # TSS2, permission, missing libtss2: all are facts here
            found.append(TpmDevice(path=str(node), tcti=tcti, error=f"{type(exc).__name__}: {exc}"))
        else:
            found.append(TpmDevice(path=str(node), tcti=tcti, **info))
    return found


def detect_readers() -> tuple[list[Reader], list[Reader], str]:
    """(hardware readers, vpcd readers, pcsc note). The ATR comes from the reader state that
    pcscd already holds (SCardGetStatusChange), so no card is powered or reset by looking."""
    if not pcscd.pcscd_running() and not pcscd.PCSCD_RUN_DIR.joinpath("pcscd.comm").exists():
        return [], [], "pcscd not running: start it (or `trelab lab up`) to list readers"
    try:
        from smartcard import scard
    except ImportError:
        return [], [], "pyscard not installed"
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return [], [], f"pcscd not reachable: {scard.SCardGetErrorMessage(hresult)}"
    try:
        hresult, names = scard.SCardListReaders(context, [])
        if hresult != scard.SCARD_S_SUCCESS or not names:
            return [], [], "ok"
        hresult, states = scard.SCardGetStatusChange(
            context, 0, [(name, scard.SCARD_STATE_UNAWARE) for name in names]
        )
        if hresult != scard.SCARD_S_SUCCESS:
            states = [(name, 0, []) for name in names]
    finally:
        scard.SCardReleaseContext(context)
    hardware: list[Reader] = []
    virtual: list[Reader] = []
    for name, event_state, atr in states:
        present = bool(int(event_state) & _SCARD_STATE_PRESENT)
        reader = Reader(
            name=str(name), atr=bytes(atr).hex() if present and atr else None, card_present=present
        )
        (virtual if reader.name.startswith(pcscd.VPCD_READER_PREFIX) else hardware).append(reader)
    return hardware, virtual, "ok"


def _serial(port: Any) -> SerialPort:
    return SerialPort(
        device=str(port.device),
        description=str(port.description),
        hwid=str(port.hwid),
        vid=port.vid,
        pid=port.pid,
        serial_number=port.serial_number,
        manufacturer=port.manufacturer,
    )


def detect_serial_ports(ports: Sequence[Any] | None = None) -> tuple[list[SerialPort], ...]:
    """(ports with a USB/PCI identity — modems, adapters —, built-in UARTs without one)."""
    if ports is None:
        try:
            from serial.tools import list_ports
        except ImportError:
            return [], []
        ports = list_ports.comports()
    identified: list[SerialPort] = []
    platform: list[SerialPort] = []
    for port in ports:
        entry = _serial(port)
        (platform if entry.hwid in ("", "n/a") else identified).append(entry)
    return identified, platform


def detect(dev_dir: Path = Path("/dev")) -> Detection:
    """Everything at once; never raises for absent hardware."""
    readers, virtual, note = detect_readers()
    serial_ports, platform_ports = detect_serial_ports()
    return Detection(
        tpms=detect_tpms(dev_dir),
        readers=readers,
        virtual_readers=virtual,
        pcsc=note,
        serial_ports=serial_ports,
        platform_serial_ports=platform_ports,
    )
