// The ops console's line charts, shared by its live pages: each chart is drawn with the
// vendored uPlot from a spec `{id, range, lines: [{label, col, stroke, fill, dash}]}`, fed
// columns by name, and resized with the window. Loaded before the page's own script.
window.strataCharts = (function () {
  "use strict";

  function size(el) {
    return { width: Math.max(260, el.clientWidth), height: 180 };
  }

  // Shows the section `sectionId` and draws every chart of `specs` whose element exists;
  // `axisSize` is the width of the y axis, `points` whether each reading gets a dot.
  // Returns the charts (none when uPlot did not load: the page keeps its table).
  function make(sectionId, specs, axisSize, points) {
    var plots = [];
    if (typeof window.uPlot !== "function") return plots;
    var section = document.getElementById(sectionId);
    if (section) section.hidden = false;
    specs.forEach(function (c) {
      var el = document.getElementById(c.id);
      if (!el) return;
      var s = size(el);
      var opts = {
        width: s.width, height: s.height,
        scales: { x: { time: true }, y: { range: c.range } },
        legend: { live: false },
        axes: [{ stroke: "#52606d", grid: { stroke: "#e4ebf3" } },
               { stroke: "#52606d", grid: { stroke: "#e4ebf3" }, size: axisSize }],
        series: [{}].concat(c.lines.map(function (l) {
          return { label: l.label, stroke: l.stroke, fill: l.fill, dash: l.dash, width: 2,
                   spanGaps: false, points: points ? { show: true, size: 4 } : { show: false } };
        }))
      };
      var data = [[]].concat(c.lines.map(function () { return []; }));
      plots.push({ spec: c, el: el, plot: new window.uPlot(opts, data, el) });
    });
    var pending = null;
    window.addEventListener("resize", function () {
      window.clearTimeout(pending);
      pending = window.setTimeout(function () {
        plots.forEach(function (p) { p.plot.setSize(size(p.el)); });
      }, 150);
    });
    return plots;
  }

  // Gives each chart its lines' columns of `cols` (by `col`) against `cols.t`.
  function draw(plots, cols) {
    plots.forEach(function (p) {
      p.plot.setData([cols.t].concat(p.spec.lines.map(function (l) { return cols[l.col]; })));
    });
  }

  return { make: make, draw: draw };
})();
