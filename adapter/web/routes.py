"""The sandbox web page: ``/`` and its own small endpoints under ``/ui/...``; served by ``serve`` and
``sandbox`` alike (the clock control shows only when the pipeline's clock is a SandboxClock, since
``POST /sandbox/clock`` exists only there).

    GET  /                         search form; ``?q=`` an NHS number or a name: the matching people
    GET  /ui/person/{id}           a person's timeline across all sources (any record id of the identity):
                                   encounters, appointments (was-not-brought marked in words), flags with
                                   start and end (each derived flag a disclosure of its rule and evidence),
                                   related persons with ages, notifications and their delivery state,
                                   identity review tasks with accept / reject
    POST /ui/review/{task_id}      form: ``decision`` = link | not-a-match, ``back`` = a person id
    GET  /ui/console               the message console
    POST /ui/console               form: ``kind`` (hl7v2 | health-visiting | gp), ``message`` (pasted) or
                                   ``upload`` (a file): the ACK or OperationOutcome and the resources produced
    GET  /ui/style.css             the stylesheet

The flags, their rule and evidence, the related persons with ages and the organisations come from the
``$safeguarding-summary`` gathering (adapter.api.routes.summary); the timeline adds the identity's
encounters, appointments, notifications and review tasks through the same ``identity`` search. No value is
ever logged.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from string import Template
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from adapter.api.outcomes import ApiError
from adapter.api.routes import summary as S
from adapter.api.routes.ingest import _outcome as ingest_outcome
from adapter.api.routes.ingest import issue_location
from adapter.clock import SandboxClock
from adapter.identity import REVIEW_CODE, TASK_INPUT_CS, is_master
from adapter.inbound.export import open_export
from adapter.web.style import CSS

__all__ = ["web_router"]

_NHS_RE = re.compile(r"^\d{10}$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_MAX_RESULTS = 50
_CONSOLE_KINDS = {"hl7v2": "HL7 v2 message", "health-visiting": "Health visiting export (CSV or JSON lines)",
                  "gp": "GP Connect bundle (JSON)"}
_SUMMARY_FLAGS = ("Safeguarding flags (active)", "Safeguarding flag history")

e = html.escape

_PAGE = Template("""<!doctype html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title - Carethread sandbox</title>
<link rel="stylesheet" href="/ui/style.css">
</head>
<body>
<a class="skip" href="#main">Skip to main content</a>
<header>
<p><strong>Carethread</strong> - safeguarding records across maternity, health visiting and GP
(synthetic data only)</p>
<nav aria-label="Main"><ul>
<li><a href="/">Find a person</a></li>
<li><a href="/ui/console">Message console</a></li>
<li><a href="/docs">API documentation</a></li>
</ul></nav>
</header>
<main id="main" tabindex="-1">
$clock
$body
</main>
<footer><p>Times shown are the service's clock: $now</p></footer>
$script
</body>
</html>
""")

_CLOCK_SCRIPT = """<script>
// progressive enhancement: the sandbox clock form posts JSON to /sandbox/clock, then reloads the page
(function () {
  var form = document.getElementById('clock-form');
  if (!form) return;
  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var status = document.getElementById('clock-status');
    var when = form.elements['clock-to'].value;
    var body = when ? {now: when + 'T09:00:00+00:00'} : {advance: 'P' + (form.elements['clock-days'].value || '1') + 'D'};
    status.textContent = 'Moving the clock...';
    fetch('/sandbox/clock', {method: 'POST', headers: {'content-type': 'application/json'},
                              body: JSON.stringify(body)})
      .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
      .then(function (res) {
        if (res[0]) { status.textContent = 'Clock moved to ' + res[1].now; window.location.reload(); }
        else { status.textContent = 'Not moved: ' + ((res[1].issue || [{}])[0].diagnostics || 'error'); }
      })
      .catch(function () { status.textContent = 'Not moved: the service did not answer'; });
  });
})();
</script>"""


# --- helpers ------------------------------------------------------------------------------------------------

def _now(pipeline: Any) -> datetime:
    clock = getattr(pipeline, "clock", None)
    return clock() if callable(clock) else datetime.now(UTC)


def _page(pipeline: Any, title: str, body: str, *, status: int = 200) -> HTMLResponse:
    clock = getattr(pipeline, "clock", None)
    now = _now(pipeline)
    sandbox = isinstance(clock, SandboxClock)
    clock_html = ""
    if sandbox:
        clock_html = (
            '<section class="panel" aria-labelledby="clock-h"><h2 id="clock-h">Sandbox clock</h2>'
            f'<p>Sandbox time: <time id="clock-now" datetime="{e(now.isoformat(timespec="seconds"))}">'
            f'{e(now.isoformat(timespec="seconds"))}</time>. The clock only moves forward; the daily rules '
            'run at the new time.</p>'
            '<form id="clock-form" method="post" action="/sandbox/clock">'
            '<label for="clock-to">Move the clock to a date</label>'
            '<p class="hint" id="clock-to-hint">Leave empty to move forward by a number of days instead.</p>'
            '<input type="date" id="clock-to" name="clock-to" aria-describedby="clock-to-hint">'
            '<label for="clock-days">Or move forward by days</label>'
            '<input type="number" id="clock-days" name="clock-days" min="1" value="1">'
            '<div><button type="submit" id="clock-move">Move the clock</button></div>'
            '<p id="clock-status" role="status" aria-live="polite"></p></form></section>')
    text = _PAGE.substitute(title=e(title), body=body, clock=clock_html,
                            now=e(now.isoformat(timespec="seconds")),
                            script=_CLOCK_SCRIPT if sandbox else "")
    return HTMLResponse(text, status_code=status)


def _name(patient: dict[str, Any]) -> str:
    for n in patient.get("name", []) or []:
        if not isinstance(n, dict):
            continue
        if n.get("text"):
            return str(n["text"])
        parts = [*(n.get("given") or []), n.get("family") or ""]
        text = " ".join(str(p) for p in parts if p)
        if text:
            return text
    return "(no name recorded)"


def _nhs(patient: dict[str, Any]) -> str:
    return next((str(i["value"]) for i in patient.get("identifier", []) or []
                 if isinstance(i, dict) and i.get("system") == S.NHS and i.get("value")), "")


def _date(value: Any) -> str:
    return str(value)[:10] if value else ""


def _source_label(resource: dict[str, Any]) -> str:
    source = S._source_of(resource) or "carethread"
    head = source.split("/", 1)[0]
    if head == "rule":
        return "Carethread rule"
    return S.SOURCE_TITLES.get(head, head)


def _tag(text: str, kind: str) -> str:
    return f'<span class="tag tag-{kind}">{e(text)}</span>'


def _table(caption: str, headers: list[str], rows: list[list[str]], *, empty: str, table_id: str) -> str:
    if not rows:
        return f'<p id="{table_id}">{e(empty)}</p>'
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (f'<table id="{table_id}"><caption class="skip">{e(caption)}</caption><thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table>')


def _gather_all(g: S._Gather, rtype: str, identity: str) -> list[dict[str, Any]]:
    try:
        return g.search(rtype, [("identity", identity)])
    except (KeyError, ValueError, ApiError):
        return []


# --- search ------------------------------------------------------------------------------------------------

def _find(store: Any, query: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(master, a matching record) per identity, for an NHS number or a name."""
    q = query.strip()
    digits = re.sub(r"[\s-]", "", q)
    if _NHS_RE.match(digits):
        params = [("identifier", f"{S.NHS}|{digits}")]
    else:
        params = [("name", q.replace(",", "\\,"))]
    found = store.search("Patient", params, count=_MAX_RESULTS, offset=0)
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for m in found.matches:
        try:
            _, master = S._resolve(store, m.resource["id"])
        except ApiError:
            continue
        out.setdefault(master["id"], (master, m.resource))
    return list(out.values())


