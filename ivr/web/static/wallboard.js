/*
 * The supervisors' wallboard (/wallboard): one row per queue and a totals row, filled from the
 * board frames of /wallboard/ws (protocol: ivr/web/wallboard.py; what each figure means:
 * ivr/routing/wallboard.py). wallboard.html is the static shell.
 *
 * Plain JavaScript, no framework, nothing fetched from elsewhere, no inline handlers (strict
 * CSP); every text from the server is set with textContent. A dropped socket is opened again
 * after 1, 2, 5, then every 10 seconds; a session that has ended sends the page to sign in.
 *
 * For tests: table#board has data-connected ("true"/"false") and data-updated (the server time
 * of the last board shown); each queue is tbody tr.queue[data-queue] and the totals tfoot
 * tr.totals, with cells .waiting, .longest, .available, .busy, .wrap-up, .break, .offline,
 * .offered, .answered, .service-level, .abandoned, .abandon-rate, .overflowed, .aht, .asa;
 * coloured cells carry data-level (good, warn, bad).
 */
(() => {
  "use strict";

  const WS_PATH = "/wallboard/ws";
  const BOARD_PATH = "/wallboard/api/board"; // 401 here: the session is gone
  const LOGIN_PATH = "/agent/login";
  const RECONNECT_DELAYS_MS = [1000, 2000, 5000, 10000]; // the last one repeats
  const ABANDON_WARN = 0.05; // abandon rates above these are amber, then red
  const ABANDON_BAD = 0.1;
  const SERVICE_LEVEL_MARGIN = 0.1; // below the target by up to this: amber; more: red
  const NONE = "–";
  // The row's cells, in the order of the table's columns.
  const CELLS = ["name", "waiting", "longest", "available", "busy", "wrap-up", "break", "offline",
    "offered", "answered", "service-level", "abandoned", "abandon-rate", "overflowed", "aht", "asa"];

  const state = { socket: null, attempt: 0, timer: null, leaving: false };
  const $ = (id) => document.getElementById(id);
  const ui = {
    board: $("board"),
    queues: $("queues"),
    totals: document.querySelector("#board tr.totals"),
    connection: $("connection"),
    day: $("day"),
    updated: $("updated"),
    empty: $("empty"),
    slHead: $("service-level-head"),
  };

  // ---- formatting ------------------------------------------------------------------------------

  function duration(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return NONE;
    const whole = Math.max(0, Math.round(seconds));
    const h = Math.floor(whole / 3600);
    const m = Math.floor((whole % 3600) / 60);
    const s = String(whole % 60).padStart(2, "0");
    return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function percent(share) {
    return typeof share === "number" && Number.isFinite(share) ? `${Math.round(share * 100)}%` : NONE;
  }

  function count(value) {
    return typeof value === "number" && Number.isFinite(value) ? String(value) : NONE;
  }

  function clockTime(epochSeconds) {
    return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // ---- levels (colours) ------------------------------------------------------------------------

  function serviceLevel(share, target) {
    if (typeof share !== "number") return "";
    if (share >= target) return "good";
    return share >= target - SERVICE_LEVEL_MARGIN ? "warn" : "bad";
  }

  function longestWait(seconds, threshold) {
    if (!seconds) return "";
    if (seconds <= threshold) return "good";
    return seconds <= 3 * threshold ? "warn" : "bad";
  }

  function abandonRate(share) {
    if (typeof share !== "number") return "";
    if (share > ABANDON_BAD) return "bad";
    return share > ABANDON_WARN ? "warn" : "good";
  }

  // ---- rendering -------------------------------------------------------------------------------

  function newRow(queue) {
    const row = document.createElement("tr");
    row.className = "queue";
    row.dataset.queue = queue;
    for (const name of CELLS) {
      const cell = document.createElement(name === "name" ? "th" : "td");
      cell.className = name;
      if (name === "name") cell.scope = "row";
      row.append(cell);
    }
    return row;
  }

  function set(row, name, text, level) {
    const cell = row.querySelector(`.${name}`);
    if (!cell) return;
    if (cell.textContent !== text) cell.textContent = text;
    if (level === undefined) return;
    if (level) cell.dataset.level = level;
    else delete cell.dataset.level;
  }

  function fill(row, figures, frame) {
    const agents = figures.agents || {};
    const threshold = frame.service_level_seconds;
    set(row, "waiting", count(figures.waiting));
    row.querySelector(".waiting").classList.toggle("zero", figures.waiting === 0);
    set(row, "longest", figures.waiting ? duration(figures.longest_wait) : NONE,
      longestWait(figures.longest_wait, threshold));
    set(row, "available", count(agents.available));
    set(row, "busy", count(agents.busy));
    set(row, "wrap-up", count(agents.wrap_up));
    set(row, "break", count(agents.break));
    set(row, "offline", count(agents.offline));
    set(row, "offered", count(figures.offered));
    set(row, "answered", count(figures.answered));
    set(row, "service-level", percent(figures.service_level),
      serviceLevel(figures.service_level, frame.service_level_target));
    set(row, "abandoned", count(figures.abandoned));
    set(row, "abandon-rate", percent(figures.abandon_rate), abandonRate(figures.abandon_rate));
    set(row, "overflowed", count(figures.overflowed));
    set(row, "aht", duration(figures.aht));
    set(row, "asa", duration(figures.asa));
  }

  function render(frame) {
    if (!frame || !Array.isArray(frame.queues) || typeof frame.totals !== "object") return;
    const rows = new Map();
    for (const row of ui.queues.querySelectorAll("tr.queue")) rows.set(row.dataset.queue, row);
    let previous = null;
    for (const figures of frame.queues) {
      const name = String(figures.queue);
      let row = rows.get(name);
      rows.delete(name);
      if (!row) {
        row = newRow(name);
        set(row, "name", name);
      }
      // In the server's order; moved only when out of place, so nothing flickers.
      const expected = previous ? previous.nextElementSibling : ui.queues.firstElementChild;
      if (row !== expected) ui.queues.insertBefore(row, expected);
      fill(row, figures, frame);
      previous = row;
    }
    for (const gone of rows.values()) gone.remove();
    fill(ui.totals, frame.totals, frame);
    ui.empty.hidden = frame.queues.length > 0;
    ui.slHead.textContent = `Service level (${count(frame.service_level_seconds)} s)`;
    if (typeof frame.since === "number") ui.day.textContent = `Today, since ${clockTime(frame.since)}`;
    if (typeof frame.at === "number") {
      ui.board.dataset.updated = String(frame.at);
      ui.updated.textContent = `Updated ${new Date(frame.at * 1000).toLocaleTimeString()}`;
    }
  }

  // ---- the websocket ---------------------------------------------------------------------------

  function connected(yes) {
    ui.board.dataset.connected = String(yes);
    ui.connection.hidden = yes;
    if (!yes) ui.connection.textContent = state.attempt > 0 ? "Disconnected — reconnecting…" : "Connecting…";
  }

  function connect() {
    clearTimeout(state.timer);
    state.timer = null;
    if (state.socket) return;
    const url = new URL(WS_PATH, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(url.href);
    } catch {
      scheduleReconnect();
      return;
    }
    state.socket = ws;
    ws.addEventListener("open", () => {
      if (state.socket === ws) connected(true);
    });
    ws.addEventListener("message", (event) => {
      if (state.socket !== ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // not a frame of ours
      }
      if (frame && frame.type === "board") {
        state.attempt = 0;
        render(frame);
      }
    });
    ws.addEventListener("close", () => {
      if (state.socket !== ws) return;
      state.socket = null;
      connected(false);
      if (!state.leaving) afterClose();
    });
  }

  /** A browser never sees the status of a refused upgrade: ask whether the session still holds
   * (and show the board it gives meanwhile). */
  async function afterClose() {
    try {
      const answer = await fetch(BOARD_PATH, { credentials: "same-origin", cache: "no-store" });
      if (answer.status === 401) {
        state.leaving = true;
        location.assign(LOGIN_PATH);
        return;
      }
      if (answer.ok) render(await answer.json());
    } catch {
      // The server is unreachable: keep trying the socket.
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (state.leaving || state.timer) return;
    const delay = RECONNECT_DELAYS_MS[Math.min(state.attempt, RECONNECT_DELAYS_MS.length - 1)];
    state.attempt += 1;
    connected(false);
    state.timer = setTimeout(() => {
      state.timer = null;
      connect();
    }, delay);
  }

  window.addEventListener("pagehide", () => {
    state.leaving = true;
  });
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    state.leaving = false; // back from the browser's page cache: live again
    connect();
  });
  connected(false);
  connect();
})();
