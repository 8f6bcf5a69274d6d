"""``kai status``'s data: one list per kind from the API server -> ClusterState -> the status document.

:func:`connect` finds credentials the way kubectl does, with the kubernetes package's config
loader (``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``, ``--context``; in a pod,
the service account). :func:`list_cluster` makes one paged list call per kind (Nodes,
non-terminal Pods, PodGroups, Queues, PriorityClasses), the kinds in parallel, and one GET of
the scheduler's ConfigMap (for ``kValue`` and the plugins); never a call per object.

:func:`build_document` is pure: it loads the lists into a :class:`ClusterState` and opens one
scheduler session over it, exactly as ``kai simulate`` does, so the fair shares are kai's own
proportion code's answer. It reads what the scheduler wrote: PodGroup
``status.schedulingConditions`` (why a job waits), pods' ``PodScheduled`` condition (when the
PodGroup has none yet) and Queue ``status.conditions`` (OverQuota, Orphan). The document is the
``--output json`` answer (units: GPU devices, CPU millicores, memory bytes; documented in
docs/status.md); ``kai.status.render`` draws it.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec

from kai.api import constants as C
from kai.api.k8s import Node, Pod, PodGroup, PriorityClass, Queue
from kai.cache.cluster_state import ClusterState
from kai.cache.kubeclient import ApiError, Credentials, KubeClient, ListOf
from kai.cache.reservation import is_reservation_pod
from kai.config import ConfigError, SchedulerConfig, default_config, parse_config
from kai.scheduler import RecordingCache, Scheduler, queue_report, queue_usage
from kai.cache.occupancy import pool_occupancy, total_occupancy
from kai.api.reasons import cause

RESOURCES = ("gpu", "cpu", "memory")
LISTS = {
    "Node": ("/api/v1/nodes", Node, {}),
    # finished pods hold nothing; leaving them out keeps the list small on busy clusters
    "Pod": ("/api/v1/pods", Pod, {"fieldSelector": "status.phase!=Succeeded,status.phase!=Failed"}),
    "PodGroup": ("/apis/scheduling.run.ai/v2alpha2/podgroups", PodGroup, {}),
    "Queue": ("/apis/scheduling.run.ai/v2/queues", Queue, {}),
    "PriorityClass": ("/apis/scheduling.k8s.io/v1/priorityclasses", PriorityClass, {}),
}
OPTIONAL = {"PodGroup", "Queue"}          # CRDs may not be installed: an empty list, noted
DEFAULT_CONFIG_MAP = "kai-scheduler/kai-scheduler-config"
PAGE = 1000


class StatusError(Exception):
    """kai status cannot answer (no credentials, API server unreachable, forbidden)."""


class _LoaderCredentials(Credentials):
    """Credentials from a ``kubernetes.client.Configuration``; the token is asked for on every
    request, so exec plugins and expiring tokens refresh through the loader's hook."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg.host, ca_file=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
                         cert_file=cfg.cert_file, key_file=cfg.key_file)
        self._cfg = cfg

    def token(self) -> str | None:
        cfg = self._cfg
        if cfg.refresh_api_key_hook is not None:
            cfg.refresh_api_key_hook(cfg)
        v = cfg.get_api_key_with_prefix("authorization") or cfg.get_api_key_with_prefix("BearerToken") or ""
        return v.split(" ", 1)[1] if v.lower().startswith("bearer ") else (v or None)


def connect(kubeconfig: str | None = None, context: str | None = None, timeout: float = 20.0) -> KubeClient:
    """A client for the cluster kubectl would talk to."""
    from kubernetes import client as kclient, config as kconfig

    cfg = kclient.Configuration()
    try:
        kconfig.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg,
                                 persist_config=False)
    except (kconfig.ConfigException, OSError) as exc:
        in_pod = os.environ.get("KUBERNETES_SERVICE_HOST")
        if kubeconfig or context or not in_pod:
            raise StatusError(f"no usable kubeconfig: {exc}") from exc
        try:
            kconfig.load_incluster_config(client_configuration=cfg)
        except kconfig.ConfigException as exc2:
            raise StatusError(f"no kubeconfig and no in-cluster config: {exc2}") from exc2
    return KubeClient(_LoaderCredentials(cfg), maxsize=8, timeout=timeout, user_agent="kai-status")


