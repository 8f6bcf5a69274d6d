"""kai.framework.pod_counts: entries count pods per domain, follow the session's placements,
evictions and undos exactly, and an entry built late equals one built at session open."""
import msgspec
import numpy as np

from kai.api.k8s import Node, Pod, PodGroup, Queue
from kai.cache.cluster_state import ClusterState
from kai.cache.decisions import RecordingCache
from kai.config import default_config
from kai.framework.pod_counts import PodCounts
from kai.framework.statement import Statement
from kai.scheduler import Scheduler

ZONE = "topology.kubernetes.io/zone"


def build():
    s = ClusterState()
    for name, z in (("n0", "a"), ("n1", "a"), ("n2", "b")):
        s.upsert_node(msgspec.convert({"metadata": {"name": name, "labels": {ZONE: z}},
                                       "status": {"allocatable": {"cpu": "64", "pods": "110"}}}, Node))
    s.upsert_queue(msgspec.convert({"metadata": {"name": "q"}, "spec": {"resources": {
        r: {"quota": -1, "limit": -1, "overQuotaWeight": 1} for r in ("gpu", "cpu", "memory")}}}, Queue))
    for name, on in (("r0", "n0"), ("r1", "n2"), ("p0", ""), ("p1", "")):
        s.upsert_podgroup(msgspec.convert({"metadata": {"name": name, "namespace": "d"},
                                           "spec": {"minMember": 1, "queue": "q"}}, PodGroup))
        s.upsert_pod(msgspec.convert({"metadata": {"name": name, "namespace": "d", "uid": name,
                                                   "labels": {"app": "web"}, "annotations": {"pod-group-name": name}},
                                      "spec": {"schedulerName": "kai-scheduler", "nodeName": on,
                                               "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]},
                                      "status": {"phase": "Running" if on else "Pending"}}, Pod))
    ssn = Scheduler(s, default_config()).open_session(RecordingCache(s))
    return s, ssn


def web_entry(ssn):
    pc = PodCounts.of(ssn)
    t = pc.table
    sel_rows = lambda: np.array([p is not None and p.pod.metadata.labels.get("app") == "web"  # noqa: E731
                                 for p in t.pods[: t.n]], dtype=bool)
    return pc.entry(("web",), ZONE, lambda task: task.pod.metadata.labels.get("app") == "web", rows=sel_rows)


def test_counts_follow_placements_evictions_and_undo():
    s, ssn = build()
    e = web_entry(ssn)
    assert e.counts.tolist() == [1.0, 1.0]
    task = next(t for j in ssn.jobs.values() for t in j.tasks.values() if t.name == "p0")
    mask = np.ones(3, np.uint8)
    mask[s.nodes.by_name["n0"].idx] = mask[s.nodes.by_name["n1"].idx] = 0    # zone b only
    stmt = Statement(ssn)
    assert stmt.allocate_run([task], mask, None) == 1
    assert e.counts.tolist() == [1.0, 2.0]
    r0 = next(t for j in ssn.jobs.values() for t in j.tasks.values() if t.name == "r0")
    cp = stmt.checkpoint()
    stmt.evict(r0, "test")
    assert e.counts.tolist() == [0.0, 2.0] and e.releasing.tolist() == [1.0, 0.0]
    late = PodCounts.of(ssn).entry(("late",), ZONE, e.matcher, rows=lambda: np.ones(ssn.state.pod_table.n, bool))
    assert late.counts.tolist() == e.counts.tolist() and late.releasing.tolist() == e.releasing.tolist()
    stmt.rollback(cp)
    assert e.counts.tolist() == [1.0, 2.0] and e.releasing.tolist() == [0.0, 0.0]
    stmt.discard()
    assert e.counts.tolist() == [1.0, 1.0]
    ssn.close()


def test_pipelined_placements_are_arriving():
    s, ssn = build()
    e = web_entry(ssn)
    task = next(t for j in ssn.jobs.values() for t in j.tasks.values() if t.name == "p1")
    stmt = Statement(ssn)
    stmt.allocate_run([task], np.ones(3, np.uint8), None)
    stmt.convert_to_pipelined(task.job_key)
    assert e.arriving.sum() == 1.0 and e.counts.sum() == 3.0
    stmt.discard()
    assert e.arriving.sum() == 0.0 and e.counts.sum() == 2.0
    ssn.close()
