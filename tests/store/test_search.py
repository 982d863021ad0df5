"""The search-parameter table, index extraction, value parsing and query checking (no HTTP)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.store.query import MAX_COUNT, SearchParamError, parse_search
from adapter.store.search import (
    SEARCH_PARAMS,
    date_range,
    index_rows,
    normalise_string,
    param_rows,
    parse_reference,
    search_includes,
)
from adapter.store.sqlite import SqliteStore

from .resources import NHS, SNOMED, flag, patient

PATIENT_REF = {"reference": "Patient/pat-1"}

# one resource per type that fills every indexed parameter
SAMPLES: dict[str, dict[str, Any]] = {
    "Patient": {**patient(), "name": [{"family": "Person", "given": ["Alex"], "text": "Alex Person"}]},
    "RelatedPerson": {
        "resourceType": "RelatedPerson", "id": "rp-1", "patient": PATIENT_REF,
        "identifier": [{"system": "https://fhir.carethread.org/Id/rp", "value": "RP1"}],
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                      "code": "MTH"}]}],
    },
    "Encounter": {
        "resourceType": "Encounter", "id": "enc-1", "status": "finished", "subject": PATIENT_REF,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "period": {"start": "2026-01-10T10:00:00+00:00"}, "identifier": [{"value": "V1"}],
    },
    "Appointment": {
        "resourceType": "Appointment", "id": "appt-1", "status": "noshow",
        "start": "2026-03-01T09:00:00+00:00",
        "identifier": [{"system": "https://fhir.carethread.org/Id/appt", "value": "A1"}],
        "participant": [{"actor": PATIENT_REF, "status": "accepted"},
                        {"actor": {"reference": "Practitioner/dr-1"}, "status": "accepted"}],
    },
    "Flag": {**flag(subject="pat-1"), "category": [{"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "safety"}]}]},
    "Provenance": {"resourceType": "Provenance", "id": "prov-1", "target": [PATIENT_REF],
                   "recorded": "2026-11-26T08:00:00+00:00", "agent": [{"who": {"display": "Carethread"}}]},
    "Condition": {"resourceType": "Condition", "id": "cond-1", "subject": PATIENT_REF,
                  "code": {"coding": [{"system": SNOMED, "code": "342191000000101"}]},
                  "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                 "code": "active"}]},
                  "onsetDateTime": "2025-01-02", "identifier": [{"value": "C1"}]},
    "Observation": {"resourceType": "Observation", "id": "obs-1", "status": "final", "subject": PATIENT_REF,
                    "code": {"coding": [{"system": SNOMED, "code": "281399006"}]},
                    "effectiveDateTime": "2026-02-03", "identifier": [{"value": "O1"}]},
    "Immunization": {"resourceType": "Immunization", "id": "imm-1", "status": "completed", "patient": PATIENT_REF,
                     "occurrenceDateTime": "2026-02-03", "identifier": [{"value": "I1"}],
                     "vaccineCode": {"text": "x"}},
    "List": {"resourceType": "List", "id": "list-1", "status": "current", "mode": "snapshot",
             "subject": PATIENT_REF, "code": {"coding": [{"system": SNOMED, "code": "717711000000103"}]}},
    "Organization": {"resourceType": "Organization", "id": "org-1", "name": "Example Practice",
                     "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y12345"}]},
    "Practitioner": {"resourceType": "Practitioner", "id": "pr-1", "name": [{"family": "Example"}],
                     "identifier": [{"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "G1"}]},
    "PractitionerRole": {"resourceType": "PractitionerRole", "id": "role-1", "identifier": [{"value": "R1"}],
                         "practitioner": {"reference": "Practitioner/pr-1"},
                         "organization": {"reference": "Organization/org-1"}},
    "Communication": {"resourceType": "Communication", "id": "com-1", "status": "completed", "subject": PATIENT_REF,
                      "recipient": [{"reference": "Organization/org-1"}], "sent": "2026-11-26T08:00:00Z",
                      "priority": "urgent", "reasonCode": [{"coding": [{"system": "https://fhir.carethread.org/CodeSystem/safeguarding-rule", "code": "was-not-brought-pattern"}]}]},
    "Subscription": {"resourceType": "Subscription", "id": "sub-1", "status": "active", "reason": "x",
                     "criteria": "Communication?recipient=Organization/org-1",
                     "channel": {"type": "rest-hook", "endpoint": "https://example.org/hook",
                                 "payload": "application/fhir+json"}},
    "Task": {"resourceType": "Task", "id": "task-1", "status": "requested", "intent": "proposal",
             "code": {"coding": [{"system": "https://fhir.carethread.org/CodeSystem/task-code", "code": "identity-review"}]},
             "focus": PATIENT_REF, "for": PATIENT_REF, "authoredOn": "2026-11-26T08:00:00Z"},
    "Location": {"resourceType": "Location", "id": "loc-1", "name": "Example Surgery",
                 "identifier": [{"value": "L1"}]},
}


TAG = {"system": "https://fhir.carethread.org/CodeSystem/record-type", "code": "master"}


def test_every_declared_parameter_finds_rows_in_its_sample() -> None:
    for rtype, params in SEARCH_PARAMS.items():
        sample = {**SAMPLES[rtype], "meta": {**SAMPLES[rtype].get("meta", {}), "tag": [TAG]}}
        if rtype == "Patient":
            sample["link"] = [{"other": {"reference": "Patient/master-1"}, "type": "refer"}]
        rows = index_rows(sample)
        assert {row[0] for row in rows} == {name for name, p in params.items() if p.paths}, rtype
        for param in params.values():
            matched = param_rows(sample, param)
            # _id and identity match on the resource's id / the identity tables, not index rows
            assert bool(matched) == (param.name not in ("_id", "identity")), (rtype, param.name)
            assert {row[0] for row in matched} <= set(param.row_names)


def test_parameters_share_rows_instead_of_writing_them_twice() -> None:
    rows = index_rows(SAMPLES["Flag"])
    assert [r for r in rows if r[0] in ("patient", "subject")] == [("subject", "Patient", "pat-1", "")]
    flag_patient = SEARCH_PARAMS["Flag"]["patient"]
    assert param_rows({**SAMPLES["Flag"], "subject": {"reference": "Group/g"}}, flag_patient) == []
    assert SEARCH_PARAMS["Patient"]["name"].row_names == ("name", "family", "given")


def test_index_rows() -> None:
    rows = index_rows(SAMPLES["Appointment"])
    assert ("actor", "Patient", "pat-1", "") in rows
    assert ("actor", "Practitioner", "dr-1", "") in rows
    patient_param = SEARCH_PARAMS["Appointment"]["patient"]
    assert param_rows(SAMPLES["Appointment"], patient_param) == [("actor", "Patient", "pat-1", "")]
    assert ("date", "", "2026-03-01T09:00:00.000000", "2026-03-01T09:00:00.999999") in rows
    patient_rows = index_rows(patient(given="Zoë"))
    assert ("given", "Zoë", "zoe", "") in patient_rows
    assert ("identifier", NHS, "9999999999", "") in patient_rows
    assert index_rows({"resourceType": "Observation", "id": "x"}) == []


def test_unreadable_values_are_skipped_not_fatal() -> None:
    odd = {"resourceType": "Patient", "id": "x", "birthDate": "15/03/2009", "name": [{"family": 7}],
           "identifier": [{"system": NHS}], "gender": None}
    assert index_rows(odd) == []
    assert index_rows({"resourceType": "Flag", "id": "f", "subject": {"reference": "#contained"},
                       "code": {"coding": [{"system": SNOMED}]}}) == []


def test_includes_are_the_reference_parameters() -> None:
    assert search_includes("Flag") == ["Flag:patient", "Flag:subject"]
    assert search_includes("Appointment") == ["Appointment:patient", "Appointment:actor"]
    assert search_includes("Provenance") == ["Provenance:target"]
    assert search_includes("Patient") == ["Patient:link"]


@pytest.mark.parametrize(("text", "expected"), [
    ("2009", ("2009-01-01T00:00:00.000000", "2009-12-31T23:59:59.999999")),
    ("2009-02", ("2009-02-01T00:00:00.000000", "2009-02-28T23:59:59.999999")),
    ("2008-02", ("2008-02-01T00:00:00.000000", "2008-02-29T23:59:59.999999")),
    ("2009-12", ("2009-12-01T00:00:00.000000", "2009-12-31T23:59:59.999999")),
    ("2009-03-15", ("2009-03-15T00:00:00.000000", "2009-03-15T23:59:59.999999")),
    ("2026-03-01T09:00Z", ("2026-03-01T09:00:00.000000", "2026-03-01T09:00:59.999999")),
    ("2026-03-01T09:00:00+01:00", ("2026-03-01T08:00:00.000000", "2026-03-01T08:00:00.999999")),
    ("2026-03-01T00:30:00-02:30", ("2026-03-01T03:00:00.000000", "2026-03-01T03:00:00.999999")),
    ("2026-03-01T09:00:00.5Z", ("2026-03-01T09:00:00.500000", "2026-03-01T09:00:00.599999")),
    ("2026-03-01T09:00:00.123456789Z", ("2026-03-01T09:00:00.123456", "2026-03-01T09:00:00.123456")),
    ("2026-03-01T09:00:00", ("2026-03-01T09:00:00.000000", "2026-03-01T09:00:00.999999")),  # no zone: UTC
    ("9999", ("9999-01-01T00:00:00.000000", "9999-12-31T23:59:59.999999")),
])
def test_date_range(text: str, expected: tuple[str, str]) -> None:
    assert date_range(text) == expected


@pytest.mark.parametrize("text", [
    "", "09", "2009-1", "20090315", "2009-13", "2009-02-30", "2009-03-15T25:00Z", "2009-03-15T10",
    "2009-03-15 10:00", "15/03/2009", "2009-03-15T10:00:00+1",
])
def test_date_range_rejects(text: str) -> None:
    assert date_range(text) is None


@pytest.mark.parametrize(("reference", "expected"), [
    ("Patient/abc", ("Patient", "abc")),
    ("abc", (None, "abc")),
    ("https://example.org/fhir/Patient/abc", ("Patient", "abc")),
    ("https://example.org/fhir/Patient/abc/_history/3", ("Patient", "abc")),
    ("#contained", None),
    ("urn:uuid:8a8f0b3c-1d0c-4c1a-9d6e-0b6c8d1e2f3a", None),
    ("Patient/", None),
])
def test_parse_reference(reference: str, expected: tuple[str | None, str] | None) -> None:
    assert parse_reference(reference) == expected


def test_normalise_string() -> None:
    assert normalise_string("Zoë") == "zoe"
    assert normalise_string("ŌKUBO") == "okubo"
    assert normalise_string("O'Brien") == "o'brien"
    assert normalise_string("Straße") == "strasse"


@given(st.text(max_size=20))
def test_normalised_strings_are_idempotent(text: str) -> None:
    once = normalise_string(text)
    assert normalise_string(once) == once


@given(st.datetimes(timezones=st.just(None)).map(lambda d: d.isoformat(timespec="seconds")))
def test_date_range_of_a_second_is_that_second(text: str) -> None:
    bounds = date_range(text)
    assert bounds is not None and bounds[0] <= bounds[1]
    assert bounds[0].startswith(text) and bounds[1].startswith(text)


# --- parse_search -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("params", "code", "param"), [
    ([("foo", "1")], "not-supported", "foo"),
    ([("name:fuzzy", "x")], "not-supported", "name:fuzzy"),
    ([("gender:exact", "female")], "not-supported", "gender:exact"),
    ([("_id:not", "x")], "not-supported", "_id:not"),
    ([("name:exact:exact", "x")], "not-supported", "name:exact:exact"),
    ([("identifier.system", "x")], "not-supported", "identifier.system"),
    ([("birthdate", "2009-13")], "invalid", "birthdate"),
    ([("birthdate", "sa2009")], "not-supported", "birthdate"),
    ([("birthdate", "xx2009")], "invalid", "birthdate"),
    ([("identifier", "a|b|c")], "invalid", "identifier"),
    ([("name:missing", "maybe")], "invalid", "name:missing"),
    ([("_count", "ten")], "invalid", "_count"),
    ([("_count", "-1")], "invalid", "_count"),
    ([("_offset", "1.5")], "invalid", "_offset"),
    ([("_offset", "²")], "invalid", "_offset"),
    ([("_offset", "1" * 30)], "invalid", "_offset"),
    ([("_sort", "name")], "not-supported", "_sort"),
    ([("_include", "Flag:patient")], "not-supported", "_include"),
    ([("9999999999", "x")], "not-supported", "(unrecognised parameter)"),
])
def test_patient_query_errors(params: list[tuple[str, str]], code: str, param: str) -> None:
    with pytest.raises(SearchParamError) as caught:
        parse_search("Patient", params)
    assert (caught.value.code, caught.value.param) == (code, param)
    assert "9999999999" not in str(caught.value)  # never echo values
    lenient = parse_search("Patient", params, lenient=True)
    assert lenient.used == () and len(lenient.issues) == 1


@pytest.mark.parametrize(("rtype", "params"), [
    ("Flag", [("patient.name", "x")]),
    ("Flag", [("patient.identifier:not", "x")]),
    ("Flag", [("patient:Practitioner", "x")]),
    ("Flag", [("subject:patient", "x")]),
    ("Flag", [("_include", "Flag:status")]),
    ("Flag", [("_include", "Flag:patient:Practitioner")]),
    ("Flag", [("_include:iterate", "Flag:patient")]),
    ("Provenance", [("target.identifier", "x")]),
    ("Appointment", [("patient", "Patient/")]),
])
def test_other_query_errors(rtype: str, params: list[tuple[str, str]]) -> None:
    with pytest.raises(SearchParamError):
        parse_search(rtype, params)


def test_lenient_keeps_the_good_parameters_in_order() -> None:
    query = parse_search("Patient", [("name", "a"), ("bad", "1"), ("_count", "x"), ("gender", "female"),
                                     ("family", "")], lenient=True)
    assert query.used == (("name", "a"), ("gender", "female"))  # an empty value is ignored, not an error
    assert [e.param for e in query.issues] == ["bad", "_count"]
    assert query.count is None


def test_paging_parameters() -> None:
    assert parse_search("Flag", [("_count", "0"), ("_offset", "20")]).count == 0
    assert parse_search("Flag", [("_count", "100000")]).count == MAX_COUNT
    assert parse_search("Flag", [("_offset", "20")]).offset == 20


def test_store_search_pages_and_includes(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        with store.transaction() as tx:
            tx.put(patient("pat-1"))
            for n in range(5):
                tx.put(flag(f"flag-{n}", subject="pat-1"))
        result = store.search("Flag", [("patient", "pat-1"), ("_include", "Flag:patient")], count=2, offset=1)
        assert result.total == 5 and len(result.matches) == 2
        assert [s.resource["id"] for s in result.included] == ["pat-1"]
        assert store.search("Flag", [], count=0, offset=0).matches == []
        with pytest.raises(SearchParamError):
            store.search("Flag", [("nope", "1")], count=10, offset=0)


def test_store_search_order_is_newest_first(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db", synchronous="OFF") as store:
        for fid in ("b", "a", "c"):
            with store.transaction() as tx:
                tx.put(flag(fid))
            time.sleep(0.002)  # lastUpdated has millisecond precision
        with store.transaction() as tx:
            tx.put(flag("b", status="inactive"))  # a new version moves it to the front
        for criteria in ([], [("code", "342191000000101")]):  # without and with criteria (two query plans)
            matches = store.search("Flag", criteria, count=10, offset=0).matches
            assert [m.resource["id"] for m in matches] == ["b", "c", "a"]
            page = store.search("Flag", criteria, count=1, offset=1).matches
            assert [m.resource["id"] for m in page] == ["c"]
