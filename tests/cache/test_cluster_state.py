"""kai.cache.cluster_state: incremental charging, attachment of pods to jobs, priority resolution."""
import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_

from kai.api import constants as C
from kai.api.k8s import Node, Pod, PodGroup, PriorityClass
from kai.api.resources import CPU, GPU, PODS
from kai.cache.cluster_state import ClusterState, resolve_preemptible, resolve_priority

S = C.PodStatus


def node(name, cpu="8", gpu=4):
    return msgspec.convert({"metadata": {"name": name},
                            "status": {"allocatable": {"cpu": cpu, "memory": "64Gi", "pods": 10,
                                                       "nvidia.com/gpu": gpu}}}, Node)


def pod(name, cpu="1", gpu=0, node_name="", phase=None, deleting=False, scheduler="kai-scheduler",
        pg="job", ns="ns", uid=True):
    req = {"cpu": cpu}
    if gpu:
        req["nvidia.com/gpu"] = gpu
    meta = {"name": name, "namespace": ns, "annotations": {"pod-group-name": pg} if pg else {}}
    if uid:
        meta["uid"] = f"uid-{name}"
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    phase = phase or ("Running" if node_name else "Pending")
    return msgspec.convert({"metadata": meta,
                            "spec": {"containers": [{"name": "c", "resources": {"requests": req}}],
                                     "nodeName": node_name, "schedulerName": scheduler},
                            "status": {"phase": phase}}, Pod)


def podgroup(name="job", ns="ns", min_member=1, queue="q", pc="", preemptibility="", labels=None):
    return msgspec.convert({"metadata": {"name": name, "namespace": ns, "labels": dict(labels or {})},
                            "spec": {"minMember": min_member, "queue": queue, "priorityClassName": pc,
                                     "preemptibility": preemptibility}}, PodGroup)


def col(st, name, which="idle"):
    return getattr(st.nodes, which)[:, st.nodes.by_name[name].idx]


def assert_consistent(st):
    t = st.nodes
    assert np.array_equal(t.avail, t.idle + t.releasing)


@pytest.fixture
def st():
    s = ClusterState()
    s.upsert_node(node("n1"))
    s.upsert_node(node("n2"))
    s.upsert_podgroup(podgroup())
    return s


def test_running_pod_charges_idle(st):
    st.upsert_pod(pod("a", cpu="2", gpu=1, node_name="n1"))
    assert col(st, "n1")[CPU] == 6000 and col(st, "n1")[GPU] == 3 and col(st, "n1")[PODS] == 9
    assert col(st, "n1", "releasing").sum() == 0
    assert_consistent(st)


def test_pending_pod_charges_nothing(st):
    before = st.nodes.idle.copy()
    p = st.upsert_pod(pod("a"))
    assert p.status == S.PENDING and np.array_equal(st.nodes.idle, before)
    assert st.jobs["ns/job"].tasks[p.uid] is p


def test_update_moves_charge_exactly(st):
    alloc = st.nodes.allocatable.copy()
    st.upsert_pod(pod("a", cpu="2", node_name="n1"))
    st.upsert_pod(pod("a", cpu="2", node_name="n1"))          # same again: no double charge
    assert col(st, "n1")[CPU] == 6000
    st.upsert_pod(pod("a", cpu="2", node_name="n1", deleting=True))   # now terminating
    assert col(st, "n1")[CPU] == 6000 and col(st, "n1", "releasing")[CPU] == 2000
    assert col(st, "n1", "avail")[CPU] == 8000
    st.delete_pod("uid-a")
    assert np.array_equal(st.nodes.idle, alloc)
    assert st.nodes.releasing.sum() == 0
    assert_consistent(st)


def test_update_without_uid_replaces_not_duplicates(st):
    # regression: the fallback uid of a pod without metadata.uid must match the cache key
    p = pod("a", cpu="2", node_name="n1", uid=False)
    p = msgspec.structs.replace(p, metadata=msgspec.structs.replace(p.metadata, namespace=""))
    st.upsert_pod(p)
    st.upsert_pod(p)
    assert col(st, "n1")[CPU] == 6000
    assert len(st.pods) == 1


def test_pod_finishing_releases_node(st):
    st.upsert_pod(pod("a", cpu="2", node_name="n1"))
    st.upsert_pod(pod("a", cpu="2", node_name="n1", phase="Succeeded"))
    assert col(st, "n1")[CPU] == 8000
    assert st.pods["uid-a"].status == S.SUCCEEDED


def test_other_schedulers_pods_consume_capacity(st):
    st.upsert_pod(pod("foreign", cpu="3", node_name="n2", scheduler="default-scheduler", pg=None))
    assert col(st, "n2")[CPU] == 5000
    assert "uid-foreign" in st.pods and not st.pods["uid-foreign"].job_key
    # a pending pod of another scheduler is not ours to track
    assert st.upsert_pod(pod("foreign-pending", scheduler="default-scheduler", pg=None)) is None
    assert "uid-foreign-pending" not in st.pods
    st.delete_pod("uid-foreign")
    assert col(st, "n2")[CPU] == 8000


def test_pod_before_its_node(st):
    st.upsert_pod(pod("early", cpu="4", node_name="n3"))
    assert "n3" not in st.nodes.by_name
    st.upsert_node(node("n3"))
    assert col(st, "n3")[CPU] == 4000
    st.upsert_node(node("n3", cpu="16"))          # an update does not charge again
    assert col(st, "n3")[CPU] == 12000


