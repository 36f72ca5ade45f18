"""The pure per-domain DANE decision: TLSA usability, host states and the level.

RFC 7672 sections 2.2, 2.2.1, 2.2.2 and 3.1; RFC 6698 sections 2.1 and 4.1;
checklist section 8 (#128-#156), in particular #128, #134, #135, #137, #138,
#148, #149 and #150.
"""

import datetime

import dns.rdata
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from hypothesis import example, given
from hypothesis import strategies as st

from postfix_sts.core.dane import (
    NO_HOST_ADDRESS,
    NO_HOST_TLSA,
    DaneVerdict,
    HostFacts,
    HostState,
    Level,
    Tlsa,
    dane_temp,
    decide,
    host_state,
    no_dane,
)
from postfix_sts.dane_resolver import MAX_MX_HOSTS, _mx_hosts, _parse_tlsa
from postfix_sts.dns_client import SecureAnswer

# --- real DER material ------------------------------------------------------------------


def _self_signed_ec_certificate() -> tuple[bytes, bytes]:
    """(certificate DER, SubjectPublicKeyInfo DER) of a fresh self-signed P-256 certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.example.net")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return cert.public_bytes(serialization.Encoding.DER), spki


CERT_DER, SPKI_DER = _self_signed_ec_certificate()
ED25519_SPKI_DER = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
)
SHA256 = bytes(range(32))
SHA512 = bytes(range(64))


def _der(tag: int, content: bytes) -> bytes:
    """One DER TLV (short or long definite length)."""
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    length = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _spki(oid_body: bytes, key: bytes) -> bytes:
    """SubjectPublicKeyInfo ::= SEQUENCE { SEQUENCE { OID }, BIT STRING } (RFC 5280 4.1)."""
    return _der(0x30, _der(0x30, _der(0x06, oid_body)) + _der(0x03, b"\x00" + key))


#: Well-formed DER SubjectPublicKeyInfo whose algorithm (OID 1.2.3.4) no library knows.
UNKNOWN_ALGORITHM_SPKI_DER = _spki(b"\x2a\x03\x04", b"\x01\x02\x03\x04")


# --- Tlsa.usable (#149) ---------------------------------------------------------------


@pytest.mark.parametrize("usage", [2, 3])
@pytest.mark.parametrize("selector", [0, 1])
def test_sha256_digest_of_32_bytes_is_usable(usage: int, selector: int) -> None:
    """#149: DANE-TA(2)/DANE-EE(3), selector 0/1, matching type 1 with 32 bytes (RFC 7672 3.1)."""
    assert True is Tlsa(usage, selector, 1, SHA256).usable()


@pytest.mark.parametrize("usage", [2, 3])
@pytest.mark.parametrize("selector", [0, 1])
def test_sha512_digest_of_64_bytes_is_usable(usage: int, selector: int) -> None:
    """#149: matching type 2 with exactly 64 bytes is usable (RFC 6698 section 2.1.3)."""
    assert True is Tlsa(usage, selector, 2, SHA512).usable()


@pytest.mark.parametrize("length", [0, 1, 31, 33, 48, 64])
def test_sha256_digest_of_wrong_length_is_unusable(length: int) -> None:
    """#148, #149: ``3 1 1`` needs exactly 32 bytes; e.g. 31 bytes is unusable."""
    assert False is Tlsa(3, 1, 1, bytes(length)).usable()


@pytest.mark.parametrize("length", [0, 32, 63, 65, 128])
def test_sha512_digest_of_wrong_length_is_unusable(length: int) -> None:
    """#149: ``3 1 2`` needs exactly 64 bytes."""
    assert False is Tlsa(3, 1, 2, bytes(length)).usable()


@pytest.mark.parametrize("usage", [0, 1])
@pytest.mark.parametrize(("mtype", "data"), [(1, SHA256), (2, SHA512)])
def test_pkix_usages_are_unusable_even_with_a_valid_digest(
    usage: int, mtype: int, data: bytes
) -> None:
    """#148, #149: PKIX-TA(0)/PKIX-EE(1) are not usable for SMTP (RFC 7672 section 3.1.3)."""
    assert False is Tlsa(usage, 1, mtype, data).usable()


