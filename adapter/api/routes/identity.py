"""Identity over the FHIR API: ``Patient/$match`` and the identity-review decision.

``POST /fhir/Patient/$match`` (FHIR R4 semantics): a ``Parameters`` body with ``resource`` (a Patient),
optional ``onlyCertainMatches`` and ``count``; the answer is a searchset Bundle of master Patients, best
first, each with ``search.score`` (the match probability) and the ``match-grade`` extension (certain,
probable, possible, certainly-not).  Nothing is stored.

``PUT /fhir/Task/{id}`` of an identity-review Task whose ``status`` is ``completed`` and whose ``output``
holds ``decision`` = ``link`` | ``not-a-match`` (``CodeSystem/task-input-type``) applies the decision in the
same transaction as the Task is stored: ``link`` merges the record's identity into the candidate's
(history kept), ``not-a-match`` leaves both apart and is not asked again.  Any other Task write is an
ordinary update.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from adapter.api.outcomes import ApiError, FhirJSONResponse, issue, outcome_resource
from adapter.api.routes.fhir import check_id, fhir_base
from adapter.api.routes.write import _handle
from adapter.identity import REVIEW_CODE, TASK_INPUT_CS, TxIndex, is_master
from adapter.pipeline import Pipeline
from adapter.reconcile.engine import decide
from adapter.reconcile.standardise import from_patient

__all__ = ["identity_router", "MATCH_GRADE_URL"]

MATCH_GRADE_URL = "http://hl7.org/fhir/StructureDefinition/match-grade"
_DECISIONS = ("link", "not-a-match")


def _parameters(body: bytes) -> tuple[dict[str, Any], bool, int]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "structure", "The body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "structure", "The body is not a FHIR resource")
    if data.get("resourceType") == "Patient":
        return data, False, 10
    if data.get("resourceType") != "Parameters":
        raise ApiError(400, "invalid", "$match takes a Parameters resource", "resourceType")
    resource, certain, count = None, False, 10
    for p in data.get("parameter", []) if isinstance(data.get("parameter"), list) else []:
        name = p.get("name") if isinstance(p, dict) else None
        if name == "resource":
            resource = p.get("resource")
        elif name == "onlyCertainMatches":
            certain = p.get("valueBoolean") is True
        elif name == "count" and isinstance(p.get("valueInteger"), int) and p["valueInteger"] > 0:
            count = min(p["valueInteger"], 100)
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        raise ApiError(400, "required", "$match needs the parameter 'resource' holding a Patient",
                       "Parameters.parameter")
    return resource, certain, count


def identity_router(pipeline: Pipeline) -> APIRouter:
    router = APIRouter(tags=["fhir"])

    def match(patient: dict[str, Any], only_certain: bool, count: int) -> list[tuple[dict[str, Any], float, str]]:
        rec = from_patient({**patient, "id": "$match"}, source="api")
        with pipeline.store.transaction() as tx:
            decision = decide(rec, TxIndex(tx), pipeline.identity.model, as_of=pipeline.identity.today())
            out = []
            for c in decision.candidates:
                if only_certain and c.grade != "certain":
                    continue
                master = tx.read("Patient", c.identity_id)
                if master is not None and is_master(master.resource):
                    out.append((master.resource, c.probability, c.grade))
            return out[:count]

    @router.post("/fhir/Patient/$match", summary="Patient $match: master Patients that may be this person, scored")
    async def patient_match(request: Request) -> Response:
        patient, only_certain, count = _parameters(await request.body())
        found = await run_in_threadpool(match, patient, only_certain, count)
        base = fhir_base(request)
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(found), "entry": [
            {"fullUrl": f"{base}/Patient/{r['id']}", "resource": r,
             "search": {"mode": "match", "score": round(p, 6),
                        "extension": [{"url": MATCH_GRADE_URL, "valueCode": grade}]}}
            for r, p, grade in found]}
        return FhirJSONResponse(bundle)

    @router.put("/fhir/Task/{task_id}", summary="update a Task; an identity-review decision is applied with it")
    async def put_task(task_id: str, request: Request) -> Response:
        check_id(task_id)
        body = await request.body()
        try:
            task = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            task = None
        if not _is_review_decision(task):
            return await _handle(request, "Task", task_id)
        assert isinstance(task, dict)
        if task.get("id") != task_id:
            raise ApiError(400, "invalid", "id in the body does not match the URL", "Task.id")
        decision = _decision_of(task)
        if decision not in _DECISIONS:
            return FhirJSONResponse(outcome_resource(issue(
                "required", "A completed identity review needs output 'decision' = link or not-a-match",
                "Task.output")), status_code=422)
        meta = {k: v for k, v in (task.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
        task["meta"] = meta
        issues = await run_in_threadpool(pipeline.resource_issues, task)
        if any(i["severity"] in ("error", "fatal") for i in issues):
            return FhirJSONResponse(outcome_resource(*issues), status_code=422)
        stored = await run_in_threadpool(pipeline.review_decision, body, task, decision)
        if stored is None:
            raise ApiError(404, "not-found", "No identity review Task with this id")
        return FhirJSONResponse(stored.resource, headers={"ETag": f'W/"{stored.version_id}"'})

    return router


def _is_review_decision(task: Any) -> bool:
    if not isinstance(task, dict) or task.get("resourceType") != "Task" or task.get("status") != "completed":
        return False
    codes = [(c.get("system"), c.get("code")) for c in (task.get("code") or {}).get("coding", []) if isinstance(c, dict)]
    return (REVIEW_CODE["system"], REVIEW_CODE["code"]) in codes


def _decision_of(task: dict[str, Any]) -> str | None:
    for out in task.get("output", []) if isinstance(task.get("output"), list) else []:
        codings = (out.get("type") or {}).get("coding", []) if isinstance(out, dict) else []
        if any(c.get("system") == TASK_INPUT_CS and c.get("code") == "decision" for c in codings):
            return out.get("valueCode")
    return None
