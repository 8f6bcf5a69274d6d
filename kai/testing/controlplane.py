"""A real Kubernetes control plane for tests, run as plain processes (no Docker).

Starts etcd, kube-apiserver, optionally kube-controller-manager and kube-scheduler, and kwok
(which plays the kubelet for fake nodes) on 127.0.0.1 with free ports, in a private temp dir.
The binaries are built by ``hack/controlplane/build.sh`` (see ``hack/controlplane/README.md``);
versions are pinned in ``hack/controlplane/VERSIONS``.

The cluster is meant to look like a real one to a scheduler: with the controller manager, the
node lifecycle controller lifts the ``not-ready`` taint of new nodes once kwok reports them
Ready (kwok renews node Leases), and fake GPU nodes carry GPU feature discovery's labels
(:func:`gpu_feature_labels`), so test pods need no tolerations or hand-made labels.

Usage::

    with ControlPlane(with_controller_manager=True) as cp:
        cp.create_node(fake_node_manifest("gpu-0", gpus=8))
        # cp.kubeconfig, cp.server, cp.token, cp.ca_file ...

CLI::

    python -m kai.testing.controlplane up [--with-controller-manager] [--nodes N]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "BUILD_SCRIPT",
    "KUBERNETES_VERSION",
    "KWOK_VERSION",
    "ControlPlane",
    "ControlPlaneError",
    "binaries_available",
    "default_bin_dir",
    "fake_node_manifest",
    "gpu_feature_labels",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROLPLANE_SRC = REPO_ROOT / "hack" / "controlplane"
VERSIONS_FILE = CONTROLPLANE_SRC / "VERSIONS"
BUILD_SCRIPT = CONTROLPLANE_SRC / "build.sh"

#: kwok manages only nodes carrying this annotation (so real nodes are never touched).
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
#: Controllers started by kube-controller-manager when ``with_controller_manager=True``.
DEFAULT_CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "replicaset-controller",
    "deployment-controller",
    "statefulset-controller",
    "daemonset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "ttl-after-finished-controller",
    "pod-garbage-collector-controller",
    "disruption-controller",
    "resourcequota-controller",
    # Nodes as in a real cluster: the TaintNodesByCondition admission plugin gives every new
    # Node the node.kubernetes.io/not-ready:NoSchedule taint, and this controller removes it
    # once the node reports Ready (kwok does, and renews the node's Lease, see _start_kwok);
    # it taints nodes whose heartbeat stops (unreachable), and the taint eviction controller
    # then evicts their pods after their toleration (300 s by DefaultTolerationSeconds), as in
    # any cluster.
    "node-lifecycle-controller",
    "taint-eviction-controller",
    # volumes: the PV controller binds claims (after kai's binder sets a PV's claimRef or a claim's
    # selected-node), the protection controllers release their finalizers on delete, and generic
    # ephemeral volumes get their claims
    "persistentvolume-binder-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
    "ephemeral-volume-controller",
    "resourceclaim-controller",          # DRA: creates template claims, drops reservedFor of gone pods
)
#: Lease duration kwok gives fake nodes (kube-node-lease); it renews them every quarter of it,
#: well within the node lifecycle controller's grace period (--node-monitor-grace-period, 50s).
NODE_LEASE_SECONDS = 40
#: Taints the node lifecycle controller manages from node conditions.
NODE_CONDITION_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")

#: What NVIDIA GPU Feature Discovery (GFD, with MIG strategy ``none``) and the GPU Operator
#: label a GPU node with, per product: (GFD product name, family, memory MiB per GPU,
#: compute capability major.minor, MIG capable).
GPU_PRODUCTS = {
    "A100-SXM4-80GB": ("NVIDIA-A100-SXM4-80GB", "ampere", 81920, (8, 0), True),
    "H100-80GB-HBM3": ("NVIDIA-H100-80GB-HBM3", "hopper", 81559, (9, 0), True),
    "L40S": ("NVIDIA-L40S", "ada-lovelace", 46068, (8, 9), False),
    "T4": ("Tesla-T4", "turing", 15360, (7, 5), False),
}
DEFAULT_GPU_PRODUCT = "A100-SXM4-80GB"
#: driver / CUDA versions written into the labels of every fake GPU node
FAKE_DRIVER_VERSION = (550, 127, 8)
FAKE_CUDA_VERSION = (12, 4)


def gpu_feature_labels(gpus: int, product: str = DEFAULT_GPU_PRODUCT) -> dict[str, str]:
    """The node labels GFD (``gpu-feature-discovery``, MIG strategy none) and the GPU
    Operator / NFD put on a node with ``gpus`` GPUs of ``product`` (a key of
    :data:`GPU_PRODUCTS`): ``nvidia.com/gpu.present``, ``gpu.count``, ``gpu.product``,
    ``gpu.memory`` (MiB), ``gpu.family``, ``gpu.compute.*``, ``gpu.replicas``,
    ``gpu.sharing-strategy``, ``gpu.mode``, ``cuda.driver-version.*`` / ``cuda.runtime-version.*``
    (and the deprecated ``cuda.driver.*`` / ``cuda.runtime.*``), ``mig.capable``,
    ``mps.capable``, ``gfd.timestamp``, NFD's ``feature.node.kubernetes.io/pci-10de.present``.
    No ``nvidia.com/mig.strategy``: GFD writes it only for the single and mixed strategies."""
    if product not in GPU_PRODUCTS:
        raise ValueError(f"unknown GPU product {product!r}; known: {', '.join(GPU_PRODUCTS)}")
    name, family, memory, (cmaj, cmin), mig = GPU_PRODUCTS[product]
    dmaj, dmin, drev = FAKE_DRIVER_VERSION
    rmaj, rmin = FAKE_CUDA_VERSION
    g = "nvidia.com/"
    return {
        "feature.node.kubernetes.io/pci-10de.present": "true",
        g + "gpu.present": "true",
        g + "gpu.count": str(gpus),
        g + "gpu.product": name,
        g + "gpu.memory": str(memory),
        g + "gpu.family": family,
        g + "gpu.compute.major": str(cmaj),
        g + "gpu.compute.minor": str(cmin),
        g + "gpu.replicas": "1",
        g + "gpu.sharing-strategy": "none",
        g + "gpu.mode": "compute",
        g + "gpu.machine": "kwok-fake",
        g + "cuda.driver-version.major": str(dmaj),
        g + "cuda.driver-version.minor": str(dmin),
        g + "cuda.driver-version.revision": str(drev),
        g + "cuda.driver-version.full": f"{dmaj}.{dmin}.{drev}",
        g + "cuda.runtime-version.major": str(rmaj),
        g + "cuda.runtime-version.minor": str(rmin),
        g + "cuda.runtime-version.full": f"{rmaj}.{rmin}",
        g + "cuda.driver.major": str(dmaj),
        g + "cuda.driver.minor": str(dmin),
        g + "cuda.driver.rev": str(drev),
        g + "cuda.runtime.major": str(rmaj),
        g + "cuda.runtime.minor": str(rmin),
        g + "mig.capable": "true" if mig else "false",
        g + "mps.capable": "false",
        g + "gfd.timestamp": "1767225600",
    }
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
POD_CIDR = "10.128.0.0/16"

_STALE_PREFIX = "kai-cp-"
_AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  verbs: ["get", "list", "watch"]
- level: None
  resources: [{group: "coordination.k8s.io", resources: ["leases"]}]
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
"""
_OWNER_FILE = ".kai-controlplane-owner"


