/**
 * `GET /`: the live status page. One HTML document with its own style and script (no CDN, no
 * external file): it polls `/metrics` (public, like the page) and, given the admin token in
 * the address's `#token=…` fragment or typed in, `/api/v1/clients` for the client list.
 *
 * @module
 */

/** The page's `Content-Security-Policy`: nothing is loaded from anywhere but this document. */
export const STATUS_PAGE_CSP = "default-src 'none'; script-src 'unsafe-inline'; " +
  "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; " +
  "form-action 'none'; frame-ancestors 'none'";

/** Formats like the page's script: integers with thousands separators, bytes in binary units. */
export function formatCount(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–";
}

/** Bytes as the page shows them: `512 B`, `1.5 MiB`. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** Seconds as the page shows them: `3m 7s`, `2h 5m`, `4d 1h`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "–";
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/**
 * The HTML of the status page. `initial` fills the `data-metric` elements at serve time, so the
 * document shows the numbers of the moment it was served even before its script has run (a
 * `--dump-dom`, a reader without JavaScript); the script then keeps them current.
 */
export function statusPage(version: string, initial: Record<string, string> = {}): string {
  return fillMetrics(pageTemplate(version), initial);
}

function fillMetrics(html: string, initial: Record<string, string>): string {
  return html.replace(
    /(data-metric="([a-z-]+)"[^>]*>)–</g,
    (all, open: string, name: string) =>
      initial[name] === undefined ? all : `${open}${escapeHtml(initial[name])}<`,
  );
}

function pageTemplate(version: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>denomq status</title>
<style>
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #5c6670; --bg: #f6f7f9; --card: #fff;
  --line: #d9dde2; --in: #1f77b4; --out: #d6612d; --bad: #b3261e; --ok: #2e7d32; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8eb; --muted: #9aa4ae; --bg: #15181c;
  --card: #1e2227; --line: #333a42; --in: #5fa8e0; --out: #f08a5d; --bad: #ff6b61; --ok: #66bb6a; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: baseline;
  padding: .8rem 1rem; border-bottom: 1px solid var(--line); background: var(--card); }
h1 { font-size: 1.15rem; margin: 0; }
h2 { font-size: 1rem; margin: 1.2rem 0 .5rem; }
main { padding: 0 1rem 2rem; max-width: 70rem; margin: 0 auto; }
.muted { color: var(--muted); }
#state { font-weight: 600; padding: .1rem .5rem; border-radius: 1rem; font-size: .85rem; }
#state[data-state="live"] { color: var(--ok); border: 1px solid var(--ok); }
#state[data-state="unreachable"], #state[data-state="connecting"] { color: var(--bad);
  border: 1px solid var(--bad); }
#banner { display: none; margin: 1rem 0 0; padding: .6rem .8rem; border-radius: .4rem;
  border: 1px solid var(--bad); color: var(--bad); }
body.unreachable #banner { display: block; }
body.unreachable .cards, body.unreachable canvas { opacity: .45; }
.cards { display: grid; gap: .6rem; margin-top: 1rem;
  grid-template-columns: repeat(auto-fit, minmax(9.5rem, 1fr)); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: .5rem;
  padding: .6rem .8rem; min-width: 0; }
.card .label { color: var(--muted); font-size: .8rem; }
.card .value { font-size: 1.6rem; font-weight: 650; font-variant-numeric: tabular-nums;
  overflow-wrap: anywhere; }
.chart { background: var(--card); border: 1px solid var(--line); border-radius: .5rem;
  padding: .6rem .8rem; }
canvas { width: 100%; height: 11rem; display: block; }
.legend span::before { content: ""; display: inline-block; width: .8rem; height: .2rem;
  margin: 0 .3rem .2rem 0; vertical-align: middle; background: currentColor; }
.legend .in { color: var(--in); } .legend .out { color: var(--out); margin-left: 1rem; }
.table { overflow-x: auto; background: var(--card); border: 1px solid var(--line);
  border-radius: .5rem; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line);
  white-space: nowrap; }
th { font-size: .8rem; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; }
form { display: flex; gap: .4rem; flex-wrap: wrap; margin: .4rem 0; }
input { font: inherit; padding: .3rem .5rem; min-width: 12rem; flex: 1; max-width: 24rem; }
button { font: inherit; padding: .3rem .8rem; }
</style>
</head>
<body>
<header>
  <h1>denomq</h1>
  <span class="muted">version ${version}</span>
  <span id="state" data-state="connecting">connecting…</span>
  <span class="muted">updated <time id="updated">never</time></span>
