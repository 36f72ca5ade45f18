"""MTA-STS TXT record discovery, RFC 8461 section 3.1 (checklist section 1, #1-#23).

An RRset is given as a list of records, each a list of DNS character-strings.
"""

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfix_sts.core.sts_txt import StsRecord, is_sts_candidate, select_sts_record
from postfix_sts.errors import TxtRecordError

RRset = Sequence[Sequence[bytes]]


def record_id(rrset: RRset) -> str:
    """The policy id of the one valid STS record in ``rrset``."""
    return select_sts_record(rrset).id


def rejection(rrset: RRset) -> str:
    """The reason ``rrset`` yields no STS record (the test fails if it yields one)."""
    with pytest.raises(TxtRecordError) as excinfo:
        select_sts_record(rrset)
    return excinfo.value.reason


def one(text: bytes) -> RRset:
    """An RRset of one TXT record made of one character-string."""
    return [[text]]


# --- valid records ----------------------------------------------------------------------


def test_canonical_record_is_valid() -> None:
    """#1: RFC 8461 section 3.1 example."""
    rrset = one(b"v=STSv1; id=20160831085700Z;")
    assert StsRecord("20160831085700Z", "v=STSv1; id=20160831085700Z;") == select_sts_record(rrset)


def test_trailing_delimiter_is_optional() -> None:
    """#2: ``[sts-field-delim]`` at the end is optional."""
    assert "abc" == record_id(one(b"v=STSv1; id=abc"))


def test_record_without_spaces_is_valid() -> None:
    """#3."""
    assert "abc" == record_id(one(b"v=STSv1;id=abc;"))


def test_whitespace_around_later_delimiters_is_valid() -> None:
    """#4: ``sts-field-delim = *WSP ";" *WSP``."""
    assert "abc" == record_id(one(b"v=STSv1; \t id=abc  \t;"))


@pytest.mark.parametrize("text", [b"v=STSv1 ; id=abc", b"v=STSv1\t;id=abc;"])
def test_whitespace_before_first_delimiter_is_valid(text: bytes) -> None:
    """#5 [AMBIG], erratum 6285: sts_txt.py follows the ABNF and accepts it."""
    assert "abc" == record_id(one(text))


def test_character_strings_are_joined_without_spaces() -> None:
    """#6 [MUST]: ``"v=STSv1; id=" "abc;"`` is ``v=STSv1; id=abc;``."""
    assert "abc" == record_id([[b"v=STSv1; id=", b"abc;"]])


def test_split_inside_a_token_is_joined() -> None:
    """#7: ``"v=STSv1; i" "d=abc"``: a join that added a space would break it."""
    assert "abc" == record_id([[b"v=STSv1; i", b"d=abc"]])


def test_split_inside_the_version_is_joined() -> None:
    """#6/#7: the version token itself may be split across character-strings."""
    assert "abc" == record_id([[b"v=ST", b"Sv1;", b" id=", b"abc"]])


def test_joined_text_is_recorded() -> None:
    """#6: the record text is the joined character-strings."""
    assert "v=STSv1; id=abc;" == select_sts_record([[b"v=STSv1; id=", b"abc;"]]).text


@pytest.mark.parametrize(
    "rrset",
    [
        [[b"verification=xyz"], [b"v=STSv1; id=1"]],
        [[b"v=STSv1; id=1"], [b"verification=xyz"]],
        [[b"v=spf1 -all"], [b"v=STSv1; id=1"], [b"google-site-verification=abc"]],
        [[b"v=STSv10; id=2"], [b"v=STSv1; id=1"]],  # #12: not a v=STSv1 record
        [[b"V=STSv1; id=2"], [b"v=STSv1; id=1"]],  # #13: not a v=STSv1 record
        [[b"caf\xc3\xa9"], [b"v=STSv1; id=1"]],  # non-ASCII elsewhere does not matter
    ],
)
def test_unrelated_records_are_discarded(rrset: RRset) -> None:
    """#8: records not beginning with ``v=STSv1`` are discarded; exactly one remains."""
    assert "1" == record_id(rrset)


