"""The pod admission webhook (kai.admission.webhook): patches, validation, HTTPS, a real API server."""
from __future__ import annotations

import base64
import copy
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid

import pytest

from kai.admission.webhook import (MUTATE_PATH, VALIDATE_PATH, AdmissionConfig, WebhookServer, mutate_pod,
                                   review, validate_pod, volume_name)
from kai.cache.reservation import CONFIGMAP_ANNOTATION

CFG = AdmissionConfig()
ENV_KEYS = ["NVIDIA_VISIBLE_DEVICES", "RUNAI_NUM_OF_GPUS", "GPU_PORTION"]
PREFIX_RE = re.compile(r"^[a-z0-9.-]+-[a-z0-9]{7}-shared-gpu$")


def pod(name="p", annotations=None, containers=None, init_containers=None, scheduler="kai-scheduler",
        owner=None, **spec):
    meta = {"name": name, "namespace": "ns"}
    if annotations is not None:
        meta["annotations"] = dict(annotations)
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": owner, "uid": "u"}]
    s = {"schedulerName": scheduler,
         "containers": containers if containers is not None else [{"name": "main", "image": "busybox"}]}
    if init_containers:
        s["initContainers"] = init_containers
    s.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": s}


def gpu_container(name="main", n="1", key="nvidia.com/gpu"):
    return {"name": name, "image": "busybox", "resources": {"limits": {key: n}, "requests": {key: n}}}


