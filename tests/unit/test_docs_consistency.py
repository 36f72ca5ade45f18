"""The operator docs stay in step with the code.

* docs/alerts.yml passes ``promtool check rules``, and every alert fires on
  synthetic series (``promtool test rules``);
* every metric named in docs/alerts.yml and docs/grafana-dashboard.json exists in
  the daemon's registry, and the dashboard's queries parse;
* every metric in the registry is described in docs/metrics.md, and every metric
  that docs/metrics.md names exists;
* every config key that postfix_sts/config.py reads is in docs/configuration.md,
  every key documented there is accepted, and the example config uses only
  documented keys;
* every link to a section of docs/operations.md points at an anchor that exists.

promtool comes from Debian's ``prometheus`` package, which tests/run installs.
Without it these tests fail rather than skip.
"""

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from postfix_sts import config
from postfix_sts.errors import ConfigError
from postfix_sts.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
ALERTS = DOCS / "alerts.yml"
DASHBOARD = DOCS / "grafana-dashboard.json"
METRICS_DOC = DOCS / "metrics.md"
CONFIG_DOC = DOCS / "configuration.md"
OPERATIONS_DOC = DOCS / "operations.md"
EXAMPLE_CONFIG = REPO / "conf" / "postfix-sts.toml"

#: Prefixes of the metric names the daemon exports (its own, and the process and
#: platform collectors of prometheus_client).
METRIC_NAME = re.compile(r"\b((?:postfix_sts|process|python)_[a-z0-9_]*[a-z0-9])\b")


def promtool() -> str:
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
    )
    if found is None:
        pytest.fail("promtool not found: install Debian's 'prometheus' package (tests/run does)")
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False
    )


# --------------------------------------------------------------------- the registry


def registry_families() -> dict[str, str]:
    """Metric family name -> type, from a registry built as the daemon builds it."""
    metrics = Metrics("sqlite")
    metrics.watch_cache(dict)  # app.build_service registers the cache's entry counts
    metrics.resolver_validation(True)  # exported once DANE's self-check has run
    return {family.name: family.type for family in metrics.registry.collect()}


def exposed_names(family: str, kind: str) -> set[str]:
    """The sample names Prometheus sees for one metric family."""
    if kind == "counter":
        return {f"{family}_total", f"{family}_created"}
    if kind == "histogram":
        return {f"{family}_{suffix}" for suffix in ("bucket", "sum", "count", "created")}
    if kind == "summary":
        return {f"{family}_{suffix}" for suffix in ("sum", "count", "created")} | {family}
    if kind == "info":
        return {f"{family}_info"}
    return {family}


def documented_name(family: str, kind: str) -> str:
    """The name docs/metrics.md must use for a family: what a query would use."""
    return {"counter": f"{family}_total", "info": f"{family}_info"}.get(kind, family)


@pytest.fixture(scope="module")
def families() -> dict[str, str]:
    return registry_families()


@pytest.fixture(scope="module")
def known_names(families: dict[str, str]) -> set[str]:
    names: set[str] = set()
    for family, kind in families.items():
        names |= exposed_names(family, kind)
    return names


# ------------------------------------------------------------------------ alerts.yml


def test_promtool_accepts_the_alert_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


LOOKUPS = (
    'postfix_sts_lookups_total{instance="mx:9461", answer="%s", profile="default", source="%s"}'
)
FETCHES = 'postfix_sts_policy_fetches_total{instance="mx:9461", outcome="%s"}'
TRANSITIONS = 'postfix_sts_policy_transitions_total{instance="mx:9461", kind="%s"}'


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert: (\S+)\s*$", ALERTS.read_text(), flags=re.MULTILINE)


def test_every_alert_has_for_severity_and_a_runbook_section() -> None:
    text = ALERTS.read_text()
    blocks = re.split(r"^\s*- alert: ", text, flags=re.MULTILINE)[1:]
    assert len(blocks) == len(alert_names()) >= 7
    for block in blocks:
        name = block.split()[0]
        assert re.search(r"^\s+for: \d+[smh]\s*$", block, re.MULTILINE), name
        assert re.search(r"^\s+severity: (critical|warning)\s*$", block, re.MULTILINE), name
        assert re.search(r"^\s+summary: ", block, re.MULTILINE), name
        assert re.search(r"^\s+description: ", block, re.MULTILINE), name
        assert re.search(r'runbook_url: "docs/operations\.md#alert-[a-z-]+"', block), name