</header>
<main>
  <div id="banner" role="alert">The broker is unreachable since <time id="down-since"></time>;
    showing the last values received, retrying.</div>
  <section class="cards" aria-label="headline numbers">
    <div class="card"><div class="label">connections</div><div class="value" data-metric="connections">–</div></div>
    <div class="card"><div class="label">clients connected</div><div class="value" data-metric="clients">–</div></div>
    <div class="card"><div class="label">sessions (online / offline)</div><div class="value"><span data-metric="sessions">–</span> <span class="muted" style="font-size:.9rem">(<span data-metric="sessions-online">–</span> / <span data-metric="sessions-offline">–</span>)</span></div></div>
    <div class="card"><div class="label">subscriptions</div><div class="value" data-metric="subscriptions">–</div></div>
    <div class="card"><div class="label">retained messages</div><div class="value" data-metric="retained">–</div></div>
    <div class="card"><div class="label">queued messages</div><div class="value" data-metric="queued">–</div></div>
    <div class="card"><div class="label">messages in / s</div><div class="value" data-metric="rate-in">–</div></div>
    <div class="card"><div class="label">messages out / s</div><div class="value" data-metric="rate-out">–</div></div>
    <div class="card"><div class="label">dropped messages</div><div class="value" data-metric="dropped">–</div></div>
    <div class="card"><div class="label">memory (RSS)</div><div class="value" data-metric="memory">–</div></div>
    <div class="card"><div class="label">V8 heap used</div><div class="value" data-metric="heap">–</div></div>
    <div class="card"><div class="label">uptime</div><div class="value" data-metric="uptime">–</div></div>
  </section>
  <h2>Messages per second, last 5 minutes</h2>
  <div class="chart">
    <canvas id="rates" aria-label="messages in and out per second"></canvas>
    <div class="legend muted"><span class="in">in</span><span class="out">out</span>
      <span class="muted" style="margin-left:1rem">peak <span data-metric="rate-peak">0</span>/s</span></div>
  </div>
  <h2>Dropped messages by reason</h2>
  <div class="table"><table><thead><tr><th>reason</th><th class="num">messages</th></tr></thead>
    <tbody id="drops"></tbody></table></div>
  <h2>Clients</h2>
  <form id="token-form"><input id="token" type="password" autocomplete="off"
    placeholder="admin token (--http-token-file)" aria-label="admin token"><button>Show clients</button></form>
  <p id="clients-note" class="muted">The client list needs the admin token.</p>
  <div class="table"><table><thead><tr><th>client id</th><th>address</th><th>transport</th>
    <th>protocol</th><th>user</th><th>connected since</th><th class="num">in flight</th>
    <th class="num">queued</th></tr></thead><tbody id="clients"></tbody></table></div>
