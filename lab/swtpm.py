"""Edge: processes, TCP, filesystem. A lab TPM: swtpm with EK certificates from a per-lab CA.

``swtpm_setup`` manufactures the TPM state once per lab: it creates the RSA-2048 and ECC P-384
EKs and asks ``swtpm_localca`` to certify them. The local CA (a self-signed root and an issuer
certificate under it) plays the M2M equipment supplier's CA of TR 33.812: the network side (DRF)
trusts its bundle, and a TRE proves its identity with the EK certificate read back from NV.

Then ``swtpm socket --daemon`` serves the state on a loopback port P and its control channel on
P + 1 (the tpm2-tss swtpm TCTI assumes P + 1). The daemon outlives the process that started it,
so ``trelab lab up`` and ``trelab lab down`` can be separate runs; it is identified later by pid,
start time and the state directory on its command line (see :mod:`trelab.proc`).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ObjectIdentifier

from lab.ports import pair_candidates
from trelab import proc
from trelab.atomic import atomic_write_bytes, atomic_write_text
from trelab.digits import is_decimal
from trelab.errors import CheckFailed, Unavailable

__all__ = [
    "EK_CERT_INDICES",
    "HOST",
    "NV_EK_ECC_P384",
    "NV_EK_RSA2048",
    "NV_PLATFORM_CERT",
    "ExportedCa",
    "PortInUse",
    "SwtpmPaths",
    "SwtpmProcess",
    "export_ca",
    "find_free_port_pair",
    "find_ours",
    "is_manufactured",
    "manufacture",
    "pid_file_pid",
    "port_pair_free",
    "read_nv_certificates",
    "require_tools",
    "running_process",
    "start",
    "stop",
    "tcti",
    "verify_ek_chain",
    "wait_closed",
]

HOST = "127.0.0.1"
NV_EK_RSA2048 = 0x01C00002
NV_EK_ECC_P384 = 0x01C00016
NV_PLATFORM_CERT = 0x01C08000
#: Exported file stem → NV index, as swtpm 0.7.1 lays them out (TCG EK Credential Profile).
EK_CERT_INDICES: Mapping[str, int] = {
    "ek-rsa2048": NV_EK_RSA2048,
    "ek-ecc-p384": NV_EK_ECC_P384,
    "platform": NV_PLATFORM_CERT,
}
_TCG_KP_EK_CERTIFICATE = ObjectIdentifier("2.23.133.8.1")
_TOOLS_FIX = "apt-get install swtpm swtpm-tools"
_PERMALL = "tpm2-00.permall"


class PortInUse(Unavailable):
    """The TCP port (or its control port + 1) is taken by another process."""


@dataclass(frozen=True)
class SwtpmPaths:
    """Where one lab keeps its TPM: state, configs, pid/log files, CA keys and exported certs."""

    lab_dir: Path

    @property
    def swtpm_dir(self) -> Path:
        return self.lab_dir / "swtpm"

    @property
    def state_dir(self) -> Path:
        return self.swtpm_dir / "state"

    @property
    def pid_file(self) -> Path:
        return self.swtpm_dir / "swtpm.pid"

    @property
    def log_file(self) -> Path:
        return self.swtpm_dir / "swtpm.log"

    @property
    def setup_log(self) -> Path:
        return self.swtpm_dir / "setup.log"

    @property
    def ca_dir(self) -> Path:
        """Exported, public: what the network side trusts."""
        return self.lab_dir / "ca"

    @property
    def localca_dir(self) -> Path:
        """swtpm_localca's state, including the CA private keys: never leaves the lab."""
        return self.ca_dir / "private"

    @property
    def certs_dir(self) -> Path:
        return self.lab_dir / "certs"


@dataclass(frozen=True)
class SwtpmProcess:
    """A running swtpm: ``start`` (clock ticks since boot) tells it apart from a reused pid."""

    pid: int
    start: int
    port: int
    ctrl_port: int


