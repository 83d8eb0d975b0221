"""Edge: CLI. ``trelab provision --tpm TCTI --network URL --sho NAME`` — the host agent
provisions one MID into the TPM (TR 33.812 §7.1.2.1): register (EK certificate, AK,
credential activation) → validate (quote, PVA verdict) → MID package (DPF-signed, wrapped to
this TPM, bound to the validated PCRs, numbered MID_CTR + 1) → import → TPM-signed receipt →
the SHO activates it. An interrupted run is resumed (or rolled back) by the next one.

With a PCID in the agent state (``trelab operator issue-pcid``) the agent first attaches with
it to reach the registration operator, and releases it once the new MID is ACTIVE.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host.cli import defaults, output
from host.cli.output import Outcome

__all__ = ["DEFAULT_NETWORK", "NETWORK_ENV", "add_agent_options", "network_url", "register"]

DEFAULT_NETWORK = "https://127.0.0.1:8731"  # `trelab network serve`'s default, over TLS
NETWORK_ENV = "TRELAB_NETWORK"


def network_url(args: argparse.Namespace, default: str | None = None) -> str:
    """``--network``, else ``$TRELAB_NETWORK``, else ``default``, else the serve default."""
    url: str | None = getattr(args, "network", None) or os.environ.get(NETWORK_ENV) or default
    return url or DEFAULT_NETWORK


def network_transport(url: str, trust: Any = None, trust_path: Any = None) -> Any:
    """The HTTP transport to ``url``; for ``https://`` it trusts only the TLS CA pinned in the
    device trust (``trust``, else the file ``--trust`` names)."""
    from host.provision import load_trust
    from protocol.client import HttpTransport

    if not url.startswith("https://"):
        return HttpTransport(url)
    if trust is None:
        trust = load_trust(defaults.device_trust_path(trust_path))
    return HttpTransport(url, tls_ca=trust.tls_ca)


@dataclass(frozen=True)
class MidSession:
    """What a verb on an existing MID needs: its registry entry, the network and an open TPM."""

    conn: Any
    registry: Any
    info: Any
    url: str
    transport: Any
    trust: Any


@contextlib.contextmanager
def mid_session(args: argparse.Namespace) -> Iterator[MidSession]:
    """Open the TPM (stale handles of a killed agent flushed), the MID's registry entry, its
    network (``--network`` or where it was provisioned) and the pinned network trust."""
    from host.provision import AgentFiles, flush_stale, load_trust
    from tpm.connection import TpmConnection
    from tpm.registry import Registry

    registry = Registry(defaults.registry_path(args.registry))
    info = AgentFiles(registry).read().mid(args.mid)
    url = network_url(args, info.network)
    trust = load_trust(defaults.device_trust_path(args.trust))
    transport = network_transport(url, trust)
    with TpmConnection(defaults.tcti(args.tpm)) as conn:
        flush_stale(conn)
        yield MidSession(conn, registry, info, url, transport, trust)


def add_agent_options(p: argparse.ArgumentParser, *, network: bool = True) -> None:
    """The options every agent verb shares (one spelling per concept)."""
    p.add_argument("--tpm", metavar="TCTI", help="TCTI (default: $TRELAB_TPM, else the lab)")
    p.add_argument("--registry", metavar="PATH", help="MID registry file (default: lab dir)")
    if network:
        p.add_argument(
            "--network",
            metavar="URL",
            help=f"operator side (default: ${NETWORK_ENV}, else {DEFAULT_NETWORK})",
        )
        p.add_argument(
            "--trust",
            metavar="FILE",
            type=Path,
            help="pinned device-trust.json (default: $TRELAB_DEVICE_TRUST, else the network "
            "config folder's)",
        )
    output.add_json_flag(p)


def _outlook(conn: Any, registry: Any, mid_id: str) -> dict[str, Any]:
    """After the import (outside the timed provisioning): how this MID's AKA will run here,
    proposing the hmac-sha256 set when the TPM lacks EncryptDecrypt(2)."""
    from tpm.info import provisioned_outlook
    from tpm.keyholder import probe_symmetric

    record = registry.read().get(mid_id)
    return {
        "algorithm": record.algorithm.name,
        "k_form": record.policy.k_form,
        **provisioned_outlook(
            record.algorithm.name,
            record.policy.k_form,
            symmetric_command=probe_symmetric(conn).command is not None,
        ),
    }


def _provision(args: argparse.Namespace) -> Outcome:
    from host.provision import load_trust, provision
    from tpm.connection import TpmConnection
    from tpm.registry import Registry

    url = network_url(args)
    trust = load_trust(defaults.device_trust_path(args.trust))
    transport = network_transport(url, trust)
    registry = Registry(defaults.registry_path(args.registry))
    with TpmConnection(defaults.tcti(args.tpm)) as conn:
        result = provision(
            conn,
            registry,
            transport,
            trust,
            sho=args.sho,
            network=url,
            use_pcid=not args.no_pcid,
        )
        outlook = _outlook(conn, registry, result.finished.mid_id)
    data: dict[str, Any] = {"version": output.JSON_VERSION, **result.to_json(), "aka": outlook}
    f = result.finished
    lines = [
        f"MID {f.mid_id} of {f.sho}: {f.state} (IMSI {f.imsi}, slot {f.slot}, seq {f.sequence})"
    ]
    if outlook["note"]:
        lines.append(f"AKA: {outlook['note']}")
    if result.resumed:
        lines.append("resumed an interrupted provisioning")
    lines += [
        note if note.startswith("audit:") else f"rolled back: {note}" for note in result.rolled_back
    ]
    if result.pcid:
        lines.append(f"PCID {result.pcid['imsi']}: {result.pcid['state']}")
    return Outcome(data=data, text="\n".join(lines))


def register(nouns: Any) -> None:
    p = nouns.add_parser(
        "provision",
        help="provision a MID into the TPM from the operator side",
        description=__doc__.split("\n\n")[0].removeprefix("Edge: CLI. ") if __doc__ else None,
    )
    p.add_argument("--sho", required=True, help="the selected home operator (a pinned SHO name)")
    p.add_argument("--no-pcid", action="store_true", help="do not attach with the PCID first")
    add_agent_options(p)
    p.set_defaults(func=_provision)
