"""Differential: the same volume pods scheduled by kube-scheduler (v1.34, the harness's binary) and
by ``kai scheduler`` agree on the node, in cases built so that exactly one node is feasible.

Three kwok nodes (``diff-a`` in zone a, ``diff-b`` and ``diff-c`` in zone b) host both copies of
every case: each scheduler gets its own namespace, claims and PVs (same shapes, distinct names);
CSINodes are shared; each copy has its own StorageClasses, so no claim can take the other copy's
PVs. kube-scheduler runs with a profile named ``kube-diff`` so it touches only
these pods. A case either names its one feasible node, or None: then neither may bind the pod.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from e2e_helpers import ensure, free_port, wait_for
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration

NODES = {"diff-a": "a", "diff-b": "b", "diff-c": "b"}
ZONE = "topology.kubernetes.io/zone"
SELECTED = "volume.kubernetes.io/selected-node"
DRIVER = "diff.csi.example.com"


@pytest.fixture(scope="module")
def diff_nodes(control_plane, kai_client):
    for name, zone in NODES.items():
        try:
            control_plane.create_node(fake_node_manifest(name, gpus=0, labels={ZONE: zone, "diff": "yes"}))
        except Exception as exc:   # noqa: BLE001 - already there
            if "409" not in str(exc) and "AlreadyExists" not in str(exc):
                raise
    control_plane.wait_nodes_ready(list(NODES))
    # CSI limits: diff-a and diff-b take no volume of DRIVER, diff-c has no limit
    for name in ("diff-a", "diff-b"):
        ensure(kai_client, "/apis/storage.k8s.io/v1/csinodes", {
            "apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": {"name": name},
            "spec": {"drivers": [{"name": DRIVER, "nodeID": name, "allocatable": {"count": 0}}]}})
    return list(NODES)


def _classes(c, prefix) -> dict[str, str]:
    """A case copy's own classes (a claim may take any available PV of its class: copies must not share)."""
    out = {}
    for short, prov, zones in (("local", "kubernetes.io/no-provisioner", None), ("zone-a", "kai.diff/fake", ["a"])):
        name = out[short] = f"{prefix}-{short}"
        sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
              "provisioner": prov, "volumeBindingMode": "WaitForFirstConsumer"}
        if zones:
            sc["allowedTopologies"] = [{"matchLabelExpressions": [{"key": ZONE, "values": zones}]}]
        ensure(c, "/apis/storage.k8s.io/v1/storageclasses", sc)
    return out