def test_podgroup_after_its_pods():
    st = ClusterState()
    st.upsert_node(node("n1"))
    a = st.upsert_pod(pod("a", pg="late"))
    b = st.upsert_pod(pod("b", pg="late"))
    assert "ns/late" not in st.jobs
    assert "PodGroup ns/late does not exist" in st.pod_problems["ns/a"]
    st.upsert_podgroup(podgroup("late", min_member=2))
    job = st.jobs["ns/late"]
    assert set(job.tasks) == {a.uid, b.uid} and a.job_key == "ns/late"
    assert not st.pod_problems
    # an update of the PodGroup keeps the pods
    st.upsert_podgroup(podgroup("late", min_member=1))
    assert set(st.jobs["ns/late"].tasks) == {a.uid, b.uid} and st.jobs["ns/late"].min_member == 1
    # a deleted PodGroup sends pods back to waiting; re-created, they attach again
    st.delete_podgroup("ns/late")
    st.upsert_podgroup(podgroup("late"))
    assert set(st.jobs["ns/late"].tasks) == {a.uid, b.uid}


def test_pod_without_group_annotation_is_a_problem():
    st = ClusterState()
    st.upsert_pod(pod("lonely", pg=None))
    assert "pod-group-name" in st.pod_problems["ns/lonely"]


def test_invalid_pod_reason_lands_on_job(st):
    p = pod("bad")
    p = msgspec.structs.replace(p, metadata=msgspec.structs.replace(
        p.metadata, annotations={"pod-group-name": "job", "gpu-fraction": "2"}))
    st.upsert_pod(p)
    assert any("gpu-fraction" in r for r in st.jobs["ns/job"].invalid_reasons)


def test_min_member_zero_invalid():
    st = ClusterState()
    st.upsert_podgroup(podgroup("z", min_member=0))
    assert any("minMember 0" in r for r in st.jobs["ns/z"].invalid_reasons)


def test_assume_bound_and_evicted(st):
    p = st.upsert_pod(pod("a", cpu="2"))
    st.assume_bound(p, "n2")
    assert p.status == S.BINDING and p.node_name == "n2" and col(st, "n2")[CPU] == 6000
    st.assume_evicted(p)
    assert p.status == S.RELEASING
    assert col(st, "n2")[CPU] == 6000 and col(st, "n2", "releasing")[CPU] == 2000
    assert_consistent(st)
    st.delete_pod(p.uid)
    assert col(st, "n2")[CPU] == 8000 and st.nodes.releasing.sum() == 0


def test_many_random_updates_return_to_empty(st):
    rng = np.random.default_rng(7)
    alloc = st.nodes.allocatable.copy()
    for step in range(300):
        name = f"p{rng.integers(10)}"
        r = rng.random()
        if r < 0.15:
            st.delete_pod(f"uid-{name}")
        else:
            st.upsert_pod(pod(name, cpu=f"{rng.integers(1, 4)}", node_name=str(rng.choice(["", "n1", "n2"])),
                              deleting=bool(rng.random() < 0.3)))
        assert_consistent(st)
    for uid in list(st.pods):
        st.delete_pod(uid)
    assert np.array_equal(st.nodes.idle, alloc) and not st.nodes.releasing.any()


# --- priority / preemptibility -------------------------------------------------------------

def pc(name, value, default=False):
    return msgspec.convert({"metadata": {"name": name}, "value": value, "globalDefault": default},
                           PriorityClass)


@pytest.mark.parametrize("name, classes, value", [
    ("train", {}, 50),
    ("build", {}, 100),
    ("inference", {}, 125),
    ("", {}, 50),
    ("unknown", {}, 50),
    ("unknown", {"d": pc("d", 77, default=True)}, 77),
    ("", {"d": pc("d", 77, default=True)}, 77),
    ("custom", {"custom": pc("custom", 1000)}, 1000),
    ("train", {"train": pc("train", 10)}, 10),       # a cluster object overrides KAI's default
])
def test_resolve_priority(name, classes, value):
    assert resolve_priority(name, classes) == value


@pytest.mark.parametrize("spec, labels, priority, expected", [
    ("", {}, 50, True),
    ("", {}, 100, False),
    ("", {}, 99, True),
    ("preemptible", {}, 125, True),
    ("non-preemptible", {}, 50, False),
    ("", {"kai.scheduler/preemptibility": "non-preemptible"}, 50, False),
    ("", {"kai.scheduler/preemptibility": "preemptible"}, 100, True),
])
def test_resolve_preemptible(spec, labels, priority, expected):
    assert resolve_preemptible(podgroup(preemptibility=spec, labels=labels), priority) is expected


def test_job_priority_from_state_and_later_priority_class():
    st = ClusterState()
    st.upsert_podgroup(podgroup("t", pc="train"))
    st.upsert_podgroup(podgroup("b", pc="build"))
    st.upsert_podgroup(podgroup("u", pc="mystery"))
    assert (st.jobs["ns/t"].priority, st.jobs["ns/t"].preemptible) == (50, True)
    assert (st.jobs["ns/b"].priority, st.jobs["ns/b"].preemptible) == (100, False)
    assert st.jobs["ns/u"].priority == 50
    st.upsert_priority_class(pc("mystery", 300))
    assert st.jobs["ns/u"].priority == 300 and not st.jobs["ns/u"].preemptible


