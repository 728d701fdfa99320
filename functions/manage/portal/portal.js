// The consumer portal: one tenant's endpoints, their secrets and their attempt log, for
// the time of a portal session. Every call goes to Herald's portal API (`api/v1/…`,
// beside this page) with the session's token; nothing is loaded from elsewhere. Text from
// the API is only ever set as text, never as HTML.

const TOKEN_KEY = "herald-portal-token";
const api = new URL("api/", document.baseURI);
const main = document.getElementById("main");
const status = document.getElementById("status");

const FORMATS = [
  ["standard", "Standard Webhooks ({type, timestamp, data})"],
  ["event_data", "Event and data ({event, data})"],
  ["typed_object", "Typed object ({id, object, event_type, payload})"],
  ["entity_event", "Entity event"],
];
const STATES = ["pending", "delivering", "delivered", "failed", "skipped", "superseded"];
// A new endpoint's secret, shown once on the endpoint's page the router opens next.
let freshSecret = null;
// What to say once the router has opened the next page (a hash change clears the status).
let notice = null;

// --- the session ------------------------------------------------------------------------

// The session's token: in sessionStorage, so a reload keeps the session, or in this page
// alone where the browser refuses the page storage (a framed page whose third-party
// storage is blocked throws on every use of it).
let heldToken = null;
const token = {
  get() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) ?? heldToken;
    } catch {
      return heldToken;
    }
  },
  set(value) {
    heldToken = value;
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch {
      // Kept in this page alone.
    }
  },
  clear() {
    heldToken = null;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Nothing was kept there.
    }
  },
};

function takeToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    token.set(decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search + "#/endpoints");
  }
  return token.get();
}

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || body?.message || `the portal API answered ${status}`);
    this.status = status;
  }
}

