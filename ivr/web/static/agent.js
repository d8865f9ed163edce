/*
 * The agent desktop (/agent): presence, offers, the conversations the agent holds, their context
 * cards and transcripts, replies, ending and wrap-up. agent.html is the static shell; everything
 * live comes over ONE websocket, /agent/ws of this origin (protocol: ivr/web/agent_desktop.py).
 *
 * Plain JavaScript with standard APIs only, no build step, no framework, nothing fetched from
 * anywhere else, no inline handlers (strict CSP). Every string from the server is shown with
 * textContent, never parsed as HTML. The card holds no secret and we show only what it holds.
 *
 * For tests: #desk carries data-presence (available, break, wrap_up, offline) and data-connected
 * ("true"/"false"); #offer (data-conversation) with #offer-accept and #offer-decline; each held
 * conversation is .conversation[data-conversation] holding .card-customer, .card-verified,
 * .card-intent, .transcript of .turn[data-role][data-channel], textarea.reply, button.send,
 * button.end and form.wrap-up (select.code or input.code, textarea.notes, button.submit-wrap-up),
 * button.transfer opening form.transfer-form (select.transfer-to, textarea.transfer-note,
 * button.submit-transfer);
 * its tab is .conversation-tab[data-conversation]. A call's conversation has .softphone
 * (data-state: starting, connecting, connected, ended, failed; elsewhere: in another tab) with
 * button.mute and button.reconnect-audio ("Take the audio here" when elsewhere); the softphone
 * itself is agent-softphone.js. window.agentDesk has the read-only state (presence), socket,
 * connected, conversations (ids), selected, select(id), and softphone(id) (the call's Softphone
 * or null). A call that goes to the agent's SIP phone (card.audio "phone") opens no microphone:
 * its .softphone has data-state ringing or transferred ("On your phone").
 */
