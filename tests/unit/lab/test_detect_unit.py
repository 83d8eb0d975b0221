"""lab.detect's pure parts: TPM property decoding, serial port classification."""

from __future__ import annotations

from dataclasses import dataclass

from lab.detect import decode_ascii_u32, detect_serial_ports, format_firmware


def test_manufacturer_and_vendor_words() -> None:
    assert decode_ascii_u32([0x49424D00]) == "IBM"
    assert decode_ascii_u32([0x53572020, 0x2054504D, 0, 0]) == "SW TPM"  # swtpm
    assert decode_ascii_u32([0x534C4239, 0x36373000, 0, 0]) == "SLB9670"
    assert decode_ascii_u32([]) == ""


def test_firmware_as_four_parts() -> None:
    assert format_firmware(0x00070055, 0x11CB0000) == "7.85.4555.0"  # an Infineon SLB9670
    assert format_firmware(0x20191023, 0x00163636) == "8217.4131.22.13878"


@dataclass
class _Port:
    device: str
    hwid: str
    description: str = "n/a"
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None
    manufacturer: str | None = None


def test_serial_ports_split_by_hardware_identity() -> None:
    modem = _Port("/dev/ttyUSB2", "USB VID:PID=2C7C:0125 LOCATION=1-1:1.2", "EG25", 0x2C7C, 0x125)
    uart = _Port("/dev/ttyS0", "n/a")
    identified, platform = detect_serial_ports([modem, uart])
    assert [p.device for p in identified] == ["/dev/ttyUSB2"]
    assert identified[0].vid == 0x2C7C
    assert [p.device for p in platform] == ["/dev/ttyS0"]
    assert detect_serial_ports([]) == ([], [])
