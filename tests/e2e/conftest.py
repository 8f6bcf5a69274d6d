"""Fixtures for the end-to-end tests: a cluster with KAI's CRDs, queues, nodes, and a scheduler."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from e2e_helpers import SchedulerProcess, chart_rbac_kubeconfig, create_default_queues, install_crds
from kai.cache.kubeclient import KubeClient
from kai.testing.controlplane import fake_node_manifest


@pytest.fixture(scope="session")
def kai_client(control_plane) -> KubeClient:
    return KubeClient.from_kubeconfig(os.environ.get("KAI_E2E_KUBECONFIG") or control_plane.kubeconfig)


@pytest.fixture(scope="session")
def kai_cluster(control_plane, kai_client, tmp_path_factory):
    """CRDs, default queues and 2 fake 8-GPU nodes installed; returns the kubeconfig path."""
    install_crds(kai_client)
    create_default_queues(kai_client)
    names = ["e2e-gpu-0", "e2e-gpu-1"]
    for n in names:
        try:
            control_plane.create_node(fake_node_manifest(n, gpus=8, cpu="32", memory="256Gi"))
        except Exception as exc:   # noqa: BLE001 - already there
            if "AlreadyExists" not in str(exc) and "409" not in str(exc):
                raise
    control_plane.wait_nodes_ready(names)
    return chart_service_account_kubeconfig(control_plane)


def chart_service_account_kubeconfig(control_plane) -> str:
    """A kubeconfig for the chart's ServiceAccount, with the chart's RBAC created for real.

    The scheduler under test then runs with exactly the permissions `helm install` grants
    (GPU sharing on, for the reservation pods), proving the RBAC sufficient. Without helm
    (a machine that cannot build it) the admin kubeconfig is used, except in CI.
    """
    return chart_rbac_kubeconfig(control_plane, ["global.gpuSharing=true"])


# Session-wide scheduler processes, stopped when the run leaves tests/e2e (see the hook below).
_SESSION_SCHEDULERS: list[SchedulerProcess] = []


@pytest.fixture(scope="session")
def kai_scheduler(kai_cluster, tmp_path_factory):
    """One ``kai scheduler`` subprocess shared by the e2e tests (leader-elected, as in production).

    It watches every namespace and groups and schedules every ``kai-scheduler`` pod, so it must
    not outlive the e2e tests: the tests that follow (the pod-grouper's, the live scenarios')
    run their own controllers on the same control plane and would race it."""
    logdir = tmp_path_factory.mktemp("kai-scheduler")
    proc = SchedulerProcess(kai_cluster, logdir / "scheduler.log", "--leader-elect",
                            "--namespace", "kai-scheduler")
    _SESSION_SCHEDULERS.append(proc)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def pytest_runtest_teardown(item, nextitem):
    """After the last e2e test, stop the session's scheduler (pytest would keep it to the end
    of the whole run: a directory without ``__init__.py`` has no package scope)."""
    here = Path(__file__).parent
    if nextitem is None or here not in Path(str(nextitem.path)).parents:
        while _SESSION_SCHEDULERS:
            _SESSION_SCHEDULERS.pop().stop()
