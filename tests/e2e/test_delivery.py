"""End-to-end delivery tests: a real Postfix asks postfix-sts for TLS policy
and delivers (or refuses to deliver) to real SMTP servers.

How it works
============

::

    smtplib ──► sending Postfix (Debian 3.7, private instance, run as root)
                 │  smtp_tls_policy_maps = texthash:<static DANE map>,
                 │                         socketmap:inet:127.0.0.1:P:postfix ──► postfix-sts
                 │  MX/A/TLSA lookups via /etc/resolv.conf ──► unbound 127.0.53.1:53
                 ▼                                                │ (stub, DNSSEC)
    receiving SMTP servers 127.0.60.N:25                          ▼
    (asyncio, STARTTLS with a chosen certificate)     the world's NSD (zones test., ...)

* **Resolver trick.** Postfix resolves through the C library, which only
  reads ``/etc/resolv.conf`` and only talks to port 53. The host's /etc is
  never modified: the Postfix master is started as
  ``unshare --mount --propagation private -- sh -c 'mount --bind
  <tmp>/resolv.conf /etc/resolv.conf && exec master -d -c <tmp>/conf'``.
  The bind mount exists only in that new mount namespace, which the master
  and every daemon it forks inherit, and vanishes with them. The private
  resolv.conf says ``nameserver 127.0.53.1`` and ``options trust-ad`` (without
  it glibc clears the AD bit and Postfix would see no DNSSEC-validated data,
  so no DANE). On 127.0.53.1:53 the harness runs a second validating unbound
  configured like the world's (stub zones to the world's NSD, the same trust
  anchors), flushed whenever a test changes DNS.
* **Postfix instance.** Own config, queue and data directories in a temp
  dir, ``chroot = n`` everywhere, log to a file via ``maillog_file`` and
  ``postlogd``. Mail is injected over SMTP on 127.0.0.1; each smtp process
  makes one delivery (``max_use=1``), so its log lines describe that
  delivery. One Postfix serves the whole session; each test's postfix-sts
  daemon (the integration tests' ``start_daemon`` fixture) also listens on
  the fixed port Postfix's policy map points at. The outcome is read from
  Postfix's own log (``status=sent|deferred``, ``Verified TLS connection
  established``...) and queue (``postqueue -j``); the receiving servers tell
  whether a message arrived and over TLS or not. The first attempt is
  immediate; deferred mail then stays deferred (long backoff) until a test
  retries it with ``postqueue -i``, and each test deletes its queued mail.
* **Instance directory.** Not under pytest's temp dir (mode 0700): Postfix's
  unprivileged daemons must reach it. A ``tempfile.mkdtemp()`` dir (0755),
  removed at the end; the maillog is copied to pytest's temp dir first.
* **DANE.** The daemon decides ``dane-only``; Postfix then checks the TLSA
  records itself. The DNS/TLSA/Postfix side is also proven independently
  through a static ``texthash:`` map, ahead of the daemon in the policy maps,
  that answers ``dane-only`` for two domains.

Needs root and CAP_SYS_ADMIN (otherwise the tests skip; ``POSTFIX_STS_E2E=required``
turns that into a failure), 127.0.53.1:53 free, and Debian's postfix, nsd,
unbound, ldnsutils (plus util-linux's unshare and mount, always installed).
Every wait is bounded (Postfix start 15 s, each delivery attempt 20 s, queue
moves 5 s); the module takes about 12 s.
"""

from __future__ import annotations

from tests.integration.daemon import Daemon

from .mailworld import STATIC_DANE_MISMATCH, STATIC_DANE_OK, MailWorld
from .postfix import Delivery


def assert_sent_over_tls(delivery: Delivery, tls_kind: str) -> None:
    assert "sent" == delivery.status, str(delivery)
    assert delivery.tls_line is not None, str(delivery)
    assert delivery.tls_line.startswith(f"{tls_kind} TLS connection established"), str(delivery)


def assert_deferred(mail: MailWorld, delivery: Delivery, reason: str) -> None:
    """Deferred with ``reason``, and still in Postfix's deferred queue."""
    assert "deferred" == delivery.status, str(delivery)
    assert reason in delivery.reason, str(delivery)
    mail.postfix.wait_for_queue_name(delivery.queue_id, "deferred")


def assert_logged(delivery: Delivery, fragment: str) -> None:
    assert delivery.logged(fragment), f"{fragment!r} not logged in the {delivery}"


# ------------------------------------------------------------------ MTA-STS


