"""Edge: PC/SC, serial, processes. UICC TREs for the benchmark harness: a USIM over
PC/SC and a modem's SIM over AT+CSIM, emulated in the lab or physical.

Rows (``cases()`` holds exactly one raw case, the bare transport):

- ``usim over PC/SC (emulated)`` — the lab's card (``trelab card serve`` behind vpcd) in reader
  0. Raw: the AUTHENTICATE TPDU and its GET RESPONSE as two bare ``SCardTransmit`` calls on a
  pyscard connection of its own. ``aka-milenage``: :meth:`uicc.usim.UsimClient.authenticate`
  over :class:`uicc.links.PcscLink` (APDU build, T=0 GET RESPONSE, parse).
- ``modem over AT+CSIM (emulated)`` — the lab's modem on its pty. Raw: the same two TPDUs as
  two bare ``AT+CSIM`` lines written and read on the port; ``aka-milenage`` through
  :class:`uicc.links.AtCsimLink`.
- ``usim over PC/SC (physical reader)`` / ``modem over AT+CSIM (physical)`` — when
  ``lab.detect`` finds one *and* the card's profile (K, OPc, PIN) is given
  (``TRELAB_BENCH_CARD_PROFILE``; ``TRELAB_BENCH_MODEM`` names the modem's port): without K
  there are no valid vectors.

Every AKA — raw and client alike — uses a fresh vector, so the card does its full work
(Milenage, the Annex C SQN check, the fsync'd state commit). The vectors come from an HSS built
from the card's profile (Alternative 2, :func:`firmware_stubs.usim.personalise.hss_subscriber`).
The lab card's SQN state persists across runs, so the HSS first learns it the way a network
does: one AUTHENTICATE, a synchronisation failure, SQN_MS recovered from AUTS, SQN_HE moved.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from aka.hss import AuthVector, Hss
from aka.usim import AkaMacFailure, AkaSuccess, AkaSyncFailure
from firmware_stubs.usim.personalise import hss_subscriber
from firmware_stubs.usim.profile import CardProfile, load_profile
from trelab import proc
from trelab.errors import CheckFailed, LocalProtocolError, TrelabError, Unavailable
from uicc.usim import UsimClient

from ..breakdown import TimedLink
from ..harness import Case
from .five_g import me_5g
from .pool import VectorPool

__all__ = [
    "CARD_PROFILE_ENV",
    "MODEM_PORT_ENV",
    "InProcessUsimTre",
    "ModemUsimTre",
    "PcscUsimTre",
    "auth_tpdu",
    "in_process_card_factory",
    "lab_card_factory",
    "lab_modem_factory",
    "pcscd_version",
    "physical_modem_factory",
    "physical_reader_factory",
]

CARD_PROFILE_ENV = "TRELAB_BENCH_CARD_PROFILE"
MODEM_PORT_ENV = "TRELAB_BENCH_MODEM"
_ATTACH_WAIT = 15.0  # s for the lab card to be the one in reader 0 (a python start, 2 cores)


def auth_tpdu(vector: AuthVector) -> bytes:
    """AUTHENTICATE (3G context) as a T=0 TPDU: case 4 sent without Le (TS 102 221 §7.3.1.1)."""
    body = b"\x10" + vector.rand + bytes([len(vector.autn)]) + vector.autn
    return bytes([0x00, 0x88, 0x00, 0x81, len(body)]) + body


@functools.cache
def pcscd_version() -> str:
    """First line of ``pcscd --version`` (e.g. "pcsc-lite version 1.9.9.")."""
    binary = shutil.which("pcscd") or "/usr/sbin/pcscd"
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({type(exc).__name__})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


class _UsimTre:
    """What both UICC rows share: the HSS from the card's profile, PIN and SQN catch-up, the
    client cases. Subclasses open the link and provide the raw case."""

    link_kind = ""

    #: how the lab gives this card its profile back, for lab rows (None: physical hardware)
    reset_fix: str | None = None

    def __init__(self, tre: str, profile: CardProfile, *, quick: bool) -> None:
        self.tre = tre
        self._profile = profile
        self._stack = contextlib.ExitStack()
        self._hss = Hss(os.urandom)
        self._hss.add(hss_subscriber(profile))
        self._pool = VectorPool(self._hss, profile.imsi, ahead=8 if quick else 40)
        self._resyncs_at_start = 0
        self._timed: TimedLink | None = None  # the client's link, APDU exchanges timed

    def _prepare(self, client: UsimClient) -> None:
        """PIN if the card wants it (never with fewer than 3 tries left), then find where the
        card's SQN is and fetch one successful AKA (its vector is what aka-resync replays)."""
        self._client = client
        status = client.pin_status()
        if status.state == "blocked":
            raise Unavailable(
                f"{self.tre}: PIN1 is blocked", fix=self.reset_fix or "trelab card unblock"
            )
        if status.state == "enabled" and not status.verified:
            if status.tries_left is not None and status.tries_left < 3:
                raise Unavailable(
                    f"{self.tre}: PIN1 has {status.tries_left} tries left; the bench does not "
                    "risk them",
                    fix="verify the PIN once by hand (trelab card info)",
                )
            client.verify_pin(self._profile.pin1)
        imsi = self._profile.imsi
        for _ in range(2):
            (vector,) = self._hss.generate_vectors(imsi, 1)
            result = client.authenticate(vector.rand, vector.autn)
            if isinstance(result, AkaSuccess):
                self._replay = vector
                self._pool.top_up()
                return
            if isinstance(result, AkaMacFailure):
                raise Unavailable(
                    f"{self.tre}: MAC failure: the card's K/OPc are not its profile's",
                    fix=self.reset_fix,
                )
            try:  # sync failure: learn SQN_MS from AUTS like an HSS does (TS 33.102 §6.3.5)
                self._hss.resynchronise(imsi, vector.rand, result.auts)
            except CheckFailed:
                raise Unavailable(
                    f"{self.tre}: AUTS does not verify: the card's K/OPc are not its profile's",
                    fix=self.reset_fix,
                ) from None
            self._resyncs_at_start += 1
        raise Unavailable(f"{self.tre}: the card refused a vector even after resynchronising")

    def _base_environment(self) -> dict[str, Any]:
        profile = self._profile
        return {
            "kind": "uicc",
            "link": self.link_kind,
            "iccid": profile.iccid,
            "imsi": profile.imsi,
            "algorithm": profile.algorithm,
            "aka_mode": f"{profile.algorithm} inside the USIM; SQN checked and committed by the card",
            "sqn_catch_up": f"{self._resyncs_at_start} resynchronisation(s) before the run",
            "suci": (
                f"GET IDENTITY, schemes {', '.join(profile.suci.schemes)}"
                if profile.suci is not None and profile.suci.calculation == "usim"
                else "not run: this card leaves the SUCI to the ME (EF.UST 125 absent)"
            ),
        }

    def _timed_link(self, link: Any) -> TimedLink:
        self._timed = TimedLink(link)
        return self._timed

    def _client_cases(self) -> list[Case]:
        observe = self._timed.observe if self._timed is not None else None
        client, pool, hss, imsi = self._client, self._pool, self._hss, self._profile.imsi
        replay = self._replay

        def aka(n: int) -> None:
            for _ in range(n):
                vector = pool.take()
                result = client.authenticate(vector.rand, vector.autn)
                if not isinstance(result, AkaSuccess):
                    raise LocalProtocolError(f"{self.tre}: bench AKA gave {result.result}")

        def aka_5g(n: int) -> None:
            for _ in range(n):
                vector = pool.take()
                me_5g(client.authenticate(vector.rand, vector.autn), vector, self.tre)

        def resync(n: int) -> None:
            for _ in range(n):
                result = client.authenticate(replay.rand, replay.autn)
                if not isinstance(result, AkaSyncFailure):
                    raise LocalProtocolError(f"{self.tre}: replayed AUTN gave {result.result}")
                hss.resynchronise(imsi, replay.rand, result.auts)

        def suci(n: int) -> None:
            for _ in range(n):
                client.get_identity()

        suci_cases = []
        if self._profile.suci is not None and self._profile.suci.calculation == "usim":
            first = self._profile.suci.schemes[0]
            suci_cases.append(
                Case(self.tre, "suci", suci,
                     detail=f"UsimClient.get_identity: GET IDENTITY (+ GET RESPONSE on T=0); the card "
                     f"makes a fresh ephemeral key and conceals its IMSI (scheme {first})")
            )  # fmt: skip
        algorithm = self._profile.algorithm
        operation = "aka-milenage" if algorithm == "milenage" else f"aka-{algorithm}"
        runs = {"milenage": "Milenage", "tuak": "TUAK", "hmac-sha256": "the HMAC-SHA-256 set"}
        return [
            *suci_cases,
            Case(self.tre, operation, aka, teardown=pool.top_up, observe=observe,
                 detail="UsimClient.authenticate: AUTHENTICATE (+ GET RESPONSE on T=0), parsed; the "
                 f"card runs {runs.get(algorithm, algorithm)}, the SQN check and an fsync'd "
                 "state commit"),
            Case(self.tre, "aka-5g", aka_5g, teardown=pool.top_up,
                 detail="aka-milenage + the ME's RES*, K_AUSF, K_SEAF, K_AMF in software "
                 "(TS 33.501 Annex A)"),
            Case(self.tre, "aka-resync", resync, observe=observe,
                 detail="replayed AUTN: the card answers AUTS, the HSS checks MAC-S and "
                 "recovers SQN_MS"),
        ]  # fmt: skip

    def close(self) -> None:
        self._stack.close()


