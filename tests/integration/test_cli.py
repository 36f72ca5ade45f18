"""``postfix-sts query`` explains a domain; config errors are one clear line."""

import json
from pathlib import Path

from tests.integration.daemon import render_toml, run_cli, world_config
from tests.world import World


def cli_config(world: World, tmp_path: Path) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(
        render_toml(world_config(world, tmp_path / "unused.sqlite3", cache={"backend": "memory"}))
    )
    return path


def test_query_json_explains_txt_policy_and_answer(world: World, tmp_path: Path) -> None:
    body = "version: STSv1\nmode: enforce\nmx: mx.cli.test\nmax_age: 604800\n"
    world.publish_sts("cli.test", body, policy_id="20260101")
    result = run_cli("query", "CLI.test", "--json", "--config", str(cli_config(world, tmp_path)))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["answer"] == "OK secure match=mx.cli.test servername=hostname"
    assert report["txt"]["records"] == ["v=STSv1; id=20260101;"]
    assert report["txt"]["id"] == "20260101"
    assert report["fetch"]["ok"] is True
    assert report["fetch"]["mode"] == "enforce"
    assert report["fetch"]["max_age"] == 604800
    assert report["fetch"]["policy"] == body
    assert report["decision"]["reason"] == "fetched"


def test_query_names_the_failed_step_and_reason(world: World, tmp_path: Path) -> None:
    world.publish_sts(
        "clibad.test", "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\n", status=404
    )
    result = run_cli("query", "clibad.test", "--config", str(cli_config(world, tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "answer:   NOTFOUND" in result.stdout
    assert "fetch:    failed" in result.stdout
    assert "fetch-http-status" in result.stdout
    assert "HTTP 404" in result.stdout


def test_query_of_a_parent_probe_says_why_nothing_is_looked_up() -> None:
    result = run_cli("query", ".example.test")
    assert result.returncode == 0
    assert "parent-domain probe" in result.stdout


def test_bad_config_value_is_one_line_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[sts]\nfetch_timeout = "soon"\n')
    result = run_cli("serve", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "postfix-sts: config error: [sts] fetch_timeout: must be a number greater than 0, "
        "got 'soon'"
    ]


def test_unknown_config_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('[dns]\nnameserver = ["127.0.0.1"]\n')
    result = run_cli("serve", "--config", str(path))
    assert result.returncode == 2
    assert "[dns] nameserver: unknown key" in result.stderr
