"""Every registered transform, one test each (the registry is closed: a new transform needs a test here)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.errors import MappingError
from adapter.mapping.transforms import TRANSFORMS, exported, is_nhs_cx, is_valid_nhs_number


class Env:
    def __init__(self, stored: str | None = None) -> None:
        self.tz = ZoneInfo("Europe/London")
        self.warnings: list[tuple[str, str | None, str]] = []
        self.stored = stored

    def warn(self, code: str, location: str | None, message: str) -> None:
        self.warnings.append((code, location, message))

    def stored_birth_date(self, patient_id: str) -> str | None:
        return self.stored


def call(name: str, value: Any, env: Env | None = None, at: str | None = None, **params: Any) -> Any:
    return TRANSFORMS[name].fn(value, env or Env(), at, **params)


TESTED: set[str] = set()


def _covers(name: str) -> str:
    TESTED.add(name)
    return name


def test_upper() -> None:
    assert call(_covers("upper"), "nsts01") == "NSTS01"


def test_url_quote() -> None:
    assert call(_covers("url_quote"), "St Elsewhere/Maternity") == "St%20Elsewhere%2FMaternity"


def test_starts_with() -> None:
    assert call(_covers("starts_with"), "NSTS01", prefix="NSTS") == "NSTS01"
    assert call("starts_with", "XX", prefix="NSTS") is None


def test_first_chars() -> None:
    assert call(_covers("first_chars"), "2022-11-03T10:00:00+00:00", n=10) == "2022-11-03"
    assert call("first_chars", "2022", n=10) == "2022"


@pytest.mark.parametrize(("value", "expected"), [("2", 2), ("12", 12), ("x", None), ("²", None), ("-1", None)])
def test_integer(value: str, expected: int | None) -> None:
    assert call(_covers("integer"), value) == expected


@pytest.mark.parametrize(("value", "expected"), [("Y", True), ("y", True), ("N", False), ("n", False), ("U", None)])
def test_yes_no(value: str, expected: bool | None) -> None:
    assert call(_covers("yes_no"), value) is expected


@pytest.mark.parametrize(("value", "expected"), [("20090514", "2009-05-14"), ("200905", "2009-05"), ("2009", "2009"),
                                                 ("200905140030+0100", "2009-05-14")])
def test_hl7_date(value: str, expected: str) -> None:
    assert call(_covers("hl7_date"), value) == expected


@pytest.mark.parametrize("value", ["20091399", "2009051", "tomorrow", "20090230"])
def test_hl7_date_invalid_is_a_mapping_error_without_the_value(value: str) -> None:
    with pytest.raises(MappingError) as info:
        call("hl7_date", value)
    assert info.value.code == "invalid-date" and info.value.location is None
    assert value not in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [
    ("20260301091500", "2026-03-01T09:15:00+00:00"), ("20260701091500", "2026-07-01T09:15:00+01:00"),
    ("20260301", "2026-03-01"), ("202603010915+0215", "2026-03-01T09:15:00+02:15"),
    ("20260301091500.1234-0500", "2026-03-01T09:15:00.1234-05:00")])
def test_hl7_datetime(value: str, expected: str) -> None:
    assert call(_covers("hl7_datetime"), value) == expected


@pytest.mark.parametrize("value", ["20260301091500+1500", "20260301091500+0160", "20261301"])
def test_hl7_datetime_invalid(value: str) -> None:
    with pytest.raises(MappingError) as info:
        call("hl7_datetime", value)
    assert info.value.code == "invalid-date"


def test_hl7_instant_always_has_time_and_offset() -> None:
    assert call(_covers("hl7_instant"), "20260301") == "2026-03-01T00:00:00+00:00"
    assert call("hl7_instant", "2026") == "2026-01-01T00:00:00+00:00"


def test_utc() -> None:
    assert call(_covers("utc"), "2026-07-01T09:15:00+01:00") == "2026-07-01T08:15:00+00:00"


@pytest.mark.parametrize(("birth", "day", "age"), [("2008-04-10", "2026-04-10T10:30:00+01:00", 18),
                                                   ("2008-04-11", "2026-04-10", 17), ("2008", "2026-04-10", None),
                                                   (None, "2026-04-10", None)])
def test_age_on(birth: str | None, day: str, age: int | None) -> None:
    assert call(_covers("age_on"), {"birth": birth, "day": day}) == age


def test_attendance_outcome_by_age_on_the_day() -> None:
    env = Env()
    assert call(_covers("attendance_outcome"), {"birth": "2020-01-01", "day": "2026-01-10T10:30:00+00:00"},
                env, "PID-7", adult_age=18) == "was-not-brought"
    assert call("attendance_outcome", {"birth": "2008-01-10", "day": "2026-01-10"}, env, "PID-7",
                adult_age=18) == "did-not-attend"
    assert env.warnings == []
    assert call("attendance_outcome", {"birth": "2008", "day": "2026-01-10"}, env, "PID-7", adult_age=18) is None
    assert [(c, loc) for c, loc, _ in env.warnings] == [("missing-field", "PID-7")]


@pytest.mark.parametrize(("value", "units", "minutes"), [("30", "min", 30), ("30", None, 30), ("1", "h", 60),
                                                         ("90", "s", 1), ("30", "s", 1), ("0", "min", None),
                                                         ("x", "min", None), ("3", "days", None)])
def test_duration_minutes(value: str, units: str | None, minutes: int | None) -> None:
    assert call(_covers("duration_minutes"), {"value": value, "units": units}) == minutes


def test_add_minutes() -> None:
    assert call(_covers("add_minutes"), {"instant": "2026-04-10T10:30:00+01:00", "minutes": 45}) == \
        "2026-04-10T11:15:00+01:00"
    assert call("add_minutes", {"instant": "2026-04-10T10:30:00+01:00", "minutes": None}) is None


@pytest.mark.parametrize(("value", "expected"), [("9990001006", "9990001006"), ("999 000 1006", "9990001006"),
                                                 ("9876544321", None), ("123", None)])
def test_nhs_number(value: str, expected: str | None) -> None:
    assert call(_covers("nhs_number"), value) == expected


@pytest.mark.parametrize(("authority", "id_type", "is_nhs"), [("NHS", "NH", True), ("nhs", "HN", True), ("NHS", None, True),
                                                              ("NHS", "NHS", True), (None, "NH", True), ("RX1", "MR", False),
                                                              (None, "MR", False), ("NHS", "MR", False)])
def test_nhs_cx(authority: str | None, id_type: str | None, is_nhs: bool) -> None:
    assert call(_covers("nhs_cx"), {"authority": authority, "type": id_type}) is (True if is_nhs else None)


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_modulus_11_has_at_most_one_check_digit(body: str) -> None:
    assert sum(is_valid_nhs_number(body + d) for d in "0123456789") <= 1


def test_is_nhs_cx_matches_the_transform() -> None:
    assert is_nhs_cx("NHS", "") and not is_nhs_cx("", "")


@pytest.mark.parametrize(("value", "expected"), [("rx1", "RX1"), ("Y12345", "Y12345"), ("St Elsewhere", None),
                                                 ("AB", None)])
def test_ods_code(value: str, expected: str | None) -> None:
    assert call(_covers("ods_code"), value) == expected


def test_patient_key_local_record_first_then_nhs() -> None:
    nhs = {"value": "9990001006", "authority": "NHS", "type": "NH", "location": "PID-3"}
    mrn = {"value": "M1", "authority": None, "type": "MR", "location": "PID-3[2]"}
    assert call(_covers("patient_key"), {"ids": [nhs, mrn], "facility": "RX1"}, location="PID-3") == "local|RX1|M1"
    assert call("patient_key", {"ids": [nhs], "facility": "RX1"}, location="PID-3") == "nhs|9990001006"


def test_patient_key_errors_name_the_location_never_the_value() -> None:
    bad = {"value": "9876544321", "authority": "NHS", "type": "NH", "location": "PID-3[2]"}
    with pytest.raises(MappingError) as info:
        call("patient_key", {"ids": [bad], "facility": "RX1"}, location="PID-3")
    assert (info.value.code, info.value.location) == ("invalid-nhs-number", "PID-3[2].1")
    assert "9876544321" not in str(info.value)
    with pytest.raises(MappingError) as info:
        call("patient_key", {"ids": None, "facility": "RX1"}, location="MRG-1")
    assert (info.value.code, info.value.location) == ("missing-field", "MRG-1")


def test_identifier_value() -> None:
    ids = [{"system": "a", "value": "1"}, {"system": "b", "value": "2"}]
    assert call(_covers("identifier_value"), ids, system="b") == "2"
    assert call("identifier_value", ids, system="c") is None


def test_name_key() -> None:
    assert call(_covers("name_key"), [{"family": "ROE", "given": ["John", "Paul"]}]) == "roe|john paul"
    assert call("name_key", [{"given": ["Kim"]}]) == "|kim"


def test_stored_birth_date() -> None:
    assert call(_covers("stored_birth_date"), "patient-id", Env(stored="2016-01-11")) == "2016-01-11"


def test_every_registered_transform_has_a_test_and_is_documented() -> None:
    assert TESTED == set(TRANSFORMS), f"untested transforms: {sorted(set(TRANSFORMS) - TESTED)}"
    assert all(t["doc"] for t in exported())