def _read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Parse the KEY=VALUE pin file shared with build.sh; empty when not in a source checkout."""
    out: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip().strip('"').strip("'")
    return out


VERSIONS: dict[str, str] = _read_versions()
KUBERNETES_VERSION: str | None = VERSIONS.get("KUBERNETES_VERSION")
KWOK_VERSION: str | None = VERSIONS.get("KWOK_VERSION")


class ControlPlaneError(RuntimeError):
    """The control plane could not be started (the message carries the relevant log tail)."""


# --------------------------------------------------------------------------------------------
# binaries


def default_bin_dir() -> Path | None:
    """Where the binaries are looked up: $KAI_CONTROLPLANE_BIN, else build.sh's output dir."""
    env = os.environ.get("KAI_CONTROLPLANE_BIN")
    if env:
        return Path(env).expanduser()
    root = os.environ.get("KAI_CONTROLPLANE_DIR")
    if root:
        return Path(root).expanduser() / "bin"
    if not KUBERNETES_VERSION:
        return None
    return Path.home() / ".cache" / "kai-controlplane" / KUBERNETES_VERSION / "bin"


def _required_binaries(with_controller_manager: bool = True, with_scheduler: bool = False,
                       with_kwok: bool = True) -> list[str]:
    names = ["etcd", "kube-apiserver"]
    if with_controller_manager:
        names.append("kube-controller-manager")
    if with_scheduler:
        names.append("kube-scheduler")
    if with_kwok:
        names.append("kwok")
    return names


