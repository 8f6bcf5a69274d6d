"""``kai simulate --report report.html``: one self-contained HTML page drawn from simulator results.

Owns the page, not the numbers: every figure comes from :func:`kai.sim.simulator.simulate`'s
report (run with ``gpu_map=True``): per cycle the queues' fair share and allocation, each GPU
node's occupancy (``kai.cache.occupancy``) and the unschedulable PodGroups with their reasons,
grouped here by cause (``kai.api.reasons``). The page embeds that data as JSON and draws it
with the inline script ``report.js`` and stylesheet ``report.css`` (SVG, no network, no
external file): queue fair share vs allocation and the GPU occupancy map for the cycle chosen
with a slider, pending reasons by cause, and the fair-share convergence over the cycles.

With ``--compare OTHER`` (:func:`overlay`), the same manifests run a second time with the other
file's scheduler config and/or objects (a Queue with another quota replaces the one of the same
name), and the page shows both runs side by side with a table of the differences.

Called by ``kai.cli`` (``cmd_simulate``).
"""
from __future__ import annotations

import copy
import html
import json
import os
import time

from kai.sim.loader import Manifests
from kai.api.reasons import group_by_cause

_HERE = os.path.dirname(os.path.abspath(__file__))


def overlay(base: Manifests, other: Manifests) -> Manifests:
    """``base`` with ``other``'s objects replacing those of the same kind, namespace and name
    (new ones are added); ``other``'s scheduler config documents come last, so they win."""
    out = copy.copy(base)
    out.objects = {k: list(v) for k, v in base.objects.items()}
    for kind, objs in other.objects.items():
        have = out.objects.setdefault(kind, [])
        index = {(o.metadata.namespace or "", o.metadata.name): i for i, o in enumerate(have)}
        for o in objs:
            key = (o.metadata.namespace or "", o.metadata.name)
            if key in index:
                have[index[key]] = o
            else:
                index[key] = len(have)
                have.append(o)
    out.owners = {**base.owners, **other.owners}
    out.config_docs = list(base.config_docs) + list(other.config_docs)
    out.skipped = list(base.skipped)
    return out


def _cycle_view(c: dict) -> dict:
    pending = [(u["podGroup"], u["reasons"]) for u in c["unschedulable"]]
    reasons = dict(pending)
    groups = group_by_cause(pending)
    return {
        "bound": len(c["bindings"]), "evicted": len(c["evictions"]), "pipelined": len(c["pipelined"]),
        "queues": c.get("queues", []),
        "nodes": c.get("nodes", []),
        "pending": [{"cause": g["cause"], "count": g["count"],
                     "jobs": [{"podGroup": j, "reason": (reasons[j] or [""])[0]} for j in g["jobs"]]}
                    for g in groups],
        "evictions": c["evictions"][:200],
    }


def run_view(label: str, config_source: str, report: dict) -> dict:
    """One run's data for the page (the simulator's report, reshaped; nothing recomputed)."""
    return {"label": label, "config": config_source,
            "cycles": [_cycle_view(c) for c in report["cycles"]],
            "problems": report.get("problems", []),
            "notImplementedActions": report.get("notImplementedActions", [])}


def _final_queues(run: dict) -> dict[str, dict]:
    return {q["name"]: q for q in (run["cycles"][-1]["queues"] if run["cycles"] else [])}


def _totals(run: dict) -> dict:
    last = run["cycles"][-1] if run["cycles"] else {"pending": []}
    return {"bound": sum(c["bound"] for c in run["cycles"]),
            "evicted": sum(c["evicted"] for c in run["cycles"]),
            "pending": sum(g["count"] for g in last["pending"])}


def _compare_table(a: dict, b: dict) -> str:
    """Static HTML: per queue GPU fair share and allocation after the last cycle, A vs B."""
    qa, qb = _final_queues(a), _final_queues(b)
    names = list(qa) + [n for n in qb if n not in qa]
    e = html.escape
    rows = []
    for n in names:
        cells = []
        for q in (qa.get(n), qb.get(n)):
            cells += ([f"{q['fairShare']['gpu']:g}", f"{q['allocated']['gpu']:g}"] if q else ["–", "–"])
        da = (qb[n]["allocated"]["gpu"] - qa[n]["allocated"]["gpu"]) if n in qa and n in qb else None
        delta = "" if not da else f"{da:+g}"
        cls = "" if not da else (" class=up" if da > 0 else " class=down")
        rows.append(f"<tr data-queue='{e(n)}'><th>{e(n)}</th>" + "".join(f"<td>{c}</td>" for c in cells)
                    + f"<td{cls}>{delta}</td></tr>")
    ta, tb = _totals(a), _totals(b)
    for key, what in (("bound", "pods bound"), ("evicted", "pods evicted"), ("pending", "PodGroups pending at the end")):
        d = tb[key] - ta[key]
        rows.append(f"<tr class=total><th>{what}</th><td colspan=2>{ta[key]}</td><td colspan=2>{tb[key]}</td>"
                    f"<td>{'' if not d else f'{d:+d}'}</td></tr>")
    return ("<table class=compare><thead><tr><th>queue (GPUs)</th>"
            f"<th colspan=2>{e(a['label'])}: fair / allocated</th><th colspan=2>{e(b['label'])}: fair / allocated</th>"
            "<th>Δ allocated</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _asset(name: str) -> str:
    with open(os.path.join(_HERE, name), encoding="utf-8") as f:
        return f.read()


def render_report(runs: list[dict], title: str = "kai simulate", inputs: list[str] | None = None) -> str:
    """The page for one run, or two side by side (``runs`` from :func:`run_view`)."""
    e = html.escape
    data = json.dumps({"runs": runs}, separators=(",", ":")).replace("</", "<\\/")
    n_cycles = max((len(r["cycles"]) for r in runs), default=0)
    meta = " · ".join(filter(None, [
        f"{n_cycles} cycle{'s' if n_cycles != 1 else ''}",
        ", ".join(e(os.path.basename(p)) for p in inputs or []),
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())]))
    compare = _compare_table(runs[0], runs[1]) if len(runs) == 2 else ""
    cols = "".join(f"<section class=run data-run='{i}'><h2>{e(r['label'])}</h2>"
                   f"<p class=src>scheduler config: {e(r['config'])}</p></section>" for i, r in enumerate(runs))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{_asset("report.css")}</style>
</head><body>
<header><h1>{e(title)}</h1><p class=meta>{meta}</p>
<div class=controls><label>cycle <input id=cycle type=range min=1 max={max(n_cycles, 1)} value={max(n_cycles, 1)}>
<output id=cycle-label>{n_cycles}</output> / {n_cycles}</label>
<span class=res>resource <button data-res=gpu class=on>GPU</button><button data-res=cpu>CPU</button>
<button data-res=memory>memory</button></span></div>
{compare}</header>
<main class="runs n{len(runs)}">{cols}</main>
<noscript><p>This report draws its charts with an inline script; the data is in the kai-data element.</p></noscript>
<script id="kai-data" type="application/json">{data}</script>
<script>{_asset("report.js")}</script>
</body></html>
"""


def write_report(path: str, runs: list[dict], title: str = "kai simulate", inputs: list[str] | None = None) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_report(runs, title, inputs))


__all__ = ["overlay", "run_view", "render_report", "write_report"]
