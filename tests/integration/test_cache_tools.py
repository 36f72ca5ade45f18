"""``postfix-sts cache list|show|purge|export`` against a live daemon's SQLite cache.

Each test publishes its own domains in the shared world, lets a running daemon
fetch and cache them, then runs the cache tools as separate processes on the
daemon's config, the way an operator would while the daemon keeps serving.
"""

import calendar
import json
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon, eventually, render_toml, run_cli
from tests.world import World

StartDaemon = Callable[..., Daemon]


def policy(*mx: str, mode: str = "enforce", max_age: int = 86400) -> str:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "\n".join(lines) + "\n"


def cache_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("cache", *args, "--config", str(config))


def listed(daemon: Daemon) -> dict[str, dict[str, Any]]:
    result = cache_cli(daemon.config_path, "list", "--json")
    assert result.returncode == 0, result.stderr
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return {entry["domain"]: entry for entry in entries}


def epoch(iso: str) -> int:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def postmap_q(daemon: Daemon, key: str, table: str) -> str:
    postmap = shutil.which("postmap") or "/usr/sbin/postmap"
    result = subprocess.run(
        [postmap, "-c", str(daemon.postfix_dir), "-q", key, table],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.stdout.strip() if result.returncode == 0 else "NOTFOUND"


ONE_ANSWER = "secure match=.one.tools.test:mx1.one.tools.test servername=hostname"
TWO_ANSWER = "secure match=mx.two.tools.test servername=hostname"


@pytest.fixture
def daemon_with_policies(world: World, start_daemon: StartDaemon) -> Daemon:
    """A daemon that has fetched two enforce policies and one testing policy."""
    world.publish_sts(
        "one.tools.test", policy("mx1.one.tools.test", "*.one.tools.test"), policy_id="101"
    )
    world.publish_sts(
        "two.tools.test", policy("mx.two.tools.test", max_age=604800), policy_id="202"
    )
    world.publish_sts(
        "three.tools.test", policy("mx.three.tools.test", mode="testing"), policy_id="303"
    )
    daemon = start_daemon()
    answers = daemon.query("one.tools.test", "two.tools.test", "three.tools.test")
    assert answers == ["OK " + ONE_ANSWER, "OK " + TWO_ANSWER, "NOTFOUND "]
    return daemon


def test_list_shows_every_cached_policy_sorted(daemon_with_policies: Daemon) -> None:
    now = time.time()
    result = cache_cli(daemon_with_policies.config_path, "list", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [e["domain"] for e in entries] == [
        "one.tools.test",
        "three.tools.test",
        "two.tools.test",
    ]
    one, three, two = entries
    assert (one["mode"], one["id"], one["expired"]) == ("enforce", "101", False)
    assert (three["mode"], three["id"]) == ("testing", "303")
    assert (two["mode"], two["id"], two["max_age"]) == ("enforce", "202", 604800)
    assert one["mx"] == ["mx1.one.tools.test", "*.one.tools.test"]
    fetched = epoch(two["fetched"])
    assert now - 60 <= fetched <= now + 1
    assert epoch(two["expires"]) == fetched + 604800
    assert epoch(one["expires"]) == epoch(one["fetched"]) + 86400
    assert fetched <= epoch(two["next_check"])

    human = cache_cli(daemon_with_policies.config_path, "list")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["one.tools.test", "enforce", "id=101"],
        ["three.tools.test", "testing", "id=303"],
        ["two.tools.test", "enforce", "id=202"],
    ]
    assert f"expires={two['expires']}" in lines[2]
    assert not any(line.endswith("expired") for line in lines)


def test_show_gives_the_policy_and_the_postfix_answer(daemon_with_policies: Daemon) -> None:
    result = cache_cli(daemon_with_policies.config_path, "show", "ONE.Tools.Test.", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["domain"] == "one.tools.test"
    assert shown["id"] == "101"
    assert shown["mode"] == "enforce"
    assert shown["policy"] == policy("mx1.one.tools.test", "*.one.tools.test")
    assert shown["answer"] == "OK " + ONE_ANSWER
    assert shown["profile"] == "default"
    assert shown["expired"] is False

    human = cache_cli(daemon_with_policies.config_path, "show", "three.tools.test")
    assert human.returncode == 0, human.stderr
    assert "answer:     NOTFOUND" in human.stdout
    assert "  | mode: testing" in human.stdout


def test_show_of_an_uncached_domain_exits_1(daemon_with_policies: Daemon) -> None:
    result = cache_cli(daemon_with_policies.config_path, "show", "never.tools.test")
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no cached policy for never.tools.test" in result.stderr


def test_export_writes_a_postfix_table_that_matches_the_daemon(
    daemon_with_policies: Daemon, tmp_path: Path
) -> None:
    daemon = daemon_with_policies
    out_dir = tmp_path / "tables"
    out_dir.mkdir()
    table = out_dir / "mta-sts-fallback"
    table.write_text("stale.tools.test secure match=old\n")  # replaced atomically
    result = cache_cli(daemon.config_path, "export", "--output", str(table))
    assert result.returncode == 0, result.stderr
    assert "exported 2 policies" in result.stdout
    text = table.read_text()
    assert table_lines(text) == [f"one.tools.test {ONE_ANSWER}", f"two.tools.test {TWO_ANSWER}"]
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("Exported 20" in line for line in header)
    assert any("fallback" in line for line in header)
    assert any("texthash:" in line for line in header)
    assert sorted(p.name for p in out_dir.iterdir()) == ["mta-sts-fallback"]  # no temp file left
    for domain in ("one.tools.test", "two.tools.test", "three.tools.test"):
        assert postmap_q(daemon, domain, f"texthash:{table}") == daemon.postmap(domain)

    stdout = cache_cli(daemon.config_path, "export")
    assert stdout.returncode == 0, stdout.stderr
    assert table_lines(stdout.stdout) == table_lines(text)


def test_export_includes_testing_when_the_default_profile_enforces_it(
    daemon_with_policies: Daemon, tmp_path: Path
) -> None:
    config = tomllib.loads(daemon_with_policies.config_path.read_text())
    config["profiles.default"] = {"testing": "enforce"}
    strict = tmp_path / "strict.toml"
    strict.write_text(render_toml(config))
    result = cache_cli(strict, "export")
    assert result.returncode == 0, result.stderr
    assert table_lines(result.stdout) == [
        f"one.tools.test {ONE_ANSWER}",
        "three.tools.test secure match=mx.three.tools.test servername=hostname",
        f"two.tools.test {TWO_ANSWER}",
    ]


def test_purge_one_domain_makes_the_running_daemon_fetch_it_again(
    world: World, start_daemon: StartDaemon
) -> None:
    world.publish_sts("gone.tools.test", policy("mx.gone.tools.test"), policy_id="7")
    world.publish_sts("kept.tools.test", policy("mx.kept.tools.test"), policy_id="8")
    daemon = start_daemon()
    assert (
        daemon.postmap("gone.tools.test") == "secure match=mx.gone.tools.test servername=hostname"
    )
    assert (
        daemon.postmap("kept.tools.test") == "secure match=mx.kept.tools.test servername=hostname"
    )
    gone_fetches = world.https.requests("mta-sts.gone.tools.test")
    kept_fetches = world.https.requests("mta-sts.kept.tools.test")

    result = cache_cli(daemon.config_path, "purge", "Gone.Tools.Test.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["purged gone.tools.test (policy id 7)"]
    assert eventually(lambda: list(listed(daemon)) == ["kept.tools.test"])

    # Within about a second the daemon drops the purged policy from memory, so the
    # next lookup fetches it again (and caches it again); the other one is untouched.
    def refetched() -> bool:
        answer = daemon.query("gone.tools.test")
        assert answer == ["OK secure match=mx.gone.tools.test servername=hostname"]
        return world.https.requests("mta-sts.gone.tools.test") == gone_fetches + 1

    assert eventually(refetched), "the running daemon kept serving the purged policy"
    assert daemon.query("kept.tools.test") == [
        "OK secure match=mx.kept.tools.test servername=hostname"
    ]
    assert world.https.requests("mta-sts.kept.tools.test") == kept_fetches
    assert sorted(listed(daemon)) == ["gone.tools.test", "kept.tools.test"]


def test_purge_all_needs_the_flag_and_empties_the_cache(daemon_with_policies: Daemon) -> None:
    config = daemon_with_policies.config_path
    bare = cache_cli(config, "purge")
    assert bare.returncode == 2
    assert "required" in bare.stderr
    assert len(listed(daemon_with_policies)) == 3

    missing = cache_cli(config, "purge", "never.tools.test")
    assert missing.returncode == 1
    assert "nothing purged" in missing.stderr

    result = cache_cli(config, "purge", "--all")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "purged one.tools.test (policy id 101)",
        "purged three.tools.test (policy id 303)",
        "purged two.tools.test (policy id 202)",
        "purged 3 policies",
    ]
    assert eventually(lambda: listed(daemon_with_policies) == {})


@pytest.mark.parametrize(
    "args", [["list"], ["show", "x.tools.test"], ["purge", "--all"], ["export"]]
)
def test_memory_backend_is_refused_with_one_line(tmp_path: Path, args: list[str]) -> None:
    config = tmp_path / "memory.toml"
    config.write_text('[cache]\nbackend = "memory"\n')
    result = cache_cli(config, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "memory" in lines[0]
    assert "sqlite" in lines[0]


def test_missing_database_is_reported_and_not_created(tmp_path: Path) -> None:
    database = tmp_path / "state" / "cache.sqlite3"
    config = tmp_path / "absent.toml"
    config.write_text(render_toml({"cache": {"backend": "sqlite", "path": str(database)}}))
    for args in (["list"], ["purge", "--all"], ["export"]):
        result = cache_cli(config, *args)
        assert result.returncode == 2
        assert "no cache database" in result.stderr
    assert not database.parent.exists()
