"""Read Kubernetes manifests (multi-document YAML or JSON, ``kind: List``) into kai's model.

Every problem names the file, the document number and the field, e.g.
``cluster.yaml: document 3 (Pod team-a/train-0): spec.containers[0].resources.requests.cpu:
invalid quantity 'abc'``. A file that cannot be read or parsed is a LoadError. A bad object
(wrong field type, bad quantity, unknown kind in kai's own groups, ...) is a LoadError too,
unless ``keep_going`` is set (``kai simulate`` sets it): then every bad object is listed in
``Manifests.errors``, left out, and the rest is loaded.

Objects kai does not schedule with (Secret, Deployment, ...) are skipped and listed. A kind
kai does not know at all -- an Ingress, another operator's custom resource, anything a dump
of a real cluster holds -- is skipped too and counted in ``warnings`` (one line per kind);
only an unknown kind in kai's own API groups (``scheduling.run.ai``, ``kai.scheduler``) or
without an ``apiVersion`` is an error, since that is a typo in a manifest written for kai.
Other suspicious but loadable input goes to ``warnings`` as well: a second object with the
kind, namespace and name of an earlier one (the later copy is ignored, never merged), and a
pod bound to a node no manifest defines (the pod is left out: it would count in its queue
while taking no node's capacity).

A ``*.zip`` path is a KAI snapshot (``GET /get-snapshot`` of KAI's snapshot plugin, read by
``kai.sim.kai_snapshot``): its objects are loaded like manifests (documents are numbered in
the archive's order), its scheduler config joins ``config_docs`` and its scheduler params
are kept in ``scheduler_params``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
from dataclasses import dataclass, field

import msgspec
import yaml

from kai.api.dra import DRA_KINDS, validate as validate_dra
from kai.api.storage import STORAGE_KINDS, validate as validate_storage
from kai.api.k8s import KINDS as _CORE_KINDS
from kai.api.node_info import validate_node
from kai.podgrouper.hub import OWNER_KINDS as _GROUPER_KINDS
from kai.api.resources import QuantityError, parse_quantity
from kai.sim.kai_snapshot import SnapshotError, read_snapshot
from kai.sim import workload_pods as _workloads

# kinds that may sit in the same manifests but carry nothing kai schedules with
IGNORED_KINDS = {"Secret", "ServiceAccount", "Service", "Role", "RoleBinding",
                 "ClusterRole", "ClusterRoleBinding", "Deployment", "ReplicaSet", "StatefulSet", "Job",
                 "CronJob", "DaemonSet", "CustomResourceDefinition", "LimitRange", "ResourceQuota",
                 "BindRequest",
                 "SchedulingShard", "Config", "JobSet", "LeaderWorkerSet", "PyTorchJob", "TFJob", "MPIJob",
                 "RayCluster", "RayJob", "Notebook"} | _GROUPER_KINDS
# owners (and the defaults ConfigMap) kept so the pod-grouper can read them
OWNER_KINDS = set(_GROUPER_KINDS)
# DeviceClass, ResourceSlice, ResourceClaim(Template) too; PV, PVC, StorageClass, CSI objects, ConfigMap
KINDS = {**_CORE_KINDS, **DRA_KINDS, **STORAGE_KINDS}
_MAX_QUANTITY = 2**63 // 1000   # kai keeps milli-units; larger values overflow them
#: API groups whose kinds kai owns: an unknown kind there is a mistake, not a foreign object
OWN_GROUPS = ("scheduling.run.ai", "kai.scheduler")
_BASE_TIME = _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc)


class LoadError(ValueError):
    """Unusable input; ``str()`` names file, document and field."""


@dataclass
class Manifests:
    objects: dict[str, list] = field(default_factory=lambda: {k: [] for k in KINDS})
    owners: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    config_docs: list[tuple[str, dict]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)      # bad objects, left out (keep_going)
    #: (kind, apiVersion) -> count of objects of kinds kai does not read at all
    foreign: dict[tuple[str, str], int] = field(default_factory=dict)
    #: KAI snapshot schedulerParams, per archive: (where, params)
    scheduler_params: list[tuple[str, dict]] = field(default_factory=list)
    #: notes for the report's ``warnings`` (plain strings): duplicates, pods on unknown nodes, ...
    notes: list[str] = field(default_factory=list)
    #: workload manifests as written (kai.sim.workload_pods): (object, file, document label)
    workloads: list[tuple[dict, str, str]] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """One line per foreign kind skipped, then the loader's notes."""
        out = [f"skipped {n} {kind} object(s) ({api}): kai does not read this kind"
               for (kind, api), n in sorted(self.foreign.items())]
        return out + list(self.notes)


