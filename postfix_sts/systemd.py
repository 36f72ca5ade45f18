"""systemd integration: sd_notify(3) messages, the watchdog, socket activation.

Standard library only; nothing here requires systemd to be running.  Outside a
``Type=notify`` unit (``NOTIFY_SOCKET`` unset) :class:`Notifier` does nothing,
and outside socket activation :func:`listen_fds_with_names` returns an empty list, so the
daemon behaves the same under a plain shell, in tests and under systemd.

* :class:`Notifier` sends ``READY=1``, ``RELOADING=1`` (with ``MONOTONIC_USEC``
  as ``Type=notify-reload`` requires, harmless under ``Type=notify``),
  ``STOPPING=1``, ``STATUS=`` and ``WATCHDOG=1`` datagrams to
  ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace).  Sending
  never raises: systemd not listening must not take the daemon down.
* :func:`run_watchdog` pings ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` while
  a health check passes; when the event loop stalls, the pings stop and
  systemd restarts the service after ``WatchdogSec=``.
* :func:`listen_fds_with_names` returns the sockets passed by a ``.socket`` unit
  (sd_listen_fds(3): ``LISTEN_PID``, ``LISTEN_FDS``, ``LISTEN_FDNAMES``,
  descriptors from 3).
"""

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, MutableMapping

log = logging.getLogger("postfix_sts.systemd")

#: First descriptor passed by socket activation (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3

#: How long one notification may block the caller when systemd's socket buffer
#: is full (it is large; in practice a send never waits).
SEND_TIMEOUT = 1.0


class Notifier:
    """Sends sd_notify(3) state changes to systemd; a no-op without ``NOTIFY_SOCKET``."""

    def __init__(
        self,
        address: str | bytes | None,
        *,
        watchdog_usec: int | None = None,
    ) -> None:
        """``address`` as ready for ``sendto`` (abstract names start with NUL), or None."""
        self._address = address
        self._watchdog_usec = watchdog_usec

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, pid: int | None = None
    ) -> "Notifier":
        """Build from ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``.

        ``environ`` defaults to :data:`os.environ`, ``pid`` to :func:`os.getpid`;
        the watchdog is enabled only if ``WATCHDOG_PID`` is unset or names ``pid``.
        """
        env = os.environ if environ is None else environ
        own_pid = os.getpid() if pid is None else pid
        return cls(
            _notify_address(env.get("NOTIFY_SOCKET", "")),
            watchdog_usec=_watchdog_usec(env, own_pid),
        )

    @property
    def enabled(self) -> bool:
        """True when there is a notification socket to send to."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None.

        None when systemd runs no watchdog for this process, or there is no
        ``NOTIFY_SOCKET`` to ping.
        """
        if self._watchdog_usec is None or self._address is None:
            return None
        return self._watchdog_usec / 2_000_000

    def ready(self, status: str = "") -> None:
        """Start-up (or a reload) is complete and the daemon serves requests."""
        self.notify("READY=1", *_status_field(status))

    def reloading(self, status: str = "") -> None:
        """A reload started; follow it with :meth:`ready` when it ends, even if it failed."""
        self.notify("RELOADING=1", f"MONOTONIC_USEC={_monotonic_usec()}", *_status_field(status))

    def stopping(self, status: str = "") -> None:
        """Shutdown started: the daemon drains and exits."""
        self.notify("STOPPING=1", *_status_field(status))

    def status(self, text: str) -> None:
        """Free-form one-line status shown by ``systemctl status``."""
        self.notify(*_status_field(text))

    def watchdog(self) -> None:
        """Tell systemd the daemon is alive (resets the ``WatchdogSec=`` timer)."""
        self.notify("WATCHDOG=1")

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one datagram; False if not sent (never raises)."""
        if self._address is None or not fields:
            return False
        message = "\n".join(fields).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto(message, self._address)
        except OSError as exc:
            log.debug("sd_notify %r to %r failed: %s", fields, self._address, exc)
            return False
        return True


def _notify_address(value: str) -> str | bytes | None:
    """``NOTIFY_SOCKET`` as a ``sendto`` address: a path, or ``@name`` → ``b"\\0name"``."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    if value:
        # e.g. systemd 254's "vsock:CID:PORT", which this module does not speak.
        log.debug("NOTIFY_SOCKET=%r is not a unix socket address; not notifying", value)
    return None


def _watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    """``WATCHDOG_USEC`` when it is meant for ``pid`` and valid, else None."""
    watchdog_pid = env.get("WATCHDOG_PID", "")
    if watchdog_pid and _positive_int(watchdog_pid) != pid:
        return None
    return _positive_int(env.get("WATCHDOG_USEC", ""))


def _positive_int(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value > 0 else None


def _status_field(text: str) -> tuple[str, ...]:
    """A ``STATUS=`` field on one line (a newline would start a new field)."""
    if not text:
        return ()
    return ("STATUS=" + " ".join(text.splitlines()),)


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


async def run_watchdog(
    notifier: Notifier,
    is_healthy: Callable[[], bool],
    *,
    interval: float | None = None,
) -> None:
    """Ping ``WATCHDOG=1`` every ``interval`` seconds while ``is_healthy()`` is true.

    ``interval`` defaults to :meth:`Notifier.watchdog_interval`; without a
    watchdog this returns at once.  An unhealthy (or raising) check skips the
    ping, so systemd restarts the service once ``WatchdogSec=`` passes without
    one; a check that recovers in time resumes the pings.  Runs until cancelled.
    """
    period = notifier.watchdog_interval() if interval is None else interval
    if period is None or not notifier.enabled:
        return
    if period <= 0:
        raise ValueError(f"watchdog interval must be positive, got {period}")
    log.debug("systemd watchdog: pinging every %.1f s", period)
    while True:
        try:
            healthy = is_healthy()
        except Exception:
            log.exception("systemd watchdog: health check raised; not pinging")
            healthy = False
        if healthy:
            notifier.watchdog()
        else:
            log.warning("systemd watchdog: health check failed; not pinging")
        await asyncio.sleep(period)


def listen_fds_with_names(
    environ: MutableMapping[str, str] | None = None,
    *,
    pid: int | None = None,
    unset_environment: bool = True,
) -> list[tuple[str, socket.socket]]:
    """Passed sockets with their ``FileDescriptorName=`` (``"unknown"`` if unnamed).

    Per sd_listen_fds(3): only if ``LISTEN_PID`` equals ``pid`` (default: this
    process), ``LISTEN_FDS`` descriptors starting at 3, names from the
    colon-separated ``LISTEN_FDNAMES``.  The descriptors are made close-on-exec.
    With ``unset_environment`` the three variables are removed from ``environ``
    (default :data:`os.environ`) so that no child process mistakes them for its
    own; call this once.  Raises :class:`OSError` if a passed descriptor is
    not an open socket.
    """
    env = os.environ if environ is None else environ
    own_pid = os.getpid() if pid is None else pid
    listen_pid = env.get("LISTEN_PID", "")
    count_text = env.get("LISTEN_FDS", "")
    names_text = env.get("LISTEN_FDNAMES", "")
    if unset_environment:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    if not listen_pid or _positive_int(listen_pid) != own_pid:
        return []
    count = _positive_int(count_text)
    if count is None:
        return []
    names = names_text.split(":") if names_text else []
    if len(names) != count:
        names = ["unknown"] * count
    passed: list[tuple[str, socket.socket]] = []
    for offset, name in enumerate(names):
        fd = LISTEN_FDS_START + offset
        os.set_inheritable(fd, False)
        passed.append((name, socket.socket(fileno=fd)))
    return passed
