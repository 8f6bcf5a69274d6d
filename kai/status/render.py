"""The status document (``kai.status.live``) -> terminal text: the queue tree with bars, the top
pending PodGroups with their reasons, GPU occupancy per node pool.

Pure functions of the document and a width, so tests and the docs picture see exactly what a
terminal shows. Colour (ANSI SGR) is optional; every distinction a colour makes is also made by
a glyph, so the text reads the same without it (``NO_COLOR``, pipes, ``--color never``).

Queue bars are scaled to the cluster's capacity for that resource (what the proportion plugin
divides): ``█`` allocated within the fair share, ``▓`` allocated above it, ``░`` pending
(requested and not allocated), ``│`` the fair share, ``┊`` the quota, ``▸`` more than fits.
"""
from __future__ import annotations

RESET = "\x1b[0m"
STYLE = {"alloc": "\x1b[32m", "over": "\x1b[33m", "pending": "\x1b[2m", "fair": "\x1b[1;36m",
         "quota": "\x1b[35m", "clip": "\x1b[1m", "head": "\x1b[1m", "dim": "\x1b[2m", "bad": "\x1b[31m",
         "whole": "\x1b[34m", "fractional": "\x1b[36m", "fragmented": "\x1b[33m", "free": "\x1b[2m"}
GLYPH = {"alloc": "█", "over": "▓", "pending": "░", "fair": "│", "quota": "┊", "clip": "▸",
         "whole": "█", "fractional": "▓", "fragmented": "▒", "free": "░"}
RESOURCE_LABEL = {"gpu": "GPU", "cpu": "CPU", "memory": "MEMORY"}


class _Paint:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, style: str, text: str) -> str:
        if not self.color or not text:
            return text
        return f"{STYLE[style]}{text}{RESET}"


def fmt_amount(resource: str, v: float | int | None) -> str:
    """GPUs as devices, CPU in cores, memory in Gi/Ti; ``-1`` (unlimited) as ``∞``."""
    if v is None:
        return "-"
    if v == -1:
        return "∞"
    if v == 0:
        return "0"
    if resource == "gpu":
        return f"{v:g}" if float(v).is_integer() else f"{v:.2f}".rstrip("0")
    if resource == "cpu":
        c = v / 1000.0
        return f"{c:.0f}" if c >= 100 or c.is_integer() else f"{c:.1f}"
    gib = v / 2**30
    if gib >= 1024:
        return f"{gib / 1024:.1f}Ti"
    return f"{gib:.0f}Gi" if gib >= 10 else f"{gib:.1f}Gi"


def queue_bar(q: dict, resource: str, scale: float, width: int, paint: _Paint) -> str:
    """One queue's bar for one resource, ``width`` cells."""
    if width <= 0:
        return ""
    if q.get("allocated") is None or scale <= 0:
        return " " * width

    def cells(v: float) -> int:
        return max(0, min(width, int(round(v / scale * width))))

    alloc = q["allocated"][resource]
    fair = q["fairShare"][resource]
    pend = q["pending"][resource]
    quota = q["quota"][resource]
    kinds = [""] * width
    a_end = cells(alloc)
    f_end = cells(fair)
    for i in range(a_end):
        kinds[i] = "alloc" if i < f_end else "over"
    p_end = cells(alloc + pend)
    for i in range(a_end, p_end):
        kinds[i] = "pending"
    if alloc > 0 and a_end == 0:
        kinds[0] = "alloc" if alloc <= fair else "over"
    if quota not in (-1, None) and quota > 0 and quota < scale * 1.0001:
        kinds[min(cells(quota), width - 1)] = "quota"
    if fair > 0:
        kinds[min(f_end, width - 1)] = "fair"
    if alloc + pend > scale * 1.0001:
        kinds[-1] = "clip"
    return _runs(kinds, paint)


def _runs(kinds: list[str], paint: _Paint) -> str:
    """Cells -> text, one colour escape per run of equal cells."""
    out = []
    i = 0
    while i < len(kinds):
        j = i
        while j < len(kinds) and kinds[j] == kinds[i]:
            j += 1
        k = kinds[i]
        out.append(paint(k, GLYPH[k] * (j - i)) if k else " " * (j - i))
        i = j
    return "".join(out)


