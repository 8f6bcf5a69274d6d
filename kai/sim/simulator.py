"""Build a ClusterState from manifests and run scheduler cycles over it.

Pods with ``nodeName`` are running; others are pending. Between cycles (``--cycles N``)
the results feed back: bound pods start running, evicted pods go away, pipelined pods
stay pending, and the clock advances by ``interval`` seconds. Volumes follow the controllers
a cluster runs: a generic ephemeral volume's claim is created from its template (the ephemeral
volume controller), and a binding's volume decisions are applied as the binder and the PV
controller would (a PV bound to its claim, or the claim's selected-node set). The report
states the clock (``clock.start``, RFC 3339) and carries ``warnings``: a plain list of
strings (kinds skipped, snapshot params kai does not model, ...).
"""
from __future__ import annotations

import datetime as _dt
import re

import msgspec

from kai.api import constants as C
from kai.api.dra import DRA_KINDS
from kai.api.k8s import ObjectMeta, OwnerReference, PodStatus, Queue, QueueResource, QueueResources, QueueSpec
from kai.api.storage import (ANN_BIND_COMPLETED, ANN_SELECTED_NODE, STORAGE_KINDS, ObjectReference,
                             PersistentVolumeClaim, ephemeral_claim_name)
from kai.usage.model import UsageParams
from kai.cache.cluster_state import ClusterState
from kai.cache.dra_store import DraStore
from kai.cache.usage_db import cluster_capacity
from kai.config import SchedulerConfig
from kai.podgrouper.offline import group_pods
from kai.plugins import unimplemented as unimplemented_plugins
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.loader import Manifests
from kai.cache.occupancy import node_occupancy
from kai.sim.dra import claim_bindings, claims_bound, claims_released

S = C.PodStatus


def _default_queue(name: str, parent: str = "") -> Queue:
    open_ = QueueResource(quota=0, over_quota_weight=1, limit=-1)
    return Queue(metadata=ObjectMeta(name=name, uid=f"uid-queue-{name}", creation_timestamp="2024-01-01T00:00:00Z"),
                 spec=QueueSpec(parent_queue=parent,
                                resources=QueueResources(gpu=open_, cpu=open_, memory=open_)))


def build_state(m: Manifests, grouper=None) -> ClusterState:
    """ClusterState with the manifests' objects, in dependency order; pods are grouped first
    (``kai.podgrouper.offline``, settings ``grouper``: a GrouperConfig)."""
    state = ClusterState()
    grouped = group_pods(m.objects["Pod"], m.owners, m.objects["PodGroup"],
                         [pc.metadata.name for pc in m.objects["PriorityClass"]], grouper)
    state.grouped = grouped
    for pc in m.objects["PriorityClass"]:
        state.upsert_priority_class(pc)
    queues = m.objects["Queue"]
    names = {q.metadata.name for q in queues}
    for q in queues:
        state.upsert_queue(q)
    for t in m.objects["Topology"]:
        state.upsert_topology(t)
    for ns in m.objects["Namespace"]:
        state.upsert_namespace(ns.metadata.name, ns.metadata.labels)
    for n in m.objects["Node"]:
        state.upsert_node(n)
    state.dra = DraStore()           # DeviceClasses, ResourceSlices, ResourceClaims(Templates)
    state.dra.generate = True        # kai makes the claims of templates (the controller-manager's job live)
    state.dra.load({k: m.objects.get(k, []) for k in DRA_KINDS})
    for pg in m.objects["PodGroup"]:
        state.upsert_podgroup(pg)
    for pg in grouped.podgroups.values():
        state.upsert_podgroup(pg)
    for p in grouped.pods:
        state.upsert_pod(p)
    for key, why in grouped.errors.items():
        state.pod_problems[key] = f"pod-grouper: {why}"
    state.storage.load({k: m.objects[k] for k in STORAGE_KINDS})
    _ephemeral_claims(state, grouped.pods)
    # KAI's Helm chart creates default-parent-queue -> default-queue; do the same when used
    wants_default = not queues or any(j.queue == C.DEFAULT_QUEUE for j in state.jobs.values())
    if wants_default and C.DEFAULT_QUEUE not in names:
        if C.DEFAULT_PARENT_QUEUE not in names:
            state.upsert_queue(_default_queue(C.DEFAULT_PARENT_QUEUE))
        state.upsert_queue(_default_queue(C.DEFAULT_QUEUE, C.DEFAULT_PARENT_QUEUE))
    return state


