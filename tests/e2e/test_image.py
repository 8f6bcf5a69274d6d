"""The container image, built for real and run the way the chart runs it.

``hack/image/build.sh`` builds the repository's Dockerfile with buildah on a Debian bookworm
base (mmdebstrap) and exports an OCI archive; it is a no-op when the archive is up to date, so
in CI (scripts/test.sh builds first) these tests run on the image CI built from its clone.

The chart is rendered with helm and applied to a control plane of this module's own (so the
session's ``kai scheduler`` and its leases never meet the image's), every object except the
Deployments (which the tests run) and the webhook configurations (the API server here has no
Service network to call the webhook through). Each Deployment's container then runs in the
image with ``buildah run --isolation chroot --network host``, as the kubelet would start it:
the image's entrypoint with the rendered args, the image's env plus the container's (fieldRefs
resolved, ``KUBERNETES_SERVICE_HOST``/``_PORT`` set), the securityContext's uid and gid, the
working directory, every volumeMount (ConfigMap and Secret contents read back from the API,
emptyDirs as fresh directories), the ServiceAccount token mounted at
``/var/run/secrets/kubernetes.io/serviceaccount``, and the root filesystem read-only
(``readOnlyRootFilesystem``). See :class:`PodSandbox` for how, and for what chroot isolation
does not give (no pid/network namespace, no seccomp).
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

import kai
from e2e_helpers import free_port, pod_manifest, queue_manifest, wait_for
from kai.cache.kubeclient import KubeClient
from kai.testing.controlplane import ControlPlane, ControlPlaneError, binaries_available, fake_node_manifest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kai-scheduler"
BUILD = REPO / "hack" / "image" / "build.sh"
BUILDAH = REPO / "hack" / "image" / "buildah.sh"
RELEASE = NS = "kai-scheduler"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CONTAINER_PREFIX = "kai-e2e-"
PG = "/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups"
RESERVATION_NS = "kai-resource-reservation"
# Paths a runtime layer must not contain: compilers, Python headers, pip, the build venv and
# the builder's sources and wheels.
BUILD_TOOLS = ("usr/bin/gcc", "usr/bin/g++", "usr/bin/cc", "usr/bin/c++", "usr/bin/make", "usr/bin/ld",
               "usr/bin/x86_64-linux-gnu-gcc", "usr/include/python3.11/Python.h",
               "usr/local/include/python3.11/Python.h", "opt/kai/bin/pip", "opt/build/", "src/", "wheels/")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _run(argv: list[str], timeout: float = 120, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def buildah(*args: str, timeout: float = 120, check: bool = True) -> str:
    return _run([str(BUILDAH), *args], timeout=timeout, check=check).stdout.strip()


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def image_archive() -> Path:
    """The OCI archive hack/image/build.sh makes (built now unless up to date)."""
    missing = [t for t in ("buildah", "skopeo", "mmdebstrap") if shutil.which(t) is None]
    if missing and not (os.geteuid() == 0 and shutil.which("apt-get")):
        # not even in CI a failure: the image is built and run where buildah can be had
        pytest.skip(f"{', '.join(missing)} not installed, and no apt-get as root to install them "
                    "(Debian: apt-get install mmdebstrap buildah skopeo)")
    if os.geteuid() != 0:
        pytest.skip("running a pod's container needs root here (mount, chroot)")
    proc = _run(["bash", str(BUILD)], timeout=3600, check=False)
    if proc.returncode != 0:
        pytest.fail(f"hack/image/build.sh failed ({proc.returncode}):\n{proc.stderr[-5000:]}", pytrace=False)
    archive = Path(proc.stdout.strip().splitlines()[-1])
    assert archive.is_file(), archive
    _remove_stale_containers()
    return archive


@pytest.fixture(scope="module")
def image_config(image_archive: Path) -> dict:
    return json.loads(_run(["skopeo", "inspect", "--config", f"oci-archive:{image_archive}"]).stdout)


@pytest.fixture(scope="module")
def helm() -> str:
    for cand in (os.environ.get("KAI_HELM"), str(Path.home() / ".cache" / "kai-tools" / "bin" / "helm"),
                 shutil.which("helm")):
        if cand and os.access(cand, os.X_OK):
            return cand
    msg = "helm not found: build it with `bash hack/tools/build-helm.sh`"
    if _in_ci():
        pytest.fail(f"CI=true: {msg}", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def chart(helm: str) -> dict:
    """The chart rendered as `helm install` would (CRDs included), with GPU sharing, leader
    election and the webhook on, and free ports for the metrics and webhook servers (the
    chart's defaults, 8080 and 9443, may be taken on a shared machine)."""
    values = {"global.gpuSharing": True, "global.leaderElection": True, "admission.enabled": True,
              "scheduler.ports.metricsPort": free_port(), "admission.port": free_port()}
    args = [a for k, v in values.items() for a in ("--set-json", f"{k}={json.dumps(v)}")]
    out = _run([helm, "template", RELEASE, str(CHART), "--namespace", NS, "--include-crds", *args],
               env={**os.environ, "HELM_CACHE_HOME": "/tmp/kai-helm-cache", "HELM_CONFIG_HOME": "/tmp/kai-helm-config",
                    "HELM_DATA_HOME": "/tmp/kai-helm-data"}).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    return {"docs": docs, "values": values}


def _one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


_PATHS = {
    "CustomResourceDefinition": "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "Namespace": "/api/v1/namespaces",
    "PriorityClass": "/apis/scheduling.k8s.io/v1/priorityclasses",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "Queue": "/apis/scheduling.run.ai/v2/queues",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "Service": "/api/v1/namespaces/{ns}/services",
}
# Rendered but not applied: the Deployments run in the image below; the webhook
# configurations would send every pod creation to a Service this API server cannot reach.
_NOT_APPLIED = {"Deployment", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}


@pytest.fixture(scope="module")
def cluster(chart: dict):
    """A control plane of its own with the rendered chart applied and two 8-GPU kwok nodes."""
    ok, reason = binaries_available()
    if not ok:
        if _in_ci():
            pytest.fail(f"CI=true: the image tests need the local control plane, but {reason}", pytrace=False)
        pytest.skip(reason)
    cp = ControlPlane(with_controller_manager=True, with_kwok=True)
    try:
        cp.start()
    except ControlPlaneError as exc:
        pytest.fail(f"control plane failed to start: {exc}", pytrace=False)
    try:
        docs = chart["docs"]
        kinds = {d["kind"] for d in docs}
        assert kinds <= set(_PATHS) | _NOT_APPLIED, f"rendered kinds this test cannot apply: {kinds - set(_PATHS)}"
        _create(cp, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})   # helm --create-namespace
        for kind in _PATHS:                                   # dependency order: CRDs, namespaces, ... queues
            for d in (d for d in docs if d["kind"] == kind):
                _create(cp, d)
                if kind == "CustomResourceDefinition":
                    _wait_established(cp, d["metadata"]["name"])
        nodes = ["img-gpu-0", "img-gpu-1"]
        for n in nodes:
            cp.create_node(fake_node_manifest(n, gpus=8, cpu="32", memory="256Gi"))
        cp.wait_nodes_ready(nodes)
        cp.wait_default_service_account(NS)
        yield cp
    finally:
        cp.stop()