@pytest.mark.parametrize("usage", [4, 255, -1])
def test_unknown_usage_is_unusable(usage: int) -> None:
    """#149: only usages 2 and 3 are usable (RFC 6698 section 4.1: unknown means unusable)."""
    assert False is Tlsa(usage, 1, 1, SHA256).usable()


@pytest.mark.parametrize("selector", [2, 255, -1])
def test_unknown_selector_is_unusable(selector: int) -> None:
    """#149: only selectors 0 (full certificate) and 1 (SPKI) are defined (RFC 6698 2.1.2)."""
    assert False is Tlsa(3, selector, 1, SHA256).usable()


@pytest.mark.parametrize(("mtype", "data"), [(3, SHA256), (255, SHA256), (255, SHA512), (-1, b"")])
def test_unknown_matching_type_is_unusable(mtype: int, data: bytes) -> None:
    """#148, #149: an unknown matching type is unusable whatever the data length."""
    assert False is Tlsa(3, 1, mtype, data).usable()


@pytest.mark.parametrize("usage", [2, 3])
def test_full_certificate_der_under_selector_0_is_usable(usage: int) -> None:
    """#149: ``x 0 0`` with a DER certificate that parses is usable (RFC 6698 2.1.2/2.1.3)."""
    assert True is Tlsa(usage, 0, 0, CERT_DER).usable()


@pytest.mark.parametrize("spki", [SPKI_DER, ED25519_SPKI_DER], ids=["ec-p256", "ed25519"])
@pytest.mark.parametrize("usage", [2, 3])
def test_full_spki_der_under_selector_1_is_usable(usage: int, spki: bytes) -> None:
    """#149: ``x 1 0`` with a DER SubjectPublicKeyInfo that parses is usable."""
    assert True is Tlsa(usage, 1, 0, spki).usable()


def test_certificate_der_under_selector_1_is_unusable() -> None:
    """#149: selector 1 means an SPKI; a whole certificate there does not parse as one."""
    assert False is Tlsa(3, 1, 0, CERT_DER).usable()


def test_spki_der_under_selector_0_is_unusable() -> None:
    """#149: selector 0 means a full certificate; a bare SPKI there is not one."""
    assert False is Tlsa(3, 0, 0, SPKI_DER).usable()


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x30\x00", b"garbage, not DER", SHA256, SHA512],
    ids=["empty", "zero", "empty-sequence", "text", "32-bytes", "64-bytes"],
)
def test_garbage_der_is_unusable(selector: int, data: bytes) -> None:
    """#149: matching type 0 must be well-formed DER (KE 0.3.1); anything else is unusable."""
    assert False is Tlsa(3, selector, 0, data).usable()


@pytest.mark.parametrize("selector", [0, 1])
def test_truncated_der_is_unusable(selector: int) -> None:
    """#149: a DER object cut short by one byte does not parse."""
    data = CERT_DER if selector == 0 else SPKI_DER
    assert False is Tlsa(3, selector, 0, data[:-1]).usable()


def test_spki_with_unknown_algorithm_is_unusable_not_an_error() -> None:
    """#149: an SPKI whose algorithm cannot be loaded is unusable, and ``usable`` must not raise.

    Postfix ``d2i_PUBKEY`` fails on such a key and ignores the record; an exception here
    would turn one odd record in a hostile zone into a failed lookup for the domain.
    """
    assert False is Tlsa(3, 1, 0, UNKNOWN_ALGORITHM_SPKI_DER).usable()


def test_pkix_usage_with_parsable_der_is_unusable() -> None:
    """#149: usage 1 stays unusable even with a full certificate that parses."""
    assert False is Tlsa(1, 0, 0, CERT_DER).usable()