def _files(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, _dirs, names in sorted(os.walk(p)):
                out.extend(os.path.join(root, n) for n in sorted(names)
                           if n.endswith((".yaml", ".yml", ".json", ".zip")))
        elif os.path.exists(p):
            out.append(p)
        else:
            raise LoadError(f"{p}: no such file or directory")
    return out


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loader that keeps unquoted timestamps as strings, as the API server reads them."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in _BaseLoader.yaml_implicit_resolvers.items()}


def _documents(path: str) -> list:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise LoadError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise LoadError(f"{path}: not UTF-8 text") from exc
    if path.endswith(".json"):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise LoadError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise LoadError(f"{path}: not valid YAML{where}: {problem}") from exc


def _check_quantities(obj: dict, kind: str) -> None:
    """Raise ValueError('field: message') for unparsable or negative quantities."""
    def check(d, where):
        if not isinstance(d, dict):
            return
        for name, q in d.items():
            try:
                v = parse_quantity(q)
            except QuantityError as exc:
                raise ValueError(f"{where}.{name}: {exc}") from None
            if v < 0:
                raise ValueError(f"{where}.{name}: negative quantity {q!r}")
            if v > _MAX_QUANTITY:
                raise ValueError(f"{where}.{name}: quantity {q!r} is too large")

    if kind == "Pod":        # Nodes: kai.api.node_info.validate_node
        spec = obj.get("spec") or {}
        for group in ("containers", "initContainers"):
            for i, c in enumerate(spec.get(group) or []):
                res = (c or {}).get("resources") or {}
                check(res.get("requests"), f"spec.{group}[{i}].resources.requests")
                check(res.get("limits"), f"spec.{group}[{i}].resources.limits")
        check(spec.get("overhead"), "spec.overhead")


def _storage_defaults(kind: str, obj: dict) -> dict:
    """What the API server and the PV controller would have filled in: a StorageClass's binding
    mode (Immediate); a PV's phase (Bound with a claimRef, else Available); a claim naming a
    volume is Bound (the PV controller completes pre-bound claims)."""
    obj = dict(obj)
    if kind == "StorageClass":
        obj.setdefault("volumeBindingMode", "Immediate")
    elif kind in ("PersistentVolume", "PersistentVolumeClaim"):
        spec = obj.get("spec") or {}
        status = dict(obj.get("status") or {})
        if not status.get("phase") and isinstance(spec, dict):
            bound = spec.get("claimRef") if kind == "PersistentVolume" else spec.get("volumeName")
            status["phase"] = "Bound" if bound else ("Available" if kind == "PersistentVolume" else "Pending")
            obj["status"] = status
    return obj


def _msgspec_path(msg: str) -> str:
    m = re.search(r" - at `\$\.?(.*)`$", msg)
    if not m:
        return msg
    return f"{m.group(1) or '(root)'}: {msg[: m.start()]}"


def load_manifests(paths: list[str], keep_going: bool = False) -> Manifests:
    """Load every object of ``paths``; see the module docstring for errors and warnings."""
    out = Manifests()
    seq = 0
    seen: dict[tuple[str, str, str], str] = {}          # (kind, ns, name) -> where it was first
    for path in _files(paths):
        if path.endswith(".zip"):
            try:
                snap = read_snapshot(path)
            except SnapshotError as exc:
                raise LoadError(str(exc)) from None
            docs = [obj for _label, obj in snap.objects]
            if snap.config is not None:
                out.config_docs.append((f"{path}: snapshot config", snap.config))
            if snap.params:
                out.scheduler_params.append((path, snap.params))
            if snap.applied_bind_requests:
                out.notes.append(f"{path}: {snap.applied_bind_requests} pod(s) placed on the node of their "
                                 f"pending BindRequest (KAI counts a BindRequest as the placement)")
        else:
            docs = _documents(path)
        stack = [(i + 1, d) for i, d in enumerate(docs)]
        for docno, doc in stack:
            if doc is None:
                continue
            items = doc.get("items") if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") else None
            if items is not None:
                if not isinstance(items, list):
                    _fail(out, keep_going, f"{path}: document {docno}: items must be a list")
                    continue
                batch = [(f"{docno}.items[{j}]", it) for j, it in enumerate(items)]
            else:
                batch = [(str(docno), doc)]
            for label, obj in batch:
                try:
                    got = _load_object(out, path, label, obj, seq + 1)
                except LoadError as exc:
                    _fail(out, keep_going, str(exc))
                    continue
                if got is None:
                    continue
                seq += 1
                _file(out, seen, got, "this copy is ignored")
    seq = _make_workload_pods(out, keep_going, seen, seq)
    nodes = {n.metadata.name for n in out.objects["Node"]}
    kept = []
    for p in out.objects["Pod"]:
        if p.spec.node_name and p.spec.node_name not in nodes:
            out.notes.append(
                f"Pod {p.metadata.namespace}/{p.metadata.name} is bound to node {p.spec.node_name!r}, which no "
                f"(valid) manifest defines: the pod is left out (it takes no capacity and no queue share)")
        else:
            kept.append(p)
    out.objects["Pod"] = kept
    return out


def _make_workload_pods(out: Manifests, keep_going: bool, seen: dict, seq: int) -> int:
    """Add the pods (and claims, and owners between) that the controllers of the workload
    manifests as written would make (kai.sim.workload_pods), for workloads none of whose pods
    the input gives (owned by it, or labelled as its own); returns the last document
    sequence number used."""
    owned = {(ref.kind, p.metadata.namespace, ref.name) for p in out.objects["Pod"]
             for ref in p.metadata.owner_references}
    for obj, path, label in out.workloads:
        kind, meta = obj["kind"], obj.get("metadata") or {}
        ns, name = meta.get("namespace") or "default", str(meta.get("name", ""))
        ident = f"{kind} {ns}/{name}"
        if (kind, ns, name) in owned:
            out.skipped.append(ident)           # its pods are given: only the pod-grouper reads it
            continue
        adopts = _workloads.adopter(obj)
        like = next((p for p in out.objects["Pod"] if (p.metadata.namespace or "default") == ns
                     and adopts(p.metadata.labels)), None)
        if like is not None:
            out.skipped.append(ident)
            out.notes.append(f"{path}: document {label} ({ident}): pod {ns}/{like.metadata.name} is labelled as "
                             f"one of its own, so its pods are taken as given and none is made (give the pods "
                             f"ownerReferences to it for the pod-grouper to group them by it)")
            continue
        if kind in _workloads.NOT_EXPANDED:
            out.skipped.append(ident)
            out.notes.append(f"{path}: document {label} ({ident}): kai simulate does not make the pods of "
                             f"{kind} objects; give them as Pod manifests (owned by it) to simulate them")
            continue
        uid = meta.get("uid") or f"uid-{kind.lower()}-{ns}-{name}"
        owner = {**obj, "metadata": {**meta, "namespace": ns, "uid": uid}}
        out.owners[(kind, ns, name)] = owner
        try:
            docs, between, notes = _workloads.workload_pods(owner, uid)
        except ValueError as exc:
            _fail(out, keep_going, f"{path}: document {label} ({ident}): {exc}")
            continue
        except (TypeError, AttributeError) as exc:     # a shape no check above names
            _fail(out, keep_going, f"{path}: document {label} ({ident}): malformed spec ({exc})")
            continue
        out.notes.extend(f"{path}: document {label} ({ident}): {n}" for n in notes)
        for o in between:
            m = o["metadata"]
            out.owners[(o["kind"], m["namespace"], m["name"])] = o
        for j, doc in enumerate(docs):
            try:
                got = _load_object(out, path, f"{label} ({ident}) -> {doc['kind'].lower()} {j}", doc, seq + 1)
            except LoadError as exc:
                _fail(out, keep_going, str(exc))
                continue
            seq += 1
            _file(out, seen, got, f"the {kind}'s one is not made")
    return seq


def _file(out: Manifests, seen: dict, got: tuple, on_duplicate: str) -> None:
    """Keep a loaded object (``_load_object``'s answer), unless one of its kind, namespace and
    name was kept before: then a note says so, ending with ``on_duplicate``."""
    kind, converted, where = got
    m = converted.metadata
    key = (kind, m.namespace, m.name)
    if key in seen:
        out.notes.append(f"{where}: duplicate of {seen[key]}; {on_duplicate}")
        return
    seen[key] = where.split(" (")[0]
    out.objects[kind].append(converted)


def _fail(out: Manifests, keep_going: bool, message: str) -> None:
    if not keep_going:
        raise LoadError(message)
    out.errors.append(message)


def _load_object(out: Manifests, path: str, label: str, obj, seq: int):
    """One manifest object -> (kind, model object, where), None when skipped; LoadError if bad."""
    if not isinstance(obj, dict):
        raise LoadError(f"{path}: document {label}: expected a Kubernetes object (a mapping), "
                        f"got {type(obj).__name__}")
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        raise LoadError(f"{path}: document {label}: metadata must be a mapping")
    ns_text = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    ident = f"{kind} {ns_text}{meta.get('name') or '?'}"
    where = f"{path}: document {label} ({ident})"
    if not isinstance(kind, str) or not kind:
        if "actions" in obj or "tiers" in obj:
            out.config_docs.append((f"{path}: document {label}", obj))
            return None
        raise LoadError(f"{path}: document {label}: missing field 'kind'")
    if kind in OWNER_KINDS and not (kind == "Service" and obj.get("apiVersion") == "v1"):
        out.owners[(kind, meta.get("namespace") or "default", str(meta.get("name", "")))] = obj
    if kind not in KINDS:
        if (kind in _workloads.EXPANDED or kind in _workloads.NOT_EXPANDED) and _workloads.as_written(obj) \
                and meta.get("name"):
            out.workloads.append((obj, path, label))       # its pods may be made (``_make_workload_pods``)
            return None
        if kind in IGNORED_KINDS:
            out.skipped.append(ident)
            return None
        api = obj.get("apiVersion")
        group = api.split("/", 1)[0] if isinstance(api, str) and "/" in api else ""
        if not isinstance(api, str) or not api or group in OWN_GROUPS:
            raise LoadError(f"{where}: unknown kind {kind!r} (kai reads {', '.join(sorted(KINDS))})")
        out.foreign[(kind, api)] = out.foreign.get((kind, api), 0) + 1
        out.skipped.append(ident)
        return None
    if not meta.get("name"):
        raise LoadError(f"{where}: metadata.name is required")
    obj = dict(obj)
    meta = dict(meta)
    if kind in ("Pod", "PodGroup", "ResourceClaim", "ResourceClaimTemplate", "PersistentVolumeClaim",
                "CSIStorageCapacity", "ConfigMap") and not meta.get("namespace"):
        meta["namespace"] = "default"
    ns_part = f"{meta['namespace']}-" if meta.get("namespace") else ""
    meta.setdefault("uid", f"uid-{kind.lower()}-{ns_part}{meta['name']}")
    if kind in ("Pod", "PodGroup", "Queue") and not meta.get("creationTimestamp"):
        # file order is creation order when the manifests do not say
        ts = _BASE_TIME + _dt.timedelta(seconds=seq)
        meta["creationTimestamp"] = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    obj["metadata"] = meta
    if kind in STORAGE_KINDS:
        obj = _storage_defaults(kind, obj)
    try:
        converted = msgspec.convert(obj, KINDS[kind])
    except msgspec.ValidationError as exc:
        raise LoadError(f"{where}: {_msgspec_path(str(exc))}") from None
    try:
        _check_quantities(obj, kind)
    except ValueError as exc:
        raise LoadError(f"{where}: {exc}") from None
    if kind == "Node":
        errs = validate_node(converted)
        if errs:
            raise LoadError(f"{where}: {'; '.join(errs)}")
    if kind in DRA_KINDS or kind in STORAGE_KINDS:
        problems = (validate_dra if kind in DRA_KINDS else validate_storage)(converted)
        if problems:
            raise LoadError(f"{where}: {problems[0]}")
    return kind, converted, where
