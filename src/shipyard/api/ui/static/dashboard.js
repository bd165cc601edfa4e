// Shipyard dashboard: charts (uPlot) and live updates (Server-Sent Events -> htmx triggers).
// No inline scripts: everything the pages need is here, served from the package.
(function () {
  "use strict";
  var charts = [];

  var SERIES = {
    runs: [{ label: "runs/min", key: "runs", stroke: "#0b5cad" },
           { label: "errors/min", key: "errors", stroke: "#c62828" }],
    usage: [{ label: "tokens", key: "tokens", stroke: "#6f42c1", scale: "tokens" },
            { label: "spend $", key: "cost", stroke: "#1a7f37", scale: "usd" }]
  };

  var PALETTE = ["#0b5cad", "#6f42c1", "#1a7f37", "#c62828", "#9a6700", "#0a7c86", "#5b6570"];

  // A breakdown chart ("by-tokens", "by-cost"): one line a group (agent, model or tenant).
  function seriesOf(kind, data) {
    if (SERIES[kind]) { return SERIES[kind]; }
    return data.by.labels.map(function (label, i) {
      return { label: label, index: i, stroke: PALETTE[i % PALETTE.length] };
    });
  }

  function columns(kind, data) {
    if (SERIES[kind]) {
      return [data.times].concat(SERIES[kind].map(function (s) { return data[s.key]; }));
    }
    var values = kind === "by-cost" ? data.by.cost : data.by.tokens;
    return [data.times].concat(values);
  }

  function draw(el, data) {
    var kind = el.dataset.chart;
    var series = seriesOf(kind, data);
    var axes = [{}, { scale: (series[0] && series[0].scale) || "y" }];
    if (kind === "usage") { axes.push({ scale: "usd", side: 1, grid: { show: false } }); }
    var opts = {
      width: Math.max(el.clientWidth, 320), height: 220, axes: axes,
      series: [{}].concat(series.map(function (s) {
        return { label: s.label, stroke: s.stroke, width: 2, scale: s.scale || "y" };
      }))
    };
    var chart = new uPlot(opts, columns(kind, data), el);
    charts.push({ el: el, chart: chart, kind: kind, labels: (data.by || {}).labels });
  }

  function update(c, data) {
    var same = SERIES[c.kind] || JSON.stringify(c.labels) === JSON.stringify(data.by.labels);
    if (same) { c.chart.setData(columns(c.kind, data)); return; }
    c.chart.destroy();  // other groups than drawn: a new chart with their lines
    charts.splice(charts.indexOf(c), 1);
    draw(c.el, data);
  }

  function loadCharts(redraw) {
    var els = document.querySelectorAll("[data-chart]");
    if (!els.length) { return; }
    fetch(els[0].dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        if (redraw && charts.length) {
          charts.slice().forEach(function (c) { update(c, data); });
        } else {
          els.forEach(function (el) { draw(el, data); });
        }
      })
      .catch(function () { /* the page stays as rendered; the next update retries */ });
  }

  function live(url) {
    var source = new EventSource(url);
    source.addEventListener("runs", function () {
      htmx.trigger(document.body, "shipyard:runs");
      loadCharts(true);
    });
    source.addEventListener("steps", function (message) {
      htmx.trigger(document.body, "shipyard:steps");
      var event = JSON.parse(message.data);
      if (event.type === "run.completed" || event.type === "run.failed") {
        source.close();
        window.setTimeout(function () { window.location.reload(); }, 300);
      }
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    loadCharts(false);
    var url = document.body.dataset.live;
    if (url) { live(url); }
  });
})();
