"""Pod constraints end to end (issue 9), against the real API server with ``kai scheduler``:

- a Deployment whose replicas have required anti-affinity on the hostname: one per node, the
  replica with no node left pending with the reason;
- pods taking the same hostPort: never two on one node;
- a differential against the upstream kube-scheduler of the same control plane: the same pod
  specs on two identical node sets (one per scheduler), every placement checked by the
  independent checker (kai.testing.kube_filters), and the cases built so that exactly one node
  is feasible must give the same node from both.
"""
from __future__ import annotations

import uuid

import msgspec
import pytest

from e2e_helpers import wait_for
from kai.api.k8s import Node, Pod
from kai.testing.controlplane import fake_node_manifest
from kai.testing.kube_filters import violations

pytestmark = pytest.mark.integration

HOST, ZONE = "kubernetes.io/hostname", "topology.kubernetes.io/zone"


def _nodes(control_plane, prefix: str, zones: list[str], label: str) -> list[str]:
    names = []
    for i, z in enumerate(zones):
        name = f"{prefix}-{i}"
        control_plane.create_node(fake_node_manifest(name, gpus=0, cpu="16", memory="64Gi",
                                                     labels={ZONE: z, "e2e-set": label}))
        names.append(name)
    control_plane.wait_nodes_ready(names)
    return names


def _pod(name: str, scheduler: str, node_set: str, labels: dict, node_name: str = "", **spec) -> dict:
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"kai.scheduler/queue": "default-queue", **labels}},
            "spec": {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
                     "nodeSelector": {"e2e-set": node_set},
                     "containers": [{"name": "main", "image": "busybox",
                                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}], **spec}}
    if node_name:
        body["spec"]["nodeName"] = node_name
    return body


def _anti(app, key=HOST):
    return {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}}


def test_deployment_with_anti_affinity_one_replica_per_node(kai_client, kai_scheduler, control_plane, kube_namespace):
    c, ns = kai_client, kube_namespace
    tag = uuid.uuid4().hex[:6]
    nodes = _nodes(control_plane, f"aa-{tag}", ["a", "b"], f"aa-{tag}")
    tmpl = _pod("x", "kai-scheduler", f"aa-{tag}", {"app": f"web-{tag}"}, **_anti(f"web-{tag}"))
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": f"web-{tag}"}},
                    "template": {"metadata": {"labels": tmpl["metadata"]["labels"]}, "spec": tmpl["spec"]}}}
    c.post(f"/apis/apps/v1/namespaces/{ns}/deployments", dep)

    def placed():
        pods = c.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": f"app=web-{tag}"})["items"]
        bound = [p for p in pods if p["spec"].get("nodeName")]
        return (pods, bound) if len(pods) == 3 and len(bound) == 2 else None

    pods, bound = wait_for(placed, 60, what="two of three replicas bound")
    assert sorted(p["spec"]["nodeName"] for p in bound) == sorted(nodes)

    def reason():
        for p in c.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": f"app=web-{tag}"})["items"]:
            if not p["spec"].get("nodeName"):
                for cond in p.get("status", {}).get("conditions", []):
                    if cond.get("type") == "PodScheduled" and "anti-affinity" in (cond.get("message") or ""):
                        return cond["message"]
        return None

    assert "didn't match pod anti-affinity rules" in wait_for(reason, 30, what="the pending replica's reason")


