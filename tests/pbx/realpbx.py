"""A real Asterisk loaded with the project's own ``asterisk-config/``, and SIPp phones.

The configuration is the shipped one with only the edits an operator makes
on a standalone host: addresses and ports, the two secret files, and the
phones' and the carrier's SIP contacts.  Each edit replaces text that must
be there exactly once, so a change to the shipped files that would make
the edit silently miss fails here, loudly, instead.

Where Asterisk and SIPp come from: ``DIALER_TEST_ASTERISK`` (an Asterisk
installation prefix holding ``sbin/asterisk``, ``lib/asterisk/modules`` and
``var/lib/asterisk``) and ``DIALER_TEST_SIPP`` (a folder holding
``bin/sipp`` and ``scenarios/``), by default the builds in
``../shared/pbx`` beside the repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "asterisk-config"
SHARED_PBX = REPO.parent / "shared" / "pbx"
AMI_USER = "dialer"


def asterisk_prefix() -> Path:
    return Path(os.environ.get("DIALER_TEST_ASTERISK") or SHARED_PBX / "asterisk")


def sipp_folder() -> Path:
    return Path(os.environ.get("DIALER_TEST_SIPP") or SHARED_PBX / "sipp")


def missing_pieces() -> str | None:
    """Why the real-PBX tier cannot run here, or None when it can."""
    binary = asterisk_prefix() / "sbin" / "asterisk"
    sipp = sipp_folder() / "bin" / "sipp"
    for path in (binary, sipp):
        if not path.is_file():
            return f"no real Asterisk/SIPp: {path} is missing (set DIALER_TEST_ASTERISK)"
    probe = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, env=_asterisk_env(), check=False
    )
    if "not found" in probe.stdout:
        lacking = [line.split()[0] for line in probe.stdout.splitlines() if "not found" in line]
        return (
            f"Asterisk needs libraries that are not installed ({', '.join(lacking)}): "
            "apt-get install $(cat ../shared/pbx/DEBIAN-PACKAGES)"
        )
    return None


def _asterisk_env() -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(asterisk_prefix() / "lib")
    return env


# Ports the PBX's processes listen on come from below the kernel's ephemeral
# range (32768-60999 here), where nothing binds port 0 and no client
# connection takes its source port: a port picked there stays free until
# Asterisk or SIPp binds it, which a port from bind(0) did not always (a test
# process of the other xdist worker, or a client socket, took it first, and
# Asterisk's AMI never answered).  Each xdist worker has its own slice.
_PORTS_FROM = 12000
_PORTS_PER_WORKER = 1600


def _worker_ports() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    start = _PORTS_FROM + (index % 5) * _PORTS_PER_WORKER
    return range(start, start + _PORTS_PER_WORKER)


def _shuffled_cycle(ports: range) -> Iterator[int]:
    return itertools.cycle(random.sample(ports, len(ports)))


# A port is handed out again only after the whole slice has been: a port
# picked but not yet bound (an Asterisk still booting binds its ports seconds
# later, and the unplugged phone's port is never bound) looks free to the
# probe, and the transcript recorder starts three PBXes at once; a second
# PBX given the first one's SIP port left its phones unqualified.
_next_port = _shuffled_cycle(_worker_ports())


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of this worker's slice that nothing has bound nor been given."""
    for _ in range(200):
        port = next(_next_port)
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", port))
            return port
    raise RuntimeError(f"no free port in {_worker_ports()}")


def free_udp_and_tcp_port() -> int:
    """A port free for both UDP and TCP (PJSIP binds both transports to it)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
            return port
    raise RuntimeError("no port free for both UDP and TCP")


class ConfigDrift(AssertionError):
    """The shipped configuration no longer has the shape an operator edit expects."""


def replace_once(text: str, old: str, new: str, *, file: str) -> str:
    count = text.count(old)
    if count != 1:
        raise ConfigDrift(
            f"asterisk-config/{file}: expected {old!r} exactly once, found it {count} times; "
            "the operator's edit in tests/pbx/realpbx.py no longer fits the shipped file"
        )
    return text.replace(old, new)


def replace_each(text: str, old: str, new: str, *, file: str, times: int) -> str:
    count = text.count(old)
    if count != times:
        raise ConfigDrift(
            f"asterisk-config/{file}: expected {old!r} {times} times, found it {count} times"
        )
    return text.replace(old, new)


@dataclass(frozen=True)
class Phone:
    """A volunteer's desk phone: its extension and the SIPp UA behind it (None: unplugged)."""

    extension: str
    ua: str | None


