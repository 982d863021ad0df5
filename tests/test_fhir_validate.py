"""adapter.fhir_validate: the memoized validator must give fhir.resources R4B's verdict, always.

The differential tests are the heart: valid seeds (the mapper's own output, plus hand-built resources covering
the other primitive kinds, aliases, ``_element`` extensions, choice types and lax Python types), the cache
warmed with the seed so the fast path runs, then random leaf values in the same shape, and
``validate_r4_resource`` must raise iff ``model_validate`` raises.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adapter.fhir_validate import R4ValidationError, cache_info, clear_cache, validate_r4_resource
from adapter.inbound.hl7v2 import read_message
from adapter.mapping.codes import load_code_tables
from adapter.mapping import MappingContext, map_message

Resource = dict[str, Any]
Path = tuple[str | int, ...]


def _seg(name: str, fields: dict[int, str]) -> str:
    values = [""] * max(fields)
    for n, v in fields.items():
        values[n - 1] = v
    return "|".join([name, *values])


_PID = _seg("PID", {1: "1", 3: "9990001006^^^NHS^NH~M0000001^^^RX1^MR", 5: "EXAMPLE^Amber^^^^^L", 7: "20090514",
                    8: "F", 11: "1 Example Road^^Exampletown^^ZZ99 1AA^GBR^H", 13: "07700900001^PRN^CP", 32: "NSTS01"})
_ADT = ["MSH|^~\\&|MATEPR|RX1|CT|CT|20260301091500||ADT^A01^ADT_A01|C1|P|2.4", "EVN|A01|20260301091500", _PID,
        _seg("PD1", {3: "Example Surgery^^^^^^^^^Y12345"}),
        _seg("NK1", {1: "1", 2: "EXAMPLE^Ben", 3: "FTH^Father^HL70063", 15: "M", 16: "19900101"}),
        _seg("NK1", {1: "2", 2: "EXAMPLE^Cara", 3: "GRP^Grandparent^HL70063"}),
        _seg("PV1", {1: "1", 2: "I", 3: "MATWARD^Bay 1^Bed 2^RX1", 10: "OBS", 19: "V00000001^^^RX1",
                     44: "20260301091500"}),
        _seg("OBX", {1: "1", 2: "CE", 3: "SAFEGUARD^Safeguarding alert^L",
                     5: "342191000000101^Subject to child protection plan^SCT", 11: "F", 14: "20250101"})]
_SIU = ["MSH|^~\\&|MATEPR|RX1|CT|CT|20260301091500||SIU^S26^SIU_S12|C2|P|2.4",
        _seg("SCH", {2: "APPT-1^MATEPR", 7: "FOLLOWUP^Follow-up^HL70276", 9: "30", 10: "min",
                     11: "^^^20260301091500", 25: "Noshow"}),
        _PID, "RGS|1", _seg("AIL", {1: "1", 3: "CLINIC^Room 4^^RX1", 6: "20260301091500", 9: "30", 10: "min",
                                    12: "Noshow"})]


def _mapped() -> list[Resource]:
    out: list[Resource] = []
    for segments in (_ADT, _SIU):
        msg, header = read_message("\r".join(segments).encode(), accepted_processing_ids=frozenset("PTD"))
        ctx = MappingContext("maternity", header.sending_facility, header.control_id, ZoneInfo("Europe/London"),
                             load_code_tables(), lambda _: None)
        out += map_message(msg, header, ctx).resources
    return out


_EXT = [{"url": "https://example.org/ext", "valueString": "x"}]
# Hand-built seeds: kinds the mapper does not emit yet, aliases, _element extensions, lax Python types.
_HAND: list[Resource] = [
    {"resourceType": "Patient", "id": "p1", "meta": {"lastUpdated": "2026-03-01T09:15:00.123+00:00",
                                                     "versionId": "1", "profile": ["https://example.org/p|1.0"]},
     "implicitRules": "https://example.org/rules", "language": "en-GB", "active": "true",
     "deceasedDateTime": "2020-01-01T10:00:00Z", "multipleBirthInteger": 2, "birthDate": "2009-05-14",
     "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                   "valueDateTime": "2009-05-14T10:00:00+01:00"}]},
     "name": [{"given": ["Amber", None], "_given": [None, {"extension": _EXT}], "family": "EXAMPLE"}],
     "photo": [{"contentType": "image/png", "data": "QUJDRA==", "url": "https://example.org/p.png", "size": 4,
                "hash": "QUJD", "creation": "2020-01"}],
     "communication": [{"language": {"text": "English"}, "preferred": False}]},
    {"resourceType": "Patient", "deceasedBoolean": None, "deceasedDateTime": "2020", "multipleBirthBoolean": False,
     "multipleBirthInteger": None, "gender": None, "_gender": {"extension": _EXT}},
    {"resourceType": "Patient", "deceasedBoolean": True, "multipleBirthBoolean": False, "gender": "female",
     "birthDate": "2009", "address": [{"period": {"start": "2009-05", "end": "2010-01-01T00:00:00+14:00"}}]},
    {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "length": {"value": 1.5},
     "priority": {"text": "urgent"}, "hospitalization": {"preAdmissionIdentifier": {"value": "x"}},
     "participant": [{"period": {"start": "2026-03-01T09:15:00+00:00"}}], "_status": {"id": "s1"}},
    {"resourceType": "Flag", "status": None, "_status": {"extension": _EXT}, "code": {"text": "x"},
     "subject": {"reference": "Patient/p1", "display": None}, "period": None},
    {"resourceType": "Appointment", "status": "booked", "priority": 3, "minutesDuration": "30",
     "start": "2026-03-01T09:15:00Z", "created": "2026-03-01", "description": "first visit",
     "participant": [{"status": "accepted", "actor": {"reference": "Patient/p1"}}],
     "requestedPeriod": [{"start": "2026-03-01"}], "comment": "ok"},
    {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 12.5,
     "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}, "issued": "2026-03-01T09:15:00Z",
     "effectiveDateTime": "2026", "component": [{"code": {"text": "y"}, "valueInteger": 3},
                                                 {"code": {"text": "z"}, "valueTime": "10:00:00"}]},
    {"resourceType": "Provenance", "target": [{"reference": "Patient/p1"}], "recorded": "2026-03-01T09:15:00Z",
     "policy": ["urn:oid:1.2.3"], "agent": [{"who": {"display": "x"}}],
     "signature": [{"type": [{"code": "1.2.840.10065.1.12.1.1"}], "when": "2026-03-01T09:15:00Z",
                    "who": {"display": "x"}, "data": "QUJD"}]},
]
SEEDS: list[Resource] = _mapped() + _HAND
KINDS = {r["resourceType"] for r in SEEDS}
assert {"Patient", "RelatedPerson", "Encounter", "Appointment", "Flag", "Provenance"} <= KINDS


def _reference(resource: Resource) -> str | None:
    """fhir.resources' own verdict: None (valid) or the first error type (fhir_core bugs raise others)."""
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except ValidationError as exc:
        return str(exc.errors()[0]["type"])
    except Exception as exc:  # noqa: BLE001 - e.g. AttributeError for a bool where a url is expected
        return type(exc).__name__
    return None


