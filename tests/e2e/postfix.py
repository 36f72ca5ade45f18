"""The sending Postfix: a private instance of Debian's Postfix, run by the
test as root, whose SMTP client asks postfix-sts for TLS policy.

* Its own ``config_directory``, ``queue_directory`` and ``data_directory``
  in one instance directory, which must be reachable by the ``postfix`` user
  (daemons open some files by absolute path after dropping root), so not
  under pytest's 0700 temp dirs; ``chroot = n`` for every service;
  ``maillog_file`` + the ``postlog`` service, so its log is a plain file.
* ``inet_interfaces = 127.0.0.1``: Postfix refuses an address that is not
  configured on an interface (127.0.0.2 is reachable on Linux but not
  "configured"), and it then fails silently.
* Receiving servers listen on port 25 unless another MTA holds ``*:25``; then
  on a free port, which ``smtp_tcp_port`` tells Postfix (TLSA records follow:
  ``_<port>._tcp.<mx>``).
* ``master -d -c DIR`` runs in the foreground as a child of the test, inside
  a private mount namespace (``unshare --mount``) in which a temp
  ``resolv.conf`` is bind-mounted over ``/etc/resolv.conf``. The master and
  every daemon it forks inherit that namespace, so Postfix (and nothing else
  on the host) resolves through the harness's port-53 resolver.
* Mail is submitted over SMTP to its ``smtpd`` on ``127.0.0.1:<free port>``
  with :mod:`smtplib`, not with the set-gid ``sendmail``/``postdrop``.
* Every ``smtp`` process makes one delivery and exits (``max_use=1``), so the
  lines an ``smtp[pid]`` logs all belong to one delivery attempt.

A Postfix 3.7 master accepts any ``-c DIR`` when run as root: the
``alternate_config_directories`` check only applies to unprivileged callers,
so nothing under ``/etc/postfix`` is touched.
"""

from __future__ import annotations

import email.message
import email.utils
import grp
import json
import os
import pwd
import re
import shutil
import smtplib
import socket
import stat
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.world.procs import Daemon, WorldError, find_binary, free_port, run, tail, wait_for

#: Where Debian installs Postfix's daemons (``postconf -h daemon_directory``).
DAEMON_DIRECTORY = Path("/usr/lib/postfix/sbin")
#: The sending Postfix's own host name (EHLO, Message-ID).
MYHOSTNAME = "sender.e2e.invalid"
_START_TIMEOUT = 15.0
_SUBMIT_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 20.0
_QUEUE_TIMEOUT = 5.0
_MASTER_LIFETIME = 1800  # seconds; a safety net against leaked Postfix instances

# "Nov 22 18:02:15 sender postfix/smtp[30059]: E0CAD214642: to=<...>, ..."
_LOG_LINE = re.compile(r" (?P<program>postfix/[\w/.-]+)\[(?P<pid>\d+)\]: (?P<text>.*)$")
_STATUS = re.compile(
    r"^(?P<queue_id>[0-9A-F]+): to=<(?P<recipient>[^>]*)>, (?:orig_to=<[^>]*>, )?"
    r"relay=(?P<relay>[^,]+), .*?dsn=(?P<dsn>[0-9.]+), status=(?P<status>\w+) \((?P<reason>.*)\)$"
)
_QUEUED_AS = re.compile(r"queued as (?P<queue_id>[0-9A-F]+)")

# Run inside the new mount namespace: hide the host's resolv.conf behind ours,
# then become the Postfix master (same pid, so the test can signal it).
_NAMESPACE_SCRIPT = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'