# ---- PC/SC ---------------------------------------------------------------------------------


class PcscUsimTre(_UsimTre):
    """A USIM in a PC/SC reader.

    Raises (constructor):
        Unavailable: no such reader or card, PIN trouble, or the card is not the profile's.
    """

    link_kind = "PC/SC (pyscard → pcscd)"

    def __init__(
        self,
        tre: str,
        reader: str,
        profile: CardProfile,
        *,
        quick: bool,
        extra: dict[str, Any] | None = None,
        reset_fix: str | None = None,
    ) -> None:
        from uicc.links.pcsc import PcscLink

        super().__init__(tre, profile, quick=quick)
        self.reset_fix = reset_fix
        self._extra = dict(extra or {})
        try:
            link = self._link = self._stack.enter_context(PcscLink(reader))
            link.reset_on_close = True  # leave the card as found: no PIN verified
            client = UsimClient(self._timed_link(link))
            iccid = client.read_iccid()
            if iccid != profile.iccid:
                raise Unavailable(
                    f"{tre}: {link.reader} holds card {iccid}, not the profile's {profile.iccid}"
                )
            self._prepare(client)
            self._open_raw(link.reader, link.protocol)
        except BaseException:
            self.close()
            raise

    def _open_raw(self, reader: str, protocol: str) -> None:
        """A second, bare pyscard connection to the same card (shared mode) for the raw case."""
        from smartcard import scard

        from uicc.links.pcsc import pcsc_error

        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise pcsc_error(hresult, "bench: raw PC/SC context")
        self._stack.callback(scard.SCardReleaseContext, context)
        wanted = scard.SCARD_PROTOCOL_T1 if protocol == "T1" else scard.SCARD_PROTOCOL_T0
        hresult, card, _active = scard.SCardConnect(
            context, reader, scard.SCARD_SHARE_SHARED, wanted
        )
        if hresult != scard.SCARD_S_SUCCESS:
            raise pcsc_error(hresult, "bench: raw connection", reader)
        self._stack.callback(scard.SCardDisconnect, card, scard.SCARD_LEAVE_CARD)
        self._raw_card = card
        self._raw_t1 = protocol == "T1"

    def environment(self) -> dict[str, Any]:
        link = self._link
        return {
            **self._base_environment(),
            "reader": link.reader,
            "atr": link.atr.hex() if link.atr else None,
            "protocol": link.protocol,
            "pcscd": pcscd_version(),
            **self._extra,
        }

    def cases(self, quick: bool) -> list[Case]:
        return [self._raw_case(), *self._client_cases()]

    def _raw_case(self) -> Case:
        from smartcard import scard

        from uicc.links.pcsc import pcsc_error

        card, pool, reader = self._raw_card, self._pool, self._link.reader
        transmit, ok = scard.SCardTransmit, scard.SCARD_S_SUCCESS
        if self._raw_t1:
            pci = scard.SCARD_PCI_T1

            def body(n: int) -> None:  # T=1: the case-4 APDU with Le = 00, one exchange
                for _ in range(n):
                    hr, resp = transmit(card, pci, [*auth_tpdu(pool.take()), 0x00])
                    if hr != ok:
                        raise pcsc_error(hr, "bench: raw AUTHENTICATE", reader)
                    if resp[-2:] != [0x90, 0x00] or resp[0] != 0xDB:
                        raise Unavailable(f"bench: raw AUTHENTICATE answered {bytes(resp).hex()}")

            what = "one bare SCardTransmit of the AUTHENTICATE APDU (T=1, Le = 00)"
        else:
            pci = scard.SCARD_PCI_T0

            def body(n: int) -> None:
                for _ in range(n):
                    hr, resp = transmit(card, pci, list(auth_tpdu(pool.take())))
                    if hr != ok:
                        raise pcsc_error(hr, "bench: raw AUTHENTICATE", reader)
                    if len(resp) != 2 or resp[0] != 0x61:
                        raise Unavailable(f"bench: raw AUTHENTICATE answered {bytes(resp).hex()}")
                    hr, resp = transmit(card, pci, [0x00, 0xC0, 0x00, 0x00, resp[1]])
                    if hr != ok:
                        raise pcsc_error(hr, "bench: raw GET RESPONSE", reader)
                    if resp[-2:] != [0x90, 0x00] or resp[0] != 0xDB:
                        raise Unavailable(f"bench: raw GET RESPONSE answered {bytes(resp).hex()}")

            what = "the AUTHENTICATE TPDU + GET RESPONSE as two bare SCardTransmit calls"
        return Case(
            self.tre, "raw: AUTHENTICATE + GET RESPONSE", body, raw=True, teardown=pool.top_up,
            detail=f"{what} on a pyscard connection of its own, fresh vector each",
        )  # fmt: skip


