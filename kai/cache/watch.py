"""Informers: paged list + watch per kind, delivering events to one thread-safe queue.

Each :class:`Informer` owns a thread and a store (key -> last object seen). It lists with
``limit``/``continue``, then watches from the list's resourceVersion with bookmarks; a 410
Gone (expired resourceVersion) triggers a relist whose differences against the store come
out as ADDED/MODIFIED/DELETED events, so consumers never miss a deletion. Transport errors
reconnect with exponential backoff and full jitter. Events are ``(kind, type, obj)`` tuples
put on the shared ``queue.Queue``; after the first list an ``(kind, "SYNCED", None)`` marker
follows. The controller (``kai.controller.main``) drains the queue between cycles and is the
single writer of the ClusterState.

Every object is guarded on its own: one that does not decode into the model, or fails its
kind's validation (``Resource.validate``, e.g. a Node with a negative or unparsable
allocatable), is not delivered; an ``(kind, "INVALID", {kind, namespace, name, uid, error})``
event is put instead (the controller turns it into an Event, a log line and a metric), and
the store keeps the last good version of that object, if any. Deletions always go through.
"""
from __future__ import annotations

import json
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import msgspec
import structlog

from kai.api.dra import DeviceClass, ResourceClaim, ResourceClaimTemplate, ResourceSlice
from kai.api.k8s import Namespace, Node, Pod, PodGroup, PriorityClass, Queue, Topology, decode_pod
from kai.api.node_info import validate_node
from kai.api.storage import (CSIDriver, CSINode, CSIStorageCapacity, ConfigMap, PersistentVolume,
                             PersistentVolumeClaim, StorageClass, VolumeAttachment)
from kai.cache.kubeclient import ApiError, KubeClient, Status

log = structlog.get_logger("kai.watch")

ADDED, MODIFIED, DELETED, SYNCED = "ADDED", "MODIFIED", "DELETED", "SYNCED"
# an object that does not decode into the model: payload {kind, namespace, name, uid, error}
INVALID = "INVALID"


@dataclass(frozen=True)
class Resource:
    kind: str
    path: str           # collection path across namespaces
    type: type
    optional: bool = False   # CRD may be absent: treat 404 as an empty list and retry later
    # problems that make a decoded object unusable (empty: fine); such objects become INVALID
    validate: Callable[[Any], list[str]] | None = None
    metadata_only: bool = False   # list/watch PartialObjectMetadata: names and labels, never data
    # raw JSON -> object, instead of decoding into ``type`` (pods: compact when on a node)
    decode: Callable[[bytes], Any] | None = None


RESOURCES: dict[str, Resource] = {
    "Node": Resource("Node", "/api/v1/nodes", Node, validate=validate_node),
    "Pod": Resource("Pod", "/api/v1/pods", Pod, decode=decode_pod),
    "PodGroup": Resource("PodGroup", "/apis/scheduling.run.ai/v2alpha2/podgroups", PodGroup, True),
    "Queue": Resource("Queue", "/apis/scheduling.run.ai/v2/queues", Queue, True),
    "PriorityClass": Resource("PriorityClass", "/apis/scheduling.k8s.io/v1/priorityclasses", PriorityClass),
    "Topology": Resource("Topology", "/apis/kai.scheduler/v1alpha1/topologies", Topology, True),
    # labels only: the namespaceSelector of pod affinity terms
    "Namespace": Resource("Namespace", "/api/v1/namespaces", Namespace),
    # DRA (resource.k8s.io/v1, GA in Kubernetes 1.34); optional: older servers answer 404
    "ResourceSlice": Resource("ResourceSlice", "/apis/resource.k8s.io/v1/resourceslices", ResourceSlice, True),
    "DeviceClass": Resource("DeviceClass", "/apis/resource.k8s.io/v1/deviceclasses", DeviceClass, True),
    "ResourceClaim": Resource("ResourceClaim", "/apis/resource.k8s.io/v1/resourceclaims", ResourceClaim, True),
    "ResourceClaimTemplate": Resource("ResourceClaimTemplate", "/apis/resource.k8s.io/v1/resourceclaimtemplates",
                                      ResourceClaimTemplate, True),
    # volumes (kai.plugins.volumebinding) and KAI's ConfigMap predicate
    "PersistentVolume": Resource("PersistentVolume", "/api/v1/persistentvolumes", PersistentVolume),
    "PersistentVolumeClaim": Resource("PersistentVolumeClaim", "/api/v1/persistentvolumeclaims", PersistentVolumeClaim),
    "StorageClass": Resource("StorageClass", "/apis/storage.k8s.io/v1/storageclasses", StorageClass),
    "CSINode": Resource("CSINode", "/apis/storage.k8s.io/v1/csinodes", CSINode),
    "CSIDriver": Resource("CSIDriver", "/apis/storage.k8s.io/v1/csidrivers", CSIDriver),
    "CSIStorageCapacity": Resource("CSIStorageCapacity", "/apis/storage.k8s.io/v1/csistoragecapacities",
                                   CSIStorageCapacity),
    "VolumeAttachment": Resource("VolumeAttachment", "/apis/storage.k8s.io/v1/volumeattachments", VolumeAttachment),
    "ConfigMap": Resource("ConfigMap", "/api/v1/configmaps", ConfigMap, metadata_only=True),
}

