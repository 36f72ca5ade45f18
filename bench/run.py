"""Benchmark postfix-sts against postfix-mta-sts-resolver and a bare asyncio server.

    python bench/run.py --quick      # about 2 minutes: 1 s per load run, 100 domains, 1 round
    python bench/run.py              # about 12 minutes: 5 s runs, 1000 domains, 3 rounds

Starts the loopback test world (tests/world) and the servers: postfix-sts
(SQLite cache), the bare constant-reply server (the Python ceiling), and
postfix-mta-sts-resolver with its in-memory and its sqlite cache.  Measures, in
rounds that visit every server in turn, closed-loop socketmap throughput and
latency for cached enforce domains and for no-policy domains; then the cold
herd, and postfix-sts's RSS with 100,000 cached domains.  Writes
bench/results/bench-<time>.json and prints Markdown tables.

The whole run happens in a private network and mount namespace (unshare), so
the policy server can take 127.0.0.1:443, a resolver 127.0.0.1:53, and
/etc/resolv.conf can be replaced for postfix-mta-sts-resolver without touching
the host.  Nothing leaves loopback.  See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import load, profiling, report  # noqa: E402
from bench.targets import (  # noqa: E402
    BareServer,
    MtaStsResolver,
    PostfixSts,
    Target,
    WorldAccess,
    install_sr,
    memory_kib,
    source_fingerprint,
    sr_installed,
    sr_versions,
)
from bench.world_setup import (  # noqa: E402
    DomainSets,
    TwinResolver,
    count_all_queries,
    count_queries,
    enforce_policy,
    log_size,
    make_domain_sets,
    publish,
    read_pid,
    shared_policy,
    start_world,
    wait_quiet_log,
)
from tests.world import World, missing_binaries  # noqa: E402

NAMESPACE_ENV = "POSTFIX_STS_BENCH_IN_NAMESPACE"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
ALL_TARGETS = ("bare", "postfix-sts", "sr-internal", "sr-sqlite")
HERD_SIZE = 200


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s runs, 100 domains")
    parser.add_argument("--duration", type=float, help="seconds per load run (default 5, quick 1)")
    parser.add_argument("--domains", type=int, help="domains per set (default 1000, quick 100)")
    parser.add_argument("--connections", type=int, default=50, help="the 'many' connection count")
    parser.add_argument(
        "--procs", type=int, default=2, help="load-generator processes for the many-connection runs"
    )
    parser.add_argument(
        "--repeat", type=int, help="timed runs per scenario, median reported (default 3, quick 1)"
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="extra attempts for a run disturbed by other load"
    )
    parser.add_argument(
        "--max-other-cpu",
        type=float,
        default=0.25,
        help="cores other processes may use during a run before it counts as disturbed",
    )
    parser.add_argument("--rss-domains", type=int, default=100_000)
    parser.add_argument(
        "--rss-query-seconds",
        type=float,
        help="time limit for asking each seeded domain once (default 120, quick 20)",
    )
    parser.add_argument(
        "--targets",
        default=",".join(ALL_TARGETS),
        help=f"comma-separated subset of {', '.join(ALL_TARGETS)}",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="postfix-sts config override, VALUE in TOML (e.g. --set dane.enabled=false)",
    )
    parser.add_argument("--no-rss", action="store_true", help="skip the 100k-domain RSS run")
    parser.add_argument("--no-herd", action="store_true", help="skip the cold-herd runs")
    parser.add_argument(
        "--profile", action="store_true", help="also sample postfix-sts with py-spy (separate runs)"
    )
    parser.add_argument(
        "--no-namespace",
        action="store_true",
        help="run in the host's network namespace (postfix-mta-sts-resolver is then skipped)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the world's temp directory")
    parser.add_argument("--output", type=Path, help="results JSON path")
    args = parser.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 5.0)
    args.domains = args.domains or (100 if args.quick else 1000)
    args.repeat = max(1, args.repeat or (1 if args.quick else 3))
    args.rss_query_seconds = args.rss_query_seconds or (20.0 if args.quick else 120.0)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(ALL_TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    args.config_overrides = {}
    for item in args.overrides:
        name, sep, value = item.partition("=")
        section, dot, key = name.rpartition(".")
        if not sep or not dot:
            parser.error(f"--set wants SECTION.KEY=VALUE, got {item!r}")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value  # a bare word: take it as a string
        args.config_overrides.setdefault(section, {})[key] = parsed
    if args.no_namespace:
        args.targets = [t for t in args.targets if not t.startswith("sr-")]
    return args


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ namespace


def enter_namespace(args: argparse.Namespace) -> None:
    """Prepare what needs the host (PyPI, gcc), then re-run this script inside
    ``unshare --net --mount``; never returns."""
    if any(t.startswith("sr-") for t in args.targets) and not sr_installed():
        log("installing postfix-mta-sts-resolver into bench/.venv-sr (PyPI)")
        install_sr()
    load.build_client()
    if os.geteuid() != 0:
        sys.exit("bench/run.py needs root for its private namespaces (or use --no-namespace)")
    command = [
        "unshare", "--net", "--mount", "--propagation", "private",
        sys.executable, str(Path(__file__).resolve()), *sys.argv[1:],
    ]  # fmt: skip
    os.execvpe("unshare", command, {**os.environ, NAMESPACE_ENV: "1"})


def configure_namespace(directory: Path) -> None:
    """Inside the namespaces: bring up loopback; point /etc/resolv.conf (for
    this namespace only) at the twin resolver on 127.0.0.1:53."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    resolv = directory / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
    subprocess.run(["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True)


# ------------------------------------------------------------------ scenarios


class Bench:
    def __init__(self, args: argparse.Namespace, directory: Path, namespaced: bool) -> None:
        self.args = args
        self.directory = directory
        self.namespaced = namespaced
        self.world: World | None = None
        self.twin: TwinResolver | None = None
        herd_targets = [t for t in args.targets if t != "bare"]
        self.domains: DomainSets = make_domain_sets(args.domains, herd_targets)
        self.results: dict[str, Any] = {}

    # -- setup

    def start(self) -> None:
        log(f"starting the world in {self.directory}")
        self.world = start_world(self.directory / "world", 443 if self.namespaced else 0)
        started = time.monotonic()
        published = publish(self.world, [*self.domains.enforce, *self.domains.herd.values()])
        log(f"published {published} enforce domains in {time.monotonic() - started:.1f} s")
        if any(t.startswith("sr-") for t in self.args.targets):
            self.twin = TwinResolver(self.world, self.directory / "twin")
            self.twin.start()
            self.twin.flush()

    def close(self) -> None:
        if self.twin is not None:
            self.twin.close()
        if self.world is not None:
            self.world.close()

    @property
    def access(self) -> WorldAccess:
        assert self.world is not None
        return WorldAccess(self.world.resolver, self.world.ca_file, self.world.https.port)

    def world_resolver_log(self) -> Path:
        assert self.world is not None
        return self.world.dns.directory / "unbound.log"

    def world_resolver_pid(self) -> int | None:
        assert self.world is not None
        return read_pid(self.world.dns.directory / "unbound.pid")

    def make_target(self, name: str) -> Target:
        directory = self.directory / name
        if name == "bare":
            return BareServer(directory)
        if name == "postfix-sts":
            return PostfixSts(directory, self.access, extra=self.args.config_overrides)
        cache = name.removeprefix("sr-")
        return MtaStsResolver(directory, cache, self.access.ca_file)

    # -- measurement

    def run(self) -> dict[str, Any]:
        self.results = {
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "settings": {
                "quick": self.args.quick,
                "duration_s": self.args.duration,
                "domains": self.args.domains,
                "connections": self.args.connections,
                "generator_procs": self.args.procs,
                "repeat": self.args.repeat,
                "retries": self.args.retries,
                "max_other_cpu": self.args.max_other_cpu,
                "namespaced": self.namespaced,
                "postfix_sts_overrides": self.args.config_overrides,
            },
            "machine": machine_info(),
            "cpu_probe_ms_before": cpu_probe(),
            "targets": {},
        }
        self.measure_targets()
        if not self.args.no_rss and "postfix-sts" in self.args.targets:
            self.results["rss"] = self.measure_rss(shared=False)
            if not self.args.quick:
                self.results["rss_shared"] = self.measure_rss(shared=True)
        if self.args.profile and "postfix-sts" in self.args.targets:
            self.results["profile"] = self.profile()
        self.results["cpu_probe_ms_after"] = cpu_probe()
        sources = {self.results["machine"]["postfix_sts_source_sha256"], source_fingerprint()}
        sources |= {t.get("source_sha256") for t in self.results["targets"].values()}
        sources |= {self.results.get(k, {}).get("source_sha256") for k in ("rss", "rss_shared")}
        sources.discard(None)
        self.results["postfix_sts_source_changed_during_run"] = len(sources) > 1
        if len(sources) > 1:
            log("WARNING: postfix_sts/ changed during the run; figures mix code versions")
        self.results["ratios"] = report.compute_ratios(self.results, self.args.connections)
        return self.results

    def measure_targets(self) -> None:
        """Start every target, warm them, then run the load scenarios in rounds,
        each round visiting every target in turn, so that a burst of outside load
        on this shared machine hits all targets alike rather than one of them."""
        targets = {name: self.make_target(name) for name in self.args.targets}
        out: dict[str, dict[str, Any]] = self.results["targets"]
        collected: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        try:
            for name, target in targets.items():
                log(f"{name}: starting")
                target.start()
                assert target.pid is not None
                out[name] = {
                    "label": target.label,
                    "source_sha256": target.source,
                    "baseline_rss_mb": memory_kib(target.pid)["VmRSS"] / 1024,
                    "scenarios": {},
                }
                if name != "bare":
                    out[name]["warm"] = self.warm(target)
            plan = [
                (scenario, conns)
                for scenario in ("cached", "no_policy")
                for conns in (1, self.args.connections)
            ]
            for round_number in range(1, self.args.repeat + 1):
                for scenario, conns in plan:
                    for name, target in targets.items():
                        if scenario == "no_policy" and name == "bare":
                            continue
                        run = self.measure(target, scenario, conns)
                        collected.setdefault((name, scenario, conns), []).append(run)
                        log(
                            f"round {round_number}: {name} {scenario} x{conns}: "
                            f"{run['rps']:,.0f} req/s, p50 {run['p50_ms']:.3f} ms, "
                            f"p99 {run['p99_ms']:.3f} ms, CPU server {run['server_cpu']:.0%} "
                            f"generator {run['generator_cpu']:.0%} other {run['other_cpu']:.0%}"
                            + ("" if run["valid"] else "  INVALID ANSWERS")
                        )
            for (name, scenario, conns), runs in collected.items():
                out[name]["scenarios"].setdefault(scenario, {})[str(conns)] = median_run(runs)
            for name, target in targets.items():
                if name != "bare" and not self.args.no_herd:
                    out[name]["herd"] = self.herd(target, name)
                if target.pid is not None:
                    out[name]["rss_after_mb"] = memory_kib(target.pid)["VmRSS"] / 1024
        finally:
            for target in targets.values():
                target.stop()

    def resolver_for(self, name: str) -> tuple[int | None, Path | None]:
        """The pid and query log of the resolver a target uses (none for bare)."""
        if name.startswith("sr-"):
            assert self.twin is not None
            return self.twin.pid, self.twin.log
        if name == "bare":
            return None, None
        return self.world_resolver_pid(), self.world_resolver_log()

    def warm(self, target: Target) -> dict[str, Any]:
        """Ask every enforce domain (fetches its policy) and every no-policy domain once."""
        started = time.monotonic()
        enforce = load.ask_each_once(target.port, self.domains.enforce)
        no_policy = load.ask_each_once(target.port, self.domains.no_policy)
        seconds = time.monotonic() - started
        log(
            f"{target.name}: warmed {len(self.domains.enforce)} enforce domains "
            f"({enforce.ok} OK) and {len(self.domains.no_policy)} no-policy domains "
            f"({no_policy.notfound} NOTFOUND) in {seconds:.1f} s"
        )
        if enforce.ok != len(self.domains.enforce):
            log(
                f"{target.name}: WARNING: not every enforce domain answered OK:\n"
                + target.log_tail()
            )
        return {"enforce": enforce.as_dict(), "no_policy": no_policy.as_dict(), "seconds": seconds}

    def measure(self, target: Target, scenario: str, conns: int) -> dict[str, Any]:
        """One timed run after a short unmeasured one.  A run during which other
        processes on the machine used more than ``--max-other-cpu`` cores is
        repeated (up to ``--retries`` times); the least disturbed one is kept."""
        keys = self.domains.enforce if scenario == "cached" else self.domains.no_policy
        expected = "ok" if scenario == "cached" else "notfound"
        procs = 1 if conns == 1 else self.args.procs
        resolver_pid, resolver_log = self.resolver_for(target.name)
        load.run_load(
            target.port,
            keys,
            connections=conns,
            duration=min(1.0, self.args.duration / 4),
            procs=procs,
        )  # connections, allocator and caches settle
        attempts: list[dict[str, Any]] = []
        for attempt in range(1 + self.args.retries):
            if attempt:
                time.sleep(2.0 * attempt)  # let a burst of outside load pass
            offset = log_size(resolver_log) if resolver_log else 0
            result = load.run_load(
                target.port,
                keys,
                connections=conns,
                duration=self.args.duration,
                procs=procs,
                server_pid=target.pid,
                helper_pid=resolver_pid,
            )
            data = result.as_dict()
            if resolver_log:
                wait_quiet_log(resolver_log, settle=0.2)
                data["resolver_queries"] = count_all_queries(resolver_log, offset)
            else:
                data["resolver_queries"] = None
            good: int = getattr(result, expected)
            data["expected"] = expected.upper()
            data["valid"] = (
                good == result.completed
                and result.completed > 0
                and not result.errors
                and not result.aborted
            )
            data["disturbed"] = result.other_cpu > self.args.max_other_cpu
            attempts.append(data)
            if not data["disturbed"]:
                break
            log(
                f"{target.name} {scenario} x{conns}: other processes used "
                f"{result.other_cpu:.2f} cores during the run; measuring again"
            )
        best = dict(min(attempts, key=lambda run: float(run["other_cpu"])))
        best["attempts"] = len(attempts)
        return best

    def herd(self, target: Target, name: str) -> dict[str, Any]:
        """HERD_SIZE simultaneous first queries for a domain nobody asked before."""
        assert self.world is not None
        domain = self.domains.herd[name]
        _, resolver_log = self.resolver_for(name)
        assert resolver_log is not None
        self.world.https.reset_counts()
        offset = log_size(resolver_log)
        result = load.run_load(
            target.port,
            [domain],
            connections=HERD_SIZE,
            duration=30.0,
            max_requests=HERD_SIZE,
            procs=1,
            io_timeout=30.0,
        )
        wait_quiet_log(resolver_log)
        host = f"mta-sts.{domain}"
        herd = {
            "domain": domain,
            "load": result.as_dict(),
            "https_fetches": self.world.https.requests(host),
            "tls_handshakes": self.world.https.handshakes(host),
            "txt_queries": count_queries(resolver_log, offset, f"_mta-sts.{domain}", "TXT"),
            "a_queries": count_queries(resolver_log, offset, host, "A"),
        }
        log(
            f"{name}: cold herd of {HERD_SIZE}: {result.ok} OK, {herd['https_fetches']} HTTPS "
            f"fetches, {herd['txt_queries']} TXT queries, last answer after {result.max_ms:.0f} ms"
        )
        return herd

    def measure_rss(self, *, shared: bool) -> dict[str, Any]:
        """postfix-sts started on a SQLite cache seeded with N valid policies.

        Unique: each domain's policy names its own MX hosts (the worst case for
        memory).  Shared: the domains use a handful of hosting providers'
        policies, as most real MTA-STS domains do (informative).
        """
        count = self.args.rss_domains
        kind = "shared" if shared else "unique"
        target = PostfixSts(
            self.directory / f"rss-{kind}", self.access, extra=self.args.config_overrides
        )
        domains = [f"r{i}.test" for i in range(count)]
        policy = shared_policy if shared else enforce_policy
        log(f"rss: seeding {count:,} {kind} policies into {target.cache_path}")
        target.seed_cache(domains, policy)
        target.start(timeout=600)
        assert target.pid is not None
        try:
            time.sleep(0.5)
            loaded = memory_kib(target.pid)
            log(f"rss: started in {target.started_in:.1f} s, VmRSS {loaded['VmRSS'] / 1024:.1f} MB")
            # Then ask each domain once (renders its answer), within a time limit:
            # a first query may need more than the cache (e.g. a DANE lookup).
            check = load.run_load(
                target.port,
                domains,
                connections=self.args.connections,
                duration=self.args.rss_query_seconds,
                max_requests=count,
                io_timeout=30.0,
            )
            after = memory_kib(target.pid)
            log(
                f"rss: asked {check.completed:,} of {count:,} domains once in "
                f"{check.elapsed:.1f} s ({check.ok:,} OK, {check.rps:,.0f} req/s), "
                f"VmRSS {after['VmRSS'] / 1024:.1f} MB, peak {after['VmHWM'] / 1024:.1f} MB"
            )
        finally:
            target.stop()
        baseline = self.results["targets"].get("postfix-sts", {}).get("baseline_rss_mb")
        return {
            "domains": count,
            "policies": kind,
            "source_sha256": target.source,
            "startup_s": target.started_in,
            "rss_loaded_mb": loaded["VmRSS"] / 1024,
            "rss_after_queries_mb": after["VmRSS"] / 1024,
            "peak_mb": after["VmHWM"] / 1024,
            "baseline_mb": baseline,
            "queried": check.completed,
            "all_answered_ok": check.ok == count,
            "query_pass": check.as_dict(),
        }

    def profile(self) -> dict[str, Any]:
        """py-spy samples of postfix-sts under the many-connection loads (separate
        runs: sampling costs the daemon some throughput)."""
        if profiling.py_spy() is None:
            log("profile: py-spy not installed (pip install py-spy); skipped")
            return {"error": "py-spy not installed"}
        target = PostfixSts(
            self.directory / "profile", self.access, extra=self.args.config_overrides
        )
        target.start()
        assert target.pid is not None
        out: dict[str, Any] = {}
        try:
            self.warm(target)
            for scenario, keys in (
                ("cached", self.domains.enforce),
                ("no_policy", self.domains.no_policy),
            ):
                raw = RESULTS_DIR / f"profile-{scenario}.txt"
                seconds = max(3.0, self.args.duration)
                result: load.LoadResult | None = None
                error = ""
                for native in (True, False):  # native stacks need ptrace rights
                    recorder = profiling.start_recording(target.pid, raw, seconds, native=native)
                    time.sleep(0.3)
                    result = load.run_load(
                        target.port, keys, connections=self.args.connections,
                        duration=seconds, procs=self.args.procs, server_pid=target.pid,
                    )  # fmt: skip
                    _, err = recorder.communicate(timeout=seconds + 60)
                    if recorder.returncode == 0 and raw.exists():
                        break
                    error = err.decode(errors="replace")[-2000:]
                    log(f"profile: py-spy (native={native}) failed: {error.strip()[-300:]}")
                else:
                    out[scenario] = {"error": error}
                    continue
                assert result is not None
                total, costs = profiling.summarise(raw)
                out[scenario] = {
                    "raw_stacks": str(raw),
                    "samples": total,
                    "rps_while_sampled": result.rps,
                    "native": native,
                    "functions": [c.__dict__ for c in costs],
                }
                log(f"profile: {scenario}: {total} samples -> {raw}")
        finally:
            target.stop()
        return out


# ------------------------------------------------------------------ reporting


def cpu_probe(rounds: int = 8) -> list[float]:
    """Milliseconds for a fixed pure-Python loop, a few times: how steady this
    machine's CPU speed is (on a shared VM it can vary by 2x from second to second)."""
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        timings.append(round((time.perf_counter() - started) * 1000, 1))
        time.sleep(0.2)
    return timings


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate, with every run's rate alongside."""
    ordered = sorted(runs, key=lambda run: float(run["rps"]))
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rps_runs"] = [run["rps"] for run in runs]
    chosen["valid"] = all(run["valid"] for run in runs)
    chosen["disturbed"] = any(run["disturbed"] for run in runs)
    return chosen


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    for package in ("uvloop", "dnspython", "httpx", "cachetools"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    git = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    unbound = subprocess.run(
        ["unbound", "-V"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postfix_sts_git": git,
        # others edit postfix_sts/ while benchmarks run: this names the exact code measured
        "postfix_sts_source_sha256": source_fingerprint(),
        "postfix_sts_packages": versions,
        "sr_packages": sr_versions(),
        "unbound": unbound[0] if unbound else "unknown",
    }


def main() -> int:
    args = parse_args()
    namespaced = os.environ.get(NAMESPACE_ENV) == "1"
    if not namespaced and not args.no_namespace:
        enter_namespace(args)  # re-runs this script inside the namespaces
    missing = missing_binaries()
    if missing:
        sys.exit("the test world needs: " + ", ".join(missing))
    load.build_client()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="pfsts-bench-", dir="/tmp"))
    if namespaced:
        configure_namespace(directory)
    bench = Bench(args, directory, namespaced)
    try:
        bench.start()
        results = bench.run()
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    results["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output = args.output or RESULTS_DIR / f"bench-{stamp}{'-quick' if args.quick else ''}.json"
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(report.markdown(results))
    if "profile" in results:
        print(profile_markdown(results["profile"]))
    print(f"\nresults: {output}")
    return 0


def profile_markdown(profile: dict[str, Any]) -> str:
    out: list[str] = []
    for scenario, data in profile.items():
        if not isinstance(data, dict) or "functions" not in data:
            continue
        out.append(
            f"\npy-spy, {report.LABELS[scenario]}: {data['samples']} samples "
            f"({data['rps_while_sampled']:,.0f} req/s while sampled)\n"
        )
        out.append("| function | self | total |")
        out.append("|---|---:|---:|")
        out.extend(
            f"| `{f['name']}` | {f['self_share']:.1%} | {f['total_share']:.1%} |"
            for f in data["functions"]
        )
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
