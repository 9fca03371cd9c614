// taosagent's panel. Plain script: every text that comes from the daemon
// (a tool's output, an app's report, a question's options) goes into the
// page as text (textContent), never as markup. The one exception is an
// agent's answer, rendered as Markdown by markdown (below): two vendored
// libraries (static/vendor, pinned), raw HTML off, the result sanitized.
"use strict";

const state = { csrf: "", source: null, timer: null };

// el builds an element: attrs are properties (and "on…" listeners);
// children are nodes or strings (strings become text nodes).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// md renders Markdown with raw HTML off (a tag in an answer stays text) and
// images off: an image's URL is fetched the moment it is shown, a channel
// out for whatever a prompt-injected model writes into it.
const md = window.markdownit ? window.markdownit({ html: false, linkify: true }).disable(["image"]) : null;

// markdown shows an agent's Markdown text in target: markdown-it's HTML,
// then DOMPurify over it (whatever markdown-it let through, nothing
// active stays); links open apart (no opener, no referrer) and show their
// target; a code block says its language. Without the libraries, text.
function markdown(target, text) {
  if (!md || !window.DOMPurify) { target.textContent = text; return; }
  target.innerHTML = window.DOMPurify.sanitize(md.render(text), { FORBID_TAGS: ["img", "style", "form", "input", "button", "svg", "math"], ALLOW_DATA_ATTR: false });
  for (const a of target.querySelectorAll("a")) {
    const href = a.getAttribute("href") || "";
    if (!/^(https?:|mailto:)/i.test(href)) { a.replaceWith(document.createTextNode(a.textContent)); continue; }
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.title = href;
    if (a.textContent !== href && "mailto:" + a.textContent !== href) a.after(el("span", { className: "href" }, " (" + href + ")"));
  }
  for (const code of target.querySelectorAll("pre > code")) {
    const lang = [...code.classList].find((c) => c.startsWith("language-"))?.slice("language-".length);
    if (lang) code.parentElement.dataset.lang = lang;
  }
}

const $ = (sel) => document.querySelector(sel);
const main = () => $("#main");

function setConn(kind, text) {
  const c = $("#conn");
  c.className = "conn " + kind;
  c.textContent = text;
  c.dataset.state = kind;
}

// api calls the daemon's API with the session cookie; a change carries the
// CSRF token. It throws an Error with the API's message.
async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = state.csrf;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (r.status === 401) {
    signedOut();
    throw new Error("signed out");
  }
  const data = r.headers.get("Content-Type")?.startsWith("application/json") ? await r.json() : {};
  if (!r.ok) throw new Error(data.error?.message || r.status + " " + r.statusText);
  return data;
}

function signedOut() {
  closeStream();
  if (state.pendingSource) { state.pendingSource.close(); state.pendingSource = null; }
  clearInterval(state.pageTimer);
  const was = state.csrf !== "" || !$("#signin");
  state.csrf = "";
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  setConn("out", "signed out");
  if (was) renderSignIn(); // not over a token being typed
}

function renderSignIn(message) {
  const token = el("input", { type: "password", id: "token", autocomplete: "current-password", placeholder: "operator token", required: true });
  const err = el("p", { className: "error", id: "signin-error" }, message || "");
  const form = el("form", { id: "signin", onsubmit: async (ev) => {
    ev.preventDefault();
    const r = await fetch("/panel/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: token.value }) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { err.textContent = data.error?.message || "sign-in failed"; return; }
    state.csrf = data.csrf;
    token.value = "";
    start();
  } },
    el("h1", {}, "Sign in"),
    el("p", { className: "muted" }, "Paste the operator token (the file ", el("code", {}, "token"), " in the taosagent home, readable by root only). It is sent once; the browser keeps a session cookie."),
    el("div", { className: "row" }, token, el("button", { className: "primary", type: "submit" }, "Sign in")),
    err);
  main().replaceChildren(form);
  token.focus();
}

async function start() {
  const r = await fetch("/panel/session", { credentials: "same-origin" });
  if (r.status !== 200) { signedOut(); return; }
  state.csrf = (await r.json()).csrf;
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  setConn("live", "signed in");
  // Setting the hash routes (hashchange); routing here as well drew the
  // page twice, and a click between the two landed on a node that was gone.
  if (!location.hash) location.hash = "#/agents";
  else route();
  followPending();
  // The service worker shows Web Push notifications (a secure context
  // only: HTTPS, or this machine's loopback).
  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register("/panel/sw.js", { scope: "/" }).catch(() => { /* the Notifications section says so */ });
  }
}

// followPending follows what waits for a person, live: the badge, and the
// Inbox while it is shown (state.onPending), from /v1/pending/stream.
function followPending() {
  if (state.pendingSource) state.pendingSource.close();
  const src = new EventSource("/v1/pending/stream");
  state.pendingSource = src;
  src.addEventListener("pending", (m) => {
    const p = JSON.parse(m.data);
    const n = p.approvals + p.questions;
    $("#pending").textContent = n ? String(n) : "";
    if (state.onPending) state.onPending();
  });
}

// refreshPending counts what waits for a person: approvals and questions.
async function refreshPending() {
  try {
    const [{ approvals }, { questions }] = await Promise.all([api("GET", "/v1/approvals?state=pending"), api("GET", "/v1/questions?state=pending")]);
    const n = approvals.length + questions.length;
    $("#pending").textContent = n ? String(n) : "";
  } catch (e) { /* signed out is handled by api */ }
}

function closeStream() {
  if (state.source) { state.source.close(); state.source = null; }
}

function route() {
  closeStream();
  clearInterval(state.pageTimer);
  state.onPending = null;
  const [, page, arg] = location.hash.split("/");
  const views = { agents: viewAgents, chat: viewChat, approvals: viewApprovals, apps: viewApps, audit: viewAudit, events: viewEvents, usage: viewUsage, library: viewLibrary };
  (views[page] || viewAgents)(decodeURIComponent(arg || ""))
    .catch((e) => main().replaceChildren(el("p", { className: "card error" }, e.message)));
}

// ---- agents and providers

function field(label, input) {
  return el("label", { className: "field" }, el("span", {}, label), input);
}

