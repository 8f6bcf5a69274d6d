"""Hypothesis strategies for malformed and extreme Kubernetes objects (issue 16, fuzzing).

Used by the fuzz tests of the informer -> controller -> cache path
(``tests/controller/test_fuzz_objects.py``) and of ``kai simulate``
(``tests/sim/test_fuzz_simulate.py``). Both feed a *scenario*: a fixed set of good objects
that must always schedule, plus a few objects derived from valid templates by mutations:
wrong types at any path, missing fields, huge / negative / NaN / unparsable quantities and
numbers, unicode and over-long names, GPU feature discovery labels like ``1e309``, and
10,000-element lists and maps.

The good objects are fenced off from the fuzzed ones so that "everything else is scheduled"
is checkable: good pods select good nodes by label and tolerate a taint only good nodes
carry, and their queue has a guaranteed quota that covers them.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

GOOD_NS = "fuzz-good"
GOOD_LABEL = ("kai.fuzz/role", "good")
GOOD_TAINT = {"key": "kai.fuzz/good-only", "value": "yes", "effect": "NoSchedule"}
GOOD_PODS = 4          # one GPU each, on 2 good nodes of 4 GPUs
BIG_LIST = 10_000

KINDS = ("Node", "Pod", "PodGroup", "Queue", "PriorityClass", "Topology")
API_VERSION = {"Node": "v1", "Pod": "v1", "PodGroup": "scheduling.run.ai/v2alpha2",
               "Queue": "scheduling.run.ai/v2", "PriorityClass": "scheduling.k8s.io/v1",
               "Topology": "kai.scheduler/v1alpha1"}


def _queue_res(quota, limit=-1, weight=1) -> dict:
    return {"quota": quota, "overQuotaWeight": weight, "limit": limit}


def good_objects() -> list[dict]:
    """The objects that must always be scheduled: 2 nodes, a queue tree, GOOD_PODS one-pod jobs."""
    objs: list[dict] = []
    for i in range(2):
        objs.append({"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": f"good-node-{i}", "labels": {GOOD_LABEL[0]: GOOD_LABEL[1],
                                                                       "nvidia.com/gpu.memory": "81920"}},
                     "spec": {"taints": [dict(GOOD_TAINT)]},
                     "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "4"},
                                "conditions": [{"type": "Ready", "status": "True"}]}})
    everything = {"gpu": _queue_res(-1), "cpu": _queue_res(-1), "memory": _queue_res(-1)}
    objs.append({"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": "good-root"},
                 "spec": {"resources": everything}})
    objs.append({"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": "good"},
                 "spec": {"parentQueue": "good-root", "priority": 1000,
                          "resources": {"gpu": _queue_res(GOOD_PODS), "cpu": _queue_res(-1),
                                        "memory": _queue_res(-1)}}})
    for i in range(GOOD_PODS):
        objs.append({"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
                     "metadata": {"name": f"good-{i}", "namespace": GOOD_NS},
                     "spec": {"minMember": 1, "queue": "good"}})
        objs.append(_pod(f"good-{i}", GOOD_NS, f"good-{i}", good=True))
    return objs


def good_pod_keys() -> list[str]:
    return [f"{GOOD_NS}/good-{i}" for i in range(GOOD_PODS)]


def _pod(name: str, ns: str, group: str, good: bool = False, gpus: str = "1") -> dict:
    spec: dict[str, Any] = {
        "schedulerName": "kai-scheduler",
        "containers": [{"name": "main", "image": "busybox",
                        "resources": {"requests": {"cpu": "100m", "memory": "100Mi", "nvidia.com/gpu": gpus},
                                      "limits": {"nvidia.com/gpu": gpus}}}]}
    if good:
        spec["nodeSelector"] = {GOOD_LABEL[0]: GOOD_LABEL[1]}
        spec["tolerations"] = [{"key": GOOD_TAINT["key"], "operator": "Equal", "value": GOOD_TAINT["value"],
                                "effect": "NoSchedule"}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "annotations": {"pod-group-name": group},
                         "labels": {"app": "fuzz"}},
            "spec": spec}


def template(kind: str, name: str) -> dict:
    """A valid object of ``kind`` (outside the good set) for the mutations to start from."""
    if kind == "Node":
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"nvidia.com/gpu.memory": "40960", "nvidia.com/gpu.count": "2",
                                                      "zone": "a"}},
                "spec": {"taints": [{"key": "t", "value": "v", "effect": "NoSchedule"}]},
                "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "2"},
                           "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "2"},
                           "conditions": [{"type": "Ready", "status": "True"}]}}
    if kind == "Pod":
        p = _pod(name, "fuzz", name)
        p["spec"]["tolerations"] = [{"key": "t", "operator": "Exists", "effect": "NoSchedule"}]
        p["metadata"]["annotations"]["gpu-fraction"] = "0.5"
        del p["spec"]["containers"][0]["resources"]["limits"]
        del p["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"]
        p["spec"]["initContainers"] = [{"name": "init", "resources": {"requests": {"cpu": "1"}}}]
        p["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
        return p
    if kind == "PodGroup":
        return {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
                "metadata": {"name": name, "namespace": "fuzz"},
                "spec": {"minMember": 1, "queue": "fuzz-q", "priorityClassName": "train",
                         "subGroups": [{"name": "a", "minMember": 1}],
                         "topologyConstraint": {"topology": "fuzz-topo", "requiredTopologyLevel": "zone"}}}
    if kind == "Queue":
        return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": name},
                "spec": {"parentQueue": "fuzz-root", "priority": 10,
                         "resources": {"gpu": _queue_res(1, 4, 2), "cpu": _queue_res(1000, -1, 1),
                                       "memory": _queue_res(1024, -1, 1)},
                         "preemptMinRuntime": "1m"}}
    if kind == "PriorityClass":
        return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                "value": 100, "globalDefault": False}
    if kind == "Topology":
        return {"apiVersion": "kai.scheduler/v1alpha1", "kind": "Topology", "metadata": {"name": name},
                "spec": {"levels": [{"nodeLabel": "zone"}, {"nodeLabel": "kubernetes.io/hostname"}]}}
    raise ValueError(kind)


def fuzz_support() -> list[dict]:
    """Valid objects the templates refer to (their queue tree and topology)."""
    root = {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": "fuzz-root"},
            "spec": {"resources": {"gpu": _queue_res(-1), "cpu": _queue_res(-1), "memory": _queue_res(-1)}}}
    leaf = template("Queue", "fuzz-q")
    return [root, leaf, template("Topology", "fuzz-topo")]


# ------------------------------------------------------------------ values
QUANTITIES = ["-1", "-0.5", "1e400", "10e399", "9e18", "9223372036854775808", "100000", "1e-400", "0.0000001n",
              "NaN", "inf", "", " ", "1Ei", "8Ei", "12XB", "1.2.3", "0x10", "1_000", "٣", "1e3Gi", "+4", "   4   "]
NUMBERS: list[Any] = [-1, -2, 0, 1, 2**31, 2**63 - 1, 2**63, 2**64 + 1, 10**30, -10**30, 0.5, -0.5, 1e308, -1e308,
                      float("nan"), float("inf"), float("-inf"), 1e-320]
LABEL_VALUES = ["1e309", "-1e309", "nan", "inf", "-8", "8.5", "99999999999", "", "x" * 300, "81920", "0"]

# any unicode a manifest file can carry (no surrogates or control characters: YAML cannot)
_chars = st.characters(blacklist_categories=("Cs", "Cc"))
weird_text = st.one_of(st.text(_chars, max_size=20), st.text(_chars, min_size=250, max_size=300),
                       st.sampled_from(["", " ", "a/b", "..", "ünïcödé-ñame", "名前", "\u202e", "x" * 254]))
scalar = st.one_of(st.none(), st.booleans(), st.sampled_from(NUMBERS), st.integers(), weird_text,
                   st.sampled_from(QUANTITIES))
weird_value = st.one_of(scalar, st.lists(scalar, max_size=3), st.dictionaries(weird_text, scalar, max_size=3))


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys / indexes) inside a JSON-like object, the root excluded."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + (k,))
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append(prefix + (i,))
            out.extend(_paths(v, prefix + (i,)))
    return out


def _parent(obj: Any, path: tuple) -> Any:
    for p in path[:-1]:
        obj = obj[p]
    return obj


def _quantity_maps(obj: dict) -> list[tuple]:
    """Paths of the ResourceList maps (requests, limits, allocatable, capacity, overhead)."""
    return [p for p in _paths(obj) if p and p[-1] in ("requests", "limits", "allocatable", "capacity", "overhead")
            and isinstance(_parent(obj, p)[p[-1]], dict)]


@st.composite
def mutation(draw, obj: dict) -> str:
    """Apply one mutation to ``obj`` in place; returns a short description (an earlier mutation
    may have broken the structure this one expects: then it does nothing)."""
    try:
        return _mutate(draw, obj)
    except (TypeError, KeyError, IndexError, AttributeError):
        return "none (structure already broken)"


def _mutate(draw, obj: dict) -> str:
    kind = obj["kind"]
    # 10,000-element lists are rare (about 1 mutation in 40): they dominate the cost of an example
    choice = draw(st.sampled_from(["set"] * 8 + ["delete"] * 4 + ["quantity"] * 8 + ["name"] * 4 + ["label"] * 4
                                  + ["number"] * 4 + ["annotation"] * 4 + ["big"]))
    paths = [p for p in _paths(obj) if p[0] not in ("apiVersion", "kind")]
    if choice == "set" and paths:
        path = draw(st.sampled_from(paths))
        _parent(obj, path)[path[-1]] = draw(weird_value)
        return f"set {path}"
    if choice == "delete" and paths:
        path = draw(st.sampled_from(paths))
        parent = _parent(obj, path)
        del parent[path[-1]]
        return f"delete {path}"
    if choice == "quantity":
        maps = _quantity_maps(obj)
        if maps:
            path = draw(st.sampled_from(maps))
            res = _parent(obj, path)[path[-1]]
            rname = draw(st.sampled_from(["cpu", "memory", "nvidia.com/gpu", "pods", "nvidia.com/mig-1g.10gb",
                                          "example.com/foo"]))
            res[rname] = draw(st.one_of(st.sampled_from(QUANTITIES), st.sampled_from(NUMBERS)))
            return f"quantity {path}.{rname}"
    if choice == "name":
        meta = obj.setdefault("metadata", {})
        field_ = draw(st.sampled_from(["name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"]))
        meta[field_] = draw(weird_text)
        return f"metadata.{field_}"
    if choice == "label":
        meta = obj.setdefault("metadata", {})
        labels = meta.setdefault("labels", {}) if isinstance(meta.get("labels", {}), dict) else {}
        key = draw(st.sampled_from(["nvidia.com/gpu.memory", "nvidia.com/gpu.count", "kai.scheduler/queue",
                                    "run.ai/task-priority", "kai.scheduler/subgroup-name"]))
        labels[key] = draw(st.sampled_from(LABEL_VALUES))
        meta["labels"] = labels
        return f"label {key}"
    if choice == "annotation" and kind == "Pod":
        ann = obj["metadata"].setdefault("annotations", {})
        key = draw(st.sampled_from(["gpu-fraction", "gpu-memory", "gpu-fraction-num-devices", "pod-group-name"]))
        ann[key] = draw(st.one_of(st.sampled_from(LABEL_VALUES + QUANTITIES), weird_text))
        return f"annotation {key}"
    if choice == "number":
        numeric = [p for p in paths if isinstance(_parent(obj, p)[p[-1]], (int, float))
                   and not isinstance(_parent(obj, p)[p[-1]], bool)]
        if numeric:
            path = draw(st.sampled_from(numeric))
            _parent(obj, path)[path[-1]] = draw(st.sampled_from(NUMBERS))
            return f"number {path}"
    if choice == "big":
        return _big(draw, obj)
    return "none"


def _big(draw, obj: dict) -> str:
    """A 10,000-element list or map where the object has one."""
    kind = obj["kind"]
    opts = ["labels"]
    if kind == "Pod":
        opts += ["containers", "tolerations", "env", "affinity"]
    if kind == "Node":
        opts += ["taints", "conditions"]
    if kind == "PodGroup":
        opts += ["subGroups"]
    if kind == "Topology":
        opts += ["levels"]
    what = draw(st.sampled_from(opts))
    n = BIG_LIST
    if what == "labels":
        obj.setdefault("metadata", {})["labels"] = {f"k{i}": f"v{i}" for i in range(n)}
    elif what == "containers":
        obj["spec"]["containers"] = [{"name": f"c{i}", "resources": {"requests": {"cpu": "1m"}}} for i in range(n)]
    elif what == "tolerations":
        obj["spec"]["tolerations"] = [{"key": f"k{i}", "operator": "Exists"} for i in range(n)]
    elif what == "env":
        obj["spec"]["containers"][0]["env"] = [{"name": f"E{i}", "value": "x"} for i in range(n)]
    elif what == "affinity":
        obj["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"][0]["matchExpressions"] = [
                {"key": f"k{i}", "operator": "In", "values": [str(i)]} for i in range(n)]
    elif what == "taints":
        obj["spec"]["taints"] = [{"key": f"k{i}", "value": "v", "effect": "NoSchedule"} for i in range(n)]
    elif what == "conditions":
        obj["status"]["conditions"] = [{"type": f"C{i}", "status": "True"} for i in range(n)]
    elif what == "subGroups":
        obj["spec"]["subGroups"] = [{"name": f"s{i}", "minMember": 1} for i in range(n)]
    elif what == "levels":
        obj["spec"]["levels"] = [{"nodeLabel": f"l{i}"} for i in range(n)]
    return f"big {what}"


class Scenario:
    """Good objects first, then the fuzzed ones (``fuzzed[i]`` described by ``notes[i]``)."""

    def __init__(self, good: list[dict], support: list[dict]) -> None:
        self.good = good
        self.support = support
        self.fuzzed: list[dict] = []
        self.notes: list[str] = []

    @property
    def objects(self) -> list[dict]:
        return [*self.good, *self.support, *self.fuzzed]

    def __repr__(self) -> str:
        shown = [json.dumps(o, default=str)[:400] for o in self.fuzzed]
        return f"Scenario(notes={self.notes!r}, fuzzed={shown!r})"

    @property
    def has_big(self) -> bool:
        return any(n.count("big ") for n in self.notes)


@st.composite
def scenarios(draw, max_fuzzed: int = 5) -> Scenario:
    sc = Scenario(good=good_objects(), support=fuzz_support())
    n = draw(st.integers(1, max_fuzzed))
    for i in range(n):
        kind = draw(st.sampled_from(KINDS))
        obj = copy.deepcopy(template(kind, f"fz-{kind.lower()}-{i}"))
        notes = [draw(mutation(obj)) for _ in range(draw(st.integers(1, 3)))]
        sc.fuzzed.append(obj)
        sc.notes.append(f"{kind}: " + ", ".join(notes))
    return sc