#: Field values: mostly the defined ones (so the interesting paths are reached), some not.
_small_ints = st.one_of(st.integers(min_value=0, max_value=3), st.integers(-2, 256))
_oid_bodies = st.binary(min_size=1, max_size=12)
_der_like = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([CERT_DER, SPKI_DER, ED25519_SPKI_DER, UNKNOWN_ALGORITHM_SPKI_DER]),
    st.builds(_spki, _oid_bodies, st.binary(max_size=80)),
    st.builds(lambda d, n: d[:n], st.sampled_from([CERT_DER, SPKI_DER]), st.integers(0, 400)),
)


@given(_small_ints, _small_ints, _small_ints, _der_like)
@example(3, 1, 0, UNKNOWN_ALGORITHM_SPKI_DER)
@example(2, 0, 0, CERT_DER[:-1])
def test_usable_never_raises_and_returns_a_bool(
    usage: int, selector: int, mtype: int, data: bytes
) -> None:
    """#149: any record from DNS is judged usable or unusable; none makes ``usable`` raise."""
    assert isinstance(Tlsa(usage, selector, mtype, data).usable(), bool)


@given(_small_ints, _small_ints, _small_ints.filter(lambda m: m != 0), st.binary(max_size=100))
def test_usable_digest_records_match_the_checklist_definition(
    usage: int, selector: int, mtype: int, data: bytes
) -> None:
    """#149: outside matching type 0: usable iff usage 2/3, selector 0/1, right-sized digest."""
    expected = (
        usage in (2, 3)
        and selector in (0, 1)
        and ((mtype == 1 and len(data) == 32) or (mtype == 2 and len(data) == 64))
    )
    assert expected == Tlsa(usage, selector, mtype, data).usable()


@given(_small_ints, _small_ints, _der_like)
def test_records_outside_dane_ta_and_dane_ee_are_never_usable(
    usage: int, selector: int, data: bytes
) -> None:
    """#148, #149: whatever the data, a usage other than 2/3 is unusable (RFC 7672 3.1.3)."""
    if usage in (2, 3):
        usage = 1
    assert False is Tlsa(usage, selector, 0, data).usable()


# --- host_state (#148, #150) -------------------------------------------------------------

USABLE_EE = Tlsa(3, 1, 1, SHA256)
USABLE_TA = Tlsa(2, 0, 2, SHA512)
PKIX_EE = Tlsa(1, 1, 1, SHA256)
SHORT_DIGEST = Tlsa(3, 1, 1, SHA256[:31])
UNKNOWN_MTYPE = Tlsa(3, 1, 255, SHA256)


def test_empty_tlsa_rrset_is_no_tlsa() -> None:
    """#115, #151: a secure address and no secure TLSA records: the host is not a DANE host."""
    assert HostState.NO_TLSA == host_state(())


def test_rrset_of_only_unusable_records_is_unusable() -> None:
    """#148: usages 0/1, a wrong digest length and an unknown matching type: UNUSABLE."""
    assert HostState.UNUSABLE == host_state((PKIX_EE, SHORT_DIGEST, UNKNOWN_MTYPE))


def test_one_usable_record_among_unusable_ones_makes_the_host_usable() -> None:
    """#150: RRset {``1 1 1 …``, ``3 1 1 <32 bytes>``} is usable (RFC 7672 section 2.2 bullet 1)."""
    assert HostState.USABLE == host_state((PKIX_EE, USABLE_EE))


def test_usable_record_first_or_last_makes_no_difference() -> None:
    """#150: record order in the RRset is irrelevant."""
    assert HostState.USABLE == host_state((USABLE_TA, SHORT_DIGEST, UNKNOWN_MTYPE))
    assert HostState.USABLE == host_state((SHORT_DIGEST, UNKNOWN_MTYPE, USABLE_TA))


@given(st.lists(st.builds(Tlsa, _small_ints, _small_ints, _small_ints, _der_like), max_size=6))
def test_host_state_follows_usable_records(records: list[Tlsa]) -> None:
    """#148, #150: NO_TLSA iff empty, USABLE iff some record is usable, else UNUSABLE."""
    if not records:
        expected = HostState.NO_TLSA
    elif any(r.usable() for r in records):
        expected = HostState.USABLE
    else:
        expected = HostState.UNUSABLE
    assert expected == host_state(tuple(records))


# --- decide (#128-#138, #148) --------------------------------------------------------------