@dataclass
class PbxLayout:
    """What the operator configures: phones, carrier, secrets, and where things listen."""

    phones: list[Phone]
    ua_ports: dict[str, int]
    carrier_ua: str = "carrier"
    ami_port: int = field(default_factory=free_port)
    sip_port: int = field(default_factory=free_udp_and_tcp_port)
    rtp_start: int = field(default_factory=lambda: random.randrange(20000, 59000, 200))
    ami_secret: str = field(default_factory=lambda: f"ami{random.getrandbits(64):x}")
    # Asterisk's HTTP server: the browser phones' WebSocket (ws://, no TLS on the loopback).
    http_port: int = field(default_factory=free_port)
    # The dialer database Asterisk reads the browser phones from (realtime).
    database: str = "postgres"
    # Edits on top of the operator's, for tests of a broken PBX (check-pbx)
    # or another AMI user (the transcript recorder): file name -> text.
    appended: dict[str, str] = field(default_factory=dict)
    # Called last with every file's text, to break the PBX on purpose.
    breakage: Callable[[dict[str, str]], None] | None = None
    write_secrets: bool = True


def operator_config(layout: PbxLayout) -> dict[str, str]:
    """The shipped asterisk-config/ with the operator's edits: file name -> text."""
    files = {path.name: path.read_text() for path in CONFIG.glob("*.conf")}
    manager = files["manager.conf"]
    manager = replace_once(
        manager, "\nport = 5038\n", f"\nport = {layout.ami_port}\n", file="manager.conf"
    )
    manager = replace_once(
        manager, "bindaddr = 10.213.80.10\n", "bindaddr = 127.0.0.1\n", file="manager.conf"
    )
    manager = replace_once(
        manager,
        "permit = 10.213.80.128/255.255.255.128\n",
        "permit = 127.0.0.1/255.255.255.255\n",
        file="manager.conf",
    )
    files["manager.conf"] = manager

    pjsip = files["pjsip.conf"]
    pjsip = replace_each(
        pjsip,
        "bind = 0.0.0.0:5060\n",
        f"bind = 127.0.0.1:{layout.sip_port}\n",
        file="pjsip.conf",
        times=2,
    )
    carrier_port = layout.ua_ports[layout.carrier_ua]
    pjsip = replace_once(
        pjsip,
        "contact = sip:sip.carrier.example:5060\n",
        f"contact = sip:127.0.0.1:{carrier_port}\n",
        file="pjsip.conf",
    )
    # The shipped example phones, then more "copied pairs" as the file says
    # to add a phone.
    shipped = {"1001", "1002", "1003"}
    for phone in layout.phones:
        contact = _phone_contact(phone, layout)
        if phone.extension in shipped:
            pjsip = replace_once(
                pjsip,
                f"[{phone.extension}](volunteer-aor)\n",
                f"[{phone.extension}](volunteer-aor)\n{contact}",
                file="pjsip.conf",
            )
    added = [
        f"[{phone.extension}](volunteer-endpoint)\nauth = {phone.extension}-auth\n"
        f'aors = {phone.extension}\ncallerid = "Volunteer {phone.extension}" '
        f"<{phone.extension}>\n\n[{phone.extension}](volunteer-aor)\n"
        f"{_phone_contact(phone, layout)}\n"
        for phone in layout.phones
        if phone.extension not in shipped
    ]
    files["pjsip.conf"] = pjsip + "\n" + "".join(added)

    rtp = files["rtp.conf"]
    rtp = replace_once(rtp, "rtpstart=10000\n", f"rtpstart={layout.rtp_start}\n", file="rtp.conf")
    rtp = replace_once(rtp, "rtpend=10199\n", f"rtpend={layout.rtp_start + 199}\n", file="rtp.conf")
    files["rtp.conf"] = rtp

    http = files["http.conf"]
    http = replace_once(
        http, "bindport = 8088\n", f"bindport = {layout.http_port}\n", file="http.conf"
    )
    # Chromium accepts ws:// to the loopback from a page served by the loopback.
    http = replace_once(http, "tlsenable = yes\n", "tlsenable = no\n", file="http.conf")
    files["http.conf"] = http

    pgsql = files["res_pgsql.conf"]
    pgsql = replace_once(
        pgsql, "dbhost = postgres\n", "dbhost = 127.0.0.1\n", file="res_pgsql.conf"
    )
    pgsql = replace_once(
        pgsql, "dbname = dialer\n", f"dbname = {layout.database}\n", file="res_pgsql.conf"
    )
    # The test server trusts local connections (the deploy uses a read-only role).
    pgsql = replace_once(pgsql, "dbuser = asterisk\n", "dbuser = postgres\n", file="res_pgsql.conf")
    files["res_pgsql.conf"] = pgsql

    for name, text in layout.appended.items():
        files[name] = files.get(name, "") + "\n" + text

    if layout.write_secrets:
        files["manager_dialer_secret.conf"] = f"secret = {layout.ami_secret}\n"
        files["res_pgsql_secret.conf"] = "dbpass =\n"
        extensions = {phone.extension for phone in layout.phones} | shipped
        files["pjsip_secrets.conf"] = "".join(
            f"[{name}-auth]\ntype = auth\nauth_type = userpass\nusername = {user}\n"
            f"password = pw{random.getrandbits(48):x}\n\n"
            for name, user in [(ext, ext) for ext in sorted(extensions)] + [("carrier", "account")]
        )
    if layout.breakage is not None:
        layout.breakage(files)
    return files


