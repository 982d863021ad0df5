"""The sandbox: its seeded story, its notification inbox and its state file.  Synthetic data only.

* ``seed``: replays ``sandbox/story/story.yaml`` (a synthetic version of the case in DOMAIN.md §1) through
  the running service's own entry points: HL7 v2 over MLLP, ``POST /ingest/health-visiting``,
  ``POST /ingest/gp``, with the sandbox clock moved (``POST /sandbox/clock``) to each step's date, so the
  flags, was-not-brought events, notifications and review tasks are what the pipeline made.  The clock
  starts at the first step (``SandboxClock.start_at``) and is left at the last (the baby's 11th week).
* ``inbox_router``: one receiver per configured organisation, in process:
  ``PUT /sandbox/inbox/{ods}/fhir/Communication/{id}`` (what a rest-hook Subscription sends), listed by
  ``GET /sandbox/inbox`` and ``GET /sandbox/inbox/{ods}``.  In memory: a restart empties it.
* ``inbox_organisations``: the organisations configuration with every organisation's endpoint pointed at
  its inbox, written next to the database.
* The state file (``<db>.sandbox.json``): the story was seeded, and the clock's time at the last stop, so a
  restart keeps the story's time.  ``carethread sandbox reset`` deletes it with the database.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from adapter.api.outcomes import operation_outcome
from adapter.clock import SandboxClock
from adapter.inbound.er7 import split_batch
from adapter.inbound.mllp import MLLPClient

__all__ = ["STORY_DIR", "Inbox", "Step", "inbox_organisations", "inbox_router", "load_story", "read_state",
           "reset", "seed", "state_path", "write_state"]

ROOT = Path(__file__).resolve().parent.parent
STORY_DIR = ROOT / "sandbox" / "story"
_CHANNELS = ("mllp", "health-visiting", "gp")


@dataclass(frozen=True)
class Step:
    at: datetime
    what: str
    channel: str | None  # mllp | health-visiting | gp | None (the clock moves; the daily rules run)
    path: Path | None


def load_story(story_dir: Path = STORY_DIR) -> list[Step]:
    raw = yaml.safe_load((story_dir / "story.yaml").read_text())
    steps = []
    for item in raw["steps"]:
        channel = next((c for c in _CHANNELS if c in item), None)
        at = datetime.fromisoformat(str(item["at"]))
        if at.tzinfo is None:
            raise ValueError("story.yaml: every `at` needs its offset")
        steps.append(Step(at, str(item.get("what", "")), channel,
                          story_dir / item[channel] if channel else None))
    return steps


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104 - listening on all: dial loopback


def seed(clock: SandboxClock, host: str, http_port: int, mllp_port: int, *,
         story_dir: Path = STORY_DIR, out: Callable[[str], None] = print) -> bool:
    """Replay the story against the running service (call from a thread, not the service's loop).  Prints
    one line per step (date, channel, file, outcome: no patient data); True if every input was accepted."""
    host = _client_host(host)
    base = f"http://{host}:{http_port}"
    ok = True
    with httpx.Client(base_url=base, timeout=30.0) as http:
        for n, step in enumerate(load_story(story_dir)):
            if n == 0:
                clock.start_at(step.at)
            else:
                moved = http.post("/sandbox/clock", json={"now": step.at.isoformat()})
                moved.raise_for_status()
            outcome = "clock moved, daily rules run"
            if step.channel == "mllp" and step.path is not None:
                with MLLPClient(host, mllp_port) as mllp:
                    acks = [mllp.send(m) for m in split_batch(step.path.read_bytes())]
                codes = [_ack_code(a) for a in acks]
                ok &= all(c == "AA" for c in codes)
                outcome = " ".join(codes)
            elif step.channel == "health-visiting" and step.path is not None:
                files = sorted(p for p in (step.path.iterdir() if step.path.is_dir() else [step.path]) if p.is_file())
                r = http.post("/ingest/health-visiting", files=[("file", (p.name, p.read_bytes(), "text/csv"))
                                                                for p in files])
                outcome, good = _summary(r)
                ok &= good
            elif step.channel == "gp" and step.path is not None:
                r = http.post("/ingest/gp", content=step.path.read_bytes(),
                              headers={"Content-Type": "application/fhir+json"})
                outcome, good = _summary(r)
                ok &= good
            name = step.path.name if step.path else "-"
            out(f"seeded {step.at.date().isoformat()} {step.channel or 'clock'} {name}: {outcome}")
    return ok


def _ack_code(ack: bytes) -> str:
    for segment in ack.replace(b"\n", b"\r").split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1].decode("ascii", "replace")
    return "no-MSA"


def _summary(r: httpx.Response) -> tuple[str, bool]:
    try:
        issues = r.json().get("issue", [])
    except ValueError:
        return f"HTTP {r.status_code}", False
    errors = [i for i in issues if i.get("severity") == "error"]
    text = issues[0].get("diagnostics", "") if issues else ""
    return f"HTTP {r.status_code} {text}".strip(), r.status_code == 200 and not errors


# -- the inbox -----------------------------------------------------------------------------------------------


class Inbox:
    """What each organisation's receiver got: ODS code -> Communication id -> the last payload (a PUT of
    the same id replaces it, as a FHIR server would), with how many times it came."""

    def __init__(self, organisations: list[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._received: dict[str, dict[str, dict[str, Any]]] = {ods: {} for ods in organisations or []}

    def put(self, ods: str, cid: str, payload: Any, at: str) -> int:
        with self._lock:
            box = self._received.setdefault(ods, {})
            entry = box.get(cid)
            deliveries = (entry["deliveries"] if entry else 0) + 1
            box[cid] = {"id": cid, "received": at, "deliveries": deliveries, "payload": payload}
            return deliveries

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"organisations": [
                {"ods": ods, "received": len(box),
                 "communications": [{"id": e["id"], "rule": _rule(e["payload"]), "deliveries": e["deliveries"]}
                                    for e in sorted(box.values(), key=lambda e: (e["received"], e["id"]))]}
                for ods, box in sorted(self._received.items())]}

    def of(self, ods: str) -> list[dict[str, Any]] | None:
        with self._lock:
            box = self._received.get(ods)
            return None if box is None else sorted(box.values(), key=lambda e: (e["received"], e["id"]))


def _rule(payload: dict[str, Any]) -> str | None:
    try:
        return str(payload["reasonCode"][0]["coding"][0]["code"])
    except (KeyError, IndexError, TypeError):
        return None


def inbox_router(inbox: Inbox, clock: Callable[[], datetime]) -> APIRouter:
    router = APIRouter(tags=["sandbox"])

    @router.put("/sandbox/inbox/{ods}/fhir/Communication/{cid}",
                summary="An organisation's receiver: what a rest-hook Subscription sends (FHIR R4 update)")
    async def receive(ods: str, cid: str, request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return operation_outcome(400, "invalid", "The body is not JSON")
        if not isinstance(payload, dict) or payload.get("resourceType") != "Communication":
            return operation_outcome(400, "invalid", "The body is not a Communication")
        deliveries = inbox.put(ods.upper(), cid, payload, clock().isoformat(timespec="seconds"))
        return JSONResponse(payload, status_code=201 if deliveries == 1 else 200,
                            media_type="application/fhir+json")

    @router.get("/sandbox/inbox", summary="What each organisation's receiver got: counts and Communication ids")
    async def list_all() -> Response:
        return JSONResponse(inbox.summary())

    @router.get("/sandbox/inbox/{ods}", summary="The Communications one organisation's receiver got, as sent")
    async def list_one(ods: str) -> Response:
        entries = inbox.of(ods.upper())
        if entries is None:
            return operation_outcome(404, "not-found", "No such organisation in the sandbox")
        return JSONResponse({"ods": ods.upper(), "received": entries})

    return router


def inbox_organisations(base: Path, target: Path, host: str, http_port: int) -> tuple[Path, list[str]]:
    """Write the organisations configuration ``base`` with each organisation's endpoint set to its inbox;
    returns the file written and the ODS codes."""
    raw = yaml.safe_load(base.read_text()) or {}
    host = _client_host(host)
    codes = []
    for org in raw.get("organisations", []):
        org["endpoint"] = f"http://{host}:{http_port}/sandbox/inbox/{org['ods']}/fhir"
        codes.append(str(org["ods"]).upper())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("# Generated by `carethread sandbox` from " + base.name + ": every endpoint is the sandbox's "
                      "inbox.\n" + yaml.safe_dump(raw, sort_keys=False))
    return target, codes


# -- state: seeded, and the clock's time at the last stop --------------------------------------------------


def state_path(db: Path) -> Path:
    return db.with_name(db.name + ".sandbox.json")


def read_state(db: Path) -> dict[str, Any] | None:
    try:
        return json.loads(state_path(db).read_text())
    except (OSError, ValueError):
        return None


def write_state(db: Path, clock_now: datetime) -> None:
    state_path(db).write_text(json.dumps({"seeded": True, "clock": clock_now.isoformat()}) + "\n")


def reset(db: Path) -> list[Path]:
    """Delete the sandbox database (with its WAL files), its state file and the generated organisations
    file; returns what was deleted."""
    gone = []
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), state_path(db),
                 db.parent / "sandbox-organisations.yaml"):
        if path.exists():
            path.unlink()
            gone.append(path)
    return gone