@dataclass(frozen=True)
class ExportedCa:
    """Paths of the exported manufacturer CA and the certificates read back from NV."""

    bundle: Path
    root: Path
    intermediate: Path
    certs: dict[str, Path] = field(default_factory=dict)


def require_tools() -> None:
    """Raises:
    Unavailable: swtpm, swtpm_setup or swtpm_localca is not on PATH.
    """
    for tool in ("swtpm", "swtpm_setup", "swtpm_localca"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} not found on PATH", fix=_TOOLS_FIX)


def tcti(port: int) -> str:
    """The TCTI string tpm2-tools and tpm2-pytss take for the swtpm on ``port``."""
    return f"swtpm:host={HOST},port={port}"


# ---- ports -------------------------------------------------------------------------------


def _port_free(port: int, host: str = HOST) -> bool:
    # SO_REUSEADDR like swtpm's own listener: a TIME_WAIT leftover does not count as "in use".
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_pair_free(port: int, host: str = HOST) -> bool:
    """True if both ``port`` and ``port + 1`` (swtpm's control channel) can be bound."""
    return 0 < port < 65535 and _port_free(port, host) and _port_free(port + 1, host)


def find_free_port_pair(host: str = HOST) -> int:
    """A port P such that P and P + 1 are free now, outside the kernel's ephemeral range where
    no client socket's TIME_WAIT can block it (:func:`lab.ports.pair_candidates`; the scan
    starts at a random pair, so two labs rarely race for the same one, and :func:`start`
    reports :class:`PortInUse` if they do).

    Raises:
        Unavailable: every candidate pair is taken.
    """
    for port in pair_candidates(secrets.randbelow(1 << 16)):
        if port_pair_free(port, host):
            return port
    raise Unavailable(f"no two adjacent free TCP ports on {host}", fix="free some ports")


def _accepts(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---- manufacturing -----------------------------------------------------------------------


def is_manufactured(paths: SwtpmPaths) -> bool:
    """True once swtpm_setup has written the TPM state (the EKs and their certificates)."""
    return (paths.state_dir / _PERMALL).is_file()


def _write_configs(paths: SwtpmPaths) -> Path:
    paths.swtpm_dir.mkdir(parents=True, exist_ok=True)
    paths.localca_dir.mkdir(parents=True, exist_ok=True)
    paths.localca_dir.chmod(0o700)
    localca = paths.localca_dir
    localca_conf = paths.swtpm_dir / "localca.conf"
    atomic_write_text(
        localca_conf,
        f"statedir = {localca}\n"
        f"signingkey = {localca / 'signkey.pem'}\n"
        f"issuercert = {localca / 'issuercert.pem'}\n"
        f"certserial = {localca / 'certserial'}\n",
    )
    localca_options = paths.swtpm_dir / "localca.options"
    atomic_write_text(
        localca_options,
        "--platform-manufacturer trelab\n--platform-version 1.0\n--platform-model lab-m2me\n",
    )
    setup_conf = paths.swtpm_dir / "setup.conf"
    atomic_write_text(
        setup_conf,
        f"create_certs_tool = {shutil.which('swtpm_localca') or '/usr/bin/swtpm_localca'}\n"
        f"create_certs_tool_config = {localca_conf}\n"
        f"create_certs_tool_options = {localca_options}\n"
        "active_pcr_banks = sha256\n",
    )
    return setup_conf


def manufacture(paths: SwtpmPaths, *, timeout: float = 120.0) -> None:
    """Create the TPM state with EKs and EK/platform certificates signed by the lab's local CA
    (created on first use). Runs into a scratch directory renamed into place at the end, so a
    failed run leaves no half-made TPM behind.

    Raises:
        Unavailable: a tool is missing or swtpm_setup failed (its log is in the lab directory).
    """
    require_tools()
    setup_conf = _write_configs(paths)
    if paths.state_dir.exists():  # a leftover without tpm2-00.permall: nothing worth keeping
        shutil.rmtree(paths.state_dir)
    scratch = Path(tempfile.mkdtemp(prefix="state.new-", dir=paths.swtpm_dir))
    argv = [
        "swtpm_setup",
        "--tpm2",
        "--tpm-state",
        str(scratch),
        "--config",
        str(setup_conf),
        "--createek",
        "--create-ek-cert",
        "--create-platform-cert",
        "--lock-nvram",
        "--overwrite",
    ]
    try:
        with paths.setup_log.open("wb") as log:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                timeout=timeout, check=False,
            )  # fmt: skip
        if done.returncode != 0 or not (scratch / _PERMALL).is_file():
            raise Unavailable(
                f"swtpm_setup failed (exit {done.returncode}): {_last_line(paths.setup_log)}",
                fix=f"see {paths.setup_log}",
            )
        scratch.rename(paths.state_dir)
    except subprocess.TimeoutExpired:
        raise Unavailable(
            f"swtpm_setup did not finish in {timeout:.0f} s", fix=f"see {paths.setup_log}"
        ) from None
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


