"""Chart values of time-based fair share: scheduler.usageDBConfig reaches the scheduler config
(which kai parses), scheduler.kValue becomes the proportion argument, and the embedded history
gets a namespaced ConfigMap rule (not for Prometheus)."""
from __future__ import annotations

import pytest

from test_chart import helm, one, render, run_helm, scheduler_config, CHART, NS, _set_args  # noqa: F401 (fixture)

USAGE = {"usageParams": {"windowSize": "1w", "halfLifePeriod": "1d", "windowType": "cron", "cronString": "@daily"}}


def _configmap_rules(docs):
    role = one(docs, "Role", "kai-scheduler-leader-election")
    assert role["metadata"]["namespace"] == NS
    return [r for r in role["rules"] if "configmaps" in r["resources"]]


def test_off_by_default(helm):
    docs = render(helm)
    raw, cfg = scheduler_config(docs)
    assert "usageDBConfig" not in raw and cfg.usage_db is None
    assert _configmap_rules(docs) == []
    proportion = next(p for t in raw["tiers"] for p in t["plugins"] if p["name"] == "proportion")
    assert "arguments" not in proportion


def test_embedded_usage_db_and_k_value(helm):
    docs = render(helm, {"scheduler.usageDBConfig": USAGE, "scheduler.kValue": 2.5})
    raw, cfg = scheduler_config(docs)
    assert raw["usageDBConfig"] == USAGE
    assert cfg.usage_db.client_type == "embedded"
    assert (cfg.usage_db.params.window_type, cfg.usage_db.params.half_life) == ("cron", 86400)
    assert cfg.plugin_args("proportion") == {"kValue": "2.5"}
    assert _configmap_rules(docs) == [{"apiGroups": [""], "resources": ["configmaps"],
                                       "verbs": ["get", "create", "update"]}]


def test_prometheus_needs_no_configmap_rule(helm):
    docs = render(helm, {"scheduler.usageDBConfig": {"clientType": "prometheus",
                                                     "connectionString": "http://prometheus-operated:9090"}})
    raw, cfg = scheduler_config(docs)
    assert cfg.usage_db.connection_string == "http://prometheus-operated:9090"
    assert _configmap_rules(docs) == []


def test_k_value_does_not_override_explicit_plugin_argument(helm):
    docs = render(helm, {"scheduler.kValue": 3, "scheduler.plugins": {"proportion": {"arguments": {"kValue": "7"}}}})
    assert scheduler_config(docs)[1].plugin_args("proportion") == {"kValue": "7"}


@pytest.mark.parametrize("values", [{"scheduler.usageDBConfig": {"clientType": "mysql"}},
                                    {"scheduler.usageDBConfig": {"usageParams": {"windowType": "hopping"}}},
                                    {"scheduler.usageDBConfig": {"usageParams": {"window": "1h"}}},
                                    {"scheduler.kValue": -1}])
def test_schema_rejects(helm, values):
    proc = run_helm(helm, "template", "k", str(CHART), *_set_args(values), check=False)
    assert proc.returncode != 0 and "values don't meet the specifications of the schema" in proc.stderr
