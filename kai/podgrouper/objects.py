"""Objects the pod-grouper reads: a thin view over an unstructured manifest, the reader
contract, the owner walk to the top owner, and a reader over manifests.

``Obj`` wraps a dict as the Kubernetes API returns it (apiVersion, kind, metadata, spec,
status). A :class:`Reader` answers GETs (``None`` when the object does not exist, raising
:class:`Forbidden` when RBAC refuses) and pod lists by label. The live reader is in
``kai.podgrouper.controller``; :class:`ManifestReader` serves ``kai simulate`` and tests.

:func:`owners_of` is KAI's ``GetPodOwners``: from the pod's first ownerReference up, one
owner at a time; an owner with several owners is an error, an owner whose UID differs from
the reference (deleted and re-created) is an error, an owner the reader may not read ends
the walk (the owner below it, or the pod, becomes the top owner).
"""
from __future__ import annotations

from typing import Any, Iterable, Protocol

import msgspec

from kai.api import constants as C
from kai.api.k8s import Pod
from kai.podgrouper.metadata import GroupingError

MAX_OWNER_DEPTH = 16


class Forbidden(Exception):
    """The reader may not read the object (HTTP 403)."""


def nested(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


class Obj:
    """Read access to an unstructured object (a dict as the API returns it)."""

    __slots__ = ("raw",)

    def __init__(self, raw: dict) -> None:
        self.raw = raw if isinstance(raw, dict) else {}

    @property
    def api_version(self) -> str:
        return str(self.raw.get("apiVersion") or "")

    @property
    def group(self) -> str:
        av = self.api_version
        return av.split("/", 1)[0] if "/" in av else ""

    @property
    def version(self) -> str:
        return self.api_version.rsplit("/", 1)[-1]

    @property
    def kind(self) -> str:
        return str(self.raw.get("kind") or "")

    @property
    def meta(self) -> dict:
        m = self.raw.get("metadata")
        return m if isinstance(m, dict) else {}

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or "")

    @property
    def namespace(self) -> str:
        return str(self.meta.get("namespace") or "")

    @property
    def uid(self) -> str:
        return str(self.meta.get("uid") or "")

    @property
    def labels(self) -> dict[str, str]:
        v = self.meta.get("labels")
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else {}

    @property
    def annotations(self) -> dict[str, str]:
        v = self.meta.get("annotations")
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else {}

    @property
    def owner_references(self) -> list[dict]:
        v = self.meta.get("ownerReferences")
        return [r for r in v if isinstance(r, dict)] if isinstance(v, list) else []

    def get(self, *path: str) -> Any:
        """The value at ``path`` (``None`` if any step is missing or not a mapping)."""
        return nested(self.raw, *path)

    def with_metadata(self, labels: dict[str, str], annotations: dict[str, str]) -> Obj:
        raw = dict(self.raw)
        meta = dict(self.meta)
        meta["labels"], meta["annotations"] = labels, annotations
        raw["metadata"] = meta
        return Obj(raw)

    def __repr__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def pod_obj(pod: Pod) -> Obj:
    """The pod as an unstructured object (the top owner of a bare pod, KAI's podJob). Through
    JSON, so a compact pod on a node (kai.api.k8s.BoundPod: tuples for lists) reads as the API's."""
    return Obj(msgspec.json.decode(msgspec.json.encode(pod)) | {"apiVersion": "v1", "kind": "Pod"})