@dataclass
class Listing:
    """What the lists returned, per kind, plus facts about fetching them."""

    objects: dict[str, list] = field(default_factory=lambda: {k: [] for k in LISTS})
    config: SchedulerConfig = field(default_factory=default_config)
    config_source: str = "KAI defaults"
    missing: list[str] = field(default_factory=list)       # optional kinds the server does not serve
    problems: list[dict] = field(default_factory=list)     # objects left out: {object, reason}
    server: str = ""
    list_seconds: float = 0.0
    calls: int = 0


class _Meta(msgspec.Struct):
    name: str = ""
    namespace: str = ""


class _Named(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)


_PAGE = msgspec.json.Decoder(ListOf[msgspec.Raw])
_NAMED = msgspec.json.Decoder(_Named)


def _list_kind(client: KubeClient, kind: str) -> tuple[list, list[dict], int]:
    """All objects of a kind (paged), the ones that do not fit kai's model as problems, and
    the number of calls. Items decode one by one, so one bad object does not hide the rest."""
    path, typ, params = LISTS[kind]
    dec = msgspec.json.Decoder(typ)
    items: list = []
    bad: list[dict] = []
    cont = ""
    calls = 0
    while True:
        page = _PAGE.decode(client.request("GET", path, params={**params, "limit": PAGE, "continue": cont}))
        calls += 1
        for raw in page.items:
            try:
                items.append(dec.decode(raw))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                try:
                    m = _NAMED.decode(raw).metadata
                except (msgspec.ValidationError, msgspec.DecodeError):
                    m = _Meta()
                who = f"{m.namespace}/{m.name}" if m.namespace else m.name
                bad.append({"object": f"{kind} {who or '?'}", "reason": f"does not fit kai's model: {exc}"})
        cont = page.metadata.continue_
        if not cont:
            return items, bad, calls


def _fetch_config(client: KubeClient, ref: str) -> tuple[SchedulerConfig, str]:
    """The scheduler's config from its ConfigMap ``namespace/name`` (KAI's default without it)."""
    import yaml

    ns, _, name = ref.partition("/")
    try:
        cm = client.get(f"/api/v1/namespaces/{ns}/configmaps/{name}")
    except ApiError as exc:
        if exc.status == 404:
            return default_config(), f"KAI defaults (no ConfigMap {ref})"
        if exc.status == 403:
            return default_config(), f"KAI defaults (ConfigMap {ref} not readable: 403)"
        raise
    data = cm.get("data") or {}
    text = data.get("config.yaml") or next(iter(data.values()), "")
    try:
        return parse_config(yaml.safe_load(text), f"ConfigMap {ref}"), f"ConfigMap {ref}"
    except (ConfigError, yaml.YAMLError) as exc:
        return default_config(), f"KAI defaults (ConfigMap {ref} is not usable: {exc})"


def list_cluster(client: KubeClient, config: SchedulerConfig | None = None,
                 config_map: str | None = DEFAULT_CONFIG_MAP) -> Listing:
    """One paged list per kind, in parallel; raises StatusError with the server's answer."""
    out = Listing(server=client.creds.server)
    start = time.perf_counter()
    kinds = list(LISTS)
    with ThreadPoolExecutor(len(kinds) + 1) as pool:
        futures = {k: pool.submit(_list_kind, client, k) for k in kinds}
        cfg_future = pool.submit(_fetch_config, client, config_map) if config is None and config_map else None
        for kind, fut in futures.items():
            try:
                out.objects[kind], bad, n = fut.result()
                out.calls += n
                out.problems += bad
            except ApiError as exc:
                if exc.status == 404 and kind in OPTIONAL:
                    out.missing.append(kind)
                    continue
                raise StatusError(f"listing {kind}s at {out.server}: {exc}") from exc
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise StatusError(f"listing {kind}s at {out.server}: not a Kubernetes list: {exc}") from exc
        if config is not None:
            out.config, out.config_source = config, config.source
        elif cfg_future is not None:
            try:
                out.config, out.config_source = cfg_future.result()
                out.calls += 1
            except ApiError as exc:
                raise StatusError(f"reading ConfigMap {config_map}: {exc}") from exc
    out.list_seconds = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------- the document
