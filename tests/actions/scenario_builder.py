"""Tiny manifest builder for scenario tables: nodes, queues and jobs as plain dicts.

``simulate_docs(docs)`` writes them to a temporary YAML file and runs ``kai.sim`` on it, so
the tests exercise exactly what ``kai simulate`` does (loader defaults included).
"""
from __future__ import annotations

import os
import tempfile

import yaml

from kai.config import PluginConf, default_config
from kai.sim.loader import load_manifests
from kai.sim.simulator import simulate

SCHEDULER = "kai-scheduler"


def node(name, gpu=8, cpu="64", memory="512Gi", pods=110, labels=None, taints=None, unschedulable=False,
         ready=True):
    alloc = {"cpu": str(cpu), "memory": memory, "pods": str(pods)}
    if gpu:
        alloc["nvidia.com/gpu"] = str(gpu)
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": dict(labels or {})},
            "spec": {"unschedulable": unschedulable, "taints": list(taints or [])},
            "status": {"allocatable": alloc,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def _res(v):
    if v is None:
        return {"quota": -1, "limit": -1, "overQuotaWeight": 1}
    quota, limit = v
    return {"quota": quota, "limit": limit, "overQuotaWeight": 1}


def queue(name, parent="", gpu=None, cpu=None, memory=None):
    """gpu/cpu/memory: (quota, limit) or None for unlimited (-1, -1)."""
    spec = {"resources": {"gpu": _res(gpu), "cpu": _res(cpu), "memory": _res(memory)}}
    if parent:
        spec["parentQueue"] = parent
    return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": name}, "spec": spec}


def pod(name, group, gpu=0, cpu="1", memory="1Gi", ns="default", node_name="", deleting=False,
        annotations=None, node_selector=None, tolerations=None, affinity=None, phase=None, labels=None,
        extra_spec=None, ports=None):
    """``extra_spec`` is merged into the pod spec (topologySpreadConstraints, ...); ``ports`` are
    the main container's ports."""
    req = {"cpu": str(cpu), "memory": memory}
    if gpu:
        req["nvidia.com/gpu"] = str(gpu)
    meta = {"name": name, "namespace": ns, "annotations": {"pod-group-name": group, **(annotations or {})}}
    if labels:
        meta["labels"] = dict(labels)
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    spec = {"schedulerName": SCHEDULER, "containers": [{"name": "main", "resources": {"requests": req}}]}
    if node_name:
        spec["nodeName"] = node_name
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = list(tolerations)
    if affinity:
        spec["affinity"] = affinity
    if ports:
        spec["containers"][0]["ports"] = list(ports)
    spec.update(extra_spec or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": {"phase": phase or ("Running" if node_name else "Pending")}}


def job(name, queue="q", pods=1, min_member=None, gpu=0, cpu="1", memory="1Gi", priority_class="",
        preemptibility="", ns="default", running_on=(), deleting=False, created=None, **pod_kw):
    """A PodGroup and its pods. ``running_on`` puts the first pods on those nodes (Running)."""
    pg = {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
          "metadata": {"name": name, "namespace": ns},
          "spec": {"minMember": pods if min_member is None else min_member, "queue": queue}}
    if priority_class:
        pg["spec"]["priorityClassName"] = priority_class
    if preemptibility:
        pg["spec"]["preemptibility"] = preemptibility
    if created:
        pg["metadata"]["creationTimestamp"] = created
    docs = [pg]
    for i in range(pods):
        on = running_on[i] if i < len(running_on) else ""
        docs.append(pod(f"{name}-{i}", name, gpu=gpu, cpu=cpu, memory=memory, ns=ns, node_name=on,
                        deleting=deleting and bool(on), **pod_kw))
    return docs


def config(gpu="binpack", cpu="binpack", actions=None):
    cfg = default_config()
    for p in cfg.plugins:
        if p.name == "nodeplacement":
            p.arguments = {"gpu": gpu, "cpu": cpu}
    if not any(p.name == "nodeplacement" for p in cfg.plugins):
        cfg.plugins.append(PluginConf("nodeplacement", {"gpu": gpu, "cpu": cpu}))
    if actions is not None:
        cfg.actions = list(actions)
    return cfg


def flatten(items):
    out = []
    for it in items:
        if isinstance(it, list):
            out.extend(flatten(it))
        else:
            out.append(it)
    return out


def simulate_docs(docs, cfg=None, cycles=1):
    docs = flatten(docs)
    fd, path = tempfile.mkstemp(suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
        return simulate(load_manifests([path]), cfg or config(), cycles=cycles)
    finally:
        os.unlink(path)


def bindings(report, cycle=0):
    """{pod key: node} of one cycle."""
    return {b["pod"]: b["node"] for b in report["cycles"][cycle]["bindings"]}


def unschedulable(report, cycle=0):
    """{podGroup key: joined reasons} of one cycle."""
    return {u["podGroup"]: " | ".join(u["reasons"]) for u in report["cycles"][cycle]["unschedulable"]}
