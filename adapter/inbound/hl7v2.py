"""HL7 v2 inbound: bytes -> tokenized message + checked header.

The header check decides what cannot be processed at all (ACK ``AR``): a broken MSH, an unsupported
version, event or processing id.  Routing uses MSH-9.1/MSH-9.2 only (MSH-9.3 is often wrong).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from adapter.errors import ParseError, ProcessingIdRejected, UnsupportedMessage
from adapter.inbound.er7 import Er7Message, decode_payload, parse_er7

__all__ = ["Header", "SUPPORTED_EVENTS", "SUPPORTED_VERSIONS", "read_message", "read_header", "sniff_header"]

SUPPORTED_VERSIONS = frozenset(
    {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"}
)
# The events the shipped mappings handle (the default when no mapping set is given; a test keeps the
# two equal).
SUPPORTED_EVENTS: dict[str, frozenset[str]] = {
    "ADT": frozenset({"A01", "A02", "A03", "A04", "A05", "A08", "A11", "A13", "A28", "A31", "A40"}),
    "SIU": frozenset({"S12", "S13", "S14", "S15", "S17", "S26"}),
}


@dataclass(frozen=True, slots=True)
class Header:
    sending_app: str
    sending_facility: str
    receiving_app: str
    receiving_facility: str
    timestamp: str  # MSH-7 raw TS
    message_type: str  # MSH-9.1
    trigger: str  # MSH-9.2
    control_id: str  # MSH-10
    processing_id: str  # MSH-11.1
    version: str  # MSH-12.1

    @property
    def sender(self) -> str:
        """The sender key for idempotency: MSH-3 and MSH-4 (namespace ids)."""
        return f"{self.sending_app}|{self.sending_facility}"

    @property
    def is_ack(self) -> bool:
        return self.message_type in ("ACK", "MCF")


def read_header(msg: Er7Message) -> Header:
    msh = msg.msh
    return Header(
        sending_app=msh.value(3),
        sending_facility=msh.value(4),
        receiving_app=msh.value(5),
        receiving_facility=msh.value(6),
        timestamp=msh.value(7),
        message_type=msh.value(9, comp=1).strip().upper(),
        trigger=msh.value(9, comp=2).strip().upper(),
        control_id=msh.value(10).strip(),
        processing_id=msh.value(11).strip().upper(),
        version=msh.value(12).strip(),
    )


def sniff_header(payload: bytes) -> Header | None:
    """Best effort header of an unparseable or oversized payload, for addressing its ACK."""
    try:
        text = payload.decode("latin-1")
        first = text.lstrip("\ufeff\xef\xbb\xbf\x0b").split("\r", 1)[0].split("\n", 1)[0]
        return read_header(parse_er7(first))
    except (ParseError, IndexError):
        return None


def read_message(payload: bytes, *, accepted_processing_ids: frozenset[str],
                 events: Mapping[str, frozenset[str]] = SUPPORTED_EVENTS) -> tuple[Er7Message, Header]:
    """Parse and check a message. Raises ParseError / UnsupportedMessage / ProcessingIdRejected (ACK AR).

    ``events``: MSH-9.1 -> the MSH-9.2 triggers accepted; the pipeline passes those its mapping set
    maps, so a site overlay that adds a message file adds the event."""
    msg = parse_er7(decode_payload(payload))
    header = read_header(msg)
    if not header.control_id:
        raise ParseError("MSH-10 message control id is empty", code="bad-msh", location="MSH-10")
    if not header.message_type:
        raise ParseError("MSH-9 message type is empty", code="bad-msh", location="MSH-9.1")
    if header.is_ack:
        return msg, header
    if header.version not in SUPPORTED_VERSIONS:
        raise UnsupportedMessage("MSH-12 version is not supported", code="unsupported-version",
                                 location="MSH-12")
    if header.processing_id not in accepted_processing_ids:
        raise ProcessingIdRejected("MSH-11 processing id is not accepted here", location="MSH-11")
    triggers = events.get(header.message_type)
    if triggers is None:
        raise UnsupportedMessage("MSH-9.1 message type is not supported", location="MSH-9.1")
    if header.trigger not in triggers:
        raise UnsupportedMessage("MSH-9.2 trigger event is not supported", location="MSH-9.2")
    return msg, header