def _phone_contact(phone: Phone, layout: PbxLayout) -> str:
    # An unplugged phone: a port where nothing listens.
    port = layout.ua_ports[phone.ua] if phone.ua else layout.ua_ports["unplugged"]
    return f"contact = sip:{phone.extension}@127.0.0.1:{port}\n"


# --------------------------------------------------------------------- SIPp


@dataclass(frozen=True)
class SipMessage:
    at: datetime
    direction: str  # "sent" or "received", as SIPp saw it
    first_line: str
    headers: dict[str, str]

    @property
    def method(self) -> str | None:
        return None if self.first_line.startswith("SIP/2.0") else self.first_line.split()[0]

    @property
    def status(self) -> int | None:
        if self.first_line.startswith("SIP/2.0"):
            return int(self.first_line.split()[1])
        return None

    @property
    def call_id(self) -> str:
        return self.headers.get("call-id", "")

    @property
    def cseq_method(self) -> str:
        return self.headers.get("cseq", " ").split()[-1]

    @property
    def request_user(self) -> str:
        """The user part of a request's URI (the dialed number or extension)."""
        found = re.match(r"\S+ sips?:([^@;> ]+)@", self.first_line)
        return found.group(1) if found else ""


_FRAME = re.compile(r"^-{20,} (\S+)\n(UDP|TCP) message (sent|received) \[\d+\] bytes ?:\n\n", re.M)


def parse_sipp_trace(text: str) -> list[SipMessage]:
    """SIPp's ``-trace_msg`` file, message by message (UTC timestamps)."""
    messages = []
    frames = list(_FRAME.finditer(text))
    for index, frame in enumerate(frames):
        end = frames[index + 1].start() if index + 1 < len(frames) else len(text)
        body = text[frame.end() : end].strip("\n")
        lines = body.splitlines()
        if not lines:
            continue
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line.strip():
                break
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        stamp = datetime.fromisoformat(frame.group(1).rstrip("Z")).replace(tzinfo=UTC)
        messages.append(SipMessage(stamp, frame.group(3), lines[0], headers))
    return messages


@dataclass
class Dialog:
    """One INVITE dialog as a SIPp UA saw it: the ground truth of a call leg."""

    invite: SipMessage
    messages: list[SipMessage]

    def first(
        self, *, status: int | None = None, method: str | None = None, cseq: str = "INVITE"
    ) -> SipMessage | None:
        for message in self.messages:
            if status is not None and message.status == status and message.cseq_method == cseq:
                return message
            if method is not None and message.method == method:
                return message
        return None

    @property
    def answered_at(self) -> datetime | None:
        ok = self.first(status=200)
        return ok.at if ok else None

    @property
    def final_status(self) -> int | None:
        for message in self.messages:
            if message.cseq_method == "INVITE" and (message.status or 0) >= 200:
                return message.status
        return None

    @property
    def ended_at(self) -> datetime | None:
        for message in self.messages:
            if message.method in ("BYE", "CANCEL"):
                return message.at
        return None

    def bye_from(self) -> str | None:
        """ "ua" if this UA hung up, "asterisk" if Asterisk did."""
        for message in self.messages:
            if message.method == "BYE":
                return "ua" if message.direction == "sent" else "asterisk"
        return None


