"""DraStore: informer events in, inventory rebuilt only when slices or nodes change, claim
allocations tracked incrementally, sessions get independent allocators."""
from kai.cache.dra_store import DraStore
from kai.cache.watch import RESOURCES
from kai.testing import dra as B

DOM = B.DRIVER


def store():
    s = DraStore()
    s.load({"ResourceSlice": [B.gpu_slice("n0", 2), B.gpu_slice("n1", 2)],
            "DeviceClass": [B.device_class("gpu", f'device.driver == "{DOM}"')],
            "ResourceClaimTemplate": [B.template("t", B.request("g", "gpu", 1), namespace="ns")]})
    return s


def test_informers_registered_for_the_four_kinds():
    for kind, plural in (("ResourceSlice", "resourceslices"), ("DeviceClass", "deviceclasses"),
                         ("ResourceClaim", "resourceclaims"), ("ResourceClaimTemplate", "resourceclaimtemplates")):
        r = RESOURCES[kind]
        assert r.path == f"/apis/resource.k8s.io/v1/{plural}" and r.optional and r.type.__name__ == kind


def test_inventory_is_cached_until_slices_change():
    s = store()
    inv = s.inventory(["n0", "n1"])
    assert inv.n_devices == 4 and s.inventory(["n0", "n1"]) is inv
    s.apply("ResourceSlice", "DELETED", B.gpu_slice("n1", 2))
    inv2 = s.inventory(["n0", "n1"])
    assert inv2 is not inv and inv2.n_devices == 2
    assert s.inventory(["n0"]).n_nodes == 1                       # the node set is part of the key


def test_claim_events_update_device_use_and_sessions_are_forks():
    s = store()
    a1 = s.allocator(["n0", "n1"])
    assert a1.used.sum() == 0
    status = {"allocation": {"devices": {"results": [{"request": "g", "driver": DOM, "pool": "n1", "device": "gpu-1"}]}}}
    s.apply("ResourceClaim", "ADDED", B.claim("c", B.request("g", "gpu", 1), namespace="ns", status=status))
    a2 = s.allocator(["n0", "n1"])
    assert a2.used.tolist() == [0, 0, 0, 1] and a1.used.sum() == 0
    a2.used[0] = 1                                               # a session's changes stay in its fork
    assert s.allocator(["n0", "n1"]).used.tolist() == [0, 0, 0, 1]
    s.apply("ResourceClaim", "DELETED", B.claim("c", B.request("g", "gpu", 1), namespace="ns"))
    assert s.allocator(["n0", "n1"]).used.sum() == 0


def test_pod_claims_from_templates():
    s = store()
    pod = B.pod_with_claims("p", "ns", templates={"g": "t"})
    assert "to be created" in s.pod_claims(pod)[0].problem
    got = s.pod_claims(pod, generate=True)[0]
    al = s.allocator(["n0", "n1"])
    req = al.prepare([got])
    assert al.feasible(req).tolist() == [1, 1]


# ------------------------------------------------------------------ phase 2: sessions and commits
def _state_with(s, pods=(), nodes=("n0", "n1")):
    """A ClusterState over nodes n0, n1 holding the store ``s`` and ``pods``."""
    import msgspec
    from kai.api.k8s import Node
    from kai.cache.cluster_state import ClusterState
    st = ClusterState()
    for n in nodes:
        st.upsert_node(msgspec.convert({"metadata": {"name": n}, "status": {
            "allocatable": {"cpu": "8", "memory": "8Gi", "pods": 10},
            "conditions": [{"type": "Ready", "status": "True"}]}}, Node))
    st.dra = s
    for p in pods:
        st.upsert_pod(p)
    return st


