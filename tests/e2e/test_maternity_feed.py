"""The maternity feed end to end, through the real entry points of a running `carethread serve`:
MLLP socket, POST /hl7v2, and the FHIR API over HTTP."""

from __future__ import annotations

import threading

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.inbound.er7 import parse_er7
from adapter.inbound.mllp import MLLPClient, frame
from tests.e2e.conftest import Service
from tests.hl7builder import message, next_control_id, seg

NHS = "https://fhir.nhs.uk/Id/nhs-number"
MASTER = "https://fhir.carethread.org/CodeSystem/record-type|master"


def pid(mrn: str, *, nhs: str | None = None, dob: str = "20090514", name: str = "SYNTHETIC^Amber", **extra: str) -> str:
    ids = f"{nhs}^^^NHS^NH~{mrn}^^^RX1^MR" if nhs else f"{mrn}^^^RX1^MR"
    fields = {1: "1", 3: ids, 5: name, 7: dob, 8: "F"}
    fields.update({int(k[1:]): v for k, v in extra.items()})
    return seg("PID", fields)


def ack_fields(ack: bytes) -> tuple[str, str, list[str]]:
    m = parse_er7(ack.decode())
    return m.value("MSA-1"), m.value("MSA-2"), [s.raw_fields() and "|".join(s.raw_fields()) for s in m.all("ERR")]


def get(service: Service, path: str, **params: str) -> dict:  # type: ignore[type-arg]
    r = httpx.get(f"{service.http}/fhir/{path}", params=params, timeout=10)
    assert r.headers["content-type"].startswith("application/fhir+json"), r.text
    return r.json()  # type: ignore[no-any-return]


