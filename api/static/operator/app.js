// ParkGrid operators' page: signs in against the JSON API, lists the operator's lots, shows one lot's dashboard
// and keeps it current over the lot's Server-Sent Events stream. No framework, nothing loaded from elsewhere.
"use strict";

const API = "/api/v1";
const $ = (id) => document.getElementById(id);
const state = { lot: null, dash: null, source: null, lastEventId: null, retry: 0 };

function show(section) {
  for (const id of ["sign-in", "lots", "lot"]) $(id).hidden = id !== section;
  $("sign-out").hidden = section === "sign-in";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

const money = (m) => m ? `${(m.amount / 100).toFixed(2)} ${m.currency.toUpperCase()}` : "–";
const time = (t) => t ? new Date(t).toLocaleTimeString() : "–";

async function refreshTokens() {
  const refresh = sessionStorage.getItem("refresh_token");
  if (!refresh) return false;
  const res = await fetch(`${API}/auth/refresh`, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: refresh }) });
  if (!res.ok) return false;
  const t = await res.json();
  sessionStorage.setItem("access_token", t.access_token);
  sessionStorage.setItem("refresh_token", t.refresh_token);
  return true;
}

async function api(path, options = {}, retried = false) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${sessionStorage.getItem("access_token")}` };
  const res = await fetch(`${API}${path}`, { ...options, headers });
  if (res.status === 401 && !retried && await refreshTokens()) return api(path, options, true);
  if (res.status === 401) { signOut(); throw new Error("signed out"); }
  if (!res.ok) throw new Error(`${res.status} ${(await res.json().catch(() => ({}))).detail || res.statusText}`);
  return res.json();
}

async function signIn(event) {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  const body = new URLSearchParams({ username: $("email").value, password: $("password").value });
  const res = await fetch(`${API}/auth/token`, { method: "POST", body });
  if (!res.ok) { $("sign-in-error").textContent = "Wrong email or password"; return; }
  const t = await res.json();
  sessionStorage.setItem("access_token", t.access_token);
  sessionStorage.setItem("refresh_token", t.refresh_token);
  sessionStorage.setItem("email", $("email").value);
  route();
}

function signOut() {
  closeStream();
  sessionStorage.clear();
  location.hash = "#/";
  route();
}

async function showLots() {
  show("lots");
  const page = await api("/lots?limit=100");
  const list = $("lot-list");
  list.replaceChildren(...page.items.map((lot) =>
    el("li", {}, el("a", { href: `#/lots/${lot.id}` }, lot.name), " ", el("span", { class: "muted" },
      `${lot.capacity} spaces`))));
  if (!page.items.length) list.append(el("li", { class: "muted" }, "No lots yet"));
}

// -- one lot ------------------------------------------------------------------------------------------------------

function renderOccupancy(occ) {
  const t = occ.total;
  $("free-total").textContent = t.free == null ? "unknown" : t.free;
  $("capacity-total").textContent = t.capacity;
  $("occupancy-source").textContent = `${t.stale ? "stale · " : ""}source ${t.freshness.source}, as of ` +
    time(t.freshness.as_of);
  const rows = [];
  for (const level of occ.by_level) {
    rows.push(el("tr", {}, el("td", {}, level.name), el("td", {}, level.free ?? "unknown"), el("td", {}, level.capacity),
      el("td", {}, level.freshness.source), el("td", {}, time(level.freshness.as_of))));
    for (const g of level.types) {
      rows.push(el("tr", { class: "type" }, el("td", {}, g.spot_type), el("td", {}, g.free ?? "unknown"),
        el("td", {}, g.capacity), el("td", {}, g.freshness.source + (g.stale ? " (stale)" : "")),
        el("td", {}, time(g.freshness.as_of))));
    }
  }
  $("levels").replaceChildren(...rows);
  if (state.dash && t.occupancy != null) {  // the chart's newest point follows the live numbers
    const points = state.dash.occupancy_today.points;
    points.push({ at: new Date().toISOString(), occupancy: t.occupancy, live: true });
    state.dash.occupancy_today.points = points.filter((p, i) => !p.live || i === points.length - 1);
    renderChart();
  }
}

function renderGates(gates) {
  $("gates").replaceChildren(...gates.map((g) => el("tr", { "data-gate": g.id },
    el("td", {}, `${g.name} (${g.direction})`),
    el("td", { class: g.online ? "online" : "offline" }, g.online ? "online" : "silent"),
    el("td", {}, g.last_event ? `${g.last_event.type} ${time(g.last_event.received_at)}` : "never"),
    el("td", {}, g.last_decision ? `${g.last_decision.decision}: ${g.last_decision.message}` : "–"))));
}

function renderAlerts(alerts) {
  const items = alerts.map((a) => el("li", { class: a.severity, "data-alert": a.id },
    el("span", { class: "msg" }, a.message), el("span", { class: "muted" }, `since ${time(a.since)}`),
    a.acknowledged ? el("span", { class: "muted" }, `ack ${a.acknowledged.by}`)
      : el("button", { type: "button", onclick: () => ack(a.id) }, "Acknowledge")));
  $("alerts").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "No alerts")]));
}

function renderRevenue(r) {
  $("revenue-day").textContent = r.day;
  const rows = [["Captured", r.captured], ["Authorised", r.authorised], ["Refunded", r.refunded], ["Net", r.net],
    ["Debts outstanding", r.debts_outstanding], ["Debts today", r.debts_today]];
  $("revenue").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, money(v)))));
}