async function viewAgents() {
  const [{ agents }, { providers }, { items }] = await Promise.all([api("GET", "/v1/agents"), api("GET", "/v1/providers"), api("GET", "/v1/library")]);
  state.library = items || [];
  const models = providers.flatMap((p) => (p.models || []).map((m) => p.id + "/" + m.id));
  const rows = agents.map((a) => el("tr", { dataset: { agent: a.name } },
    el("td", {}, el("a", { href: "#/chat/" + encodeURIComponent(a.name) }, a.name), a.builtin ? el("span", { className: "muted" }, " (built in)") : "",
      reach(a)),
    el("td", {}, a.status.state, a.status.queued ? " · " + a.status.queued + " queued" : "",
      a.status.last_error ? el("div", { className: "error last-error", title: new Date(a.status.last_error.time).toLocaleString() },
        "last error: " + a.status.last_error.code + ": " + a.status.last_error.message) : null),
    el("td", { className: "hide-narrow" }, a.model),
    el("td", { className: "hide-narrow" }, a.status.confined ? "confined" : "UNCONFINED",
      a.status.usage ? " · " + Math.round(a.status.usage.memory_bytes / 1048576) + " MiB" : ""),
    el("td", {}, el("a", { href: "#/events/" + encodeURIComponent(a.name) }, "events"), " ",
      el("button", { type: "button", className: "edit", onclick: () => editAgent(a, models) }, "edit"))));
  const editor = el("div", { id: "editor" });
  main().replaceChildren(el("h1", {}, "Agents"),
    el("table", { id: "agents" }, el("thead", {}, el("tr", {}, el("th", {}, "agent"), el("th", {}, "state"),
      el("th", { className: "hide-narrow" }, "model"), el("th", { className: "hide-narrow" }, "instance"), el("th", {}, ""))), el("tbody", {}, rows)),
    el("div", { className: "row" }, el("button", { type: "button", id: "new-agent", onclick: () => editAgent(null, models) }, "New agent")),
    editor, providersSection(providers));
}

// reach says what an agent can reach beyond its own directory: its
// workspaces and where it may connect.
function reach(a) {
  const parts = (a.workspaces || []).map((w) => "/workspaces/" + w.name + " = " + w.path + " (" + w.mode + (w.name === a.workdir ? ", workdir" : "") + ")");
  if (a.egress && a.egress.mode && a.egress.mode !== "none") parts.push("egress: " + egressText(a.egress));
  return parts.length ? el("div", { className: "muted reach" }, parts.map((p) => el("div", {}, p))) : null;
}

function egressText(e) {
  return !e || !e.mode ? "none" : e.mode === "hosts" ? "hosts: " + (e.hosts || []).join(", ") : e.mode;
}

// parseEgress reads "none", "public" or "hosts: a.example, b.example".
function parseEgress(text) {
  const t = text.trim();
  const m = /^hosts\s*:(.*)$/.exec(t);
  if (m) return { mode: "hosts", hosts: m[1].split(",").map((h) => h.trim()).filter(Boolean) };
  return { mode: t || "none" };
}

// parseWorkspaces reads one workspace a line: NAME PATH [ro|rw].
function parseWorkspaces(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
    const f = l.split(/\s+/);
    const mode = ["ro", "rw"].includes(f[f.length - 1]) && f.length > 2 ? f.pop() : "ro";
    return { name: f[0], path: f.slice(1).join(" "), mode };
  });
}

// editAgent shows the form that creates an agent (a null) or changes one.
function editAgent(a, models) {
  const name = el("input", { id: "agent-name", value: a ? a.name : "", disabled: !!a, placeholder: "name (a-z, 0-9, -)" });
  const model = el("select", { id: "agent-model" }, models.map((m) => el("option", { value: m, selected: a && a.model === m }, m)));
  const permitted = el("div", { className: "row" }, models.map((m) => el("label", {},
    el("input", { type: "checkbox", value: m, checked: !!(a && (a.models || []).includes(m)), className: "permitted" }), " " + m)));
  const prompt = el("textarea", { id: "agent-prompt", value: a ? a.prompt || "" : "" });
  const perm = el("textarea", { id: "agent-permission", value: a && a.permission ? JSON.stringify(a.permission) : "", placeholder: "opencode's permission map, e.g. {\"bash\":\"ask\"} (empty: opencode's defaults)" });
  // The Library's items an agent can be given; one it has keeps its pin
  // (its version) unless a person moves it in the Library's page.
  const pins = new Map(((a && a.library) || []).map((p) => [p.split("@")[0], p]));
  const givable = (state.library || []).filter((i) => ["skill", "command", "tool", "rule", "mcp"].includes(i.kind) && i.digest);
  const items = el("div", { className: "row", id: "agent-library" }, givable.length ? givable.map((i) => {
    const ref = i.kind + "/" + i.name;
    return el("label", { title: pins.get(ref) || "the current version, " + i.digest.slice(0, 12) },
      el("input", { type: "checkbox", value: ref, checked: pins.has(ref), className: "item" }), " " + ref);
  }) : el("span", { className: "muted" }, "The Library is empty."));
  const wsText = ((a && a.workspaces) || []).map((w) => w.name + " " + w.path + " " + w.mode).join("\n");
  const workspaces = el("textarea", { id: "agent-workspaces", value: wsText, placeholder: "host directories, one a line: NAME /path/on/host ro|rw (seen at /workspaces/NAME)" });
  const workdir = el("input", { id: "agent-workdir", value: a ? a.workdir || "" : "", placeholder: "the workspace that is its working directory (empty: its own)" });
  const egressIn = el("input", { id: "agent-egress", value: egressText(a && a.egress), placeholder: "none, public, or hosts: a.example, b.example" });
  const err = el("p", { className: "error", id: "agent-error" });
  const save = async () => {
    err.textContent = "";
    const body = { model: model.value, prompt: prompt.value,
      models: [...permitted.querySelectorAll("input:checked")].map((i) => i.value) };
    if (workspaces.value.trim() !== wsText.trim()) body.workspaces = parseWorkspaces(workspaces.value);
    if (workdir.value.trim() !== ((a && a.workdir) || "")) body.workdir = workdir.value.trim();
    if (egressIn.value.trim() !== egressText(a && a.egress)) body.egress = parseEgress(egressIn.value);
    const chosen = [...items.querySelectorAll("input.item:checked")].map((i) => pins.get(i.value) || i.value);
    const had = [...pins.values()];
    if (chosen.length !== had.length || chosen.some((r) => !had.includes(r))) body.library = chosen;
    try {
      if (perm.value.trim()) body.permission = JSON.parse(perm.value);
      else if (a && a.permission) body.permission = null;
    } catch (e) { err.textContent = "permission: not JSON (" + e.message + ")"; return; }
    try {
      if (a) await api("PATCH", "/v1/agents/" + encodeURIComponent(a.name), body);
      else await api("POST", "/v1/agents", Object.assign({ name: name.value }, body));
      viewAgents();
    } catch (e) { err.textContent = e.message; }
  };
  const extra = a ? el("div", { className: "row" },
    el("button", { type: "button", onclick: async () => {
      try { await api("POST", "/v1/agents/" + encodeURIComponent(a.name) + "/conversations"); err.textContent = "The next message starts a new conversation."; } catch (e) { err.textContent = e.message; }
    } }, "New conversation"),
    !a.builtin ? el("button", { type: "button", className: "danger", onclick: async () => {
      if (!confirm("Delete agent " + a.name + "? Its history stays readable.")) return;
      try { await api("DELETE", "/v1/agents/" + encodeURIComponent(a.name)); viewAgents(); } catch (e) { err.textContent = e.message; }
    } }, "Delete") : null) : null;
  $("#editor").replaceChildren(el("div", { className: "card", id: "agent-form" },
    el("h2", {}, a ? "Agent " + a.name : "New agent"),
    field("name", name), field("model", model), field("permitted models", permitted), field("persona", prompt),
    field("permissions", perm), field("library items", items), field("workspaces", workspaces), field("working directory", workdir),
    field("egress", egressIn),
    el("p", { className: "muted" }, "A change that widens what an agent may do is recorded in the audit; an agent asking for it waits for a person."),
    el("div", { className: "row" }, el("button", { className: "primary", type: "button", id: "agent-save", onclick: save }, a ? "Save" : "Create"), extra),
    err));
}