def _create(cp: ControlPlane, doc: dict) -> None:
    ns = doc["metadata"].get("namespace") or NS
    status, body = cp.api_request("POST", _PATHS[doc["kind"]].format(ns=ns), doc)
    if status not in (201, 409):
        raise AssertionError(f"creating {doc['kind']} {doc['metadata']['name']}: {status} {body}")


def _wait_established(cp: ControlPlane, name: str) -> None:
    def established() -> bool:
        _, crd = cp.api_request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        return any(c["type"] == "Established" and c["status"] == "True"
                   for c in (crd.get("status") or {}).get("conditions") or [])
    wait_for(established, 30, what=f"CRD {name} established")


@pytest.fixture(scope="module")
def admin(cluster: ControlPlane) -> KubeClient:
    return KubeClient.from_kubeconfig(cluster.kubeconfig)


# ------------------------------------------------------------------------------ running a pod's container


def _remove_stale_containers() -> None:
    """Containers an interrupted run of this module left behind, with their mounts (named
    with the pid of the test process: another session's live containers are left alone)."""
    out = buildah("containers", "--noheading", "--format", "{{.ContainerName}}", check=False)
    for name in out.split():
        pid = name[len(CONTAINER_PREFIX):].split("-", 1)[0]
        if name.startswith(CONTAINER_PREFIX) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            root = buildah("mount", name, check=False)
            if root:
                _unmount_below(root)
            buildah("rm", name, check=False)


