"""Queue and PodGroup status: what is computed (unit) and what is written (real kube-apiserver)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
import yaml

from kai.api.k8s import Pod, PodGroup, Queue
from kai.api.pod_info import PodInfo
from kai.api.resources import ResourceRegistry
from kai.cache.kubeclient import ApiError, KubeClient, load_kubeconfig
from kai.cache.status import (StatusReporter, StatusWriter, build_podgroup_status, build_queue_statuses,
                              queue_conditions, resource_list)

CRDS = Path(__file__).resolve().parents[2] / "charts" / "kai-scheduler" / "crds"


def _queue(name: str, parent: str = "", gpu_quota: float = -1) -> dict:
    r = {"quota": -1, "overQuotaWeight": 1, "limit": -1}
    spec = {"resources": {"gpu": {**r, "quota": gpu_quota}, "cpu": r, "memory": r}}
    if parent:
        spec["parentQueue"] = parent
    return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": name}, "spec": spec}


def _usage(alloc, deserved=(-1, -1, -1), np_=(0, 0, 0), req=None) -> dict:
    return {"allocated": alloc, "allocatedNonPreemptible": np_, "requested": req or alloc, "deserved": deserved}


# ---------------------------------------------------------------------- unit
def test_resource_list_quantities():
    assert resource_list((1.5, 2500, 1e9)) == {"nvidia.com/gpu": "1500m", "cpu": "2500m", "memory": "1000000000"}
    assert resource_list((2, 3000, 0)) == {"nvidia.com/gpu": "2", "cpu": "3", "memory": "0"}
    assert resource_list((0.25, 100, 104857600))["nvidia.com/gpu"] == "250m"


def test_queue_conditions_orphan_and_over_quota():
    assert queue_conditions("q", None, False, _usage((1, 0, 0), (2, -1, -1))) == []
    over = queue_conditions("q", None, False, _usage((3, 0, 0), (2, -1, -1)))
    assert [c["type"] for c in over] == ["OverQuota"] and "gpu" in over[0]["message"]
    # -1 (unlimited) is never exceeded
    assert queue_conditions("q", None, False, _usage((300, 5000, 1e12))) == []
    orphan = queue_conditions("q", "parent queue 'x' does not exist", False, None)
    assert orphan[0]["type"] == "Orphan" and orphan[0]["reason"] == "ParentQueueNotFound"
    cyc = queue_conditions("q", "queue parent cycle: a -> b -> a", False, None)
    assert cyc[0]["reason"] == "ParentQueueCycle"
    # a queue whose own spec is invalid is not an orphan (it gets the Event only)
    assert queue_conditions("q", "spec.resources is required", True, None) == []


def test_build_queue_statuses_child_queues_and_values():
    queues = {n: msgspec.convert(m, Queue) for n, m in (
        ("p", _queue("p")), ("c1", _queue("c1", "p", 1)), ("c2", _queue("c2", "p")), ("o", _queue("o", "gone")))}
    result = SimpleNamespace(
        queue_usage={"p": _usage((2.5, 300, 3e8)), "c1": _usage((2, 200, 2e8), (1, -1, -1), (2, 200, 2e8), (3, 300, 3e8)),
                     "c2": _usage((0.5, 100, 1e8))},
        queue_problems={"o": "parent queue 'gone' does not exist"})
    st = build_queue_statuses(queues, result)
    assert st["p"]["childQueues"] == ["c1", "c2"]
    assert st["p"]["allocated"] == {"nvidia.com/gpu": "2500m", "cpu": "300m", "memory": "300000000"}
    assert st["c1"]["requested"]["nvidia.com/gpu"] == "3"
    assert st["c1"]["allocatedNonPreemptible"]["nvidia.com/gpu"] == "2"
    assert [c["type"] for c in st["c1"]["conditions"]] == ["OverQuota"]
    assert st["c2"]["conditions"] == []
    assert [c["type"] for c in st["o"]["conditions"]] == ["Orphan"]
    assert st["o"]["allocated"]["nvidia.com/gpu"] == "0"


def _podinfo(name: str, phase: str = "Pending", node: str = "", gpu: str = "1", ann: dict | None = None) -> PodInfo:
    req = {"cpu": "100m", "memory": "100Mi"}
    if gpu:
        req["nvidia.com/gpu"] = gpu
    raw = {"metadata": {"name": name, "namespace": "ns", "uid": name, "annotations": ann or {}},
           "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": req}}]},
           "status": {"phase": phase}}
    pod = msgspec.json.decode(msgspec.json.encode(raw), type=Pod)
    return PodInfo(pod, ResourceRegistry())


def test_podgroup_status_counts_and_resources():
    pg = msgspec.json.decode(msgspec.json.encode({"metadata": {"name": "g", "namespace": "ns"},
                                                  "spec": {"minMember": 2, "queue": "q"}}), type=PodGroup)
    tasks = [_podinfo("a", "Running", "n1"), _podinfo("b", "Running", "n1"), _podinfo("c"),
             _podinfo("d", "Succeeded", "n1"), _podinfo("e", "Pending", "", "", {"gpu-fraction": "0.5"})]
    job = SimpleNamespace(tasks={t.uid: t for t in tasks}, preemptible=False)
    st = build_podgroup_status(pg, job)
    assert (st["running"], st["pending"], st["succeeded"], st["failed"]) == (2, 2, 1, 0)
    assert st["phase"] == "Running"
    rs = st["resourcesStatus"]
    assert rs["allocated"] == {"nvidia.com/gpu": "2", "cpu": "200m", "memory": str(2 * 100 * 2**20)}
    assert rs["allocatedNonPreemptible"] == rs["allocated"]
    assert rs["requested"]["nvidia.com/gpu"] == "3500m"       # 2 running + 1 pending + a pending half
    job.preemptible = True
    assert build_podgroup_status(pg, job)["resourcesStatus"]["allocatedNonPreemptible"]["nvidia.com/gpu"] == "0"
    assert build_podgroup_status(pg, SimpleNamespace(tasks={}, preemptible=True))["phase"] == "Pending"


# ---------------------------------------------------------------------- against the API server
class CountingClient(KubeClient):
    def __init__(self, creds) -> None:
        super().__init__(creds)
        self.patches: list[str] = []

    def patch(self, path, body, kind="merge"):
        self.patches.append(path)
        return super().patch(path, body, kind)


@pytest.fixture(scope="module")
def client(control_plane) -> CountingClient:
    c = CountingClient(load_kubeconfig(control_plane.kubeconfig))
    import time
    for f in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        try:
            c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        except ApiError as exc:
            if exc.status != 409:
                raise
        name = crd["metadata"]["name"]
        for _ in range(100):
            got = c.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            if any(x["type"] == "Established" and x["status"] == "True"
                   for x in (got.get("status") or {}).get("conditions") or []):
                break
            time.sleep(0.1)
    return c


def _create(c: KubeClient, path: str, body: dict) -> dict:
    try:
        return c.post(path, body)
    except ApiError as exc:
        if exc.status != 409:
            raise
        return c.get(f"{path}/{body['metadata']['name']}")


@pytest.mark.integration
def test_queue_status_written_once_with_orphan_condition_and_event(client):
    qs = "/apis/scheduling.run.ai/v2/queues"
    objs = {}
    for m in (_queue("st-unit-parent"), _queue("st-unit-child", "st-unit-parent", 1),
              _queue("st-unit-orphan", "st-unit-missing")):
        objs[m["metadata"]["name"]] = msgspec.json.decode(msgspec.json.encode(_create(client, qs, m)), type=Queue)
    result = SimpleNamespace(
        queue_usage={"st-unit-parent": _usage((2, 200, 2e8)), "st-unit-child": _usage((2, 200, 2e8), (1, -1, -1))},
        queue_problems={"st-unit-orphan": "parent queue 'st-unit-missing' does not exist"})
    writer = StatusWriter(client, workers=1)
    reporter = StatusReporter(writer)
    try:
        client.patches.clear()
        assert reporter.report_queues(objs, result) == 3
        writer.drain()
        assert len(client.patches) == 3
        child = client.get(f"{qs}/st-unit-child")["status"]
        assert child["allocated"] == {"nvidia.com/gpu": "2", "cpu": "200m", "memory": "200000000"}
        assert [c["type"] for c in child["conditions"]] == ["OverQuota"]
        assert client.get(f"{qs}/st-unit-parent")["status"]["childQueues"] == ["st-unit-child"]
        orphan = client.get(f"{qs}/st-unit-orphan")
        cond = orphan["status"]["conditions"][0]
        assert cond["type"] == "Orphan" and cond["status"] == "True" and "st-unit-missing" in cond["message"]
        events = client.get("/api/v1/namespaces/default/events",
                            params={"fieldSelector": "involvedObject.name=st-unit-orphan"})["items"]
        assert any(e["type"] == "Warning" and "st-unit-missing" in e["message"] for e in events)
        # unchanged: nothing written again
        client.patches.clear()
        assert reporter.report_queues(objs, result) == 0
        # a fresh reporter (a restarted scheduler) compares with what the objects hold
        fresh = {n: msgspec.json.decode(msgspec.json.encode(client.get(f"{qs}/{n}")), type=Queue) for n in objs}
        assert StatusReporter(writer).report_queues(fresh, result) == 0
        # the parent appears: the Orphan condition goes
        _create(client, qs, _queue("st-unit-missing"))
        result.queue_problems = {}
        assert reporter.report_queues(objs, result) == 1
        writer.drain()
        assert client.get(f"{qs}/st-unit-orphan")["status"]["conditions"] == []
    finally:
        writer.stop()
        for n in list(objs) + ["st-unit-missing"]:
            try:
                client.delete(f"{qs}/{n}")
            except ApiError:
                pass


def test_odd_queue_values_get_a_spec_warning_condition():
    odd = msgspec.convert({"metadata": {"name": "dept"}, "spec": {"resources": {
        "gpu": {"quota": -1, "limit": -1, "overQuotaWeight": -1},
        "cpu": {"quota": -1, "limit": -1, "overQuotaWeight": 1},
        "memory": {"quota": -1, "limit": -1, "overQuotaWeight": 1}}}}, Queue)
    st = build_queue_statuses({"dept": odd}, SimpleNamespace(queue_usage={}, queue_problems={}))
    (cond,) = st["dept"]["conditions"]
    assert cond["type"] == "SpecWarning" and cond["reason"] == "UnusualValues"
    assert "spec.resources.gpu.overQuotaWeight is -1" in cond["message"]


@pytest.mark.integration
def test_queue_with_kai_test_harness_values_is_accepted_and_warned(client):
    """KAI's CRD takes a negative overQuotaWeight (KAI's own test harness builds its default
    department so); kai schedules it and tells the admin through the Queue's status + Event."""
    qs = "/apis/scheduling.run.ai/v2/queues"
    m = _queue("st-odd")
    m["spec"]["resources"]["gpu"]["overQuotaWeight"] = -1
    obj = msgspec.json.decode(msgspec.json.encode(_create(client, qs, m)), type=Queue)
    writer = StatusWriter(client, workers=1)
    try:
        StatusReporter(writer).report_queues({"st-odd": obj}, SimpleNamespace(
            queue_usage={"st-odd": _usage((1, 0, 0))}, queue_problems={}))
        writer.drain()
        conds = client.get(f"{qs}/st-odd")["status"]["conditions"]
        assert [c["type"] for c in conds] == ["SpecWarning"] and "overQuotaWeight is -1" in conds[0]["message"]
        events = client.get("/api/v1/namespaces/default/events",
                            params={"fieldSelector": "involvedObject.name=st-odd"})["items"]
        assert any(e["reason"] == "QueueSpecWarning" and e["type"] == "Warning" for e in events)
    finally:
        writer.stop()
        client.delete(f"{qs}/st-odd")


