"""ACKs: structure checked by hl7apy for every version, ERR by version, never a value."""

from __future__ import annotations

import pytest
from hl7apy.parser import parse_message

from adapter.inbound.ack import build_ack
from adapter.inbound.er7 import parse_er7
from adapter.inbound.hl7v2 import read_header
from adapter.records import Issue, Outcome


def _header(version: str, control: str = "MSG-1"):  # type: ignore[no-untyped-def]
    return read_header(parse_er7(f"MSH|^~\\&|EPR|RX1|CT|CTF|20260101||ADT^A04^ADT_A01|{control}|P|{version}"))


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"])
@pytest.mark.parametrize("status", ["AA", "AE", "AR"])
def test_ack_parses_with_hl7apy(version: str, status: str) -> None:
    issues = () if status == "AA" else (Issue("invalid-nhs-number", "PID-3.1", "NHS number fails the check"),)
    ack = build_ack(Outcome(status, 1, issues), _header(version))  # type: ignore[arg-type]
    msg = parse_message(ack.decode().replace("\r", "\r"), find_groups=False)
    assert msg.msh.msh_9.msh_9_1.value == "ACK"
    assert msg.msh.msh_3.value == "CT" and msg.msh.msh_5.value == "EPR"  # sender and receiver swapped
    assert msg.msh.msh_12.value == version
    assert msg.msa.msa_1.value == status
    assert msg.msa.msa_2.value == "MSG-1"
    if status != "AA":
        err = ack.decode().split("\r")[2]
        assert err.startswith("ERR|")
        if version in ("2.3", "2.3.1", "2.4"):
            assert err == "ERR|PID^1^3^102&Data type error&HL70357"
        else:
            fields = err.split("|")
            assert fields[2] == "PID^1^3^1^1"  # ERL: segment, sequence, field, repetition, component
            assert fields[3] == "102^Data type error^HL70357"
            assert fields[4] == "E"
            assert "Patient Identifier List" in fields[8]  # field name from hl7apy


def test_ack_without_readable_header_is_still_an_ack() -> None:
    ack = build_ack(Outcome("AR", 1, (Issue("not-hl7v2", "MSH", "not HL7"),)), None)
    msg = parse_message(ack.decode(), find_groups=False)
    assert msg.msa.msa_1.value == "AR"


def test_aa_with_warning_carries_err_with_severity_w() -> None:
    ack = build_ack(Outcome("AA", 1, (Issue("unmapped-code", "PID-8", "left out", "W"),)), _header("2.5"))
    segments = ack.decode().split("\r")
    assert segments[1] == "MSA|AA|MSG-1"
    assert segments[2].split("|")[4] == "W"


def test_control_id_with_delimiters_is_escaped() -> None:
    ack = build_ack(Outcome("AA", 1), _header("2.4", control="A\\F\\B"))
    assert parse_er7(ack.decode()).value("MSA-2") == "A|B"