def _unmount_below(root: str) -> None:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith(root + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


class PodSandbox:
    """One container of a rendered pod spec, run in the image with buildah (chroot isolation).

    What the kubelet and the container runtime would do, done by hand:
    - command: ``container.command`` or the image's Entrypoint; args: ``container.args``, or
      the image's Cmd when neither command nor args is given;
    - env: the image's, then ``container.env`` (``fieldRef`` metadata.name/namespace resolved),
      ``HOSTNAME`` and ``KUBERNETES_SERVICE_HOST``/``_PORT`` of the API server;
    - user: ``runAsUser``/``runAsGroup`` of the container's securityContext, else the pod's;
      working directory: ``container.workingDir`` or the image's; capabilities dropped;
    - volumes: mounted in the container's rootfs before the run (mount points created inside
      it, symlinks such as /var/run resolved inside it, as runc does); ConfigMap and Secret
      volumes hold the objects' data as read from the API server, emptyDirs are fresh
      world-writable directories; the ServiceAccount token (a TokenRequest for the pod's
      ServiceAccount), ``ca.crt`` (the namespace's kube-root-ca.crt) and ``namespace`` at
      /var/run/secrets/kubernetes.io/serviceaccount;
    - ``readOnlyRootFilesystem: true``: the container's overlay is remounted read-only. buildah
      itself must write and remove /run/.containerenv around the run, so /run is a tmpfs
      (root-owned, mode 755: the non-root process cannot write it either), and the other
      files buildah binds (/etc/hosts, resolv.conf, hostname) are created beforehand.
    Not reproduced: chroot isolation has no pid or network namespace of its own (the process
    shares the host's network, as ``hostNetwork`` would; ``network="none"`` runs buildah in a
    new, empty network namespace), no seccomp profile, no cgroup limits.
    """

    def __init__(self, archive: Path, image_config: dict, pod_spec: dict, container: str,
                 cluster: ControlPlane | None, namespace: str, workdir: Path, network: str = "host") -> None:
        self.image = image_config["config"]
        self.pod_spec = pod_spec
        self.c = next(c for c in pod_spec["containers"] if c["name"] == container)
        self.cluster = cluster
        self.namespace = namespace
        self.workdir = workdir
        self.network = network
        self.pod_name = f"{container}-{uuid.uuid4().hex[:10]}"
        self.name = f"{CONTAINER_PREFIX}{os.getpid()}-{container}-{uuid.uuid4().hex[:8]}"
        self.root = ""
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.name}.log"
        self._log = None
        buildah("from", "--name", self.name, f"oci-archive:{archive}")

    # -- the pod spec, resolved
    def argv(self) -> list[str]:
        command = self.c.get("command") or self.image.get("Entrypoint") or []
        if self.c.get("command") or self.c.get("args"):
            args = self.c.get("args") or []
        else:
            args = self.image.get("Cmd") or []
        return [*command, *args]

    def security(self, key: str) -> Any:
        return (self.c.get("securityContext") or {}).get(key, (self.pod_spec.get("securityContext") or {}).get(key))

    def user(self) -> str:
        uid, gid = self.security("runAsUser"), self.security("runAsGroup")
        if uid is None:
            return self.image.get("User") or "0"
        return f"{uid}:{gid if gid is not None else 0}"

    def env(self) -> list[str]:
        env = dict(e.split("=", 1) for e in self.image.get("Env") or [])
        env["HOSTNAME"] = self.pod_name
        if self.cluster is not None:
            env["KUBERNETES_SERVICE_HOST"] = "127.0.0.1"
            env["KUBERNETES_SERVICE_PORT"] = str(self.cluster.apiserver_port)
        fields = {"metadata.name": self.pod_name, "metadata.namespace": self.namespace}
        for e in self.c.get("env") or []:
            if "value" in e:
                env[e["name"]] = e["value"]
            else:
                env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        return [f"{k}={v}" for k, v in env.items()]

    def _volume_source(self, name: str) -> tuple[Path, dict[str, bytes]]:
        vol = next(v for v in self.pod_spec.get("volumes") or [] if v["name"] == name)
        d = self.workdir / f"{self.name}-{name}"
        d.mkdir()
        files: dict[str, bytes] = {}
        if "configMap" in vol:
            _, cm = self.cluster.api_request("GET", f"/api/v1/namespaces/{self.namespace}/configmaps/"
                                                    f"{vol['configMap']['name']}")
            files = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
        elif "secret" in vol:
            _, sec = self.cluster.api_request("GET", f"/api/v1/namespaces/{self.namespace}/secrets/"
                                                     f"{vol['secret']['secretName']}")
            files = {k: base64.b64decode(v) for k, v in (sec.get("data") or {}).items()}
        elif "emptyDir" in vol:
            d.chmod(0o777)
        else:
            raise AssertionError(f"volume {name}: a kind this test does not mount: {vol}")
        return d, files

    def _service_account_files(self) -> dict[str, bytes]:
        sa = self.pod_spec.get("serviceAccountName") or "default"
        status, body = self.cluster.api_request(
            "POST", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
        assert status == 201, f"TokenRequest for {self.namespace}/{sa}: {status} {body}"
        _, root_ca = self.cluster.api_request("GET", f"/api/v1/namespaces/{self.namespace}/configmaps/kube-root-ca.crt")
        return {"token": body["status"]["token"].encode(), "ca.crt": root_ca["data"]["ca.crt"].encode(),
                "namespace": self.namespace.encode()}

    # -- the sandbox
    def _inside(self, script: str, *args: str) -> str:
        return _run(["chroot", self.root, "/bin/sh", "-c", script, "sh", *args]).stdout.strip()

    def _mount(self, source: Path, path: str, read_only: bool) -> None:
        self._inside('mkdir -p "$1"', path)
        target = self.root + self._inside('readlink -f "$1"', path)      # symlinks resolved inside the rootfs
        _run(["mount", "--bind", str(source), target])
        if read_only:
            _run(["mount", "-o", "remount,bind,ro", target])

    def prepare(self) -> None:
        self.root = buildah("mount", self.name)
        # the files buildah binds over at run time must exist before the rootfs is read-only
        self._inside('for f in /etc/hosts /etc/resolv.conf /etc/hostname; do [ -e "$f" ] || : > "$f"; done')
        _run(["mount", "-t", "tmpfs", "-o", "mode=755,size=8m", "kai-run", f"{self.root}/run"])
        mounts: list[tuple[Path, str, bool]] = []
        for vm in self.c.get("volumeMounts") or []:
            src, files = self._volume_source(vm["name"])
            for k, v in files.items():
                (src / k).write_bytes(v)
            mounts.append((src, vm["mountPath"], bool(vm.get("readOnly"))))
        if self.cluster is not None and self.pod_spec.get("automountServiceAccountToken", True):
            sa = self.workdir / f"{self.name}-serviceaccount"
            sa.mkdir()
            for k, v in self._service_account_files().items():
                (sa / k).write_bytes(v)
                (sa / k).chmod(0o644)
            mounts.append((sa, SA_DIR, True))
        for src, path, ro in mounts:
            self._mount(src, path, ro)
        if self.security("readOnlyRootFilesystem"):
            _run(["mount", "-o", "remount,ro", self.root])

    def start(self) -> PodSandbox:
        self.prepare()
        # chroot isolation runs in the caller's network namespace: "none" is a new, empty one
        netns = ["unshare", "--net", "--"] if self.network == "none" else []
        argv = [*netns, "buildah", "--root", *self._storage(), "run", "--isolation", "chroot", "--network", "host",
                "--user", self.user(), "--workingdir", self.c.get("workingDir") or self.image.get("WorkingDir") or "/",
                "--cap-drop", "all"]
        for e in self.env():
            argv += ["--env", e]
        argv += [self.name, "--", *self.argv()]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    @staticmethod
    def _storage() -> list[str]:
        # the same storage as hack/image/buildah.sh (kept in one place: that script)
        text = BUILDAH.read_text()
        assert 'exec buildah --root "$cache/containers/storage" --runroot "$cache/containers/run/$boot_id"' in text
        cache = os.environ.get("KAI_IMAGE_CACHE") or str(Path.home() / ".cache" / "kai-image")
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return [f"{cache}/containers/storage", "--runroot", f"{cache}/containers/run/{boot_id}"]

    def run_to_end(self, timeout: float = 120) -> tuple[int, str]:
        self.start()
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"{self.argv()} did not finish in {timeout}s:\n{self.tail()}")
        return rc, self.tail(400)

    def main_pid(self) -> int:
        """The container's main process (the command), below buildah's own processes."""
        assert self.proc is not None
        children: dict[int, list[int]] = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(d.name))
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # buildah's processes carry the command in their arguments too: the main process
            # is the one that runs it (argv[0], or argv[1] behind a script's interpreter)
            if self.argv()[0].encode() in cmdline[:2] and b"buildah" not in cmdline[0]:
                found.append(pid)
            todo += children.get(pid, [])
        assert len(found) == 1, f"{self.argv()[0]} processes below buildah: {found}"
        return found[0]

    def terminate(self, timeout: float) -> int:
        """SIGTERM to the main process, as the kubelet stops a container. Not through buildah:
        its chroot runner turns a SIGTERM it receives into SIGKILL for the command (buildah
        1.28, chroot/run_common.go), which is no test of a graceful stop. Returns the exit
        status, passed up by buildah."""
        assert self.proc is not None
        os.kill(self.main_pid(), signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"still running {timeout}s after SIGTERM:\n{self.tail()}")

    def tail(self, n: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def run_dir_entries(self) -> list[str]:
        """What is in the container's /run (a tmpfs) now, relative to it."""
        base = Path(self.root) / "run"
        return sorted(str(p.relative_to(base)) for p in base.rglob("*"))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()
        if self.root:
            _unmount_below(self.root)
        buildah("rm", self.name, check=False)


@pytest.fixture
def sandboxes(tmp_path: Path):
    made: list[PodSandbox] = []

    def make(*args: Any, **kw: Any) -> PodSandbox:
        sb = PodSandbox(*args, workdir=tmp_path, **kw)
        made.append(sb)
        return sb
    yield make
    for sb in made:
        sb.close()


class _ServiceConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1, verifying the certificate for a Service's DNS name as the API
    server does when it calls a webhook through ``clientConfig.service``."""

    def __init__(self, port: int, ctx: ssl.SSLContext, server_hostname: str) -> None:
        super().__init__("127.0.0.1", port, timeout=5, context=ctx)
        self._ctx, self._sni = ctx, server_hostname

    def connect(self) -> None:
        self.sock = self._ctx.wrap_socket(socket.create_connection((self.host, self.port), self.timeout),
                                          server_hostname=self._sni)


def _http(port: int, path: str, ctx: ssl.SSLContext | None = None, server_hostname: str = "",
          body: dict | None = None) -> tuple[int, str]:
    conn = (http.client.HTTPConnection("127.0.0.1", port, timeout=5) if ctx is None
            else _ServiceConnection(port, ctx, server_hostname))
    try:
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read().decode()
    except OSError as exc:
        return 0, str(exc)
    finally:
        conn.close()


# ------------------------------------------------------------------------------ the archive


def test_archive_config(image_config: dict):
    cfg = image_config["config"]
    assert cfg["User"] == "65532:65532"
    assert cfg["Entrypoint"] == ["/opt/kai/bin/kai"] and cfg["Cmd"] == ["scheduler"]
    assert cfg.get("WorkingDir") == "/"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PATH"].startswith("/opt/kai/bin:")
    chart_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert cfg["Labels"]["org.opencontainers.image.version"] == kai.__version__ == chart_version


def _layers(archive: Path) -> list[list[tarfile.TarInfo]]:
    """The members of each layer of the archive's image, base first."""
    with tarfile.open(archive) as outer:
        def blob(digest: str) -> Any:
            return outer.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
        index = json.load(outer.extractfile("index.json"))
        manifest = json.load(blob(index["manifests"][0]["digest"]))
        layers = []
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=blob(layer["digest"]), mode="r|*") as t:
                layers.append([m for m in t])
        return layers