function providersSection(providers) {
  const id = el("input", { placeholder: "id", id: "provider-id" });
  const name = el("input", { placeholder: "name" });
  const base = el("input", { placeholder: "base URL, e.g. https://api.example.com/v1", id: "provider-url" });
  const key = el("input", { type: "password", placeholder: "API key (never shown again)", autocomplete: "off" });
  const models = el("input", { placeholder: "model ids, comma-separated", id: "provider-models" });
  const err = el("p", { className: "error" });
  const rows = providers.map((p) => el("tr", { dataset: { provider: p.id } }, el("td", {}, p.id), el("td", {}, p.name || ""),
    el("td", { className: "hide-narrow" }, p.base_url), el("td", {}, (p.models || []).map((m) => m.id).join(", ")),
    el("td", {}, p.has_key ? "key set" : "no key"),
    el("td", {}, p.demo ? "" : el("button", { type: "button", className: "danger", onclick: async () => {
      try { await api("DELETE", "/v1/providers/" + encodeURIComponent(p.id)); viewAgents(); } catch (e) { err.textContent = e.message; }
    } }, "delete"))));
  return el("section", { id: "providers" }, el("h2", {}, "Model providers"),
    el("table", {}, el("tbody", {}, rows)),
    el("div", { className: "card" }, el("div", { className: "row" }, id, name, base, key, models,
      el("button", { type: "button", onclick: async () => {
        try {
          await api("POST", "/v1/providers", { id: id.value, name: name.value, base_url: base.value, api_key: key.value,
            models: models.value.split(",").map((m) => m.trim()).filter(Boolean) });
          viewAgents();
        } catch (e) { err.textContent = e.message; }
      } }, "Add provider")), err));
}

// ---- chat

const KINDS = ["input.accepted", "input.steered", "input.cancelled", "turn.started", "status", "delta", "reasoning", "tool_call", "tool_result",
  "permission.asked", "permission.resolved", "question.asked", "question.resolved", "usage", "model.switched", "instance", "final", "error", "reset"];

async function viewChat(name) {
  const agent = await api("GET", "/v1/agents/" + encodeURIComponent(name));
  const log = el("div", { id: "log" });
  const text = el("textarea", { id: "text", placeholder: "Message " + name + " (Enter sends, Shift+Enter for a new line)" });
  const mode = el("select", { id: "mode" }, el("option", { value: "queue" }, "queue"), el("option", { value: "steer" }, "steer"));
  const sendErr = el("span", { className: "error", id: "send-error" });
  const send = async () => {
    const t = text.value;
    if (!t.trim()) return;
    sendErr.textContent = "";
    try {
      await api("POST", "/v1/agents/" + encodeURIComponent(name) + "/messages", { text: t, mode: mode.value });
      text.value = "";
    } catch (e) { sendErr.textContent = e.message; }
  };
  text.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); send(); }
  });
  const stop = el("button", { id: "stop", className: "danger", type: "button", onclick: async () => {
    try { await api("POST", "/v1/agents/" + encodeURIComponent(name) + "/abort"); } catch (e) { sendErr.textContent = e.message; }
  } }, "Stop");
  const fresh = el("button", { id: "new-conversation", type: "button", onclick: async () => {
    try {
      await api("POST", "/v1/agents/" + encodeURIComponent(name) + "/conversations");
      chat.only = NEXT; // the next turn's session is the one shown
      log.replaceChildren(el("div", { className: "divider" }, "The next message starts a new conversation."));
    } catch (e) { sendErr.textContent = e.message; }
  } }, "New conversation");
  // The conversations: the current one is shown; choosing another resumes
  // it (messages go there) and shows it.
  const { conversations } = await api("GET", "/v1/agents/" + encodeURIComponent(name) + "/conversations");
  const current = conversations.find((c) => c.current);
  const pick = el("select", { id: "conversation", onchange: async () => {
    try {
      await api("POST", "/v1/agents/" + encodeURIComponent(name) + "/conversations/" + encodeURIComponent(pick.value) + "/resume");
      viewChat(name);
    } catch (e) { sendErr.textContent = e.message; }
  } }, conversations.map((c) => el("option", { value: c.id, selected: c.current },
    (c.title || "(untitled)") + " · " + c.turns + (c.turns === 1 ? " turn" : " turns") + " · " + new Date(c.last_turn).toLocaleString())));
  if (!current) pick.prepend(el("option", { value: "", selected: true, disabled: true }, "a new conversation"));
  main().replaceChildren(
    el("h1", {}, name, el("span", { className: "muted" }, " · " + agent.model)),
    conversations.length ? el("div", { className: "row" }, el("label", { htmlFor: "conversation" }, "Conversation"), pick) : null,
    log,
    el("div", { className: "composer" }, text,
      el("div", { className: "row" }, el("button", { id: "send", className: "primary", type: "button", onclick: send }, "Send"), mode, stop, fresh, sendErr)),
    await schedulesSection(name));
  const chat = follow(name, log, current ? current.id : NEXT, conversations.map((c) => c.id));
}