def test_host_port_never_twice_on_a_node(kai_client, kai_scheduler, control_plane, kube_namespace):
    c, ns = kai_client, kube_namespace
    tag = uuid.uuid4().hex[:6]
    _nodes(control_plane, f"hp-{tag}", ["a", "b"], f"hp-{tag}")
    for i in range(3):
        body = _pod(f"hp-{i}", "kai-scheduler", f"hp-{tag}", {"app": f"hp-{tag}"})
        body["spec"]["containers"][0]["ports"] = [{"containerPort": 8080, "hostPort": 8080}]
        c.post(f"/api/v1/namespaces/{ns}/pods", body)

    def bound():
        pods = c.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": f"app=hp-{tag}"})["items"]
        got = [p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")]
        return got if len(got) == 2 else None

    got = wait_for(bound, 60, what="two host-port pods bound")
    assert len(set(got)) == 2


# ------------------------------------------------------------------------- differential
CASES = [
    # (name, running pods as (labels, node index, extra spec), new pod labels, new pod extra spec, the one node)
    ("anti-affinity-leaves-one-node", [({"app": "db"}, 0, {}), ({"app": "db"}, 1, {})],
     {"app": "web"}, _anti("db"), 2),
    ("existing-anti-affinity-leaves-one-node", [({"app": "db"}, 0, _anti("web")), ({"app": "db"}, 1, _anti("web"))],
     {"app": "web"}, {}, 2),
    ("zone-spread-leaves-one-zone", [({"app": "s"}, 0, {}), ({"app": "s"}, 1, {})], {"app": "s"},
     {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                                     "labelSelector": {"matchLabels": {"app": "s"}}}]}, 2),
    ("affinity-to-one-pod", [({"app": "cache"}, 1, {})], {"app": "web"},
     {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": HOST}]}}}, 1),
    ("host-port-leaves-one-node", [({"app": "p"}, 0, {"ports": 9100}), ({"app": "p"}, 1, {"ports": 9100})],
     {"app": "q"}, {"ports": 9100}, 2),
]


def _with_ports(body: dict, extra: dict) -> dict:
    extra = dict(extra)
    port = extra.pop("ports", None)
    body["spec"].update(extra)
    if port:
        body["spec"]["containers"][0]["ports"] = [{"containerPort": port, "hostPort": port}]
    return body


def _all_running(c, ns: str, names: list[str]) -> bool:
    return all(c.get(f"/api/v1/namespaces/{ns}/pods/{n}").get("status", {}).get("phase") == "Running"
               for n in names)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_same_node_as_kube_scheduler_when_one_is_feasible(case, kai_client, kai_scheduler, control_plane,
                                                          kube_namespace):
    control_plane.start_kube_scheduler()
    name, running, labels, extra, want = case
    c, ns = kai_client, kube_namespace
    tag = uuid.uuid4().hex[:6]
    got = {}
    for sched in ("kai-scheduler", "default-scheduler"):
        node_set = f"d{tag}-{sched[:3]}"
        nodes = _nodes(control_plane, node_set, ["a", "a", "b"], node_set)
        for i, (rl, idx, rextra) in enumerate(running):
            c.post(f"/api/v1/namespaces/{ns}/pods",
                   _with_ports(_pod(f"{node_set}-r{i}", sched, node_set, rl, node_name=nodes[idx]), rextra))
        # kube-scheduler files assigned pods and pods to schedule through two handlers of one
        # informer, each with its own goroutine: a new pod posted right after the running ones
        # can be scheduled before its cache holds them (seen once on a loaded 2-vCPU machine: the
        # host-port case bound on a taken port). Posting the new pod once kwok has reported the
        # running ones Running gives that handler a whole round trip's lead.
        wait_for(lambda: _all_running(c, ns, [f"{node_set}-r{i}" for i in range(len(running))]), 60,
                 what=f"{name}: the running pods Running")
        c.post(f"/api/v1/namespaces/{ns}/pods", _with_ports(_pod(f"{node_set}-new", sched, node_set, labels), extra))

        def bound(pod=f"{node_set}-new"):
            p = c.get(f"/api/v1/namespaces/{ns}/pods/{pod}")
            return p["spec"].get("nodeName")

        got[sched] = (wait_for(bound, 60, what=f"{name}: {sched} binds the new pod"), nodes)
        pods = [msgspec.convert(p, Pod) for p in c.get(f"/api/v1/namespaces/{ns}/pods")["items"]
                if p["metadata"]["name"].startswith(node_set)]
        node_objs = [msgspec.convert(c.get(f"/api/v1/nodes/{n}"), Node) for n in nodes]
        new = [p for p in pods if p.metadata.name.endswith("-new")]
        old = [(p, p.spec.node_name) for p in pods if not p.metadata.name.endswith("-new")]
        assert violations([(new[0], new[0].spec.node_name)], node_objs, old) == [], sched
    kai_node, kai_nodes = got["kai-scheduler"]
    kube_node, kube_nodes = got["default-scheduler"]
    assert kai_nodes.index(kai_node) == kube_nodes.index(kube_node) == want
