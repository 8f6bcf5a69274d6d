"""Persistence of kai's embedded usage history through the API server: one ConfigMap.

The history (:class:`kai.usage.model.UsageHistory`, bounded below the 1 MiB a ConfigMap holds)
lives in ``data["history.json"]`` of a ConfigMap in the scheduler's namespace, by default
``<scheduler-name>-usage-history`` (``usageDBConfig.connectionString`` may name another, as
``name`` or ``namespace/name``). The leader loads it when it starts leading and replaces it every
``fetchInterval`` with a resourceVersion precondition, so a history survives restarts and leader
changes, and a stale writer cannot overwrite a newer one (409: it reloads). Writes go through
the controller's fenced client: a replica that is not the leader sends nothing.

Called by :mod:`kai.cache.usage_db` (the embedded source).
"""
from __future__ import annotations

import structlog

from kai.usage.model import UsageHistory
from kai.cache.kubeclient import ApiError

log = structlog.get_logger("kai.usage")

DATA_KEY = "history.json"
LABELS = {"app.kubernetes.io/managed-by": "kai-scheduler", "kai.scheduler/usage-history": "true"}


class ConfigMapHistoryStore:
    """Load and save one UsageHistory as a ConfigMap."""

    def __init__(self, client, namespace: str, name: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.resource_version: str | None = None     # of the last object read or written

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/configmaps/{self.name}"

    def load(self, max_buckets: int, max_bytes: int) -> UsageHistory | None:
        """The stored history, or None when there is none (or it cannot be read: logged, and
        the next save replaces it)."""
        try:
            obj = self.client.get(self.path)
        except ApiError as exc:
            if exc.status == 404:
                self.resource_version = None
                return None
            raise
        self.resource_version = (obj.get("metadata") or {}).get("resourceVersion")
        text = (obj.get("data") or {}).get(DATA_KEY)
        if not text:
            return None
        try:
            return UsageHistory.from_json(text, max_buckets, max_bytes)
        except ValueError as exc:
            log.warning("usage history ConfigMap unreadable: starting a new history",
                        configmap=f"{self.namespace}/{self.name}", error=str(exc))
            return None

    def save(self, history: UsageHistory) -> bool:
        """Write the history; False on a conflict (someone else wrote since our last read)."""
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(LABELS)},
                "data": {DATA_KEY: history.to_json()}}
        try:
            if self.resource_version is None:
                out = self.client.post(f"/api/v1/namespaces/{self.namespace}/configmaps", body)
            else:
                body["metadata"]["resourceVersion"] = self.resource_version
                out = self.client.put(self.path, body)
        except ApiError as exc:
            if exc.status in (409, 404):
                # created or replaced by another writer (409), or deleted (404): read again
                self.resource_version = None
                return False
            raise
        self.resource_version = (out.get("metadata") or {}).get("resourceVersion")
        return True
