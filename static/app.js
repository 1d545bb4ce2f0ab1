// agenthub dashboard: plain JS over the HTTP API, live from /api/events.
"use strict";

const state = {
  token: localStorage.getItem("agenthub.token") || "",
  workspace: localStorage.getItem("agenthub.workspace") || "",
  me: null,
  members: new Map(),
  runtimes: [],
  filter: "all",
  selected: null,
  view: "runtimes",
  days: 30,
  charts: {},
  stream: null,
};

const $ = (sel) => document.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
};
const fmt = (n) => Number(n || 0).toLocaleString("en-US");
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function request(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (state.workspace) headers["X-Workspace-ID"] = state.workspace;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText);
  return { data, res };
}

async function api(path, options) {
  return (await request(path, options)).data;
}

// Every row of a paginated list: the server sends a page at a time and the
// cursor of the next one in X-Next-Cursor while more rows follow.
async function apiAll(path) {
  const rows = [];
  const first = `${path}${path.includes("?") ? "&" : "?"}limit=500`;
  let cursor = null;
  do {
    const page = cursor ? `${first}&cursor=${encodeURIComponent(cursor)}` : first;
    const { data, res } = await request(page);
    rows.push(...data);
    cursor = res.headers.get("X-Next-Cursor");
  } while (cursor);
  return rows;
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// ---- sign in and workspace ------------------------------------------------

async function signIn(token) {
  state.token = token.trim();
  try {
    state.me = await api("/api/me");
  } catch (e) {
    state.token = "";
    localStorage.removeItem("agenthub.token");
    $("#sign-in-error").textContent = e.status === 401 ? `Sign-in failed: ${e.message}` : e.message;
    showSignIn();
    return;
  }
  localStorage.setItem("agenthub.token", state.token);
  const workspaces = await api("/api/workspaces");
  const select = $("#workspace-select");
  select.replaceChildren(...workspaces.map((w) => el("option", { value: w.id, textContent: w.name })));
  if (!workspaces.some((w) => w.id === state.workspace)) state.workspace = workspaces[0] ? workspaces[0].id : "";
  select.value = state.workspace;
  for (const id of ["#nav", "#workspace-select", "#sign-out", "#live"]) $(id).hidden = false;
  $("#sign-in-view").hidden = true;
  await openWorkspace();
}

function showSignIn() {
  for (const id of ["#nav", "#workspace-select", "#sign-out", "#live", "#runtimes-view", "#usage-view"]) $(id).hidden = true;
  $("#sign-in-view").hidden = false;
}

async function openWorkspace() {
  localStorage.setItem("agenthub.workspace", state.workspace);
  state.selected = null;
  const members = await api(`/api/workspaces/${state.workspace}/members`);
  state.members = new Map(members.map((m) => [m.user_id, m.name || m.email]));
  follow();
  show(state.view);
}

function show(view) {
  state.view = view;
  document.querySelectorAll("#nav .tab").forEach((t) => t.classList.toggle("active", t.dataset.view === view));
  $("#runtimes-view").hidden = view !== "runtimes";
  $("#usage-view").hidden = view !== "usage";
  if (view === "runtimes") loadRuntimes();
  else loadWorkspaceUsage();
}

// ---- runtimes ---------------------------------------------------------------

async function loadRuntimes() {
  const q = state.filter === "mine" ? "?owner=me" : "";
  state.runtimes = await apiAll(`/api/runtimes${q}`);
  renderRuntimes();
  const current = state.runtimes.find((r) => r.id === state.selected);
  if (current) renderDetail(current);
  else if (state.selected) clearDetail();
}

function renderRuntimes() {
  const list = $("#runtime-list");
  const online = state.runtimes.filter((r) => r.status === "online").length;
  $("#online-count").textContent = `${online}/${state.runtimes.length} online`;
  $("#runtime-empty").hidden = state.runtimes.length > 0;
  list.replaceChildren(...state.runtimes.map((r) => {
    const owner = state.members.get(r.owner_id) || "—";
    const li = el("li", { className: r.id === state.selected ? "selected" : "" },
      el("span", { className: `dot ${r.status}`, title: r.status }),
      el("span", { className: "name", textContent: r.name }),
      el("span", { className: "seen", textContent: ago(r.last_seen_at) }),
      el("span", { className: "sub", textContent: `${r.provider} · ${owner} · ${r.device_info || "unknown device"}` }));
    li.dataset.id = r.id;
    li.dataset.status = r.status;
    li.addEventListener("click", () => select(r.id));
    return li;
  }));
}

function clearDetail() {
  state.selected = null;
  $("#detail-body").hidden = true;
  $("#detail-empty").hidden = false;
}

function select(id) {
  state.selected = id;
  $("#delete-error").textContent = "";
  $("#delete-confirm").hidden = true;
  $("#ping-result").hidden = true;
  renderRuntimes();
  const runtime = state.runtimes.find((r) => r.id === id);
  if (runtime) {
    renderDetail(runtime);
    loadRuntimeUsage(id);
  }
}

function renderDetail(r) {
  $("#detail-empty").hidden = true;
  $("#detail-body").hidden = false;
  $("#detail-name").textContent = r.name;
  $("#detail-dot").className = `dot ${r.status}`;
  const rows = [
    ["Status", r.status], ["Provider", r.provider], ["Owner", state.members.get(r.owner_id) || "—"],
    ["Device", r.device_info || "—"], ["Last seen", `${ago(r.last_seen_at)} (${r.last_seen_at || "never"})`],
    ["Daemon", r.daemon_id || "—"], ["Mode", r.runtime_mode], ["Version", (r.metadata && r.metadata.version) || "—"],
    ["CLI version", (r.metadata && r.metadata.cli_version) || "—"], ["Created", r.created_at], ["Id", r.id],
  ];
  $("#info-grid").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { textContent: k }), el("dd", { textContent: v })]));
}

