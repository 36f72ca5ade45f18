"""Turning a results dictionary into ratios and Markdown tables."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCENARIOS = ("cached", "no_policy")
LABELS = {"cached": "cached enforce", "no_policy": "no policy"}


@dataclass(frozen=True)
class Ratio:
    name: str
    numerator: str  # "target/scenario/connections"
    denominator: str
    target: float | None  # the team's goal (ratio at least this), None: informative


RATIOS = (
    Ratio(
        "cached: postfix-sts / SR in-memory", "postfix-sts/cached/N", "sr-internal/cached/N", 2.0
    ),
    Ratio("cached: postfix-sts / SR sqlite", "postfix-sts/cached/N", "sr-sqlite/cached/N", 10.0),
    Ratio(
        "no policy: postfix-sts / SR in-memory",
        "postfix-sts/no_policy/N",
        "sr-internal/no_policy/N",
        3.0,
    ),
    Ratio("cached: postfix-sts / bare ceiling", "postfix-sts/cached/N", "bare/cached/N", 0.70),
    Ratio(
        "cached, 1 conn: postfix-sts / SR in-memory",
        "postfix-sts/cached/1",
        "sr-internal/cached/1",
        None,
    ),
    Ratio(
        "cached, 1 conn: postfix-sts / SR sqlite",
        "postfix-sts/cached/1",
        "sr-sqlite/cached/1",
        None,
    ),
    Ratio(
        "no policy, 1 conn: postfix-sts / SR in-memory",
        "postfix-sts/no_policy/1",
        "sr-internal/no_policy/1",
        None,
    ),
    Ratio(
        "cached, 1 conn: postfix-sts / bare ceiling", "postfix-sts/cached/1", "bare/cached/1", None
    ),
)

RSS_LIMIT_MB = 150.0


def _run(results: Mapping[str, Any], path: str, many: int) -> Mapping[str, Any] | None:
    target, scenario, conns = path.split("/")
    conns = str(many) if conns == "N" else conns
    run: Mapping[str, Any] | None = (
        results.get("targets", {}).get(target, {}).get("scenarios", {}).get(scenario, {}).get(conns)
    )
    return run if run and run.get("valid") else None


def compute_ratios(results: Mapping[str, Any], many: int) -> list[dict[str, Any]]:
    """Each ratio as the ratio of the two medians, and (``paired``) the median and
    range of the per-round ratios: the runs of one round are seconds apart, so a
    slow spell of the shared machine affects both sides of a paired ratio."""
    rows = []
    for ratio in RATIOS:
        top, bottom = _run(results, ratio.numerator, many), _run(results, ratio.denominator, many)
        of_medians = top["rps"] / bottom["rps"] if top and bottom and bottom["rps"] else None
        paired: list[float] = []
        if top and bottom:
            pairs = zip(top.get("rps_runs", []), bottom.get("rps_runs", []), strict=False)
            paired = [a / b for a, b in pairs if b]
        value = statistics.median(paired) if paired else of_medians
        rows.append(
            {
                "name": ratio.name,
                "value": value,
                "paired": paired,
                "of_medians": of_medians,
                "target": ratio.target,
                "goal": None if ratio.target is None else f">= {ratio.target:g}",
                "met": None if value is None or ratio.target is None else value >= ratio.target,
            }
        )
    rss = results.get("rss")
    if rss:
        for name, value in (
            (f"RSS (MB) with {rss['domains']:,} cached domains loaded", rss["rss_loaded_mb"]),
            (
                f"RSS (MB) after answering {rss['queried']:,} of them once",
                rss["rss_after_queries_mb"],
            ),
        ):
            rows.append(
                {
                    "name": name,
                    "value": value,
                    "paired": [],
                    "of_medians": None,
                    "target": RSS_LIMIT_MB,
                    "goal": f"<= {RSS_LIMIT_MB:g}",
                    "met": value <= RSS_LIMIT_MB,
                }
            )
    return rows


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def markdown(results: Mapping[str, Any]) -> str:
    many = results["settings"]["connections"]
    out: list[str] = []
    out.append(
        "| scenario | conns | server | req/s (range of runs) | p50 ms | p99 ms | CPU server | "
        "CPU generator (busiest proc) | CPU resolver | CPU machine (other load) | "
        "resolver queries | answers |"
    )
    out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for scenario in SCENARIOS:
        for conns in ("1", str(many)):
            for name, target in results["targets"].items():
                run = target.get("scenarios", {}).get(scenario, {}).get(conns)
                if run is None:
                    continue
                flag = "" if run["valid"] else " **INVALID**"
                if run.get("disturbed"):
                    flag += " (disturbed by other load)"
                rates = run.get("rps_runs") or [run["rps"]]
                spread = (
                    f" ({min(rates) / 1000:,.1f}k-{max(rates) / 1000:,.1f}k)"
                    if len(rates) > 1
                    else ""
                )
                queries = run.get("resolver_queries")
                cells = [
                    LABELS[scenario],
                    conns,
                    name,
                    f"{run['rps']:,.0f}{spread}",
                    f"{run['p50_ms']:.3f}",
                    f"{run['p99_ms']:.3f}",
                    f"{run['server_cpu']:.0%}",
                    f"{run['generator_cpu']:.0%} ({run['generator_max_proc_cpu']:.0%})",
                    "-" if queries is None else f"{run['helper_cpu']:.0%}",
                    f"{run['machine_busy']:.2f} ({run['other_cpu']:.2f})",
                    "-" if queries is None else f"{queries:,}",
                    _answers(run) + flag,
                ]
                out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append(
        "| ratio | value (median of per-round ratios) | per-round ratios | "
        "ratio of median rates | goal | met |"
    )
    out.append("|---|---:|---|---:|---:|---|")
    for row in results["ratios"]:
        target = row["goal"] or ""
        met = {None: "", True: "yes", False: "**no**"}[row["met"]]
        paired = ", ".join(f"{p:.2f}" for p in row.get("paired", []))
        of_medians = "" if row.get("of_medians") is None else _fmt(row["of_medians"])
        out.append(
            f"| {row['name']} | {_fmt(row['value'])} | {paired} | {of_medians} | {target} | {met} |"
        )
    herds = {n: t["herd"] for n, t in results["targets"].items() if t.get("herd")}
    if herds:
        out.append("")
        out.append(
            "| cold herd (200 simultaneous first queries, one new domain) | answers | "
            "HTTPS fetches | TLS handshakes | TXT queries | A queries | last answer after (ms) |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|")
        for name, herd in herds.items():
            out.append(
                f"| {name} | {_answers(herd['load'])} | {herd['https_fetches']} | "
                f"{herd['tls_handshakes']} | {herd['txt_queries']} | {herd['a_queries']} | "
                f"{herd['load']['max_ms']:,.1f} |"
            )
    memory = [results[key] for key in ("rss", "rss_shared") if results.get(key)]
    if memory:
        out.append("")
        out.append(
            "| postfix-sts memory, SQLite cache seeded, loaded at start | domains | start-up (s) | "
            "RSS loaded (MB) | domains then asked once | RSS after (MB) | peak RSS (MB) | "
            "empty-cache RSS (MB) |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for rss in memory:
            what = {
                "unique": "each domain its own MX names (worst case)",
                "shared": "domains share 5 providers' policies",
            }.get(rss.get("policies", "unique"), "")
            out.append(
                f"| {what} | {rss['domains']:,} | {rss['startup_s']:.1f} | "
                f"{_fmt(rss['rss_loaded_mb'], 1)} | {rss['queried']:,} | "
                f"{_fmt(rss['rss_after_queries_mb'], 1)} | "
                f"{_fmt(rss['peak_mb'], 1)} | {_fmt(rss.get('baseline_mb'), 1)} |"
            )
    probes = results.get("cpu_probe_ms_before", []) + results.get("cpu_probe_ms_after", [])
    if probes:
        out.append("")
        out.append(
            f"CPU speed probe (fixed Python loop, ms; before and after): min {min(probes):.0f}, "
            f"max {max(probes):.0f}; a wide range means a noisy host, compare ratios, not rates."
        )
    return "\n".join(out)


def _answers(run: Mapping[str, Any]) -> str:
    parts = [
        f"{run[key]:,} {key.upper()}"
        for key in ("ok", "notfound", "temp", "perm", "other")
        if run.get(key)
    ]
    if run.get("errors"):
        parts.append(f"{run['errors']} conn errors")
    if run.get("aborted"):
        parts.append("aborted")
    return ", ".join(parts) or "none"
