/// The ops console: one self-contained page (no CDN, no build step) served at `GET /` of the
/// admin listener. It polls `GET /stats` every second and charts, for every sink, route and
/// upstream, the last five minutes: events/s, bytes/s, ack latency p50/p99, in-flight against
/// the limit, errors/s. Each sink has a form for its `PATCH /sinks/{name}` settings. When the
/// admin API requires a bearer token, the page asks for it and keeps it for the tab's session.
///
/// The page itself holds no data, so it is served without the token; everything it shows comes
/// from endpoints that require it.
enum OpsConsole {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice ops console</title>
<style>
  :root { --bg:#0f1419; --panel:#182029; --text:#d8dee6; --muted:#8a96a3; --accent:#4fb3ff; --warn:#ffb347; --bad:#ff6b6b; --ok:#5fd38d; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--text); }
  header { display:flex; gap:1.5rem; align-items:baseline; padding:.8rem 1.2rem; background:var(--panel); border-bottom:1px solid #263240; flex-wrap:wrap; }
  header h1 { font-size:1.1rem; margin:0; }
  header span { color:var(--muted); }
  main { padding:1rem 1.2rem; }
  h2 { font-size:1rem; margin:1.2rem 0 .6rem; color:var(--muted); text-transform:uppercase; letter-spacing:.05em; }
  .grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(420px, 1fr)); gap:1rem; }
  .card { background:var(--panel); border:1px solid #263240; border-radius:6px; padding:.8rem; }
  .card h3 { margin:0 0 .4rem; font-size:1rem; display:flex; justify-content:space-between; }
  .charts { display:grid; grid-template-columns:1fr 1fr; gap:.5rem; }
  figure { margin:0; }
  figcaption { font-size:.75rem; color:var(--muted); display:flex; justify-content:space-between; }
  canvas { width:100%; height:70px; background:#111820; border-radius:3px; }
  .ready { color:var(--ok); } .notready { color:var(--bad); }
  form { margin-top:.6rem; display:grid; grid-template-columns:repeat(auto-fill, minmax(180px, 1fr)); gap:.4rem .8rem; }
  label { display:flex; flex-direction:column; font-size:.75rem; color:var(--muted); }
  input { background:#0f1419; color:var(--text); border:1px solid #33414f; border-radius:3px; padding:.25rem .4rem; font:inherit; }
  button { background:var(--accent); color:#001526; border:0; border-radius:3px; padding:.35rem .8rem; font-weight:600; cursor:pointer; }
  .status { font-size:.8rem; grid-column:1/-1; min-height:1.1em; }
  .status.error { color:var(--bad); } .status.done { color:var(--ok); }
  #auth { display:none; gap:.5rem; align-items:center; }
</style>
</head>
<body>
<header>
  <h1>Sluice</h1>
  <span>configuration <b id="generation">–</b> · <span id="hash">–</span> · loaded <span id="loaded">–</span></span>
  <span id="updated">waiting for samples…</span>
  <span id="auth"><input id="token" type="password" placeholder="admin bearer token" autocomplete="off"><button id="save-token" type="button">Use token</button></span>
</header>
<main>
  <h2>Sinks</h2><div id="sinks" class="grid"></div>
  <h2>Routes</h2><div id="routes" class="grid"></div>
  <h2>Upstreams</h2><div id="upstreams" class="grid"></div>
</main>
<script>
"use strict";
const HISTORY = 300;
const series = {};        // "kind:name" -> array of samples (newest last)
let latest = 0;
let token = sessionStorage.getItem("sluice-admin-token") || "";

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ cache: "no-store" }, options || {}, { headers: headers((options || {}).headers) }));
  if (response.status === 401) {
    document.getElementById("auth").style.display = "flex";
    throw new Error("the admin API needs a bearer token");
  }
  return response;
}

document.getElementById("save-token").addEventListener("click", () => {
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("sluice-admin-token", token);
  document.getElementById("auth").style.display = "none";
  loadConfig();
});

function fmt(value, unit) {
  if (value === null || value === undefined) return "–";
  if (unit === "s") return value < 1 ? (value * 1000).toFixed(value < 0.01 ? 2 : 1) + " ms" : value.toFixed(2) + " s";
  const abs = Math.abs(value);
  const scaled = abs >= 1e9 ? (value / 1e9).toFixed(2) + " G" : abs >= 1e6 ? (value / 1e6).toFixed(2) + " M" : abs >= 1e3 ? (value / 1e3).toFixed(1) + " k" : value.toFixed(abs < 10 && abs > 0 ? 1 : 0) + " ";
  return scaled + (unit || "");
}

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children || []) node.appendChild(child);
  return node;
}