def test_archive_runtime_has_no_build_tools(image_archive: Path, capsys):
    layers = _layers(image_archive)
    names = [{m.name.lstrip("./") for m in layer} for layer in layers]
    everything = set().union(*names)
    found = sorted(n for n in everything for bad in BUILD_TOOLS if n == bad or n.startswith(bad.rstrip("/") + "/"))
    assert not found, f"build tools in the runtime image: {found[:20]}"
    nodes = [m.name for layer in layers for m in layer if m.ischr() or m.isblk()]
    assert not nodes, f"device nodes in the image (a rootless engine cannot unpack them): {nodes}"
    # the compiled kernels and the console script are there
    fast = [n for n in everything if "site-packages/kai/_fast/" in n and n.endswith(".so")]
    assert len(fast) >= 5, fast
    assert "opt/kai/bin/kai" in everything
    sizes = [sum(m.size for m in layer) for layer in layers]
    with capsys.disabled():
        print(f"\nimage {image_archive.name}: {len(layers)} layers, {sum(sizes) / 1e6:.0f} MB uncompressed "
              f"(base {sizes[0] / 1e6:.0f} MB, kai venv {sum(sizes[1:]) / 1e6:.0f} MB), "
              f"archive {image_archive.stat().st_size / 1e6:.0f} MB")
    assert sum(sizes) < 700e6, "the image grew past 700 MB"


