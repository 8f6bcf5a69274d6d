"""kai.api.pod_info: effective requests, GPU-sharing annotations, initial status."""
import msgspec
import numpy as np
import pytest

from kai.api import constants as C
from kai.api.k8s import Pod
from kai.api.pod_info import PodInfo, constraint_signature, parse_time, pod_requests
from kai.api.resources import CPU, GPU, MEMORY, PODS, QuantityError, ResourceRegistry

S = C.PodStatus
Gi = 2**30


def make_pod(containers=(), init=(), overhead=None, annotations=None, node="", phase="Pending",
             deleting=False, gates=(), name="p", **spec):
    meta = {"name": name, "namespace": "ns", "annotations": dict(annotations or {})}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    body = {"metadata": meta,
            "spec": {"containers": list(containers), "initContainers": list(init), "nodeName": node,
                     "schedulingGates": [{"name": g} for g in gates], **spec},
            "status": {"phase": phase}}
    if overhead:
        body["spec"]["overhead"] = overhead
    return msgspec.convert(body, Pod)


def ctr(requests=None, limits=None, restart=None, name="c"):
    c = {"name": name, "resources": {"requests": requests or {}, "limits": limits or {}}}
    if restart:
        c["restartPolicy"] = restart
    return c


def req(pod):
    return pod_requests(pod, ResourceRegistry())


def test_requests_sum_containers_and_pods_column():
    r = req(make_pod([ctr({"cpu": "500m", "memory": "1Gi"}), ctr({"cpu": "1", "nvidia.com/gpu": 2})]))
    assert r[CPU] == 1500 and r[MEMORY] == Gi and r[GPU] == 2 and r[PODS] == 1


def test_sidecars_add_and_init_containers_take_max():
    # containers: 1 cpu; sidecar 250m runs alongside; regular init 2 cpu (after the sidecar: 2.25)
    p = make_pod([ctr({"cpu": "1", "memory": "1Gi"})],
                 init=[ctr({"cpu": "250m"}, restart="Always", name="side"),
                       ctr({"cpu": "2", "memory": "512Mi"}, name="init")])
    r = req(p)
    assert r[CPU] == 2250            # max(1 + 0.25, 2 + 0.25)
    assert r[MEMORY] == Gi           # max(1Gi, 512Mi)


def test_small_init_container_does_not_raise_request():
    r = req(make_pod([ctr({"cpu": "4"})], init=[ctr({"cpu": "1"})]))
    assert r[CPU] == 4000


def test_sidecar_started_after_init_does_not_count_for_that_init():
    p = make_pod([ctr({"cpu": "1"})], init=[ctr({"cpu": "3"}, name="init"),
                                           ctr({"cpu": "500m"}, restart="Always", name="side")])
    assert req(p)[CPU] == 3000       # max(1 + 0.5, 3)


def test_overhead_added():
    r = req(make_pod([ctr({"cpu": "1"})], overhead={"cpu": "100m", "memory": "64Mi"}))
    assert r[CPU] == 1100 and r[MEMORY] == 64 * 2**20


def test_limits_only_default_requests():
    r = req(make_pod([ctr(limits={"cpu": "2", "nvidia.com/gpu": 1})]))
    assert r[CPU] == 2000 and r[GPU] == 1


def test_explicit_request_wins_over_limit():
    r = req(make_pod([ctr({"cpu": "1"}, limits={"cpu": "4"})]))
    assert r[CPU] == 1000


def test_extended_resource_gets_a_column():
    reg = ResourceRegistry()
    r = pod_requests(make_pod([ctr({"example.com/foo": 3})]), reg)
    assert reg.column("example.com/foo", create=False) == 5
    assert r.shape == (6,) and r[5] == 3


def test_negative_request_raises_and_podinfo_marks_invalid():
    p = make_pod([ctr({"cpu": "-1"})])
    with pytest.raises(QuantityError):
        req(p)
    info = PodInfo(p, ResourceRegistry())
    assert "negative" in info.invalid_reason and "ns/p" in info.invalid_reason
    assert info.req[PODS] == 1 and info.req[CPU] == 0