def _leaves(node: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path, node


def _set(resource: Resource, path: Path, value: Any) -> None:
    node: Any = resource
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


_TRICKY = ["", " ", "\t", "\n", "a  b", " a", "a ", "\u00a0", "\u2003x", "\x1c", "x\x1f", "\u0085", "é", "日本",
           "2009-13-40", "2009-02-29", "2008-02-29", "2009-00-10", "0000", "2020", "2020-13", "2020-1-01",
           "2020-01-01T10:00", "2020-01-01T10:00:00", "2020-01-01T10:00:00Z", "2020-01-01T10:00:00.5+01:00",
           "2020-01-01T10:00:00+14:00", "2020-01-01T10:00:00+14:30", "2020-01-01T24:00:00Z",
           "2016-12-31T23:59:60Z", "2020-01-01 10:00:00Z", "10:00:00", "23:59:60", "24:00:00", "10:00:00Z",
           "true", "false", "True", "yes", "0", "1", "-1", "+1", "01", "-0", "1.5", "1e3", "1E+3", ".5", "2147483648",
           "x" * 64, "x" * 65, "x" * 256, "a.b-c", "a_b", "urn:oid:1.2.3", "urn:oid:3.1", "urn:uuid:x",
           "http://x y", "http://", "https://example.org", "Patient/123", "/Patient", "#frag", "mailto:a@b",
           "QUJD", "QUJ", "QUJ=", "QU JD", "<div>x</div>", "string", "date"]
_DATEISH = st.from_regex(r"\A[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,4})?)?"
                         r"(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?\Z")
_STRINGS = st.one_of(st.sampled_from(_TRICKY), st.text(max_size=12), _DATEISH, st.from_regex(r"\A[ -~]{0,70}\Z"))
_INTS = st.one_of(st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63, -(10**30)]),
                  st.integers())