def _tree_prefix(queues: list[dict], i: int) -> str:
    """``├─ `` / ``└─ `` guides from the depth of each queue in DFS order."""
    q = queues[i]
    d = q["depth"]
    if d == 0:
        return ""
    parts = []
    for level in range(1, d + 1):
        # is there a later sibling at this level before the subtree ends?
        later = False
        for nxt in queues[i + 1:]:
            if nxt["problem"] is not None or nxt["depth"] < level:
                break
            if nxt["depth"] == level:
                later = True
                break
        if level == d:
            parts.append("├─ " if later else "└─ ")
        else:
            parts.append("│  " if later else "   ")
    return "".join(parts)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n:
            return f"{seconds // n}{unit}"
    return f"{seconds}s"


def render(doc: dict, width: int = 120, color: bool = False, resources: tuple[str, ...] | None = None,
           top: int | None = None) -> str:
    """The whole view as text, at most ``width`` columns (wider names are cut)."""
    paint = _Paint(color)
    width = max(width, 60)
    if resources is None:
        resources = ("gpu", "cpu", "memory") if width >= 120 else ("gpu",)
    out: list[str] = []
    c = doc["counts"]
    t = doc.get("timing", {})
    took = t.get("totalSeconds", t.get("computeSeconds"))
    head = (f"kai status · {doc.get('server') or 'cluster'} · {c['nodes']} nodes · {c['pods']} pods "
            f"({c['kaiPods']} kai) · {c['podGroups']} PodGroups · {c['queues']} queues"
            + (f" · {took:.2f}s" if took is not None else ""))
    out.append(paint("head", _cut(head, width)))
    cap = doc["capacity"]
    out.append(_cut(f"capacity {fmt_amount('gpu', cap['gpu'])} GPU · {fmt_amount('cpu', cap['cpu'])} CPU · "
                    f"{fmt_amount('memory', cap['memory'])} memory · scheduler config: {doc['schedulerConfig']}",
                    width))
    if doc.get("missingKinds"):
        out.append(paint("bad", f"not served by the API server (CRD missing?): {', '.join(doc['missingKinds'])}"))
    out.append("")
    out += _queue_lines(doc, width, paint, resources)
    out.append("")
    out += _pending_lines(doc, width, paint, top)
    out.append("")
    out += _gpu_lines(doc, width, paint)
    if doc.get("problems"):
        out.append("")
        out.append(paint("head", f"PROBLEMS ({len(doc['problems'])})"))
        for p in doc["problems"][:5]:
            out.append(_cut(f"  {p['object']}: {p['reason']}", width))
    return "\n".join(out)


