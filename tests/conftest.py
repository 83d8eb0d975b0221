"""Shared fixtures: the real lab (swtpm with EK certificates, pcscd + vpcd) via host.lab.

``lab`` is session-scoped: one TPM manufacture (~1.5 s) serves every test that needs a TPM or
the vpcd readers. Tests that break things (crash swtpm, take its port) make their own labs with
``lab_factory``, which downs each lab it made. Every process a fixture starts, it stops.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from host.lab import Lab, LabStatus
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
    from uicc import pcscd

    try:
        pcscd.require_tools()
    except Unavailable as exc:
        return str(exc)
    return None


def skip_or_fail(reason: str) -> None:
    """Skip where the lab cannot run; in CI (``CI=true``) the set-up promised it, so fail."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the lab, but: {reason}")
    pytest.skip(reason)


def _up_or_skip(lab: Lab) -> LabStatus:
    try:
        return lab.up()
    except Unavailable as exc:  # the environment, not the code: say why and skip
        skip_or_fail(f"lab unavailable: {exc}")
        raise


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    """A running lab for the whole session; yields its LabStatus (``.tcti``, ``.readers``,
    ``.ca.bundle``, ``.ca.certs``)."""
    reason = lab_missing()
    if reason:
        skip_or_fail(reason)
    instance = Lab(tmp_path_factory.mktemp("lab"))
    status = _up_or_skip(instance)
    try:
        yield status
    finally:
        instance.down()


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
        skip_or_fail(reason)
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