</main>
<script>
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  const interval = Math.max(250, Number(params.get("refresh")) || 2000);
  const keep = Math.ceil(300000 / interval);
  const $ = (sel) => document.querySelector(sel);
  let token = "";
  const fromHash = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (fromHash) {
    token = decodeURIComponent(fromHash[1]);
    history.replaceState(null, "", location.pathname + location.search);
  } else {
    try { token = sessionStorage.getItem("denomq-token") || ""; } catch (_) {}
  }
  const saveToken = (t) => { token = t; try { sessionStorage.setItem("denomq-token", t); } catch (_) {} };
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault(); saveToken($("#token").value.trim()); pollClients();
  });

  function parse(text) {
    const samples = new Map();
    for (const line of text.split("\\n")) {
      if (line === "" || line[0] === "#") continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\\{(.*)\\})?\\s+(\\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[2]) for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\]|\\\\.)*)"/g)) labels[l[1]] = l[2];
      if (!samples.has(m[1])) samples.set(m[1], []);
      samples.get(m[1]).push({ labels, value: Number(m[3]) });
    }
    return samples;
  }
  const one = (s, name, label, value) => {
    const list = s.get(name) || [];
    const hit = label ? list.find((x) => x.labels[label] === value) : list[0];
    return hit ? hit.value : NaN;
  };
  const sum = (s, name) => (s.get(name) || []).reduce((a, x) => a + x.value, 0);
  const int = (n) => Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–";
  const bytes = (n) => {
    if (!Number.isFinite(n)) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0; while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  };
  const duration = (s) => {
    if (!Number.isFinite(s)) return "–";
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return d > 0 ? d + "d " + h + "h" : h > 0 ? h + "h " + m + "m" : m + "m " + (s % 60) + "s";
  };
  const set = (name, text) => { for (const el of document.querySelectorAll('[data-metric="' + name + '"]')) el.textContent = text; };

  const history_ = [];
  let previous;
  let downSince = null;
  function setState(live) {
    const state = $("#state");
    if (live) {
      downSince = null;
      state.dataset.state = "live"; state.textContent = "live";
      document.body.classList.remove("unreachable");
    } else {
      if (downSince === null) downSince = new Date();
      state.dataset.state = "unreachable"; state.textContent = "unreachable";
      $("#down-since").textContent = downSince.toLocaleTimeString();
      document.body.classList.add("unreachable");
    }
  }

  function show(s) {
    set("connections", int(one(s, "denomq_connections")));
    set("clients", int(one(s, "denomq_clients_connected")));
    const online = one(s, "denomq_sessions", "state", "online");
    const offline = one(s, "denomq_sessions", "state", "offline");
    set("sessions", int(online + offline));
    set("sessions-online", int(online));
    set("sessions-offline", int(offline));
    set("subscriptions", int(one(s, "denomq_subscriptions")));
    set("retained", int(one(s, "denomq_retained_messages")));
    set("queued", int(one(s, "denomq_queued_messages")));
    set("dropped", int(sum(s, "denomq_messages_dropped_total")));
    set("memory", bytes(one(s, "process_resident_memory_bytes")));
    set("heap", bytes(one(s, "denomq_heap_used_bytes")));
    set("uptime", duration(one(s, "denomq_uptime_seconds")));
    const now = performance.now();
    const inTotal = one(s, "denomq_messages_received_total");
    const outTotal = one(s, "denomq_messages_sent_total");
    if (previous && inTotal >= previous.in && outTotal >= previous.out) {
      const dt = (now - previous.at) / 1000;
      const point = { in: (inTotal - previous.in) / dt, out: (outTotal - previous.out) / dt };
      history_.push(point);
      while (history_.length > keep) history_.shift();
      set("rate-in", int(point.in));
      set("rate-out", int(point.out));
    }
    previous = { at: now, in: inTotal, out: outTotal };
    const drops = $("#drops");
    drops.replaceChildren(...(s.get("denomq_messages_dropped_total") || []).map((x) => {
      const tr = document.createElement("tr");
      const a = document.createElement("td"); a.textContent = x.labels.reason.replace(/_/g, " ");
      const b = document.createElement("td"); b.className = "num"; b.textContent = int(x.value);
      b.dataset.drop = x.labels.reason;
      tr.append(a, b); return tr;
    }));
    draw();
    $("#updated").textContent = new Date().toLocaleTimeString();
  }

  function draw() {
    const canvas = $("#rates");
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (w === 0 || h === 0) return;
    canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    let peak = 1;
    for (const p of history_) peak = Math.max(peak, p.in, p.out);
    set("rate-peak", int(peak === 1 && history_.every((p) => p.in < 1 && p.out < 1) ? 0 : peak));
    g.strokeStyle = css.getPropertyValue("--line"); g.lineWidth = 1;
    for (let i = 1; i <= 3; i++) {
      const y = Math.round(h - 4 - (h - 8) * i / 4) + .5;
      g.beginPath(); g.moveTo(0, y); g.lineTo(w, y); g.stroke();
    }
    const line = (key, color) => {
      if (history_.length < 2) return;
      g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
      history_.forEach((p, i) => {
        const x = w - (history_.length - 1 - i) * (w / (keep - 1));
        const y = h - 4 - (h - 8) * (p[key] / peak);
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    };
    line("in", css.getPropertyValue("--in"));
    line("out", css.getPropertyValue("--out"));
  }

  async function poll() {
    try {
      const response = await fetch("metrics", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      show(parse(await response.text()));
      setState(true);
    } catch (_) {
      setState(false);
    }
    setTimeout(poll, interval);
  }

  async function pollClients() {
    const note = $("#clients-note");
    if (token === "") { note.textContent = "The client list needs the admin token."; return; }
    try {
      const response = await fetch("api/v1/clients?limit=500", {
        cache: "no-store", headers: { authorization: "Bearer " + token },
      });
      if (response.status === 403) { note.textContent = "The admin API is off (no --http-token-file)."; return; }
      if (response.status === 401) { note.textContent = "Wrong admin token."; return; }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const body = await response.json();
      note.textContent = body.total + " connected" + (body.total > body.clients.length ? ", first " + body.clients.length + " shown" : "");
      $("#clients").replaceChildren(...body.clients.map((c) => {
        const tr = document.createElement("tr");
        tr.dataset.clientId = c.clientId;
        const address = c.address === null ? "?" : (c.address.includes(":") ? "[" + c.address + "]" : c.address) + ":" + c.port;
        for (const [text, num] of [[c.clientId], [address], [c.transport], [c.protocolVersion],
          [c.username ?? ""], [new Date(c.connectedSince).toLocaleString()], [c.inflight, 1], [c.queued, 1]]) {
          const td = document.createElement("td"); td.textContent = String(text); if (num) td.className = "num";
          tr.append(td);
        }
        return tr;
      }));
    } catch (_) {
      note.textContent = "Client list unavailable: the broker is unreachable.";
    }
  }

  window.addEventListener("resize", draw);
  poll();
  (function loop() { pollClients().finally(() => setTimeout(loop, interval)); })();
})();
</script>
</body>
</html>
`;
}