async function call(method, path, body) {
  const headers = { authorization: `Bearer ${token.get()}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(new URL(path.replace(/^\//, ""), api), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  // An answer that is not JSON (a proxy's or CDN's error page in front of the API) is
  // told by its status, not by the parser's complaint about its first character.
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    if (response.ok) throw new ApiError(response.status, { message: "the portal API answered with something other than JSON" });
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

// --- small helpers ----------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let fieldIds = 0;
function field(labelText, control, hint) {
  const id = control.id || `f${++fieldIds}`;
  control.id = id;
  const hintNode = hint ? el("p", { class: "hint", id: `${id}-hint`, text: hint }) : null;
  if (hintNode) control.setAttribute("aria-describedby", hintNode.id);
  return el("div", {}, el("label", { for: id, text: labelText }), control, hintNode);
}

function say(message, kind = "done") {
  status.replaceChildren(el("span", { class: kind, text: message }));
}

function fail(error) {
  if (error instanceof ApiError && error.status === 401) {
    token.clear();
    show(expired());
    return;
  }
  say(error.message, "error");
}

// Draws `nodes` in place of the view (null and undefined among them are left out).
function show(...nodes) {
  main.replaceChildren(...nodes.filter((node) => node !== null && node !== undefined));
  main.focus();
}

function pill(state) {
  return el("span", { class: `pill ${state}`, text: state });
}

function when(text) {
  return text ? new Date(text).toLocaleString() : "";
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select and copy the secret above";
  }
}

function secretPanel(title, secret) {
  const button = el("button", { type: "button", class: "secondary" }, "Copy");
  button.addEventListener("click", () => copy(secret, button));
  return el(
    "section",
    { class: "secret", "aria-labelledby": "secret-title" },
    el("h2", { id: "secret-title", text: title }),
    el("p", { text: "Shown this once: keep it where your receiver reads it." }),
    el("code", { id: "shown-secret", text: secret }),
    button,
  );
}

function notFound() {
  return el(
    "section",
    {},
    el("h1", { text: "Not found" }),
    el("p", { text: "There is no such endpoint here: it may have been deleted." }),
    el("p", {}, el("a", { href: "#/endpoints", text: "← Endpoints" })),
  );
}

function expired() {
  return el(
    "section",
    {},
    el("h1", { text: "This session has ended" }),
    el("p", { text: "Open the webhooks page again from the application you came from." }),
  );
}

// --- endpoints --------------------------------------------------------------------------

// The most endpoints the list reads: the most any deployment lets a tenant have
// (HERALD_MAX_SUBSCRIPTIONS_PER_TENANT is at most 10,000), so a tenant whose cap was
// lowered below what it holds still sees them all. Read a page of 100 at a time.
const MOST_ENDPOINTS = 10000;
const ENDPOINTS_PAGE = 100;

// The tenant's endpoints, newest first, every page of them up to MOST_ENDPOINTS; `more`
// when there are others past that.
async function readEndpoints() {
  const endpoints = [];
  const page = (limit, cursor) => call("GET", `v1/subscriptions?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
  let cursor = null;
  do {
    const listed = await page(ENDPOINTS_PAGE, cursor);
    endpoints.push(...listed.data);
    cursor = listed.next_cursor;
  } while (cursor && endpoints.length < MOST_ENDPOINTS);
  // Stopped at the bound with a cursor: it may lead nowhere (the last page was full), so
  // one more look says whether any endpoint is left out.
  // Pages of 100 reach the bound exactly, never past it.
  const more = cursor ? (await page(1, cursor)).data.length > 0 : false;
  return { endpoints, more };
}

async function endpointsView() {
  const asked = location.hash;
  const { endpoints, more } = await readEndpoints();
  // Reading many pages takes a while: the user may have gone elsewhere meanwhile.
  if (location.hash !== asked) return;
  const list = el("div", { role: "list" });
  for (const s of endpoints) {
    list.append(
      el(
        "article",
        { class: "card", role: "listitem" },
        el("h3", {}, el("a", { href: `#/endpoints/${s.id}`, text: s.url })),
        el("p", { class: "meta" }, pill(s.status), " ", s.event_types.join(", "), s.description ? ` — ${s.description}` : ""),
      ),
    );
  }
  if (!endpoints.length) list.append(el("p", { text: "No endpoint yet." }));
  const count = endpoints.length === 1 ? "1 endpoint" : `${endpoints.length.toLocaleString()} endpoints`;
  show(
    el("h1", { text: "Endpoints" }),
    el("div", { class: "actions" }, el("a", { class: "button", href: "#/new" }, "Add an endpoint")),
    endpoints.length ? el("p", { class: "meta", id: "endpoint-count", text: count }) : null,
    more ? el("p", { class: "cut", id: "endpoints-cut", text: `This tenant has more endpoints than the ${count} shown here, the newest; the page lists no more than ${MOST_ENDPOINTS.toLocaleString()}.` }) : null,
    list,
  );
}

async function eventTypeList() {
  try {
    const types = await call("GET", "event-types");
    return el("datalist", { id: "known-types" }, types.data.map((t) => el("option", { value: t })));
  } catch {
    return el("datalist", { id: "known-types" });
  }
}

function headerRows(headers = {}) {
  const rows = el("div", { id: "header-rows" });
  const add = (name = "", value = "") => {
    const index = rows.children.length;
    rows.append(
      el(
        "div",
        { class: "header-row" },
        field(`Header ${index + 1} name`, el("input", { name: "header-name", autocomplete: "off", value: name })),
        field(`Header ${index + 1} value`, el("input", { name: "header-value", autocomplete: "off", value })),
        el("button", { type: "button", class: "secondary", onclick: (e) => e.target.closest(".header-row").remove() }, "Remove"),
      ),
    );
  };
  for (const [name, value] of Object.entries(headers)) add(name, value);
  return { rows, add };
}

function readHeaders(form) {
  const names = [...form.querySelectorAll('[name="header-name"]')].map((i) => i.value.trim());
  const values = [...form.querySelectorAll('[name="header-value"]')].map((i) => i.value);
  const headers = {};
  names.forEach((name, i) => {
    if (name) headers[name] = values[i];
  });
  return headers;
}

function endpointForm(existing, submitText, onSubmit) {
  const form = el("form", { novalidate: true });
  form.append(
    field("Endpoint URL", el("input", { name: "url", type: "url", required: true, value: existing?.url ?? "", placeholder: "https://example.com/webhooks" }), "HTTPS, and reachable from the internet."),
    field("Event types", el("input", { name: "event_types", list: "known-types", required: true, value: existing?.event_types?.join(", ") ?? "" }), "Comma-separated: order.* takes every order event, * every event."),
    field("Description", el("input", { name: "description", value: existing?.description ?? "" })),
    field("Body format", el("select", { name: "format" }, FORMATS.map(([value, text]) => el("option", { value, selected: (existing?.format ?? "standard") === value }, text)))),
  );
  const { rows, add } = headerRows(existing?.headers);
  form.append(
    el("fieldset", {}, el("legend", { text: "Custom headers" }), rows, el("button", { type: "button", class: "secondary", onclick: () => add() }, "Add a header")),
  );
  if (existing) {
    form.append(
      field("Status", el("select", { name: "status" }, ["active", "disabled"].map((v) => el("option", { value: v, selected: existing.status === v }, v)))),
    );
  }
  form.append(el("div", { class: "actions" }, el("button", { type: "submit" }, submitText)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = {
      url: data.get("url").trim(),
      event_types: data.get("event_types").split(",").map((t) => t.trim()).filter(Boolean),
      description: data.get("description"),
      format: data.get("format"),
      headers: readHeaders(form),
    };
    if (existing) body.status = data.get("status");
    try {
      await onSubmit(body);
    } catch (error) {
      fail(error);
    }
  });
  return form;
}

async function newEndpointView() {
  const types = await eventTypeList();
  show(
    el("h1", { text: "Add an endpoint" }),
    types,
    endpointForm(null, "Add the endpoint", async (body) => {
      const created = await call("POST", "v1/subscriptions", body);
      // The router opens the endpoint's page on the hash change, and shows the secret there.
      freshSecret = { id: created.id, secret: created.secret };
      location.hash = `#/endpoints/${created.id}`;
    }),
  );
}

async function endpointView(id) {
  const [subscription, types] = await Promise.all([call("GET", `v1/subscriptions/${id}`), eventTypeList()]);
  const log = el("section", { "aria-labelledby": "log-title" });
  const secretSlot = el("div");
  const actions = el(
    "div",
    { class: "actions" },
    el("button", { type: "button", onclick: () => sendTest(id) }, "Send a test event"),
    el("button", { type: "button", class: "secondary", onclick: () => rotate(subscription, secretSlot) }, "Rotate the secret"),
    el("button", { type: "button", class: "danger", onclick: () => remove(id, subscription.url) }, "Delete"),
  );
  show(
    el("p", {}, el("a", { href: "#/endpoints", text: "← Endpoints" })),
    el("h1", { text: subscription.url }),
    el("p", { class: "meta" }, pill(subscription.status), subscription.disabled_reason ? ` ${subscription.disabled_reason}` : ""),
    actions,
    secretSlot,
    el("h2", { text: "Settings" }),
    types,
    endpointForm(subscription, "Save", async (body) => {
      await call("PATCH", `v1/subscriptions/${id}`, { ...body, version: subscription.version });
      say("Saved");
      await endpointView(id);
    }),
    log,
  );
  if (freshSecret?.id === id) {
    secretSlot.replaceChildren(secretPanel("Its signing secret", freshSecret.secret));
    freshSecret = null;
    say("Endpoint added");
  }
  await attemptLog(id, log, "");
}

async function sendTest(id) {
  try {
    const sent = await call("POST", `v1/subscriptions/${id}/test`);
    say(`Test event sent (delivery ${sent.delivery_id})`);
    follow(id, sent.delivery_id);
  } catch (error) {
    fail(error);
  }
}

// A rotation saves the subscription: the settings form then changes the version it made.
async function rotate(subscription, slot) {
  try {
    const rotated = await call("POST", `v1/subscriptions/${subscription.id}/secret/rotate`, {});
    subscription.version = rotated.version;
    slot.replaceChildren(secretPanel("The new signing secret", rotated.secret));
    const until = rotated.previous_secret_expires_at;
    say(until ? `Secret rotated; the previous one signs until ${when(until)}` : "Secret rotated");
  } catch (error) {
    fail(error);
  }
}

async function remove(id, url) {
  if (!confirm(`Delete the endpoint ${url}? Its deliveries stop at once.`)) return;
  try {
    await call("DELETE", `v1/subscriptions/${id}`);
    notice = "Endpoint deleted";
    location.hash = "#/endpoints";
  } catch (error) {
    fail(error);
  }
}

// --- the attempt log ---------------------------------------------------------------------

// Deliveries a page of the attempt log.
const LOG_PAGE = 50;
// What each attempt log on the page shows: its endpoint, its state filter, its deliveries
// (newest first: the newest page, then the older pages asked for) and the cursor that
// continues after the oldest of them (null: there is none older).
const logs = new WeakMap();

function deliveriesPath(id, state, cursor) {
  const query = new URLSearchParams({ limit: String(LOG_PAGE) });
  if (state) query.set("state", state);
  if (cursor) query.set("cursor", cursor);
  return `v1/subscriptions/${id}/deliveries?${query}`;
}

// The attempt log's newest page read again, the older pages shown staying as they are;
// resolves to the deliveries it shows (none when the page has moved on from this
// endpoint). `followed`, a delivery being watched, is read again also when it is on an
// older page.
async function refreshLog(id, followed) {
  const log = document.getElementById("log");
  if (!log || log.dataset.subscription !== id) return [];
  return attemptLog(id, log, document.getElementById("log-state")?.value ?? "", followed);
}

// Shows the attempt log again until the delivery has had an attempt more than `before`, or
// has settled without one (a minute at most).
async function follow(id, delivery, before = 0) {
  for (let i = 0; i < 40; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const log = document.getElementById("log");
    if (!log || log.dataset.subscription !== id) return;
    const shown = (await refreshLog(id, delivery)).find((d) => d.id === delivery);
    if (!shown) continue;
    if (shown.attempts.length > before) return;
    if (!before && !["pending", "delivering"].includes(shown.state)) return;
  }
}

// Reads the attempt log's newest page and shows it. Read again for the same endpoint and
// filter (a refresh), the older pages shown stay below it: the deliveries shown before
// that are older than the new page's oldest are kept (delivery ids sort by acceptance
// time, the log's own order), so none that new deliveries pushed off the newest page falls
// between it and the older ones, and "Show older" continues where it did. Another filter
// starts again from the newest page.
async function attemptLog(id, section, state, followed) {
  let listed;
  let watched = null;
  try {
    listed = await call("GET", deliveriesPath(id, state));
    // A watched delivery on an older page: the newest page does not say how it is doing.
    const shown = logs.get(section);
    if (followed && !listed.data.some((d) => d.id === followed) && shown?.deliveries.some((d) => d.id === followed)) {
      watched = await call("GET", `v1/deliveries/${followed}`).catch(() => null);
    }
  } catch (error) {
    fail(error);
    return [];
  }
  // An answer for the filter the user has since changed is not shown.
  const filter = section.querySelector("#log-state");
  if (section.dataset.subscription === id && filter && filter.value !== state) return logs.get(section)?.deliveries ?? [];
  // The controls are drawn once for the endpoint; a refresh (every 1.5 s while a test
  // event or a retry is followed) redraws the rows alone, so the filter keeps its focus
  // and the replay form what is being typed into it.
  if (section.dataset.subscription !== id || !section.querySelector("#log-rows")) {
    logControls(id, section, state);
  }
  const before = logs.get(section);
  let deliveries = listed.data;
  let cursor = listed.next_cursor;
  if (before?.id === id && before.state === state && cursor && deliveries.length) {
    const oldest = deliveries.at(-1).id;
    const kept = before.deliveries.filter((d) => d.id < oldest);
    if (kept.length) {
      deliveries = [...deliveries, ...kept];
      cursor = before.cursor;
    }
  }
  if (watched) deliveries = deliveries.map((d) => (d.id === watched.id ? watched : d));
  const log = { id, state, deliveries, cursor };
  logs.set(section, log);
  drawLog(section, log);
  return deliveries;
}

// The next page of older deliveries, below those shown.
async function olderDeliveries(section, button) {
  const log = logs.get(section);
  if (!log?.cursor) return;
  button.disabled = true;
  let listed;
  try {
    listed = await call("GET", deliveriesPath(log.id, log.state, log.cursor));
  } catch (error) {
    fail(error);
    return;
  } finally {
    button.disabled = false;
  }
  // The log was read again meanwhile and no longer continues there (another filter):
  // this page is not the next one.
  const now = logs.get(section);
  if (now?.id !== log.id || now.state !== log.state || now.cursor !== log.cursor) return;
  const known = new Set(now.deliveries.map((d) => d.id));
  const added = listed.data.filter((d) => !known.has(d.id));
  now.deliveries = [...now.deliveries, ...added];
  now.cursor = listed.next_cursor;
  drawLog(section, now);
  const count = added.length === 1 ? "1 older delivery" : `${added.length} older deliveries`;
  say(now.cursor ? `${count} shown` : `${count} shown; there are none older`);
  // The button is gone once there is nothing older: the focus goes to the rows.
  if (!now.cursor && document.activeElement === button) section.querySelector("#log-rows").focus();
}

function deliveryRow(d, id) {
  const last = d.attempts.at(-1);
  const outcome = last ? (last.status ? `${last.status}` : last.error ?? "") : "not yet";
  return el(
    "tr",
    {},
    el("td", { "data-label": "Event" }, d.event_type, el("br"), el("small", { class: "meta", text: d.id })),
    el("td", { "data-label": "State" }, pill(d.state)),
    el("td", { "data-label": "Attempts", text: String(d.attempts.length) }),
    el("td", { "data-label": "Last answer", text: last ? `${outcome} in ${last.latency_ms} ms` : outcome }),
    el("td", { "data-label": "Excerpt" }, last?.response ? el("code", { text: last.response.slice(0, 200) }) : ""),
    el("td", { "data-label": "Actions" }, el("button", { type: "button", class: "secondary", "aria-label": `Retry ${d.event_type} (${d.id})`, onclick: () => retry(d.id, id, d.attempts.length) }, "Retry")),
  );
}

// The log's rows, and "Show older" while there are older deliveries.
function drawLog(section, log) {
  const rows = log.deliveries.map((d) => deliveryRow(d, log.id));
  section.querySelector("#log-rows").replaceChildren(
    rows.length
      ? el("table", {}, el("thead", {}, el("tr", {}, ["Event", "State", "Attempts", "Last answer", "Excerpt", "Actions"].map((h) => el("th", { scope: "col", text: h })))), el("tbody", {}, rows))
      : el("p", { text: "No delivery yet." }),
  );
  section.querySelector("#log-more").hidden = !log.cursor;
}

// The attempt log's heading, filter, refresh button, "Show older" and replay form, around
// an empty place for its rows.
function logControls(id, section, state) {
  const filter = el("select", { id: "log-state", onchange: (e) => attemptLog(id, section, e.target.value) }, el("option", { value: "", text: "every state" }), STATES.map((s) => el("option", { value: s, selected: s === state }, s)));
  const replayForm = el("form", { class: "row" });
  replayForm.append(
    field("Replay from", el("input", { name: "since", type: "datetime-local", required: true })),
    field("Until (optional)", el("input", { name: "until", type: "datetime-local" })),
    field("Deliveries that are", el("select", { name: "state" }, ["failed", "delivered", "pending", "skipped"].map((s) => el("option", { value: s }, s)))),
    el("div", {}, el("button", { type: "submit" }, "Replay")),
  );
  replayForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(replayForm);
    // The whole range, a page a call: each answer's cursor goes back with the same range
    // and state until it is null, so each delivery is queued once.
    let queued = 0;
    try {
      const body = { since: new Date(data.get("since")).toISOString(), state: data.get("state") };
      if (data.get("until")) body.until = new Date(data.get("until")).toISOString();
      let skipped = 0;
      for (let cursor = null; ; ) {
        const replayed = await call("POST", `v1/subscriptions/${id}/replay`, cursor ? { ...body, cursor } : body);
        queued += replayed.queued;
        skipped += replayed.skipped ?? 0;
        cursor = replayed.cursor;
        if (!cursor) break;
        say(`${queued} deliveries queued again so far…`);
      }
      say(`${queued} deliveries queued again${skipped ? `; ${skipped} were not (at the most attempts a delivery keeps, or their events are no longer kept)` : ""}`);
    } catch (error) {
      if (queued) error.message = `${queued} deliveries were queued again before this: ${error.message}`;
      fail(error);
    }
  });
  section.id = "log";
  section.dataset.subscription = id;
  section.replaceChildren(
    el("h2", { id: "log-title", text: "Attempt log" }),
    el("div", { class: "row" }, field("Show", filter), el("div", {}, el("button", { type: "button", class: "secondary", onclick: () => refreshLog(id) }, "Refresh"))),
    el("div", { id: "log-rows", tabindex: "-1" }),
    el("div", { class: "actions", id: "log-more", hidden: true }, el("button", { type: "button", class: "secondary", onclick: (e) => olderDeliveries(section, e.currentTarget) }, "Show older")),
    el("h2", { text: "Replay" }),
    replayForm,
  );
}