@pytest.mark.parametrize("length", [1, 31, 32])
def test_id_of_up_to_32_alphanumerics_is_valid(length: int) -> None:
    """#16: ``sts-id = %s"id=" 1*32(ALPHA / DIGIT)``."""
    policy_id = ("aZ09" * 8)[:length]
    assert policy_id == record_id(one(b"v=STSv1; id=" + policy_id.encode()))


@pytest.mark.parametrize(
    "text",
    [
        b"v=STSv1; id=a; more=a; ext=2",
        b"v=STSv1; ext=2; id=a",  # the id need not be the first field
        b"v=STSv1; id=a; x_y-z.w=!\"#$%&'()*+,-./0123456789:<>?@[\\]^_`{|}~",
        b"v=STSv1; id=a; " + b"e" * 32 + b"=1",  # 32-character extension name
        b"v=STSv1; id=a; 9ext=1",
        b"v=STSv1; id=a; v=STSv2",  # a later ``v`` is just an extension
    ],
)
def test_extension_fields_are_accepted_and_ignored(text: bytes) -> None:
    """#18 [MUST accept]: ``sts-extension`` fields are valid and ignored."""
    assert "a" == record_id(one(text))


def test_first_id_wins() -> None:
    """#23: RFC 8461 section 3.2 last paragraph: the first occurrence of a key is used."""
    assert "a" == record_id(one(b"v=STSv1; id=a; id=b"))


# --- no STS record ----------------------------------------------------------------------


def test_two_sts_txt_records_mean_no_policy() -> None:
    """#9 [MUST]: the number of STS records is not one -> no available policy."""
    assert "multiple-sts-records" == rejection([[b"v=STSv1; id=1"], [b"v=STSv1; id=2"]])


def test_two_identical_sts_txt_records_mean_no_policy() -> None:
    """#9: the count is of records, even when both carry the same id."""
    assert "multiple-sts-records" == rejection([[b"v=STSv1; id=1"], [b"v=STSv1; id=1"]])


def test_valid_and_invalid_sts_records_together_mean_no_policy() -> None:
    """#9: an invalid record beginning with ``v=STSv1;`` still counts."""
    assert "multiple-sts-records" == rejection([[b"v=STSv1; id=1"], [b"v=STSv1; id=a-b"]])


@pytest.mark.parametrize("rrset", [[[b"bogus"], [b"more"]], [], [[b""]]])
def test_only_non_sts_records_mean_no_policy(rrset: RRset) -> None:
    """#10: nothing begins with ``v=STSv1``."""
    assert "no-sts-record" == rejection(rrset)


def test_version_not_first_means_no_policy() -> None:
    """#11: the record MUST begin with sts-version."""
    assert "no-sts-record" == rejection(one(b"id=20180907T090909; v=STSv1;"))


@pytest.mark.parametrize(
    "text", [b"v=STSv10; id=1", b"v=STSv2; id=1", b"v=STSv12;id=x;", b"v=STSv1x; id=1"]
)
def test_wrong_version_means_no_policy(text: bytes) -> None:
    """#12."""
    with pytest.raises(TxtRecordError):
        select_sts_record(one(text))


@pytest.mark.parametrize("text", [b"V=STSv1; id=1", b"v=stsv1; id=1", b"v=STSV1; id=1"])
def test_version_is_case_sensitive(text: bytes) -> None:
    """#13: ``%s"v=STSv1"`` is case-sensitive (RFC 7405)."""
    with pytest.raises(TxtRecordError):
        select_sts_record(one(text))


@pytest.mark.parametrize(
    "text", [b"v=STSv1", b"v=STSv1;", b"v=STSv1; ext=1", b"v=STSv1; ID=abc", b"v=STSv1; "]
)
def test_record_without_id_is_invalid(text: bytes) -> None:
    """#14: the sts-id field is required (``ID`` is not ``id``: %s literal)."""
    assert "txt-invalid" == rejection(one(text))


