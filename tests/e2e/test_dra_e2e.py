"""Dynamic Resource Allocation end to end (issue 10), against the real API server with ``kai scheduler``:

- kwok nodes whose devices the test publishes as ResourceSlices, as a DRA driver would, and a
  DeviceClass selecting them;
- pods with claim templates: the controller-manager's resourceclaim-controller creates the
  claims, kai allocates devices and its binder writes ``status.allocation``, ``reservedFor``
  and the delete-protection finalizer before binding; no device is allocated twice, every
  device is on the pod's node, and the pod left over waits with a reason naming the request;
- a claim shared by two pods: allocated once, both pods where its device is, both in reservedFor;
- a gang whose claims do not all fit: nothing is bound and no claim is allocated (all or
  nothing); with another node, all of it;
- a differential against the upstream kube-scheduler of the same control plane: the same pods
  on two identical node sets (one per scheduler, separate drivers), both allocations checked for
  validity, and the cases built so that exactly one device is feasible must pick the same device.
"""
from __future__ import annotations

import uuid

import pytest

from e2e_helpers import ensure, wait_for
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration

RES = "/apis/resource.k8s.io/v1"
NOT_READY = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]
FINALIZER = "resource.kubernetes.io/delete-protection"


def _publish(c, control_plane, prefix: str, driver: str, devices_per_node: list[list[dict]], label: str) -> list[str]:
    """kwok nodes ``<prefix>-<i>`` (label e2e-set=<label>) and one ResourceSlice each, as a driver
    publishes them: ``devices_per_node[i]`` are node i's devices."""
    names = []
    for i, devs in enumerate(devices_per_node):
        name = f"{prefix}-{i}"
        control_plane.create_node(fake_node_manifest(name, gpus=0, cpu="16", memory="64Gi",
                                                     labels={"e2e-set": label}))
        c.post(f"{RES}/resourceslices", {
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": f"{name}-{driver}"},
            "spec": {"driver": driver, "nodeName": name, "pool": {"name": name, "generation": 1,
                                                                   "resourceSliceCount": 1},
                     "devices": devs}})
        names.append(name)
    control_plane.wait_nodes_ready(names)
    return names


def _gpu(name: str, model: str = "A100", memory: str = "40Gi", index: int = 0) -> dict:
    return {"name": name, "attributes": {"model": {"string": model}, "index": {"int": index}},
            "capacity": {"memory": {"value": memory}}}


def _device_class(c, name: str, driver: str, *extra: str) -> None:
    sels = [{"cel": {"expression": f'device.driver == "{driver}"'}}] + [{"cel": {"expression": e}} for e in extra]
    ensure(c, f"{RES}/deviceclasses", {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
                                       "metadata": {"name": name}, "spec": {"selectors": sels}})


def _claim_spec(cls: str, count: int = 1, *selectors: str, first_available: list[dict] | None = None) -> dict:
    if first_available:
        return {"devices": {"requests": [{"name": "gpu", "firstAvailable": first_available}]}}
    return {"devices": {"requests": [{"name": "gpu", "exactly": {
        "deviceClassName": cls, "count": count, "selectors": [{"cel": {"expression": s}} for s in selectors]}}]}}


def _template(c, ns: str, name: str, spec: dict) -> None:
    c.post(f"{RES}/namespaces/{ns}/resourceclaimtemplates", {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate", "metadata": {"name": name},
        "spec": {"spec": spec}})


def _pod(name: str, node_set: str, scheduler: str = "kai-scheduler", template: str = "", claim: str = "",
         labels: dict | None = None, annotations: dict | None = None) -> dict:
    entry = {"name": "gpus", **({"resourceClaimTemplateName": template} if template else {"resourceClaimName": claim})}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"kai.scheduler/queue": "default-queue", **(labels or {})},
                         "annotations": annotations or {}},
            "spec": {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0, "tolerations": NOT_READY,
                     "nodeSelector": {"e2e-set": node_set}, "resourceClaims": [entry],
                     "containers": [{"name": "main", "image": "busybox",
                                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                                   "claims": [{"name": "gpus"}]}}]}}