// schedulesSection lists agent name's schedules, each with its next slot
// and a remove button, and a form that adds one.
async function schedulesSection(name) {
  const path = "/v1/agents/" + encodeURIComponent(name) + "/schedules";
  const { schedules } = await api("GET", path);
  const err = el("span", { className: "error", id: "schedule-error" });
  const rows = schedules.map((sc) => el("tr", { dataset: { schedule: sc.id } },
    el("td", {}, sc.cron ? sc.cron + (sc.tz ? " (" + sc.tz + ")" : "") : "every " + sc.every),
    el("td", {}, sc.message),
    el("td", { className: "next" }, sc.next.length ? new Date(sc.next[0]).toLocaleString() : "—"),
    el("td", {}, el("button", { type: "button", onclick: async () => {
      try { await api("POST", path + "/" + encodeURIComponent(sc.id) + "/run"); } catch (e) { err.textContent = e.message; }
    } }, "Run now"), el("button", { type: "button", className: "danger", onclick: async () => {
      try { await api("DELETE", path + "/" + encodeURIComponent(sc.id)); viewChat(name); } catch (e) { err.textContent = e.message; }
    } }, "Remove"))));
  const when = el("input", { id: "schedule-when", placeholder: "cron (0 9 * * 1-5) or an interval (90m)" });
  const tz = el("input", { id: "schedule-tz", placeholder: "time zone (Europe/Paris; default UTC)" });
  const msg = el("input", { id: "schedule-message", placeholder: "the message each run sends" });
  const add = async () => {
    err.textContent = "";
    const w = when.value.trim();
    const body = /\s|^@/.test(w) ? { cron: w, tz: tz.value.trim() || undefined } : { every: w };
    body.message = msg.value;
    try { await api("POST", path, body); viewChat(name); } catch (e) { err.textContent = e.message; }
  };
  return el("section", { id: "schedules" }, el("h2", {}, "Schedules"),
    schedules.length ? el("table", {}, el("tr", {}, el("th", {}, "when"), el("th", {}, "message"), el("th", {}, "next"), el("th", {})), ...rows)
      : el("p", { className: "muted" }, "No schedules: each slot of one sends its message as a turn, once."),
    el("div", { className: "row" }, when, tz, msg, el("button", { id: "schedule-add", type: "button", onclick: add }, "Add schedule"), err));
}

// NEXT as the conversation a chat shows: the one the next turn starts.
const NEXT = "next";

// follow streams agent name's events into log: history first, then live.
// Each event is shown once, by its seq; after a lost connection the
// browser resumes from the last id it saw (Last-Event-ID).
function follow(name, log, only, known) {
  const chat = { log, turns: new Map(), cards: new Map(), asks: new Map(), waits: new Map(), last: 0, session: "", only, known: new Set(known), hidden: new Set() };
  // The latest 50 turns, then live (older ones: the Events page).
  const src = new EventSource("/v1/agents/" + encodeURIComponent(name) + "/events/stream?turns=50");
  state.source = src;
  src.onopen = () => { setConn("live", "live"); refreshPending(); };
  src.onerror = async () => {
    if (src.readyState === EventSource.CLOSED) {
      // Refused (signed out?) rather than dropped: find out which.
      const r = await fetch("/panel/session", { credentials: "same-origin" }).catch(() => null);
      if (r && r.status === 401) signedOut(); else setConn("down", "disconnected");
    } else {
      setConn("down", "reconnecting…");
    }
  };
  for (const k of KINDS) {
    src.addEventListener(k, (m) => {
      if (m.data === undefined) return; // EventSource's own "error": the connection, not a turn's
      const e = JSON.parse(m.data);
      if (e.seq !== undefined) {
        if (e.seq <= chat.last) return; // already shown
        chat.last = e.seq;
      }
      render(chat, k, e);
      log.dataset.last = String(chat.last);
    });
  }
  return chat;
}

function turnBox(chat, id) {
  let t = chat.turns.get(id);
  if (!t) {
    const answer = el("div", { className: "answer" });
    const box = el("div", { className: "card turn", dataset: { turn: id } }, answer);
    t = { box, answer, reasoning: null, text: "", drawn: false };
    chat.turns.set(id, t);
    chat.log.append(box);
  }
  return t;
}

// draw renders turn t's answer as Markdown soon: at most once a frame, and
// spaced so that rendering takes at most a fifth of the time however long
// the answer grows (each render is of the whole text).
function draw(t) {
  if (t.drawn) return;
  t.drawn = true;
  setTimeout(() => requestAnimationFrame(() => {
    const from = performance.now();
    markdown(t.answer, t.text);
    const took = performance.now() - from;
    t.nextAt = performance.now() + 4 * took;
    t.drawn = false;
  }), Math.max(0, (t.nextAt || 0) - performance.now()));
}

// waiting marks tool call id's card as waiting for a person.
function waiting(chat, id, what) {
  const c = chat.cards.get(id);
  if (!c) { if (id) chat.waits.set(id, what); return; } // the ask came before its call: marked when it comes
  if (c.card.dataset.done) return;
  c.card.dataset.status = "waiting";
  c.meta.textContent = what;
}

// running marks the cards that waited for a person as running again once
// the person answered.
function running(chat) {
  chat.waits.clear();
  for (const c of chat.cards.values()) {
    if (c.card.dataset.status === "waiting") { c.card.dataset.status = "running"; c.meta.textContent = "running…"; }
  }
}

