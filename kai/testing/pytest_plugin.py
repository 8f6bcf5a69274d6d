"""pytest fixtures for integration tests against a real local control plane.

Fixtures:
  ``control_plane``  session-scoped :class:`~kai.testing.controlplane.ControlPlane` (etcd,
                     kube-apiserver, kube-controller-manager, kwok), started once per session,
                     with the audit log of service-account writes on (``audit_events()``).
  ``kube_api``       session-scoped ``kubernetes.client.ApiClient`` for the admin kubeconfig.
  ``kube_namespace`` function-scoped fresh namespace (name), deleted afterwards; pods can be
                     created in it right away (its default ServiceAccount exists).

Tests using them are marked ``integration`` automatically. When the binaries are missing the
tests are skipped, except with ``CI=true`` where that is a failure (build them with
hack/controlplane/build.sh).
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Iterator

import pytest

from kai.testing.controlplane import ControlPlane, ControlPlaneError, binaries_available

_FIXTURES = {"control_plane", "kube_api", "kube_namespace"}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    ok, reason = binaries_available()
    if not ok:
        if _in_ci():
            pytest.fail(f"CI=true: integration tests need the local control plane, but {reason}",
                        pytrace=False)
        pytest.skip(f"{reason}")
    cp = ControlPlane(with_controller_manager=True, with_kwok=True, audit_log=True)
    try:
        cp.start()
    except ControlPlaneError as e:
        pytest.fail(f"control plane failed to start: {e}", pytrace=False)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Iterator[Any]:
    client = control_plane.api_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def kube_namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:10]}"
    status, body = control_plane.api_request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    if status != 201:
        pytest.fail(f"creating namespace {name}: {status} {body}")
    control_plane.wait_default_service_account(name)
    try:
        yield name
    finally:
        control_plane.api_request("DELETE", f"/api/v1/namespaces/{name}")