def _pods(c, ns: str, prefix: str) -> list[dict]:
    return [p for p in c.get(f"/api/v1/namespaces/{ns}/pods")["items"] if p["metadata"]["name"].startswith(prefix)]


def _claim_of(c, ns: str, pod: dict) -> dict:
    """The claim the pod's one entry uses (a template's: from status.resourceClaimStatuses)."""
    entry = pod["spec"]["resourceClaims"][0]
    name = entry.get("resourceClaimName")
    if not name:
        name = next(s["resourceClaimName"] for s in pod["status"]["resourceClaimStatuses"] if s["name"] == entry["name"])
    return c.get(f"{RES}/namespaces/{ns}/resourceclaims/{name}")


def _check_allocations(c, ns: str, pods: list[dict], slices: dict[str, dict]) -> list[tuple[str, str, str]]:
    """Every bound pod's claim is allocated on devices of its node and reserved for it; returns
    the devices (driver, pool, device) per distinct claim, asserting none is used twice."""
    seen: dict[str, list] = {}
    for p in pods:
        node = p["spec"].get("nodeName")
        if not node:
            continue
        claim = _claim_of(c, ns, p)
        alloc = claim["status"]["allocation"]
        assert p["metadata"]["uid"] in [r["uid"] for r in claim["status"]["reservedFor"]]
        assert FINALIZER in claim["metadata"].get("finalizers", [])
        for r in alloc["devices"]["results"]:
            assert r["pool"] == node, (p["metadata"]["name"], r, node)
            assert r["device"] in {d["name"] for d in slices[node]["devices"]}
        terms = alloc["nodeSelector"]["nodeSelectorTerms"]
        assert terms[0]["matchFields"][0]["values"] == [node]
        seen[claim["metadata"]["name"]] = [(r["driver"], r["pool"], r["device"]) for r in alloc["devices"]["results"]]
    devices = [d for devs in seen.values() for d in devs]
    assert len(devices) == len(set(devices)), f"a device allocated twice: {seen}"
    return devices


def _slices(c, nodes: list[str]) -> dict[str, dict]:
    out = {}
    for s in c.get(f"{RES}/resourceslices")["items"]:
        if s["spec"].get("nodeName") in nodes:
            out[s["spec"]["nodeName"]] = s["spec"]
    return out


def _reason(c, ns: str, name: str, text: str):
    p = c.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    for cond in p.get("status", {}).get("conditions", []):
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and text in (cond.get("message") or ""):
            return cond["message"]
    return None


def test_claim_templates_allocated_and_written_before_binding(kai_client, kai_scheduler, control_plane, kube_namespace):
    c, ns = kai_client, kube_namespace
    tag = uuid.uuid4().hex[:6]
    driver = f"gpu-{tag}.example.com"
    nodes = _publish(c, control_plane, f"dra-{tag}", driver,
                     [[_gpu("gpu-0"), _gpu("gpu-1", index=1)], [_gpu("gpu-0"), _gpu("gpu-1", index=1)]], f"dra-{tag}")
    _device_class(c, f"gpu-{tag}", driver)
    _template(c, ns, "one-gpu", _claim_spec(f"gpu-{tag}"))
    for i in range(5):
        c.post(f"/api/v1/namespaces/{ns}/pods", _pod(f"t{tag}-{i}", f"dra-{tag}", template="one-gpu"))

    def four_bound():
        pods = _pods(c, ns, f"t{tag}-")
        bound = [p for p in pods if p["spec"].get("nodeName")]
        return (pods, bound) if len(bound) == 4 else None

    pods, bound = wait_for(four_bound, 90, what="four of five pods bound")
    devices = _check_allocations(c, ns, pods, _slices(c, nodes))
    assert len(devices) == 4
    pending = next(p for p in pods if not p["spec"].get("nodeName"))
    why = wait_for(lambda: _reason(c, ns, pending["metadata"]["name"], "request gpu"), 30,
                   what="the pending pod's reason")
    assert "resource claim" in why and f"class gpu-{tag}" in why
    # its claim exists (the controller made it) and kai did not allocate it
    assert _claim_of(c, ns, c.get(f"/api/v1/namespaces/{ns}/pods/{pending['metadata']['name']}"))["status"].get(
        "allocation") is None


