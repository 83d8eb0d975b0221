"""Edge: CLI. ``trelab network init-config | add-peer | serve | audit`` — the operator side
(DRF, PVA, DPF, SHO, ICF) as a service.

``add-peer`` pins another operator's deployment (its SHOs' public keys and its TLS CA, from
its ``device-trust.json``) for the Ki transfer of Alternative 3a between two deployments.

``serve`` prints ``listening on https://HOST:PORT`` (flushed; port 0 picks a free port) before
it blocks, stops cleanly on SIGTERM (requests in flight finish), and then reports the responses
it served. It speaks TLS with the certificate ``init-config`` made; ``--plain-http`` (loopback
only) leaves TLS out. ``--workers N`` serves the same WSGI application under gunicorn with N
processes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
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
    from network.tls import DEFAULT_NAMES

    directory = defaults.network_config_dir(args.config)
    selection = args.pcrs or DEFAULT_PCR_SELECTION
    reference = _reference_from_tpm(args.tpm, selection) if args.reference_from_tpm else None
    path = init_config(
        directory,
        shos=args.sho or ("sho-a", "sho-b"),
        plmns=args.plmn or (),
        ca_bundle=defaults.ca_bundle(args.ca),
        reference=reference,
        pcr_selection=selection,
        tls_names=(*DEFAULT_NAMES, *(args.tls_name or ())),
        force=args.force,
    )
    data: dict[str, Any] = {
        "version": output.JSON_VERSION,
        "config": str(path),
        "device_trust": str(path.parent / "device-trust.json"),
        "shos": list(args.sho or ("sho-a", "sho-b")),
        "pcr_selection": selection,
        "reference_pcrs": sum(len(v) for v in (reference or {}).values()),
        "tls": {
            "certificate": str(path.parent / "tls" / "server.pem"),
            "ca": str(path.parent / "tls" / "ca.pem"),
            "names": [*DEFAULT_NAMES, *(args.tls_name or ())],
        },
    }
    text = f"wrote {path} (keys in {path.parent / 'keys'}, mode 0600)\n" + (
        f"reference values: {data['reference_pcrs']} PCRs read from the TPM"
        if reference
        else "no reference PCR values: validation refuses until some are set (--reference-from-tpm)"
    )
    return Outcome(data=data, text=text)


def _add_peer(args: argparse.Namespace) -> Outcome:
    from network.config import add_peers, load_config

    path = defaults.network_config(args.config)
    names = add_peers(
        path, args.trust, shos=args.sho or (), force=args.force,
        default_trusted_cas=defaults.ca_bundle(),
    )  # fmt: skip
    config = load_config(path, default_trusted_cas=defaults.ca_bundle())
    pinned = {name: {"tls_ca": config.peers[name].tls_ca is not None} for name in names}
    data = {"version": output.JSON_VERSION, "config": str(path), "pinned": pinned}
    text = "\n".join(
        f"pinned peer {name} in {path}"
        + ("" if info["tls_ca"] else " (its deployment has no TLS CA: plain HTTP on loopback only)")
        for name, info in pinned.items()
    )
    return Outcome(data=data, text=text)


def _tls_files(args: argparse.Namespace, host: str, config: Any) -> tuple[Path, Path] | None:
    """The server's certificate and key, or None for plain HTTP — which must be asked for
    (``--plain-http``) and is allowed on a loopback address only."""
    from protocol.client import is_loopback
    from trelab.errors import BadInput

    if args.plain_http:
        if not is_loopback(host):
            raise BadInput(
                f"--plain-http: only on a loopback address, not {host} (serve TLS there)",
                field="listen",
            )
        return None
    if config.tls_certificate is None or config.tls_key is None:
        raise BadInput(
            "the network config has no TLS certificate (tls in network.json): make one with "
            "`trelab network init-config`, or pass --plain-http on a loopback address"
        )
    return config.tls_certificate, config.tls_key


def _serve(args: argparse.Namespace) -> Outcome:
    from network.server import NetworkApp, parse_listen, serve
    from network.store import Store

    host, port = parse_listen(args.listen)
    config = defaults.load_network_config(args.config)
    db = defaults.network_store(args.store)
    tls = _tls_files(args, host, config)

    def ready(url: str) -> None:
        line = json.dumps({"listening": url}) if args.json else f"listening on {url}"
        print(line, flush=True)

    if args.workers is not None:
        from network.workers import MAX_WORKERS, serve_workers
        from trelab.errors import BadInput

        if not 1 <= args.workers <= MAX_WORKERS:
            raise BadInput(f"--workers: expected 1..{MAX_WORKERS}", field="workers")
        Store(db, config.store_key).close()  # a wrong key or an unreadable store: say so now

        def make_app(counts: Any) -> NetworkApp:  # in each worker, after the fork
            return NetworkApp(config, Store(db, config.store_key), counts=counts)

        counts = serve_workers(make_app, host, port, workers=args.workers, ready=ready, tls=tls)
    else:
        from network.tls import server_context

        context = server_context(*tls) if tls is not None else None
        store = Store(db, config.store_key)
        app = NetworkApp(config, store)
        try:
            serve(app, host, port, ready=ready, tls=context)
        finally:
            store.close()
        counts = app.counts
    data = {
        "version": output.JSON_VERSION,
        "stopped": True,
        "workers": args.workers,
        "responses": {str(k): v for k, v in sorted(counts.items())},
    }
    return Outcome(data=data, text=f"stopped after {sum(counts.values())} responses", exit_code=0)


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
    p.add_argument(
        "--sho",
        action="append",
        help="an SHO name (repeat; default sho-a and sho-b; one name: a deployment of that "
        "operator alone, see add-peer)",
    )
    p.add_argument(
        "--plmn",
        action="append",
        metavar="MCCMNC",
        help="each SHO's PLMN, in the order of --sho (default 00101, 00102, …)",
    )
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
    p.add_argument(
        "--tls-name",
        action="append",
        metavar="NAME",
        help="a DNS name or IP address the server certificate names besides localhost, "
        "127.0.0.1 and ::1 (repeat)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing config and its keys")
    output.add_json_flag(p)
    p.set_defaults(func=_init_config)

    p = verbs.add_parser(
        "add-peer",
        help="pin another operator's deployment (its SHOs' public keys and TLS CA) for Ki transfers",
    )
    p.add_argument("--config", help="network.json or its folder (default: the user config dir)")
    p.add_argument(
        "--trust",
        required=True,
        metavar="FILE",
        help="the other deployment's device-trust.json (public keys and TLS CA only)",
    )
    p.add_argument("--sho", action="append", help="pin only this SHO of it (repeat; default all)")
    p.add_argument("--force", action="store_true", help="replace a peer pinned already")
    output.add_json_flag(p)
    p.set_defaults(func=_add_peer)

    p = verbs.add_parser("serve", help="serve the operator side over HTTP until SIGTERM")
    p.add_argument("--listen", default="127.0.0.1:8731", help="HOST:PORT (port 0: any free port)")
    defaults.add_store_flag(p)
    p.add_argument("--config", help="network.json or its folder (default: the user config dir)")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="serve with gunicorn and N worker processes (default: one process, the built-in "
        "threaded server)",
    )
    p.add_argument(
        "--plain-http",
        action="store_true",
        help="serve HTTP without TLS (loopback addresses only; default: HTTPS with the "
        "config's certificate)",
    )
    output.add_json_flag(p)
    p.set_defaults(func=_serve)

    p = verbs.add_parser("audit", help="verify the store's hash-chained audit trail")
    defaults.add_store_flag(p)
    p.add_argument("--config", help="network.json or its folder (default: the user config dir)")
    p.add_argument("--last", type=int, default=10, help="show the last N entries (default 10)")
    output.add_json_flag(p)
    p.set_defaults(func=_audit)