def _search_page(pipeline: Any, query: str | None) -> HTMLResponse:
    q = (query or "").strip()
    form = ('<h1>Find a person</h1>'
            '<form method="get" action="/" role="search">'
            '<label for="q">NHS number or name</label>'
            '<p class="hint" id="q-hint">For example 999 000 1006, or a family or given name.</p>'
            f'<input type="search" id="q" name="q" value="{e(q)}" aria-describedby="q-hint" size="30" '
            'autocomplete="off">'
            '<div><button type="submit">Search</button></div></form>')
    results = ""
    if q:
        people = _find(pipeline.store, q[:200])
        rows = []
        for master, record in people:
            person = master if _name(master) != "(no name recorded)" else record
            rows.append([f'<a href="/ui/person/{quote(master["id"])}">{e(_name(person))}</a>',
                         e(_nhs(master) or _nhs(record) or "not recorded"), e(_date(person.get("birthDate"))),
                         e(str(person.get("gender") or ""))])
        results = (f'<h2 id="results-h">Results</h2><p role="status">{len(rows)} '
                   f'{"person" if len(rows) == 1 else "people"} found.</p>'
                   + _table("People found", ["Name", "NHS number", "Date of birth", "Gender"], rows,
                            empty="No one matches.", table_id="results"))
    return _page(pipeline, "Find a person", form + results)


