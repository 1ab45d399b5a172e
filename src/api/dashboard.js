// fabflow operators' dashboard. Reads the /v1 API with the session cookie,
// redraws when /dashboard/events says something changed (no polling), and
// sends every change with the session's CSRF token. Text from the API is
// only ever set as textContent.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);

// el("td", {class: "x", onclick: f}, "text", child...)
function el(tag, attrs = {}, ...children) {
  const node = tag === "svg" || attrs.svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "svg" || value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const svg = (tag, attrs = {}, ...children) => el(tag, { ...attrs, svg: true }, ...children);

let session = null;
let stream = null;
let overview = null;
let refreshing = false;
let again = false;
const filters = { factory: "", jobState: "", jobSearch: "", orderState: "", orderSearch: "", order: null };

function viewName() {
  const name = location.hash.replace(/^#/, "");
  return ["network", "factory", "jobs", "orders", "couriers"].includes(name) ? name : "network";
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = session ? session.csrf_token : "";
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (response.status === 401 && !path.startsWith("/dashboard/session")) signedOut("Your session ended; sign in again.");
  if (!response.ok) {
    const detail = data && typeof data === "object" ? (data.detail || data.title) : null;
    throw new Error(detail || `HTTP ${response.status}`);
  }
  return data;
}

function when(text) {
  if (!text) return "";
  const date = new Date(text);
  return isNaN(date) ? text : date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

function badge(state) { return el("span", { class: `badge s-${state}`, "data-state": state }, String(state).replace(/_/g, " ")); }

function toast(text, bad = false) {
  const node = $("#toast");
  node.textContent = text;
  node.className = bad ? "bad" : "";
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, 6000);
}

// Asks, then runs `run` (a promise of a result message) and shows its outcome.
function confirmAction(question, run) {
  const overlay = $("#confirm");
  $("#confirm-text").textContent = question;
  overlay.hidden = false;
  const done = () => { overlay.hidden = true; $("#confirm-yes").onclick = null; $("#confirm-no").onclick = null; };
  $("#confirm-no").onclick = done;
  $("#confirm-yes").onclick = async () => {
    done();
    try { toast(await run()); } catch (err) { toast(`Refused: ${err.message}`, true); }
    refresh();
  };
}

function machineAction(machine, action, label) {
  confirmAction(`${label} machine ${machine.id}?`, async () => {
    const after = await api(`/v1/machines/${encodeURIComponent(machine.id)}/${action}`, { method: "POST" });
    return `Machine ${after.id} is now ${after.state.replace(/_/g, " ")}.`;
  });
}

// The operator loaded a material on the machine ("": not known).
function materialLoaded(machine, material) {
  const label = material ? `${material} loaded` : "material not known";
  confirmAction(`Declare ${label} on machine ${machine.id}? It then starts only jobs of that material.`, async () => {
    const after = await api(`/v1/machines/${encodeURIComponent(machine.id)}/material`, { method: "POST", body: { material: material || null } });
    return `Machine ${after.id} has ${after.loaded_material || "no known material"} loaded.`;
  });
}

function materialControl(m) {
  return el("label", { class: "material" }, "Material loaded: ",
    el("select", { "data-machine": m.id, "data-action": "material", onchange: (e) => materialLoaded(m, e.target.value) },
      el("option", { value: "", selected: !m.loaded_material }, "not known"),
      m.materials.map((name) => el("option", { value: name, selected: name === m.loaded_material }, name))));
}

const JOB_QUESTIONS = {
  resume: (job) => `Resume held job ${job.token} on ${job.machine}? Only if the machine carries on with it.`,
  abandon: (job) => `Abandon held job ${job.token}? Its units not reported good are made again under new jobs.`,
  retry: (job) => `Retry held job ${job.token}? Its units not reported good are made again under new jobs.`,
  cancel: (job) => `Cancel job ${job.token} and the rest of its order line not yet made? The order is cancelled if no line is left, ready if the lines left are done.`,
};

// Maintenance planned ahead: the machine starts no job that would run into it.
function planMaintenance(machine) {
  const hour = 3600 * 1000;
  const start = window.prompt(`Maintenance on ${machine.id} starts at (RFC 3339, UTC):`, new Date(Date.now() + hour).toISOString().slice(0, 16) + ":00Z");
  if (!start) return;
  const end = window.prompt("and ends at:", new Date(Date.parse(start) + 2 * hour).toISOString().slice(0, 16) + ":00Z");
  if (!end) return;
  const reason = window.prompt("Why (shown on the jobs it holds back):", "");
  if (!reason) return;
  confirmAction(`Plan maintenance on ${machine.id} from ${when(start)} to ${when(end)} (${reason})? No job starts that would run into it.`, async () => {
    const window_ = await api(`/v1/machines/${encodeURIComponent(machine.id)}/maintenance-windows`, { method: "POST", body: { start, end, reason } });
    return `Maintenance planned on ${window_.machine} from ${when(window_.start)} to ${when(window_.end)}.`;
  });
}

function maintenanceList(machine, windows) {
  if (!windows.length) return "";
  return el("div", {}, el("strong", {}, "Planned maintenance"),
    el("ul", {}, windows.map((w) => el("li", {}, `${when(w.start)} – ${when(w.end)}: ${w.reason} `,
      el("button", { type: "button", class: "danger", "data-window": w.id, "data-action": "cancel-maintenance", onclick: () =>
        confirmAction(`Remove the maintenance of ${machine.id} from ${when(w.start)}?`, async () => {
          await api(`/v1/machines/${encodeURIComponent(machine.id)}/maintenance-windows/${encodeURIComponent(w.id)}`, { method: "DELETE" });
          return `Maintenance of ${machine.id} removed.`;
        }) }, "Remove")))));
}

function jobDecision(job, decision) {
  confirmAction(JOB_QUESTIONS[decision](job), async () => {
    const after = await api(`/v1/jobs/${job.token}/${decision}`, { method: "POST" });
    if (decision === "cancel") return `Jobs ${after.cancelled.join(", ")} cancelled; the order is ${after.order_state.replace(/_/g, " ")}.`;
    return `Job ${after.token} is now ${after.state}.`;
  });
}

function cancelButton(job) {
  return el("button", { type: "button", class: "danger", "data-job": job.token, "data-action": "cancel", onclick: () => jobDecision(job, "cancel") }, "Cancel");
}

const ESCALATION_QUESTIONS = {
  retry: "Plan its delivery again? Its failed attempts count from zero.",
  return_to_factory: "Cancel the order and put its units on the factory's shelf?",
  cancel_delivery: "Cancel the order? Nothing is restocked.",
};

function escalationDecision(order, decision) {
  confirmAction(`Order ${order.external_ref || order.id}: ${ESCALATION_QUESTIONS[decision]}`, async () => {
    const after = await api(`/v1/orders/${encodeURIComponent(order.id)}/escalation`, { method: "POST", body: { decision } });
    return `Order ${after.external_ref || after.id} is now ${after.state.replace(/_/g, " ")}.`;
  });
}

function escalationActions(order) {
  const e = order.escalation;
  return el("div", { class: "card", id: "escalation" },
    el("p", { class: "error" }, `Escalated: ${String(e.reason).replace(/_/g, " ")} after ${e.attempts} attempts (${when(e.at)}). No wave plans it until someone decides.`),
    el("div", { class: "actions" },
      el("button", { type: "button", "data-decision": "retry", onclick: () => escalationDecision(order, "retry") }, "Retry delivery"),
      el("button", { type: "button", "data-decision": "return_to_factory", onclick: () => escalationDecision(order, "return_to_factory") }, "Return to factory (restock)"),
      el("button", { type: "button", class: "danger", "data-decision": "cancel_delivery", onclick: () => escalationDecision(order, "cancel_delivery") }, "Cancel delivery")));
}

function heldActions(job) {
  return el("div", { class: "actions" },
    el("button", { type: "button", "data-job": job.token, "data-action": "resume", onclick: () => jobDecision(job, "resume") }, "Resume"),
    el("button", { type: "button", "data-job": job.token, "data-action": "retry", onclick: () => jobDecision(job, "retry") }, "Retry (make again)"),
    el("button", { type: "button", class: "danger", "data-job": job.token, "data-action": "abandon", onclick: () => jobDecision(job, "abandon") }, "Abandon (make again)"));
}

function table(headings, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

// ---- views -----------------------------------------------------------------

async function loadOverview() {
  overview = await api("/v1/overview");
  return overview;
}

async function renderNetwork(body) {
  const o = await loadOverview();
  const orderStats = Object.entries(o.orders_by_state).map(([state, n]) =>
    el("div", { class: "stat" }, el("span", { class: "n" }, n), state.replace(/_/g, " ")));
  body.replaceChildren(
    el("div", { class: "stats" },
      el("div", { class: "stat" }, el("span", { class: "n", id: "at-risk-count" }, o.at_risk.length), "orders at risk"),
      el("div", { class: "stat" }, el("span", { class: "n" }, o.faults.length), "machines in fault/offline"),
      el("div", { class: "stat" }, el("span", { class: "n" }, o.held_jobs.length), "held jobs"),
      el("div", { class: "stat" }, el("span", { class: "n", id: "outbox-backlog" }, o.outbox_backlog),
        "outbox backlog", o.outbox_oldest_age_seconds ? ` (oldest ${Math.round(o.outbox_oldest_age_seconds)} s)` : "")),
    el("h2", {}, "Orders by state"), el("div", { class: "stats" }, orderStats.length ? orderStats : el("p", { class: "muted" }, "No orders yet.")),
    el("h2", {}, "Factories"),
    el("div", { class: "grid" }, o.factories.map((f) => el("div", {
      class: "card clickable", "data-factory": f.id,
      onclick: () => { filters.factory = f.id; location.hash = "#factory"; },
    }, el("h3", {}, f.id),
    el("div", {}, Object.entries(f.machines).map(([state, n]) => [badge(state), ` ${n} `])),
    el("div", { class: "muted" }, `${f.queued_jobs} jobs queued or on machines`)))),
    el("h2", {}, "Orders at risk of the promise"),
    o.at_risk.length ? table(["order", "factory", "state", "deadline", "why"], o.at_risk.map((order) =>
      el("tr", { class: "clickable", onclick: () => { filters.order = order.id; location.hash = "#orders"; } },
        el("td", {}, order.external_ref || order.id), el("td", {}, order.factory), el("td", {}, badge(order.state)),
        el("td", {}, when(order.deadline)), el("td", {}, order.at_risk ? order.at_risk.detail || order.at_risk.reason : ""))))
      : el("p", { class: "muted" }, "None."),
    el("h2", {}, "Active faults"),
    o.faults.length ? table(["machine", "factory", "state", "fault code"], o.faults.map((m) =>
      el("tr", {}, el("td", {}, m.id), el("td", {}, m.factory), el("td", {}, badge(m.observed)), el("td", {}, m.fault_code ?? ""))))
      : el("p", { class: "muted" }, "None."),
    el("h2", {}, "Held jobs"),
    o.held_jobs.length ? table(["job", "machine", "cause", "made", "decide"], o.held_jobs.map((job) =>
      el("tr", {}, el("td", {}, job.token), el("td", {}, job.machine || ""), el("td", {}, `${job.hold_cause || ""} ${job.fault_code ?? ""}`),
        el("td", {}, `${job.good}/${job.quantity}`), el("td", {}, heldActions(job)))))
      : el("p", { class: "muted" }, "None."),
    el("h2", {}, "Couriers"),
    el("div", { class: "stats" }, o.couriers.map((c) => el("div", { class: "stat" }, el("strong", {}, c.id), el("div", { class: "muted" }, `zone ${c.zone}, ${c.capacity} per route`)))),
  );
}

function factoryControls(controls) {
  const factories = overview ? overview.factories.map((f) => f.id) : [];
  if (!filters.factory && factories.length) filters.factory = factories[0];
  controls.replaceChildren(el("label", {}, "Factory ",
    el("select", { id: "factory-select", onchange: (e) => { filters.factory = e.target.value; refresh(); } },
      factories.map((id) => el("option", { value: id, selected: id === filters.factory }, id)))));
}

async function openJobs(factory) {
  const states = ["running", "dispatched", "scheduled", "held"];
  const pages = await Promise.all(states.map((state) =>
    api(`/v1/jobs?factory=${encodeURIComponent(factory)}&state=${state}&limit=500`)));
  return pages.flatMap((page) => page.items);
}

async function renderFactory(body, controls) {
  if (!overview) await loadOverview();
  factoryControls(controls);
  if (!filters.factory) { body.replaceChildren(el("p", { class: "muted" }, "No factory in your scope.")); return; }
  const [machines, jobs] = await Promise.all([
    api(`/v1/machines?factory=${encodeURIComponent(filters.factory)}`), openJobs(filters.factory)]);
  const windows = await Promise.all(machines.map((m) =>
    api(`/v1/machines/${encodeURIComponent(m.id)}/maintenance-windows`).catch(() => [])));
  const cards = machines.map((m, index) => {
    const mine = jobs.filter((job) => job.machine === m.id);
    const current = mine.find((job) => job.token === m.job_token && job.state !== "scheduled")
      || mine.find((job) => job.state === "running" || job.state === "dispatched");
    // The API's order and estimates (waiting.position); due time where it has none.
    const queue = mine.filter((job) => job.state === "scheduled").sort((a, b) =>
      ((a.waiting && a.waiting.position) || 1e9) - ((b.waiting && b.waiting.position) || 1e9)
      || String(a.due).localeCompare(String(b.due)));
    const held = mine.filter((job) => job.state === "held");
    const actions = [];
    if (m.mode === "active") {
      actions.push(el("button", { type: "button", "data-machine": m.id, "data-action": "pause", onclick: () => machineAction(m, "pause", "Pause (finish the current job, hand the queue back, take nothing new)") }, "Pause"));
      actions.push(el("button", { type: "button", "data-machine": m.id, "data-action": "drain", onclick: () => machineAction(m, "drain", "Drain (finish the queue, take nothing new, then pause)") }, "Drain"));
      actions.push(el("button", { type: "button", "data-machine": m.id, "data-action": "maintenance", onclick: () => machineAction(m, "maintenance", "Start maintenance on") }, "Maintenance"));
    } else if (m.mode === "draining") {
      actions.push(el("button", { type: "button", class: "primary", "data-machine": m.id, "data-action": "resume", onclick: () => machineAction(m, "resume", "Resume") }, "Resume"));
      actions.push(el("button", { type: "button", "data-machine": m.id, "data-action": "pause", onclick: () => machineAction(m, "pause", "Pause now") }, "Pause"));
      actions.push(el("button", { type: "button", "data-machine": m.id, "data-action": "maintenance", onclick: () => machineAction(m, "maintenance", "Start maintenance on") }, "Maintenance"));
    } else if (m.mode === "paused") {
      actions.push(el("button", { type: "button", class: "primary", "data-machine": m.id, "data-action": "resume", onclick: () => machineAction(m, "resume", "Resume") }, "Resume"));
      actions.push(el("button", { type: "button", "data-machine": m.id, "data-action": "maintenance", onclick: () => machineAction(m, "maintenance", "Start maintenance on") }, "Maintenance"));
    } else if (m.mode === "maintenance") {
      actions.push(el("button", { type: "button", class: "primary", "data-machine": m.id, "data-action": "end-maintenance", onclick: () => machineAction(m, "end-maintenance", "End maintenance (the machine is ready) on") }, "Machine ready"));
    }
    const progress = current ? Math.min(100, Math.round((100 * current.good) / Math.max(1, current.quantity))) : 0;
    return el("div", { class: "card machine", "data-machine": m.id },
      el("h3", {}, m.id, " ", el("span", { class: "muted" }, m.model)),
      el("div", { class: "state" }, badge(m.state), m.state !== m.observed ? el("span", { class: "muted" }, ` (machine reports ${m.observed})`) : "",
        m.fault_code !== null && m.fault_code !== undefined && m.observed === "fault" ? el("span", { class: "error" }, ` fault ${m.fault_code}`) : ""),
      el("div", { class: "muted" }, `materials: ${m.materials.join(", ")}`, m.loaded_material ? ` · loaded: ${m.loaded_material}` : ""),
      current ? el("div", {}, `Job ${current.token} · ${current.process} · ${current.material} · order ${current.order_id.slice(0, 8)}…`,
        el("progress", { max: Math.max(1, current.quantity), value: Math.min(current.good, current.quantity), title: `${progress}%` }),
        el("span", { class: "muted" }, `${current.good}/${current.quantity} good, ${current.scrap} scrap, due ${when(current.due)}`))
        : el("div", { class: "muted" }, "No job on the machine."),
      held.map((job) => el("div", {}, el("strong", { class: "error" }, `Held job ${job.token} (${job.hold_cause || "held"})`), heldActions(job))),
      el("div", {}, el("strong", {}, `Queue (${queue.length})`),
        queue.length ? el("ol", { class: "queue" }, queue.map((job) => el("li", {}, `job ${job.token}: ${job.quantity} × ${job.process} (${job.material}), due ${when(job.due)} `, cancelButton(job),
          job.waiting ? el("div", { class: "muted" }, job.waiting.estimated_start
            ? `starts ~${when(job.waiting.estimated_start)}, done ~${when(job.waiting.estimated_finish)}`
            : job.waiting.detail) : "")))
          : el("span", { class: "muted" }, " empty")),
      maintenanceList(m, windows[index] || []),
      el("div", { class: "actions" }, actions, materialControl(m),
        el("button", { type: "button", "data-machine": m.id, "data-action": "plan-maintenance", onclick: () => planMaintenance(m) }, "Plan maintenance")));
  });
  body.replaceChildren(el("div", { class: "grid" }, cards.length ? cards : el("p", { class: "muted" }, "No machines.")));
}

const JOB_STATES = ["", "pending", "scheduled", "dispatched", "running", "held", "done", "failed", "cancelled"];
const ORDER_STATES = ["", "accepted", "in_production", "ready", "out_for_delivery", "delivered", "cancelled", "return_requested", "return_in_transit", "returned"];

function searchBox(id, key, placeholder) {
  return el("input", { id, type: "search", placeholder, value: filters[key], oninput: (e) => { filters[key] = e.target.value; refresh(); } });
}

function stateSelect(id, key, states) {
  return el("select", { id, onchange: (e) => { filters[key] = e.target.value; refresh(); } },
    states.map((s) => el("option", { value: s, selected: s === filters[key] }, s ? s.replace(/_/g, " ") : "any state")));
}

async function renderJobs(body, controls) {
  if (!overview) await loadOverview();
  if (!controls.firstChild) {
    controls.append(
      el("select", { id: "jobs-factory", onchange: (e) => { filters.factory = e.target.value; refresh(); } },
        el("option", { value: "" }, "every factory"), overview.factories.map((f) => el("option", { value: f.id, selected: f.id === filters.factory }, f.id))),
      stateSelect("jobs-state", "jobState", JOB_STATES), searchBox("jobs-search", "jobSearch", "search token, order, machine, process"));
  }
  const query = new URLSearchParams({ limit: "500" });
  if (filters.factory) query.set("factory", filters.factory);
  if (filters.jobState) query.set("state", filters.jobState);
  const page = await api(`/v1/jobs?${query}`);
  const needle = filters.jobSearch.trim().toLowerCase();
  const rows = page.items.filter((job) => !needle || [job.token, job.order_id, job.machine, job.process, job.material, job.state]
    .some((v) => String(v ?? "").toLowerCase().includes(needle)));
  body.replaceChildren(
    el("p", { class: "muted" }, `${rows.length} jobs${page.next ? " (first 500; narrow the filter)" : ""}`),
    table(["job", "order", "process", "material", "machine", "state", "made", "due"], rows.map((job) =>
      el("tr", { class: "clickable", onclick: () => { filters.order = job.order_id; location.hash = "#orders"; } },
        el("td", {}, job.token), el("td", {}, job.order_id.slice(0, 8) + "…"), el("td", {}, job.process), el("td", {}, job.material),
        el("td", {}, job.machine || ""), el("td", {}, badge(job.state), job.state === "held" ? heldActions(job) : ""),
        el("td", {}, `${job.good}/${job.quantity}`), el("td", {}, when(job.due))))));
}

function timeline(detail) {
  const items = [{ at: detail.accepted_at, text: `Accepted (${detail.lines.length} lines, factory ${detail.factory})` }];
  for (const job of detail.jobs) items.push({ at: job.updated_at, text: `Job ${job.token}: ${job.process} on ${job.machine || "no machine yet"} — ${job.state} (${job.good}/${job.quantity})` });
  for (const h of detail.handoffs) items.push({ at: h.eta, text: `${h.kind} by ${h.courier} — ${h.state}${h.failure ? ` (${h.failure})` : ""}${h.return_id ? " (return)" : ""}` });
  for (const r of detail.returns) items.push({ at: r.requested_at, text: `Return ${r.id.slice(0, 8)}… requested (${r.reason}) — ${r.state}` });
  if (detail.at_risk) items.push({ at: detail.at_risk.since, text: `At risk: ${detail.at_risk.detail || detail.at_risk.reason}` });
  items.push({ at: detail.updated_at, text: `Now ${detail.state.replace(/_/g, " ")}` });
  items.sort((a, b) => String(a.at || "").localeCompare(String(b.at || "")));
  return el("ol", { class: "timeline" }, items.map((item) => el("li", {}, el("time", {}, when(item.at)), item.text)));
}

async function renderOrders(body, controls) {
  if (!controls.firstChild) {
    controls.append(stateSelect("orders-state", "orderState", ORDER_STATES), searchBox("orders-search", "orderSearch", "search order, reference, brand, customer"));
  }
  let items = [];
  let after = null;
  for (let page = 0; page < 4; page++) {
    const query = new URLSearchParams({ limit: "500" });
    if (filters.orderState) query.set("state", filters.orderState);
    if (after) query.set("after", after);
    const result = await api(`/v1/orders?${query}`);
    items = items.concat(result.items);
    if (!result.next) break;
    after = result.next;
  }
  const needle = filters.orderSearch.trim().toLowerCase();
  const rows = items.filter((o) => !needle || [o.id, o.external_ref, o.brand, o.customer.name, o.factory]
    .some((v) => String(v ?? "").toLowerCase().includes(needle))).reverse().slice(0, 300);
  const parts = [];
  if (filters.order) {
    try {
      const detail = await api(`/v1/orders/${encodeURIComponent(filters.order)}`);
      parts.push(el("div", { class: "card", id: "order-detail" },
        el("h3", {}, `Order ${detail.external_ref || detail.id} `, badge(detail.state)),
        el("div", { class: "muted" }, `${detail.brand} · ${detail.customer.name} · deadline ${when(detail.deadline)}`,
          detail.estimated_delivery_at ? ` · expected ${when(detail.estimated_delivery_at)}` : ""),
        detail.escalation ? escalationActions(detail) : "",
        timeline(detail),
        el("button", { type: "button", onclick: () => { filters.order = null; refresh(); } }, "Close")));
    } catch (err) { parts.push(el("p", { class: "error" }, `Order ${filters.order}: ${err.message}`)); }
  }
  parts.push(el("p", { class: "muted" }, `${rows.length} orders shown, newest first`),
    table(["order", "brand", "customer", "factory", "state", "deadline"], rows.map((o) =>
      el("tr", { class: "clickable", onclick: () => { filters.order = o.id; refresh(); } },
        el("td", {}, o.external_ref || o.id.slice(0, 8) + "…"), el("td", {}, o.brand), el("td", {}, o.customer.name),
        el("td", {}, o.factory), el("td", {}, badge(o.state), o.at_risk ? el("span", { class: "error" }, " at risk") : ""), el("td", {}, when(o.deadline))))));
  body.replaceChildren(...parts);
}

// An SVG of a courier's GeoJSON route: legs as lines, stops as numbered dots.
function routeSvg(geojson) {
  const points = [];
  for (const f of geojson.features) {
    if (f.geometry.type === "Point") points.push(f.geometry.coordinates);
    if (f.geometry.type === "LineString") points.push(...f.geometry.coordinates);
  }
  if (!points.length) return el("p", { class: "muted" }, "No stops planned.");
  const lons = points.map((p) => p[0]); const lats = points.map((p) => p[1]);
  const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
  const k = Math.cos((midLat * Math.PI) / 180);
  const minX = Math.min(...lons) * k, maxX = Math.max(...lons) * k, minY = Math.min(...lats), maxY = Math.max(...lats);
  const span = Math.max(maxX - minX, maxY - minY, 1e-4);
  const W = 800, H = 360, pad = 30, scale = Math.min((W - 2 * pad) / span, (H - 2 * pad) / span);
  const x = (lon) => pad + (lon * k - minX) * scale;
  const y = (lat) => H - pad - (lat - minY) * scale;
  const shapes = [];
  for (const f of geojson.features.filter((f) => f.geometry.type === "LineString")) {
    shapes.push(svg("polyline", { points: f.geometry.coordinates.map((c) => `${x(c[0])},${y(c[1])}`).join(" "), fill: "none", stroke: "#1764c0", "stroke-width": 3 }));
  }
  const colour = { planned: "#1764c0", done: "#1f8a4c", confirmed: "#1f8a4c", failed: "#c62828", missed: "#c62828", locked: "#a86400" };
  for (const f of geojson.features.filter((f) => f.geometry.type === "Point")) {
    const [lon, lat] = f.geometry.coordinates;
    const p = f.properties;
    shapes.push(svg("g", {}, svg("circle", { cx: x(lon), cy: y(lat), r: 9, fill: colour[p.status] || "#5b6470", stroke: "#fff", "stroke-width": 2 },
      svg("title", { text: `${p.kind} ${p.place} — ${p.status}, eta ${when(p.eta)}` })),
    svg("text", { x: x(lon) + 11, y: y(lat) - 8, "font-size": 14, text: `${p.sequence}` })));
  }
  return svg("svg", { class: "route", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "route" }, shapes);
}

async function renderCouriers(body) {
  const o = overview || await loadOverview();
  const cards = await Promise.all(o.couriers.map(async (c) => {
    try {
      const geojson = await api(`/v1/couriers/${encodeURIComponent(c.id)}/route.geojson`);
      const stops = geojson.features.filter((f) => f.geometry.type === "Point").map((f) => f.properties);
      return el("div", { class: "card", "data-courier": c.id }, el("h3", {}, c.id, el("span", { class: "muted" }, ` zone ${c.zone}`)), routeSvg(geojson),
        stops.length ? table(["#", "stop", "place", "eta", "status"], stops.map((p) => el("tr", {}, el("td", {}, p.sequence), el("td", {}, p.kind),
          el("td", {}, p.contact || p.place), el("td", {}, when(p.eta)), el("td", {}, badge(p.status))))) : "");
    } catch (err) { return el("div", { class: "card" }, el("h3", {}, c.id), el("p", { class: "error" }, err.message)); }
  }));
  body.replaceChildren(el("div", {}, cards.length ? cards : el("p", { class: "muted" }, "No couriers.")));
}

// ---- refresh, live stream, sign-in -------------------------------------------

let shownView = null;
async function refresh() {
  if (!session) return;
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    const name = viewName();
    const controls = $("#controls"), body = $("#body");
    if (name !== shownView) { controls.replaceChildren(); body.replaceChildren(el("p", { class: "muted" }, "Loading…")); shownView = name; }
    for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("current", a.dataset.view === name);
    const render = { network: renderNetwork, factory: renderFactory, jobs: renderJobs, orders: renderOrders, couriers: renderCouriers }[name];
    await render(body, controls);
  } catch (err) {
    if (session) toast(err.message, true);
  } finally {
    refreshing = false;
    if (again) { again = false; refresh(); }
  }
}

function connect() {
  if (stream) stream.close();
  stream = new EventSource("/dashboard/events");
  stream.addEventListener("changed", () => { $("#live").className = "live on"; refresh(); });
  stream.onerror = async () => {
    $("#live").className = "live off";
    // The browser reconnects by itself; a stream refused for an ended session does not.
    try { await api("/dashboard/session"); } catch (err) {
      if (!(err instanceof TypeError)) signedOut("Your session ended; sign in again.");
    }
  };
}

function signedIn(view) {
  session = view;
  $("#signin").hidden = true;
  $("#app").hidden = false; $("#tabs").hidden = false; $("#who").hidden = false;
  $("#identity").textContent = `${view.role} · ${view.scope === "*" ? "every factory" : view.scope}`;
  connect();
  refresh();
}

function signedOut(message) {
  session = null;
  overview = null;
  shownView = null;
  if (stream) { stream.close(); stream = null; }
  $("#app").hidden = true; $("#tabs").hidden = true; $("#who").hidden = true;
  $("#signin").hidden = false;
  $("#signin-error").textContent = message || "";
}

document.addEventListener("DOMContentLoaded", async () => {
  $("#signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("#signin-error").textContent = "";
    try {
      const view = await api("/dashboard/session", { method: "POST", body: { token: $("#token").value.trim() } });
      $("#token").value = "";
      signedIn(view);
    } catch (err) { $("#signin-error").textContent = err.message; }
  });
  $("#signout").addEventListener("click", async () => {
    try { await api("/dashboard/session", { method: "DELETE" }); } catch (_) { /* signed out either way */ }
    signedOut("Signed out.");
  });
  window.addEventListener("hashchange", () => refresh());
  try { signedIn(await api("/dashboard/session")); } catch (_) { signedOut(""); }
});