@pytest.mark.parametrize("subgroups,reason", [
    ([{"name": "a", "parent": "b"}, {"name": "b", "parent": "a"}], "cycle detected in subgroups"),
    ([{"name": "a"}, {"name": "b", "parent": "x"}], "parent x of b was not found"),
    ([{"name": "a"}, {"name": "a"}], "duplicate subgroup name a"),
])
def test_subgroups_not_a_forest_invalid(subgroups, reason):
    # KAI's PodGroup webhook refuses these; without the webhook the job waits with the reason
    st = ClusterState()
    pg = msgspec.convert({"metadata": {"name": "sg", "namespace": "ns"},
                          "spec": {"minMember": 1, "queue": "q", "subGroups": subgroups}}, PodGroup)
    st.upsert_podgroup(pg)
    assert st.jobs["ns/sg"].invalid_reasons == [f"PodGroup ns/sg: spec.subGroups: {reason}"]
    ok = msgspec.convert({"metadata": {"name": "ok", "namespace": "ns"},
                          "spec": {"minMember": 1, "subGroups": [{"name": "r"}, {"name": "l", "parent": "r"}]}},
                         PodGroup)
    st.upsert_podgroup(ok)
    assert st.jobs["ns/ok"].invalid_reasons == []


# ---------------------------------------------------------------------------- compact pods
def _api_docs() -> list[dict]:
    """Pods as the API server lists them: running jobs, pods with the fields that tie them to
    other pods (anti-affinity, host ports, spread), a GPU-sharing pod in its group, one
    terminating, one finished, one of another scheduler, one in a PodGroup not there yet,
    and pending pods."""
    from kai.sim.synthetic import api_pod
    docs = []
    for k in range(12):
        docs.append(api_pod(f"run-{k // 4}-{k % 4}", "ns", f"run-{k // 4}", 1 if k % 3 == 0 else 0,
                            node=f"node-0000{k % 3}", queue="q", created=k, seq=k))
    anti = api_pod("anti-0", "ns", "anti", 0, node="node-00000", seq=20)
    anti["metadata"]["labels"]["app"] = "web"
    anti["spec"]["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    anti["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 8080}]
    anti["spec"]["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                                  "whenUnsatisfiable": "DoNotSchedule",
                                                  "labelSelector": {"matchLabels": {"app": "web"}}}]
    shared = api_pod("frac-0", "ns", "frac", 0, node="node-00001", seq=21)
    shared["metadata"]["annotations"]["gpu-fraction"] = "0.5"
    shared["metadata"]["labels"]["runai-gpu-group"] = "grp-1"
    gone = api_pod("gone-0", "ns", "gone", 1, node="node-00002", seq=22)
    gone["metadata"]["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    done = api_pod("done-0", "ns", "done", 1, node="node-00002", seq=23)
    done["status"]["phase"] = "Succeeded"
    other = api_pod("other-0", "ns", "other", 1, node="node-00001", seq=24)
    other["spec"]["schedulerName"] = "default-scheduler"
    orphan = api_pod("orphan-0", "ns", "no-such-group", 0, node="node-00000", seq=25)
    docs += [anti, shared, gone, done, other, orphan]
    docs += [api_pod(f"new-{j}-0", "ns", f"new-{j}", 1, queue="q", created=100 + j, seq=30 + j) for j in range(6)]
    return docs


def _objects(decode):
    from kai.sim.synthetic import open_queue, synthetic_nodes
    nodes = synthetic_nodes(3, seed=1, cpu_only_share=0.0, tainted_share=0.0)
    groups = {d["metadata"]["annotations"]["pod-group-name"] for d in _api_docs()} - {"no-such-group"}
    pgs = [podgroup(g, min_member=4 if g.startswith("run-") else 1, pc="train") for g in sorted(groups)]
    queues = [open_queue("root"), open_queue("q", "root")]
    return nodes, pgs, [decode(msgspec.json.encode(d)) for d in _api_docs()], queues


def _view(st: ClusterState) -> dict:
    """Everything the state derived from its pods, as plain values."""
    from kai.actions.common.minimal_job import pod_signature
    t = st.nodes
    pods = {uid: (p.key, p.job_key, p.node_name, p.status, tuple(p.req), repr(p.gpu_sharing), list(p.gpu_groups),
                  None if p.constraints is None else p.constraints.key, p.invalid_reason, p.task_priority,
                  p.subgroup, p.creation, p.deleting, p.signature, pod_signature(p))
            for uid, p in st.pods.items()}
    pt = st.pod_table
    return {
        "pods": pods,
        "arrays": [np.asarray(a).tolist() for a in (t.idle, t.releasing, t.avail, t.dev_used, t.dev_alloc)],
        "groups": {i: dict(v) for i, v in t.group_names.items()},
        "jobs": {k: (sorted(j.tasks), {n: [x.uid for x in ps.tasks] for n, ps in j.podsets.items()},
                     list(j.invalid_reasons)) for k, j in st.jobs.items()},
        "rows": {uid: (int(pt.node[r]), int(pt.ns[r]), int(pt.terminating[r])) for uid, r in pt.row_of.items()},
        "terms": {k: dict(v.nodes) for k, v in pt.terms.items()},
        "ports": {k: {ip: dict(c) for ip, c in v.items()} for k, v in pt.ports.items()},
        "app": pt.label_column("app")[0].tolist(),
        "problems": dict(st.pod_problems), "dirty": set(st.dirty_jobs), "claims": set(st.claim_pods),
        "node_pods": {k: set(v) for k, v in st._node_pods.items()}, "job_order": list(st.job_seq),
        "releasing": set(st._charged_releasing),
    }


def _full(raw: bytes) -> Pod:
    return msgspec.json.decode(raw, type=Pod)


def test_state_from_compact_pods_is_the_state_from_full_pods():
    """The informers keep pods on nodes as BoundPod (kai.api.k8s.decode_pod); the state built
    from them is the one built from the full model, and a cycle decides the same."""
    from kai.api.k8s import BoundPod, decode_pod
    from kai.api.storage import ConfigMap, ConfigMapMeta
    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler

    states = {}
    for name, decode in (("full", _full), ("compact", decode_pod)):
        nodes, pgs, pods, queues = _objects(decode)
        if name == "compact":
            assert sum(type(p) is BoundPod for p in pods) == 18
        st = ClusterState()
        st.load(nodes, pgs, pods, queues=queues)
        st.storage.load({"ConfigMap": [ConfigMap(metadata=ConfigMapMeta(name="kube-root-ca.crt", namespace="ns"))]})
        states[name] = st
    full, compact = (_view(states[k]) for k in ("full", "compact"))
    assert compact == full
    assert full["terms"] and full["ports"] and full["releasing"] and full["groups"]      # the cases are there
    results = {k: Scheduler(st, default_config()).run_cycle(RecordingCache(st), now=1e9) for k, st in states.items()}
    got = {k: ([(d.pod, d.node, list(d.gpu_groups)) for d in r.bindings], [(d.pod, d.node) for d in r.pipelined],
               [d.pod for d in r.evictions], sorted(r.unschedulable.items())) for k, r in results.items()}
    assert got["compact"] == got["full"] and got["full"][0]


def _one_by_one(nodes, pgs, pods, queues) -> ClusterState:
    """The state of the same objects applied one event at a time (no bulk load)."""
    one = ClusterState()
    for q in queues:
        one.upsert_queue(q)
    for n in nodes:
        one.upsert_node(n)
    for pg in pgs:
        one.upsert_podgroup(pg)
    for p in pods:
        one.upsert_pod(p)
    return one


def test_bulk_load_is_the_state_of_one_event_at_a_time():
    """``load`` (charges in one kernel call, one change per job) ends where applying the same
    objects one by one ends; only the change numbers are fewer."""
    from kai.api.k8s import decode_pod
    nodes, pgs, pods, queues = _objects(decode_pod)
    bulk = ClusterState()
    bulk.load(nodes, pgs, pods, queues=queues)
    one = _one_by_one(nodes, pgs, pods, queues)
    assert _view(bulk) == _view(one)
    assert bulk.change_seq < one.change_seq
    keys = bulk.changed_since(0)
    assert keys == one.changed_since(0) and set(keys) == set(one.jobs)


@pytest.mark.parametrize("bulk", [False, True])
def test_pending_pods_of_its_scheduler_get_their_look_alike_key_when_filed(bulk):
    """The look-alike key is made when a pending pod of this scheduler is filed (so a cycle only
    reads it), the same key ``alike_key`` makes on demand; not for pods on nodes or others'."""
    from kai.api.alike_key import alike_key
    from kai.api.pod_info import PodInfo
    pods = [pod("a"), pod("b"), pod("r", node_name="n1"), pod("o", scheduler="default-scheduler", pg="")]
    st = ClusterState()
    if bulk:
        st.load([node("n1")], [podgroup()], pods)
    else:
        st.upsert_node(node("n1"))
        st.upsert_podgroup(podgroup())
        for p in pods:
            st.upsert_pod(p)
    a, b, r = (st.pods[f"uid-{n}"] for n in "abr")
    assert "uid-o" not in st.pods
    assert a.alike_key not in (False, None) and a.alike_key == alike_key(PodInfo(pods[0], st.registry))
    assert b.alike_key is a.alike_key           # copies (only their names differ): one interned key
    assert r.alike_key is False                 # running: never asked


def test_compact_pod_deleted_and_evicted_uncharges_what_it_charged():
    from kai.api.k8s import decode_pod
    nodes, pgs, pods, queues = _objects(decode_pod)
    st = ClusterState()
    st.load(nodes, pgs, [], queues=queues)
    before = [a.copy() for a in (st.nodes.idle, st.nodes.releasing, st.nodes.avail)]
    for p in pods:
        st.upsert_pod(p)
    running = next(p for p in st.pods.values() if p.status == S.RUNNING and p.req[GPU])
    st.assume_evicted(running)
    assert running.uid in st._charged_releasing
    for uid in list(st.pods):
        st.delete_pod(uid)
    assert not st._charged_releasing and len(st.pod_table) == 0
    for a, b in zip(before, (st.nodes.idle, st.nodes.releasing, st.nodes.avail)):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_pending_jobs_answer_is_kept_until_a_job_changes(st):
    st.upsert_podgroup(podgroup("other"))
    st.upsert_pod(pod("p1", pg="job"))
    st.upsert_pod(pod("p2", pg="other"))
    first = st.pending_jobs()
    assert [j.key for j in first] == ["ns/job", "ns/other"]
    first.clear()                                  # callers get a copy
    assert [j.key for j in st.pending_jobs()] == ["ns/job", "ns/other"]
    st.assume_bound(st.pods["uid-p1"], "n1")       # a change: asked again
    assert [j.key for j in st.pending_jobs()] == ["ns/other"]
    st.upsert_pod(pod("p3", pg="job"))
    assert [j.key for j in st.pending_jobs()] == ["ns/job", "ns/other"]


_PENDING_OPS = st_.lists(st_.tuples(st_.sampled_from(["add", "bind", "finish", "delete-pod", "delete-pg",
                                                      "upsert-pg", "ask"]),
                                    st_.integers(0, 5), st_.integers(0, 3)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(_PENDING_OPS)
def test_pending_jobs_kept_answer_matches_a_walk_over_every_job(ops):
    """The kept answer, edited with the jobs changed since it was made, is every job with a
    pending pod in ``jobs`` order, through pods added, bound, finished and deleted and
    PodGroups deleted, made again and updated, asked for at any point."""
    s = ClusterState()
    s.upsert_node(node("n1", cpu="1000", gpu=0))
    for j in range(6):
        s.upsert_podgroup(podgroup(f"j{j}"))
    made = 0
    for op, j, k in ops:
        name = f"p{j}-{k}"
        uid = f"uid-{name}"
        if op == "add":
            s.upsert_pod(pod(name, pg=f"j{j}"))
        elif op == "bind" and uid in s.pods and s.pods[uid].status == S.PENDING:
            s.assume_bound(s.pods[uid], "n1")
        elif op == "finish" and uid in s.pods:
            s.upsert_pod(pod(name, pg=f"j{j}", node_name="n1", phase="Succeeded"))
        elif op == "delete-pod" and uid in s.pods:
            s.delete_pod(uid)
        elif op == "delete-pg":
            s.delete_podgroup(f"ns/j{j}")
        elif op == "upsert-pg":
            made += 1
            s.upsert_podgroup(podgroup(f"j{j}", min_member=1 + made % 2))
        expected = [jb.key for jb in s.jobs.values() if jb.has_pending()]
        if op == "ask" or k == 0:
            assert [jb.key for jb in s.pending_jobs()] == expected
    assert [jb.key for jb in s.pending_jobs()] == [jb.key for jb in s.jobs.values() if jb.has_pending()]


def test_pending_jobs_edits_the_kept_answer_in_place_of_a_walk():
    """Many jobs pending, a few changed: the answer is the kept one edited (the jobs left
    alone are not asked again), in order, with the changed ones taken out or put back."""
    s = ClusterState()
    s.upsert_node(node("n1", cpu="1000", gpu=0))
    for j in range(300):
        s.upsert_podgroup(podgroup(f"j{j:03d}"))
        s.upsert_pod(pod(f"p{j}", pg=f"j{j:03d}"))
    assert len(s.pending_jobs()) == 300
    asked = []
    cls = type(s.jobs["ns/j000"])
    orig = cls.has_pending
    cls.has_pending = lambda self: asked.append(self.key) or orig(self)
    try:
        s.assume_bound(s.pods["uid-p7"], "n1")
        s.delete_podgroup("ns/j150")
        s.upsert_podgroup(podgroup("j150"))
        s.upsert_pod(pod("p150b", pg="j150"))
        got = [j.key for j in s.pending_jobs()]
    finally:
        cls.has_pending = orig
    assert sorted(asked) == ["ns/j007", "ns/j150"]
    want = [f"ns/j{j:03d}" for j in range(300) if j not in (7, 150)] + ["ns/j150"]
    assert got == want

# ---------------------------------------------------------------------------- bulk load
_KINDS = ("run", "run", "run", "gpu", "frac", "frac-grouped", "gone", "done", "other", "other-pending",
          "orphan", "no-group", "pending", "unknown-node", "invalid", "subgroup", "anti", "claims")


def _bulk_doc(kind: str, k: int, job: str, ns: str) -> dict:
    """One listed pod of ``kind`` (seq ``k``) in PodGroup ``ns/job`` (see ``_KINDS``)."""
    from kai.sim.synthetic import api_pod
    node = f"node-{k % 5:05d}"
    d = api_pod(f"{kind}-{k}", ns, job, 1 if kind in ("gpu", "gone", "done") else 0,
                cpu=("500m", "1", "250m")[k % 3], node="" if kind == "pending" else node, queue="q",
                created=k, seq=k)
    meta, spec = d["metadata"], d["spec"]
    if kind.startswith("frac"):
        meta["annotations"]["gpu-fraction"] = ("0.5", "0.25")[k % 2]
        if kind == "frac-grouped":
            meta["labels"]["runai-gpu-group"] = f"grp-{k % 3}"
    elif kind == "gone":
        meta["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    elif kind == "done":
        d["status"]["phase"] = "Succeeded"
    elif kind.startswith("other"):
        spec["schedulerName"] = "default-scheduler"
        if kind == "other-pending":
            spec.pop("nodeName", None)
            d["status"]["phase"] = "Pending"
    elif kind == "orphan":
        meta["annotations"]["pod-group-name"] = f"missing-{k % 3}"
    elif kind == "no-group":
        meta["annotations"] = {}
    elif kind == "unknown-node":
        spec["nodeName"] = "node-not-listed"
    elif kind == "invalid":
        spec["containers"][0]["resources"]["requests"]["cpu"] = "-1"
    elif kind == "subgroup":
        meta["labels"]["kai.scheduler/subgroup-name"] = ("a", "b")[k % 2]
    elif kind == "anti":
        meta["labels"]["app"] = "web"
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}
        spec["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 8000 + k % 2}]
    elif kind == "claims":
        spec["resourceClaims"] = [{"name": "g", "resourceClaimName": f"claim-{k}"}]
    return d


def _strict_view(st: ClusterState) -> dict:
    """``_view`` plus every order the state keeps: pods, job members, PodSet members, pod-table
    rows, namespace ids, pods per node, problems, waiting pods, the last-change order."""
    pt = st.pod_table
    view = _view(st)
    view.update({
        "pod_order": list(st.pods),
        "members": {k: (list(j.tasks), {n: [t.uid for t in ps.tasks] for n, ps in j.podsets.items()})
                    for k, j in st.jobs.items()},
        "row_order": [(p.uid if p is not None else None, int(pt.node[r]), int(pt.ns[r]), int(pt.terminating[r]))
                      for r, p in enumerate(pt.pods[: pt.n])],
        "table": (pt.n, list(pt.row_of.items()), list(pt.ns_ids.items()), pt.generation),
        "node_pod_order": {k: list(v) for k, v in st._node_pods.items()},
        "problem_order": list(st.pod_problems.items()),
        "waiting": ({k: sorted(v) for k, v in st._waiting.items()}, dict(st._waiting_key)),
        "shared": dict(st._shared), "gpu_groups": {u: list(p.gpu_groups) for u, p in st.pods.items()},
        "pending": sorted(st._maybe_pending), "changed": st.changed_since(0),    # (pending_jobs sorts)
        "dev": [np.asarray(a).tolist() for a in (st.nodes.dev_rel, st.nodes.dev_from_rel)],
    })
    return view


def _bulk_case(kinds: list[str], jobs: list[int], seqs: list[int], nss: list[int]):
    from kai.api.k8s import decode_pod
    from kai.sim.synthetic import open_queue, synthetic_nodes
    nodes = synthetic_nodes(5, seed=1, cpu_only_share=0.0, tainted_share=0.0)
    pods = [decode_pod(msgspec.json.encode(_bulk_doc(kind, s, f"job-{j}", f"ns{n}")))
            for kind, j, s, n in zip(kinds, jobs, seqs, nss)]
    sg = [{"name": "a", "minMember": 1}, {"name": "b", "minMember": 1}]
    pgs = [msgspec.convert({"metadata": {"name": f"job-{j}", "namespace": f"ns{n}"},
                            "spec": {"minMember": 2, "queue": "q", "priorityClassName": "train",
                                     **({"subGroups": sg} if j % 4 == 3 else {})}}, PodGroup)
           for j in sorted(set(jobs)) for n in (0, 1)]
    return nodes, pgs, pods, [open_queue("root"), open_queue("q", "root")]


@settings(max_examples=40, deadline=None)
@given(st_.lists(st_.tuples(st_.sampled_from(_KINDS), st_.integers(0, 7), st_.integers(0, 1), st_.integers(1, 6)),
                 min_size=1, max_size=40), st_.integers(0, 3))
def test_bulk_load_of_many_pods_keeps_every_order(runs, repeat):
    """The bulk path of ``load`` (rows in one go, membership by runs of one job's pods, node
    charges in one kernel call) leaves the state, orders included, that upserting the same
    pods one by one leaves: for lists of every kind of listed pod, runs of one job's pods
    interleaved with others, and (``repeat``) a pod listed again partway through."""
    kinds, jobs, nss, seqs = [], [], [], []
    for kind, job, ns, n in runs:                   # runs of ``n`` pods of one job
        for _ in range(n):
            kinds.append(kind)
            jobs.append(job)
            nss.append(ns)
            seqs.append(len(seqs))
    if repeat and len(seqs) > 2:
        at = len(seqs) * repeat // 4
        for col in (kinds, jobs, nss, seqs):
            col.insert(at, col[0])                  # the same uid as the first pod
    nodes, pgs, pods, queues = _bulk_case(kinds, jobs, seqs, nss)
    bulk = ClusterState()
    bulk.load(nodes, pgs, pods, queues=queues)
    assert _strict_view(bulk) == _strict_view(_one_by_one(nodes, pgs, pods, queues))


def test_bulk_load_rows_in_one_go_and_a_cycle_decides_the_same():
    """Enough pods on nodes for the pod table's one-go rows; the next cycle decides the same."""
    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler
    kinds = [_KINDS[k % len(_KINDS)] for k in range(400)]
    jobs = [k // 6 for k in range(400)]
    nodes, pgs, pods, queues = _bulk_case(kinds, jobs, list(range(400)), [k // 12 % 2 for k in range(400)])
    bulk = ClusterState()
    bulk.load(nodes, pgs, pods, queues=queues)
    one = _one_by_one(nodes, pgs, pods, queues)
    assert bulk.pod_table.n > 64 and bulk.pod_table.terms and bulk.claim_pods and bulk._shared
    assert _strict_view(bulk) == _strict_view(one)
    results = [Scheduler(s, default_config()).run_cycle(RecordingCache(s), now=1e9) for s in (bulk, one)]
    got = [([(d.pod, d.node, list(d.gpu_groups)) for d in r.bindings], [(d.pod, d.node) for d in r.pipelined],
            [d.pod for d in r.evictions], sorted(r.unschedulable.items())) for r in results]
    assert got[0] == got[1]


# ---------------------------------------------------------------------------- assuming batches
_PENDING_KINDS = ("pending", "gpu", "frac", "anti", "claims", "subgroup")


def _assume_case(kinds: list[str]):
    """A state with a few running pods and one pending pod of each of ``kinds``."""
    from kai.api.k8s import decode_pod
    docs = []
    for k, kind in enumerate(kinds):
        d = _bulk_doc(kind, k, f"job-{k % 4}", "ns0")
        d["spec"].pop("nodeName", None)
        d["status"] = {"phase": "Pending"}
        docs.append(d)
    docs += [_bulk_doc("run", 100 + k, f"job-{k % 4}", "ns0") for k in range(4)]
    nodes, pgs, _, queues = _bulk_case(["run"], [0], [0], [0])
    pgs = [msgspec.convert({"metadata": {"name": f"job-{j}", "namespace": "ns0"},
                            "spec": {"minMember": 1, "queue": "q"}}, PodGroup) for j in range(4)]
    st = ClusterState()
    st.load(nodes, pgs, [decode_pod(msgspec.json.encode(d)) for d in docs], queues=queues)
    return st


@settings(max_examples=60, deadline=None)
@given(st_.lists(st_.sampled_from(_PENDING_KINDS), min_size=1, max_size=8),
       st_.lists(st_.tuples(st_.sampled_from(("bind", "bind", "bind", "evict", "delete", "read", "table", "end")),
                            st_.integers(0, 11), st_.integers(0, 4)), max_size=30))
def test_assuming_batches_leave_the_state_one_by_one_leaves(kinds, ops):
    """``assume_bound`` inside ``assuming()`` (charges, rows and job changes filed together)
    leaves the state, orders included, that the same calls one by one leave: for binds of
    every kind of pending pod (shared GPU and rebinds take the direct path), interleaved with
    evictions, deletions and reads of the change numbers or the pod table, which file the
    batch first (the table's reader may keep it: the rest of that batch binds one by one)."""
    one, batched = _assume_case(kinds), _assume_case(kinds)
    reads = {id(one): [], id(batched): []}

    def apply(st, op, k, n):
        pods = sorted(st.pods.values(), key=lambda p: p.uid)
        if not pods:
            return
        p = pods[k % len(pods)]
        if op == "bind":
            st.assume_bound(p, f"node-{n:05d}")
        elif op == "evict" and p.node_name and p.status & C.ON_NODE:
            st.assume_evicted(p)
        elif op == "delete":
            st.delete_pod(p.uid)
        elif op == "read":
            reads[id(st)].append([j.key for j in st.pending_jobs()])
        elif op == "table":                  # handed out: filed, and binds go one by one after
            t = st.pod_table
            reads[id(st)].append([(p.uid, t.node_of(p.uid)) for p in pods])

    for op, k, n in ops:
        apply(one, op, k, n)
    batch = batched.assuming()
    batch.__enter__()
    for op, k, n in ops:
        if op == "end":                       # a batch ends (the next action's starts)
            batch.__exit__(None, None, None)
            batch = batched.assuming()
            batch.__enter__()
        else:
            apply(batched, op, k, n)
    batch.__exit__(None, None, None)
    assert batched._assumed is None
    assert reads[id(batched)] == reads[id(one)]
    assert _strict_view(batched) == _strict_view(one)


def test_assuming_batch_is_filed_before_any_read_of_what_it_holds():
    st = _assume_case(["pending", "pending", "gpu", "anti"])     # one pod a job
    pending = sorted((p for p in st.pods.values() if not p.node_name), key=lambda p: p.uid)
    anti = next(p for p in pending if p.constraints is not None)
    pending.remove(anti)
    before = st.nodes.idle.copy()
    waiting = [j.key for j in st.pending_jobs()]
    with st.assuming():
        st.assume_bound(pending[0], "node-00001")
        assert st._pod_table.node_of(pending[0].uid) is None        # left for the batch
        assert pending[0].job_key in waiting and not st.jobs[pending[0].job_key].has_pending()
        assert [j.key for j in st.pending_jobs()] == [k for k in waiting if k != pending[0].job_key]
        assert st._pod_table.node_of(pending[0].uid) is not None    # the read filed it
    st.assume_evicted(pending[0])
    st.delete_pod(pending[0].uid)
    assert np.array_equal(st.nodes.idle, before)
    pending = pending[1:] + [st.upsert_pod(pending[0].pod)]
    col = st.nodes.by_name["node-00002"].idx
    with st.assuming():
        st.assume_bound(anti, "node-00002")                         # constraints: at once
        assert st._pod_table.node_of(anti.uid) == col and st.carried_terms
        st.assume_bound(pending[0], "node-00001")
        seq = st.change_seq                                          # a read files the batch
        assert st._pod_table.node_of(pending[0].uid) == st.nodes.by_name["node-00001"].idx
        assert not np.array_equal(st.nodes.idle, before)
        st.assume_bound(pending[1], "node-00002")
        with st.assuming():                                          # nested: one batch
            st.assume_bound(pending[2], "node-00002")
        assert st._pod_table.node_of(pending[2].uid) is None
        table = st.pod_table                                         # handed out: filed, and
        assert table.node_of(pending[2].uid) == col                  # the rest binds at once
        st.assume_evicted(pending[2])
        st.delete_pod(pending[2].uid)
        again = st.upsert_pod(pending[2].pod)
        st.assume_bound(again, "node-00002")
        assert table.node_of(again.uid) == col
    assert st.change_seq > seq
    assert all(st.pod_table.node_of(p.uid) is not None for p in pending[:2] + [again, anti])


def _reclaim_case():
    """qa runs 4-GPU pods on every GPU of 5 nodes, over its quota; qb waits with GPU pods (reclaim,
    after allocate binds qb's and qa's pending CPU, fraction and anti-affinity pods)."""
    from kai.api.k8s import decode_pod
    from kai.sim.synthetic import api_pod, open_queue, synthetic_nodes
    nodes = synthetic_nodes(5, seed=1, cpu_only_share=0.0, tainted_share=0.0)
    docs = [api_pod(f"run-{k}", "ns0", f"qa-{k}", 4, node=f"node-{k // 2:05d}", queue="qa", created=k, seq=k)
            for k in range(10)]
    for k in range(12):
        kind = ("pending", "gpu", "frac", "anti")[k % 4]
        d = _bulk_doc(kind, 20 + k, f"qb-{k}", "ns1")
        d["spec"].pop("nodeName", None)
        d["status"] = {"phase": "Pending"}
        d["metadata"]["labels"]["kai.scheduler/queue"] = "qb"
        d["spec"].pop("volumes", None)          # (its ConfigMap is not in this state)
        if kind == "gpu":
            d["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "4"
        docs.append(d)
    pgs = [msgspec.convert({"metadata": {"name": d["metadata"]["annotations"]["pod-group-name"],
                                         "namespace": d["metadata"]["namespace"]},
                            "spec": {"minMember": 1, "queue": d["metadata"]["labels"]["kai.scheduler/queue"],
                                     "priorityClassName": "train"}}, PodGroup) for d in docs]
    queues = [open_queue("root"), open_queue("qa", "root", gpu_quota=10), open_queue("qb", "root", gpu_quota=30)]
    return nodes, pgs, [decode_pod(msgspec.json.encode(d)) for d in docs], queues


def test_a_cycle_decides_the_same_and_leaves_the_same_state_with_batched_commits(monkeypatch):
    """Every default action, allocate's bindings then reclaim's evictions: the cycle's
    decisions and the state after it are those of commits filed one by one."""
    import contextlib
    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler
    nodes, pgs, pods, queues = _reclaim_case()
    states = []
    for batched in (True, False):
        s = ClusterState()
        s.load(nodes, pgs, pods, queues=queues)
        if not batched:
            monkeypatch.setattr(s, "assuming", contextlib.nullcontext, raising=False)
        states.append(s)
    results = [Scheduler(s, default_config()).run_cycle(RecordingCache(s), now=1e9) for s in states]
    got = [([(d.pod, d.node, list(d.gpu_groups), d.action) for d in r.bindings],
            [(d.pod, d.node) for d in r.pipelined], [(d.pod, d.action) for d in r.evictions],
            sorted(r.unschedulable.items())) for r in results]
    assert got[0][0] and got[0][2] and got[0] == got[1]
    assert _strict_view(states[0]) == _strict_view(states[1])


def test_a_load_freezes_only_when_asked_and_the_garbage_of_an_earlier_state_is_collected():
    """``load`` leaves the collector's permanent generation alone unless the caller asks
    (the controller's first sync): a process that loads state after state (``kai status
    --watch``) must not freeze the cyclic garbage of the state before, which would then
    never be collected."""
    import gc
    import weakref
    from kai.api.k8s import decode_pod
    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler

    nodes, pgs, pods, queues = _objects(decode_pod)
    gc.unfreeze()
    try:
        first = ClusterState()
        first.load(nodes, pgs, pods, queues=queues)
        Scheduler(first, default_config()).open_session(RecordingCache(first), 0.0).close()

        class Cyclic:
            pass
        junk = Cyclic()
        junk.me = junk                            # garbage only the collector frees
        gone = weakref.ref(junk)
        del junk, first
        again = ClusterState()
        again.load(nodes, pgs, pods, queues=queues)
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert gone() is None
        last = ClusterState()
        last.load(nodes, pgs, pods, queues=queues, freeze=True)
        assert gc.get_freeze_count() > 0
        assert _view(last) == _view(again)
    finally:
        gc.unfreeze()


def test_a_deleted_node_leaves_no_pod_list_once_its_pods_are_gone(st):
    """A cluster that scales nodes in and out must not keep a pod list per node name ever seen:
    the list of a deleted node stays while pods name it (they are charged again if it comes
    back) and goes with its last pod."""
    st.upsert_node(node("tmp-1"))
    st.upsert_node(node("tmp-2"))
    st.upsert_pod(pod("a", gpu=1, node_name="tmp-1"))
    st.upsert_pod(pod("c", node_name="tmp-2"))
    st.delete_pod("uid-c")
    st.delete_node("tmp-1")
    st.delete_node("tmp-2")                        # no pods left: nothing kept
    assert "tmp-2" not in st._node_pods
    st.upsert_node(node("tmp-1"))                  # back: its pod is charged again
    assert col(st, "tmp-1")[GPU] == 3
    st.delete_node("tmp-1")
    st.delete_pod("uid-a")
    assert "tmp-1" not in st._node_pods
    # a pending pod bound to a node that is then deleted, and the pod with it
    st.upsert_node(node("tmp-3"))
    st.upsert_pod(pod("b"))
    st.assume_bound(st.pods["uid-b"], "tmp-3")
    st.delete_node("tmp-3")
    st.delete_pod("uid-b")
    assert "tmp-3" not in st._node_pods
    assert set(st._node_pods) <= set(st.nodes.by_name)
