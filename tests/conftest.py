"""Shared fixtures: the real lab (swtpm with EK certificates, pcscd + vpcd) via lab.lab.

``lab`` is session-scoped: one TPM manufacture (~1.5 s) serves every test that needs a TPM or
the vpcd readers. Tests that break things (crash swtpm, take its port) make their own labs with
``lab_factory``, which downs each lab it made. Every process a fixture starts, it stops.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.lab import Lab, LabStatus
from lab.postgres import PostgresServer
from trelab.errors import Unavailable

_LAB_TOOLS = ("swtpm", "swtpm_setup", "swtpm_localca")
_LAB_FIX = "apt-get install swtpm swtpm-tools pcscd vsmartcard-vpcd"


def lab_missing() -> str | None:
    """Why the lab cannot run here, or None if its binaries and the vpcd driver are present."""
    missing = [tool for tool in _LAB_TOOLS if shutil.which(tool) is None]
    if shutil.which("pcscd") is None and not Path("/usr/sbin/pcscd").is_file():
        missing.append("pcscd")
    if missing:
        return f"lab binaries missing: {', '.join(missing)} ({_LAB_FIX})"
    from lab import pcscd

    try:
        pcscd.require_tools()
    except Unavailable as exc:
        return str(exc)
    return None


def lab_failed(reason: str) -> None:
    """The lab could not start or a part of it is missing: the run FAILS with the real reason,
    in CI and on a desk alike (``make test`` installs every part first; a skip would report
    green for a run that tested nothing of the lab). Hardware-only tests skip on their own."""
    pytest.fail(f"the lab must run for this test, but: {reason}", pytrace=False)


def _up_or_fail(lab: Lab) -> LabStatus:
    try:
        return lab.up()
    except Unavailable as exc:  # say why, in one line
        lab_failed(f"lab unavailable: {exc}")
        raise


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trelab lab")
    group.addoption(
        "--tpm-profile",
        default=None,
        help="run the session lab's TPM as this real part (the TPM proxy's profile)",
    )
    group.addoption(
        "--resource-manager",
        default=None,
        help="put this resource manager (abrmd) in front of the session lab's TPM",
    )


_SYMMETRIC = {"commands": ("EncryptDecrypt", "EncryptDecrypt2"), "algorithms": ("ecb", "cfb")}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--tpm-profile``, tests marked ``symmetric_k`` skip on a part without the
    symmetric commands or modes they exercise (the part's own behaviour there is checked by
    tests/integration/test_tpm_front.py)."""
    name = config.getoption("--tpm-profile")
    if not name or name == "none":
        return
    from firmware_stubs.tpm_proxy import profiles

    part = profiles.load(name)
    lacking = [c for c in _SYMMETRIC["commands"] if c in part.absent_commands]
    lacking += [a.upper() for a in _SYMMETRIC["algorithms"] if a in part.absent_algorithms]
    if not lacking:
        return
    skip = pytest.mark.skip(reason=f"{part.part} lacks {', '.join(lacking)}")
    for item in items:
        if item.get_closest_marker("symmetric_k"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lab_front(request: pytest.FixtureRequest) -> dict[str, str | None]:
    """What the session lab puts in front of its swtpm (``--tpm-profile``,
    ``--resource-manager``): tests whose expectations depend on the part read it here."""
    return {
        "tpm_profile": request.config.getoption("--tpm-profile"),
        "resource_manager": request.config.getoption("--resource-manager"),
    }


@pytest.fixture(scope="session")
def lab(
    tmp_path_factory: pytest.TempPathFactory, lab_front: dict[str, str | None]
) -> Iterator[LabStatus]:
    """A running lab for the whole session; yields its LabStatus (``.tcti``, ``.readers``,
    ``.ca.bundle``, ``.ca.certs``). With ``--tpm-profile`` / ``--resource-manager`` its TCTI
    goes through the TPM proxy and/or tpm2-abrmd."""
    reason = lab_missing()
    if reason:
        lab_failed(reason)
    instance = Lab(tmp_path_factory.mktemp("lab"), **lab_front)
    status = _up_or_fail(instance)
    try:
        yield status
    finally:
        instance.down()


@pytest.fixture
def lab_registry(lab: LabStatus) -> Any:
    """The session lab TPM's one MID registry (the CLI's default, ``mids.json`` in the lab
    directory). REG_CTR is TPM-wide, so every test on the session TPM shares this file: a
    registry of its own would leave this one behind REG_CTR (refused as a rollback)."""
    from tpm.registry import Registry

    return Registry(lab.lab_dir / "mids.json")


@pytest.fixture(scope="session")
def lab_tcti(lab: LabStatus) -> str:
    """``swtpm:host=127.0.0.1,port=P`` of the session lab's TPM."""
    return lab.tcti


@pytest.fixture(scope="session")
def lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Lab]]:
    """Make extra labs (``lab_factory(name, **Lab_kwargs)`` → Lab, not yet up); each one made
    is downed at the end of the session, whatever state the test left it in."""
    reason = lab_missing()
    if reason:
        lab_failed(reason)
    made: list[Lab] = []

    def make(name: str, **kwargs: Any) -> Lab:
        instance = Lab(tmp_path_factory.mktemp(name), **kwargs)
        made.append(instance)
        return instance

    try:
        yield make
    finally:
        for instance in reversed(made):
            instance.down()