// questionCard is a question request q (api.Question) as a card: pending,
// a form (a choice per option, words of one's own where the question takes
// them) with Answer and Reject; otherwise what became of it. Everything
// the model wrote is text.
function questionCard(q) {
  if (q.state !== "pending") {
    return el("div", { className: "card question", dataset: { question: q.id, state: q.state } },
      el("div", {}, q.agent ? q.agent + "'s question " : "Question ", el("span", { className: "state-" + q.state }, q.state), q.by ? " by " + q.by : ""),
      q.questions.map((qi) => el("div", { className: "muted" }, qi.question)),
      q.answers ? el("div", { className: "answers" }, q.answers.map((a) => a.join(", ")).join("; ")) : null,
      q.message ? el("div", { className: "muted" }, q.message) : null);
  }
  const card = el("div", { className: "card question", dataset: { question: q.id, state: q.state } });
  const err = el("span", { className: "error" });
  const inputs = q.questions.map((qi, i) => {
    const type = qi.multiple ? "checkbox" : "radio";
    const name = q.id + "-" + i;
    const choices = (qi.options || []).map((o) => el("label", { className: "choice" },
      el("input", { type, name, value: o.label }), " ", el("strong", {}, o.label), o.description ? el("span", { className: "muted" }, " — " + o.description) : null));
    const own = qi.custom === false ? null : el("input", { className: "own", placeholder: "or your own answer", dataset: { own: name } });
    return { qi, name, own, box: el("fieldset", {}, el("legend", {}, qi.header || "", " ", el("span", {}, qi.question)), choices, own) };
  });
  const send = (reject) => async () => {
    const body = reject ? { reject: true } : { answers: inputs.map(({ name, own }) => {
      const picked = [...card.querySelectorAll(`input[name="${CSS.escape(name)}"]:checked`)].map((x) => x.value);
      if (own && own.value.trim()) picked.push(own.value.trim());
      return picked;
    }) };
    try {
      const got = await api("POST", "/v1/questions/" + encodeURIComponent(q.id), body);
      card.replaceWith(questionCard(got));
      refreshPending();
    } catch (e) { err.textContent = e.message; }
  };
  card.append(el("div", {}, el("strong", {}, q.agent ? q.agent + " asks" : "The agent asks")), ...inputs.map((x) => x.box),
    el("div", { className: "row" },
      el("button", { className: "primary", type: "button", onclick: send(false), dataset: { answer: "answer" } }, "Answer"),
      el("button", { className: "danger", type: "button", onclick: send(true), dataset: { answer: "reject" } }, "Reject"), err));
  return card;
}

function render(chat, kind, e) {
  const d = e.data || {};
  if (!e.turn && kind !== "turn.started") return; // inbox and instance news: not part of a turn
  // Only the conversation shown: another's turns are not drawn.
  if (kind === "turn.started" && chat.only && e.session) {
    if (chat.only === NEXT && !chat.known.has(e.session)) chat.only = e.session; // the new one's first turn
    chat.known.add(e.session);
    if (e.session !== chat.only) {
      chat.hidden.add(e.turn);
      chat.turns.get(e.turn)?.box.remove(); // drawn by an event before its start (its instance's)
    }
  }
  if (chat.hidden.has(e.turn)) return;
  const t = turnBox(chat, e.turn);
  if (kind === "turn.started" && e.session) {
    // A turn in another opencode session than the one before: a new
    // conversation began (the earlier one stays above).
    if (chat.session && e.session !== chat.session) {
      t.box.before(el("div", { className: "divider", dataset: { session: e.session } }, "new conversation"));
    }
    chat.session = e.session;
  }
  switch (kind) {
    case "turn.started":
    case "input.steered":
      t.box.insertBefore(el("div", { className: "you" }, d.text || ""), t.answer);
      if (d.schedule) t.box.insertBefore(el("div", { className: "muted scheduled", dataset: { schedule: d.schedule } }, "sent by schedule " + d.schedule), t.answer);
      // A message from an agent (a task it handed, or a task's result):
      // never a person's words.
      if (d.from) t.box.insertBefore(el("div", { className: "muted from-agent", dataset: { task: d.task || "", from: d.from } },
        "sent by agent " + d.from + (d.task ? " (task " + d.task + ")" : "")), t.answer);
      break;
    case "delta":
      t.text += d.text;
      draw(t);
      break;
    case "reasoning":
      if (!t.reasoning) {
        t.reasoning = el("pre", {});
        t.box.insertBefore(el("details", { className: "reasoning" }, el("summary", {}, "reasoning"), t.reasoning), t.answer);
      }
      t.reasoning.textContent += d.text;
      break;
    case "tool_call": {
      const out = el("pre", { className: "output" });
      const meta = el("div", { className: "meta" }, "running…");
      const card = el("div", { className: "card tool", dataset: { call: d.call_id, tool: d.tool, status: "running" } },
        el("strong", {}, d.tool), meta, el("pre", { className: "input" }, JSON.stringify(d.input, null, 1)), out);
      chat.cards.set(d.call_id, { card, out, meta });
      t.box.insertBefore(card, t.answer);
      if (chat.waits.has(d.call_id)) waiting(chat, d.call_id, chat.waits.get(d.call_id));
      break;
    }
    case "tool_result": {
      const c = chat.cards.get(d.call_id);
      if (!c) break;
      c.out.textContent = d.error ? d.error : d.output;
      c.meta.textContent = (d.error ? "failed" : "done") + " in " + d.duration_ms + " ms";
      if (d.error) c.card.classList.add("failed");
      c.card.dataset.done = "true";
      c.card.dataset.status = d.error ? "failed" : "done";
      break;
    }
    case "permission.asked":
      waiting(chat, d.call_id, "waiting for approval");
      t.box.insertBefore(el("div", { className: "card ask" }, "Waiting for approval of ", el("strong", {}, d.tool), " — ",
        el("a", { href: "#/approvals" }, "approvals")), t.answer);
      break;
    case "permission.resolved":
      running(chat);
      break;
    case "question.asked": {
      waiting(chat, d.call_id, "waiting for your answer");
      const card = questionCard({ id: d.question, agent: e.agent, state: "pending", questions: d.questions || [] });
      chat.asks.set(d.question, card);
      t.box.insertBefore(card, t.answer);
      break;
    }
    case "question.resolved": {
      const card = chat.asks.get(d.question);
      if (card) card.replaceWith(questionCard({ id: d.question, state: d.expired ? "expired" : d.rejected ? "rejected" : "answered",
        answers: d.answers, by: d.by, message: d.message, questions: [] }));
      running(chat);
      break;
    }
    case "final":
      t.text = t.text || d.text || "";
      markdown(t.answer, t.text);
      t.box.dataset.ended = "final";
      break;
    case "error":
      t.box.append(el("div", { className: "card error" }, (d.code ? d.code + ": " : "") + d.message));
      t.box.dataset.ended = "error";
      break;
  }
}