function renderChart() {
  const svg = $("chart"), d = state.dash, W = 600, H = 160, P = 24;
  const ns = "http://www.w3.org/2000/svg", node = (tag, attrs) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    return n;
  };
  const dayStart = new Date(d.revenue_today.from).getTime(), dayEnd = new Date(d.revenue_today.to).getTime();
  const x = (t) => P + (W - 2 * P) * (new Date(t).getTime() - dayStart) / (dayEnd - dayStart);
  const y = (share) => H - P - (H - 2 * P) * Math.max(0, Math.min(1, share));
  const parts = [node("line", { class: "axis", x1: P, y1: y(0), x2: W - P, y2: y(0) }),
    node("line", { class: "axis", x1: P, y1: y(1), x2: W - P, y2: y(1) })];
  const label = (tx, ty, s) => { const t = node("text", { x: tx, y: ty }); t.textContent = s; return t; };
  parts.push(label(2, y(1) + 3, "100%"), label(2, y(0) + 3, "0%"));
  for (let h = 0; h <= 24; h += 6) parts.push(label(x(dayStart + h * 3600e3) - 8, H - 6, `${h}h`));
  const fc = d.forecast && d.forecast.points;
  if (fc && fc.length) {
    const up = fc.map((p) => `${x(p.at)},${y(p.high)}`), down = fc.slice().reverse().map((p) => `${x(p.at)},${y(p.low)}`);
    parts.push(node("polygon", { class: "band", points: up.concat(down).join(" ") }));
  }
  const pts = d.occupancy_today.points.map((p) => `${x(p.at)},${y(p.occupancy)}`).join(" ");
  if (pts) parts.push(node("polyline", { class: "line", points: pts }));
  svg.replaceChildren(...parts);
  $("forecast-note").textContent = d.forecast ? "Band: forecast" : `No forecast: ${d.forecast_status.reason}`;
}

function logEvent(text) {
  const list = $("events");
  list.prepend(el("li", {}, `${new Date().toLocaleTimeString()} ${text}`));
  while (list.children.length > 50) list.lastChild.remove();
}

async function loadLot(lotId) {
  show("lot");
  const d = await api(`/lots/${lotId}/dashboard`);
  state.lot = lotId;
  state.dash = d;
  state.lastEventId = d.live.last_event_id;
  $("lot-name").textContent = d.lot.name;
  $("lot-meta").textContent = `${d.lot.capacity} spaces · ${d.lot.timezone} · ${d.lot.status}`;
  renderOccupancy(d.occupancy);
  renderGates(d.gates);
  renderAlerts(d.alerts);
  renderRevenue(d.revenue_today);
  renderChart();
}

async function ack(alertId) {
  await api(`/lots/${state.lot}/alerts/${encodeURIComponent(alertId)}/ack`, { method: "POST" });
  const d = await api(`/lots/${state.lot}/dashboard`);
  state.dash.alerts = d.alerts;
  renderAlerts(d.alerts);
}

function closeStream() {
  if (state.source) state.source.close();
  state.source = null;
}

// EventSource cannot send an Authorization header: a short-lived stream token for this lot goes in the URL, and a
// reconnect after it expired asks for a new one and resumes after the last event seen.
async function openStream(lotId) {
  closeStream();
  const { url } = await api(`/lots/${lotId}/live/token`, { method: "POST" });
  if (state.lot !== lotId) return;
  const resume = state.lastEventId ? `&last_event_id=${encodeURIComponent(state.lastEventId)}` : "";
  const source = new EventSource(url + resume);
  state.source = source;
  const seen = (e) => { if (e.lastEventId) state.lastEventId = e.lastEventId; };
  source.addEventListener("ready", () => { $("live-state").textContent = "live"; state.retry = 0; });
  source.addEventListener("occupancy", (e) => {
    seen(e);
    const occ = JSON.parse(e.data);
    state.dash.occupancy = occ;
    renderOccupancy(occ);
    logEvent(`occupancy: ${occ.total.free ?? "unknown"} free`);
  });
  source.addEventListener("gate", (e) => {
    seen(e);
    const g = JSON.parse(e.data);
    const gate = state.dash.gates.find((x) => x.id === g.gate_id);
    if (gate) {
      gate.online = true;
      gate.last_event = { type: g.type, received_at: g.at };
      gate.last_decision = { decision: g.decision, message: g.message, at: g.at };
      renderGates(state.dash.gates);
    }
    logEvent(`gate ${gate ? gate.name : g.gate_id}: ${g.decision} (${g.message})`);
  });
  source.addEventListener("alerts", (e) => {
    seen(e);
    const a = JSON.parse(e.data);
    state.dash.alerts = a.items;
    renderAlerts(a.items);
    logEvent(`alerts: ${a.items.length}`);
  });
  source.addEventListener("reset", () => { loadLot(lotId).then(() => openStream(lotId)); });
  source.onerror = () => {
    $("live-state").textContent = "reconnecting";
    if (source.readyState === EventSource.CLOSED && state.lot === lotId) {  // refused (token expired): new token
      state.retry = Math.min(state.retry + 1, 5);
      setTimeout(() => { if (state.lot === lotId) openStream(lotId); }, 1000 * state.retry);
    }
  };
}

async function route() {
  if (!sessionStorage.getItem("access_token")) { closeStream(); show("sign-in"); $("who").textContent = ""; return; }
  $("who").textContent = sessionStorage.getItem("email") || "";
  const m = location.hash.match(/^#\/lots\/([0-9a-f-]{36})$/);
  try {
    if (m) {
      await loadLot(m[1]);
      await openStream(m[1]);
    } else {
      closeStream();
      state.lot = null;
      await showLots();
    }
  } catch (err) {
    if (String(err.message) !== "signed out") logEvent(`error: ${err.message}`);
  }
}

$("sign-in-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
