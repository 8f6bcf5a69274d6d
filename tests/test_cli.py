"""kai's command line: KAI's scheduler flags parse as Go's flag package reads them and land
on the scheduler config."""
from __future__ import annotations

import pytest

from kai.api import constants as C
from kai.cli import apply_flags, build_parser
from kai.config import default_config


def _config(*argv: str):
    args = build_parser().parse_args(["simulate", *argv])
    return apply_flags(default_config(), args)


def test_defaults_are_kais():
    cfg = _config()
    assert cfg.full_hierarchy_fairness is True and cfg.use_scheduling_signatures is True
    assert cfg.restrict_node_scheduling is False and cfg.detailed_fit_errors is False
    assert (cfg.cpu_worker_node_label_key, cfg.gpu_worker_node_label_key, cfg.mig_worker_node_label_key) == (
        C.CPU_WORKER_LABEL, C.GPU_WORKER_LABEL, C.MIG_ENABLED_LABEL)
    r = build_parser().parse_args(["scheduler"])
    assert (r.qps, r.burst, r.enable_profiler, r.profiler_port) == (50.0, 300, False, 8182)


@pytest.mark.parametrize("argv,want", [
    (["--restrict-node-scheduling"], True),                 # a bare Go bool flag
    (["--restrict-node-scheduling=true"], True),
    (["--restrict-node-scheduling", "false"], False),
    (["--restrict-node-scheduling=0"], False),
])
def test_go_style_booleans(argv, want):
    assert _config(*argv).restrict_node_scheduling is want


def test_flags_reach_the_config():
    cfg = _config("--full-hierarchy-fairness=false", "--use-scheduling-signatures=false", "--detailed-fit-errors",
                  "--gpu-worker-node-label-key", "example.com/gpu", "--cpu-worker-node-label-key=example.com/cpu",
                  "--mig-worker-node-label-key", "example.com/mig")
    assert not cfg.full_hierarchy_fairness and not cfg.use_scheduling_signatures and cfg.detailed_fit_errors
    assert (cfg.cpu_worker_node_label_key, cfg.gpu_worker_node_label_key, cfg.mig_worker_node_label_key) == (
        "example.com/cpu", "example.com/gpu", "example.com/mig")


def test_profiler_port_as_kai_writes_it():
    assert build_parser().parse_args(["scheduler", "--profiler-port", ":9000"]).profiler_port == 9000


@pytest.mark.parametrize("argv,needle", [
    (["simulate", "--detailed-fit-errors=maybe"], "expected true or false"),
    (["scheduler", "--profiler-port", "70000"], "out of range"),
])
def test_bad_values_are_clear_errors(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2 and needle in capsys.readouterr().err


def test_bad_label_key_names_the_flag(capsys):
    from kai.cli import main
    assert main(["simulate", "--gpu-worker-node-label-key", "not a key"]) == 2
    assert "--gpu-worker-node-label-key" in capsys.readouterr().err