def test_assumed_allocations_outlive_claim_events_until_the_api_shows_them():
    s = store()
    s.apply("ResourceClaim", "ADDED", B.claim("c", B.request("g", "gpu", 1), namespace="ns"))
    st = _state_with(s)
    al = s.session_allocator(st.nodes)
    req = al.prepare(s.pod_claims(B.pod_with_claims("p", "ns", claims={"g": "c"})), pod_uid="uid-p")
    got = al.allocate(req, 1, pod_uid="uid-p")
    s.assume("uid-p", "p", got)
    assert s.kai_allocated == {"ns/c"}
    assert s.session_allocator(st.nodes).used.tolist() == [0, 0, 1, 0]
    # the binder's finalizer update arrives first: no allocation in the API yet, the assumption stays
    s.apply("ResourceClaim", "MODIFIED", B.claim("c", B.request("g", "gpu", 1), namespace="ns"))
    assert s.session_allocator(st.nodes).used.tolist() == [0, 0, 1, 0]
    # the status write arrives: the API's allocation replaces the assumption
    status = {"allocation": {"devices": {"results": [{"request": "g", "driver": DOM, "pool": "n1", "device": "gpu-0"}]}},
              "reservedFor": [{"resource": "pods", "name": "p", "uid": "uid-p"}]}
    s.apply("ResourceClaim", "MODIFIED", B.claim("c", B.request("g", "gpu", 1), namespace="ns", status=status))
    assert not s.assumed and not s.kai_allocated
    assert s.session_allocator(st.nodes).allocated["ns/c"].reserved_for == ["uid-p"]


def test_unassume_gives_the_devices_back_and_rebuilds_keep_assumptions():
    s = store()
    s.apply("ResourceClaim", "ADDED", B.claim("c", B.request("g", "gpu", 1), namespace="ns"))
    st = _state_with(s)
    pod = B.pod_with_claims("p", "ns", claims={"g": "c"})

    def assume():
        al = s.session_allocator(st.nodes)
        s.assume("uid-p", "p", al.allocate(al.prepare(s.pod_claims(pod), pod_uid="uid-p"), 0, pod_uid="uid-p"))

    assume()
    assert s.session_allocator(st.nodes).used.sum() == 1
    s.unassume("uid-p")
    assert s.session_allocator(st.nodes).used.sum() == 0 and not s.assumed
    assume()
    s.apply("ResourceSlice", "ADDED", B.gpu_slice("n1", 3))       # inventory rebuilt: assumption re-adopted
    al = s.session_allocator(st.nodes)
    assert al.inv.n_devices == 5 and al.used.sum() == 1 and "ns/c" in al.allocated


def test_refresh_sets_quota_gpus_of_pods_with_claims():
    from kai.config import PluginConf, SchedulerConfig
    s = store()
    s.load({"ResourceClaimTemplate": [B.template("two", B.request("g", "gpu", 2), namespace="ns")]})
    pods = [B.pod_with_claims("a", "ns", templates={"g": "two"}), B.pod_with_claims("b", "ns", templates={"g": "t"})]
    st = _state_with(s, pods)
    assert st.claim_pods == {"uid-a", "uid-b"}
    s.refresh(st)                              # default rule: class "gpu" counts
    assert [st.pods[u].dra_gpus for u in ("uid-a", "uid-b")] == [2.0, 1.0]
    assert s.gpu_capacity(st.nodes, [True, True]) == 4.0 and s.gpu_capacity(st.nodes, [True, False]) == 2.0
    s.refresh(st, SchedulerConfig(plugins=[PluginConf("dynamicresources", {"gpuDeviceClasses": "nic*"})]))
    assert [st.pods[u].dra_gpus for u in ("uid-a", "uid-b")] == [0.0, 0.0]
    assert s.gpu_capacity(st.nodes, [True, True]) == 0.0


def test_refresh_reports_jobs_whose_quota_gpus_changed():
    """Per-job queue figures kept across cycles (proportion's JobFigures, read through
    ``ClusterState.changed_since``) must see a pod whose DRA GPUs moved without a pod event."""
    from kai.config import PluginConf, SchedulerConfig
    s = store()
    s.load({"ResourceClaimTemplate": [B.template("two", B.request("g", "gpu", 2), namespace="ns")]})
    from kai.podgrouper.offline import group_pods
    grouped = group_pods([B.pod_with_claims("a", "ns", templates={"g": "two"}),
                          B.pod_with_claims("b", "ns", templates={"g": "t"})], {}, [], [])
    st = _state_with(s)
    for pg in grouped.podgroups.values():
        st.upsert_podgroup(pg)
    for p in grouped.pods:
        st.upsert_pod(p)
    keys = {st.pods[u].job_key for u in ("uid-a", "uid-b")}
    assert all(keys)
    s.refresh(st)
    seq = st.change_seq
    s.refresh(st)                              # nothing moved: nothing reported
    assert st.changed_since(seq) == []
    s.refresh(st, SchedulerConfig(plugins=[PluginConf("dynamicresources", {"gpuDeviceClasses": "nic*"})]))
    assert set(st.changed_since(seq)) == keys