async function ping() {
  const id = state.selected;
  const out = $("#ping-result");
  out.hidden = false;
  let p;
  try {
    p = await api(`/api/runtimes/${id}/ping`, { method: "POST" });
  } catch (e) {
    out.textContent = `Ping refused: ${e.message}`;
    return;
  }
  const started = Date.now();
  while (id === state.selected) {
    out.dataset.status = p.status;
    out.textContent = describePing(p, started);
    if (!["pending", "running"].includes(p.status)) return;
    await new Promise((r) => setTimeout(r, 700));
    try { p = await api(`/api/runtimes/${id}/ping/${p.id}`); } catch (e) { out.textContent = e.message; return; }
  }
}

function describePing(p, started) {
  const waited = Math.round((Date.now() - started) / 1000);
  if (p.status === "pending") return `Ping pending — waiting for the daemon's next heartbeat (${waited} s)`;
  if (p.status === "running") return `Ping running on the machine… (${waited} s)`;
  const took = p.duration_ms != null ? ` in ${p.duration_ms} ms` : "";
  const detail = [p.output, p.error].filter(Boolean).join("\n");
  return `Ping ${p.status}${took}${detail ? "\n" + detail : ""}`;
}

async function deleteRuntime() {
  const id = state.selected;
  $("#delete-confirm").hidden = true;
  try {
    await api(`/api/runtimes/${id}`, { method: "DELETE" });
    clearDetail();
    await loadRuntimes();
  } catch (e) {
    $("#delete-error").textContent = e.message;
  }
}

// ---- charts -----------------------------------------------------------------

const palette = ["#3b6fe0", "#1fa45a", "#e0913b", "#9b59b6", "#c8373d", "#16a2b8", "#7a8597", "#d4b106", "#e05fa0", "#4b5bd6"];

function stacked(canvasId, labels, series) {
  const datasets = Object.entries(series).map(([model, values], i) => ({
    label: model, data: values, backgroundColor: palette[i % palette.length], stack: "tokens",
  }));
  const config = {
    type: "bar",
    data: { labels, datasets },
    options: {
      animation: false, maintainAspectRatio: false,
      scales: { x: { stacked: true, ticks: { maxTicksLimit: 12 } }, y: { stacked: true, ticks: { callback: (v) => fmt(v) } } },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
    },
  };
  draw(canvasId, config);
}

function draw(canvasId, config) {
  if (state.charts[canvasId]) state.charts[canvasId].destroy();
  state.charts[canvasId] = new Chart(document.getElementById(canvasId), config);
}

function lastDays(n) {
  const days = [];
  const today = new Date();
  for (let i = n - 1; i >= 0; i--) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    days.push(d.toISOString().slice(0, 10));
  }
  return days;
}

function byDateAndModel(rows, dateKey, valueOf, days) {
  const series = {};
  for (const row of rows) {
    const i = days.indexOf(row[dateKey]);
    if (i < 0) continue;
    series[row.model] = series[row.model] || new Array(days.length).fill(0);
    series[row.model][i] += valueOf(row);
  }
  return series;
}

async function loadRuntimeUsage(id) {
  const [usage, activity] = await Promise.all([
    api(`/api/runtimes/${id}/usage?days=91`),
    api(`/api/runtimes/${id}/activity`),
  ]);
  if (id !== state.selected) return;
  const days = lastDays(90);
  stacked("usage-chart", days.map((d) => d.slice(5)), byDateAndModel(usage, "date", (r) => r.input_tokens + r.output_tokens, days));
  renderHeatmap(usage);
  const hours = new Array(24).fill(0);
  for (const a of activity) hours[a.hour] = a.count;
  draw("activity-chart", {
    type: "bar",
    data: { labels: hours.map((_, h) => String(h)), datasets: [{ label: "tasks started", data: hours, backgroundColor: "#3b6fe0" }] },
    options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { y: { ticks: { precision: 0 } } } },
  });
  const num = (v) => el("td", { className: "num", textContent: fmt(v) });
  $("#usage-table tbody").replaceChildren(...usage.map((r) => el("tr", {},
    el("td", { textContent: r.date }), el("td", { textContent: r.provider }), el("td", { textContent: r.model }),
    num(r.input_tokens), num(r.output_tokens), num(r.cache_read_tokens), num(r.cache_write_tokens))));
}

