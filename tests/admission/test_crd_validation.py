"""Queue and PodGroup validation (kai.admission.crd_validation): KAI's rules and messages, the
AdmissionReview answers, the HTTPS routes, and a real kube-apiserver calling the webhook."""
from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import pytest
import yaml

from kai.admission.crd_validation import (MISSING_RESOURCES, PODGROUP_PATH, QUEUE_PATH, review_crd,
                                          validate_queue, validate_subgroups)
from kai.admission.webhook import AdmissionConfig, WebhookServer, review

CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "kai-scheduler" / "crds"
RES = {"gpu": {"quota": -1, "limit": -1, "overQuotaWeight": 1}}


def sg(name, parent=None):
    out = {"name": name, "minMember": 1}
    if parent is not None:
        out["parent"] = parent
    return out


# KAI's podgroup_webhook_test.go table
@pytest.mark.parametrize("subgroups,error", [
    ([sg("A"), sg("B", "A"), sg("C", "B")], ""),
    ([sg("A"), sg("B"), sg("C", "A"), sg("D", "B")], ""),
    ([sg("A"), sg("B", "X")], "parent X of B was not found"),
    ([], ""),
    (None, ""),
    ([sg("A"), sg("A")], "duplicate subgroup name A"),
    ([sg("A"), sg("B", "A"), sg("C", "B"), sg("A", "C")], "duplicate subgroup name A"),
    ([sg("A", "A")], "cycle detected in subgroups"),
    ([sg("A", "C"), sg("B", "A"), sg("C", "B")], "cycle detected in subgroups"),
    ([sg("A", "B"), sg("B", "A"), sg("C", "D"), sg("D", "C")], "cycle detected in subgroups"),
    ([{"minMember": 1}], "spec.subGroups[0].name: a subgroup needs a name"),
    ("x", "spec.subGroups must be a list"),
])
def test_subgroups(subgroups, error):
    # KAI's message, prefixed with the field (the shape errors name their element)
    assert validate_subgroups(subgroups) == (error if not error or error.startswith("spec.") else f"spec.subGroups: {error}")


@pytest.mark.parametrize("queue,error", [
    ({"spec": {"resources": RES}}, ""),
    ({"spec": {"resources": {}}}, ""),
    ({"spec": {"parentQueue": "p"}}, MISSING_RESOURCES),
    ({"spec": {}}, MISSING_RESOURCES),
    ({}, MISSING_RESOURCES),
])
def test_queue(queue, error):
    got, warnings = validate_queue(queue)
    assert got == (f"spec.resources: {error}" if error else "")
    assert warnings == ([MISSING_RESOURCES] if error else [])


def admission(kind, obj, operation="CREATE", api_version="admission.k8s.io/v1"):
    return {"apiVersion": api_version, "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "scheduling.run.ai", "kind": kind}, "operation": operation,
                        "object": obj}}


def test_review_answers():
    out = review_crd(admission("Queue", {"metadata": {"name": "q"}, "spec": {}}), QUEUE_PATH)
    assert out["kind"] == "AdmissionReview" and out["response"]["uid"] == "u-1"
    assert out["response"]["allowed"] is False
    assert out["response"]["status"] == {"code": 403, "reason": "Forbidden",
                                         "message": "spec.resources: resources must be specified"}
    assert out["response"]["warnings"] == [MISSING_RESOURCES]
    ok = review_crd(admission("Queue", {"spec": {"resources": RES}}, "UPDATE"), QUEUE_PATH)
    assert ok["response"] == {"uid": "u-1", "allowed": True}
    assert review_crd(admission("Queue", {"spec": {}}, "DELETE"), QUEUE_PATH)["response"]["allowed"] is True
    pg = {"metadata": {"name": "g", "namespace": "ns"}, "spec": {"subGroups": [sg("a", "b")]}}
    out = review(admission("PodGroup", pg), PODGROUP_PATH, AdmissionConfig())      # routed through webhook.review
    assert out["response"]["status"]["message"] == "spec.subGroups: parent b of a was not found"
    wrong = review_crd(admission("Pod", {"spec": {}}), PODGROUP_PATH)
    assert wrong["response"]["allowed"] is False and "expected a PodGroup" in wrong["response"]["status"]["message"]
    v1beta1 = review_crd(admission("Queue", {"spec": {}}, api_version="admission.k8s.io/v1beta1"), QUEUE_PATH)
    assert v1beta1["apiVersion"] == "admission.k8s.io/v1beta1"


