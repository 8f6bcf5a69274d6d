"""Small declarative builder for action scenarios: nodes, queues, jobs in; the simulate report out.

Used by test_preempt / test_reclaim / test_stale_gang_eviction / test_solver. A job is
``job(name, queue, pods=..., gpu=..., running=[node, ...])``: the first ``len(running)``
pods run on those nodes, the rest are pending.
"""
from __future__ import annotations

import json
import os
import tempfile

from kai.config import DEFAULT_PLUGINS, PluginConf, SchedulerConfig
from kai.sim.loader import load_manifests
from kai.sim.simulator import simulate

START = 1_704_067_200.0 + 3600       # simulate()'s default clock


def node(name: str, gpu: int = 8, cpu: str = "64", memory: str = "512Gi") -> dict:
    alloc = {"cpu": cpu, "memory": memory, "nvidia.com/gpu": str(gpu), "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"allocatable": alloc, "capacity": alloc,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def queue(name: str, parent: str = "", gpu_quota: float = -1, gpu_limit: float = -1, weight: float = 1,
          preempt_min_runtime: str | None = None, reclaim_min_runtime: str | None = None,
          priority: int | None = None) -> dict:
    open_ = {"quota": -1, "limit": -1, "overQuotaWeight": weight}
    spec: dict = {"resources": {"gpu": {"quota": gpu_quota, "limit": gpu_limit, "overQuotaWeight": weight},
                                "cpu": open_, "memory": open_}}
    if parent:
        spec["parentQueue"] = parent
    if preempt_min_runtime:
        spec["preemptMinRuntime"] = preempt_min_runtime
    if reclaim_min_runtime:
        spec["reclaimMinRuntime"] = reclaim_min_runtime
    if priority is not None:
        spec["priority"] = priority
    return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": name}, "spec": spec}


def job(name: str, queue: str, pods: int = 1, gpu: float = 1, min_member: int | None = None,
        priority_class: str = "train", running: list[str] | None = None, preemptible: str = "",
        last_start: float | None = None, stale_since: float | None = None, succeeded: int = 0,
        created: int | None = None) -> list[dict]:
    """A PodGroup and its pods. ``last_start``/``stale_since`` are offsets (s) from START."""
    running = list(running or [])
    ann = {}
    if last_start is not None:
        ann["kai.scheduler/last-start-timestamp"] = _ts(START + last_start)
    if stale_since is not None:
        ann["kai.scheduler/stale-podgroup-timestamp"] = _ts(START + stale_since)
    meta: dict = {"name": name, "namespace": "default", "annotations": ann}
    if created is not None:
        meta["creationTimestamp"] = _ts(START - 100000 + created)
    spec = {"minMember": pods if min_member is None else min_member, "queue": queue,
            "priorityClassName": priority_class}
    if preemptible:
        spec["preemptibility"] = preemptible
    out = [{"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": meta, "spec": spec}]
    for i in range(pods):
        pmeta = {"name": f"{name}-{i}", "namespace": "default", "annotations": {"pod-group-name": name},
                 "labels": {"kai.scheduler/queue": queue}}
        if created is not None:
            pmeta["creationTimestamp"] = _ts(START - 100000 + created)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": pmeta,
               "spec": {"schedulerName": "kai-scheduler", "priorityClassName": priority_class,
                        "containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": str(gpu)}}}]},
               "status": {"phase": "Pending"}}
        if i < succeeded:
            pod["status"] = {"phase": "Succeeded"}
        elif i - succeeded < len(running):
            pod["spec"]["nodeName"] = running[i - succeeded]
            pod["status"] = {"phase": "Running"}
        out.append(pod)
    return out


def _ts(t: float) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def config(actions: str = "allocate, reclaim, preempt, stalegangeviction", **plugin_args) -> SchedulerConfig:
    """KAI's default plugin list; ``minruntime={...}`` etc. set a plugin's arguments."""
    plugins = [PluginConf(n, {k: str(v) for k, v in plugin_args.get(n, {}).items()}) for n in DEFAULT_PLUGINS]
    return SchedulerConfig(actions=[a.strip() for a in actions.split(",") if a.strip()], plugins=plugins)


def manifests(nodes: list[dict], queues: list[dict], jobs: list[list[dict]]):
    objs = list(nodes) + list(queues) + [o for j in jobs for o in j]
    fd, path = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": objs}, f)
        return load_manifests([path])
    finally:
        os.unlink(path)


def run(nodes, queues, jobs, actions: str = "allocate, reclaim, preempt, stalegangeviction",
        cycles: int = 1, interval: float = 1.0, grace: float | None = None, drop_plugins=(),
        **plugin_args) -> dict:
    cfg = config(actions, **plugin_args)
    cfg.plugins = [p for p in cfg.plugins if p.name not in drop_plugins]
    if grace is not None:
        cfg.default_staleness_grace_period = grace
    return simulate(manifests(nodes, queues, jobs), cfg, cycles=cycles, interval=interval, start_time=START)


def evicted(report: dict, cycle: int = 0) -> list[str]:
    return sorted(e["pod"].split("/", 1)[1] for e in report["cycles"][cycle]["evictions"])


def evicted_by(report: dict, cycle: int = 0) -> dict[str, str]:
    return {e["pod"].split("/", 1)[1]: e["action"] for e in report["cycles"][cycle]["evictions"]}


def bound(report: dict, cycle: int = 0) -> list[str]:
    return sorted(b["pod"].split("/", 1)[1] for b in report["cycles"][cycle]["bindings"])


def pipelined(report: dict, cycle: int = 0) -> list[str]:
    return sorted(p.split("/", 1)[1] for p in report["cycles"][cycle]["pipelined"])
