"""Make the pictures in docs/ (status.md, simulate.md, metrics.md) from the real tools.

    PYTHONPATH=. python docs/tools/pictures.py status      # docs/status.png + docs/status.txt
    PYTHONPATH=. python docs/tools/pictures.py report      # docs/simulate-report.png
    PYTHONPATH=. python docs/tools/pictures.py dashboard   # docs/grafana-dashboard.png

``status``: a local control plane (kai.testing.controlplane, kwok nodes) loaded with
docs/examples/report-demo.yaml, the real ``kai scheduler`` running, then ``kai status --color
always``; its ANSI output becomes an SVG terminal and a PNG (headless Chromium). ``report``: a
screenshot of ``kai simulate --report --compare`` on the same example. ``dashboard``: the chart's
dashboard JSON laid out on its 24-column grid with each panel's queries (a layout preview
drawn here: no Grafana runs on this machine). Needs ``chromium`` (Debian package).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
DEMO = DOCS / "examples" / "report-demo.yaml"
MOVED = DOCS / "examples" / "report-demo-moved-quota.yaml"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def screenshot(url: str, out: Path, width: int, height: int) -> None:
    chromium = shutil.which("chromium") or sys.exit("chromium not found (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="kai-pictures-")
    try:
        subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={out}", url], check=True, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    print(f"wrote {out}")


# ---------------------------------------------------------------------- kai status
SGR = {"32": "#4caf50", "33": "#e0a030", "2": "#8a8f98", "1;36": "#4dd0e1", "35": "#c678dd", "1": "#ffffff",
       "31": "#ef5350", "34": "#5b8def", "36": "#29b6d6"}


def ansi_svg(text: str, cols: int) -> str:
    """ANSI SGR text -> an SVG terminal (monospace, dark background)."""
    cw, lh, pad = 8.4, 18, 14
    lines = text.split("\n")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{int(cols * cw + 2 * pad)}" '
           f'height="{len(lines) * lh + 2 * pad}" font-family="DejaVu Sans Mono, monospace" font-size="14">',
           f'<rect width="100%" height="100%" fill="#1e2127" rx="6"/>']
    for i, line in enumerate(lines):
        y = pad + (i + 1) * lh - 5
        parts, color, bold, x = [], "#d7dae0", False, 0
        for tok in re.split(r"(\x1b\[[0-9;]*m)", line):
            if tok.startswith("\x1b["):
                code = tok[2:-1]
                color, bold = ("#d7dae0", False) if code in ("0", "") else (SGR.get(code, "#d7dae0"), "1" in code.split(";"))
                continue
            if tok:
                weight = ' font-weight="bold"' if bold else ""
                parts.append(f'<tspan x="{pad + x * cw:.1f}" fill="{color}"{weight}>{html.escape(tok)}</tspan>')
                x += len(tok)
        out.append(f'<text y="{y}" xml:space="preserve">{"".join(parts)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def status_picture() -> None:
    import yaml

    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from e2e_helpers import SchedulerProcess, install_crds, wait_for
    from kai.cache.kubeclient import ApiError, KubeClient
    from kai.testing.controlplane import ControlPlane, fake_node_manifest

    docs = [d for d in yaml.safe_load_all(DEMO.read_text()) if d]
    with ControlPlane(with_controller_manager=True, with_kwok=True) as cp:
        c = KubeClient.from_kubeconfig(cp.kubeconfig)
        install_crds(c)
        for d in docs:
            if d["kind"] == "Node":
                a = d["status"]["allocatable"]
                cp.create_node(fake_node_manifest(d["metadata"]["name"], gpus=int(a["nvidia.com/gpu"]), cpu=a["cpu"],
                                                  memory=a["memory"], labels=d["metadata"]["labels"]))
            elif d["kind"] == "Queue":
                c.post("/apis/scheduling.run.ai/v2/queues", d)
        for ns in sorted({d["metadata"]["namespace"] for d in docs if d["kind"] == "Pod"}):
            c.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            cp.wait_default_service_account(ns)
        for d in docs:
            if d["kind"] == "PodGroup":
                c.post(f"/apis/scheduling.run.ai/v2alpha2/namespaces/{d['metadata']['namespace']}/podgroups", d)

        def create(pods):
            for d in pods:
                d = json.loads(json.dumps(d))
                d["spec"].pop("nodeName", None)
                d.pop("status", None)
                d["spec"]["tolerations"] = [{"operator": "Exists"}]
                d["spec"]["terminationGracePeriodSeconds"] = 0
                c.post(f"/api/v1/namespaces/{d['metadata']['namespace']}/pods", d)

        stop = threading.Event()

        def play_device() -> None:   # the reservation image's job on a real node (kwok has no NVML)
            done: set[str] = set()
            while not stop.is_set():
                try:
                    items = c.get("/api/v1/namespaces/kai-resource-reservation/pods")["items"]
                except ApiError:
                    items = []
                for p in items:
                    name = p["metadata"]["name"]
                    if name not in done and p["spec"].get("nodeName"):
                        c.patch(f"/api/v1/namespaces/kai-resource-reservation/pods/{name}", {"metadata": {
                            "annotations": {"run.ai/reserve_for_gpu_index": f"GPU-{abs(hash(name)) % 10**8:08d}"}}})
                        done.add(name)
                time.sleep(0.1)
        threading.Thread(target=play_device, daemon=True).start()
        logdir = Path(tempfile.mkdtemp(prefix="kai-pictures-"))
        sched = SchedulerProcess(cp.kubeconfig, logdir / "scheduler.log")
        try:
            sched.wait_ready()
            pods = [d for d in docs if d["kind"] == "Pod"]
            # in the example's order: training runs first, then the fractions, then research arrives
            for ns, bound in (("team-train", 8), ("team-serving", 4)):
                create([d for d in pods if d["metadata"]["namespace"] == ns])
                wait_for(lambda ns=ns, bound=bound: sum(1 for p in c.get(f"/api/v1/namespaces/{ns}/pods")["items"]
                                                        if p["spec"].get("nodeName")) >= bound,
                         60, what=f"{bound} pods of {ns} running")
            create([d for d in pods if d["metadata"]["namespace"] == "team-research"])
            time.sleep(12)                     # a few cycles: reclaim, binds, conditions written
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            run = lambda *a: subprocess.run([sys.executable, "-m", "kai", "status", "--kubeconfig", cp.kubeconfig,  # noqa: E731
                                             "--width", "118", *a], capture_output=True, text=True, env=env,
                                            cwd=str(REPO), check=True).stdout
            colored = run("--color", "always")
            plain = run("--color", "never")
        finally:
            stop.set()
            sched.stop()
    server = re.search(r"https://127\.0\.0\.1:\d+", plain)
    if server:      # a random local port: not worth a diff every time
        colored, plain = (t.replace(server.group(0), "https://127.0.0.1:6443") for t in (colored, plain))
    (DOCS / "status.txt").write_text(plain)
    svg = DOCS / "status.svg"
    rows = colored.rstrip("\n")
    svg.write_text(ansi_svg(rows, 118))
    n = rows.count("\n") + 1
    screenshot(svg.as_uri(), DOCS / "status.png", int(118 * 8.4 + 28), n * 18 + 28)
    svg.unlink()
    print(f"wrote {DOCS / 'status.txt'}")


# ---------------------------------------------------------------------- kai simulate --report
def report_picture() -> None:
    out = Path(tempfile.mkdtemp(prefix="kai-pictures-")) / "report.html"
    subprocess.run([sys.executable, "-m", "kai", "simulate", str(DEMO), "--cycles", "4", "--report", str(out),
                    "--compare", str(MOVED), "--output", "json"], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=str(REPO))
    screenshot(out.as_uri(), DOCS / "simulate-report.png", 1500, 1250)


# ---------------------------------------------------------------------- Grafana dashboard layout
def dashboard_picture() -> None:
    d = json.loads((REPO / "charts" / "kai-scheduler" / "dashboards" / "kai-scheduler.json").read_text())
    unit_w, unit_h = 60, 30
    boxes = []
    bottom = 0
    for p in d["panels"]:
        g = p["gridPos"]
        bottom = max(bottom, g["y"] + g["h"])
        style = f"left:{g['x'] * unit_w}px;top:{g['y'] * unit_h}px;width:{g['w'] * unit_w - 8}px;height:{g['h'] * unit_h - 8}px"
        if p["type"] == "row":
            boxes.append(f'<div class="row" style="{style}">{html.escape(p["title"])}</div>')
            continue
        q = "".join(f"<code>{html.escape(t['expr'])}</code>" for t in p["targets"])
        boxes.append(f'<div class="panel" style="{style}"><b>{html.escape(p["title"])}</b>'
                     f'<span class="type">{p["type"]}</span>{q}</div>')
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #111217; font: 13px "DejaVu Sans", sans-serif; color: #ccccdc; }}
h1 {{ font-size: 16px; margin: 10px 14px; font-weight: normal; }} h1 small {{ color: #8e8e9e; }}
.grid {{ position: relative; margin: 0 14px; height: {bottom * unit_h}px; }}
.panel, .row {{ position: absolute; box-sizing: border-box; }}
.panel {{ background: #181b1f; border: 1px solid #2c3235; border-radius: 3px; padding: 8px; overflow: hidden; }}
.panel b {{ display: block; margin-bottom: 4px; color: #e0e0ec; }}
.type {{ position: absolute; right: 8px; top: 8px; color: #6e9fff; font-size: 11px; }}
code {{ display: block; font: 11px "DejaVu Sans Mono", monospace; color: #9fa7b3; margin: 3px 0; word-break: break-all; }}
.row {{ font-size: 15px; color: #e0e0ec; padding-top: 6px; }}
</style></head><body><h1>{html.escape(d["title"])} <small>— layout of charts/kai-scheduler/dashboards/kai-scheduler.json:
panels and their PromQL (variables: datasource, queue, node pool)</small></h1><div class="grid">{"".join(boxes)}</div></body></html>"""
    f = Path(tempfile.mkdtemp(prefix="kai-pictures-")) / "dashboard.html"
    f.write_text(page)
    screenshot(f.as_uri(), DOCS / "grafana-dashboard.png", 24 * unit_w + 28, bottom * unit_h + 60)


if __name__ == "__main__":
    what = sys.argv[1:] or ["status", "report", "dashboard"]
    for w in what:
        {"status": status_picture, "report": report_picture, "dashboard": dashboard_picture}[w]()
