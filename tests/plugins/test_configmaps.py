"""KAI's ConfigMap predicate (kai.plugins.configmaps): which references make a ConfigMap required,
the GPU-sharing exemption, and pods waiting with KAI's reason in ``kai simulate``."""
from __future__ import annotations

import os
import sys

import msgspec
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "actions"))
from scenario_builder import config, simulate_docs  # noqa: E402
from volume_builders import node, vpod  # noqa: E402

from kai.api.k8s import Pod  # noqa: E402
from kai.api.pod_info import PodInfo  # noqa: E402
from kai.api.resources import ResourceRegistry  # noqa: E402
from kai.api.storage import ConfigMap  # noqa: E402
from kai.cache.storage_store import StorageStore  # noqa: E402
from kai.plugins.configmaps import ConfigMapPredicate, required_config_maps  # noqa: E402


def pod(spec: dict, annotations: dict | None = None) -> Pod:
    return msgspec.convert({"metadata": {"name": "p", "namespace": "ns", "annotations": annotations or {}},
                            "spec": spec}, Pod)


def env_from(name, optional=None):
    ref = {"name": name, **({"optional": optional} if optional is not None else {})}
    return {"configMapRef": ref}


@pytest.mark.parametrize("spec,want", [
    ({"containers": [{"name": "c", "envFrom": [env_from("a")]}]}, ["a"]),
    ({"containers": [{"name": "c", "envFrom": [env_from("a", True)]}]}, []),
    ({"containers": [{"name": "c", "envFrom": [env_from("a", False)]}]}, ["a"]),
    ({"containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "k", "key": "x"}}},
                                           {"name": "Y", "value": "plain"}]}]}, ["k"]),
    ({"initContainers": [{"name": "i", "envFrom": [env_from("init")]}],
      "ephemeralContainers": [{"name": "e", "envFrom": [env_from("debug")]}],
      "containers": [{"name": "c"}]}, ["init", "debug"]),
    # volumes count only when some container mounts them
    ({"volumes": [{"name": "v", "configMap": {"name": "vol"}}], "containers": [{"name": "c"}]}, []),
    ({"volumes": [{"name": "v", "configMap": {"name": "vol"}}],
      "containers": [{"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]}, ["vol"]),
    ({"volumes": [{"name": "v", "configMap": {"name": "vol", "optional": True}}],
      "initContainers": [{"name": "i", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]}, []),
    ({"volumes": [{"name": "v", "projected": {"sources": [{"configMap": {"name": "p1"}},
                                                          {"configMap": {"name": "p2", "optional": True}}]}}],
      "containers": [{"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]}, ["p1"]),
    ({"containers": [{"name": "c", "envFrom": [env_from("a")]}, {"name": "d", "envFrom": [env_from("a")]}]}, ["a"]),
])
def test_required_config_maps(spec, want):
    assert required_config_maps(pod(spec)) == want


def test_shared_gpu_configmaps_are_exempt():
    spec = {"containers": [{"name": "c", "envFrom": [env_from("train-abc1234-shared-gpu-0"), env_from("other")]}]}
    assert required_config_maps(pod(spec, {"runai/shared-gpu-configmap": "train-abc1234-shared-gpu"})) == ["other"]
    assert required_config_maps(pod(spec)) == ["train-abc1234-shared-gpu-0", "other"]


def test_predicate_reads_the_store_per_namespace():
    store = StorageStore()
    cm = msgspec.convert({"metadata": {"name": "a", "namespace": "ns"}}, ConfigMap)
    task = PodInfo(pod({"containers": [{"name": "c", "envFrom": [env_from("a"), env_from("b")]}]}), ResourceRegistry())
    pred = ConfigMapPredicate(store)
    assert pred(task, None) == "pod ns/p: Missing required configmaps: [a b]"
    store.apply("ConfigMap", "ADDED", cm)
    assert ConfigMapPredicate(store)(task, None) == "pod ns/p: Missing required configmaps: [b]"
    other_ns = msgspec.structs.replace(cm, metadata=msgspec.structs.replace(cm.metadata, name="b", namespace="x"))
    store.apply("ConfigMap", "ADDED", other_ns)
    assert ConfigMapPredicate(store)(task, None) == "pod ns/p: Missing required configmaps: [b]"
    store.apply("ConfigMap", "DELETED", cm)
    assert ConfigMapPredicate(store)(task, None) == "pod ns/p: Missing required configmaps: [a b]"


def test_simulate_pods_wait_for_missing_configmaps():
    docs = [node("n1"), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "have"}},
            vpod("ok", extra={"volumes": [{"name": "cfg", "configMap": {"name": "have"}}],
                              "containers": [{"name": "c", "volumeMounts": [{"name": "cfg", "mountPath": "/c"}]}]}),
            vpod("missing", extra={"containers": [{"name": "c", "envFrom": [env_from("gone")],
                                                   "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {
                                                       "name": "gone2", "key": "k"}}}]}]}),
            vpod("optional", extra={"containers": [{"name": "c", "envFrom": [env_from("gone", True)]}]}),
            vpod("unmounted", extra={"volumes": [{"name": "cfg", "configMap": {"name": "gone"}}]})]
    report = simulate_docs(docs, config())
    placed = {b["pod"] for b in report["cycles"][0]["bindings"]}
    assert placed == {"default/ok", "default/optional", "default/unmounted"}
    (pending,) = report["cycles"][0]["unschedulable"]
    assert pending["reasons"] == ["pod default/missing: Missing required configmaps: [gone2 gone]"]
