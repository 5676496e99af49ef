// Agent Relay dashboard: vanilla JS, no build step.
//
// The token lives in sessionStorage and only ever travels in the Authorization header. That is
// why live updates use fetch() + ReadableStream instead of EventSource: EventSource cannot send
// headers, and the usual workaround (a token query parameter) would put the token in URLs,
// logs and the browser history.
//
// First paint: when the relay lets the page see its data without a token, relayd embeds the
// first snapshot (agents, messages, tasks, pairs, stats, channels and the event id it was taken
// at) in a JSON data block of the page, so the page draws at once and then follows the event
// stream from that id (Last-Event-ID): nothing waits on a second round trip, nothing is missed.
"use strict";

(() => {
  const TOKEN_KEY = "agent-relay.token";
  const FEED_LIMIT = 200;
  const TABLE_LIMIT = 100;
  const STATS_EVERY_MS = 30000;
  const RELATIVE_TIMES_EVERY_MS = 10000;
  const MAX_RECONNECT_DELAY_MS = 10000;
  const STATUS_RANK = { online: 0, busy: 1, idle: 2, offline: 3 };
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    token: readToken(),
    agents: new Map(),
    messages: new Map(),
    messageItems: new Map(), // message id -> <li>, reused so live entries are not rebuilt
    tasks: new Map(),
    pairs: new Map(),
    channels: [],
    optional: { tasks: false, pairs: false },
    rate: null, // {bucketSeconds, counts[], endsAt (ms)}
    stats: null,
    statsAt: 0,
    session: null,
    renderTimer: null,
    statsTimer: null,
    detail: null, // {kind, id} of the open detail view
    detailTimer: null,
    filters: { agent: "", channel: "", text: "" },
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

  function cell(text, className, label) {
    const td = el("td", className, text === null || text === undefined ? "" : text);
    if (label) td.dataset.label = label;
    return td;
  }

  function chips(values, label) {
    const td = el("td");
    if (label) td.dataset.label = label;
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

  function link(text, hash, className) {
    const a = el("a", className || "", text);
    a.href = `#${hash}`;
    return a;
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

  async function optional(path, key) {
    try {
      const data = await api(path);
      return key ? (Array.isArray(data && data[key]) ? data[key] : []) : data;
    } catch (error) {
      if (error instanceof Unauthorized) throw error;
      return null; // endpoint missing (404) or not allowed: the panel stays hidden
    }
  }

  // ------------------------------------------------------------------ snapshot

  function readBootstrap() {
    const block = $("bootstrap");
    if (!block) return null;
    try {
      const data = JSON.parse(block.textContent || "null");
      return data && typeof data === "object" && Array.isArray(data.agents) ? data : null;
    } catch (_) {
      return null;
    }
  }

  async function loadSnapshot() {
    const [agents, messages, tasks, pairs, stats, channels] = await Promise.all([
      api("/api/agents?limit=1000"),
      api(`/api/messages?order=desc&limit=${FEED_LIMIT}`),
      optional(`/api/tasks?limit=${TABLE_LIMIT}`, "tasks"),
      optional("/api/pairs", "pairs"),
      optional("/api/stats"),
      optional("/api/channels", "channels"),
    ]);
    applySnapshot({ agents: agents.agents, messages: messages.messages, tasks, pairs, stats,
      channels });
  }

  function applySnapshot(data) {
    state.agents = new Map(data.agents.map((agent) => [agent.id, agent]));
    state.messages = new Map((data.messages || []).map((message) => [message.id, message]));
    state.messageItems = new Map();
    $("messages").replaceChildren();
    state.optional.tasks = Array.isArray(data.tasks);
    state.optional.pairs = Array.isArray(data.pairs);
    state.tasks = new Map((data.tasks || []).map((task) => [task.id, task]));
    state.pairs = new Map((data.pairs || []).map((pair) => [pair.id, pair]));
    state.channels = Array.isArray(data.channels) ? data.channels : [];
    if (data.stats) takeStats(data.stats);
  }

  function takeStats(stats) {
    state.stats = stats;
    state.statsAt = Date.now();
    const rate = stats.messageRate;
    if (rate && Array.isArray(rate.counts)) {
      state.rate = { bucketSeconds: rate.bucketSeconds || 60, counts: rate.counts.slice(),
        endsAt: Date.parse(rate.until) || Date.now() };
    }
  }

  async function refreshStats() {
    try {
      const [stats, channels] = await Promise.all([api("/api/stats"),
        optional("/api/channels", "channels")]);
      takeStats(stats);
      if (channels) state.channels = channels;
      renderHeader();
      renderOverview();
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
        if (!state.messages.has(data.id)) countMessage(data);
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
    if (touchesDetail(type, data)) refreshDetailSoon();
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

  // The per-minute counts move with the clock; a new message adds to the current minute.
  function advanceRate(now) {
    const rate = state.rate;
    if (!rate) return;
    const size = rate.bucketSeconds * 1000;
    const steps = Math.floor((now - rate.endsAt) / size);
    if (steps <= 0) return;
    const shift = Math.min(steps, rate.counts.length);
    rate.counts.splice(0, shift);
    for (let i = 0; i < shift; i += 1) rate.counts.push(0);
    rate.endsAt += steps * size;
  }

  function countMessage(message) {
    if (!state.rate) return;
    const now = Date.now();
    advanceRate(now);
    const created = Date.parse(message.createdAt) || now;
    const back = Math.floor((state.rate.endsAt - created) / (state.rate.bucketSeconds * 1000));
    const index = state.rate.counts.length - 1 - Math.max(0, back);
    if (index >= 0) state.rate.counts[index] += 1;
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

  // With an embedded snapshot: draw it now, then follow the stream from its event id.
  // Without one: stream first, snapshot second, so events from the moment the stream is
  // subscribed are queued and applied in order after the snapshot, and nothing is lost.
  async function start(boot) {
    const session = newSession();
    if (boot) {
      applySnapshot(boot);
      session.lastEventId = boot.eventId !== undefined ? String(boot.eventId) : null;
      session.ready = true;
      showMain();
      renderAll();
      openDetailFromHash();
      setConnection(false, "connecting…");
      try {
        followStream(session, await openStream(session));
      } catch (error) {
        if (session.controller.signal.aborted) return;
        if (error instanceof Unauthorized) return askForToken(Boolean(state.token));
        followStream(session, null); // retries with backoff, resuming from the snapshot's id
      }
      return;
    }
    setConnection(false, "connecting…");
    try {
      const response = await openStream(session);
      await resync(session);
      showError(null);
      showMain();
      openDetailFromHash();
      followStream(session, response);
    } catch (error) {
      if (session.controller.signal.aborted) return;
      if (error instanceof Unauthorized) return askForToken(Boolean(state.token));
      setConnection(false, "offline");
      showError(`Cannot reach the relay (${error.message}); retrying…`);
      await sleep(3000, session.controller.signal);
      if (!session.controller.signal.aborted) start(null);
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
      ? "That token was not accepted. Enter the relay's token (`relayctl token show`)."
      : "Enter the relay's token (AGENT_RELAY_TOKEN, shown by `relayctl token show`). It is " +
        "kept in this tab only and sent in the Authorization header, never in a URL.";
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
    start(null);
  }

  function onForgetToken() {
    storeToken(null);
    start(null);
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

  // ------------------------------------------------------------------ filters

  function onFilter() {
    state.filters = {
      agent: $("filter-agent").value,
      channel: $("filter-channel").value,
      text: $("filter-text").value.trim().toLowerCase(),
    };
    renderMessages();
  }

  function passesFilters(message) {
    const { agent, channel, text } = state.filters;
    if (agent && message.from !== agent && message.to !== agent &&
        !(message.recipients || []).includes(agent)) return false;
    if (channel && (message.channel || "") !== channel) return false;
    if (text) {
      const haystack = [message.from, message.to, message.subject, message.body, message.sentBy]
        .filter(Boolean).join("\n").toLowerCase();
      if (!haystack.includes(text)) return false;
    }
    return true;
  }

  function fillSelect(select, values) {
    const current = select.value;
    const options = [el("option", "", "any")];
    options[0].value = "";
    for (const value of values) {
      const option = el("option", "", value);
      option.value = value;
      options.push(option);
    }
    select.replaceChildren(...options);
    select.value = values.includes(current) ? current : "";
  }

  function renderFilterOptions() {
    const agents = new Set(state.agents.keys());
    const channels = new Set();
    for (const message of state.messages.values()) {
      agents.add(message.from);
      if (message.channel) channels.add(message.channel);
    }
    for (const entry of state.channels) if (entry.kind === "message") channels.add(entry.name);
    fillSelect($("filter-agent"), [...agents].sort());
    fillSelect($("filter-channel"), [...channels].sort());
  }

  // ------------------------------------------------------------------ detail views

  function openDetailFromHash() {
    const match = /^#(message|pair|task)-(\d+)$/.exec(location.hash);
    if (!match) {
      closeDetail(false);
      return;
    }
    state.detail = { kind: match[1], id: Number(match[2]) };
    $("detail").hidden = false;
    $("detail-title").textContent = `${match[1]} #${match[2]}`;
    loadDetail().catch(() => {});
    $("detail").scrollIntoView({ block: "start" });
  }

  function closeDetail(clearHash) {
    state.detail = null;
    $("detail").hidden = true;
    $("detail-body").replaceChildren();
    if (clearHash && location.hash) {
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  function touchesDetail(type, data) {
    const detail = state.detail;
    if (!detail) return false;
    if (detail.kind === "message") {
      return type.startsWith("message.") && (data.threadId === detail.threadId ||
        data.id === detail.id || (detail.ids && detail.ids.has(data.id)));
    }
    if (detail.kind === "pair") {
      return (type === "pair.updated" && (data.pair || data).id === detail.id) ||
        (type === "message.new" && data.meta && data.meta.pairId === detail.id);
    }
    const task = data.task || data;
    return type.startsWith("task.") && task.id === detail.id;
  }

  function refreshDetailSoon() {
    if (state.detailTimer) return;
    state.detailTimer = setTimeout(() => {
      state.detailTimer = null;
      loadDetail().catch(() => {});
    }, 100);
  }

  async function loadDetail() {
    const detail = state.detail;
    if (!detail) return;
    const body = $("detail-body");
    try {
      let nodes;
      if (detail.kind === "message") nodes = await threadView(detail);
      else if (detail.kind === "pair") nodes = await pairView(detail);
      else nodes = await taskView(detail);
      if (state.detail === detail) body.replaceChildren(...nodes);
    } catch (error) {
      if (error instanceof Unauthorized) return askForToken(Boolean(state.token));
      body.replaceChildren(el("p", "empty", error.message));
    }
  }

  function messageHead(message) {
    const head = el("div", "head");
    head.append(link(`#${message.id}`, `message-${message.id}`),
      el("span", "", clock(message.createdAt)),
      el("span", "route", `${message.from} → ${message.to}`));
    if (message.sentBy && message.sentBy !== message.from) {
      head.appendChild(el("span", "sent-by", `via ${message.sentBy}`));
    }
    if (message.channel) head.appendChild(el("span", "chip", message.channel));
    const claim = claimBadge(message);
    if (claim) head.appendChild(claim);
    return head;
  }

  async function threadView(detail) {
    const data = await api(`/api/messages/${detail.id}/thread`);
    const messages = data.messages || [];
    const root = messages[0];
    detail.threadId = root ? root.threadId : detail.id;
    detail.ids = new Set(messages.map((message) => message.id));
    $("detail-title").textContent = root
      ? `Thread #${root.threadId}: ${preview(root.subject || root.body, 60)}`
      : `message #${detail.id}`;
    return messages.map((message) => {
      const item = el("article", message.id === detail.id ? "thread-item is-focus" :
        "thread-item");
      item.dataset.message = String(message.id);
      if (message.replyTo) item.appendChild(el("div", "reply-to", `reply to #${message.replyTo}`));
      item.appendChild(messageHead(message));
      if (message.subject) item.appendChild(el("div", "subject", message.subject));
      item.appendChild(el("div", "body", message.body));
      const recipients = el("ul", "recipients");
      recipients.setAttribute("aria-label", "recipients");
      for (const delivery of message.deliveries || []) {
        const entry = el("li", delivery.read ? "is-read" : "is-unread");
        entry.dataset.agent = delivery.agent;
        entry.append(el("span", "id", delivery.agent),
          el("span", "read-state", delivery.read ? `read ${ago(delivery.readAt)}` : "unread"));
        if (delivery.readAt) entry.title = delivery.readAt;
        recipients.appendChild(entry);
      }
      if (!(message.deliveries || []).length) {
        recipients.appendChild(el("li", "empty", "no recipients"));
      }
      item.appendChild(recipients);
      return item;
    });
  }

  async function pairView(detail) {
    const pair = await api(`/api/pairs/${detail.id}`);
    const [mine, theirs] = await Promise.all([pair.initiator, pair.partner].map((agent) =>
      api(`/api/messages?from=${encodeURIComponent(agent)}&order=desc&limit=500`)));
    const talk = [...mine.messages, ...theirs.messages]
      .filter((message) => message.meta && message.meta.pairId === pair.id)
      .sort((a, b) => a.id - b.id);
    $("detail-title").textContent = `Pair #${pair.id}: ${pair.initiator} ⇄ ${pair.partner}`;
    const facts = el("p", "facts");
    facts.append(statusBadge(pair.status), el("span", "", ` ${pair.objective || ""}`));
    const list = el("ol", "conversation");
    for (const message of talk) {
      const side = message.from === pair.initiator ? "left" : "right";
      const item = el("li", `bubble ${side}`);
      item.dataset.message = String(message.id);
      item.append(messageHead(message), el("div", "body", message.body));
      list.appendChild(item);
    }
    if (!talk.length) list.appendChild(el("li", "empty", "no messages in this pair yet"));
    return [facts, list];
  }

  async function taskView(detail) {
    const [task, events] = await Promise.all([api(`/api/tasks/${detail.id}`),
      api(`/api/tasks/${detail.id}/events`)]);
    $("detail-title").textContent = `Task #${task.id}: ${preview(task.title, 80)}`;
    const facts = el("dl", "facts");
    const rows = [["status", task.status], ["severity", task.severity], ["source", task.source],
      ["target", task.target], ["claimed by", task.claimedBy], ["progress", task.progress],
      ["result", task.result], ["occurrences", task.occurrenceCount],
      ["first seen", task.firstSeenAt], ["last seen", task.lastSeenAt]];
    for (const [name, value] of rows) {
      if (value === null || value === undefined || value === "") continue;
      facts.append(el("dt", "", name), el("dd", "", value));
    }
    const nodes = [facts];
    if (task.body) nodes.push(el("div", "body", task.body));
    if (task.messageId) nodes.push(link(`message #${task.messageId}`, `message-${task.messageId}`));
    const history = el("ol", "events");
    for (const event of events.events || []) {
      const item = el("li");
      item.dataset.event = event.type;
      item.append(el("span", "when", clock(event.createdAt)), el("span", "type", event.type),
        el("span", "actor", event.actor || ""));
      const extra = event.data && Object.keys(event.data).length ? JSON.stringify(event.data) : "";
      if (extra) item.appendChild(el("code", "data", preview(extra, 300)));
      history.appendChild(item);
    }
    nodes.push(el("h3", "", "History"), history);
    return nodes;
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
    renderOverview();
    renderAgents();
    renderFilterOptions();
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

  function renderOverview() {
    renderRate();
    const list = $("channels");
    const bridges = state.channels.filter((entry) => entry.kind === "bridge");
    const used = state.channels.filter((entry) => entry.kind !== "bridge");
    const items = bridges.map((entry) => {
      const item = el("li");
      item.dataset.channel = entry.name;
      const word = entry.state || (entry.connected ? "connected" : "not configured");
      item.append(el("span", "name", entry.name), statusBadge(word.replace(/ /g, "_")));
      item.lastChild.textContent = word;
      if (entry.lastError) item.appendChild(el("span", "error-text", entry.lastError));
      return item;
    });
    for (const entry of used) {
      const item = el("li");
      item.dataset.channel = entry.name;
      item.append(el("span", "name", `#${entry.name}`),
        el("span", "muted", `${entry.messages || 0} messages · ${entry.subscribers || 0} ` +
          "subscribers"));
      items.push(item);
    }
    list.replaceChildren(...items);
  }

  function renderRate() {
    const svg = $("rate-chart");
    const rate = state.rate;
    if (!rate) {
      svg.replaceChildren();
      $("rate-total").textContent = "";
      return;
    }
    advanceRate(Date.now());
    const counts = rate.counts;
    const peak = Math.max(1, ...counts);
    const width = 240 / counts.length;
    const bars = counts.map((count, index) => {
      const bar = document.createElementNS(SVG_NS, "rect");
      const height = count ? Math.max(2, (count / peak) * 46) : 0;
      bar.setAttribute("x", String(index * width + 0.5));
      bar.setAttribute("y", String(48 - height));
      bar.setAttribute("width", String(Math.max(1, width - 1)));
      bar.setAttribute("height", String(height));
      bar.setAttribute("class", "bar");
      const title = document.createElementNS(SVG_NS, "title");
      title.textContent = `${count} message${count === 1 ? "" : "s"}, ` +
        `${counts.length - index - 1} min ago`;
      bar.appendChild(title);
      return bar;
    });
    svg.replaceChildren(...bars);
    const total = counts.reduce((sum, count) => sum + count, 0);
    $("rate-total").textContent = `(${total}, peak ${Math.max(...counts)}/min)`;
  }

  function sortedAgents() {
    return [...state.agents.values()].sort((a, b) =>
      (STATUS_RANK[a.status] ?? 9) - (STATUS_RANK[b.status] ?? 9) || a.id.localeCompare(b.id));
  }

  function agentRow(agent) {
    const row = el("tr", agent.status === "offline" ? "is-offline" : "");
    row.dataset.agent = agent.id;
    const status = el("td");
    status.dataset.label = "status";
    status.appendChild(statusBadge(agent.status));
    const seen = cell(ago(agent.lastSeenAt), "", "last seen");
    seen.title = agent.lastSeenAt || "";
    row.append(cell(agent.id, "id", "id"), status, cell(agent.label, "", "label"),
      cell(agent.machine, "", "machine"), cell(agent.project, "", "project"),
      chips(agent.tags, "tags"), chips(agent.capabilities, "capabilities"), seen);
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
    item.appendChild(messageHead(message));
    if (message.replyTo) item.firstChild.appendChild(el("span", "muted", `re #${message.replyTo}`));
    if (message.subject) item.appendChild(el("div", "subject", message.subject));
    item.appendChild(el("div", "body", preview(message.body, 280)));
    return item;
  }

  function renderMessages() {
    const list = $("messages");
    const all = [...state.messages.values()].sort((a, b) => b.id - a.id);
    const messages = all.filter(passesFilters);
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
    const filtered = messages.length !== all.length ? ` · ${messages.length} shown` : "";
    $("messages-count").textContent = all.length ? `(latest ${all.length}${filtered})` : "";
    $("messages-empty").hidden = messages.length > 0;
    $("messages-empty").textContent = all.length ? "No message matches the filters." :
      "No messages yet.";
  }

  function renderTasks() {
    $("tasks-panel").hidden = !state.optional.tasks;
    if (!state.optional.tasks) return;
    const tasks = [...state.tasks.values()].sort((a, b) => b.id - a.id).slice(0, TABLE_LIMIT);
    $("tasks").tBodies[0].replaceChildren(...tasks.map((task) => {
      const row = el("tr");
      row.dataset.task = String(task.id);
      const title = el("td");
      title.dataset.label = "title";
      title.appendChild(link(task.title, `task-${task.id}`));
      title.title = preview(task.body, 500);
      const status = el("td");
      status.dataset.label = "status";
      status.appendChild(statusBadge(task.status));
      const seen = cell(`${task.occurrenceCount > 1 ? `×${task.occurrenceCount} · ` : ""}` +
        ago(task.lastSeenAt || task.updatedAt), "", "seen");
      row.append(cell(task.id, "", "#"), cell(task.severity, "", "severity"), title,
        cell(task.target, "id", "target"), status, cell(task.claimedBy, "", "claimed by"), seen);
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
      row.dataset.pair = String(pair.id);
      const status = el("td");
      status.dataset.label = "status";
      status.appendChild(statusBadge(pair.status));
      const objective = el("td");
      objective.dataset.label = "objective";
      objective.appendChild(link(preview(pair.objective, 200) || "(conversation)",
        `pair-${pair.id}`));
      row.append(cell(pair.id, "", "#"), cell(pair.initiator, "id", "initiator"),
        cell(pair.partner, "id", "partner"), status, objective);
      return row;
    }));
    $("pairs-count").textContent = pairs.length ? `(${pairs.length})` : "";
    $("pairs-empty").hidden = pairs.length > 0;
  }

  // ------------------------------------------------------------------ boot

  function onFeedClick(event) {
    if (event.target.closest("a")) return; // links navigate themselves
    const item = event.target.closest("li[data-message]");
    if (item) location.hash = `message-${item.dataset.message}`;
  }

  function boot() {
    $("token-form").addEventListener("submit", onTokenSubmit);
    $("compose").addEventListener("submit", onCompose);
    $("forget-token").addEventListener("click", onForgetToken);
    $("messages").addEventListener("click", onFeedClick);
    $("detail-close").addEventListener("click", () => closeDetail(true));
    $("filters").addEventListener("submit", (event) => event.preventDefault());
    for (const id of ["filter-agent", "filter-channel", "filter-text"]) {
      $(id).addEventListener("input", onFilter);
    }
    window.addEventListener("hashchange", openDetailFromHash);
    setInterval(renderHeader, 1000);
    setInterval(() => { if (!$("main").hidden) renderAgents(); }, RELATIVE_TIMES_EVERY_MS);
    setInterval(() => { if (!$("main").hidden) renderRate(); }, RELATIVE_TIMES_EVERY_MS);
    setInterval(() => { if (!$("main").hidden) refreshStats().catch(() => {}); }, STATS_EVERY_MS);
    start(state.token ? null : readBootstrap());
  }

  boot();
})();
