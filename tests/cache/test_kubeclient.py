"""kai.cache.kubeclient: credentials through the ``kubernetes`` package's loaders (exec
credential plugins with expiry and 401 refresh, token files, proxy settings), Retry-After,
and fenced writes. The exec-plugin tests run against the real control plane."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import pytest
import urllib3

from kai.cache.kubeclient import (ApiError, Credentials, Fenced, KubeClient, KubeconfigError, TokenBucket,
                                  load_kubeconfig, rate_limiter, retry_delay)


def _kubeconfig(tmp_path, server: str, user: dict, cluster_extra: dict | None = None) -> str:
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
           "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
           "clusters": [{"name": "k", "cluster": {"server": server, **(cluster_extra or {})}}],
           "users": [{"name": "u", "user": user}]}
    p = tmp_path / "kubeconfig"
    p.write_text(json.dumps(cfg))
    return str(p)


def test_token_file_reloaded_after_401_and_periodically(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("one")
    kc = _kubeconfig(tmp_path, "https://127.0.0.1:1", {"tokenFile": str(tok)}, {"insecure-skip-tls-verify": True})
    creds = load_kubeconfig(kc)
    assert creds.server == "https://127.0.0.1:1" and creds.insecure
    assert creds.token() == "one" and creds.authorization() == "Bearer one"
    tok.write_text("two")
    assert creds.refresh() and creds.token() == "two"
    assert not creds.refresh()                 # at most once per 5 s
    tok.write_text("three")
    creds.RELOAD_SECONDS = 0.0                 # rotated token files are re-read every minute
    creds._checked -= 2
    assert creds.token() == "three"


def test_plain_credentials_reread_a_changed_token_file(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("a")
    creds = Credentials("https://127.0.0.1:1", token_file=str(tok))
    assert creds.authorization() == "Bearer a"
    tok.write_text("b")
    os.utime(tok, (time.time() + 5, time.time() + 5))
    assert creds.token() == "b"


def test_missing_kubeconfig_is_a_clear_error(tmp_path):
    with pytest.raises(KubeconfigError, match="nope"):
        load_kubeconfig(str(tmp_path / "nope"))


def test_proxy_url_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    kc = _kubeconfig(tmp_path, "https://10.1.2.3:6443", {"token": "t"},
                     {"insecure-skip-tls-verify": True, "proxy-url": "http://proxy.example:3128"})
    c = KubeClient(load_kubeconfig(kc))
    assert isinstance(c.pool, urllib3.ProxyManager) and c.pool.proxy.host == "proxy.example"
    kc = _kubeconfig(tmp_path, "https://10.1.2.3:6443", {"token": "t"}, {"insecure-skip-tls-verify": True})
    monkeypatch.setenv("HTTPS_PROXY", "http://envproxy.example:8080")
    assert KubeClient(load_kubeconfig(kc)).pool.proxy.host == "envproxy.example"
    monkeypatch.setenv("NO_PROXY", "10.1.2.3")
    assert not isinstance(KubeClient(load_kubeconfig(kc)).pool, urllib3.ProxyManager)


def test_retry_delay_honours_retry_after():
    assert retry_delay(ApiError(429, retry_after=2.0), 1) == 2.0
    assert retry_delay(ApiError(429, retry_after=3600.0), 1) == 30.0      # bounded
    assert 0.05 <= retry_delay(ApiError(503), 1) <= 0.15
    assert retry_delay(ApiError(503), 20) <= 7.5


def test_fenced_client_sends_no_write(control_plane, kube_namespace):
    base = KubeClient(load_kubeconfig(control_plane.kubeconfig))
    holding = [True]
    c = base.fenced(lambda: holding[0], user_agent="kai-scheduler/test (fenced)")
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    c.post(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
    holding[0] = False
    with pytest.raises(Fenced) as exc:
        c.post(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}})
    assert not exc.value.retryable
    names = {i["metadata"]["name"] for i in c.get(path)["items"]}          # reads still work
    assert "a" in names and "b" not in names
    base.post(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})   # the unfenced one writes


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, d: float) -> None:
        self.t += d


def test_token_bucket_allows_a_burst_then_paces_at_qps():
    clock = _Clock()
    b = TokenBucket(10.0, 3, clock=clock, sleep=clock.sleep)
    for _ in range(3):                       # the burst goes at once
        b.wait()
    assert clock.t == 0.0
    for _ in range(5):                       # then one every 1/qps seconds
        b.wait()
    assert clock.t == pytest.approx(0.5)
    clock.t += 10.0                          # idle: the bucket refills to burst, not beyond
    for _ in range(3):
        b.wait()
    assert clock.t == pytest.approx(10.5)
    b.wait()
    assert clock.t == pytest.approx(10.6)


def test_token_bucket_reservations_keep_the_rate_across_callers():
    clock = _Clock()
    b = TokenBucket(2.0, 1, clock=clock, sleep=clock.sleep)
    waits = [b.reserve() for _ in range(4)]  # four callers arrive together
    assert waits == pytest.approx([0.0, 0.5, 1.0, 1.5])


@pytest.mark.parametrize("qps,burst,want", [(50, 300, (50.0, 300)), (0, 0, (5.0, 10)), (-1, 300, None)])
def test_rate_limiter_reads_qps_and_burst_as_client_go(qps, burst, want):
    got = rate_limiter(qps, burst)
    assert (got if got is None else (got.qps, got.burst)) == want


def test_qps_limits_requests_to_the_api_server(control_plane):
    c = KubeClient(load_kubeconfig(control_plane.kubeconfig))
    c.limiter = rate_limiter(10, 2)
    start = time.monotonic()
    for _ in range(12):
        c.get("/api/v1/namespaces/default")
    assert time.monotonic() - start >= 0.95   # 2 at once, then 10 more at 10/s
    assert c.limiter.waited > 0


PLUGIN = textwrap.dedent("""\
    import json, os, sys
    from datetime import datetime, timedelta, timezone
    count_file, token, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
    n = int(open(count_file).read()) + 1 if os.path.exists(count_file) else 1
    open(count_file, "w").write(str(n))
    info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
    if n == 1 and token.startswith("wrong-first:"):
        tok = "not-a-valid-token"
    else:
        tok = token.split(":", 1)[-1]
    status = {"token": tok}
    if ttl > 0:
        exp = datetime.now(timezone.utc) + timedelta(seconds=ttl)
        status["expirationTimestamp"] = exp.strftime("%Y-%m-%dT%H:%M:%SZ")
    print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}))
    """)


def _exec_kubeconfig(tmp_path, cp, token: str, ttl: float) -> tuple[str, str]:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    count = tmp_path / "count"
    kc = _kubeconfig(tmp_path, cp.server, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
        "args": [str(plugin), str(count), token, str(ttl)], "interactiveMode": "Never"}},
        {"certificate-authority": cp.ca_file})
    return kc, str(count)


def _runs(count: str) -> int:
    return int(open(count).read())


def test_exec_plugin_token_refreshed_when_it_expires(control_plane, tmp_path):
    # the loader treats a credential as expired 5 minutes early (clock skew): 5 min + 3 s
    kc, count = _exec_kubeconfig(tmp_path, control_plane, control_plane.token, ttl=303)
    c = KubeClient.from_kubeconfig(kc)
    assert c.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"
    assert _runs(count) == 1
    time.sleep(4.5)                       # the ExecCredential expired: the plugin runs again
    c.get("/api/v1/namespaces/default")
    assert _runs(count) == 2


def test_exec_plugin_rerun_after_401(control_plane, tmp_path):
    """A plugin without an expiry whose first token is refused: the 401 re-runs it, once."""
    kc, count = _exec_kubeconfig(tmp_path, control_plane, "wrong-first:" + control_plane.token, ttl=0)
    c = KubeClient.from_kubeconfig(kc)
    assert c.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"
    assert _runs(count) == 2
    time.sleep(1.5)
    assert c.get("/api/v1/namespaces")["items"]
    assert _runs(count) == 2              # no expiry, no 401: no more runs


class _ExpiringContinue(KubeClient):
    """The real client, except that the first request carrying a continue token is answered
    as kube-apiserver answers an expired one (410), as after an etcd compaction."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.expired = 0

    def get(self, path, type=None, params=None, **kw):
        if params and params.get("continue") and not self.expired:
            self.expired += 1
            raise ApiError(410, "Expired", "The provided continue parameter is too old")
        return super().get(path, type, params, **kw)