def _ephemeral_claims(state: ClusterState, pods) -> None:
    """The ephemeral volume controller: each generic ephemeral volume's claim ``<pod>-<volume>``,
    from its template, owned by the pod (a claim that exists already is left as it is)."""
    store = state.storage
    for pod in pods:
        ns = pod.metadata.namespace or "default"
        for v in pod.spec.volumes:
            if v.ephemeral is None:
                continue
            name = ephemeral_claim_name(pod, v)
            if f"{ns}/{name}" in store.claims:
                continue
            tmpl = dict(v.ephemeral.volume_claim_template or {})
            meta = dict(tmpl.get("metadata") or {})
            meta.update(name=name, namespace=ns, uid=f"uid-persistentvolumeclaim-{ns}-{name}")
            owner = OwnerReference(api_version="v1", kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid,
                                   controller=True)
            try:
                pvc = msgspec.convert({"metadata": meta, "spec": tmpl.get("spec") or {}}, PersistentVolumeClaim)
            except msgspec.ValidationError as exc:
                state.pod_problems[f"{ns}/{pod.metadata.name}"] = (
                    f"spec.volumes[{v.name}].ephemeral.volumeClaimTemplate: {exc}")
                continue
            pvc = msgspec.structs.replace(pvc, metadata=msgspec.structs.replace(
                pvc.metadata, owner_references=[owner]))
            store.apply("PersistentVolumeClaim", "ADDED", pvc)


def _apply_volume_plan(state: ClusterState, plans, node: str) -> None:
    """What the binder and the PV controller do with a binding's volume decisions."""
    store = state.storage
    R = msgspec.structs.replace
    for p in plans:
        pvc = store.claims.get(p.key)
        if pvc is None:
            continue
        ann = dict(pvc.metadata.annotations)
        if p.volume:
            pv = store.volumes.get(p.volume)
            if pv is None:
                continue
            ref = ObjectReference(api_version="v1", kind="PersistentVolumeClaim", namespace=p.namespace,
                                  name=p.name, uid=p.uid)
            store.apply("PersistentVolume", "MODIFIED", R(pv, spec=R(pv.spec, claim_ref=ref),
                                                          status=R(pv.status, phase="Bound")))
            ann[ANN_BIND_COMPLETED] = "yes"
            store.apply("PersistentVolumeClaim", "MODIFIED", R(
                pvc, metadata=R(pvc.metadata, annotations=ann), spec=R(pvc.spec, volume_name=p.volume),
                status=R(pvc.status, phase="Bound")))
        else:
            ann[ANN_SELECTED_NODE] = node
            store.apply("PersistentVolumeClaim", "MODIFIED", R(pvc, metadata=R(pvc.metadata, annotations=ann)))


def _volumes_report(plans, node: str) -> list[dict]:
    return [{"claim": p.key, "volume": p.volume} if p.volume else {"claim": p.key, "provision": node}
            for p in plans]


def podgroups_report(grouped) -> list[dict]:
    """The PodGroups the pod-grouper made: name, queue, minMember, pods, subGroups."""
    out = []
    for key, pg in sorted(grouped.podgroups.items()):
        members = grouped.members.get(key, {})
        entry = {"name": key, "queue": pg.spec.queue, "minMember": pg.spec.min_member,
                 "priorityClassName": pg.spec.priority_class_name,
                 "pods": sorted(p for pods in members.values() for p in pods)}
        if pg.spec.sub_groups:
            entry["subGroups"] = [{"name": sg.name, "minMember": sg.min_member,
                                   **({"parent": sg.parent} if sg.parent else {}),
                                   "pods": sorted(members.get(sg.name, []))} for sg in pg.spec.sub_groups]
        out.append(entry)
    return out


