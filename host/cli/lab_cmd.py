"""Edge: CLI. ``trelab lab up | down | status | reset | detect`` — the lab's parts and the host's hardware.

``status`` exits 3 when any part (swtpm, pcscd, card, modem) is not running (like ``systemctl
status``), so scripts can write
``trelab lab status || trelab lab up``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from host.cli import defaults, output
from host.cli.output import Outcome
from lab.lab import OPTIONAL_PARTS, Lab, LabStatus

__all__ = ["register"]


def _lab(args: argparse.Namespace) -> Lab:
    return Lab(
        defaults.lab_dir(args.lab_dir),
        port=getattr(args, "port", None),
        tpm_profile=getattr(args, "tpm_profile", None),
        resource_manager=getattr(args, "resource_manager", None),
    )


def _data(status: LabStatus) -> dict[str, Any]:
    return {"version": output.JSON_VERSION, **status.to_dict()}


def _text(status: LabStatus) -> str:
    tpm, pc, ca = status.swtpm, status.pcscd, status.ca
    lines = [f"lab {status.lab_dir}"]
    lines += [f"  {action}" for action in status.actions]
    if tpm.state == "running":
        detail = f"pid {tpm.pid}, port {tpm.port} (ctrl {tpm.ctrl_port})  {tpm.tcti}"
    else:
        detail = tpm.note
    lines.append(f"swtpm  {tpm.state:8} {detail}".rstrip())
    front = status.front
    if front is not None and front.state != "stopped":
        parts = [f"profile {front.profile}"] if front.profile else []
        if front.resource_manager:
            parts.append(f"tpm2-abrmd pid {front.abrmd_pid}")
        detail = f"{', '.join(parts)}  {front.tcti}" if front.tcti else front.note
        lines.append(f"front  {front.state:8} {detail}".rstrip())
    if pc.state == "running":
        whose = "started by trelab" if pc.owned else "not started by trelab"
        readers = ", ".join(pc.readers) or "no readers"
        detail = f"pid {pc.pid} ({whose}, {len(pc.users)} lab(s))  readers: {readers}"
    else:
        detail = pc.note
    lines.append(f"pcscd  {pc.state:8} {detail}".rstrip())
    db = status.postgres
    if db is not None:
        from network.engines import redact_url

        detail = f"pid {db.pid}, {redact_url(db.url)}" if db.url else db.note
        lines.append(f"postgres {db.state:6} {detail}".rstrip())
    card, modem = status.card, status.modem
    if card is not None:
        if card.state == "running":
            link = card.link or "unknown"
            detail = f"pid {card.pid}  {card.reader} ({link})  profile {card.profile}"
        else:
            detail = card.note
        lines.append(f"card   {card.state:8} {detail}".rstrip())
    if modem is not None:
        if modem.state == "running":
            detail = f"pid {modem.pid}  {modem.device} -> {modem.pty}  profile {modem.profile}"
        else:
            detail = modem.note
        lines.append(f"modem  {modem.state:8} {detail}".rstrip())
    if ca.bundle.is_file():
        verified = "EK chains verified" if ca.verified else "not verified since last up"
        lines.append(f"ca     {ca.bundle}  ({verified})")
    else:
        lines.append("ca     not created yet (`trelab lab up` creates it)")
    return "\n".join(lines)


def _say(message: str) -> None:
    print(f"trelab: {message}", file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> Outcome:
    status = _lab(args).up(progress=_say, with_parts=tuple(args.with_parts or ()))
    return Outcome(data=_data(status), text=_text(status))


def _reset(args: argparse.Namespace) -> Outcome:
    status = _lab(args).reset(tuple(args.parts), progress=_say)
    return Outcome(data=_data(status), text=_text(status))


def _down(args: argparse.Namespace) -> Outcome:
    status = _lab(args).down()
    return Outcome(data=_data(status), text=_text(status))


def _status(args: argparse.Namespace) -> Outcome:
    status = _lab(args).status()
    return Outcome(data=_data(status), text=_text(status), exit_code=0 if status.complete else 3)


def _detect(args: argparse.Namespace) -> Outcome:
    # The result carries each probe's error; tpm2-tss's own ERROR lines would only repeat it.
    os.environ.setdefault("TSS2_LOG", "all+none")
    from lab.detect import detect

    found = detect()
    lines = ["TPM devices:"]
    lines += [
        f"  {t.path}: {t.error}"
        if t.error
        else f"  {t.path}: {t.manufacturer} {t.vendor}, firmware {t.firmware}  (--tpm {t.tcti})"
        for t in found.tpms
    ] or ["  none"]
    lines.append("PC/SC readers:" + ("" if found.pcsc == "ok" else f" ({found.pcsc})"))
    lines += [
        f"  {r.name}: " + (f"card ATR {r.atr}" if r.atr else "no card") for r in found.readers
    ] or ["  none"]
    if found.virtual_readers:
        lines.append("  (lab vpcd: " + ", ".join(r.name for r in found.virtual_readers) + ")")
    lines.append("Serial ports (USB/PCI):")
    lines += [f"  {p.device}: {p.description} [{p.hwid}]" for p in found.serial_ports] or ["  none"]
    if found.platform_serial_ports:
        names = ", ".join(p.device for p in found.platform_serial_ports)
        lines.append(f"  (built-in UARTs: {names})")
    return Outcome(data={"version": output.JSON_VERSION, **found.to_dict()}, text="\n".join(lines))


def register(nouns: Any) -> None:
    """Add ``lab`` and its verbs to the ``trelab`` noun parsers."""
    lab = nouns.add_parser(
        "lab",
        help="start, stop and inspect the lab (swtpm, pcscd + vpcd, card, modem); detect hardware",
        description=(
            "The lab: swtpm with EK certificates from a per-lab CA, pcscd with vpcd, an "
            "emulated USIM on reader 0 and an emulated modem on a pty."
        ),
    )
    verbs = lab.add_subparsers(dest="verb", metavar="VERB", parser_class=type(lab))
    verbs.required = True
    dir_help = "lab directory (default: $TRELAB_LAB_DIR, else the user state dir)"
    specs = (
        ("up", _up, "start swtpm, pcscd, card, modem (idempotent; restarts crashed parts)"),
        ("down", _down, "stop what `lab up` started; leave a shared pcscd to other labs"),
        ("status", _status, "report each part; exit 3 if one is not running"),
    )
    for name, func, help_text in specs:
        parser = verbs.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--lab-dir", type=Path, default=None, help=dir_help)
        # the earlier spelling, kept working but no longer shown
        parser.add_argument("--dir", dest="lab_dir", type=Path, help=argparse.SUPPRESS)
        if name == "up":
            from lab.front import profile_names

            parser.add_argument(
                "--port", type=int, default=None, help="swtpm TCP port P (P+1: control)"
            )
            parser.add_argument(
                "--with",
                dest="with_parts",
                action="append",
                choices=OPTIONAL_PARTS,
                metavar="PART",
                help="also start PART: postgres (a PostgreSQL server in the lab directory for "
                "`network serve --store`; started with the lab from then on)",
            )
            parser.add_argument(
                "--tpm-profile",
                metavar="NAME",
                default=None,
                help="present a real part through the TPM proxy: "
                + ", ".join(profile_names())
                + "; none removes it (default: keep what runs)",
            )
            parser.add_argument(
                "--resource-manager",
                metavar="RM",
                default=None,
                help="put a resource manager in front of the TPM, as /dev/tpmrm0 on a board: "
                "abrmd (tpm2-abrmd on a private D-Bus), or none (default: keep what runs)",
            )
        output.add_json_flag(parser)
        parser.set_defaults(func=func)
    reset = verbs.add_parser(
        "reset",
        help="give the virtual card and/or modem their default profile and state back "
        "(e.g. after `transfer ki --rotate-k`), then bring the lab up",
        description="Stop the part, remove its profile.json and state.json (K rotated over the "
        "air, SQN, PIN counters, OTA key sets), start it again with the default test profile. "
        "The TPM and its MIDs are not touched.",
    )
    reset.add_argument("parts", nargs="+", choices=("card", "modem"), metavar="PART",
                       help="card, modem (or both)")  # fmt: skip
    reset.add_argument("--lab-dir", type=Path, default=None, help=dir_help)
    reset.add_argument("--dir", dest="lab_dir", type=Path, help=argparse.SUPPRESS)
    output.add_json_flag(reset)
    reset.set_defaults(func=_reset)
    detect = verbs.add_parser("detect", help="list physical TPMs, PC/SC readers and serial ports")
    output.add_json_flag(detect)
    detect.set_defaults(func=_detect)
