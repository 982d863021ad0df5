"""Rules tests: a Pipeline on a temporary SqliteStore with the sandbox organisations and a fixed clock."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapter.inbound.export import ExportFile
from adapter.notify import configure_organisations
from adapter.pipeline import Pipeline
from adapter.settings import Settings
from adapter.store.sqlite import SqliteStore
from tests.hl7builder import message, seg

ROOT = Path(__file__).resolve().parents[2]
DERIVED = "https://fhir.carethread.org/CodeSystem/record-type|derived"
PEOPLE = ("local_patient_id,nhs_number,nhs_number_status,person_birth_date,person_stated_gender_code,postcode,"
          "gp_practice_code,person_family_name,person_given_name\n")
CONCERNS = "concern_id,local_patient_id,concern_snomed_code,concern_start_date,concern_end_date,recorded_by\n"
CONTACTS = ("care_contact_id,local_patient_id,care_contact_date,care_contact_time,contact_duration_minutes,"
            "contact_type,attended_or_did_not_attend,care_professional_name,care_professional_team,"
            "contact_location_type\n")


@dataclass
class Env:
    store: SqliteStore
    pipeline: Pipeline
    now: list[datetime] = field(default_factory=lambda: [datetime(2026, 6, 1, 9, tzinfo=UTC)])

    def at(self, when: datetime) -> None:
        self.now[0] = when

    def hl7(self, *messages: bytes) -> None:
        for msg in messages:
            out = self.pipeline.process(msg, channel="file").outcome
            assert out.ack_code == "AA", out.issues

    def hv(self, **files: str) -> None:
        names = {"people": "people.csv", "concerns": "safeguarding_concerns.csv", "contacts": "care_contacts.csv",
                 "household": "household_members.csv"}
        heads = {"people": PEOPLE, "concerns": CONCERNS, "contacts": CONTACTS}
        export = [ExportFile(names[k], (lambda b=(heads.get(k, "") + v).encode(): io.BytesIO(b)))
                  for k, v in files.items()]
        for row in self.pipeline.ingest_export(export):
            assert row.outcome.ack_code == "AA", (row.file, row.line, row.outcome.issues)

    def gp(self, bundle: dict[str, Any]) -> None:
        out = self.pipeline.process_bundle(json.dumps(bundle).encode(), channel="http")
        assert out.outcome.ack_code == "AA", out.outcome.issues

    def search(self, rtype: str, params: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
        return [m.resource for m in self.store.search(rtype, params or [], count=500, offset=0).matches]

    def derived_flags(self, rule: str | None = None) -> list[dict[str, Any]]:
        flags = self.search("Flag", [("_tag", DERIVED)])
        return [f for f in flags if rule is None or f["meta"]["source"].endswith(f"/rule/{rule}")]

    def comms(self, rule: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.search("Communication")
                if rule is None or c["reasonCode"][0]["coding"][0]["code"] == rule]

    def recipients(self, rule: str) -> set[str]:
        return {c["recipient"][0]["reference"].removeprefix("Organization/ods-") for c in self.comms(rule)}

    def versions(self) -> dict[tuple[str, str], str]:
        out = {}
        for rtype in ("Flag", "Communication", "Provenance", "Patient"):
            for r in self.search(rtype):
                if rtype == "Provenance" and "/source/rule/" not in r["meta"].get("source", ""):
                    continue  # each message's own Provenance (new control ids): not the rules'
                out[(rtype, r["id"])] = r["meta"]["versionId"]
        return out


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    store = SqliteStore(tmp_path / "rules.sqlite3", synchronous="OFF")
    settings = Settings(db=tmp_path / "rules.sqlite3", organisations=ROOT / "sandbox" / "organisations.yaml")
    pipeline = Pipeline(store, settings)
    configure_organisations(store, settings, check=pipeline.check_resource)
    e = Env(store, pipeline)
    pipeline.clock = lambda: e.now[0]
    yield e
    store.close()


# --- HL7 v2 builders (synthetic: NHS numbers from the 999 range passing Modulus 11) ---------------------------

def pid(nhs: str, mrn: str, given: str, dob: str, sex: str = "F", mother: str | None = None) -> str:
    fields = {1: "1", 3: f"{nhs}^^^NHS^NH~{mrn}^^^RX1^MR", 5: f"SYNTHETIC^{given}", 7: dob, 8: sex, 32: "NSTS01"}
    if mother:
        fields[21] = f"{mother}^^^NHS^NH"
    return seg("PID", fields)


def pv1(service: str, admit: str, *, visit: str, location: str = "WARD", discharge: str | None = None) -> str:
    fields = {1: "1", 2: "I", 3: f"{location}^^^RX1", 10: service, 19: visit, 44: admit}
    if discharge:
        fields[45] = discharge
    return seg("PV1", fields)


def obx(code: str, observed: str, n: int = 1) -> str:
    return seg("OBX", {1: str(n), 2: "CE", 3: "ALERT^Alert^L", 5: f"{code}^alert^SCT", 11: "F", 14: observed})


def adt(event: str, *segments: str, ts: str = "20260501090000") -> bytes:
    return message(f"ADT^{event}", *segments, ts=ts)


def noshow(appt: str, when: str, patient: str) -> bytes:
    sch = seg("SCH", {2: f"{appt}^EPR", 9: "30", 10: "min", 11: f"^^^{when}", 25: "Noshow"})
    return message("SIU^S26^SIU_S12", sch, patient, ts=when[:8] + "120000")


def father(given: str, dob: str, code: str = "FTH", n: int = 1) -> str:
    return seg("NK1", {1: str(n), 2: f"PLACEHOLDER^{given}", 3: f"{code}^Father^HL70063", 16: dob})