// A chart: one canvas with one or more lines over the kept samples.
function chart(container, id, caption, lines, unit) {
  let figure = container.querySelector('[data-chart="' + id + '"]');
  if (!figure) {
    figure = el("figure", { "data-chart": id, "data-points": "0" }, [
      el("figcaption", {}, [el("span", { text: caption }), el("span", { class: "now" })]),
      el("canvas", { width: "400", height: "70" }),
    ]);
    container.appendChild(figure);
  }
  const canvas = figure.querySelector("canvas");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  let max = 0, points = 0;
  for (const line of lines) for (const v of line.values) if (v !== null && v > max) max = v;
  if (max <= 0) max = 1;
  for (const line of lines) {
    ctx.strokeStyle = line.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let started = false;
    line.values.forEach((v, i) => {
      if (v === null || v === undefined) { started = false; return; }
      const x = w - (line.values.length - 1 - i) * (w / (HISTORY - 1));
      const y = h - 2 - (v / max) * (h - 6);
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
      points++;
    });
    ctx.stroke();
  }
  figure.dataset.points = String(points);
  const now = lines.map(l => fmt(l.values[l.values.length - 1], unit)).join(" / ");
  figure.querySelector(".now").textContent = now;
}

function card(containerId, key, title) {
  const container = document.getElementById(containerId);
  let node = document.getElementById(key);
  if (!node) {
    node = el("section", { class: "card", id: key }, [el("h3", {}, [el("span", { text: title }), el("span", { class: "badge" })]), el("div", { class: "charts" })]);
    container.appendChild(node);
  }
  return node;
}

