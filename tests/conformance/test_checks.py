"""The compiled value checks' building blocks."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from adapter.conformance.checks import contains, is_valid_nhs_number, pattern_matcher, reference_type

json_leaf = st.one_of(st.sampled_from(["a", "b", "safety"]), st.booleans(), st.integers(0, 2))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["system", "code", "coding"]), inner, max_size=3)),
    max_leaves=8)


@given(json_value, json_value)
def test_compiled_pattern_equals_contains(value: Any, pattern: Any) -> None:
    assert pattern_matcher(pattern)(value) == contains(value, pattern)


def test_pattern_semantics() -> None:
    pattern = {"coding": [{"system": "s", "code": "safety"}]}
    assert contains({"coding": [{"system": "x", "code": "y"}, {"system": "s", "code": "safety", "display": "S"}],
                     "text": "t"}, pattern)
    assert not contains({"coding": [{"system": "s", "code": "other"}]}, pattern)
    assert not contains({"text": "safety"}, pattern)


def test_nhs_number_modulus_11() -> None:
    def reference(n: str) -> bool:
        check = 11 - sum(int(d) * w for d, w in zip(n[:9], range(10, 1, -1))) % 11
        check = 0 if check == 11 else check
        return check != 10 and check == int(n[9])

    for n in range(9990000000, 9990002000, 7):
        assert is_valid_nhs_number(str(n)) == reference(str(n))
    assert not is_valid_nhs_number("9912003890")  # the UK Core BabyPatient example's number
    assert is_valid_nhs_number("9990001006")
    for bad in ("", "999000100", "99900010060", "999000100x", "９９９０００１００６"):
        assert not is_valid_nhs_number(bad)


def test_reference_type() -> None:
    root = {"contained": [{"resourceType": "Provenance", "id": "p"}]}
    assert reference_type("Patient/abc", root) == "Patient"
    assert reference_type("https://example.org/fhir/Patient/abc/_history/2", root) == "Patient"
    assert reference_type("#p", root) == "Provenance"
    assert reference_type("#nope", root) is None
    assert reference_type("urn:uuid:5d1f3a6e-0000-4000-8000-000000000000", root) is None
