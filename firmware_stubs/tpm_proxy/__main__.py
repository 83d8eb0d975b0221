"""``python -m firmware_stubs.tpm_proxy --profile NAME --port P --swtpm-port S``: serve the
named part on P (and P + 1) in front of the swtpm on S. Prints ``tpm proxy on HOST:P`` once
it listens; SIGTERM stops it."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from firmware_stubs.tpm_proxy import profiles
from firmware_stubs.tpm_proxy.server import TpmProxy
from firmware_stubs.tpm_proxy.wire import PartFilter, WireError
from trelab.errors import TrelabError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_stubs.tpm_proxy")
    parser.add_argument("--profile", required=True, help=", ".join(profiles.names()))
    parser.add_argument("--port", type=int, required=True, help="serve P (and P+1: control)")
    parser.add_argument("--swtpm-port", type=int, required=True, help="swtpm's port S")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        profile = profiles.load(args.profile)
    except TrelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    proxy = TpmProxy(
        PartFilter(profile.rules()), port=args.port, swtpm_port=args.swtpm_port, host=args.host
    )
    try:
        proxy.learn_command_counts()
        proxy.bind()
    except (OSError, WireError) as exc:
        print(f"error: cannot serve {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 3

    def stop(signum: int, frame: FrameType | None) -> None:
        proxy.close()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"tpm proxy on {args.host}:{args.port} as {profile.name}", flush=True)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