def test_empty_pod_requests_only_pod_slot():
    r = req(make_pod([ctr()]))
    assert r[PODS] == 1 and r.sum() == 1


# --- GPU sharing annotations -----------------------------------------------------------

def info(annotations=None, containers=None):
    return PodInfo(make_pod(containers or [ctr({"cpu": "1"})], annotations=annotations), ResourceRegistry())


def test_fraction_valid():
    p = info({"gpu-fraction": "0.5"})
    assert p.invalid_reason == ""
    assert p.gpu_sharing.portion == 0.5 and p.gpu_sharing.num_devices == 1
    assert not p.is_cpu_only and p.gpu_quota == 0.5


def test_fraction_with_num_devices():
    p = info({"gpu-fraction": "0.25", "gpu-fraction-num-devices": "4"})
    assert p.invalid_reason == "" and p.gpu_sharing.num_devices == 4 and p.gpu_quota == 1.0


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.5", "abc", "nan"])
def test_fraction_out_of_range(value):
    p = info({"gpu-fraction": value})
    assert p.gpu_sharing is None
    assert p.invalid_reason == "pod ns/p: gpu-fraction annotation value must be a positive number smaller than 1.0"


def test_empty_fraction_is_no_request():
    # as KAI's webhook: an empty annotation is absent (kai.api.gpu_sharing is the one validator)
    p = info({"gpu-fraction": ""})
    assert p.gpu_sharing is None and p.invalid_reason == ""


def test_gpu_memory_valid():
    p = info({"gpu-memory": "2000"})
    assert p.invalid_reason == "" and p.gpu_sharing.memory_mib == 2000 and p.gpu_sharing.portion == 0


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "2Gi"])
def test_gpu_memory_must_be_positive_int(value):
    p = info({"gpu-memory": value})
    assert p.invalid_reason.endswith("gpu-memory annotation value must be a positive integer greater than 0")


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_num_devices_must_be_positive(value):
    p = info({"gpu-fraction": "0.5", "gpu-fraction-num-devices": value})
    assert p.invalid_reason.endswith("fraction count annotation value must be a positive integer greater than 0")


def test_num_devices_alone_is_invalid():
    p = info({"gpu-fraction-num-devices": "2"})
    assert "cannot request multiple fractional devices without specifying fraction details" in p.invalid_reason


def test_fraction_and_memory_conflict():
    p = info({"gpu-fraction": "0.5", "gpu-memory": "1000"})
    assert p.invalid_reason.endswith("cannot request both gpu-fraction and GPU memory request")


def test_fraction_with_whole_gpu_request_conflicts():
    want = "cannot have both GPU fraction request and whole GPU resource request/limit"
    assert info({"gpu-fraction": "0.5"}, [ctr({"nvidia.com/gpu": 1})]).invalid_reason.endswith(want)
    assert info({"gpu-memory": "100"}, [ctr(limits={"nvidia.com/gpu": 1})]).invalid_reason.endswith(want)


def test_mps_without_fraction_is_invalid():
    p = info({"mps": "true"})
    assert "mps" in p.invalid_reason
    assert info({"mps": "true", "gpu-fraction": "0.5"}).invalid_reason == ""
    assert info({"mps": "false"}).invalid_reason == ""


def test_plain_pod_has_no_sharing():
    p = info()
    assert p.gpu_sharing is None and p.invalid_reason == "" and p.is_cpu_only