def entries(bundle: dict, rtype: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    return [e["resource"] for e in bundle.get("entry", []) if rtype is None or e["resource"]["resourceType"] == rtype]


def test_young_mother_over_mllp_then_fhir_api(service: Service) -> None:
    control = next_control_id("M")
    msg = message(
        "ADT^A04^ADT_A01",
        pid("E2E0001", nhs="9990001022", dob="20090514"),
        seg("NK1", {1: "1", 2: "SYNTHETIC^Jordan", 3: "FTH", 15: "M", 16: "20100203"}),
        seg("PV1", {1: "1", 2: "O", 3: "EPU^Room 2", 10: "EPU", 19: "VE2E1^^^RX1", 44: "20260301091500"}),
        seg("OBX", {1: "1", 2: "CE", 3: "ALERT^Alert^L", 5: "342191000000101^CPP^SCT", 11: "F", 14: "20221103"}),
        control_id=control,
    )
    with MLLPClient("127.0.0.1", service.mllp_port) as client:
        code, echoed, errs = ack_fields(client.send(msg))
    assert (code, echoed, errs) == ("AA", control, [])

    patients = entries(get(service, "Patient", identifier=f"{NHS}|9990001022", **{"_tag:not": MASTER}), "Patient")
    assert len(patients) == 1 and patients[0]["birthDate"] == "2009-05-14"
    [master] = entries(get(service, "Patient", link=f"Patient/{patients[0]['id']}"), "Patient")
    assert master["identifier"][0]["value"] == "9990001022" and master["meta"]["tag"][0]["code"] == "master"
    flags = entries(get(service, "Flag", **{"patient.identifier": f"{NHS}|9990001022", "_tag:not":
                                             "https://fhir.carethread.org/CodeSystem/record-type|derived"}), "Flag")
    assert [f["code"]["coding"][0]["code"] for f in flags] == ["342191000000101"]  # the source's (rules: tests/rules)
    fathers = entries(get(service, "RelatedPerson", patient=patients[0]["id"]), "RelatedPerson")
    assert fathers[0]["relationship"][0]["coding"][0]["code"] == "FTH" and fathers[0]["birthDate"] == "2010-02-03"
    encounters = entries(get(service, "Encounter", patient=patients[0]["id"]), "Encounter")
    assert encounters[0]["serviceType"]["coding"][0]["code"] == "EPU"
    provenance = [p for p in entries(get(service, "Provenance", target=f"Patient/{patients[0]['id']}"), "Provenance")
                  if "entity" in p]  # the message's (the other is the identity decision's)
    assert provenance and provenance[0]["entity"][0]["what"]["identifier"]["value"] == control


def test_fragmented_frames_and_many_messages_per_connection(service: Service) -> None:
    msgs = [message("ADT^A04", pid(f"FRAG{i}"), control_id=next_control_id("F")) for i in range(5)]
    with MLLPClient("127.0.0.1", service.mllp_port) as client:
        data = frame(msgs[0])
        for i in range(0, len(data), 7):  # a frame split over many writes
            client.send_raw(data[i:i + 7])
        assert ack_fields(client.recv())[0] == "AA"
        client.send_raw(b"".join(frame(m) for m in msgs[1:]))  # four frames in one write
        acks = [ack_fields(client.recv()) for _ in msgs[1:]]
    assert [a[0] for a in acks] == ["AA"] * 4
    assert [a[1] for a in acks] == [parse_er7(m.decode()).value("MSH-10") for m in msgs[1:]]


def test_concurrent_mllp_clients(service: Service) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def client_run(n: int) -> None:
        with MLLPClient("127.0.0.1", service.mllp_port) as client:
            for i in range(10):
                code = ack_fields(client.send(message("ADT^A04", pid(f"CONC{n}-{i}"))))[0]
                with lock:
                    results.append(code)

    threads = [threading.Thread(target=client_run, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["AA"] * 80
    assert get(service, "Patient", identifier="CONC3-9", _count="0")["total"] == 1


def test_resend_is_idempotent(service: Service) -> None:
    msg = message("ADT^A04", pid("IDEM1", nhs="9990001030"))

    def versions() -> dict[str, int]:  # every Patient with the number (the record and its master): versions each
        found = entries(get(service, "Patient", identifier=f"{NHS}|9990001030"))
        return {p["id"]: len(get(service, f"Patient/{p['id']}/_history")["entry"]) for p in found}

    with MLLPClient("127.0.0.1", service.mllp_port) as client:
        assert ack_fields(client.send(msg))[0] == "AA"
        first = versions()
        assert len(first) == 2  # the source record and the master of its identity
        assert ack_fields(client.send(msg))[0] == "AA"
    assert versions() == first


def test_out_of_order_update_loses_nothing(service: Service) -> None:
    newer = message("ADT^A08", pid("OOO1", name="SYNTHETIC^Amberly"), ts="20260302120000")
    older = message("ADT^A04", pid("OOO1", name="SYNTHETIC^Amber",
                                   p11="1 Example Street^^Exampletown^^ZZ99 1AA^GBR^H"), ts="20260301090000")
    for m in (newer, older):
        r = httpx.post(f"{service.http}/hl7v2", content=m, timeout=10)
        assert ack_fields(r.content)[0] == "AA"
    patient = entries(get(service, "Patient", identifier="OOO1"))[0]
    assert patient["name"][0]["given"] == ["Amberly"]  # the newer message wins
    assert patient["address"][0]["postalCode"] == "ZZ99 1AA"  # the older one fills the gap


@pytest.mark.parametrize(
    ("segments", "err"),
    [
        ((seg("EVN", {1: "A04"}),), "PID"),
        ((seg("PID", {1: "1", 3: "9876544321^^^NHS^NH", 5: "X^Y"}),), "PID^1^3"),
        ((pid("AE3"), seg("NK1", {1: "1", 2: "ROE^JOHN", 3: "ZZZ"})), "NK1^1^3"),
        ((pid("AE4", dob="20091399"),), "PID^1^7"),
    ],
    ids=["no-pid", "bad-nhs-number", "unknown-relationship", "bad-birth-date"],
)
def test_errors_are_ae_with_err_naming_the_location(service: Service, segments: tuple[str, ...], err: str) -> None:
    msg = message("ADT^A04", *segments)
    with MLLPClient("127.0.0.1", service.mllp_port) as client:
        ack = client.send(msg)
    code, _, errs = ack_fields(ack)
    assert code == "AE"
    assert errs and errs[0].startswith(f"ERR|{err}")
    for secret in (b"9876544321", b"ZZZ", b"20091399"):
        assert secret not in ack


@pytest.mark.parametrize(
    ("msg", "location"),
    [
        (message("ADT^A99", pid("AR1")), "MSH^1^9"),
        (message("ORU^R01", pid("AR2")), "MSH^1^9"),
        (message("ADT^A04", pid("AR3"), version="2.1"), "MSH^1^12"),
        (b"MSH|^~\\&|X|Y|Z|W|20260101||ADT^A04||P|2.4\rPID|1", "MSH^1^10"),
        (b"hello, this is not HL7", "MSH"),
        (b"", ""),
    ],
    ids=["unsupported-event", "unsupported-type", "unsupported-version", "no-control-id", "not-hl7", "empty"],
)
def test_unprocessable_is_ar(service: Service, msg: bytes, location: str) -> None:
    r = httpx.post(f"{service.http}/hl7v2", content=msg, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("x-application/hl7-v2+er7")
    code, _, errs = ack_fields(r.content)
    assert code == "AR"
    assert errs[0].startswith(f"ERR|{location}")


def test_an_ack_is_not_acknowledged(service: Service) -> None:
    ack = message("ACK^A04", "MSA|AA|XYZ")
    r = httpx.post(f"{service.http}/hl7v2", content=ack, timeout=10)
    assert r.status_code == 204
    follow = message("ADT^A04", pid("AFTERACK"))
    with MLLPClient("127.0.0.1", service.mllp_port) as client:
        client.send_raw(frame(ack) + frame(follow))
        code, control, _ = ack_fields(client.recv())  # the only reply is the one for the ADT
    assert code == "AA" and control == parse_er7(follow.decode()).value("MSH-10")


def test_no_show_for_a_child_is_was_not_brought(service: Service) -> None:
    msg = message(
        "SIU^S26^SIU_S12",
        seg("SCH", {2: "WNB-1^EPR", 9: "30", 10: "min", 11: "^^^20261110103000", 25: "Noshow"}),
        pid("WNB1", nhs="9990001049", dob="20260901"),
    )
    with MLLPClient("127.0.0.1", service.mllp_port) as client:
        assert ack_fields(client.send(msg))[0] == "AA"
    bundle = get(service, "Appointment", status="noshow", **{"patient.identifier": f"{NHS}|9990001049"},
                 _include="Appointment:patient")
    appt = entries(bundle, "Appointment")[0]
    assert appt["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "was-not-brought"
    assert entries(bundle, "Patient")[0]["birthDate"] == "2026-09-01"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(
    st.binary(max_size=400),
    st.builds(lambda tail: b"MSH|^~\\&|" + tail, st.binary(max_size=300)),
    st.builds(lambda t: message("ADT^A04", t.replace("\r", "")), st.text(max_size=200)),
))
def test_arbitrary_bytes_always_get_an_ack_and_keep_the_connection(service: Service, payload: bytes) -> None:
    payload = payload.replace(b"\x0b", b"").replace(b"\x1c", b"")
    r = httpx.post(f"{service.http}/hl7v2", content=payload, timeout=10)
    assert r.status_code in (200, 204)
    if r.status_code == 200:
        assert ack_fields(r.content)[0] in ("AA", "AE", "AR")
    with MLLPClient("127.0.0.1", service.mllp_port) as client:
        client.send_raw(frame(payload))
        probe = message("ADT^A04", pid("PROBE"))
        client.send_raw(frame(probe))
        replies = [client.recv()]
        if r.status_code == 200:  # the payload got a reply, then the probe does
            replies.append(client.recv())
    assert ack_fields(replies[-1])[0] == "AA"


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"])
def test_versions_2_3_to_2_8(service: Service, version: str) -> None:
    mrn = f"VER{version.replace('.', '')}"
    r = httpx.post(f"{service.http}/hl7v2", content=message("ADT^A01", pid(mrn), version=version), timeout=10)
    ack = parse_er7(r.content.decode())
    assert (ack.value("MSA-1"), ack.value("MSH-12")) == ("AA", version)
    assert get(service, "Patient", identifier=mrn)["total"] == 1


def test_site_delimiters_and_escapes_over_mllp(service: Service) -> None:
    text = message("ADT^A04", pid("DELIM1", name="O\\S\\BRIEN^Ann\\T\\Marie")).decode()
    # the same message written with other delimiters: field #, component $, repetition !, sub-component *
    other = text.replace("|", "#").replace("^", "$").replace("~", "!").replace("&", "*")
    assert other.startswith("MSH#$!\\*#")
    with MLLPClient("127.0.0.1", service.mllp_port) as client:
        assert ack_fields(client.send(other.encode()))[0] == "AA"
    patient = entries(get(service, "Patient", identifier="DELIM1"))[0]
    assert patient["name"][0]["family"] == "O$BRIEN"  # \S\ is the component delimiter of this message
    assert patient["name"][0]["given"] == ["Ann*Marie"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["Patient", "Flag", "Appointment", "Encounter", "RelatedPerson", "Provenance", "Nope"]),
       params=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=30)), max_size=4))