class SimCache(RecordingCache):
    """The recording cache, plus the DRA allocation each pod was bound with (``claims``: pod key
    -> kai.dra.allocator.DraAllocation), as the binder receives it at commit."""

    def __init__(self, state: ClusterState) -> None:
        super().__init__(state)
        self.claims: dict = {}

    def bind(self, task, node_name: str) -> None:
        super().bind(task, node_name)
        if task.dra is not None:
            self.claims[task.key] = task.dra


def _advance(state: ClusterState, result, claims: dict | None = None) -> None:
    """Feed one cycle's results back: bound -> Running (its volumes bound, its claims written,
    ``claims`` from :class:`SimCache`), evicted -> gone (its claims released)."""
    claims = claims or {}
    for d in result.bindings:
        p = _pod_by_key(state, d.pod)
        if p is None:
            continue
        if p.volume_plan:
            _apply_volume_plan(state, p.volume_plan, d.node)
        pod = p.pod
        meta = pod.metadata
        if d.gpu_groups:        # as the binder labels fraction pods with their shared-GPU groups
            labels = dict(meta.labels or {})
            if len(d.gpu_groups) == 1:
                labels["runai-gpu-group"] = d.gpu_groups[0]
            else:
                labels.update({f"runai-gpu-group/{g}": g for g in d.gpu_groups})
            meta = msgspec.structs.replace(meta, labels=labels)
        got = claims.get(d.pod)
        if got is not None and state.dra is not None:     # the binder's claim writes
            pod = claims_bound(state.dra, pod, got)
        new = msgspec.structs.replace(pod, metadata=meta, spec=msgspec.structs.replace(pod.spec, node_name=d.node),
                                      status=PodStatus(phase="Running",
                                                       resource_claim_statuses=pod.status.resource_claim_statuses))
        state.upsert_pod(new)
    for d in result.evictions:
        p = _pod_by_key(state, d.pod)
        if p is not None:
            if state.dra is not None and p.pod.spec.resource_claims:
                claims_released(state.dra, p.pod)
            state.delete_pod(p.uid)


def _pod_by_key(state: ClusterState, key: str):
    for p in state.pods.values():
        if p.key == key:
            return p
    return None


