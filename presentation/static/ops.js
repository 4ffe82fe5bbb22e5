// The ops console's live part (served by presentation; the CSP allows no other origin).
// It polls /ops/stats.json every 2 s, keeps the last 5 minutes in memory, draws them with
// the vendored uPlot, and refreshes the figures and the autoscaler's decisions. Without it
// the page still shows the reading it was rendered with.
(function () {
  "use strict";

  var POLL_MS = 2000;
  var WINDOW_S = 300;
  var MISSING = "\u2013";

  function num(v) { return typeof v === "number" && isFinite(v) ? v : null; }

  function show(v) {
    if (v === undefined || v === null) return MISSING;
    var s = typeof v === "string" ? v : JSON.stringify(v);
    return s.length > 120 ? s.slice(0, 119) + "\u2026" : s;
  }

  function ratio(hits, misses) {
    var total = hits + misses;
    return total > 0 ? (hits * 100) / total : null;
  }

  // Readings, oldest first: {t, ready, unacked, consumers, workers, desired, dlq, all, done, hits, misses}.
  var readings = [];

  function reading(s) {
    var q = s.queue || null;
    var a = s.autoscaler && typeof s.autoscaler === "object" ? s.autoscaler : null;
    var o = s.orders || {};
    var c = s.cache || {};
    var pending = num(o.pending) || 0, fulfilled = num(o.fulfilled) || 0, rejected = num(o.rejected) || 0;
    return {
      t: Date.parse(s.at) / 1000,
      ready: q ? num(q.ready) : null,
      unacked: q ? num(q.unacked) : null,
      consumers: q ? num(q.consumers) : null,
      workers: a ? num(a.current) : null,
      desired: a ? num(a.desired) : null,
      dlq: num(s.dlq_depth),
      all: pending + fulfilled + rejected,
      done: fulfilled + rejected,
      hits: num(c.hits) || 0,
      misses: num(c.misses) || 0
    };
  }

  // Per-second rates and interval ratios need the previous reading.
  function series() {
    var cols = { t: [], ready: [], unacked: [], workers: [], desired: [], consumers: [],
      inRate: [], outRate: [], dlq: [], hitNow: [], hitAll: [] };
    for (var i = 0; i < readings.length; i++) {
      var r = readings[i], p = i > 0 ? readings[i - 1] : null;
      var dt = p ? r.t - p.t : 0;
      cols.t.push(r.t);
      cols.ready.push(r.ready);
      cols.unacked.push(r.unacked);
      cols.workers.push(r.workers);
      cols.desired.push(r.desired);
      cols.consumers.push(r.consumers);
      var fin = p && dt > 0 && r.all >= p.all && r.done >= p.done;
      cols.inRate.push(fin ? (r.all - p.all) / dt : null);
      cols.outRate.push(fin ? (r.done - p.done) / dt : null);
      cols.dlq.push(r.dlq);
      var dh = p ? r.hits - p.hits : 0, dm = p ? r.misses - p.misses : 0;
      cols.hitNow.push(p && dh >= 0 && dm >= 0 ? ratio(dh, dm) : null);
      cols.hitAll.push(ratio(r.hits, r.misses));
    }
    return cols;
  }

  var zeroBased = function (u, min, max) { return [0, Math.max(1, (max || 0) * 1.15)]; };

  var CHARTS = [
    { id: "chart-backlog", range: zeroBased, lines: [
      { label: "ready", col: "ready", stroke: "#1d4ed8", fill: "rgba(29,78,216,0.08)" },
      { label: "unacked", col: "unacked", stroke: "#d97706" }] },
    { id: "chart-workers", range: zeroBased, lines: [
      { label: "workers", col: "workers", stroke: "#166534" },
      { label: "desired", col: "desired", stroke: "#7c3aed", dash: [6, 4] },
      { label: "queue consumers", col: "consumers", stroke: "#52606d" }] },
    { id: "chart-orders", range: zeroBased, lines: [
      { label: "in (placed/s)", col: "inRate", stroke: "#1d4ed8" },
      { label: "out (final/s)", col: "outRate", stroke: "#166534" }] },
    { id: "chart-dlq", range: zeroBased, lines: [
      { label: "dead letters", col: "dlq", stroke: "#b91c1c", fill: "rgba(185,28,28,0.08)" }] },
    { id: "chart-cache", range: function () { return [0, 100]; }, lines: [
      { label: "hit % (last 2 s)", col: "hitNow", stroke: "#0891b2" },
      { label: "hit % (since start)", col: "hitAll", stroke: "#52606d", dash: [6, 4] }] }
  ];

  var plots = [];

  function draw() {
    window.strataCharts.draw(plots, series());
  }

  function setStat(key, text) {
    var el = document.querySelector('[data-stat="' + key + '"]');
    if (el) el.textContent = text;
  }

  function updateFigures(s) {
    var q = s.queue || null;
    var a = s.autoscaler && typeof s.autoscaler === "object" ? s.autoscaler : null;
    var o = s.orders || {}, c = s.cache || {};
    setStat("ready", show(q ? q.ready : null));
    setStat("unacked", show(q ? q.unacked : null));
    setStat("consumers", show(q ? q.consumers : null));
    setStat("workers", show(a ? a.current : null));
    setStat("desired", show(a ? a.desired : null));
    setStat("dlq", show(s.dlq_depth));
    setStat("pending", show(o.pending));
    setStat("reserved", show(o.reserved));
    setStat("paid", show(o.paid));
    setStat("fulfilled", show(o.fulfilled));
    setStat("rejected", show(o.rejected));
    var r = ratio(num(c.hits) || 0, num(c.misses) || 0);
    setStat("hit-ratio", r === null ? MISSING : r.toFixed(1) + "%");
    setStat("outbox", show(s.outbox_backlog));
    var at = document.getElementById("ops-at");
    if (at) at.textContent = new Date(s.at).toLocaleTimeString();
    updateDecisions(a);
  }

  // An RFC 3339 time as HH:MM:SS UTC, like the server renders it.
  function shortTime(v) {
    if (typeof v !== "string") return show(v);
    var t = Date.parse(v);
    return isFinite(t) ? new Date(t).toISOString().slice(11, 19) : show(v);
  }

  function timeKey(d) {
    if (!d || typeof d !== "object") return null;
    if (typeof d.time === "string") return d.time;
    if (typeof d.time === "number") return ("00000000000000000000" + d.time.toFixed(3)).slice(-20);
    return null;
  }

  function updateDecisions(a) {
    var body = document.querySelector("#decisions tbody");
    if (!body) return;
    var found = a ? [a.decisions, a.last_decisions, a.recent_decisions].filter(Array.isArray)[0] : null;
    var list = found ? found.slice() : [];
    if (list.every(function (d) { return timeKey(d) !== null; })) {
      list.sort(function (x, y) { var a1 = timeKey(x), b1 = timeKey(y); return a1 < b1 ? 1 : a1 > b1 ? -1 : 0; });
    } else {
      list.reverse();
    }
    list = list.slice(0, 20);
    while (body.firstChild) body.removeChild(body.firstChild);
    if (list.length === 0) {
      var tr = document.createElement("tr");
      tr.className = "empty-row";
      var td = document.createElement("td");
      td.colSpan = 7;
      td.textContent = "No decisions reported.";
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    list.forEach(function (d) {
      var row = document.createElement("tr");
      var get = function (k) { return d && typeof d === "object" ? d[k] : undefined; };
      [["time", ""], ["action", ""], ["ready", "num"], ["unacked", "num"], ["current", "num"], ["desired", "num"], ["reason", ""]]
        .forEach(function (f) {
          var cell = document.createElement("td");
          if (f[1]) cell.className = f[1];
          cell.textContent = f[0] === "time" ? shortTime(get("time")) : show(get(f[0]));
          row.appendChild(cell);
        });
      body.appendChild(row);
    });
  }

  function status(text, stale) {
    var el = document.getElementById("ops-status");
    if (!el) return;
    el.className = stale ? "stale" : "";
    el.textContent = text;
  }

  function poll(url) {
    var next = function () { window.setTimeout(function () { poll(url); }, POLL_MS); };
    window.fetch(url, { credentials: "same-origin", cache: "no-store", headers: { accept: "application/json" } })
      .then(function (res) {
        if (res.status === 401) {
          status("Your session has ended: reload the page to log in again.", true);
          return;
        }
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.json().then(function (s) {
          var r = reading(s);
          if (!isFinite(r.t)) throw new Error("no time");
          var last = readings[readings.length - 1];
          if (!last || r.t > last.t) readings.push(r);
          while (readings.length && readings[0].t < r.t - WINDOW_S) readings.shift();
          updateFigures(s);
          status("Live \u00b7 last reading " + new Date(s.at).toLocaleTimeString() + ".", false);
          draw();
          document.body.setAttribute("data-readings", String(readings.length));
          next();
        });
      })
      .catch(function () {
        status("Live update failed at " + new Date().toLocaleTimeString() + "; retrying.", true);
        next();
      });
  }

  function start() {
    var root = document.getElementById("ops-console");
    if (!root || !window.fetch) return;
    plots = window.strataCharts.make("charts", CHARTS, 48, false);
    poll(root.getAttribute("data-stats"));
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
