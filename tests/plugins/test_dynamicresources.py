"""dynamicresources (kai.plugins.dynamicresources): pods' ResourceClaims filtered, allocated in the
session, undone with the Statement, freed by reclaim/preempt, counted in queue quota.

Scenario tables run ``kai simulate`` over manifests (kai.sim: the claims of templates are made
by kai, bound pods' claims written back between cycles, as the binder and controller-manager do).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "actions"))
from scenario_builder import bindings, config, job, node, queue, simulate_docs, unschedulable  # noqa: E402

DRIVER = "gpu.example.com"
API = "resource.k8s.io/v1"


# --- manifests ------------------------------------------------------------------------------
def slice_(node_name, n=2, model="A100", start=0, numa=None):
    devs = [{"name": f"gpu-{start + i}", "attributes": {"model": {"string": model}, "index": {"int": start + i},
                                                        "numa": {"int": (numa if numa is not None else i // 2)}},
             "capacity": {"memory": {"value": "80Gi"}}} for i in range(n)]
    return {"apiVersion": API, "kind": "ResourceSlice", "metadata": {"name": f"{node_name}-{DRIVER}"},
            "spec": {"driver": DRIVER, "nodeName": node_name,
                     "pool": {"name": node_name, "generation": 1, "resourceSliceCount": 1}, "devices": devs}}


def device_class(name="gpu.example.com", *extra):
    sels = [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}] + [{"cel": {"expression": e}} for e in extra]
    return {"apiVersion": API, "kind": "DeviceClass", "metadata": {"name": name}, "spec": {"selectors": sels}}


def spec(count=1, cls="gpu.example.com", selectors=(), constraints=None, mode="ExactCount"):
    ex = {"deviceClassName": cls, "allocationMode": mode, "selectors": [{"cel": {"expression": s}} for s in selectors]}
    if mode == "ExactCount":
        ex["count"] = count
    return {"devices": {"requests": [{"name": "gpu", "exactly": ex}], "constraints": constraints or []}}


def template(name, ns="default", **kw):
    return {"apiVersion": API, "kind": "ResourceClaimTemplate", "metadata": {"name": name, "namespace": ns},
            "spec": {"spec": spec(**kw)}}


def claim(name, ns="default", allocated=None, reserved=(), **kw):
    """A ResourceClaim; ``allocated``: (node, [devices]) already allocated in the API."""
    obj = {"apiVersion": API, "kind": "ResourceClaim", "metadata": {"name": name, "namespace": ns,
                                                                    "uid": f"uid-claim-{name}"}, "spec": spec(**kw)}
    if allocated:
        nd, devs = allocated
        obj["status"] = {"allocation": {"devices": {"results": [
            {"request": "gpu", "driver": DRIVER, "pool": nd, "device": d} for d in devs]}},
            "reservedFor": [{"resource": "pods", "name": r, "uid": f"uid-{r}"} for r in reserved]}
    return obj


def claims_spec(template_name="", claim_name="", entry="gpus"):
    ref = {"resourceClaimTemplateName": template_name} if template_name else {"resourceClaimName": claim_name}
    return {"resourceClaims": [{"name": entry, **ref}]}


def dra_job(name, template_name="", claim_name="", uid_pods=True, **kw):
    docs = job(name, extra_spec=claims_spec(template_name, claim_name), **kw)
    if uid_pods:
        for d in docs:
            if d["kind"] == "Pod":
                d["metadata"]["uid"] = f"uid-{d['metadata']['name']}"
    return docs


def cpu_nodes(n, devices=2, **kw):
    return [[node(f"n{i}", gpu=0), slice_(f"n{i}", devices, **kw)] for i in range(n)]


def claims_of(report, cycle=0):
    """{pod key: [(claim, [pool/device, ...])]} of the bindings of one cycle."""
    out = {}
    for b in report["cycles"][cycle]["bindings"]:
        out[b["pod"]] = [(c["claim"], [f"{r['pool']}/{r['device']}" for r in c["results"]]) for c in b.get("claims", [])]
    return out


# --- scenarios ------------------------------------------------------------------------------
SCENARIOS = [
    dict(id="template-claim-gets-a-device-on-the-pod-node",
         docs=[cpu_nodes(1), device_class(), template("one"), queue("q"), dra_job("a", template_name="one")],
         bound={"default/a-0": "n0"}, claims={"default/a-0": [("default/a-0-gpus", ["n0/gpu-0"])]}),
    dict(id="devices-are-not-allocated-twice",
         docs=[cpu_nodes(2), device_class(), template("one"), queue("q")]
         + [dra_job(f"p{i}", template_name="one") for i in range(5)],
         n_bound=4, reasons={"default/p4": ["request gpu: needs 1 device(s) of class gpu.example.com",
                                            "4 in use"]}),
    dict(id="match-attribute-keeps-two-devices-on-one-numa-node",
         docs=[[node("n0", gpu=0), slice_("n0", 4)], device_class(), template("two", count=2,
               constraints=[{"matchAttribute": f"{DRIVER}/numa"}]), queue("q"), dra_job("a", template_name="two"),
               dra_job("b", template_name="two")],
         claims={"default/a-0": [("default/a-0-gpus", ["n0/gpu-0", "n0/gpu-1"])],
                 "default/b-0": [("default/b-0-gpus", ["n0/gpu-2", "n0/gpu-3"])]}),
    dict(id="selector-picks-the-only-matching-node",
         docs=[[node("n0", gpu=0), slice_("n0")], [node("n1", gpu=0), slice_("n1", model="H100")], device_class(),
               template("h100", selectors=[f'device.attributes["{DRIVER}"].model == "H100"']), queue("q"),
               dra_job("a", template_name="h100")],
         bound={"default/a-0": "n1"}),
    dict(id="no-matching-device-names-the-request",
         docs=[cpu_nodes(1), device_class(), template("h100", selectors=[f'device.attributes["{DRIVER}"].model == "H100"']),
               queue("q"), dra_job("a", template_name="h100")],
         bound={}, reasons={"default/a": ["resource claim default/a-0-gpus, request gpu: no device of class "
                                          "gpu.example.com matches"]}),
    dict(id="missing-device-class-names-the-request",
         docs=[cpu_nodes(1), template("x", cls="nope"), queue("q"), dra_job("a", template_name="x")],
         bound={}, reasons={"default/a": ["request gpu: device class 'nope' not found"]}),
    dict(id="missing-template-is-named",
         docs=[cpu_nodes(1), device_class(), queue("q"), dra_job("a", template_name="ghost")],
         bound={}, reasons={"default/a": ["resource claim template default/ghost not found"]}),
    dict(id="missing-claim-is-named",
         docs=[cpu_nodes(1), device_class(), queue("q"), dra_job("a", claim_name="ghost")],
         bound={}, reasons={"default/a": ["resource claim default/ghost not found"]}),
    dict(id="shared-claim-is-allocated-once-and-both-pods-follow-it",
         docs=[cpu_nodes(2, devices=1), device_class(), claim("shared"), queue("q"),
               dra_job("a", claim_name="shared"), dra_job("b", claim_name="shared")],
         same_node=["default/a-0", "default/b-0"],
         claims={"default/a-0": [("default/shared", ["n0/gpu-0"])], "default/b-0": [("default/shared", ["n0/gpu-0"])]}),
    dict(id="already-allocated-claim-sends-the-pod-to-its-devices",
         docs=[cpu_nodes(3), device_class(), claim("c", allocated=("n2", ["gpu-1"])), queue("q"),
               dra_job("a", claim_name="c")],
         bound={"default/a-0": "n2"}),
    dict(id="gang-claims-all-or-nothing",
         docs=[cpu_nodes(2), device_class(), template("two", count=2), queue("q"),
               dra_job("g", template_name="two", pods=3)],
         bound={}, reasons={"default/g": ["gang of 3 pods: only 2 could be placed"]}),
    dict(id="gang-fits-when-devices-suffice",
         docs=[cpu_nodes(3), device_class(), template("two", count=2), queue("q"),
               dra_job("g", template_name="two", pods=3)],
         n_bound=3, nodes_used=3),
    dict(id="allocation-mode-all-takes-every-device",
         docs=[cpu_nodes(2, devices=3), device_class(), template("all", mode="All"), queue("q"),
               dra_job("a", template_name="all"), dra_job("b", template_name="all"), dra_job("c", template_name="all")],
         n_bound=2, reasons={"default/c": ["allocationMode All"]}),
]


@pytest.mark.parametrize("case", SCENARIOS, ids=[c["id"] for c in SCENARIOS])
def test_scenario(case):
    rep = simulate_docs(case["docs"])
    got = bindings(rep)
    if "bound" in case:
        assert got == case["bound"]
    if "n_bound" in case:
        assert len(got) == case["n_bound"], got
    if "nodes_used" in case:
        assert len(set(got.values())) == case["nodes_used"]
    if "same_node" in case:
        assert len({got[p] for p in case["same_node"]}) == 1, got
    claims = claims_of(rep)
    for pod, want in case.get("claims", {}).items():
        assert claims[pod] == want, claims
    devices = [d for cl in {c: devs for v in claims.values() for c, devs in v}.values() for d in cl]
    assert len(devices) == len(set(devices)), claims
    for pod, cl in claims.items():                   # every device on the pod's node
        assert all(d.split("/")[0] == got[pod] for _, devs in cl for d in devs), (pod, cl)
    reasons = unschedulable(rep)
    for group, needles in case.get("reasons", {}).items():
        for needle in needles:
            assert needle in reasons[group], reasons


# --- quota -------------------------------------------------------------------------------------
def queue_gpus(report, name, what="allocated"):
    return next(q for q in report["queues"] if q["name"] == name)[what]["gpu"]


def test_dra_gpus_count_in_queue_allocation_and_fair_share():
    rep = simulate_docs([cpu_nodes(2, devices=4), device_class(), template("two", count=2), queue("q"),
                         dra_job("a", template_name="two"), dra_job("b", template_name="two")])
    assert len(bindings(rep)) == 2
    assert queue_gpus(rep, "q") == 4                          # 2 pods x 2 DRA GPUs
    assert queue_gpus(rep, "q", "fairShare") == 4             # the division saw 8 DRA GPUs of capacity


def test_queue_gpu_limit_applies_to_dra_gpus():
    rep = simulate_docs([cpu_nodes(2, devices=4), device_class(), template("two", count=2), queue("q", gpu=(2, 2)),
                         dra_job("a", template_name="two"), dra_job("b", template_name="two")])
    assert len(bindings(rep)) == 1
    assert "OverLimit" in " ".join(unschedulable(rep).values())


def test_gpu_device_classes_argument_decides_what_counts():
    docs = [cpu_nodes(1, devices=4), device_class("nic.example.com"), template("two", count=2, cls="nic.example.com"),
            queue("q", gpu=(0, 1)), dra_job("a", template_name="two")]
    rep = simulate_docs(docs)                                  # "nic.example.com" has no "gpu": not a GPU
    assert len(bindings(rep)) == 1 and queue_gpus(rep, "q") == 0
    cfg = config()
    cfg.plugin_args("dynamicresources")["gpuDeviceClasses"] = "nic.*, *.gpu.vendor.io"
    rep = simulate_docs(docs, cfg)
    assert bindings(rep) == {} and "OverLimit" in " ".join(unschedulable(rep).values())


def test_reclaim_frees_devices_for_the_queue_below_its_quota():
    """q2 runs on every device over its quota; q1 is below its quota: reclaim evicts from q2 and
    the freed devices go to q1's pod once the victim is gone."""
    docs = [cpu_nodes(1, devices=2), device_class(), template("one"),
            queue("q1", gpu=(1, -1)), queue("q2", gpu=(1, -1)),
            claim("v0", allocated=("n0", ["gpu-0"]), reserved=["v-0"]),
            claim("v1", allocated=("n0", ["gpu-1"]), reserved=["v-1"])]
    victims = job("v", queue="q2", pods=2, min_member=1, running_on=["n0", "n0"])
    for i, d in enumerate(x for x in victims if x["kind"] == "Pod"):
        d["metadata"]["uid"] = f"uid-v-{i}"
        d["spec"].update(claims_spec(claim_name=f"v{i}"))
    rep = simulate_docs([docs, victims, dra_job("a", queue="q1", template_name="one")], cycles=3)
    evicted = [e["pod"] for c in rep["cycles"] for e in c["evictions"]]
    assert len(evicted) == 1 and evicted[0].startswith("default/v-")
    bound = {b["pod"]: b for c in rep["cycles"] for b in c["bindings"]}
    assert "default/a-0" in bound
    freed = "gpu-0" if evicted[0] == "default/v-0" else "gpu-1"
    assert bound["default/a-0"]["claims"][0]["results"][0]["device"] == freed