# ---- in-process -----------------------------------------------------------------------------


class InProcessUsimTre(_UsimTre):
    """The emulated card's engine (:class:`firmware_stubs.usim.engine.UsimEngine`) called in
    this process: no reader, no pcscd, the card's own work only (its state file fsync'd as the
    served card does). One row per algorithm set, each with a fresh profile, so the card and
    the TPM compare on the same set (the TPM rows' ``aka-hmac-sha256``).
    """

    link_kind = "in-process (UsimEngine called directly: no reader, no pcscd)"

    def __init__(self, tre: str, algorithm: str, *, quick: bool) -> None:
        import tempfile

        from firmware_stubs.usim.engine import UsimEngine
        from firmware_stubs.usim.personalise import new_profile_data, personalise
        from firmware_stubs.usim.state import CardStore
        from uicc.links.inprocess import InProcessLink

        data = new_profile_data(
            "001010000000777", "8988211000000077770", os.urandom,
            algorithm=algorithm,  # type: ignore[arg-type]
        )  # fmt: skip
        profile, _ = personalise(data)
        super().__init__(tre, profile, quick=quick)
        try:
            where = Path(tempfile.mkdtemp(prefix="trelab-bench-card-"))
            self._stack.callback(shutil.rmtree, where, ignore_errors=True)
            self._engine = UsimEngine(profile, CardStore(where / "state.json"))
            link = InProcessLink(self._engine)
            self._prepare(UsimClient(self._timed_link(link)))
        except BaseException:
            self.close()
            raise

    def environment(self) -> dict[str, Any]:
        return {**self._base_environment(), "card": "a fresh profile for this run"}

    def cases(self, quick: bool) -> list[Case]:
        engine, pool = self._engine, self._pool

        def body(n: int) -> None:
            for _ in range(n):
                response = engine.process(auth_tpdu(pool.take()))
                if len(response) != 2 or response[0] != 0x61:
                    raise Unavailable(f"bench: raw AUTHENTICATE answered {response.hex()}")
                response = engine.process(bytes([0x00, 0xC0, 0x00, 0x00, response[1]]))
                if response[-2:] != b"\x90\x00" or response[0] != 0xDB:
                    raise Unavailable(f"bench: raw GET RESPONSE answered {response.hex()}")

        raw = Case(
            self.tre, "raw: AUTHENTICATE + GET RESPONSE", body, raw=True, teardown=pool.top_up,
            detail="the AUTHENTICATE TPDU + GET RESPONSE as two bare UsimEngine.process calls, "
            "fresh vector each",
        )  # fmt: skip
        return [raw, *self._client_cases()]


