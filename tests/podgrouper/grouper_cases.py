"""Builders for the pod-grouper tables: owner manifests as dicts, pods as kai's model."""
from __future__ import annotations

import msgspec

from kai.api.k8s import Pod
from kai.podgrouper.defaults import GrouperConfig
from kai.podgrouper.hub import podgroup_metadata
from kai.podgrouper.objects import ManifestReader

NS = "test_namespace"


def ref(kind, name, uid, api):
    return {"apiVersion": api, "kind": kind, "name": name, "uid": uid, "controller": True}


def obj(kind, name, uid, api, spec=None, labels=None, annotations=None, owner=None, status=None, ns=NS, **extra):
    meta = {"name": name, "namespace": ns, "uid": uid}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    if owner:
        meta["ownerReferences"] = [owner]
    out = {"apiVersion": api, "kind": kind, "metadata": meta, **extra}
    if spec is not None:
        out["spec"] = spec
    if status is not None:
        out["status"] = status
    return out


def pod(name="pod-0", uid="pod-uid", owner=None, labels=None, annotations=None, node="", priority_class="", ns=NS,
        scheduler="kai-scheduler"):
    meta = {"name": name, "namespace": ns, "uid": uid, "labels": labels or {}, "annotations": annotations or {}}
    if owner:
        meta["ownerReferences"] = [owner] if isinstance(owner, dict) else list(owner)
    spec = {"schedulerName": scheduler}
    if node:
        spec["nodeName"] = node
    if priority_class:
        spec["priorityClassName"] = priority_class
    return msgspec.convert({"metadata": meta, "spec": spec}, Pod)


def owned_by(o, name="pod-0", uid="pod-uid", **kw):
    """A pod whose ownerReference points at manifest ``o``."""
    m = o["metadata"]
    return pod(name, uid, owner=ref(o["kind"], m["name"], m["uid"], o["apiVersion"]), **kw)


def reader(*objs, pods=(), podgroups=(), priority_classes=()):
    objects = {}
    for o in objs:
        m = o["metadata"]
        objects[(o["kind"], m.get("namespace", ""), m["name"])] = o
    return ManifestReader(objects, pods, podgroups, priority_classes)


def group(p, *objs, config=None, pods=(), podgroups=(), priority_classes=()):
    """The PodGroup metadata for pod ``p`` with ``objs`` readable."""
    r = reader(*objs, pods=(p, *pods), podgroups=podgroups, priority_classes=priority_classes)
    return podgroup_metadata(p, r, config or GrouperConfig())


def sub(meta, name):
    sg = meta.subgroup(name)
    assert sg is not None, f"no SubGroup {name!r} in {[s.name for s in meta.subgroups]}"
    return sg


def shape(meta):
    """SubGroups as (name, minMember, parent, pods) tuples, in order."""
    return [(s.name, s.min_available, s.parent, tuple(s.pods)) for s in meta.subgroups]
