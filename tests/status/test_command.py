"""``kai status`` flags and failures that need no cluster: exit 2 for bad flags, 1 for an unreachable one.

The answers themselves are tested against a control plane in tests/e2e/test_kai_status_e2e.py.
"""
from __future__ import annotations

import pytest

from kai.cli import main

KUBECONFIG = ("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
              "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
              "current-context: x\n")


@pytest.fixture
def kubeconfig(tmp_path):
    p = tmp_path / "kubeconfig"
    p.write_text(KUBECONFIG)
    return str(p)


@pytest.mark.parametrize("args,message", [
    (["--resources", "gpu,disk"], "--resources takes gpu, cpu, memory"),
    (["--config-map", "no-slash"], "--config-map wants NAMESPACE/NAME"),
    (["--top", "-1"], "--top must be >= 0"),
    (["--interval", "0"], "--interval > 0"),
    (["--config", "/nonexistent/config.yaml"], "cannot read"),
])
def test_bad_flags_exit_2(kubeconfig, capsys, args, message):
    assert main(["status", "--kubeconfig", kubeconfig, *args]) == 2
    assert message in capsys.readouterr().err


def test_unreachable_server_exits_1_naming_it(kubeconfig, capsys):
    assert main(["status", "--kubeconfig", kubeconfig, "-o", "json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kai status: error: listing") and "127.0.0.1:1" in err


def test_missing_kubeconfig_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["status", "--kubeconfig", str(tmp_path / "nope")]) == 1
    assert "no usable kubeconfig" in capsys.readouterr().err


def test_kubectl_plugin_entry_point(monkeypatch, capsys):
    from kai.cli import kubectl_main
    monkeypatch.setattr("sys.argv", ["kubectl-kai", "status", "--help"])
    with pytest.raises(SystemExit) as exc:
        kubectl_main()
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: kubectl kai status")
