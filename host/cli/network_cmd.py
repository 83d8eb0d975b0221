"""Edge: CLI. ``trelab network init-config | serve | audit`` — the operator side (DRF, PVA,
DPF, SHO, ICF) as a service on loopback.

``serve`` prints ``listening on http://HOST:PORT`` (flushed; port 0 picks a free port) before it
blocks, stops cleanly on SIGTERM/SIGINT, and then reports the responses it served.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from host.cli import defaults, output
from host.cli.output import Outcome

__all__ = ["register"]


def _reference_from_tpm(tcti: str | None, selection: str) -> dict[str, dict[int, bytes]]:
    from tpm.connection import TpmConnection
    from tpm.pcrsel import parse_selection
    from tpm.quote import read_pcrs
    from tpm.verify import split_pcr_values

    parsed = parse_selection(selection)
    with TpmConnection(defaults.tcti(tcti)) as conn:
        values = read_pcrs(conn, parsed)
    return split_pcr_values(parsed, values)


def _init_config(args: argparse.Namespace) -> Outcome:
    from network.config import DEFAULT_PCR_SELECTION, init_config

    directory = defaults.network_config_dir(args.config)
    selection = args.pcrs or DEFAULT_PCR_SELECTION
    reference = _reference_from_tpm(args.tpm, selection) if args.reference_from_tpm else None
    path = init_config(
        directory,
        shos=args.sho or ("sho-a", "sho-b"),
        ca_bundle=defaults.ca_bundle(args.ca),
        reference=reference,
        pcr_selection=selection,
        force=args.force,
    )
    data: dict[str, Any] = {
        "version": output.JSON_VERSION,
        "config": str(path),
        "device_trust": str(path.parent / "device-trust.json"),
        "shos": list(args.sho or ("sho-a", "sho-b")),
        "pcr_selection": selection,
        "reference_pcrs": sum(len(v) for v in (reference or {}).values()),
    }
    text = f"wrote {path} (keys in {path.parent / 'keys'}, mode 0600)\n" + (
        f"reference values: {data['reference_pcrs']} PCRs read from the TPM"
        if reference
        else "no reference PCR values: validation refuses until some are set (--reference-from-tpm)"
    )
    return Outcome(data=data, text=text)


def _serve(args: argparse.Namespace) -> Outcome:
    from network.server import NetworkApp, parse_listen, serve
    from network.store import Store

    host, port = parse_listen(args.listen)
    config = defaults.load_network_config(args.config)
    store = Store(defaults.network_store(args.store), config.store_key)
    app = NetworkApp(config, store)

    def ready(url: str) -> None:
        line = json.dumps({"listening": url}) if args.json else f"listening on {url}"
        print(line, flush=True)

    try:
        serve(app, host, port, ready=ready)
    finally:
        store.close()
    counts = {str(k): v for k, v in sorted(app.counts.items())}
    data = {"version": output.JSON_VERSION, "stopped": True, "responses": counts}
    served = sum(app.counts.values())
    return Outcome(data=data, text=f"stopped after {served} responses", exit_code=0)


def _audit(args: argparse.Namespace) -> Outcome:
    from network.store import Store

    config = defaults.load_network_config(args.config)
    store = Store(defaults.network_store(args.store), config.store_key)
    try:
        entries = store.verify_audit()
        head = store.audit_head()
        last = (
            [
                {"seq": e.seq, "at": e.at, "actor": e.actor, "event": e.event, "subject": e.subject}
                for e in store.audit_events()[-args.last :]
            ]
            if args.last
            else []
        )
    finally:
        store.close()
    data = {
        "version": output.JSON_VERSION,
        "verified": True,
        "entries": entries,
        "head": head[1].hex(),
        "last": last,
    }
    lines = [f"audit chain verified: {entries} entries, head {head[1].hex()[:16]}…"]
    lines += [f"  #{e['seq']} {e['actor']:8} {e['event']:16} {e['subject']}" for e in last]
    return Outcome(data=data, text="\n".join(lines))


def register(nouns: Any) -> None:
    parser = nouns.add_parser("network", help="the operator side: DRF, PVA, DPF, SHO, ICF")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    p = verbs.add_parser("init-config", help="write keys and a network.json for the operator side")
    p.add_argument(
        "--config",
        metavar="DIR",
        help="config folder to write (default: $TRELAB_NETWORK_DIR or the user config dir)",
    )
    p.add_argument("--dir", dest="config", help=argparse.SUPPRESS)  # earlier spelling
    p.add_argument("--sho", action="append", help="an SHO name (repeat; default sho-a and sho-b)")
    p.add_argument("--ca", help="manufacturer CA bundle (PEM; default: the lab's)")
    p.add_argument("--pcrs", help="PCR selection to validate (default sha256:0,1,2,3,4,5,6,7)")
    p.add_argument(
        "--reference-from-tpm", action="store_true", help="take reference PCR values from a TPM now"
    )
    p.add_argument(
        "--tpm",
        metavar="TCTI",
        help="TCTI for --reference-from-tpm (default: $TRELAB_TPM, else the lab)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing config and its keys")
    output.add_json_flag(p)
    p.set_defaults(func=_init_config)

    p = verbs.add_parser("serve", help="serve the operator side over HTTP until SIGTERM")
    p.add_argument("--listen", default="127.0.0.1:8731", help="HOST:PORT (port 0: any free port)")
    defaults.add_store_flag(p)
    p.add_argument("--config", help="network.json or its folder (default: the user config dir)")
    output.add_json_flag(p)
    p.set_defaults(func=_serve)

    p = verbs.add_parser("audit", help="verify the store's hash-chained audit trail")
    defaults.add_store_flag(p)
    p.add_argument("--config", help="network.json or its folder (default: the user config dir)")
    p.add_argument("--last", type=int, default=10, help="show the last N entries (default 10)")
    output.add_json_flag(p)
    p.set_defaults(func=_audit)
