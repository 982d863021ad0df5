"""The mapping language, in code: pydantic models of every mapping file (unknown keys are rejected).

mappings/README.md explains it on one page.  In short, a *value spec* says how one output element is
made, and is one of::

    PID-8                                    a source path (shorthand for {from: PID-8})
    [spec, spec, ...]                        alternatives: the first that yields a value
    {from: PATH, ...}                        one value (+ use / transform / lookup)
    {each: PATH, ...}                        one output per repetition, segment or array item
    {const: VALUE}                           a constant (any YAML value)
    {fields: {element: spec, ...}}           an object; absent when none of its elements has a value
    {items: [spec, ...]}                     a list made of several specs (lists are flattened)
    {join: [spec, ...], sep: " / "}          text joined from parts
    {ref: NAME}                              a Reference to the resource another entry produced
    {id_of: Type, key: [spec, ...]}          the deterministic id a resource with that key would have
    {references: produced}                   a Reference to every resource produced so far
    {fail: MESSAGE, code: CODE}              a mapping error (the last of some alternatives)

Every spec may carry ``when:`` / ``unless:`` conditions, limited to ``present``, ``absent``, ``equals``
and ``in``.  Everything that needs logic is a named transform (adapter.mapping.transforms).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, model_validator
from typing_extensions import TypeAliasType

from adapter.errors import ConfigError, ErrorCode

__all__ = [
    "CodeEntry", "CodeTableFile", "When", "Spec", "FromSpec", "EachSpec", "ConstSpec", "ObjectSpec", "ItemsSpec",
    "JoinSpec", "RefSpec", "IdOfSpec", "ReferencesSpec", "FailSpec", "TransformRef", "ObjectFile", "ResourceFile",
    "IdKey", "Entry", "Merge", "Place", "Group", "MessageFile", "FeedFile", "Stu3DiffFile", "Stu3Split",
    "Stu3ExtensionUrl", "SPEC_KEYWORDS",
    "SourceFile",
]

Scalar = Union[str, int, float, bool]
PathList = Union[str, list[str]]
_NAME = r"^[a-z][a-z0-9_]*$"


class Node(BaseModel):
    """Base of every model: no unknown keys; remembers the YAML line it came from (for error messages)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    _line: int = PrivateAttr(0)
    _key_lines: dict[str, int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_line(cls, data: Any, handler: Any) -> Any:
        model = handler(data)
        line = getattr(data, "line", 0)
        if line:
            model._line = line
            model._key_lines = getattr(data, "key_lines", {})
        return model

    @property
    def line(self) -> int:
        return self._line

    def line_of(self, key: str) -> int:
        """The line of one of this node's keys (its own line if unknown)."""
        return self._key_lines.get(key, self._line)


# --- code tables --------------------------------------------------------------------------------------

class CodeEntry(Node):
    code: str | None = None  # default: the source code itself
    display: str | None = None
    system: str | None = None  # default: the table's system

    @model_validator(mode="after")
    def _something(self) -> CodeEntry:
        if self.code is None and self.display is None:
            raise ValueError("an entry needs 'code' or 'display'")
        return self


class CodeTableFile(Node):
    """codes/<table>.yaml: source code -> target code (a string) or {code, display, system}."""

    system: str
    map: dict[Union[str, int], Union[str, CodeEntry]]


# --- conditions ---------------------------------------------------------------------------------------

class When(Node):
    """All the predicates given must hold.  Values are compared trimmed and case-insensitively; ``""``
    in ``equals``/``in`` matches an absent value; a right-hand side ``$var`` or ``@name`` is read too."""

    present: PathList | None = None
    absent: PathList | None = None
    equals: dict[str, Scalar] | None = None
    in_: dict[str, list[Scalar]] | None = Field(default=None, alias="in")

    @model_validator(mode="after")
    def _one(self) -> When:
        if self.present is None and self.absent is None and self.equals is None and self.in_ is None:
            raise ValueError("a condition needs present, absent, equals or in")
        return self


class _Spec(Node):
    when: When | None = None
    unless: When | None = None


TransformRef = Union[str, dict[str, dict[str, Any]]]  # name, or {name: {param: value}}
Emit = Literal["coding", "code", "concept", "source_code"]


class _Pipeline(_Spec):
    use: str | None = None  # datatypes/<file> or secondary/<file>, applied to the item
    with_: dict[str, Spec] | None = Field(default=None, alias="with")
    transform: TransformRef | list[TransformRef] | None = None
    lookup: str | None = None  # a code table name
    emit: Emit = "coding"
    unmapped: Literal["error", "warn", "skip"] = "error"
    location: str | None = None  # where errors/warnings point when the path does not say (a $var)


class FromSpec(_Pipeline):
    from_: Union[str, dict[str, Spec]] = Field(alias="from")
    required: bool | str = False  # True or the error message: an absent source is a mapping error

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"from": data} if isinstance(data, str) else data


