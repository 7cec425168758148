/* Price history chart on the market page (uPlot), loaded only there.
 *
 * Reads JSON from #market-chart[data-src]: outcome names, unix-second times,
 * one probability series per outcome (0..1) and article markers. Draws step
 * lines, a 0-100% axis, a legend that follows the cursor, and a dashed
 * vertical line per linked article whose headline shows when the cursor is
 * near it. The range links are real links; here they re-fetch in place.
 * After a trade the ticket's response fires "bellwether:traded" and the
 * chart reloads. Live trades (live.js) append points in place through
 * window.BellwetherChart.addPoint(slug, unixSeconds, {outcome: "0.52", ...}). No inline script or style attribute is used: sizes and
 * positions are set through element.style, which the CSP allows.
 */
(function () {
  "use strict";

  var PALETTE = ["#15803d", "#b91c1c", "#1d4ed8", "#a16207", "#7c3aed", "#0e7490", "#be185d", "#4d7c0f", "#c2410c", "#475569"];
  var MARKER_HIT_PX = 8;

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function chartHeight(width) {
    return width < 480 ? 220 : 300;
  }

  function formatTime(seconds) {
    if (seconds == null) return "—";
    var d = new Date(seconds * 1000);
    return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  function formatPct(value) {
    return value == null ? "—" : value.toFixed(1) + "%";
  }

  function Chart(el) {
    this.el = el;
    this.src = el.getAttribute("data-src");
    this.range = el.getAttribute("data-range") || "all";
    this.plot = null;
    this.markers = [];
    this.empty = document.getElementById("chart-empty");
    this.article = document.getElementById("chart-article");
    this.request = 0;
    this.data = null;
    this.pending = [];  // live points that arrived while data was loading
  }

  Chart.prototype.load = function () {
    var self = this;
    var ticket = ++this.request;
    this.loading = true;
    var url = this.src + "?range=" + encodeURIComponent(this.range);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("chart data: HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (ticket !== self.request) return;
        self.loading = false;
        self.draw(data);
        var pending = self.pending;
        self.pending = [];
        pending.forEach(function (point) { self.addPoint(point.t, point.probabilities); });
      })
      .catch(function (error) {
        if (ticket === self.request) self.loading = false;
        if (window.console) console.warn(error);
      });
  };

  Chart.prototype.draw = function (data) {
    var self = this;
    this.data = data;
    this.markers = data.markers || [];
    if (this.empty) this.empty.hidden = !data.empty;
    if (this.article) this.article.hidden = true;
    var series = [{ value: function (u, v) { return formatTime(v); } }];
    data.outcomes.forEach(function (outcome, i) {
      series.push({
        label: outcome.name,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        paths: uPlot.paths.stepped({ align: 1 }),
        points: { show: false },
        value: function (u, v) { return formatPct(v); }
      });
    });
    var columns = [data.t].concat(data.series.map(function (s) {
      return s.map(function (p) { return p * 100; });
    }));
    var width = Math.max(this.el.clientWidth, 200);
    var opts = {
      width: width,
      height: chartHeight(width),
      series: series,
      scales: { x: { time: true }, y: { auto: false, range: [0, 100] } },
      axes: [
        { stroke: "#5b6270", grid: { stroke: "#eceef2" }, ticks: { stroke: "#e3e5ea" } },
        {
          stroke: "#5b6270", size: 52, grid: { stroke: "#eceef2" }, ticks: { stroke: "#e3e5ea" },
          splits: function () { return [0, 25, 50, 75, 100]; },
          values: function (u, splits) { return splits.map(function (v) { return v + "%"; }); }
        }
      ],
      cursor: { y: false, points: { size: 7 } },
      legend: { live: true },
      hooks: {
        draw: [function (u) { self.drawMarkers(u); }],
        setCursor: [function (u) { self.hoverMarker(u); }]
      }
    };
    if (this.plot) this.plot.destroy();
    this.plot = new uPlot(opts, columns, this.el);
  };

  /* Append the prices after a live trade at ``t`` (unix seconds). Trades
     arrive in commit order, so their prices are the newest; one timed at or
     before the last point (the "now" point the server ends the series with,
     or a trade the loaded data already holds) sets that last point instead. */
  Chart.prototype.addPoint = function (t, probabilities) {
    if (this.loading || !this.data || !this.plot) {
      this.pending.push({ t: t, probabilities: probabilities });
      return;
    }
    var data = this.data;
    var times = data.t;
    var last = times.length ? times[times.length - 1] : -Infinity;
    var values = data.outcomes.map(function (outcome) { return parseFloat(probabilities[outcome.slug]); });
    if (values.some(isNaN)) return;
    if (t <= last) {
      values.forEach(function (v, i) { data.series[i][times.length - 1] = v; });
    } else {
      times.push(t);
      values.forEach(function (v, i) { data.series[i].push(v); });
    }
    data.empty = false;
    if (this.empty) this.empty.hidden = true;
    this.plot.setData([times].concat(data.series.map(function (s) {
      return s.map(function (p) { return p * 100; });
    })));
  };

  Chart.prototype.drawMarkers = function (u) {
    if (!this.markers.length) return;
    var ctx = u.ctx;
    var top = u.bbox.top;
    var bottom = u.bbox.top + u.bbox.height;
    var ratio = window.devicePixelRatio || 1;
    ctx.save();
    ctx.strokeStyle = "rgba(22, 24, 29, 0.55)";
    ctx.fillStyle = "rgba(22, 24, 29, 0.75)";
    ctx.lineWidth = ratio;
    ctx.setLineDash([4 * ratio, 3 * ratio]);
    this.markers.forEach(function (m) {
      var x = Math.round(u.valToPos(m.t, "x", true));
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, bottom);
      ctx.stroke();
      ctx.beginPath();
      ctx.moveTo(x - 4 * ratio, top);
      ctx.lineTo(x + 4 * ratio, top);
      ctx.lineTo(x, top + 6 * ratio);
      ctx.closePath();
      ctx.fill();
    });
    ctx.restore();
  };

  Chart.prototype.hoverMarker = function (u) {
    if (!this.article || !this.markers.length || u.cursor.left == null || u.cursor.left < 0) return;
    var left = u.cursor.left;
    var best = null;
    var bestDistance = MARKER_HIT_PX;
    this.markers.forEach(function (m) {
      var distance = Math.abs(u.valToPos(m.t, "x") - left);
      if (distance <= bestDistance) { best = m; bestDistance = distance; }
    });
    if (!best) return;  // the last headline stays, so its link can be clicked
    var link = document.createElement("a");
    link.href = best.url;
    link.textContent = best.title;
    var when = document.createElement("span");
    when.className = "chart-card__when";
    when.textContent = " · " + formatTime(best.t);
    this.article.textContent = "In the news: ";
    this.article.appendChild(link);
    this.article.appendChild(when);
    this.article.hidden = false;
  };

  Chart.prototype.resize = function () {
    if (!this.plot) return;
    var width = Math.max(this.el.clientWidth, 200);
    if (width !== this.plot.width) this.plot.setSize({ width: width, height: chartHeight(width) });
  };

  function bindRanges(chart) {
    var links = document.querySelectorAll(".chart-ranges [data-range]");
    Array.prototype.forEach.call(links, function (link) {
      link.addEventListener("click", function (event) {
        if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
        event.preventDefault();
        chart.range = link.getAttribute("data-range");
        Array.prototype.forEach.call(links, function (other) {
          var active = other === link;
          other.classList.toggle("is-active", active);
          if (active) other.setAttribute("aria-current", "true");
          else other.removeAttribute("aria-current");
        });
        if (window.history && history.replaceState) {
          var url = new URL(window.location.href);
          url.searchParams.set("range", chart.range);
          history.replaceState(null, "", url);
        }
        chart.load();
      });
    });
  }

  ready(function () {
    var el = document.getElementById("market-chart");
    if (!el || typeof window.uPlot === "undefined") return;
    var chart = new Chart(el);
    var slug = (el.closest("[data-market]") || el).getAttribute("data-market");
    window.BellwetherChart = {
      chart: chart,
      addPoint: function (market, t, probabilities) {
        if (market && slug && market !== slug) return;
        chart.addPoint(t, probabilities);
      }
    };
    bindRanges(chart);
    chart.load();
    if (window.ResizeObserver) {
      var pending = 0;
      new ResizeObserver(function () {
        cancelAnimationFrame(pending);
        pending = requestAnimationFrame(function () { chart.resize(); });
      }).observe(el);
    } else {
      window.addEventListener("resize", function () { chart.resize(); });
    }
    document.body.addEventListener("bellwether:traded", function () { chart.load(); });
  });
})();