def test_shared_claim_allocated_once_both_pods_on_its_node(kai_client, kai_scheduler, control_plane, kube_namespace):
    c, ns = kai_client, kube_namespace
    tag = uuid.uuid4().hex[:6]
    driver = f"gpu-{tag}.example.com"
    nodes = _publish(c, control_plane, f"shr-{tag}", driver, [[_gpu("gpu-0")], [_gpu("gpu-0")], [_gpu("gpu-0")]],
                     f"shr-{tag}")
    _device_class(c, f"gpu-{tag}", driver)
    c.post(f"{RES}/namespaces/{ns}/resourceclaims", {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                                                     "metadata": {"name": "shared"},
                                                     "spec": _claim_spec(f"gpu-{tag}")})
    for i in range(2):
        c.post(f"/api/v1/namespaces/{ns}/pods", _pod(f"s{tag}-{i}", f"shr-{tag}", claim="shared"))

    def both_bound():
        pods = _pods(c, ns, f"s{tag}-")
        return pods if sum(1 for p in pods if p["spec"].get("nodeName")) == 2 else None

    pods = wait_for(both_bound, 90, what="both pods of the shared claim bound")
    claim = c.get(f"{RES}/namespaces/{ns}/resourceclaims/shared")
    results = claim["status"]["allocation"]["devices"]["results"]
    assert len(results) == 1
    assert {p["spec"]["nodeName"] for p in pods} == {results[0]["pool"]}
    assert results[0]["pool"] in nodes
    assert sorted(r["uid"] for r in claim["status"]["reservedFor"]) == sorted(p["metadata"]["uid"] for p in pods)


def test_gang_claims_all_or_nothing(kai_client, kai_scheduler, control_plane, kube_namespace):
    c, ns = kai_client, kube_namespace
    tag = uuid.uuid4().hex[:6]
    driver = f"gpu-{tag}.example.com"
    label = f"gng-{tag}"
    _publish(c, control_plane, f"gng-{tag}", driver, [[_gpu("gpu-0"), _gpu("gpu-1")], [_gpu("gpu-0"), _gpu("gpu-1")]],
             label)
    _device_class(c, f"gpu-{tag}", driver)
    _template(c, ns, "two-gpus", _claim_spec(f"gpu-{tag}", 2))
    c.post(f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups", {
        "apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": {"name": f"g{tag}"},
        "spec": {"minMember": 3, "queue": "default-queue"}})
    for i in range(3):
        c.post(f"/api/v1/namespaces/{ns}/pods", _pod(f"g{tag}-{i}", label, template="two-gpus",
                                                      annotations={"pod-group-name": f"g{tag}"}))
    why = wait_for(lambda: _reason(c, ns, f"g{tag}-0", "gang") or _reason(c, ns, f"g{tag}-0", "resource claim"),
                   60, what="the gang's reason")
    assert why
    pods = _pods(c, ns, f"g{tag}-")
    assert not any(p["spec"].get("nodeName") for p in pods)
    for p in pods:                         # no claim of the gang got an allocation
        if p.get("status", {}).get("resourceClaimStatuses"):
            assert _claim_of(c, ns, p)["status"].get("allocation") is None
    nodes = _publish(c, control_plane, f"gng-{tag}-more", driver, [[_gpu("gpu-0"), _gpu("gpu-1")]], label)

    def all_bound():
        ps = _pods(c, ns, f"g{tag}-")
        return ps if all(p["spec"].get("nodeName") for p in ps) else None

    pods = wait_for(all_bound, 90, what="the whole gang bound once a third node is published")
    all_nodes = [f"gng-{tag}-0", f"gng-{tag}-1"] + nodes
    assert len(_check_allocations(c, ns, pods, _slices(c, all_nodes))) == 6


