"""The live pod-grouper: KAI's PodGroup update rules, and on a real API server the whole path
(owner walk through API discovery, create, update, pod annotation and SubGroup label, LWS
LeaderReady regrouping when the leader is bound, Events for pods that cannot be grouped)."""
from __future__ import annotations

import time
import uuid

from pathlib import Path

import msgspec
import pytest
import yaml

from kai.api.k8s import Pod
from kai.cache.kubeclient import KubeClient
from kai.cache.status import StatusWriter
from kai.podgrouper.controller import ApiReader, PodGrouperController, _differs, merge_for_update
from kai.podgrouper.defaults import GrouperConfig

CFG = GrouperConfig()
CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "kai-scheduler" / "crds"
# The live tests' pods name a scheduler of their own, so that no other kai on the shared
# control plane groups them while the test's controller does.
SCHEDULER = "kai-grouper-test"


def pg(spec=None, labels=None, annotations=None, owners=None):
    return {"metadata": {"name": "g", "namespace": "ns", "labels": labels or {}, "annotations": annotations or {},
                         "ownerReferences": owners or [], "resourceVersion": "7"},
            "spec": spec or {}}


def test_merge_keeps_what_the_grouper_never_overwrites():
    old = pg({"minMember": 1, "queue": "user-q", "markUnschedulable": True, "schedulingBackoff": 1},
             labels={"kai.scheduler/node-pool": "pool-a", "kai.scheduler/queue": "old", "mine": "x"},
             annotations={"a": "1"})
    new = pg({"minMember": 4, "queue": "grouper-q", "subGroups": [{"name": "leader", "minMember": 1}]},
             labels={"kai.scheduler/queue": "new", "from-owner": "y"}, annotations={"b": "2"},
             owners=[{"kind": "Job", "name": "j", "uid": "u", "apiVersion": "batch/v1"}])
    out = merge_for_update(old, new, CFG)
    assert out["spec"] == {"minMember": 4, "queue": "user-q", "markUnschedulable": True, "schedulingBackoff": 1,
                           "subGroups": [{"name": "leader", "minMember": 1}]}
    assert out["metadata"]["labels"] == {"kai.scheduler/node-pool": "pool-a", "kai.scheduler/queue": "old",
                                         "mine": "x", "from-owner": "y"}
    assert out["metadata"]["annotations"] == {"a": "1", "b": "2"}
    assert out["metadata"]["ownerReferences"] == new["metadata"]["ownerReferences"]
    assert out["metadata"]["resourceVersion"] == "7"
    assert _differs(old, out) and not _differs(out, merge_for_update(out, new, CFG))
    # a node-pool label the old PodGroup lacks is not added by an update
    assert "kai.scheduler/node-pool" not in merge_for_update(pg(), pg(labels={"kai.scheduler/node-pool": "p"}),
                                                             CFG)["metadata"]["labels"]


def test_differs_ignores_extra_labels_on_the_existing_podgroup():
    old = pg({"minMember": 2}, labels={"a": "1", "extra": "x"}, annotations={"k": "v", "more": "y"})
    assert not _differs(old, pg({"minMember": 2}, labels={"a": "1"}, annotations={"k": "v"}))
    assert _differs(old, pg({"minMember": 3}, labels={"a": "1"}))
    assert _differs(old, pg({"minMember": 2}, labels={"a": "2"}))


# ------------------------------------------------------------------------------- real kube-apiserver

LWS_CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "leaderworkersets.leaderworkerset.x-k8s.io"},
           "spec": {"group": "leaderworkerset.x-k8s.io", "scope": "Namespaced",
                    "names": {"kind": "LeaderWorkerSet", "plural": "leaderworkersets", "singular": "leaderworkerset",
                              "listKind": "LeaderWorkerSetList"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}}


def _wait(pred, timeout=30.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def client(control_plane):
    c = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    crds = [yaml.safe_load(f.read_text()) for f in sorted(CRD_DIR.glob("*.yaml"))] + [LWS_CRD]
    for crd in crds:
        status, body = control_plane.api_request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                                 crd)
        assert status in (201, 409), body
    for path in ("/apis/leaderworkerset.x-k8s.io/v1", "/apis/scheduling.run.ai/v2alpha2"):
        _wait(lambda: _served(c, path), what=f"{path} served")
    return c


def _served(c, path):
    try:
        return any(r["name"] for r in c.get(path).get("resources") or [])
    except Exception:   # noqa: BLE001 - not served yet
        return False


def _pod(c, ns, name, owner, labels):
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "ownerReferences": [owner]},
            "spec": {"schedulerName": SCHEDULER, "containers": [{"name": "c", "image": "busybox"}]}}
    return msgspec.convert(c.post(f"/api/v1/namespaces/{ns}/pods", body), Pod)


