"""Configuration files for the world's NSD (authoritative) and unbound
(validating resolver). Every path points into the world's temp directory;
neither daemon chroots, switches user or touches /etc."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .zones import Zone


def nsd_conf(directory: Path, host: str, port: int, zones: Sequence[Zone]) -> str:
    lines = [
        "server:",
        f"    ip-address: {host}@{port}",
        f"    port: {port}",
        "    do-ip6: no",
        "    server-count: 1",
        "    reuseport: no",
        '    username: ""',
        '    chroot: ""',
        f'    zonesdir: "{directory}"',
        '    database: ""',
        f'    zonelistfile: "{directory}/nsd.zone.list"',
        f'    xfrdfile: "{directory}/nsd.xfrd.state"',
        f'    xfrdir: "{directory}"',
        f'    pidfile: "{directory}/nsd.pid"',
        f'    logfile: "{directory}/nsd.log"',
        f'    cookie-secret-file: "{directory}/nsd.cookiesecrets.txt"',
        "    verbosity: 1",
        "    hide-version: yes",
        "remote-control:",
        "    control-enable: yes",
        f'    control-interface: "{nsd_control_socket(directory)}"',
    ]
    for zone in zones:
        lines += [
            "zone:",
            f'    name: "{zone.origin.to_text()}"',
            f'    zonefile: "{zone.served_file}"',
        ]
    return "\n".join(lines) + "\n"


def unbound_conf(
    directory: Path, listen: tuple[str, int], nsd: tuple[str, int], zones: Sequence[Zone]
) -> str:
    host, port = listen
    lines = [
        "server:",
        f"    interface: {host}",
        f"    port: {port}",
        "    do-ip4: yes",
        "    do-ip6: no",
        "    do-udp: yes",
        "    do-tcp: yes",
        "    access-control: 127.0.0.0/8 allow",
        '    username: ""',
        '    chroot: ""',
        f'    directory: "{directory}"',
        f'    pidfile: "{directory}/unbound.pid"',
        f'    logfile: "{directory}/unbound.log"',
        "    use-syslog: no",
        "    log-time-ascii: yes",
        "    verbosity: 1",
        "    log-queries: yes",
        "    log-servfail: yes",
        "    val-log-level: 2",
        "    num-threads: 1",
        "    so-reuseport: no",
        "    do-not-query-localhost: no",
        '    module-config: "validator iterator"',
        "    ede: yes",
        "    trust-anchor-signaling: no",
    ]
    # A hermetic internet: names outside the world's zones do not exist
    # (NXDOMAIN at once, instead of unbound trying the real root servers).
    lines.append('    local-zone: "." static')
    for zone in zones:
        name = zone.origin.to_text()
        # "transparent" lets the zone's queries through to its stub (and
        # replaces unbound's built-in local zones such as "test.").
        lines.append(f'    local-zone: "{name}" transparent')
        if zone.anchor_file is not None:
            lines.append(f'    trust-anchor-file: "{zone.anchor_file}"')
        else:
            lines.append(f'    domain-insecure: "{name}"')
    for zone in zones:
        lines += [
            "stub-zone:",
            f'    name: "{zone.origin.to_text()}"',
            f"    stub-addr: {nsd[0]}@{nsd[1]}",
        ]
    lines += [
        "remote-control:",
        "    control-enable: yes",
        f'    control-interface: "{unbound_control_socket(directory)}"',
    ]
    return "\n".join(lines) + "\n"


def nsd_control_socket(directory: Path) -> Path:
    return directory / "nsd.ctl"


def unbound_control_socket(directory: Path) -> Path:
    return directory / "unbound.ctl"
