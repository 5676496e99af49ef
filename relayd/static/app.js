// Agent Relay dashboard: vanilla JS, no build step.
//
// The token lives in sessionStorage and only ever travels in the Authorization header. That is
// why live updates use fetch() + ReadableStream instead of EventSource: EventSource cannot send
// headers, and the usual workaround (a token query parameter) would put the token in URLs,
// logs and the browser history.
"use strict";

(() => {
  const TOKEN_KEY = "agent-relay.token";
  const FEED_LIMIT = 100;
  const TABLE_LIMIT = 100;
  const STATS_EVERY_MS = 30000;
  const RELATIVE_TIMES_EVERY_MS = 10000;
  const MAX_RECONNECT_DELAY_MS = 10000;
  const STATUS_RANK = { online: 0, busy: 1, idle: 2, offline: 3 };

  const state = {
    token: readToken(),
    agents: new Map(),
    messages: new Map(),
    messageItems: new Map(), // message id -> <li>, reused so live entries are not rebuilt
    tasks: new Map(),
    pairs: new Map(),
    optional: { tasks: false, pairs: false },
    stats: null,
    statsAt: 0,
    session: null,
    renderTimer: null,
    statsTimer: null,
  };

  class Unauthorized extends Error {}

  class ApiFailure extends Error {
    constructor(status, data) {
      super((data && data.error) || `HTTP ${status}`);
      this.status = status;
      this.code = data && data.code;
    }
  }

  // ------------------------------------------------------------------ small helpers

  function $(id) {
    return document.getElementById(id);
  }

  function readToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || null;
    } catch (_) {
      return null; // storage disabled: the token then lives in memory only
    }
  }

  function storeToken(token) {
    state.token = token;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      /* memory only */
    }
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function cell(text, className) {
    return el("td", className, text === null || text === undefined ? "" : text);
  }

  function chips(values) {
    const td = el("td");
    for (const value of values || []) td.appendChild(el("span", "chip", value));
    return td;
  }

  function statusBadge(status) {
    const safe = /^[a-z_]+$/.test(status || "") ? status : "unknown";
    return el("span", `status status-${safe}`, status || "?");
  }

  function ago(iso) {
    if (!iso) return "";
    const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 5) return "just now";
    if (seconds < 60) return `${seconds}s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
    return `${Math.floor(seconds / 86400)}d ago`;
  }

  function duration(totalSeconds) {
    const s = Math.max(0, Math.floor(totalSeconds));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s % 60}s`;
    return `${s}s`;
  }

  function clock(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString();
  }

  function preview(text, limit) {
    const value = text || "";
    return value.length > limit ? `${value.slice(0, limit)}…` : value;
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }

  function showError(text) {
    const box = $("error");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function setConnection(live, text) {
    const conn = $("conn");
    conn.textContent = text;
    conn.className = `conn ${live ? "conn-on" : "conn-off"}`;
  }

  // ------------------------------------------------------------------ HTTP

  function authHeaders(extra) {
    const headers = new Headers(extra || {});
    if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
    return headers;
  }

  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options,
      headers: authHeaders(options.headers),
      cache: "no-store",
      credentials: "same-origin",
    });
    if (response.status === 401) throw new Unauthorized();
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
    }
    if (!response.ok) throw new ApiFailure(response.status, data);
    return data;
  }

  async function optionalList(path, key) {
    try {
      const data = await api(path);
      return Array.isArray(data && data[key]) ? data[key] : [];
    } catch (error) {
      if (error instanceof Unauthorized) throw error;
      return null; // endpoint missing (404) or not allowed: the panel stays hidden
    }
  }

  // ------------------------------------------------------------------ snapshot

  async function loadSnapshot() {
    const [agents, messages, tasks, pairs] = await Promise.all([
      api("/api/agents"),
      api(`/api/messages?order=desc&limit=${FEED_LIMIT}`),
      optionalList(`/api/tasks?limit=${TABLE_LIMIT}`, "tasks"),
      optionalList("/api/pairs", "pairs"),
      refreshStats(),
    ]);
    state.agents = new Map(agents.agents.map((agent) => [agent.id, agent]));
    state.messages = new Map(messages.messages.map((message) => [message.id, message]));
    state.messageItems = new Map();
    $("messages").replaceChildren();
    state.optional.tasks = tasks !== null;
    state.optional.pairs = pairs !== null;
    state.tasks = new Map((tasks || []).map((task) => [task.id, task]));
    state.pairs = new Map((pairs || []).map((pair) => [pair.id, pair]));
  }

  async function refreshStats() {
    try {
      state.stats = await api("/api/stats");
      state.statsAt = Date.now();
      renderHeader();
    } catch (error) {
      if (error instanceof Unauthorized) throw error;
    }
  }

  function refreshStatsSoon() {
    if (state.statsTimer) return;
    state.statsTimer = setTimeout(() => {
      state.statsTimer = null;
      refreshStats().catch(() => {});
    }, 1500);
  }

  // ------------------------------------------------------------------ live events

  function applyEvent(type, data) {
    if (!data || typeof data !== "object") return;
    switch (type) {
      case "message.new":
        state.messages.set(data.id, data);
        trimMessages();
        break;
      case "message.claimed": {
        const message = state.messages.get(data.id);
        if (message) {
          state.messages.set(data.id, { ...message, claimedBy: data.claimedBy,
            claimedAt: data.claimedAt || message.claimedAt });
          state.messageItems.delete(data.id);
        }
        break;
      }
      case "message.deleted":
        state.messages.delete(data.id);
        break;
      case "agent.status":
        if (data.id) state.agents.set(data.id, data);
        break;
      case "agent.removed":
        state.agents.delete(data.id);
        break;
      case "task.created":
      case "task.updated":
        upsert(state.tasks, data.task || data);
        break;
      case "pair.updated":
        upsert(state.pairs, data.pair || data);
        break;
      default:
        return;
    }
    scheduleRender();
    refreshStatsSoon();
  }

  function upsert(map, item) {
    if (item && item.id !== undefined) map.set(item.id, { ...(map.get(item.id) || {}), ...item });
  }

  function trimMessages() {
    if (state.messages.size <= FEED_LIMIT) return;
    const ids = [...state.messages.keys()].sort((a, b) => a - b);
    for (const id of ids.slice(0, ids.length - FEED_LIMIT)) state.messages.delete(id);
  }

  // Parses one SSE block ("id:", "event:", "data:" lines) as the EventSource spec does.
  function parseBlock(block, session) {
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id" && !value.includes("\0")) session.lastEventId = value;
      else if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    let payload;
    try {
      payload = JSON.parse(data.join("\n"));
    } catch (_) {
      return;
    }
    if (session.ready) applyEvent(type, payload);
    else session.pending.push([type, payload]);
  }

  async function openStream(session) {
    const headers = { Accept: "text/event-stream" };
    if (session.lastEventId) headers["Last-Event-ID"] = session.lastEventId;
    const response = await fetch("/api/events", {
      headers: authHeaders(headers),
      cache: "no-store",
      credentials: "same-origin",
      signal: session.controller.signal,
    });
    if (response.status === 401) throw new Unauthorized();
    if (!response.ok || !response.body) throw new ApiFailure(response.status, null);
    return response;
  }

  async function readStream(response, session) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      // normalised as a whole so a CR LF split across two chunks still counts once
      buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n/g, "\n");
      let cut = buffer.indexOf("\n\n");
      while (cut >= 0) {
        parseBlock(buffer.slice(0, cut), session);
        buffer = buffer.slice(cut + 2);
        cut = buffer.indexOf("\n\n");
      }
    }
  }

  // Reads the stream until it drops, then reconnects with Last-Event-ID so the relay replays
  // what was missed in between.
  async function followStream(session, firstResponse) {
    let response = firstResponse;
    let delay = 1000;
    const signal = session.controller.signal;
    while (!signal.aborted) {
      if (response) {
        setConnection(true, "live");
        delay = 1000;
        try {
          await readStream(response, session);
        } catch (_) {
          /* dropped: reconnect below */
        }
      }
      if (signal.aborted) return;
      setConnection(false, "reconnecting…");
      await sleep(delay, signal);
      delay = Math.min(delay * 2, MAX_RECONNECT_DELAY_MS);
      if (signal.aborted) return;
      let next = null;
      try {
        const resumable = session.lastEventId !== null;
        next = await openStream(session);
        // without an event id to resume from, only a fresh snapshot closes the gap
        if (resumable) refreshStatsSoon();
        else await resync(session);
        response = next;
      } catch (error) {
        if (next) next.body.cancel().catch(() => {});
        if (error instanceof Unauthorized) return askForToken(Boolean(state.token));
        response = null;
      }
    }
  }

  // ------------------------------------------------------------------ start and token

  function newSession() {
    if (state.session) state.session.controller.abort();
    state.session = { controller: new AbortController(), lastEventId: null, ready: false,
      pending: [] };
    return state.session;
  }

  async function resync(session) {
    session.ready = false;
    await loadSnapshot();
    session.ready = true;
    for (const [type, payload] of session.pending.splice(0)) applyEvent(type, payload);
    renderAll();
  }

  // Stream first, snapshot second: events from the moment the stream is subscribed are queued
  // and applied in order after the snapshot, so nothing that happens in between is lost.
  async function start() {
    const session = newSession();
    setConnection(false, "connecting…");
    try {
      const response = await openStream(session);
      await resync(session);
      showError(null);
      showMain();
      followStream(session, response);
    } catch (error) {
      if (session.controller.signal.aborted) return;
      if (error instanceof Unauthorized) return askForToken(Boolean(state.token));
      setConnection(false, "offline");
      showError(`Cannot reach the relay (${error.message}); retrying…`);
      await sleep(3000, session.controller.signal);
      if (!session.controller.signal.aborted) start();
    }
  }

  function showMain() {
    $("token-panel").hidden = true;
    $("main").hidden = false;
    $("forget-token").hidden = !state.token;
  }

  function askForToken(rejected) {
    if (state.session) state.session.controller.abort();
    if (rejected) storeToken(null);
    setConnection(false, "locked");
    showError(null);
    $("main").hidden = true;
    $("forget-token").hidden = true;
    $("token-note").textContent = rejected
      ? "That token was not accepted. Enter the relay's token (AGENT_RELAY_TOKEN)."
      : "Enter the relay's token (AGENT_RELAY_TOKEN). It is kept in this tab only and sent " +
        "in the Authorization header, never in a URL.";
    $("token-panel").hidden = false;
    $("token-input").focus();
  }

  function onTokenSubmit(event) {
    event.preventDefault();
    const input = $("token-input");
    const token = input.value.trim();
    input.value = "";
    if (!token) return;
    storeToken(token);
    $("token-panel").hidden = true;
    start();
  }

  function onForgetToken() {
    storeToken(null);
    start();
  }

  // ------------------------------------------------------------------ compose

  async function onCompose(event) {
    event.preventDefault();
    const result = $("compose-result");
    const message = {
      from: $("compose-from").value.trim(),
      to: $("compose-to").value.trim(),
      body: $("compose-body").value,
      claimable: $("compose-claimable").checked,
    };
    const subject = $("compose-subject").value.trim();
    if (subject) message.subject = subject;
    result.className = "result";
    result.textContent = "sending…";
    try {
      const sent = await api("/api/messages", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(message),
      });
      const count = (sent.recipients || []).length;
      result.textContent = `sent #${sent.id} to ${count} recipient${count === 1 ? "" : "s"}`;
      $("compose-body").value = "";
      $("compose-subject").value = "";
    } catch (error) {
      if (error instanceof Unauthorized) return askForToken(Boolean(state.token));
      result.className = "result bad";
      result.textContent = error.message;
    }
  }

  // ------------------------------------------------------------------ rendering

  function scheduleRender() {
    if (state.renderTimer) return;
    state.renderTimer = setTimeout(() => {
      state.renderTimer = null;
      renderAll();
    }, 30);
  }

  function renderAll() {
    renderHeader();
    renderAgents();
    renderMessages();
    renderTasks();
    renderPairs();
  }

  function renderHeader() {
    const stats = state.stats;
    if (!stats) return;
    $("version").textContent = stats.version || "?";
    const uptime = (stats.uptimeSeconds || 0) + (Date.now() - state.statsAt) / 1000;
    $("uptime").textContent = duration(uptime);
    const agents = stats.agents || {};
    const messages = stats.messages || {};
    $("counts").textContent =
      `${agents.online ?? 0}/${agents.total ?? 0} agents online · ${messages.total ?? 0} messages`;
  }

  function sortedAgents() {
    return [...state.agents.values()].sort((a, b) =>
      (STATUS_RANK[a.status] ?? 9) - (STATUS_RANK[b.status] ?? 9) || a.id.localeCompare(b.id));
  }

  function agentRow(agent) {
    const row = el("tr", agent.status === "offline" ? "is-offline" : "");
    row.dataset.agent = agent.id;
    const status = el("td");
    status.appendChild(statusBadge(agent.status));
    const seen = cell(ago(agent.lastSeenAt));
    seen.title = agent.lastSeenAt || "";
    row.append(cell(agent.id, "id"), status, cell(agent.label), cell(agent.machine),
      cell(agent.project), chips(agent.tags), chips(agent.capabilities), seen);
    return row;
  }

  function renderAgents() {
    const agents = sortedAgents();
    $("agents").tBodies[0].replaceChildren(...agents.map(agentRow));
    $("agents-count").textContent = agents.length ? `(${agents.length})` : "";
    $("agents-empty").hidden = agents.length > 0;
    renderTargets(agents);
  }

  function renderTargets(agents) {
    const targets = new Set(["broadcast"]);
    for (const agent of agents) targets.add(agent.id);
    for (const agent of agents) for (const tag of agent.tags || []) targets.add(`tag:${tag}`);
    for (const agent of agents) {
      for (const cap of agent.capabilities || []) targets.add(`cap:${cap}`);
    }
    const options = [...targets].map((target) => {
      const option = document.createElement("option");
      option.value = target;
      return option;
    });
    $("targets").replaceChildren(...options);
  }

  function claimBadge(message) {
    if (!message.claimable) return null;
    if (message.claimedBy) return el("span", "claim claim-taken", `claimed by ${message.claimedBy}`);
    return el("span", "claim claim-open", "claimable · unclaimed");
  }

  function messageItem(message) {
    const item = el("li");
    item.dataset.message = String(message.id);
    const head = el("div", "head");
    head.append(el("span", "", `#${message.id}`), el("span", "", clock(message.createdAt)),
      el("span", "route", `${message.from} → ${message.to}`));
    if (message.channel) head.appendChild(el("span", "chip", message.channel));
    const claim = claimBadge(message);
    if (claim) head.appendChild(claim);
    item.appendChild(head);
    if (message.subject) item.appendChild(el("div", "subject", message.subject));
    item.appendChild(el("div", "body", preview(message.body, 280)));
    return item;
  }

  function renderMessages() {
    const list = $("messages");
    const messages = [...state.messages.values()].sort((a, b) => b.id - a.id);
    const initial = state.messageItems.size === 0;
    const items = messages.map((message) => {
      let item = state.messageItems.get(message.id);
      if (!item) {
        item = messageItem(message);
        if (!initial) item.classList.add("fresh");
        state.messageItems.set(message.id, item);
      }
      return item;
    });
    for (const id of [...state.messageItems.keys()]) {
      if (!state.messages.has(id)) state.messageItems.delete(id);
    }
    list.replaceChildren(...items);
    $("messages-count").textContent = messages.length ? `(latest ${messages.length})` : "";
    $("messages-empty").hidden = messages.length > 0;
  }

  function renderTasks() {
    $("tasks-panel").hidden = !state.optional.tasks;
    if (!state.optional.tasks) return;
    const tasks = [...state.tasks.values()].sort((a, b) => b.id - a.id).slice(0, TABLE_LIMIT);
    $("tasks").tBodies[0].replaceChildren(...tasks.map((task) => {
      const row = el("tr");
      const title = cell(task.title);
      title.title = preview(task.body, 500);
      const status = el("td");
      status.appendChild(statusBadge(task.status));
      const seen = cell(`${task.occurrenceCount > 1 ? `×${task.occurrenceCount} · ` : ""}` +
        ago(task.lastSeenAt || task.updatedAt));
      row.append(cell(task.id), cell(task.severity), title, cell(task.target, "id"), status,
        cell(task.claimedBy), seen);
      return row;
    }));
    $("tasks-count").textContent = tasks.length ? `(${tasks.length})` : "";
    $("tasks-empty").hidden = tasks.length > 0;
  }

  function renderPairs() {
    $("pairs-panel").hidden = !state.optional.pairs;
    if (!state.optional.pairs) return;
    const pairs = [...state.pairs.values()].sort((a, b) => b.id - a.id).slice(0, TABLE_LIMIT);
    $("pairs").tBodies[0].replaceChildren(...pairs.map((pair) => {
      const row = el("tr");
      const status = el("td");
      status.appendChild(statusBadge(pair.status));
      row.append(cell(pair.id), cell(pair.initiator, "id"), cell(pair.partner, "id"), status,
        cell(preview(pair.objective, 200)));
      return row;
    }));
    $("pairs-count").textContent = pairs.length ? `(${pairs.length})` : "";
    $("pairs-empty").hidden = pairs.length > 0;
  }

  // ------------------------------------------------------------------ boot

  function boot() {
    $("token-form").addEventListener("submit", onTokenSubmit);
    $("compose").addEventListener("submit", onCompose);
    $("forget-token").addEventListener("click", onForgetToken);
    setInterval(renderHeader, 1000);
    setInterval(() => { if (!$("main").hidden) renderAgents(); }, RELATIVE_TIMES_EVERY_MS);
    setInterval(() => { if (!$("main").hidden) refreshStats().catch(() => {}); }, STATS_EVERY_MS);
    start();
  }

  boot();
})();
