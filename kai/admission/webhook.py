"""Pod admission webhook: KAI-Scheduler's ``gpusharing`` and ``runtimeenforcement`` plugins.

An HTTPS server answering AdmissionReview v1 on the paths KAI's admission service uses:

``/mutate--v1-pod`` (pods of ``--scheduler-name`` only, on CREATE)
  * gpusharing: a pod asking for a GPU fraction (annotation ``gpu-fraction`` or
    ``gpu-memory``) gets the annotation ``runai/shared-gpu-configmap=<prefix>`` when it has
    none (``<owner or pod name>-<rand7>-shared-gpu``, the binder's format; the binder reuses an
    existing annotation, see :mod:`kai.cache.reservation`). Its fraction container (annotation
    ``gpu-fraction-container-name``, default the first container; an init container is named
    ``i<index>`` as in KAI) gets the env vars ``NVIDIA_VISIBLE_DEVICES``, ``RUNAI_NUM_OF_GPUS``
    (deprecated KAI name) and ``GPU_PORTION``, each ``valueFrom.configMapKeyRef`` on ConfigMap
    ``<prefix>-<index>`` with ``optional: true``, and the pod gets a ConfigMap volume
    ``<prefix>-<index>-vol`` for it (also optional). The binder fills the ConfigMap when it binds
    the pod. Differences from KAI: the env refs and the volume are optional (kai's binder writes
    only ``NVIDIA_VISIBLE_DEVICES`` and ``GPU_PORTION``, and only ConfigMap ``<prefix>-0``, so
    required refs would keep some containers from starting), and KAI's ``envFrom`` ConfigMap ``<prefix>-<index>-evar``
    is not referenced (kai's binder does not write it).
  * runtimeenforcement: a pod requesting GPUs (``nvidia.com/gpu``, MIG resources or a fraction)
    without ``runtimeClassName`` gets ``--gpu-pod-runtime-class-name`` (default ``nvidia``;
    empty disables it). Reservation pods are left alone.

``/validate--v1-pod`` (pods of ``--scheduler-name`` only)
  Rejects fraction requests KAI rejects, with KAI's messages: sharing disabled, fraction
  outside (0, 1), non-positive gpu-memory / gpu-fraction-num-devices, fraction together with
  memory or with a whole ``nvidia.com/gpu``, a num-devices annotation without a fraction, an
  unknown ``gpu-fraction-container-name``. Anything kai's scheduler would refuse as invalid
  (:func:`kai.api.pod_info.parse_gpu_sharing`) is rejected too, so an invalid request fails at
  creation instead of sitting unschedulable.

``/validate-scheduling-run-ai-v2-queue``, ``/validate-scheduling-run-ai-v2alpha2-podgroup``
  KAI's Queue and PodGroup validation (:mod:`kai.admission.crd_validation`).

TLS: ``--tls-cert-file``/``--tls-private-key-file`` (reloaded when the files change, e.g. a
cert-manager or Secret rotation), or a self-signed certificate generated at start (SANs
localhost, 127.0.0.1 and ``--tls-san``), optionally written out (``--write-ca-file``) so it can
be used as the webhook configuration's ``caBundle``.
"""
from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from kai.api import constants as C
from kai.admission.crd_validation import VALIDATORS as CRD_VALIDATORS, review_crd
from kai.api.gpu_sharing import parse_gpu_sharing_annotations
from kai.cache.reservation import APP_LABEL, APP_LABEL_VALUE, CONFIGMAP_ANNOTATION, configmap_prefix

log = structlog.get_logger("kai.admission")

MUTATE_PATH = "/mutate--v1-pod"
VALIDATE_PATH = "/validate--v1-pod"

VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
GPU_PORTION = "GPU_PORTION"
NUM_OF_GPUS = "RUNAI_NUM_OF_GPUS"          # KAI's deprecated name, kept for compatibility
GPU_RESOURCE = "nvidia.com/gpu"
MIG_PREFIX = "nvidia.com/mig-"


@dataclass
class AdmissionConfig:
    scheduler_name: str = C.SCHEDULER_NAME
    gpu_pod_runtime_class_name: str = "nvidia"
    gpu_sharing_enabled: bool = True
    # KAI's nriPluginEnabled: the NRI plugin sets device visibility, so no NVIDIA_VISIBLE_DEVICES.
    nri_plugin_enabled: bool = False


# ---------------------------------------------------------------------------------- pod helpers

def _annotations(pod: dict) -> dict:
    return (pod.get("metadata") or {}).get("annotations") or {}


def _spec(pod: dict) -> dict:
    return pod.get("spec") or {}


def _all_containers(pod: dict) -> list[dict]:
    spec = _spec(pod)
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


def _resource_names(c: dict) -> set[str]:
    res = c.get("resources") or {}
    return set((res.get("limits") or {})) | set((res.get("requests") or {}))