def in_process_card_factory(algorithm: str) -> Any:
    def factory(ctx: Any) -> InProcessUsimTre:
        name = "milenage" if algorithm == "milenage" else algorithm
        return InProcessUsimTre(f"usim in-process ({name})", algorithm, quick=ctx.quick)

    return factory


# ---- AT+CSIM -------------------------------------------------------------------------------


class ModemUsimTre(_UsimTre):
    """A modem's SIM over AT+CSIM on a serial port.

    Raises (constructor):
        Unavailable: the port does not open or answer, no SIM, PIN trouble, wrong card.
    """

    link_kind = "AT+CSIM (TS 27.007 §8.17) over a serial port"

    def __init__(
        self,
        tre: str,
        device: str,
        profile: CardProfile,
        *,
        quick: bool,
        extra: dict[str, Any] | None = None,
        reset_fix: str | None = None,
    ) -> None:
        from uicc.links.at_csim import AtCommandFailed, AtCsimLink

        super().__init__(tre, profile, quick=quick)
        self.reset_fix = reset_fix
        self._extra = dict(extra or {})
        self._device = device
        try:
            link = self._link = self._stack.enter_context(AtCsimLink(device))
            identity = []
            for command in ("AT+CGMI", "AT+CGMM", "AT+CGMR"):
                with contextlib.suppress(AtCommandFailed):
                    identity += [line.strip() for line in link.command(command) if line.strip()]
            self._identity = " ".join(identity) or "unknown"
            client = UsimClient(self._timed_link(link))
            iccid = client.read_iccid()
            if iccid != profile.iccid:
                raise Unavailable(f"{tre}: the modem's SIM is {iccid}, not {profile.iccid}")
            self._prepare(client)
        except BaseException:
            self.close()
            raise

    def environment(self) -> dict[str, Any]:
        target = os.path.realpath(self._device)
        return {
            **self._base_environment(),
            "device": self._device + (f" → {target}" if target != self._device else ""),
            "modem": self._identity,
            **self._extra,
        }

    def cases(self, quick: bool) -> list[Case]:
        return [self._raw_case(), *self._client_cases()]

    def _raw_case(self) -> Case:
        port, pool, timeout = self._link.serial_port, self._pool, self._link.timeout

        def final() -> bytes:
            buffer = b""
            deadline = time.monotonic() + timeout
            while not buffer.endswith((b"OK\r\n", b"ERROR\r\n")):
                buffer += port.read(port.in_waiting or 1)
                if time.monotonic() > deadline:
                    raise Unavailable(f"bench: the modem did not answer within {timeout:g} s")
            return buffer

        def body(n: int) -> None:
            for _ in range(n):
                tpdu = auth_tpdu(pool.take())
                port.write(b'AT+CSIM=%d,"%s"\r' % (2 * len(tpdu), tpdu.hex().upper().encode()))
                first = final()
                at = first.find(b'"61')
                if at < 0:
                    raise Unavailable(f"bench: raw AT+CSIM answered {first!r}")
                port.write(b'AT+CSIM=10,"00C00000%s"\r' % first[at + 3 : at + 5])
                if b'"DB' not in final():
                    raise Unavailable("bench: raw GET RESPONSE over AT+CSIM gave no DB")

        return Case(
            self.tre, "raw: AT+CSIM AUTHENTICATE + GET RESPONSE", body, raw=True,
            teardown=pool.top_up,
            detail="two bare AT+CSIM lines (AUTHENTICATE TPDU, GET RESPONSE) written and read "
            "on the port, as the client sends them; fresh vector each",
        )  # fmt: skip


