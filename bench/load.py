"""Driving load with bench/sockload.c: compile it, run one or more client
processes against a port, merge their counts and latencies.

Each client process is one thread on epoll, so the work is split over
``procs`` processes when there are many connections; the generator's own CPU
time is recorded to show it is not what limits the rate.
"""

from __future__ import annotations

import array
import json
import math
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.targets import BENCH_DIR, CLK_TCK, cpu_seconds

SOURCE = BENCH_DIR / "sockload.c"
BINARY = BENCH_DIR / "build" / "sockload"
MAX_REQUESTS = 20_000_000  # hard cap per client process, whatever the duration


def build_client() -> Path:
    """Compile sockload if the binary is missing or older than its source."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    BINARY.parent.mkdir(exist_ok=True)
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(BINARY), str(SOURCE)],
        check=True,
    )
    return BINARY


@dataclass
class LoadResult:
    """One measured run: throughput, latency, answer counts and CPU use."""

    connections: int
    procs: int
    completed: int
    elapsed: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    ok: int
    notfound: int
    temp: int
    perm: int
    other: int
    errors: int
    aborted: bool
    generator_cpu: float  # CPU seconds per wall second, all client processes
    generator_max_proc_cpu: float  # the busiest client process, same unit
    server_cpu: float  # the target process, CPU seconds per wall second
    helper_cpu: float  # e.g. the resolver the target queries, same unit
    machine_busy: float  # all CPUs, non-idle, in cores (2.0 = both cores busy)
    machine_irq: float  # of which interrupts and softirqs, in cores
    machine_steal: float  # of which taken by the hypervisor, in cores
    other_cpu: float  # busy, less all the above and the processes measured: other load

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def machine_ticks() -> dict[str, int]:
    """Clock ticks of all CPUs from /proc/stat: total, idle (+ iowait), irq
    (+ softirq: loopback TCP work done outside any process), steal."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    fields += [0] * (8 - len(fields))
    return {
        "total": sum(fields),
        "idle": fields[3] + fields[4],
        "irq": fields[5] + fields[6],
        "steal": fields[7],
    }


def percentile(sorted_values: Sequence[int], fraction: float) -> int:
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def run_load(
    port: int,
    keys: Sequence[str],
    *,
    connections: int,
    duration: float,
    procs: int = 1,
    max_requests: int = MAX_REQUESTS,
    server_pid: int | None = None,
    helper_pid: int | None = None,
    grace: float = 10.0,
    io_timeout: float = 10.0,
) -> LoadResult:
    """Closed loop: ``connections`` connections, one request outstanding on each,
    for ``duration`` seconds or ``max_requests`` requests, whichever comes first."""
    procs = max(1, min(procs, connections))
    with tempfile.TemporaryDirectory(prefix="sockload-") as tmp:
        keyfile = Path(tmp) / "keys.txt"
        keyfile.write_text("\n".join(keys) + "\n")
        shares = [
            connections // procs + (1 if i < connections % procs else 0) for i in range(procs)
        ]
        requests = [
            max_requests // procs + (1 if i < max_requests % procs else 0) for i in range(procs)
        ]
        server0, helper0 = cpu_seconds(server_pid), cpu_seconds(helper_pid)
        ticks0, wall0 = machine_ticks(), time.monotonic()
        children = [
            subprocess.Popen(
                [
                    str(BINARY),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-c",
                    str(share),
                    "-d",
                    str(duration),
                    "-n",
                    str(count),
                    "-k",
                    str(keyfile),
                    "-o",
                    str(Path(tmp) / f"lat{i}.bin"),
                    "-g",
                    str(grace),
                    "-t",
                    str(io_timeout),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i, (share, count) in enumerate(zip(shares, requests, strict=True))
        ]
        outputs = []
        for child in children:
            out, _ = child.communicate(timeout=duration + grace + io_timeout + 30)
            outputs.append(json.loads(out))
        wall = time.monotonic() - wall0
        ticks1 = machine_ticks()
        server_cpu = (cpu_seconds(server_pid) - server0) / wall
        helper_cpu = (cpu_seconds(helper_pid) - helper0) / wall
        latencies = array.array("Q")
        for i in range(procs):
            latencies.frombytes((Path(tmp) / f"lat{i}.bin").read_bytes())
    delta = {key: (ticks1[key] - ticks0[key]) / CLK_TCK / wall for key in ticks0}
    busy = delta["total"] - delta["idle"]
    ordered = sorted(latencies)
    completed = sum(o["completed"] for o in outputs)
    elapsed = max(o["elapsed"] for o in outputs)
    generator = sum(o["cpu_seconds"] for o in outputs) / wall
    return LoadResult(
        connections=connections,
        procs=procs,
        completed=completed,
        elapsed=elapsed,
        rps=completed / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(ordered, 0.50) / 1e6,
        p99_ms=percentile(ordered, 0.99) / 1e6,
        max_ms=(ordered[-1] if ordered else 0) / 1e6,
        ok=sum(o["ok"] for o in outputs),
        notfound=sum(o["notfound"] for o in outputs),
        temp=sum(o["temp"] for o in outputs),
        perm=sum(o["perm"] for o in outputs),
        other=sum(o["other"] for o in outputs),
        errors=sum(o["errors"] for o in outputs),
        aborted=any(o["aborted"] for o in outputs),
        generator_cpu=sum(o["cpu_seconds"] for o in outputs) / elapsed if elapsed else 0.0,
        generator_max_proc_cpu=max(
            o["cpu_seconds"] / o["elapsed"] for o in outputs if o["elapsed"]
        ),
        server_cpu=server_cpu,
        helper_cpu=helper_cpu,
        machine_busy=busy,
        machine_irq=delta["irq"],
        machine_steal=delta["steal"],
        other_cpu=max(
            0.0, busy - delta["irq"] - delta["steal"] - generator - server_cpu - helper_cpu
        ),
    )


def ask_each_once(
    port: int, keys: Sequence[str], *, connections: int = 20, timeout: float = 300.0
) -> LoadResult:
    """Every key exactly once (warming a cache, or checking the answers)."""
    return run_load(
        port,
        keys,
        connections=min(connections, len(keys)),
        duration=timeout,
        max_requests=len(keys),
        procs=1,
        io_timeout=30.0,
    )