def requests_whole_gpu(pod: dict) -> bool:
    return any(GPU_RESOURCE in _resource_names(c) for c in _all_containers(pod))


def requests_fraction(pod: dict) -> bool:
    ann = _annotations(pod)
    return bool(ann.get(C.GPU_FRACTION)) or bool(ann.get(C.GPU_MEMORY))


def requests_gpu(pod: dict) -> bool:
    if requests_fraction(pod):
        return True
    return any(n == GPU_RESOURCE or n.startswith(MIG_PREFIX)
               for c in _all_containers(pod) for n in _resource_names(c))


def is_reservation_pod(pod: dict) -> bool:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(APP_LABEL) == APP_LABEL_VALUE


class FractionContainerError(ValueError):
    pass


def fraction_container(pod: dict) -> tuple[str, int]:
    """(``containers`` or ``initContainers``, index) of the container that gets the fraction."""
    spec = _spec(pod)
    name = _annotations(pod).get(C.GPU_FRACTION_CONTAINER)
    if name is None:
        if not spec.get("containers"):
            raise FractionContainerError("pod has no containers")
        return "containers", 0
    for kind in ("containers", "initContainers"):
        for i, c in enumerate(spec.get(kind) or []):
            if c.get("name") == name:
                return kind, i
    raise FractionContainerError(
        f"{C.GPU_FRACTION_CONTAINER} annotation value {name} does not match any container in the pod")


def configmap_name(prefix: str, kind: str, index: int) -> str:
    """KAI's ``<prefix>-<index>`` (``<prefix>-i<index>`` for an init container)."""
    return f"{prefix}-{'i' if kind == 'initContainers' else ''}{index}"


_INVALID_LABEL_CHARS = re.compile(r"[^a-z0-9-]+")


def volume_name(cm_name: str) -> str:
    return _INVALID_LABEL_CHARS.sub("-", (cm_name + "-vol").lower()).strip("-")


