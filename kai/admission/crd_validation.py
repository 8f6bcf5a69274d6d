"""Validating webhooks for KAI's Queue (scheduling.run.ai/v2) and PodGroup
(scheduling.run.ai/v2alpha2), with KAI's rules and messages, on KAI's paths.

``/validate-scheduling-run-ai-v2-queue`` (CREATE, UPDATE)
  A Queue needs ``spec.resources`` (KAI's queue webhook: "resources must be specified",
  also returned as a warning). Without it every resource's limit would be 0 and the queue
  could never run anything.
``/validate-scheduling-run-ai-v2alpha2-podgroup`` (CREATE, UPDATE)
  ``spec.subGroups`` must form a forest (KAI's PodGroup webhook): names unique ("duplicate
  subgroup name A"), every ``parent`` an existing SubGroup ("parent X of B was not found"), no
  cycle ("cycle detected in subgroups"); the rule itself is
  :func:`kai.api.podgroup_info.subgroup_tree_error`, which the scheduler's cache applies too.

Nothing else is checked: KAI's webhooks check nothing else (quota values, parent queues and
minMember are the CRD schema's and the scheduler's business), so a Queue or PodGroup KAI admits
is never refused. A rejection message is KAI's, prefixed with the field it is about
(``spec.resources: resources must be specified``); KAI's warning is returned unchanged.
Deletes are always allowed. Called by ``kai.admission.webhook`` (the HTTPS server and
``review``), which routes these paths here.
"""
from __future__ import annotations

from typing import Any, Callable

import structlog

from kai.api.podgroup_info import subgroup_tree_error

log = structlog.get_logger("kai.admission")

QUEUE_PATH = "/validate-scheduling-run-ai-v2-queue"
PODGROUP_PATH = "/validate-scheduling-run-ai-v2alpha2-podgroup"
MISSING_RESOURCES = "resources must be specified"     # KAI's message (and warning)
RESOURCES, SUBGROUPS = "spec.resources", "spec.subGroups"


def validate_queue(queue: dict) -> tuple[str, list[str]]:
    """(error or "", warnings) for a Queue object."""
    spec = queue.get("spec")
    if not isinstance(spec, dict) or spec.get("resources") is None:
        return f"{RESOURCES}: {MISSING_RESOURCES}", [MISSING_RESOURCES]
    return "", []


def validate_subgroups(subgroups: Any) -> str:
    """KAI's validateSubGroups on the raw ``spec.subGroups``: "" when they form a forest, else
    the first problem (:func:`kai.api.podgroup_info.subgroup_tree_error`)."""
    if subgroups is None:
        return ""
    if not isinstance(subgroups, list):
        return f"{SUBGROUPS} must be a list"
    pairs: list[tuple[str, str | None]] = []
    for i, sg in enumerate(subgroups):
        if not isinstance(sg, dict) or not isinstance(sg.get("name"), str):
            return f"{SUBGROUPS}[{i}].name: a subgroup needs a name"
        parent = sg.get("parent")
        pairs.append((sg["name"], parent if isinstance(parent, str) else None))
    err = subgroup_tree_error(pairs)
    return f"{SUBGROUPS}: {err}" if err else ""


def validate_podgroup(pg: dict) -> tuple[str, list[str]]:
    spec = pg.get("spec")
    return validate_subgroups(spec.get("subGroups") if isinstance(spec, dict) else None), []


VALIDATORS: dict[str, tuple[str, Callable[[dict], tuple[str, list[str]]]]] = {
    QUEUE_PATH: ("Queue", validate_queue),
    PODGROUP_PATH: ("PodGroup", validate_podgroup),
}


def review_crd(doc: dict, path: str) -> dict:
    """Answer an AdmissionReview for a Queue or PodGroup on ``path``."""
    kind, validate = VALIDATORS[path]
    req = doc.get("request") or {}
    resp: dict[str, Any] = {"uid": req.get("uid", ""), "allowed": True}
    out = {"apiVersion": doc.get("apiVersion") or "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}
    if req.get("operation") not in ("CREATE", "UPDATE"):
        return out
    obj = req.get("object")
    got = (req.get("kind") or {}).get("kind", kind)
    if got != kind or not isinstance(obj, dict):
        resp["allowed"] = False
        resp["status"] = {"code": 400, "reason": "BadRequest", "message": f"expected a {kind} but got a {got}"}
        return out
    error, warnings = validate(obj)
    if warnings:
        resp["warnings"] = warnings
    if error:
        meta = obj.get("metadata") or {}
        name = "/".join(x for x in (meta.get("namespace") or req.get("namespace") or "", meta.get("name") or "") if x)
        resp["allowed"] = False
        resp["status"] = {"code": 403, "reason": "Forbidden", "message": error}
        log.info(f"{kind.lower()} rejected", object=name, reason=error)
    return out