def _vec(v) -> dict:
    """(gpu, cpu millicores, memory bytes) -> {gpu, cpu, memory} (-1 kept: unlimited)."""
    g, c, m = (float(x) for x in v)
    return {"gpu": int(g) if g.is_integer() else round(g, 4), "cpu": int(round(c)), "memory": int(round(m))}


def _pending_vec(req: dict, alloc: dict) -> dict:
    return {r: (max(round(req[r] - alloc[r], 4), 0) if r == "gpu" else max(req[r] - alloc[r], 0))
            for r in RESOURCES}


def _pg_reasons(pg: PodGroup) -> list[str]:
    """The reasons of the newest ``UnschedulableOnNodePool`` condition the scheduler wrote."""
    conds = [c for c in (pg.status or {}).get("schedulingConditions") or []
             if isinstance(c, dict) and c.get("type") == "UnschedulableOnNodePool"]
    if not conds:
        return []
    newest = max(conds, key=lambda c: str(c.get("lastTransitionTime") or ""))
    return [str(r.get("message") or r.get("reason") or "") for r in newest.get("reasons") or []
            if isinstance(r, dict)]


def _pod_reason(job) -> str:
    for t in job.tasks.values():
        if t.node_name:             # on a node: scheduled (its pod is kept without conditions)
            continue
        for c in t.pod.status.conditions:
            if c.type == "PodScheduled" and c.status == "False" and c.message:
                return c.message
    return ""


def _pending_jobs(state: ClusterState, now: float, top: int) -> dict:
    rows = []
    for job in state.jobs.values():
        pending = sum(1 for t in job.tasks.values() if t.status == C.PodStatus.PENDING)
        if not pending:
            continue
        reasons, source = _pg_reasons(job.podgroup), "PodGroup"
        if not reasons:
            msg = _pod_reason(job)
            reasons, source = ([msg], "Pod") if msg else ([], "")
        if not reasons and job.invalid_reasons:
            reasons, source = list(dict.fromkeys(job.invalid_reasons)), "kai"
        rows.append({"podGroup": job.key, "queue": job.queue, "priority": job.priority,
                     "pendingPods": pending, "pods": len(job.tasks), "minMember": job.min_member,
                     "ageSeconds": int(max(now - job.creation, 0)) if job.creation else None,
                     "cause": cause(reasons[0]) if reasons else "no reason written yet",
                     "reasons": reasons, "source": source, "_creation": job.creation})
    rows.sort(key=lambda r: (-r["priority"], r["_creation"] or float("inf"), r["podGroup"]))
    counts: dict[str, int] = {}
    for r in rows:
        del r["_creation"]
        counts[r["cause"]] = counts.get(r["cause"], 0) + 1
    return {"podGroups": len(rows), "pods": sum(r["pendingPods"] for r in rows),
            "byCause": [{"cause": c, "count": n} for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))],
            "top": rows[:top]}