# ------------------------------------------------------------------------- differential
def _models(*models: str) -> list[list[dict]]:
    """Three nodes; node i has devices gpu-0.. with the models given for it ("," separates nodes)."""
    return [[_gpu(f"gpu-{k}", m, index=k) for k, m in enumerate(node.split("+"))] for node in models]


CASES = [
    # (name, devices per node, class extra selectors, claim spec builder(class), (node, device) that must win)
    ("model-selector", _models("A100+A100", "A100+H100", "A100+A100"), (),
     lambda cls: _claim_spec(cls, 1, 'device.attributes["%s"].model == "H100"'), (1, "gpu-1")),
    ("class-selector", _models("A100+L4", "A100+A100", "A100+A100"), ('device.attributes["%s"].model == "L4"',),
     lambda cls: _claim_spec(cls), (0, "gpu-1")),
    ("first-available-second-choice", _models("A100", "A30+A100", "A100"), (),
     lambda cls: _claim_spec(cls, first_available=[
         {"name": "h100", "deviceClassName": cls,
          "selectors": [{"cel": {"expression": 'device.attributes["%s"].model == "H100"'}}]},
         {"name": "a30", "deviceClassName": cls,
          "selectors": [{"cel": {"expression": 'device.attributes["%s"].model == "A30"'}}]}]), (1, "gpu-0")),
    ("two-on-one-node", _models("A100", "A100+A100", "A100"), (), lambda cls: _claim_spec(cls, 2), (1, "gpu-0+gpu-1")),
]


def _fill(obj, driver: str):
    """Put the driver's name into the '%s' of CEL expressions (attributes are keyed by driver)."""
    if isinstance(obj, str):
        return obj.replace("%s", driver) if "%s" in obj else obj
    if isinstance(obj, list):
        return [_fill(x, driver) for x in obj]
    if isinstance(obj, dict):
        return {k: _fill(v, driver) for k, v in obj.items()}
    return obj


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_same_device_as_kube_scheduler_when_one_is_feasible(case, kai_client, kai_scheduler, control_plane,
                                                            kube_namespace):
    control_plane.start_kube_scheduler()
    name, devices, class_extra, spec_of, (want_node, want_devices) = case
    c, ns = kai_client, kube_namespace
    tag = uuid.uuid4().hex[:6]
    got = {}
    for sched in ("kai-scheduler", "default-scheduler"):
        node_set = f"x{tag}-{sched[:3]}"
        driver = f"{node_set}.example.com"
        nodes = _publish(c, control_plane, node_set, driver, devices, node_set)
        cls = f"cls-{node_set}"
        _device_class(c, cls, driver, *[_fill(e, driver) for e in class_extra])
        _template(c, ns, f"t-{node_set}", _fill(spec_of(cls), driver))
        c.post(f"/api/v1/namespaces/{ns}/pods", _pod(f"{node_set}-new", node_set, sched, template=f"t-{node_set}"))

        def bound(pod=f"{node_set}-new"):
            p = c.get(f"/api/v1/namespaces/{ns}/pods/{pod}")
            return p if p["spec"].get("nodeName") else None

        pod = wait_for(bound, 90, what=f"{name}: {sched} binds the new pod")
        _check_allocations(c, ns, [pod], _slices(c, nodes))
        claim = _claim_of(c, ns, pod)
        results = claim["status"]["allocation"]["devices"]["results"]
        got[sched] = (nodes.index(pod["spec"]["nodeName"]), "+".join(sorted(r["device"] for r in results)),
                      sorted(r["request"] for r in results))
    assert got["kai-scheduler"] == got["default-scheduler"], got
    assert got["kai-scheduler"][:2] == (want_node, want_devices)
