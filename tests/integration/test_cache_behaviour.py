"""RFC 8461 sections 3.3, 5.1 and 10.2 end to end: what the cache does over time.

Fetches are counted at the world's HTTPS server and TXT queries at its unbound.
"""

import signal
import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.daemon import Daemon, eventually
from tests.world import World

StartDaemon = Callable[..., Daemon]


def policy(*mx: str, mode: str = "enforce", max_age: int = 86400) -> str:
    return (
        "\n".join(
            ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
        )
        + "\n"
    )


def secure(*mx: str) -> str:
    return f"secure match={':'.join(mx)} servername=hostname"


@pytest.fixture
def resolver_restored(world: World) -> Iterator[None]:
    """Tests that stop the world's resolver get it back afterwards."""
    yield
    if not world.dns.resolver_running:
        world.dns.start_resolver()


def test_cached_answer_needs_no_dns_or_https(world: World, start_daemon: StartDaemon) -> None:
    world.publish_sts("hot.cache.test", policy("mx.hot.test"))
    daemon = start_daemon()
    world.dns.reset_query_counts()
    world.https.reset_counts()
    for _ in range(20):
        assert daemon.query("hot.cache.test") == ["OK " + secure("mx.hot.test")]
    assert world.dns.query_count("_mta-sts.hot.cache.test", "TXT") == 1
    assert world.https.requests("mta-sts.hot.cache.test") == 1


def test_unchanged_id_is_rechecked_but_not_refetched(
    world: World, start_daemon: StartDaemon
) -> None:
    """Section 3.3/5.1: the TXT is re-checked after the interval; same id → no fetch (#84)."""
    world.publish_sts("sameid.cache.test", policy("mx.sameid.test"), policy_id="A1")
    daemon = start_daemon(sts={"txt_recheck_interval": 1})
    world.dns.reset_query_counts()
    world.https.reset_counts()
    assert daemon.postmap("sameid.cache.test") == secure("mx.sameid.test")
    time.sleep(1.2)
    assert daemon.postmap("sameid.cache.test") == secure("mx.sameid.test")
    assert eventually(lambda: world.dns.query_count("_mta-sts.sameid.cache.test", "TXT") >= 2)
    assert eventually(lambda: "reason=id-unchanged" in daemon.log())
    assert world.https.requests("mta-sts.sameid.cache.test") == 1


def test_changed_id_is_refetched_and_replaces_the_policy(
    world: World, start_daemon: StartDaemon
) -> None:
    """Section 3.3: a new id means a new policy (#85)."""
    world.publish_sts("newid.cache.test", policy("old.newid.test"), policy_id="1")
    daemon = start_daemon(sts={"txt_recheck_interval": 1})
    world.https.reset_counts()
    assert daemon.postmap("newid.cache.test") == secure("old.newid.test")
    world.publish_sts("newid.cache.test", policy("new.newid.test"), policy_id="2")
    time.sleep(1.2)
    assert eventually(lambda: daemon.postmap("newid.cache.test") == secure("new.newid.test"))
    assert world.https.requests("mta-sts.newid.cache.test") == 2


def test_policy_server_gone_keeps_the_cached_policy(
    world: World, start_daemon: StartDaemon
) -> None:
    """Section 3.3 "Conversely": a failed fetch never drops an unexpired policy (#86)."""
    world.publish_sts("gone.cache.test", policy("mx.gone.test"), policy_id="1")
    daemon = start_daemon(sts={"txt_recheck_interval": 1, "fetch_retry_interval": 1})
    assert daemon.postmap("gone.cache.test") == secure("mx.gone.test")
    world.https.unserve("mta-sts.gone.cache.test")
    world.publish_sts("gone.cache.test", None, policy_id="2")
    time.sleep(1.2)
    daemon.postmap("gone.cache.test")
    assert eventually(lambda: "reason=cached-kept-fetch-tls-invalid" in daemon.log())
    assert daemon.postmap("gone.cache.test") == secure("mx.gone.test")


