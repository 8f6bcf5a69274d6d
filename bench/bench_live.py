"""Live control plane, side by side: kai vs the upstream kube-scheduler (issue 5, "Performance").

One control plane (etcd + kube-apiserver v1.34 + kube-controller-manager running the node
lifecycle and taint eviction controllers + kwok, from ``kai.testing.controlplane``), N kwok
nodes with 8 ``nvidia.com/gpu`` each, labelled as GPU feature discovery labels real ones and
heartbeating through node Leases, and two workloads run by each scheduler in turn:

- A: ``--pods`` single-GPU pods;
- B: ``--gangs`` gangs of ``--gang-size`` single-GPU pods. kai gets a PodGroup per gang
  (minMember = gang size); kube-scheduler has no gang scheduling, so it gets the same pods as
  plain pods (its figure is an upper bound for a gang-aware upstream setup);
- C (issue 9): ``--pods`` single-GPU pods of 200 apps, half with required anti-affinity to
  their app on the hostname, half spreading their app over 10 zones (maxSkew 1,
  DoNotSchedule); the nodes carry ``topology.kubernetes.io/zone`` labels.
- D (issue 10, DRA): ``--pods`` pods each asking for one GPU through a ResourceClaimTemplate
  (no ``nvidia.com/gpu``); every node publishes 8 devices in a ResourceSlice (driver
  ``gpu.bench.example.com``, as a DRA driver would) with a DeviceClass selecting them. The
  controller-manager runs only its resourceclaim controller (started for D), which creates
  each pod's claim; the clock starts once every pod's claim exists, so claim creation is not
  timed for either scheduler. Both then allocate a device, write the claim's allocation and
  reservedFor, and bind. Afterwards the claims are deleted with the pods (and waited for, so
  the next run starts with every device free).

Pods are written as users write them: no tolerations (the nodes lose the not-ready taint
once Ready, as in a real cluster), GPUs as an ``nvidia.com/gpu`` limit.
For kai every pod names its PodGroup (annotation ``pod-group-name``; workload A: one PodGroup
of minMember 1 per pod, what kai's pod-grouper would create), created with the pods, so
PodGroup creation is part of the workload, not of the measured time.

What is timed: the pods (and PodGroups) are created first, with no scheduler running; then
the scheduler process is started and the clock runs from that moment until every pod has
``spec.nodeName`` (seen through a watch). So the figure includes the scheduler's start-up and
initial list (a second or two for either), and excludes pod-creation throughput. The time from
the first to the last binding is reported as well.

Both schedulers run with client rate limits raised well above their defaults:
kube-scheduler gets a KubeSchedulerConfiguration (``kubescheduler.config.k8s.io/v1``) with
``clientConnection.qps=1000, burst=2000`` (its ``--kube-api-qps/--kube-api-burst`` flags are
deprecated and ignored with ``--config`` in 1.34); the run reads the configuration back from
kube-scheduler's ``/configz`` and fails if those limits are not in effect. kai gets the same
limits through its KAI flags ``--qps 1000 --burst 2000`` (its defaults are KAI's, 50 and
300, which would cap it near 45 pods/s: a Binding and a PodGroup status write a pod); its API
concurrency is further bounded by ``--bind-workers`` (default 16) and its connection pool.

Each run is on its own namespace; afterwards its pods and PodGroups are deleted (grace 0) and
the next run starts on an empty cluster. CPU time (utime+stime from /proc/<pid>/stat) of
kube-apiserver, etcd, kwok, the scheduler and this process is taken over each timed window.

pytest (smoke size with KAI_BENCH_SMOKE=1: 20 nodes, 100 pods, 10 gangs)::

    PYTHONPATH=.:bench KAI_BENCH_SMOKE=1 python -m pytest bench/bench_live.py -p no:cacheprovider \
        --benchmark-enable -q -s

CLI (full size)::

    PYTHONPATH=.:bench python bench/bench_live.py --nodes 1000 --pods 5000 --gangs 500 [--profile]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import msgspec  # noqa: E402
import yaml  # noqa: E402

from kai.cache.kubeclient import ApiError, KubeClient  # noqa: E402
from kai.testing.controlplane import (ControlPlane, _pdeathsig, binaries_available,  # noqa: E402
                                      fake_node_manifest)

try:
    import pytest
except ImportError:  # the CLI works without pytest
    pytest = None  # type: ignore[assignment]

CRD_DIR = REPO / "charts" / "kai-scheduler" / "crds"
PG_API = "/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SMOKE = os.environ.get("KAI_BENCH_SMOKE", "") not in ("", "0")
QPS, BURST = 1000, 2000


# ------------------------------------------------------------------------------ helpers
def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 when it is gone."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def wait_for(pred, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


ZONE = "topology.kubernetes.io/zone"


def constraints_spec(i: int) -> dict:
    """Workload C (issue 9), pod ``i``: even pods are replicas of one of 100 apps with required
    anti-affinity to their app on the hostname; odd pods spread their app over the zones
    (maxSkew 1, DoNotSchedule)."""
    app = f"app-{i % 200}"
    if i % 2 == 0:
        return {"labels": {"app": app},
                "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}}}}
    return {"labels": {"app": app},
            "spec": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE,
                                                    "whenUnsatisfiable": "DoNotSchedule",
                                                    "labelSelector": {"matchLabels": {"app": app}}}]}}


DRA_API = "/apis/resource.k8s.io/v1"
DRA_DRIVER = "gpu.bench.example.com"
DRA_CLASS = "gpu.bench.example.com"
#: workload D: one GPU through a claim template instead of nvidia.com/gpu
DRA_POD = {"dra": True, "spec": {"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}]}}


def dra_slice_manifest(node: str, devices: int = 8) -> dict:
    """The ResourceSlice a GPU driver would publish for ``node``."""
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": f"{node}-gpus"},
            "spec": {"driver": DRA_DRIVER, "nodeName": node,
                     "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                     "devices": [{"name": f"gpu-{k}", "attributes": {"index": {"int": k}}} for k in range(devices)]}}


def pod_manifest(name: str, kai: bool, pod_group: str | None, extra: dict | None = None) -> dict:
    """One single-GPU pod as a user writes it (no tolerations; the GPU as a limit, or for
    workload D through the claim template ``one-gpu``)."""
    dra = bool(extra and extra.get("dra"))
    res: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "100Mi"},
                           **({"claims": [{"name": "gpu"}]} if dra else {"limits": {"nvidia.com/gpu": "1"}})}
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "infinity"],
                                            "resources": res}]}
    if kai:
        spec["schedulerName"] = "kai-scheduler"   # kube-scheduler pods set none: default-scheduler
    meta: dict[str, Any] = {"name": name, "labels": {"bench": "live"}}
    if pod_group:
        meta["annotations"] = {"pod-group-name": pod_group}
    if extra:
        meta["labels"].update(extra.get("labels", {}))
        spec.update(extra.get("spec", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def podgroup_manifest(name: str, min_member: int) -> dict:
    return {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": {"name": name},
            "spec": {"minMember": min_member, "queue": "default-queue"}}


def queue_manifest(name: str, parent: str = "") -> dict:
    unl = {"quota": -1, "overQuotaWeight": 1, "limit": -1}
    spec: dict[str, Any] = {"resources": {"gpu": dict(unl), "cpu": dict(unl), "memory": dict(unl)}}
    if parent:
        spec["parentQueue"] = parent
    return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": name}, "spec": spec}


# ------------------------------------------------------------------------------ the bench
class LiveBench:
    """A control plane with kwok GPU nodes, and timed scheduler runs on it."""

    def __init__(self, nodes: int, *, bind_workers: int = 16, schedule_period: float = 1.0,
                 creators: int = 16, log=print, out_dir: str | None = None) -> None:
        self.out_dir = out_dir
        self.n_nodes = nodes
        self.bind_workers = bind_workers
        self.schedule_period = schedule_period
        self.creators = creators
        self.log = log
        self.cp: ControlPlane | None = None
        self.client: KubeClient | None = None
        self._run_no = 0
        self.idle_cpu: dict[str, float] = {}
        self._dra_ready = False

    # ---- cluster
    def start(self) -> LiveBench:
        t = time.monotonic()
        # the node lifecycle controller lifts the not-ready taint new nodes get, as in a real
        # cluster (pods carry no tolerations); no other controllers, no ServiceAccount admission
        self.cp = ControlPlane(with_controller_manager=True, with_scheduler=False, with_kwok=True,
                               controllers=("node-lifecycle-controller", "taint-eviction-controller"),
                               service_account_admission=False, startup_timeout=120)
        self.cp.start()
        self.client = KubeClient.from_kubeconfig(self.cp.kubeconfig, maxsize=self.creators + 8)
        self._install_crds()
        for q in (queue_manifest("default-parent-queue"), queue_manifest("default-queue", "default-parent-queue")):
            self._ensure("/apis/scheduling.run.ai/v2/queues", q)
        names = [f"kwok-gpu-{i}" for i in range(self.n_nodes)]
        self._parallel(lambda n: self.client.post(
            "/api/v1/nodes", fake_node_manifest(n, gpus=8, cpu="64", memory="512Gi",
                                                labels={ZONE: f"zone-{int(n.rsplit('-', 1)[1]) % 10}"})), names)
        # kwok and the node lifecycle controller need about 0.1 s a node on a loaded 2-core box
        wait_for(self._nodes_ready, max(300.0, 0.15 * self.n_nodes), f"{self.n_nodes} nodes Ready and untainted", 1.0)
        self.log(f"control plane up, {self.n_nodes} nodes Ready in {time.monotonic() - t:.1f}s "
                 f"({self.cp.workdir})")
        # background load of the idle cluster (kwok heartbeats), per second
        before = self._cp_cpu()
        time.sleep(5.0)
        after = self._cp_cpu()
        self.idle_cpu = {k: round((after[k] - before[k]) / 5.0, 3) for k in after}
        self.log(f"idle CPU (cores): {self.idle_cpu}")
        return self

    def stop(self) -> None:
        if self.cp is not None:
            self.cp.stop()
            self.cp = None

    def _ensure(self, path: str, body: dict) -> None:
        try:
            self.client.post(path, body)
        except ApiError as exc:
            if exc.status != 409:
                raise

    def _install_crds(self) -> None:
        for f in sorted(CRD_DIR.glob("*.yaml")):
            crd = yaml.safe_load(f.read_text())
            self._ensure("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            name = crd["metadata"]["name"]

            def established(name=name) -> bool:
                c = self.client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                return any(x["type"] == "Established" and x["status"] == "True"
                           for x in (c.get("status") or {}).get("conditions") or [])
            wait_for(established, 60, f"CRD {name}")

    def _nodes_ready(self) -> bool:
        items = self.client.get("/api/v1/nodes", params={"resourceVersion": "0"})["items"]
        ready = sum(1 for n in items if any(c.get("type") == "Ready" and c.get("status") == "True"
                                            for c in (n.get("status") or {}).get("conditions") or [])
                    and not (n.get("spec") or {}).get("taints"))
        return ready >= self.n_nodes

    def _parallel(self, fn, items) -> None:
        with ThreadPoolExecutor(self.creators) as ex:
            for _ in ex.map(fn, items):
                pass

    def _cp_cpu(self) -> dict[str, float]:
        procs = self.cp.processes()
        return {name: cpu_seconds(pid) for name, pid in procs.items()}

    # ---- workload D: DRA devices, claim templates
    def _dra_setup(self, ns: str) -> None:
        """Slices for every node, the DeviceClass, the claim controller, and the namespace's template."""
        if not self._dra_ready:
            self.cp.start_controller_manager(["resourceclaim-controller"])
            self._ensure(f"{DRA_API}/deviceclasses", {
                "apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": DRA_CLASS},
                "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRA_DRIVER}"'}}]}})
            names = [f"kwok-gpu-{i}" for i in range(self.n_nodes)]
            self._parallel(lambda n: self._ensure(f"{DRA_API}/resourceslices", dra_slice_manifest(n)), names)
            self._dra_ready = True
        self._ensure(f"{DRA_API}/namespaces/{ns}/resourceclaimtemplates", {
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate", "metadata": {"name": "one-gpu"},
            "spec": {"spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": DRA_CLASS}}]}}}})

    def _claims_created(self, ns: str, n: int) -> None:
        def all_there() -> bool:
            items = self.client.get(f"{DRA_API}/namespaces/{ns}/resourceclaims",
                                    params={"resourceVersion": "0"})["items"]
            return len(items) >= n
        t = time.monotonic()
        wait_for(all_there, 600, f"{n} resource claims in {ns}", 0.5)
        self.log(f"  resourceclaim controller created {n} claims in {time.monotonic() - t:.1f}s (not timed)")

    # ---- workloads
    def create_workload(self, ns: str, workload: str, kai: bool, pods: int, gangs: int, gang_size: int) -> int:
        self._ensure("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        extra: dict[str, dict] = {}
        if workload == "D":
            self._dra_setup(ns)
            specs = [(f"p{i}", f"pg-p{i}" if kai else None) for i in range(pods)]
            groups = [(f"pg-p{i}", 1) for i in range(pods)] if kai else []
            extra = {f"p{i}": DRA_POD for i in range(pods)}
        elif workload in ("A", "C"):
            specs = [(f"p{i}", f"pg-p{i}" if kai else None) for i in range(pods)]
            groups = [(f"pg-p{i}", 1) for i in range(pods)] if kai else []
            if workload == "C":
                extra = {f"p{i}": constraints_spec(i) for i in range(pods)}
        else:
            specs = [(f"g{g}-{j}", f"gang-{g}" if kai else None) for g in range(gangs) for j in range(gang_size)]
            groups = [(f"gang-{g}", gang_size) for g in range(gangs)] if kai else []
        t = time.monotonic()
        self._parallel(lambda g: self.client.post(PG_API.format(ns=ns), podgroup_manifest(*g)), groups)
        self._parallel(lambda s: self.client.post(f"/api/v1/namespaces/{ns}/pods",
                                                  pod_manifest(s[0], kai, s[1], extra.get(s[0]))), specs)
        dt = time.monotonic() - t
        self.log(f"  created {len(specs)} pods + {len(groups)} PodGroups in {ns} in {dt:.1f}s "
                 f"({(len(specs) + len(groups)) / dt:.0f} objects/s)")
        if workload == "D":
            self._claims_created(ns, len(specs))
        return len(specs)

    def cleanup(self, ns: str) -> None:
        """Delete the run's pods (grace 0) and PodGroups; pods a collection delete leaves (it can
        outlast the API server's request timeout with thousands of pods) are deleted one by one."""
        c = self.client
        t = time.monotonic()
        pods = f"/api/v1/namespaces/{ns}/pods"
        try:
            c.request("DELETE", pods, params={"gracePeriodSeconds": 0}, timeout=300)
        except (ApiError, OSError) as exc:
            self.log(f"  (delete {pods}: {exc})")

        def delete_one(name: str) -> None:
            try:
                c.request("DELETE", f"{pods}/{name}", params={"gracePeriodSeconds": 0})
            except ApiError as exc:
                if exc.status != 404:
                    raise

        deadline = time.monotonic() + 600
        while True:
            left = [p["metadata"]["name"] for p in c.get(pods)["items"]]
            if not left:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(left)} pods of {ns} still there after 600s")
            time.sleep(2.0)
            left = [p["metadata"]["name"] for p in c.get(pods)["items"]]
            self._parallel(delete_one, left)
        try:
            c.request("DELETE", PG_API.format(ns=ns), timeout=300)
        except (ApiError, OSError) as exc:
            self.log(f"  (delete PodGroups of {ns}: {exc})")
        if self._dra_ready:     # workload D: the claims go too (the controller drops their finalizer)
            try:
                c.request("DELETE", f"{DRA_API}/namespaces/{ns}/resourceclaims", timeout=300)
            except ApiError as exc:
                self.log(f"  (delete claims: {exc})")

            def claims_gone() -> bool:
                return not c.get(f"{DRA_API}/namespaces/{ns}/resourceclaims", params={"limit": 1})["items"]
            wait_for(claims_gone, 300, f"claims of {ns} deleted", 0.5)
        self.log(f"  cleaned {ns} in {time.monotonic() - t:.1f}s")

    # ---- schedulers
    def _start_kube_scheduler(self, logdir: Path) -> subprocess.Popen:
        cp = self.cp
        cfg = logdir / "kube-scheduler-config.yaml"
        cfg.write_text(yaml.safe_dump({
            "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": cp.kubeconfig, "qps": QPS, "burst": BURST},
            "leaderElection": {"leaderElect": False},
        }))
        self._ks_port = port = _free_port()
        argv = [str(cp.bin_dir / "kube-scheduler"), f"--config={cfg}",
                f"--authentication-kubeconfig={cp.kubeconfig}", f"--authorization-kubeconfig={cp.kubeconfig}",
                "--bind-address=127.0.0.1", f"--secure-port={port}", f"--cert-dir={logdir / 'ks-certs'}", "-v=1"]
        return subprocess.Popen(argv, stdout=open(logdir / "kube-scheduler.log", "wb"), stderr=subprocess.STDOUT,
                                cwd=str(logdir), preexec_fn=_pdeathsig)

    def kube_scheduler_limits(self) -> tuple[float, int]:
        """(qps, burst) kube-scheduler runs with, read from its /configz (the config it loaded)."""
        import ssl
        import urllib.request
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        req = urllib.request.Request(f"https://127.0.0.1:{self._ks_port}/configz",
                                     headers={"Authorization": f"Bearer {self.cp.token}"})

        def read():
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                return None
        cfg = wait_for(read, 60, "kube-scheduler /configz", 0.2)["componentconfig"]
        # /configz shows the internal config type: Go field names (ClientConnection.QPS)
        conn = {k.lower(): v for k, v in (cfg.get("ClientConnection") or cfg.get("clientConnection")).items()}
        return float(conn["qps"]), int(conn["burst"])

    def _start_kai(self, logdir: Path) -> subprocess.Popen:
        argv = [sys.executable, "-m", "kai", "scheduler", "--kubeconfig", self.cp.kubeconfig,
                "--schedule-period", str(self.schedule_period), "--metrics-port", "0",
                "--bind-workers", str(self.bind_workers), "--qps", str(QPS), "--burst", str(BURST)]
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        return subprocess.Popen(argv, stdout=open(logdir / "kai-scheduler.log", "wb"), stderr=subprocess.STDOUT,
                                cwd=str(REPO), env=env, preexec_fn=_pdeathsig)

    @staticmethod
    def _stop_proc(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    # ---- one timed run
    def run(self, workload: str, scheduler: str, pods: int, gangs: int, gang_size: int = 8,
            timeout: float = 900.0, profile: bool = False) -> dict[str, Any]:
        assert scheduler in ("kai", "kube-scheduler") and workload in ("A", "B", "C", "D")
        self._run_no += 1
        kai = scheduler == "kai"
        ns = f"bench-{self._run_no}-{workload.lower()}-{'kai' if kai else 'kube'}"
        logdir = Path(self.out_dir or (Path(self.cp.workdir) / "logs")) / ns
        logdir.mkdir(parents=True, exist_ok=True)
        self.log(f"[{workload}/{scheduler}] namespace {ns}")
        n = self.create_workload(ns, workload, kai, pods, gangs, gang_size)
        try:
            return self._timed(ns, logdir, workload, scheduler, n, timeout, profile)
        finally:
            self.cleanup(ns)              # also after a failed run: the next one starts on an empty cluster

    def _timed(self, ns: str, logdir: Path, workload: str, scheduler: str, n: int, timeout: float,
               profile: bool) -> dict[str, Any]:
        kai = scheduler == "kai"

        # watch from now: every pod's first spec.nodeName
        _, rv = self.client.list(f"/api/v1/namespaces/{ns}/pods", dict, limit=500)
        bound: dict[str, float] = {}
        done = threading.Event()
        stop_watch = threading.Event()
        watch_error: list[BaseException] = []

        def watch() -> None:
            nonlocal rv
            while not stop_watch.is_set() and not done.is_set():
                try:
                    for ev in self.client.watch(f"/api/v1/namespaces/{ns}/pods", rv, timeout_seconds=60):
                        obj = msgspec.json.decode(ev.object) if ev.object else {}
                        md = obj.get("metadata") or {}
                        if md.get("resourceVersion"):
                            rv = md["resourceVersion"]
                        if ev.type in ("ADDED", "MODIFIED") and (obj.get("spec") or {}).get("nodeName"):
                            name = md["name"]
                            if name not in bound:
                                bound[name] = time.monotonic()
                                if len(bound) >= n:
                                    done.set()
                                    return
                        if stop_watch.is_set():
                            return
                except ApiError:
                    time.sleep(0.2)
                except Exception as exc:  # noqa: BLE001 - surfaced by the waiting loop
                    watch_error.append(exc)
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        time.sleep(0.3)

        cpu0 = self._cp_cpu()
        self_cpu0 = cpu_seconds(os.getpid())
        t0 = time.monotonic()
        proc = self._start_kai(logdir) if kai else self._start_kube_scheduler(logdir)
        spy = None
        if profile and kai and shutil.which("py-spy"):
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(proc.pid), "--rate", "100", "--nonblocking",
                                    "--format", "raw", "-o", str(logdir / "kai.pyspy.txt")],
                                   stdout=open(logdir / "py-spy.log", "wb"), stderr=subprocess.STDOUT)
        sched_cpu = 0.0
        limits = None
        try:
            while not done.wait(0.25):
                if watch_error:
                    raise RuntimeError(f"pod watch failed: {watch_error[0]!r}")
                if proc.poll() is not None:
                    raise RuntimeError(f"{scheduler} exited with {proc.returncode}; log in {logdir}")
                sched_cpu = cpu_seconds(proc.pid)
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"{scheduler}: {len(bound)}/{n} pods bound after {timeout:.0f}s")
            t1 = time.monotonic()
            sched_cpu = cpu_seconds(proc.pid) or sched_cpu
            if not kai:
                limits = self.kube_scheduler_limits()
                if limits != (QPS, BURST):
                    raise RuntimeError(f"kube-scheduler runs with qps/burst {limits}, not {QPS}/{BURST}")
            cpu1 = self._cp_cpu()
            self_cpu1 = cpu_seconds(os.getpid())
        finally:
            stop_watch.set()
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
            self._stop_proc(proc)
        elapsed = t1 - t0
        times = sorted(bound.values())
        first, last = times[0] - t0, times[-1] - t0
        cpu = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu1 if k != "kube-scheduler"}
        cpu[scheduler] = round(sched_cpu, 2)
        cpu["bench (this process)"] = round(self_cpu1 - self_cpu0, 2)
        total_cpu = sum(cpu.values())
        res = {
            "workload": workload, "scheduler": scheduler, "pods": n, "nodes": self.n_nodes,
            "elapsed_s": round(elapsed, 3), "pods_per_s": round(n / elapsed, 1),
            "first_bind_s": round(first, 3), "last_bind_s": round(last, 3),
            "bind_window_pods_per_s": round(n / max(last - first, 1e-3), 1),
            "cpu_s": cpu, "cpu_total_s": round(total_cpu, 2),
            "machine_busy": round(total_cpu / (elapsed * (os.cpu_count() or 1)), 2),
            "scheduler_cpu_share": round(cpu[scheduler] / total_cpu, 3) if total_cpu else None,
            "apiserver_cpu_share": round(cpu.get("kube-apiserver", 0) / total_cpu, 3) if total_cpu else None,
            "logdir": str(logdir),
        }
        if limits is not None:
            res["kube_scheduler_qps_burst"] = list(limits)
        if spy is not None:
            res["pyspy_raw"] = str(logdir / "kai.pyspy.txt")
        self.log(f"  {scheduler}: {n} pods bound in {elapsed:.2f}s = {res['pods_per_s']} pods/s "
                 f"(first bind {first:.2f}s, last {last:.2f}s); CPU s {cpu}")
        return res


