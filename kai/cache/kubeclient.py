"""A thin raw HTTP client for kube-apiserver: urllib3 and msgspec on the hot path.

Owns the connection pool and credentials; ``kai.cache.watch`` (informers), ``kai.cache.binder``,
``kai.cache.status``, ``kai.controller`` and ``kai.podgrouper.controller`` call it. Responses
decode with msgspec straight into ``kai.api.k8s`` types (``ListOf[Pod]`` for lists). The
official Python client's object model is not used (it cannot parse the ``pods/binding``
response, and it is far slower to decode), but its config loaders are: kubeconfig (merged
$KUBECONFIG, contexts, exec credential plugins, OIDC / auth-provider refresh, ``proxy-url``)
and in-cluster config (a service-account token re-read every minute) give the server, TLS
files and a refreshed Authorization header (:func:`load_kubeconfig`).

Retries: GETs on 429/5xx/transport errors, honouring Retry-After; writes are fenced (see
:class:`KubeClient`) and left to their callers.

Client-side rate limit (KAI's ``--qps`` / ``--burst``, client-go's token bucket): every request
and every watch it opens takes a token from the client's :class:`TokenBucket`, if it has one.
"""
from __future__ import annotations

import json
import os
import random
import ssl
import threading
import time
from typing import Any, Callable, Generic, Iterator, TypeVar
from urllib.parse import urlencode

import msgspec
import structlog
import urllib3
import yaml

T = TypeVar("T")
log = structlog.get_logger("kai.kubeclient")

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
    """A non-2xx answer (``status`` is the HTTP code, 0 for a transport error);
    ``retry_after``: the server's Retry-After header in seconds, if any."""

    def __init__(self, status: int, reason: str = "", message: str = "", retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status == 429 or self.status >= 500


class Fenced(ApiError):
    """A write refused locally: this replica is no longer sure it holds the leader Lease
    (``KubeClient.fence``). Never retried; the cycle that wanted it is abandoned."""

    def __init__(self, method: str, path: str) -> None:
        super().__init__(0, "Fenced", f"{method} {path}: not sent, the leader lease is not held with margin")

    @property
    def retryable(self) -> bool:
        return False


class KubeconfigError(ValueError):
    """No usable kubeconfig / in-cluster config (the message says which and why)."""


def retry_delay(exc: ApiError, attempt: int, base: float = 0.1, cap: float = 5.0) -> float:
    """Backoff before retry ``attempt`` (1-based): the server's Retry-After when it gave one
    (capped at 30 s), else exponential with jitter."""
    if exc.retry_after is not None:
        return min(max(exc.retry_after, 0.0), 30.0)
    return min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


def _retry_after(headers: Any) -> float | None:
    v = headers.get("Retry-After") if headers is not None else None
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        return None


def _decode_status(status: int, data: bytes, headers: Any = None) -> ApiError:
    ra = _retry_after(headers)
    try:
        s = msgspec.json.decode(data, type=Status)
        return ApiError(status, s.reason, s.message, ra)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ApiError(status, "", data[:300].decode("utf-8", "replace"), ra)


class Credentials:
    """Server, TLS, proxy and a refreshed ``Authorization`` header for one cluster.

    Built by :func:`load_kubeconfig` from the ``kubernetes`` package's config loaders (which
    run exec credential plugins, OIDC and auth-provider refresh, read in-cluster tokens);
    the raw client below only asks :meth:`authorization` for the header of each request.
    ``token``/``token_file`` are the plain forms (tests, hand-built credentials): a token
    file is re-read when it changes. ``source`` is a ``kubernetes.client.Configuration``
    whose refresh hook renews expiring credentials (exec plugin ``expirationTimestamp``,
    the in-cluster token every minute); ``reload`` re-runs the whole loader and is called
    after a 401 (an exec plugin without an expiry, a rotated token file) and, for
    kubeconfigs with a ``tokenFile``, every ``RELOAD_SECONDS``.
    """

    RELOAD_SECONDS = 60.0

    def __init__(self, server: str, ca_file: str | None = None, insecure: bool = False,
                 token: str | None = None, token_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None, proxy: str | None = None,
                 tls_server_name: str | None = None, source: Any = None,
                 reload: Callable[[], Any] | None = None, periodic_reload: bool = False) -> None:
        self.server = server.rstrip("/")
        self.ca_file = ca_file
        self.insecure = insecure
        self._token = token
        self.token_file = token_file
        self.cert_file = cert_file
        self.key_file = key_file
        self.proxy = proxy
        self.tls_server_name = tls_server_name
        self.source = source
        self._reload = reload
        self._periodic = periodic_reload
        self._token_mtime = 0.0
        self._header: str | None = None
        self._checked = float("-inf")
        self._reloaded = time.monotonic()
        self._refreshed = float("-inf")
        self._lock = threading.Lock()

    def token(self) -> str | None:
        """The bearer token (without the ``Bearer`` prefix), refreshed as needed."""
        if self.source is not None:
            h = self.authorization() or ""
            return h.split(" ", 1)[1] if h.lower().startswith("bearer ") else None
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

    def authorization(self) -> str | None:
        """The ``Authorization`` header value (``Bearer ...`` or ``Basic ...``), or None."""
        if self.source is None:
            tok = self.token()
            return f"Bearer {tok}" if tok else None
        now = time.monotonic()
        if now - self._checked < 1.0:            # the refresh hook runs at most once a second
            return self._header
        with self._lock:
            if self._periodic and self._reload is not None and now - self._reloaded > self.RELOAD_SECONDS:
                self._do_reload()
            try:
                self._header = self.source.get_api_key_with_prefix("BearerToken")
            except Exception as exc:   # noqa: BLE001 - a failing plugin: keep the last header, say why
                log.warning("refreshing credentials failed", error=str(exc))
            self._checked = now
            return self._header

    def refresh(self) -> bool:
        """After a 401: reload credentials from their source; True if that may have helped."""
        with self._lock:
            if self.source is None:
                self._token_mtime = 0.0
                return bool(self.token_file)
            now = time.monotonic()
            if self._reload is None or now - self._refreshed < 5.0:     # a wrong token: not in a loop
                return False
            self._refreshed = now
            self._do_reload()
            self._checked = float("-inf")
            return True

    def _do_reload(self) -> None:
        try:
            self._reload()
        except Exception as exc:   # noqa: BLE001 - keep what we have
            log.warning("reloading credentials failed", error=str(exc))
        self._reloaded = time.monotonic()

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

    def proxy_url(self) -> str | None:
        """The proxy for the server (decided by the loader: ``proxy-url``, else HTTPS_PROXY /
        HTTP_PROXY unless NO_PROXY covers the host), or None."""
        return self.proxy


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST") and os.environ.get("KUBERNETES_SERVICE_PORT")
                and os.path.exists(os.path.join(IN_CLUSTER_DIR, "token")))