def test_archive_loads_with_podman(image_archive: Path):
    if shutil.which("podman") is None:
        pytest.skip("podman not installed (skopeo inspect is checked above)")
    store = Path(tempfile.mkdtemp(prefix="kai-podman-"))      # podman wants a short run root
    try:
        out = _run(["podman", "--root", str(store / "root"), "--runroot", str(store / "run"),
                    "load", "-i", str(image_archive)], timeout=300).stdout
        assert f"localhost/kai:{kai.__version__}" in out
    finally:
        shutil.rmtree(store, ignore_errors=True)


# ------------------------------------------------------------------------------ the image as the chart runs it


def _pods(c: KubeClient, ns: str, selector: str) -> list[dict]:
    return c.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": selector})["items"]


def test_scheduler_in_image(image_archive, image_config, chart, cluster, admin, sandboxes):
    dep = _one(chart["docs"], "Deployment", RELEASE)
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert "--leader-elect" in c["args"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    port = ports["metrics"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    sb = sandboxes(image_archive, image_config, spec, "scheduler", cluster, NS).start()

    def ready() -> bool:
        if sb.proc.poll() is not None:
            raise AssertionError(f"kai scheduler exited {sb.proc.returncode}:\n{sb.tail()}")
        return _http(port, c["readinessProbe"]["httpGet"]["path"])[0] == 200
    wait_for(ready, 90, 0.5, "the scheduler's readiness probe")
    assert _http(port, "/healthz")[0] == 200

    ns = f"img-{uuid.uuid4().hex[:8]}"
    cluster.api_request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    cluster.wait_default_service_account(ns)
    admin.post("/apis/scheduling.run.ai/v2/queues", queue_manifest("img-team", "default-parent-queue", 8))
    # a gang of 3: nothing is bound until all three members exist, then all at once
    admin.post(PG.format(ns=ns), {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
                                  "metadata": {"name": "gang"}, "spec": {"minMember": 3, "queue": "img-team"}})
    for i in range(3):
        admin.post(f"/api/v1/namespaces/{ns}/pods",
                   pod_manifest(f"w{i}", gpus=1, annotations={"pod-group-name": "gang"}, labels={"app": "gang"}))
    gang = wait_for(lambda: (p := _pods(admin, ns, "app=gang")) and all(x["spec"].get("nodeName") for x in p) and p,
                    60, what="the gang bound")
    assert len(gang) == 3 and len({p["spec"]["nodeName"] for p in gang}) == 1

    # a fraction pod: a reservation pod holds a GPU; playing the device, we report its UUID
    admin.post(f"/api/v1/namespaces/{ns}/pods",
               pod_manifest("half", gpus=0, annotations={"gpu-fraction": "0.5"}, labels={"app": "half"}))
    res = wait_for(lambda: _pods(admin, RESERVATION_NS, "app=kai-resource-reservation"), 60,
                   what="a GPU reservation pod")[0]
    admin.patch(f"/api/v1/namespaces/{RESERVATION_NS}/pods/{res['metadata']['name']}",
                {"metadata": {"annotations": {"run.ai/reserve_for_gpu_index": "GPU-img-0000"}}})
    half = wait_for(lambda: (p := _pods(admin, ns, "app=half")) and p[0]["spec"].get("nodeName") and p[0], 60,
                    what="the fraction pod bound")
    assert half["spec"]["nodeName"] == res["spec"]["nodeName"]
    assert half["metadata"]["labels"]["runai-gpu-group"] == res["metadata"]["labels"]["runai-gpu-group"]
    cm_name = half["metadata"]["annotations"]["runai/shared-gpu-configmap"] + "-0"
    cm = admin.get(f"/api/v1/namespaces/{ns}/configmaps/{cm_name}")
    assert cm["data"]["NVIDIA_VISIBLE_DEVICES"] == "GPU-img-0000"

    code, metrics = _http(port, "/metrics")
    assert code == 200
    for name in ("kai_is_leader 1.0", "kai_e2e_scheduling_latency_milliseconds"):
        assert name in metrics, name
    lease = admin.get(f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{chart_scheduler_name(c)}")
    assert lease["spec"]["holderIdentity"]

    # /run is the one tmpfs the sandbox needs (for buildah): the scheduler wrote nothing there
    sa = SA_DIR.replace("/var/run/", "", 1)
    assert [e for e in sb.run_dir_entries() if not e.startswith(sa + "/")] == [
        ".containerenv", "secrets", "secrets/kubernetes.io", sa], sb.run_dir_entries()
    grace = spec.get("terminationGracePeriodSeconds", 30)
    rc = sb.terminate(grace)
    log = sb.tail(400)
    assert rc == 0, f"exit {rc} on SIGTERM:\n{log}"
    assert "Traceback" not in log and "Read-only file system" not in log, log
    released = admin.get(f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{chart_scheduler_name(c)}")
    assert not released["spec"].get("holderIdentity"), "the Lease was not released on SIGTERM"


def chart_scheduler_name(container: dict) -> str:
    return next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--scheduler-name="))


def test_webhook_in_image(image_archive, image_config, chart, cluster, sandboxes):
    name = f"{RELEASE}-admission"
    dep = _one(chart["docs"], "Deployment", name)
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["webhook"]
    mutating = _one(chart["docs"], "MutatingWebhookConfiguration", f"{name}-mutating")["webhooks"][0]
    validating = _one(chart["docs"], "ValidatingWebhookConfiguration", f"{name}-validating")["webhooks"][0]
    svc = mutating["clientConfig"]["service"]
    # the API server's view: the chart's caBundle, and the certificate valid for <svc>.<ns>.svc
    ctx = ssl.create_default_context(cadata=base64.b64decode(mutating["clientConfig"]["caBundle"]).decode())
    host = f"{svc['name']}.{svc['namespace']}.svc"
    sb = sandboxes(image_archive, image_config, spec, "admission", cluster, NS).start()

    def ready() -> bool:
        if sb.proc.poll() is not None:
            raise AssertionError(f"kai webhook exited {sb.proc.returncode}:\n{sb.tail()}")
        return _http(port, c["readinessProbe"]["httpGet"]["path"], ctx, host)[0] == 200
    wait_for(ready, 60, 0.5, "the webhook's readiness probe over HTTPS")
    assert _http(port, c["livenessProbe"]["httpGet"]["path"], ctx, host)[0] == 200

    def review(path: str, pod: dict) -> dict:
        req = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "request": {"uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                           "resource": {"group": "", "version": "v1", "resource": "pods"},
                           "namespace": "team-a", "operation": "CREATE", "object": pod}}
        code, body = _http(port, path, ctx, host, body=req)
        assert code == 200, body
        resp = json.loads(body)["response"]
        assert resp["uid"] == req["request"]["uid"]
        return resp

    frac = pod_manifest("half", gpus=0, annotations={"gpu-fraction": "0.5"})
    frac["metadata"]["namespace"] = "team-a"
    resp = review(svc["path"], frac)
    assert resp["allowed"] is True and resp["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(resp["patch"]))
    assert any("shared-gpu-configmap" in json.dumps(op) for op in patch), patch
    whole = pod_manifest("whole", gpus=1)
    whole["metadata"]["namespace"] = "team-a"
    patch = json.loads(base64.b64decode(review(svc["path"], whole)["patch"]))
    assert {"op": "add", "path": "/spec/runtimeClassName", "value": "nvidia"} in patch
    bad = pod_manifest("bad", gpus=0, annotations={"gpu-fraction": "1.5"})
    bad["metadata"]["namespace"] = "team-a"
    denied = review(validating["clientConfig"]["service"]["path"], bad)
    assert denied["allowed"] is False and "gpu-fraction" in denied["status"]["message"]

    rc = sb.terminate(spec.get("terminationGracePeriodSeconds", 30))
    log = sb.tail(400)
    assert rc == 0, f"exit {rc} on SIGTERM:\n{log}"
    assert "Traceback" not in log and "Read-only file system" not in log, log


def test_simulate_in_image_without_network(image_archive, image_config, sandboxes):
    """`kai simulate` on its bundled example, no network at all, read-only root, as the image's user."""
    spec = {"securityContext": {}, "containers": [{
        "name": "simulate", "args": ["simulate", "--output", "json"],
        "securityContext": {"readOnlyRootFilesystem": True}}]}
    probe = {"containers": [{"name": "probe", "command": [
        "/opt/kai/bin/python", "-c",
        "import json, socket; print('IFACES=' + json.dumps(sorted(n for _, n in socket.if_nameindex())))"]}]}
    rc, out = sandboxes(image_archive, image_config, probe, "probe", None, "default", network="none").run_to_end()
    ifaces = [json.loads(ln.split("=", 1)[1]) for ln in out.splitlines() if ln.startswith("IFACES=")]
    assert rc == 0 and ifaces == [["lo"]], out
    sb = sandboxes(image_archive, image_config, spec, "simulate", None, "default", network="none")
    assert sb.user() == "65532:65532"
    rc, out = sb.run_to_end()
    assert rc == 0, out
    doc = json.loads(out[out.index("{"):out.rindex("}") + 1])
    (cycle,) = doc["cycles"]
    assert len(cycle["bindings"]) == 8, cycle
    assert [u["podGroup"] for u in cycle["unschedulable"]] == ["team-a/too-big"]
    assert not doc["problems"], doc["problems"]