function renderHeatmap(usage) {
  const days = lastDays(91);
  const totals = new Map(days.map((d) => [d, 0]));
  for (const r of usage) if (totals.has(r.date)) totals.set(r.date, totals.get(r.date) + r.input_tokens + r.output_tokens);
  const max = Math.max(1, ...totals.values());
  // pad so columns are weeks starting on Sunday
  const pad = new Date(days[0] + "T00:00:00Z").getUTCDay();
  const cells = Array.from({ length: pad }, () => el("span", { style: "visibility:hidden" }));
  for (const d of days) {
    const v = totals.get(d);
    const level = v === 0 ? 0 : Math.min(4, 1 + Math.floor((v / max) * 3.999));
    const cell = el("span", { title: `${d}: ${fmt(v)} tokens` });
    cell.dataset.level = String(level);
    cells.push(cell);
  }
  $("#heatmap").replaceChildren(...cells);
}

async function loadWorkspaceUsage() {
  const tz = encodeURIComponent(zone);
  const [daily, summary] = await Promise.all([
    api(`/api/usage/daily?days=${state.days}&tz=${tz}`),
    api(`/api/usage/summary?days=${state.days}&tz=${tz}`),
  ]);
  const days = localDays(state.days);
  stacked("ws-usage-chart", days.map((d) => d.slice(5)), byDateAndModel(daily, "date", (r) => r.total_input_tokens + r.total_output_tokens, days));
  const num = (v) => el("td", { className: "num", textContent: fmt(v) });
  $("#ws-usage-table tbody").replaceChildren(...summary.map((r) => el("tr", {},
    el("td", { textContent: r.model }), num(r.total_input_tokens), num(r.total_output_tokens),
    num(r.total_cache_read_tokens), num(r.total_cache_write_tokens), num(r.task_count))));
}

function localDays(n) {
  const days = [];
  const now = new Date();
  for (let i = n - 1; i >= 0; i--) {
    const d = new Date(now.getFullYear(), now.getMonth(), now.getDate() - i);
    days.push(`${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`);
  }
  return days;
}

// ---- live events ------------------------------------------------------------

let pending = null;
function soon(fn) {
  clearTimeout(pending);
  pending = setTimeout(fn, 150);
}

async function follow() {
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  let backoff = 500;
  while (!controller.signal.aborted) {
    try {
      const res = await fetch(`/api/events?workspace_id=${state.workspace}`, {
        headers: { Authorization: `Bearer ${state.token}` }, signal: controller.signal,
      });
      if (!res.ok) throw new Error(`events: ${res.status}`);
      $("#live").textContent = "● live";
      backoff = 500;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const type = (block.match(/^event: (.*)$/m) || [])[1];
          if (type) onEvent(type);
        }
      }
    } catch (e) {
      if (controller.signal.aborted) return;
    }
    $("#live").textContent = "○ reconnecting";
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 10000);
  }
}

function onEvent(type) {
  if (state.view === "runtimes") {
    if (type === "daemon:register") soon(loadRuntimes);
    else if (state.selected && (type.startsWith("task:") || type === "agent:status")) soon(() => loadRuntimeUsage(state.selected));
  } else if (type.startsWith("task:")) {
    soon(loadWorkspaceUsage);
  }
}

// ---- wiring -----------------------------------------------------------------

function start() {
  $("#sign-in-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("#token-input").value); });
  $("#sign-out").addEventListener("click", () => {
    localStorage.removeItem("agenthub.token");
    state.token = "";
    if (state.stream) state.stream.abort();
    showSignIn();
  });
  $("#workspace-select").addEventListener("change", (e) => { state.workspace = e.target.value; openWorkspace(); });
  document.querySelectorAll("#nav .tab").forEach((t) => t.addEventListener("click", () => show(t.dataset.view)));
  for (const f of ["all", "mine"]) {
    $(`#filter-${f}`).addEventListener("click", () => {
      state.filter = f;
      $("#filter-all").classList.toggle("active", f === "all");
      $("#filter-mine").classList.toggle("active", f === "mine");
      loadRuntimes();
    });
  }
  document.querySelectorAll("[data-days]").forEach((b) => b.addEventListener("click", () => {
    state.days = Number(b.dataset.days);
    document.querySelectorAll("[data-days]").forEach((x) => x.classList.toggle("active", x === b));
    loadWorkspaceUsage();
  }));
  $("#ping-btn").addEventListener("click", ping);
  $("#delete-btn").addEventListener("click", () => { $("#delete-error").textContent = ""; $("#delete-confirm").hidden = false; });
  $("#delete-no").addEventListener("click", () => { $("#delete-confirm").hidden = true; });
  $("#delete-yes").addEventListener("click", deleteRuntime);
  // keep "last seen" honest between events
  setInterval(() => { if (state.view === "runtimes" && state.runtimes.length) renderRuntimes(); }, 5000);
  if (state.token) signIn(state.token);
  else showSignIn();
}

start();
