// weir dashboard: a single page over the JobManager's JSON API (docs/rest-api.yaml). Plain JS, no build step,
// nothing loaded from elsewhere. It polls every REFRESH_MS; rates are computed from successive polls of
// /jobs/{id} against the JobManager's clock ("now"), so they do not depend on the browser's clock.
"use strict";

(() => {
  const REFRESH_MS = 2000;
  const RATE_WINDOW_MS = 10000; // rates are averaged over the polls of the last 10 s
  const RATE_MIN_SPAN_MS = 1500; // a rate needs polls at least this far apart
  // TaskManagers report records with their heartbeats, so counts move in steps: the backpressure estimate waits
  // for a longer span of polls than the rates shown
  const ESTIMATE_MIN_SPAN_MS = 5000;
  const CP_HISTORY_MAX = 50;
  const TOKEN_KEY = "weir.rest-token";
  const STATES = ["CREATED", "RUNNING", "RESTARTING", "CANCELING", "FINISHED", "FAILED", "CANCELED"];
  const TERMINAL = new Set(["FINISHED", "FAILED", "CANCELED"]);
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    overview: null,
    jobs: null,
    tms: null,
    config: null,
    jobId: null,
    job: null,
    checkpoints: null,
    exceptions: null,
    jobError: null,
    samples: new Map(), // jobId -> Map(vertexId -> [{t, rin, rout}])
    cpHistory: new Map(), // jobId -> Map(checkpointId -> checkpoint)
    polls: 0,
    lastOk: 0,
    failing: null,
    timer: null,
    inFlight: false,
    again: false,
    action: null, // {status: "pending" | "ok" | "error", text}
    actionBusy: false,
    cancelArmed: null, // timeout id while the cancel button waits for its confirming click
  };

  // ---- DOM helpers ----
  const $ = (id) => document.getElementById(id);

  function build(ns, tag, attrs, children) {
    const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") el.textContent = String(v);
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const h = (tag, attrs, ...children) => build(null, tag, attrs, children);
  const svg = (tag, attrs, ...children) => build(SVG_NS, tag, attrs, children);

  function replace(el, ...children) {
    el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  }

  // Re-render a container only when its data changed (keeps open <details>, selections and scroll).
  function renderIfChanged(el, data, fn) {
    const key = JSON.stringify(data);
    if (el.dataset.rendered === key) return;
    el.dataset.rendered = key;
    fn();
  }

  // ---- formatting ----
  const pad = (n) => String(n).padStart(2, "0");

  function fmtTime(ms) {
    if (ms === null || ms === undefined || ms < 0) return "–";
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  // today: the time only
  function fmtStart(ms) {
    if (ms === null || ms === undefined || ms < 0) return "–";
    const full = fmtTime(ms);
    return full.slice(0, 10) === fmtTime(Date.now()).slice(0, 10) ? full.slice(11) : full.slice(0, 16);
  }

  function fmtClock(ms) {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || ms < 0) return "–";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    let s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400);
    s %= 86400;
    const hh = Math.floor(s / 3600);
    s %= 3600;
    const mm = Math.floor(s / 60);
    s %= 60;
    if (d) return `${d}d ${hh}h ${pad(mm)}m`;
    if (hh) return `${hh}h ${pad(mm)}m ${pad(s)}s`;
    if (mm) return `${mm}m ${pad(s)}s`;
    return `${s}s`;
  }

  function fmtCount(n) {
    if (n === null || n === undefined || Number.isNaN(n)) return "–";
    const a = Math.abs(n);
    if (a < 1000) return String(Math.round(n * 10) / 10);
    for (const [div, unit] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
      if (a >= div) return `${(n / div).toFixed(a / div < 10 ? 2 : a / div < 100 ? 1 : 0)}${unit}`;
    }
    return String(n);
  }

  const fmtRate = (r) => (r === null || r === undefined ? "–" : `${fmtCount(r)}/s`);
  const fmtInt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));

  function fmtBytes(b) {
    if (b === null || b === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) {
      b /= 1024;
      i += 1;
    }
    return `${i ? b.toFixed(b < 10 ? 1 : 0) : b} ${units[i]}`;
  }

  const shortId = (id) => (id && id.length > 12 ? `${id.slice(0, 8)}…` : id);

  function badge(st) {
    return h("span", { class: `badge state-${String(st).toLowerCase()}`, "data-state": st, text: st });
  }

  // ---- the API ----
  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    // reads need the token too unless the JobManager serves them without (weir.rest.read-without-token)
    if (token()) headers.Authorization = `Bearer ${token()}`;
    if (options.write) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {
      method: options.write ? "POST" : "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store",
    });
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      body = null;
    }
    if (!resp.ok) {
      const msg = body && Array.isArray(body.errors) && body.errors.length ? body.errors[0] : resp.statusText;
      const err = new Error(`${resp.status}: ${msg}`);
      err.status = resp.status;
      throw err;
    }
    return body;
  }

  // paths relative to the page, so the dashboard also works behind a reverse proxy under a prefix
  const jobPath = (id, rest = "") => `jobs/${encodeURIComponent(id)}${rest}`;

  // ---- polling ----
  function route() {
    const m = /^#\/jobs\/([^/?]+)/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  function schedule(ms = REFRESH_MS) {
    clearTimeout(state.timer);
    state.timer = setTimeout(refresh, ms);
  }

  async function refresh() {
    if (state.inFlight) {
      state.again = true; // asked for while a poll runs (a new route, an action): poll again right after it
      return;
    }
    state.inFlight = true;
    const id = state.jobId;
    try {
      const [overview, jobs, tms, config] = await Promise.all([
        api("overview"), api("jobs"), api("taskmanagers"), api("config"),
      ]);
      Object.assign(state, { overview, jobs: jobs.jobs, tms: tms.taskmanagers, config });
      if (id) {
        const [job, cps, exc] = await Promise.allSettled([
          api(jobPath(id)), api(jobPath(id, "/checkpoints")), api(jobPath(id, "/exceptions")),
        ]);
        if (id === state.jobId) {
          state.jobError = job.status === "rejected" ? job.reason.message : null;
          state.job = job.status === "fulfilled" ? job.value : null;
          state.checkpoints = cps.status === "fulfilled" ? cps.value : null;
          state.exceptions = exc.status === "fulfilled" ? exc.value : null;
          if (state.job) recordSample(state.job);
          if (state.checkpoints) recordCheckpoints(id, state.checkpoints);
        }
      }
      state.failing = null;
      state.needsToken = false;
      state.lastOk = Date.now();
      state.polls += 1;
    } catch (e) {
      state.failing = e.message || String(e);
      state.needsToken = e.status === 401;
      if (state.needsToken && token()) sessionStorage.removeItem(TOKEN_KEY); // refused: ask again
    } finally {
      state.inFlight = false;
      render();
      schedule(state.again ? 0 : REFRESH_MS);
      state.again = false;
    }
  }

  // ---- rates from successive polls ----
  function recordSample(job) {
    if (!state.samples.has(job.jid)) state.samples.set(job.jid, new Map());
    const byVertex = state.samples.get(job.jid);
    for (const v of job.vertices) {
      const rin = v.metrics["read-records"];
      const rout = v.metrics["write-records"];
      let list = byVertex.get(v.id) || [];
      const last = list[list.length - 1];
      if (last && (rin < last.rin || rout < last.rout)) list = []; // counters restarted (a restart of the job)
      if (!last || job.now > last.t) list.push({ t: job.now, rin, rout });
      while (list.length > 2 && job.now - list[1].t >= RATE_WINDOW_MS) list.shift();
      byVertex.set(v.id, list);
    }
  }

  function ratesOf(job) {
    const byVertex = state.samples.get(job.jid) || new Map();
    const out = {};
    for (const v of job.vertices) {
      const list = byVertex.get(v.id) || [];
      if (job.state !== "RUNNING" || list.length < 2) {
        out[v.id] = { in: null, out: null };
        continue;
      }
      const a = list[0];
      const b = list[list.length - 1];
      const dt = (b.t - a.t) / 1000;
      out[v.id] = dt * 1000 >= RATE_MIN_SPAN_MS
        ? { in: (b.rin - a.rin) / dt, out: (b.rout - a.rout) / dt, span: b.t - a.t }
        : { in: null, out: null };
    }
    return out;
  }

  // ---- the job graph ----
  // Edges from the API when it has them (weir's "edges", or Flink's "plan"); otherwise the vertices in order.
  function edgesOf(job) {
    const ids = new Set(job.vertices.map((v) => v.id));
    let edges = null;
    if (Array.isArray(job.edges)) {
      edges = job.edges.map((e) => {
        const how = e.partitioner ?? e.ship_strategy ?? e["ship-strategy"] ?? "";
        return { source: e.source ?? e.from, target: e.target ?? e.to,
          label: typeof how === "string" ? how : String(how.kind || how.name || "") };
      });
    } else if (job.plan && Array.isArray(job.plan.nodes)) {
      edges = [];
      for (const n of job.plan.nodes) {
        for (const i of n.inputs || []) edges.push({ source: i.id, target: n.id, label: i.ship_strategy || "" });
      }
    }
    if (edges) return { edges: edges.filter((e) => ids.has(e.source) && ids.has(e.target)), derived: false };
    const linear = [];
    for (let i = 1; i < job.vertices.length; i += 1) {
      linear.push({ source: job.vertices[i - 1].id, target: job.vertices[i].id, label: "" });
    }
    return { edges: linear, derived: true };
  }

  // Backpressure: the API's figure when it has one; else an estimate from the rates: how far a vertex's
  // records-in rate falls behind the records-out rate of its upstream vertices (Flink's levels: OK up to 10 %,
  // LOW up to 50 %, HIGH above).
  function level(ratio) {
    if (ratio > 0.5) return "high";
    if (ratio > 0.1) return "low";
    return "ok";
  }

  function apiBackpressure(v) {
    const bp = v.backpressure ?? v["backpressure-ratio"] ?? (v.metrics || {})["backpressured-time-ratio"];
    if (typeof bp === "number") return { level: level(bp), ratio: bp, estimated: false };
    if (bp && typeof bp === "object") {
      const ratio = typeof bp.ratio === "number" ? bp.ratio : null;
      const lvl = String(bp.level || bp["backpressure-level"] || (ratio !== null ? level(ratio) : "unknown"));
      return { level: lvl.toLowerCase(), ratio, estimated: false };
    }
    if (typeof v["backpressure-level"] === "string") {
      return { level: v["backpressure-level"].toLowerCase(), ratio: null, estimated: false };
    }
    return null;
  }

  function backpressureOf(job, rates, edges) {
    const out = {};
    for (const v of job.vertices) {
      if (job.state !== "RUNNING") {
        out[v.id] = { level: "idle", ratio: null, estimated: false };
        continue;
      }
      const given = apiBackpressure(v);
      if (given) {
        out[v.id] = given;
        continue;
      }
      const ups = edges.filter((e) => e.target === v.id).map((e) => rates[e.source]);
      const mine = rates[v.id];
      if (!ups.length) {
        out[v.id] = { level: "none", ratio: null, estimated: true, note: "source" };
      } else if (mine.in === null || ups.some((r) => r.out === null)
        || [mine, ...ups].some((r) => r.span < ESTIMATE_MIN_SPAN_MS)) {
        out[v.id] = { level: "unknown", ratio: null, estimated: true };
      } else {
        const upOut = ups.reduce((s, r) => s + r.out, 0);
        const lag = upOut > 1 ? Math.max(0, Math.min(1, 1 - mine.in / upOut)) : 0;
        out[v.id] = { level: level(lag), ratio: lag, estimated: true };
      }
    }
    return out;
  }

  function bpLabel(b, long) {
    if (b.level === "none") return "source";
    if (b.level === "unknown") return "measuring…";
    if (b.level === "idle") return "–";
    const pct = b.ratio !== null ? ` ${Math.round(b.ratio * 100)}%` : "";
    return `${b.level.toUpperCase()}${pct}${long && b.estimated ? " (est.)" : ""}`;
  }

  const BOX_W = 250;
  const BOX_H = 104;
  const GAP_X = 64;
  const GAP_Y = 28;
  const MARGIN = 12;

  function wrapName(name, width = 27) {
    // two lines at most, broken at the chain's " -> " where possible
    const parts = String(name).split(" -> ");
    const lines = [];
    let cur = "";
    for (const p of parts) {
      const next = cur ? `${cur} → ${p}` : p;
      if (next.length <= width || !cur) cur = next;
      else {
        lines.push(cur);
        cur = p;
      }
    }
    if (cur) lines.push(cur);
    const cut = (s) => (s.length > width ? `${s.slice(0, width - 1)}…` : s);
    if (lines.length === 1) return [cut(lines[0])];
    return [cut(lines[0]), cut(`→ ${lines.slice(1).join(" → ")}`)];
  }

  function drawGraph(job, rates, bp, edges, derived) {
    // layers: the longest path from a source (vertices come in topological order)
    const layer = {};
    for (const v of job.vertices) {
      const ins = edges.filter((e) => e.target === v.id).map((e) => (layer[e.source] ?? 0) + 1);
      layer[v.id] = ins.length ? Math.max(...ins) : 0;
    }
    const columns = [];
    for (const v of job.vertices) (columns[layer[v.id]] ||= []).push(v);
    const rows = Math.max(...columns.map((c) => c.length));
    const pos = {};
    columns.forEach((col, x) => {
      const offset = ((rows - col.length) * (BOX_H + GAP_Y)) / 2;
      col.forEach((v, y) => {
        pos[v.id] = { x: MARGIN + x * (BOX_W + GAP_X), y: MARGIN + offset + y * (BOX_H + GAP_Y) };
      });
    });
    const width = MARGIN * 2 + columns.length * BOX_W + (columns.length - 1) * GAP_X;
    const height = MARGIN * 2 + rows * BOX_H + (rows - 1) * GAP_Y;

    // a graph a little wider than the panel is scaled to fit; a much wider one keeps its size and scrolls
    const avail = $("graph-wrap").clientWidth;
    const scale = avail && width > avail && avail / width >= 0.75 ? avail / width : 1;
    const root = svg("svg", {
      id: "job-graph", class: "graph", width: Math.floor(width * scale), height: Math.ceil(height * scale),
      viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `job graph of ${job.name}`, "data-edges": derived ? "derived" : "api",
    });
    root.append(svg("defs", {},
      svg("marker", {
        id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto",
      }, svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));

    for (const e of edges) {
      const a = pos[e.source];
      const b = pos[e.target];
      const x1 = a.x + BOX_W;
      const y1 = a.y + BOX_H / 2;
      const x2 = b.x - 2;
      const y2 = b.y + BOX_H / 2;
      const mx = (x1 + x2) / 2;
      root.append(svg("path", {
        class: `edge${derived ? " derived" : ""}`, "data-source": e.source, "data-target": e.target,
        d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)",
      }));
      if (e.label) {
        root.append(svg("text", { class: "edge-label", x: mx, y: (y1 + y2) / 2 - 6, "text-anchor": "middle",
          text: e.label }));
      }
    }

    for (const v of job.vertices) {
      const p = pos[v.id];
      const r = rates[v.id];
      const b = bp[v.id];
      const tasks = Object.entries(v.tasks || {}).map(([s, n]) => `${n} ${s}`).join(", ") || "no tasks";
      const bpText = bpLabel(b, true);
      const lines = wrapName(v.name);
      const g = svg("g", {
        class: `vertex bp-${b.level}`, transform: `translate(${p.x},${p.y})`,
        "data-vertex-id": v.id, "data-parallelism": v.parallelism, "data-backpressure": b.level,
        "data-records-in": v.metrics["read-records"], "data-records-out": v.metrics["write-records"],
        "data-rate-in": r.in === null ? "" : r.in.toFixed(1), "data-rate-out": r.out === null ? "" : r.out.toFixed(1),
      },
      svg("title", { text: `${v.name}\nid ${v.id}\nparallelism ${v.parallelism}\ntasks: ${tasks}\n` +
        `records in ${fmtInt(v.metrics["read-records"])}, out ${fmtInt(v.metrics["write-records"])}\n` +
        `backpressure ${bpText}` }),
      svg("rect", { class: "box", width: BOX_W, height: BOX_H, rx: 8, ry: 8 }),
      svg("rect", { class: "bp-strip", width: 6, height: BOX_H - 16, x: 0, y: 8 }),
      lines.map((line, i) => svg("text", { class: "v-name", x: 14, y: 20 + i * 16, text: line })),
      svg("text", { class: "v-par", x: 14, y: 56 },
        svg("tspan", { class: "v-par-label", text: "parallelism " }),
        svg("tspan", { class: "v-par-value", text: v.parallelism }),
        svg("tspan", { class: "v-tasks", text: ` · ${v.running}/${v.parallelism} running` })),
      svg("text", { class: "v-rate", x: 14, y: 74, text: `in ${fmtRate(r.in)}   out ${fmtRate(r.out)}` }),
      svg("text", { class: "v-bp", x: 14, y: 92, text: `backpressure ${bpText}` }));
      root.append(g);
    }
    return root;
  }

  // ---- rendering ----
  function render() {
    renderStatus();
    renderToken();
    renderOverview();
    renderJobs();
    renderTaskManagers();
    renderConfig();
    renderJob();
  }

  function renderConfig() {
    const cfg = state.config;
    if (!cfg) return;
    renderIfChanged($("config"), cfg, () => replace($("config"), Object.entries(cfg.settings).map(([k, v]) => {
      let text = v === null || v === undefined || v === "" ? "–" : String(v);
      if (typeof v === "boolean") text = v ? "yes" : "no";
      else if (k === "heartbeat.timeout" || k === "slot.request.timeout") text = fmtDuration(v);
      return h("div", { "data-key": k }, h("dt", { class: "mono", text: k }), h("dd", { class: "mono", title: text, text }));
    })));
  }

  function renderStatus() {
    const st = $("refresh-status");
    st.dataset.polls = String(state.polls);
    if (state.failing && state.needsToken) {
      st.dataset.state = "token";
      st.textContent = "token needed";
      const banner = $("banner");
      banner.hidden = false;
      banner.textContent = "This JobManager shows its jobs only to holders of its REST token: enter it at the top right.";
    } else if (state.failing) {
      st.dataset.state = "error";
      st.textContent = "JobManager unreachable";
      const banner = $("banner");
      banner.hidden = false;
      banner.textContent = `Cannot reach the JobManager (${state.failing}). Retrying every ${REFRESH_MS / 1000} s` +
        (state.lastOk ? `; the data shown is from ${fmtClock(state.lastOk)}.` : ".");
    } else if (state.polls) {
      st.dataset.state = "ok";
      st.textContent = `updated ${fmtClock(state.lastOk)} · every ${REFRESH_MS / 1000} s`;
      $("banner").hidden = true;
    }
    const cfg = state.config;
    if (cfg) {
      $("jm-info").textContent = `JobManager ${shortId(cfg["jobmanager-id"])} · weir ${cfg["weir-version"]}`;
      $("jm-info").title = `JobManager ${cfg["jobmanager-id"]}, RPC ${cfg.settings["jobmanager.rpc.address"]}:` +
        `${cfg.settings["jobmanager.rpc.port"]}`;
    }
  }

  function tokenRequired() {
    return !(state.config && state.config.settings && state.config.settings["rest.token-required"] === false);
  }

  const canWrite = () => token() !== "" || !tokenRequired();

  function renderToken() {
    const has = token() !== "";
    $("token-form").hidden = has;
    $("token-set").hidden = !has;
    document.body.dataset.token = has ? "set" : "none";
  }

  function renderOverview() {
    const o = state.overview;
    if (!o) return;
    $("overview-taskmanagers").textContent = o.taskmanagers;
    $("overview-slots-total").textContent = o["slots-total"];
    $("overview-slots-free").textContent = o["slots-available"];
    const jobs = o.jobs || {};
    const states = [...STATES, ...Object.keys(jobs).filter((s) => !STATES.includes(s))];
    renderIfChanged($("overview-jobs"), jobs, () => replace($("overview-jobs"), states.map((s) => h("span", {
      class: `chip state-${s.toLowerCase()}${jobs[s] ? "" : " zero"}`, "data-state": s, "data-count": jobs[s] || 0,
    }, h("b", { text: jobs[s] || 0 }), ` ${s}`))));
  }

  function renderJobs() {
    if (!state.jobs) return;
    const jobs = [...state.jobs].reverse(); // newest first
    $("job-list-empty").hidden = jobs.length > 0;
    replace($("job-list-body"), jobs.map((j) => h("tr", {
      "data-job-id": j.jid, "data-state": j.state, class: j.jid === state.jobId ? "selected" : null,
      onclick: () => { location.hash = `#/jobs/${encodeURIComponent(j.jid)}`; },
    },
    h("td", { class: "job-cell" },
      h("a", { href: `#/jobs/${encodeURIComponent(j.jid)}`, class: "job-name", text: j.name }),
      h("div", { class: "mono dim job-id", text: j.jid })),
    h("td", {}, badge(j.state)),
    h("td", { class: "nowrap", title: fmtTime(j["start-time"]), text: fmtStart(j["start-time"]) }),
    h("td", { class: "num nowrap", text: fmtDuration(j.duration) }),
    h("td", { class: `num${j.restarts ? " warn" : ""}`, text: j.restarts }))));
  }

  function renderTaskManagers() {
    if (!state.tms) return;
    $("taskmanagers-empty").hidden = state.tms.length > 0;
    replace($("taskmanagers-body"), state.tms.map((tm) => {
      const used = tm.slotsNumber - tm.freeSlots;
      const bar = h("span", { class: "slotbar" }, h("span", { class: "slotbar-used" }));
      bar.firstChild.style.width = `${tm.slotsNumber ? (100 * used) / tm.slotsNumber : 0}%`;
      // late: half-way to the JobManager declaring it lost
      const timeout = (state.config && state.config.settings["heartbeat.timeout"]) || 10000;
      const late = tm.timeSinceLastHeartbeat > timeout / 2;
      return h("tr", { "data-tm-id": tm.id },
        h("td", { class: "mono", title: tm.id, text: shortId(tm.id) }),
        h("td", { class: "mono", title: `data: ${tm.dataAddresses.join(", ")}`, text: tm.address }),
        h("td", { class: "num", text: tm.pid }),
        h("td", { class: "nowrap", "data-slots": tm.slotsNumber, "data-free": tm.freeSlots },
          bar, ` ${tm.freeSlots} free / ${tm.slotsNumber}`),
        h("td", { class: `num nowrap${late ? " bad" : ""}`, title: `registered ${fmtTime(tm.registeredAt)}`,
          text: `${(tm.timeSinceLastHeartbeat / 1000).toFixed(1)} s ago` }));
    }));
  }

  function ensureJobSkeleton(id) {
    const root = $("job-detail");
    if (root.dataset.jobId === id) return root;
    root.dataset.jobId = id;
    state.action = null;
    const savepointTarget = h("input", {
      id: "savepoint-target", type: "text", spellcheck: "false",
      placeholder: "savepoint directory (default: state.savepoints.dir)",
    });
    replace(root, h("div", { id: "job-header" }), h("div", { id: "job-body" },
      h("div", { id: "job-actions", class: "actions" },
        savepointTarget,
        h("button", { id: "action-savepoint", type: "button", onclick: triggerSavepoint, text: "Trigger savepoint" }),
        h("button", { id: "action-cancel", type: "button", class: "danger", onclick: cancelJob, text: "Cancel job" }),
        h("span", { id: "actions-locked", class: "dim", text: "Enter the REST token (top right) to cancel the job or take a savepoint." }),
        h("div", { id: "action-result", class: "action-result", hidden: true })),
      h("h3", { text: "Job graph" }),
      h("div", { id: "graph-wrap", class: "graph-wrap" }),
      h("p", { id: "graph-note", class: "note", hidden: true }),
      h("div", { class: "table-wrap" }, h("table", { class: "grid", id: "vertex-table" },
        h("thead", {}, h("tr", {},
          h("th", { text: "Vertex" }), h("th", { class: "num", text: "Parallelism" }),
          h("th", { class: "num", text: "Records in" }), h("th", { class: "num", text: "Records out" }),
          h("th", { class: "num", text: "In/s" }), h("th", { class: "num", text: "Out/s" }),
          h("th", { text: "Backpressure" }))),
        h("tbody", { id: "vertex-table-body" }))),
      h("h3", { text: "Checkpoints" }),
      h("div", { id: "checkpoints" }),
      h("h3", { text: "Exceptions" }),
      h("div", { id: "exceptions" })));
    return root;
  }

  function renderJob() {
    const id = state.jobId;
    $("job-none").hidden = Boolean(id);
    const root = $("job-detail");
    root.hidden = !id;
    if (!id) return;
    ensureJobSkeleton(id);
    const job = state.job && state.job.jid === id ? state.job : null;
    if (!job) {
      replace($("job-header"), h("h2", { text: "Job" }), h("p", { class: state.jobError ? "bad" : "dim",
        text: state.jobError ? `Cannot show job ${id}: ${state.jobError}` : "Loading…" }));
      $("job-body").hidden = true;
      return;
    }
    $("job-body").hidden = false;
    renderJobHeader(job);
    renderActions(job);
    const rates = ratesOf(job);
    const { edges, derived } = edgesOf(job);
    const bp = backpressureOf(job, rates, edges);
    const wrap = $("graph-wrap");
    const scrolled = wrap.scrollLeft;
    replace(wrap, drawGraph(job, rates, bp, edges, derived), legend(bp));
    wrap.scrollLeft = scrolled;
    const note = $("graph-note");
    const estimated = Object.values(bp).some((b) => b.estimated && b.level !== "none");
    const notes = [];
    if (derived) notes.push("Edges follow the order of the vertices: the JobManager's API does not list the job's edges.");
    if (estimated) {
      notes.push("Backpressure is estimated from the rates (records-in falling behind the upstream's records-out): " +
        "the API reports no backpressure figure.");
    }
    note.hidden = !notes.length;
    note.textContent = notes.join(" ");
    renderVertices(job, rates, bp);
    renderCheckpoints(job);
    renderExceptions(job);
  }

  function legend(bp) {
    const est = Object.values(bp).some((b) => b.estimated) ? " (estimated)" : "";
    return h("div", { class: "legend" }, h("span", { class: "dim", text: `Backpressure${est}:` }),
      [["ok", "OK ≤ 10%"], ["low", "LOW ≤ 50%"], ["high", "HIGH > 50%"], ["unknown", "measuring / source"]]
        .map(([cls, label]) => h("span", { class: "legend-item" }, h("i", { class: `swatch bp-${cls}` }), label)));
  }

  function renderJobHeader(job) {
    const items = [
      ["Started", fmtTime(job["start-time"])],
      ["Ended", fmtTime(job["end-time"])],
      ["Duration", fmtDuration(job.duration)],
      ["Restarts", job.restarts],
      ["Slots", job["slots-needed"]],
      ["Subtasks", Object.entries(job["status-counts"] || {}).map(([s, n]) => `${n} ${s}`).join(", ") || "–"],
    ];
    replace($("job-header"),
      h("div", { class: "job-title" },
        h("h2", { id: "job-detail-name", text: job.name }),
        h("span", { id: "job-detail-state" }, badge(job.state))),
      h("div", { id: "job-detail-id", class: "mono dim", text: job.jid }),
      h("dl", { class: "facts" }, items.map(([k, v]) => h("div", {}, h("dt", { text: k }), h("dd", { text: v })))),
      job["failure-cause"] ? h("div", { id: "job-failure", class: "failure" }, h("b", { text: "Failed: " }),
        headline(job["failure-cause"]), " ",
        h("button", { type: "button", class: "linklike small", text: "see Exceptions",
          onclick: () => $("exceptions").scrollIntoView({ behavior: "smooth" }) }))
        : null);
  }

  // the last non-empty line of a traceback: the exception and its message
  function headline(text) {
    return String(text).trim().split("\n").filter((l) => l.trim()).pop() || "";
  }

  function renderActions(job) {
    const writable = canWrite();
    const running = job.state === "RUNNING";
    const ended = TERMINAL.has(job.state);
    $("action-savepoint").hidden = !writable || !running;
    $("savepoint-target").hidden = !writable || !running;
    $("action-cancel").hidden = !writable || ended;
    $("actions-locked").hidden = writable || ended;
    $("action-savepoint").disabled = state.actionBusy;
    $("action-cancel").disabled = state.actionBusy;
    $("job-actions").dataset.writable = writable ? "yes" : "no";
    const res = $("action-result");
    if (state.action) {
      res.hidden = false;
      res.dataset.status = state.action.status;
      res.textContent = state.action.text;
    } else {
      res.hidden = true;
    }
  }

  function renderVertices(job, rates, bp) {
    replace($("vertex-table-body"), job.vertices.map((v) => {
      const r = rates[v.id];
      const b = bp[v.id];
      const tasks = Object.entries(v.tasks || {}).map(([s, n]) => `${n} ${s}`).join(", ") || "no subtasks";
      return h("tr", { "data-vertex-id": v.id },
        h("td", { class: "vname", title: `${v.name} (${v.id})` },
          h("div", { text: v.name }), h("div", { class: "dim small", "data-field": "tasks", text: tasks })),
        h("td", { class: "num", "data-field": "parallelism", text: v.parallelism }),
        h("td", { class: "num", "data-field": "records-in", text: fmtInt(v.metrics["read-records"]) }),
        h("td", { class: "num", "data-field": "records-out", text: fmtInt(v.metrics["write-records"]) }),
        h("td", { class: "num", "data-field": "rate-in", text: fmtRate(r.in) }),
        h("td", { class: "num", "data-field": "rate-out", text: fmtRate(r.out) }),
        h("td", { class: "nowrap", "data-field": "backpressure" }, h("i", { class: `swatch bp-${b.level}` }),
          ` ${bpLabel(b, false)}`));
    }));
  }

  function recordCheckpoints(jobId, cps) {
    if (!state.cpHistory.has(jobId)) state.cpHistory.set(jobId, new Map());
    const seen = state.cpHistory.get(jobId);
    for (const cp of cps.retained) seen.set(cp.id, cp);
    const ids = [...seen.keys()].sort((a, b) => b - a);
    for (const old of ids.slice(CP_HISTORY_MAX)) seen.delete(old);
  }

  function renderCheckpoints(job) {
    const el = $("checkpoints");
    const cps = state.checkpoints;
    if (!cps) {
      delete el.dataset.rendered;
      replace(el, h("p", { class: "dim", text: "No checkpoint information." }));
      return;
    }
    const retained = new Set(cps.retained.map((c) => c.id));
    const history = [...(state.cpHistory.get(job.jid) || new Map()).values()].sort((a, b) => b.id - a.id);
    const c = cps.config;
    const latest = cps.latest.completed;
    const data = { counts: cps.counts, c, ids: history.map((x) => [x.id, retained.has(x.id)]),
      age: latest ? Math.round((job.now - latest.latest_ack_timestamp) / 1000) : null };
    renderIfChanged(el, data, () => {
      const summary = h("div", { id: "checkpoint-counts", class: "facts-line" },
        h("span", {}, h("b", { text: cps.counts.completed }), " completed"),
        h("span", { class: cps.counts.failed ? "bad" : "" }, h("b", { text: cps.counts.failed }), " failed"),
        h("span", {}, h("b", { text: cps.counts.in_progress }), " in progress"),
        c.enabled
          ? h("span", { class: "dim", text: `every ${fmtDuration(c.interval)} · ${c.mode.replace("_", "-")} · ` +
            `timeout ${fmtDuration(c.timeout)} · keeps ${c.retained} · ${c.checkpoint_storage}` })
          : h("span", { class: "dim", text: "checkpointing disabled" }),
        latest && !TERMINAL.has(job.state)
          ? h("span", { class: "dim", text: `last completed ${data.age} s ago` }) : null);
      if (!history.length) {
        replace(el, summary, h("p", { class: "dim", text: "No completed checkpoint yet." }));
        return;
      }
      replace(el, summary, h("div", { class: "table-wrap" }, h("table", { class: "grid", id: "checkpoint-history" },
        h("thead", {}, h("tr", {},
          h("th", { class: "num", text: "ID" }), h("th", { text: "Type" }), h("th", { text: "Completed" }),
          h("th", { class: "num", text: "Duration" }), h("th", { class: "num", text: "State size" }),
          h("th", { text: "Path" }))),
        h("tbody", {}, history.map((cp) => h("tr", {
          "data-checkpoint-id": cp.id, class: retained.has(cp.id) ? null : "gone",
        },
        h("td", { class: "num", text: cp.id }),
        h("td", { class: "nowrap" }, cp.is_savepoint ? "savepoint" : "checkpoint",
          retained.has(cp.id) ? null : h("div", { class: "dim small", text: "not retained" })),
        h("td", { class: "nowrap", text: fmtTime(cp.latest_ack_timestamp) }),
        h("td", { class: "num", text: cp.end_to_end_duration === null ? "–" : fmtDuration(cp.end_to_end_duration) }),
        h("td", { class: "num", text: fmtBytes(cp.state_size) }),
        h("td", { class: "mono path", title: cp.external_path, text: cp.external_path })))))),
      h("p", { class: "dim small", text: "Retained checkpoints, and the ones this page saw completing since it opened." }));
    });
  }

  function renderExceptions(job) {
    const el = $("exceptions");
    const exc = state.exceptions;
    renderIfChanged(el, exc, () => {
      if (!exc) {
        replace(el, h("p", { class: "dim", text: "No exception information." }));
        return;
      }
      const entries = exc.exceptionHistory.entries;
      if (!exc["root-exception"] && !exc["last-restart-cause"] && !entries.length) {
        replace(el, h("p", { id: "exceptions-none", class: "dim", text: `No failures. Restarts: ${exc.restarts}.` }));
        return;
      }
      replace(el,
        h("p", { class: "facts-line" }, h("span", {}, h("b", { text: exc.restarts }), " restarts"),
          exc.exceptionHistory.truncated ? h("span", { class: "dim", text: "older failures not shown" }) : null),
        exc["root-exception"] ? h("div", { class: "exception root" },
          h("div", { class: "bad", text: `Job failed at ${fmtTime(exc.timestamp)}: ${headline(exc["root-exception"])}` }),
          h("pre", { text: exc["root-exception"] })) : null,
        h("ul", { id: "exception-history", class: "exc-list" }, entries.map((e) => h("li", {
          "data-restarted": e.restarted ? "yes" : "no",
        }, h("details", {},
          h("summary", {}, h("span", { class: "nowrap dim", text: fmtTime(e.timestamp) }), " ",
            h("span", { class: e.restarted ? "badge state-restarting" : "badge state-failed",
              text: e.restarted ? "restarted" : "failed" }), " ", headline(e.exception)),
          h("pre", { text: e.exception }))))));
    });
  }

  // ---- write actions ----
  async function act(kind, run) {
    if (state.actionBusy) return;
    state.actionBusy = true;
    state.action = { status: "pending", text: `${kind}…` };
    render();
    try {
      state.action = { status: "ok", text: await run() };
    } catch (e) {
      if (e.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        state.action = { status: "error", text: `The JobManager refused the token (${e.message}). Enter it again.` };
      } else {
        state.action = { status: "error", text: `${kind} failed: ${e.message}` };
      }
    } finally {
      state.actionBusy = false;
      render();
      schedule(0);
    }
  }

  function triggerSavepoint() {
    const id = state.jobId;
    const target = $("savepoint-target").value.trim() || null;
    act("Savepoint", async () => {
      const res = await api(jobPath(id, "/savepoints"), { write: true, body: { target } });
      return `Savepoint written to ${res.location}`;
    });
  }

  function cancelJob() {
    const btn = $("action-cancel");
    if (!state.cancelArmed) {
      btn.textContent = "Click again to cancel";
      btn.dataset.armed = "yes";
      state.cancelArmed = setTimeout(disarmCancel, 5000);
      return;
    }
    disarmCancel();
    const id = state.jobId;
    act("Cancel", async () => {
      const res = await api(jobPath(id, "/cancel"), { write: true });
      return `Job ${res.jid} is ${res.state}`;
    });
  }

  function disarmCancel() {
    clearTimeout(state.cancelArmed);
    state.cancelArmed = null;
    const btn = $("action-cancel");
    if (btn) {
      btn.textContent = "Cancel job";
      delete btn.dataset.armed;
    }
  }

  // ---- start ----
  function onRoute() {
    const id = route();
    if (id === state.jobId) return;
    disarmCancel();
    Object.assign(state, { jobId: id, job: null, checkpoints: null, exceptions: null, jobError: null, action: null });
    render();
    schedule(0);
  }

  function init() {
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token-input").value = "";
      state.action = null;
      render();
      if (state.needsToken) schedule(0);
    });
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      render();
    });
    window.addEventListener("hashchange", onRoute);
    state.jobId = route();
    render();
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
