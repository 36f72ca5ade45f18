"""systemd/postfix-sts.{service,socket}: hardening score and validity.

Uses systemd-analyze (Debian package ``systemd``; tests/run installs it).  A
missing systemd-analyze fails these tests: a skip would let the hardening
regress unnoticed.  Nothing here needs a running systemd.
"""

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
SERVICE = SYSTEMD_DIR / "postfix-sts.service"
SOCKET = SYSTEMD_DIR / "postfix-sts.socket"
EXEC_PATH = "/usr/bin/postfix-sts"

#: docs/systemd.md promises at most this "Overall exposure level" (0 = best, 10 = worst).
MAX_EXPOSURE = 2.0


@pytest.fixture(scope="module")
def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail(
            "systemd-analyze not found: install Debian's 'systemd' package (tests/run does)",
            pytrace=False,
        )
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def directives(unit: Path) -> Iterator[tuple[str, str, str]]:
    """(section, key, value) for each assignment, in order; repeated keys repeat."""
    section = ""
    for raw in unit.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        yield section, key.strip(), value.strip()


def service_values(key: str) -> list[str]:
    return [value for section, k, value in directives(SERVICE) if section == "Service" and k == key]


# --- hardening ------------------------------------------------------------------


def test_exposure_level_is_at_most_2(analyze: str) -> None:
    result = run(analyze, "security", "--offline=yes", "--no-pager", str(SERVICE))
    output = result.stdout + result.stderr

    assert 0 == result.returncode, output
    match = re.search(r"Overall exposure level for postfix-sts\.service: (\d+(?:\.\d+)?)", output)
    assert match, f"no overall exposure level in:\n{output}"
    unrestricted = "\n".join(line for line in output.splitlines() if line.startswith("✗"))
    assert float(match.group(1)) <= MAX_EXPOSURE, f"still exposed:\n{unrestricted}"


def test_security_analysis_has_no_unit_file_warnings(analyze: str) -> None:
    """Typos and unknown directives are only warned about; the score ignores them."""
    result = run(analyze, "security", "--offline=yes", "--no-pager", str(SERVICE))

    assert "" == result.stderr


# --- validity ---------------------------------------------------------------------


def _copy_with_existing_exec(tmp_path: Path) -> Path:
    """The units in tmp_path, ExecStart= pointing at a binary that exists here."""
    text = SERVICE.read_text(encoding="utf-8").replace(EXEC_PATH, "/bin/true")
    (tmp_path / SERVICE.name).write_text(text, encoding="utf-8")
    shutil.copy(SOCKET, tmp_path / SOCKET.name)
    return tmp_path / SERVICE.name


def test_service_verifies_cleanly(analyze: str, tmp_path: Path) -> None:
    """systemd-analyze verify, with the not yet installed ExecStart= binary swapped in."""
    unit = _copy_with_existing_exec(tmp_path)

    result = run(analyze, "verify", "--man=no", str(unit))

    assert (0, "", "") == (result.returncode, result.stdout, result.stderr)


def test_service_verify_complains_only_about_the_missing_binary(analyze: str) -> None:
    """On a host without postfix-sts installed the sole finding is its absence."""
    result = run(analyze, "verify", "--man=no", str(SERVICE))
    findings = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]

    if Path(EXEC_PATH).exists():
        assert (0, []) == (result.returncode, findings)
    else:
        assert [
            f"postfix-sts.service: Command {EXEC_PATH} is not executable: No such file or directory"
        ] == findings


def test_socket_verifies_cleanly(analyze: str, tmp_path: Path) -> None:
    _copy_with_existing_exec(tmp_path)

    result = run(analyze, "verify", "--man=no", str(tmp_path / SOCKET.name))

    assert (0, "", "") == (result.returncode, result.stdout, result.stderr)


# --- the contract with postfix_sts.systemd and the daemon -------------------------


def test_service_lifecycle_directives() -> None:
    assert ["notify"] == service_values("Type")
    assert ["main"] == service_values("NotifyAccess")
    assert ["30"] == service_values("WatchdogSec")
    assert [f"{EXEC_PATH} serve --config /etc/postfix-sts/postfix-sts.toml"] == service_values(
        "ExecStart"
    )
    assert ["/bin/kill -HUP $MAINPID"] == service_values("ExecReload")


def test_service_identity_and_directories() -> None:
    assert ["yes"] == service_values("DynamicUser")
    assert ["postfix-sts"] == service_values("StateDirectory")
    assert ["postfix-sts"] == service_values("RuntimeDirectory")
    assert ["0077"] == service_values("UMask")


def test_service_allows_exactly_the_address_families_it_needs() -> None:
    assert ["AF_INET AF_INET6 AF_UNIX"] == service_values("RestrictAddressFamilies")
    # The daemon must reach policy hosts anywhere: no IP allow list.
    assert [] == service_values("IPAddressDeny")
    assert [] == service_values("PrivateNetwork")


def test_socket_passes_named_descriptors_to_the_service() -> None:
    socket_values = {k: v for section, k, v in directives(SOCKET) if section == "Socket"}

    assert "127.0.0.1:8461" == socket_values["ListenStream"]
    assert "socketmap" == socket_values["FileDescriptorName"]
    assert "no" == socket_values["Accept"]
    assert SERVICE.name == socket_values["Service"]