@pytest.mark.integration
def test_podgroup_status_written_through_status_subresource(client, kube_namespace):
    ns = kube_namespace
    path = f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups"
    raw = _create(client, path, {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
                                 "metadata": {"name": "g"}, "spec": {"minMember": 2, "queue": "q"}})
    pg = msgspec.json.decode(msgspec.json.encode(raw), type=PodGroup)
    tasks = [_podinfo("a", "Running", "n1"), _podinfo("b", "Running", "n1"), _podinfo("c")]
    job = SimpleNamespace(tasks={t.uid: t for t in tasks}, preemptible=True)
    writer = StatusWriter(client, workers=1)
    try:
        reporter = StatusReporter(writer)
        assert reporter.report_podgroups({f"{ns}/g": pg}, {f"{ns}/g": job}) == 1
        writer.drain()
        st = client.get(f"{path}/g")["status"]
        assert st["phase"] == "Running" and (st["running"], st["pending"]) == (2, 1)
        assert st["resourcesStatus"]["allocated"]["nvidia.com/gpu"] == "2"
        assert st["resourcesStatus"]["requested"]["nvidia.com/gpu"] == "3"
        assert reporter.report_podgroups({f"{ns}/g": pg}, {f"{ns}/g": job}) == 0
    finally:
        writer.stop()