@pytest.fixture(scope="module")
def kube_scheduler(control_plane, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("kube-diff")
    cfg = logdir / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": control_plane.kubeconfig},
        "leaderElection": {"leaderElect": False}, "profiles": [{"schedulerName": "kube-diff"}]}))
    argv = [str(Path(control_plane.bin_dir) / "kube-scheduler"), f"--config={cfg}",
            f"--authentication-kubeconfig={control_plane.kubeconfig}",
            f"--authorization-kubeconfig={control_plane.kubeconfig}", "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}", f"--cert-dir={logdir / 'certs'}", "-v=2"]
    log = open(logdir / "kube-scheduler.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=str(logdir), start_new_session=True)
    try:
        yield proc
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def _pv(c, tag, cls, size="1Gi", node=None, modes=("ReadWriteOnce",), claim=None, zone=None,
        csi=False) -> str:
    name = f"diff-{uuid.uuid4().hex[:8]}"
    spec = {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls,
            "persistentVolumeReclaimPolicy": "Retain"}
    if csi:
        spec["csi"] = {"driver": DRIVER, "volumeHandle": name}
    else:
        spec["local"] = {"path": f"/mnt/{name}"}
    if node is not None:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    elif not csi:
        spec.pop("local")
        spec["hostPath"] = {"path": f"/mnt/{name}"}
    if claim is not None:
        spec["claimRef"] = claim
    labels = {"diff-volumes": tag, **({ZONE: zone} if zone else {})}
    c.post("/api/v1/persistentvolumes", {"apiVersion": "v1", "kind": "PersistentVolume",
                                         "metadata": {"name": name, "labels": labels}, "spec": spec})
    return name


def _claim(c, ns, name, cls, size="1Gi", modes=("ReadWriteOnce",), volume=""):
    spec = {"accessModes": list(modes), "storageClassName": cls, "resources": {"requests": {"storage": size}}}
    if volume:
        spec["volumeName"] = volume
    c.post(f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
           {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec})


def _pod(c, ns, name, claims, scheduler, node_name=""):
    spec = {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
            "nodeSelector": {"diff": "yes"}, "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}},
                            "volumeMounts": [{"name": f"v{i}", "mountPath": f"/v{i}"} for i in range(len(claims))]}],
            "volumes": [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": cl}} for i, cl in enumerate(claims)]}
    if node_name:
        spec["nodeName"] = node_name
    c.post(f"/api/v1/namespaces/{ns}/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                              "spec": spec})


# each case builds its objects in one namespace for one scheduler; returns nothing
def case_bound_pvc(c, ns, sched, tag, sc):
    pv = _pv(c, tag, sc["local"], node="diff-c", claim={"kind": "PersistentVolumeClaim", "namespace": ns, "name": "data"})
    _claim(c, ns, "data", sc["local"], volume=pv)
    _pod(c, ns, "p", ["data"], sched)


def case_one_matching_static_pv(c, ns, sched, tag, sc):
    _pv(c, tag, sc["local"], size="1Gi", node="diff-b")                          # too small
    _pv(c, tag, sc["local"], size="4Gi", node="diff-a", modes=("ReadOnlyMany",))  # wrong access mode
    _pv(c, tag, sc["local"], size="4Gi", node="diff-c")                          # the one
    _claim(c, ns, "data", sc["local"], size="2Gi")
    _pod(c, ns, "p", ["data"], sched)


def case_provision_in_zone_a(c, ns, sched, tag, sc):
    _claim(c, ns, "data", sc["zone-a"])
    _pod(c, ns, "p", ["data"], sched)


def case_volume_zone(c, ns, sched, tag, sc):
    pv = _pv(c, tag, sc["local"], zone="a", claim={"kind": "PersistentVolumeClaim", "namespace": ns, "name": "data"})
    _claim(c, ns, "data", sc["local"], volume=pv)
    _pod(c, ns, "p", ["data"], sched)


def case_csi_limit(c, ns, sched, tag, sc):
    pv = _pv(c, tag, sc["local"], csi=True, claim={"kind": "PersistentVolumeClaim", "namespace": ns, "name": "data"})
    _claim(c, ns, "data", sc["local"], volume=pv)
    _pod(c, ns, "p", ["data"], sched)


def case_two_claims_two_pvs(c, ns, sched, tag, sc):
    _pv(c, tag, sc["local"], node="diff-a")
    _pv(c, tag, sc["local"], node="diff-b")
    _pv(c, tag, sc["local"], node="diff-b")
    _claim(c, ns, "d1", sc["local"])
    _claim(c, ns, "d2", sc["local"])
    _pod(c, ns, "p", ["d1", "d2"], sched)


def case_rwop_in_use(c, ns, sched, tag, sc):
    pv = _pv(c, tag, sc["local"], modes=("ReadWriteOncePod",),
             claim={"kind": "PersistentVolumeClaim", "namespace": ns, "name": "data"})
    _claim(c, ns, "data", sc["local"], modes=("ReadWriteOncePod",), volume=pv)
    _pod(c, ns, "user", ["data"], sched, node_name="diff-a")
    _pod(c, ns, "p", ["data"], sched)


CASES = [(case_bound_pvc, "diff-c"), (case_one_matching_static_pv, "diff-c"), (case_provision_in_zone_a, "diff-a"),
         (case_volume_zone, "diff-a"), (case_csi_limit, "diff-c"), (case_two_claims_two_pvs, "diff-b"),
         (case_rwop_in_use, None)]


def _namespace(c) -> str:
    ns = f"diff-{uuid.uuid4().hex[:8]}"
    c.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    wait_for(lambda: any(s["metadata"]["name"] == "default" for s in
                         c.get(f"/api/v1/namespaces/{ns}/serviceaccounts")["items"]), 30, what="default SA")
    return ns


def _provisioner(c, namespaces, stop, tag):
    """A stand-in external provisioner for the zone-a classes: a PV on the selected node."""
    done = set()
    while not stop.is_set():
        for ns in namespaces:
            try:
                claim = c.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")
            except Exception:   # noqa: BLE001 - not there yet
                continue
            node = (claim["metadata"].get("annotations") or {}).get(SELECTED)
            cls = claim["spec"].get("storageClassName") or ""
            if node and ns not in done and cls.endswith("-zone-a"):
                _pv(c, tag, cls, node=node, claim={"kind": "PersistentVolumeClaim", "namespace": ns,
                                                                "name": "data", "uid": claim["metadata"]["uid"]})
                done.add(ns)
        time.sleep(0.2)


@pytest.mark.parametrize("case,want", CASES, ids=[c[0].__name__[5:] for c in CASES])
def test_kube_scheduler_and_kai_agree(kai_client, kai_scheduler, kube_scheduler, diff_nodes, case, want):
    c = kai_client
    tag = uuid.uuid4().hex[:8]
    spaces = {"kai-scheduler": _namespace(c), "kube-diff": _namespace(c)}
    stop = threading.Event()
    prov = threading.Thread(target=_provisioner, args=(c, list(spaces.values()), stop, tag), daemon=True)
    prov.start()
    try:
        for sched, ns in spaces.items():
            case(c, ns, sched, tag, _classes(c, f"diff-{tag}-{sched.split('-')[0]}"))

        def node_of(ns):
            return c.get(f"/api/v1/namespaces/{ns}/pods/p")["spec"].get("nodeName")

        if want is None:
            time.sleep(6.0)                        # many cycles of both schedulers
            got = {sched: node_of(ns) for sched, ns in spaces.items()}
            assert got == {"kai-scheduler": None, "kube-diff": None}
        else:
            got = {sched: wait_for(lambda ns=ns: node_of(ns), 90, what=f"{sched} binds the pod")
                   for sched, ns in spaces.items()}
            assert got == {"kai-scheduler": want, "kube-diff": want}
    finally:
        stop.set()
        prov.join(5)
        for ns in spaces.values():
            c.delete(f"/api/v1/namespaces/{ns}")
        for pv in c.get("/api/v1/persistentvolumes", params={"labelSelector": f"diff-volumes={tag}"})["items"]:
            try:
                c.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
            except Exception:   # noqa: BLE001 - best effort
                pass
        for sc in c.get("/apis/storage.k8s.io/v1/storageclasses")["items"]:
            if sc["metadata"]["name"].startswith(f"diff-{tag}-"):
                c.delete(f"/apis/storage.k8s.io/v1/storageclasses/{sc['metadata']['name']}")
