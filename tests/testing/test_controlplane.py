"""Integration tests proving the local control plane is a real Kubernetes API (kai.testing)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

import pytest
from kubernetes import client, watch

from kai.testing.controlplane import (GPU_PRODUCTS, KUBERNETES_VERSION, NODE_CONDITION_TAINTS, ControlPlane,
                                     binaries_available, fake_node_manifest, gpu_feature_labels)

pytestmark = pytest.mark.integration


def _wait(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _pod(name: str, *, node_name: str | None = None, scheduler: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{
            "name": "main",
            "image": "busybox",
            "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": "1"},
                          "limits": {"nvidia.com/gpu": "1"}},
        }],
        "terminationGracePeriodSeconds": 5,
    }
    if node_name:
        spec["nodeName"] = node_name
    if scheduler:
        spec["schedulerName"] = scheduler
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def gpu_node(control_plane: ControlPlane) -> str:
    name = f"kwok-gpu-{uuid.uuid4().hex[:6]}"
    control_plane.create_node(fake_node_manifest(name, gpus=8, labels={"nvidia.com/gpu.product": "H100"}))
    control_plane.wait_nodes_ready([name])
    return name


def test_version_is_pinned(control_plane: ControlPlane) -> None:
    status, body = control_plane.api_request("GET", "/version")
    assert status == 200
    # resource.k8s.io/v1 (DRA) is GA from 1.34: the test control plane is at least that
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    assert (int(major), int(minor)) >= (1, 34)
    assert body["gitVersion"] == KUBERNETES_VERSION
    assert (body["major"], body["minor"]) == (major, minor)


def test_kubeconfig_and_namespace(kube_api: client.ApiClient) -> None:
    core = client.CoreV1Api(kube_api)
    name = f"ns-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    ns = core.read_namespace(name)
    assert ns.status.phase == "Active"
    core.delete_namespace(name)


def test_unauthenticated_requests_are_forbidden(control_plane: ControlPlane) -> None:
    import http.client
    import ssl

    ctx = ssl.create_default_context(cafile=control_plane.ca_file)
    conn = http.client.HTTPSConnection("127.0.0.1", control_plane.apiserver_port, context=ctx, timeout=10)
    conn.request("GET", "/api/v1/nodes")
    assert conn.getresponse().status == 403  # RBAC denies system:anonymous
    conn.close()


def test_fake_gpu_node_becomes_ready(kube_api: client.ApiClient, gpu_node: str) -> None:
    node = client.CoreV1Api(kube_api).read_node(gpu_node)
    ready = [c for c in node.status.conditions if c.type == "Ready"]
    assert ready and ready[0].status == "True"
    assert node.status.allocatable["nvidia.com/gpu"] == "8"
    assert node.metadata.labels["type"] == "kwok"


def test_fake_gpu_nodes_carry_gpu_feature_discovery_labels() -> None:
    gpu = fake_node_manifest("g", gpus=4, gpu_product="H100-80GB-HBM3")["metadata"]["labels"]
    assert gpu["nvidia.com/gpu.present"] == "true" and gpu["nvidia.com/gpu.count"] == "4"
    assert gpu["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3" and gpu["nvidia.com/gpu.family"] == "hopper"
    assert int(gpu["nvidia.com/gpu.memory"]) == GPU_PRODUCTS["H100-80GB-HBM3"][2]
    assert gpu["nvidia.com/mig.capable"] == "true" and gpu["nvidia.com/gpu.sharing-strategy"] == "none"
    assert gpu["nvidia.com/cuda.driver-version.full"].count(".") == 2
    assert "nvidia.com/mig.strategy" not in gpu          # GFD writes it for single/mixed MIG only
    cpu = fake_node_manifest("c", gpus=0)["metadata"]["labels"]
    assert not [k for k in cpu if k.startswith("nvidia.com/")]
    mine = fake_node_manifest("m", gpus=8, labels={"nvidia.com/gpu.product": "H100"})["metadata"]["labels"]
    assert mine["nvidia.com/gpu.product"] == "H100" and mine["nvidia.com/gpu.memory"] == "81920"
    with pytest.raises(ValueError, match="unknown GPU product"):
        gpu_feature_labels(8, "B200")


def test_new_nodes_lose_the_not_ready_taint(control_plane: ControlPlane) -> None:
    """The TaintNodesByCondition admission plugin taints a new node not-ready; the node
    lifecycle controller lifts it once kwok reports the node Ready (no toleration needed)."""
    name = f"kwok-taint-{uuid.uuid4().hex[:6]}"
    created = control_plane.create_node(fake_node_manifest(name, gpus=2))
    assert {t["key"] for t in created["spec"].get("taints") or []} == {"node.kubernetes.io/not-ready"}
    control_plane.wait_nodes_ready([name])
    _, node = control_plane.api_request("GET", f"/api/v1/nodes/{name}")
    assert not node["spec"].get("taints")
    control_plane.api_request("DELETE", f"/api/v1/nodes/{name}")


def test_pod_with_node_name_runs(kube_api: client.ApiClient, kube_namespace: str, gpu_node: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod(kube_namespace, _pod("direct", node_name=gpu_node))
    pod = _wait(lambda: (p := core.read_namespaced_pod("direct", kube_namespace)).status.phase == "Running" and p,
                what="pod Running")
    assert pod.spec.node_name == gpu_node
    assert pod.status.pod_ip
    # Graceful delete completes (kwok plays the kubelet).
    core.delete_namespaced_pod("direct", kube_namespace)
    _wait(lambda: not core.list_namespaced_pod(kube_namespace, field_selector="metadata.name=direct").items,
          what="pod deleted")


def test_binding_subresource(kube_api: client.ApiClient, kube_namespace: str, gpu_node: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod(kube_namespace, _pod("to-bind", scheduler="kai-scheduler"))
    time.sleep(0.5)
    pod = core.read_namespaced_pod("to-bind", kube_namespace)
    assert pod.spec.node_name is None and pod.status.phase == "Pending"
    binding = client.V1Binding(
        metadata=client.V1ObjectMeta(name="to-bind"),
        target=client.V1ObjectReference(api_version="v1", kind="Node", name=gpu_node),
    )
    # The API returns a Status, which the generated client cannot decode as V1Binding.
    resp = core.create_namespaced_binding(kube_namespace, binding, _preload_content=False)
    assert resp.status == 201
    pod = _wait(lambda: (p := core.read_namespaced_pod("to-bind", kube_namespace)).status.phase == "Running" and p,
                what="bound pod Running")
    assert pod.spec.node_name == gpu_node
    # Binding twice is a conflict.
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_binding(kube_namespace, binding, _preload_content=False)
    assert err.value.status == 409


def test_watch_with_bookmarks(kube_api: client.ApiClient, kube_namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    rv = core.list_namespaced_config_map(kube_namespace).metadata.resource_version
    watched = core.create_namespaced_config_map(kube_namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="watched", labels={"watch": "me"}), data={"a": "1"}))
    seen: list[tuple[str, str, int]] = []
    other_rv = 0
    w = watch.Watch()
    # The apiserver sends a bookmark ~2s before a watch's timeout (and about once a minute), but
    # only when the resource's resourceVersion moved past what the watcher has already seen:
    # the unlabelled "other" ConfigMap is filtered out of this watch and advances it.
    for event in w.stream(core.list_namespaced_config_map, kube_namespace, resource_version=rv,
                          label_selector="watch=me", allow_watch_bookmarks=True, timeout_seconds=6):
        meta = event["raw_object"]["metadata"]
        seen.append((event["type"], meta.get("name", ""), int(meta["resourceVersion"])))
        if event["type"] == "ADDED" and not other_rv:
            other_rv = int(core.create_namespaced_config_map(kube_namespace, client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="other"))).metadata.resource_version)
        if event["type"] == "BOOKMARK":
            w.stop()
    assert seen[0][:2] == ("ADDED", "watched")
    assert seen[0][2] == int(watched.metadata.resource_version)
    bookmarks = [s for s in seen if s[0] == "BOOKMARK"]
    assert bookmarks, seen
    assert bookmarks[0][2] >= other_rv > seen[0][2]
    assert not [s for s in seen if s[1] == "other"]


def test_job_creates_pods_via_controller_manager(kube_api: client.ApiClient, kube_namespace: str,
                                                 gpu_node: str) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "train"},
        "spec": {
            "parallelism": 2, "completions": 2, "backoffLimit": 0,
            "template": {"spec": {**_pod("x", scheduler="kai-scheduler")["spec"], "restartPolicy": "Never"}},
        },
    }
    batch.create_namespaced_job(kube_namespace, job)
    pods = _wait(lambda: len(items := core.list_namespaced_pod(kube_namespace,
                                                               label_selector="job-name=train").items) == 2
                 and items, what="2 job pods")
    assert all(p.spec.scheduler_name == "kai-scheduler" and not p.spec.node_name for p in pods)
    assert all(p.metadata.owner_references[0].kind == "Job" for p in pods)
    # Bind them as a scheduler would; kwok runs them and (for Job pods) completes them.
    for p in pods:
        core.create_namespaced_binding(kube_namespace, client.V1Binding(
            metadata=client.V1ObjectMeta(name=p.metadata.name),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=gpu_node)),
            _preload_content=False)
    _wait(lambda: (batch.read_namespaced_job_status("train", kube_namespace).status.succeeded or 0) == 2,
          timeout=60, what="job succeeded")


def test_deployment_creates_pods(kube_api: client.ApiClient, kube_namespace: str) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    dep = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": _pod("x", scheduler="kai-scheduler")["spec"]},
        },
    }
    apps.create_namespaced_deployment(kube_namespace, dep)
    _wait(lambda: len(core.list_namespaced_pod(kube_namespace, label_selector="app=web").items) == 3,
          what="3 deployment pods")


def test_restart_apiserver_keeps_data(control_plane: ControlPlane, kube_api: client.ApiClient,
                                      kube_namespace: str, gpu_node: str) -> None:
    core = client.CoreV1Api(kube_api)
    cm = core.create_namespaced_config_map(
        kube_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="persist"), data={"k": "v"}))
    before = int(cm.metadata.resource_version)
    pid = control_plane.processes()["kube-apiserver"]
    control_plane.restart_apiserver()
    assert control_plane.processes()["kube-apiserver"] != pid
    got = core.read_namespaced_config_map("persist", kube_namespace)
    assert got.data == {"k": "v"} and int(got.metadata.resource_version) == before
    assert core.read_node(gpu_node).metadata.name == gpu_node
    # Writes keep working and resourceVersions keep increasing (same etcd).
    cm2 = core.create_namespaced_config_map(
        kube_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="after"), data={}))
    assert int(cm2.metadata.resource_version) > before
    # kwok reconnects: a new pod on the fake node still becomes Running.
    core.create_namespaced_pod(kube_namespace, _pod("after-restart", node_name=gpu_node))
    _wait(lambda: core.read_namespaced_pod("after-restart", kube_namespace).status.phase == "Running",
          timeout=60, what="pod Running after apiserver restart")


def test_service_account_kubeconfig_is_least_privilege(control_plane: ControlPlane,
                                                       kube_namespace: str) -> None:
    from kubernetes import config

    sa_client = config.new_client_from_config(
        config_file=control_plane.service_account_kubeconfig(kube_namespace, "limited"))
    core = client.CoreV1Api(sa_client)
    with pytest.raises(client.ApiException) as err:
        core.list_namespaced_pod(kube_namespace)
    assert err.value.status == 403
    admin = control_plane.api_client()
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(kube_namespace, {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(kube_namespace, {
        "metadata": {"name": "pod-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "limited", "namespace": kube_namespace}]})
    _wait(lambda: _can_list(core, kube_namespace), what="RBAC binding effective")
    with pytest.raises(client.ApiException) as err:
        core.list_node()
    assert err.value.status == 403
    sa_client.close()
    admin.close()


def _can_list(core: client.CoreV1Api, ns: str) -> bool:
    try:
        core.list_namespaced_pod(ns)
        return True
    except client.ApiException:
        return False


def test_kwok_heartbeats_keep_nodes_ready_and_a_silent_node_is_tainted() -> None:
    """kwok renews each node's Lease (kube-node-lease) faster than the node lifecycle
    controller's grace period, so nodes stay Ready and untainted across several grace
    periods; once kwok stops, the controller marks the node Unknown and taints it
    unreachable:NoSchedule (so no scheduler places pods there). Grace period shortened to
    12 s (50 s by default) to keep this short. The pod on the node stays: every node of the
    zone is down (full disruption), where the controller adds no NoExecute taint, and pods
    tolerate one for 300 s anyway (DefaultTolerationSeconds)."""
    ok, reason = binaries_available()
    if not ok:
        pytest.skip(reason)
    with ControlPlane(with_controller_manager=True, controllers=("node-lifecycle-controller", "taint-eviction-controller"),
                      extra_controller_manager_args=["--node-monitor-grace-period=12s", "--node-monitor-period=1s"],
                      node_lease_seconds=12, service_account_admission=False) as cp:
        cp.create_node(fake_node_manifest("beat", gpus=1))
        cp.wait_nodes_ready(["beat"])
        cp.api_request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": "hb"}})
        cp.api_request("POST", "/api/v1/namespaces/hb/pods", _pod("resident", node_name="beat"))
        lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/beat"
        renewals = set()
        end = time.monotonic() + 30
        while time.monotonic() < end:
            _, node = cp.api_request("GET", "/api/v1/nodes/beat")
            ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True", node["status"]["conditions"]
            assert not node["spec"].get("taints"), node["spec"]
            status, lease = cp.api_request("GET", lease_path)
            assert status == 200
            renewals.add(lease["spec"]["renewTime"])
            time.sleep(1)
        assert len(renewals) >= 5, renewals                       # renewed every ~3 s
        cp.kill_process("kwok")

        def silent_node_tainted():
            _, node = cp.api_request("GET", "/api/v1/nodes/beat")
            ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            taints = {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}
            return ready["status"] == "Unknown" and (NODE_CONDITION_TAINTS[1], "NoSchedule") in taints
        _wait(silent_node_tainted, timeout=40, what="the silent node Unknown and tainted unreachable")
        time.sleep(5)
        status, pod = cp.api_request("GET", "/api/v1/namespaces/hb/pods/resident")
        assert status == 200 and not pod["metadata"].get("deletionTimestamp")
        assert {(t["key"], t.get("tolerationSeconds")) for t in pod["spec"]["tolerations"]} == {
            (NODE_CONDITION_TAINTS[0], 300), (NODE_CONDITION_TAINTS[1], 300)}


def test_controller_manager_gains_a_controller_it_was_started_without() -> None:
    """The live benchmark's cluster runs the node lifecycle controllers; its DRA workload then
    asks for the resourceclaim controller. kube-controller-manager is restarted with both, and
    the claim controller creates a pod's claim from its template."""
    ok, reason = binaries_available()
    if not ok:
        pytest.skip(reason)
    with ControlPlane(with_controller_manager=True, controllers=("node-lifecycle-controller",),
                      with_kwok=False, service_account_admission=False) as cp:
        cp.start_controller_manager(["resourceclaim-controller"])
        assert cp.controllers == ("node-lifecycle-controller", "resourceclaim-controller")
        pid = cp.processes()["kube-controller-manager"]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert b"--controllers=node-lifecycle-controller,resourceclaim-controller" in argv, argv
        cp.start_controller_manager(["resourceclaim-controller"])          # already there: no restart
        assert cp.processes()["kube-controller-manager"] == pid
        cp.api_request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": "rc"}})
        dra = "/apis/resource.k8s.io/v1"
        cp.api_request("POST", f"{dra}/deviceclasses", {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
                                                        "metadata": {"name": "rc-gpu"}, "spec": {}})
        cp.api_request("POST", f"{dra}/namespaces/rc/resourceclaimtemplates", {
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate", "metadata": {"name": "one"},
            "spec": {"spec": {"devices": {"requests": [{"name": "g", "exactly": {"deviceClassName": "rc-gpu"}}]}}}})
        pod = _pod("claimer")
        pod["spec"]["resourceClaims"] = [{"name": "g", "resourceClaimTemplateName": "one"}]
        status, body = cp.api_request("POST", "/api/v1/namespaces/rc/pods", pod)
        assert status == 201, body
        _wait(lambda: cp.api_request("GET", f"{dra}/namespaces/rc/resourceclaims")[1].get("items"),
              timeout=60, what="the claim made from the pod's template")
