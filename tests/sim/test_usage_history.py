"""``kai simulate --usage-history`` (kai.sim.usage_history): time-based fair share offline, both
file forms, and errors naming the file and field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kai.cli import main
from kai.usage.model import UsageHistory, parse_usage_params
from kai.sim.usage_history import UsageHistoryError, load_usage_history

REPO = Path(__file__).resolve().parents[2]
CLUSTER = str(REPO / "docs" / "examples" / "time-based-fairshare.yaml")
HISTORY = str(REPO / "docs" / "examples" / "usage-history.yaml")
NOW = "2026-03-01T12:00:00Z"


def run(capsys, *extra) -> dict:
    assert main(["simulate", CLUSTER, "--now", NOW, "--output", "json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def gpus(report) -> dict[str, int]:
    return {q["name"]: q["allocated"]["gpu"] for q in report["queues"]}


def test_history_shifts_the_split_as_the_docs_say(capsys):
    assert gpus(run(capsys)) == {"team-a": 4, "team-b": 4}
    with_history = run(capsys, "--usage-history", HISTORY)
    assert gpus(with_history) == {"team-a": 3, "team-b": 5}
    assert with_history["cycles"][0]["usage"]["team-a"] == pytest.approx({"gpu": 0.5, "cpu": 0.0625, "memory": 0.0625})


def test_window_and_decay_come_from_the_config(capsys, tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump({"usageDBConfig": {"usageParams": {"windowSize": "2h"}}}))
    # team-a's use ended 3 hours ago: outside a 2-hour window, so the split is even again
    assert gpus(run(capsys, "--usage-history", HISTORY, "--config", str(conf))) == {"team-a": 4, "team-b": 4}


def test_cycles_add_their_allocation(capsys):
    report = run(capsys, "--usage-history", HISTORY, "--cycles", "3", "--interval", "3600")
    usage = [c["usage"] for c in report["cycles"]]
    assert usage[0].get("team-b", {"gpu": 0})["gpu"] == 0
    assert usage[2]["team-b"]["gpu"] > usage[1]["team-b"]["gpu"] > 0


def test_embedded_store_configmap_form(capsys, tmp_path):
    h = UsageHistory(60)
    t = 1_772_366_400.0          # 2026-03-01T12:00:00Z
    h.observe(t - 4 * 3600, t, (8, 64000, 512 * 2**30), {"team-b": (8, 0, 0)})
    cm = tmp_path / "cm.yaml"
    cm.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
                                  "data": {"history.json": h.to_json()}}))
    assert gpus(run(capsys, "--usage-history", str(cm))) == {"team-a": 8, "team-b": 0}


@pytest.mark.parametrize("doc,msg", [
    ({"samples": []}, "samples: expected a non-empty list"),
    ({"samples": [{"ago": "1h", "queues": {}}]}, "samples[0].capacity: the first sample needs the cluster capacity"),
    ({"samples": [{"ago": "1h", "capacity": {"gpu": 8}, "queues": {"a": {"gpu": "lots"}}}]},
     "samples[0].queues.a.gpu: 'lots' is not a quantity"),
    ({"samples": [{"time": "2026-01-01T00:00:00Z", "ago": "1h", "capacity": {}}]}, "exactly one of time"),
    ({"samples": [{"ago": "1h", "capacity": {"tpu": 1}}]}, "unknown resource(s) ['tpu']"),
    ({"samples": [{"ago": "1h", "capacity": {"gpu": 1}}, {"ago": "2h"}]}, "samples[1]: samples must be in time order"),
    ({"usage": {}}, "expected 'samples'"),
])
def test_errors_name_file_and_field(tmp_path, doc, msg):
    f = tmp_path / "h.yaml"
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(UsageHistoryError) as err:
        load_usage_history(str(f), 1e9, parse_usage_params({}))
    assert str(err.value).startswith(str(f)) and msg in str(err.value)


def test_cli_error_exit_code(capsys, tmp_path):
    f = tmp_path / "h.yaml"
    f.write_text("samples: [")
    assert main(["simulate", CLUSTER, "--usage-history", str(f)]) == 2
    assert "--usage-history" in capsys.readouterr().err