class SippUA:
    """One SIPp user agent on a UDP port, playing a scenario for every call it gets."""

    def __init__(self, name: str, scenario: str, folder: Path) -> None:
        self.name = name
        # A scenario of the project's own (tests/pbx/scenarios) or of SIPp's folder.
        own = Path(__file__).parent / "scenarios" / scenario
        self.scenario = own if own.exists() else sipp_folder() / "scenarios" / scenario
        self.port = free_port(socket.SOCK_DGRAM)
        self.trace = folder / f"sipp-{name}.log"
        self.pid: int | None = None
        # Extra SIPp options, e.g. echo_rtp() for a carrier that sends audio back.
        self.options: list[str] = []

    def start(self) -> None:
        # In the foreground, without a terminal, SIPp logs the responses it
        # sends but they never leave; its own background mode works.
        sipp = sipp_folder()
        started = subprocess.run(
            [
                str(sipp / "bin" / "sipp"),
                "-sf",
                str(self.scenario),
                "-i",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-bg",
                "-trace_msg",
                "-message_file",
                str(self.trace),
                "-message_overwrite",
                "false",
                *self.options,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        found = re.search(r"PID=\[(\d+)\]", started.stdout)
        if found is None:
            raise RuntimeError(f"SIPp did not start: {started.stdout}{started.stderr}")
        self.pid = int(found.group(1))

    def echo_rtp(self) -> None:
        """Send every RTP packet received back to its sender, as a talking
        contact would send audio (SIPp's -rtp_echo on the SDP's media port)."""
        media = free_port(socket.SOCK_DGRAM)
        self.options += ["-rtp_echo", "-mp", str(media)]

    def stop(self) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        self.pid = None

    def messages(self) -> list[SipMessage]:
        if not self.trace.exists():
            return []
        return parse_sipp_trace(self.trace.read_text(errors="replace"))

    def dialogs(self, user: str | None = None) -> list[Dialog]:
        """INVITE dialogs, optionally only those whose request URI names ``user``."""
        messages = self.messages()
        dialogs = []
        for message in messages:
            if message.method == "INVITE" and message.direction == "received":
                if user is not None and message.request_user != user:
                    continue
                if any(d.invite.call_id == message.call_id for d in dialogs):
                    continue  # a re-INVITE or retransmission
                same = [m for m in messages if m.call_id == message.call_id]
                dialogs.append(Dialog(message, same))
        return dialogs

    async def dialog(self, user: str, *, ended: bool = True, timeout: float = 10) -> Dialog:
        """The one dialog for ``user``, waiting for SIPp to write it (and its end)."""
        async with asyncio.timeout(timeout):
            while True:
                found = self.dialogs(user)
                if found and (
                    not ended
                    or found[-1].final_status not in (None, 200)
                    or found[-1].ended_at is not None
                ):
                    return found[-1]
                await asyncio.sleep(0.1)


# ----------------------------------------------------------------- Asterisk


class Asterisk:
    """A real Asterisk in its own folder, on its own ports."""

    def __init__(self, folder: Path, layout: PbxLayout) -> None:
        self.folder = folder
        self.layout = layout
        self.etc = folder / "etc"
        self.output = folder / "asterisk.out"
        self.process: subprocess.Popen[bytes] | None = None
        self._output_file: object = None

    @property
    def ami_port(self) -> int:
        return self.layout.ami_port

    @property
    def ami_secret(self) -> str:
        return self.layout.ami_secret

    def write_config(self) -> None:
        prefix = asterisk_prefix()
        for sub in ("etc", "lib", "spool", "run", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        for name, text in operator_config(self.layout).items():
            (self.etc / name).write_text(text)
        (self.etc / "asterisk.conf").write_text(
            "[directories]\n"
            f"astetcdir => {self.etc}\n"
            f"astmoddir => {prefix / 'lib' / 'asterisk' / 'modules'}\n"
            f"astdatadir => {prefix / 'var' / 'lib' / 'asterisk'}\n"
            f"astsbindir => {prefix / 'sbin'}\n"
            + "".join(
                f"{key} => {self.folder / 'lib'}\n"
                for key in ("astvarlibdir", "astdbdir", "astkeydir", "astagidir")
            )
            + f"astspooldir => {self.folder / 'spool'}\n"
            f"astrundir => {self.folder / 'run'}\n"
            f"astlogdir => {self.folder / 'log'}\n"
            "[options]\nnofork = yes\n"
        )

    def _command(self, *extra: str) -> list[str]:
        binary = asterisk_prefix() / "sbin" / "asterisk"
        command = [str(binary), "-C", str(self.etc / "asterisk.conf"), *extra]
        if os.geteuid() == 0:
            command += ["-U", "root"]
        return command

    async def start(self) -> None:
        with self.output.open("ab") as output:
            self.process = subprocess.Popen(
                self._command("-f"),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=_asterisk_env(),
                start_new_session=True,
            )
        await self.wait_for_ami()
        # Until then PJSIP drops the SIP responses it gets: a phone's answer
        # to the first qualify is lost, and the phone goes Unavailable once
        # that transaction times out, long after it looked reachable.
        await self.cli("core waitfullybooted")

    async def wait_for_ami(self, timeout: float = 30) -> None:
        """Until the AMI user can log in (Asterisk is up and has read manager.conf)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self.process is not None and self.process.poll() is not None:
                        raise RuntimeError(f"Asterisk exited:\n{self.log()[-3000:]}")
                    if await self._login_works():
                        return
                    await asyncio.sleep(0.2)
        except TimeoutError:
            # Asterisk's own words (a port it could not bind, a module that
            # failed) are what tells why; the timeout alone does not.
            raise TimeoutError(
                f"no AMI login on port {self.ami_port} within {timeout} s; "
                f"Asterisk's log ends:\n{self.log()[-3000:]}"
            ) from None

    async def _login_works(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.ami_port)
        except OSError:
            return False
        try:
            await asyncio.wait_for(reader.readline(), 2)
            writer.write(
                f"Action: Login\r\nUsername: {AMI_USER}\r\nSecret: {self.ami_secret}\r\n"
                "Events: off\r\n\r\n".encode()
            )
            response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            return b"Success" in response
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def cli(self, command: str) -> str:
        process = await asyncio.create_subprocess_exec(
            *self._command("-rx", command),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=_asterisk_env(),
        )
        output, _ = await process.communicate()
        return output.decode(errors="replace")

    async def wait_for_contacts(self, expected: dict[str, str], timeout: float = 20) -> None:
        """Until ``pjsip show contacts`` says each AOR is Avail/Unavail as expected.

        Asterisk spreads its first qualify of each contact over the whole
        qualify_frequency (30 s for phones); asking for it now takes a second.
        """
        states: dict[str, str] = {}
        try:
            async with asyncio.timeout(timeout):
                while True:
                    listing = await self.cli("pjsip show contacts")
                    states = dict(re.findall(r"Contact:\s+(\S+?)/\S+\s+\S+\s+(\w+)", listing))
                    wrong = [aor for aor, state in expected.items() if states.get(aor) != state]
                    if not wrong:
                        return
                    for aor in wrong:
                        await self.cli(f"pjsip qualify {aor}")
                    await asyncio.sleep(1)
        except TimeoutError:
            # Which phone, and what Asterisk said (a transport it could not
            # bind), tell why; the timeout alone does not.
            wrong_now = {
                aor: states.get(aor, "absent")
                for aor, want in expected.items()
                if states.get(aor) != want
            }
            raise TimeoutError(
                f"contacts not as expected within {timeout} s: {wrong_now} "
                f"(wanted {expected}); Asterisk's log ends:\n{self.log()[-3000:]}"
            ) from None

    async def restart_now(self) -> None:
        """``core restart now``: hangs every channel up, closes AMI, comes back."""
        await self.cli("core restart now")

    async def wait_until_back(self) -> None:
        """After a restart: AMI logins work and PJSIP takes SIP responses again."""
        await asyncio.sleep(1)  # the old process still answers for a moment
        await self.wait_for_ami()
        await self.cli("core waitfullybooted")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""


def ua_set(folder: Path, scenarios: Iterable[tuple[str, str]]) -> dict[str, SippUA]:
    return {name: SippUA(name, scenario, folder) for name, scenario in scenarios}


@contextlib.contextmanager
def running_uas(uas: dict[str, SippUA]) -> Iterator[dict[str, SippUA]]:
    try:
        for ua in uas.values():
            ua.start()
        yield uas
    finally:
        for ua in uas.values():
            ua.stop()


def clean(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