# --- status -------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, status", [
    ({}, S.PENDING),
    ({"gates": ["wait"]}, S.GATED),
    ({"node": "n1", "phase": "Running"}, S.RUNNING),
    ({"node": "n1"}, S.BOUND),
    ({"node": "n1", "phase": "Running", "deleting": True}, S.RELEASING),
    ({"deleting": True}, S.DELETED),
    ({"node": "n1", "phase": "Succeeded"}, S.SUCCEEDED),
    ({"phase": "Failed"}, S.FAILED),
])
def test_status_derivation(kw, status):
    p = PodInfo(make_pod([ctr({"cpu": "1"})], **kw), ResourceRegistry())
    assert p.status == status
    assert p.deleting == kw.get("deleting", False)


def test_status_groups():
    assert S.RELEASING & C.ACTIVE_USED and not S.RELEASING & C.ACTIVE_ALLOCATED
    assert S.PIPELINED & C.ACTIVE_ALLOCATED and not S.PIPELINED & C.ALLOCATED
    assert S.PENDING & C.ALIVE and S.GATED & C.ALIVE and not S.SUCCEEDED & C.ALIVE


def test_identity_and_labels():
    pod = msgspec.convert({"metadata": {"name": "w-0", "labels": {"kai.scheduler/task-priority": "7",
                                                                  "kai.scheduler/subgroup-name": "workers"},
                                        "creationTimestamp": "2024-01-01T00:00:10Z"},
                           "spec": {"containers": [ctr({"cpu": 1})]}}, Pod)
    p = PodInfo(pod, ResourceRegistry())
    assert p.key == "default/w-0" and p.uid == "default/w-0"
    assert p.task_priority == 7 and p.subgroup == "workers"
    assert p.creation == parse_time("2024-01-01T00:00:10Z") > 0


def test_a_plain_running_pod_keeps_no_extras():
    """The fields most pods leave at their default are not stored per pod (issue 13: 10^6
    running pods): a plain running pod holds no extras, and its key is made when asked."""
    p = PodInfo(make_pod([ctr({"cpu": "1"})], node="n1", phase="Running"), ResourceRegistry())
    assert p._more is None and p._key is None
    assert (p.invalid_reason, p.task_priority, p.subgroup, p.dra, p.volume_plan) == ("", 0, "", None, ())
    # writing a default keeps it so; the first other value makes the extras, and they keep it
    p.dra, p.volume_plan, p.invalid_reason, p.task_priority = None, (), "", 0
    assert p._more is None
    p.volume_plan = ("plan",)
    assert p._more is not None and p.volume_plan == ("plan",) and p.dra is None and p.subgroup == ""
    p.volume_plan = ()
    assert p.volume_plan == ()
    assert p.key == "ns/p" and p._key == "ns/p"
    p.key = "other/name"
    assert p.key == "other/name"


def test_extras_made_by_labels_and_problems():
    """A task-priority or subgroup label, or a problem, puts the pod's extras in place at once."""
    reg = ResourceRegistry()
    bad = PodInfo(make_pod([ctr({"cpu": "-1"})]), reg)
    assert bad.invalid_reason.startswith("pod ns/p: ") and bad.task_priority == 0
    # a non-integer task priority is 0, as before; an empty subgroup label is no subgroup
    odd = msgspec.convert({"metadata": {"name": "x", "namespace": "ns",
                                        "labels": {"kai.scheduler/task-priority": "high",
                                                   "kai.scheduler/subgroup-name": ""}},
                           "spec": {"containers": [ctr({"cpu": 1})]}}, Pod)
    o = PodInfo(odd, reg)
    assert (o.task_priority, o.subgroup, o.invalid_reason, o._more) == (0, "", "", None)
    assert o._key == "ns/x"                 # a pending pod's key is made with it (it is bound by it)
    labelled = PodInfo(msgspec.convert({"metadata": {"name": "y", "namespace": "ns",
                                                     "labels": {"kai.scheduler/task-priority": "-3"}},
                                        "spec": {"containers": [ctr({"cpu": 1})]}}, Pod), reg)
    assert labelled.task_priority == -3 and labelled._more is not None and labelled.invalid_reason == ""


