"""Chart values of the pod-grouper (queue label key, defaults ConfigMap, Knative gangs).
The Queue / PodGroup validating webhooks are tested in test_chart.py."""
from __future__ import annotations

import pytest

from test_chart import container, helm, one, render, run_helm, CHART, NS, _set_args  # noqa: F401 (fixture)
from kai.cli import build_parser


def test_grouper_flags_default(helm):
    c = container(render(helm))
    assert "--queue-label-key=kai.scheduler/queue" in c["args"]
    assert "--knative-gang-schedule=true" in c["args"]
    assert not [a for a in c["args"] if a.startswith("--default-priorities-configmap")]
    args = build_parser().parse_args(c["args"])
    assert args.queue_label_key == "kai.scheduler/queue" and args.knative_gang_schedule is True


def test_grouper_flags_set(helm):
    docs = render(helm, {"global.queueLabelKey": "runai/queue", "podGrouper.knativeGangSchedule": False,
                         "podGrouper.defaultPrioritiesConfigMap": {"name": "kai-defaults"}})
    args = build_parser().parse_args(container(docs)["args"])
    assert (args.queue_label_key, args.knative_gang_schedule) == ("runai/queue", False)
    assert (args.default_priorities_configmap_name, args.default_priorities_configmap_namespace) == \
        ("kai-defaults", NS)
    role = one(docs, "Role", "kai-scheduler-podgrouper-defaults")
    assert role["metadata"]["namespace"] == NS
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kai-defaults"],
                              "verbs": ["get"]}]
    binding = one(docs, "RoleBinding", "kai-scheduler-podgrouper-defaults")
    assert binding["roleRef"]["name"] == "kai-scheduler-podgrouper-defaults"
    other_ns = render(helm, {"podGrouper.defaultPrioritiesConfigMap": {"name": "d", "namespace": "cfg"}})
    assert one(other_ns, "Role", "kai-scheduler-podgrouper-defaults")["metadata"]["namespace"] == "cfg"


@pytest.mark.parametrize("values", [{"global.queueLabelKey": "not a key"}, {"global.queueLabelKey": ""},
                                    {"podGrouper.knativeGangSchedule": "yes"},
                                    {"podGrouper.defaultPrioritiesConfigMap": {"nam": "x"}}])
def test_schema_rejects(helm, values):
    proc = run_helm(helm, "template", "k", str(CHART), *_set_args(values), check=False)
    assert proc.returncode != 0 and "values don't meet the specifications of the schema" in proc.stderr
