"""Volumes through ``kai.sim`` (kube-scheduler's VolumeBinding, VolumeRestrictions, VolumeZone,
NodeVolumeLimits, as kai.plugins.volumebinding implements them).

A scenario table first: storage objects and pods in; each pod's node and volume decisions, or
its reason, out. Nodes ``n1`` (zone a) is always the bin-pack favourite (it runs a pod), so a pod
that lands elsewhere was sent there by a volume rule. Then multi-cycle and gang cases, and
properties over random clusters checked against the node-by-node reference
(``volume_reference.py``): no PV is given to two claims, no placement violates a PV's node
affinity, a ReadWriteOncePod claim is never shared, CSI limits hold, every decision is the one
kube-scheduler's rules make on that node, and no pod is left waiting where a node fits.
"""
from __future__ import annotations

import os
import sys
import tempfile

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "actions"))
from scenario_builder import config, simulate_docs  # noqa: E402
from volume_builders import ZONE, csinode, node, podgroup, pv, pvc, storage_class, vpod  # noqa: E402
import volume_reference as ref  # noqa: E402

from kai.api.k8s import PodGroup  # noqa: E402
from kai.scheduler import RecordingCache, Scheduler  # noqa: E402
from kai.sim.loader import load_manifests  # noqa: E402
from kai.sim.simulator import _advance as advance, build_state  # noqa: E402

BASE = [node("n1", "a"), node("n2", "a"), node("n3", "b"),
        vpod("busy", node_name="n1", cpu="8"),             # makes n1 the bin-pack favourite
        storage_class("local"), storage_class("fast", provisioner="csi.example.com", zones=["b"]),
        storage_class("now", provisioner="csi.example.com", mode="Immediate")]


def run(docs, cycles=1):
    return simulate_docs(BASE + docs, config(), cycles=cycles)


def outcome(report, cycle=0):
    """{pod: (node, volumes)} and {pod group: reasons}."""
    c = report["cycles"][cycle]
    placed = {b["pod"].split("/")[1]: (b["node"], b.get("volumes", [])) for b in c["bindings"]}
    pending = {u["podGroup"]: " | ".join(u["reasons"]) for u in c["unschedulable"]}
    return placed, pending


def reason_of(pending, pod):
    got = [r for k, r in pending.items() if pod in k]
    assert got, f"{pod} is not pending: {pending}"
    return got[0]