@pytest.mark.integration
def test_a_podgroup_made_again_under_its_name_gets_its_unschedulable_condition_again(client, kube_namespace):
    """The writer remembers the last condition message per PodGroup to write each once; a
    deleted PodGroup's is forgotten, so one recreated under the same name (``kubectl delete``
    then ``apply``) that fails the same way is told so again."""
    ns = kube_namespace
    path = f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups"
    body = {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
            "metadata": {"name": "again"}, "spec": {"minMember": 1, "queue": "q"}}

    def conditions():
        return [r["message"] for c in client.get(f"{path}/again").get("status", {}).get("schedulingConditions", [])
                for r in c.get("reasons", [])]
    writer = StatusWriter(client, workers=1)
    try:
        first = _create(client, path, body)
        writer.podgroup_unschedulable(ns, "again", first["metadata"]["uid"], "no node has 8 free GPUs")
        writer.drain()
        assert conditions() == ["no node has 8 free GPUs"]
        client.delete(f"{path}/again")
        writer.forget_podgroup(ns, "again")
        second = _create(client, path, body)
        writer.podgroup_unschedulable(ns, "again", second["metadata"]["uid"], "no node has 8 free GPUs")
        writer.drain()
        assert conditions() == ["no node has 8 free GPUs"]
    finally:
        writer.stop()


