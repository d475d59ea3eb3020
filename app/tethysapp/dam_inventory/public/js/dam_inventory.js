/*
 * Dam inventory live client. Plain DOM only: it must work when jQuery, Bootstrap or
 * OpenLayers do not load. The map (dam_map.js) is used only when it is there.
 *
 * Every URL comes from data- attributes rendered by the server (#dam-inventory-client).
 * Every change is an event with a sequence number (seq), one after the other:
 *   {"event": "dam_added", "dam": {...}, "seq": S}, {"event": "dam_deleted", "id": N, "seq": S}
 * and now and then {"event": "sync", "seq": S}, the last event's number. Events are applied in
 * order: one that is not the next (a publish lost, a frame missed) or a sync ahead of this
 * page makes the client fetch what came after its own seq from the events endpoint, as it
 * also does after every (re)connect. A socket that stays silent after a ping is given up
 * and replaced, so a half-open connection cannot leave the page deaf.
 */
(function () {
  "use strict";

  var root = document.getElementById("dam-inventory-client");
  if (!root) { return; }

  var cfg = {
    wsPath: root.dataset.wsPath,
    eventsUrl: root.dataset.eventsUrl,
    sinceUrl: root.dataset.sinceUrl,
    damJsonUrl: root.dataset.damJsonUrl,
    hydrographUrl: root.dataset.hydrographUrl,
    closeUnauthenticated: parseInt(root.dataset.closeUnauthenticated, 10) || 4401
  };
  var BACKOFF_MIN_MS = 1000;
  var BACKOFF_MAX_MS = 30000;
  var PING_AFTER_MS = 30000;   // this long without a frame: ask the server (it answers "pong")
  var PONG_WITHIN_MS = 10000;  // no frame this long after the ping: the socket is dead

  var state = {
    lastSeq: parseInt(root.dataset.lastSeq, 10) || 0,  // the last event applied, in order
    catchingUp: null,     // the catch-up in flight, if any
    catchUpAgain: false,  // asked for while one was in flight
    lastHeard: 0,
    known: {},            // dam ids this page shows
    socket: null,
    attempts: 0,
    connects: 0,
    lastShown: null,
    catchupFailures: 0,
    stopped: false
  };
  var mapState = { map: null, pending: [] };

  function $(id) { return document.getElementById(id); }

  function setStatus(s) {
    var el = $("dam-ws-status");
    if (el) { el.dataset.state = s; el.textContent = s; }
    root.dataset.socketState = s;
  }

  // ---- table ---------------------------------------------------------------------------
  function tableBody() {
    var t = $("dam-table") || $("dam-list");
    return t ? t.tBodies[0] : null;
  }

  document.querySelectorAll("tr[data-dam-id]").forEach(function (tr) {
    state.known[tr.dataset.damId] = true;
  });

  function addRow(dam) {
    var body = tableBody();
    if (!body || body.querySelector('tr[data-dam-id="' + dam.id + '"]')) { return; }
    var empty = body.querySelector("tr.dam-empty");
    if (empty) { empty.remove(); }
    var tr = document.createElement("tr");
    tr.dataset.damId = String(dam.id);
    var cells = [dam.name, dam.owner, dam.river, dam.date_built];
    if ($("dam-table")) { cells.push(dam.lon.toFixed(5), dam.lat.toFixed(5)); }
    cells.forEach(function (v) {
      var td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    });
    var last = document.createElement("td");
    if ($("dam-table") && cfg.hydrographUrl) {
      var a = document.createElement("a");
      a.href = cfg.hydrographUrl.replace(/\/0\/hydrograph\/$/, "/" + dam.id + "/hydrograph/");
      a.textContent = "Hydrograph";
      last.appendChild(a);
    }
    tr.appendChild(last);
    tr.classList.add("dam-new");
    body.appendChild(tr);
  }

  function removeRow(id) {
    var tr = document.querySelector('tr[data-dam-id="' + id + '"]');
    if (tr) { tr.remove(); }
  }

  // ---- map (optional) --------------------------------------------------------------------
  // window.damInventoryMap (dam_map.js) draws the dams; without it (OpenLayers did not load)
  // the table alone shows them.
  function mapAdd(dam) {
    if (!mapState.map) { mapState.pending.push(dam); return; }
    mapState.map.addDam(dam);
  }

  function mapRemove(id) {
    if (mapState.map) { mapState.map.removeDam(id); }
  }

  function setupMap() {
    var map = window.damInventoryMap;
    if (!map || map.mode !== "browse") { return; }
    mapState.map = map;
    map.onSelect(function (dam) { showDetails(dam.id); });
    fetchJson(cfg.sinceUrl + "?since=0&deleted_since=0").then(function (data) {
      data.dams.forEach(function (dam) { if (state.known[dam.id]) { mapAdd(dam); } });
    }).catch(function () { /* the table still lists the dams */ });
    mapState.pending.splice(0).forEach(mapAdd);
  }

  function showOnMap(dam) {
    if (mapState.map) { mapState.map.centreOn(dam); }
    var tr = document.querySelector('tr[data-dam-id="' + dam.id + '"]');
    if (tr) {
      document.querySelectorAll("tr.dam-highlight").forEach(function (r) { r.classList.remove("dam-highlight"); });
      tr.classList.add("dam-highlight");
      tr.scrollIntoView({ block: "center" });
    }
    showDetails(dam.id);
  }

  // ---- details panel ---------------------------------------------------------------------
  function damJsonUrl(id) { return cfg.damJsonUrl.replace(/\/0\/json\/$/, "/" + id + "/json/"); }

  function drawHydrograph(el, points) {
    el.textContent = "";
    if (!points.length) { el.textContent = "No hydrograph assigned."; return; }
    var NS = "http://www.w3.org/2000/svg", w = 300, h = 150, pad = 10;
    var t0 = points[0][0], t1 = points[points.length - 1][0];
    var fmax = Math.max.apply(null, points.map(function (p) { return p[1]; })) || 1;
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("class", "hydrograph-plot");
    var line = document.createElementNS(NS, "polyline");
    line.setAttribute("class", "flow");
    line.setAttribute("points", points.map(function (p) {
      var x = pad + (p[0] - t0) / ((t1 - t0) || 1) * (w - 2 * pad);
      var y = h - pad - p[1] / fmax * (h - 2 * pad);
      return x.toFixed(1) + "," + y.toFixed(1);
    }).join(" "));
    svg.appendChild(line);
    el.appendChild(svg);
  }

  function showDetails(id) {
    var panel = $("dam-details");
    if (!panel) { return; }
    fetchJson(damJsonUrl(id)).then(function (data) {
      var d = data.dam;
      $("dam-details-name").textContent = d.name;
      $("dam-details-owner").textContent = d.owner;
      $("dam-details-river").textContent = d.river;
      $("dam-details-date").textContent = d.date_built;
      $("dam-details-location").textContent = d.lon.toFixed(5) + ", " + d.lat.toFixed(5);
      drawHydrograph($("dam-details-hydrograph"), data.hydrograph);
      $("dam-details-hydrograph-link").href = data.hydrograph_url;
      var del = $("dam-details-delete-link");
      if (data.delete_url) { del.href = data.delete_url; del.hidden = false; } else { del.hidden = true; }
      panel.dataset.damId = String(d.id);
      if (mapState.map) { mapState.map.showPopup(d, panel); } else { panel.hidden = false; }
    }).catch(function () { panel.hidden = true; });
  }

  function closeDetails() {
    var panel = $("dam-details");
    if (mapState.map) { mapState.map.closePopup(); }
    if (panel) { panel.hidden = true; }
  }

  document.addEventListener("click", function (e) {
    var tr = e.target.closest && e.target.closest("tr[data-dam-id]");
    if (tr && $("dam-details") && !e.target.closest("a,button")) { showDetails(tr.dataset.damId); }
  });

  // ---- notification box ------------------------------------------------------------------
  function notify(text, dam) {
    var box = $("dam-notification");
    if (!box) { return; }
    $("dam-notification-text").textContent = text;
    $("dam-notification-show").hidden = !dam;
    state.lastShown = dam || null;
    box.hidden = false;
  }

  function wireNotification() {
    var show = $("dam-notification-show");
    if (show) { show.addEventListener("click", function () { if (state.lastShown) { showOnMap(state.lastShown); } }); }
    var refresh = $("dam-notification-refresh");
    if (refresh) { refresh.addEventListener("click", function () { window.location.reload(); }); }
    var closePanel = $("dam-details-close");
    if (closePanel) { closePanel.addEventListener("click", closeDetails); }
    var close = $("dam-notification-close");
    if (close) { close.addEventListener("click", function () { $("dam-notification").hidden = true; }); }
  }

  // ---- events ----------------------------------------------------------------------------
  function onAdded(dam, quiet) {
    if (Object.prototype.hasOwnProperty.call(state.known, String(dam.id))) { return false; }
    state.known[dam.id] = true;
    addRow(dam);
    mapAdd(dam);
    if (!quiet) { notify("Dam " + dam.name + " was added", dam); }
    return true;
  }

  function onDeleted(id, name) {
    delete state.known[id];
    removeRow(id);
    mapRemove(id);
    if (name) { notify("Dam " + name + " was deleted", null); }
  }

  // Applies the event that follows state.lastSeq; returns the dam it added, if any.
  function apply(event, quiet) {
    state.lastSeq = event.seq;
    if (event.event === "dam_added" && event.dam) { return onAdded(event.dam, quiet) ? event.dam : null; }
    if (event.event === "dam_deleted") { onDeleted(event.id, quiet ? null : event.name); }
    return null;
  }

  function handleMessage(raw) {
    state.lastHeard = Date.now();
    var msg;
    try { msg = JSON.parse(raw); } catch (err) { return; }  // "pong"
    if (!msg || typeof msg.seq !== "number") { return; }
    if (msg.event === "sync") {
      if (msg.seq > state.lastSeq) { catchUp(); }
    } else if (msg.seq === state.lastSeq + 1) {
      apply(msg, false);
    } else if (msg.seq > state.lastSeq + 1) {
      catchUp();  // a gap: what came between is fetched, then applied in order
    }             // else: applied already (by a catch-up)
  }

  function fetchJson(url) {
    return window.fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      });
  }

  // Fetches and applies every event after state.lastSeq, page by page; resolves to the dams added.
  function fetchEvents(added) {
    return fetchJson(cfg.eventsUrl + "?after=" + state.lastSeq).then(function (data) {
      data.events.forEach(function (event) {
        if (event.seq !== state.lastSeq + 1) { return; }  // applied meanwhile by a live message
        var dam = apply(event, true);
        if (dam) { added.push(dam); }
      });
      return data.more && data.events.length ? fetchEvents(added) : added;
    });
  }

  function catchUp() {
    if (state.catchingUp) { state.catchUpAgain = true; return state.catchingUp; }
    var socket = state.socket;
    state.catchingUp = fetchEvents([]).then(function (added) {
      if (added.length === 1) { notify("Dam " + added[0].name + " was added", added[0]); }
      else if (added.length > 1) {
        notify(added.length + " dams were added, the last one: " + added[added.length - 1].name, added[added.length - 1]);
      }
      state.catchupFailures = 0;
      root.dataset.catchups = String((parseInt(root.dataset.catchups, 10) || 0) + 1);
    }).catch(function () {
      // Retried with backoff while this socket stays open (a web restart right after the open
      // loses the request); a new socket starts its own catch-up anyway.
      var delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, state.catchupFailures));
      state.catchupFailures += 1;
      window.setTimeout(function () {
        if (state.socket === socket && socket && socket.readyState === 1) { catchUp(); }
      }, delay);
    }).then(function () {
      state.catchingUp = null;
      if (state.catchUpAgain) { state.catchUpAgain = false; catchUp(); }
    });
    return state.catchingUp;
  }

  // ---- socket ----------------------------------------------------------------------------
  function socketUrl() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + cfg.wsPath;
  }

  function scheduleReconnect() {
    var base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, state.attempts));
    var delay = base / 2 + Math.random() * base / 2;  // jitter: clients do not return in step
    state.attempts += 1;
    setStatus("reconnecting");
    window.setTimeout(connect, delay);
  }

  // A socket that stays silent PONG_WITHIN_MS after a ping is given up at once: waiting for
  // the browser to notice a half-open connection can take minutes.
  function watch(ws) {
    var timer = window.setInterval(function () {
      if (state.socket !== ws) { window.clearInterval(timer); return; }
      var silent = Date.now() - state.lastHeard;
      if (silent >= PING_AFTER_MS + PONG_WITHIN_MS) {
        window.clearInterval(timer);
        ws.onclose = null;
        try { ws.close(); } catch (err) { /* already closing */ }
        closed(ws, {});
      } else if (silent >= PING_AFTER_MS && ws.readyState === 1) {
        ws.send("ping");
      }
    }, PONG_WITHIN_MS / 2);
  }

  function closed(ws, e) {
    if (state.socket !== ws) { return; }
    state.socket = null;
    if (e.code === cfg.closeUnauthenticated) {
      state.stopped = true;
      setStatus("unauthenticated");
      notify("Your session has ended: log in again to get live updates.", null);
      return;
    }
    setStatus("closed");
    scheduleReconnect();
  }

  function connect() {
    if (state.stopped) { return; }
    setStatus("connecting");
    var ws;
    try { ws = new window.WebSocket(socketUrl()); } catch (err) { scheduleReconnect(); return; }
    state.socket = ws;
    ws.onopen = function () {
      state.attempts = 0;
      state.connects += 1;
      state.lastHeard = Date.now();
      root.dataset.connects = String(state.connects);
      setStatus("open");
      watch(ws);
      catchUp();  // also covers what happened between page render and this first open
    };
    ws.onmessage = function (e) { handleMessage(e.data); };
    ws.onclose = function (e) { closed(ws, e); };
  }

  window.damInventoryClient = { state: state, catchUp: catchUp, socketUrl: socketUrl };
  wireNotification();
  setupMap();
  connect();
})();