def rfc3339(seconds: float) -> str:
    """Unix seconds -> RFC 3339 in UTC (``2026-03-01T12:00:00Z``, fractions when present)."""
    d = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if d.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """RFC 3339 timestamp (``2026-03-01T12:00:00Z``, ``...+02:00``, fractional seconds) -> Unix
    seconds; ValueError when it is not one (a time zone is required)."""
    t = text.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", t):
        raise ValueError(f"not an RFC 3339 time (e.g. 2026-03-01T12:00:00Z): {text!r}")
    d = _dt.datetime.fromisoformat(t.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
    return d.timestamp()


#: the clock of ``simulate()`` when the caller gives none (2024-01-01T01:00:00Z); the CLI
#: passes the current time (or ``--now``) instead
DEFAULT_START = 1_704_067_200.0 + 3600


def simulate(m: Manifests, config: SchedulerConfig, cycles: int = 1, interval: float = 1.0,
             start_time: float = DEFAULT_START, clock_source: str = "fixed", gpu_map: bool = False,
             usage_history=None) -> dict:
    """Run ``cycles`` cycles; return the report documented in docs/simulate.md.

    ``start_time`` (Unix seconds) is the first cycle's "now": ages (min-runtime, stale gangs)
    are measured against it. ``clock_source`` says where it came from (``--now``, ``current
    time``, ``fixed``) and is reported with it. With ``gpu_map`` every cycle also carries
    ``nodes``: each GPU node's occupancy after the cycle's results were applied
    (``kai.cache.occupancy``), for ``--report``. With ``usage_history``
    (:class:`kai.usage.model.UsageHistory`, ``--usage-history``) each cycle's queue usage comes
    from it under the config's ``usageParams`` (time-based fair share), and each cycle's
    allocation is added to it for the next."""
    state = build_state(m, getattr(config, "grouper", None))
    sched = Scheduler(state, config)
    # as the controller starts: the state built from the lists, then the scheduler warmed
    # (kept figures and indexes made before the first cycle; like loading, not timed here)
    sched.warm(now=start_time)
    report = {"clock": {"start": rfc3339(start_time), "source": clock_source,
                        "interval": interval, "end": rfc3339(start_time + interval * (max(cycles, 1) - 1))},
              "cycles": [], "queues": [], "podGroups": podgroups_report(state.grouped), "skipped": m.skipped,
              "notImplementedActions": sched.skipped_actions, "problems": [], "invalid": list(m.errors),
              "warnings": list(unimplemented_plugins(config)) + list(m.warnings)}
    now = start_time
    result = None
    usage_params = config.usage_db.params if config.usage_db is not None else UsageParams()
    for _ in range(max(cycles, 1)):
        cache = SimCache(state)
        if usage_history is not None:
            state.queue_resource_usage = usage_history.usage(usage_params, now)
        result = sched.run_cycle(cache, now=now)
        if usage_history is not None:
            usage_history.observe(now, now + interval, cluster_capacity(state),
                                  {q: v["allocated"] for q, v in result.queue_usage.items()})
        plans = {p.key: p.volume_plan for p in state.pods.values() if p.volume_plan}
        claims = cache.claims
        report["cycles"].append({
            "bindings": [{"pod": d.pod, "node": d.node, "gpuGroups": list(d.gpu_groups),
                          **({"volumes": _volumes_report(plans[d.pod], d.node)} if d.pod in plans else {}),
                          **({"claims": claim_bindings(claims[d.pod])} if d.pod in claims else {})}
                         for d in result.bindings],
            "evictions": [{"pod": d.pod, "action": d.action, **({"preemptor": d.preemptor} if d.preemptor else {})}
                          for d in result.evictions],
            "pipelined": [d.pod for d in result.pipelined],
            "unschedulable": [{"podGroup": k, "reasons": v} for k, v in sorted(result.unschedulable.items())],
            "queues": result.queues,
            **({"usage": {q: dict(zip(("gpu", "cpu", "memory"), (round(x, 6) for x in v)))
                          for q, v in sorted(state.queue_resource_usage.items())}}
               if usage_history is not None else {}),
            # wall-clock seconds of the scheduling cycle alone (session open, actions, close;
            # loading the manifests and applying results between cycles excluded)
            "durationSeconds": round(result.duration, 6),
            "openSeconds": round(result.open_seconds, 6),
            "actionSeconds": {name: round(sec, 6) for name, sec in result.action_seconds.items()},
            "closeSeconds": round(result.close_seconds, 6),
        })
        _advance(state, result, claims)
        if gpu_map:
            report["cycles"][-1]["nodes"] = node_occupancy(state.nodes)
        now += interval
    report["queues"] = result.queues if result else []
    for key, why in sorted(state.pod_problems.items()):
        report["problems"].append({"object": f"Pod {key}", "reason": why})
    tree_problems = sched.open_session(RecordingCache(state), now).queues.problems
    for name, why in sorted(tree_problems.items()):
        report["problems"].append({"object": f"Queue {name}", "reason": why})
    return report


#: the per-cycle keys that hold wall-clock timings (they differ from run to run)
TIMING_KEYS = ("durationSeconds", "openSeconds", "actionSeconds", "closeSeconds")


def without_timings(cycles: list[dict]) -> list[dict]:
    """The cycles with their timing keys removed: what two runs of the same input agree on."""
    return [{k: v for k, v in c.items() if k not in TIMING_KEYS} for c in cycles]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def format_table(report: dict) -> str:
    lines = []
    clock = report.get("clock")
    if clock:
        lines.append(f"== clock: {clock['start']} ({clock['source']})")
    for i, cyc in enumerate(report["cycles"], 1):
        lines.append(f"== cycle {i}: {len(cyc['bindings'])} bound, {len(cyc['evictions'])} evicted, "
                     f"{len(cyc['pipelined'])} pipelined, {len(cyc['unschedulable'])} unschedulable")
        if "durationSeconds" in cyc:
            steps = [f"open {_ms(cyc.get('openSeconds', 0.0))}"]
            steps += [f"{name} {_ms(sec)}" for name, sec in cyc.get("actionSeconds", {}).items()]
            steps.append(f"close {_ms(cyc.get('closeSeconds', 0.0))}")
            lines.append(f"  took      {_ms(cyc['durationSeconds'])} ({', '.join(steps)})")
        for b in cyc["bindings"]:
            groups = f"  gpu-groups={','.join(b['gpuGroups'])}" if b["gpuGroups"] else ""
            vols = ",".join(f"{v['claim']}->{v['volume']}" if "volume" in v else f"{v['claim']}(provision)"
                            for v in b.get("volumes", ()))
            lines.append(f"  bind      {b['pod']:<40} -> {b['node']}{groups}" + (f"  volumes={vols}" if vols else ""))
            for c in b.get("claims", []):
                devices = ", ".join(f"{r['request']}={r['driver']}/{r['pool']}/{r['device']}" for r in c["results"])
                lines.append(f"    claim   {c['claim']:<40}    {devices}")
        for e in cyc["evictions"]:
            by = f" (for {e['preemptor']})" if e.get("preemptor") else ""
            lines.append(f"  evict     {e['pod']:<40} [{e['action']}]{by}")
        for p in cyc["pipelined"]:
            lines.append(f"  pipeline  {p}")
        for u in cyc["unschedulable"]:
            for r in u["reasons"]:
                lines.append(f"  pending   {u['podGroup']:<40} {r}")
    usage = report["cycles"][0].get("usage") if report["cycles"] else None
    if usage is not None:
        lines.append("== historical usage at cycle 1 (share of cluster capacity over the window)")
        for q, v in usage.items():
            lines.append(f"  {q:<28} gpu={v['gpu']:<10g} cpu={v['cpu']:<10g} memory={v['memory']:g}")
    if report["queues"]:
        lines.append("== queues (gpu devices, cpu millicores, memory bytes)")
        lines.append(f"  {'queue':<28}{'fair gpu':>10}{'alloc gpu':>10}{'fair cpu':>12}{'alloc cpu':>12}"
                     f"{'fair mem':>16}{'alloc mem':>16}")
        for q in report["queues"]:
            f, a = q["fairShare"], q["allocated"]
            lines.append(f"  {q['name']:<28}{f['gpu']:>10}{a['gpu']:>10}{f['cpu']:>12}{a['cpu']:>12}"
                         f"{f['memory']:>16}{a['memory']:>16}")
    for p in report.get("problems", []):
        lines.append(f"  problem   {p['object']}: {p['reason']}")
    for e in report.get("invalid", []):
        lines.append(f"  invalid   {e} (left out)")
    if report.get("notImplementedActions"):
        lines.append(f"  note      actions not available in this build: {', '.join(report['notImplementedActions'])}")
    if report.get("warnings"):
        lines.append("== warnings")
        lines.extend(f"  warning   {w}" for w in report["warnings"])
    if report.get("skipped"):
        lines.append(f"  note      ignored {len(report['skipped'])} object(s) kai does not schedule with")
    return "\n".join(lines)