def test_preempt_frees_the_victims_devices():
    docs = [cpu_nodes(1, devices=1), device_class(), template("one"), queue("q"),
            claim("low", allocated=("n0", ["gpu-0"]), reserved=["low-0"])]
    low = job("low", priority_class="train", running_on=["n0"])
    for d in low:
        if d["kind"] == "Pod":
            d["metadata"]["uid"] = "uid-low-0"
            d["spec"].update(claims_spec(claim_name="low"))
    rep = simulate_docs([docs, low, dra_job("high", template_name="one", priority_class="build")], cycles=2)
    assert [e["pod"] for e in rep["cycles"][0]["evictions"]] == ["default/low-0"]
    assert rep["cycles"][0]["pipelined"] == ["default/high-0"]
    assert bindings(rep, 1) == {"default/high-0": "n0"}
    assert claims_of(rep, 1)["default/high-0"] == [("default/high-0-gpus", ["n0/gpu-0"])]


# --- fail closed -------------------------------------------------------------------------------
def test_without_the_plugin_pods_with_claims_wait():
    cfg = config()
    cfg.plugins = [p for p in cfg.plugins if p.name != "dynamicresources"]
    rep = simulate_docs([cpu_nodes(1), device_class(), template("one"), queue("q"), dra_job("a", template_name="one")],
                        cfg)
    assert bindings(rep) == {}
    assert "does not enable the dynamicresources plugin" in unschedulable(rep)["default/a"]


