/* Live prices: apply the trade events of the live streams to the page.
 *
 * The stream's address starts with body[data-live-base] ("" = this origin).
 * A market page (.market-page[data-market]) follows its own market's stream
 * (/live/markets/<slug>/); a page listing several markets (the markets index,
 * the home strip, the article and section panels, whose rows carry
 * data-market) follows the site-wide stream (/live/markets/). One
 * EventSource per page. Panels arrive later through htmx, so the page is
 * looked at again after every htmx swap.
 *
 * Each `trade` event (JSON, see bellwether/markets/events.py) updates:
 * - on the market page: the odds (#market-probabilities [data-outcome]) and
 *   their 24h change, the ticket's outcome prices, volume and trade count,
 *   the chart (window.BellwetherChart.addPoint, from market-chart.js) and
 *   #recent-trades (newest first, one row per trade id, at most 20 rows);
 *   a quote on the open ticket is asked for again, so the confirm button
 *   always carries the current price;
 * - on lists: each row's probability, its change, volume and trade count.
 * What changed flashes briefly (class "live-flash").
 *
 * Without JavaScript, without EventSource or without a reachable live
 * server nothing here runs or nothing arrives: the page stays as the server
 * rendered it. No inline script, no eval (the site's CSP forbids both).
 */
(function () {
  "use strict";

  var MINUS = "\u2212";
  var FLASH_MS = 1200;
  var RETRY_MIN_MS = 2000;
  var RETRY_MAX_MS = 30000;
  var SEEN_LIMIT = 2000;
  // Where lists show a market's probability: the index row, a panel row, an article card.
  var ROW_PROBABILITY = ".mi-prob__value, .mp-row__odds strong, .mp-card__prob strong";
  var REQUOTE_NOTE = "Price moved \u2014 quote updated";

  // ---- formatting, as the template filters do (market_format.py) ---------

  /* Round half to even, as Python's round() does. */
  function pyRound(x) {
    var r = Math.round(x);
    if (Math.abs(x % 1) === 0.5) r = 2 * Math.round(x / 2);
    return r;
  }

  function percent(p) {
    if (0 < p && p < 0.005) return "<1%";
    if (0.995 < p && p < 1) return ">99%";
    return pyRound(p * 100) + "%";
  }

  function wholePoints(change) {
    return pyRound(change * 100);
  }

  function points(change) {
    var pts = wholePoints(change);
    if (pts === 0) return "0";
    return pts > 0 ? "+" + pts : MINUS + Math.abs(pts);
  }

  /* Return a decimal string ("105.124948") as integer micro-units, without floats. */
  function toMicro(text) {
    var s = String(text).trim();
    var negative = s.charAt(0) === "-";
    if (negative) s = s.slice(1);
    var parts = s.split(".");
    var frac = ((parts[1] || "") + "000000").slice(0, 6);
    var value = parseInt(parts[0] || "0", 10) * 1000000 + parseInt(frac, 10);
    return negative ? -value : value;
  }

  function credits(micro) {
    var sign = micro < 0 ? MINUS : "";
    var cents = Math.floor((Math.abs(micro) + 5000) / 10000);
    var whole = Math.floor(cents / 100).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    var rest = cents % 100;
    return sign + whole + "." + (rest < 10 ? "0" : "") + rest;
  }

  function tradesText(n) {
    return n + " trade" + (n === 1 ? "" : "s");
  }

  function flash(el) {
    if (!el) return;
    el.classList.remove("live-flash");
    void el.offsetWidth;  // restart the animation
    el.classList.add("live-flash");
    clearTimeout(el.__liveFlash);
    el.__liveFlash = setTimeout(function () { el.classList.remove("live-flash"); }, FLASH_MS);
  }

  function each(root, selector, fn) {
    Array.prototype.forEach.call(root.querySelectorAll(selector), fn);
  }

  function setText(el, text) {
    if (!el || el.textContent === text) return false;
    el.textContent = text;
    return true;
  }

  // ---- changes: data-change holds the change when the page was drawn -----

  /* Return the change from the probability a change was measured from:
     ``holder`` carries data-probability and data-change as last drawn. */
  function changeFor(holder, probabilityNow) {
    var then = parseFloat(holder.getAttribute("data-probability"));
    var change = parseFloat(holder.getAttribute("data-change"));
    if (isNaN(then) || isNaN(change)) return null;
    var now = probabilityNow - (then - change);
    holder.setAttribute("data-probability", probabilityNow.toFixed(6));
    holder.setAttribute("data-change", now.toFixed(6));
    return now;
  }

  /* Set a list's change badge ("+14 pts", class change--up) for ``change``. */
  function renderRowChange(el, change) {
    var pts = wholePoints(change);
    var direction = pts > 0 ? "up" : pts < 0 ? "down" : "flat";
    el.classList.remove("change--up", "change--down", "change--flat");
    el.classList.add("change--" + direction);
    // The figure is the text right after the visually hidden words.
    for (var node = el.firstChild; node; node = node.nextSibling) {
      if (node.nodeType === 3 && /\S/.test(node.textContent)) {
        node.textContent = node.textContent.replace(/^\s*\S+/, points(change));
        return;
      }
    }
  }

  function renderOddsChange(el, change) {
    var trend = change > 0.0005 ? "up" : change < -0.0005 ? "down" : "flat";
    el.classList.remove("up", "down", "flat");
    el.classList.add(trend);
    var arrow = trend === "up" ? "\u25B2" : trend === "down" ? "\u25BC" : "";
    setText(el, arrow + " " + points(change) + " pts 24h");
  }

  // ---- state: which trades are already on the page -----------------------

  var seen = {};
  var seenOrder = [];
  var latestByMarket = {};  // market slug -> highest trade id whose prices are shown
  var lastMarketEvent = null;  // the newest event applied to the market page

  function markSeen(id) {
    if (seen[id]) return false;
    seen[id] = true;
    seenOrder.push(id);
    if (seenOrder.length > SEEN_LIMIT) delete seen[seenOrder.shift()];
    return true;
  }

  function tradeIdsOnPage() {
    var ids = [];
    each(document, "#recent-trades tr[data-trade]", function (row) {
      var id = parseInt(row.getAttribute("data-trade"), 10);
      if (!isNaN(id)) ids.push(id);
    });
    return ids;
  }

  // ---- the market page ---------------------------------------------------

  function marketPage() {
    return document.querySelector(".market-page[data-market]");
  }

  function outcomeName(slug) {
    var el = document.querySelector("#market-probabilities [data-outcome=\"" + cssEscape(slug) + "\"] .odds__name");
    return el ? el.textContent.trim() : slug;
  }

  function cssEscape(value) {
    return window.CSS && CSS.escape ? CSS.escape(value) : String(value).replace(/["\\]/g, "\\$&");
  }

  function applyOdds(event) {
    var probabilities = event.probabilities || {};
    Object.keys(probabilities).forEach(function (slug) {
      var p = parseFloat(probabilities[slug]);
      var sel = "[data-outcome=\"" + cssEscape(slug) + "\"]";
      each(document, "#market-probabilities " + sel, function (item) {
        var changeEl = item.querySelector(".odds__change[data-change]");
        if (changeEl) {
          // The odds item holds the probability, its badge the change.
          changeEl.setAttribute("data-probability", item.getAttribute("data-probability"));
          var change = changeFor(changeEl, p);
          if (change !== null) renderOddsChange(changeEl, change);
        }
        item.setAttribute("data-probability", p.toFixed(6));
        if (setText(item.querySelector(".odds__pct"), percent(p))) flash(item);
      });
      each(document, "#trade-ticket input[name=outcome][value=\"" + cssEscape(slug) + "\"]", function (input) {
        var label = input.closest("label");
        if (label) setText(label.querySelector(".choice__price"), percent(p));
      });
    });
  }

  function applyCounts(root, event) {
    // Volume and count change with every trade: skip an event older than what is shown.
    var counter = root.querySelector("[data-live=trades][data-trade-count]");
    if (counter) {
      if (event.trade_count <= parseInt(counter.getAttribute("data-trade-count"), 10)) return;
      counter.setAttribute("data-trade-count", String(event.trade_count));
    }
    var volume = toMicro(event.volume);
    each(root, "[data-live=volume]", function (el) {
      // The number comes first ("12.50 cr", "12.50 cr traded"); the words stay.
      if (setText(el, el.textContent.replace(/^\s*\S+/, credits(volume)))) flash(el);
    });
    each(root, "[data-live=trades]", function (el) {
      var n = event.trade_count;
      var num = el.querySelector(".num");
      if (num) {
        if (setText(num, String(n))) {
          if (num.nextSibling) num.nextSibling.textContent = n === 1 ? " trade" : " trades";
          flash(el);
        }
      } else if (setText(el, tradesText(n))) {
        flash(el);
      }
    });
  }

  function tradeRow(event) {
    var row = document.createElement("tr");
    row.setAttribute("data-trade", String(event.trade_id));
    function cell(className) {
      var td = document.createElement("td");
      if (className) td.className = className;
      row.appendChild(td);
      return td;
    }
    cell().textContent = event.user;
    var what = cell();
    var side = document.createElement("span");
    side.className = "side side--" + event.side;
    side.textContent = event.side === "sell" ? "Sell" : "Buy";
    what.appendChild(side);
    what.appendChild(document.createTextNode(" " + outcomeName(event.outcome)));
    cell("num").textContent = credits(toMicro(event.shares));
    cell("num").textContent = credits(toMicro(event.amount)) + " cr";
    var time = document.createElement("time");
    time.setAttribute("datetime", event.at);
    var at = new Date(event.at);
    if (!isNaN(at)) time.title = at.toLocaleString();
    time.textContent = "just now";
    cell().appendChild(time);
    return row;
  }

  function tradesTable(section) {
    var tbody = section.querySelector("table.trades tbody");
    if (tbody) return tbody;
    // The empty state: build the table the server draws once there are trades.
    var wrap = document.createElement("div");
    wrap.className = "table-scroll";
    var table = document.createElement("table");
    table.className = "table trades";
    var head = table.createTHead().insertRow();
    [["Who", ""], ["Trade", ""], ["Shares", "num"], ["Amount", "num"], ["When", ""]].forEach(function (h) {
      var th = document.createElement("th");
      th.scope = "col";
      if (h[1]) th.className = h[1];
      th.textContent = h[0];
      head.appendChild(th);
    });
    tbody = document.createElement("tbody");
    table.appendChild(tbody);
    wrap.appendChild(table);
    each(section, "p.muted", function (p) { p.remove(); });
    section.appendChild(wrap);
    return tbody;
  }

  function applyRecentTrade(event) {
    var section = document.getElementById("recent-trades");
    if (!section) return;
    if (section.querySelector("tr[data-trade=\"" + event.trade_id + "\"]")) return;
    var tbody = tradesTable(section);
    var table = tbody.closest("table");
    var limit = parseInt(table.getAttribute("data-limit"), 10) || 20;
    var row = tradeRow(event);
    var rows = tbody.querySelectorAll("tr[data-trade]");
    var before = null;
    for (var i = 0; i < rows.length; i++) {
      if (parseInt(rows[i].getAttribute("data-trade"), 10) < event.trade_id) { before = rows[i]; break; }
    }
    if (!before && rows.length >= limit) return;  // older than every row shown
    tbody.insertBefore(row, before);
    flash(row);
    var all = tbody.querySelectorAll("tr[data-trade]");
    for (var j = limit; j < all.length; j++) all[j].remove();
  }

  function applyChart(event) {
    var chart = window.BellwetherChart;
    if (!chart || typeof chart.addPoint !== "function") return;
    var at = Date.parse(event.at);
    if (isNaN(at)) return;
    chart.addPoint(event.market, at / 1000, event.probabilities);
  }

  // ---- the ticket: a quote on screen is re-asked after any trade ---------

  function requote() {
    var form = document.getElementById("ticket-form");
    var confirm = document.getElementById("ticket-confirm");
    if (!form || !confirm || !window.htmx) return;
    // A trade on its way (the confirm was clicked) must not be replaced by a quote.
    if (confirm.disabled || form.classList.contains("htmx-request")) return;
    var choice = form.querySelector("input.ticket-choice[name=outcome]:checked") || form.querySelector("input.ticket-choice:checked");
    if (!choice) return;
    // The fields quote on "change from:.ticket-choice": the same request a click makes.
    htmx.trigger(choice, "change", { bellwetherRequote: true });
  }

  function noteRequote(evt) {
    var target = evt.detail && evt.detail.target;
    // afterSettle fires on every swapped element (out-of-band ones too) with the same detail.
    if (!target || target.id !== "ticket-quote" || evt.target !== target) return;
    var config = evt.detail.requestConfig;
    var trigger = config && config.triggeringEvent;
    if (!trigger || !trigger.detail || !trigger.detail.bellwetherRequote) return;
    if (!target.querySelector("#ticket-confirm") || target.querySelector(".ticket-requoted")) return;
    var note = document.createElement("p");
    note.className = "ticket-requoted";
    note.setAttribute("role", "status");
    note.textContent = REQUOTE_NOTE;
    target.insertBefore(note, target.firstChild);
    flash(target.querySelector(".quote"));
  }

  function applyToMarketPage(event) {
    var page = marketPage();
    if (!page || page.getAttribute("data-market") !== event.market) return;
    var fresh = event.trade_id > (latestByMarket[event.market] || 0);
    applyCounts(document.querySelector(".market-head") || document, event);
    if (fresh) {
      latestByMarket[event.market] = event.trade_id;
      lastMarketEvent = event;
      applyOdds(event);
      var empty = document.getElementById("chart-empty");
      if (empty) empty.hidden = true;
      applyChart(event);
    }
    applyRecentTrade(event);
    if (fresh) requote();
  }

  // ---- lists: the index, the home strip, the panels ----------------------

  function applyToRows(event) {
    var probabilities = event.probabilities || {};
    each(document, "[data-market=\"" + cssEscape(event.market) + "\"][data-outcome]", function (row) {
      if (row.classList.contains("market-page")) return;
      // A market's trades, commits and trade counts share one order; the
      // site-wide stream's ids do not (PostgreSQL takes ids before commit).
      var shown = parseInt(row.getAttribute("data-trade-count"), 10);
      if (!isNaN(shown) && event.trade_count <= shown) return;
      row.setAttribute("data-trade-count", String(event.trade_count));
      var p = parseFloat(probabilities[row.getAttribute("data-outcome")]);
      if (isNaN(p)) return;
      var value = row.querySelector(ROW_PROBABILITY);
      if (value) {  // a resolved market shows its result instead
        var change = changeFor(row, p);
        var badge = row.querySelector(".change");
        if (badge && change !== null) renderRowChange(badge, change);
        if (setText(value, percent(p))) flash(value);
      }
      applyCounts(row, event);
    });
  }

  // ---- the stream --------------------------------------------------------

  function apply(event) {
    if (!event || typeof event.trade_id !== "number") return;
    if (!markSeen(event.trade_id)) return;
    if (marketPage()) applyToMarketPage(event);
    else applyToRows(event);
  }

  function Stream(path, since) {
    this.path = path;
    this.since = since;  // null: from now on
    this.lastEventId = "";  // the id of the last event received, as EventSource keeps it
    this.source = null;
    this.delay = RETRY_MIN_MS;
    this.timer = 0;
  }

  Stream.prototype.url = function () {
    var base = (document.body.getAttribute("data-live-base") || "").replace(/\/+$/, "");
    var url = base + this.path;
    var since = this.lastEventId || (this.since === null ? "" : String(this.since));
    if (since !== "") url += "?since=" + encodeURIComponent(since);
    return url;
  };

  Stream.prototype.open = function () {
    var self = this;
    var source;
    try {
      source = new EventSource(this.url());
    } catch (error) {
      if (window.console) console.warn("live stream:", error);
      return;
    }
    this.source = source;
    setState("connecting");
    source.addEventListener("open", function () {
      self.delay = RETRY_MIN_MS;
      setState("open");
    });
    source.addEventListener("trade", function (message) {
      if (message.lastEventId) self.lastEventId = message.lastEventId;
      var event;
      try { event = JSON.parse(message.data); } catch (error) { return; }
      apply(event);
    });
    source.addEventListener("error", function () {
      // The browser retries by itself (with Last-Event-ID) unless the stream
      // was refused outright; then start again after the last id received.
      if (source.readyState !== EventSource.CLOSED) {
        setState("connecting");
        return;
      }
      setState("closed");
      clearTimeout(self.timer);
      self.timer = setTimeout(function () { self.open(); }, self.delay);
      self.delay = Math.min(self.delay * 2, RETRY_MAX_MS);
    });
  };

  var stream = null;

  /* body[data-live-state]: "connecting", "open" or "closed" (for styles and tests). */
  function setState(state) {
    document.body.setAttribute("data-live-state", state);
  }

  function connect() {
    if (stream || typeof window.EventSource === "undefined") return;
    var page = marketPage();
    if (page) {
      var slug = page.getAttribute("data-market");
      var ids = tradeIdsOnPage();
      var newest = ids.length ? Math.max.apply(null, ids) : 0;
      ids.forEach(markSeen);
      latestByMarket[slug] = newest;
      // Replay from the newest trade drawn, so a trade between the page and
      // the stream is not missed (0: every trade of a market with none yet).
      stream = new Stream("/live/markets/" + encodeURIComponent(slug) + "/", newest);
    } else if (document.querySelector(ROW_PROBABILITY.split(", ").map(function (s) { return "[data-market][data-outcome] " + s; }).join(", "))) {
      // Lists and panels say which trade they were drawn after; resume from
      // the oldest of them so a trade between drawing and connecting shows.
      var marks = Array.prototype.map.call(document.querySelectorAll("[data-last-trade]"), function (el) {
        return parseInt(el.getAttribute("data-last-trade"), 10);
      }).filter(function (n) { return !isNaN(n); });
      stream = new Stream("/live/markets/", marks.length ? Math.min.apply(null, marks) : null);
    } else {
      return;
    }
    stream.open();
  }

  function afterSwap(evt) {
    noteRequote(evt);
    var page = marketPage();
    if (page) {
      // A trade made here re-renders the odds and the recent trades (not
      // the volume and count above them): their newest id is what the odds
      // show now. Its own event still comes, for the counts.
      var slug = page.getAttribute("data-market");
      var ids = tradeIdsOnPage();
      var newest = ids.length ? Math.max.apply(null, ids) : 0;
      if (lastMarketEvent && lastMarketEvent.trade_id > newest && lastMarketEvent.market === slug) {
        // The swapped-in fragment was drawn before a trade already shown: show it again.
        applyOdds(lastMarketEvent);
        applyCounts(document.querySelector(".market-head") || document, lastMarketEvent);
        applyRecentTrade(lastMarketEvent);
      } else if (newest > (latestByMarket[slug] || 0)) {
        latestByMarket[slug] = newest;
      }
    }
    connect();
  }

  function start() {
    if (!document.body) return;
    document.body.addEventListener("htmx:afterSettle", afterSwap);
    connect();
    window.addEventListener("pagehide", function () {
      if (stream && stream.source) stream.source.close();
      stream = null;
    });
    window.addEventListener("pageshow", function (evt) {
      if (evt.persisted) connect();  // back from the back-forward cache
    });
  }

  window.BellwetherLive = { apply: apply, percent: percent, points: points, credits: credits, toMicro: toMicro };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
