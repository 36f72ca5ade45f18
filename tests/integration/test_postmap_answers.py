"""What Postfix's own client gets from the running daemon, per kind of policy.

Every test publishes its own domain in the shared world, starts a daemon pointed
at the world's unbound and policy server, and asks through
``postmap -q KEY socketmap:inet:127.0.0.1:PORT:NAME``.
"""

from collections.abc import Callable

import pytest

from tests.integration.daemon import Daemon
from tests.world import World

StartDaemon = Callable[..., Daemon]


def policy(mode: str, *mx: str, max_age: int = 86400) -> str:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "\n".join(lines) + "\n"


def test_enforce_policy_gives_secure_with_the_policy_mx_hosts(
    world: World, start_daemon: StartDaemon
) -> None:
    """RFC 8461 section 5: enforce → secure to the listed MX hosts, SNI = hostname (#106)."""
    world.publish_sts("enforce.test", policy("enforce", "mx2.enforce.test", "mx1.enforce.test"))
    daemon = start_daemon()
    assert daemon.postmap("enforce.test") == (
        "secure match=mx1.enforce.test:mx2.enforce.test servername=hostname"
    )


def test_wildcard_mx_becomes_postfix_parent_domain_pattern(
    world: World, start_daemon: StartDaemon
) -> None:
    """``*.wild.test`` is written as Postfix's ``.wild.test`` (checklist #105)."""
    world.publish_sts("wild.test", policy("enforce", "*.wild.test", "mail.other.test"))
    daemon = start_daemon()
    assert (
        daemon.postmap("wild.test") == "secure match=.wild.test:mail.other.test servername=hostname"
    )


def test_testing_policy_is_not_enforced_by_default(world: World, start_daemon: StartDaemon) -> None:
    """RFC 8461 section 5 item 2: testing must not block delivery (#107)."""
    world.publish_sts("testing.test", policy("testing", "mx.testing.test"))
    daemon = start_daemon(profiles={"strict": {"testing": "enforce"}})
    assert daemon.postmap("testing.test", map_name="postfix") == "NOTFOUND"
    assert daemon.postmap("testing.test", map_name="strict") == (
        "secure match=mx.testing.test servername=hostname"
    )


def test_none_policy_gives_notfound(world: World, start_daemon: StartDaemon) -> None:
    """RFC 8461 section 5 item 3 (#108)."""
    world.publish_sts("none.test", policy("none"))
    daemon = start_daemon()
    assert daemon.postmap("none.test") == "NOTFOUND"
    assert "policy=none id=1 reason=fetched" in daemon.log()


def test_domain_without_policy_gives_notfound(world: World, start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    assert daemon.postmap("nopolicy.test") == "NOTFOUND"
    assert "domain=nopolicy.test policy=none reason=no-txt" in daemon.log()


def test_profile_without_servername_omits_it(world: World, start_daemon: StartDaemon) -> None:
    """For Postfix older than 3.4, which rejects ``servername=`` (#206)."""
    world.publish_sts("nosni.test", policy("enforce", "mx.nosni.test"))
    daemon = start_daemon(profiles={"old": {"servername": False}})
    assert daemon.postmap("nosni.test", map_name="old") == "secure match=mx.nosni.test"


def test_key_case_and_trailing_dot_are_normalised(world: World, start_daemon: StartDaemon) -> None:
    """Checklist #113, #122."""
    world.publish_sts("casefold.test", policy("enforce", "mx.casefold.test"))
    daemon = start_daemon()
    expected = "secure match=mx.casefold.test servername=hostname"
    assert daemon.postmap("CaseFold.TEST.") == expected


def test_unicode_domain_is_looked_up_by_its_a_label(
    world: World, start_daemon: StartDaemon
) -> None:
    """IDNA 2008: bücher.test → xn--bcher-kva.test (checklist #208, #209)."""
    world.publish_sts("xn--bcher-kva.test", policy("enforce", "mx.xn--bcher-kva.test"))
    daemon = start_daemon()
    assert daemon.query("bücher.test") == [
        "OK secure match=mx.xn--bcher-kva.test servername=hostname"
    ]


def test_cname_at_mta_sts_name_is_followed(world: World, start_daemon: StartDaemon) -> None:
    """RFC 8461 section 3.1 last paragraph (checklist #24)."""
    world.dns.set("_mta-sts.provider.test", "TXT", ['"v=STSv1; id=cn1;"'])
    world.dns.set("_mta-sts.customer.test", "CNAME", ["_mta-sts.provider.test."])
    world.dns.set("mta-sts.customer.test", "A", [world.https.host])
    world.https.serve("mta-sts.customer.test", policy("enforce", "mx.provider.test"))
    world.dns.apply()
    daemon = start_daemon()
    assert daemon.postmap("customer.test") == "secure match=mx.provider.test servername=hostname"


def test_two_sts_txt_records_mean_no_policy(world: World, start_daemon: StartDaemon) -> None:
    """RFC 8461 section 3.1: more than one record → no policy (checklist #9)."""
    world.publish_sts(
        "twotxt.test",
        policy("enforce", "mx.twotxt.test"),
        txt=['"v=STSv1; id=1;"', '"v=STSv1; id=2;"'],
    )
    daemon = start_daemon()
    assert daemon.postmap("twotxt.test") == "NOTFOUND"
    assert "reason=multiple-sts-records" in daemon.log()
    assert world.https.requests("mta-sts.twotxt.test") == 0


def test_txt_record_split_into_strings_is_joined_without_spaces(
    world: World, start_daemon: StartDaemon
) -> None:
    """RFC 8461 section 3.1 (checklist #7)."""
    world.publish_sts(
        "split.test", policy("enforce", "mx.split.test"), txt=['"v=STSv1; i" "d=abc;"']
    )
    daemon = start_daemon()
    assert daemon.postmap("split.test") == "secure match=mx.split.test servername=hostname"


@pytest.mark.parametrize(
    "key",
    [
        ".parentprobe.test",
        "[parentprobe.test]",
        "parentprobe.test:2525",
        "[192.0.2.1]",
        "192.0.2.1",
    ],
)
def test_keys_that_are_not_policy_domains_get_notfound_without_dns(
    world: World, start_daemon: StartDaemon, key: str
) -> None:
    """Parent-domain probes, bracketed and port next hops, IP literals (#29, #111, #112)."""
    world.publish_sts("parentprobe.test", policy("enforce", "mx.parentprobe.test"))
    world.dns.reset_query_counts()
    daemon = start_daemon()
    assert daemon.postmap(key) == "NOTFOUND"
    assert world.dns.query_count("_mta-sts.parentprobe.test", "TXT") == 0
    assert world.https.requests("mta-sts.parentprobe.test") == 0