DOMAIN = "example.com"


def host(name: str, state: HostState, preference: int = 10) -> HostFacts:
    tlsa: tuple[Tlsa, ...] = ()
    if state is HostState.USABLE:
        tlsa = (USABLE_EE,)
    elif state is HostState.UNUSABLE:
        tlsa = (PKIX_EE,)
    owner = f"_25._tcp.{name}" if tlsa else ""
    return HostFacts(name, preference, state, owner, tlsa)


def test_every_mx_host_with_usable_tlsa_is_dane_only() -> None:
    """#128: secure MX, every host secure with usable TLSA: ``dane-only`` (RFC 7672 2.2.1)."""
    verdict = decide(
        DOMAIN,
        [
            host("mx1.example.com", HostState.USABLE, 10),
            host("mx2.example.com", HostState.USABLE, 20),
        ],
    )
    assert Level.DANE_ONLY == verdict.level
    assert verdict.temp is None


def test_dane_only_reason_names_every_host() -> None:
    """The reason shown by ``query`` and the log says which hosts had usable TLSA."""
    verdict = decide(
        DOMAIN,
        [
            host("mx1.example.com", HostState.USABLE, 10),
            host("mx2.example.com", HostState.USABLE, 20),
        ],
    )
    assert "mx1.example.com" in verdict.reason
    assert "mx2.example.com" in verdict.reason


def test_single_implicit_mx_with_usable_tlsa_is_dane_only() -> None:
    """#140: no MX records, the domain itself is the host (RFC 7672 2.2.2): ``dane-only``."""
    assert Level.DANE_ONLY == decide(DOMAIN, [host(DOMAIN, HostState.USABLE, 0)]).level


def test_usable_and_no_tlsa_hosts_mixed_is_dane_not_dane_only() -> None:
    """#134, #117: mx2 has authenticated no TLSA; ``dane-only`` would make it unreachable."""
    verdict = decide(
        DOMAIN,
        [
            host("mx1.example.com", HostState.USABLE, 10),
            host("mx2.example.com", HostState.NO_TLSA, 10),
        ],
    )
    assert Level.DANE == verdict.level
    assert verdict.temp is None


def test_backup_only_tlsa_is_dane_not_dane_only() -> None:
    """#135: a pref-20 backup with TLSA "MUST NOT preempt" the pref-10 primary (RFC 7672 2.2.1)."""
    verdict = decide(
        DOMAIN,
        [
            host("primary.example.com", HostState.NO_TLSA, 10),
            host("backup.example.com", HostState.USABLE, 20),
        ],
    )
    assert Level.DANE == verdict.level


def test_only_unusable_tlsa_is_dane_not_dane_only() -> None:
    """#148, #119: TLS mandatory but not authenticable: ``dane`` (Postfix uses encrypt)."""
    verdict = decide(DOMAIN, [host("mx.example.com", HostState.UNUSABLE)])
    assert Level.DANE == verdict.level
    assert verdict.temp is None


def test_usable_and_unusable_hosts_mixed_is_dane() -> None:
    """#148: one host whose records are all unusable keeps the domain below ``dane-only``."""
    verdict = decide(
        DOMAIN,
        [host("mx1.example.com", HostState.USABLE), host("mx2.example.com", HostState.UNUSABLE)],
    )
    assert Level.DANE == verdict.level


def test_insecure_address_host_among_usable_ones_is_dane() -> None:
    """#136: a host with an insecure address is not a DANE host (RFC 7672 2.2.2), so ``dane``."""
    verdict = decide(
        DOMAIN,
        [
            host("mx1.example.com", HostState.USABLE, 10),
            host("mx2.example.com", HostState.INSECURE_ADDRESS, 20),
        ],
    )
    assert Level.DANE == verdict.level