#: pods bound to nodes, of every scheduler: with selective monitoring (kai.cache.scope) the
#: "Pod" informer holds only our selected unbound pods and this one what uses node capacity
NODE_PODS = Resource("NodePod", "/api/v1/pods", Pod, decode=decode_pod)

#: Accept headers of a metadata-only informer (list, watch): the server sends PartialObjectMetadata
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


def object_key(obj: Any) -> str:
    m = obj.metadata
    return f"{m.namespace}/{m.name}" if m.namespace else m.name


class _BookmarkMeta(msgspec.Struct):
    resourceVersion: str = ""
    name: str = ""
    namespace: str = ""
    uid: str = ""


class _Bookmark(msgspec.Struct):
    metadata: _BookmarkMeta = msgspec.field(default_factory=_BookmarkMeta)


_bookmark_decoder = msgspec.json.Decoder(_Bookmark)


def _meta_of(raw: bytes) -> _BookmarkMeta:
    """Name, namespace, uid and resourceVersion of a raw object, as far as they decode."""
    try:
        return _bookmark_decoder.decode(raw).metadata
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    try:                                    # lenient: NaN tokens, one field of the wrong type ...
        meta = json.loads(raw).get("metadata") or {}
        return _BookmarkMeta(*(v if isinstance(v := meta.get(k), str) else ""
                               for k in ("resourceVersion", "name", "namespace", "uid")))
    except (ValueError, AttributeError, RecursionError):
        return _BookmarkMeta()


class Backoff:
    """Exponential backoff with full jitter: sleep uniform(0, min(cap, base * 2**n))."""

    def __init__(self, base: float = 0.2, cap: float = 30.0) -> None:
        self.base, self.cap, self.n = base, cap, 0

    def next(self) -> float:
        d = random.uniform(0, min(self.cap, self.base * (2 ** self.n)))
        self.n = min(self.n + 1, 16)
        return max(d, self.base / 2)

    def reset(self) -> None:
        self.n = 0