def _free_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def summarize_pyspy(path: str, top: int = 25) -> list[tuple[str, float]]:
    """Self+children share per frame (inclusive) from py-spy's raw (collapsed) output."""
    incl: dict[str, int] = {}
    total = 0
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        stack, _, cnt = line.rpartition(" ")
        try:
            c = int(cnt)
        except ValueError:
            continue
        total += c
        seen = set()
        for fr in stack.split(";"):
            key = fr.split(" (")[0] + (" (" + fr.split(" (")[1].split(":")[0] + ")" if " (" in fr else "")
            if key not in seen:
                seen.add(key)
                incl[key] = incl.get(key, 0) + c
    if not total:
        return []
    return [(k, round(v / total, 3)) for k, v in sorted(incl.items(), key=lambda kv: -kv[1])[:top]]


# ------------------------------------------------------------------------------ pytest
SIZES = (20, 100, 10) if SMOKE else (1000, 5000, 500)   # nodes, pods, gangs
_RESULTS: dict[tuple[str, str], dict] = {}

if pytest is not None:
    @pytest.fixture(scope="module")
    def live_bench():
        ok, reason = binaries_available(names=["etcd", "kube-apiserver", "kube-scheduler", "kwok"])
        if not ok:
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"CI: bench_live needs the local control plane, but {reason}", pytrace=False)
            pytest.skip(reason)
        b = LiveBench(SIZES[0])
        b.start()
        try:
            yield b
        finally:
            b.stop()

    @pytest.mark.integration
    @pytest.mark.parametrize("workload,scheduler", [("A", "kube-scheduler"), ("A", "kai"),
                                                    ("B", "kube-scheduler"), ("B", "kai"),
                                                    ("C", "kube-scheduler"), ("C", "kai"),
                                                    ("D", "kube-scheduler"), ("D", "kai")])
    def test_live_bind_throughput(benchmark, live_bench, workload, scheduler):
        nodes, pods, gangs = SIZES
        box: dict[str, Any] = {}

        def once():
            box["r"] = live_bench.run(workload, scheduler, pods, gangs)

        benchmark.pedantic(once, rounds=1, iterations=1)
        r = box["r"]
        _RESULTS[(workload, scheduler)] = r
        assert r["pods"] == (gangs * 8 if workload == "B" else pods)
        info = {k: v for k, v in r.items() if k != "logdir"}
        other = _RESULTS.get((workload, "kube-scheduler"))
        if scheduler == "kai" and other:
            info["ratio_vs_kube_scheduler"] = round(r["pods_per_s"] / other["pods_per_s"], 2)
        benchmark.extra_info.update(info)


