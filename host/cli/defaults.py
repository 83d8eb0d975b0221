"""Edge: environment and user directories. The one place trelab resolves what the user did not
say: the lab directory, the TPM (TCTI), the MID registry, the network config folder and its
database, the pinned device trust and the manufacturer CA bundle.

Every library layer below the CLI takes these as explicit arguments; an option given on the
command line wins over the environment variable, which wins over the user's directories
(platformdirs) or the running lab.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trelab.errors import Unavailable

if TYPE_CHECKING:
    from network.config import NetworkConfig

__all__ = [
    "DEVICE_TRUST_ENV",
    "LAB_DIR_ENV",
    "MID_REGISTRY_ENV",
    "NETWORK_DIR_ENV",
    "TPM_ENV",
    "ca_bundle",
    "device_trust_path",
    "lab_dir",
    "load_network_config",
    "network_config",
    "network_config_dir",
    "network_db",
    "registry_path",
    "tcti",
]

LAB_DIR_ENV = "TRELAB_LAB_DIR"
TPM_ENV = "TRELAB_TPM"
MID_REGISTRY_ENV = "TRELAB_MID_REGISTRY"
NETWORK_DIR_ENV = "TRELAB_NETWORK_DIR"
DEVICE_TRUST_ENV = "TRELAB_DEVICE_TRUST"
NETWORK_STORE_ENV = "TRELAB_NETWORK_STORE"


def _given(explicit: str | os.PathLike[str] | None, env: str) -> Path | None:
    if explicit:
        return Path(explicit)
    value = os.environ.get(env)
    return Path(value) if value else None


def lab_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--lab-dir``, else ``$TRELAB_LAB_DIR``, else ``<user state dir>/trelab/lab``."""
    given = _given(explicit, LAB_DIR_ENV)
    if given is not None:
        return given
    import platformdirs

    return Path(platformdirs.user_state_dir("trelab")) / "lab"


def tcti(explicit: str | None = None) -> str:
    """``--tpm``, else ``$TRELAB_TPM``, else the running lab's swtpm.

    Raises:
        Unavailable: nothing given and the lab's swtpm is not running.
    """
    if explicit:
        return explicit
    env = os.environ.get(TPM_ENV)
    if env:
        return env
    from lab.lab import Lab

    status = Lab(lab_dir()).status()
    if status.swtpm.state != "running" or status.swtpm.tcti is None:
        raise Unavailable("no TPM given and the lab's swtpm is not running", fix="trelab lab up")
    return status.tcti  # the part in front of swtpm (profile proxy, tpm2-abrmd), if any


def registry_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--registry``, else ``$TRELAB_MID_REGISTRY``, else ``<lab dir>/mids.json``."""
    given = _given(explicit, MID_REGISTRY_ENV)
    return given if given is not None else lab_dir() / "mids.json"


def network_config_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The operator's config folder: ``$TRELAB_NETWORK_DIR``, else
    ``<user config dir>/trelab/network``."""
    given = _given(explicit, NETWORK_DIR_ENV)
    if given is not None:
        return given
    import platformdirs

    return Path(platformdirs.user_config_dir("trelab")) / "network"


def network_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--config`` (a file, or a folder holding ``network.json``), else the config folder's
    ``network.json``."""
    from network.config import CONFIG_NAME

    if explicit:
        path = Path(explicit)
        return path / CONFIG_NAME if path.is_dir() else path
    return network_config_dir() / CONFIG_NAME


def network_db(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--db``, else ``<user state dir>/trelab/network.db``."""
    if explicit:
        return Path(explicit)
    import platformdirs

    return Path(platformdirs.user_state_dir("trelab")) / "network.db"


def network_store(explicit: str | os.PathLike[str] | None = None) -> str:
    """``--store`` (a path, ``sqlite://PATH`` or ``postgresql://…``), else
    ``$TRELAB_NETWORK_STORE``, else the SQLite file ``<user state dir>/trelab/network.db``."""
    if explicit:
        return str(explicit)
    if os.environ.get(NETWORK_STORE_ENV):
        return os.environ[NETWORK_STORE_ENV]
    return str(network_db())


STORE_HELP = (
    "the operator store: a SQLite path or sqlite://PATH, or postgresql://USER:PASSWORD@HOST:PORT/DB"
    f" (default: ${NETWORK_STORE_ENV}, else network.db in the user state dir)"
)


def add_store_flag(p: Any) -> None:
    """``--store URL`` (``--db`` is its earlier spelling)."""
    p.add_argument("--store", metavar="URL", help=STORE_HELP)
    p.add_argument("--db", dest="store", help=argparse.SUPPRESS)


def device_trust_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--trust``, else ``$TRELAB_DEVICE_TRUST``, else ``device-trust.json`` in the network
    config folder (the lab runs device and operator on one host)."""
    given = _given(explicit, DEVICE_TRUST_ENV)
    return given if given is not None else network_config_dir() / "device-trust.json"


def ca_bundle(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--ca``, else the lab's manufacturer CA bundle (it may not exist before ``lab up``)."""
    if explicit:
        return Path(explicit)
    from lab.lab import Lab

    return Lab(lab_dir()).status().ca.bundle


def load_network_config(explicit: str | os.PathLike[str] | None = None) -> NetworkConfig:
    """The operator's configuration at :func:`network_config`; one without ``trusted_cas``
    trusts the lab's manufacturer CA bundle."""
    from network.config import load_config

    return load_config(network_config(explicit), default_trusted_cas=ca_bundle())