// ---- approvals

// The inbox: what waits for a person (questions, approvals), then what
// was decided.
async function viewApprovals(focus) {
  const inbox = async () => Promise.all([api("GET", "/v1/approvals"), api("GET", "/v1/questions")]);
  const [{ approvals }, { questions }] = await inbox();
  // Live: read again when the pending stream says something was asked or
  // resolved; drawn again only when something changed (a message being
  // typed is kept otherwise).
  const signature = (as, qs) => as.map((a) => a.id + a.state).join() + "|" + qs.map((q) => q.id + q.state).join();
  const sig = signature(approvals, questions);
  state.onPending = async () => {
    try {
      const [{ approvals: as }, { questions: qs }] = await inbox();
      if (signature(as, qs) !== sig) viewApprovals(focus);
    } catch (e) { /* shown by the connection state */ }
  };
  questions.reverse(); // newest first
  const asked = questions.filter((q) => q.state === "pending").concat(questions.filter((q) => q.state !== "pending"));
  approvals.reverse(); // newest first
  const list = approvals.map((a) => {
    let ask = {};
    try { ask = typeof a.ask === "string" ? JSON.parse(a.ask) : a.ask || {}; } catch (e) { /* shown raw below */ }
    const msg = el("input", { placeholder: "why (with reject)", className: "reject-message" });
    const decide = (decision) => async () => {
      try {
        await api("POST", "/v1/approvals/" + encodeURIComponent(a.id), decision === "reject" ? { decision, message: msg.value } : { decision });
        viewApprovals();
        refreshPending();
      } catch (e) { err.textContent = e.message; }
    };
    const err = el("span", { className: "error" });
    const buttons = a.state === "pending" ? el("div", { className: "row" },
      el("button", { className: "primary", type: "button", onclick: decide("once"), dataset: { decision: "once" } }, "Approve once"),
      a.source !== "taosagent" ? el("button", { type: "button", onclick: decide("always"), dataset: { decision: "always" } }, "Always") : null,
      msg, el("button", { className: "danger", type: "button", onclick: decide("reject"), dataset: { decision: "reject" } }, "Reject"), err) : null;
    return el("div", { className: "card" + (a.id === focus ? " focus" : ""), dataset: { approval: a.id, state: a.state } },
      el("div", {}, el("strong", {}, ask.tool || "?"), " · agent ", a.agent, " · ", el("span", { className: "state-" + a.state }, a.state),
        a.by ? " by " + a.by : ""),
      el("div", { className: "muted" }, "session ", a.session || "—", " · ", new Date(a.created).toLocaleString()),
      // taosagent's own asks carry the one rendering of the call (whole,
      // secrets masked, every character visible); it is shown as is.
      el("pre", { className: "call" }, ask.display || JSON.stringify(ask.args || ask.metadata || ask.patterns || ask, null, 1)),
      a.message ? el("div", {}, "message: ", a.message) : null,
      buttons);
  });
  const notes = await notifySection();
  main().replaceChildren(el("h1", {}, "Inbox"),
    el("h2", {}, "Questions"), asked.length ? el("div", { id: "questions" }, asked.map(questionCard)) : el("p", { className: "muted" }, "No agent has asked anything."),
    el("h2", {}, "Approvals"), list.length ? el("div", { id: "approvals" }, list) : el("p", { className: "muted" }, "Nothing has asked for approval."),
    notes);
  // A notification's link names the approval: shown, for the person to
  // decide here (the notification alone decides nothing).
  if (focus) document.querySelector('[data-approval="' + CSS.escape(focus) + '"]')?.scrollIntoView();
}

// notifySection lists the channels a person is told on (what waits for
// them, a turn that failed), each with how its deliveries fare, and adds
// one: this browser (Web Push) or an ntfy topic.
async function notifySection() {
  const { channels } = await api("GET", "/v1/notify/channels");
  const err = el("span", { className: "error", id: "notify-error" });
  const again = () => viewApprovals();
  const add = async (body) => {
    try {
      await api("POST", "/v1/notify/channels", Object.assign({ link: location.origin }, body));
      again();
    } catch (e) { err.textContent = e.message; }
  };
  const rows = channels.map((c) => el("tr", { dataset: { channel: c.id } },
    el("td", {}, c.kind), el("td", {}, c.url), el("td", {}, c.agents.length ? c.agents.join(", ") : "every agent"),
    el("td", {}, c.failed ? el("span", { className: "error" }, c.failed + " failed: " + (c.last_error || "")) : c.pending ? c.pending + " waiting" + (c.last_error ? ": " + c.last_error : "") : c.last_sent ? "sent " + new Date(c.last_sent).toLocaleString() : "nothing yet"),
    el("td", {}, el("button", { type: "button", onclick: async () => {
      try { await api("DELETE", "/v1/notify/channels/" + encodeURIComponent(c.id)); again(); } catch (e) { err.textContent = e.message; }
    } }, "Remove"))));
  const topic = el("input", { id: "ntfy-url", placeholder: "ntfy topic URL (https://ntfy.example/a-secret-topic)" });
  const token = el("input", { id: "ntfy-token", type: "password", placeholder: "access token (optional)" });
  const push = el("button", { id: "push-subscribe", type: "button", onclick: async () => {
    try {
      const reg = await navigator.serviceWorker.ready;
      const { public_key } = await api("GET", "/v1/notify/vapid");
      const raw = atob(public_key.replace(/-/g, "+").replace(/_/g, "/"));
      const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: Uint8Array.from(raw, (ch) => ch.charCodeAt(0)) });
      await add({ kind: "webpush", subscription: sub.toJSON() });
    } catch (e) { err.textContent = "Web Push: " + e.message; }
  } }, "Notify this browser");
  const secure = window.isSecureContext && "serviceWorker" in navigator && "PushManager" in window;
  return el("section", { id: "notify" }, el("h2", {}, "Notifications"),
    el("p", { className: "muted" }, "Where you are told that an approval or a question waits, or that a turn failed: the agent, the kind and a short title, with a link here."),
    rows.length ? el("table", {}, el("tr", {}, ["kind", "to", "agents", "deliveries", ""].map((h) => el("th", {}, h))), ...rows) : el("p", { className: "muted" }, "No channels yet."),
    el("div", { className: "row" }, secure ? push : el("span", { className: "muted", id: "push-needs-https" }, "Web Push needs the panel over HTTPS (or on this machine's loopback); ntfy works without."),
      topic, token, el("button", { id: "ntfy-add", type: "button", onclick: () => add({ kind: "ntfy", url: topic.value, token: token.value }) }, "Add ntfy topic"), err));
}