class Informer:
    """List + watch one resource kind into ``store`` and ``events``."""

    def __init__(self, client: KubeClient, resource: Resource, events: "queue.Queue",
                 page_size: int = 500, watch_timeout: tuple[int, int] = (240, 360),
                 on_event: Callable[[str, str, Any], None] | None = None,
                 params: dict[str, str] | None = None, keep: Callable[[Any], bool] | None = None) -> None:
        self.client = client
        # client-side selection where the server cannot select (e.g. by the namespace's labels):
        # an object ``keep`` refuses is treated as absent, never stored or delivered
        self.keep = keep
        self._relist = False
        # server-side selection (labelSelector / fieldSelector) on every list and watch
        self.params: dict[str, str] = {k: v for k, v in (params or {}).items() if v}
        self.resource = resource
        self.kind = resource.kind
        self.events = events
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.on_event = on_event
        self.store: dict[str, Any] = {}
        self.resource_version = ""
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._resp = None
        self._thread: threading.Thread | None = None
        self._decode_raw = resource.decode or msgspec.json.Decoder(resource.type).decode
        self.stats = {"lists": 0, "relists_410": 0, "bookmarks": 0, "reconnects": 0, "events": 0,
                      "invalid": 0}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Informer:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.kind}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        r = self._resp
        if r is not None:
            try:
                r.shutdown()
            except Exception:   # noqa: BLE001 - best effort: the thread exits on its own anyway
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def force_resource_version(self, rv: str) -> None:
        """Test hook: make the next watch start from ``rv`` (e.g. a stale one, to force 410)."""
        self.resource_version = rv
        r = self._resp
        if r is not None:
            try:
                r.shutdown()
            except Exception:   # noqa: BLE001
                pass

    def relist(self) -> None:
        """List again soon (e.g. ``keep`` changed its mind): differences come out as events."""
        self._relist = True
        r = self._resp
        if r is not None:
            try:
                r.shutdown()
            except Exception:   # noqa: BLE001
                pass

    # ------------------------------------------------------------------ internals
    def _emit(self, etype: str, obj: Any) -> None:
        self.stats["events"] += 1
        self.events.put((self.kind, etype, obj))
        if self.on_event is not None:
            self.on_event(self.kind, etype, obj)

    def _decode(self, raw: bytes, validate: bool = True) -> Any:
        """The object, or None (and an INVALID event) when it does not fit the model."""
        try:
            obj = self._decode_raw(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self._invalid(_meta_of(raw), str(exc))
            return None
        check = self.resource.validate
        if validate:
            errs = [] if obj.metadata.name else ["metadata.name is empty"]
            if check is not None and not errs:
                errs = check(obj)
            if errs:
                m = obj.metadata
                self._invalid(_BookmarkMeta(m.resource_version, m.name, m.namespace, m.uid), "; ".join(errs))
                return None
        return obj

    def _invalid(self, m: "_BookmarkMeta", error: str) -> None:
        self.stats["invalid"] += 1
        log.warning("malformed object", kind=self.kind, namespace=m.namespace, name=m.name, error=error)
        self.events.put((self.kind, INVALID, {"kind": self.kind, "namespace": m.namespace, "name": m.name,
                                              "uid": m.uid, "error": error}))

    def _list(self) -> None:
        """List everything; emit the differences against the store; remember the RV."""
        fresh = {}
        keep = self.keep
        rv = ""
        pages = self.client.list_in_pages(self.resource.path, msgspec.Raw, limit=self.page_size,
                                       params=self.params or None,
                                       **({"accept": METADATA_LIST} if self.resource.metadata_only else {}))
        try:
            # page by page: a page's JSON is let go once its objects are decoded
            for raws, rv, restart in pages:
                if restart:
                    fresh = {}
                for raw in raws:
                    o = self._decode(raw)
                    if o is not None:
                        if keep is None or keep(o):
                            fresh[object_key(o)] = o
                    else:                    # keep the last good version rather than forget the object
                        m = _meta_of(raw)
                        k = f"{m.namespace}/{m.name}" if m.namespace else m.name
                        if k in self.store:
                            fresh[k] = self.store[k]
        except ApiError as exc:
            if exc.status == 404 and self.resource.optional:
                fresh, rv = {}, ""
            else:
                raise
        self.stats["lists"] += 1
        for k in [k for k in self.store if k not in fresh]:
            self._emit(DELETED, self.store.pop(k))
        for k, o in fresh.items():
            old = self.store.get(k)
            if old is None:
                self.store[k] = o
                self._emit(ADDED, o)
            elif old.metadata.resource_version != o.metadata.resource_version:
                self.store[k] = o
                self._emit(MODIFIED, o)
        self.resource_version = rv
        if not self.synced.is_set():
            self.synced.set()
            self.events.put((self.kind, SYNCED, None))

    def _watch(self) -> None:
        """Watch from ``resource_version`` until the stream ends; raises ApiError(410) if expired."""
        timeout = random.randint(*self.watch_timeout)

        def hold(r: Any) -> None:
            self._resp = r

        try:
            extra = {"accept": METADATA_WATCH} if self.resource.metadata_only else {}
            for ev in self.client.watch(self.resource.path, self.resource_version, timeout, on_response=hold,
                                        params=self.params or None, **extra):
                if self._stop.is_set():
                    return
                if ev.type == "ERROR":
                    st = msgspec.json.decode(ev.object, type=Status)
                    raise ApiError(st.code or 500, st.reason, st.message)
                if ev.type == "BOOKMARK":
                    # a bookmark's object is a stub (``spec.containers: null`` ...): read the RV only
                    self.stats["bookmarks"] += 1
                    rv = _bookmark_decoder.decode(ev.object).metadata.resourceVersion
                    self.resource_version = rv or self.resource_version
                    continue
                obj = self._decode(ev.object, validate=ev.type != DELETED)
                if obj is None:
                    m = _meta_of(ev.object)
                    self.resource_version = m.resourceVersion or self.resource_version
                    if ev.type == DELETED:          # gone, even if it never decoded: forget it
                        gone = self.store.pop(f"{m.namespace}/{m.name}" if m.namespace else m.name, None)
                        if gone is not None:
                            self._emit(DELETED, gone)
                    continue
                rv = obj.metadata.resource_version
                key = object_key(obj)
                if ev.type != DELETED and self.keep is not None and not self.keep(obj):
                    ev = msgspec.structs.replace(ev, type=DELETED) if key in self.store else None
                    if ev is None:
                        self.resource_version = rv or self.resource_version
                        continue
                if ev.type == DELETED:
                    self.store.pop(key, None)
                    self._emit(DELETED, obj)
                elif ev.type in (ADDED, MODIFIED):
                    etype = MODIFIED if key in self.store else ADDED
                    self.store[key] = obj
                    self._emit(etype, obj)
                if rv:
                    self.resource_version = rv
        finally:
            self._resp = None

    def _run(self) -> None:
        backoff = Backoff()
        need_list = not self.synced.is_set()
        while not self._stop.is_set():
            try:
                if need_list or self._relist:
                    self._relist = False
                    self._list()
                    need_list = False
                    if not self.resource_version:          # optional kind not installed yet
                        self._stop.wait(min(30.0, backoff.next() * 10))
                        need_list = True
                        continue
                self._watch()
                backoff.reset()
            except ApiError as exc:
                if self._stop.is_set():
                    return
                if exc.status == 410:
                    self.stats["relists_410"] += 1
                    log.info("watch expired, relisting", kind=self.kind, rv=self.resource_version)
                    need_list = True
                    continue
                self.stats["reconnects"] += 1
                d = backoff.next()
                if exc.retry_after is not None:         # the server said when (429 / 503)
                    d = min(max(exc.retry_after, d), 30.0)
                log.warning("watch error, backing off", kind=self.kind, error=str(exc), seconds=round(d, 2))
                self._stop.wait(d)
            except Exception as exc:   # noqa: BLE001 - decode errors etc.: relist rather than die
                if self._stop.is_set():
                    return
                self.stats["reconnects"] += 1
                log.exception("informer failure, relisting", kind=self.kind, error=str(exc))
                need_list = True
                self._stop.wait(backoff.next())


def start_informers(client: KubeClient, events: "queue.Queue", kinds=tuple(RESOURCES),
                    params: dict[str, dict[str, str]] | None = None, **kw: Any) -> dict[str, Informer]:
    """One started Informer per kind; ``params[kind]`` (labelSelector / fieldSelector) narrows
    what the server sends for that kind (kai.cache.scope builds them)."""
    params = params or {}
    return {k: Informer(client, RESOURCES[k], events, params=params.get(k), **kw).start() for k in kinds}


def wait_synced(informers: dict[str, Informer], timeout: float | None = None) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    for inf in informers.values():
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not inf.synced.wait(left):
            return False
    return True
