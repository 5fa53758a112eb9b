// axonbus dashboard: plain JS, no build step. Talks to the gateway's REST + SSE routes only
// (so it works on any ASGI server, with or without WebSocket support).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "axonbus-token";
  const MAX_EVENT_ROWS = 500;
  const POLL_MS = 1000;

  // A link such as http://host:8765/?token=… signs the page in: the token is kept like one
  // typed into the form, and taken out of the address bar (and so of history and bookmarks).
  (function tokenFromAddress() {
    const url = new URL(window.location.href);
    const given = url.searchParams.get("token");
    if (given === null) return;
    if (given.trim()) localStorage.setItem(TOKEN_KEY, given.trim());
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  })();

  const state = {
    token: localStorage.getItem(TOKEN_KEY) || "",
    auth: false,
    session: $("session-input").value.trim() || "s1",
    chatFeed: null,
    eventFeed: null,
    paused: false,
    eventCount: 0,
    current: null, // the agent message being streamed
  };

  // -- HTTP helpers -------------------------------------------------------------------------

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (state.token) h["Authorization"] = "Bearer " + state.token;
    return h;
  }

  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = headers(opts.headers);
    const res = await fetch(path, opts);
    if (res.status === 401) needToken();
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) {
      const err = new Error((body && body.error && body.error.message) || res.statusText);
      err.status = res.status;
      err.body = body;
      throw err;
    }
    return body;
  }

  function publish(topic, event) {
    return api("/v1/publish/" + encodeURIComponent(topic), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(event),
    });
  }

  function needToken() {
    $("token-form").hidden = false;
    setConnection("error", "token needed");
  }

  function setConnection(kind, text) {
    const el = $("connection-status");
    el.dataset.state = kind;
    el.textContent = text;
  }

  // -- SSE over fetch (so the Authorization header works) ---------------------------------

  // Opens /v1/events?pattern=..., calls onEvent({id, event, data}) per event, reconnects with
  // Last-Event-ID after an error (the gateway resumes from its log when it has one).
  function openFeed(pattern, onEvent, onDropped, onRefused) {
    const feed = { closed: false, controller: null, lastId: null };
    async function loop() {
      while (!feed.closed) {
        feed.controller = new AbortController();
        try {
          const h = headers({ Accept: "text/event-stream" });
          if (feed.lastId) h["Last-Event-ID"] = feed.lastId;
          const res = await fetch("/v1/events?pattern=" + encodeURIComponent(pattern), {
            headers: h, signal: feed.controller.signal,
          });
          if (res.status === 401) { needToken(); return; }
          if (res.status === 400 || res.status === 403) {
            // not allowed (or not a pattern): retrying would not help
            let text = "HTTP " + res.status;
            try { text = (await res.json()).error.message; } catch (e) { /* keep the status */ }
            if (onRefused) onRefused(text);
            return;
          }
          if (!res.ok) throw new Error("HTTP " + res.status);
          setConnection("connected", "connected");
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let cut;
            while ((cut = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, cut);
              buffer = buffer.slice(cut + 2);
              const msg = parseBlock(block);
              if (!msg) continue;
              if (msg.event === "dropped") { if (onDropped) onDropped(msg.data); continue; }
              if (msg.id) feed.lastId = msg.id;
              onEvent(msg);
            }
          }
        } catch (e) {
          if (feed.closed) return;
          setConnection("error", "reconnecting");
        }
        if (!feed.closed) await sleep(1000);
      }
    }
    feed.close = function () {
      feed.closed = true;
      if (feed.controller) feed.controller.abort();
    };
    loop();
    return feed;
  }

  function parseBlock(block) {
    let id = null, event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") id = value;
      else if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return null;
    try { return { id: id, event: event, data: JSON.parse(data.join("\n")) }; }
    catch (e) { return null; }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // -- chat -----------------------------------------------------------------------------------

  function chatMessage(role, text, extra) {
    const el = document.createElement("div");
    el.className = "msg";
    el.setAttribute("data-testid", "chat-message");
    el.dataset.role = role;
    Object.assign(el.dataset, extra || {});
    const body = document.createElement("span");
    body.className = "text";
    body.setAttribute("data-testid", "chat-text");
    body.textContent = text;
    el.appendChild(body);
    const log = $("chat-log");
    log.appendChild(el);
    log.scrollTop = log.scrollHeight;
    return el;
  }

  function agentMessage(runId) {
    if (state.current && (!runId || state.current.dataset.runId === runId || !state.current.dataset.runId)) {
      if (runId) state.current.dataset.runId = runId;
      return state.current;
    }
    state.current = chatMessage("agent", "", { state: "streaming", runId: runId || "" });
    return state.current;
  }

  function note(el, cls, text) {
    const span = document.createElement("span");
    span.className = cls;
    span.setAttribute("data-testid", cls === "tool" ? "tool-line" : "thinking-line");
    span.textContent = text;
    el.insertBefore(span, el.querySelector(".text"));
  }

  function setStatus(status) {
    const el = $("run-status");
    el.dataset.status = status;
    el.textContent = status;
  }

  function finish(stateName) {
    if (state.current) state.current.dataset.state = stateName;
    state.current = null;
  }

  // the run status follows the same rules as the server's reducer (axonbus.agent.reduce)
  const ACTIVE = ["thinking", "acting", "interrupted"];
  const TERMINAL = ["done", "error", "cancelled"];
  const status = () => $("run-status").dataset.status;
  const busy = (kind) => (status() === "interrupted" ? "interrupted" : kind);

  function onChatEvent(msg) {
    const rec = msg.data;
    const ev = rec.event || {};
    const kind = rec.topic.split(".").pop();
    const runId = ev.run_id || "";
    switch (kind) {
      case "user_input":
        chatMessage("user", ev.text || "", { id: rec.id });
        if (!ACTIVE.includes(status())) {
          finish("done");
          setStatus("thinking");
        }
        break;
      case "thinking":
        if (ev.text) {
          const el = agentMessage(runId);
          let t = el.querySelector(".thinking");
          if (!t) { note(el, "thinking", ""); t = el.querySelector(".thinking"); }
          t.textContent += ev.text;
        }
        if (!TERMINAL.includes(status())) setStatus(busy("thinking"));
        break;
      case "token": {
        const el = agentMessage(runId);
        el.querySelector(".text").textContent += ev.text || "";
        $("chat-log").scrollTop = $("chat-log").scrollHeight;
        if (!TERMINAL.includes(status())) setStatus(busy("thinking"));
        break;
      }
      case "tool_call":
        note(agentMessage(runId), "tool", "→ " + ev.tool + "(" + JSON.stringify(ev.args || {}) + ")");
        if (!TERMINAL.includes(status())) setStatus(busy("acting"));
        break;
      case "tool_result":
        note(agentMessage(runId), "tool", "← " + (ev.error ? "error: " + ev.error : JSON.stringify(ev.result)));
        break;
      case "interrupt":
        if (status() === "thinking" || status() === "acting") setStatus("interrupted");
        chatMessage("system", "interrupt requested" + (ev.reason ? ": " + ev.reason : ""));
        break;
      case "resume":
        if (status() === "interrupted") setStatus("thinking");
        chatMessage("system", "resumed" + (ev.instruction ? ": " + ev.instruction : ""));
        break;
      case "cancel":
        if (ACTIVE.includes(status())) setStatus("cancelled");
        chatMessage("system", "cancel requested" + (ev.reason ? ": " + ev.reason : ""));
        break;
      case "done": {
        const el = state.current;
        if (el && !el.querySelector(".text").textContent && ev.result) {
          el.querySelector(".text").textContent = ev.result;
        } else if (!el && ev.result && !ev.cancelled) {
          chatMessage("agent", ev.result, { state: "done", runId: runId });
        }
        const cancelled = ev.cancelled || status() === "cancelled";
        finish(cancelled ? "cancelled" : "done");
        if (status() !== "error") setStatus(cancelled ? "cancelled" : "done");
        break;
      }
      case "error":
        chatMessage("system", "error: " + (ev.message || ""));
        finish("error");
        setStatus("error");
        break;
      default:
        break;
    }
  }

  function connectChat() {
    if (state.chatFeed) state.chatFeed.close();
    state.current = null;
    $("chat-log").replaceChildren();
    setStatus("idle");
    state.chatFeed = openFeed("agent." + state.session + ".>", onChatEvent, null, (text) => {
      $("chat-error").textContent = text;
    });
  }

  async function sendChat(ev) {
    ev.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    $("chat-error").textContent = "";
    // the message shows when it comes back on the session's stream, like everyone else's
    try {
      await publish("agent." + state.session + ".user_input", { text: text });
    } catch (e) {
      $("chat-error").textContent = "send failed: " + e.message;
      input.value = text;
    }
  }

  async function control(kind, body) {
    $("chat-error").textContent = "";
    try {
      await publish("agent." + state.session + "." + kind, body);
    } catch (e) {
      $("chat-error").textContent = kind + " failed: " + e.message;
    }
  }

  // -- live events ----------------------------------------------------------------------------

  function onStreamEvent(msg) {
    state.eventCount += 1;
    $("event-count").textContent = String(state.eventCount);
    if (state.paused) return;
    const rec = msg.data;
    const li = document.createElement("li");
    li.setAttribute("data-testid", "event-row");
    li.dataset.topic = rec.topic;
    li.dataset.id = rec.id;
    if (rec.offset !== undefined) li.dataset.offset = String(rec.offset);
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = new Date(rec.timestamp * 1000).toLocaleTimeString();
    const topic = document.createElement("span");
    topic.className = "topic";
    topic.textContent = rec.topic;
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = JSON.stringify(rec.event);
    li.append(time);
    if (rec.offset !== undefined) {
      const off = document.createElement("span");
      off.className = "offset";
      off.textContent = "#" + rec.offset;
      li.append(off);
    }
    li.append(topic, body);
    li.title = JSON.stringify(rec, null, 2);
    const list = $("event-stream");
    list.prepend(li);
    while (list.children.length > MAX_EVENT_ROWS) list.removeChild(list.lastChild);
  }

  function connectEvents() {
    if (state.eventFeed) state.eventFeed.close();
    const pattern = $("event-filter").value.trim() || ">";
    $("event-stream").replaceChildren();
    state.eventCount = 0;
    $("event-count").textContent = "0";
    $("event-dropped").textContent = "";
    $("event-error").textContent = "";
    state.eventFeed = openFeed(pattern, onStreamEvent, (info) => {
      $("event-dropped").textContent = info.total + " dropped (client too slow)";
    }, (text) => {
      $("event-error").textContent = text;
    });
  }

  // -- polled panels --------------------------------------------------------------------------

  function cell(tr, text, cls, field) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    if (field) td.dataset.field = field;
    tr.appendChild(td);
    return td;
  }

  function renderStats(stats) {
    const b = stats.bus;
    $("bus-info").textContent = b.name + " · " + b.url + (b.log ? " · log" : "") + " · " + b.state;
    const body = $("subscriptions-body");
    body.replaceChildren();
    for (const s of stats.subscriptions) {
      const tr = document.createElement("tr");
      tr.setAttribute("data-testid", "subscription-row");
      tr.dataset.name = s.name;
      cell(tr, s.name, null, "name");
      cell(tr, s.pattern, null, "pattern");
      cell(tr, s.queued + "/" + s.maxsize, "num", "queued");
      cell(tr, String(s.delivered), "num", "delivered");
      cell(tr, String(s.failed), s.failed ? "num bad" : "num", "failed");
      cell(tr, String(s.dropped), s.dropped ? "num bad" : "num", "dropped");
      body.appendChild(tr);
    }
    const clients = $("clients-body");
    clients.replaceChildren();
    for (const c of stats.clients || []) {
      const tr = document.createElement("tr");
      tr.setAttribute("data-testid", "client-row");
      cell(tr, c.client, null, "client");
      cell(tr, c.pattern, null, "pattern");
      cell(tr, String(c.pending), "num", "pending");
      cell(tr, String(c.dropped), c.dropped ? "num bad" : "num", "dropped");
      clients.appendChild(tr);
    }
  }

  function renderSessions(data) {
    const body = $("sessions-body");
    body.replaceChildren();
    for (const s of data.sessions) {
      const tr = document.createElement("tr");
      tr.setAttribute("data-testid", "session-row");
      tr.dataset.session = s.session_id;
      tr.dataset.status = s.status;
      cell(tr, s.session_id, null, "session");
      cell(tr, s.status, null, "status");
      cell(tr, String(s.step), "num", "step");
      cell(tr, s.input == null ? "" : String(s.input), null, "input");
      const text = s.result || s.text || "";
      cell(tr, clip(text, 80), null, "text").title = text;
      tr.addEventListener("click", () => switchSession(s.session_id));
      body.appendChild(tr);
      if (s.session_id === state.session && !state.current && s.status !== "idle") {
        setStatus(s.status);
      }
    }
  }

  function renderChannels(data) {
    const list = $("channels-list");
    list.replaceChildren();
    for (const c of data.channels) {
      const li = document.createElement("li");
      li.setAttribute("data-testid", "channel-row");
      li.dataset.channel = c.channel_type;
      li.dataset.state = c.state;
      li.textContent = c.channel_type + " (" + c.kind + ") — " + c.state +
        (c.restarts ? ", " + c.restarts + " restarts" : "") + (c.last_error ? ", " + c.last_error : "");
      list.appendChild(li);
    }
    $("channels-note").textContent = data.channels.length ? "" : "no channels attached";
  }

  const absent = new Set();  // optional endpoints this gateway does not serve

  // at most n characters, cut at a word boundary (a single overlong word is cut), with an ellipsis
  function clip(text, n) {
    if (text.length <= n) return text;
    const cut = text.slice(0, n);
    if (/\s/.test(text[n])) return cut.trimEnd() + "…";
    const space = cut.search(/\s\S*$/);
    return (space > n / 2 ? cut.slice(0, space) : cut).trimEnd() + "…";
  }

  async function poll() {
    for (;;) {
      try {
        renderStats(await api("/v1/stats"));
        // a 404 means the gateway was built without that manager: ask once, not every poll
        if (!absent.has("sessions")) {
          try { renderSessions(await api("/v1/sessions")); $("sessions-note").textContent = ""; }
          catch (e) { if (e.status === 404) { absent.add("sessions"); $("sessions-note").textContent = "no state manager"; } else throw e; }
        }
        if (!absent.has("channels")) {
          try { renderChannels(await api("/v1/channels")); }
          catch (e) { if (e.status === 404) { absent.add("channels"); $("channels-note").textContent = "no channel manager"; } else throw e; }
        }
      } catch (e) {
        if (e.status !== 401) setConnection("error", "gateway unreachable");
      }
      await sleep(POLL_MS);
    }
  }

  function switchSession(sid) {
    if (!sid || sid === state.session) return;
    state.session = sid;
    $("session-input").value = sid;
    connectChat();
  }

  // -- start ----------------------------------------------------------------------------------

  async function start() {
    $("chat-form").addEventListener("submit", sendChat);
    $("interrupt-button").addEventListener("click", () => control("interrupt", { reason: "from the dashboard" }));
    $("resume-button").addEventListener("click", () => control("resume", { instruction: "" }));
    $("cancel-button").addEventListener("click", () => control("cancel", { reason: "from the dashboard" }));
    $("session-input").addEventListener("change", (e) => switchSession(e.target.value.trim()));
    $("event-filter-form").addEventListener("submit", (e) => { e.preventDefault(); connectEvents(); });
    $("event-pause").addEventListener("click", (e) => {
      state.paused = !state.paused;
      e.target.setAttribute("aria-pressed", String(state.paused));
      e.target.textContent = state.paused ? "Resume stream" : "Pause";
    });
    $("event-clear").addEventListener("click", () => $("event-stream").replaceChildren());
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      state.token = $("token-input").value.trim();
      localStorage.setItem(TOKEN_KEY, state.token);
      $("token-form").hidden = true;
      connectChat();
      connectEvents();
    });
    try {
      const health = await (await fetch("/healthz")).json();
      state.auth = !!health.auth;
      if (state.auth && !state.token) needToken();
    } catch (e) {
      setConnection("error", "gateway unreachable");
    }
    connectChat();
    connectEvents();
    poll();
    document.body.dataset.ready = "true";
  }

  start();
})();
