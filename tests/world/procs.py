"""Small helpers shared by the world's components: binaries, ports, waiting
and supervising child processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: Binaries the world runs, and the Debian package that ships each.
REQUIRED_BINARIES: dict[str, str] = {
    "nsd": "nsd",
    "nsd-control": "nsd",
    "unbound": "unbound",
    "unbound-control": "unbound",
    "unbound-checkconf": "unbound",
    "ldns-keygen": "ldnsutils",
    "ldns-signzone": "ldnsutils",
}

_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class WorldError(RuntimeError):
    """The test world could not be started or did not reach a wanted state."""


def find_binary(name: str) -> str:
    """Return the path of ``name``, also looking in sbin dirs not on PATH."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    found = shutil.which(name, path=path)
    if found is None:
        package = REQUIRED_BINARIES.get(name, "?")
        raise WorldError(f"binary {name!r} not found (Debian package: {package})")
    return found


def missing_binaries() -> list[str]:
    """Describe each required binary that is not installed (empty if all are)."""
    missing = []
    for name, package in REQUIRED_BINARIES.items():
        try:
            find_binary(name)
        except WorldError:
            missing.append(f"{name} (apt-get install {package})")
    return missing


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that is currently free for both TCP and UDP on ``host``."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise WorldError("could not find a port free for both TCP and UDP")


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
    describe_failure: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than None; give up
    with :class:`WorldError` after ``timeout`` seconds.

    Exceptions raised by ``probe`` count as "not yet"; the last one is
    reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
            if result is not None:
                return result
        except Exception as exc:  # any failure means "not ready yet"
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_error!r}" if last_error else ""
            extra = f"\n{describe_failure()}" if describe_failure else ""
            raise WorldError(f"timed out after {timeout}s waiting for {what}{detail}{extra}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.25)


def run(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = 30) -> str:
    """Run a short command; return stdout, raise WorldError with output on failure."""
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WorldError(f"{argv[0]} timed out after {timeout}s") from exc
    if done.returncode != 0:
        raise WorldError(
            f"{' '.join(argv)} failed with exit code {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} not readable)"
    return f"--- last lines of {path} ---\n" + "\n".join(content[-lines:])


class Daemon:
    """A foreground child process with output sent to a log file."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, cwd: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.running:
            raise WorldError(f"{self.name} is already running")
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # keep terminal signals (Ctrl-C) away from it
            )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def check_alive(self) -> None:
        """Raise WorldError (with the log tail) if the process has exited."""
        if self._proc is not None and self._proc.poll() is not None:
            raise WorldError(
                f"{self.name} exited with code {self._proc.returncode}\n{tail(self.log)}"
            )

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL) and anything it forked
        into its process group; never raises."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        # The process leads its own session, so its pid is the group id of any
        # helper processes it forked (nsd does); make sure none are left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
