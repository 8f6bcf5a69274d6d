"""Manifest builders for the proportion / queue-order tests (plain dicts -> kai.sim).

Units in the builders: gpu devices, cpu cores (pod requests) or millicores (queue quotas,
as in KAI's Queue spec), memory "Gi" strings for pods and MB for queue quotas.
"""
from __future__ import annotations

import datetime as dt
import json

from kai.cache.cluster_state import ClusterState
from kai.config import DEFAULT_PLUGINS, PluginConf, SchedulerConfig
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.loader import load_manifests
from kai.sim.simulator import build_state, simulate

START = 1_704_067_200.0 + 3600


def _ts(offset: float) -> str:
    return dt.datetime.fromtimestamp(START - 100000 + offset, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node(name: str, gpu: int = 8, cpu: str = "64", memory: str = "512Gi", ready: bool = True) -> dict:
    alloc = {"cpu": cpu, "memory": memory, "nvidia.com/gpu": str(gpu), "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"allocatable": alloc, "capacity": alloc,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def res(quota: float = -1, limit: float = -1, weight: float = 1) -> dict:
    return {"quota": quota, "limit": limit, "overQuotaWeight": weight}


def queue(name: str, parent: str = "", gpu: dict | None = None, cpu: dict | None = None,
          memory: dict | None = None, priority: int | None = None, created: int = 0) -> dict:
    spec: dict = {"resources": {"gpu": gpu or res(), "cpu": cpu or res(), "memory": memory or res()}}
    if parent:
        spec["parentQueue"] = parent
    if priority is not None:
        spec["priority"] = priority
    return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue",
            "metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": _ts(created)}, "spec": spec}


def job(name: str, queue: str, pods: int = 1, gpu: float = 1, cpu: str | None = None,
        memory: str | None = None, running: list[str] | None = None, min_member: int | None = None,
        priority_class: str = "train", created: int = 0, scheduler: str = "kai-scheduler") -> list[dict]:
    """A PodGroup and ``pods`` pods; the first ``len(running)`` run on those nodes."""
    running = list(running or [])
    out = []
    if scheduler == "kai-scheduler":
        out.append({"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
                    "metadata": {"name": name, "namespace": "default", "creationTimestamp": _ts(created)},
                    "spec": {"minMember": pods if min_member is None else min_member, "queue": queue,
                             "priorityClassName": priority_class}})
    req = {}
    if gpu:
        req["nvidia.com/gpu"] = str(gpu)
    if cpu:
        req["cpu"] = cpu
    if memory:
        req["memory"] = memory
    for i in range(pods):
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{name}-{i}", "namespace": "default", "creationTimestamp": _ts(created),
                            "annotations": {"pod-group-name": name}, "labels": {"kai.scheduler/queue": queue}},
               "spec": {"schedulerName": scheduler, "priorityClassName": priority_class,
                        "containers": [{"name": "c", "resources": {"requests": dict(req)}}]},
               "status": {"phase": "Pending"}}
        if i < len(running):
            pod["spec"]["nodeName"] = running[i]
            pod["status"] = {"phase": "Running"}
        out.append(pod)
    return out


def config(actions: str = "allocate", **plugin_args) -> SchedulerConfig:
    plugins = [PluginConf(n, {k: str(v) for k, v in plugin_args.get(n, {}).items()}) for n in DEFAULT_PLUGINS]
    return SchedulerConfig(actions=[a.strip() for a in actions.split(",") if a.strip()], plugins=plugins)


def manifests(tmp_path, nodes, queues, jobs):
    objs = list(nodes) + list(queues) + [o for j in jobs for o in j]
    path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    return load_manifests([str(path)])


def run(tmp_path, nodes, queues, jobs, actions: str = "allocate", cycles: int = 1, **plugin_args) -> dict:
    return simulate(manifests(tmp_path, nodes, queues, jobs), config(actions, **plugin_args),
                    cycles=cycles, start_time=START)


def open_session(tmp_path, nodes, queues, jobs, **plugin_args):
    """An opened Session (plugins registered, no action run)."""
    state: ClusterState = build_state(manifests(tmp_path, nodes, queues, jobs))
    return Scheduler(state, config("allocate", **plugin_args)).open_session(RecordingCache(state), START)


def fair(report: dict, resource: str = "gpu") -> dict:
    return {q["name"]: q["fairShare"][resource] for q in report["queues"]}


def allocated(report: dict, resource: str = "gpu") -> dict:
    return {q["name"]: q["allocated"][resource] for q in report["queues"]}


def bound(report: dict, cycle: int = 0) -> list[str]:
    """Bound pods (without namespace) in binding order."""
    return [b["pod"].split("/", 1)[1] for b in report["cycles"][cycle]["bindings"]]