def test_fhir_api_never_fails_with_a_500(service: Service, path: str, params: list[tuple[str, str]]) -> None:
    r = httpx.get(f"{service.http}/fhir/{path}", params=params, timeout=10)
    assert r.status_code < 500
    assert r.headers["content-type"].startswith("application/fhir+json")
    body = r.json()
    assert body["resourceType"] == ("Bundle" if r.status_code == 200 else "OperationOutcome")


def test_convert_endpoint_is_a_dry_run(service: Service) -> None:
    msg = message("ADT^A04", pid("DRYRUN1", nhs="9990001057"))
    r = httpx.post(f"{service.http}/fhir/$convert", content=msg, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    params = {p["name"]: p for p in r.json()["parameter"]}
    bundle = params["bundle"]["resource"]
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"Patient", "Provenance"}
    trace = {p["name"]: p.get("valueString") or p.get("valueCode") for p in params["trace"]["part"]}
    assert trace["status"] == "AA"
    assert get(service, "Patient", identifier="DRYRUN1")["total"] == 0  # nothing stored
    bad = httpx.post(f"{service.http}/fhir/$convert", content=message("ADT^A04", pid("X", dob="20091399")), timeout=10)
    assert bad.status_code == 422
    assert bad.json()["issue"][0]["location"] == ["PID-7"]
    assert httpx.post(f"{service.http}/fhir/$convert", content=b"not hl7", timeout=10).status_code == 400
