"""A `trelab card serve` process on vpcd reader 1 with its own profile and state file, for tests
that need a card of their own (the lab's card sits in reader 0). It checks through PC/SC that the
card in the reader is really this one (by ICCID) before handing it out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from firmware_stubs.card_serve import read_status
from tests.conftest import lab_failed
from tests.helpers import REPO
from trelab import proc
from trelab.errors import Unavailable
from uicc.errors import CardRefused
from uicc.links.pcsc import PcscLink
from uicc.usim import UsimClient

READER_1 = "Virtual PCD 00 01"
VPCD_1 = "127.0.0.1:35964"


class CardProcess:
    """`trelab card serve` on reader 1 for one test: its own profile and state file."""

    def __init__(self, directory: Path, profile: dict[str, object]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.profile = profile
        self.profile_file = directory / "profile.json"
        self.profile_file.write_text(json.dumps(profile))
        self.state = directory / "state.json"
        self.status = directory / "status.json"
        self.log = directory / "card.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CardProcess:
        argv = [sys.executable, "-m", "host.cli", "card", "serve"]
        argv += ["--profile", str(self.profile_file), "--state", str(self.state)]
        argv += ["--vpcd", VPCD_1, "--status-file", str(self.status)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, cwd=REPO)
        pid = self.process.pid

        def attached() -> bool:
            status = read_status(self.status)
            return bool(status and status.get("pid") == pid and status.get("state") == "attached")

        if not proc.wait_until(attached, 20.0, interval=0.05):
            holder = "another card holds it" if self.process.poll() is None else "it exited"
            self.stop()
            lab_failed(f"our card did not attach to {READER_1}: {holder} (see {self.log})")
        # pcscd may still show the previous card for a moment: wait until ours answers.
        if not proc.wait_until(self._ours_in_reader, 10.0, interval=0.1):
            self.stop()
            lab_failed(f"{READER_1} does not show our card (ICCID); see {self.log}")
        return self

    def _ours_in_reader(self) -> bool:
        try:
            with PcscLink(READER_1) as link:
                return UsimClient(link).read_iccid() == self.profile["iccid"]
        except (Unavailable, CardRefused):
            return False

    @property
    def iccid(self) -> str:
        return str(self.profile["iccid"])

    def link(self) -> PcscLink:
        return PcscLink(READER_1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(5)