# ---- process control ---------------------------------------------------------------------


def _read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if is_decimal(text) else None


def running_process(paths: SwtpmPaths, pid: int, start: int | None) -> bool:
    """True if ``pid`` is a live swtpm serving *this* lab's state directory (and, when given,
    started at ``start``): a stale pid file or a reused pid yields False."""
    return proc.matches(pid, program="swtpm", start=start, contains=f"dir={paths.state_dir}")


def find_ours(paths: SwtpmPaths) -> SwtpmProcess | None:
    """A live swtpm started for this lab (its command line names our state dir *and* our pid
    file, as :func:`start` writes them), found by scanning processes: recovers a lab whose
    lab.json was lost, instead of starting a second swtpm that would fail on the state lock."""
    for pid in proc.find_by_name("swtpm"):
        argv = proc.cmdline(pid) or []
        if f"dir={paths.state_dir}" not in argv or f"file={paths.pid_file}" not in argv:
            continue
        server = next((a for a in argv if a.startswith("type=tcp,port=")), None)
        started = proc.starttime(pid)
        if server is None or started is None:
            continue
        port = int(server.split(",")[1].removeprefix("port="))
        return SwtpmProcess(pid=pid, start=started, port=port, ctrl_port=port + 1)
    return None


def pid_file_pid(paths: SwtpmPaths) -> int | None:
    """The pid in swtpm's pid file, whether or not that process still exists."""
    return _read_pid_file(paths.pid_file)


def start(paths: SwtpmPaths, port: int, *, timeout: float = 10.0) -> SwtpmProcess:
    """Start swtpm as a daemon on ``port`` (and ``port + 1`` for control) over the lab state.

    Raises:
        PortInUse: ``port`` or ``port + 1`` is taken.
        Unavailable: swtpm is missing, the state is not manufactured, or swtpm did not come up.
    """
    require_tools()
    if not is_manufactured(paths):
        raise Unavailable(f"no TPM state in {paths.state_dir}", fix="run `trelab lab up`")
    if not port_pair_free(port):
        raise PortInUse(
            f"TCP port {port} or {port + 1} on {HOST} is in use",
            fix="choose another with --port, or omit --port to pick a free pair",
        )
    with contextlib.suppress(FileNotFoundError):
        paths.pid_file.unlink()
    errors = paths.swtpm_dir / "start.err"
    argv = [
        "swtpm", "socket", "--tpm2",
        "--tpmstate", f"dir={paths.state_dir}",
        "--server", f"type=tcp,port={port},bindaddr={HOST}",
        "--ctrl", f"type=tcp,port={port + 1},bindaddr={HOST}",
        "--flags", "not-need-init,startup-clear",
        "--daemon",
        "--pid", f"file={paths.pid_file}",
        "--log", f"file={paths.log_file},level=1",
    ]  # fmt: skip
    with errors.open("wb") as err:
        # --daemon: the parent exits once the daemon runs; the daemon belongs to init, not us.
        launcher = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = launcher.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()
            raise Unavailable(
                f"swtpm did not daemonize in {timeout:.0f} s", fix=f"see {paths.log_file}"
            ) from None
    message = errors.read_text(errors="replace").strip()
    if code != 0:
        if "in use" in message or f"[Errno {errno.EADDRINUSE}]" in message:
            raise PortInUse(
                f"swtpm could not listen on {HOST}:{port}: {message.splitlines()[-1]}",
                fix="choose another with --port, or omit --port to pick a free pair",
            )
        last = message.splitlines()[-1] if message else _last_line(paths.log_file)
        raise Unavailable(f"swtpm exited with {code}: {last}", fix=f"see {paths.log_file}")

    def served() -> bool:
        pid = _read_pid_file(paths.pid_file)
        return pid is not None and proc.is_alive(pid) and _accepts(port)

    if not proc.wait_until(served, timeout):
        raise Unavailable(
            f"swtpm did not start serving on {HOST}:{port}", fix=f"see {paths.log_file}"
        )
    pid = _read_pid_file(paths.pid_file)
    started = proc.starttime(pid) if pid is not None else None
    if pid is None or started is None:
        raise Unavailable("swtpm exited right after starting", fix=f"see {paths.log_file}")
    return SwtpmProcess(pid=pid, start=started, port=port, ctrl_port=port + 1)