# (id, extra docs, pod, expected node or None, expected volumes or reason substring)
CASES = [
    ("bound-pvc-follows-its-pv", [pv("pv2", on="n2", claim="data"), pvc("data", volume="pv2"), vpod("p", ["data"])],
     "p", "n2", []),
    ("missing-pvc-waits-named", [vpod("p", ["nope"])], "p", None, 'persistentvolumeclaim "nope" not found'),
    ("unbound-immediate-waits", [pvc("data", cls="now"), vpod("p", ["data"])], "p", None,
     'pod has unbound immediate PersistentVolumeClaims: "data"'),
    ("class-missing-is-immediate", [pvc("data", cls="ghost"), vpod("p", ["data"])], "p", None,
     "unbound immediate"),
    ("wffc-static-pv-on-n3", [pv("pv3", on="n3"), pvc("data"), vpod("p", ["data"])], "p", "n3",
     [{"claim": "default/data", "volume": "pv3"}]),
    ("wffc-smallest-fitting-pv", [pv("big", size="20Gi"), pv("mid", size="10Gi"), pv("small", size="4Gi"),
                                  pvc("data", size="9Gi"), vpod("p", ["data"])], "p", "n1",
     [{"claim": "default/data", "volume": "mid"}]),
    ("access-modes-must-be-offered", [pv("pv1", on="n1"), pvc("data", modes=("ReadWriteMany",)),
                                      vpod("p", ["data"])], "p", None,
     "didn't find available persistent volumes to bind"),
    ("selector-picks-labelled-pv", [pv("plain", on="n1"), pv("tier", on="n2", labels={"tier": "fast"}),
                                    pvc("data", selector={"matchLabels": {"tier": "fast"}}), vpod("p", ["data"])],
     "p", "n2", [{"claim": "default/data", "volume": "tier"}]),
    ("volume-mode-must-match", [pv("blk", on="n1", volume_mode="Block"), pv("fs", on="n2"), pvc("data"),
                                vpod("p", ["data"])], "p", "n2", [{"claim": "default/data", "volume": "fs"}]),
    ("already-claimed-pv-is-not-available", [pv("pv1", on="n1", claim="other"), pvc("data"), vpod("p", ["data"])],
     "p", None, "didn't find available persistent volumes to bind"),
    ("prebound-pv-is-the-only-match", [pv("mine", on="n2", claim="data", phase="Available"), pv("free", on="n1"),
                                       pvc("data"), vpod("p", ["data"])], "p", "n2",
     [{"claim": "default/data", "volume": "mine"}]),
    ("provision-in-allowed-topology", [pvc("data", cls="fast"), vpod("p", ["data"])], "p", "n3",
     [{"claim": "default/data", "provision": "n3"}]),
    ("no-provisioner-no-pv-waits", [pvc("data"), vpod("p", ["data"])], "p", None,
     "0/3 nodes fit: 3 node(s) didn't find available persistent volumes to bind"),
    ("selected-node-pins-claim", [pvc("data", cls="fast", selected="n3"), vpod("p", ["data"])], "p", "n3",
     [{"claim": "default/data", "provision": "n3"}]),
    ("selected-node-outside-topology-waits", [pvc("data", cls="fast", selected="n2"), vpod("p", ["data"])], "p", None,
     "didn't find available persistent volumes to bind"),
    ("zone-label-on-bound-pv", [pv("zb", zone_label="b", claim="data"), pvc("data", volume="zb"),
                                vpod("p", ["data"])], "p", "n3", []),
    ("bound-to-missing-pv-waits", [pvc("data", volume="ghost"), vpod("p", ["data"])], "p", None,
     'bound to persistentvolume "ghost", which does not exist'),
    ("lost-claim-waits", [pvc("data", volume="ghost", phase="Lost"), vpod("p", ["data"])], "p", None,
     'bound to non-existent persistentvolume "ghost"'),
    ("rwop-in-use-waits", [pv("pv1", claim="data"), pvc("data", volume="pv1", modes=("ReadWriteOncePod",)),
                           vpod("user", ["data"], node_name="n2"), vpod("p", ["data"])], "p", None,
     "ReadWriteOncePod access mode already in-use by another pod (claim data is used by pod default/user)"),
    ("rwo-shared-on-any-node", [pv("pv1", claim="data"), pvc("data", volume="pv1"),
                                vpod("user", ["data"], node_name="n2"), vpod("p", ["data"])], "p", "n1", []),
    ("csi-limit-sends-pod-away", [csinode("n1", "csi.example.com", 1), csinode("n2", "csi.example.com", 1),
                                  pv("old", claim="olddata", csi=("csi.example.com", "h-old")),
                                  pvc("olddata", volume="old"), vpod("user", ["olddata"], node_name="n1"),
                                  pv("new", claim="data", csi=("csi.example.com", "h-new")),
                                  pvc("data", volume="new"), vpod("p", ["data"])], "p", "n2", []),
    ("csi-limit-everywhere-waits", [csinode(n, "csi.example.com", 0) for n in ("n1", "n2", "n3")] +
     [pv("new", claim="data", csi=("csi.example.com", "h")), pvc("data", volume="new"), vpod("p", ["data"])],
     "p", None, "3 node(s) exceed max volume count"),
    ("csi-same-volume-is-not-new", [csinode("n1", "csi.example.com", 1), csinode("n2", "csi.example.com", 0),
                                    csinode("n3", "csi.example.com", 0),
                                    pv("shared", claim="data", csi=("csi.example.com", "h"), modes=("ReadWriteMany",)),
                                    pvc("data", volume="shared", modes=("ReadWriteMany",)),
                                    vpod("user", ["data"], node_name="n1"), vpod("p", ["data"])], "p", "n1", []),
    # consolidation may move "user" elsewhere, but it keeps its volume on n2 while it terminates:
    # p (whose only PV is on n2) must not be bound there now
    ("moving-a-pod-does-not-free-its-csi-slot",
     [csinode(n, "csi.example.com", 1) for n in ("n1", "n2", "n3")] +
     [pv("old", claim="olddata", csi=("csi.example.com", "h-old")), pvc("olddata", volume="old"),
      vpod("user", ["olddata"], node_name="n2"), pv("local2", on="n2"),
      storage_class("csi", provisioner="csi.example.com"), pvc("data", cls="local"),
      pvc("scratch", cls="csi"), vpod("p", ["data", "scratch"])],
     "p", None, "exceed max volume count"),
    ("volume-attachment-counts", [csinode("n1", "csi.example.com", 1),
                                  pv("att", csi=("csi.example.com", "h-att")),
                                  {"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
                                   "metadata": {"name": "va-1"},
                                   "spec": {"attacher": "csi.example.com", "nodeName": "n1",
                                            "source": {"persistentVolumeName": "att"}}},
                                  pv("new", claim="data", csi=("csi.example.com", "h-new")),
                                  pvc("data", volume="new"), vpod("p", ["data"])], "p", "n2", []),
    ("two-claims-need-two-pvs", [pv("a1", on="n1"), pv("b1", on="n2"), pv("b2", on="n2"), pvc("c1"), pvc("c2"),
                                 vpod("p", ["c1", "c2"])], "p", "n2",
     [{"claim": "default/c1", "volume": "b1"}, {"claim": "default/c2", "volume": "b2"}]),
    ("ephemeral-claim-made-and-bound", [pv("scratch", on="n3")],
     "p", "n3", [{"claim": "default/p-scratch", "volume": "scratch"}]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_volume_scenarios(case):
    _id, docs, who, want_node, want = case
    if _id == "ephemeral-claim-made-and-bound":
        docs = docs + [vpod("p", ephemeral={"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                                            "resources": {"requests": {"storage": "1Gi"}}})]
    placed, pending = outcome(run(docs))
    if want_node is None:
        assert who not in placed, placed
        assert want in reason_of(pending, who)
    else:
        assert placed.get(who, (None,))[0] == want_node, (placed, pending)
        assert placed[who][1] == want


def test_ephemeral_volume_counts_for_csi_limits():
    docs = [csinode(n, "csi.example.com", 0) for n in ("n1", "n2", "n3")]
    docs += [storage_class("csi", provisioner="csi.example.com"),
             vpod("p", ephemeral={"accessModes": ["ReadWriteOnce"], "storageClassName": "csi",
                                  "resources": {"requests": {"storage": "1Gi"}}})]
    placed, pending = outcome(run(docs))
    assert "p" not in placed
    assert "3 node(s) exceed max volume count" in reason_of(pending, "p")


def test_ephemeral_claim_of_another_pod_waits():
    claim = pvc("p-scratch")            # exists, but not created for pod p (no owner)
    docs = [claim, vpod("p", ephemeral={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}})]
    placed, pending = outcome(run(docs))
    assert "p" not in placed
    assert "PVC default/p-scratch was not created for pod default/p (pod is not owner)" in reason_of(pending, "p")


def test_two_pods_one_pv_never_share():
    placed, pending = outcome(run([pv("only", on="n2"), pvc("c1"), pvc("c2"), vpod("p1", ["c1"]), vpod("p2", ["c2"])]))
    assert [who for who in ("p1", "p2") if who in placed] == ["p1"]
    assert placed["p1"] == ("n2", [{"claim": "default/c1", "volume": "only"}])
    assert "didn't find available persistent volumes to bind" in reason_of(pending, "p2")


def test_two_pods_of_one_claim_follow_its_pv():
    """A claim decided for one pod is pre-bound for the next pod that mounts it (the assume cache)."""
    placed, _ = outcome(run([pv("only", on="n3", modes=("ReadWriteMany",)), pvc("c", modes=("ReadWriteMany",)),
                             vpod("p1", ["c"]), vpod("p2", ["c"])]))
    assert placed["p1"] == ("n3", [{"claim": "default/c", "volume": "only"}])
    assert placed["p2"] == ("n3", [{"claim": "default/c", "volume": "only"}])


def test_gang_rollback_gives_pvs_back():
    """A gang of two needs two PVs where one exists: nothing binds, and the single pod created
    after it gets the PV the gang tried first."""
    docs = [podgroup("gang", 2), pv("only", on="n2"), pvc("g0"), pvc("g1"), pvc("s"),
            vpod("g-0", ["g0"], group="gang"), vpod("g-1", ["g1"], group="gang"), vpod("single", ["s"])]
    placed, pending = outcome(run(docs))
    assert "g-0" not in placed and "g-1" not in placed
    assert placed["single"] == ("n2", [{"claim": "default/s", "volume": "only"}])
    assert "didn't find available persistent volumes to bind" in reason_of(pending, "gang")


def two_cycles(docs, later):
    """Cycle 1 over ``docs``; its results fed back as ``kai simulate --cycles`` does (bound pods
    run, their volume decisions carried out as the binder and PV controller would); then the
    pods ``later`` are created and cycle 2 runs. Returns (state, cycle 1 result, cycle 2 result)."""
    fd, path = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump_all(BASE + docs + later, f)
    try:
        m = load_manifests([path])
    finally:
        os.unlink(path)
    names = {d["metadata"]["name"] for d in later}
    held = [p for p in m.objects["Pod"] if p.metadata.name in names]
    m.objects["Pod"] = [p for p in m.objects["Pod"] if p.metadata.name not in names]
    state = build_state(m)
    sched = Scheduler(state, config())
    first = sched.run_cycle(RecordingCache(state), now=1e9)
    advance(state, first)
    for p in held:
        p = msgspec.structs.replace(p, metadata=msgspec.structs.replace(
            p.metadata, annotations={**p.metadata.annotations, "pod-group-name": "later"}))
        state.upsert_pod(p)
    state.upsert_podgroup(msgspec.convert(podgroup("later", len(held)), PodGroup))
    second = sched.run_cycle(RecordingCache(state), now=1e9 + 1)
    return state, first, second


def test_next_cycle_sees_the_binding():
    """Cycle 1 decides claim c1 -> PV "only"; fed back, the PV is bound to c1 and c1 to it. In cycle 2
    a pod mounting c1 follows the bound PV with nothing left to decide, and c2 finds no PV."""
    state, first, second = two_cycles([pv("only", on="n3"), pvc("c1"), pvc("c2"), vpod("p1", ["c1"])],
                                      [vpod("p2", ["c1"])])
    assert [(d.pod, d.node) for d in first.bindings] == [("default/p1", "n3")]
    pv_only, c1 = state.storage.volumes["only"], state.storage.claims["default/c1"]
    assert pv_only.spec.claim_ref.name == "c1" and pv_only.status.phase == "Bound"
    assert c1.spec.volume_name == "only" and c1.status.phase == "Bound"
    assert [(d.pod, d.node) for d in second.bindings] == [("default/p2", "n3")]
    assert state.pods[next(u for u, p in state.pods.items() if p.name == "p2")].volume_plan == ()


def test_provisioned_claim_pins_later_pods():
    """After claim c is provisioned on n2 (selected-node set; p1 could only go there), a pod created
    later that mounts it goes to n2 too, not to the bin-pack favourite n1: the claim is pinned there
    until the provisioner binds it."""
    state, first, second = two_cycles(
        [storage_class("any", provisioner="csi.example.com"), pvc("c", cls="any", modes=("ReadWriteMany",)),
         vpod("p1", ["c"], extra={"nodeSelector": {"kubernetes.io/hostname": "n2"}})],
        [vpod("p2", ["c"])])
    assert [(d.pod, d.node) for d in first.bindings] == [("default/p1", "n2")]
    assert state.storage.claims["default/c"].metadata.annotations["volume.kubernetes.io/selected-node"] == "n2"
    assert [(d.pod, d.node) for d in second.bindings] == [("default/p2", "n2")]


# ---------------------------------------------------------------------------- properties
NODES = ["n1", "n2", "n3", "n4"]
ZONES = {"n1": "a", "n2": "a", "n3": "b", "n4": "b"}


@st.composite
def clusters(draw):
    """Random nodes, classes, PVs, claims and pods; every pod its own job, resources plentiful, so
    only volume rules keep a pod waiting."""
    docs = [node(n, ZONES[n], cpu="64") for n in NODES]
    docs += [storage_class("local"), storage_class("fast", provisioner="csi.example.com", zones=["b"]),
             storage_class("now", provisioner="csi.example.com", mode="Immediate")]
    limit = draw(st.sampled_from([None, 1, 2]))
    if limit is not None:
        docs += [csinode(n, "csi.example.com", limit) for n in NODES]
    n_pv = draw(st.integers(0, 7))
    for i in range(n_pv):
        docs.append(pv(f"pv{i}", size=draw(st.sampled_from(["1Gi", "5Gi", "10Gi"])),
                       on=draw(st.sampled_from([None, *NODES])),
                       modes=draw(st.sampled_from([("ReadWriteOnce",), ("ReadWriteMany",), ("ReadWriteOncePod",)])),
                       labels={"tier": "fast"} if draw(st.booleans()) else {},
                       csi=("csi.example.com", f"h{i}") if draw(st.booleans()) else None,
                       zone_label=draw(st.sampled_from([None, "a", "b"]))))
    claims = []
    # pods already running with bound claims: ReadWriteOncePod users and CSI volumes on their nodes
    for i in range(draw(st.integers(0, 3))):
        on = draw(st.sampled_from(NODES))
        modes = draw(st.sampled_from([("ReadWriteOnce",), ("ReadWriteOncePod",), ("ReadWriteMany",)]))
        docs.append(pv(f"bpv{i}", on=draw(st.sampled_from([None, on])), claim=f"b{i}", modes=modes,
                       csi=("csi.example.com", f"bh{i}") if draw(st.booleans()) else None))
        docs.append(pvc(f"b{i}", modes=modes, volume=f"bpv{i}"))
        docs.append(vpod(f"r{i}", [f"b{i}"], node_name=on))
        claims.append(f"b{i}")
    n_claims = draw(st.integers(1, 6))
    for i in range(n_claims):
        cls = draw(st.sampled_from(["local", "local", "fast", "now"]))
        modes = draw(st.sampled_from([("ReadWriteOnce",), ("ReadWriteMany",), ("ReadWriteOncePod",)]))
        sel = {"matchLabels": {"tier": "fast"}} if draw(st.integers(0, 4)) == 0 else None
        docs.append(pvc(f"c{i}", size=draw(st.sampled_from(["1Gi", "4Gi", "8Gi"])), cls=cls, modes=modes,
                        selector=sel, selected=draw(st.sampled_from([None, None, None, *NODES]))
                        if cls == "fast" else None))
        claims.append(f"c{i}")
    n_pods = draw(st.integers(1, 6))
    for i in range(n_pods):
        mine = draw(st.lists(st.sampled_from(claims), min_size=1, max_size=2, unique=True))
        docs.append(vpod(f"p{i}", mine))
    return docs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_properties_against_the_reference(docs):
    report = simulate_docs(docs, config())
    world = ref.World.from_docs(docs)
    placed = report["cycles"][0]["bindings"]
    # replay kai's decisions in order: each must be one kube-scheduler's rules allow on that node,
    # with the very same volume decisions
    for b in placed:
        name = b["pod"].split("/")[1]
        ok, plan = world.filter(name, b["node"])
        assert ok, (b, world.reasons(name, b["node"]))
        assert plan == b.get("volumes", []), (b, plan)
        world.assume(name, b["node"], plan)
    world.check_invariants()
    # nothing left waiting that fits somewhere (the rules are monotone within a cycle)
    bound = {b["pod"].split("/")[1] for b in placed}
    for name in world.pods:
        if name not in bound and name not in world.initially_running:
            fits = [n for n in NODES if world.filter(name, n)[0]]
            assert not fits, (name, fits)


def test_docs_example():
    """docs/examples/volumes.yaml, as docs/volumes.md shows it."""
    from kai.sim.simulator import simulate
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "examples", "volumes.yaml")
    report = simulate(load_manifests([path]), config())
    cyc = report["cycles"][0]
    assert {b["pod"]: (b["node"], b["volumes"]) for b in cyc["bindings"]} == {
        "shop/db-0": ("node-a1", [{"claim": "shop/data-db-0", "volume": "local-a1"}]),
        "shop/db-1": ("node-b1", [{"claim": "shop/data-db-1", "volume": "local-b1"}]),
        "shop/train": ("node-b1", [{"claim": "shop/train-scratch", "provision": "node-b1"}])}
    reasons = {u["podGroup"].split("/")[1].split("-uid")[0]: u["reasons"][0] for u in cyc["unschedulable"]}
    assert reasons == {
        "pg-db-2": "pod shop/db-2: 0/3 nodes fit: 3 node(s) didn't find available persistent volumes to bind",
        "pg-web": "pod shop/web: Missing required configmaps: [web-settings]"}