#: For each alert: input series (promtool notation, one sample a minute), the time
#: to evaluate at, and the labels the alert must fire with.
FIRING: dict[str, tuple[list[tuple[str, str]], str, dict[str, str]]] = {
    "PostfixStsDown": (
        [('up{job="postfix-sts", instance="mx:9461"}', "1 1 0x10")],
        "10m",
        {"severity": "critical", "job": "postfix-sts", "instance": "mx:9461"},
    ),
    "PostfixStsResolverNotValidating": (
        [('postfix_sts_resolver_validating{job="postfix-sts", instance="mx:9461"}', "0x10")],
        "10m",
        {"severity": "critical", "job": "postfix-sts", "instance": "mx:9461"},
    ),
    "PostfixStsTempAnswersHigh": (
        [
            (LOOKUPS % ("temp", "resolved"), "0+60x30"),
            (LOOKUPS % ("secure", "cache"), "0+600x30"),
        ],
        "25m",
        {"severity": "warning", "instance": "mx:9461"},
    ),
    "PostfixStsFetchFailuresHigh": (
        [(FETCHES % "timeout", "0+6x90"), (FETCHES % "ok", "0+2x90")],
        "75m",
        {"severity": "warning", "instance": "mx:9461"},
    ),
    "PostfixStsDowngradeTransition": (
        # the kind's first transition since the start: the series appears at 1
        [(TRANSITIONS % "txt-disappeared", "_x10 1x20")],
        "15m",
        {"severity": "warning", "instance": "mx:9461", "kind": "txt-disappeared"},
    ),
    "PostfixStsCacheBackendErrors": (
        [('postfix_sts_cache_backend_errors_total{instance="mx:9461"}', "0x5 1x10")],
        "8m",
        {"severity": "critical", "instance": "mx:9461"},
    ),
    "PostfixStsRefreshBacklog": (
        [
            (
                'postfix_sts_refresh_oldest_due_seconds{job="postfix-sts", instance="mx:9461"}',
                "0 700+60x30",
            )
        ],
        "25m",
        {"severity": "warning", "job": "postfix-sts", "instance": "mx:9461"},
    ),
}

#: For each alert: healthy input series and a time at which it must not fire.
QUIET: dict[str, tuple[list[tuple[str, str]], str]] = {
    "PostfixStsDown": ([('up{job="postfix-sts", instance="mx:9461"}', "1x20")], "10m"),
    "PostfixStsResolverNotValidating": (
        [('postfix_sts_resolver_validating{job="postfix-sts", instance="mx:9461"}', "1x10")],
        "10m",
    ),
    "PostfixStsTempAnswersHigh": (
        [(LOOKUPS % ("temp", "resolved"), "5x30"), (LOOKUPS % ("secure", "cache"), "0+600x30")],
        "25m",
    ),
    "PostfixStsFetchFailuresHigh": (
        [(FETCHES % "timeout", "0+1x90"), (FETCHES % "ok", "0+10x90")],
        "75m",
    ),
    "PostfixStsDowngradeTransition": (
        # old transitions, and a kind that is no downgrade
        [(TRANSITIONS % "txt-disappeared", "3x150"), (TRANSITIONS % "id-changed", "0+1x150")],
        "140m",
    ),
    "PostfixStsCacheBackendErrors": (
        [('postfix_sts_cache_backend_errors_total{instance="mx:9461"}', "0x20")],
        "15m",
    ),
    "PostfixStsRefreshBacklog": (
        [('postfix_sts_refresh_oldest_due_seconds{job="postfix-sts", instance="mx:9461"}', "0x30")],
        "25m",
    ),
}


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    assert sorted(alert_names()) == sorted(FIRING) == sorted(QUIET)


def rules_without_annotations(tmp_path: Path) -> Path:
    """alerts.yml without its annotations: promtool compares them in full otherwise."""
    kept, skipping = [], False
    for line in ALERTS.read_text().splitlines():
        indent = len(line) - len(line.lstrip())
        if line.strip() == "annotations:":
            skipping, level = True, indent
            continue
        if skipping and (not line.strip() or indent > level):
            continue
        skipping = False
        kept.append(line)
    path = tmp_path / "alerts-without-annotations.yml"
    path.write_text("\n".join(kept) + "\n")
    return path


def promtool_unit_test(
    tmp_path: Path,
    name: str,
    series: list[tuple[str, str]],
    at: str,
    expected: list[dict[str, str]],
) -> str:
    test = {
        "rule_files": [str(rules_without_annotations(tmp_path))],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [
                    {
                        "eval_time": at,
                        "alertname": name,
                        "exp_alerts": [{"exp_labels": labels} for labels in expected],
                    }
                ],
            }
        ],
    }
    path = tmp_path / f"{name}.test.yml"
    path.write_text(json.dumps(test, indent=2))  # JSON is YAML
    return str(path)


@pytest.mark.parametrize("name", sorted(FIRING))
def test_alert_fires_on_its_condition(name: str, tmp_path: Path) -> None:
    series, at, labels = FIRING[name]
    result = run_promtool("test", "rules", promtool_unit_test(tmp_path, name, series, at, [labels]))
    assert 0 == result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(QUIET))
def test_alert_stays_quiet_when_healthy(name: str, tmp_path: Path) -> None:
    series, at = QUIET[name]
    result = run_promtool("test", "rules", promtool_unit_test(tmp_path, name, series, at, []))
    assert 0 == result.returncode, result.stdout + result.stderr


def test_alerts_use_only_metrics_the_daemon_exports(known_names: set[str]) -> None:
    used = set(METRIC_NAME.findall(ALERTS.read_text()))
    assert used, "no metric names found in alerts.yml"
    assert set() == used - known_names


# -------------------------------------------------------------- grafana-dashboard.json