(() => {
  "use strict";

  if (window.agentDesk) return; // loaded twice: the first copy serves

  const WS_PATH = "/agent/ws";
  const LOGIN_PATH = "/agent/login";
  const ME_PATH = "/agent/api/me"; // 401 here: the session is gone
  const TARGETS_PATH = "/agent/api/transfer-targets";
  const RECONNECT_DELAYS_MS = [1000, 2000, 5000, 10000]; // the last one repeats
  const MAX_TEXT_CHARS = 4000; // as the server's MAX_TEXT_CHARS
  const NOTE_MS = 8000; // how long the "offer gone" note stays
  const MAX_NOTICES = 5;
  const PRESENCE_LABELS = { available: "Available", break: "Break", offline: "Offline", wrap_up: "Wrap-up" };
  const ROLE_LABELS = { customer: "Customer", bot: "Bot", agent: "Agent", system: "System" };
  const CHANNEL_ICONS = { chat: "💬", sip: "📞", webrtc: "📞", sms: "✉️" };
  const VOICE_CHANNELS = new Set(["sip", "webrtc"]);
  const OFFER_GONE = {
    declined: "Offer declined.",
    timeout: "The offer timed out.",
    abandoned: "The customer left before the offer was answered.",
  };

  const desk = {
    socket: null,
    connected: false,
    everOpened: false, // this socket opened: a close is a drop, not a refusal
    attempt: 0, // reconnections since the last hello
    reconnectTimer: null,
    leaving: false, // signing out or navigating away: no reconnecting
    agent: null,
    presence: "offline",
    presenceReason: "",
    codes: {},
    iceServers: [],
    offers: new Map(), // conversation id -> {id, frame, deadline, total, received, pending}
    conversations: new Map(), // conversation id -> see newConversation()
    selected: null,
    pendingSend: null, // {id, text}: a reply sent, not yet echoed (restored on an error)
    ticker: null,
    noteTimer: null,
  };
  let viewCounter = 0; // element ids come from here, never from server data

  const $ = (id) => document.getElementById(id);
  const ui = {
    root: $("desk"),
    agentName: $("agent-name"),
    presence: $("presence"),
    presenceReason: $("presence-reason"),
    logout: $("logout"),
    connection: $("connection"),
    notices: $("notices"),
    offerNote: $("offer-note"),
    offer: $("offer"),
    offerQueue: $("offer-queue"),
    offerWaited: $("offer-waited"),
    offerCountdown: $("offer-countdown"),
    offerProgress: $("offer-progress"),
    offerAccept: $("offer-accept"),
    offerDecline: $("offer-decline"),
    offerBody: $("offer-body"),
    tabs: $("conversation-tabs"),
    panels: $("conversations"),
    empty: $("no-conversations"),
    politely: $("announce-polite"),
    urgently: $("announce-urgent"),
  };

  ui.presence.addEventListener("change", onPresenceChosen);
  ui.offerAccept.addEventListener("click", () => answerOffer("accept"));
  ui.offerDecline.addEventListener("click", () => answerOffer("decline"));
  ui.tabs.addEventListener("keydown", onTabKey);
  ui.logout.addEventListener("submit", () => { desk.leaving = true; });
  window.addEventListener("pagehide", () => { desk.leaving = true; });
  document.addEventListener("visibilitychange", () => {
    const conv = desk.conversations.get(desk.selected);
    if (!document.hidden && conv && conv.unread) {
      conv.unread = 0;
      renderConversation(conv);
    }
  });
  window.addEventListener("pageshow", (event) => {
    // Back from the bfcache: the old socket is gone.
    if (event.persisted) { desk.leaving = false; connect(); }
  });

  window.agentDesk = Object.freeze({
    get state() { return desk.presence; },
    get socket() { return desk.socket; },
    get connected() { return desk.connected; },
    get conversations() { return [...desk.conversations.keys()]; },
    get selected() { return desk.selected; },
    select: (id) => select(id),
    softphone: (id) => { const conv = desk.conversations.get(id); return conv ? conv.phone : null; },
  });

  renderPresence();
  renderConnection();
  renderWork();
  connect();

  // ---- small helpers ---------------------------------------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
    return node;
  }

  const str = (value) => (value === null || value === undefined ? "" : String(value));
  const isObject = (value) => value !== null && typeof value === "object";

  function duration(seconds) {
    const s = Math.max(0, Math.round(Number(seconds) || 0));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  }

  function toDate(ts) {
    const n = Number(ts);
    return Number.isFinite(n) && n > 0 ? new Date(n * 1000) : null;
  }

  /** A time of day, with the date too when it is not today. */
  function when(ts) {
    const date = toDate(ts);
    if (!date) return "";
    const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (date.toDateString() === new Date().toDateString()) return time;
    return `${date.toLocaleDateString([], { day: "numeric", month: "short", year: "numeric" })}, ${time}`;
  }

  function timeEl(ts, cls) {
    const date = toDate(ts);
    if (!date) return null;
    return el("time", { class: cls, datetime: date.toISOString(), title: date.toLocaleString(),
      text: when(ts) });
  }

  function dateEl(ts) {
    const date = toDate(ts);
    if (!date) return null;
    return el("time", { datetime: date.toISOString(), title: date.toLocaleString(),
      text: date.toLocaleDateString([], { day: "numeric", month: "short", year: "numeric" }) });
  }

  function channelIcon(channel) {
    const name = str(channel) || "unknown";
    return el("span", { class: "channel-icon", role: "img", "aria-label": name, title: name,
      text: CHANNEL_ICONS[name] || "•" });
  }

  function customerName(card) {
    const c = (card && card.customer) || {};
    return str(c.name) || (c.id ? `Customer ${c.id}` : "Unknown customer");
  }

  function announce(text, urgent = false) {
    const region = urgent ? ui.urgently : ui.politely;
    region.textContent = "";
    // A fresh text node after a tick: screen readers announce a repeated message again.
    setTimeout(() => { region.textContent = text; }, 50);
  }

  function updateTitle() {
    let unread = 0;
    for (const conv of desk.conversations.values()) unread += conv.unread;
    const offer = desk.offers.size ? "● Offer — " : "";
    document.title = `${offer}${unread ? `(${unread}) ` : ""}Agent desktop`;
  }

  // ---- notices -----------------------------------------------------------------------------------

  function notice(text) {
    const item = el("div", { class: "notice", role: "alert" },
      el("p", { text }),
      el("button", { type: "button", class: "dismiss", "aria-label": "Dismiss", text: "×",
        onclick: () => item.remove() }));
    ui.notices.append(item);
    while (ui.notices.children.length > MAX_NOTICES) ui.notices.firstElementChild.remove();
  }

  function offerNote(text) {
    ui.offerNote.textContent = text;
    clearTimeout(desk.noteTimer);
    desk.noteTimer = setTimeout(() => { ui.offerNote.textContent = ""; }, NOTE_MS);
  }

  // ---- the websocket -----------------------------------------------------------------------------

  function connect() {
    clearTimeout(desk.reconnectTimer);
    desk.reconnectTimer = null;
    if (desk.socket) return;
    const url = new URL(WS_PATH, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(url.href);
    } catch (error) {
      scheduleReconnect();
      return;
    }
    desk.socket = ws;
    desk.everOpened = false;
    ws.addEventListener("open", () => {
      if (desk.socket !== ws) return;
      desk.everOpened = true;
      desk.connected = true;
      renderConnection();
      renderPresence();
    });
    ws.addEventListener("message", (event) => {
      if (desk.socket !== ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // not a frame of ours
      }
      if (isObject(frame) && typeof frame.type === "string") onFrame(frame);
    });
    ws.addEventListener("close", () => {
      if (desk.socket !== ws) return;
      desk.socket = null;
      desk.connected = false;
      // Offers die with the socket (the server withdraws them); the held conversations stay and
      // come back with the next hello.
      desk.offers.clear();
      showOffer();
      renderConnection();
      renderPresence();
      renderAllConversations();
      if (!desk.leaving) afterClose();
    });
  }

  /** A browser never sees the status of a refused upgrade: ask whether the session still holds. */
  async function afterClose() {
    try {
      const answer = await fetch(ME_PATH, { credentials: "same-origin", cache: "no-store" });
      if (answer.status === 401) {
        desk.leaving = true;
        location.assign(LOGIN_PATH);
        return;
      }
    } catch {
      // The server is unreachable: keep trying the socket.
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (desk.leaving || desk.reconnectTimer) return;
    const delay = RECONNECT_DELAYS_MS[Math.min(desk.attempt, RECONNECT_DELAYS_MS.length - 1)];
    desk.attempt += 1;
    desk.reconnectTimer = setTimeout(() => {
      desk.reconnectTimer = null;
      connect();
    }, delay);
  }

  function send(frame) {
    if (desk.socket && desk.socket.readyState === WebSocket.OPEN) {
      desk.socket.send(JSON.stringify(frame));
      return true;
    }
    notice("Not connected to the server: nothing was sent. Try again once reconnected.");
    return false;
  }

  function renderConnection() {
    ui.root.dataset.connected = String(desk.connected);
    if (desk.connected) {
      ui.connection.hidden = true;
    } else {
      ui.connection.hidden = false;
      ui.connection.textContent = desk.everOpened || desk.attempt > 0
        ? "Disconnected — reconnecting…" : "Connecting…";
    }
  }

  // ---- frames from the server --------------------------------------------------------------------

  function onFrame(frame) {
    switch (frame.type) {
      case "hello": onHello(frame); break;
      case "presence": onPresence(frame); break;
      case "offer": onOffer(frame); break;
      case "offer_gone": onOfferGone(frame); break;
      case "assigned": onAssigned(frame); break;
      case "message": onMessage(frame); break;
      case "customer_left": onCustomerLeft(frame); break;
      case "ended": onEnded(frame); break;
      case "wrapped_up": onWrappedUp(frame); break;
      case "transferred": onTransferred(frame); break;
      case "audio_answer": onAudioAnswer(frame); break;
      case "audio": onAudio(frame); break;
      case "phone": onPhone(frame); break;
      case "error": onError(frame); break;
      default: break; // a newer server's frame: ignore it rather than break
    }
  }

  function onHello(frame) {
    desk.attempt = 0;
    desk.agent = isObject(frame.agent) ? frame.agent : {};
    ui.agentName.textContent = str(desk.agent.display_name) || str(desk.agent.username) || "Agent";
    desk.codes = isObject(frame.codes) ? frame.codes : {};
    desk.iceServers = Array.isArray(frame.ice_servers) ? frame.ice_servers : [];
    desk.presence = str(frame.presence) || "offline";
    desk.presenceReason = "";
    renderPresence();
    // The held conversations as the server has them now: drop what is gone, keep drafts of the rest.
    const cards = Array.isArray(frame.assigned) ? frame.assigned.filter(isObject) : [];
    const ids = new Set(cards.map((card) => str(card.conversation_id)));
    for (const id of [...desk.conversations.keys()]) if (!ids.has(id)) removeConversation(id);
    for (const card of cards) upsertConversation(card);
    if (!desk.selected || !desk.conversations.has(desk.selected)) {
      select(desk.conversations.keys().next().value || null);
    }
    renderAllConversations();
  }

  function onPresence(frame) {
    desk.presence = str(frame.state) || desk.presence;
    desk.presenceReason = str(frame.reason);
    renderPresence();
    if (desk.presenceReason) {
      announce(`Your status is now ${presenceLabel(desk.presence)}: ${desk.presenceReason}.`);
    }
  }

  function onOffer(frame) {
    const id = str(frame.conversation_id);
    if (!id) return;
    const total = Math.max(0, Number(frame.expires_in) || 0);
    const now = performance.now();
    desk.offers.set(id, {
      id, frame, card: isObject(frame.card) ? frame.card : {},
      received: now, deadline: now + total * 1000, total, pending: false,
    });
    showOffer();
    announce(`New conversation offered from queue ${str(frame.queue)}: ` +
      `${customerName(frame.card)}. Accept or decline.`, true);
  }

  function onOfferGone(frame) {
    const id = str(frame.conversation_id);
    if (!desk.offers.delete(id)) return;
    const text = OFFER_GONE[frame.reason] || "The offer was withdrawn.";
    offerNote(text);
    announce(text);
    showOffer();
  }

  function onAssigned(frame) {
    if (!isObject(frame.card)) return;
    const id = str(frame.card.conversation_id);
    const offer = desk.offers.get(id);
    desk.offers.delete(id); // accepted: the offer is now this conversation
    showOffer();
    // Accepted in this tab: its softphone takes the call (another tab of the agent's does not).
    upsertConversation(frame.card, offer && offer.pending ? "take" : "defer");
    // Accepted here (or nothing else open): show it. Accepted in another tab of this agent's:
    // it joins the list without pulling the agent away from what they are typing.
    if ((offer && offer.pending) || !desk.selected) select(id);
    announce(`You are now with ${customerName(frame.card)}.`);
  }

  function onMessage(frame) {
    const conv = desk.conversations.get(str(frame.conversation_id));
    if (!conv) return;
    const turn = { ts: frame.ts, channel: frame.channel, role: frame.role, text: frame.text, meta: {} };
    if (!Array.isArray(conv.card.transcript)) conv.card.transcript = [];
    conv.card.transcript.push(turn);
    if (frame.channel) conv.channel = str(frame.channel);
    appendTurn(conv.view.transcript, turn);
    if (frame.role === "agent" && desk.pendingSend && desk.pendingSend.id === conv.id) {
      desk.pendingSend = null;
    }
    if (frame.role === "customer") {
      if (desk.selected !== conv.id || document.hidden) conv.unread += 1;
      if (desk.selected !== conv.id) announce(`New message from ${customerName(conv.card)}.`);
    }
    renderConversation(conv);
  }

  function onTransferred(frame) {
    const name = dropConversation(str(frame.conversation_id));
    if (name !== null) announce(`${name}: transferred to ${str(frame.to)}.`);
  }

  /** The conversation leaves this desk (wrapped up, transferred): the customer's name, or null. */
  function dropConversation(id) {
    const conv = desk.conversations.get(id);
    if (!conv) return null;
    const name = customerName(conv.card);
    const next = neighbour(id);
    removeConversation(id);
    if (desk.selected === id || !desk.selected) select(next);
    renderWork();
    return name;
  }

  function onAudioAnswer(frame) {
    const conv = desk.conversations.get(str(frame.conversation_id));
    if (conv && conv.phone) conv.phone.answer(str(frame.sdp));
  }

  function onAudio(frame) {
    const conv = desk.conversations.get(str(frame.conversation_id));
    if (!conv || !conv.phone || frame.state !== "ended") return;
    // Said before this softphone's answer came: it is about the leg this one replaces (the
    // server answers an offer before it can say that offer's leg ended).
    if (!conv.phone.answerCame) return;
    conv.phone.stop(str(frame.reason));
    if (!conv.ended && !conv.customerLeft) {
      announce(`${customerName(conv.card)}: the call's audio was lost. Reconnect it to go on.`, true);
    }
  }

  /** A call on its way to the agent's SIP phone: ringing, transferred, or failed (it waits in
   * the queue again: it leaves this desk). */
  function onPhone(frame) {
    const id = str(frame.conversation_id);
    const conv = desk.conversations.get(id);
    if (!conv) return;
    if (frame.state === "failed") {
      const name = dropConversation(id);
      notice(`Your phone did not take the call from ${name} (${str(frame.reason) || "no answer"}): ` +
        "the caller waits in the queue again.");
      return;
    }
    conv.card.phone = { uri: str(frame.uri), state: str(frame.state) };
    renderConversation(conv);
    if (frame.state === "transferred") announce(`${customerName(conv.card)}: the call is on your phone.`);
  }

  function onCustomerLeft(frame) {
    const conv = desk.conversations.get(str(frame.conversation_id));
    if (!conv) return;
    conv.customerLeft = true;
    stopPhone(conv, "the customer hung up");
    announce(`${customerName(conv.card)}: the customer left.`);
    renderConversation(conv);
  }

  function onEnded(frame) {
    const conv = desk.conversations.get(str(frame.conversation_id));
    if (!conv) return;
    conv.ended = true;
    conv.ending = false;
    stopPhone(conv, "the conversation has ended");
    renderConversation(conv);
    if (conv.focusWrapUp && desk.selected === conv.id) conv.view.code.focus();
    conv.focusWrapUp = false;
  }

  function onWrappedUp(frame) {
    const name = dropConversation(str(frame.conversation_id));
    if (name !== null) announce(`Wrapped up: ${name}.`);
  }

  function onError(frame) {
    if (frame.refused === "audio_offer" || frame.refused === "audio_candidate") {
      const conv = desk.conversations.get(str(frame.conversation_id));
      // A refused offer fails its softphone with the reason; a late candidate is no news.
      if (conv && conv.phone && frame.refused === "audio_offer") {
        conv.phone.fail(str(frame.reason) || "the server refused the call's audio");
      }
      return;
    }
    notice(str(frame.reason) || "The server refused that.");
    // The error names neither the frame nor the conversation: undo every action in flight.
    for (const offer of desk.offers.values()) offer.pending = false;
    showOffer();
    for (const conv of desk.conversations.values()) {
      conv.ending = false;
      conv.wrapping = false;
      conv.transferring = false;
      conv.focusWrapUp = false;
    }
    if (desk.pendingSend) {
      const conv = desk.conversations.get(desk.pendingSend.id);
      if (conv && !conv.view.reply.value) conv.view.reply.value = desk.pendingSend.text;
      desk.pendingSend = null;
    }
    renderAllConversations();
    renderPresence(); // a refused status change: show the one the server has
  }

  // ---- presence ----------------------------------------------------------------------------------

  function presenceLabel(state) {
    return PRESENCE_LABELS[state] || state.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
  }

  function renderPresence() {
    ui.root.dataset.presence = desk.presence;
    const select = ui.presence;
    // States the agent cannot choose (wrap-up, or one a newer server has) show as a disabled option.
    let option = [...select.options].find((o) => o.value === desk.presence);
    if (!option) {
      option = el("option", { value: desk.presence, disabled: true, "data-extra": true,
        text: presenceLabel(desk.presence) });
      select.append(option);
    }
    for (const o of select.options) {
      if (o.disabled) o.hidden = o.value !== desk.presence;
    }
    select.value = desk.presence;
    select.disabled = !desk.connected;
    ui.presenceReason.textContent = desk.presenceReason ? `(${desk.presenceReason})` : "";
  }

  function onPresenceChosen() {
    const state = ui.presence.value;
    if (!send({ type: "presence", state })) renderPresence();
    // The select shows the choice until the server's presence frame (or an error) settles it.
  }

  // ---- offers ------------------------------------------------------------------------------------

  function currentOffer() {
    return desk.offers.values().next().value || null;
  }

  function showOffer() {
    const offer = currentOffer();
    if (!offer) {
      ui.offer.hidden = true;
      delete ui.offer.dataset.conversation;
      ui.offerBody.replaceChildren();
      stopTicker();
      updateTitle();
      return;
    }
    const fresh = ui.offer.dataset.conversation !== offer.id;
    if (fresh) {
      ui.offer.dataset.conversation = offer.id;
      ui.offerQueue.textContent = str(offer.frame.queue) || str(offer.card.queue);
      const transcript = el("ol", { class: "transcript", role: "log", "aria-label": "Transcript" });
      renderTranscript(transcript, offer.card.transcript);
      ui.offerBody.replaceChildren(
        buildCard(offer.card),
        el("div", { class: "talk" }, el("h3", { text: "Transcript" }), transcript));
    }
    ui.offerAccept.disabled = ui.offerDecline.disabled = offer.pending;
    ui.offer.hidden = false;
    if (fresh) {
      const transcript = ui.offerBody.querySelector(".transcript");
      transcript.scrollTop = transcript.scrollHeight; // laid out only now that it is shown
    }
    tick();
    startTicker();
    updateTitle();
  }

  function tick() {
    const offer = currentOffer();
    if (!offer) return;
    const now = performance.now();
    const left = Math.max(0, (offer.deadline - now) / 1000);
    ui.offerCountdown.textContent = left > 0 ? `${Math.ceil(left)} s` : "expiring…";
    ui.offerProgress.value = offer.total ? left / offer.total : 0;
    const waited = Number(offer.card.waited);
    ui.offerWaited.textContent = Number.isFinite(waited) && offer.card.waited !== null
      ? duration(waited + (now - offer.received) / 1000) : "—";
    // Past the deadline the server has moved on: answering would only be refused.
    const expired = left <= 0;
    ui.offerAccept.disabled = ui.offerDecline.disabled = offer.pending || expired;
  }

  function startTicker() {
    if (!desk.ticker) desk.ticker = setInterval(tick, 250);
  }

  function stopTicker() {
    clearInterval(desk.ticker);
    desk.ticker = null;
  }

  function answerOffer(kind) {
    const offer = currentOffer();
    if (!offer || offer.pending) return;
    if (!send({ type: kind, conversation_id: offer.id })) return;
    offer.pending = true;
    showOffer();
  }

  // ---- the context card --------------------------------------------------------------------------

  /** The card's sections (customer, verification, intent, slots, lookups, contact, earlier). */
  function buildCard(card) {
    const customer = isObject(card.customer) ? card.customer : {};
    const profile = isObject(card.profile) ? { ...card.profile } : {};
    delete profile.name; // shown as the customer's name already
    delete profile.full_name;
    return el("div", { class: "card" },
      el("section", { "aria-label": "Customer" },
        el("p", { class: "card-customer" },
          el("span", { class: "customer-name", text: customerName(card) }),
          customer.id && customer.name ? " " : null,
          customer.id && customer.name
            ? el("span", { class: "customer-id", text: `(id ${str(customer.id)})` }) : null),
        el("p", { class: `card-verified${customer.verified ? " is-verified" : ""}`,
          text: verification(customer) }),
        Number(customer.failed_attempts) > 0
          ? el("p", { class: "card-failed", text: failedText(customer.failed_attempts) }) : null),
      el("section", {},
        el("h3", { text: "Intent" }),
        el("p", { class: "card-intent", text: str(card.intent) || "—" })),
      section("Collected", "card-slots", kvView(card.slots)),
      section("Customer system", "card-lookups", kvView(card.lookups)),
      Object.keys(profile).length ? section("Profile", "card-profile", kvView(profile)) : null,
      section("Contact", "card-contact", kvView(card.contact)),
      section("Earlier conversations", "card-earlier", earlierView(card.earlier)));
  }

  function section(title, cls, content) {
    return el("section", { class: cls }, el("h3", { text: title }), content);
  }

  /** "Verified by pin on sip at 14:02", or "Not verified". Only how: the card has no secret. */
  function verification(customer) {
    if (!customer.verified) return "Not verified";
    let text = "Verified";
    if (customer.method) text += ` by ${str(customer.method)}`;
    if (customer.verified_on) text += ` on ${str(customer.verified_on)}`;
    const at = when(customer.verified_at);
    if (at) text += ` at ${at}`;
    return text;
  }

  function failedText(count) {
    const n = Number(count);
    return `${n} failed verification attempt${n === 1 ? "" : "s"}`;
  }

  /** A compact key/value table; an object value gets its keys indented below it, deeper as JSON. */
  function kvView(data) {
    const entries = isObject(data) && !Array.isArray(data) ? Object.entries(data) : [];
    if (!entries.length) return el("p", { class: "none", text: "None" });
    const body = el("tbody");
    for (const [key, value] of entries) {
      if (isObject(value) && !Array.isArray(value) && Object.keys(value).length) {
        body.append(el("tr", { class: "group" }, el("th", { scope: "row", colspan: "2", text: key })));
        for (const [subKey, subValue] of Object.entries(value)) {
          body.append(el("tr", { class: "nested" },
            el("th", { scope: "row", text: subKey }), el("td", {}, valueView(subValue))));
        }
      } else {
        body.append(el("tr", {}, el("th", { scope: "row", text: key }), el("td", {}, valueView(value))));
      }
    }
    return el("table", { class: "kv" }, body);
  }

  function valueView(value) {
    if (value === null || value === undefined) return "—";
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (isObject(value)) return el("code", { text: JSON.stringify(value) });
    return String(value);
  }

  function earlierView(earlier) {
    const rows = Array.isArray(earlier) ? earlier.filter(isObject) : [];
    if (!rows.length) return el("p", { class: "none", text: "None" });
    return el("table", { class: "kv earlier" },
      el("thead", {}, el("tr", {},
        ...["Date", "Flow", "Intent", "Wrap-up"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, ...rows.map((other) => {
        const wrap = isObject(other.wrap_up) ? other.wrap_up : null;
        const channels = Array.isArray(other.channels) ? other.channels : [];
        return el("tr", { "data-conversation": str(other.id) },
          el("td", {}, ...channels.map(channelIcon), channels.length ? " " : null,
            dateEl(other.created_at) || "—"),
          el("td", { text: str(other.flow) || "—" }),
          el("td", { text: str(other.intent) || "—" }),
          el("td", {}, wrap ? str(wrap.code) || "—" : "—",
            wrap && wrap.notes ? el("span", { class: "wrap-notes", text: str(wrap.notes) }) : null));
      })));
  }

  // ---- transcripts -------------------------------------------------------------------------------

  function renderTranscript(list, turns) {
    list.replaceChildren();
    for (const turn of Array.isArray(turns) ? turns : []) {
      if (isObject(turn)) list.append(turnView(turn));
    }
  }

  function turnView(turn) {
    const role = str(turn.role) || "system";
    const channel = str(turn.channel) || "unknown";
    const meta = isObject(turn.meta) ? turn.meta : {};
    const extra = [];
    if (meta.kind === "dtmf") extra.push("keys");
    if (meta.intent) extra.push(`intent: ${str(meta.intent)}`);
    return el("li", { class: "turn", "data-role": role, "data-channel": channel },
      el("span", { class: "turn-head" },
        channelIcon(channel),
        el("span", { class: "turn-who", text: ROLE_LABELS[role] || role }),
        timeEl(turn.ts, "turn-time"),
        extra.length ? el("span", { class: "turn-meta", text: extra.join(" · ") }) : null),
      el("p", { class: "turn-text", text: str(turn.text) }));
  }

  function appendTurn(list, turn) {
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(turnView(turn));
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  // ---- held conversations ------------------------------------------------------------------------

  /** The channel the customer is on now: where the latest turn happened. */
  function currentChannel(card) {
    const turns = Array.isArray(card.transcript) ? card.transcript : [];
    for (let i = turns.length - 1; i >= 0; i -= 1) {
      if (isObject(turns[i]) && turns[i].channel) return str(turns[i].channel);
    }
    const channels = Array.isArray(card.channels) ? card.channels : [];
    return str(channels[channels.length - 1]) || "chat";
  }

  /** audio: "take" (accepted in this tab), "defer" (in another), "auto" (a hello's cards). */
  function upsertConversation(card, audio = "auto") {
    const id = str(card.conversation_id);
    if (!id) return null;
    let conv = desk.conversations.get(id);
    if (!conv) {
      conv = {
        id, card, channel: currentChannel(card), unread: 0,
        customerLeft: false, ended: false, ending: false, wrapping: false, focusWrapUp: false,
        transferring: false, view: null, phone: null,
      };
      conv.view = buildConversation(conv);
      desk.conversations.set(id, conv);
      ui.tabs.append(conv.view.tab);
      ui.panels.append(conv.view.root);
    } else {
      conv.card = card;
      conv.channel = currentChannel(card);
      refreshCard(conv);
    }
    if (card.status === "ended") conv.ended = true;
    if (card.customer_left) conv.customerLeft = true;
    // A call just taken in this tab, or held across a reload: the softphone starts. Taken in
    // another tab of this agent's, or with its audio there already (card.audio_connected): this
    // tab offers "Take the audio here" instead.
    if (card.medium === "voice" && card.audio !== "phone" && !conv.ended && !conv.customerLeft &&
        !conv.phone) {
      const take = audio === "take" || (audio === "auto" && !card.audio_connected);
      if (take) startPhone(conv);
      else conv.phoneElsewhere = true;
    }
    renderConversation(conv);
    renderWork();
    return conv;
  }

  function removeConversation(id) {
    const conv = desk.conversations.get(id);
    if (!conv) return;
    stopPhone(conv, "");
    conv.view.tab.remove();
    conv.view.root.remove();
    desk.conversations.delete(id);
    if (desk.pendingSend && desk.pendingSend.id === id) desk.pendingSend = null;
    if (desk.selected === id) desk.selected = null;
    updateTitle();
  }

  function neighbour(id) {
    const ids = [...desk.conversations.keys()];
    const at = ids.indexOf(id);
    return ids[at + 1] || ids[at - 1] || null;
  }

  function buildConversation(conv) {
    viewCounter += 1;
    const n = viewCounter;
    const tabId = `conversation-tab-${n}`;
    const panelId = `conversation-${n}`;
    const view = {};
    view.tabIcon = el("span", { class: "tab-icon" });
    view.tabName = el("span", { class: "tab-name" });
    view.unread = el("span", { class: "unread", hidden: true });
    view.tabState = el("span", { class: "tab-state" });
    view.tab = el("button", {
      type: "button", role: "tab", id: tabId, class: "conversation-tab",
      "data-conversation": conv.id, "aria-controls": panelId, "aria-selected": "false",
      tabindex: "-1", onclick: () => select(conv.id, { focus: false }),
    }, view.tabIcon, view.tabName, view.unread, view.tabState);

    view.title = el("h2", {});
    view.facts = el("dl", { class: "facts" });
    view.end = el("button", { type: "button", class: "btn btn-danger end", text: "End conversation",
      onclick: () => endConversation(conv) });
    view.transfer = el("button", { type: "button", class: "btn transfer", text: "Transfer…",
      "aria-expanded": "false", onclick: () => toggleTransfer(conv) });
    view.transferForm = buildTransferForm(conv, n, view);
    view.status = el("p", { class: "conversation-status", role: "status", hidden: true });
    view.card = el("div", { class: "card" });
    view.transcript = el("ol", { class: "transcript", role: "log", "aria-live": "polite",
      "aria-label": "Transcript" });

    const replyId = `reply-${n}`;
    view.reply = el("textarea", { class: "reply", id: replyId, rows: "2",
      maxlength: String(MAX_TEXT_CHARS), placeholder: "Type your reply… (Enter sends, Shift+Enter: new line)",
      onkeydown: (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.ctrlKey && !event.altKey &&
            !event.metaKey && !event.isComposing) {
          event.preventDefault();
          view.replyForm.requestSubmit();
        }
      } });
    view.send = el("button", { type: "submit", class: "btn send", text: "Send" });
    view.replyForm = el("form", { class: "reply-form", onsubmit: (event) => {
      event.preventDefault();
      sendReply(conv);
    } }, el("label", { class: "sr", for: replyId, text: "Reply to the customer" }), view.reply, view.send);
    view.voiceNote = el("p", { class: "voice-note",
      text: "A call: you speak with the customer on the line; there is no typed reply." });
    view.phoneState = el("span", { class: "softphone-state", role: "status" });
    view.mute = el("button", { type: "button", class: "btn mute", text: "Mute",
      "aria-pressed": "false", onclick: () => { if (conv.phone) conv.phone.mute(!conv.phone.muted); } });
    view.reconnect = el("button", { type: "button", class: "btn reconnect-audio",
      text: "Reconnect audio", hidden: true, onclick: () => startPhone(conv) });
    view.audio = el("audio", { class: "remote-audio", autoplay: true });
    view.phone = el("div", { class: "softphone", hidden: true },
      el("span", { class: "softphone-icon", text: "🎧" }), view.phoneState, view.mute,
      view.reconnect, view.audio);

    view.wrapUp = buildWrapUp(conv, n, view);

    view.root = el("section", {
      class: "conversation", id: panelId, role: "tabpanel", "aria-labelledby": tabId,
      "data-conversation": conv.id, hidden: true,
    },
      el("header", { class: "conversation-head" }, view.title, view.facts, view.transfer, view.end),
      view.transferForm,
      view.status,
      el("div", { class: "conversation-body" },
        view.card,
        el("div", { class: "talk" },
          view.phone,
          el("h3", { text: "Transcript" }), view.transcript,
          view.replyForm, view.voiceNote, view.wrapUp)));
    conv.view = view;
    refreshCard(conv);
    return view;
  }

  function buildTransferForm(conv, n, view) {
    const toId = `transfer-to-${n}`;
    const noteId = `transfer-note-${n}`;
    view.transferTo = el("select", { class: "transfer-to", id: toId, required: true });
    view.transferNote = el("textarea", { class: "transfer-note", id: noteId, rows: "2",
      maxlength: String(MAX_TEXT_CHARS), placeholder: "For the next agent: what is left to do" });
    view.submitTransfer = el("button", { type: "submit", class: "btn submit-transfer", text: "Transfer" });
    return el("form", { class: "transfer-form", hidden: true, "aria-label": "Transfer",
      onsubmit: (event) => { event.preventDefault(); submitTransfer(conv); } },
      el("label", { for: toId, text: "Transfer to" }), view.transferTo,
      el("label", { for: noteId, text: "Note" }), view.transferNote,
      view.submitTransfer,
      el("button", { type: "button", class: "btn cancel-transfer", text: "Cancel",
        onclick: () => toggleTransfer(conv, false) }));
  }

  async function toggleTransfer(conv, open = conv.view.transferForm.hidden) {
    const { view } = conv;
    view.transferForm.hidden = !open;
    view.transfer.setAttribute("aria-expanded", String(open));
    if (!open) return;
    let targets;
    try {
      const response = await fetch(TARGETS_PATH, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      targets = await response.json();
    } catch (error) {
      notice(`The transfer targets could not be loaded (${error.message}).`);
      return;
    }
    const queues = Array.isArray(targets.queues) ? targets.queues.filter((q) => typeof q === "string") : [];
    const agents = Array.isArray(targets.agents) ? targets.agents.filter(isObject) : [];
    view.transferTo.replaceChildren(
      el("option", { value: "", text: "Choose…" }),
      el("optgroup", { label: "Queues" },
        ...queues.map((q) => el("option", { value: q, text: q }))),
      el("optgroup", { label: "Agents" },
        ...agents.map((a) => el("option", { value: str(a.queue),
          text: `${str(a.name)} (${presenceLabel(str(a.presence) || "offline")})` }))));
    view.transferTo.focus();
  }

  function submitTransfer(conv) {
    const { view } = conv;
    const to = view.transferTo.value;
    if (!to || conv.transferring) return;
    if (!send({ type: "transfer", conversation_id: conv.id, to, note: view.transferNote.value.trim() })) {
      return;
    }
    conv.transferring = true;
    renderConversation(conv);
  }

  function buildWrapUp(conv, n, view) {
    const codes = (desk.codes[str(conv.card.queue)] || []).filter((c) => typeof c === "string");
    const codeId = `wrap-code-${n}`;
    const notesId = `wrap-notes-${n}`;
    view.code = codes.length
      ? el("select", { class: "code", id: codeId, name: "code", required: true },
        el("option", { value: "", text: "Choose a code…" }),
        ...codes.map((code) => el("option", { value: code, text: code })))
      : el("input", { class: "code", id: codeId, name: "code", type: "text", required: true,
        maxlength: "64", autocomplete: "off", placeholder: "e.g. resolved" });
    view.notes = el("textarea", { class: "notes", id: notesId, name: "notes", rows: "3",
      maxlength: String(MAX_TEXT_CHARS) });
    view.submit = el("button", { type: "submit", class: "btn submit-wrap-up", text: "Submit wrap-up" });
    return el("form", { class: "wrap-up", hidden: true, "aria-label": "Wrap-up", onsubmit: (event) => {
      event.preventDefault();
      submitWrapUp(conv);
    } },
      el("h3", { text: "Wrap-up" }),
      el("label", { for: codeId, text: "Code" }), view.code,
      el("label", { for: notesId, text: "Notes" }), view.notes,
      view.submit);
  }

  /** The parts that come from the card (again after a reconnect): drafts are left alone. */
  function refreshCard(conv) {
    const { view, card } = conv;
    view.tabName.textContent = customerName(card);
    view.title.replaceChildren(channelIcon(conv.channel), " ", customerName(card));
    const facts = [["Queue", str(card.queue)], ["Flow", str(card.flow)]];
    if (card.waited !== null && card.waited !== undefined) facts.push(["Waited", duration(card.waited)]);
    view.facts.replaceChildren(...facts.filter(([, v]) => v).map(([k, v]) =>
      el("div", {}, el("dt", { text: k }), el("dd", { text: v }))));
    const fresh = buildCard(card);
    view.card.replaceWith(fresh);
    view.card = fresh;
    renderTranscript(view.transcript, card.transcript);
    view.transcript.scrollTop = view.transcript.scrollHeight;
  }

  function renderConversation(conv) {
    const { view } = conv;
    const state = conv.ended ? "ended" : conv.customerLeft ? "customer_left" : "active";
    view.root.dataset.state = state;
    view.tab.dataset.state = state;
    view.tabIcon.replaceChildren(channelIcon(conv.channel));
    const voice = VOICE_CHANNELS.has(conv.channel);
    const over = conv.ended || conv.customerLeft;

    const status = [];
    if (conv.customerLeft) status.push("The customer left.");
    if (conv.ended) status.push("The conversation has ended: please wrap it up.");
    else if (conv.customerLeft) status.push("Wrap it up below (or end it first).");
    view.status.textContent = status.join(" ");
    view.status.hidden = !status.length;
    view.tabState.textContent = conv.ended ? "Wrap-up" : conv.customerLeft ? "Customer left" : "";

    view.replyForm.hidden = voice || over;
    view.voiceNote.hidden = !voice || over;
    renderPhone(conv);
    view.reply.disabled = over || !desk.connected;
    view.send.disabled = over || !desk.connected;
    view.end.hidden = conv.ended;
    view.transfer.hidden = over || onSipPhone(conv); // the phone has the call: transfer it there
    if (over) view.transferForm.hidden = true;
    view.submitTransfer.disabled = conv.transferring || !desk.connected;
    view.submitTransfer.textContent = conv.transferring ? "Transferring…" : "Transfer";
    view.end.disabled = conv.ending || !desk.connected;
    view.end.textContent = conv.ending ? "Ending…" : "End conversation";
    view.wrapUp.hidden = !over;
    view.submit.disabled = conv.wrapping || !desk.connected;
    view.submit.textContent = conv.wrapping ? "Submitting…" : "Submit wrap-up";

    view.unread.hidden = !conv.unread;
    view.unread.textContent = String(conv.unread);
    view.unread.setAttribute("aria-label", `${conv.unread} unread`);
    updateTitle();
  }

  function renderAllConversations() {
    for (const conv of desk.conversations.values()) renderConversation(conv);
  }

  function renderWork() {
    ui.empty.hidden = desk.conversations.size > 0;
    updateTitle();
  }

  function select(id, { focus = false } = {}) {
    const target = id && desk.conversations.get(id) ? id : null;
    desk.selected = target;
    for (const conv of desk.conversations.values()) {
      const on = conv.id === target;
      conv.view.root.hidden = !on;
      conv.view.tab.setAttribute("aria-selected", String(on));
      conv.view.tab.tabIndex = on ? 0 : -1;
      if (on) {
        conv.unread = 0;
        renderConversation(conv);
        conv.view.transcript.scrollTop = conv.view.transcript.scrollHeight;
        if (focus) conv.view.tab.focus();
      }
    }
    if (!target && desk.conversations.size) {
      // Nothing chosen: the first tab stays reachable with the keyboard.
      desk.conversations.values().next().value.view.tab.tabIndex = 0;
    }
    renderWork();
  }

  function onTabKey(event) {
    const ids = [...desk.conversations.keys()];
    if (!ids.length) return;
    const at = Math.max(0, ids.indexOf(desk.selected));
    const moves = {
      ArrowDown: at + 1, ArrowRight: at + 1, ArrowUp: at - 1, ArrowLeft: at - 1,
      Home: 0, End: ids.length - 1,
    };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const next = (moves[event.key] + ids.length) % ids.length;
    select(ids[next], { focus: true });
  }

  // ---- the softphone (a call's audio: agent-softphone.js) ----------------------------------------

  const PHONE_STATES = {
    starting: "Opening your microphone…",
    connecting: "Connecting the call's audio…",
    connected: "On the call",
    ended: "Call audio ended",
    failed: "Call audio failed",
  };

  // The agent's tabs in this browser tell each other when one takes a call's audio: the server
  // has replaced the other tab's leg at once, but its connection would notice only ~20 s later.
  // The later of two tabs taking it at once keeps it, as the server keeps the later offer.
  const audioTabs = window.BroadcastChannel ? new BroadcastChannel("ivr-agent-audio") : null;
  if (audioTabs) audioTabs.onmessage = (event) => onAudioTaken(event.data);

  function onAudioTaken(data) {
    const conv = isObject(data) ? desk.conversations.get(str(data.conversation_id)) : null;
    if (!conv || !conv.phone || conv.phoneSince > Number(data.at)) return;
    const phone = conv.phone;
    conv.phone = null;
    conv.phoneElsewhere = true;
    phone.stop("taken in another tab");
    renderConversation(conv);
  }

  function startPhone(conv) {
    conv.phoneElsewhere = false;
    if (!window.IvrSoftphone) {
      notice("The softphone could not be loaded: this call cannot be answered here.");
      return;
    }
    stopPhone(conv, "");
    const phone = new window.IvrSoftphone({
      conversationId: conv.id,
      iceServers: desk.iceServers,
      send,
      audio: conv.view.audio,
      onState: () => { if (conv.phone === phone) renderPhone(conv); },
    });
    conv.phone = phone;
    conv.phoneSince = Date.now();
    renderPhone(conv);
    phone.start();
    if (audioTabs) audioTabs.postMessage({ conversation_id: conv.id, at: conv.phoneSince });
  }

  function stopPhone(conv, reason) {
    if (conv.phone) conv.phone.stop(reason);
  }

  const SIP_PHONE_STATES = { ringing: "Ringing your phone", transferred: "On your phone" };

  function onSipPhone(conv) {
    return conv.card.audio === "phone";
  }

  function renderPhone(conv) {
    const { view, phone } = conv;
    const over = conv.ended || conv.customerLeft;
    if (onSipPhone(conv)) {
      const sip = isObject(conv.card.phone) ? conv.card.phone : {};
      view.phone.hidden = over;
      view.phone.dataset.state = str(sip.state);
      view.phoneState.textContent = `${SIP_PHONE_STATES[sip.state] || "Your phone"} (${str(sip.uri)})`;
      view.mute.hidden = true;
      view.reconnect.hidden = true;
      return;
    }
    view.phone.hidden = !phone && !(conv.phoneElsewhere && !over);
    if (!phone) {
      view.phone.dataset.state = "elsewhere";
      view.phoneState.textContent = "The call's audio is in another tab or window.";
      view.mute.hidden = true;
      view.reconnect.hidden = over;
      view.reconnect.textContent = "Take the audio here";
      return;
    }
    view.reconnect.textContent = "Reconnect audio";
    view.phone.dataset.state = phone.state;
    const reason = phone.reason && (phone.state === "ended" || phone.state === "failed")
      ? `: ${phone.reason}` : "";
    view.phoneState.textContent = (PHONE_STATES[phone.state] || phone.state) + reason;
    view.mute.hidden = phone.state !== "connected";
    view.mute.textContent = phone.muted ? "Unmute" : "Mute";
    view.mute.setAttribute("aria-pressed", String(phone.muted));
    // Connected too: a new leg is the remedy for audio gone bad (or a headset plugged in).
    view.reconnect.hidden = over || phone.state === "starting" || phone.state === "connecting";
  }

  // ---- what the agent does -----------------------------------------------------------------------

  function sendReply(conv) {
    const text = conv.view.reply.value.trim();
    if (!text || conv.ended || conv.customerLeft) return;
    if (text.length > MAX_TEXT_CHARS) {
      notice(`A reply is at most ${MAX_TEXT_CHARS} characters.`);
      return;
    }
    if (!send({ type: "send", conversation_id: conv.id, text })) return;
    desk.pendingSend = { id: conv.id, text }; // shown when the server echoes it as a message
    conv.view.reply.value = "";
    conv.view.reply.focus();
  }

  function endConversation(conv) {
    if (conv.ended || conv.ending) return;
    if (!send({ type: "end", conversation_id: conv.id })) return;
    conv.ending = true;
    conv.focusWrapUp = true;
    renderConversation(conv);
  }

  function submitWrapUp(conv) {
    if (conv.wrapping) return;
    const code = conv.view.code.value.trim();
    if (!code) {
      conv.view.code.focus();
      return;
    }
    if (!send({ type: "wrap_up", conversation_id: conv.id, code, notes: conv.view.notes.value.trim() })) {
      return;
    }
    conv.wrapping = true;
    renderConversation(conv);
  }
})();