def in_private_resolv_namespace(resolv_conf: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` run in a private mount namespace that sees ``resolv_conf`` as
    ``/etc/resolv.conf``. The host's mounts are untouched: the bind mount is
    private to the namespace and disappears with its last process."""
    return [
        find_binary("unshare"),
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        _NAMESPACE_SCRIPT,
        "sh",
        str(resolv_conf),
        *argv,
    ]


@dataclass(frozen=True)
class LogLine:
    program: str  # "postfix/smtp"
    pid: int
    text: str  # what follows "program[pid]: "


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt of one recipient, as Postfix logged it."""

    queue_id: str
    recipient: str
    status: str  # "sent", "deferred", "bounced"
    relay: str  # "mx.x.test[127.0.60.1]:25" or "none"
    dsn: str
    reason: str  # the text in parentheses after status=
    #: What the process that made the attempt logged, up to its status line
    #: (the text after "postfix/smtp[pid]: ").
    log: tuple[str, ...]
    process: str = ""  # "postfix/smtp[1234]"

    def logged(self, fragment: str) -> bool:
        return any(fragment in line for line in self.log)

    @property
    def tls_line(self) -> str | None:
        """``Verified TLS connection established to ...`` and the like."""
        for line in self.log:
            if "TLS connection established" in line:
                return line
        return None

    def __str__(self) -> str:
        lines = "\n".join(f"    {line}" for line in self.log)
        return f"delivery of {self.queue_id} to <{self.recipient}>, {self.process} logged:\n{lines}"


def parse_log(text: str) -> list[LogLine]:
    lines = []
    for raw in text.splitlines():
        match = _LOG_LINE.search(raw)
        if match:
            lines.append(LogLine(match["program"], int(match["pid"]), match["text"]))
    return lines


def _postfix_ids() -> tuple[int, int]:
    try:
        return pwd.getpwnam("postfix").pw_uid, grp.getgrnam("postfix").gr_gid
    except KeyError as exc:
        raise WorldError("user or group 'postfix' missing (apt-get install postfix)") from exc


def _check_reachable_by_postfix(directory: Path) -> None:
    """Postfix daemons open files under their data directory (and others) by
    absolute path after dropping root privileges, so every ancestor of the
    instance directory must be searchable by others (pytest's own temp
    directories are mode 0700: use e.g. ``tempfile.mkdtemp()`` + chmod 0755)."""
    for path in [directory, *directory.parents]:
        if path.exists() and not path.stat().st_mode & stat.S_IXOTH:
            raise WorldError(
                f"{path} is not searchable by the postfix user (mode "
                f"{stat.S_IMODE(path.stat().st_mode):o}); put the Postfix instance elsewhere"
            )


class SendingPostfix:
    """A private Postfix instance; :meth:`start` it, :meth:`submit` mail,
    :meth:`wait_for_attempt` to read the outcome, :meth:`close` it."""

    def __init__(
        self,
        directory: Path,
        *,
        resolv_conf: str,
        ca_file: Path,
        tls_policy_maps: Sequence[str],
        static_tls_policy: dict[str, str] | None = None,
        smtp_port: int = 25,
    ) -> None:
        self.directory = directory
        self.config_directory = directory / "conf"
        self.queue_directory = directory / "queue"
        self.data_directory = directory / "data"
        self.maillog = directory / "maillog"
        self.resolv_conf = directory / "resolv.conf"
        self.static_policy_file = self.config_directory / "tls_policy"
        self.ca_file = self.config_directory / "ca.pem"
        self.submission = ("127.0.0.1", 0)
        self.smtp_port = smtp_port
        self._resolv_conf_text = resolv_conf
        self._ca_file = ca_file
        self._static_policy = dict(static_tls_policy or {})
        self._policy_maps = [f"texthash:{self.static_policy_file}", *tls_policy_maps]
        self._master: Daemon | None = None

    # ----------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Write the configuration, create the queue and start the master;
        return once it accepts mail and its log is being written."""
        _check_reachable_by_postfix(self.directory)
        for path in (self.config_directory, self.queue_directory, self.data_directory):
            path.mkdir(parents=True, exist_ok=True)
        # Read by smtp processes; keep a copy where the postfix user can reach it.
        shutil.copyfile(self._ca_file, self.ca_file)
        uid, gid = _postfix_ids()
        os.chown(self.data_directory, uid, gid)  # master.lock, prng_exch, ...
        self.submission = ("127.0.0.1", free_port("127.0.0.1"))
        self.resolv_conf.write_text(self._resolv_conf_text)
        self.static_policy_file.write_text(
            "".join(f"{domain} {policy}\n" for domain, policy in self._static_policy.items())
        )
        (self.config_directory / "main.cf").write_text(self.main_cf())
        (self.config_directory / "master.cf").write_text(self.master_cf())
        # Creates the queue's subdirectories with the right owners and modes.
        # (Errors go to the maillog only; postfix prints nothing without a tty.)
        try:
            run([find_binary("postfix"), "-c", str(self.config_directory), "check"])
        except WorldError as exc:
            raise WorldError(f"{exc}\n{tail(self.maillog)}") from exc
        master = DAEMON_DIRECTORY / "master"
        self._master = Daemon(
            "postfix master",
            in_private_resolv_namespace(
                self.resolv_conf,
                # -d: stay in the foreground; -e: exit on its own after a while
                # should the test process die without stopping it.
                [str(master), "-d", "-e", str(_MASTER_LIFETIME), "-c", str(self.config_directory)],
            ),
            self.directory / "master.out",
            self.directory,
        )
        self._master.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._ready():
            if time.monotonic() > deadline:
                raise WorldError(
                    f"the sending Postfix did not accept mail within {_START_TIMEOUT}s\n"
                    + self._diagnostics()
                )
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the master and every Postfix process; never raises."""
        if self._master is not None:
            self._master.stop()

    def _ready(self) -> bool:
        assert self._master is not None
        if not self._master.running:
            raise WorldError("the Postfix master exited at start-up\n" + self._diagnostics())
        try:
            with socket.create_connection(self.submission, timeout=1):
                pass
        except OSError:
            return False
        return self.maillog.exists() and "daemon started" in self.maillog.read_text()

    def _diagnostics(self) -> str:
        return (
            f"{tail(self.maillog)}\n{tail(self.directory / 'master.out')}\n"
            "(Postfix logs start-up errors only to its maillog, once postlogd runs; "
            "every directory it uses must be reachable by the postfix user)"
        )

    # ------------------------------------------------------- configuration

    def main_cf(self) -> str:
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_directory,
            "data_directory": self.data_directory,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.directory,
            "myhostname": MYHOSTNAME,
            "mydomain": "e2e.invalid",
            "myorigin": "$myhostname",
            # Relay everything from loopback; deliver nothing locally.
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "local_transport": "error:5.1.1 local delivery is disabled",
            "inet_interfaces": "127.0.0.1",  # must be an address of an interface
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "biff": "no",
            # The SMTP client under test.
            "smtp_host_lookup": "dns",
            "smtp_dns_support_level": "dnssec",
            "dnssec_probe": "soa:test.",
            "smtp_tls_security_level": "may",
            "smtp_tls_CAfile": self.ca_file,
            "smtp_tls_loglevel": "1",
            "smtp_tls_policy_maps": ", ".join(self._policy_maps),
            "smtp_tcp_port": self.smtp_port,
            "smtp_connect_timeout": "5s",
            "smtp_helo_timeout": "10s",
            "smtp_starttls_timeout": "10s",
            "smtp_connection_cache_on_demand": "no",
            # The first attempt is immediate; deferred mail then stays in the
            # deferred queue for the test to inspect, until the test asks for
            # a retry (postqueue -i) or deletes it (postsuper -d).
            "queue_run_delay": "300s",
            "minimal_backoff_time": "300s",
            "maximal_backoff_time": "600s",
        }
        return "".join(f"{name} = {value}\n" for name, value in settings.items())

    def master_cf(self) -> str:
        host, port = self.submission
        # service type private unpriv chroot wakeup maxproc command
        services = [
            f"{host}:{port} inet n - n - - smtpd",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp -o max_use=1",
            "relay unix - - n - - smtp -o max_use=1",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        return "\n".join(services) + "\n"

    # ---------------------------------------------------------------- mail

    def submit(self, recipient: str, *, sender: str = f"tester@{MYHOSTNAME}") -> str:
        """Hand one message to Postfix over SMTP; return its queue id."""
        message = email.message.EmailMessage()
        message["From"] = sender
        message["To"] = recipient
        message["Subject"] = f"e2e test message for {recipient}"
        message["Message-ID"] = email.utils.make_msgid(domain=MYHOSTNAME)
        message.set_content(f"Hello {recipient}.\n")
        with smtplib.SMTP(*self.submission, timeout=_SUBMIT_TIMEOUT) as client:
            client.ehlo("client.e2e.invalid")
            code, reply = client.mail(sender)
            if code != 250:
                raise WorldError(f"MAIL FROM refused: {code} {reply!r}")
            code, reply = client.rcpt(recipient)
            if code != 250:
                raise WorldError(f"RCPT TO:<{recipient}> refused: {code} {reply!r}")
            code, reply = client.data(message.as_bytes())
        match = _QUEUED_AS.search(reply.decode(errors="replace"))
        if code != 250 or match is None:
            raise WorldError(f"DATA not accepted: {code} {reply!r}")
        return match["queue_id"]

    def log_offset(self) -> int:
        """Current end of the log: pass it to :meth:`wait_for_attempt` to
        ignore everything logged before."""
        return self.maillog.stat().st_size if self.maillog.exists() else 0

    def read_log(self, offset: int = 0) -> str:
        with self.maillog.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def wait_for_attempt(
        self, queue_id: str, recipient: str, *, offset: int = 0, timeout: float = DELIVERY_TIMEOUT
    ) -> Delivery:
        """The first delivery attempt logged for (``queue_id``, ``recipient``)
        after ``offset``; raises WorldError if none is logged in ``timeout``."""

        def attempt() -> Delivery | None:
            lines = parse_log(self.read_log(offset))
            for index, line in enumerate(lines):
                match = _STATUS.match(line.text)
                if match and match["queue_id"] == queue_id and match["recipient"] == recipient:
                    same_process = [
                        earlier.text
                        for earlier in lines[: index + 1]
                        if (earlier.program, earlier.pid) == (line.program, line.pid)
                    ]
                    return Delivery(
                        queue_id=queue_id,
                        recipient=recipient,
                        status=match["status"],
                        relay=match["relay"],
                        dsn=match["dsn"],
                        reason=match["reason"],
                        log=tuple(same_process),
                        process=f"{line.program}[{line.pid}]",
                    )
            return None

        return wait_for(
            attempt,
            timeout=timeout,
            what=f"Postfix to log a delivery attempt of {queue_id} to <{recipient}>",
            describe_failure=lambda: tail(self.maillog, 40),
        )

    def queue(self) -> list[dict[str, object]]:
        """The mail queue, one dict per message (``postqueue -j``)."""
        output = run([find_binary("postqueue"), "-c", str(self.config_directory), "-j"])
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def queue_name(self, queue_id: str) -> str | None:
        """The queue holding the message ("deferred", "active", "incoming",
        "hold"...), or None once it has left the queue."""
        for entry in self.queue():
            if entry.get("queue_id") == queue_id:
                return str(entry.get("queue_name"))
        return None

    def wait_for_queue_name(
        self, queue_id: str, expected: str | None, timeout: float = _QUEUE_TIMEOUT
    ) -> None:
        """Wait until the message is in queue ``expected`` (None: gone). The
        queue manager moves it there just after the smtp process logged its
        status line."""
        wait_for(
            lambda: True if self.queue_name(queue_id) == expected else None,
            timeout=timeout,
            what=f"message {queue_id} in queue {expected}",
            describe_failure=lambda: f"it is in {self.queue_name(queue_id)}\n{tail(self.maillog)}",
        )

    def retry(self, queue_id: str) -> None:
        """Schedule immediate delivery of one queued message (``postqueue -i``)."""
        run([find_binary("postqueue"), "-c", str(self.config_directory), "-i", queue_id])

    def delete_all_mail(self) -> None:
        """Empty the queue (so one test's deferred mail is not retried in the next)."""
        subprocess.run(
            [find_binary("postsuper"), "-c", str(self.config_directory), "-d", "ALL"],
            capture_output=True,
            timeout=30,
            check=False,
        )
