"""kai.api.k8s: the compact pods the informers keep for pods on nodes (``decode_pod``) hold
what the full model holds, minus the fields nothing reads once a pod runs, and share what
pods have in common."""
from __future__ import annotations

import copy

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kai.api.k8s import BOUND_POD_DROPS, EMPTY_MAP, BoundPod, Pod, decode_pod
from kai.sim.synthetic import api_pod

_DROPPED_PATHS = {
    ("status", "conditions"), ("status", "startTime"), ("metadata", "finalizers"),
}


def _without_dropped(doc: dict) -> dict:
    """A full pod's builtins minus what BoundPod drops (conditions, start time, finalizers,
    images, env values, mount paths)."""
    doc = copy.deepcopy(doc)
    for a, b in _DROPPED_PATHS:
        doc.get(a, {}).pop(b, None)
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        for c in doc.get("spec", {}).get(kind, []):
            c.pop("image", None)
            for e in c.get("env", []):
                e.pop("value", None)
            for m in c.get("volumeMounts", []):
                m.pop("mountPath", None)
    return doc


def _doc(obj) -> dict:
    """The object as the JSON document it encodes to (tuples and lists alike)."""
    return msgspec.json.decode(msgspec.json.encode(obj))


def _raw(**kw) -> bytes:
    base = dict(name="run-000001-3", ns="running", group="run-000001", gpus=1, node="node-00001", seq=11)
    return msgspec.json.encode(api_pod(**{**base, **kw}))


def test_a_pod_on_a_node_decodes_compact_and_holds_every_kept_field():
    raw = _raw()
    bound = decode_pod(raw)
    full = msgspec.json.decode(raw, type=Pod)
    assert type(bound) is BoundPod
    assert _doc(bound) == _without_dropped(_doc(full))
    assert not hasattr(bound.status, "conditions") and full.status.conditions
    # what scheduling reads, at the same paths
    assert bound.spec.containers[0].resources.requests == {"cpu": "500m", "memory": "2Gi", "nvidia.com/gpu": "1"}
    assert [t.key for t in bound.spec.tolerations] == ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
    assert bound.spec.volumes[0].projected.sources[1].config_map.name == "kube-root-ca.crt"
    assert bound.metadata.owner_references[0].kind == "Job"


def test_equal_json_of_different_fields_is_not_shared():
    """A default toleration and a default owner reference both encode as ``{}``."""
    doc = {"metadata": {"name": "x", "ownerReferences": [{}]}, "spec": {"nodeName": "n", "tolerations": [{}]}}
    pod = decode_pod(msgspec.json.encode(doc))
    assert type(pod.metadata.owner_references[0]).__name__ == "BoundOwnerReference"
    assert type(pod.spec.tolerations[0]).__name__ == "BoundToleration"


def test_a_pending_pod_keeps_the_full_model():
    raw = _raw(node="")
    pod = decode_pod(raw)
    assert type(pod) is Pod
    assert pod == msgspec.json.decode(raw, type=Pod)


def test_drops_name_fields_that_exist():
    from kai.api import k8s
    for owner, field in BOUND_POD_DROPS:
        assert field in {f.name for f in msgspec.structs.fields(getattr(k8s, owner))}, (owner, field)


def test_pods_share_equal_parts_and_shared_maps_are_read_only():
    a, b = decode_pod(_raw(name="run-000001-3", seq=11)), decode_pod(_raw(name="run-000001-4", seq=12))
    assert a.metadata.labels is b.metadata.labels                     # the job's labels
    assert a.metadata.owner_references is b.metadata.owner_references
    assert a.spec.tolerations is b.spec.tolerations
    assert a.spec.containers[0].resources is b.spec.containers[0].resources
    assert a.spec.volumes[0].projected is b.spec.volumes[0].projected
    assert a.spec.node_name is b.spec.node_name
    assert a.metadata.name != b.metadata.name and a.metadata.uid != b.metadata.uid
    # the service-account volume is the pod's own; its mount shares the name string
    assert a.spec.containers[0].volume_mounts[0].name is a.spec.volumes[0].name
    with pytest.raises(TypeError):
        a.metadata.labels["x"] = "y"
    with pytest.raises(TypeError):
        a.metadata.annotations.update({"x": "y"})
    assert decode_pod(msgspec.json.encode({"metadata": {"name": "x"}, "spec": {"nodeName": "n"}})).metadata.labels \
        is EMPTY_MAP


def test_a_malformed_kept_field_is_refused_as_the_full_model_refuses_it():
    doc = api_pod("p", "ns", "g", 1, node="n1")
    doc["spec"]["containers"][0]["resources"]["requests"] = ["not", "a", "map"]
    with pytest.raises(msgspec.ValidationError, match=r"\$\.spec\.containers\[0\]\.resources\.requests"):
        decode_pod(msgspec.json.encode(doc))


_names = st.text(alphabet="abcdefgh-", min_size=1, max_size=6)


@st.composite
def _pod_docs(draw) -> dict:
    """API-shaped pods on nodes with the scheduling fields set at random (as the API server
    sends them: an empty list or map is omitted, never sent as ``[]`` / ``{}``)."""
    doc = api_pod(draw(_names), draw(st.sampled_from(["a", "b"])), "g", draw(st.integers(0, 2)),
                  node=draw(st.sampled_from(["n1", "n2"])), seq=draw(st.integers(0, 10_000)))
    spec = doc["spec"]
    if draw(st.booleans()):
        spec["nodeSelector"] = draw(st.dictionaries(_names, _names, min_size=1, max_size=2))
    if draw(st.booleans()):
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": draw(_names)}}, "topologyKey": "kubernetes.io/hostname"}]}}
    if draw(st.booleans()):
        spec["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": draw(st.integers(1, 9000))}]
    if draw(st.booleans()):
        spec["initContainers"] = [{"name": "init", "image": "x", "restartPolicy": draw(st.sampled_from(["Always", "Never"])),
                                   "resources": {"requests": {"cpu": draw(st.sampled_from(["1", "250m"]))}}}]
    if draw(st.booleans()):
        spec["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": draw(_names)}})
    if draw(st.booleans()):
        spec["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                                              "labelSelector": {"matchLabels": {"job-name": "g"}}}]
    if draw(st.booleans()):
        doc["metadata"]["annotations"]["gpu-fraction"] = draw(st.sampled_from(["0.5", "0.25"]))
    if draw(st.booleans()):
        doc["metadata"]["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    doc["status"]["phase"] = draw(st.sampled_from(["Running", "Pending", "Succeeded", "Failed"]))
    return doc


@settings(max_examples=60, deadline=None)
@given(_pod_docs())
def test_property_compact_pods_hold_the_full_models_kept_fields(doc):
    raw = msgspec.json.encode(doc)
    bound = decode_pod(raw)
    assert type(bound) is BoundPod
    assert _doc(bound) == _without_dropped(_doc(msgspec.json.decode(raw, type=Pod)))