def test_live_template_claim_not_created_yet_waits():
    """Live (no claim generation), the controller-manager has not created the claim yet."""
    from kai.scheduler import RecordingCache, Scheduler
    from kai.sim.simulator import build_state
    from scenario_builder import flatten
    import tempfile
    import yaml
    from kai.sim.loader import load_manifests
    docs = flatten([cpu_nodes(1), device_class(), template("one"), queue("q"), dra_job("a", template_name="one")])
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump_all(docs, f)
        f.flush()
        state = build_state(load_manifests([f.name]))
    state.dra.generate = False
    result = Scheduler(state, config()).run_cycle(RecordingCache(state))
    assert not result.bindings
    assert "waiting for the resource claim of entry gpus (template one) to be created" in \
        " ".join(result.unschedulable["default/a"])


def test_a_refused_placement_is_undone(monkeypatch):
    """The allocate handler cannot pick devices on the node the mask offered (a race): the
    Statement undoes the placement bit for bit and the pod waits with the reason."""
    from kai.dra.allocator import DraAllocator
    monkeypatch.setattr(DraAllocator, "allocate", lambda self, req, node, pod_uid="": None)
    rep = simulate_docs([cpu_nodes(1), device_class(), template("one"), queue("q"), dra_job("a", template_name="one")])
    assert bindings(rep) == {}
    assert "could not be allocated on node n0" in unschedulable(rep)["default/a"]
    assert queue_gpus(rep, "q") == 0