def test_enforce_policy_with_trusted_certificate_delivers_over_verified_tls(
    mail: MailWorld, sts_daemon: Daemon
) -> None:
    mx = mail.mx_host("mx.sts-good.test", tls="valid")
    mail.route("sts-good.test", mx)
    mail.publish_sts("sts-good.test", "enforce", ["mx.sts-good.test"])

    delivery = mail.send("sts-good.test")

    assert_sent_over_tls(delivery, "Verified")
    assert [delivery.recipient] == [r for m in mx.messages for r in m.recipients]
    assert mx.messages[0].tls_version is not None
    assert ["mx.sts-good.test"] == mx.sni  # servername=hostname


def test_enforce_policy_with_untrusted_certificate_defers_mail(
    mail: MailWorld, sts_daemon: Daemon
) -> None:
    mx = mail.mx_host("mx.sts-untrusted.test", tls="untrusted")
    mail.route("sts-untrusted.test", mx)
    mail.publish_sts("sts-untrusted.test", "enforce", ["mx.sts-untrusted.test"])

    delivery = mail.send("sts-untrusted.test")

    assert_deferred(mail, delivery, "Server certificate not verified")
    assert_logged(delivery, "certificate verification failed for mx.sts-untrusted.test")
    assert_logged(delivery, "untrusted issuer /CN=Untrusted Root CA")
    assert [] == mx.messages  # not delivered, in plaintext or otherwise


def test_deferred_mail_is_delivered_once_the_mx_presents_a_trusted_certificate(
    mail: MailWorld, sts_daemon: Daemon
) -> None:
    mx = mail.mx_host("mx.sts-fixed.test", tls="untrusted")
    mail.route("sts-fixed.test", mx)
    mail.publish_sts("sts-fixed.test", "enforce", ["mx.sts-fixed.test"])
    first = mail.send("sts-fixed.test")
    assert "deferred" == first.status, str(first)

    mail.change_tls(mx, "valid")
    second = mail.retry(first)

    assert_sent_over_tls(second, "Verified")
    assert [first.recipient] == [r for m in mx.messages for r in m.recipients]
    mail.postfix.wait_for_queue_name(first.queue_id, None)  # delivered and removed


def test_enforce_policy_with_wrong_name_certificate_defers_mail(
    mail: MailWorld, sts_daemon: Daemon
) -> None:
    mx = mail.mx_host("mx.sts-wrongname.test", tls="wrong-name")
    mail.route("sts-wrongname.test", mx)
    mail.publish_sts("sts-wrongname.test", "enforce", ["mx.sts-wrongname.test"])

    delivery = mail.send("sts-wrongname.test")

    assert_deferred(mail, delivery, "Server certificate not verified")
    assert_logged(delivery, "hostname mismatch")
    assert [] == mx.messages


def test_enforce_policy_with_mx_outside_the_policy_defers_mail(
    mail: MailWorld, sts_daemon: Daemon
) -> None:
    mx = mail.mx_host("mx.sts-elsewhere.test", tls="valid")
    mail.route("sts-elsewhere.test", mx)
    mail.publish_sts("sts-elsewhere.test", "enforce", ["mx.somewhere-else.test"])

    delivery = mail.send("sts-elsewhere.test")

    assert_deferred(mail, delivery, "Server certificate not verified")
    assert_logged(delivery, "hostname mismatch")
    assert [] == mx.messages


def test_enforce_policy_with_mx_without_starttls_defers_mail(
    mail: MailWorld, sts_daemon: Daemon
) -> None:
    mx = mail.mx_host("mx.sts-plain.test", tls="none")
    mail.route("sts-plain.test", mx)
    mail.publish_sts("sts-plain.test", "enforce", ["mx.sts-plain.test"])

    delivery = mail.send("sts-plain.test")

    assert_deferred(mail, delivery, "TLS is required, but was not offered by host")
    assert 1 <= mx.sessions  # Postfix did connect, and then refused to go on in plaintext
    assert [] == mx.messages


def test_testing_policy_with_untrusted_certificate_delivers_mail(
    mail: MailWorld, sts_daemon: Daemon
) -> None:
    mx = mail.mx_host("mx.sts-testing.test", tls="untrusted")
    mail.route("sts-testing.test", mx)
    mail.publish_sts("sts-testing.test", "testing", ["mx.sts-testing.test"])

    delivery = mail.send("sts-testing.test")

    assert_sent_over_tls(delivery, "Untrusted")
    assert 1 == len(mx.messages)