async function retry(delivery, id, before) {
  try {
    await call("POST", `v1/deliveries/${delivery}/retry`);
    say("Delivery queued again");
    follow(id, delivery, before);
  } catch (error) {
    fail(error);
  }
}

// --- signing keys -----------------------------------------------------------------------

async function keysView() {
  const keys = await call("GET", "v1/signing-keys");
  const parts = [
    el("h1", { text: "Verifying webhooks" }),
    el("p", { text: "Every webhook carries webhook-id, webhook-timestamp and webhook-signature headers (Standard Webhooks). Verify with your endpoint's secret, refuse timestamps more than five minutes old, and drop ids you have seen." }),
    el("pre", {}, el("code", { text: `# Python: pip install standardwebhooks
from standardwebhooks.webhooks import Webhook
Webhook(secret).verify(request_body, request_headers)

// Node.js: npm install standardwebhooks
import { Webhook } from "standardwebhooks";
new Webhook(secret).verify(payload, headers);` })),
  ];
  if (keys.ed25519) {
    parts.push(el("h2", { text: "ed25519 (v1a signatures)" }), el("code", { id: "ed25519-key", text: keys.ed25519 }));
  }
  if (keys.rsa) {
    parts.push(el("h2", { text: "RSA (X.509 SubjectPublicKeyInfo, base64)" }), el("pre", {}, el("code", { text: keys.rsa })));
  }
  if (!keys.ed25519 && !keys.rsa) parts.push(el("p", { text: "This service signs with your endpoint's secret only." }));
  show(...parts);
}

