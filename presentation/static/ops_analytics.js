// The analytics page's live part (served by presentation; the CSP allows no other origin).
// It polls the page's JSON route every 5 s and redraws the charts (the vendored uPlot),
// the table and the watermark. Without it the page still shows what it was rendered with.
(function () {
  "use strict";

  var POLL_MS = 5000;
  var MISSING = "\u2013";

  function money(cents) {
    var s = (Math.abs(cents) / 100).toFixed(2).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (cents < 0 ? "-$" : "$") + s;
  }

  var zeroBased = function (u, min, max) { return [0, Math.max(1, (max || 0) * 1.15)]; };

  var CHARTS = [
    { id: "chart-analytics-orders", range: zeroBased, lines: [
      { label: "placed", col: "placed", stroke: "#1d4ed8" },
      { label: "fulfilled", col: "fulfilled", stroke: "#166534" },
      { label: "rejected", col: "rejected", stroke: "#b91c1c" }] },
    { id: "chart-analytics-revenue", range: zeroBased, lines: [
      { label: "revenue $", col: "revenue", stroke: "#166534", fill: "rgba(22,101,52,0.08)" }] },
    { id: "chart-analytics-rejections", range: function () { return [0, 100]; }, lines: [
      { label: "rejected %", col: "rate", stroke: "#b91c1c" }] }
  ];

  var plots = [];

  function columns(view) {
    var cols = { t: [], placed: [], fulfilled: [], rejected: [], revenue: [], rate: [] };
    (view.windows || []).forEach(function (w) {
      cols.t.push(Date.parse(w.start) / 1000);
      cols.placed.push(w.placed);
      cols.fulfilled.push(w.fulfilled);
      cols.rejected.push(w.rejected);
      cols.revenue.push(w.revenue_cents / 100);
      cols.rate.push(typeof w.rejection_rate === "number" ? w.rejection_rate * 100 : null);
    });
    return cols;
  }

  function cell(row, text, num) {
    var td = document.createElement("td");
    if (num) td.className = "num";
    td.textContent = text;
    row.appendChild(td);
  }

  function updateTable(view) {
    var body = document.querySelector("#analytics-windows tbody");
    if (!body) return;
    var windows = (view.windows || []).slice(-15).reverse();
    while (body.firstChild) body.removeChild(body.firstChild);
    windows.forEach(function (w) {
      var row = document.createElement("tr");
      var p = (w.top_products || [])[0], c = (w.categories || [])[0];
      cell(row, w.start.slice(11, 16), false);
      cell(row, String(w.placed), true);
      cell(row, String(w.fulfilled), true);
      cell(row, money(w.revenue_cents), true);
      cell(row, String(w.rejected), true);
      cell(row, typeof w.rejection_rate === "number" ? (w.rejection_rate * 100).toFixed(1) + "%" : MISSING, true);
      cell(row, String(w.late_events), true);
      cell(row, p ? p.sku + " (" + p.units + " units, " + money(p.revenue_cents) + ")" : "", false);
      cell(row, c ? c.category + " (" + money(c.revenue_cents) + ")" : "", false);
      body.appendChild(row);
    });
  }

  function text(id, value) {
    var el = document.getElementById(id);
    if (el) el.textContent = value;
  }

  function update(view) {
    var cols = columns(view);
    window.strataCharts.draw(plots, cols);
    updateTable(view);
    text("analytics-watermark", view.watermark ? view.watermark.replace("T", " ").slice(0, 19) + " UTC" : "none yet");
    text("analytics-late", String(view.late_events));
    text("analytics-status", "Live \u00b7 read " + new Date(view.at).toLocaleTimeString() + ".");
    document.body.setAttribute("data-analytics-readings",
      String(Number(document.body.getAttribute("data-analytics-readings") || 0) + 1));
  }

  function poll(url) {
    var next = function () { window.setTimeout(function () { poll(url); }, POLL_MS); };
    window.fetch(url, { credentials: "same-origin", cache: "no-store", headers: { accept: "application/json" } })
      .then(function (res) {
        if (res.status === 401) {
          text("analytics-status", "Your session has ended: reload the page to log in again.");
          return;
        }
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.json().then(function (view) { update(view); next(); });
      })
      .catch(function () {
        text("analytics-status", "Live update failed at " + new Date().toLocaleTimeString() + "; retrying.");
        next();
      });
  }

  function start() {
    var root = document.getElementById("ops-analytics");
    if (!root || !window.fetch) return;
    plots = window.strataCharts.make("analytics-charts", CHARTS, 56, true);
    poll(root.getAttribute("data-source"));
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