# ------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=5000,
                   help="workloads A, C and D: single-GPU pods (C: with anti-affinity / zone spread; "
                        "D: the GPU through a DRA claim template)")
    p.add_argument("--gangs", type=int, default=500, help="workload B: gangs of --gang-size pods")
    p.add_argument("--gang-size", type=int, default=8)
    p.add_argument("--bind-workers", type=int, default=16, help="kai --bind-workers")
    p.add_argument("--schedule-period", type=float, default=1.0, help="kai --schedule-period")
    p.add_argument("--workloads", default="A,B")
    p.add_argument("--schedulers", default="kube-scheduler,kai")
    p.add_argument("--profile", action="store_true",
                   help="afterwards, one more kai run of workload A under py-spy (not in the figures)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--out", help="directory for logs and profiles (default /tmp/bench_live-<pid>)")
    args = p.parse_args(argv)
    out = Path(args.out or f"/tmp/bench_live-{os.getpid()}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"logs, scheduler configs and profiles: {out}")
    b = LiveBench(args.nodes, bind_workers=args.bind_workers, schedule_period=args.schedule_period,
                  out_dir=str(out))
    results: list[dict] = []
    try:
        b.start()
        for w in args.workloads.split(","):
            for s in args.schedulers.split(","):
                results.append(b.run(w, s, args.pods, args.gangs, args.gang_size))
                (out / "results.json").write_text(json.dumps({"idle_cpu": b.idle_cpu, "results": results},
                                                             indent=2))
        prof = None
        if args.profile:
            try:
                prof = b.run("A", "kai", args.pods, args.gangs, args.gang_size, profile=True)
                prof["pyspy_top"] = summarize_pyspy(prof.get("pyspy_raw", ""))
            except Exception as exc:  # noqa: BLE001 - the figures above still count
                print(f"profiled run failed: {exc!r}")
    finally:
        b.stop()
    print()
    print(f"nodes={args.nodes} (8 GPUs each), kube-scheduler qps/burst {QPS}/{BURST}, "
          f"kai bind-workers {args.bind_workers}, qps/burst {QPS}/{BURST}, idle CPU {b.idle_cpu}")
    print(f"{'workload':8} {'scheduler':15} {'pods':>5} {'time s':>7} {'pods/s':>7} {'1st-last s':>11} "
          f"{'sched CPU s':>11} {'apisrv CPU s':>12} {'etcd':>5} {'kwok':>5} {'busy':>5}")
    by = {(r["workload"], r["scheduler"]): r for r in results}
    for r in results:
        c = r["cpu_s"]
        print(f"{r['workload']:8} {r['scheduler']:15} {r['pods']:>5} {r['elapsed_s']:>7.2f} {r['pods_per_s']:>7.1f} "
              f"{r['first_bind_s']:>5.2f}-{r['last_bind_s']:<5.2f} {c[r['scheduler']]:>11.2f} "
              f"{c.get('kube-apiserver', 0):>12.2f} {c.get('etcd', 0):>5.1f} {c.get('kwok', 0):>5.1f} "
              f"{r['machine_busy']:>5.2f}")
    for w in ("A", "B", "C", "D"):
        k, ks = by.get((w, "kai")), by.get((w, "kube-scheduler"))
        if k and ks:
            print(f"workload {w}: kai / kube-scheduler = {k['pods_per_s'] / ks['pods_per_s']:.2f}x")
    if prof is not None:
        print(f"\nprofiled kai run (py-spy, workload A): {prof['pods_per_s']} pods/s; top frames (inclusive share "
              f"of kai's py-spy samples; threads blocked in an SSL read, i.e. waiting for the API server, "
              f"are sampled too):")
        for frame, share in prof["pyspy_top"]:
            print(f"  {share:6.1%}  {frame}")
        results.append(prof)
    if args.json:
        Path(args.json).write_text(json.dumps({"idle_cpu": b.idle_cpu, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