# --- the person's page --------------------------------------------------------------------------------------

def _flag_evidence(flags: list[dict[str, Any]], subsections: list[dict[str, Any]],
                   known: dict[tuple[str, str], dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per flag id, the resources of its "Why" sub-section (provenance and evidence)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for sub in subsections:
        items = [known[k] for entry in sub.get("entry", []) if (k := S._reference_key(entry)) in known]
        for item in items:
            if item.get("resourceType") != "Provenance":
                continue
            for t in item.get("target", []):
                key = S._reference_key(t)
                if key is not None and key[0] == "Flag":
                    out.setdefault(key[1], items)
        if not any(i.get("resourceType") == "Provenance" for i in items):
            # evidence by flag-detail only: the flag whose detail names it
            names = {S._key(i) for i in items}
            for f in flags:
                details = {S._reference_key(x.get("valueReference")) for x in f.get("extension", [])
                           if x.get("url") == S.FLAG_DETAIL_EXT}
                if details & names:
                    out.setdefault(f["id"], items)
    return out


def _describe(resource: dict[str, Any]) -> str:
    rtype = resource.get("resourceType", "")
    if rtype == "Flag":
        return f"Flag {S._display(resource.get('code'))} ({resource.get('status')}, {S._period(resource)})"
    if rtype == "Appointment":
        return f"Appointment on {_date(resource.get('start'))}: {resource.get('status')}"
    if rtype in ("Condition", "Observation"):
        when = resource.get("onsetDateTime") or resource.get("effectiveDateTime") or resource.get("recordedDate")
        return f"{rtype} {S._display(resource.get('code'))}" + (f" on {_date(when)}" if when else "")
    if rtype == "Encounter":
        return f"Encounter on {_date((resource.get('period') or {}).get('start'))}"
    if rtype == "Patient":
        return f"Patient record, born {_date(resource.get('birthDate')) or 'unknown'}"
    if rtype == "RelatedPerson":
        return f"Related person: {S._display((resource.get('relationship') or [{}])[0])}"
    return rtype


def _flags_html(flags: list[dict[str, Any]], evidence: dict[str, list[dict[str, Any]]]) -> str:
    if not flags:
        return '<p id="flags">No safeguarding flags recorded.</p>'
    parts = ['<ul id="flags" class="flags">']
    for f in flags:
        derived = (S._source_of(f) or "").startswith("rule/")
        state = "active" if f.get("status") == "active" else "ended"
        period = f.get("period") or {}
        items = evidence.get(f["id"], [])
        provs = [i for i in items if i.get("resourceType") == "Provenance"]
        rules = list(dict.fromkeys(p[len(S.RULE_POLICY):] for prov in provs for p in prov.get("policy", [])
                                   if p.startswith(S.RULE_POLICY)))
        head = (f'{_tag("Active" if state == "active" else "Ended", state)} '
                f'<span class="flag-code">{e(S._display(f.get("code")))}</span> - '
                f'started {e(_date(period.get("start")) or "unknown")}'
                + (f', <span class="flag-end">ended {e(_date(period.get("end")))}</span>' if period.get("end")
                   else "")
                + f' ({"derived by Carethread" if derived else "recorded by " + e(_source_label(f))})')
        body = []
        if rules:
            body.append(f'<p>Rule: <strong class="flag-rule">{e(", ".join(rules))}</strong></p>')
        for prov in provs:
            activity = (prov.get("activity") or {}).get("text") or S._display(prov.get("activity"))
            reasons = ", ".join(S._display(r) for r in prov.get("reason", []) or [])
            body.append(f'<p>Recorded {e(_date(prov.get("recorded")))}'
                        + (f": {e(str(activity))}" if activity and activity != "unspecified" else "")
                        + (f" (reason: {e(reasons)})" if reasons else "") + "</p>")
        evid = [i for i in items if i.get("resourceType") != "Provenance"]
        if evid:
            body.append('<p>Evidence:</p><ul class="evidence">' + "".join(
                f'<li>{e(_describe(i))}; source {e(_source_label(i))} '
                f'(<a href="/fhir/{quote(i["resourceType"])}/{quote(i["id"])}">{e(i["resourceType"])} '
                'resource</a>)</li>' for i in evid) + "</ul>")
        if not body:
            body.append("<p>No rule or evidence recorded for this flag.</p>")
        cls = "flag derived" if derived else "flag"
        if derived or items:
            parts.append(f'<li class="{cls}" data-flag-id="{e(f["id"])}"><details><summary>{head}</summary>'
                         f'{"".join(body)}</details></li>')
        else:
            parts.append(f'<li class="{cls}" data-flag-id="{e(f["id"])}"><p>{head}</p></li>')
    parts.append("</ul>")
    return "".join(parts)


def _person_page(pipeline: Any, person_id: str) -> HTMLResponse:
    store = pipeline.store
    now = _now(pipeline)
    try:
        bundle = S.safeguarding_summary(store, person_id, now=now, base="/fhir")
    except ApiError:
        return _page(pipeline, "Person not found",
                     '<h1>Person not found</h1><p>No person has this record id. <a href="/">Find a person</a>.</p>',
                     status=404)
    composition = bundle["entry"][0]["resource"]
    known = {S._key(x["resource"]): x["resource"] for x in bundle["entry"][1:]}
    master_key = S._reference_key(composition["subject"])
    master = known[master_key]  # type: ignore[index]
    identity = f"Patient/{master['id']}"
    sections = {s["title"]: s for s in composition["section"]}

    def entries(title: str) -> list[dict[str, Any]]:
        return [known[k] for x in sections.get(title, {}).get("entry", []) if (k := S._reference_key(x)) in known]

    flags = [f for t in _SUMMARY_FLAGS for f in entries(t)]
    subsections = [sub for t in _SUMMARY_FLAGS for sub in sections.get(t, {}).get("section", [])]
    evidence = _flag_evidence(flags, subsections, known)
    patients = [r for k, r in known.items() if k[0] == "Patient"]

    g = S._Gather(store)
    encounters = _gather_all(g, "Encounter", identity)
    appointments = _gather_all(g, "Appointment", identity)
    communications = _gather_all(g, "Communication", identity)
    tasks = [t for t in _gather_all(g, "Task", identity)
             if any(c.get("code") == REVIEW_CODE["code"] for c in (t.get("code") or {}).get("coding", []))]

    # the person
    records = [p for p in patients if not is_master(p)]
    shown = master if _name(master) != "(no name recorded)" else (records[0] if records else master)
    today = now.date()
    age = S._age(shown.get("birthDate"), today)
    out = [f'<h1 id="person-name">{e(_name(shown))}</h1>',
           '<dl class="panel">',
           f'<dt>NHS number</dt><dd id="person-nhs">{e(_nhs(master) or _nhs(shown) or "not recorded")}</dd>',
           f'<dt>Date of birth</dt><dd>{e(_date(shown.get("birthDate")) or "not recorded")}'
           + (f" (age {age})" if age is not None else "") + "</dd>",
           f'<dt>Records</dt><dd>{len(records)} source record(s): '
           f'{e(", ".join(sorted({_source_label(p) for p in records})) or "none")}</dd></dl>']

    # timeline: everything dated, newest first
    events: list[tuple[str, str, str, str]] = []  # (date, source, what, detail html)
    for enc in encounters:
        period = enc.get("period") or {}
        kind = S._display((enc.get("type") or [{}])[0]) if enc.get("type") else S._display(enc.get("class"))
        events.append((str(period.get("start") or ""), _source_label(enc), "Encounter",
                       e(f"{kind}; {enc.get('status')}")))
    for a in appointments:
        outcome = {c[1] for x in a.get("extension", []) if x.get("url") == S.ATTENDANCE_EXT
                   for c in S._codes(x.get("valueCodeableConcept"))}
        kind = S._display(a["appointmentType"]) if a.get("appointmentType") else "appointment"
        mark = _tag("Was not brought", "wnb") + " " if "was-not-brought" in outcome else ""
        events.append((str(a.get("start") or ""), _source_label(a), "Appointment",
                       f'{mark}{e(kind)}; {e(str(a.get("status")))}'))
    for f in flags:
        period = f.get("period") or {}
        events.append((str(period.get("start") or ""), _source_label(f), "Flag started",
                       e(S._display(f.get("code")))))
        if period.get("end"):
            events.append((str(period["end"]), _source_label(f), "Flag ended", e(S._display(f.get("code")))))
    for c in communications:
        events.append((str(c.get("sent") or (c.get("meta") or {}).get("lastUpdated") or ""), "Carethread",
                       "Notification", e(f"{S._display((c.get('reasonCode') or [{}])[0])}; {c.get('status')}")))
    events.sort(key=lambda x: x[0], reverse=True)
    out.append('<h2 id="timeline-h">Timeline</h2>')
    out.append(_table("Timeline, newest first", ["Date", "Source", "Event", "Details"],
                      [[e(_date(d)), e(s), e(w), detail] for d, s, w, detail in events],
                      empty="Nothing recorded yet.", table_id="timeline"))

    out.append('<h2 id="flags-h">Safeguarding flags</h2>'
               '<p class="hint">Open a flag to see the rule that derived it and its evidence.</p>')
    out.append(_flags_html(flags, evidence))

    related = sections.get("Related persons", {}).get("entry", [])
    rows = []
    for ref in related:
        rp = known.get(S._reference_key(ref))  # type: ignore[arg-type]
        if rp is None:
            continue
        ages = [x["valueAge"]["value"] for x in ref.get("extension", []) if x.get("url") == S.AGE_EXT]
        rel = S._display((rp.get("relationship") or [{}])[0]) if rp.get("relationship") else "related person"
        age_text = f"{ages[0]}" + (" (under 18)" if ages[0] < 18 else "") if ages else "unknown"
        rows.append([e(rel), e(_name(rp)), e(age_text), e(_source_label(rp))])
    out.append('<h2 id="related-h">Related persons</h2>')
    out.append(_table("Related persons", ["Relationship", "Name", "Age", "Source"], rows,
                      empty="No related persons recorded.", table_id="related"))

    rows = []
    for c in sorted(communications, key=lambda c: c.get("sent") or "", reverse=True):
        recipients = ", ".join(
            str(r.get("display") or (r.get("identifier") or {}).get("value") or r.get("reference") or "")
            for r in c.get("recipient", []) or [])
        rows.append([e(S._display((c.get("reasonCode") or [{}])[0]) if c.get("reasonCode") else "notification"),
                     e(recipients or "unknown"), _tag(str(c.get("status")), "state"),
                     e(_date(c.get("sent")) or "not sent")])
    out.append('<h2 id="notifications-h">Notifications</h2>')
    out.append(_table("Notifications", ["About", "To", "Delivery state", "Sent"], rows,
                      empty="No notifications.", table_id="notifications"))

    out.append('<h2 id="tasks-h">Identity review tasks</h2>')
    if not tasks:
        out.append('<p id="tasks">No identity review tasks.</p>')
    else:
        items = []
        for t in tasks:
            candidates = [S._reference_key(i.get("valueReference")) for i in t.get("input", [])
                          if any(c.get("code") == "candidate" for c in (i.get("type") or {}).get("coding", []))]
            cand = ", ".join(f'<a href="/ui/person/{quote(k[1])}">candidate person</a>' for k in candidates if k)
            controls = ""
            if t.get("status") == "requested":
                controls = "".join(
                    f'<form class="inline" method="post" action="/ui/review/{quote(t["id"])}">'
                    f'<input type="hidden" name="back" value="{e(master["id"])}">'
                    f'<input type="hidden" name="decision" value="{d}">'
                    f'<button type="submit" class="{cls}">{label}</button></form> '
                    for d, label, cls in (("link", "Accept: same person", ""),
                                          ("not-a-match", "Reject: not a match", "secondary")))
            items.append(f'<li><p>{e(str(t.get("description") or "Identity review"))}; status '
                         f'<strong>{e(str(t.get("status")))}</strong>; {cand}</p>{controls}</li>')
        out.append(f'<ul id="tasks">{"".join(items)}</ul>')
    return _page(pipeline, "Person", "".join(out))


# --- review decisions ---------------------------------------------------------------------------------------

def _decide(pipeline: Any, task_id: str, decision: str) -> bool:
    stored = pipeline.store.read("Task", task_id)
    if stored is None or stored.resource.get("status") != "requested":
        return False
    task = json.loads(json.dumps(stored.resource))
    if not any(c.get("code") == REVIEW_CODE["code"] for c in (task.get("code") or {}).get("coding", [])):
        return False
    task["status"] = "completed"
    task["output"] = [{"type": {"coding": [{"system": TASK_INPUT_CS, "code": "decision"}]}, "valueCode": decision}]
    task["meta"] = {k: v for k, v in (task.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if any(i["severity"] in ("error", "fatal") for i in pipeline.resource_issues(task)):
        return False
    return pipeline.review_decision(json.dumps(task).encode(), task, decision) is not None


# --- the message console ------------------------------------------------------------------------------------

def _console_form(kind: str = "hl7v2", text: str = "") -> str:
    options = "".join(f'<option value="{k}"{" selected" if k == kind else ""}>{e(v)}</option>'
                      for k, v in _CONSOLE_KINDS.items())
    return ('<h1>Message console</h1>'
            '<p>Send a message as a source system would, and see the answer and the resources it produced.</p>'
            '<form method="post" action="/ui/console" enctype="multipart/form-data">'
            f'<label for="kind">Kind of message</label><select id="kind" name="kind">{options}</select>'
            '<label for="message">Paste the message</label>'
            '<p class="hint" id="message-hint">HL7 v2 segments one per line; a CSV file with its header row; or '
            'a JSON Bundle.</p>'
            f'<textarea id="message" name="message" rows="10" aria-describedby="message-hint">{e(text)}'
            '</textarea>'
            '<label for="upload">Or upload a file</label>'
            '<p class="hint" id="upload-hint">A file replaces the pasted text. A health visiting export may be a '
            'zip.</p>'
            '<input type="file" id="upload" name="upload" aria-describedby="upload-hint">'
            '<div><button type="submit" id="console-send">Send</button></div></form>')


def _run_console(pipeline: Any, kind: str, payload: bytes, filename: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(status line, response text, resources produced)."""
    if kind == "hl7v2":
        text = payload.replace(b"\r\n", b"\r").replace(b"\n", b"\r").strip(b"\r") + b"\r"
        processed = pipeline.process(text, channel="http")
        ack = processed.ack
        status = f"HL7 v2 {processed.outcome.status}"
        return status, (ack or b"(no ACK: an ACK was received)").decode("utf-8", "replace").replace("\r", "\n"), \
            list(processed.outcome.resources)
    if kind == "gp":
        result = pipeline.process_bundle(payload, channel="http")
        o = result.outcome
        counts: Counter[str] = Counter({o.status: 1})
        outcome = ingest_outcome(counts, [(issue_location("Bundle", i), o.status, i) for i in o.issues])
        return f"HTTP {result.http_status}, {o.status}", json.dumps(outcome, indent=2), list(o.resources)
    with tempfile.TemporaryDirectory(prefix="carethread-console-") as tmp:
        target = Path(tmp) / (PurePosixPath(filename).name or "export.csv")
        target.write_bytes(payload)
        counts = Counter()
        problems = []
        resources: list[tuple[str, str]] = []
        for result in pipeline.ingest_export(open_export(target), channel="http"):
            o = result.outcome
            counts[o.status] += 1
            resources += o.resources
            for i in o.issues:
                problems.append((issue_location(f"{result.file}:{result.line}", i), o.status, i))
        outcome = ingest_outcome(counts, problems)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no rows"
    return f"Rows: {summary}", json.dumps(outcome, indent=2), resources


def _console_result(status: str, response: str, resources: list[tuple[str, str]]) -> str:
    unique = list(dict.fromkeys(resources))
    rows = []
    for rtype, rid in unique:
        link = f'<a href="/fhir/{quote(rtype)}/{quote(rid)}">{e(rtype)}/{e(rid)}</a>'
        person = f' - <a href="/ui/person/{quote(rid)}">timeline</a>' if rtype == "Patient" else ""
        rows.append(f"<li>{link}{person}</li>")
    produced = f'<ul id="console-resources">{"".join(rows)}</ul>' if rows else \
        '<p id="console-resources">No resources produced.</p>'
    return ('<section aria-labelledby="result-h" class="panel" id="console-result">'
            f'<h2 id="result-h">Result</h2><p role="status" id="console-status">{e(status)}</p>'
            f'<h3>Response</h3><pre id="console-response">{e(response)}</pre>'
            f'<h3>Resources produced ({len(unique)})</h3>{produced}</section>')


# --- the router ---------------------------------------------------------------------------------------------

def web_router(pipeline: Any) -> APIRouter:
    router = APIRouter(tags=["web"], include_in_schema=False)

    @router.get("/")
    def home(q: str | None = None) -> HTMLResponse:
        return _search_page(pipeline, q)

    @router.get("/ui/style.css")
    def style() -> Response:
        return Response(CSS, media_type="text/css", headers={"Cache-Control": "max-age=300"})

    @router.get("/ui/person/{person_id}")
    def person(person_id: str) -> HTMLResponse:
        if not _ID_RE.match(person_id):
            return _page(pipeline, "Person not found", "<h1>Person not found</h1>", status=404)
        return _person_page(pipeline, person_id)

    @router.post("/ui/review/{task_id}")
    async def review(task_id: str, request: Request) -> Response:
        form = await request.form()
        decision, back = str(form.get("decision") or ""), str(form.get("back") or "")
        if not _ID_RE.match(task_id) or decision not in ("link", "not-a-match"):
            return _page(pipeline, "Review", "<h1>That decision cannot be made</h1>", status=400)
        done = await run_in_threadpool(_decide, pipeline, task_id, decision)
        if not done:
            return _page(pipeline, "Review", "<h1>That review is not open</h1>"
                         '<p>It may have been decided already. <a href="/">Find a person</a>.</p>', status=409)
        target = f"/ui/person/{quote(back)}" if _ID_RE.match(back) else "/"
        return RedirectResponse(target, status_code=303)

    @router.get("/ui/console")
    def console() -> HTMLResponse:
        return _page(pipeline, "Message console", _console_form())

    @router.post("/ui/console")
    async def console_send(request: Request) -> HTMLResponse:
        form = await request.form()
        try:
            kind = str(form.get("kind") or "hl7v2")
            if kind not in _CONSOLE_KINDS:
                kind = "hl7v2"
            text = str(form.get("message") or "") if not isinstance(form.get("message"), UploadFile) else ""
            upload = form.get("upload")
            payload, filename = text.encode(), "pasted.csv"
            if isinstance(upload, UploadFile) and upload.filename:
                payload, filename = await upload.read(), upload.filename
                text = ""
            if not payload.strip():
                body = _console_form(kind, text) + '<p role="alert" id="console-status">Paste a message or ' \
                                                   'choose a file first.</p>'
                return _page(pipeline, "Message console", body, status=400)
            if kind == "health-visiting" and filename == "pasted.csv" and payload.lstrip()[:1] == b"{":
                filename = "pasted.jsonl"
            status, response, resources = await run_in_threadpool(_run_console, pipeline, kind, payload, filename)
        finally:
            await form.close()
        return _page(pipeline, "Message console",
                     _console_form(kind, text) + _console_result(status, response, resources))

    return router

