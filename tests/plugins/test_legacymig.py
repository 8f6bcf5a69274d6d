"""Legacy MIG pods (a MIG instance asked for in an annotation): never scheduled, and their
node takes no new MIG pods (KAI's PredicateByNodeResourcesType), through ``kai simulate``."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "actions"))

from scenario_builder import bindings, config, job, node, queue, simulate_docs, unschedulable  # noqa: E402

from kai.plugins.legacymig import NODES_REASON  # noqa: E402

MIG = "nvidia.com/mig-1g.10gb"
LEGACY = {MIG: "1"}


def mig_node(name, instances=2):
    n = node(name, gpu=0, labels={"nvidia.com/mig.strategy": "mixed",
                                  "node-role.kubernetes.io/mig-enabled": "true"})
    n["status"]["allocatable"][MIG] = str(instances)
    return n


def mig_job(name, instances=1, **kw):
    docs = job(name, **kw)
    for d in docs:
        if d["kind"] == "Pod":
            d["spec"]["containers"][0]["resources"]["requests"][MIG] = str(instances)
    return docs


def legacy_on(name, node_name, annotations=None):
    return job(name, running_on=(node_name,), annotations=dict(LEGACY if annotations is None else annotations))


# (id, legacy pods as (job, node), the new MIG job's instances, where it may land)
CASES = [
    ("mig-pod-avoids-the-legacy-node", [("old", "a")], 1, {"b"}),
    ("every-node-has-a-legacy-pod", [("old", "a"), ("old2", "b")], 1, set()),
    ("no-legacy-pod-anywhere", [], 1, {"a", "b"}),
]


@pytest.mark.parametrize("legacy,instances,where", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mig_pods_never_join_a_legacy_mig_pod(legacy, instances, where):
    docs = [mig_node("a"), mig_node("b"), queue("q")]
    docs += [legacy_on(j, n) for j, n in legacy]
    docs += [mig_job("new", instances)]
    report = simulate_docs(docs, config(actions=["allocate"]))
    got = bindings(report)
    if where:
        assert got.get("default/new-0") in where, got
    else:
        assert "default/new-0" not in got
        assert NODES_REASON in unschedulable(report)["default/new"]


def test_a_pending_legacy_mig_pod_waits_with_the_reason():
    docs = [mig_node("a"), queue("q"), job("lone", annotations=LEGACY)]
    report = simulate_docs(docs, config(actions=["allocate"]))
    assert bindings(report) == {}
    why = unschedulable(report)["default/lone"]
    assert "legacy MIG pod" in why and f"{MIG}: 1" in why


def test_other_pods_still_use_a_node_with_a_legacy_mig_pod():
    docs = [mig_node("a"), queue("q"), legacy_on("old", "a"), job("cpu", cpu="2")]
    assert bindings(simulate_docs(docs, config(actions=["allocate"]))) == {"default/cpu-0": "a"}


@pytest.mark.parametrize("value", ["1.5", "one", "", "1Gi"])
def test_an_annotation_without_an_integer_is_not_a_legacy_pod(value):
    """As KAI: the value must parse as a base-10 integer, else the annotation is ignored."""
    docs = [mig_node("a"), queue("q"), legacy_on("old", "a", {MIG: value}), mig_job("new"),
            job("plain", annotations={MIG: value})]
    got = bindings(simulate_docs(docs, config(actions=["allocate"])))
    assert got == {"default/new-0": "a", "default/plain-0": "a"}


def test_the_legacy_pod_s_instance_counts_in_its_queue():
    """The annotated instance is the pod's request (as in KAI): a MIG 1g instance counts one
    GPU of its queue's quota, so a queue limited to one GPU has none left for a whole-GPU job."""
    docs = [mig_node("a"), node("g", gpu=4), queue("q", gpu=(1, 1)), legacy_on("old", "a"), job("new", gpu=1)]
    report = simulate_docs(docs, config(actions=["allocate"]))
    assert bindings(report) == {}
    assert "limit" in unschedulable(report)["default/new"].lower()
    docs = [mig_node("a"), node("g", gpu=4), queue("q", gpu=(1, 1)), job("old", running_on=("a",)), job("new", gpu=1)]
    assert bindings(simulate_docs(docs, config(actions=["allocate"]))) == {"default/new-0": "g"}