// ---- the Library

async function viewLibrary(arg) {
  const { items } = await api("GET", "/v1/library");
  const detail = el("div", { id: "library-item" });
  const rows = (items || []).map((i) => el("tr", { dataset: { item: i.kind + "/" + i.name } },
    el("td", {}, el("a", { href: "#/library/" + encodeURIComponent(i.kind + "/" + i.name) }, i.kind + "/" + i.name)),
    el("td", {}, i.digest ? i.digest.slice(0, 12) : el("span", { className: "muted" }, "proposed")),
    el("td", { className: "hide-narrow" }, i.description),
    el("td", {}, (i.pending || []).length ? el("span", { className: "badge waiting" }, (i.pending || []).length + " waiting") : "")));
  main().replaceChildren(el("h1", {}, "Library"),
    el("p", { className: "muted" }, "Vetted skills, commands, tools, rules, MCP servers and agent templates. Add items with taosagent library add DIR; give them to an agent in its editor."),
    rows.length ? el("table", { id: "library" }, el("thead", {}, el("tr", {}, el("th", {}, "item"), el("th", {}, "current"),
      el("th", { className: "hide-narrow" }, "description"), el("th", {}, ""))), el("tbody", {}, rows)) : el("p", { className: "muted" }, "The Library is empty."),
    detail);
  if (arg) await showItem(detail, arg);
}

// showItem shows one item for review: its files and each waiting version's
// diff, all as text; accepting or removing it, and an MCP server's
// secrets (write-only: a value is never shown, only whether it is set).
async function showItem(detail, ref) {
  const [kind, name] = ref.split("/");
  const path = "/v1/library/" + encodeURIComponent(kind) + "/" + encodeURIComponent(name);
  const it = await api("GET", path);
  const err = el("p", { className: "error", id: "item-error" });
  const act = async (f) => { err.textContent = ""; try { await f(); await viewLibrary(ref); } catch (e) { err.textContent = e.message; } };
  const waiting = (it.waiting || []).map((v) => el("div", { className: "card", dataset: { digest: v.digest } },
    el("div", {}, "waiting: ", el("code", {}, v.digest)),
    el("pre", { className: "diff" }, v.diff),
    el("button", { className: "primary accept", type: "button", onclick: () => act(() => api("POST", path + "/accept", { digest: v.digest })) }, "Accept")));
  const secrets = Object.entries(it.secrets || {}).sort().map(([n, set]) => {
    const value = el("input", { type: "password", autocomplete: "off", placeholder: "value" });
    return el("div", { className: "row secret", dataset: { secret: n } }, el("code", {}, n), " ",
      el("span", { className: set ? "" : "error" }, set ? "set" : "not set"), value,
      el("button", { type: "button", onclick: () => act(() => api("PUT", path + "/secrets/" + encodeURIComponent(n), { value: value.value })) }, "Set"));
  });
  const files = (it.files || []).map((f) => el("div", {}, el("h3", {}, f), el("pre", {}, (it.content || {})[f] || "")));
  detail.replaceChildren(el("div", { className: "card", dataset: { item: ref } },
    el("h2", {}, ref), el("p", {}, it.description),
    it.note ? el("p", { className: "error note" }, it.note) : null,
    el("div", { className: "muted" }, it.digest ? "current: " + it.digest : "proposed: no version is current yet"),
    secrets.length ? el("div", { id: "secrets" }, el("h3", {}, "Secrets"), secrets) : null,
    waiting, files,
    el("div", { className: "row" }, el("button", { className: "danger", type: "button", onclick: () => {
      if (!confirm("Remove " + ref + " and all its versions?")) return;
      api("DELETE", path).then(() => { location.hash = "#/library"; }, (e) => { err.textContent = e.message; });
    } }, "Remove")), err));
}

// ---- apps

async function viewApps() {
  const { apps } = await api("GET", "/v1/apps");
  const frame = el("div", { id: "preview" });
  const list = apps.map((a) => {
    const report = a.report || {};
    const findings = (report.findings || []).map((f) => el("li", {}, f.severity + " " + f.rule + " " + (f.path || "") + ": " + f.message));
    return el("div", { className: "card", dataset: { app: a.sha256, state: a.state } },
      el("div", {}, el("strong", {}, a.app_id || "?"), " ", a.version, " · ", el("span", { className: "state-" + a.state }, a.state),
        " · submitted by ", a.submitted_by),
      el("div", { className: "muted" }, "sha256 ", a.sha256),
      findings.length ? el("ul", {}, findings) : el("div", { className: "muted" }, "no findings"),
      a.state !== "refused" ? el("div", { className: "row" },
        el("button", { type: "button", onclick: async () => {
          const p = await api("POST", "/v1/apps/" + a.sha256 + "/preview");
          // An opaque sandbox: scripts, and nothing of this origin.
          frame.replaceChildren(el("h2", {}, "Preview of " + (a.app_id || a.sha256)),
            el("iframe", { className: "preview", sandbox: "allow-scripts", src: p.url, title: "app preview" }));
        } }, "Preview"),
        a.state === "pending" ? el("button", { className: "primary", type: "button", onclick: async () => {
          await api("POST", "/v1/apps/" + a.sha256 + "/decision", { decision: "approve" }); viewApps();
        } }, "Approve") : null,
        a.state === "pending" ? el("button", { className: "danger", type: "button", onclick: async () => {
          await api("POST", "/v1/apps/" + a.sha256 + "/decision", { decision: "reject" }); viewApps();
        } }, "Reject") : null) : null);
  });
  main().replaceChildren(el("h1", {}, "Apps"), frame, list.length ? el("div", {}, list) : el("p", { className: "muted" }, "No app was submitted."));
}