def _uses_token_file(path: str | None, context: str | None) -> bool:
    """Whether the kubeconfig's user reads a ``tokenFile`` (the loader reads it only once)."""
    paths = [path] if path else (os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")).split(os.pathsep)
    users, ctxs, current = {}, {}, None
    for p in paths:
        try:
            with open(os.path.expanduser(p), encoding="utf-8") as f:
                cfg = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError):
            continue
        current = current or cfg.get("current-context")
        for c in cfg.get("contexts") or []:
            ctxs.setdefault(c.get("name"), c.get("context") or {})
        for u in cfg.get("users") or []:
            users.setdefault(u.get("name"), u.get("user") or {})
    user = users.get((ctxs.get(context or current) or {}).get("user")) or {}
    return bool(user.get("tokenFile")) and not user.get("token")


def load_kubeconfig(path: str | None = None, context: str | None = None) -> Credentials:
    """Credentials from ``path``, else in-cluster, else $KUBECONFIG (merged), else ~/.kube/config,
    through the ``kubernetes`` package's loaders (exec plugins, OIDC, token refresh, proxy-url)."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.rest import should_bypass_proxies
    from kubernetes.config.incluster_config import InClusterConfigLoader

    cfg = k8s_client.Configuration()
    if path is None and _in_cluster():
        loader = InClusterConfigLoader(os.path.join(IN_CLUSTER_DIR, "token"), os.path.join(IN_CLUSTER_DIR, "ca.crt"))

        def reload() -> None:
            loader.load_and_set(cfg)
        periodic = False
    else:
        def reload() -> None:
            k8s_config.load_kube_config(config_file=path, context=context, client_configuration=cfg,
                                        persist_config=False)
        periodic = _uses_token_file(path, context)
    try:
        reload()
    except (k8s_config.ConfigException, OSError) as exc:
        raise KubeconfigError(f"cannot load {'in-cluster config' if path is None and _in_cluster() else 'kubeconfig ' + (path or os.environ.get('KUBECONFIG') or '~/.kube/config')}: {exc}") from exc
    proxy = cfg.proxy if cfg.proxy and not should_bypass_proxies(cfg.host, cfg.no_proxy or "") else None
    return Credentials(cfg.host, ca_file=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl, cert_file=cfg.cert_file,
                       key_file=cfg.key_file, proxy=proxy, tls_server_name=getattr(cfg, "tls_server_name", None),
                       source=cfg, reload=reload, periodic_reload=periodic)


_json_encoder = msgspec.json.Encoder()


DEFAULT_QPS, DEFAULT_BURST = 5.0, 10        # client-go's, for a 0 in --qps / --burst


class TokenBucket:
    """client-go's token bucket: ``burst`` tokens, refilled at ``qps`` per second; a request
    takes one, waiting for it when none is left. Waits are reserved under a lock, so callers
    are served in arrival order and the rate holds across threads."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.qps = float(qps)
        self.burst = max(int(burst), 1)
        self.clock, self.sleep = clock, sleep
        self.tokens = float(self.burst)
        self.last = clock()
        self.lock = threading.Lock()
        self.waited = 0.0                  # total seconds callers were held back

    def reserve(self) -> float:
        """Take a token; the seconds the caller must wait before using it."""
        with self.lock:
            now = self.clock()
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.qps)
            self.last = now
            self.tokens -= 1.0
            delay = 0.0 if self.tokens >= 0 else -self.tokens / self.qps
            self.waited += delay
            return delay

    def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            self.sleep(delay)