# ---- factories -----------------------------------------------------------------------------


def _need_lab(ctx: Any) -> Any:
    if ctx.lab is None:
        raise Unavailable("no lab in this run", fix="run without --no-lab (or `trelab lab up`)")
    return ctx.lab


def _other_lab_card(lab_dir: Path) -> str | None:
    """Another lab whose card holds vpcd reader 0 now (vpcd serves one card per reader)."""
    from firmware_stubs.card_serve import read_status
    from lab import pcscd

    for other in pcscd.PcscdRegistry().users():
        if Path(other) == lab_dir:
            continue
        status = read_status(Path(other) / "card" / "status.json")
        pid = status.get("pid") if status else None
        attached = status is not None and status.get("state") == "attached"
        if attached and isinstance(pid, int) and proc.is_alive(pid):
            return str(other)
    return None


def lab_card_factory(ctx: Any) -> PcscUsimTre:
    """``usim over PC/SC (emulated)``: the lab's card, once it is the one in reader 0.

    Raises:
        Unavailable: no lab, the card process is not running, or another lab's card holds
        the reader.
    """
    from firmware_stubs.card_serve import read_status
    from uicc.links.pcsc import PcscLink

    lab = _need_lab(ctx)
    card = lab.card
    if card is None or card.state != "running":
        note = f": {card.note}" if card is not None and card.note else ""
        state = card.state if card is not None else "absent"
        raise Unavailable(f"the lab's virtual card is {state}{note}", fix="trelab lab up")
    status_file = Path(lab.lab_dir) / "card" / "status.json"

    def ours_attached() -> bool:
        status = read_status(status_file)
        return bool(status and status.get("pid") == card.pid and status.get("state") == "attached")

    def answers() -> bool:
        try:
            with PcscLink(card.reader):
                return True
        except TrelabError:
            return False

    if not ours_attached():
        holder = _other_lab_card(Path(lab.lab_dir))
        if holder is not None:
            raise Unavailable(
                f"{card.reader} holds the card of lab {holder}; this lab's card waits its turn",
                fix="stop the other lab (trelab lab down --lab-dir …) or bench that lab",
            )
        if not proc.wait_until(ours_attached, _ATTACH_WAIT, interval=0.1):
            raise Unavailable(
                f"the lab's card is not attached to {card.reader}", fix=f"see {card.log}"
            )
    if not proc.wait_until(answers, _ATTACH_WAIT, interval=0.1):
        raise Unavailable(f"no card answers in {card.reader}", fix=f"see {card.log}")
    extra = {"card": f"emulated USIM (trelab card serve, pid {card.pid}) behind vpcd {card.vpcd}"}
    return PcscUsimTre(
        "usim over PC/SC (emulated)", card.reader, load_profile(card.profile),
        quick=ctx.quick, extra=extra,
        reset_fix=f"`trelab lab reset card --lab-dir {lab.lab_dir}` restores the lab card's profile",
    )  # fmt: skip