def apply_patch(doc, ops):
    """The subset of RFC 6902 the webhook emits: ``add`` (which replaces an existing member)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] == "add", op
        keys = [k.replace("~1", "/").replace("~0", "~") for k in op["path"].split("/")[1:]]
        target = doc
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        last = keys[-1]
        if isinstance(target, list):
            target.insert(len(target) if last == "-" else int(last), op["value"])
        else:
            target[last] = op["value"]
    return doc


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


# ------------------------------------------------------------------------------- mutation

def test_fraction_pod_gets_configmap_env_volume_annotation_and_runtime_class():
    p = pod(annotations={"gpu-fraction": "0.5"})
    new, ops = mutate_pod(p, CFG)
    assert apply_patch(p, ops) == new
    prefix = new["metadata"]["annotations"][CONFIGMAP_ANNOTATION]
    assert PREFIX_RE.match(prefix) and prefix.startswith("p-")
    cm = f"{prefix}-0"
    env = env_of(new["spec"]["containers"][0])
    assert sorted(env) == sorted(ENV_KEYS)
    for k in ENV_KEYS:
        assert env[k]["valueFrom"] == {"configMapKeyRef": {"name": cm, "key": k, "optional": True}}
    assert new["spec"]["volumes"] == [{"name": f"{cm}-vol", "configMap": {"name": cm, "optional": True}}]
    assert new["spec"]["runtimeClassName"] == "nvidia"
    assert p["metadata"]["annotations"] == {"gpu-fraction": "0.5"}      # input untouched


def test_existing_configmap_annotation_is_kept():
    p = pod(annotations={"gpu-memory": "2000", CONFIGMAP_ANNOTATION: "mine-abcdefg-shared-gpu"})
    new, ops = mutate_pod(p, CFG)
    assert new["metadata"]["annotations"][CONFIGMAP_ANNOTATION] == "mine-abcdefg-shared-gpu"
    assert not any(op["path"] == "/metadata/annotations" for op in ops)
    assert env_of(new["spec"]["containers"][0])["GPU_PORTION"]["valueFrom"]["configMapKeyRef"]["name"] == \
        "mine-abcdefg-shared-gpu-0"


def test_prefix_uses_owner_name_and_fits_volume_name():
    owner = "a-very-long-job-name-" + "x" * 80
    new, _ = mutate_pod(pod(annotations={"gpu-fraction": "0.25"}, owner=owner), CFG)
    prefix = new["metadata"]["annotations"][CONFIGMAP_ANNOTATION]
    assert prefix.startswith("a-very-long-job-name-")
    vol = new["spec"]["volumes"][0]["name"]
    assert len(vol) <= 63 and len(f"{prefix}-0-evar-vol") <= 63


def test_generate_name_pod_gets_a_valid_prefix():
    p = pod(annotations={"gpu-fraction": "0.5"})
    del p["metadata"]["name"]
    p["metadata"]["generateName"] = "worker-"
    new, _ = mutate_pod(p, CFG)
    assert new["metadata"]["annotations"][CONFIGMAP_ANNOTATION].startswith("worker-")


def test_target_container_by_name_and_init_container():
    containers = [{"name": "sidecar", "image": "x"}, {"name": "trainer", "image": "x",
                                                       "env": [{"name": "A", "value": "1"},
                                                               {"name": "GPU_PORTION", "value": "stale"}]}]
    p = pod(annotations={"gpu-fraction": "0.5", "gpu-fraction-container-name": "trainer",
                         CONFIGMAP_ANNOTATION: "pre-abcdefg-shared-gpu"}, containers=containers)
    new, ops = mutate_pod(p, CFG)
    assert apply_patch(p, ops) == new
    assert "env" not in new["spec"]["containers"][0]
    env = env_of(new["spec"]["containers"][1])
    assert env["A"] == {"name": "A", "value": "1"}
    assert env["GPU_PORTION"]["valueFrom"]["configMapKeyRef"]["name"] == "pre-abcdefg-shared-gpu-1"
    assert len(new["spec"]["containers"][1]["env"]) == 4

    p = pod(annotations={"gpu-fraction": "0.5", "gpu-fraction-container-name": "init",
                         CONFIGMAP_ANNOTATION: "pre-abcdefg-shared-gpu"},
            init_containers=[{"name": "init", "image": "x"}])
    new, ops = mutate_pod(p, CFG)
    assert apply_patch(p, ops) == new
    assert env_of(new["spec"]["initContainers"][0])["NVIDIA_VISIBLE_DEVICES"]["valueFrom"]["configMapKeyRef"][
        "name"] == "pre-abcdefg-shared-gpu-i0"
    assert new["spec"]["volumes"][0]["name"] == "pre-abcdefg-shared-gpu-i0-vol"


def test_mutation_is_idempotent():
    p = pod(annotations={"gpu-fraction": "0.5"}, volumes=[{"name": "data", "emptyDir": {}}])
    once, _ = mutate_pod(p, CFG)
    twice, ops = mutate_pod(once, CFG)
    assert twice == once and ops == []
    assert [v["name"] for v in once["spec"]["volumes"]][0] == "data"


def test_whole_gpu_pod_gets_runtime_class_only():
    p = pod(containers=[gpu_container()])
    new, ops = mutate_pod(p, CFG)
    assert ops == [{"op": "add", "path": "/spec/runtimeClassName", "value": "nvidia"}]
    assert "annotations" not in new["metadata"]
    mig = pod(containers=[gpu_container(key="nvidia.com/mig-1g.5gb")])
    assert mutate_pod(mig, CFG)[0]["spec"]["runtimeClassName"] == "nvidia"


def test_runtime_class_not_overridden_not_on_cpu_pods_configurable():
    assert mutate_pod(pod(containers=[gpu_container()], runtimeClassName="custom"), CFG)[1] == []
    assert mutate_pod(pod(), CFG)[1] == []
    cfg = AdmissionConfig(gpu_pod_runtime_class_name="")
    assert mutate_pod(pod(containers=[gpu_container()]), cfg)[1] == []
    cfg = AdmissionConfig(gpu_pod_runtime_class_name="nvidia-cdi")
    assert mutate_pod(pod(containers=[gpu_container()]), cfg)[0]["spec"]["runtimeClassName"] == "nvidia-cdi"


def test_reservation_pods_keep_their_runtime_class():
    p = pod(containers=[gpu_container()])
    p["metadata"]["labels"] = {"app": "kai-resource-reservation"}
    assert mutate_pod(p, CFG)[1] == []


def test_other_schedulers_pods_are_untouched():
    p = pod(annotations={"gpu-fraction": "0.5"}, containers=[{"name": "c"}], scheduler="default-scheduler")
    assert mutate_pod(p, CFG)[1] == []
    assert validate_pod(pod(annotations={"gpu-fraction": "7"}, scheduler="default-scheduler"), CFG) == ""


def test_nri_plugin_mode_skips_visible_devices():
    new, _ = mutate_pod(pod(annotations={"gpu-fraction": "0.5"}), AdmissionConfig(nri_plugin_enabled=True))
    assert sorted(env_of(new["spec"]["containers"][0])) == ["GPU_PORTION", "RUNAI_NUM_OF_GPUS"]


# ------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("ann,extra,msg", [
    ({"gpu-fraction": "1.5"}, {}, "gpu-fraction annotation value must be a positive number smaller than 1.0"),
    ({"gpu-fraction": "0"}, {}, "gpu-fraction annotation value must be a positive number smaller than 1.0"),
    ({"gpu-fraction": "half"}, {}, "gpu-fraction annotation value must be a positive number smaller than 1.0"),
    ({"gpu-memory": "-5"}, {}, "gpu-memory annotation value must be a positive integer greater than 0"),
    ({"gpu-fraction": "0.5", "gpu-fraction-num-devices": "0"}, {},
     "fraction count annotation value must be a positive integer greater than 0"),
    ({"gpu-fraction-num-devices": "2"}, {},
     "cannot request multiple fractional devices without specifying fraction details (portion or memory)"),
    ({"gpu-fraction": "0.5", "gpu-memory": "1000"}, {}, "cannot request both gpu-fraction and GPU memory request"),
    ({"gpu-fraction": "0.5"}, {"containers": [gpu_container()]},
     "cannot have both GPU fraction request and whole GPU resource request/limit"),
    ({"gpu-fraction": "0.5", "gpu-fraction-container-name": "nope"}, {},
     "gpu-fraction-container-name annotation value nope does not match any container in the pod"),
    ({"mps": "true"}, {}, "annotation mps=true is only valid with gpu-fraction or gpu-memory"),
])
def test_invalid_fraction_requests_are_rejected(ann, extra, msg):
    assert validate_pod(pod(annotations=ann, **extra), CFG) == msg


@pytest.mark.parametrize("ann", [{}, {"gpu-fraction": "0.5"}, {"gpu-memory": "4096"},
                                 {"gpu-fraction": "0.25", "gpu-fraction-num-devices": "2"},
                                 {"gpu-fraction": "0.5", "mps": "true"}])
def test_valid_requests_are_admitted(ann):
    assert validate_pod(pod(annotations=ann), CFG) == ""
    assert validate_pod(pod(containers=[gpu_container()]), CFG) == ""


def test_sharing_disabled_rejects_fraction_pods():
    cfg = AdmissionConfig(gpu_sharing_enabled=False)
    assert validate_pod(pod(annotations={"gpu-fraction": "0.5"}), cfg) == \
        "attempting to create a pod ns/p with gpu sharing request, while GPU sharing is disabled"
    assert validate_pod(pod(containers=[gpu_container()]), cfg) == ""


# ------------------------------------------------------------------------------- AdmissionReview

def admission_review(obj, op="CREATE", ns="ns"):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "1234", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": ns, "operation": op, "object": obj}}


def test_review_mutate_returns_base64_jsonpatch():
    p = pod(annotations={"gpu-fraction": "0.5"})
    out = review(admission_review(p), MUTATE_PATH, CFG)
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    r = out["response"]
    assert r["uid"] == "1234" and r["allowed"] is True and r["patchType"] == "JSONPatch"
    patched = apply_patch(p, json.loads(base64.b64decode(r["patch"])))
    assert patched["spec"]["runtimeClassName"] == "nvidia"
    assert CONFIGMAP_ANNOTATION in patched["metadata"]["annotations"]


def test_review_no_patch_for_plain_pod_and_delete():
    r = review(admission_review(pod()), MUTATE_PATH, CFG)["response"]
    assert r == {"uid": "1234", "allowed": True}
    r = review(admission_review(None, op="DELETE"), VALIDATE_PATH, CFG)["response"]
    assert r["allowed"] is True


def test_review_validate_denies_with_message():
    out = review(admission_review(pod(annotations={"gpu-fraction": "2"})), VALIDATE_PATH, CFG)
    r = out["response"]
    assert r["allowed"] is False and r["status"]["code"] == 403
    assert r["status"]["message"] == "gpu-fraction annotation value must be a positive number smaller than 1.0"


# ------------------------------------------------------------------------------- HTTPS server

def post_review(port, path, body, ca_pem):
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if resp.status == 200 else raw)
    finally:
        conn.close()


def test_https_server_self_signed():
    server = WebhookServer(CFG, host="127.0.0.1", port=0).start()
    try:
        status, out = post_review(server.port, MUTATE_PATH, admission_review(pod(annotations={"gpu-fraction": ".5"})),
                                  server.ca_pem)
        assert status == 200 and out["response"]["patchType"] == "JSONPatch"
        status, out = post_review(server.port, VALIDATE_PATH, admission_review(pod(annotations={"gpu-memory": "x"})),
                                  server.ca_pem)
        assert status == 200 and out["response"]["allowed"] is False
        status, _ = post_review(server.port, "/nope", {}, server.ca_pem)
        assert status == 404
    finally:
        server.stop()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_with_cert_files(tmp_path):
    """`kai webhook` as a process, serving a certificate given as files."""
    from kai.admission.webhook import generate_self_signed
    cert, key = generate_self_signed(["localhost", "127.0.0.1"])
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "kai", "webhook", "--port", str(port), "--bind-address", "127.0.0.1",
                             "--tls-cert-file", str(tmp_path / "tls.crt"),
                             "--tls-private-key-file", str(tmp_path / "tls.key"),
                             "--gpu-pod-runtime-class-name", "nv2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while True:
            try:
                status, out = post_review(port, MUTATE_PATH, admission_review(pod(containers=[gpu_container()])),
                                          cert)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError(f"webhook did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
                time.sleep(0.2)
        ops = json.loads(base64.b64decode(out["response"]["patch"]))
        assert ops == [{"op": "add", "path": "/spec/runtimeClassName", "value": "nv2"}]
        proc.terminate()                                  # SIGTERM, as the kubelet stops the pod
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# ------------------------------------------------------------------------------- real kube-apiserver

def _webhook_configs(name, port, ca_pem, namespace):
    ca = base64.b64encode(ca_pem).decode()
    common = {"admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
              "timeoutSeconds": 10,
              "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
              "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                         "resources": ["pods"], "scope": "Namespaced"}]}
    mutating = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": name},
                "webhooks": [{**common, "name": "pod-mutator.kai.scheduler", "reinvocationPolicy": "Never",
                              "clientConfig": {"url": f"https://127.0.0.1:{port}{MUTATE_PATH}", "caBundle": ca}}]}
    validating = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                  "metadata": {"name": name},
                  "webhooks": [{**common, "name": "pod-validator.kai.scheduler",
                                "clientConfig": {"url": f"https://127.0.0.1:{port}{VALIDATE_PATH}", "caBundle": ca}}]}
    return mutating, validating


def test_webhook_on_a_real_apiserver(control_plane, kube_namespace):
    cp, ns = control_plane, kube_namespace
    rc = f"kai-test-{uuid.uuid4().hex[:6]}"
    status, body = cp.api_request("POST", "/apis/node.k8s.io/v1/runtimeclasses",
                                  {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                   "metadata": {"name": rc}, "handler": "nvidia"})
    assert status == 201, body
    server = WebhookServer(AdmissionConfig(gpu_pod_runtime_class_name=rc), host="127.0.0.1", port=0).start()
    name = f"kai-admission-test-{uuid.uuid4().hex[:8]}"
    mutating, validating = _webhook_configs(name, server.port, server.ca_pem, ns)
    try:
        for path, obj in (("mutatingwebhookconfigurations", mutating),
                          ("validatingwebhookconfigurations", validating)):
            status, body = cp.api_request("POST", f"/apis/admissionregistration.k8s.io/v1/{path}", obj)
            assert status == 201, body

        good = pod(name="frac", annotations={"gpu-fraction": "0.5"})
        good["metadata"]["namespace"] = ns
        # the apiserver's webhook client picks up new configurations asynchronously
        deadline = time.time() + 30
        while True:
            status, body = cp.api_request("POST", f"/api/v1/namespaces/{ns}/pods", good)
            assert status == 201, body
            if CONFIGMAP_ANNOTATION in (body["metadata"].get("annotations") or {}) or time.time() > deadline:
                break
            cp.api_request("DELETE", f"/api/v1/namespaces/{ns}/pods/frac",
                           {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
            for _ in range(50):
                if cp.api_request("GET", f"/api/v1/namespaces/{ns}/pods/frac")[0] == 404:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
        prefix = body["metadata"]["annotations"][CONFIGMAP_ANNOTATION]
        assert PREFIX_RE.match(prefix), prefix
        assert body["spec"]["runtimeClassName"] == rc
        env = env_of(body["spec"]["containers"][0])
        assert sorted(env) == sorted(ENV_KEYS)
        assert env["GPU_PORTION"]["valueFrom"]["configMapKeyRef"] == {"name": f"{prefix}-0", "key": "GPU_PORTION",
                                                                      "optional": True}
        assert {"name": volume_name(f"{prefix}-0"), "configMap": {"name": f"{prefix}-0", "defaultMode": 420,
                                                                 "optional": True}} in \
            body["spec"]["volumes"]

        bad = pod(name="bad", annotations={"gpu-fraction": "1.5"})
        bad["metadata"]["namespace"] = ns
        status, body = cp.api_request("POST", f"/api/v1/namespaces/{ns}/pods", bad)
        assert status == 403, body["message"]
        assert "gpu-fraction annotation value must be a positive number smaller than 1.0" in body["message"]
        assert 'admission webhook "pod-validator.kai.scheduler" denied the request' in body["message"]

        other = pod(name="other", annotations={"gpu-fraction": "1.5"}, scheduler="default-scheduler")
        other["metadata"]["namespace"] = ns
        status, body = cp.api_request("POST", f"/api/v1/namespaces/{ns}/pods", other)
        assert status == 201, body
        assert "env" not in body["spec"]["containers"][0]
    finally:
        cp.api_request("DELETE", f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}")
        cp.api_request("DELETE", f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{name}")
        cp.api_request("DELETE", f"/apis/node.k8s.io/v1/runtimeclasses/{rc}")
        server.stop()
