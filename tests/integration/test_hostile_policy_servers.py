"""Policy servers that misbehave: each is a fetch failure with its own reason.

With nothing cached, a failed fetch is fail-open (RFC 8461 section 3.3: deliver
as if the domain had no policy), so Postfix gets NOTFOUND; the reason reaches
the daemon's log.  A cached policy is never replaced by a failure (see
test_cache_behaviour.py).
"""

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.daemon import Daemon
from tests.world import World

StartDaemon = Callable[..., Daemon]
GOOD = "version: STSv1\nmode: enforce\nmx: mx.hostile.test\nmax_age: 86400\n"


@pytest.mark.parametrize(
    ("name", "serve", "reason"),
    [
        ("notfound404", {"status": 404}, "fetch-http-status"),
        ("status204", {"status": 204}, "fetch-http-status"),
        (
            "redirect",
            {"status": 301, "location": "https://mta-sts.enforce.test/.well-known/mta-sts.txt"},
            "fetch-redirect",
        ),
        ("html", {"content_type": "text/html"}, "fetch-content-type"),
        ("notype", {"content_type": None}, "fetch-content-type"),
        ("expired", {"cert": "expired"}, "fetch-tls-invalid"),
        ("wrongname", {"cert": "wrong-name"}, "fetch-tls-invalid"),
        ("untrusted", {"cert": "untrusted"}, "fetch-tls-invalid"),
        ("cnonly", {"cert": "cn-only"}, "fetch-tls-invalid"),
    ],
)
def test_misbehaving_policy_server_gives_notfound_with_reason(
    world: World, start_daemon: StartDaemon, name: str, serve: dict[str, Any], reason: str
) -> None:
    """RFC 8461 section 3.3 (checklist #31-#45)."""
    domain = f"{name}.hostile.test"
    world.publish_sts(domain, GOOD, **serve)
    daemon = start_daemon()
    assert daemon.postmap(domain) == "NOTFOUND"
    assert f"domain={domain} policy=none reason={reason}" in daemon.log()


def test_body_over_64_kib_is_refused(world: World, start_daemon: StartDaemon) -> None:
    """RFC 8461 section 3.3: 64 KiB body limit (checklist #42)."""
    big = GOOD + "x-pad: " + "a" * (64 * 1024) + "\n"
    world.publish_sts("big.hostile.test", big)
    daemon = start_daemon()
    assert daemon.postmap("big.hostile.test") == "NOTFOUND"
    assert "domain=big.hostile.test policy=none reason=fetch-too-large" in daemon.log()


def test_body_of_exactly_64_kib_is_accepted(world: World, start_daemon: StartDaemon) -> None:
    """The limit is inclusive (checklist #42)."""
    head = GOOD + "x-pad: "
    body = head + "a" * (64 * 1024 - len(head) - 1) + "\n"
    assert len(body.encode()) == 64 * 1024
    world.publish_sts("edge.hostile.test", body.replace("mx.hostile.test", "mx.edge.test"))
    daemon = start_daemon()
    assert daemon.postmap("edge.hostile.test") == "secure match=mx.edge.test servername=hostname"


def test_slow_drip_is_cut_off_at_the_fetch_deadline(
    world: World, start_daemon: StartDaemon
) -> None:
    """One deadline for the whole fetch, however the server trickles (checklist #43)."""
    world.publish_sts("drip.hostile.test", GOOD, drip_interval=0.2)
    daemon = start_daemon(sts={"fetch_timeout": 2.0})
    assert daemon.postmap("drip.hostile.test") == "NOTFOUND"
    assert "domain=drip.hostile.test policy=none reason=fetch-timeout" in daemon.log()


def test_invalid_policy_body_gives_notfound(world: World, start_daemon: StartDaemon) -> None:
    world.publish_sts("badbody.hostile.test", "version: STSv1\nmode: enforce\nmax_age: 86400\n")
    daemon = start_daemon()
    assert daemon.postmap("badbody.hostile.test") == "NOTFOUND"
    assert "domain=badbody.hostile.test policy=none reason=invalid-policy" in daemon.log()


def test_policy_host_without_address_gives_notfound(
    world: World, start_daemon: StartDaemon
) -> None:
    world.dns.set("_mta-sts.noaddr.hostile.test", "TXT", ['"v=STSv1; id=1;"'])
    world.dns.apply()
    daemon = start_daemon()
    assert daemon.postmap("noaddr.hostile.test") == "NOTFOUND"
    assert "reason=fetch-no-address" in daemon.log()


def test_private_policy_address_is_not_contacted_by_default(
    world: World, start_daemon: StartDaemon
) -> None:
    """allow_private_addresses = false: loopback policy hosts are refused."""
    world.publish_sts("private.hostile.test", GOOD)
    daemon = start_daemon(sts={"allow_private_addresses": False})
    assert daemon.postmap("private.hostile.test") == "NOTFOUND"
    assert "reason=fetch-private-address" in daemon.log()
    assert world.https.requests("mta-sts.private.hostile.test") == 0