async function sinkForm(name, node) {
  if (node.querySelector("form")) return;
  const form = el("form", { "data-sink": name });
  node.appendChild(form);
  const response = await api("/sinks/" + encodeURIComponent(name));
  if (!response.ok) return;
  const detail = await response.json();
  for (const [setting, value] of Object.entries(detail.settings)) {
    form.appendChild(el("label", { title: detail.settings_help[setting] || "" }, [
      document.createTextNode(setting),
      el("input", { name: setting, value: String(value), "data-setting": setting }),
    ]));
  }
  form.appendChild(el("button", { type: "submit", text: "Apply" }));
  form.appendChild(el("div", { class: "status" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = form.querySelector(".status");
    const changes = {};
    for (const input of form.querySelectorAll("input")) {
      if (input.value !== input.defaultValue) changes[input.name] = /^\d+$/.test(input.value) ? Number(input.value) : input.value;
    }
    if (Object.keys(changes).length === 0) { status.textContent = "nothing changed"; status.className = "status"; return; }
    const reply = await api("/sinks/" + encodeURIComponent(name), { method: "PATCH", body: JSON.stringify(changes), headers: { "content-type": "application/json" } });
    const body = await reply.json();
    if (reply.ok) {
      for (const [setting, change] of Object.entries(body.changed)) {
        const input = form.querySelector('[name="' + setting + '"]');
        input.value = change.after; input.defaultValue = change.after;
      }
      status.textContent = "applied: " + Object.entries(body.changed).map(([k, c]) => k + " " + c.before + " → " + c.after).join(", ");
      status.className = "status done";
    } else {
      status.textContent = body.error.message;
      status.className = "status error";
    }
  });
}

function remember(key, sample) {
  const list = series[key] || (series[key] = []);
  list.push(sample);
  if (list.length > HISTORY) list.splice(0, list.length - HISTORY);
  return list;
}

function draw(sample) {
  for (const [name, s] of Object.entries(sample.sinks)) {
    const list = remember("sink:" + name, s);
    const node = card("sinks", "sink-" + name, name);
    const badge = node.querySelector(".badge");
    badge.textContent = s.ready ? "ready" : "not ready";
    badge.className = "badge " + (s.ready ? "ready" : "notready");
    const charts = node.querySelector(".charts");
    chart(charts, "sink:" + name + ":events", "events/s", [{ values: list.map(x => x.events_per_second), color: "#4fb3ff" }]);
    chart(charts, "sink:" + name + ":bytes", "bytes/s", [{ values: list.map(x => x.bytes_per_second), color: "#8f7dff" }], "B");
    chart(charts, "sink:" + name + ":latency", "ack latency p50 / p99", [
      { values: list.map(x => x.ack_latency_p50_seconds), color: "#5fd38d" },
      { values: list.map(x => x.ack_latency_p99_seconds), color: "#ffb347" }], "s");
    chart(charts, "sink:" + name + ":inflight", "in flight / limit (events)", [
      { values: list.map(x => x.in_flight_events), color: "#4fb3ff" },
      { values: list.map(x => x.max_in_flight_events), color: "#555f6b" }]);
    chart(charts, "sink:" + name + ":errors", "errors/s", [{ values: list.map(x => x.errors_per_second), color: "#ff6b6b" }]);
    sinkForm(name, node);
  }
  for (const [name, r] of Object.entries(sample.routes)) {
    const list = remember("route:" + name, r);
    const charts = card("routes", "route-" + name, name).querySelector(".charts");
    chart(charts, "route:" + name + ":requests", "requests/s", [{ values: list.map(x => x.requests_per_second), color: "#4fb3ff" }]);
    chart(charts, "route:" + name + ":events", "events/s", [{ values: list.map(x => x.events_per_second), color: "#5fd38d" }]);
    chart(charts, "route:" + name + ":bytes", "bytes/s", [{ values: list.map(x => x.bytes_per_second), color: "#8f7dff" }], "B");
    chart(charts, "route:" + name + ":errors", "errors/s", [{ values: list.map(x => x.errors_per_second), color: "#ff6b6b" }]);
  }
  for (const [name, u] of Object.entries(sample.upstreams)) {
    const list = remember("upstream:" + name, u);
    const node = card("upstreams", "upstream-" + name, name);
    node.querySelector(".badge").textContent = u.endpoints_in_service + "/" + u.endpoints + " endpoints in service";
    const charts = node.querySelector(".charts");
    chart(charts, "upstream:" + name + ":requests", "requests/s", [{ values: list.map(x => x.requests_per_second), color: "#4fb3ff" }]);
    chart(charts, "upstream:" + name + ":inprogress", "in progress / waiting", [
      { values: list.map(x => x.requests_in_progress), color: "#5fd38d" },
      { values: list.map(x => x.requests_waiting), color: "#ffb347" }]);
    chart(charts, "upstream:" + name + ":errors", "errors/s", [{ values: list.map(x => x.errors_per_second), color: "#ff6b6b" }]);
  }
}

async function loadConfig() {
  try {
    const config = await (await api("/config")).json();
    document.getElementById("generation").textContent = config.generation;
    document.getElementById("hash").textContent = config.hash ? config.hash.slice(0, 19) : "embedded";
    document.getElementById("loaded").textContent = new Date(config.loaded_at).toLocaleString();
  } catch (e) { /* shown by the auth prompt */ }
}

async function poll() {
  try {
    const stats = await (await api("/stats?since=" + latest)).json();
    for (const sample of stats.samples) {
      if (sample.sequence <= latest) continue;
      draw(sample);
      latest = sample.sequence;
    }
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("updated").textContent = String(e.message || e);
  }
}

loadConfig();
poll();
setInterval(poll, 1000);
setInterval(loadConfig, 10000);
</script>
</body>
</html>
"""#
}