def new_prefix(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    owners = meta.get("ownerReferences") or []
    owner = (owners[0].get("name") or "") if owners else ""
    base = meta.get("name") or (meta.get("generateName") or "").rstrip("-.") or "pod"
    return configmap_prefix(base, owner.rstrip("-."))


# ---------------------------------------------------------------------------------- validation

def validate_pod(pod: dict, cfg: AdmissionConfig, namespace: str = "") -> str:
    """The reason to reject ``pod``, or '' to admit it."""
    if _spec(pod).get("schedulerName", "default-scheduler") != cfg.scheduler_name:
        return ""
    meta = pod.get("metadata") or {}
    if requests_fraction(pod):
        if not cfg.gpu_sharing_enabled:
            ns = meta.get("namespace") or namespace
            name = meta.get("name") or meta.get("generateName") or ""
            return f"attempting to create a pod {ns}/{name} with gpu sharing request, while GPU sharing is disabled"
        try:
            fraction_container(pod)
        except FractionContainerError as exc:
            return str(exc)
    # the same validator as the scheduler's model (KAI's rules and messages)
    _, err = parse_gpu_sharing_annotations(_annotations(pod), requests_whole_gpu(pod))
    return err


# ---------------------------------------------------------------------------------- mutation

def _set_env(container: dict, name: str, cm: str) -> None:
    env = [e for e in (container.get("env") or []) if e.get("name") != name]
    env.append({"name": name, "valueFrom": {"configMapKeyRef": {"name": cm, "key": name, "optional": True}}})
    container["env"] = env


def _mutate_gpu_sharing(pod: dict, cfg: AdmissionConfig) -> None:
    if not requests_fraction(pod) or not _spec(pod).get("containers"):
        return
    try:
        kind, index = fraction_container(pod)
    except FractionContainerError:
        return                                   # the validating webhook rejects it
    meta = pod.setdefault("metadata", {})
    ann = meta.get("annotations") or {}
    prefix = ann.get(CONFIGMAP_ANNOTATION)
    if not prefix:
        prefix = new_prefix(pod)
        meta["annotations"] = {**ann, CONFIGMAP_ANNOTATION: prefix}
    cm = configmap_name(prefix, kind, index)
    container = pod["spec"][kind][index]
    if not cfg.nri_plugin_enabled:
        _set_env(container, VISIBLE_DEVICES, cm)
    _set_env(container, NUM_OF_GPUS, cm)
    _set_env(container, GPU_PORTION, cm)
    vol = volume_name(cm)
    spec = pod["spec"]
    spec["volumes"] = [v for v in (spec.get("volumes") or []) if v.get("name") != vol] + [
        {"name": vol, "configMap": {"name": cm, "optional": True}}]


def _mutate_runtime_class(pod: dict, cfg: AdmissionConfig) -> None:
    if not cfg.gpu_pod_runtime_class_name or is_reservation_pod(pod) or not requests_gpu(pod):
        return
    spec = pod.setdefault("spec", {})
    if not spec.get("runtimeClassName"):
        spec["runtimeClassName"] = cfg.gpu_pod_runtime_class_name


def _diff(old: dict, new: dict) -> list[dict]:
    """JSONPatch ops turning ``old`` into ``new`` for the fields the mutators touch.

    ``add`` on an existing object member replaces it (RFC 6902), so one op per changed field.
    """
    ops: list[dict] = []

    def at(doc: dict, *keys: Any) -> Any:
        for k in keys:
            if isinstance(doc, dict):
                doc = doc.get(k)
            elif isinstance(doc, list) and isinstance(k, int) and k < len(doc):
                doc = doc[k]
            else:
                return None
        return doc

    paths: list[tuple] = [("metadata", "annotations"), ("spec", "runtimeClassName"), ("spec", "volumes")]
    for kind in ("containers", "initContainers"):
        for i in range(len(at(new, "spec", kind) or [])):
            paths.append(("spec", kind, i, "env"))
    for p in paths:
        before, after = at(old, *p), at(new, *p)
        if after is not None and before != after:
            ops.append({"op": "add", "path": "/" + "/".join(str(k) for k in p), "value": after})
    return ops


def mutate_pod(pod: dict, cfg: AdmissionConfig, namespace: str = "") -> tuple[dict, list[dict]]:
    """(mutated copy, JSONPatch ops); no ops for pods of other schedulers."""
    new = copy.deepcopy(pod)
    if _spec(pod).get("schedulerName", "default-scheduler") != cfg.scheduler_name:
        return new, []
    new.setdefault("metadata", {})
    new.setdefault("spec", {})
    _mutate_gpu_sharing(new, cfg)
    _mutate_runtime_class(new, cfg)
    return new, _diff(pod, new)


# ---------------------------------------------------------------------------------- AdmissionReview

def review(body: bytes | dict, path: str, cfg: AdmissionConfig) -> dict:
    """Answer one AdmissionReview (v1, or v1beta1 echoed back) for ``path``."""
    doc = json.loads(body) if isinstance(body, (bytes, str)) else body
    if path in CRD_VALIDATORS:              # Queue / PodGroup (kai.admission.crd_validation)
        return review_crd(doc, path)
    req = doc.get("request") or {}
    resp: dict[str, Any] = {"uid": req.get("uid", ""), "allowed": True}
    out = {"apiVersion": doc.get("apiVersion") or "admission.k8s.io/v1", "kind": "AdmissionReview",
           "response": resp}
    kind = (req.get("kind") or {}).get("kind", "Pod")
    pod = req.get("object")
    if kind != "Pod" or not isinstance(pod, dict) or req.get("operation") in ("DELETE", "CONNECT"):
        return out
    ns = req.get("namespace") or ""
    if path == MUTATE_PATH:
        _, ops = mutate_pod(pod, cfg, ns)
        if ops:
            resp["patchType"] = "JSONPatch"
            resp["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        log.info("pod mutated" if ops else "pod admitted unchanged", pod=_pod_ref(pod, ns), ops=len(ops))
    elif path == VALIDATE_PATH:
        msg = validate_pod(pod, cfg, ns)
        if msg:
            resp["allowed"] = False
            resp["status"] = {"code": 403, "reason": "Forbidden", "message": msg}
            log.info("pod rejected", pod=_pod_ref(pod, ns), reason=msg)
    else:
        raise KeyError(path)
    return out


def _pod_ref(pod: dict, ns: str) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace') or ns}/{meta.get('name') or meta.get('generateName') or ''}"


# ---------------------------------------------------------------------------------- TLS

def generate_self_signed(sans: list[str], days: int = 3650) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM), self-signed and valid as its own CA, for ``sans``."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return _openssl_self_signed(sans, days)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0] if sans else "kai-admission")])
    alt: list[x509.GeneralName] = []
    for s in sans:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(s)))
        except ValueError:
            alt.append(x509.DNSName(s))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _openssl_self_signed(sans: list[str], days: int) -> tuple[bytes, bytes]:
    alt = ",".join(("IP:" if _is_ip(s) else "DNS:") + s for s in sans)
    with tempfile.TemporaryDirectory() as d:
        crt, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", crt, "-days", str(days),
                        "-subj", f"/CN={sans[0] if sans else 'kai-admission'}",
                        "-addext", f"subjectAltName={alt}", "-addext", "basicConstraints=critical,CA:TRUE"],
                       check=True, capture_output=True)
        with open(crt, "rb") as f1, open(key, "rb") as f2:
            return f1.read(), f2.read()


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