def test_dane_reason_names_the_hosts_without_usable_tlsa_and_their_state() -> None:
    """The reason names each host that kept the domain from ``dane-only``, with its state."""
    verdict = decide(
        DOMAIN,
        [
            host("mx1.example.com", HostState.USABLE, 10),
            host("mx2.example.com", HostState.INSECURE_ADDRESS, 20),
            host("mx3.example.com", HostState.NO_TLSA, 30),
            host("mx4.example.com", HostState.UNUSABLE, 40),
        ],
    )
    assert "mx2.example.com: insecure-address" in verdict.reason
    assert "mx3.example.com: no-tlsa" in verdict.reason
    assert "mx4.example.com: unusable" in verdict.reason


def test_host_without_address_is_ignored_next_to_usable_host() -> None:
    """#137, #138: an unreachable host (no address) does not count: ``dane-only`` stays."""
    verdict = decide(
        DOMAIN,
        [
            host("missing.example.com", HostState.NO_ADDRESS, 10),
            host("mx.example.com", HostState.USABLE, 20),
        ],
    )
    assert Level.DANE_ONLY == verdict.level


def test_no_host_with_an_address_is_no_dane() -> None:
    """#137: if no MX host has an address there is nothing for DANE to protect: no DANE."""
    verdict = decide(
        DOMAIN,
        [
            host("mx1.example.com", HostState.NO_ADDRESS),
            host("mx2.example.com", HostState.NO_ADDRESS),
        ],
    )
    assert NO_HOST_ADDRESS is verdict  # one shared verdict object, not one per domain


def test_empty_host_list_is_no_dane() -> None:
    """No hosts at all: no DANE, and no exception."""
    verdict = decide(DOMAIN, [])
    assert (None, None) == (verdict.level, verdict.temp)


@pytest.mark.parametrize(
    "states",
    [
        [HostState.NO_TLSA],
        [HostState.INSECURE_ADDRESS],
        [HostState.NO_TLSA, HostState.INSECURE_ADDRESS, HostState.NO_ADDRESS],
    ],
)
def test_no_host_with_a_tlsa_rrset_is_no_dane(states: list[HostState]) -> None:
    """#115, #130, #136, #151: no secure TLSA anywhere: no DANE (STS or NOTFOUND decide)."""
    verdict = decide(DOMAIN, [host(f"mx{i}.example.com", s) for i, s in enumerate(states)])
    assert NO_HOST_TLSA is verdict  # one shared verdict object, not one per domain


def test_no_dane_and_dane_temp_build_the_documented_verdicts() -> None:
    """``no_dane``: neither level nor temp; ``dane_temp``: the reason is the temp reason."""
    assert DaneVerdict(None, None, "why") == no_dane("why")
    assert DaneVerdict(None, "SERVFAIL", "SERVFAIL") == dane_temp("SERVFAIL")


_states = st.sampled_from(list(HostState))
_hosts = st.lists(
    st.builds(
        host,
        st.sampled_from(["mx1.example.com", "mx2.example.com", "example.com", "b.example.net"]),
        _states,
        st.integers(min_value=0, max_value=65535),
    ),
    max_size=8,
)


@given(_hosts)
def test_dane_only_iff_every_reachable_host_is_usable(hosts: list[HostFacts]) -> None:
    """#128, #134, #135, #137, #148: ``dane-only`` iff ≥1 reachable host and all are USABLE."""
    reachable = [h for h in hosts if h.state is not HostState.NO_ADDRESS]
    expected = bool(reachable) and all(h.state is HostState.USABLE for h in reachable)
    assert expected == (Level.DANE_ONLY == decide(DOMAIN, hosts).level)


@given(_hosts)
def test_level_follows_the_tlsa_rrsets_of_reachable_hosts(hosts: list[HostFacts]) -> None:
    """RFC 7672 2.2: ``dane-only`` if all usable, ``dane`` if some TLSA RRset, else no DANE."""
    reachable = [h.state for h in hosts if h.state is not HostState.NO_ADDRESS]
    with_tlsa = [s for s in reachable if s in (HostState.USABLE, HostState.UNUSABLE)]
    if not with_tlsa:
        expected = None
    elif all(s is HostState.USABLE for s in reachable):
        expected = Level.DANE_ONLY
    else:
        expected = Level.DANE
    assert expected == decide(DOMAIN, hosts).level


