"""A fast ER7 (pipe-and-hat) tokenizer for HL7 v2.

This is the ingest hot path: it splits text on the delimiters declared in MSH-1/MSH-2 and decodes
escapes lazily, per value asked for, so a message costs microseconds, not the ~12 ms of building
hl7apy's element tree.  hl7apy is used where its knowledge of the standard matters (field names in
error messages, see :mod:`adapter.inbound.hl7names`).

Locations use the spec's dash notation: ``PID-3`` (field), ``PID-3[2].1`` (second repetition,
first component), ``PID-3.4.1`` (component 4, sub-component 1).  Indexes are 1-based, as in HL7.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Iterator

from adapter.errors import ParseError

__all__ = ["Delimiters", "Er7Message", "Segment", "Field", "parse_er7", "decode_payload", "split_batch"]

_LINE_BREAKS = re.compile(r"\r\n|\n\r|\n|\r")

# MSH-18 character set names (HL7 table 0211) -> Python codecs.
_CHARSETS = {
    "": "utf-8",
    "ASCII": "ascii",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "CP1252": "cp1252",
    "WINDOWS-1252": "cp1252",
}


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


class Field:
    """One field (all its repetitions) of a segment; values are decoded on access."""

    __slots__ = ("_raw", "_d", "_reps")

    def __init__(self, raw: str, delims: Delimiters) -> None:
        self._raw = raw
        self._d = delims
        self._reps: list[str] | None = None

    @property
    def raw(self) -> str:
        return self._raw

    def __bool__(self) -> bool:
        return self._raw != ""

    @property
    def repetitions(self) -> list[str]:
        if self._reps is None:
            self._reps = self._raw.split(self._d.repetition) if self._raw else []
        return self._reps

    def value(self, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        """The decoded value at repetition/component/sub-component (1-based); '' when absent."""
        reps = self.repetitions
        if rep > len(reps):
            return ""
        text = reps[rep - 1]
        d = self._d
        if d.component in text or comp > 1:
            parts = text.split(d.component)
            text = parts[comp - 1] if comp <= len(parts) else ""
        if d.subcomponent in text or sub > 1:
            parts = text.split(d.subcomponent)
            text = parts[sub - 1] if sub <= len(parts) else ""
        return unescape(text, d) if d.escape in text else text

    def components(self, rep: int = 1) -> list[str]:
        """Decoded components of one repetition (sub-components left joined, decoded)."""
        reps = self.repetitions
        if rep > len(reps):
            return []
        d = self._d
        return [unescape(c, d) if d.escape in c else c for c in reps[rep - 1].split(d.component)]


class Segment:
    __slots__ = ("name", "_fields", "_d", "line_no")

    def __init__(self, name: str, fields: list[str], delims: Delimiters, line_no: int) -> None:
        self.name = name
        self._fields = fields  # index n holds field n (index 0 is the segment name)
        self._d = delims
        self.line_no = line_no

    def field(self, n: int) -> Field:
        f = self._fields
        return Field(f[n] if n < len(f) else "", self._d)

    def value(self, n: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        f = self._fields
        if n >= len(f) or not f[n]:
            return ""
        raw = f[n]
        d = self._d
        # Fast path: a plain value with no structure at all.
        if rep == 1 and comp == 1 and sub == 1 and not any(c in raw for c in d.encoding_characters):
            return raw
        return Field(raw, d).value(rep, comp, sub)

    def raw_fields(self) -> list[str]:
        return self._fields


class Er7Message:
    """A tokenized HL7 v2 message: segments in order, delimiters from MSH-1/MSH-2."""

    __slots__ = ("segments", "delimiters", "_by_name")

    def __init__(self, segments: list[Segment], delimiters: Delimiters) -> None:
        self.segments = segments
        self.delimiters = delimiters
        by_name: dict[str, list[Segment]] = {}
        for s in segments:
            by_name.setdefault(s.name, []).append(s)
        self._by_name = by_name

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        segs = self._by_name.get(name)
        return segs[0] if segs else None

    def all(self, name: str) -> list[Segment]:
        return self._by_name.get(name, [])

    def has(self, name: str) -> bool:
        return name in self._by_name

    def value(self, location: str) -> str:
        """Value at a location such as ``PID-3[2].1`` (first segment of that name)."""
        seg_name, n, rep, comp, sub = parse_location(location)
        seg = self.first(seg_name)
        return seg.value(n, rep, comp, sub) if seg else ""

    def segment_names(self) -> list[str]:
        return [s.name for s in self.segments]


_LOC = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d+)(?:\[(\d+)\])?(?:\.(\d+))?(?:\.(\d+))?$")


def parse_location(location: str) -> tuple[str, int, int, int, int]:
    m = _LOC.match(location)
    if not m:
        raise ValueError(f"not an HL7 location: {location!r}")
    seg, f, r, c, s = m.groups()
    return seg, int(f), int(r or 1), int(c or 1), int(s or 1)


_ESCAPE_CACHE: dict[Delimiters, re.Pattern[str]] = {}


def unescape(text: str, d: Delimiters) -> str:
    """Decode HL7 escapes: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh..\\ \\.br\\; highlighting and charset escapes dropped."""
    pat = _ESCAPE_CACHE.get(d)
    if pat is None:
        e = re.escape(d.escape)
        pat = re.compile(f"{e}([^{e}]*){e}")
        _ESCAPE_CACHE[d] = pat

    def repl(m: re.Match[str]) -> str:
        body = m.group(1)
        if body == "F":
            return d.field
        if body == "S":
            return d.component
        if body == "T":
            return d.subcomponent
        if body == "R":
            return d.repetition
        if body == "E":
            return d.escape
        if body[:1] == "X" and len(body) > 1:
            try:
                return bytes.fromhex(body[1:]).decode("utf-8", errors="replace")
            except ValueError:
                return m.group(0)
        if body in (".br", ".sp"):
            return "\n"
        if body in ("H", "N") or body[:1] in ("C", "M", "Z") or body[:1] == ".":
            return ""
        return m.group(0)

    return pat.sub(repl, text)


def escape(text: str, d: Delimiters) -> str:
    """Inverse of :func:`unescape` for the five delimiter characters."""
    e = d.escape
    out = text.replace(e, f"{e}E{e}")
    for ch, code in ((d.field, "F"), (d.component, "S"), (d.subcomponent, "T"), (d.repetition, "R")):
        out = out.replace(ch, f"{e}{code}{e}")
    return out.replace("\r", f"{e}X0D{e}").replace("\n", f"{e}X0A{e}")


def decode_payload(payload: bytes) -> str:
    """Bytes -> text, honouring a UTF-8 BOM and the MSH-18 character set.

    MSH-18 is read from the raw bytes (the header is ASCII in every character set we accept).
    Undeclared means UTF-8.  Bytes invalid in the declared set raise ParseError naming MSH-18 and
    the byte offset (never the byte's context).
    """
    if payload.startswith(codecs.BOM_UTF8):
        payload = payload[3:]
    charset = _declared_charset(payload)
    codec = _CHARSETS.get(charset.upper())
    if codec is None:
        raise ParseError("MSH-18 names a character set this adapter does not accept", code="bad-encoding",
                         location="MSH-18")
    try:
        return payload.decode(codec)
    except UnicodeDecodeError as exc:
        raise ParseError(f"byte at offset {exc.start} is not valid {codec}", code="bad-encoding",
                         location="MSH-18") from None


def _declared_charset(payload: bytes) -> str:
    if not payload.startswith(b"MSH") or len(payload) < 8:
        return ""
    end = len(payload)
    for stop in (b"\r", b"\n"):
        i = payload.find(stop)
        if i != -1 and i < end:
            end = i
    header = payload[:end].decode("latin-1")
    fs = header[3]
    parts = header.split(fs)
    # parts[0]='MSH', parts[1]=encoding chars (MSH-2); MSH-n is parts[n-1]
    if len(parts) > 17:
        comp = parts[1][:1] or "^"
        rep = parts[1][1:2] or "~"
        return parts[17].split(rep)[0].split(comp)[0].strip()
    return ""


_BYTE_LINES = re.compile(rb"\r\n|\n\r|\n|\r")


def split_batch(data: bytes) -> Iterator[bytes]:
    """Split a file's bytes into messages, each starting at an ``MSH`` segment.

    Segment ends may be CR, LF or CRLF; a UTF-8 byte order mark, blank lines and batch envelopes
    (FHS/BHS/BTS/FTS) are skipped.  Splitting works on bytes so that each message is decoded with
    its own MSH-18 character set.  Text before the first MSH is handed on as a message of its own,
    so it is archived and rejected rather than silently dropped.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    current: list[bytes] = []
    for line in _BYTE_LINES.split(data):
        if not line.strip():
            continue
        tag = line[:3]
        if tag == b"MSH" or (line[:6] == codecs.BOM_UTF8 + b"MSH"):
            if current:
                yield b"\r".join(current)
            current = [line]
        elif tag in (b"FHS", b"BHS", b"BTS", b"FTS"):
            continue
        else:
            current.append(line)
    if current:
        yield b"\r".join(current)


def parse_er7(text: str) -> Er7Message:
    """Tokenize one message.  Raises ParseError (with a location, never a value) if it is not ER7."""
    text = text.lstrip("\ufeff").strip("\r\n\x0b\x1c ")
    if not text:
        raise ParseError("empty message", code="empty-message")
    if not text.startswith("MSH") or len(text) < 8:
        raise ParseError("message does not start with an MSH segment", code="not-hl7v2", location="MSH")
    fs = text[3]
    if fs.isalnum() or fs in "\r\n ":
        raise ParseError("MSH-1 field separator is not a usable delimiter", code="bad-msh", location="MSH-1")
    end = text.find(fs, 4)
    enc = text[4:end] if end != -1 else text[4:]
    if len(enc) < 4 or len(enc) > 5 or len(set(enc[:4] + fs)) != 5 or any(c.isalnum() or c.isspace() for c in enc):
        raise ParseError("MSH-2 encoding characters are missing or invalid", code="bad-msh", location="MSH-2")
    d = Delimiters(field=fs, component=enc[0], repetition=enc[1], escape=enc[2], subcomponent=enc[3])

    segments: list[Segment] = []
    for line_no, line in enumerate(_LINE_BREAKS.split(text), start=1):
        if not line.strip():
            continue
        name = line[:3]
        if len(name) < 3 or not name.isalnum() or not name.isupper() or (len(line) > 3 and line[3] != fs):
            raise ParseError(f"segment {line_no} does not start with a segment id", code="not-hl7v2",
                             location=f"segment {line_no}")
        if name == "MSH":
            if segments:
                raise ParseError("a second MSH segment inside one message", code="bad-msh",
                                 location=f"segment {line_no}")
            rest = line[4:].split(fs)
            # MSH-1 is the separator itself, MSH-2 the encoding characters: keep HL7 numbering.
            fields = ["MSH", fs, *rest]
        else:
            fields = line.split(fs)
        segments.append(Segment(name, fields, d, line_no))
    return Er7Message(segments, d)