_FLOATS = st.one_of(st.sampled_from([0.0, -0.0, 1.0, 1.5, 1e300, 1e-7, float("nan"), float("inf")]), st.floats())
_SAME_TYPE = {str: _STRINGS, bool: st.booleans(), int: _INTS, float: _FLOATS, type(None): st.none()}
_ANY = st.one_of(_STRINGS, st.booleans(), _INTS, _FLOATS, st.none())


def _mutate(draw: st.DrawFn, seed: Resource, any_type: bool) -> Resource:
    resource = copy.deepcopy(seed)
    paths = [(p, v) for p, v in _leaves(seed) if p != ("resourceType",)]
    chosen = draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4, unique=True))
    for path, old in chosen:
        _set(resource, path, draw(_ANY if any_type else _SAME_TYPE[type(old)]))
    return resource


@st.composite
def _same_shape(draw: st.DrawFn, seed: Resource) -> Resource:
    return _mutate(draw, seed, any_type=False)


@st.composite
def _any_leaf_type(draw: st.DrawFn, seed: Resource) -> Resource:
    return _mutate(draw, seed, any_type=True)


def _assert_same_verdict(resource: Resource, *, fast: bool) -> None:
    expected = _reference(resource)
    before = cache_info()["full"]
    try:
        validate_r4_resource(resource)
    except R4ValidationError as exc:
        assert expected == exc.error_type, f"memoized rejected ({exc.error_type}), fhir.resources says {expected}"
    else:
        assert expected is None, f"memoized accepted, fhir.resources rejects ({expected})"
        if fast:  # a valid resource of a warmed shape must not need model_validate
            assert cache_info()["full"] == before


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


@pytest.mark.parametrize("seed", SEEDS, ids=[f"{r['resourceType']}-{i}" for i, r in enumerate(SEEDS)])
def test_seeds_are_valid_and_cached(seed: Resource) -> None:
    assert _reference(seed) is None
    validate_r4_resource(seed)
    validate_r4_resource(copy.deepcopy(seed))
    assert cache_info() == {"shapes": 1, "fast": 1, "full": 1}


@pytest.mark.parametrize("seed", SEEDS, ids=[f"{r['resourceType']}-{i}" for i, r in enumerate(SEEDS)])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_differential_same_shape(seed: Resource, data: st.DataObject) -> None:
    validate_r4_resource(seed)  # warm: the mutated resource takes the fast path
    _assert_same_verdict(data.draw(_same_shape(seed)), fast=True)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_differential_any_leaf_type(data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(SEEDS))
    validate_r4_resource(seed)
    first = data.draw(_any_leaf_type(seed))
    _assert_same_verdict(first, fast=False)
    # the same shape again (maybe cached by `first` now): still fhir.resources' verdict
    _assert_same_verdict(data.draw(_same_shape(first)), fast=False)


PATIENT = next(r for r in SEEDS if r["resourceType"] == "Patient")
SECRET = "Zed-Secretname 2009-13-40"


@pytest.mark.parametrize(("path", "value"), [
    (("birthDate",), SECRET), (("gender",), "Zed  Secret"), (("id",), SECRET), (("active",), SECRET),
    (("name", 0, "given", 0), ""), (("telecom", 0, "use"), " Zed Secret"), (("identifier", 0, "value"), "")])
def test_error_never_contains_the_value(path: Path, value: str) -> None:
    validate_r4_resource(PATIENT)
    bad = copy.deepcopy(PATIENT)
    _set(bad, path, value)
    with pytest.raises(R4ValidationError) as info:
        validate_r4_resource(bad)
    exc = info.value
    assert exc.__context__ is None and exc.__cause__ is None
    text = "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args)
    assert "Zed" not in text and "Secret" not in text
    assert exc.resource_type == "Patient" and exc.path.startswith("Patient.") and exc.error_type