def test_txt_record_removed_keeps_the_cached_policy(
    world: World, start_daemon: StartDaemon
) -> None:
    """Section 3.1 note, section 5.1: a vanished TXT is not an opt-out (#88)."""
    world.publish_sts("vanish.cache.test", policy("mx.vanish.test"))
    daemon = start_daemon(sts={"txt_recheck_interval": 1})
    assert daemon.postmap("vanish.cache.test") == secure("mx.vanish.test")
    world.remove_sts_txt("vanish.cache.test")
    time.sleep(1.2)
    daemon.postmap("vanish.cache.test")
    assert eventually(lambda: "reason=cached-kept-no-txt" in daemon.log())
    assert daemon.postmap("vanish.cache.test") == secure("mx.vanish.test")


def test_mode_none_with_new_id_ends_enforcement(world: World, start_daemon: StartDaemon) -> None:
    """Section 5 item 3 / section 8.3: opting out by publishing mode none (#90)."""
    world.publish_sts("optout.cache.test", policy("mx.optout.test"), policy_id="1")
    daemon = start_daemon(sts={"txt_recheck_interval": 1})
    assert daemon.postmap("optout.cache.test") == secure("mx.optout.test")
    world.publish_sts("optout.cache.test", policy(mode="none"), policy_id="2")
    time.sleep(1.2)
    assert eventually(lambda: daemon.postmap("optout.cache.test") == "NOTFOUND")


def test_invalid_new_policy_keeps_the_cached_one(world: World, start_daemon: StartDaemon) -> None:
    """Section 3.3 (#91)."""
    world.publish_sts("badnew.cache.test", policy("mx.badnew.test"), policy_id="1")
    daemon = start_daemon(sts={"txt_recheck_interval": 1, "fetch_retry_interval": 1})
    assert daemon.postmap("badnew.cache.test") == secure("mx.badnew.test")
    world.publish_sts("badnew.cache.test", "version: STSv1\nmode: enforce\n", policy_id="2")
    time.sleep(1.2)
    daemon.postmap("badnew.cache.test")
    assert eventually(lambda: "reason=cached-kept-invalid-policy" in daemon.log())
    assert daemon.postmap("badnew.cache.test") == secure("mx.badnew.test")


def test_expired_policy_is_never_served(world: World, start_daemon: StartDaemon) -> None:
    """Section 3.2 max_age: past fetched_at + max_age with no new fetch → NOTFOUND (#87, #92)."""
    world.publish_sts("expire.cache.test", policy("mx.expire.test", max_age=2), policy_id="1")
    daemon = start_daemon()
    assert daemon.postmap("expire.cache.test") == secure("mx.expire.test")
    world.https.unserve("mta-sts.expire.cache.test")
    world.publish_sts("expire.cache.test", None, policy_id="2")
    time.sleep(2.2)
    assert daemon.postmap("expire.cache.test") == "NOTFOUND"


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "kill-9"])
def test_restarted_daemon_with_dns_down_still_serves_the_cached_policy(
    world: World, start_daemon: StartDaemon, resolver_restored: None, how: signal.Signals
) -> None:
    """Section 10.2: a persistent cache defeats a downgrade by blocking DNS later (#97)."""
    domain = f"persist{how.value}.cache.test"
    world.publish_sts(domain, policy(f"mx.{domain}"))
    daemon = start_daemon(dns={"timeout": 1.0})
    assert daemon.postmap(domain) == secure(f"mx.{domain}")
    daemon.stop(how)
    world.dns.stop_resolver()
    world.https.unserve(f"mta-sts.{domain}")
    daemon.start()
    assert daemon.postmap(domain) == secure(f"mx.{domain}")
    # a domain never seen: its DANE check cannot be made with DNS down, so the mail
    # is deferred (TEMP) rather than sent without knowing (RFC 7672 section 2.1.2)
    answer = daemon.query("never-seen.cache.test")[0]
    assert answer.startswith("TEMP DANE: MX never-seen.cache.test")


def test_memory_backend_forgets_on_restart(
    world: World, start_daemon: StartDaemon, resolver_restored: None
) -> None:
    world.publish_sts("volatile.cache.test", policy("mx.volatile.test"))
    daemon = start_daemon(cache={"backend": "memory"}, dns={"timeout": 1.0})
    assert daemon.postmap("volatile.cache.test") == secure("mx.volatile.test")
    daemon.stop()
    world.dns.stop_resolver()
    daemon.start()
    answer = daemon.query("volatile.cache.test")[0]
    assert answer.startswith("TEMP DANE: MX volatile.cache.test: timed out")
