"""Command line: ``postfix-sts serve`` and ``postfix-sts query DOMAIN``.

No logic of its own: it parses arguments, loads the config, and calls
:mod:`postfix_sts.app` or the service.  A bad config prints one line naming the
key and exits with status 2.
"""

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from postfix_sts import __version__, app, cache_tools, config, logs
from postfix_sts.clock import SystemClock
from postfix_sts.core.answer import NOTFOUND, Answer
from postfix_sts.core.cache_rules import Failure
from postfix_sts.core.query import NotADomain, normalize_key
from postfix_sts.core.render import render_dane, render_policy
from postfix_sts.core.sts_policy import StsPolicy
from postfix_sts.core.sts_txt import StsRecord
from postfix_sts.dane_resolver import DaneReport
from postfix_sts.errors import ConfigError
from postfix_sts.metrics import Metrics
from postfix_sts.service import PolicyService, Resolution

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup(args.log_level)
    try:
        cfg = config.load(args.config)
        if args.command == "serve":
            app.run(cfg, args.config)
            return 0
        if args.command == "cache":
            return cache_tools.run(cfg, args)
        return _query(cfg, args.domain, args.map, as_json=args.json)
    except ConfigError as exc:
        print(f"postfix-sts: config error: {exc.detail}", file=sys.stderr)
        return EXIT_CONFIG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="postfix-sts", description=__doc__)
    parser.add_argument("--version", action="version", version=f"postfix-sts {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML config file (default: built-in)")
    common.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", parents=[common], help="run the policy daemon")
    query = commands.add_parser(
        "query", parents=[common], help="resolve one domain now and explain the answer"
    )
    query.add_argument("domain")
    query.add_argument("--map", default="default", help="socketmap map name (profile)")
    query.add_argument("--json", action="store_true", help="machine-readable output")
    cache = commands.add_parser(
        "cache", help="inspect, purge or export the SQLite policy cache (list/show/purge/export)"
    )
    cache_tools.add_arguments(cache, common)
    return parser


def _query(cfg: config.Config, key: str, map_name: str, *, as_json: bool) -> int:
    domain = normalize_key(key)
    if isinstance(domain, NotADomain):
        report: dict[str, Any] = {"key": key, "answer": _wire(NOTFOUND), "reason": domain.reason}
    else:
        metrics = Metrics(cfg.cache_backend)
        service, cache = app.build_service(cfg, SystemClock(), metrics, durable=False)
        dane, resolution = asyncio.run(_resolve_both(service, domain, cfg.dane_enabled))
        cache.close()
        entry = resolution.outcome.entry
        answer = render_dane(dane[2].verdict) if dane is not None else None
        if answer is None:
            profile = cfg.profile(map_name)
            answer = render_policy(domain, entry.policy, profile) if entry else NOTFOUND
        report = {"key": key, "answer": _wire(answer), **_explain(resolution)}
        report["dane"] = _explain_dane(*dane) if dane is not None else {"enabled": False}
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_human(report)
    return 0


async def _resolve_both(
    service: PolicyService, domain: str, dane_enabled: bool
) -> tuple[tuple[bool, str, DaneReport] | None, Resolution]:
    """Both halves, so the explanation shows MTA-STS even where DANE decides."""
    dane = None
    if dane_enabled:
        validating, detail = await service.check_validation()
        dane = (validating, detail, await service.explain_dane(domain))
    return dane, await service.resolve(domain)


def _explain_dane(validating: bool, detail: str, report: DaneReport) -> dict[str, Any]:
    verdict = report.verdict
    return {
        "enabled": True,
        "resolver_validating": validating,
        "validation_detail": detail,
        "mx": {
            "status": report.mx_status,
            "authenticated": report.mx_secure,
            "records": list(report.mx_records),
        },
        "hosts": [
            {
                "name": host.name,
                "preference": host.preference,
                "state": host.state.value,
                "tlsa_name": host.tlsa_name,
                "tlsa": [
                    {
                        "record": f"{r.usage} {r.selector} {r.mtype} {r.data.hex()}",
                        "usable": r.usable(),
                    }
                    for r in host.tlsa
                ],
            }
            for host in report.hosts
        ],
        "verdict": verdict.level.value if verdict.level else "temp" if verdict.temp else "none",
        "reason": verdict.reason,
        "cache_seconds": report.ttl,
    }