def test_lws_leader_ready_on_a_real_apiserver(client, kube_namespace):
    c, ns = client, kube_namespace
    lws = c.post(f"/apis/leaderworkerset.x-k8s.io/v1/namespaces/{ns}/leaderworkersets", {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": "llm"},
        "spec": {"startupPolicy": "LeaderReady", "leaderWorkerTemplate": {"size": 3}}})
    owner = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": "llm",
             "uid": lws["metadata"]["uid"], "controller": True}
    ctl = PodGrouperController(c, SCHEDULER, config=GrouperConfig())
    leader = _pod(c, ns, "llm-0", owner, {"leaderworkerset.sigs.k8s.io/worker-index": "0",
                                          "leaderworkerset.sigs.k8s.io/group-index": "0"})
    meta, sub = ctl.group(leader)
    name = f"pg-llm-{lws['metadata']['uid']}-group-0"
    assert (meta.name, sub) == (name, "leader")
    got = c.get(f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups/{name}")
    assert got["spec"]["minMember"] == 1 and [s["name"] for s in got["spec"]["subGroups"]] == ["leader"]
    got_pod = c.get(f"/api/v1/namespaces/{ns}/pods/llm-0")
    assert got_pod["metadata"]["annotations"]["pod-group-name"] == name
    assert got_pod["metadata"]["labels"]["kai.scheduler/subgroup-name"] == "leader"
    # a user moves the PodGroup to another queue: the grouper keeps that
    got["spec"]["queue"] = "moved"
    c.put(f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups/{name}", got)
    # the leader is bound: its group now needs all 3 pods, with the workers SubGroup
    bound = msgspec.structs.replace(leader, spec=msgspec.structs.replace(leader.spec, node_name="n1"))
    ctl.group(bound)
    got = c.get(f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups/{name}")
    assert got["spec"]["minMember"] == 3 and got["spec"]["queue"] == "moved"
    assert [(s["name"], s["minMember"]) for s in got["spec"]["subGroups"]] == [("leader", 1), ("workers", 2)]
    assert ctl.created == 1 and ctl.updated == 1
    ctl.group(bound)                                     # nothing changed: no write
    assert ctl.updated == 1


def test_worker_thread_groups_and_reports_errors(client, kube_namespace):
    c, ns = client, kube_namespace
    status = StatusWriter(c, workers=1)
    ctl = PodGrouperController(c, SCHEDULER, config=GrouperConfig(), status=status).start()
    try:
        job = c.post(f"/apis/batch/v1/namespaces/{ns}/jobs", {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never",
                                                            "containers": [{"name": "c", "image": "busybox"}]}}}})
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": job["metadata"]["uid"]}
        p = _pod(c, ns, "j-x", owner, {})
        ctl.observe(p)
        _wait(lambda: (c.get(f"/api/v1/namespaces/{ns}/pods/j-x")["metadata"].get("annotations") or {})
              .get("pod-group-name") == f"pg-j-x-{job['metadata']['uid']}", what="the pod annotated")
        # an owner that does not exist: a Warning Event on the pod, retried with backoff
        ghost = {"apiVersion": "batch/v1", "kind": "Job", "name": "ghost", "uid": str(uuid.uuid4())}
        lost = _pod(c, ns, "lost", ghost, {})
        ctl.observe(lost)

        def event():
            items = c.get(f"/api/v1/namespaces/{ns}/events")["items"]
            return next((e for e in items if e["reason"] == "PodGrouperWarning"
                         and e["involvedObject"]["name"] == "lost"), None)
        ev = _wait(event, what="the PodGrouperWarning event")
        assert "Job" in ev["message"] and "ghost" in ev["message"] and ev["type"] == "Warning"
        assert ctl._failures[lost.metadata.uid] >= 1
        ctl.forget(lost.metadata.uid)
        assert lost.metadata.uid not in ctl._failures
    finally:
        ctl.stop()
        status.stop()


def test_api_reader_discovery_and_cache(client, kube_namespace):
    c, ns = client, kube_namespace
    reader = ApiReader(c, ttl=60)
    assert reader.path("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", ns, "x") == \
        f"/apis/leaderworkerset.x-k8s.io/v1/namespaces/{ns}/leaderworkersets/x"
    assert reader.path("scheduling.k8s.io/v1", "PriorityClass", "", "train") == \
        "/apis/scheduling.k8s.io/v1/priorityclasses/train"
    assert reader.get("scheduling.k8s.io/v1", "PriorityClass", "", "no-such-class") is None
    c.post("/apis/scheduling.k8s.io/v1/priorityclasses", {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                                                          "metadata": {"name": f"pc-{ns}"}, "value": 7})
    assert reader.get("scheduling.k8s.io/v1", "PriorityClass", "", f"pc-{ns}")["value"] == 7
    c.delete(f"/apis/scheduling.k8s.io/v1/priorityclasses/pc-{ns}")
    assert reader.get("scheduling.k8s.io/v1", "PriorityClass", "", f"pc-{ns}")["value"] == 7     # cached
    assert ApiReader(c, ttl=0).get("scheduling.k8s.io/v1", "PriorityClass", "", f"pc-{ns}") is None