def test_req_vec_pads_for_new_columns():
    reg = ResourceRegistry()
    p = PodInfo(make_pod([ctr({"cpu": "1"})]), reg)
    reg.column("example.com/x")
    v = p.req_vec(len(reg))
    assert v.shape == (6,) and v[5] == 0 and v[CPU] == 1000


def test_parse_time():
    assert parse_time(None) == 0.0 and parse_time("garbage") == 0.0
    assert parse_time("2024-01-01T00:00:00Z") == 1704067200.0


def test_constraint_signature_ignores_resources_and_order():
    a = make_pod([ctr({"cpu": "1"})], nodeSelector={"a": "1", "b": "2"},
                 tolerations=[{"key": "x", "operator": "Exists"}, {"key": "y", "value": "v"}])
    b = make_pod([ctr({"cpu": "9"})], nodeSelector={"b": "2", "a": "1"},
                 tolerations=[{"key": "y", "value": "v"}, {"key": "x", "operator": "Exists"}])
    c = make_pod([ctr({"cpu": "1"})], nodeSelector={"a": "1"})
    assert constraint_signature(a) == constraint_signature(b)
    assert constraint_signature(a) != constraint_signature(c)
    assert np.array_equal(req(a)[[1, 2, 3]], req(c)[[1, 2, 3]])


def test_fraction_configmap_suffix_follows_the_gpu_container():
    import msgspec

    from kai.api.k8s import Pod
    from kai.api.pod_info import fraction_configmap_suffix

    def pod(ann):
        return msgspec.convert({"metadata": {"name": "p", "annotations": ann},
                                "spec": {"initContainers": [{"name": "setup"}],
                                         "containers": [{"name": "side"}, {"name": "train"}]}}, Pod)

    assert fraction_configmap_suffix(None) == "0"
    assert fraction_configmap_suffix(pod({"gpu-fraction": "0.5"})) == "0"
    assert fraction_configmap_suffix(pod({"gpu-fraction-container-name": "train"})) == "1"
    assert fraction_configmap_suffix(pod({"gpu-fraction-container-name": "setup"})) == "i0"
    assert fraction_configmap_suffix(pod({"gpu-fraction-container-name": "nope"})) == "0"


# ---------------------------------------------------------------------------- compact pods
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _info_view(p: PodInfo) -> tuple:
    return (p.key, p.uid, p.node_name, p.status, tuple(p.req), repr(p.gpu_sharing), p.invalid_reason,
            None if p.constraints is None else p.constraints.key, p.task_priority, p.subgroup, p.creation,
            p.deleting, p.signature)


@st.composite
def _fuzzed_bound_pod(draw) -> bytes:
    """A pod on a node (kai.sim.synthetic.api_pod) after the object fuzzer's mutations."""
    import copy
    import json

    from kai.sim.synthetic import api_pod
    from kai.testing.fuzzobjects import mutation
    doc = copy.deepcopy(api_pod("p", "ns", "g", draw(st.integers(0, 2)), node="n1", seq=1))
    doc["kind"] = "Pod"
    doc["spec"]["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"job-name": "g"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    doc["metadata"]["annotations"]["gpu-fraction"] = "0.5"
    for _ in range(draw(st.integers(1, 3))):
        draw(mutation(doc))
    return json.dumps(doc).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_fuzzed_bound_pod())
def test_property_a_compact_pod_gives_the_podinfo_of_the_full_one(raw):
    """Whatever the API sends for a pod on a node: the compact decoder refuses whatever the full
    model refuses in the fields it keeps, and a pod both decode gives the same PodInfo."""
    from kai.api.k8s import decode_pod
    errors = (msgspec.ValidationError, msgspec.DecodeError)
    try:
        full = msgspec.json.decode(raw, type=Pod)
    except errors:
        full = None
    try:
        compact = decode_pod(raw)
    except errors:
        assert full is None                 # the compact one checks a subset of the fields
        return
    if full is None:
        return                              # broken only in a field a pod on a node does not keep
    reg = ResourceRegistry()
    assert _info_view(PodInfo(compact, reg)) == _info_view(PodInfo(full, reg))


