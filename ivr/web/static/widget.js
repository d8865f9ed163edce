/*
 * The ivr visitor widget: one script tag puts a "talk to us" button on any page. Its panel holds
 * a chat, a keypad and a browser call (WebRTC) to the same dialog flows as the phone line.
 *
 *   <script src="https://ivr.example.com/widget.js" defer
 *           data-flow="bank" data-title="Talk to us"
 *           data-echo-cancellation="on" data-open="false"></script>
 *
 * Chat, keys and call signalling all travel over ONE websocket: /chat/ws of the server the script
 * came from (so it works on another origin's page). The protocol is described in ivr/web/chat.py.
 * A call started in the middle of a chat carries on at the same step of the same conversation,
 * and when it ends the chat takes over again: the visitor never repeats themselves. The
 * conversation's resume handle is kept in sessionStorage (this tab only): after a reload the
 * panel opens and the conversation goes on where it was (a place in an agent's queue kept).
 *
 * Plain JavaScript with standard APIs only (current Chromium and Firefox), no build step, no
 * framework, nothing fetched from anywhere else. Everything lives under #ivr-widget with ivr-
 * prefixed classes, so the host page's CSS and ours do not meet. No shadow DOM: integrators and
 * tests reach the elements directly.
 *
 * For integrators and tests: #ivr-widget carries data-state (closed, opening, chat, connecting,
 * connected, speaking, listening, waiting, ended, disconnected), data-call (pending, available,
 * unavailable) and data-conversation (the conversation id); window.ivrWidget has open(), close(),
 * call(), hangup(), and the read-only pc (the call's RTCPeerConnection or null), state and
 * conversation.
 */