def rate_limiter(qps: float, burst: int) -> TokenBucket | None:
    """The limiter for KAI's ``--qps`` / ``--burst`` as client-go reads them: 0 means
    client-go's default (5 qps, burst 10); a negative qps means no client-side limit."""
    qps = DEFAULT_QPS if qps == 0 else qps
    burst = DEFAULT_BURST if burst == 0 else burst
    return TokenBucket(qps, burst) if qps > 0 else None


class KubeClient:
    """Raw requests against one API server. Thread-safe (urllib3's pool is).

    GETs are retried (``read_attempts``) on 429, 5xx and transport errors, honouring
    Retry-After; writes are tried once (their callers decide: the binder retries bindings
    after checking they did not land). A 401 reloads the credentials once and retries.
    ``fence``, when set, is asked before every write; False raises :class:`Fenced` without
    sending anything (see :meth:`fenced`).
    """

    def __init__(self, creds: Credentials, maxsize: int = 32, timeout: float = 30.0,
                 user_agent: str = "kai-scheduler", read_attempts: int = 4) -> None:
        self.creds = creds
        self.timeout = timeout
        self.user_agent = user_agent
        self.read_attempts = read_attempts
        self.fence: Callable[[], bool] | None = None
        #: client-side rate limit (None: unlimited); set by the controller from --qps / --burst
        self.limiter: TokenBucket | None = None
        kw: dict[str, Any] = {"num_pools": 4, "maxsize": maxsize, "block": False, "retries": False}
        if creds.server.startswith("https"):
            kw["ssl_context"] = creds.ssl_context()
            if creds.tls_server_name:
                kw["server_hostname"] = creds.tls_server_name
        proxy = creds.proxy_url()
        self.pool = urllib3.ProxyManager(proxy, **kw) if proxy else urllib3.PoolManager(**kw)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, **kw: Any) -> KubeClient:
        return cls(load_kubeconfig(path), **kw)

    def fenced(self, fence: Callable[[], bool], user_agent: str | None = None) -> KubeClient:
        """A client sharing this one's pool and credentials whose writes need ``fence()``."""
        other = object.__new__(KubeClient)
        other.__dict__.update(self.__dict__)
        other.fence = fence
        if user_agent:
            other.user_agent = user_agent
        return other

    def _headers(self, content_type: str | None = None, accept: str | None = None) -> dict[str, str]:
        h = {"Accept": accept or "application/json", "User-Agent": self.user_agent}
        auth = self.creds.authorization()
        if auth:
            h["Authorization"] = auth
        if content_type:
            h["Content-Type"] = content_type
        return h

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        q = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        return self.creds.server + path + (("?" + urlencode(q)) if q else "")

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None,
                content_type: str = "application/json", timeout: float | None = None,
                attempts: int | None = None, accept: str | None = None) -> bytes:
        """Returns the raw body of a 2xx answer, raises ApiError otherwise (after ``attempts``
        tries on retryable errors; default: ``read_attempts`` for GET, 1 for writes).
        ``accept`` overrides the Accept header (e.g. PartialObjectMetadataList: metadata only)."""
        if attempts is None:
            attempts = self.read_attempts if method == "GET" else 1
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._request_once(method, path, body, params, content_type, timeout, accept)
            except Fenced:
                raise
            except ApiError as exc:
                if exc.status == 401 and not refreshed and self.creds.refresh():
                    refreshed = True
                    attempt -= 1
                    continue
                if not exc.retryable or attempt >= attempts:
                    raise
                time.sleep(retry_delay(exc, attempt))

    def _request_once(self, method: str, path: str, body: Any, params: dict[str, Any] | None,
                      content_type: str, timeout: float | None, accept: str | None = None) -> bytes:
        if method != "GET" and self.fence is not None and not self.fence():
            raise Fenced(method, path)
        if self.limiter is not None:
            self.limiter.wait()
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
            raise _decode_status(r.status, r.data, r.headers)
        return r.data

    def get(self, path: str, type: type[T] | None = None, params: dict[str, Any] | None = None,
            attempts: int | None = None, accept: str | None = None) -> Any:
        raw = self.request("GET", path, params=params, attempts=attempts, accept=accept)
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
        for page, rv, restart in self.list_in_pages(path, item_type, limit, params, accept):
            if restart:
                items = []
            items.extend(page)
        return items, rv

    def list_in_pages(self, path: str, item_type: type[T], limit: int = 500,
                   params: dict[str, Any] | None = None,
                   accept: str | None = None) -> Iterator[tuple[list[T], str, bool]]:
        """Paged list, one ``(items, resourceVersion, restart)`` per page as it arrives, so a
        caller can turn each page into its objects and let the page go (a list of a million
        pods is gigabytes of JSON). ``restart``: the continue token expired and the list began
        again, so items of earlier pages are void. ``resourceVersion`` is the list's, on the
        last page."""
        cont = ""
        restart = False
        lt = ListOf[item_type]  # type: ignore[valid-type]
        while True:
            try:
                page = self.get(path, lt, {**(params or {}), "limit": limit, "continue": cont},
                                **({"accept": accept} if accept else {}))
            except ApiError as exc:
                if exc.status == 410 and cont:          # continue token expired: start over
                    cont, restart = "", True
                    continue
                raise
            cont = page.metadata.continue_
            yield page.items, ("" if cont else page.metadata.resourceVersion), restart
            restart = False
            if not cont:
                return

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 300,
              params: dict[str, Any] | None = None, on_response=None, accept: str | None = None) -> Iterator[WatchEvent]:
        """Stream watch events (BOOKMARKs included) until the server closes the stream."""
        q = {**(params or {}), "watch": "true", "allowWatchBookmarks": "true",
             "resourceVersion": resource_version, "timeoutSeconds": timeout_seconds}
        if self.limiter is not None:
            self.limiter.wait()
        try:
            r = self.pool.request("GET", self.url(path, q), headers=self._headers(accept=accept), preload_content=False,
                                  timeout=urllib3.Timeout(connect=5.0, read=timeout_seconds + 30))
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, type(exc).__name__, str(exc)) from exc
        try:
            if r.status >= 300:
                if r.status == 401:
                    self.creds.refresh()
                raise _decode_status(r.status, r.read(), r.headers)
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