def _wire(answer: Answer) -> str:
    return answer.socketmap_payload().decode()


def _explain(resolution: Resolution) -> dict[str, Any]:
    txt = resolution.txt
    discovery = resolution.discovery
    result: dict[str, Any] = {
        "domain": resolution.domain,
        "txt": {
            "name": f"_mta-sts.{resolution.domain}",
            "status": txt.status if txt else "error",
            "records": [b"".join(r).decode("ascii", "replace") for r in txt.records] if txt else [],
            "id": discovery.id if isinstance(discovery, StsRecord) else None,
            "error": None
            if isinstance(discovery, StsRecord)
            else {"reason": discovery.reason, "detail": discovery.detail},
            "ms": round(resolution.dns_seconds * 1000, 1),
        },
        "fetch": None,
        "decision": {"reason": resolution.outcome.reason, "detail": resolution.outcome.detail},
    }
    fetched = resolution.fetched
    if isinstance(fetched, StsPolicy):
        entry = resolution.outcome.entry
        result["fetch"] = {
            "ok": True,
            "mode": fetched.mode.value,
            "max_age": fetched.max_age,
            "mx": list(fetched.mx),
            "expires": _iso(entry.expires_at) if entry else None,
            "policy": fetched.text,
            "ms": round((resolution.fetch_seconds or 0) * 1000, 1),
        }
    elif isinstance(fetched, Failure):
        result["fetch"] = {
            "ok": False,
            "reason": fetched.reason,
            "detail": fetched.detail,
            "ms": round((resolution.fetch_seconds or 0) * 1000, 1),
        }
    return result


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _print_human(report: dict[str, Any]) -> None:
    print(f"answer:   {report['answer']}")
    if "reason" in report:
        print(f"why:      {report['key']!r} is not looked up: {report['reason']}")
        return
    _print_dane(report["dane"])
    txt = report["txt"]
    print(f"domain:   {report['domain']}")
    print(f"TXT:      {txt['name']} -> {txt['status']} ({txt['ms']} ms)")
    for record in txt["records"]:
        print(f"          {record!r}")
    if txt["id"]:
        print(f"          id={txt['id']}")
    else:
        print(f"          no policy: {txt['error']['reason']}: {txt['error']['detail']}")
    fetch = report["fetch"]
    if fetch and fetch["ok"]:
        print(
            f"fetch:    ok ({fetch['ms']} ms): mode {fetch['mode']}, max_age {fetch['max_age']}"
            f", expires {fetch['expires']}"
        )
        print(f"          mx: {', '.join(fetch['mx']) or '-'}")
        for line in fetch["policy"].splitlines():
            print(f"          | {line}")
    elif fetch:
        print(f"fetch:    failed ({fetch['ms']} ms): {fetch['reason']}: {fetch['detail']}")
    decision = report["decision"]
    print(f"decision: {decision['reason']}: {decision['detail']}")


def _print_dane(dane: dict[str, Any]) -> None:
    if not dane["enabled"]:
        print("DANE:     disabled in the config")
        return
    state = "validates" if dane["resolver_validating"] else "DOES NOT VALIDATE"
    print(f"DANE:     {dane['verdict']}: {dane['reason']}")
    print(f"          resolver {state}: {dane['validation_detail']}")
    mx = dane["mx"]
    auth = "authenticated" if mx["authenticated"] else "not authenticated"
    print(f"          MX {mx['status']}, {auth}: {', '.join(mx['records']) or '-'}")
    for host in dane["hosts"]:
        print(
            f"          host {host['name']} (pref {host['preference']}): {host['state']}"
            + (f", TLSA at {host['tlsa_name']}" if host["tlsa"] else "")
        )
        for record in host["tlsa"]:
            usable = "usable" if record["usable"] else "unusable"
            print(f"            {record['record'][:80]} ({usable})")