def panel_exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from panel_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from panel_exprs(item)


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_dashboard_is_importable_json_with_a_datasource_input() -> None:
    board = dashboard()
    assert 39 == board["schemaVersion"]
    assert ["DS_PROMETHEUS"] == [item["name"] for item in board["__inputs"]]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_uses_only_metrics_the_daemon_exports(known_names: set[str]) -> None:
    used = {name for expr in panel_exprs(dashboard()) for name in METRIC_NAME.findall(expr)}
    assert used, "no metric names found in the dashboard"
    assert set() == used - known_names


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses each query, as a recording rule with Grafana's variables filled in."""
    exprs = sorted(set(panel_exprs(dashboard())))
    rules = []
    for number, expr in enumerate(exprs):
        concrete = (
            expr.replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$instance", ".*")
        )
        rules.append({"record": f"dashboard:query_{number}", "expr": concrete})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert 0 == result.returncode, result.stdout + result.stderr


# ------------------------------------------------------------------------ metrics.md


def test_every_registry_metric_is_in_metrics_md(families: dict[str, str]) -> None:
    text = METRICS_DOC.read_text()
    missing = [
        documented_name(family, kind)
        for family, kind in families.items()
        if f"`{documented_name(family, kind)}`" not in text
    ]
    assert [] == missing


def test_metrics_md_names_only_real_metrics(
    families: dict[str, str], known_names: set[str]
) -> None:
    named = set(METRIC_NAME.findall(METRICS_DOC.read_text()))
    assert set() == named - known_names - set(families)


# ------------------------------------------------------------------- configuration.md


def documented_keys() -> dict[str, set[str]]:
    """Section -> keys, from the ``## `[section]` `` tables of docs/configuration.md."""
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in CONFIG_DOC.read_text().splitlines():
        heading = re.match(r"^##\s+`\[([a-z_.A-Z]+)\]`", line)
        if heading:
            current = sections.setdefault(heading[1], set())
            continue
        if line.startswith("## "):
            current = None
            continue
        row = re.match(r"^\|\s*`([a-z_]+)`\s*\|", line)
        if row and current is not None:
            current.add(row[1])
    return sections


def section_name(table: str) -> str:
    """``profiles.NAME`` for any profile table, else the table name."""
    return "profiles.NAME" if table.startswith("profiles.") else table


def keys_read_by_config(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Section -> keys that config.from_dict reads, recorded from its table reads."""
    seen: dict[str, set[str]] = {}
    original = config._Table._get

    def recording_get(self: Any, key: str) -> Any:
        seen.setdefault(section_name(self._name), set()).add(key)
        return original(self, key)

    monkeypatch.setattr(config._Table, "_get", recording_get)
    config.from_dict({"profiles": {"probe": {}}})
    monkeypatch.undo()
    sections = seen.pop("")  # the top level names the sections
    seen.pop("profiles", None)  # its keys are profile names
    assert sections <= set(seen) | {"profiles"}
    return seen


def test_every_config_key_is_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    documented = documented_keys()
    missing = sorted(
        f"[{section}] {key}"
        for section, keys in keys_read_by_config(monkeypatch).items()
        for key in keys
        if key not in documented.get(section, set())
    )
    assert [] == missing, "config keys missing from docs/configuration.md"


def probe(section: str, key: str) -> dict[str, Any]:
    value = {key: "__probe__"}
    if section == "profiles.NAME":
        return {"profiles": {"probe": value}}
    return {section: value}


def test_every_documented_key_is_accepted() -> None:
    rejected = []
    for section, keys in documented_keys().items():
        for key in sorted(keys):
            try:
                config.from_dict(probe(section, key))
            except ConfigError as exc:
                if exc.detail.endswith(": unknown key"):
                    rejected.append(f"[{section}] {key}: {exc.detail}")
    assert [] == rejected


def flatten(data: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for section, table in data.items():
        if section == "profiles":
            for profile in table.values():
                yield from (("profiles.NAME", key) for key in profile)
        else:
            yield from ((section, key) for key in table)


def test_example_config_loads_and_uses_only_documented_keys() -> None:
    data = tomllib.loads(EXAMPLE_CONFIG.read_text())
    config.from_dict(data)
    documented = documented_keys()
    undocumented = sorted(
        f"[{section}] {key}"
        for section, key in flatten(data)
        if key not in documented.get(section, set())
    )
    assert [] == undocumented


# ---------------------------------------------------------- links into operations.md


def github_slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def operations_anchors() -> set[str]:
    text = OPERATIONS_DOC.read_text()
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    anchors |= {github_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}
    return anchors


def test_links_to_operations_sections_resolve() -> None:
    anchors = operations_anchors()
    links: set[tuple[str, str]] = set()
    for path in [*DOCS.glob("*.md"), ALERTS, DASHBOARD, REPO / "README.md"]:
        text = path.read_text()
        links |= {(path.name, a) for a in re.findall(r"operations\.md#([\w-]+)", text)}
        if path == OPERATIONS_DOC:
            links |= {(path.name, a) for a in re.findall(r"\]\(#([\w-]+)\)", text)}
    assert links, "no links into operations.md found"
    assert [] == sorted(link for link in links if link[1] not in anchors)