@pytest.mark.parametrize("where", [(), ("name", 0), ("meta",)])
def test_unknown_keys_and_resource_types_are_not_echoed(where: Path) -> None:
    bad = copy.deepcopy(PATIENT)
    node: Any = bad
    for part in where:
        node = node[part]
    node["Zedsecretname"] = "x"
    with pytest.raises(R4ValidationError) as info:
        validate_r4_resource(bad)
    assert "Zed" not in str(info.value) and info.value.error_type == "extra_forbidden"
    assert info.value.path == "Patient" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where) + ".?"
    with pytest.raises(R4ValidationError) as info:
        validate_r4_resource({"resourceType": "ZedSecretname"})
    assert "Zed" not in str(info.value) and info.value.error_type == "unknown-resource-type"


def test_cache_hits_skip_full_validation_and_failures_fall_back() -> None:
    validate_r4_resource(PATIENT)
    other = copy.deepcopy(PATIENT)
    _set(other, ("birthDate",), "2001-02-03")
    _set(other, ("name", 0, "family"), "OTHER")
    for _ in range(5):
        validate_r4_resource(other)
    assert cache_info() == {"shapes": 1, "fast": 5, "full": 1}
    _set(other, ("birthDate",), "2001-02-30")
    with pytest.raises(R4ValidationError) as info:
        validate_r4_resource(other)
    assert info.value.path == "Patient.birthDate"
    assert cache_info() == {"shapes": 1, "fast": 5, "full": 2}
    clear_cache()
    assert cache_info() == {"shapes": 0, "fast": 0, "full": 0}


def test_failing_first_resource_caches_nothing() -> None:
    bad = copy.deepcopy(PATIENT)
    _set(bad, ("gender",), " female")
    with pytest.raises(R4ValidationError):
        validate_r4_resource(bad)
    assert cache_info()["shapes"] == 0
    validate_r4_resource(PATIENT)
    validate_r4_resource(PATIENT)
    assert cache_info() == {"shapes": 1, "fast": 1, "full": 2}


@pytest.mark.parametrize("resource", [
    {"resourceType": "Patient", "text": {"status": "generated", "div": "<div>x</div>"}},
    {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o1"}],
     "managingOrganization": {"reference": "#o1"}},
    {"resourceType": "Encounter", "status": "finished", "class_fhir": {"code": "AMB"}},  # by name, not alias
    {"resourceType": "Patient", "fhir_comments": ["a"]},
    {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}}]},
], ids=["narrative", "contained", "field-name", "comments", "bundle"])
def test_uncertain_shapes_always_validate_fully(resource: Resource) -> None:
    assert _reference(resource) is None
    for _ in range(3):
        validate_r4_resource(resource)
    assert cache_info()["full"] == 3 and cache_info()["fast"] == 0


def test_contained_resource_errors_are_found() -> None:
    good = {"resourceType": "Patient", "contained": [{"resourceType": "Patient", "id": "a"}]}
    validate_r4_resource(good)
    bad = copy.deepcopy(good)
    bad["contained"][0]["id"] = "a b"
    with pytest.raises(R4ValidationError) as info:
        validate_r4_resource(bad)
    assert info.value.path == "Patient.contained[0].id"


def test_choice_types_one_of_many() -> None:
    both = {"resourceType": "Patient", "deceasedBoolean": True, "deceasedDateTime": "2020"}
    assert _reference(both) is not None
    with pytest.raises(R4ValidationError):
        validate_r4_resource(both)
    ok = {"resourceType": "Patient", "deceasedBoolean": None, "deceasedDateTime": "2020"}
    validate_r4_resource(ok)
    validate_r4_resource({**ok, "deceasedDateTime": "2021-02"})
    assert cache_info()["fast"] == 1


def test_wrong_nested_resource_type_is_checked_on_the_fast_path() -> None:
    good = {"resourceType": "Patient", "meta": {"resourceType": "Meta", "versionId": "1"}}
    validate_r4_resource(good)
    with pytest.raises(R4ValidationError) as info:
        validate_r4_resource({"resourceType": "Patient", "meta": {"resourceType": "Other", "versionId": "1"}})
    assert info.value.error_type == "fhir-validation-wrong-resource-type"