@given(_hosts)
def test_decide_never_defers(hosts: list[HostFacts]) -> None:
    """DNS failures become TEMP in the resolver; the pure decision itself never sets ``temp``."""
    assert decide(DOMAIN, hosts).temp is None


@given(_hosts.flatmap(lambda hs: st.tuples(st.just(hs), st.permutations(hs))))
def test_level_does_not_depend_on_host_order(
    both: tuple[list[HostFacts], list[HostFacts]],
) -> None:
    """The decision is about the set of MX hosts, not the order DNS returned them in."""
    hosts, shuffled = both
    assert decide(DOMAIN, hosts).level == decide(DOMAIN, shuffled).level


@given(_hosts, st.integers(min_value=0, max_value=8))
def test_hosts_without_address_never_change_the_level(
    hosts: list[HostFacts], position: int
) -> None:
    """#137, #138: adding an unreachable host anywhere leaves the level as it was."""
    more = list(hosts)
    more.insert(position, host("gone.example.org", HostState.NO_ADDRESS, 5))
    reachable_before = any(h.state is not HostState.NO_ADDRESS for h in hosts)
    if reachable_before:
        assert decide(DOMAIN, hosts).level == decide(DOMAIN, more).level
    else:
        assert decide(DOMAIN, more).level is None


# --- the resolver's pure helpers: TLSA and MX presentation text ---------------------------


def test_parse_tlsa_reads_dnspython_presentation_with_chunked_hex() -> None:
    """#144, #149: dnspython splits long hex into chunks; a full certificate survives the trip."""
    text = dns.rdata.from_text("IN", "TLSA", "3 0 0 " + CERT_DER.hex()).to_text()
    assert " " in text.split(" ", 3)[3]  # the hex really is chunked
    assert Tlsa(3, 0, 0, CERT_DER) == _parse_tlsa(text)


def test_parse_tlsa_reads_a_digest_record() -> None:
    """#150: ``3 1 1 <64 hex digits>`` becomes a usable record."""
    parsed = _parse_tlsa("3 1 1 " + SHA256.hex().upper())
    assert Tlsa(3, 1, 1, SHA256) == parsed
    assert parsed is not None
    assert parsed.usable()


@pytest.mark.parametrize("text", ["", "3 1", "3 1 x 00", "3 1 1 zz", "3 1 1 abc", "a b c d"])
def test_parse_tlsa_drops_malformed_records(text: str) -> None:
    """A record that cannot be read is dropped rather than failing the host."""
    assert _parse_tlsa(text) is None


def _mx(status: str, *rdatas: str) -> SecureAnswer:
    return SecureAnswer(status, True, rdatas, DOMAIN, 300)


def test_mx_hosts_best_preference_first_lowercased_without_repeats() -> None:
    """#135: hosts are examined best preference first; names are case-insensitive."""
    answer = _mx("ok", "20 Backup.Example.COM.", "10 mx.example.com.", "20 backup.example.com.")
    assert [(10, "mx.example.com"), (20, "backup.example.com")] == _mx_hosts(DOMAIN, answer)


def test_mx_nodata_means_the_domain_is_its_own_mx() -> None:
    """#140: a secure NODATA MX: the implicit MX is the domain (RFC 7672 section 2.2.2)."""
    assert [(0, DOMAIN)] == _mx_hosts(DOMAIN, _mx("nodata"))


def test_null_mx_is_no_host_at_all() -> None:
    """#141: ``MX 0 .`` (RFC 7505) means no mail: None, and no A/TLSA queries follow."""
    assert _mx_hosts(DOMAIN, _mx("ok", "0 .")) is None


def test_mx_hosts_are_capped_at_the_best_ones() -> None:
    """Hostile zones: only the MAX_MX_HOSTS best-preference hosts are examined."""
    rdatas = [f"{p} mx{p}.example.com." for p in range(MAX_MX_HOSTS + 5, 0, -1)]
    hosts = _mx_hosts(DOMAIN, _mx("ok", *rdatas))
    assert hosts is not None
    assert list(range(1, MAX_MX_HOSTS + 1)) == [p for p, _ in hosts]