# ---- the operator store's PostgreSQL --------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session, started by the lab's own code
    (:class:`lab.postgres.PostgresServer`). It lives in a folder of /tmp, not under pytest's
    own temporary folder: pytest resets that folder's mode, which would lock the ``postgres``
    user out."""
    directory = Path(tempfile.mkdtemp(prefix="trelab-pg-"))
    server = PostgresServer(directory / "postgres", durable=False)
    try:
        server.ensure()
    except Unavailable as exc:
        lab_failed(f"PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


_databases = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where an operator store lives, once per engine: a fresh SQLite file, or a fresh
    database in the session's PostgreSQL (dropped after the test)."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'network.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"store_{os.getpid()}_{next(_databases)}"
    yield server.create_database(name)
    server.drop_database(name)


# ---- the UICC side: the lab's virtual card in reader 0, a modem on a pty ----------------------


@pytest.fixture(scope="module")
def private_swtpm(
    tmp_path_factory: pytest.TempPathFactory, lab_front: dict[str, str | None]
) -> Iterator[str]:
    """TCTI of a swtpm of the test module's own (manufactured with EK certificates in a temp
    dir, stopped afterwards): for tests that fill the TPM's object slots or sessions. With
    ``--resource-manager abrmd`` the TCTI is a tpm2-abrmd of its own in front of it."""
    from lab import abrmd, swtpm

    missing = lab_missing()
    if missing:
        lab_failed(missing)
    where = tmp_path_factory.mktemp("private-swtpm")
    paths = swtpm.SwtpmPaths(where)
    swtpm.manufacture(paths)
    process = swtpm.start(paths, swtpm.find_free_port_pair())
    broker = None
    try:
        tcti = swtpm.tcti(process.port)
        if lab_front["resource_manager"] == "abrmd":
            try:
                broker = abrmd.start(where / "abrmd", abrmd.bus_name_for(where), tcti)
            except Unavailable as exc:
                lab_failed(f"tpm2-abrmd: {exc}")
            tcti = broker.tcti
        yield tcti
    finally:
        if broker is not None:
            abrmd.stop(broker)
        swtpm.stop(paths, process.pid, process.start)


@pytest.fixture(scope="session")
def usim_reader(lab: LabStatus) -> str:
    """The lab's card reader (``Virtual PCD 00 00``) with *this lab's* card in it.

    vpcd serves one card per reader; with several labs up on the host the first lab's card
    holds reader 0 and the others queue. Tests that count on this lab's card state wait for it
    to be the attached one (up to 30 s), and fail saying which lab keeps the reader."""
    from firmware_stubs.card_serve import read_status
    from trelab import proc
    from uicc.links.pcsc import PcscLink

    card = lab.card
    if card is None or card.state != "running":
        lab_failed(f"the lab's virtual card is not running: {card.note if card else 'absent'}")
        raise AssertionError("unreachable")
    status_file = lab.lab_dir / "card" / "status.json"

    def ours_attached() -> bool:
        status = read_status(status_file)
        return bool(status and status.get("pid") == card.pid and status.get("state") == "attached")

    if not proc.wait_until(ours_attached, 30.0, interval=0.2):
        lab_failed(f"{card.reader} is held by another lab's card (see {card.log})")

    def answers() -> bool:
        try:
            with PcscLink(card.reader):
                return True
        except Unavailable:
            return False

    if not proc.wait_until(answers, 15.0, interval=0.2):
        lab_failed(f"no card answers in {card.reader} (see {card.log})")
    return card.reader


class ModemProcess:
    """A `trelab modem serve --pty` process: ``device`` is the pty path it printed."""

    def __init__(self, profile: Path, state: Path, log: Path) -> None:
        import subprocess
        import sys

        self.profile, self.state, self.log = profile, state, log
        argv = [sys.executable, "-m", "host.cli", "modem", "serve", "--profile", str(profile)]
        argv += ["--state", str(state), "--pty"]
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline().decode().strip()
        if not first.startswith("modem on "):
            self.stop()
            raise AssertionError(f"modem serve printed {first!r}; see {log}")
        self.device = first.removeprefix("modem on ")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; returns the exit status."""
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def modem_pty(tmp_path: Path) -> Iterator[ModemProcess]:
    """A modem emulator process on a fresh pty, with the default test profile and a state file
    of its own; stopped (SIGTERM) at the end of the test."""
    import json

    from firmware_stubs.usim.profile import DEFAULT_PROFILE

    profile = tmp_path / "modem-profile.json"
    profile.write_text(json.dumps(dict(DEFAULT_PROFILE)))
    modem = ModemProcess(profile, tmp_path / "modem-state.json", tmp_path / "modem.log")
    try:
        yield modem
    finally:
        modem.stop()