def test_enforce_policy_defers_mail_while_the_daemon_is_down(
    mail: MailWorld, sts_daemon: Daemon
) -> None:
    mx = mail.mx_host("mx.sts-daemon-down.test", tls="valid")
    mail.route("sts-daemon-down.test", mx)
    mail.publish_sts("sts-daemon-down.test", "enforce", ["mx.sts-daemon-down.test"])
    sts_daemon.stop()

    delivery = mail.send("sts-daemon-down.test")

    assert_deferred(mail, delivery, "client TLS configuration problem")
    assert_logged(delivery, "policy table lookup error")
    assert [] == mx.messages


# ---------------------------------------------------------------- no policy


def test_no_policy_delivers_opportunistically_over_tls(mail: MailWorld, sts_daemon: Daemon) -> None:
    mx = mail.mx_host("mx.nopolicy.test", tls="untrusted")
    mail.route("nopolicy.test", mx)

    delivery = mail.send("nopolicy.test")

    assert_sent_over_tls(delivery, "Untrusted")
    assert 1 == len(mx.messages)
    assert mx.messages[0].tls_version is not None


def test_no_policy_delivers_in_plaintext_to_mx_without_starttls(
    mail: MailWorld, sts_daemon: Daemon
) -> None:
    mx = mail.mx_host("mx.nopolicy-plain.test", tls="none")
    mail.route("nopolicy-plain.test", mx)

    delivery = mail.send("nopolicy-plain.test")

    assert "sent" == delivery.status, str(delivery)
    assert delivery.tls_line is None, str(delivery)
    assert [None] == [m.tls_version for m in mx.messages]


# --------------------------------------------------------------------- DANE


def test_dane_with_matching_tlsa_delivers_over_verified_tls(
    mail: MailWorld, sts_daemon: Daemon
) -> None:
    # Untrusted CA: only the TLSA record can make this certificate verified.
    mx = mail.mx_host("mx.dane-ok.test", tls="untrusted")
    mail.route("dane-ok.test", mx)
    mail.publish_tlsa(mx)

    delivery = mail.send("dane-ok.test")

    assert_sent_over_tls(delivery, "Verified")
    assert 1 == len(mx.messages)


def test_dane_with_mismatched_tlsa_defers_mail(mail: MailWorld, sts_daemon: Daemon) -> None:
    mx = mail.mx_host("mx.dane-mismatch.test", tls="valid")
    mail.route("dane-mismatch.test", mx)
    mail.publish_tlsa(mx, matching=False)

    delivery = mail.send("dane-mismatch.test")

    assert_deferred(mail, delivery, "Server certificate not verified")
    assert_logged(delivery, "no matching DANE TLSA records")
    assert [] == mx.messages


def test_tlsa_records_in_an_unsigned_zone_are_ignored_and_mail_delivered(
    mail: MailWorld, sts_daemon: Daemon
) -> None:
    """Without DNSSEC a TLSA record proves nothing: whatever DANE support the
    daemon gains, it must not turn an unsigned domain's TLSA into dane-only."""
    mx = mail.mx_host("mx.dane-unsigned.unsigned", tls="valid")
    mail.route("dane-unsigned.unsigned", mx)
    mail.publish_tlsa(mx, matching=False)

    delivery = mail.send("dane-unsigned.unsigned")

    assert "sent" == delivery.status, str(delivery)
    assert 1 == len(mx.messages)


def test_harness_dane_only_with_matching_tlsa_delivers_over_verified_tls(
    mail: MailWorld,
) -> None:
    """The static map answers ``dane-only``: proves DNSSEC, TLSA and Postfix's
    DANE work in this harness, whatever the daemon does."""
    mx = mail.mx_host(f"mx.{STATIC_DANE_OK}", tls="untrusted")
    mail.route(STATIC_DANE_OK, mx)
    mail.publish_tlsa(mx)

    delivery = mail.send(STATIC_DANE_OK)

    assert_sent_over_tls(delivery, "Verified")
    assert 1 == len(mx.messages)


def test_harness_dane_only_with_mismatched_tlsa_defers_mail(mail: MailWorld) -> None:
    mx = mail.mx_host(f"mx.{STATIC_DANE_MISMATCH}", tls="valid")
    mail.route(STATIC_DANE_MISMATCH, mx)
    mail.publish_tlsa(mx, matching=False)

    delivery = mail.send(STATIC_DANE_MISMATCH)

    assert_deferred(mail, delivery, "Server certificate not verified")
    assert_logged(delivery, "no matching DANE TLSA records")
    assert [] == mx.messages