# --- across cycles without the API ----------------------------------------------------------------
def test_committed_claims_stay_taken_until_the_api_shows_them():
    """Two cycles with nothing written back (the binder's writes not seen yet): the assumed
    allocations keep the first cycle's devices taken."""
    import tempfile
    import yaml
    from kai.scheduler import RecordingCache, Scheduler
    from kai.sim.loader import load_manifests
    from kai.sim.simulator import build_state
    from scenario_builder import flatten
    docs = flatten([cpu_nodes(1), device_class(), template("one"), queue("q")]
                   + [dra_job(f"p{i}", template_name="one") for i in range(3)])
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump_all(docs, f)
        f.flush()
        state = build_state(load_manifests([f.name]))
    sched = Scheduler(state, config())
    first = sched.run_cycle(RecordingCache(state))
    assert len(first.bindings) == 2
    for p in state.pods.values():           # as if the pods were never bound: pending again
        if p.node_name:
            p.status, p.node_name = 4, ""
    second = sched.run_cycle(RecordingCache(state))
    assert not second.bindings
    al = state.dra.session_allocator(state.nodes)
    assert al.used.tolist() == [1, 1]


def test_the_session_allocator_matches_the_placements():
    """After a cycle with evictions and moves, the session allocator's device use is exactly
    the union of the claims it holds (no leak, no double count)."""
    from kai.plugins import dynamicresources as D
    seen = []
    orig = D.DynamicResources.on_session_open

    def spy(self, ssn):
        orig(self, ssn)
        seen.extend(p for p in ssn.node_predicates if isinstance(p, D.ClaimsPredicate))

    D.DynamicResources.on_session_open = spy
    try:
        simulate_docs([cpu_nodes(2), device_class(), template("one"), queue("q")]
                      + [dra_job(f"p{i}", template_name="one") for i in range(5)])
    finally:
        D.DynamicResources.on_session_open = orig
    for pred in seen:
        al = pred.al
        used = np.zeros_like(al.used)
        for c in al.allocated.values():
            for row, adm in zip(c.rows, c.admin):
                if row >= 0 and not adm:
                    assert used[row] == 0, "a device held by two claims"
                    used[row] = 1
        assert (used == al.used).all()