def stop(paths: SwtpmPaths, pid: int, start: int | None) -> bool:
    """Stop the lab's swtpm ``pid`` if it really is that process; remove its pid file.

    Returns True if a process was stopped, False if there was none (crashed, stale pid file).
    """
    stopped = False
    if running_process(paths, pid, start):
        proc.terminate(pid)
        stopped = True
    with contextlib.suppress(FileNotFoundError):
        paths.pid_file.unlink()
    return stopped


# ---- certificates ------------------------------------------------------------------------


def _der_length(blob: bytes) -> int:
    """Length of the DER element at the start of ``blob`` (NV areas may be padded)."""
    if len(blob) < 2 or blob[0] != 0x30:
        return len(blob)
    first = blob[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    return 2 + count + int.from_bytes(blob[2 : 2 + count], "big")


def read_nv_certificates(port: int) -> dict[str, bytes]:
    """Read the EK (and platform) certificates from the swtpm on ``port``, as DER by name
    (see :data:`EK_CERT_INDICES`). Indices that are not defined are left out. Creates no
    transient object; every ESYS handle it opens is closed (swtpm has no resource manager).

    Raises:
        Unavailable: the TPM cannot be reached or the read fails.
    """
    from tpm.tss import ESAPI, TPM2_CAP, TPM2_HT, TCTILdr, TSS2_Exception

    wanted = {index: name for name, index in EK_CERT_INDICES.items()}
    result: dict[str, bytes] = {}
    try:
        with TCTILdr("swtpm", f"host={HOST},port={port}") as tctildr, ESAPI(tctildr) as esys:
            _, caps = esys.get_capability(TPM2_CAP.TPM_PROPERTIES, 0x12C, 1)  # NV_BUFFER_MAX
            props = caps.data.tpmProperties
            chunk = int(props[0].value) if len(props) else 512
            _, caps = esys.get_capability(TPM2_CAP.HANDLES, TPM2_HT.NV_INDEX << 24, 256)
            present = {int(h) for h in caps.data.handles}
            for index in sorted(present & set(wanted)):
                handle = esys.tr_from_tpmpublic(index)
                try:
                    public, _ = esys.nv_read_public(handle)
                    size = int(public.nvPublic.dataSize)
                    data = b""
                    while len(data) < size:
                        n = min(chunk, size - len(data))
                        data += bytes(esys.nv_read(handle, n, len(data), auth_handle=handle))
                finally:
                    esys.tr_close(handle)
                result[wanted[index]] = data[: _der_length(data)]
    except TSS2_Exception as exc:
        raise Unavailable(
            f"cannot read EK certificates from swtpm at {HOST}:{port}: {exc}",
            fix="check `trelab lab status`; `trelab lab up` restarts a crashed swtpm",
        ) from exc
    return result


def verify_ek_chain(
    cert: x509.Certificate,
    root: x509.Certificate,
    intermediate: x509.Certificate,
    *,
    name: str = "EK certificate",
    ek: bool = True,
    now: datetime.datetime | None = None,
) -> None:
    """Check that ``cert`` chains to ``root`` through ``intermediate``: signatures, validity
    at ``now``, CA constraints (RFC 5280 path validation by cryptography); for an EK also the
    tcg-kp-EKCertificate EKU. End-entity extensions are TCG ones (critical SAN dirName), so
    they are not held to web PKI rules.

    Raises:
        CheckFailed: naming ``name`` and the failed check.
    """
    from cryptography.x509.verification import (
        ExtensionPolicy,
        PolicyBuilder,
        Store,
        VerificationError,
    )

    builder = (
        PolicyBuilder()
        .store(Store([root]))
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
    )
    if now is not None:
        builder = builder.time(now)
    try:
        builder.build_client_verifier().verify(cert, [intermediate])
    except VerificationError as exc:
        raise CheckFailed(f"{name} does not chain to the manufacturer CA: {exc}") from None
    if ek:
        try:
            usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            raise CheckFailed(f"{name} has no extended key usage") from None
        if _TCG_KP_EK_CERTIFICATE not in usages:
            raise CheckFailed(f"{name} lacks the tcg-kp-EKCertificate key usage")


def export_ca(paths: SwtpmPaths, nv_certs: Mapping[str, bytes]) -> ExportedCa:
    """Write the manufacturer CA (root, issuer, and a bundle of both) under ``ca/`` and the NV
    certificates as PEM under ``certs/``, after verifying every one against the CA.

    Raises:
        Unavailable: the local CA files are missing (manufacturing did not finish).
        CheckFailed: a certificate does not chain to the CA, or an EK certificate is missing.
    """
    src_root = paths.localca_dir / "swtpm-localca-rootca-cert.pem"
    src_issuer = paths.localca_dir / "issuercert.pem"
    try:
        root_pem, issuer_pem = src_root.read_bytes(), src_issuer.read_bytes()
    except FileNotFoundError as exc:
        raise Unavailable(
            f"local CA file missing: {exc.filename}",
            fix=f"remove {paths.state_dir} and run `trelab lab up` to manufacture again",
        ) from None
    root = x509.load_pem_x509_certificate(root_pem)
    issuer = x509.load_pem_x509_certificate(issuer_pem)
    for name in ("ek-rsa2048", "ek-ecc-p384"):
        if name not in nv_certs:
            raise CheckFailed(f"{name} certificate missing from TPM NV")
    exported: dict[str, Path] = {}
    for name, der in nv_certs.items():
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise CheckFailed(f"{name} certificate in NV is not valid DER X.509") from None
        verify_ek_chain(cert, root, issuer, name=f"{name} certificate", ek=name != "platform")
        target = paths.certs_dir / f"{name}.pem"
        atomic_write_bytes(target, cert.public_bytes(Encoding.PEM), mode=0o644)
        exported[name] = target
    ca = ExportedCa(
        bundle=paths.ca_dir / "manufacturer-ca.pem",
        root=paths.ca_dir / "root.pem",
        intermediate=paths.ca_dir / "intermediate.pem",
        certs=exported,
    )
    root_out = root.public_bytes(Encoding.PEM)
    issuer_out = issuer.public_bytes(Encoding.PEM)
    atomic_write_bytes(ca.root, root_out, mode=0o644)
    atomic_write_bytes(ca.intermediate, issuer_out, mode=0o644)
    atomic_write_bytes(ca.bundle, root_out + issuer_out, mode=0o644)
    return ca


def wait_closed(port: int, timeout: float = 2.0) -> bool:
    """True once nothing accepts on ``port`` any more (after a stop)."""
    return proc.wait_until(lambda: not _accepts(port), timeout)