class _CertSource:
    """An SSLContext from cert/key files, rebuilt when either file's mtime changes."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self._lock = threading.Lock()
        self._stamp: tuple[float, float] | None = None
        self._ctx: ssl.SSLContext | None = None
        self.context()

    def context(self) -> ssl.SSLContext:
        with self._lock:
            try:
                stamp = (os.stat(self.cert_file).st_mtime, os.stat(self.key_file).st_mtime)
            except OSError:
                stamp = self._stamp
            if self._ctx is None or stamp != self._stamp:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                try:
                    ctx.load_cert_chain(self.cert_file, self.key_file)
                except (OSError, ssl.SSLError):
                    if self._ctx is None:
                        raise
                    log.warning("TLS certificate reload failed; keeping the old one", cert=self.cert_file)
                    return self._ctx
                if self._ctx is not None:
                    log.info("TLS certificate reloaded", cert=self.cert_file)
                self._ctx, self._stamp = ctx, stamp
            return self._ctx


# ---------------------------------------------------------------------------------- server

class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        log.debug("http", client=self.client_address[0], line=format % args)

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path in ("/healthz", "/readyz", "/livez"):
            self._send(200, b"ok", "text/plain")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path not in (MUTATE_PATH, VALIDATE_PATH) and path not in CRD_VALIDATORS:
            self._send(404, b"not found", "text/plain")
            return
        try:
            n = int(self.headers.get("Content-Length") or 0)
            out = review(self.rfile.read(n), path, self.server.config)
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("bad AdmissionReview", error=str(exc))
            self._send(400, json.dumps({"error": str(exc)}).encode())
            return
        self._send(200, json.dumps(out).encode())


class WebhookServer(ThreadingHTTPServer):
    """The HTTPS server; ``serve_forever()`` or ``start()`` (a daemon thread) / ``stop()``."""

    daemon_threads = True

    def __init__(self, config: AdmissionConfig, host: str = "0.0.0.0", port: int = 9443,
                 cert_file: str | None = None, key_file: str | None = None,
                 sans: list[str] | None = None) -> None:
        self.config = config
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self.ca_pem: bytes = b""
        if not cert_file or not key_file:
            if cert_file or key_file:
                raise ValueError("--tls-cert-file and --tls-private-key-file go together")
            names = ["localhost", "127.0.0.1"] + [s for s in (sans or []) if s not in ("localhost", "127.0.0.1")]
            cert_pem, key_pem = generate_self_signed(names)
            self._tmpdir = tempfile.TemporaryDirectory(prefix="kai-webhook-")
            cert_file = os.path.join(self._tmpdir.name, "tls.crt")
            key_file = os.path.join(self._tmpdir.name, "tls.key")
            with open(cert_file, "wb") as f:
                f.write(cert_pem)
            with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(key_pem)
            self.ca_pem = cert_pem
        else:
            with open(cert_file, "rb") as f:
                self.ca_pem = f.read()
        self.certs = _CertSource(cert_file, key_file)
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        # the handshake runs in the handler thread (first read), not in the accept loop
        return self.certs.context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error", client=client_address[0])

    def start(self) -> WebhookServer:
        self._thread = threading.Thread(target=self.serve_forever, name="kai-webhook", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None


# ---------------------------------------------------------------------------------- CLI

def run_webhook(args: Any) -> int:
    cfg = AdmissionConfig(scheduler_name=args.scheduler_name,
                          gpu_pod_runtime_class_name=args.gpu_pod_runtime_class_name,
                          gpu_sharing_enabled=args.gpu_sharing_enabled,
                          nri_plugin_enabled=args.nri_plugin_enabled)
    server = WebhookServer(cfg, host=args.bind_address, port=args.port, cert_file=args.tls_cert_file,
                           key_file=args.tls_private_key_file, sans=list(args.tls_san or []))
    if args.write_ca_file:
        tmp = args.write_ca_file + ".tmp"
        with open(tmp, "wb") as f:
            f.write(server.ca_pem)
        os.replace(tmp, args.write_ca_file)
    log.warning("admission webhook serving", port=server.port, scheduler_name=cfg.scheduler_name,
                runtime_class=cfg.gpu_pod_runtime_class_name, gpu_sharing=cfg.gpu_sharing_enabled,
                self_signed=not args.tls_cert_file)
    # SIGTERM (the kubelet stopping the pod) or SIGINT: stop accepting, finish the requests
    # in flight, exit 0. The server runs in a thread: shutdown() must not run in its own loop.
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal received, stopping", signal=signum)
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    server.start()
    try:
        stopping.wait()
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


__all__ = ["AdmissionConfig", "WebhookServer", "MUTATE_PATH", "VALIDATE_PATH", "mutate_pod", "validate_pod",
           "review", "generate_self_signed", "run_webhook"]