def _queue_lines(doc: dict, width: int, paint: _Paint, resources: tuple[str, ...]) -> list[str]:
    queues = doc["queues"]
    names = [_tree_prefix(queues, i) + q["name"] for i, q in enumerate(queues)]
    name_w = min(max([len(n) for n in names] + [6]) + 1, 32)
    numbers = {r: [(f"{fmt_amount(r, q['allocated'][r])}/{fmt_amount(r, q['fairShare'][r])}"
                    if q["allocated"] is not None else "") for q in queues] for r in resources}
    extra = {r: [(f"+{fmt_amount(r, q['pending'][r])}" if q["pending"] and q["pending"][r] else "")
                 for q in queues] for r in resources}
    num_w = {r: max([len(s) for s in numbers[r]] + [len("alloc/fair")]) for r in resources}
    ext_w = {r: max([len(s) for s in extra[r]] + [4]) for r in resources}
    quota_w = 0
    if resources == ("gpu",):
        quota_w = max([len(fmt_amount("gpu", q["quota"]["gpu"])) for q in queues if q["quota"]] + [5])
    cond_w = max([len(",".join(q["conditions"])) + 1 for q in queues if q["conditions"]] + [0])
    fixed = name_w + sum(num_w[r] + ext_w[r] + 3 for r in resources) + (quota_w + 1 if quota_w else 0) + cond_w
    bar_w = max((width - fixed) // len(resources) - 1, 8)
    legend = (f"{paint('alloc', GLYPH['alloc'])} allocated  {paint('over', GLYPH['over'])} above fair share  "
              f"{paint('pending', GLYPH['pending'])} pending  {paint('fair', GLYPH['fair'])} fair share  "
              f"{paint('quota', GLYPH['quota'])} quota")
    lines = [paint("head", "QUEUES") + "  " + legend]
    hdr = "".ljust(name_w)
    for r in resources:
        hdr += f"{RESOURCE_LABEL[r]:<{bar_w}} {'alloc/fair':>{num_w[r]}} {'pend':>{ext_w[r]}}  "
    if quota_w:
        hdr += f"{'quota':>{quota_w}}"
    lines.append(paint("dim", hdr.rstrip()))
    cap = doc["capacity"]
    for i, q in enumerate(queues):
        name = _cut(names[i], name_w - 1).ljust(name_w)
        if q["problem"] is not None:
            lines.append(name + paint("bad", _cut(f"not scheduled: {q['problem']}", width - name_w)))
            continue
        row = name
        for r in resources:
            row += (queue_bar(q, r, float(cap[r]), bar_w, paint) + " " + numbers[r][i].rjust(num_w[r]) + " "
                    + paint("pending", extra[r][i].rjust(ext_w[r])) + "  ")
        if quota_w:
            row += fmt_amount("gpu", q["quota"]["gpu"]).rjust(quota_w)
        conds = [x for x in q["conditions"] if x]
        if conds:
            row += " " + paint("over", ",".join(conds))
        lines.append(row.rstrip())
    return lines


def _pending_lines(doc: dict, width: int, paint: _Paint, top: int | None) -> list[str]:
    p = doc["pending"]
    if not p["podGroups"]:
        return [paint("head", "PENDING") + "  nothing pending"]
    causes = " · ".join(f"{x['cause']} {x['count']}" for x in p["byCause"])
    lines = [paint("head", "PENDING") + _cut(f"  {p['podGroups']} PodGroups, {p['pods']} pods — by cause: {causes}",
                                             width - len("PENDING"))]
    rows = p["top"][:top] if top else p["top"]
    pg_w = min(max([len(r["podGroup"]) for r in rows] + [8]), 40)
    q_w = min(max([len(r["queue"]) for r in rows] + [5]), 24)
    lines.append(paint("dim", f"  {'PODGROUP':<{pg_w}} {'QUEUE':<{q_w}} {'PRIO':>4} {'PENDING':>7} {'AGE':>4}  WHY"))
    for r in rows:
        why = r["cause"]
        detail = r["reasons"][0] if r["reasons"] else ""
        if detail and not detail.startswith(why):
            why = f"{why}: {detail}"
        elif detail:
            why = detail
        lead = (f"  {_cut(r['podGroup'], pg_w):<{pg_w}} {_cut(r['queue'], q_w):<{q_w}} {r['priority']:>4} "
                f"{str(r['pendingPods']) + '/' + str(r['pods']):>7} {_age(r['ageSeconds']):>4}  ")
        lines.append(lead + _cut(why, max(width - len(lead), 10)))
    if p["podGroups"] > len(rows):
        lines.append(paint("dim", f"  … and {p['podGroups'] - len(rows)} more"))
    return lines


def occupancy_bar(p: dict, width: int, paint: _Paint) -> str:
    """``█`` whole, ``▓`` fractional, ``▒`` fragmented, ``░`` free, proportional to the pool's GPUs."""
    total = float(p["gpus"]) or 1.0
    out = []
    used = 0
    acc = 0.0
    for k in ("whole", "fractional", "fragmented", "free"):
        acc += float(p[k])
        end = int(round(acc / total * width))
        n = max(end - used, 0)
        out.append(paint(k, GLYPH[k] * n))
        used += n
    return "".join(out) + " " * max(width - used, 0)


def _gpu_lines(doc: dict, width: int, paint: _Paint) -> list[str]:
    g = doc["gpu"]
    legend = "  ".join(f"{paint(k, GLYPH[k])} {k}" for k in ("whole", "fractional", "fragmented", "free"))
    lines = [paint("head", "GPU OCCUPANCY") + "  " + legend]
    if not g["pools"]:
        return lines + ["  no GPU nodes"]
    rows = list(g["pools"]) + ([g["total"]] if len(g["pools"]) > 1 else [])
    name_w = min(max(len(p["name"]) for p in rows) + 2, 24)
    nums = "NODES  GPUS  WHOLE  FRAC  FRAG  FREE  LARGEST-FREE"
    bar_w = max(width - name_w - len(nums) - 6, 10)
    lines.append(paint("dim", f"  {'POOL':<{name_w}}{'':<{bar_w}}  {nums}"))
    for p in rows:
        f = lambda v: fmt_amount("gpu", v)  # noqa: E731
        lines.append(f"  {_cut(p['name'], name_w - 1):<{name_w}}{occupancy_bar(p, bar_w, paint)}  "
                     f"{p['nodes']:>5} {f(p['gpus']):>5} {f(p['whole']):>6} {f(p['fractional']):>5} "
                     f"{f(p['fragmented']):>5} {f(p['free']):>5} {f(p['largestFree']):>13}")
    return lines