class EachSpec(_Pipeline):
    each: str
    map: Spec | None = None  # applied to each item (relative paths .1, .4.1 read the item)
    first: bool = False  # the first item that yields a value, not a list
    unique: bool = False  # drop repeated values


class ConstSpec(_Spec):
    const: Any


class ObjectSpec(_Spec):
    fields: dict[str, Spec]
    needs: list[str] = []  # emitted only if all these elements have a value
    needs_any: list[str] = []  # ... or at least one of these


class ItemsSpec(_Spec):
    items: list[Spec]
    unique: bool = False


class JoinSpec(_Spec):
    join: list[Spec]
    sep: str = ""
    empty: Literal["skip", "keep"] = "skip"  # keep: an absent part is an empty string (keys)


class RefSpec(_Spec):
    ref: str = Field(pattern=_NAME)


class IdOfSpec(_Spec):
    id_of: str
    key: list[Spec]


class ReferencesSpec(_Spec):
    references: Literal["produced"]


class FailSpec(_Spec):
    fail: str
    code: ErrorCode = "missing-field"
    location: str | None = None


# Discriminated by the keyword present (first match); tags are bracketed so they never look like keys.
SPEC_KEYWORDS = ("from", "each", "const", "fields", "items", "join", "ref", "id_of", "references", "fail")


def _spec_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "<from>"
    if isinstance(value, list):
        return "<alternatives>"
    if isinstance(value, dict):
        for key in SPEC_KEYWORDS:
            if key in value:
                return f"<{key}>"
    return None


Spec = TypeAliasType("Spec", Annotated[  # type: ignore[misc]
    Union[
        Annotated[FromSpec, Tag("<from>")],
        Annotated[list["Spec"], Tag("<alternatives>")],  # type: ignore[misc]
        Annotated[EachSpec, Tag("<each>")],
        Annotated[ConstSpec, Tag("<const>")],
        Annotated[ObjectSpec, Tag("<fields>")],
        Annotated[ItemsSpec, Tag("<items>")],
        Annotated[JoinSpec, Tag("<join>")],
        Annotated[RefSpec, Tag("<ref>")],
        Annotated[IdOfSpec, Tag("<id_of>")],
        Annotated[ReferencesSpec, Tag("<references>")],
        Annotated[FailSpec, Tag("<fail>")],
    ],
    Discriminator(_spec_kind, custom_error_type="value-spec",
                  custom_error_message="a value is a path, a list of alternatives, or a mapping with one of: "
                                       + ", ".join(SPEC_KEYWORDS)),
])


# --- mapping files ------------------------------------------------------------------------------------

class ObjectFile(Node):
    """<source>/datatypes/*.yaml and <source>/secondary/*.yaml: one item (a repetition, a segment, a
    value) -> one FHIR datatype or backbone element.  Relative paths (``.1``, ``.4.1``) read the item."""

    input: str  # what it reads (HL7 datatype or segment): documentation, shown in the README
    to: str  # the FHIR type it makes: documentation
    params: list[Annotated[str, Field(pattern=_NAME)]] = []  # values the caller passes with `with:`
    vars: dict[Annotated[str, Field(pattern=_NAME)], Spec] = {}
    when: When | None = None
    unless: When | None = None
    fields: dict[str, Spec] | None = None
    needs: list[str] = []
    needs_any: list[str] = []
    value: Spec | None = None  # instead of `fields`: any value spec (e.g. alternatives of objects)

    @model_validator(mode="after")
    def _one_output(self) -> ObjectFile:
        if (self.fields is None) == (self.value is None):
            raise ValueError("an object file has either 'fields' or 'value'")
        return self


class IdKey(Node):
    key: list[Spec]  # parts of the business key; the id is uuid5(source, resourceType, *parts)


