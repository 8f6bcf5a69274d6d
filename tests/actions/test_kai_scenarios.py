"""KAI-Scheduler's own action test cases (tests/scenarios/kai/*.yaml), run through kai.

Each case is turned into plain manifests, loaded as ``kai simulate`` loads them, run for one
cycle with the case's actions, and compared with its expectations (tests/scenarios/README.md).
Cases needing an action or feature kai does not have yet are skipped with the reason; the
check is made at run time, so they start running as soon as kai registers what they need.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scenarios"))
import runner  # noqa: E402

CASES = runner.load_cases()


@pytest.mark.parametrize("stem,case", [pytest.param(s, c, id=c["name"]) for s, c in CASES])
def test_kai_scenario(stem, case):
    why = runner.skip_reason(case)
    if why:
        pytest.skip(why)
    out = runner.run_case(case)
    assert not out.problems, "runner built objects kai could not attach:\n" + "\n".join(out.problems)
    errs = runner.compare(case, out)
    assert not errs, (f"{case['name']} ({stem}.yaml; {case['source']})\n  " + "\n  ".join(errs)
                      + "\noutcome:\n" + runner.describe(out))


def test_dumped_manifests_load_like_kai_simulate(tmp_path):
    """Every case dumped as a YAML file and read by kai.sim.loader gives the same objects."""
    from kai.config import load_config
    from kai.sim.loader import load_manifests

    for _stem, case in CASES:
        manifests, config = runner.dump(case, str(tmp_path))
        m = load_manifests([manifests])
        direct = runner.to_manifests(runner.case_manifests(case))
        for kind, objs in direct.objects.items():
            assert m.objects[kind] == objs, f"{case['name']}: {kind}"
        assert load_config(config).actions == runner.scheduler_config(case).actions, case["name"]


def test_case_names_unique():
    names = [c["name"] for _s, c in CASES]
    assert len(names) == len(set(names))