def test_a_shard_groups_only_its_partition(client, kube_namespace):
    """A shard's grouper (``accepts`` = its partition) creates PodGroups for pods whose
    PodGroup labels fall in it (the owner's node-pool label wins over the pod's, as in KAI)
    and leaves the others alone, untouched, remembered as foreign."""
    from kai.cache.scope import Scope
    c, ns = client, kube_namespace
    scope = Scope(partition_label_value="pa")
    ctl = PodGrouperController(c, SCHEDULER, config=GrouperConfig(), accepts=scope.in_partition).start()
    try:
        job = c.post(f"/apis/batch/v1/namespaces/{ns}/jobs", {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "owned", "labels": {"kai.scheduler/node-pool": "pb"}},
            "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never",
                                                            "containers": [{"name": "c", "image": "busybox"}]}}}})
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "owned", "uid": job["metadata"]["uid"]}
        mine = _pod(c, ns, "mine", owner, {"kai.scheduler/node-pool": "pa"})
        # the pod says pa, its owner pb: the PodGroup would be pb's
        ctl.observe(mine)
        plain = {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "bare", "labels": {"kai.scheduler/node-pool": "pa"}},
                 "spec": {"schedulerName": SCHEDULER, "containers": [{"name": "c", "image": "busybox"}]}}
        bare = msgspec.convert(c.post(f"/api/v1/namespaces/{ns}/pods", plain), Pod)
        other = dict(plain, metadata={"name": "other", "labels": {"kai.scheduler/node-pool": "pc"}})
        oth = msgspec.convert(c.post(f"/api/v1/namespaces/{ns}/pods", other), Pod)
        ctl.observe(bare)
        ctl.observe(oth)
        _wait(lambda: (c.get(f"/api/v1/namespaces/{ns}/pods/bare")["metadata"].get("annotations") or {})
              .get("pod-group-name"), what="the pa pod grouped")
        _wait(lambda: {mine.metadata.uid, oth.metadata.uid} <= ctl.foreign, what="the other pods left alone")
        pgs = c.get(f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups")["items"]
        assert [(p["metadata"]["labels"].get("kai.scheduler/node-pool")) for p in pgs] == ["pa"]
        for name in ("mine", "other"):
            assert "pod-group-name" not in (c.get(f"/api/v1/namespaces/{ns}/pods/{name}")["metadata"]
                                            .get("annotations") or {})
        assert bare.metadata.uid not in ctl.foreign
        ctl.forget(oth.metadata.uid)
        assert oth.metadata.uid not in ctl.foreign
    finally:
        ctl.stop()


def test_a_pod_made_again_under_its_name_while_the_old_one_waits_is_grouped(client, kube_namespace):
    """A bare pod deleted and created again under its name while the old one waits in the
    grouper's queue: the new pod is queued too (pods are told apart by uid) and gets its own
    PodGroup; the old one's patch cannot land on it (the pod's uid is a precondition)."""
    c, ns = client, kube_namespace
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"},
            "spec": {"schedulerName": SCHEDULER, "containers": [{"name": "c", "image": "busybox"}]}}
    ctl = PodGrouperController(c, SCHEDULER, config=GrouperConfig())
    try:
        old = msgspec.convert(c.post(f"/api/v1/namespaces/{ns}/pods", body), Pod)
        ctl.observe(old)                               # queued; the worker is not started yet
        c.delete(f"/api/v1/namespaces/{ns}/pods/solo")        # (not on a node: gone at once)
        _wait(lambda: not any(p["metadata"]["name"] == "solo"
                              for p in c.get(f"/api/v1/namespaces/{ns}/pods")["items"]), what="the old pod gone")
        new = msgspec.convert(c.post(f"/api/v1/namespaces/{ns}/pods", body), Pod)
        assert new.metadata.uid != old.metadata.uid
        ctl.observe(new)
        ctl.start()
        want = f"pg-solo-{new.metadata.uid}"
        _wait(lambda: (c.get(f"/api/v1/namespaces/{ns}/pods/solo")["metadata"].get("annotations") or {})
              .get("pod-group-name") == want, what="the new pod annotated with its own PodGroup")
        _wait(lambda: old.metadata.uid in ctl._failures, what="the old pod's grouping refused")
        time.sleep(0.5)
        assert (c.get(f"/api/v1/namespaces/{ns}/pods/solo")["metadata"]["annotations"]["pod-group-name"]) == want
    finally:
        ctl.stop()
