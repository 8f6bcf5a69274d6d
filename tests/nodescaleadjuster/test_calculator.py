"""kai.nodescaleadjuster.calculator: KAI's node-scale-adjuster rules, pod by pod."""
from __future__ import annotations

import msgspec
import pytest

from kai.api.k8s import Pod
from kai.nodescaleadjuster.calculator import (Settings, is_unschedulable, needed_devices, plan, pods_to_scale,
                                              scaling_pod_manifest, scaling_pod_name, target_of)

S = Settings(image="img", command=("/bin/true",))
UNSCHED = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]


def pod(name, ann=None, conds=UNSCHED, node="", sched="kai-scheduler", phase="Pending", created="2026-01-01T00:00:00Z",
        spec_extra=None):
    return msgspec.convert({
        "metadata": {"name": name, "namespace": "team", "annotations": ann or {}, "creationTimestamp": created},
        "spec": {"schedulerName": sched, "nodeName": node,
                 "containers": [{"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}},
                                {"name": "b", "resources": {"requests": {"cpu": "1"}}}], **(spec_extra or {})},
        "status": {"phase": phase, "conditions": conds}}, Pod)


def scaling_for(p, gpus=1, phase="Pending"):
    m = scaling_pod_manifest(p, gpus, S)
    m["status"] = {"phase": phase}
    return msgspec.convert(m, Pod)


def half(name, **kw):
    return pod(name, {"gpu-fraction": "0.5"}, **kw)


def test_which_pods_count():
    pods = [half("a"), half("bound", node="n1"), half("judged-not", conds=[]), half("other", sched="default-scheduler"),
            half("done", phase="Failed"), pod("whole"), pod("mem", {"gpu-memory": "2000"}),
            pod("bad", {"gpu-fraction": "1.5"}),
            half("ok-later", conds=[{"type": "PodScheduled", "status": "False", "reason": "SchedulerError"}])]
    assert [p.metadata.name for p in pods_to_scale(pods, S)] == ["a", "mem"]
    assert is_unschedulable(pods[0]) and not is_unschedulable(pods[2])


@pytest.mark.parametrize("anns, gpus", [
    ([{"gpu-fraction": "0.5"}] * 2, 1),
    ([{"gpu-fraction": "0.5"}] * 3, 2),
    ([{"gpu-fraction": "0.333"}] * 3, 1),        # hundredths: 0.33 x 3 = 0.99
    ([{"gpu-fraction": "0.25", "gpu-fraction-num-devices": "4"}], 1),
    ([{"gpu-memory": "4000"}] * 10, 1),          # 0.1 GPU per gpu-memory pod
    ([{"gpu-memory": "4000"}] * 11, 2),
])
def test_needed_devices(anns, gpus):
    assert needed_devices([pod(f"p{i}", a) for i, a in enumerate(anns)], 0.1) == gpus


def test_scaling_pod_shape():
    p = pod("trainer", {"gpu-fraction": "0.5", "gpu-fraction-num-devices": "2"},
            spec_extra={"nodeSelector": {"pool": "a100"}, "tolerations": [{"key": "gpu", "operator": "Exists"}],
                        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [
                                {"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}})
    m = scaling_pod_manifest(p, 2, S)
    assert m["metadata"]["name"] == "team-trainer" and m["metadata"]["namespace"] == "kai-scale-adjust"
    assert m["metadata"]["labels"] == {"app": "scaling-pod", "shared-gpu-pod-name": "trainer",
                                       "shared-gpu-pod-namespace": "team"}
    assert "schedulerName" not in m["spec"] and m["spec"]["restartPolicy"] == "OnFailure"
    c = m["spec"]["containers"][0]
    assert c["resources"] == {"requests": {"nvidia.com/gpu": "2", "cpu": "1250m", "memory": "1073741824"},
                              "limits": {"nvidia.com/gpu": "2"}}
    assert c["command"] == ["/bin/true"] and m["spec"]["serviceAccountName"] == "scaling-pod"
    assert m["spec"]["nodeSelector"] == {"pool": "a100"}
    assert m["spec"]["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    terms = m["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["z1"]
    assert target_of(msgspec.convert(m, Pod)) == ("team", "trainer")


def test_long_names_stay_valid():
    name = "x" * 200
    sp = scaling_pod_manifest(pod(name, {"gpu-fraction": "0.5"}), 1, S)
    assert len(sp["metadata"]["name"]) <= 253 and sp["metadata"]["name"] == scaling_pod_name("team", name)
    assert "shared-gpu-pod-name" not in sp["metadata"]["labels"]         # too long for a label value
    assert target_of(msgspec.convert(sp, Pod)) == ("team", name)          # the annotation still says it
    assert len(scaling_pod_name("n" * 63, "p" * 253)) <= 253


def test_plan_one_scaling_pod_for_two_halves():
    a, b = half("a", created="2026-01-01T00:00:00Z"), half("b", created="2026-01-01T00:00:01Z")
    p = plan([a, b], [], S, cooling_down=False)
    assert p.needed == 1 and [(x.metadata.name, n) for x, n in p.create] == [("a", 1)] and not p.delete
    # next pass: the scaling pod exists, nothing more is needed
    p2 = plan([a, b], [scaling_for(a)], S, cooling_down=False)
    assert not p2.create and not p2.delete
    # a third half: now 2 GPUs are needed and only 1 is asked for
    c = half("c", created="2026-01-01T00:00:02Z")
    p3 = plan([a, b, c], [scaling_for(a)], S, cooling_down=False)
    assert [x.metadata.name for x, _ in p3.create] == ["b"]


def test_plan_more_devices_than_any_scaling_pod():
    a = half("a")
    multi = pod("m", {"gpu-fraction": "0.1", "gpu-fraction-num-devices": "3"}, created="2026-01-01T00:00:05Z")
    p = plan([a, multi], [scaling_for(a)], S, cooling_down=False)
    assert [(x.metadata.name, n) for x, n in p.create] == [("m", 3)]


def test_plan_deletes_and_cools_down():
    a, b = half("a"), half("b")
    placed = half("a", node="n1")
    gone = scaling_for(half("gone"))
    done = scaling_for(b, phase="Succeeded")
    p = plan([placed, b], [scaling_for(a), gone, done], S, cooling_down=False)
    assert sorted(p.delete) == ["team-a", "team-b", "team-gone"]
    assert not p.create                                   # a deletion starts the cool-down
    assert not plan([b], [], S, cooling_down=True).create
    assert [x.metadata.name for x, _ in plan([b], [], S, cooling_down=False).create] == ["b"]
    # no longer judged unschedulable (e.g. being bound): not needed either
    assert plan([half("a", conds=[])], [scaling_for(a)], S, cooling_down=False).delete == ["team-a"]