def _id_kind(value: Any) -> str:
    return "<key>" if isinstance(value, dict) and "key" in value else "<spec>"


ResourceId = Annotated[Union[Annotated[IdKey, Tag("<key>")], Annotated[Spec, Tag("<spec>")]],
                       Discriminator(_id_kind)]


class ResourceFile(Node):
    """<source>/resources/*.yaml: a scope (segment, row, object) -> one resource."""

    resource: str = Field(pattern=r"^[A-Z][A-Za-z]+$")
    profile: str | None = None
    segment: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9]{2}$")  # HL7 scope: one per such segment
    repeat: bool = False  # every such segment (NK1, OBX), not only the first
    params: list[Annotated[str, Field(pattern=_NAME)]] = []
    vars: dict[Annotated[str, Field(pattern=_NAME)], Spec] = {}
    when: When | None = None  # checked before the id: no resource, nothing computed
    unless: When | None = None
    id: ResourceId
    fields: dict[str, Spec]
    needs: list[str] = []  # no resource unless these elements have a value
    security: Spec | None = None  # meta.security labels


class Merge(Node):
    """Fold this entry's resource into the first earlier one that matches, instead of emitting it."""

    into: str = Field(pattern=_NAME)  # an earlier entry
    where: dict[str, list[Scalar]]  # dotted element path (lists searched) -> accepted values
    append: list[str]  # list elements appended (values already there are not repeated)


class Place(Node):
    before: str = Field(pattern=_NAME)  # output this entry's resources before that entry's


class Entry(Node):
    """One resource mapping run by a message or feed file."""

    name: str = Field(pattern=_NAME)  # how other mappings refer to it: {ref: name}, "@name"
    mapping: str  # resources/<file>
    segment: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9]{2}$")  # default: the resource file's
    repeat: bool | None = None  # default: the resource file's
    with_: dict[str, Spec] | None = Field(default=None, alias="with")
    merge: Merge | None = None
    place: Place | None = None
    when: When | None = None
    unless: When | None = None


class Group(Node):
    """Split the segments after MSH into groups, each starting at ``start`` (e.g. A40: PID + MRG)."""

    start: str = Field(pattern=r"^[A-Z][A-Z0-9]{2}$")
    require: list[str] = []  # segments each group must have (else a mapping error)
    resources: list[Entry]


class MessageFile(Node):
    """hl7v2/messages/<TYPE>_<TRIGGER>.yaml (files starting with _ are partials, only included)."""

    message: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9]{2}\^[A-Z0-9]{3}$")  # MSH-9.1^MSH-9.2
    include: list[str] = []  # partials (messages/_<name>.yaml), merged in: keys may not repeat
    require: list[str] = []  # segments the message must have, checked in order (else a mapping error)
    meta_source: Spec | None = None  # meta.source of every resource
    source_time: Spec | None = None  # when the source says this happened (ordering of updates)
    groups: Group | None = None
    resources: list[Entry] = []


class FeedFile(Node):
    """csv/feeds/<feed>.yaml, json/feeds/<feed>.yaml: one row / object -> resources."""

    feed: str = Field(pattern=_NAME)
    format: Literal["csv", "json"]
    source: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]*$")  # the ingest source it serves
    files: list[str] = []  # file-name patterns (glob, case-insensitive) of an export this feed reads
    order: int = 100  # an export's files are read in this order (people before their contacts)
    person: str | None = None  # column naming the person a row belongs to: known from this export or stored
    include: list[str] = []
    meta_source: Spec | None = None
    source_time: Spec | None = None
    resources: list[Entry] = []


_ELEMENT_PATH = r"^[a-z][A-Za-z0-9]*(\.[a-z][A-Za-z0-9]*)*$"  # dotted: explanation.reason, lists crossed
ElementPath = Annotated[str, Field(pattern=_ELEMENT_PATH)]


class Stu3Split(Node):
    """A list whose items went to different R4 elements by a code in each item (Observation.related)."""

    by: ElementPath  # the element of each item that decides (Observation.related.type)
    value: ElementPath  # the element of each item that is kept (Observation.related.target)
    into: dict[str, ElementPath]  # code -> R4 element (a list, next to the STU3 one); other codes: not kept


class Stu3ExtensionUrl(Node):
    """An extension whose R4 definition also changed its value: new url, and the value converted."""

    url: str
    code_to_concept: str | None = None  # valueCode -> valueCodeableConcept with this system


