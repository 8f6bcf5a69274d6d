"""A thin raw HTTP client for kube-apiserver: kubeconfig / in-cluster auth, urllib3, msgspec.

Owns the connection pool and credentials; ``kai.cache.watch`` (informers), ``kai.cache.binder``,
``kai.cache.status``, ``kai.controller`` and ``kai.podgrouper.controller`` call it. Responses
decode with msgspec straight into ``kai.api.k8s`` types (``ListOf[Pod]`` for lists). The
official Python client is not used: it cannot parse the ``pods/binding`` response, and its
object model is far slower to decode.
"""
from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import threading
from typing import Any, Generic, Iterator, TypeVar
from urllib.parse import urlencode

import msgspec
import urllib3
import yaml

T = TypeVar("T")

IN_CLUSTER_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class ListMeta(msgspec.Struct, kw_only=True):
    resourceVersion: str = ""
    continue_: str = msgspec.field(default="", name="continue")


class ListOf(msgspec.Struct, Generic[T], kw_only=True):
    """A Kubernetes list: ``items`` plus ``metadata.resourceVersion`` / ``continue``."""
    items: list[T] = []
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)


class WatchEvent(msgspec.Struct, kw_only=True):
    type: str = ""
    object: msgspec.Raw = msgspec.Raw(b"{}")


class StatusDetails(msgspec.Struct, kw_only=True):
    name: str = ""
    kind: str = ""


class Status(msgspec.Struct, kw_only=True):
    kind: str = "Status"
    status: str = ""
    message: str = ""
    reason: str = ""
    code: int = 0


class ApiError(Exception):
    """A non-2xx answer (``status`` is the HTTP code, 0 for a transport error)."""

    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status == 429 or self.status >= 500


def _decode_status(status: int, data: bytes) -> ApiError:
    try:
        s = msgspec.json.decode(data, type=Status)
        return ApiError(status, s.reason, s.message)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ApiError(status, "", data[:300].decode("utf-8", "replace"))


class Credentials:
    """Server, TLS and auth for one cluster; a token file is re-read when it changes."""

    def __init__(self, server: str, ca_file: str | None = None, insecure: bool = False,
                 token: str | None = None, token_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None) -> None:
        self.server = server.rstrip("/")
        self.ca_file = ca_file
        self.insecure = insecure
        self._token = token
        self.token_file = token_file
        self.cert_file = cert_file
        self.key_file = key_file
        self._token_mtime = 0.0
        self._lock = threading.Lock()

    def token(self) -> str | None:
        if not self.token_file:
            return self._token
        with self._lock:
            try:
                m = os.stat(self.token_file).st_mtime
                if m != self._token_mtime or self._token is None:
                    with open(self.token_file, encoding="utf-8") as f:
                        self._token = f.read().strip()
                    self._token_mtime = m
            except OSError:
                pass
            return self._token

    def ssl_context(self) -> ssl.SSLContext:
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _data_file(data_b64: str, suffix: str) -> str:
    f = tempfile.NamedTemporaryFile(prefix="kai-kubeconfig-", suffix=suffix, delete=False)
    f.write(base64.b64decode(data_b64))
    f.close()
    os.chmod(f.name, 0o600)
    return f.name


def load_kubeconfig(path: str | None = None, context: str | None = None) -> Credentials:
    """Credentials from ``path``, else in-cluster, else $KUBECONFIG, else ~/.kube/config."""
    if path is None:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if host and port and os.path.exists(os.path.join(IN_CLUSTER_DIR, "token")):
            if ":" in host:
                host = f"[{host}]"
            return Credentials(f"https://{host}:{port}", ca_file=os.path.join(IN_CLUSTER_DIR, "ca.crt"),
                               token_file=os.path.join(IN_CLUSTER_DIR, "token"))
        path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    base = os.path.dirname(os.path.abspath(path))

    def rel(p: str | None) -> str | None:
        return p if not p or os.path.isabs(p) else os.path.join(base, p)

    ctx_name = context or cfg.get("current-context")
    ctxs = {c["name"]: c.get("context", {}) for c in cfg.get("contexts") or []}
    ctx = ctxs.get(ctx_name) or (next(iter(ctxs.values())) if ctxs else {})
    clusters = {c["name"]: c.get("cluster", {}) for c in cfg.get("clusters") or []}
    users = {u["name"]: u.get("user", {}) or {} for u in cfg.get("users") or []}
    cl = clusters.get(ctx.get("cluster")) or (next(iter(clusters.values())) if clusters else {})
    us = users.get(ctx.get("user")) or {}
    ca = rel(cl.get("certificate-authority"))
    if cl.get("certificate-authority-data"):
        ca = _data_file(cl["certificate-authority-data"], ".crt")
    cert, key = rel(us.get("client-certificate")), rel(us.get("client-key"))
    if us.get("client-certificate-data"):
        cert = _data_file(us["client-certificate-data"], ".crt")
    if us.get("client-key-data"):
        key = _data_file(us["client-key-data"], ".key")
    return Credentials(cl.get("server", ""), ca_file=ca, insecure=bool(cl.get("insecure-skip-tls-verify")),
                       token=us.get("token"), token_file=rel(us.get("tokenFile")), cert_file=cert, key_file=key)


