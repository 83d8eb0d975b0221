"""Edge: CLI. ``trelab operator add-subscriber | order | revoke | issue-pcid | hn-key-rotate |
hn-key-retire | hn-key-list`` — what an
operator does beside the served roles, on the same configuration and store as ``trelab network
serve`` (SQLite: safe next to a running server).

- ``add-subscriber``: Alternative 2 — the card vendor's HSS record of a pre-personalised card
  (``trelab card personalise --out-hss``) goes into the SHO's AuC (idempotent per IMSI).
- ``order``: the owning SHO signs a lifecycle order (COSE_Sign1 with its key from the network
  config folder) and posts it; the TRE fetches it with ``trelab mid activate|suspend|delete``.
  Another SHO's order for the MID is refused (``foreign-mid``).
- ``revoke``: the DRF revokes a TRE (device id = hex EK name, as ``trelab provision`` prints);
  every MID issued to it is suspended by its SHO in the same transaction, so the AuC refuses
  its authentication vectors, and no order can resume it (``Operator.revoke``).
- ``revoke``: the DRF revokes a TRE (device id = hex EK name, as ``trelab provision`` prints).
- ``hn-key-*``: the SIDF's SUCI home network keys (TS 33.501 §6.12.2), private halves sealed in
  the store; a rotation keeps the replaced key usable until it is retired.
- ``issue-pcid``: manufacturing stand-in (M0) — the ICF registers a provisional connectivity
  identity valid for ``--validity`` seconds and the factory imports it into the TPM as a MID.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path
from typing import Any

from host.cli import defaults, output
from host.cli.output import Outcome
from host.cli.provision_cmd import network_url
from protocol.errors import Refused
from trelab.digits import is_decimal
from trelab.errors import BadInput
from trelab.jsontext import load_json

__all__ = ["parse_hss_record", "register"]


def _config(args: argparse.Namespace) -> Any:
    return defaults.load_network_config(args.config)


def _store(args: argparse.Namespace, config: Any) -> Any:
    from network.store import Store

    return Store(defaults.network_store(args.store), config.store_key)


def _operator(config: Any) -> Any:
    from network.roles import Operator
    from network.trust import TpmTrust

    return Operator(config, TpmTrust(config.trusted_cas), random_bytes=os.urandom)


def _hex(doc: dict[str, Any], key: str, sizes: tuple[int, ...]) -> bytes:
    value = doc.get(key)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) not in sizes:
        raise BadInput(f"HSS record: {key} must be {' or '.join(map(str, sizes))} bytes of hex")
    return raw


def parse_hss_record(doc: Any) -> dict[str, Any]:
    """The card vendor's HSS record (:meth:`firmware_stubs.usim.personalise.HssRecord.to_json`)
    → keyword arguments of :meth:`network.roles.Operator.add_subscriber` (K, OPc inside).

    Raises:
        BadInput: naming the first bad field.
    """
    if not isinstance(doc, dict):
        raise BadInput("HSS record: expected a JSON object")
    imsi = doc.get("imsi")
    if not (isinstance(imsi, str) and is_decimal(imsi) and 6 <= len(imsi) <= 15):
        raise BadInput("HSS record: imsi must be 6…15 digits")
    algorithm = doc.get("algorithm")
    sqn = doc.get("sqn", {})
    if not isinstance(sqn, dict):
        raise BadInput("HSS record: sqn must be an object")
    out: dict[str, Any] = {
        "imsi": imsi,
        "amf": _hex(doc, "amf", (2,)),
        "sqn": sqn,
        "algorithm": algorithm,
    }
    if algorithm == "milenage":
        out.update(k=_hex(doc, "k", (16,)), opc=_hex(doc, "opc", (16,)), params={})
    elif algorithm == "tuak":
        k = _hex(doc, "k", (16, 32))
        params = {"key_bits": len(k) * 8}
        for name in ("iterations", "res_bits", "mac_bits", "ck_bits", "ik_bits"):
            value = doc.get(name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadInput(f"HSS record: {name} must be an integer")
            params[name] = value
        out.update(k=k, opc=_hex(doc, "topc", (32,)), params=params)
    elif algorithm == "hmac-sha256":
        k = _hex(doc, "k", (16, 32))
        res_bits = doc.get("res_bits")
        if isinstance(res_bits, bool) or res_bits not in (32, 64, 128):
            raise BadInput("HSS record: res_bits must be 32, 64 or 128")
        params = {"key_bits": len(k) * 8, "res_bits": res_bits}
        out.update(k=k, opc=_hex(doc, "opc", (32,)), params=params)
    else:
        raise BadInput("HSS record: algorithm must be milenage, tuak or hmac-sha256")
    return out


def _add_subscriber(args: argparse.Namespace) -> Outcome:
    try:
        raw = Path(args.hss_record).read_bytes()
    except OSError as exc:
        raise BadInput(f"--hss-record {args.hss_record}: {exc.strerror}") from None
    doc = load_json(raw, f"--hss-record {args.hss_record}")
    fields = parse_hss_record(doc)
    config = _config(args)
    store = _store(args, config)
    try:
        with store.transaction() as tx:
            record = _operator(config).add_subscriber(
                tx,
                sho=args.sho,
                request_id=f"card:{fields['imsi']}",
                now=int(time.time()),
                state="active",
                **fields,
            )
    finally:
        store.close()
    data = {
        "version": output.JSON_VERSION,
        "imsi": record.imsi,
        "sho": record.sho,
        "algorithm": record.algorithm,
        "state": record.state,
        "sqn_he": dict(record.sqn),
    }
    return Outcome(
        data=data, text=f"subscriber {record.imsi} in {record.sho}'s HSS ({record.state})"
    )


def _hn_key_json(key: Any) -> dict[str, Any]:
    return {
        "sho": key.sho,
        "key_id": key.key_id,
        "profile": {1: "A", 2: "B"}.get(key.profile, str(key.profile)),
        "public": key.public.hex(),
        "state": key.state,
    }


def _hn_key_rotate(args: argparse.Namespace) -> Outcome:
    config = _config(args)
    store = _store(args, config)
    try:
        with store.transaction() as tx:
            key = _operator(config).rotate_hn_key(
                tx, sho=args.sho, profile=args.profile, now=int(time.time())
            )
    finally:
        store.close()
    data = {"version": output.JSON_VERSION, **_hn_key_json(key)}
    text = f"{key.sho}: home network key {key.key_id} (Profile {args.profile}) {key.public.hex()}"
    return Outcome(data=data, text=text)


def _hn_key_retire(args: argparse.Namespace) -> Outcome:
    if not re.fullmatch(r"[0-9]{1,3}", args.key_id) or not 0 <= int(args.key_id) <= 255:
        raise BadInput("--key-id: expected 0 … 255")
    config = _config(args)
    store = _store(args, config)
    try:
        with store.transaction() as tx:
            _operator(config).retire_hn_key(
                tx, sho=args.sho, key_id=int(args.key_id), now=int(time.time())
            )
    finally:
        store.close()
    data = {"version": output.JSON_VERSION, "sho": args.sho, "key_id": int(args.key_id)}
    return Outcome(data=data, text=f"{args.sho}: home network key {args.key_id} retired")


def _hn_key_list(args: argparse.Namespace) -> Outcome:
    config = _config(args)
    if args.sho not in config.shos:
        raise BadInput(f"--sho {args.sho}: not an SHO of this network ({', '.join(config.shos)})")
    store = _store(args, config)
    try:
        with store.transaction() as tx:
            keys = [_hn_key_json(k) for k in tx.hn_keys(args.sho)]
    finally:
        store.close()
    data = {"version": output.JSON_VERSION, "sho": args.sho, "keys": keys}
    lines = [f"{k['key_id']:>3}  {k['profile']}  {k['state']:<8}  {k['public']}" for k in keys]
    return Outcome(data=data, text="\n".join(lines) or f"{args.sho}: no home network keys")


def _transport(url: str, config: Any) -> Any:
    """To this operator's own service: over TLS it trusts the config's own TLS CA."""
    from cryptography.hazmat.primitives import serialization

    from protocol.client import HttpTransport

    if url.startswith("https://") and config.tls_ca is not None:
        pem = config.tls_ca.public_bytes(serialization.Encoding.PEM)
        return HttpTransport(url, tls_ca=pem)
    return HttpTransport(url)


def _order(args: argparse.Namespace) -> Outcome:
    from protocol.messages import INITIAL_TRANSCRIPT, Ack, LifecycleOrder, decode, encode, sign

    config = _config(args)
    sho = config.shos.get(args.sho)
    if sho is None:
        raise BadInput(f"--sho {args.sho}: not an SHO of this network ({', '.join(config.shos)})")
    order = sign(
        LifecycleOrder(
            session_id=os.urandom(32),
            transcript=INITIAL_TRANSCRIPT,
            mid_id=args.mid,
            transition=args.transition,
        ),
        sho.key,
    )
    url = network_url(args)
    try:
        reply = decode(_transport(url, config).post("sho/order", encode(order)))
    except Refused as exc:
        if exc.reason == "unknown-mid":  # a wrong --mid is bad input, as in `trelab attach`
            raise BadInput(f"--mid {args.mid}: {exc}") from None
        raise
    if not isinstance(reply, Ack):
        raise BadInput(f"the network answered the order with a {type(reply).__name__}")
    data = {
        "version": output.JSON_VERSION,
        "mid": reply.mid_id,
        "transition": args.transition,
        "sho": args.sho,
        "state": reply.state,
        "network": url,
    }
    text = (
        f"{args.sho} ordered {args.transition} of MID {reply.mid_id} (now {reply.state}); "
        f"the TRE applies it with `trelab mid {_verb(args.transition)} --mid {reply.mid_id}`"
    )
    return Outcome(data=data, text=text)


def _verb(transition: str) -> str:
    return "activate" if transition == "resume" else transition


def _revoke(args: argparse.Namespace) -> Outcome:
    device_id = args.device.strip().lower()
    config = _config(args)
    store = _store(args, config)
    try:
        with store.transaction() as tx:
            changed = _operator(config).revoke(tx, device_id, int(time.time()))
    finally:
        store.close()
    mids = [{"mid": m.mid_id, "sho": m.sho, "imsi": m.imsi, "state": m.state} for m in changed]
    data = {"version": output.JSON_VERSION, "device": device_id, "revoked": True, "mids": mids}
    lines = [f"TRE {device_id[:16]}… revoked: it can no longer register or receive MIDs"]
    lines += [
        f"  MID {m['mid']} ({m['sho']}, IMSI {m['imsi']}): {m['state']}"
        + (" — its SHO refuses authentication vectors" if m["state"] == "SUSPENDED" else "")
        for m in mids
    ]
    return Outcome(data=data, text="\n".join(lines))


def _issue_pcid(args: argparse.Namespace) -> Outcome:
    from host.provision import install_pcid
    from tpm.connection import TpmConnection
    from tpm.registry import Registry

    if args.validity <= 0:
        raise BadInput("--validity: seconds, more than 0")
    config = _config(args)
    store = _store(args, config)
    k, opc, now = os.urandom(16), os.urandom(16), int(time.time())
    try:
        with store.transaction() as tx:
            msin = tx.next_msin(config.icf_operator)
            imsi = "00199" + str(msin).zfill(10)
            pcid = _operator(config).register_pcid(
                tx,
                imsi=imsi,
                k=k,
                opc=opc,
                not_before=now,
                not_after=now + args.validity,
                request_id=f"pcid:{imsi}",
                now=now,
            )
    finally:
        store.close()
    with TpmConnection(defaults.tcti(args.tpm)) as conn:
        info = install_pcid(
            conn, Registry(defaults.registry_path(args.registry)), imsi=imsi, k=k, opc=opc
        )
    data = {
        "version": output.JSON_VERSION,
        "imsi": info.imsi,
        "mid": info.mid_id,
        "not_before": pcid.not_before,
        "not_after": pcid.not_after,
    }
    return Outcome(
        data=data,
        text=f"PCID {info.imsi} (MID {info.mid_id}) in the TPM, valid {args.validity} s: "
        "`trelab provision` attaches with it first",
    )


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="network.json (default: the network config folder's)")
    defaults.add_store_flag(p)
    output.add_json_flag(p)


def register(nouns: Any) -> None:
    parser = nouns.add_parser(
        "operator", help="operator actions: subscribers, lifecycle orders, revocation, PCIDs"
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    p = verbs.add_parser("add-subscriber", help="Alternative 2: a card's HSS record into an SHO")
    p.add_argument("--hss-record", required=True, help="HSS record JSON (card personalise)")
    p.add_argument("--sho", required=True, help="the SHO whose AuC gets the subscriber")
    _store_options(p)
    p.set_defaults(func=_add_subscriber)

    p = verbs.add_parser(
        "hn-key-rotate", help="SIDF: a new SUCI home network key (the previous one still works)"
    )
    p.add_argument("--sho", required=True, help="the SHO whose PLMN the key serves")
    p.add_argument("--profile", required=True, choices=("A", "B"), help="ECIES profile")
    _store_options(p)
    p.set_defaults(func=_hn_key_rotate)

    p = verbs.add_parser("hn-key-retire", help="SIDF: refuse SUCIs under a home network key id")
    p.add_argument("--sho", required=True)
    p.add_argument("--key-id", required=True, help="home network public key id, 0 … 255")
    _store_options(p)
    p.set_defaults(func=_hn_key_retire)

    p = verbs.add_parser("hn-key-list", help="SIDF: an SHO's home network public keys")
    p.add_argument("--sho", required=True)
    _store_options(p)
    p.set_defaults(func=_hn_key_list)

    p = verbs.add_parser("order", help="the owning SHO orders a MID lifecycle transition")
    p.add_argument("--mid", required=True, help="the MID id")
    p.add_argument(
        "--transition", required=True, choices=("activate", "suspend", "resume", "delete")
    )
    p.add_argument("--sho", required=True, help="the SHO signing the order (its key)")
    p.add_argument("--network", metavar="URL", help="operator side (default: $TRELAB_NETWORK)")
    p.add_argument("--config", help="network.json (default: the network config folder's)")
    output.add_json_flag(p)
    p.set_defaults(func=_order)

    p = verbs.add_parser(
        "revoke",
        help="revoke a TRE: it can no longer register or receive MIDs, and every MID it holds "
        "is suspended (its SHO refuses authentication vectors; resume is refused)",
    )
    p.add_argument("--device", required=True, help="device id: hex EK name")
    _store_options(p)
    p.set_defaults(func=_revoke)

    p = verbs.add_parser("issue-pcid", help="manufacturing: a PCID in the ICF and in the TPM")
    p.add_argument("--validity", type=int, default=3600, help="seconds (default 3600)")
    p.add_argument("--tpm", metavar="TCTI", help="TCTI (default: $TRELAB_TPM, else the lab)")
    p.add_argument("--registry", metavar="PATH", help="MID registry file (default: lab dir)")
    _store_options(p)
    p.set_defaults(func=_issue_pcid)