def binaries_available(bin_dir: str | os.PathLike[str] | None = None,
                       names: Iterable[str] | None = None) -> tuple[bool, str]:
    """Whether the control plane binaries exist; the reason says what is missing and how to fix it."""
    d = Path(bin_dir) if bin_dir is not None else default_bin_dir()
    hint = f"build them with {BUILD_SCRIPT} (or `make controlplane-build`), or set KAI_CONTROLPLANE_BIN"
    if d is None:
        return False, f"no bin dir: {VERSIONS_FILE} not found and KAI_CONTROLPLANE_BIN unset; {hint}"
    wanted = list(names) if names is not None else _required_binaries(True, False, True)
    missing = [n for n in wanted if not os.access(d / n, os.X_OK)]
    if missing:
        return False, f"control plane binaries missing in {d}: {', '.join(missing)}; {hint}"
    return True, f"binaries found in {d}"


# --------------------------------------------------------------------------------------------
# helpers


def _free_port(taken: set[int]) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port
    raise ControlPlaneError("could not find a free port")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cleanup_stale_dirs() -> None:
    """Remove dirs left by earlier harness processes that were SIGKILLed (no atexit ran)."""
    roots = {Path(tempfile.gettempdir())}
    if Path("/dev/shm").is_dir():
        roots.add(Path("/dev/shm"))
    for root in roots:
        try:
            entries = list(root.glob(_STALE_PREFIX + "*"))
        except OSError:
            continue
        for d in entries:
            owner = d / _OWNER_FILE
            try:
                pid = int(owner.read_text().strip())
            except (OSError, ValueError):
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(d, ignore_errors=True)


def _tail(path: Path, lines: int = 40, max_bytes: int = 16384) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"<no log: {e}>"
    return "\n".join(data.splitlines()[-lines:])


def _run(argv: Sequence[str], cwd: Path) -> None:
    try:
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise ControlPlaneError(f"{argv[0]} not found (needed to generate keys): {e}") from e
    except subprocess.CalledProcessError as e:
        raise ControlPlaneError(f"{' '.join(argv)} failed: {e.stderr.strip()}") from e


def _pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the harness process
    except Exception:  # noqa: BLE001 - best effort, non-Linux
        pass


def fake_node_manifest(
    name: str,
    gpus: int = 8,
    cpu: str = "64",
    memory: str = "512Gi",
    pods: int = 110,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, Any]] | None = None,
    annotations: Mapping[str, str] | None = None,
    extra_resources: Mapping[str, str] | None = None,
    gpu_product: str = DEFAULT_GPU_PRODUCT,
) -> dict[str, Any]:
    """A Node manifest that kwok manages (annotation ``kwok.x-k8s.io/node: fake``).

    Capacity == allocatable: ``cpu``, ``memory``, ``pods``, ``nvidia.com/gpu`` (omitted when
    ``gpus`` is 0) plus ``extra_resources``. Labels include ``type: kwok`` and the standard
    ``kubernetes.io/hostname``/``os``/``arch``; a GPU node also gets what GPU feature
    discovery sets on a real one (:func:`gpu_feature_labels` for ``gpu_product``); ``labels``
    are merged on top.
    """
    resources: dict[str, str] = {"cpu": str(cpu), "memory": str(memory), "pods": str(pods),
                                 "ephemeral-storage": "1Ti"}
    if gpus:
        resources["nvidia.com/gpu"] = str(gpus)
    resources.update({k: str(v) for k, v in (extra_resources or {}).items()})
    node_labels = {
        "type": "kwok",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/role": "agent",
        "node-role.kubernetes.io/agent": "",
    }
    if gpus:
        node_labels.update(gpu_feature_labels(gpus, gpu_product))
    node_labels.update(labels or {})
    node_annotations = {KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1],
                        "node.alpha.kubernetes.io/ttl": "0"}
    node_annotations.update(annotations or {})
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = [dict(t) for t in taints]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels, "annotations": node_annotations},
        "spec": spec,
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "containerRuntimeVersion": "kwok",
                "osImage": "kwok",
                "kernelVersion": "kwok",
                "bootID": "", "machineID": "", "systemUUID": "",
            },
        },
    }


# --------------------------------------------------------------------------------------------
# processes


class _Process:
    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        use_pdeathsig = sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                self.popen = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=self.cwd, start_new_session=True,
                    preexec_fn=_pdeathsig if use_pdeathsig else None,
                )
            except OSError as e:
                raise ControlPlaneError(f"cannot start {self.name} ({self.argv[0]}): {e}") from e

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        p = self.popen
        if p is None:
            return
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.popen = None

    def kill(self) -> None:
        p = self.popen
        if p is None:
            return
        if p.poll() is None:  # not reaped yet, so the pid (and its process group) is still ours
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(10)
        self.popen = None

    def failure(self, what: str) -> ControlPlaneError:
        rc = self.popen.poll() if self.popen else None
        state = f"exited with code {rc}" if rc is not None else "still running"
        return ControlPlaneError(
            f"{self.name} {what} ({state}); log {self.log_path}, last lines:\n{_tail(self.log_path)}"
        )


