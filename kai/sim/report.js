/* kai simulate --report: draws the data embedded in #kai-data (see kai/sim/report.py).
   Inlined into the page; no network, no libraries. Sets body[data-rendered] when drawn and
   body[data-error] if anything throws, so a headless browser can check the page. */
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var COLORS = { alloc: "#2e7d32", over: "#e08600", fair: "#111111", track: "#eef0f3",
                 whole: "#1f5fbf", frac: "#29a3c7", frag: "#f2b233", free: "#e4e7ec" };
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22"];
  var UNITS = { gpu: ["GPUs", 1], cpu: ["cores", 1000], memory: ["GiB", 1073741824] };

  window.addEventListener("error", function (ev) {
    document.body.setAttribute("data-error", String(ev.message || ev));
  });

  var data = JSON.parse(document.getElementById("kai-data").textContent);
  var runs = data.runs;
  var nCycles = 0;
  runs.forEach(function (r) { nCycles = Math.max(nCycles, r.cycles.length); });
  var state = { cycle: Math.max(nCycles - 1, 0), res: "gpu" };

  function h(tag, attrs, parent, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    if (parent) { parent.appendChild(e); }
    return e;
  }

  function s(tag, attrs, parent, text) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    if (parent) { parent.appendChild(e); }
    return e;
  }

  function amount(res, v) {
    var x = v / UNITS[res][1];
    return String(Math.round(x * 100) / 100);
  }

  var qcolor = {};
  runs.forEach(function (r) {
    r.cycles.forEach(function (c) {
      c.queues.forEach(function (q) {
        if (!(q.name in qcolor)) { qcolor[q.name] = PALETTE[Object.keys(qcolor).length % PALETTE.length]; }
      });
    });
  });

  function depths(queues) {
    var parent = {}, out = {};
    queues.forEach(function (q) { parent[q.name] = q.parent; });
    queues.forEach(function (q) {
      var d = 0, p = q.parent, guard = 0;
      while (p && guard++ < 64) { d++; p = parent[p]; }
      out[q.name] = d;
    });
    return out;
  }

  function leaves(queues) {
    var isParent = {};
    queues.forEach(function (q) { if (q.parent) { isParent[q.parent] = true; } });
    return queues.filter(function (q) { return !isParent[q.name]; });
  }

  function scaleFor(res) {
    var m = 0;
    runs.forEach(function (r) {
      r.cycles.forEach(function (c) {
        c.queues.forEach(function (q) { m = Math.max(m, q.allocated[res], q.fairShare[res]); });
      });
    });
    return m > 0 ? m : 1;
  }

  function legend(parent, items) {
    var box = h("div", { "class": "legend" }, parent);
    items.forEach(function (it) {
      var span = h("span", {}, box);
      h("i", { style: "background:" + it[1] + (it[2] ? ";height:3px;vertical-align:3px" : "") }, span);
      span.appendChild(document.createTextNode(it[0]));
    });
  }

  function drawStats(box, c) {
    box.textContent = "";
    h("span", {}, box, c.bound + " bound");
    h("span", {}, box, c.evicted + " evicted");
    h("span", {}, box, c.pipelined + " pipelined");
    var pend = 0;
    c.pending.forEach(function (g) { pend += g.count; });
    h("span", {}, box, pend + " PodGroups pending");
  }

  function drawQueues(box, c) {
    box.textContent = "";
    var res = state.res, qs = c.queues, depth = depths(qs), sc = scaleFor(res);
    var rowH = 24, nameW = 170, barW = 320, numW = 150;
    var svg = s("svg", { width: nameW + barW + numW, height: qs.length * rowH + 8, "class": "queue-chart" }, box);
    qs.forEach(function (q, i) {
      var y = i * rowH + 4, a = q.allocated[res], f = q.fairShare[res];
      var g = s("g", { "data-queue": q.name, "class": "queue" }, svg);
      s("title", {}, g, q.name + ": allocated " + amount(res, a) + " / fair share " + amount(res, f) + " " +
        UNITS[res][0]);
      s("text", { x: 4 + depth[q.name] * 14, y: y + 15 }, g, q.name);
      s("rect", { x: nameW, y: y + 3, width: barW, height: rowH - 8, fill: COLORS.track }, g);
      var within = Math.min(a, f) / sc * barW, above = Math.max(a - f, 0) / sc * barW;
      s("rect", { x: nameW, y: y + 3, width: within, height: rowH - 8, fill: COLORS.alloc }, g);
      if (above > 0) {
        s("rect", { x: nameW + within, y: y + 3, width: above, height: rowH - 8, fill: COLORS.over }, g);
      }
      var fx = nameW + f / sc * barW;
      s("line", { x1: fx, x2: fx, y1: y, y2: y + rowH - 2, stroke: COLORS.fair, "stroke-width": 2 }, g);
      s("text", { x: nameW + barW + 8, y: y + 15 }, g, amount(res, a) + " / " + amount(res, f) + " " + UNITS[res][0]);
    });
  }

  function drawMap(box, c) {
    box.textContent = "";
    if (!c.nodes.length) { h("p", { "class": "note" }, box, "no GPU nodes"); return; }
    var pools = {}, order = [];
    c.nodes.forEach(function (n) {
      if (!(n.pool in pools)) { pools[n.pool] = []; order.push(n.pool); }
      pools[n.pool].push(n);
    });
    var many = c.nodes.length > 150;
    var cell = many ? 6 : 11, perRow = 8, pad = 4;
    var maxGpus = 1;
    c.nodes.forEach(function (n) { maxGpus = Math.max(maxGpus, n.gpus); });
    var rowsPerNode = Math.ceil(Math.min(maxGpus, 64) / perRow);
    var boxW = perRow * (cell + 1) + pad * 2 + 6, boxH = rowsPerNode * (cell + 1) + pad * 2 + (many ? 2 : 16);
    var cols = Math.max(Math.floor(660 / boxW), 1);
    order.forEach(function (pool) {
      var nodes = pools[pool];
      var div = h("div", { "class": "pool", "data-pool": pool }, box);
      h("div", { "class": "pool-name" }, div, "pool " + pool + " (" + nodes.length + " nodes)");
      var svg = s("svg", { width: cols * boxW, height: Math.ceil(nodes.length / cols) * boxH, "class": "gpu-map" }, div);
      nodes.forEach(function (n, k) {
        var x0 = (k % cols) * boxW, y0 = Math.floor(k / cols) * boxH;
        var g = s("g", { "data-node": n.name, "class": "node" }, svg);
        s("title", {}, g, n.name + " (" + pool + "): " + n.gpus + " GPUs, whole " + n.whole + ", fractional " +
          n.fractional + ", fragmented " + n.fragmented + ", free " + n.free);
        s("rect", { x: x0 + 1, y: y0 + 1, width: boxW - 4, height: boxH - 4, fill: "none", stroke: "#d0d5dd" }, g);
        var cells = [], i;
        for (i = 0; i < Math.round(n.whole); i++) { cells.push([COLORS.whole, 1]); }
        n.shared.forEach(function (p) { cells.push([COLORS.frac, p]); });
        while (cells.length < Math.min(Math.round(n.gpus), 64)) { cells.push([COLORS.free, 0]); }
        cells.forEach(function (cl, j) {
          var cx = x0 + pad + (j % perRow) * (cell + 1), cy = y0 + pad + Math.floor(j / perRow) * (cell + 1);
          if (cl[0] === COLORS.frac) {
            s("rect", { x: cx, y: cy, width: cell, height: cell, fill: COLORS.frag }, g);
            s("rect", { x: cx, y: cy + cell * (1 - cl[1]), width: cell, height: cell * cl[1], fill: COLORS.frac }, g);
          } else {
            s("rect", { x: cx, y: cy, width: cell, height: cell, fill: cl[0] }, g);
          }
        });
        if (!many) {
          var label = n.name.length > 13 ? n.name.slice(0, 12) + "…" : n.name;
          s("text", { x: x0 + pad, y: y0 + boxH - 7, "class": "muted", style: "font-size:10px" }, g, label);
        }
      });
    });
  }

  function drawPending(box, c) {
    box.textContent = "";
    if (!c.pending.length) { h("p", { "class": "note" }, box, "nothing pending after this cycle"); return; }
    var table = h("table", { "class": "pending" }, box);
    var head = h("tr", {}, h("thead", {}, table));
    h("th", {}, head, "cause");
    h("th", {}, head, "PodGroups");
    var body = h("tbody", {}, table);
    c.pending.forEach(function (g) {
      var tr = h("tr", { "data-cause": g.cause }, body);
      var td = h("td", {}, tr);
      var det = h("details", {}, td);
      h("summary", {}, det, g.cause);
      var ul = h("ul", {}, det);
      g.jobs.forEach(function (j) { h("li", { "data-podgroup": j.podGroup }, ul, j.podGroup + ": " + j.reason); });
      h("td", { "class": "count" }, tr, String(g.count));
    });
  }

  function drawConvergence(box, run) {
    box.textContent = "";
    if (run.cycles.length < 2) {
      h("p", { "class": "note" }, box, "one cycle: run with --cycles N to see fair shares converge");
      return;
    }
    var res = state.res, W = 560, H = 220, L = 50, B = 28, T = 10;
    var qs = leaves(run.cycles[run.cycles.length - 1].queues), top = 0;
    run.cycles.forEach(function (c) {
      c.queues.forEach(function (q) { top = Math.max(top, q.allocated[res], q.fairShare[res]); });
    });
    top = top > 0 ? top : 1;
    var n = run.cycles.length;
    function X(i) { return L + (W - L - 10) * (n === 1 ? 0 : i / (n - 1)); }
    function Y(v) { return T + (H - T - B) * (1 - v / top); }
    var svg = s("svg", { width: W, height: H, "class": "convergence" }, box);
    s("line", { x1: L, x2: L, y1: T, y2: H - B, stroke: "#999" }, svg);
    s("line", { x1: L, x2: W - 10, y1: H - B, y2: H - B, stroke: "#999" }, svg);
    [0, 0.5, 1].forEach(function (f) {
      s("text", { x: L - 6, y: Y(top * f) + 4, "text-anchor": "end", "class": "muted" }, svg, amount(res, top * f));
    });
    s("text", { x: L, y: H - 8, "class": "muted" }, svg, "cycle 1");
    s("text", { x: W - 10, y: H - 8, "text-anchor": "end", "class": "muted" }, svg, "cycle " + n);
    var items = [];
    qs.forEach(function (q) {
      var byCycle = run.cycles.map(function (c) {
        var found = null;
        c.queues.forEach(function (x) { if (x.name === q.name) { found = x; } });
        return found;
      });
      ["allocated", "fairShare"].forEach(function (field) {
        var pts = [];
        byCycle.forEach(function (x, i) { if (x) { pts.push(X(i).toFixed(1) + "," + Y(x[field][res]).toFixed(1)); } });
        var attrs = { points: pts.join(" "), fill: "none", stroke: qcolor[q.name], "stroke-width": 2,
                      "data-queue": q.name, "data-series": field };
        if (field === "fairShare") { attrs["stroke-dasharray"] = "5 4"; }
        s("polyline", attrs, svg);
      });
      items.push([q.name, qcolor[q.name], true]);
    });
    legend(box, items.concat([["solid: allocated, dashed: fair share (" + UNITS[res][0] + ")", "transparent"]]));
  }

  var parts = [];
  runs.forEach(function (run, i) {
    var sec = document.querySelector("section.run[data-run='" + i + "']");
    var p = { run: run };
    p.stats = h("div", { "class": "stats" }, sec);
    h("h3", {}, sec, "Queues: fair share vs allocated");
    legend(sec, [["allocated within fair share", COLORS.alloc], ["allocated above fair share", COLORS.over],
                 ["fair share", COLORS.fair, true]]);
    p.queues = h("div", { "class": "queues" }, sec);
    h("h3", {}, sec, "GPU occupancy after the cycle");
    legend(sec, [["whole GPU pods", COLORS.whole], ["fractions", COLORS.frac],
                 ["fragmented (free part of a shared GPU)", COLORS.frag], ["free", COLORS.free]]);
    p.map = h("div", { "class": "map" }, sec);
    h("h3", {}, sec, "Pending PodGroups by cause");
    p.pending = h("div", { "class": "pending-box" }, sec);
    h("h3", {}, sec, "Fair-share convergence over cycles (leaf queues)");
    p.conv = h("div", { "class": "conv" }, sec);
    if (run.problems.length || run.notImplementedActions.length) {
      h("h3", {}, sec, "Problems");
      var ul = h("ul", { "class": "problems" }, sec);
      run.problems.forEach(function (pr) { h("li", {}, ul, pr.object + ": " + pr.reason); });
      if (run.notImplementedActions.length) {
        h("li", {}, ul, "actions not available in this build: " + run.notImplementedActions.join(", "));
      }
    }
    parts.push(p);
  });

  function redraw() {
    document.getElementById("cycle-label").textContent = String(state.cycle + 1);
    parts.forEach(function (p) {
      var c = p.run.cycles[Math.min(state.cycle, p.run.cycles.length - 1)];
      if (!c) { return; }
      drawStats(p.stats, c);
      drawQueues(p.queues, c);
      drawMap(p.map, c);
      drawPending(p.pending, c);
      drawConvergence(p.conv, p.run);
    });
    document.body.setAttribute("data-rendered", "cycle-" + (state.cycle + 1) + "-" + state.res);
  }

  document.getElementById("cycle").addEventListener("input", function (ev) {
    state.cycle = Number(ev.target.value) - 1;
    redraw();
  });
  Array.prototype.forEach.call(document.querySelectorAll("button[data-res]"), function (b) {
    b.addEventListener("click", function () {
      state.res = b.getAttribute("data-res");
      Array.prototype.forEach.call(document.querySelectorAll("button[data-res]"), function (o) {
        o.className = o === b ? "on" : "";
      });
      redraw();
    });
  });
  redraw();
}());