def lab_modem_factory(ctx: Any) -> ModemUsimTre:
    """``modem over AT+CSIM (emulated)``: the lab's modem emulator on its pty.

    Raises:
        Unavailable: no lab, or the modem process is not running.
    """
    lab = _need_lab(ctx)
    modem = lab.modem
    if modem is None or modem.state != "running":
        note = f": {modem.note}" if modem is not None and modem.note else ""
        state = modem.state if modem is not None else "absent"
        raise Unavailable(f"the lab's modem is {state}{note}", fix="trelab lab up")
    extra = {"emulator": f"trelab modem serve (pid {modem.pid}) on a pty"}
    return ModemUsimTre(
        "modem over AT+CSIM (emulated)", str(modem.device), load_profile(modem.profile),
        quick=ctx.quick, extra=extra,
        reset_fix=f"`trelab lab reset modem --lab-dir {lab.lab_dir}` restores its SIM's profile",
    )  # fmt: skip


def _hardware_profile(what: str) -> CardProfile:
    path = os.environ.get(CARD_PROFILE_ENV)
    if not path:
        raise Unavailable(
            f"{what} found, but the bench needs its card's profile (K, OPc, PIN) to make vectors",
            fix=f"set {CARD_PROFILE_ENV}=PROFILE (the file the card was personalised from)",
        )
    return load_profile(Path(path))


def physical_reader_factory(ctx: Any) -> PcscUsimTre:
    """``usim over PC/SC (physical reader)``: the first non-virtual reader with a card.

    Raises:
        Unavailable: none found, or no profile for its card.
    """
    from lab.detect import detect_readers

    readers, _virtual, note = detect_readers()
    with_card = [r for r in readers if r.card_present]
    if not with_card:
        there = f" ({len(readers)} without a card)" if readers else ""
        raise Unavailable(f"no physical PC/SC reader with a card{there}; pcsc: {note}")
    reader = with_card[0]
    profile = _hardware_profile(f"reader {reader.name!r} with a card (ATR {reader.atr})")
    return PcscUsimTre(
        "usim over PC/SC (physical reader)", reader.name, profile, quick=ctx.quick,
        extra={"card": "physical"},
    )  # fmt: skip


def physical_modem_factory(ctx: Any) -> ModemUsimTre:
    """``modem over AT+CSIM (physical)``: a USB/PCI serial port named by ``TRELAB_BENCH_MODEM``.

    Raises:
        Unavailable: no such port found, none named, or no profile for its SIM.
    """
    from lab.detect import detect_serial_ports

    ports, _platform = detect_serial_ports()
    if not ports:
        raise Unavailable("no serial modem found (no USB/PCI serial port)")
    named = os.environ.get(MODEM_PORT_ENV)
    listed = ", ".join(p.device for p in ports)
    if not named:
        raise Unavailable(
            f"serial ports found ({listed}); which one is the modem's AT port?",
            fix=f"set {MODEM_PORT_ENV}=/dev/ttyUSBn",
        )
    profile = _hardware_profile(f"modem port {named}")
    return ModemUsimTre(
        "modem over AT+CSIM (physical)", named, profile, quick=ctx.quick,
        extra={"ports": listed},
    )  # fmt: skip