# -- pod-level resources (PodLevelResources, spec.resources): kube-scheduler's PodRequests
def test_pod_level_requests_win_per_resource():
    """cpu at pod level replaces the containers' sum; memory, not set there, stays the sum;
    the overhead is added on top of the pod-level figure; GPUs come from the containers."""
    p = make_pod([ctr({"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": 1}), ctr({"cpu": "1", "memory": "1Gi"})],
                 overhead={"cpu": "100m"}, resources={"requests": {"cpu": "4"}})
    r = req(p)
    assert r[CPU] == 4100 and r[MEMORY] == 2 * Gi and r[GPU] == 1


def test_pod_level_limits_default_the_pod_level_requests():
    r = req(make_pod([ctr({"cpu": "1", "memory": "1Gi"})], resources={"limits": {"memory": "8Gi"}}))
    assert r[MEMORY] == 8 * Gi and r[CPU] == 1000


def test_pod_level_requests_below_the_containers_sum_are_what_counts():
    # the API server refuses this one (pod-level below the sum); kube-scheduler's rule is still
    # "pod level wins", so a manifest read from a file gets the same figure
    r = req(make_pod([ctr({"cpu": "2"})], resources={"requests": {"cpu": "1"}}))
    assert r[CPU] == 1000


def test_unsupported_pod_level_resource_makes_the_pod_invalid():
    p = make_pod([ctr({"cpu": "1"})], resources={"requests": {"nvidia.com/gpu": 1}})
    with pytest.raises(QuantityError, match="pod-level"):
        req(p)
    info = PodInfo(p, ResourceRegistry())
    assert "pod-level" in info.invalid_reason


def test_pod_level_resources_are_part_of_the_memo_key():
    reg = ResourceRegistry()
    plain = make_pod([ctr({"cpu": "1"})])
    wide = make_pod([ctr({"cpu": "1"})], resources={"requests": {"cpu": "3"}})
    assert pod_requests(plain, reg)[CPU] == 1000
    assert pod_requests(wide, reg)[CPU] == 3000
    assert pod_requests(plain, reg)[CPU] == 1000


@pytest.mark.parametrize("value,legacy", [("1", True), ("+2", True), ("0", True), ("-1", True), ("1.5", False),
                                          ("one", False), ("", False), ("1Gi", False), (" 1", False)])
def test_a_mig_resource_annotation_with_an_integer_makes_a_legacy_mig_pod(value, legacy):
    """KAI's updateLegacyMigResourceRequestFromAnnotations: strconv.ParseInt of the value."""
    reg = ResourceRegistry()
    p = PodInfo(make_pod([ctr({"cpu": "1"})], annotations={"pod-group-name": "g", "nvidia.com/mig-2g.20gb": value}), reg)
    if not legacy:
        assert p.legacy_mig == () and "nvidia.com/mig-2g.20gb" not in reg.index
        return
    assert p.legacy_mig == (("nvidia.com/mig-2g.20gb", int(value)),)
    col = reg.index["nvidia.com/mig-2g.20gb"]
    assert p.req[col] == max(int(value), 0) and p.req[CPU] == 1000 and not p.req.flags.writeable


def test_a_legacy_mig_pod_keeps_what_its_containers_ask_and_other_pods_are_untouched():
    reg = ResourceRegistry()
    both = PodInfo(make_pod([ctr({"nvidia.com/mig-1g.10gb": "2", "nvidia.com/gpu": "1"})],
                            annotations={"nvidia.com/mig-1g.10gb": "1"}), reg)
    col = reg.index["nvidia.com/mig-1g.10gb"]
    assert both.req[col] == 2 and both.req[GPU] == 1 and both.legacy_mig
    plain = PodInfo(make_pod([ctr({"cpu": "1"})], annotations={"pod-group-name": "g", "other": "1"}), reg)
    assert plain.legacy_mig == () and plain._more is None
