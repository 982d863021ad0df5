"""The ER7 tokenizer: delimiters from MSH, line endings, escapes, locations, and bad input."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from adapter.errors import ParseError
from adapter.inbound.er7 import Delimiters, decode_payload, escape, parse_er7, split_batch, unescape

MSG = "MSH|^~\\&|APP|RX1|CT|CT|20260301091500||ADT^A04|C1|P|2.4\rPID|1||9990001006^^^NHS^NH~M1^^^RX1^MR||DOE^JANE"


def test_fields_components_and_repetitions() -> None:
    m = parse_er7(MSG)
    assert m.msh.value(9, comp=2) == "A04"
    assert m.msh.value(10) == "C1"
    assert m.value("PID-3.1") == "9990001006"
    assert m.value("PID-3[2].1") == "M1"
    assert m.value("PID-3[2].4") == "RX1"
    assert m.value("PID-3[3].1") == ""
    assert m.value("PID-5.2") == "JANE"
    assert m.value("PID-99") == ""


def test_delimiters_are_read_from_msh_not_assumed() -> None:
    text = MSG.replace("|", "#").replace("^", "$").replace("~", "!").replace("&", "*")
    m = parse_er7(text)
    assert m.delimiters == Delimiters("#", "$", "!", "\\", "*")
    assert m.value("PID-3[2].1") == "M1"
    assert m.msh.value(9, comp=1) == "ADT"


@pytest.mark.parametrize("eol", ["\r", "\n", "\r\n"])
def test_segment_endings(eol: str) -> None:
    m = parse_er7(MSG.replace("\r", eol) + eol)
    assert m.segment_names() == ["MSH", "PID"]


def test_escapes_decoded() -> None:
    text = MSG + "\rNTE|1||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X41\\g\\.br\\h\\H\\bold\\N\\"
    assert parse_er7(text).value("NTE-3") == "a|b^c&d~e\\fAg\nhbold"


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=50))
@example("a|b^c~d\\e&f")
def test_escape_roundtrip(value: str) -> None:
    d = Delimiters()
    assert unescape(escape(value, d), d) == value


def test_z_segments_tolerated() -> None:
    m = parse_er7(MSG + "\rZXY|1|local^stuff")
    assert m.value("ZXY-2.2") == "stuff"


@pytest.mark.parametrize(
    ("text", "code", "location"),
    [
        ("", "empty-message", None),
        ("hello, this is not HL7", "not-hl7v2", "MSH"),
        ("MSH", "not-hl7v2", "MSH"),
        ("MSHA^~\\&|x", "bad-msh", "MSH-1"),
        ("MSH|^^\\&|x", "bad-msh", "MSH-2"),
        ("MSH|^~\\&|x\rpid|1", "not-hl7v2", "segment 2"),
        ("MSH|^~\\&|x\rPID|1\rMSH|^~\\&|y", "bad-msh", "segment 3"),
    ],
)
def test_parse_errors_name_a_location(text: str, code: str, location: str | None) -> None:
    with pytest.raises(ParseError) as info:
        parse_er7(text)
    assert info.value.code == code
    assert info.value.location == location


def test_charset_from_msh18() -> None:
    latin = ("MSH|^~\\&|A|B|C|D|20260101||ADT^A04|1|P|2.4|||||GBR|8859/1\rPID|1||X||Ni\xf1o").encode("latin-1")
    assert "Niño" in decode_payload(latin)
    undeclared = latin.replace(b"8859/1", b"")
    with pytest.raises(ParseError) as info:
        decode_payload(undeclared)
    assert info.value.location == "MSH-18" and "\xf1" not in str(info.value)
    assert decode_payload(b"\xef\xbb\xbf" + b"MSH|^~\\&|x").startswith("MSH")


def test_split_batch_handles_bom_blank_lines_crlf_and_envelopes() -> None:
    data = b"\xef\xbb\xbfFHS|^~\\&\r\nBHS|^~\\&\r\nMSH|^~\\&|a\r\nPID|1\r\n\r\n\nMSH|^~\\&|b\nPID|2\nBTS|2\nFTS|1\n"
    assert list(split_batch(data)) == [b"MSH|^~\\&|a\rPID|1", b"MSH|^~\\&|b\rPID|2"]


def test_text_before_first_msh_is_kept_to_be_rejected_not_dropped() -> None:
    assert list(split_batch(b"garbage\nMSH|^~\\&|x")) == [b"garbage", b"MSH|^~\\&|x"]


@given(st.binary(max_size=300))
@example(b"MSH|")
@example(b"MSH|^~\\&")
@example(b"MSH|^~\\&|\rPID|\xff")
def test_any_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    try:
        parse_er7(decode_payload(data))
    except ParseError as exc:
        assert exc.code in {"empty-message", "not-hl7v2", "bad-msh", "bad-encoding"}