class Stu3DiffFile(Node):
    """stu3/<Resource>.yaml: only what differs between STU3 and R4 for one resource type; ``resource: "*"``
    (``stu3/_common.yaml``): code systems and extension urls that changed for every type.

    Paths are dotted element names from the resource (lists are crossed: every item).  Applied in this
    order, each on the result of the one before; all but ``wrap``, ``unwrap`` and ``defaults`` name STU3
    elements:  deep (code_systems, code_system_prefixes, extension_urls, drop_extensions, everywhere),
    extension_to_element, drop, values, when_true, code_to_concept, text_to_concept, to_annotation, split,
    rename (deepest first), wrap, unwrap, defaults."""

    resource: str = Field(pattern=r"^(\*|[A-Z][A-Za-z]+)$")
    profile: str | None = None  # meta.profile of the converted resource
    key: list[ElementPath] = []  # business key of a resource sent without an id (List): its values joined
    extension_to_element: dict[str, ElementPath] = {}  # extension url -> the R4 element its value[x] became
    drop: list[ElementPath] = []  # elements R4 no longer has
    values: dict[ElementPath, dict[Union[str, int], Union[str, None]]] = {}  # codes that changed; null: drop
    when_true: dict[ElementPath, dict[ElementPath, Scalar]] = {}  # a boolean that became a code: set these
    code_to_concept: dict[ElementPath, str] = {}  # a code that became a CodeableConcept of this system
    text_to_concept: list[ElementPath] = []  # a string that became a CodeableConcept: {text}
    to_annotation: list[ElementPath] = []  # a string that became an Annotation: {text}
    split: dict[ElementPath, Stu3Split] = {}
    rename: dict[ElementPath, ElementPath] = {}  # STU3 element -> R4 element (same parent: in place; else moved)
    wrap: list[ElementPath] = []  # a single value that became a list in R4
    unwrap: list[ElementPath] = []  # a list that became a single value in R4 (the first kept, a warning)
    defaults: dict[ElementPath, Any] = {}  # an element R4 made required that the source never sends
    code_systems: dict[str, str] = {}  # Coding.system (trimmed) STU3 -> R4, anywhere in the resource
    code_system_prefixes: dict[str, str] = {}  # the same by prefix: http://hl7.org/fhir/v3/ -> ...CodeSystem/v3-
    extension_urls: dict[str, Union[str, Stu3ExtensionUrl]] = {}  # extension url STU3 -> R4, anywhere
    drop_extensions: list[str] = []  # extension urls with no R4 meaning, anywhere

    @model_validator(mode="after")
    def _consistent(self) -> Stu3DiffFile:
        if self.resource == "*":
            per_type = [k for k in ("profile", "key", "extension_to_element", "drop", "values", "when_true",
                                    "code_to_concept", "text_to_concept", "to_annotation", "split", "rename",
                                    "wrap", "unwrap", "defaults") if getattr(self, k)]
            if per_type:
                raise ValueError(f"resource \"*\" holds only code systems and extension urls, not {per_type[0]}")
        both = set(self.extension_to_element) & (set(self.extension_urls) | set(self.drop_extensions))
        if both:
            raise ValueError(f"extension {sorted(both)[0]} is moved to an element and also renamed or dropped")
        return self


for _model in (FromSpec, EachSpec, ObjectSpec, ItemsSpec, JoinSpec, IdOfSpec, ObjectFile, IdKey, ResourceFile,
               Entry, Group, MessageFile, FeedFile, _Pipeline):
    _model.model_rebuild()


# --- a loaded file (not part of the grammar: where a model came from) ------------------------------------

@dataclass(frozen=True)
class SourceFile:
    """One mapping file after validation: its name inside mappings/ (``hl7v2/resources/patient.yaml``),
    where it was read from (shipped or the site overlay) and its model."""

    name: str
    path: Path
    origin: Literal["shipped", "site"]
    kind: Literal["codes", "message", "feed", "resource", "object", "stu3"]
    source: str  # hl7v2 | csv | json | stu3 | codes
    model: Any

    def error(self, node: Any, message: str) -> ConfigError:
        """A start-up error naming this file and the line of ``node`` (a model, or a line number)."""
        line = node if isinstance(node, int) else getattr(node, "line", 0)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {message}", location=where)