_json_encoder = msgspec.json.Encoder()


class KubeClient:
    """Raw requests against one API server. Thread-safe (urllib3's pool is)."""

    def __init__(self, creds: Credentials, maxsize: int = 32, timeout: float = 30.0,
                 user_agent: str = "kai-scheduler") -> None:
        self.creds = creds
        self.timeout = timeout
        self.user_agent = user_agent
        self.pool = urllib3.PoolManager(num_pools=4, maxsize=maxsize, block=False,
                                        ssl_context=creds.ssl_context(), retries=False)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, **kw: Any) -> KubeClient:
        return cls(load_kubeconfig(path), **kw)

    def _headers(self, content_type: str | None = None, accept: str | None = None) -> dict[str, str]:
        h = {"Accept": accept or "application/json", "User-Agent": self.user_agent}
        tok = self.creds.token()
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        if content_type:
            h["Content-Type"] = content_type
        return h

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        q = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        return self.creds.server + path + (("?" + urlencode(q)) if q else "")

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None,
                content_type: str = "application/json", timeout: float | None = None,
                accept: str | None = None) -> bytes:
        """One request; returns the raw body of a 2xx answer, raises ApiError otherwise.
        ``accept`` overrides the Accept header (e.g. PartialObjectMetadataList: metadata only)."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else _json_encoder.encode(body)
        try:
            r = self.pool.request(method, self.url(path, params), body=data,
                                  headers=self._headers(content_type if data is not None else None, accept),
                                  timeout=urllib3.Timeout(connect=5.0, read=timeout or self.timeout))
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, type(exc).__name__, str(exc)) from exc
        if r.status >= 300:
            raise _decode_status(r.status, r.data)
        return r.data

    def get(self, path: str, type: type[T] | None = None, params: dict[str, Any] | None = None,
            accept: str | None = None) -> Any:
        raw = self.request("GET", path, params=params, accept=accept)
        return msgspec.json.decode(raw, type=type) if type is not None else json.loads(raw)

    def post(self, path: str, body: Any) -> Any:
        return json.loads(self.request("POST", path, body))

    def put(self, path: str, body: Any) -> Any:
        return json.loads(self.request("PUT", path, body))

    def patch(self, path: str, body: Any, kind: str = "merge") -> Any:
        ct = {"merge": "application/merge-patch+json", "strategic": "application/strategic-merge-patch+json",
              "json": "application/json-patch+json"}[kind]
        return json.loads(self.request("PATCH", path, body, content_type=ct))

    def delete(self, path: str, body: Any = None) -> Any:
        return json.loads(self.request("DELETE", path, body) or b"{}")

    def list(self, path: str, item_type: type[T], limit: int = 500,
             params: dict[str, Any] | None = None, accept: str | None = None) -> tuple[list[T], str]:
        """Paged list: all items and the list's resourceVersion (restarts on an expired continue)."""
        items: list[T] = []
        cont = ""
        lt = ListOf[item_type]  # type: ignore[valid-type]
        while True:
            try:
                page = self.get(path, lt, {**(params or {}), "limit": limit, "continue": cont},
                                **({"accept": accept} if accept else {}))
            except ApiError as exc:
                if exc.status == 410 and cont:          # continue token expired: start over
                    items, cont = [], ""
                    continue
                raise
            items.extend(page.items)
            cont = page.metadata.continue_
            if not cont:
                return items, page.metadata.resourceVersion

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 300,
              params: dict[str, Any] | None = None, on_response=None, accept: str | None = None) -> Iterator[WatchEvent]:
        """Stream watch events (BOOKMARKs included) until the server closes the stream."""
        q = {**(params or {}), "watch": "true", "allowWatchBookmarks": "true",
             "resourceVersion": resource_version, "timeoutSeconds": timeout_seconds}
        try:
            r = self.pool.request("GET", self.url(path, q), headers=self._headers(accept=accept), preload_content=False,
                                  timeout=urllib3.Timeout(connect=5.0, read=timeout_seconds + 30))
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, type(exc).__name__, str(exc)) from exc
        try:
            if r.status >= 300:
                raise _decode_status(r.status, r.read())
            if on_response is not None:
                on_response(r)
            dec = msgspec.json.Decoder(WatchEvent)
            buf = b""
            for chunk in r.stream(65536, decode_content=True):
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 1:]
                    if line.strip():
                        yield dec.decode(line)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(0, type(exc).__name__, str(exc)) from exc
        finally:
            r.release_conn()