def int_field(v: Any) -> int | None:
    """An integer field as the API decodes it (int, or an integral float); None otherwise."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


class Reader(Protocol):
    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        """The object, ``None`` if it does not exist; raises Forbidden when not allowed."""

    def list_pods(self, namespace: str, labels: dict[str, str]) -> list[dict]:
        """Pods in ``namespace`` carrying every label in ``labels``."""


def owners_of(pod: Pod, reader: Reader) -> tuple[Obj, list[Obj]]:
    """(top owner, owners nearest first). A bare pod is its own top owner with no owners."""
    ns = pod.metadata.namespace or "default"
    refs = pod.metadata.owner_references
    if not refs:
        return pod_obj(pod), []
    owners: list[Obj] = []
    ref = msgspec.to_builtins(refs[0])
    last: Obj | None = None
    while len(owners) < MAX_OWNER_DEPTH:
        kind, name, uid = ref.get("kind", ""), ref.get("name", ""), ref.get("uid", "")
        try:
            raw = reader.get(ref.get("apiVersion", ""), kind, ns, name)
        except Forbidden:
            # KAI: an owner we may not read ends the walk at the one below it (or the pod)
            return (last if last is not None else pod_obj(pod)), owners
        if raw is None:
            raise GroupingError(f"failed to find {kind} {ns}/{name} (uid {uid or '?'}), owner of pod "
                                f"{ns}/{pod.metadata.name}: not found")
        owner = Obj(raw)
        if uid and owner.uid and owner.uid != uid:
            raise GroupingError(f"{kind} {ns}/{name}: uid {owner.uid} differs from the owner reference's {uid} "
                                f"(the owner was re-created)")
        if not owner.uid or not owner.api_version or not owner.kind:
            # manifests may omit what the API server always sets: take it from the reference
            raw = dict(raw)
            raw["apiVersion"] = owner.api_version or ref.get("apiVersion", "")
            raw["kind"] = owner.kind or kind
            meta = dict(owner.meta)
            meta["uid"] = owner.uid or uid
            meta.setdefault("namespace", ns)
            raw["metadata"] = meta
            owner = Obj(raw)
        owners.append(owner)
        nxt = owner.owner_references
        if not nxt:
            return owner, owners
        if len(nxt) > 1:
            raise GroupingError(f"found {kind} {ns}/{name} with multiple owners: "
                                f"{', '.join(r.get('kind', '') + '/' + r.get('name', '') for r in nxt)}")
        ref, last = nxt[0], owner
    raise GroupingError(f"pod {ns}/{pod.metadata.name}: owner chain longer than {MAX_OWNER_DEPTH}")


class ManifestReader:
    """A Reader over objects from manifests (``kai simulate``, tests).

    ``objects`` maps (kind, namespace, name) to the object (cluster-scoped: namespace "");
    ``pods`` and ``podgroups`` are the model objects; KAI's four priority classes always
    exist (its chart installs them) besides any PriorityClass in ``objects``.
    """

    def __init__(self, objects: dict[tuple[str, str, str], dict] | None = None, pods: Iterable[Pod] = (),
                 podgroups: Iterable[Any] = (), priority_classes: Iterable[str] = ()) -> None:
        self.objects = dict(objects or {})
        self.pods: list[Pod] = list(pods)
        self._pod_index = {((p.metadata.namespace or "default"), p.metadata.name): i for i, p in enumerate(self.pods)}
        self.podgroups: dict[tuple[str, str], dict] = {}
        for pg in podgroups:
            self.put_podgroup(pg if isinstance(pg, dict) else msgspec.to_builtins(pg))
        self.priority_classes = set(priority_classes) | set(C.PRIORITY_CLASSES)

    def replace_pod(self, i: int, pod: Pod) -> None:
        """Pod ``i`` (same name) as it is now."""
        self.pods[i] = pod

    def put_podgroup(self, body: dict) -> None:
        m = body.get("metadata") or {}
        self.podgroups[(m.get("namespace") or "default", m.get("name", ""))] = body

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        if kind == "PodGroup":
            return self.podgroups.get((namespace, name))
        if kind == "PriorityClass":
            return {"metadata": {"name": name}} if name in self.priority_classes else None
        if kind == "Pod":
            i = self._pod_index.get((namespace, name))
            return pod_obj(self.pods[i]).raw if i is not None else None
        obj = self.objects.get((kind, namespace, name)) or self.objects.get((kind, "", name))
        if obj is None:
            return None
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
        have = str(obj.get("apiVersion") or "")
        have_group = have.split("/", 1)[0] if "/" in have else ""
        if api_version and have and group != have_group:
            return None        # same kind and name in another API group (a core Service vs a Knative one)
        return obj

    def list_pods(self, namespace: str, labels: dict[str, str]) -> list[dict]:
        out = []
        for p in self.pods:
            if (p.metadata.namespace or "default") != namespace:
                continue
            if all(p.metadata.labels.get(k) == v for k, v in labels.items()):
                out.append(pod_obj(p).raw)
        return out