// ---- events

async function viewEvents(name) {
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  const after = Number(q.get("after") || 0);
  const chosen = new Set((q.get("kinds") || "").split(",").filter(Boolean));
  const params = new URLSearchParams({ after: String(after), limit: "50" });
  if (chosen.size) params.set("kinds", [...chosen].join(","));
  const page = await api("GET", "/v1/agents/" + encodeURIComponent(name) + "/events?" + params);
  const boxes = KINDS.filter((k) => k !== "reset").map((k) => el("label", {},
    el("input", { type: "checkbox", value: k, checked: chosen.has(k), className: "kind" }), " " + k));
  const go = (from) => {
    const p = new URLSearchParams();
    const ks = [...document.querySelectorAll("input.kind:checked")].map((i) => i.value);
    if (ks.length) p.set("kinds", ks.join(","));
    if (from) p.set("after", String(from));
    location.hash = "#/events/" + encodeURIComponent(name) + "/?" + p;
  };
  const rows = page.events.map((e) => el("tr", { dataset: { seq: String(e.seq) } }, el("td", {}, String(e.seq)),
    el("td", { className: "hide-narrow" }, new Date(e.time).toLocaleTimeString()), el("td", {}, e.kind),
    el("td", {}, el("pre", {}, JSON.stringify(e.data)))));
  main().replaceChildren(el("h1", {}, "Events of " + name),
    el("div", { className: "row" }, boxes, el("button", { type: "button", onclick: () => go(0) }, "Filter")),
    el("table", { id: "events" }, el("tbody", {}, rows)),
    el("div", { className: "row" },
      after > 0 ? el("button", { type: "button", onclick: () => go(0) }, "First page") : null,
      page.events.length === 50 ? el("button", { type: "button", id: "next-page", onclick: () => go(page.last_seq) }, "Next page") : null,
      el("span", { className: "muted" }, page.events.length + " events after seq " + after)));
}

// ---- usage

async function viewUsage() {
  const { usage } = await api("GET", "/v1/usage");
  const sums = new Map();
  for (const u of usage) {
    const k = u.agent + " " + u.model;
    const s = sums.get(k) || { agent: u.agent, model: u.model, requests: 0, input: 0, output: 0, cost: 0 };
    s.requests += u.requests; s.input += u.input_tokens; s.output += u.output_tokens; s.cost += u.cost;
    sums.set(k, s);
  }
  const rows = [...sums.values()].map((s) => el("tr", {}, el("td", {}, s.agent), el("td", {}, s.model), el("td", {}, String(s.requests)),
    el("td", {}, String(s.input)), el("td", {}, String(s.output)), el("td", {}, s.cost.toFixed(4))));
  main().replaceChildren(el("h1", {}, "Usage"),
    rows.length ? el("table", { id: "usage" }, el("thead", {}, el("tr", {}, ["agent", "model", "calls", "tokens in", "tokens out", "cost"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)) : el("p", { className: "muted" }, "No model call went through the gateway yet."));
}

// ---- audit

async function viewAudit() {
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  const actor = el("input", { placeholder: "actor", value: q.get("actor") || "" });
  const tool = el("input", { placeholder: "action", value: q.get("tool") || "" });
  const outcome = el("select", {}, ["", "ok", "refused", "failed", "pending"].map((o) => el("option", { value: o, selected: o === (q.get("outcome") || "") }, o || "any outcome")));
  const params = new URLSearchParams();
  for (const [k, v] of [["actor", actor.value], ["tool", tool.value], ["outcome", outcome.value]]) if (v) params.set(k, v);
  params.set("limit", "100");
  params.set("newest", "true");
  const before = Number(q.get("before") || 0);
  if (before) params.set("before", String(before));
  const { entries } = await api("GET", "/v1/audit?" + params);
  entries.reverse(); // newest first
  const older = entries.length === 100 ? el("button", { type: "button", id: "older", onclick: () => {
    const p = new URLSearchParams(location.hash.split("?")[1] || "");
    p.set("before", String(entries[entries.length - 1].id));
    location.hash = "#/audit/?" + p;
  } }, "Older") : null;
  const apply = el("button", { type: "button", onclick: () => {
    const p = new URLSearchParams();
    if (actor.value) p.set("actor", actor.value);
    if (tool.value) p.set("tool", tool.value);
    if (outcome.value) p.set("outcome", outcome.value);
    location.hash = "#/audit/?" + p;
  } }, "Filter");
  main().replaceChildren(el("h1", {}, "Audit"), el("div", { className: "row" }, actor, tool, outcome, apply),
    el("table", { id: "audit" }, el("thead", {}, el("tr", {}, ["time", "actor", "action", "target", "outcome"].map((h) => el("th", {}, h)))),
      el("tbody", {}, entries.map((e) => el("tr", {}, el("td", {}, new Date(e.time).toLocaleString()), el("td", {}, e.actor),
        el("td", {}, e.action), el("td", {}, e.target), el("td", { className: "state-" + e.outcome }, e.outcome,
          e.approver ? " (approved by " + e.approver + ")" : ""))))), el("div", { className: "row" }, before ? el("a", { href: "#/audit" }, "Newest") : null, older));
}

window.addEventListener("hashchange", () => { if (state.csrf) route(); });
window.addEventListener("DOMContentLoaded", () => {
  $("#signout").addEventListener("click", async () => {
    await fetch("/panel/logout", { method: "POST", headers: { "X-CSRF-Token": state.csrf }, credentials: "same-origin" });
    signedOut();
  });
  start();
});
