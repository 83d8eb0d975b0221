"""Edge: CLI. ``trelab tpm …`` — the TPM TRE: identity verbs (``info``, ``ek``, ``ak``,
``activate``, from :mod:`host.cli.tpm_identity_verbs`), the MID store (``mid wrap | import |
list | authorize | reset``; a MID's lifecycle is ``trelab mid activate | suspend | delete
--local``, :mod:`host.cli.mid_cmd`) and ``aka`` with K inside the TPM.

``mid wrap`` is the operator stand-in until the provisioning protocol lands: it reads what the
device would report (EK public, SRK name, PCR digest, MID_CTR, a free slot) from the TPM and
writes a package; K never appears in it in clear. Every verb takes ``--tpm TCTI`` and
``--registry PATH`` (default ``$TRELAB_MID_REGISTRY``, else ``mids.json`` in the lab dir).
``aka`` exits 0 on success or sync_failure (AUTS), 1 on mac_failure; it protects the TPM
bus by default (E_K parameters encrypted in a salted session, threat 9) and reports
``bus_protection``; ``--no-bus-protection`` is an opt-out for benchmarks.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from host.cli import defaults
from host.cli.output import Outcome, add_json_flag, key_value_lines
from trelab.errors import BadInput, Unavailable
from trelab.hexargs import parse_hex

__all__ = ["register"]


def _registry(args: argparse.Namespace) -> Any:
    from tpm.registry import Registry

    return Registry(defaults.registry_path(args.registry))


def _connect(args: argparse.Namespace) -> Any:
    # Our errors carry the TPM response code; tpm2-tss's own ERROR lines would only repeat it.
    os.environ.setdefault("TSS2_LOG", "all+none")
    from tpm.connection import TpmConnection

    return TpmConnection(defaults.tcti(args.tpm))


def _operator_key_path(args: argparse.Namespace) -> Path:
    if args.operator_key:
        return Path(args.operator_key)
    registry_path: Path = _registry(args).path
    return registry_path.with_name("operator-policy-key.pem")


def _pin(text: str | None) -> bytes | None:
    if text is None:
        return None
    pin = text.encode()
    if not 1 <= len(pin) <= 32:
        raise BadInput("--pin: 1…32 bytes")
    return pin


# ---- mid wrap (operator stand-in) ---------------------------------------------------------------


def _wrap(args: argparse.Namespace) -> Outcome:
    from aka.keyholder import SoftwareAes
    from aka.milenage import opc_from_op
    from aka.tuak import SoftwareKeccak, topc_from_top
    from tpm import package as pkg
    from tpm.mid import wrap_for_device
    from tpm.policy import format_pcr_selection, parse_pcr_selection

    algorithm = args.algorithm
    if algorithm == "milenage":
        if args.top is not None or args.topc is not None:
            raise BadInput("--top/--topc are for --algorithm tuak; Milenage takes --op or --opc")
        if (args.op is None) == (args.opc is None):
            raise BadInput("Milenage needs exactly one of --op or --opc")
        k = parse_hex("--k", args.k, length=16)
        spec = pkg.AlgorithmSpec()
        if args.op is not None:
            secret = opc_from_op(SoftwareAes(k), parse_hex("--op", args.op, length=16))
        else:
            secret = parse_hex("--opc", args.opc, length=16)
    else:
        if args.op is not None or args.opc is not None:
            raise BadInput("--op/--opc are for Milenage; TUAK takes --top or --topc")
        if (args.top is None) == (args.topc is None):
            raise BadInput("TUAK needs exactly one of --top or --topc")
        k = parse_hex("--k", args.k, length=(16, 32))
        spec = pkg.AlgorithmSpec(
            name="tuak",
            key_bits=8 * len(k),
            mac_bits=args.mac_bits,
            res_bits=args.res_bits,
            ck_bits=args.ck_bits,
            ik_bits=args.ik_bits,
            iterations=args.iterations,
        )
        if args.top is not None:
            top = parse_hex("--top", args.top, length=32)
            secret = topc_from_top(SoftwareKeccak(k), top, args.iterations)
        else:
            secret = parse_hex("--topc", args.topc, length=32)
    amf = parse_hex("--amf", args.amf, length=2)
    sqn_ms = parse_hex("--sqn-ms", args.sqn_ms, length=6)
    bank, pcrs = parse_pcr_selection(args.pcrs)
    selection = format_pcr_selection(bank, pcrs)
    pin = _pin(args.pin)
    operator_key = None
    if args.policy == "authorize":
        operator_key = pkg.load_operator_key(_operator_key_path(args), create=True)
    with _connect(args) as conn:
        package = wrap_for_device(
            conn,
            pkg.MidSecrets(k=k, secret=secret, pin=pin),
            imsi=args.imsi,
            algorithm=spec,
            amf=amf,
            sqn_ms=sqn_ms,
            kind=args.policy,
            selection=selection,
            form=args.form,
            operator_key=operator_key,
            seq=args.seq,
            slot=args.slot,
        )
    policy = package.policy
    pkg.write_package(args.out, package)
    data = {
        "out": str(args.out),
        "mid": package.mid_id,
        "imsi": package.imsi,
        "algorithm": spec.name,
        "policy": policy.kind,
        "k_form": policy.k_form,
        "pin": policy.pin,
        "pcrs": selection,
        "seq": package.seq,
        "slot": policy.slot,
    }
    return Outcome(data=data, text=key_value_lines(data))


# ---- mid import | list | delete | activate | suspend | authorize | reset --------------------


def _import(args: argparse.Namespace) -> Outcome:
    from tpm.mid import import_package
    from tpm.package import read_package

    package = read_package(args.file)
    with _connect(args) as conn:
        record = import_package(conn, _registry(args), package, activate=args.state == "active")
    data = record.summary()
    return Outcome(data=data, text=key_value_lines(data))


def _list(args: argparse.Namespace) -> Outcome:
    registry = _registry(args)
    data = registry.read()
    freshness = "unknown (TPM not reachable)"
    audit: bool | None = None
    audit_text = "unknown (TPM not reachable)"
    try:
        from tpm.mid import audit_state, ek_name

        with _connect(args) as conn:
            freshness = registry.freshness(conn, data, ek_name(conn))
            state = audit_state(conn, data)
            audit = state == "matches"
            audit_text = {
                "matches": "matches TPM",
                "one event behind": "TPM one event behind (interrupted; the next MID "
                "operation completes it)",
            }.get(state, "does NOT match TPM (events missing or altered)")
    except Unavailable:
        pass
    mids = [record.summary() for record in data.mids.values()]
    out = {
        "registry": str(registry.path),
        "freshness": freshness,
        "audit_matches_tpm": audit,
        "audit_events": len(data.audit),
        "mids": mids,
    }
    lines = [f"registry {registry.path} ({freshness}; audit log {audit_text})"]
    for m in mids:
        lines.append(
            f"{m['mid']}  imsi {m['imsi']}  {m['algorithm']}  {m['policy']}-gated"
            f"{' +PIN' if m['pin'] else ''}  K {m['k_form']}  slot {m['slot']}  {m['state']}"
        )
    if not mids:
        lines.append("no MIDs")
    return Outcome(data=out, text="\n".join(lines))


def _local_transition(args: argparse.Namespace) -> Outcome:
    """The earlier spelling ``tpm mid activate|suspend|delete`` = ``mid VERB --local``."""
    from host.cli.mid_cmd import local_transition

    return local_transition(argparse.Namespace(**{**vars(args), "verb": args.verb_mid}))


def _authorize(args: argparse.Namespace) -> Outcome:
    from tpm.mid import reauthorize
    from tpm.package import load_operator_key

    key = load_operator_key(_operator_key_path(args))
    with _connect(args) as conn:
        record = reauthorize(conn, _registry(args), args.mid, key)
    data = {
        "mid": record.mid,
        "pcrs": record.policy.selection,
        "pcr_digest": record.policy.pcr_digest.hex(),
    }
    return Outcome(data=data, text=key_value_lines(data))


def _reset(args: argparse.Namespace) -> Outcome:
    from tpm.mid import factory_reset

    if not args.yes:
        raise BadInput(
            "factory reset clears the TPM's owner hierarchy and kills every MID: add --yes"
        )
    with _connect(args) as conn:
        data = factory_reset(conn, _registry(args))
    return Outcome(data=data, text=key_value_lines(data))


# ---- aka ----------------------------------------------------------------------------------------


def _aka(args: argparse.Namespace) -> Outcome:
    from tpm.aka import authenticate

    rand = parse_hex("--rand", args.rand, length=16)
    autn = parse_hex("--autn", args.autn, length=16)
    with _connect(args) as conn:
        outcome = authenticate(
            conn,
            _registry(args),
            args.mid,
            rand,
            autn,
            pin=_pin(args.pin),
            mode=args.mode,
            bus_protection=args.bus_protection,
        )
    data = outcome.to_json()
    exit_code = 1 if data["result"] == "mac_failure" else 0
    return Outcome(data=data, text=key_value_lines(data), exit_code=exit_code)


# ---- registration -----------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tpm", metavar="TCTI", help="TCTI (default: $TRELAB_TPM, else the lab)")
    p.add_argument("--registry", metavar="PATH", help="MID registry file (default: lab dir)")
    add_json_flag(p)


def _add_mid_verbs(verbs: Any) -> None:
    parser = verbs.add_parser(
        "mid",
        help="MIDs stored in the TPM: wrap, import, list, authorize, reset",
        description="The MID store in the TPM. A locally imported MID's lifecycle is"
        " `trelab mid activate|suspend|delete --local`.",
    )
    mids = parser.add_subparsers(dest="verb_mid", metavar="VERB")
    mids.required = True

    p = mids.add_parser(
        "wrap", help="operator stand-in: wrap K and OPc/TOPc to this TPM (package file)"
    )
    p.add_argument("--k", required=True, help="K, 16 bytes hex (TUAK: 16 or 32)")
    p.add_argument("--op", help="Milenage OP (OPc is derived)")
    p.add_argument("--opc", help="Milenage OPc")
    p.add_argument("--algorithm", choices=("milenage", "tuak"), default="milenage")
    p.add_argument("--top", help="TUAK TOP (TOPc is derived)")
    p.add_argument("--topc", help="TUAK TOPc")
    p.add_argument("--iterations", type=int, default=1, help="TUAK Keccak iterations")
    p.add_argument("--res-bits", type=int, default=64, choices=(32, 64, 128, 256))
    p.add_argument("--mac-bits", type=int, default=64, choices=(64, 128, 256))
    p.add_argument("--ck-bits", type=int, default=128, choices=(128, 256))
    p.add_argument("--ik-bits", type=int, default=128, choices=(128, 256))
    p.add_argument("--imsi", required=True, help="IMSI, 6…15 digits")
    p.add_argument("--amf", required=True, help="AMF, 2 bytes hex")
    p.add_argument(
        "--sqn-ms",
        default="000000000000",
        help="initial SQN_MS, 6 bytes hex = SEQ‖IND (IND: low 5 bits). A vector passes when "
        "its SEQ (SQN >> 5) is higher than this SEQ, whatever its IND; the same SEQ with "
        "another IND is a replay (TS 33.102 Annex C)",
    )
    p.add_argument("--pin", help="PIN for K (use or authorize policy); DA lockout applies")
    p.add_argument(
        "--policy",
        choices=("load", "use", "authorize"),
        default="load",
        help="load-gated (PCRs at load), use-gated (PCRs+state+PIN per use), "
        "operator-updatable (PolicyAuthorize)",
    )
    p.add_argument("--pcrs", default="sha256:0,1,2,3,4,5,6,7", help="PCRs the policy binds")
    p.add_argument(
        "--form",
        choices=("symcipher", "sealed"),
        help="K as a TPM AES key (default) or sealed data (TUAK, TPMs without EncryptDecrypt)",
    )
    p.add_argument("--operator-key", metavar="FILE", help="operator policy-signing key (PEM)")
    p.add_argument("--seq", type=int, help="sequence number (default: the device's MID_CTR + 1)")
    p.add_argument("--slot", type=int, help="MID_STATE slot (default: the first free one)")
    p.add_argument("--out", required=True, type=Path, help="package file to write")
    _common(p)
    p.set_defaults(func=_wrap)

    p = mids.add_parser("import", help="import a package: TPM2_Import under the EK, registry entry")
    p.add_argument("file", type=Path, help="package file from `mid wrap` (or the DPF)")
    p.add_argument(
        "--state",
        choices=("active", "installed"),
        default="active",
        help="lifecycle state after import (installed waits for `trelab mid activate --local`)",
    )
    _common(p)
    p.set_defaults(func=_import)

    p = mids.add_parser("list", help="MIDs in the registry, its freshness and audit check")
    _common(p)
    p.set_defaults(func=_list)

    # the lifecycle verbs live in `trelab mid` (`--local` for these MIDs); the earlier
    # spellings still parse but are not listed (a sub-parser without help is not)
    for verb in ("activate", "suspend", "delete"):
        p = mids.add_parser(verb, description=f"Same as: trelab mid {verb} --local --mid ID")
        p.add_argument("--mid", required=True, help="MID id (see `tpm mid list`)")
        _common(p)
        p.set_defaults(func=_local_transition)

    p = mids.add_parser(
        "authorize", help="operator stand-in: approve the current PCRs for an authorize-policy MID"
    )
    p.add_argument("--mid", required=True, help="MID id (see `tpm mid list`)")
    p.add_argument("--operator-key", metavar="FILE", help="operator policy-signing key (PEM)")
    _common(p)
    p.set_defaults(func=_authorize)

    p = mids.add_parser("reset", help="factory reset: TPM2_Clear kills every MID, keeps the EK")
    p.add_argument("--yes", action="store_true", help="really clear the TPM")
    _common(p)
    p.set_defaults(func=_reset)


def register(nouns: Any) -> None:
    parser = nouns.add_parser("tpm", help="TPM TRE: identity, MIDs in the TPM, AKA with K inside")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    from host.cli.tpm_identity_verbs import add_identity_verbs

    add_identity_verbs(verbs)
    _add_mid_verbs(verbs)

    p = verbs.add_parser(
        "aka",
        help="AKA (RAND, AUTN) with a MID whose K is in the TPM",
        epilog="exit 0: success or sync_failure (AUTS); 1: mac_failure",
    )
    p.add_argument("--mid", required=True, help="MID id (see `tpm mid list`)")
    p.add_argument("--rand", required=True, help="RAND, 16 bytes hex")
    p.add_argument("--autn", required=True, help="AUTN, 16 bytes hex")
    p.add_argument("--pin", help="the MID's PIN, if it has one")
    p.add_argument(
        "--mode",
        choices=("ecb", "cfb", "sealed"),
        help="override the probe's choice (ECB if allowed, else CFB; sealed for sealed K)",
    )
    p.add_argument(
        "--no-bus-protection",
        dest="bus_protection",
        action="store_false",
        help="OPT-OUT, for benchmarks only: send E_K's parameters in clear on the TPM bus (a"
        " bus sniffer then learns OPc and RES/CK/IK); default: encrypted in a salted session",
    )
    _common(p)
    p.set_defaults(func=_aka)