// --- the page ---------------------------------------------------------------------------

async function brand() {
  const session = await call("GET", "session");
  const b = session.brand ?? {};
  document.title = `${b.name ?? "Webhooks"} — webhooks`;
  document.getElementById("brand").textContent = b.name ?? "Webhooks";
  if (b.color) {
    document.documentElement.style.setProperty("--brand", b.color);
    document.documentElement.style.setProperty("--on-brand", onBrand(b.color));
  }
  if (b.logo) {
    const logo = document.getElementById("logo");
    logo.src = b.logo;
    logo.alt = `${b.name ?? ""} logo`;
    logo.hidden = false;
  }
  document.getElementById("session").textContent = `Session ends ${when(session.expires_at)}`;
}

// Black or white, whichever contrasts more with the brand colour (WCAG luminance).
function onBrand(hex) {
  const rgb = hex.replace("#", "").match(/../g)?.map((c) => parseInt(c, 16) / 255) ?? [0, 0, 0];
  const [r, g, b] = rgb.map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return luminance > 0.179 ? "#000000" : "#ffffff";
}

async function route() {
  const path = location.hash.replace(/^#\/?/, "") || "endpoints";
  // Adding an endpoint is part of Endpoints.
  const section = path === "keys" ? "keys" : "endpoints";
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    if (path === "endpoints") await endpointsView();
    else if (path === "new") await newEndpointView();
    else if (path.startsWith("endpoints/")) await endpointView(path.split("/")[1]);
    else if (path === "keys") await keysView();
    else await endpointsView();
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) show(notFound());
    else fail(error);
  }
}

async function start() {
  // The skip link moves focus to the content, not the router to a page named "main".
  document.querySelector(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  if (!takeToken()) {
    show(expired());
    return;
  }
  try {
    await brand();
  } catch (error) {
    fail(error);
    return;
  }
  window.addEventListener("hashchange", () => {
    status.replaceChildren();
    if (notice) say(notice);
    notice = null;
    route();
  });
  await route();
}

start();
