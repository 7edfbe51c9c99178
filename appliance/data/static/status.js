// The status page's charts: the last 24 hours from /history.json (appliance/state/history.py),
// drawn with uPlot (uPlot.iife.min.js beside this file). Served by the unit: no internet.
// Times are shown in the unit's zone (body data-tz), whatever the laptop's own zone is.
(function () {
  "use strict";
  var MODEM_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
                       "#8c564b", "#e377c2"];
  var body = document.body;
  var tz = body.getAttribute("data-tz");
  var offset = Number(body.getAttribute("data-tz-offset")) || 0;
  var timeLabel = body.getAttribute("data-time-label") || "Time";
  var charts = [];
  var xRange = null;  // the same 24 hours on every chart, whatever its points
  var BIN = 10;  // minutes per bar of the replies chart: 144 bars a day fit a phone

  var hhmm = uPlot.fmtDate("{HH}:{mm}"), dayMonth = uPlot.fmtDate("{D} {MMM}");
  // 24-hour clock, and the date under midnight: how times are written in Pakistan.
  function timeTicks(u, splits) {
    return splits.map(function (ts) {
      var d = tzDate(ts);
      return d.getHours() === 0 && d.getMinutes() === 0 ? dayMonth(d) : hhmm(d);
    });
  }

  function tzDate(ts) {
    // No zone name known: shift by the unit's offset and read the clock as UTC.
    return tz ? uPlot.tzDate(new Date(ts * 1e3), tz)
              : uPlot.tzDate(new Date((ts + offset) * 1e3), "Etc/UTC");
  }

  function hasData(col) {
    for (var i = 0; i < col.length; i++) { if (col[i] !== null) { return true; } }
    return false;
  }

  function empty(el, text) {
    var p = document.createElement("p");
    p.className = "empty";
    p.textContent = text;
    el.appendChild(p);
    el.setAttribute("data-drawn", "empty");
  }

  function draw(el, series, data, yOpts) {
    if (series.length === 0) { empty(el, el.getAttribute("data-empty")); return; }
    var opts = {
      width: el.clientWidth || 300,
      height: 150,
      tzDate: tzDate,
      cursor: {drag: {x: false, y: false}},
      scales: {x: {time: true, range: function () { return xRange; }}, y: yOpts || {}},
      axes: [{space: 55, values: timeTicks}, {size: 46}],
      series: [{label: timeLabel, value: function (u, ts) {
        return ts === null ? "–" : dayMonth(tzDate(ts)) + " " + hhmm(tzDate(ts));
      }}].concat(series),
      legend: {show: true},
    };
    charts.push({el: el, plot: new uPlot(opts, data, el)});
    el.setAttribute("data-drawn", String(series.length));
  }

  // Replies per minute, by verdict, averaged over BIN minutes and stacked: each series is
  // drawn as the running sum of the verdicts up to it, the largest first, so that each band
  // shows one verdict; the legend shows the verdict's own rate. A bin in which the unit was
  // off the whole time is a gap.
  function binned(col) {
    var out = [];
    for (var i = 0; i < col.length; i += BIN) {
      var sum = 0, seen = 0;
      for (var j = i; j < Math.min(i + BIN, col.length); j++) {
        if (col[j] !== null) { sum += col[j]; seen++; }
      }
      out.push(seen ? sum / BIN : null);
    }
    return out;
  }

  function drawReplies(el, h) {
    var labels = JSON.parse(el.getAttribute("data-labels"));
    var colours = JSON.parse(el.getAttribute("data-colours"));
    var kinds = Object.keys(h.replies).filter(function (k) { return h.replies_24h[k] > 0; });
    if (kinds.length === 0) { kinds = ["no_record", "hit"]; }
    var times = h.times.filter(function (t, i) { return i % BIN === 0; });
    var rates = {}, sums = [], running = times.map(function () { return null; });
    kinds.forEach(function (k) {
      rates[k] = binned(h.replies[k]);
      running = running.map(function (v, i) {
        var x = rates[k][i];
        return x === null ? v : (v || 0) + x;
      });
      sums.push(running);
    });
    var series = [], data = [times];
    for (var j = kinds.length - 1; j >= 0; j--) {
      (function (k) {
        series.push({
          label: labels[k] || k, stroke: colours[k], fill: colours[k], width: 0,
          paths: uPlot.paths.bars({size: [1, 100], align: 1}),
          value: function (u, v, si, idx) {
            var x = idx === null ? null : rates[k][idx];
            return x === null || x === undefined ? "–" : x.toFixed(1);
          },
        });
      })(kinds[j]);
      data.push(sums[j]);
    }
    draw(el, series, data, {range: function (u, min, max) { return [0, Math.max(1, max)]; }});
  }

  function drawGauge(el, h, key, yOpts) {
    var series = [], data = [h.times];
    if (key === "queue") {
      if (hasData(h.queue)) {
        series.push({label: el.parentNode.firstChild.textContent, stroke: "#1f77b4",
                     fill: "rgba(31,119,180,.15)", width: 1.5,
                     paths: uPlot.paths.stepped({align: 1})});
        data.push(h.queue);
      }
    } else {
      Object.keys(h[key]).forEach(function (modem, i) {
        if (!hasData(h[key][modem])) { return; }
        series.push({label: modem, stroke: MODEM_COLOURS[i % MODEM_COLOURS.length],
                     width: 1.5, spanGaps: false});
        data.push(h[key][modem]);
      });
    }
    draw(el, series, data, yOpts);
  }

  function render(h) {
    if (h.times && h.times.length) {
      xRange = [h.times[0], h.times[h.times.length - 1] + h.step_s];
    }
    var els = document.querySelectorAll(".chart[data-series]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i], key = el.getAttribute("data-series");
      if (!h.times) { empty(el, el.getAttribute("data-empty")); continue; }
      if (key === "replies") { drawReplies(el, h); }
      else if (key === "rssi") { drawGauge(el, h, key, {range: [0, 31]}); }
      else if (key === "queue") {
        drawGauge(el, h, key, {range: function (u, min, max) { return [0, Math.max(5, max)]; }});
      } else { drawGauge(el, h, key); }
    }
  }

  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      charts.forEach(function (c) { c.plot.setSize({width: c.el.clientWidth, height: 150}); });
    }, 150);
  });

  fetch("/history.json", {cache: "no-store"})
    .then(function (r) {
      if (!r.ok) { throw new Error("/history.json: HTTP " + r.status); }
      return r.json();
    })
    .then(render)
    .catch(function (err) {
      var els = document.querySelectorAll(".chart[data-series]");
      for (var i = 0; i < els.length; i++) {
        empty(els[i], String(err));
        els[i].setAttribute("data-drawn", "error");
      }
    });
})();