def test_https_routes():
    from test_webhook import post_review
    server = WebhookServer(AdmissionConfig(), host="127.0.0.1", port=0).start()
    try:
        status, out = post_review(server.port, QUEUE_PATH, admission("Queue", {"spec": {}}), server.ca_pem)
        assert status == 200 and out["response"]["allowed"] is False
        pg = {"spec": {"subGroups": [sg("a"), sg("b", "a")]}}
        status, out = post_review(server.port, PODGROUP_PATH, admission("PodGroup", pg), server.ca_pem)
        assert status == 200 and out["response"]["allowed"] is True
    finally:
        server.stop()


# ------------------------------------------------------------------------------- real kube-apiserver

def _install_crds(cp):
    for f in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        status, body = cp.api_request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        assert status in (201, 409), body
        name = crd["metadata"]["name"]
        for _ in range(300):
            _, c = cp.api_request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            if any(x["type"] == "Established" and x["status"] == "True"
                   for x in (c.get("status") or {}).get("conditions") or []):
                break
            time.sleep(0.1)


def _configuration(name, port, ca_pem, namespace, queue_label):
    ca = base64.b64encode(ca_pem).decode()
    common = {"admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 10}
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {**common, "name": "queue-validation.kai.scheduler",
                 # Queues are cluster-wide: only this test's queues, so parallel tests are not affected
                 "objectSelector": {"matchLabels": {"kai-test": queue_label}},
                 "clientConfig": {"url": f"https://127.0.0.1:{port}{QUEUE_PATH}", "caBundle": ca},
                 "rules": [{"apiGroups": ["scheduling.run.ai"], "apiVersions": ["v2"],
                            "operations": ["CREATE", "UPDATE"], "resources": ["queues"], "scope": "Cluster"}]},
                {**common, "name": "podgroup-validation.kai.scheduler",
                 "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                 "clientConfig": {"url": f"https://127.0.0.1:{port}{PODGROUP_PATH}", "caBundle": ca},
                 "rules": [{"apiGroups": ["scheduling.run.ai"], "apiVersions": ["v2alpha2"],
                            "operations": ["CREATE", "UPDATE"], "resources": ["podgroups"],
                            "scope": "Namespaced"}]}]}


def test_queue_and_podgroup_webhooks_on_a_real_apiserver(control_plane, kube_namespace):
    cp, ns = control_plane, kube_namespace
    _install_crds(cp)
    server = WebhookServer(AdmissionConfig(), host="127.0.0.1", port=0).start()
    tag = uuid.uuid4().hex[:8]
    name = f"kai-crd-validation-{tag}"
    queues = "/apis/scheduling.run.ai/v2/queues"
    pgs = f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups"
    created_queues = []
    try:
        status, body = cp.api_request("POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
                                      _configuration(name, server.port, server.ca_pem, ns, tag))
        assert status == 201, body

        def queue(qname, spec):
            return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue",
                    "metadata": {"name": qname, "labels": {"kai-test": tag}}, "spec": spec}

        # the apiserver picks up a new configuration asynchronously: wait until it rejects
        deadline = time.time() + 30
        while True:
            qname = f"q-nores-{uuid.uuid4().hex[:6]}"
            status, body = cp.api_request("POST", queues, queue(qname, {"parentQueue": "x"}))
            if status == 403 or time.time() > deadline:
                break
            created_queues.append(qname)
            time.sleep(0.3)
        assert status == 403, body
        assert 'admission webhook "queue-validation.kai.scheduler" denied the request' in body["message"]
        assert MISSING_RESOURCES in body["message"]

        good = f"q-ok-{tag}"
        status, body = cp.api_request("POST", queues, queue(good, {"resources": RES}))
        assert status == 201, body
        created_queues.append(good)
        # an update dropping the resources is refused too
        body["spec"].pop("resources")
        status, upd = cp.api_request("PUT", f"{queues}/{good}", body)
        assert status == 403 and MISSING_RESOURCES in upd["message"], upd

        def podgroup(pgname, subgroups):
            return {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": {"name": pgname},
                    "spec": {"minMember": 1, "queue": good, "subGroups": subgroups}}

        status, body = cp.api_request("POST", pgs, podgroup("cycle", [sg("a", "b"), sg("b", "a")]))
        assert status == 403 and "cycle detected in subgroups" in body["message"], body
        status, body = cp.api_request("POST", pgs, podgroup("orphan", [sg("a"), sg("b", "x")]))
        assert status == 403 and "parent x of b was not found" in body["message"], body
        # KAI's pod-grouper leaves minMember out of a parent SubGroup (Grove): the CRD accepts it
        tree = [{"name": "root"}, sg("leaf", "root")]
        status, body = cp.api_request("POST", pgs, podgroup("tree", tree))
        assert status == 201, body
    finally:
        cp.api_request("DELETE", f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{name}")
        for q in created_queues:
            cp.api_request("DELETE", f"{queues}/{q}")
        server.stop()