# --------------------------------------------------------------------------------------------
# the control plane


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager, kube-scheduler) + kwok on 127.0.0.1.

    Attributes after ``start()``: ``kubeconfig`` (path of an admin kubeconfig), ``server``
    (``https://127.0.0.1:<port>``), ``token`` (admin bearer token, group system:masters),
    ``ca_file`` (CA of the serving cert), ``bin_dir``, ``workdir``, ``etcd_url``.
    """

    def __init__(
        self,
        bin_dir: str | os.PathLike[str] | None = None,
        *,
        with_kwok: bool = True,
        with_controller_manager: bool = False,
        with_scheduler: bool = False,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        service_account_admission: bool | None = None,
        extra_apiserver_args: Sequence[str] = (),
        extra_etcd_args: Sequence[str] = (),
        extra_controller_manager_args: Sequence[str] = (),
        extra_kwok_args: Sequence[str] = (),
        node_lease_seconds: int = NODE_LEASE_SECONDS,
        etcd_in_memory: bool = True,
        startup_timeout: float = 90.0,
        keep_workdir: bool | None = None,
        audit_log: bool = False,
    ) -> None:
        d = Path(bin_dir) if bin_dir is not None else default_bin_dir()
        self.bin_dir: Path | None = d
        self.with_kwok = with_kwok
        self.with_controller_manager = with_controller_manager
        self.with_scheduler = with_scheduler
        self.controllers = tuple(controllers)
        # The ServiceAccount admission plugin needs the serviceaccount controller (in the KCM)
        # to create each namespace's "default" ServiceAccount; without it pods are rejected.
        self.service_account_admission = (with_controller_manager if service_account_admission is None
                                          else service_account_admission)
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.extra_etcd_args = list(extra_etcd_args)
        self.extra_controller_manager_args = list(extra_controller_manager_args)
        self.extra_kwok_args = list(extra_kwok_args)
        self.node_lease_seconds = node_lease_seconds
        self.etcd_in_memory = etcd_in_memory
        # kube-apiserver audit log of the writes made by service accounts (see audit_events)
        self.audit_log = audit_log
        self.startup_timeout = startup_timeout
        if keep_workdir is None:
            keep_workdir = os.environ.get("KAI_CONTROLPLANE_KEEP", "").lower() in ("1", "true", "yes")
        self.keep_workdir = keep_workdir

        self.workdir: Path | None = None
        self.etcd_dir: Path | None = None
        self.kubeconfig: str | None = None
        self.server: str | None = None
        self.token: str | None = None
        self.ca_file: str | None = None
        self.etcd_url: str | None = None
        self.apiserver_port: int | None = None
        self._ports: set[int] = set()
        self._procs: dict[str, _Process] = {}
        self._ssl_ctx: ssl.SSLContext | None = None
        self._lock = threading.RLock()
        self._started = False
        self._atexit_registered = False

    # ---- context manager
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ControlPlane server={self.server} workdir={self.workdir}>"

    # ---- lifecycle
    def start(self) -> ControlPlane:
        with self._lock:
            if self._started:
                return self
            self._started = True
            if not self._atexit_registered:
                atexit.register(self.stop)
                self._atexit_registered = True
            try:
                self._start()
            except BaseException:
                self.stop()
                raise
            return self

    def _start(self) -> None:
        names = _required_binaries(self.with_controller_manager, self.with_scheduler, self.with_kwok)
        if self.bin_dir is None:
            raise ControlPlaneError(binaries_available(None, names)[1])
        ok, reason = binaries_available(self.bin_dir, names)
        if not ok:
            raise ControlPlaneError(reason)
        _cleanup_stale_dirs()
        self.workdir = Path(tempfile.mkdtemp(prefix=_STALE_PREFIX))
        (self.workdir / _OWNER_FILE).write_text(str(os.getpid()))
        (self.workdir / "logs").mkdir()
        shm = Path("/dev/shm")
        if self.etcd_in_memory and shm.is_dir() and os.access(shm, os.W_OK):
            self.etcd_dir = Path(tempfile.mkdtemp(prefix=_STALE_PREFIX + "etcd-", dir=shm))
            (self.etcd_dir / _OWNER_FILE).write_text(str(os.getpid()))
        else:
            self.etcd_dir = self.workdir / "etcd"
            self.etcd_dir.mkdir()
        self._write_credentials()
        self._start_etcd()
        self._start_apiserver()
        self._write_kubeconfig()
        if self.with_controller_manager:
            self._start_controller_manager()
        if self.with_scheduler:
            self._start_scheduler()
        if self.with_kwok:
            self._start_kwok()

    def stop(self) -> None:
        """Stop all processes gracefully (reverse order) and delete the temp dirs."""
        with self._lock:
            for name in reversed(list(self._procs)):
                with contextlib.suppress(Exception):
                    self._procs[name].stop()
            self._finish()

    def kill(self) -> None:
        """SIGKILL every process at once (no graceful shutdown), then delete the temp dirs."""
        with self._lock:
            for proc in list(self._procs.values()):
                with contextlib.suppress(Exception):
                    proc.kill()
            self._finish()

    def _finish(self) -> None:
        self._procs.clear()
        if self.etcd_dir is not None and self.workdir is not None and self.etcd_dir.parent != self.workdir:
            shutil.rmtree(self.etcd_dir, ignore_errors=True)  # /dev/shm: never keep
        self.etcd_dir = None
        if self.workdir is not None and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        elif self.workdir is not None:
            with contextlib.suppress(OSError):
                (self.workdir / _OWNER_FILE).unlink()
        self._started = False
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    def restart_apiserver(self, downtime: float = 0.0, *, graceful: bool = True) -> None:
        """Stop kube-apiserver, wait ``downtime`` seconds, start it again on the same port/etcd.

        Data survives (etcd keeps running); clients see their connections and watches drop.
        """
        with self._lock:
            self.stop_apiserver(graceful=graceful)
            if downtime > 0:
                time.sleep(downtime)
            self.start_apiserver()

    def stop_apiserver(self, *, graceful: bool = True, timeout: float = 3.0) -> None:
        """SIGTERM kube-apiserver (SIGKILL after ``timeout``), or SIGKILL it if not ``graceful``.

        With open watches kube-apiserver can take 15s+ to exit on SIGTERM, hence the short timeout.
        """
        with self._lock:
            proc = self._procs.get("kube-apiserver")
            if proc is None:
                return
            if graceful:
                proc.stop(timeout)
            else:
                proc.kill()

    def start_apiserver(self) -> None:
        with self._lock:
            proc = self._procs["kube-apiserver"]
            if not proc.running():
                proc.start()
            self._wait_apiserver(proc)

    def kill_process(self, name: str) -> None:
        """SIGKILL one component (e.g. ``kwok``, to make its nodes stop heartbeating)."""
        with self._lock:
            proc = self._procs.get(name)
            if proc is None:
                raise ControlPlaneError(f"no process {name!r} (running: {', '.join(self._procs)})")
            proc.kill()

    def processes(self) -> dict[str, int | None]:
        """Name -> pid of the running processes."""
        return {n: p.pid for n, p in self._procs.items() if p.running()}

    def log_path(self, name: str) -> Path:
        assert self.workdir is not None, "not started"
        return self.workdir / "logs" / f"{name}.log"

    def check_alive(self) -> None:
        """Raise ControlPlaneError if a process has died."""
        for p in self._procs.values():
            if not p.running():
                raise p.failure("is not running")

    # ---- setup steps
    def _write_credentials(self) -> None:
        assert self.workdir is not None
        certs = self.workdir / "certs"
        certs.mkdir()
        ossl = ["openssl"]
        _run(ossl + ["genrsa", "-out", "sa.key", "2048"], certs)
        _run(ossl + ["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], certs)
        _run(ossl + ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                     "-days", "3650", "-subj", "/CN=kai-test-ca",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"], certs)
        _run(ossl + ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key", "-out", "apiserver.csr",
                     "-subj", "/CN=kube-apiserver"], certs)
        (certs / "apiserver.ext").write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
        )
        _run(ossl + ["x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                     "-CAcreateserial", "-out", "apiserver.crt", "-days", "3650",
                     "-extfile", "apiserver.ext"], certs)
        self.ca_file = str(certs / "ca.crt")
        self.token = secrets.token_hex(24)
        tokens = certs / "tokens.csv"
        tokens.write_text(f'{self.token},kai-admin,kai-admin-uid,"system:masters"\n')
        for f in certs.iterdir():
            f.chmod(0o600)
        self._ssl_ctx = ssl.create_default_context(cafile=self.ca_file)

    def _new_process(self, name: str, argv: list[str]) -> _Process:
        assert self.workdir is not None
        proc = _Process(name, argv, self.log_path(name), self.workdir)
        self._procs[name] = proc
        return proc

    def _bin(self, name: str) -> str:
        assert self.bin_dir is not None
        return str(self.bin_dir / name)

    def _start_etcd(self) -> None:
        client, peer = _free_port(self._ports), _free_port(self._ports)
        self.etcd_url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        proc = self._new_process("etcd", [
            self._bin("etcd"),
            "--name=kai-test",
            f"--data-dir={self.etcd_dir}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=kai-test={peer_url}",
            "--unsafe-no-fsync",
            "--quota-backend-bytes=8589934592",
            "--log-level=warn",
            *self.extra_etcd_args,
        ])
        proc.start()

        def ready() -> bool:
            status, body = _http_get("127.0.0.1", client, "/health", None, None)
            return status == 200 and '"true"' in body

        self._wait(proc, ready, "did not become healthy")

    def _apiserver_argv(self) -> list[str]:
        assert self.workdir is not None
        certs = self.workdir / "certs"
        port = self.apiserver_port
        argv = [
            self._bin("kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={certs}",
            f"--tls-cert-file={certs / 'apiserver.crt'}",
            f"--tls-private-key-file={certs / 'apiserver.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--service-account-issuer=https://127.0.0.1:{port}",
            f"--service-account-key-file={certs / 'sa.pub'}",
            f"--service-account-signing-key-file={certs / 'sa.key'}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={certs / 'tokens.csv'}",
            "--allow-privileged=true",
            # The "kubernetes" Service endpoints cannot point at a loopback address.
            "--endpoint-reconciler-type=none",
        ]
        if not self.service_account_admission:
            argv.append("--disable-admission-plugins=ServiceAccount")
        if self.audit_log:
            policy = self.workdir / "audit-policy.yaml"
            policy.write_text(_AUDIT_POLICY)
            argv += [f"--audit-policy-file={policy}", f"--audit-log-path={self.workdir / 'logs' / 'audit.log'}",
                     "--audit-log-format=json", "--audit-log-mode=blocking"]
        argv.extend(self.extra_apiserver_args)
        return argv

    def _start_apiserver(self) -> None:
        self.apiserver_port = _free_port(self._ports)
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        proc = self._new_process("kube-apiserver", self._apiserver_argv())
        proc.start()
        self._wait_apiserver(proc)

    def _wait_apiserver(self, proc: _Process) -> None:
        def ready() -> bool:
            status, _ = self.api_request("GET", "/readyz", timeout=5)
            return status == 200

        self._wait(proc, ready, "did not become ready (/readyz)")

    def _write_kubeconfig(self) -> None:
        assert self.workdir is not None and self.token is not None
        self.kubeconfig = self.write_kubeconfig(self.workdir / "kubeconfig", self.token, user="kai-admin")

    def _component_auth_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ]

    def _start_controller_manager(self) -> None:
        assert self.workdir is not None
        certs = self.workdir / "certs"
        port = _free_port(self._ports)
        proc = self._new_process("kube-controller-manager", [
            self._bin("kube-controller-manager"),
            *self._component_auth_args(),
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'kcm-certs'}",
            f"--controllers={','.join(self.controllers)}",
            f"--service-account-private-key-file={certs / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            "--use-service-account-credentials=false",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            *self.extra_controller_manager_args,
        ])
        proc.start()
        self._wait(proc, lambda: _https_healthz(port), "did not become healthy (/healthz)")

    def start_controller_manager(self, controllers: Sequence[str] | None = None) -> None:
        """Run kube-controller-manager with at least ``controllers`` on a running control plane,
        e.g. the resourceclaim controller for a DRA benchmark. Started once; when it already
        runs without some of them, it is restarted with the union of both sets (no leader
        election, so the new process takes over at once)."""
        if self.with_controller_manager:
            missing = [c for c in (controllers or ()) if c not in self.controllers]
            if not missing:
                return
            with self._lock:
                old = self._procs.pop("kube-controller-manager", None)
                if old is not None:
                    old.stop()
            self.controllers = (*self.controllers, *missing)
            self._start_controller_manager()
            return
        if controllers is not None:
            self.controllers = tuple(controllers)
        self._start_controller_manager()
        self.with_controller_manager = True

    def start_kube_scheduler(self) -> None:
        """Start the upstream kube-scheduler on a running control plane (once; differential tests)."""
        if self.with_scheduler:
            return
        self._start_scheduler()
        self.with_scheduler = True

    def _start_scheduler(self) -> None:
        assert self.workdir is not None
        port = _free_port(self._ports)
        proc = self._new_process("kube-scheduler", [
            self._bin("kube-scheduler"),
            *self._component_auth_args(),
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'scheduler-certs'}",
        ])
        proc.start()
        self._wait(proc, lambda: _https_healthz(port), "did not become healthy (/healthz)")

    def _start_kwok(self) -> None:
        port = _free_port(self._ports)
        key, value = KWOK_NODE_ANNOTATION
        proc = self._new_process("kwok", [
            self._bin("kwok"),
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={key}={value}",
            f"--cidr={POD_CIDR}",
            "--node-ip=10.255.0.1",
            f"--server-address=127.0.0.1:{port}",
            # node heartbeats through Leases in kube-node-lease, as kubelets send them
            f"--node-lease-duration-seconds={self.node_lease_seconds}",
            *self.extra_kwok_args,
        ])
        proc.start()

        def ready() -> bool:
            status, _ = _http_get("127.0.0.1", port, "/healthz", None, None)
            return status == 200

        self._wait(proc, ready, "did not become healthy (/healthz)")

    def _wait(self, proc: _Process, ready: Any, what: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_err: Exception | None = None
        while time.monotonic() < deadline:
            if not proc.running():
                raise proc.failure("exited during startup")
            try:
                if ready():
                    return
            except (OSError, http.client.HTTPException, ssl.SSLError) as e:
                last_err = e
            time.sleep(0.1)
        err = proc.failure(f"{what} within {self.startup_timeout:.0f}s (last error: {last_err})")
        raise err

    # ---- API helpers (stdlib only)
    def api_request(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0,
                    content_type: str = "application/json") -> tuple[int, Any]:
        """One request to kube-apiserver as admin; returns (status, decoded JSON or text)."""
        assert self.apiserver_port is not None and self._ssl_ctx is not None, "not started"
        conn = http.client.HTTPSConnection("127.0.0.1", self.apiserver_port, timeout=timeout,
                                           context=self._ssl_ctx)
        try:
            data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw

    def audit_events(self) -> list[dict[str, Any]]:
        """Audit events so far (``audit_log=True``): every create/update/patch/delete made by a
        service account (the scheduler under test), with ``userAgent``, ``verb``,
        ``objectRef`` and ``requestReceivedTimestamp``; reads, Leases and admin requests are not logged."""
        assert self.workdir is not None and self.audit_log, "audit_log is off"
        try:
            text = (self.workdir / "logs" / "audit.log").read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def create_node(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        status, body = self.api_request("POST", "/api/v1/nodes", manifest)
        if status not in (200, 201):
            raise ControlPlaneError(f"creating node {manifest['metadata']['name']} failed: {status} {body}")
        return body

    def create_fake_nodes(self, count: int, prefix: str = "kwok-node-", **kwargs: Any) -> list[str]:
        names = [f"{prefix}{i}" for i in range(count)]
        for n in names:
            self.create_node(fake_node_manifest(n, **kwargs))
        return names

    @property
    def runs_node_lifecycle(self) -> bool:
        """Whether the node lifecycle controller runs (it lifts the not-ready taint)."""
        return self.with_controller_manager and "node-lifecycle-controller" in self.controllers

    def wait_nodes_ready(self, names: Iterable[str], timeout: float = 60.0) -> None:
        """Wait until every node reports Ready and, when the node lifecycle controller runs,
        has lost the ``node.kubernetes.io/not-ready`` taint new nodes are created with."""
        pending = set(names)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for n in list(pending):
                status, body = self.api_request("GET", f"/api/v1/nodes/{n}")
                if status != 200:
                    continue
                ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in body.get("status", {}).get("conditions") or [])
                tainted = any(t.get("key") in NODE_CONDITION_TAINTS for t in body.get("spec", {}).get("taints") or [])
                if ready and not (tainted and self.runs_node_lifecycle):
                    pending.discard(n)
            if pending:
                time.sleep(0.2)
        if pending:
            raise ControlPlaneError(f"nodes not Ready (or still tainted not-ready) after {timeout}s: "
                                    f"{sorted(pending)}; kwok log tail:\n" + _tail(self.log_path("kwok")))

    def wait_default_service_account(self, namespace: str, timeout: float = 30.0) -> None:
        """With the ServiceAccount admission plugin on, pods need the namespace's 'default' SA."""
        if not self.service_account_admission:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _ = self.api_request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
            if status == 200:
                return
            time.sleep(0.1)
        raise ControlPlaneError(f"no default ServiceAccount in {namespace} after {timeout}s")

    def write_kubeconfig(self, path: str | os.PathLike[str], token: str, user: str = "user") -> str:
        """Write a kubeconfig for this cluster authenticating with ``token``; returns the path."""
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kai-test", "cluster": {"server": self.server,
                                                          "certificate-authority": self.ca_file}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "kai-test", "context": {"cluster": "kai-test", "user": user}}],
            "current-context": "kai-test",
            "preferences": {},
        }
        p = Path(path)
        p.write_text(json.dumps(cfg, indent=2) + "\n")  # JSON is valid YAML
        p.chmod(0o600)
        return str(p)

    def service_account_kubeconfig(self, namespace: str, name: str, *, create: bool = True,
                                   expiration_seconds: int = 86400) -> str:
        """A kubeconfig with a TokenRequest token for ServiceAccount ``namespace/name``.

        For least-privilege tests: the token has exactly the RBAC bound to that ServiceAccount.
        The ServiceAccount is created if missing (``create=True``).
        """
        assert self.workdir is not None, "not started"
        if create:
            status, body = self.api_request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                                            {"apiVersion": "v1", "kind": "ServiceAccount",
                                             "metadata": {"name": name}})
            if status not in (201, 409):
                raise ControlPlaneError(f"creating ServiceAccount {namespace}/{name}: {status} {body}")
        status, body = self.api_request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": expiration_seconds}})
        if status != 201:
            raise ControlPlaneError(f"TokenRequest for {namespace}/{name}: {status} {body}")
        return self.write_kubeconfig(self.workdir / f"kubeconfig-sa-{namespace}-{name}",
                                     body["status"]["token"], user=f"{namespace}-{name}")

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for the admin kubeconfig."""
        from kubernetes import config  # local import: the harness itself needs only the stdlib

        return config.new_client_from_config(config_file=self.kubeconfig)


def _http_get(host: str, port: int, path: str, ctx: ssl.SSLContext | None, token: str | None,
              timeout: float = 3.0) -> tuple[int, str]:
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


_INSECURE = ssl.create_default_context()
_INSECURE.check_hostname = False
_INSECURE.verify_mode = ssl.CERT_NONE


def _https_healthz(port: int) -> bool:
    status, _ = _http_get("127.0.0.1", port, "/healthz", _INSECURE, None)
    return status == 200


# --------------------------------------------------------------------------------------------
# CLI


def _cmd_up(args: argparse.Namespace) -> int:
    cp = ControlPlane(args.bin_dir, with_controller_manager=args.with_controller_manager,
                      with_scheduler=args.with_scheduler, keep_workdir=args.keep)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        print("starting control plane ...", file=sys.stderr, flush=True)
        cp.start()
        if args.nodes:
            names = cp.create_fake_nodes(args.nodes, prefix=args.node_prefix, gpus=args.gpus)
            cp.wait_nodes_ready(names)
            print(f"created {len(names)} fake GPU nodes ({args.gpus} GPUs each)", file=sys.stderr)
        assert cp.workdir is not None
        print(f"server:     {cp.server}")
        print(f"workdir:    {cp.workdir}  (logs in {cp.workdir / 'logs'})")
        print(f"kubeconfig: {cp.kubeconfig}")
        print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
        print("running; press Ctrl-C to stop", file=sys.stderr, flush=True)
        while True:
            time.sleep(1)
            cp.check_alive()
    except KeyboardInterrupt:
        print("\nstopping ...", file=sys.stderr)
        return 0
    except ControlPlaneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        cp.stop()


def _cmd_check(args: argparse.Namespace) -> int:
    ok, reason = binaries_available(args.bin_dir)
    print(reason)
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kai.testing.controlplane",
                                     description="Local Kubernetes control plane for kai tests.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start etcd, kube-apiserver, kwok (...) and run until Ctrl-C")
    up.add_argument("--with-controller-manager", action="store_true")
    up.add_argument("--with-scheduler", action="store_true", help="also run the upstream kube-scheduler")
    up.add_argument("--nodes", type=int, default=0, help="create N fake GPU nodes managed by kwok")
    up.add_argument("--gpus", type=int, default=8, help="GPUs per fake node (default 8)")
    up.add_argument("--node-prefix", default="kwok-node-")
    up.add_argument("--bin-dir", default=None, help="default: $KAI_CONTROLPLANE_BIN or build.sh's output")
    up.add_argument("--keep", action="store_true", help="keep the work dir (logs) after exit")
    up.set_defaults(func=_cmd_up)
    check = sub.add_parser("check", help="say whether the binaries are available")
    check.add_argument("--bin-dir", default=None)
    check.set_defaults(func=_cmd_check)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