def _queues(ssn, state: ClusterState) -> list[dict]:
    tree = ssn.queues
    usage = queue_usage(ssn)
    report = {q["name"]: q for q in queue_report(ssn)}
    out = []
    for q in tree.topological():
        depth = len(tree.ancestors(q.name)) - 1
        u = usage[q.name]
        alloc, req = _vec(u["allocated"]), _vec(u["requested"])
        status = state.queues[q.name].status or {}
        out.append({"name": q.name, "parent": q.parent or None, "depth": depth, "leaf": q.is_leaf,
                    "priority": q.priority,
                    "quota": _vec(q.deserved), "limit": _vec(q.limit),
                    "overQuotaWeight": dict(zip(RESOURCES, q.weight)),
                    "fairShare": report[q.name]["fairShare"], "allocated": alloc, "requested": req,
                    "pending": _pending_vec(req, alloc),
                    "conditions": [c.get("type") for c in status.get("conditions") or []
                                   if isinstance(c, dict) and c.get("status") == "True"],
                    "problem": None})
    for name in sorted(tree.problems):
        q = state.queues.get(name)
        parent = q.spec.parent_queue if q is not None else ""
        out.append({"name": name, "parent": parent or None, "depth": 0, "leaf": True, "priority": None,
                    "quota": None, "limit": None, "overQuotaWeight": None, "fairShare": None,
                    "allocated": None, "requested": None, "pending": None,
                    "conditions": [c.get("type") for c in ((q.status or {}) if q else {}).get("conditions") or []
                                   if isinstance(c, dict) and c.get("status") == "True"],
                    "problem": tree.problems[name]})
    return out


def build_document(listing: Listing, now: float | None = None, top: int = 10,
                   scheduler_name: str = C.SCHEDULER_NAME) -> dict:
    """The status document from one listing (pure: no API calls)."""
    t0 = time.perf_counter()
    now = time.time() if now is None else now
    o = listing.objects
    state = ClusterState(scheduler_name=scheduler_name)
    # GPU reservation pods hold the devices of shared groups, which the fraction pods already
    # charge: left out, as the controller does (kai.cache.reservation)
    pods = [p for p in o["Pod"] if not is_reservation_pod(p)]
    state.load(nodes=o["Node"], podgroups=o["PodGroup"], pods=pods, queues=o["Queue"],
               priority_classes=o["PriorityClass"])
    ssn = Scheduler(state, listing.config).open_session(RecordingCache(state), now)
    try:
        queues = _queues(ssn, state)
        total = _vec(ssn.shares.total if ssn.shares is not None else (0, 0, 0))
    finally:
        ssn.close()
    pools = pool_occupancy(state.nodes)
    problems = list(listing.problems) + [{"object": f"Pod {k}", "reason": v}
                                         for k, v in sorted(state.pod_problems.items())]
    ours = sum(1 for p in o["Pod"] if p.spec.scheduler_name == scheduler_name)
    return {
        "server": listing.server,
        "generatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "schedulerConfig": listing.config_source,
        "units": {"gpu": "devices", "cpu": "millicores", "memory": "bytes"},
        "counts": {"nodes": len(o["Node"]), "pods": len(o["Pod"]), "kaiPods": ours,
                   "podGroups": len(o["PodGroup"]), "queues": len(o["Queue"])},
        "missingKinds": list(listing.missing),
        "capacity": total,
        "queues": queues,
        "pending": _pending_jobs(state, now, top),
        "gpu": {"pools": pools, "total": total_occupancy(pools)},
        "problems": problems[:50],
        "timing": {"listSeconds": round(listing.list_seconds, 4), "listCalls": listing.calls,
                   "computeSeconds": round(time.perf_counter() - t0, 4)},
    }


def status(client: KubeClient, config: SchedulerConfig | None = None, config_map: str | None = DEFAULT_CONFIG_MAP,
           top: int = 10, scheduler_name: str = C.SCHEDULER_NAME) -> dict:
    """List the cluster and build the document (``timing.totalSeconds`` covers both)."""
    t0 = time.perf_counter()
    doc = build_document(list_cluster(client, config, config_map), top=top, scheduler_name=scheduler_name)
    doc["timing"]["totalSeconds"] = round(time.perf_counter() - t0, 4)
    return doc

