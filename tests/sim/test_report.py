"""``kai simulate --report``: the page's data, the compare overlay, and the page in a real headless Chromium.

The browser test opens the report of docs/examples/report-demo.yaml (4 cycles, compared with
the moved-quota Queues) in Debian's ``chromium`` (installed by scripts/test.sh): the script
must run without a console message or error, and the queues and nodes must be in the DOM.
The screenshot is kept under ``$KAI_ARTIFACTS`` (default ``build/artifacts``) for CI.
Without chromium the browser test is skipped, except with CI=true where that is a failure.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from kai.cli import main
from kai.config import default_config
from kai.sim.loader import load_manifests
from kai.sim.report import overlay, render_report, run_view
from kai.sim.simulator import simulate

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "docs" / "examples" / "report-demo.yaml"
MOVED = ROOT / "docs" / "examples" / "report-demo-moved-quota.yaml"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def _demo_runs():
    base = load_manifests([str(DEMO)])
    cfg = default_config()
    a = run_view("baseline", cfg.source, simulate(base, cfg, cycles=4, gpu_map=True))
    b = run_view("moved", cfg.source, simulate(overlay(base, load_manifests([str(MOVED)])), cfg, cycles=4,
                                               gpu_map=True))
    return a, b


def test_overlay_replaces_by_name_and_adds():
    base = load_manifests([str(DEMO)])
    both = overlay(base, load_manifests([str(MOVED)]))
    quota = {q.metadata.name: q.spec.resources.gpu.quota for q in both.objects["Queue"]}
    assert quota == {"ml": -1, "train": 8, "research": 16, "serving": 8}
    assert [q.metadata.name for q in both.objects["Queue"]] == [q.metadata.name for q in base.objects["Queue"]]
    assert {q.metadata.name: q.spec.resources.gpu.quota for q in base.objects["Queue"]}["train"] == 16  # untouched
    assert len(both.objects["Pod"]) == len(base.objects["Pod"])


def test_run_view_takes_the_simulator_results():
    a, b = _demo_runs()
    assert len(a["cycles"]) == 4
    first = a["cycles"][0]
    assert first["bound"] == 4 and first["evicted"] == 2                    # fractions bound; reclaim for sweep
    assert {n["name"] for n in first["nodes"]} == {"a100-0", "a100-1", "a100-2", "a100-3", "l40s-0", "l40s-1"}
    l40s = next(n for n in first["nodes"] if n["name"] == "l40s-0")
    assert l40s["pool"] == "inference" and sorted(l40s["shared"]) == [0.5, 1.0]
    causes = {g["cause"]: g["count"] for g in a["cycles"][-1]["pending"]}
    assert causes == {"OverLimit": 1, "insufficient nvidia.com/gpu": 1,
                      "node(s) didn't match the pod's node selector/affinity": 1}
    research = {q["name"]: q for q in a["cycles"][-1]["queues"]}["research"]
    moved = {q["name"]: q for q in b["cycles"][-1]["queues"]}["research"]
    assert research["allocated"]["gpu"] == 8 and moved["allocated"]["gpu"] == 16     # the what-if answer


def test_page_is_self_contained_and_escapes_data():
    a, b = _demo_runs()
    a["cycles"][0]["pending"].append({"cause": "</script><b>x", "count": 1, "jobs": []})
    page = render_report([a, b], title="t <1>", inputs=[str(DEMO)])
    assert "</script><b>" not in page and "t &lt;1&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)     # nothing fetched from anywhere
    data = re.search(r'<script id="kai-data" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data.replace("<\\/", "</"))["runs"][0]["label"] == "baseline"
    assert "<td class=down>-8</td>" in page and "<td class=up>+8</td>" in page      # train -8, research +8


def test_cli_report_and_compare(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["simulate", str(DEMO), "--cycles", "2", "--report", str(out), "--compare", str(MOVED)]) == 0
    page = out.read_text()
    assert "report-demo-moved-quota.yaml" in page and page.count("<section class=run") == 2
    assert "report written to" in capsys.readouterr().err
    assert main(["simulate", str(DEMO), "--compare", str(MOVED)]) == 2
    assert "--compare needs --report" in capsys.readouterr().err
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("actions: allocate\ntiers:\n- plugins: [{name: proportion}, {name: nodeplacement}]\n")
    assert main(["simulate", str(DEMO), "--report", str(out), "--compare", str(cfg), "--output", "json"]) == 0
    page = out.read_text()
    assert "cfg.yaml" in page
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Nope\nmetadata: {name: x}\n")
    assert main(["simulate", str(DEMO), "--report", str(out), "--compare", str(bad)]) == 2
    assert "--compare:" in capsys.readouterr().err


# ---------------------------------------------------------------------- a real browser
def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail("CI=true: chromium not found (scripts/test.sh installs Debian's chromium)", pytrace=False)
        pytest.skip("chromium not installed (apt-get install chromium)")
    return path


def _browse(chromium: str, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="kai-chromium-")
    try:
        return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                              capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_report_renders_in_headless_chromium(tmp_path):
    chromium = _chromium()
    page = tmp_path / "report.html"
    assert main(["simulate", str(DEMO), "--cycles", "4", "--report", str(page), "--compare", str(MOVED),
                 "--output", "json"]) == 0
    url = page.as_uri()
    got = _browse(chromium, url, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom")
    assert got.returncode == 0, got.stderr[-2000:]
    console = [line for line in got.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, "console output from the page:\n" + "\n".join(console)
    dom = got.stdout
    assert 'data-rendered="cycle-4-gpu"' in dom, dom[:2000]
    assert 'data-error="' not in dom
    for q in ("ml", "train", "research", "serving"):
        assert dom.count(f'data-queue="{q}"') >= 2, q          # queue chart of both runs (+ convergence lines)
    for n in ("a100-0", "a100-3", "l40s-0", "l40s-1"):
        assert dom.count(f'data-node="{n}"') == 2, n            # the occupancy map of both runs
    assert 'data-pool="training"' in dom and 'data-pool="inference"' in dom
    assert 'data-cause="OverLimit"' in dom and 'data-podgroup="team-serving/batch-embed"' in dom
    assert dom.count('class="convergence"') == 2

    artifacts = Path(os.environ.get("KAI_ARTIFACTS") or ROOT / "build" / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "kai-simulate-report.png"
    shot.unlink(missing_ok=True)
    got = _browse(chromium, url, "--window-size=1500,1500", f"--screenshot={shot}")
    assert got.returncode == 0, got.stderr[-2000:]
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(page, artifacts / "kai-simulate-report.html")


def test_the_browser_check_sees_script_errors(tmp_path):
    """The harness itself: a page whose script throws is caught by the console check."""
    chromium = _chromium()
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>document.body.dataset.x = noSuchName;</script></body></html>")
    got = _browse(chromium, page.as_uri(), "--enable-logging=stderr", "--v=0", "--dump-dom")
    assert any(":CONSOLE" in line and "noSuchName" in line for line in got.stderr.splitlines())