@pytest.mark.integration
def test_a_podgroup_made_again_under_its_name_gets_its_status_written(client, kube_namespace):
    """``kubectl replace --force`` between two reports: the new PodGroup has no status yet,
    though the one written to the old one (same name, same pods) looks the same."""
    ns = kube_namespace
    path = f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups"
    body = {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
            "metadata": {"name": "twice"}, "spec": {"minMember": 1, "queue": "q"}}
    tasks = [_podinfo("a", "Running", "n1")]
    job = SimpleNamespace(tasks={t.uid: t for t in tasks}, preemptible=True)
    writer = StatusWriter(client, workers=1)
    try:
        reporter = StatusReporter(writer)
        for _ in range(2):
            pg = msgspec.json.decode(msgspec.json.encode(_create(client, path, body)), type=PodGroup)
            assert reporter.report_podgroups({f"{ns}/twice": pg}, {f"{ns}/twice": job}) == 1
            writer.drain()
            assert client.get(f"{path}/twice")["status"]["phase"] == "Running"
            client.delete(f"{path}/twice")
    finally:
        writer.stop()


@pytest.mark.integration
def test_a_queue_made_again_under_its_name_gets_its_status_and_event_again(client):
    """A Queue deleted and created again between two reports is a new object: its status is
    written and its problem told in an Event of its own, though they read as the old one's."""
    qs = "/apis/scheduling.run.ai/v2/queues"
    result = SimpleNamespace(queue_usage={}, queue_problems={"st-again": "parent queue 'st-nowhere' does not exist"})
    writer = StatusWriter(client, workers=1)
    reporter = StatusReporter(writer)
    try:
        uids = []
        for _ in range(2):
            q = msgspec.json.decode(msgspec.json.encode(_create(client, qs, _queue("st-again", "st-nowhere"))),
                                    type=Queue)
            uids.append(q.metadata.uid)
            assert reporter.report_queues({"st-again": q}, result) == 1
            writer.drain()
            cond = client.get(f"{qs}/st-again")["status"]["conditions"][0]
            assert cond["type"] == "Orphan" and "st-nowhere" in cond["message"]
            client.delete(f"{qs}/st-again")
        events = client.get("/api/v1/namespaces/default/events",
                            params={"fieldSelector": "involvedObject.name=st-again"})["items"]
        assert {e["involvedObject"]["uid"] for e in events if e["reason"] == "OrphanQueue"} == set(uids)
    finally:
        writer.stop()
        try:
            client.delete(f"{qs}/st-again")
        except ApiError:
            pass