@pytest.mark.parametrize("text", [b"v=STSv1; id=", b"v=STSv1; id=;"])
def test_empty_id_is_invalid(text: bytes) -> None:
    """#15: ``1*32(ALPHA / DIGIT)``."""
    assert "txt-invalid" == rejection(one(text))


def test_id_of_33_alphanumerics_is_invalid() -> None:
    """#16."""
    assert "txt-invalid" == rejection(one(b"v=STSv1; id=" + b"a" * 33))


@pytest.mark.parametrize("policy_id", [b"test-123", b"bad-value", b"2018.09.07", b"a_b", b"a+b"])
def test_id_with_non_alphanumerics_is_invalid(policy_id: bytes) -> None:
    """#17: sts_txt.py docstring: a bad ``id`` value is not read as an extension."""
    assert "txt-invalid" == rejection(one(b"v=STSv1; id=" + policy_id))


@pytest.mark.parametrize(
    "extension",
    [
        b"more=",  # empty value
        b"e" * 33 + b"=1",  # 33-character name
        b"1%=a",  # bad name character
        b"test==",  # ``=`` in the value
        b"note=has space",  # SP in the value
        b"-ext=1",  # name must begin with a letter or digit
        b"=1",  # no name
        b"noequals",
        b"tab=a\tb",
        b"ctl=a\x01b",
        b"del=a\x7fb",
    ],
)
def test_malformed_extension_makes_record_invalid(extension: bytes) -> None:
    """#19: ext-name <= 32 chars starting alphanumeric; ext-value without ``=;``, SP, CTLs."""
    assert "txt-invalid" == rejection(one(b"v=STSv1; id=a; " + extension))


def test_doubled_delimiter_is_invalid() -> None:
    """#20 [AMBIG]: sts_txt.py follows the ABNF: ``;;`` is invalid."""
    assert "txt-invalid" == rejection(one(b"v=STSv1; id=a;;"))


@pytest.mark.parametrize("text", [b"v=STSv1; id=abc ", b"v=STSv1; id=abc\t"])
def test_trailing_whitespace_without_delimiter_is_invalid(text: bytes) -> None:
    """#21 [AMBIG]: sts_txt.py follows the ABNF."""
    assert "txt-invalid" == rejection(one(text))


def test_non_ascii_record_is_invalid() -> None:
    """#22: the record MUST be US-ASCII."""
    assert "txt-invalid" == rejection(one("v=STSv1; id=a; note=café;".encode()))


def test_non_ascii_id_is_invalid() -> None:
    """#17, #22."""
    assert "txt-invalid" == rejection(one("v=STSv1; id=café".encode()))


# --- candidate detection ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (b"v=STSv1; id=1", True),
        (b"v=STSv1;id=1", True),
        (b"v=STSv1 ; id=1", True),  # #5
        (b"v=STSv10; id=1", False),  # #12
        (b"V=STSv1; id=1", False),  # #13
        (b"id=1; v=STSv1;", False),  # #11
        (b"verification=xyz", False),  # #8
        (b"", False),
    ],
)
def test_is_sts_candidate(record: bytes, expected: bool) -> None:
    """#8, #12: only records beginning with the ``v=STSv1`` token count."""
    assert expected == is_sts_candidate(record)


txt_tokens = st.one_of(
    st.binary(max_size=10),
    st.sampled_from([b"v=STSv1", b";", b" ", b"\t", b"id=", b"abc", b"=", b"x_y", b"\xc3\xa9"]),
)
character_strings = st.one_of(
    st.binary(max_size=40), st.lists(txt_tokens, max_size=8).map(b"".join)
)


@given(st.lists(st.lists(character_strings, min_size=1, max_size=3), max_size=4))
def test_any_rrset_gives_a_record_or_txt_record_error(rrset: list[list[bytes]]) -> None:
    """errors.py: only TxtRecordError is raised by the TXT parser."""
    try:
        result = select_sts_record(rrset)
    except TxtRecordError:
        return
    assert 1 <= len(result.id) <= 32
    assert result.id.isalnum()
    assert result.id.isascii()
