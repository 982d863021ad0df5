"""The web page at ``/`` in headless Chromium against a real ``carethread sandbox --no-seed`` process loaded
with this test's own synthetic data through the entry points (MLLP and HTTP): find the mother by NHS number,
open a derived flag's evidence, move the sandbox clock past her 18th birthday and see the flag end, send an
HL7 v2 no-show from the console and see it on her baby's timeline. A screenshot of each step is written to
tests/output/browser/."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from adapter.inbound.mllp import MLLPClient
from tests.e2e.conftest import ROOT, Service, start_service, stop_service
from tests.hl7builder import message, seg

pytestmark = pytest.mark.slow

MOTHER, BABY = "9990040036", "9990040044"  # synthetic (999 range), not the sandbox story's people
TIMEOUT = 20_000  # ms


def _gp_bundle(born: date, plan_start: date, plan_end: date) -> dict:
    """The golden synthetic GP Connect bundle, made hers: an ended child protection plan, nothing active."""
    bundle = json.loads((ROOT / "tests" / "golden" / "gp" / "001-child-safeguarding.json").read_text())
    entries = []
    for entry in bundle["entry"]:
        r = entry.get("resource", {})
        if r.get("resourceType") == "Patient":
            r["identifier"][0]["value"] = MOTHER
            r["birthDate"] = born.isoformat()
            r["name"] = [{"use": "official", "family": "SYNTHETIC", "given": ["Wren"]}]
        elif r.get("resourceType") == "Condition" and r.get("id") == "cond-cpp":
            r["onsetDateTime"], r["abatementDateTime"] = plan_start.isoformat(), plan_end.isoformat()
        elif r.get("resourceType") in ("Condition", "Observation", "Appointment", "Encounter", "List",
                                         "Immunization", "AllergyIntolerance", "MedicationStatement",
                                         "MedicationRequest", "Medication"):
            continue
        entries.append(entry)
    bundle["entry"] = entries
    return bundle


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    svc = start_service(tmp_path_factory.mktemp("web"), "sandbox", "--no-seed")
    yield svc
    assert stop_service(svc) == 0


def test_the_page_in_chromium(sandbox: Service, browser, shots: Path) -> None:
    today = datetime.now(UTC).date()
    born = date(today.year - 17, today.month, 1)  # 17 today; her 18th birthday within the year
    eighteenth = date(born.year + 18, born.month, born.day)
    baby_born = today - timedelta(days=60)
    # her maternity admission (MLLP) and her baby's birth record, then her GP record (HTTP)
    mother_pid = seg("PID", {1: "1", 3: f"{MOTHER}^^^NHS^NH~WEB1^^^RX1^MR", 5: "SYNTHETIC^Wren",
                             7: born.strftime("%Y%m%d"), 8: "F", 32: "NSTS01"})
    baby_pid = seg("PID", {1: "1", 3: f"{BABY}^^^NHS^NH~WEB2^^^RX1^MR", 5: "SYNTHETIC^^^^^^L",
                           7: baby_born.strftime("%Y%m%d"), 8: "M", 21: f"{MOTHER}^^^NHS^NH", 24: "N",
                           32: "NSTS01"})
    pv1 = seg("PV1", {1: "1", 2: "I", 3: "RX1WARD^^^RX1", 10: "501", 19: "WEBV1",
                      44: baby_born.strftime("%Y%m%d") + "070000"})
    baby_pv1 = seg("PV1", {1: "1", 2: "I", 3: "RX1WARD^^^RX1", 10: "501", 19: "WEBV2",
                           44: baby_born.strftime("%Y%m%d") + "080000"})
    with MLLPClient("127.0.0.1", sandbox.mllp_port) as client:
        assert b"MSA|AA|" in client.send(message("ADT^A04", mother_pid, pv1, ts=baby_born.strftime("%Y%m%d") + "090000"))
        assert b"MSA|AA|" in client.send(message("ADT^A01", baby_pid, baby_pv1,
                                                 ts=baby_born.strftime("%Y%m%d") + "100000"))
    gp = httpx.post(f"{sandbox.http}/ingest/gp", json=_gp_bundle(born, date(born.year + 13, 1, 1),
                                                                  today - timedelta(days=30)), timeout=30)
    assert gp.status_code == 200, gp.text

    page = browser.new_page()
    page.set_default_timeout(TIMEOUT)
    try:
        # 1. the page loads; find the mother by NHS number (keyboard: label, type, Enter)
        page.goto(f"{sandbox.http}/")
        page.get_by_label("NHS number or name").fill(MOTHER)
        page.screenshot(path=str(shots / "01-search.png"), full_page=True)
        page.keyboard.press("Enter")
        page.wait_for_selector("#results")
        page.screenshot(path=str(shots / "02-results.png"), full_page=True)
        page.locator("#results a").first.click()
        page.wait_for_selector("#person-nhs")
        assert page.locator("#person-nhs").inner_text().strip() == MOTHER
        person_url = page.url

        # 2. open a derived flag's evidence: the continuity of her ended child protection plan
        derived = page.locator("li.flag.derived", has_text="continuity-past-16").first
        if derived.count() == 0:
            derived = page.locator("li.flag.derived").first
        summary = derived.locator("summary")
        assert "Active" in summary.inner_text()
        summary.focus()
        page.keyboard.press("Enter")  # details/summary: operable from the keyboard
        assert derived.locator("details").get_attribute("open") is not None
        assert "continuity-past-16" in derived.locator(".flag-rule").inner_text()
        assert derived.locator(".evidence li").count() >= 1
        page.screenshot(path=str(shots / "03-flag-evidence.png"), full_page=True)

        # 3. move the sandbox clock past her 18th birthday: the derived flag ends
        flag_id = derived.get_attribute("data-flag-id")
        page.get_by_label("Move the clock to a date").fill((eighteenth + timedelta(days=1)).isoformat())
        with page.expect_navigation():
            page.get_by_role("button", name="Move the clock").click()
        page.wait_for_selector("#person-nhs")
        ended = page.locator(f'li.flag[data-flag-id="{flag_id}"]')
        assert "Ended" in ended.locator("summary").inner_text()
        assert eighteenth.isoformat() in ended.locator(".flag-end").inner_text()
        assert page.locator("li.flag", has_text="History of child safeguarding").count() >= 1
        page.screenshot(path=str(shots / "04-flag-ended.png"), full_page=True)

        # 4. send an HL7 v2 no-show for her baby from the console: the ACK and the resources produced
        now = datetime.fromisoformat(httpx.get(f"{sandbox.http}/sandbox/clock").json()["now"])
        appt = (now - timedelta(days=1)).strftime("%Y%m%d") + "103000"
        noshow = message("SIU^S26^SIU_S12",
                         seg("SCH", {2: "WEB-APPT-1^EPR", 9: "30", 10: "min", 11: f"^^^{appt}", 25: "Noshow"}),
                         seg("PID", {1: "1", 3: f"{BABY}^^^NHS^NH~WEB2^^^RX1^MR", 5: "SYNTHETIC^^^^^^L",
                                     7: baby_born.strftime("%Y%m%d"), 8: "M"}),
                         ts=now.strftime("%Y%m%d%H%M%S"), eol="\n").decode()
        page.get_by_role("link", name="Message console").click()
        page.get_by_label("Kind of message").select_option("hl7v2")
        page.get_by_label("Paste the message").fill(noshow)
        page.screenshot(path=str(shots / "05-console.png"), full_page=True)
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#console-result")
        assert "AA" in page.locator("#console-status").inner_text()
        assert "MSA|AA|" in page.locator("#console-response").inner_text()
        assert page.locator("#console-resources a", has_text="Appointment/").count() >= 1
        page.screenshot(path=str(shots / "06-console-ack.png"), full_page=True)

        # 5. the no-show on the baby's timeline, marked in words
        page.goto(f"{sandbox.http}/?q={BABY}")
        page.locator("#results a").first.click()
        page.wait_for_selector("#timeline")
        row = page.locator("#timeline tr", has_text="Appointment").first
        assert "Was not brought" in row.inner_text()
        page.screenshot(path=str(shots / "07-baby-timeline.png"), full_page=True)
        page.goto(person_url)
        assert page.locator("#related").count() == 1 or page.locator("#related-h").count() == 1
    finally:
        page.close()


def test_console_shows_an_operation_outcome_for_a_bad_bundle(sandbox: Service, browser, shots: Path) -> None:
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT)
    try:
        page.goto(f"{sandbox.http}/ui/console")
        page.get_by_label("Kind of message").select_option("gp")
        page.get_by_label("Paste the message").fill(json.dumps({"resourceType": "Basic"}))
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#console-result")
        assert "OperationOutcome" in page.locator("#console-response").inner_text()
        page.screenshot(path=str(shots / "08-console-outcome.png"), full_page=True)
    finally:
        page.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory):
    svc = start_service(tmp_path_factory.mktemp("web-seeded"), "sandbox")  # the seeded story
    yield svc
    assert stop_service(svc) == 0


def test_the_seeded_mother_in_chromium(seeded: Service, browser, shots: Path) -> None:
    """The sandbox as an engineer first meets it: the story's mother (NHS 9990001006) found by NHS number,
    a derived flag's evidence opened, the clock moved past her 18th birthday (2027-03-10): the flag ends."""
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT)
    try:
        page.goto(f"{seeded.http}/")
        page.get_by_label("NHS number or name").fill("9990001006")
        page.keyboard.press("Enter")
        page.wait_for_selector("#results")
        page.locator("#results a").first.click()
        page.wait_for_selector("#person-nhs")
        assert page.locator("#person-nhs").inner_text().strip() == "9990001006"
        derived = page.locator("li.flag.derived", has_text="continuity-past-16").first
        summary = derived.locator("summary")
        assert "Active" in summary.inner_text()
        summary.focus()
        page.keyboard.press("Enter")
        assert "continuity-past-16" in derived.locator(".flag-rule").inner_text()
        assert derived.locator(".evidence li").count() >= 1
        page.screenshot(path=str(shots / "11-seeded-mother-flag.png"), full_page=True)
        flag_id = derived.get_attribute("data-flag-id")
        page.get_by_label("Move the clock to a date").fill("2027-03-11")
        with page.expect_navigation():
            page.get_by_role("button", name="Move the clock").click()
        page.wait_for_selector("#person-nhs")
        ended = page.locator(f'li.flag[data-flag-id="{flag_id}"]')
        assert "Ended" in ended.locator("summary").inner_text()
        assert "2027-03-10" in ended.locator(".flag-end").inner_text()
        page.screenshot(path=str(shots / "12-seeded-mother-18.png"), full_page=True)
    finally:
        page.close()
