"""Ctrl-C during ``trelab provision`` at each TPM command of the import leaves the host's
audit log consistent with the TPM's AUDIT index — the next run repairs what an interrupt cut
off and says so. Real processes and a real SIGINT: the agent sends it to itself at the named
TPM command (``TRELAB_TEST_CRASH_SIGNAL=INT``), so it unwinds exactly as after Ctrl-C."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.lab import LabStatus
from tests.integration.test_agent_provision import Network, agent_args, trelab
from tests.robustness import check_consistent, own_lab
from tpm.registry import Registry

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def int_lab(lab_factory: Callable[..., Any]) -> Iterator[LabStatus]:
    with own_lab(lab_factory, "agent-int") as status:
        yield status


@pytest.fixture(scope="module")
def int_net(int_lab: LabStatus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    net = Network(tmp_path_factory.mktemp("int-net"), int_lab)
    try:
        yield net
    finally:
        net.close()


def _audit_matches(lab: LabStatus, registry: Path) -> Any:
    listed = trelab("tpm", "mid", "list", "--tpm", lab.tcti, "--registry", str(registry), "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["audit_matches_tpm"]


@pytest.mark.parametrize(
    "point",
    [
        "import/tpm:import_",
        "import/tpm:nv_define_space",
        "import/tpm:nv_write",
        "import/tpm:nv_increment",  # MID_CTR: the sequence number is spent → roll back
        "import/tpm:nv_increment#2",  # REG_CTR: the registry file is written
        "import/tpm:nv_extend",  # AUDIT extended: the last step of the import
    ],
)
def test_ctrl_c_during_import_leaves_audit_log_and_tpm_consistent(
    int_lab: LabStatus, int_net: Network, point: str
) -> None:
    registry = int_net.dir.parent / "mids.json"
    args = agent_args(int_lab, int_net, registry)
    env = {"TRELAB_TEST_CRASH_AT": point, "TRELAB_TEST_CRASH_SIGNAL": "INT"}
    interrupted = trelab("provision", "--sho", "sho-a", *args, env=env)
    assert interrupted.returncode == 130, (point, interrupted.returncode, interrupted.stderr)
    assert "trelab: interrupted" in interrupted.stderr
    retry = trelab("provision", "--sho", "sho-a", *args)
    assert retry.returncode == 0, (point, retry.stderr)
    assert json.loads(retry.stdout)["state"] == "ACTIVE"
    assert _audit_matches(int_lab, registry) is True
    if point == "import/tpm:nv_increment#2":  # logged, AUDIT not yet extended: repaired
        assert json.loads(retry.stdout)["repaired"], retry.stdout
    check_consistent(int_net, int_lab, Registry(registry))
