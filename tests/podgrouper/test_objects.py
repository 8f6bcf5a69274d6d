"""kai.podgrouper.objects: a pod as an unstructured object reads the same whether the
informer kept it compact (a pod on a node, kai.api.k8s.BoundPod) or in full."""
from __future__ import annotations

import msgspec

from kai.api.k8s import BoundPod, Pod, decode_pod
from kai.podgrouper.objects import pod_obj
from kai.podgrouper.offline import group_pods
from kai.sim.synthetic import api_pod


def _bare(node: str) -> bytes:
    doc = api_pod("solo", "ns", "solo", 1, node=node, seq=3)
    del doc["metadata"]["ownerReferences"]
    del doc["metadata"]["annotations"]["pod-group-name"]
    doc["spec"]["priorityClassName"] = "inference"
    return msgspec.json.encode(doc)


def test_a_compact_pod_reads_as_lists_like_the_api_object():
    raw = _bare("node-1")
    bound, full = decode_pod(raw), msgspec.json.decode(raw, type=Pod)
    assert type(bound) is BoundPod
    got, want = pod_obj(bound).raw, pod_obj(full).raw
    assert isinstance(got["spec"]["containers"], list) and isinstance(got["spec"]["tolerations"], list)
    assert got["metadata"] == {k: v for k, v in want["metadata"].items() if k != "finalizers"}
    assert got["spec"]["containers"][0]["resources"] == want["spec"]["containers"][0]["resources"]
    assert got["spec"]["priorityClassName"] == "inference"


def test_a_running_bare_pod_gets_the_podgroup_its_full_self_gets():
    raw = _bare("node-1")
    out = {k: group_pods([decode(raw)], {}) for k, decode in (("compact", decode_pod),
                                                              ("full", lambda r: msgspec.json.decode(r, type=Pod)))}
    assert not out["full"].errors and out["full"].podgroups
    assert out["compact"].podgroups == out["full"].podgroups
    assert [p.metadata.annotations for p in out["compact"].pods] == [p.metadata.annotations for p in out["full"].pods]
