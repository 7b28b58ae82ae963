/* kooisv operators' console: plain JavaScript, no library. Every value from the server is put
 * into the page as text (textContent / text nodes), never as HTML. The page calls the admin
 * API's JSON routes, the same kooisvctl uses; the server checks the role of every call and
 * audits it, so hiding a button here is a convenience, never the check. State-changing calls
 * carry the session's CSRF token (X-CSRF-Token). Routing: location.hash ("#/page?query"), so
 * the back button and deep links work. */
"use strict";

(function () {
  var session = null;     /* {name, role, csrf, expiresAt} */
  var generation = 0;     /* bumped on each page render: stale work stops */
  var queue = Promise.resolve(); /* calls one at a time: a token has few calls in flight */
  var ROLES = { auditor: 1, operator: 2, admin: 3 };

  /* ------------------------------------------------------------ DOM helpers */

  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (attrs[k] === null || attrs[k] === undefined || attrs[k] === false) return;
        if (k === "text") e.textContent = String(attrs[k]);
        else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), attrs[k]);
        else e.setAttribute(k, attrs[k] === true ? "" : String(attrs[k]));
      });
    }
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }

  /* Append each child after parent (nodes, text, arrays of them; null skipped). */
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) child.forEach(function (c) { add(parent, c); });
      else if (typeof child === "object" && child.nodeType) parent.appendChild(child);
      else parent.appendChild(document.createTextNode(String(child)));
    }
  }

  function svg(tag, attrs) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = String(attrs[k]);
      else e.setAttribute(k, String(attrs[k]));
    });
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function main() { return document.getElementById("main"); }

  function show(title) {
    var m = clear(main());
    for (var i = 0; i < arguments.length; i++) add(m, i === 0 ? el("h1", { text: title }) : arguments[i]);
    return m;
  }

  function errorBox(err) {
    var msg = err && err.message ? err.message : String(err);
    return el("p", { "class": "error", role: "alert" }, msg);
  }

  function cellText(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  /* A table of rows (objects) with the given columns [[key, label], ...] or all keys. */
  function table(rows, columns, extra) {
    if (!rows || rows.length === 0) return el("p", { "class": "muted", text: "none" });
    if (!columns) {
      var keys = [];
      rows.forEach(function (r) { Object.keys(r).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); }); });
      columns = keys.map(function (k) { return [k, k]; });
    }
    var head = el("tr", null, columns.map(function (c) { return el("th", { text: c[1] }); }),
                  extra ? el("th", { text: "" }) : null);
    var body = rows.map(function (r) {
      return el("tr", null, columns.map(function (c) {
        var v = typeof c[0] === "function" ? c[0](r) : r[c[0]];
        return el("td", null, v && v.nodeType ? v : cellText(v));
      }), extra ? el("td", null, extra(r)) : null);
    });
    return el("table", null, el("thead", null, head), el("tbody", null, body));
  }

  /* ------------------------------------------------------------ the admin API */

  function query(params) {
    var parts = [];
    Object.keys(params || {}).forEach(function (k) {
      var v = params[k];
      if (v !== undefined && v !== null && v !== "") parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(v));
    });
    return parts.length ? "?" + parts.join("&") : "";
  }

  function seg(s) { return encodeURIComponent(s); }

  function rawCall(method, path, params, body) {
    var headers = { "Accept": "application/json" };
    if (method !== "GET" && method !== "HEAD" && session && session.csrf) headers["X-CSRF-Token"] = session.csrf;
    var init = { method: method, headers: headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch(path + query(params), init).then(function (r) {
      return r.text().then(function (t) {
        var doc = null;
        try { doc = t ? JSON.parse(t) : null; } catch (e) { doc = null; }
        if (r.ok) return doc;
        var err = new Error((doc && doc.error ? doc.error : "HTTP " + r.status) + " (HTTP " + r.status + ")");
        err.status = r.status;
        err.doc = doc;
        if (r.status === 401 && path !== "/v1/session") { session = null; renderLogin(doc && doc.error); }
        throw err;
      });
    });
  }

  /* One call at a time (follow waits are separate): a token may have few calls in flight. */
  function api(method, path, params, body) {
    var p = queue.then(function () { return rawCall(method, path, params, body); });
    queue = p.catch(function () {});
    return p;
  }

  function can(role) { return session && ROLES[session.role] >= ROLES[role]; }

  /* ------------------------------------------------------------ routing */

  function parseHash() {
    var h = location.hash.replace(/^#\/?/, "");
    var q = "";
    var i = h.indexOf("?");
    if (i >= 0) { q = h.slice(i + 1); h = h.slice(0, i); }
    var params = {};
    q.split("&").forEach(function (kv) {
      if (!kv) return;
      var j = kv.indexOf("=");
      var k = decodeURIComponent(j < 0 ? kv : kv.slice(0, j));
      params[k] = j < 0 ? "" : decodeURIComponent(kv.slice(j + 1).replace(/\+/g, " "));
    });
    var parts = h.split("/").map(function (s) { return decodeURIComponent(s); });
    return { page: parts[0] || "overview", arg: parts[1], params: params };
  }

  function go(page, params) { location.hash = "#/" + page + query(params); }

  function formParams(form) {
    var p = {};
    Array.prototype.forEach.call(form.elements, function (e) { if (e.name && e.value) p[e.name] = e.value.trim(); });
    return p;
  }

  var pages = {};

  function render() {
    generation++;
    var r = parseHash();
    if (!session) { renderLogin(); return; }
    document.getElementById("nav").hidden = false;
    document.getElementById("logout").hidden = false;
    document.getElementById("who").textContent = session.name + " (" + session.role + ")";
    Array.prototype.forEach.call(document.querySelectorAll("#nav a"), function (a) {
      var active = a.getAttribute("data-page") === r.page || (r.page === "instance" && a.getAttribute("data-page") === "instances");
      if (active) a.setAttribute("class", "active"); else a.removeAttribute("class");
    });
    var page = pages[r.page] || pages.overview;
    document.title = "kooisv console: " + r.page;
    page(r.arg, r.params, generation);
  }

  /* ------------------------------------------------------------ login */

  function renderLogin(why) {
    generation++;
    document.getElementById("nav").hidden = true;
    document.getElementById("logout").hidden = true;
    document.getElementById("who").textContent = "";
    var status = el("p", { "class": "muted", id: "login-status" }, why ? why : "");
    var input = el("input", { type: "password", name: "token", id: "token", autocomplete: "off", required: true });
    var form = el("form", { id: "login-form", onsubmit: function (ev) {
      ev.preventDefault();
      status.textContent = "Logging in…";
      rawCall("POST", "/v1/session", null, { token: input.value }).then(function (s) {
        session = s;
        input.value = "";
        render();
      }).catch(function (err) {
        status.textContent = err.status === 401 ? "Unknown token." : err.message;
        status.setAttribute("class", "error");
      });
    } }, el("label", { "for": "token", text: "Operator token" }), input,
      el("button", { type: "submit", id: "login-button", text: "Log in" }));
    clear(main());
    add(main(), el("div", { "class": "login panel" }, el("h1", { text: "kooisv console" }),
      el("p", { "class": "muted", text: "Log in with your operator token (the same one kooisvctl uses). " +
        "It is exchanged for a session cookie; the token itself is not kept by the page." }),
      form, status));
    input.focus();
  }

  function logout() {
    api("DELETE", "/v1/session").catch(function () {}).then(function () {
      session = null;
      location.hash = "#/overview";
      renderLogin("Logged out.");
    });
  }

  /* ------------------------------------------------------------ overview */

  var COLORS = ["#1f5fbf", "#067647", "#b42318", "#b54708", "#6941c6", "#0e7090", "#c11574", "#475467"];

  // The sum of a service's series called name; with states, only those whose label state is
  // one of them.
  function seriesValue(doc, service, name, states) {
    var s = doc && doc.services && doc.services[service];
    if (!s || !s.series) return null;
    var total = null;
    s.series.forEach(function (x) {
      if (x.name !== name) return;
      if (states && !(x.labels && states.indexOf(x.labels.state) >= 0)) return;
      total = (total || 0) + x.value;
    });
    return total;
  }

  function card(label, value, note, cls) {
    return el("div", { "class": "card" }, el("div", { "class": "label", text: label }),
      el("div", { "class": "value" + (cls ? " " + cls : ""), text: value === null || value === undefined ? "–" : value }),
      note ? el("div", { "class": "note", text: note }) : null);
  }

  function callsChart(stats) {
    var from = stats.from, to = stats.to, n = Math.max(1, Math.round((to - from) / 60000));
    var totals = {}, byKey = {};
    stats.minutes.forEach(function (m) {
      var key = m[1] + " " + (m[2] || "-");
      totals[key] = (totals[key] || 0) + m[3];
      (byKey[key] = byKey[key] || []).push(m);
    });
    var keys = Object.keys(totals).sort(function (a, b) { return totals[b] - totals[a]; });
    var shown = keys.slice(0, 7), rest = keys.slice(7);
    var lines = shown.map(function (k) { return { key: k, rows: byKey[k] }; });
    if (rest.length) lines.push({ key: "other (" + rest.length + ")", rows: [].concat.apply([], rest.map(function (k) { return byKey[k]; })) });
    var W = 720, H = 200, L = 34, B = 18;
    var max = 1;
    var bins = lines.map(function (line) {
      var b = new Array(n).fill(0);
      line.rows.forEach(function (m) {
        var i = Math.floor((m[0] - from) / 60000);
        if (i < 0) i = 0;
        if (i >= n) i = n - 1;
        b[i] += m[3];
      });
      b.forEach(function (v) { if (v > max) max = v; });
      return b;
    });
    var s = svg("svg", { "class": "plot", viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img",
                         "aria-label": "calls per minute over the last " + Math.round(n / 60) + " hours" });
    s.appendChild(svg("line", { x1: L, y1: H - B, x2: W, y2: H - B, "class": "axis" }));
    s.appendChild(svg("line", { x1: L, y1: 4, x2: L, y2: H - B, "class": "axis" }));
    s.appendChild(svg("text", { x: 2, y: 12, text: max + "/min" }));
    s.appendChild(svg("text", { x: 2, y: H - B, text: "0" }));
    for (var h = 0; h <= 4; h++) {
      var x = L + (W - L) * h / 4;
      var hoursAgo = Math.round((n / 60) * (4 - h) / 4);
      s.appendChild(svg("text", { x: Math.min(x, W - 30), y: H - 4, text: hoursAgo ? "-" + hoursAgo + "h" : "now" }));
    }
    bins.forEach(function (b, li) {
      var pts = [];
      b.forEach(function (v, i) {
        var x = L + (W - L) * (i + 0.5) / n, y = (H - B) - (H - B - 6) * v / max;
        pts.push(x.toFixed(1) + "," + y.toFixed(1));
      });
      s.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: COLORS[li % COLORS.length],
                                      "stroke-width": 1.5, "vector-effect": "non-scaling-stroke" }));
    });
    var legend = el("div", { "class": "legend" }, lines.map(function (line, li) {
      var sw = svg("svg", { viewBox: "0 0 10 10" });
      sw.appendChild(svg("rect", { width: 10, height: 10, fill: COLORS[li % COLORS.length] }));
      var count = line.rows.reduce(function (a, m) { return a + m[3]; }, 0);
      return el("span", null, sw, line.key + " (" + count + ")");
    }));
    return el("div", { "class": "chart panel", id: "calls-chart" },
      el("h2", { text: "Marketplace calls per minute, by activity and result code (last " + Math.round(n / 60) + " h)" }),
      keys.length ? s : el("p", { "class": "muted", text: "no calls in this period" }), legend,
      el("p", { "class": "muted", text: "Counted from the audit trail (every call's intent and outcome), " +
        "operators' admin calls left out; " + stats.calls + " calls in the period." }));
  }

  pages.overview = function (arg, params, gen) {
    var cards = el("div", { "class": "cards", id: "overview-cards" });
    var chart = el("div", null, el("p", { "class": "muted", text: "Loading calls…" }));
    var m = show("Overview", cards, chart);
    var stats = null, svc = null, verify = null, billing = null;
    api("GET", "/v1/stats/calls", { hours: 24 }).then(function (d) { stats = d; }).catch(function (e) { stats = { error: e }; })
      .then(function () { return api("GET", "/v1/stats/services").then(function (d) { svc = d; }).catch(function (e) { svc = { error: e }; }); })
      .then(function () { return api("POST", "/v1/audit/verify").then(function (d) { verify = d; }).catch(function (e) { verify = { error: e }; }); })
      .then(function () { return api("GET", "/v1/billing/status").then(function (d) { billing = d; }).catch(function (e) { billing = { error: e }; }); })
      .then(function () {
        if (gen !== generation) return;
        clear(cards);
        if (stats.error) add(cards, card("Calls (24 h)", "?", stats.error.message, "bad"));
        else {
          add(cards, card("Calls (24 h)", stats.calls, "marketplace calls in the trail"));
          add(cards, card("Latency p50", stats.latencyMs.p50 === null ? null : stats.latencyMs.p50 + " ms", "24 h, from the trail"));
          add(cards, card("Latency p99", stats.latencyMs.p99 === null ? null : stats.latencyMs.p99 + " ms", "24 h, from the trail"));
        }
        if (svc.error) add(cards, card("Services", "?", svc.error.message, "bad"));
        else {
          var backlog = seriesValue(svc, "order", "kooisv_provisioning_jobs", ["pending", "running"]);
          var oldest = seriesValue(svc, "order", "kooisv_provisioning_oldest_waiting_seconds");
          add(cards, card("Provisioning backlog", backlog, oldest ? "oldest " + Math.round(oldest) + " s" : "jobs pending or running"));
          add(cards, card("Failed jobs", seriesValue(svc, "order", "kooisv_provisioning_jobs", ["failed"]), "given up; re-drive on Failed jobs", seriesValue(svc, "order", "kooisv_provisioning_jobs", ["failed"]) ? "bad" : null));
          var dead = 0, pending = 0;
          ["order", "tenant", "app"].forEach(function (s) {
            dead += seriesValue(svc, s, "kooisv_outbox_failed") || 0;
            pending += seriesValue(svc, s, "kooisv_outbox_pending") || 0;
          });
          add(cards, card("Dead letters", dead, "outbox events undelivered", dead ? "bad" : null));
          add(cards, card("Outbox pending", pending, "events not yet delivered"));
        }
        if (billing.error) add(cards, card("Usage push backlog", "n/a", billingUnavailable(billing.error)));
        else {
          var o = billing.overall || {};
          add(cards, card("Usage push backlog", o.waiting, o.oldestUnacceptedAgeSeconds ? "oldest unaccepted " + Math.round(o.oldestUnacceptedAgeSeconds) + " s" : "all accepted"));
        }
        if (verify.error) add(cards, card("Audit chain", "?", verify.error.message, "bad"));
        else add(cards, card("Audit chain", verify.ok ? (verify.complete ? "verified" : "ok so far") : "BROKEN",
          verify.ok ? verify.checked + " entries checked, head " + verify.head_seq : verify.problem + " at seq " + verify.first_bad_seq,
          verify.ok ? "ok" : "bad"));
        clear(chart);
        add(chart, stats.error ? errorBox(stats.error) : callsChart(stats));
      });
    return m;
  };

  function billingUnavailable(err) {
    return err.status === 404 || err.status === 503 ? "billing service not configured" : err.message;
  }

  /* ------------------------------------------------------------ instances */

  function instanceLink(id) {
    return el("a", { href: "#/instance/" + seg(id), text: id });
  }

  pages.instances = function (arg, params, gen) {
    var form = el("form", { "class": "filters", id: "instance-search", onsubmit: function (ev) {
      ev.preventDefault();
      var p = formParams(form);
      if (p.id) go("instance/" + seg(p.id)); else go("instances", p);
    } },
      el("label", null, "Instance id", el("input", { name: "id", value: params.id || "" })),
      el("label", null, "Order id", el("input", { name: "order", value: params.order || "" })),
      el("label", null, "State", el("select", { name: "state" }, ["", "provisioning", "active", "frozen", "released"].map(function (s) {
        return el("option", { value: s, selected: params.state === s, text: s || "any" });
      }))),
      el("button", { type: "submit", text: "Search" }));
    var out = el("div", { "class": "panel" }, el("p", { "class": "muted", text: "Loading…" }));
    var m = show("Instances", form, el("p", { "class": "muted", text: "Instances carry no tenant: " +
      "look tenants up on the Tenants page." }), out);
    api("GET", "/v1/instances", { order: params.order, state: params.state, before: params.before, limit: 50 }).then(function (d) {
      if (gen !== generation) return;
      clear(out);
      add(out, table(d.instances, [[function (r) { return instanceLink(r.instanceId); }, "instance"], ["state", "state"],
        ["orderId", "order"], ["productId", "product"], ["chargingMode", "charging"], ["expireTime", "expires"], ["createdAt", "created"]]));
      if (d.nextBefore) add(out, el("a", { "class": "button secondary", href: "#/instances" + query({ order: params.order, state: params.state, before: d.nextBefore }), text: "Older" }));
    }).catch(function (e) { if (gen === generation) { clear(out); add(out, errorBox(e)); } });
    return m;
  };

  pages.instance = function (id, params, gen) {
    var out = el("div", null, el("p", { "class": "muted", text: "Loading…" }));
    var m = show("Instance " + (id || ""), el("p", null, el("a", { href: "#/instances", text: "← all instances" })), out);
    api("GET", "/v1/instances/" + seg(id || "")).then(function (d) {
      if (gen !== generation) return;
      clear(out);
      var inst = d.instance || {};
      add(out, el("div", { "class": "panel" }, el("h2", { text: "Instance" }),
        table(Object.keys(inst).map(function (k) { return { field: k, value: inst[k] }; }), [["field", "field"], ["value", "value"]])));
      add(out, el("div", { "class": "panel" }, el("h2", { text: "History" }), table(d.history)));
      add(out, el("div", { "class": "panel" }, el("h2", { text: "Orders" }), table(d.orders)));
      add(out, el("div", { "class": "panel", id: "instance-jobs" }, el("h2", { text: "Jobs" }), table(d.jobs, null, jobRedriveButton)));
      add(out, el("div", { "class": "panel" }, el("h2", { text: "Licenses" }), table(d.licenses)));
      var usage = el("div", { "class": "panel" }, el("h2", { text: "Usage" }), el("p", { "class": "muted", text: "Loading…" }));
      add(out, usage);
      return api("GET", "/v1/billing/instances/" + seg(id || "")).then(function (u) {
        clear(usage); add(usage, el("h2", { text: "Usage" }), Array.isArray(u) || firstArray(u).length ? table(firstArray(u)) : keyValues(u));
      }).catch(function (e) {
        clear(usage); add(usage, el("h2", { text: "Usage" }), el("p", { "class": "muted", text: billingUnavailable(e) }));
      });
    }).catch(function (e) { if (gen === generation) { clear(out); add(out, errorBox(e)); } });
    return m;
  };

  /* ------------------------------------------------------------ failed jobs and outbox */

  function redrive(button, method, path, done) {
    button.disabled = true;
    button.textContent = "Re-driving…";
    api(method, path).then(function (d) {
      button.textContent = "Re-driven";
      button.setAttribute("data-result", "ok");
      if (done) done(d);
    }).catch(function (e) {
      button.disabled = false;
      button.textContent = "Re-drive";
      button.setAttribute("data-result", "error");
      add(button.parentNode, el("div", { "class": "error", text: e.message }));
    });
  }

  function jobRedriveButton(job) {
    if (!can("operator") || job.state === "done" || job.state === "cancelled") return null;
    var b = el("button", { type: "button", "class": "redrive", "data-job": job.id, text: "Re-drive" });
    b.addEventListener("click", function () { redrive(b, "POST", "/v1/jobs/" + seg(String(job.id)) + "/redrive"); });
    return b;
  }

  function outboxRedriveButton(service) {
    return function (ev) {
      if (!can("operator")) return null;
      var id = ev.id || ev.eventId;
      var b = el("button", { type: "button", "class": "redrive", "data-event": id, text: "Re-drive" });
      b.addEventListener("click", function () { redrive(b, "POST", "/v1/outbox/" + seg(service) + "/" + seg(String(id)) + "/redrive"); });
      return b;
    };
  }

  pages.jobs = function (arg, params, gen) {
    var jobs = el("div", { "class": "panel", id: "failed-jobs" }, el("p", { "class": "muted", text: "Loading…" }));
    var outbox = el("div", { "class": "panel", id: "failed-outbox" }, el("p", { "class": "muted", text: "Loading…" }));
    var m = show("Failed jobs and outbox events", jobs, outbox);
    api("GET", "/v1/jobs/failed").then(function (d) {
      if (gen !== generation) return;
      clear(jobs);
      add(jobs, el("h2", { text: "Provisioning jobs that failed or keep failing" }),
        table(d.jobs, [["id", "job"], [function (r) { return instanceLink(r.instance_id); }, "instance"], ["kind", "kind"],
          ["state", "state"], ["attempts", "attempts"], ["last_error", "last error"], ["last_error_at", "at"]], jobRedriveButton));
    }).catch(function (e) { if (gen === generation) { clear(jobs); add(jobs, errorBox(e)); } })
      .then(function () { return api("GET", "/v1/outbox/failed"); })
      .then(function (d) {
        if (gen !== generation || !d) return;
        clear(outbox);
        add(outbox, el("h2", { text: "Outbox events not delivered (dead letters, and pending events that failed)" }));
        Object.keys(d.services || {}).forEach(function (svcName) {
          var s = d.services[svcName] || {};
          add(outbox, el("h2", { text: svcName }));
          if (s.error) add(outbox, errorBox(new Error(s.error)));
          else add(outbox, table(s.events || [], null, outboxRedriveButton(svcName)));
        });
      }).catch(function (e) { if (gen === generation) { clear(outbox); add(outbox, errorBox(e)); } });
    return m;
  };

  /* ------------------------------------------------------------ tenants */

  function orgTree(nodes) {
    if (!nodes || !nodes.length) return el("p", { "class": "muted", text: "no organisations" });
    return el("ul", { "class": "tree" }, nodes.map(function (n) {
      return el("li", null, el("strong", { text: n.orgName || n.orgCode }), " ", el("span", { "class": "muted", text: n.orgCode }),
        n.orphan ? el("span", { "class": "tag warn", text: "parent missing" }) : null,
        n.cycle ? el("span", { "class": "tag bad", text: "on a cycle" }) : null,
        n.children && n.children.length ? orgTree(n.children) : null);
    }));
  }

  pages.tenants = function (arg, params, gen) {
    var form = el("form", { "class": "filters", id: "tenant-search", onsubmit: function (ev) { ev.preventDefault(); go("tenants", formParams(form)); } },
      el("label", null, "Tenant id", el("input", { name: "tenant", value: params.tenant || "", required: true })),
      el("label", null, "Instance id", el("input", { name: "instance", value: params.instance || "" })),
      el("label", null, "Application id (users)", el("input", { name: "app", value: params.app || "" })),
      el("button", { type: "submit", text: "Show" }));
    var tree = el("div", { "class": "panel", id: "tenant-tree" });
    var users = el("div", { "class": "panel", id: "tenant-users" });
    var m = show("Tenants", form, tree, users);
    if (!params.tenant) { add(tree, el("p", { "class": "muted", text: "Give a tenant id (and the instance it belongs to)." })); users.hidden = true; return m; }
    add(tree, el("h2", { text: "Organisations of tenant " + params.tenant + (params.instance ? " in instance " + params.instance : "") }));
    api("GET", "/v1/tenants/" + seg(params.tenant) + "/orgs", { instance: params.instance }).then(function (d) {
      if (gen !== generation) return;
      add(tree, el("p", { "class": "muted", text: d.orgCount + " organisations, " + d.orphanCount + " without their parent, " + d.cycleCount + " on a cycle" }), orgTree(d.tree));
    }).catch(function (e) { if (gen === generation) add(tree, errorBox(e)); })
      .then(function () {
        if (!params.app) { add(users, el("h2", { text: "Users" }), el("p", { "class": "muted", text: "Give the application id to list the tenant's users of it." })); return null; }
        return api("GET", "/v1/tenants/" + seg(params.tenant) + "/users", { instance: params.instance, app: params.app, after: params.after, limit: 50 });
      })
      .then(function (d) {
        if (gen !== generation || !d) return;
        add(users, el("h2", { text: "Users of application " + params.app }), table(d.users || []));
        if (d.next) add(users, el("a", { "class": "button secondary", href: "#/tenants" + query({ tenant: params.tenant, instance: params.instance, app: params.app, after: d.next }), text: "Next page" }));
      }).catch(function (e) { if (gen === generation) add(users, el("h2", { text: "Users" }), errorBox(e)); });
    return m;
  };

  /* ------------------------------------------------------------ billing */

  /* The billing service's routes (GET /v1/billing/status, /v1/billing/exports...): until it is
   * deployed they answer 404 (no such route) or 503, and the page says so. */
  function firstArray(doc) {
    if (Array.isArray(doc)) return doc;
    var found = null;
    Object.keys(doc || {}).forEach(function (k) { if (!found && Array.isArray(doc[k])) found = doc[k]; });
    return found || [];
  }

  function keyValues(obj) {
    return table(Object.keys(obj || {}).map(function (k) { return { field: k, value: obj[k] }; }), [["field", "field"], ["value", "value"]]);
  }

  pages.billing = function (arg, params, gen) {
    var status = el("div", { "class": "panel", id: "billing" }, el("p", { "class": "muted", text: "Loading…" }));
    var exportsBox = el("div", { "class": "panel", id: "billing-exports" });
    var m = show("Billing", status, exportsBox);
    exportsBox.hidden = true;
    api("GET", "/v1/billing/status").then(function (d) {
      if (gen !== generation) return;
      clear(status);
      add(status, el("h2", { text: "Usage push, overall" }), keyValues(d.overall),
        el("h2", { text: "Usage push per hour" }), table(d.hours || []));
      exportsBox.hidden = false;
      var form = el("form", { "class": "filters", id: "export-request", onsubmit: function (ev) {
        ev.preventDefault();
        api("POST", "/v1/billing/exports" + query(formParams(form))).then(function () { render(); })
          .catch(function (e) { add(exportsBox, errorBox(e)); });
      } },
        el("label", null, "Kind", el("select", { name: "kind" }, el("option", { value: "bill", text: "bill" }), el("option", { value: "detail", text: "detail" }))),
        el("label", null, "Format", el("select", { name: "format" }, el("option", { value: "csv", text: "CSV" }), el("option", { value: "json", text: "JSON" }))),
        el("label", null, "From", el("input", { name: "from", required: true, placeholder: "2026-11-01" })),
        el("label", null, "To", el("input", { name: "to", required: true, placeholder: "2026-12-01" })),
        el("label", null, "Tenant", el("input", { name: "tenant" })),
        can("operator") ? el("button", { type: "submit", text: "Request export" }) : null);
      add(exportsBox, el("h2", { text: "Bill and detail exports" }), form);
      return api("GET", "/v1/billing/exports").then(function (x) {
        if (gen !== generation) return;
        add(exportsBox, table(firstArray(x), null, function (e) {
          return e.id && e.status === "ready"
            ? el("a", { "class": "button secondary", href: "/v1/billing/exports/" + seg(String(e.id)) + "/download", download: "", text: "Download" })
            : null;
        }));
      });
    }).catch(function (e) {
      if (gen !== generation) return;
      clear(status);
      add(status, el("p", { id: "billing-unavailable", text: billingUnavailable(e) }),
        el("p", { "class": "muted", text: "Usage push status and bill exports appear here once the billing service is deployed." }));
    });
    return m;
  };

  /* ------------------------------------------------------------ audit */

  var AUDIT_FILTERS = [["from", "From (ISO-8601)"], ["to", "To"], ["event", "Event (x* = prefix)"], ["resource", "Resource id"],
                       ["caller", "Caller"], ["source", "Source (x* = prefix)"], ["result", "Result code"], ["request_id", "Request id"]];

  function auditRows(entries) {
    return table(entries, [["seq", "seq"], ["time", "time"], [function (e) { return e.caller ? e.caller.kind + ":" + e.caller.id : ""; }, "caller"],
      ["event", "event"], [function (e) { return (e.resources || []).map(function (r) { return r.kind + ":" + r.id; }).join(" "); }, "resources"],
      [function (e) { return e.outcome ? e.outcome.result_code : (e.reject_code || ""); }, "result"],
      [function (e) { return e.outcome ? e.outcome.result_msg : (e.reject_reason || ""); }, "message"], ["source", "source"]]);
  }

  pages.audit = function (arg, params, gen) {
    var filters = {};
    AUDIT_FILTERS.forEach(function (f) { if (params[f[0]]) filters[f[0]] = params[f[0]]; });
    var form = el("form", { "class": "filters", id: "audit-filters", onsubmit: function (ev) { ev.preventDefault(); go("audit", formParams(form)); } },
      AUDIT_FILTERS.map(function (f) { return el("label", null, f[1], el("input", { name: f[0], value: params[f[0]] || "" })); }),
      el("button", { type: "submit", text: "Query" }));
    var status = el("div", { id: "audit-status" });
    var out = el("div", { "class": "panel", id: "audit-results" }, el("p", { "class": "muted", text: "Loading…" }));
    var tailBtn = el("button", { type: "button", "class": "secondary", id: "audit-tail", text: "Live tail" });
    var verifyBtn = el("button", { type: "button", "class": "secondary", id: "audit-verify", text: "Verify chain" });
    var exportFrom = filters.from || new Date(Date.now() - 86400000).toISOString().slice(0, 19) + "Z";
    var exportParams = Object.assign({}, filters, { from: exportFrom });
    var actions = el("div", { "class": "actions" }, tailBtn, verifyBtn,
      el("a", { "class": "button secondary", id: "audit-export-csv", href: "/v1/audit/export" + query(Object.assign({ format: "csv" }, exportParams)), download: "", text: "Export CSV" }),
      el("a", { "class": "button secondary", href: "/v1/audit/export" + query(Object.assign({ format: "json" }, exportParams)), download: "", text: "Export JSON" }));
    var m = show("Audit trail", form, actions, status, out);

    verifyBtn.addEventListener("click", function () {
      verifyBtn.disabled = true;
      clear(status); add(status, el("p", { "class": "muted", text: "Verifying…" }));
      var checked = 0;
      (function round(from) {
        api("POST", "/v1/audit/verify", from ? { from_seq: from } : null).then(function (d) {
          checked += d.checked;
          if (d.ok && !d.complete && gen === generation) { round(d.next_seq); return; }
          verifyBtn.disabled = false;
          clear(status);
          add(status, el("p", { id: "verify-result", "class": d.ok ? "ok" : "error",
            text: d.ok ? "Chain verified: " + checked + " entries, head " + d.head_seq + " (" + d.head_hash + ")"
                       : "Chain BROKEN: " + d.problem + " at seq " + d.first_bad_seq + ": " + (d.detail || "") }));
        }).catch(function (e) { verifyBtn.disabled = false; clear(status); add(status, errorBox(e)); });
      })(0);
    });

    var tailing = false;
    tailBtn.addEventListener("click", function () {
      tailing = !tailing;
      tailBtn.textContent = tailing ? "Stop tail" : "Live tail";
      if (!tailing) return;
      clear(out);
      var tbody = null;
      add(out, el("h2", { text: "Live tail (newest at the bottom)" }));
      (function poll(after) {
        if (!tailing || gen !== generation) return;
        var p = Object.assign({ wait: 20, limit: 200 }, filters);
        delete p.from; delete p.to;
        if (after >= 0) p.after = after;
        rawCall("GET", "/v1/audit/follow", p).then(function (d) {
          if (d.entries.length) {
            var t = auditRows(d.entries);
            if (!tbody) { add(out, t); tbody = t.querySelector("tbody"); }
            else Array.prototype.slice.call(t.querySelectorAll("tbody tr")).forEach(function (tr) { tbody.appendChild(tr); });
          }
          poll(d.next_after);
        }).catch(function (e) { tailing = false; tailBtn.textContent = "Live tail"; add(out, errorBox(e)); });
      })(-1);
    });

    api("GET", "/v1/audit", Object.assign({ limit: 50, before: params.before }, filters)).then(function (d) {
      if (gen !== generation) return;
      clear(out);
      add(out, auditRows(d.entries));
      if (d.next_before) add(out, el("a", { "class": "button secondary", href: "#/audit" + query(Object.assign({}, filters, { before: d.next_before })), text: "Older" }));
    }).catch(function (e) { if (gen === generation) { clear(out); add(out, errorBox(e)); } });
    return m;
  };

  /* ------------------------------------------------------------ start */

  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("logout").addEventListener("click", logout);
    window.addEventListener("hashchange", render);
    rawCall("GET", "/v1/session").then(function (s) { session = s; render(); })
      .catch(function () { session = null; renderLogin(); });
  });
})();