@pytest.mark.integration
def test_list_in_pages_yields_each_page_and_restarts_on_an_expired_continue(control_plane, kube_namespace):
    import msgspec

    from kai.api.k8s import Pod
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    base = KubeClient(load_kubeconfig(control_plane.kubeconfig))
    for i in range(5):
        base.post(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"page-{i}"}})
    pages = list(base.list_in_pages(path, msgspec.Raw, limit=2))
    mine = [[msgspec.json.decode(r)["metadata"]["name"] for r in items if b"page-" in bytes(r)] for items, _, _ in pages]
    assert [len(items) for items, _, _ in pages][:2] == [2, 2] and sum(map(len, mine)) == 5
    assert [bool(rv) for _, rv, _ in pages] == [False] * (len(pages) - 1) + [True]     # the list's RV: last page
    assert not any(restart for _, _, restart in pages)
    items, rv = base.list(path, Pod, limit=2)
    assert {p.metadata.name for p in items} >= {f"page-{i}" for i in range(5)} and rv
    # an expired continue token: the list starts over, the page after says so
    c = _ExpiringContinue(load_kubeconfig(control_plane.kubeconfig))
    again = list(c.list_in_pages(path, msgspec.Raw, limit=2))
    assert c.expired == 1 and again[1][2] is True and not again[0][2]
    items, _ = _ExpiringContinue(load_kubeconfig(control_plane.kubeconfig)).list(path, Pod, limit=2)
    assert sorted(p.metadata.name for p in items) == sorted({p.metadata.name for p in items})   # no page twice
