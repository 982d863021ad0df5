"""The pipeline in process: bad input never crashes or vanishes, logs never carry values, a store
failure acknowledges nothing, and merge semantics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapter.errors import StoreError
from adapter.inbound import mllp
from adapter.inbound.listener import PipelineHandler
from adapter.pipeline import Pipeline, merge_resource
from adapter.settings import Settings
from adapter.store.sqlite import SqliteStore
from tests.hl7builder import message, seg


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    store = SqliteStore(tmp_path / "p.sqlite3", synchronous="OFF")
    yield Pipeline(store, Settings(db=tmp_path / "p.sqlite3"))
    store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.binary(max_size=200),
    st.builds(lambda b: b"MSH|^~\\&|A|B|C|D|20260101||ADT^A04|X|P|2.4\r" + b, st.binary(max_size=200)),
    st.builds(lambda t: message("ADT^A04", t), st.text(max_size=120)),
), max_size=5))
@example([b"MSH|^~\\&|A|B|C|D|20260101||ADT^A04|X|P|2.4\rPID|1||\\X\\^^^NHS^NH"])
def test_any_payloads_are_archived_with_an_outcome(pipeline: Pipeline, payloads: list[bytes]) -> None:
    results = list(pipeline.process_many(payloads))
    assert len(results) == len(payloads)
    for payload, processed in zip(payloads, results):
        assert processed.outcome.status in ("AA", "AE", "AR", "duplicate", "ignored")
        record = pipeline.store.inbound(processed.outcome.archive_id)  # type: ignore[arg-type]
        assert record is not None and record.payload == payload
        if processed.outcome.status != "ignored":
            assert processed.ack is not None and b"MSA|" in processed.ack


def test_logs_name_locations_and_codes_never_values(pipeline: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_nhs, secret_name = "9876544321", "SECRETNAME"
    for payload in (
        message("ADT^A04", seg("PID", {1: "1", 3: f"{secret_nhs}^^^NHS^NH", 5: f"{secret_name}^X"})),
        message("ADT^A04", seg("PID", {1: "1", 3: "M1^^^RX1^MR", 5: f"{secret_name}^X", 7: "20091399"})),
        message("ADT^A99", seg("PID", {1: "1", 3: "M1^^^RX1^MR", 5: f"{secret_name}^X"})),
    ):
        processed = pipeline.process(payload, channel="test")
        assert secret_nhs.encode() not in processed.ack and secret_name.encode() not in processed.ack  # type: ignore[operator]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "invalid-nhs-number" in text and "PID-3.1" in text
    assert secret_nhs not in text and secret_name not in text and "20091399" not in text


def test_a_store_failure_acknowledges_nothing_and_mllp_closes_the_connection(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    pipeline = Pipeline(store, Settings(db=tmp_path / "s.sqlite3"))
    store.close()  # the store is gone
    with pytest.raises(StoreError):
        pipeline.process(message("ADT^A04", seg("PID", {1: "1", 3: "M1^^^RX1^MR"})), channel="test")

    async def scenario() -> bytes:
        server = await mllp.start_server(PipelineHandler(pipeline), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(mllp.frame(message("ADT^A04", seg("PID", {1: "1", 3: "M1^^^RX1^MR"}))))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=5)  # EOF: closed without an ACK
        writer.close()
        await mllp.stop_server(server)
        return data

    caplog.set_level(logging.CRITICAL, logger="carethread.mllp")
    assert asyncio.run(scenario()) == b""


def test_merge_newer_wins_older_fills_gaps_links_accumulate() -> None:
    stored = {"resourceType": "Patient", "id": "p", "meta": {"versionId": "3", "lastUpdated": "x", "source": "a"},
              "name": [{"family": "OLD"}], "address": [{"city": "Town"}],
              "link": [{"other": {"reference": "Patient/1"}, "type": "replaces"}]}
    newer = {"resourceType": "Patient", "id": "p", "meta": {"source": "b"}, "name": [{"family": "NEW"}],
             "link": [{"other": {"reference": "Patient/2"}, "type": "replaces"}]}
    merged = merge_resource(stored, newer, "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00")
    assert merged["name"] == [{"family": "NEW"}] and merged["address"] == [{"city": "Town"}]
    assert [link["other"]["reference"] for link in merged["link"]] == ["Patient/1", "Patient/2"]
    assert merged["meta"] == {"source": "b"}
    older = merge_resource(stored, newer, "2026-03-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00")
    assert older["name"] == [{"family": "OLD"}] and older["meta"] == {"source": "a"}


def test_a_rebooked_no_show_loses_its_attendance_outcome(pipeline: Pipeline) -> None:
    pid = seg("PID", {1: "1", 3: "REBOOK1^^^RX1^MR", 5: "X^Y", 7: "20200101"})
    sch = {2: "RB-1^EPR", 9: "30", 10: "min", 11: "^^^20261110103000"}
    noshow = message("SIU^S26", seg("SCH", {**sch, 25: "Noshow"}), pid, ts="20261110120000")
    rebooked = message("SIU^S12", seg("SCH", {**sch, 25: "Booked"}), pid, ts="20261111090000")
    assert [pipeline.process(m, channel="test").outcome.status for m in (noshow, rebooked)] == ["AA", "AA"]
    (appt,) = [r for r in pipeline.store.search("Appointment", [], count=10, offset=0).matches]
    assert appt.resource["status"] == "booked" and "extension" not in appt.resource
    older_noshow = message("SIU^S26", seg("SCH", {**sch, 25: "Noshow"}), pid, ts="20261109120000")
    assert pipeline.process(older_noshow, channel="test").outcome.status == "AA"  # older: fills gaps only
    (appt,) = [r for r in pipeline.store.search("Appointment", [], count=10, offset=0).matches]
    assert appt.resource["status"] == "booked" and "extension" not in appt.resource


def test_a_bad_mapping_overlay_stops_start_up_naming_file_and_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    overlay = tmp_path / "site" / "codes"
    overlay.mkdir(parents=True)
    (overlay / "v2_0001_gender.yaml").write_text("system: x\nmap:\n  M: male\nextra: 1\n")
    result = subprocess.run([sys.executable, "-m", "adapter.cli", "ingest", "--source", "maternity", "--db",
                             str(tmp_path / "db"), "--mappings", str(tmp_path / "site"), __file__],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert result.returncode == 2
    assert "v2_0001_gender.yaml:4" in result.stderr and "Traceback" not in result.stderr


def test_the_same_data_under_another_control_id_adds_no_version(pipeline: Pipeline) -> None:
    pid = seg("PID", {1: "1", 3: "SAME1^^^RX1^MR", 5: "X^Y", 7: "20200101"})
    first = pipeline.process(message("ADT^A31", pid, ts="20260101090000"), channel="test").outcome
    second = pipeline.process(message("ADT^A31", pid, ts="20260102090000"), channel="test").outcome
    assert (first.status, second.status) == ("AA", "AA")
    patient_id = next(i for t, i in first.resources if t == "Patient")
    # the mapped version, then the one linking it to its master Patient (identity reconciliation); no more
    assert len(pipeline.store.history("Patient", patient_id)) == 2
    provenance = pipeline.store.search("Provenance", [("target", f"Patient/{patient_id}")], count=10, offset=0)
    from_messages = [m for m in provenance.matches if "entity" in m.resource]
    assert len(from_messages) == 2  # both messages are on record as sources of the resource


def test_a_site_overlay_adding_a_message_file_adds_the_event(tmp_path: Path) -> None:
    a06 = message("ADT^A06", seg("PID", {1: "1", 3: "A06X^^^RX1^MR", 5: "X^Y"}), seg("PV1", {1: "1", 2: "I"}))
    store = SqliteStore(tmp_path / "o.sqlite3", synchronous="OFF")
    try:
        shipped = Pipeline(store, Settings(db=tmp_path / "o.sqlite3"))
        assert shipped.process(a06, channel="test").outcome.status == "AR"  # not mapped: unsupported event
        overlay = tmp_path / "site" / "hl7v2" / "messages"
        overlay.mkdir(parents=True)
        (overlay / "ADT_A06.yaml").write_text("# outpatient to inpatient, as an admission\n"
                                              "message: ADT^A06\ninclude: [adt_visit]\n")
        site = Pipeline(store, Settings(db=tmp_path / "o.sqlite3", mappings_dir=tmp_path / "site"))
        outcome = site.process(a06, channel="test").outcome
        assert outcome.status == "AA" and {t for t, _ in outcome.resources} >= {"Patient", "Encounter"}
    finally:
        store.close()
