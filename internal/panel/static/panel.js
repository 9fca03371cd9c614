// taosagent's panel. Plain script, no library: every text that comes from
// the daemon (an agent's words, a tool's output, an app's report) goes into
// the page as text (textContent), never as markup.
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
  state.csrf = "";
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  setConn("out", "signed out");
  renderSignIn();
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
  if (!location.hash) location.hash = "#/agents";
  route();
  refreshPending();
  clearInterval(state.timer);
  state.timer = setInterval(refreshPending, 5000);
}

async function refreshPending() {
  try {
    const { approvals } = await api("GET", "/v1/approvals?state=pending");
    $("#pending").textContent = approvals.length ? String(approvals.length) : "";
  } catch (e) { /* signed out is handled by api */ }
}

function closeStream() {
  if (state.source) { state.source.close(); state.source = null; }
}

function route() {
  closeStream();
  const [, page, arg] = location.hash.split("/");
  const views = { agents: viewAgents, chat: viewChat, approvals: viewApprovals, apps: viewApps, audit: viewAudit };
  (views[page] || viewAgents)(decodeURIComponent(arg || ""))
    .catch((e) => main().replaceChildren(el("p", { className: "card error" }, e.message)));
}

// ---- agents

async function viewAgents() {
  const { agents } = await api("GET", "/v1/agents");
  const rows = agents.map((a) => el("tr", { dataset: { agent: a.name } },
    el("td", {}, el("a", { href: "#/chat/" + encodeURIComponent(a.name) }, a.name), a.builtin ? el("span", { className: "muted" }, " (built in)") : ""),
    el("td", {}, a.status.state, a.status.queued ? " · " + a.status.queued + " queued" : ""),
    el("td", { className: "hide-narrow" }, a.model),
    el("td", { className: "hide-narrow" }, a.status.confined ? "confined" : "UNCONFINED",
      a.status.usage ? " · " + Math.round(a.status.usage.memory_bytes / 1048576) + " MiB" : "")));
  main().replaceChildren(el("h1", {}, "Agents"),
    el("table", { id: "agents" }, el("thead", {}, el("tr", {}, el("th", {}, "agent"), el("th", {}, "state"),
      el("th", { className: "hide-narrow" }, "model"), el("th", { className: "hide-narrow" }, "instance"))), el("tbody", {}, rows)));
}

// ---- chat

const KINDS = ["input.accepted", "input.steered", "turn.started", "status", "delta", "reasoning", "tool_call", "tool_result",
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
  main().replaceChildren(
    el("h1", {}, name, el("span", { className: "muted" }, " · " + agent.model)),
    log,
    el("div", { className: "composer" }, text,
      el("div", { className: "row" }, el("button", { id: "send", className: "primary", type: "button", onclick: send }, "Send"), mode, stop, sendErr)));
  follow(name, log);
}

// follow streams agent name's events into log: history first, then live.
// Each event is shown once, by its seq; after a lost connection the
// browser resumes from the last id it saw (Last-Event-ID).
function follow(name, log) {
  const chat = { log, turns: new Map(), cards: new Map(), last: 0 };
  const src = new EventSource("/v1/agents/" + encodeURIComponent(name) + "/events/stream?after=0");
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
}

function turnBox(chat, id) {
  let t = chat.turns.get(id);
  if (!t) {
    const answer = el("div", { className: "answer" });
    const box = el("div", { className: "card turn", dataset: { turn: id } }, answer);
    t = { box, answer, reasoning: null, text: "" };
    chat.turns.set(id, t);
    chat.log.append(box);
  }
  return t;
}

function render(chat, kind, e) {
  const d = e.data || {};
  if (!e.turn && kind !== "turn.started") return; // inbox and instance news: not part of a turn
  const t = turnBox(chat, e.turn);
  switch (kind) {
    case "turn.started":
    case "input.steered":
      t.box.insertBefore(el("div", { className: "you" }, d.text || ""), t.answer);
      break;
    case "delta":
      t.text += d.text;
      t.answer.textContent = t.text;
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
      const card = el("div", { className: "card tool", dataset: { call: d.call_id, tool: d.tool } },
        el("strong", {}, d.tool), meta, el("pre", { className: "input" }, JSON.stringify(d.input, null, 1)), out);
      chat.cards.set(d.call_id, { card, out, meta });
      t.box.insertBefore(card, t.answer);
      break;
    }
    case "tool_result": {
      const c = chat.cards.get(d.call_id);
      if (!c) break;
      c.out.textContent = d.error ? d.error : d.output;
      c.meta.textContent = (d.error ? "failed" : "done") + " in " + d.duration_ms + " ms";
      if (d.error) c.card.classList.add("failed");
      c.card.dataset.done = "true";
      break;
    }
    case "permission.asked":
      t.box.insertBefore(el("div", { className: "card ask" }, "Waiting for approval of ", el("strong", {}, d.tool), " — ",
        el("a", { href: "#/approvals" }, "approvals")), t.answer);
      break;
    case "final":
      if (!t.text && d.text) { t.text = d.text; t.answer.textContent = d.text; }
      t.box.dataset.ended = "final";
      break;
    case "error":
      t.box.append(el("div", { className: "card error" }, (d.code ? d.code + ": " : "") + d.message));
      t.box.dataset.ended = "error";
      break;
  }
}

// ---- approvals

async function viewApprovals() {
  const { approvals } = await api("GET", "/v1/approvals");
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
    return el("div", { className: "card", dataset: { approval: a.id, state: a.state } },
      el("div", {}, el("strong", {}, ask.tool || "?"), " · agent ", a.agent, " · ", el("span", { className: "state-" + a.state }, a.state),
        a.by ? " by " + a.by : ""),
      el("div", { className: "muted" }, "session ", a.session || "—", " · ", new Date(a.created).toLocaleString()),
      el("pre", {}, JSON.stringify(ask.args || ask.metadata || ask.patterns || ask, null, 1)),
      a.message ? el("div", {}, "message: ", a.message) : null,
      buttons);
  });
  main().replaceChildren(el("h1", {}, "Approvals"), list.length ? el("div", { id: "approvals" }, list) : el("p", { className: "muted" }, "Nothing has asked for approval."));
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

// ---- audit

async function viewAudit() {
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  const actor = el("input", { placeholder: "actor", value: q.get("actor") || "" });
  const tool = el("input", { placeholder: "action", value: q.get("tool") || "" });
  const outcome = el("select", {}, ["", "ok", "refused", "failed", "pending"].map((o) => el("option", { value: o, selected: o === (q.get("outcome") || "") }, o || "any outcome")));
  const params = new URLSearchParams();
  for (const [k, v] of [["actor", actor.value], ["tool", tool.value], ["outcome", outcome.value]]) if (v) params.set(k, v);
  params.set("limit", "200");
  const { entries } = await api("GET", "/v1/audit?" + params);
  entries.reverse();
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
          e.approver ? " (approved by " + e.approver + ")" : ""))))));
}

window.addEventListener("hashchange", () => { if (state.csrf) route(); });
window.addEventListener("DOMContentLoaded", () => {
  $("#signout").addEventListener("click", async () => {
    await fetch("/panel/logout", { method: "POST", headers: { "X-CSRF-Token": state.csrf }, credentials: "same-origin" });
    signedOut();
  });
  start();
});