(() => {
  "use strict";

  const script = document.currentScript;
  if (!script || window.ivrWidget) return; // loaded twice: the first copy serves

  const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];
  const KEY_NAMES = { "*": "star", "#": "hash" };
  // What the header says in each state (data-state carries the key).
  const STATE_LABELS = {
    closed: "",
    opening: "connecting…",
    chat: "chat",
    connecting: "call connecting…",
    connected: "call connected",
    speaking: "bot speaking",
    listening: "listening",
    waiting: "thinking…",
    ended: "ended",
    disconnected: "disconnected",
  };
  const CHANNEL_ICONS = { chat: "💬", call: "📞" };
  // From the offer to "connected": past this the call is given up and the chat goes on.
  const CALL_SETUP_MAX_MS = 20000;
  const SECURE_TEXT = "••••"; // a typed secure answer: not even its length is shown

  const config = readConfig(script);
  const resumeHandle = {
    key: `ivr-widget.resume ${config.wsUrl}`,
    get() { try { return sessionStorage.getItem(this.key); } catch { return null; } },
    set(value) { try { sessionStorage.setItem(this.key, value); } catch { /* no storage */ } },
    forget() { try { sessionStorage.removeItem(this.key); } catch { /* no storage */ } },
  };
  const session = {
    ws: null,
    state: "closed",
    conversation: null,
    callAvailability: "pending", // until the server's hello says
    iceServers: [],
    secure: false, // the question waiting for an answer is secure (a PIN)
    choices: [],
    over: false, // the conversation ended or went to an agent: nothing more to send
    keyedEntry: false, // the text field holds keys pressed on the keypad
    lastKeysLine: null, // the log line keys pressed in a row are shown on
    partials: {}, // who -> the log line of a caption not yet final
  };
  let call = null; // the call being set up or running; see startCall()

  const ui = buildUi();
  injectStyles();
  document.body.appendChild(ui.root);
  render();
  // Opened for the visitor (leave the page's focus), or reloaded mid-conversation: it goes on.
  if (config.open || resumeHandle.get()) openPanel({ focus: false });

  window.ivrWidget = Object.freeze({
    open: () => openPanel(),
    close: closePanel,
    call: startCall,
    hangup: hangUp,
    get pc() {
      return call ? call.pc : null;
    },
    get state() {
      return ui.root.dataset.state;
    },
    get conversation() {
      return session.conversation;
    },
  });

  // ---- configuration -------------------------------------------------------------------------

  function readConfig(tag) {
    const data = tag.dataset;
    // Relative to the script's own address, so a server mounted under a path works too.
    const wsUrl = new URL("chat/ws", tag.src);
    wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
    const off = (value) => ["off", "false", "no", "0"].includes((value || "").toLowerCase());
    return {
      wsUrl: wsUrl.href,
      flow: data.flow || null,
      title: data.title || "Talk to us",
      echoCancellation: !off(data.echoCancellation),
      open: (data.open || "").toLowerCase() === "true",
    };
  }

  // ---- building the widget -------------------------------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  }

  function buildUi() {
    const launcher = el("button", {
      type: "button", class: "ivr-launcher", "aria-expanded": "false",
      "aria-controls": "ivr-panel", onclick: togglePanel,
    }, el("span", { "aria-hidden": "true", text: "💬 " }), config.title);
    const status = el("span", { class: "ivr-status", role: "status" });
    const closeButton = el("button", {
      type: "button", class: "ivr-close", "aria-label": "Close", onclick: closePanel, text: "×",
    });
    const log = el("div", {
      class: "ivr-log", role: "log", "aria-live": "polite", "aria-label": "Conversation",
    });
    const choices = el("div", { class: "ivr-choices" });
    const keypad = el("div", {
      class: "ivr-keypad", id: "ivr-keypad", role: "group", "aria-label": "Keypad", hidden: "",
    }, ...KEYS.map((key) => el("button", {
      type: "button", class: "ivr-key", "data-key": key,
      "aria-label": KEY_NAMES[key] ? `${KEY_NAMES[key]} (${key})` : key,
      onclick: () => pressKey(key), text: key,
    })));
    const input = el("input", {
      class: "ivr-input", type: "text", autocomplete: "off", maxlength: "4000",
      "aria-label": "Your message", placeholder: "Type your message…",
      // The visitor typed: what is in the field is text now, not keys.
      oninput: () => { session.keyedEntry = false; },
    });
    const send = el("button", { type: "submit", class: "ivr-send", text: "Send" });
    const form = el("form", { class: "ivr-form", onsubmit: onSubmit }, input, send);
    const callButton = el("button", {
      type: "button", class: "ivr-call", "aria-describedby": "ivr-call-note",
      onclick: () => { startCall(); },
    }, el("span", { "aria-hidden": "true", text: "📞 " }), "Call");
    // Why the Call button cannot call (yet), for screen readers and as the button's tooltip.
    const callNote = el("span", { class: "ivr-sr", id: "ivr-call-note" });
    const hangupButton = el("button", {
      type: "button", class: "ivr-hangup", onclick: hangUp, hidden: "",
    }, el("span", { "aria-hidden": "true", text: "⏹ " }), "Hang up");
    const keypadToggle = el("button", {
      type: "button", class: "ivr-keypad-toggle", "aria-expanded": "false",
      "aria-controls": "ivr-keypad", onclick: toggleKeypad,
    }, el("span", { "aria-hidden": "true", text: "🔢 " }), "Keypad");
    // The remote voice must play through an element: without one Chromium decodes nothing.
    const audio = el("audio", { class: "ivr-audio", autoplay: "" });
    const panel = el("section", {
      class: "ivr-panel", id: "ivr-panel", role: "dialog", "aria-label": config.title, hidden: "",
    },
      el("header", { class: "ivr-header" },
        el("strong", { class: "ivr-title", text: config.title }), status, closeButton),
      log, choices, keypad, form,
      el("div", { class: "ivr-controls" }, callButton, callNote, hangupButton, keypadToggle),
      audio);
    const root = el("div", { id: "ivr-widget", "data-state": "closed" }, panel, launcher);
    return {
      root, launcher, panel, status, log, choices, keypad, input, send, callButton, callNote,
      hangupButton, keypadToggle, audio,
    };
  }

  function injectStyles() {
    if (document.getElementById("ivr-widget-style")) return;
    const css = `
#ivr-widget { --ivr-accent: #1f5fbf; position: fixed; right: 20px; bottom: 20px;
  z-index: 2147483000; font: 15px/1.4 system-ui, sans-serif; color: #1b1f24; }
#ivr-widget *, #ivr-widget *::before, #ivr-widget *::after { box-sizing: border-box; }
#ivr-widget [hidden] { display: none !important; }
#ivr-widget button { font: inherit; cursor: pointer; }
#ivr-widget button:disabled, #ivr-widget button.ivr-unavailable,
#ivr-widget input:disabled { opacity: .5; }
#ivr-widget button:disabled { cursor: default; }
#ivr-widget .ivr-launcher { display: block; margin-left: auto; padding: 12px 18px; border: 0;
  border-radius: 24px; background: var(--ivr-accent); color: #fff;
  box-shadow: 0 4px 14px rgba(0,0,0,.25); }
#ivr-widget .ivr-panel { width: min(370px, calc(100vw - 40px)); height: min(560px, calc(100vh - 100px));
  margin-bottom: 12px; display: flex; flex-direction: column; background: #f7f8fa;
  border-radius: 14px; overflow: hidden; box-shadow: 0 8px 30px rgba(0,0,0,.3); }
#ivr-widget .ivr-header { display: flex; align-items: center; gap: 8px; padding: 10px 12px;
  background: var(--ivr-accent); color: #fff; }
#ivr-widget .ivr-title { flex: 1; }
#ivr-widget .ivr-status { font-size: 13px; opacity: .9; }
#ivr-widget .ivr-close { border: 0; background: transparent; color: #fff; font-size: 22px;
  line-height: 1; padding: 0 4px; }
#ivr-widget .ivr-log { flex: 1; overflow-y: auto; padding: 12px; display: flex;
  flex-direction: column; gap: 6px; }
#ivr-widget .ivr-line { max-width: 85%; padding: 7px 10px; border-radius: 12px;
  white-space: pre-wrap; overflow-wrap: anywhere; }
#ivr-widget .ivr-bot { background: #e6eaf1; align-self: flex-start; }
#ivr-widget .ivr-agent { background: #dff3e4; align-self: flex-start; }
#ivr-widget .ivr-customer { background: var(--ivr-accent); color: #fff; align-self: flex-end; }
#ivr-widget .ivr-system { align-self: center; text-align: center; font-size: 13px; color: #4b5460; }
#ivr-widget .ivr-error { align-self: center; text-align: center; font-size: 13px; color: #a3261b; }
#ivr-widget .ivr-partial { opacity: .65; font-style: italic; }
#ivr-widget .ivr-channel { margin-right: 6px; }
#ivr-widget .ivr-who { font-size: 12px; opacity: .8; margin-right: 4px; }
#ivr-widget .ivr-sr { position: absolute; width: 1px; height: 1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; }
#ivr-widget .ivr-choices { display: flex; flex-wrap: wrap; gap: 6px; padding: 0 12px 6px; }
#ivr-widget .ivr-choices button { border: 1px solid var(--ivr-accent); background: #fff;
  color: var(--ivr-accent); border-radius: 16px; padding: 5px 11px; }
#ivr-widget .ivr-keypad { display: grid; grid-template-columns: repeat(3, 1fr); gap: 6px;
  padding: 6px 12px; }
#ivr-widget .ivr-key { padding: 8px 0; border: 1px solid #c6ccd4; border-radius: 8px;
  background: #fff; font-size: 17px; }
#ivr-widget .ivr-form { display: flex; gap: 6px; padding: 8px 12px; background: #fff;
  border-top: 1px solid #dde1e6; }
#ivr-widget .ivr-input { flex: 1; min-width: 0; padding: 8px; border: 1px solid #c6ccd4;
  border-radius: 8px; font: inherit; }
#ivr-widget .ivr-send, #ivr-widget .ivr-controls button { padding: 8px 12px; border: 0;
  border-radius: 8px; background: var(--ivr-accent); color: #fff; }
#ivr-widget .ivr-controls { display: flex; gap: 6px; padding: 0 12px 10px; background: #fff; }
#ivr-widget .ivr-controls .ivr-hangup { background: #b3261e; }
#ivr-widget .ivr-controls .ivr-keypad-toggle { margin-left: auto; background: #5b6470; }
`;
    document.head.appendChild(el("style", { id: "ivr-widget-style", text: css }));
  }

  // ---- what the visitor sees -----------------------------------------------------------------

  /** Appends a line to the log: kind is bot, customer, system or error; channel chat or call. */
  function addLine(kind, channel, text, { who = "" } = {}) {
    const speaker = { bot: "Bot", customer: "You", agent: "Agent" }[kind];
    const line = el("div", { class: `ivr-line ivr-${kind}`, "data-channel": channel },
      el("span", { class: "ivr-channel", role: "img", "aria-label": channel,
        title: channel, text: CHANNEL_ICONS[channel] }));
    if (speaker) line.append(el("span", { class: "ivr-sr", text: `${speaker}: ` }));
    if (who) line.append(el("span", { class: "ivr-who", text: who }));
    line.append(el("span", { class: "ivr-text", text }));
    ui.log.appendChild(line);
    ui.log.scrollTop = ui.log.scrollHeight;
    session.lastKeysLine = null; // keys pressed after this line start a line of their own
    return line;
  }

  function setLineText(line, text) {
    line.querySelector(".ivr-text").textContent = text;
  }

  /** A system (or error) line, unless the very same one is the last in the log (repeated clicks). */
  function notice(text, kind = "system", channel = "chat") {
    const last = ui.log.lastElementChild;
    if (last && last.classList.contains(`ivr-${kind}`) &&
        last.querySelector(".ivr-text").textContent === text) return;
    addLine(kind, channel, text);
  }

  function currentState() {
    if (call) return call.connected ? call.botState || "connected" : "connecting";
    return session.state;
  }

  /** Brings every element in line with the session and the call. */
  function render() {
    const state = currentState();
    const root = ui.root;
    root.dataset.state = state;
    root.dataset.call = session.callAvailability;
    if (session.conversation) root.dataset.conversation = session.conversation;
    else delete root.dataset.conversation;
    ui.status.textContent = STATE_LABELS[state] || state;

    const online = !!session.ws && session.ws.readyState === WebSocket.OPEN;
    const canAnswer = online && !session.over;
    // In a call the visitor answers by voice or keys: typed text would wait for the chat.
    ui.input.disabled = ui.send.disabled = !canAnswer || !!call;
    ui.input.type = session.secure ? "password" : "text";
    ui.input.placeholder = session.secure
      ? "Your answer is hidden and never stored"
      : call ? "In a call: speak, or use the keypad" : "Type your message…";
    for (const key of ui.keypad.querySelectorAll("button")) key.disabled = !canAnswer;

    ui.callButton.hidden = !!call;
    ui.hangupButton.hidden = !call;
    // Before the hello we do not know yet whether calls are possible: wait. When they are not,
    // the button looks off but stays clickable, so a visitor who tries is told why.
    // With people (waiting for or talking to an agent in the chat), a call cannot take over.
    ui.callButton.disabled = !canAnswer || session.callAvailability === "pending" ||
      session.withPeople;
    const unavailable = session.callAvailability === "unavailable";
    ui.callButton.classList.toggle("ivr-unavailable", unavailable);
    ui.callNote.textContent = !canAnswer ? ""
      : unavailable ? "Calls are not available here right now; chat works."
      : session.callAvailability === "pending" ? "Checking whether calls are available…" : "";
    ui.callButton.title = ui.callNote.textContent;
  }

  function togglePanel() {
    if (ui.panel.hidden) openPanel();
    else closePanel();
  }

  function openPanel({ focus = true } = {}) {
    ui.panel.hidden = false;
    ui.launcher.setAttribute("aria-expanded", "true");
    if (!session.ws) connect(); // the conversation starts when the visitor first opens us
    else render();
    if (focus) ui.input.focus();
  }

  function closePanel() {
    // Only hides the panel: the chat and any call go on and are there when it is reopened.
    ui.panel.hidden = true;
    ui.launcher.setAttribute("aria-expanded", "false");
    ui.launcher.focus();
  }

  function toggleKeypad() {
    const show = ui.keypad.hidden;
    ui.keypad.hidden = !show;
    ui.keypadToggle.setAttribute("aria-expanded", String(show));
  }

  function showChoices(choices) {
    session.choices = choices;
    ui.choices.replaceChildren(...choices.map((choice) => el("button", {
      type: "button",
      text: choice.key ? `${choice.key}. ${choice.label}` : choice.label,
      onclick: () => sendText(choice.key || choice.label, choice.label),
    })));
  }

  function clearChoices() {
    session.choices = [];
    ui.choices.replaceChildren();
  }

  // ---- the websocket -------------------------------------------------------------------------

  function connect() {
    session.state = "opening";
    session.callAvailability = "pending";
    const ws = new WebSocket(config.wsUrl);
    session.ws = ws;
    ws.onopen = () => {
      session.state = "chat";
      const kept = resumeHandle.get();
      if (kept) send({ type: "resume", token: kept }); // before anything else
      else startConversation();
      render();
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // not ours to show
      }
      onFrame(frame);
      render();
    };
    ws.onclose = (event) => {
      if (session.ws !== ws) return;
      if (event.code === 1000) resumeHandle.forget(); // the server closed it: over, or elsewhere
      if (call) endCall("The call has ended: the connection was lost.");
      if (!session.over) {
        session.state = "disconnected";
        addLine("error", "chat", event.reason
          ? `Disconnected: ${event.reason}.` : "The connection to the server was lost.");
      }
      offerRestart();
      render();
    };
    render();
  }

  function startConversation() {
    send({ type: "start", ...(config.flow ? { flow: config.flow } : {}) });
  }

  function send(frame) {
    if (session.ws && session.ws.readyState === WebSocket.OPEN) {
      session.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function offerRestart() {
    clearChoices();
    ui.choices.append(el("button", {
      type: "button", class: "ivr-restart", text: "Start a new conversation", onclick: restart,
    }));
  }

  function restart() {
    const old = session.ws;
    session.ws = null;
    resumeHandle.forget();
    if (old) old.close(1000, "a new conversation"); // the visitor leaves (a queue's place too)
    Object.assign(session, {
      conversation: null, secure: false, over: false, keyedEntry: false, partials: {},
      withPeople: false, agent: null,
    });
    clearChoices();
    ui.input.value = "";
    addLine("system", "chat", "A new conversation.");
    connect();
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "hello":
        session.callAvailability = frame.call === true ? "available" : "unavailable";
        session.iceServers = Array.isArray(frame.ice_servers) ? frame.ice_servers : [];
        break;
      case "conversation":
        session.conversation = frame.id;
        if (frame.resume) resumeHandle.set(frame.resume);
        break;
      case "history": // resumed: where the conversation stood
        if (Array.isArray(frame.turns) && frame.turns.length && !ui.log.childElementCount) {
          notice("Where you left off:");
          for (const turn of frame.turns) {
            const kind = ["customer", "agent"].includes(turn.role) ? turn.role : "bot";
            const text = turn.text === "[secure input]" ? SECURE_TEXT : String(turn.text || "");
            addLine(kind, ["sip", "webrtc"].includes(turn.channel) ? "call" : "chat", text);
          }
        }
        break;
      case "bot":
        onBot(frame);
        break;
      case "caption":
        onCaption(frame);
        break;
      case "call_answer":
        onCallAnswer(frame.sdp);
        break;
      case "call_state":
        onCallState(frame);
        break;
      case "call_error":
        if (call) call.offered = false; // the server holds no call: nothing to hang up
        if (call) callFailed(frame.reason || "the server refused it");
        else notice(`The call could not start: ${frame.reason || "the server refused it"}. ` +
          "You can keep chatting here.", "error", "call");
        break;
      case "transfer":
        clearChoices();
        session.secure = false;
        // Waiting for a person: what the visitor types reaches the agent (a SIP transfer ends).
        if (frame.queue) session.withPeople = true;
        else session.over = true;
        notice(frame.queue ? "Connecting you to an agent, who will answer here…"
          : "Transferring you…");
        break;
      case "notice":
        notice(String(frame.text || ""));
        break;
      case "agent_joined":
        session.agent = String(frame.name || "An agent");
        session.withPeople = true; // (also when resumed with the agent: no transfer frame)
        notice(`${session.agent} has joined the conversation.`);
        break;
      case "agent":
        addLine("agent", "chat", String(frame.text || ""), { who: String(frame.name || "Agent") });
        break;
      case "end":
        resumeHandle.forget();
        session.over = true;
        session.state = "ended";
        if (call) endCall();
        notice("The conversation has ended.");
        offerRestart();
        break;
      case "error":
        if (frame.kind === "resume_refused") { // forged, expired or over: start afresh
          resumeHandle.forget();
          session.conversation = null;
          notice(frame.reason || "The conversation could not be resumed.");
          startConversation();
          break;
        }
        notice(frame.reason || "Something went wrong.", "error");
        break;
      default:
        break; // a newer server's frame: ignore it rather than break
    }
  }

  function onBot(frame) {
    addLine("bot", "chat", frame.text);
    if (!frame.expects_answer) return;
    session.secure = !!frame.secure;
    if (call) call.secure = session.secure;
    showChoices(frame.choices || []);
  }

  function onCaption(frame) {
    const who = frame.who === "customer" ? "customer" : "bot";
    // Each thing the bot says may be a new question, secure or not: unknown unless it says.
    if (call && who === "bot" && frame.final !== false) call.secure = secureFlag(frame);
    // A secure answer said aloud is masked like a typed one (should the server caption it).
    const hide = who === "customer" && (frame.secure === true || (call && call.secure === true));
    const text = hide ? SECURE_TEXT : frame.text;
    let line = session.partials[who];
    if (line) setLineText(line, text);
    else line = addLine(who, "call", text, { who: who === "customer" ? "heard:" : "" });
    line.classList.toggle("ivr-partial", frame.final === false);
    // A partial caption is replaced in place by the next one, until the final one.
    session.partials[who] = frame.final === false ? line : null;
    // Answered: keys pressed before the next question may be for a PIN: dots until it says.
    if (call && who === "customer" && frame.final !== false) call.secure = null;
  }

  // ---- chat and keys -------------------------------------------------------------------------

  function onSubmit(event) {
    event.preventDefault();
    const value = ui.input.value.trim();
    if (!value) return;
    if (session.keyedEntry && /^[0-9*#]{1,32}$/.test(value)) sendKeys(value);
    else sendText(value);
  }

  /** A typed answer (or a choice): shown as typed, or masked when the question is secure. */
  function sendText(text, shown) {
    if (!send({ type: "message", text })) return;
    addLine("customer", "chat", session.secure ? SECURE_TEXT : shown ?? text);
    afterAnswer();
  }

  /** A keyed entry outside a call: one dtmf frame, as a phone would send the keys of an answer. */
  function sendKeys(digits) {
    if (!send({ type: "dtmf", digits })) return;
    addLine("customer", "chat", shownKeys(digits), { who: "keys:" });
    afterAnswer();
  }

  function afterAnswer() {
    ui.input.value = "";
    session.keyedEntry = false;
    clearChoices();
  }

  /** Keys as the log shows them: each digit of a secure answer as a dot (# and * are no secret). */
  function shownKeys(digits) {
    return session.secure ? digits.replace(/[0-9]/g, "•") : digits;
  }

  /**
   * A keypad press. In a call each key goes at once over the call's "keys" data channel (the
   * server applies the question's length, # and inter-digit timeout, as on the phone). In the
   * chat the keys gather in the text field and go as one entry on #, Send or Enter: the chat
   * takes each frame as a whole answer. A menu's key on an empty field answers at once.
   */
  function pressKey(key) {
    if (call) {
      sendCallKey(key);
      return;
    }
    const value = ui.input.value;
    if (!value && session.choices.some((choice) => choice.key === key)) {
      sendKeys(key);
      return;
    }
    if (key === "#") {
      // Like Enter; a keyed entry keeps its # (the end of an entry, as on the phone).
      if (value && session.keyedEntry) sendKeys(value + key);
      else if (value.trim()) sendText(value.trim());
      return;
    }
    // Added to what is in the field; keys alone make a keyed entry, typed text stays text.
    session.keyedEntry = session.keyedEntry || !value;
    ui.input.value = value + key;
  }

  function sendCallKey(key) {
    if (call.keys && call.keys.readyState === "open") call.keys.send(key);
    else call.pendingKeys.push(key); // the channel is still opening: sent when it opens
    // Shown only when the question is known not to be secure: a PIN may be asked by voice.
    const shown = call.secure === false || !/[0-9]/.test(key) ? key : "•";
    if (session.lastKeysLine && session.lastKeysLine.isConnected) {
      const text = session.lastKeysLine.querySelector(".ivr-text");
      text.textContent += shown;
    } else {
      session.lastKeysLine = addLine("customer", "call", shown, { who: "keys:" });
    }
  }

  // ---- the call ------------------------------------------------------------------------------

  /** Places a browser call; the running conversation (if any) moves to it at its current step. */
  async function startCall() {
    if (call || !session.ws) return;
    if (session.callAvailability === "unavailable") {
      notice("Calls are not available on this site right now. You can keep chatting here.",
        "system", "call");
      return;
    }
    if (session.callAvailability !== "available" || session.over) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      // Browsers offer the microphone to secure (https) pages only.
      notice("The call could not start: this page is not secure (https), so the browser offers " +
        "no microphone. You can keep chatting here.", "error", "call");
      return;
    }
    const me = newCall();
    render();
    try {
      const ec = config.echoCancellation;
      me.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: ec, noiseSuppression: ec, autoGainControl: ec },
      });
    } catch (error) {
      if (call === me) dropCall();
      notice(`The call could not start: ${microphoneProblem(error)}. You can keep chatting ` +
        "here.", "error", "call");
      render();
      return;
    }
    if (call !== me) return releaseMedia(me); // hung up while the browser asked
    try {
      await offer(me);
    } catch (error) {
      if (call === me) callFailed(error.message || String(error));
    }
    render();
  }

  function newCall() {
    call = {
      pc: null, stream: null, keys: null, pendingKeys: [], connected: false, botState: null,
      offered: false, timer: null, answered: false, pendingCandidates: [],
      // Whether the question being answered is secure: true, false or null (not known). The
      // call goes on at the chat's question; later questions are spoken, and known only when
      // the server flags them (a "secure" field on the bot's caption of a question).
      secure: session.secure,
    };
    return call;
  }

  function secureFlag(frame) {
    return typeof frame.secure === "boolean" ? frame.secure : null;
  }

  function microphoneProblem(error) {
    switch (error && error.name) {
      case "NotAllowedError":
      case "SecurityError":
        return "access to the microphone was denied. To call, allow the microphone for " +
          "this site in your browser";
      case "NotFoundError":
      case "OverconstrainedError":
        return "no microphone was found";
      case "NotReadableError":
      case "AbortError":
        return "the microphone could not be used (is another application using it?)";
      default:
        return `the microphone could not be opened (${error && error.message || error})`;
    }
  }

  async function offer(me) {
    const pc = new RTCPeerConnection({ iceServers: session.iceServers });
    me.pc = pc;
    for (const track of me.stream.getAudioTracks()) pc.addTrack(track, me.stream);
    // Keys during a call travel on a data channel (no RFC 4733 on the server side); it must
    // exist before the offer so the offer carries it.
    me.keys = pc.createDataChannel("keys");
    me.keys.onopen = () => {
      for (const key of me.pendingKeys.splice(0)) me.keys.send(key);
    };
    pc.ontrack = (event) => {
      ui.audio.srcObject = event.streams[0] || new MediaStream([event.track]);
      ui.audio.play().catch(() => {}); // autoplay refused: the element retries when it can
    };
    pc.onconnectionstatechange = () => {
      if (call !== me) return;
      if (pc.connectionState === "connected") {
        me.connected = true;
        clearTimeout(me.timer);
        render();
      } else if (pc.connectionState === "failed") {
        callFailed("the call could not connect");
      }
    };
    // Trickle ICE: the offer goes at once (gathering takes 100 ms or more: it would delay
    // every call), and our candidates follow it once the server has answered. The server's
    // answer carries all of its own; until ours arrive it learns us from our checks.
    pc.onicecandidate = (event) => {
      const c = event.candidate;
      if (!c || !c.candidate || call !== me) return;
      const frame = { type: "candidate", candidate: c.candidate, sdpMid: c.sdpMid,
        sdpMLineIndex: c.sdpMLineIndex };
      if (me.answered) send(frame);
      else me.pendingCandidates.push(frame);
    };
    await pc.setLocalDescription(await pc.createOffer());
    if (call !== me) return;
    me.timer = setTimeout(() => {
      if (call === me && !me.connected) callFailed("the call could not connect in time");
    }, CALL_SETUP_MAX_MS);
    me.offered = send({
      type: "call", sdp: pc.localDescription.sdp, ...(config.flow ? { flow: config.flow } : {}),
    });
    if (!me.offered) callFailed("the connection to the server was lost");
  }

  async function onCallAnswer(sdp) {
    const me = call;
    if (!me || !me.pc) return;
    try {
      await me.pc.setRemoteDescription({ type: "answer", sdp });
      me.answered = true;
      for (const frame of me.pendingCandidates.splice(0)) send(frame);
    } catch (error) {
      if (call === me) {
        send({ type: "hangup" });
        callFailed(`the answer could not be used (${error.message})`);
      }
    }
  }

  function onCallState(frame) {
    if (!call) return;
    if (frame.state === "ended") {
      endCall(frame.reason ? `The call has ended: ${frame.reason}.` : "The call has ended.");
      return;
    }
    if (["speaking", "listening", "waiting"].includes(frame.state)) call.botState = frame.state;
    if (typeof frame.secure === "boolean") call.secure = frame.secure;
  }

  /** The visitor hangs up: the conversation carries on in the chat at the same step. */
  function hangUp() {
    if (!call) return;
    if (call.offered) send({ type: "hangup" });
    dropCall();
    notice("You hung up. You can keep chatting here: the conversation goes on where it was.",
      "system", "call");
    render();
  }

  function callFailed(reason) {
    if (call && call.offered) send({ type: "hangup" }); // the server may still hold it
    dropCall();
    notice(`The call could not go on: ${reason}. You can keep chatting here.`, "error", "call");
    render();
  }

  function endCall(message) {
    dropCall();
    if (message && !session.over) notice(`${message} You can keep chatting here.`, "system", "call");
    render();
  }

  function dropCall() {
    const me = call;
    call = null;
    session.partials = {};
    session.lastKeysLine = null;
    if (me) releaseMedia(me);
  }

  function releaseMedia(me) {
    clearTimeout(me.timer);
    if (me.keys) me.keys.close();
    if (me.pc) me.pc.close();
    if (me.stream) for (const track of me.stream.getTracks()) track.stop();
    ui.audio.srcObject = null;
  }
})();
