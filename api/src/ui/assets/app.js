// fleet console: one page, no build step. The server pushes the cluster view over
// server-sent events (coalesced server-side); renders are further batched to one per
// animation frame, so bursts of changes never queue up work in the page.

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const state = { armed: null, me: null, cluster: null, filter: "", namespace: "", stateFilter: "", events: null, journal: null, unit: null };
// Read by the browser test: how many views arrived and when the last one was drawn.
window.fleetConsole = { updates: 0, renders: 0, revision: 0, arrived: 0, rendered: 0 };

async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const err = new Error(data?.error?.message || `${resp.status} ${resp.statusText}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function show(id) {
  for (const s of ["login", "machines", "units", "unit"]) $("#" + s).hidden = s !== id;
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("current", a.id === "nav-" + id);
}

function setError(msg) { $("#error").textContent = msg || ""; }

async function start() {
  try {
    state.me = await api("GET", "/ui/api/me");
  } catch (e) {
    if (e.status === 401 || e.status === 403) return showLogin(e.message);
    return setError(e.message);
  }
  $("#who").textContent = `${state.me.who} · ${state.me.role}`;
  $("#logout").hidden = false;
  for (const el of document.querySelectorAll(".needs-operator")) el.hidden = !state.me.can_act;
  follow();
  route();
}

function showLogin(why) {
  show("login");
  $("#login-error").textContent = why && !/certificate|unknown connection/.test(why) ? why : "";
}

function follow() {
  if (state.events) state.events.close();
  const es = new EventSource("/ui/api/events");
  state.events = es;
  es.addEventListener("open", () => $("#live").className = "live on");
  es.addEventListener("error", () => {
    $("#live").className = "live off";
    // EventSource retries a dropped stream by itself but gives up on a refusal: then
    // ask who we are, which shows the login when the token is gone.
    if (es.readyState === EventSource.CLOSED) setTimeout(() => { if (state.events === es) start(); }, 1000);
  });
  es.addEventListener("end", (ev) => {
    es.close();
    if (state.events === es) { state.events = null; state.me = null; closeUnit(); showLogin(JSON.parse(ev.data).error); }
  });
  es.addEventListener("problem", (ev) => setError(JSON.parse(ev.data).error));
  es.addEventListener("cluster", (ev) => {
    state.cluster = JSON.parse(ev.data);
    window.fleetConsole.updates++;
    window.fleetConsole.arrived = Date.now();
    window.fleetConsole.revision = state.cluster.revision;
    scheduleRender();
  });
}

let pending = false;
function scheduleRender() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    render();
    window.fleetConsole.renders++;
    window.fleetConsole.rendered = Date.now();
  });
}

function route() {
  const h = location.hash || "#/machines";
  if (!state.me) return;
  if (h.startsWith("#/unit/")) {
    const name = decodeURIComponent(h.slice("#/unit/".length));
    openUnit(name);
    show("unit");
  } else {
    closeUnit();
    show(h === "#/units" ? "units" : "machines");
  }
  render();
}

function render() {
  const c = state.cluster;
  if (!c) return;
  if (!$("#machines").hidden) renderMachines(c);
  if (!$("#units").hidden) renderUnits(c);
  if (!$("#unit").hidden) renderUnitStates(c);
}

function renderMachines(c) {
  $("#leader").textContent = c.leader || "none";
  const live = c.machines.filter((m) => !m.lost).length;
  $("#machine-count").textContent = `${live} up` + (live < c.machines.length ? `, ${c.machines.length - live} lost` : "");
  $("#machines tbody").innerHTML = c.machines.map((m) => {
    const meta = Object.entries(m.metadata).map(([k, v]) => `<span class="pill">${esc(k)}=${esc(v)}</span>`).join("");
    const units = Object.entries(m.units).map(([k, n]) => `<span class="pill state-${esc(k)}">${esc(k)} ${n}</span>`).join("");
    const lead = m.id === c.leader ? '<span class="leader">leader</span>' : "";
    return `<tr data-id="${esc(m.id)}" class="${m.lost ? "lost" : ""}"><td class="mono">${esc(m.id)}${lead}</td><td>${esc(m.ip)}</td><td>${meta}</td><td>${units}</td></tr>`;
  }).join("");
}

// The buttons for unit `u`, as the user's role allows.
function actions(u) {
  if (!mayChange(u)) return "";
  const b = (a, label, cls = "") => `<button data-action="${a}" data-unit="${esc(u.name)}" class="${cls}">${label}</button>`;
  const armed = state.armed?.unit === u.name && state.armed.until > Date.now();
  return (u.desired === "launched" ? b("stop", "Stop") : b("start", "Start"))
    + (u.desired !== "inactive" ? b("unload", "Unload") : "")
    + (armed ? b("destroy", "Really destroy?", "danger armed") : b("destroy", "Destroy", "danger"));
}

// Whether the user may act on the unit: an operator changes namespace default's units
// only (the API refuses the rest anyway); admin changes any.
function mayChange(u) {
  if (!state.me?.can_act) return false;
  return state.me.all_namespaces || u.namespace === "default";
}

// The state filter's choices: an active state, or "unplaced" (wanted but on no machine).
function stateMatches(u, want) {
  if (!want) return true;
  if (want === "unplaced") return !u.machine && !u.global && u.desired !== "inactive";
  return u.active === want;
}

function renderNamespaces(c) {
  const sel = $("#namespace");
  const have = [...sel.options].slice(1).map((o) => o.value).join("\n");
  if (have === c.namespaces.join("\n")) return;
  sel.innerHTML = '<option value="">all</option>'
    + c.namespaces.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join("");
  sel.value = c.namespaces.includes(state.namespace) ? state.namespace : "";
}

function renderUnits(c) {
  renderNamespaces(c);
  const f = state.filter.toLowerCase();
  const rows = c.units.filter((u) => (!state.namespace || u.namespace === state.namespace)
    && stateMatches(u, state.stateFilter)
    && (!f || [u.local, u.machine, u.desired, u.active, u.sub, u.reason].some((v) => v.toLowerCase().includes(f))));
  const narrowed = f || state.namespace || state.stateFilter;
  $("#unit-count").textContent = narrowed ? `${rows.length} of ${c.units.length}` : `${c.units.length}`;
  $("#units tbody").innerHTML = rows.map((u) =>
    `<tr data-unit="${esc(u.name)}"><td class="ns">${esc(u.namespace)}</td><td><a href="#/unit/${encodeURIComponent(u.name)}">${esc(u.local)}</a></td>`
    + `<td class="desired">${esc(u.desired)}</td><td class="mono">${esc(u.machine.slice(0, 8))}</td>`
    + `<td class="active state-${esc(u.active)}">${esc(u.active)}</td><td class="sub">${esc(u.sub)}</td>`
    + `<td class="reason">${esc(u.reason)}</td><td class="act">${actions(u)}</td></tr>`).join("");
}

function renderUnitStates(c) {
  // One row per machine: a global unit runs on many.
  const rows = c.units.filter((x) => x.name === state.unit);
  const u = rows[0];
  if (!u) return;
  $("#unit-desired").textContent = u.desired;
  $("#unit-actions").innerHTML = actions(u);
  const nowhere = u.global ? "(global: on no machine yet)" : "(not placed)";
  $("#unit-states tbody").innerHTML = rows.map((r) =>
    `<tr data-unit="${esc(r.name)}"><td class="mono">${esc(r.machine || nowhere)}</td><td>${esc(r.desired)}</td><td>${esc(r.load)}</td>`
    + `<td class="active state-${esc(r.active)}">${esc(r.active)}</td><td class="sub">${esc(r.sub)}</td></tr>`).join("")
    + (u.reason ? `<tr><td colspan="5" class="reason">Not placed: ${esc(u.reason)}</td></tr>` : "");
}

async function openUnit(name) {
  if (state.unit === name) return;
  closeUnit();
  state.unit = name;
  $("#unit-name").textContent = name;
  $("#unit-file").textContent = "";
  $("#journal").textContent = "";
  try {
    const u = await api("GET", `/ui/api/units/${encodeURIComponent(name)}`);
    $("#unit-file").textContent = u.file;
  } catch (e) { setError(e.message); }
  openJournal(name);
}

function openJournal(name) {
  const j = new EventSource(`/ui/api/units/${encodeURIComponent(name)}/journal`);
  state.journal = j;
  const pre = $("#journal");
  j.addEventListener("line", (ev) => {
    pre.textContent += JSON.parse(ev.data) + "\n";
    if (pre.textContent.length > 200000) pre.textContent = pre.textContent.slice(-100000);
    pre.scrollTop = pre.scrollHeight;
  });
  // The unit has no machine yet, or the stream ended or was refused: try again in a
  // while (EventSource gives up by itself on an error status).
  const retry = () => { j.close(); setTimeout(() => { if (state.journal === j) openJournal(name); }, 2000); };
  j.addEventListener("end", retry);
  j.addEventListener("error", () => { if (j.readyState === EventSource.CLOSED) retry(); });
}

function closeUnit() {
  if (state.journal) state.journal.close();
  state.journal = null;
  state.unit = null;
}

document.addEventListener("click", async (ev) => {
  const btn = ev.target.closest("button[data-action]");
  if (!btn) return;
  const { action, unit } = btn.dataset;
  // Destroy asks once more in the page itself (a confirm() dialog would stop the page,
  // and its live updates, until answered); the question stands for a few seconds.
  if (action === "destroy" && !btn.classList.contains("armed")) {
    state.armed = { unit, until: Date.now() + 10000 };
    scheduleRender();
    setTimeout(scheduleRender, 10100);
    return;
  }
  state.armed = null;
  btn.disabled = true;
  try {
    await api("POST", `/ui/api/units/${encodeURIComponent(unit)}/${action}`);
    setError("");
  } catch (e) { setError(`${action} ${unit}: ${e.message}`); }
  btn.disabled = false;
});

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/ui/login", { token: $("#login-token").value });
      $("#login-token").value = "";
      $("#login-error").textContent = "";
      start();
    } catch (e) { $("#login-error").textContent = e.message; }
  });
  $("#logout").addEventListener("click", async () => {
    await api("POST", "/ui/logout");
    if (state.events) state.events.close();
    closeUnit();
    state.me = null;
    $("#who").textContent = "";
    $("#logout").hidden = true;
    showLogin();
  });
  $("#filter").addEventListener("input", (ev) => { state.filter = ev.target.value; scheduleRender(); });
  $("#namespace").addEventListener("change", (ev) => { state.namespace = ev.target.value; scheduleRender(); });
  $("#state-filter").addEventListener("change", (ev) => { state.stateFilter = ev.target.value; scheduleRender(); });
  $("#submit-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/ui/api/units", { name: $("#submit-name").value, text: $("#submit-text").value });
      setError("");
      $("#submit-text").value = "";
      $("#submit-name").value = "";
    } catch (e) { setError(`submit: ${e.message}`); }
  });
  window.addEventListener("hashchange", route);
  start();
});
