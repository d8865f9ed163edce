// The SMS outbox page (/agent/outbox): texts from /agent/api/outbox, refreshed every 2 s; with
// the outbox gateway a held text's row has a form to answer it as the customer.
(() => {
  "use strict";
  const tbody = document.getElementById("texts");
  const gateway = document.getElementById("gateway");
  const error = document.getElementById("error");
  let shown = "";
  const drafts = new Map(); // number -> what was being typed, kept across refreshes

  function cell(tag, text, cls) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    node.textContent = text;
    return node;
  }

  function replyForm(number) {
    const form = document.createElement("form");
    form.className = "reply";
    const input = document.createElement("input");
    input.className = "reply-text";
    input.placeholder = `Reply as ${number}…`;
    input.value = drafts.get(number) || "";
    input.oninput = () => drafts.set(number, input.value);
    const button = cell("button", "Send", "send-reply");
    form.append(input, button);
    form.onsubmit = async (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      const response = await fetch("/agent/api/outbox/reply", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ to: number, text }),
      });
      if (!response.ok) { error.textContent = (await response.json()).error || response.statusText; return; }
      drafts.delete(number);
      input.value = "";
      refresh();
    };
    return form;
  }

  function render(data) {
    const key = JSON.stringify(data);
    if (key === shown) return; // nothing new: keep what is being typed
    shown = key;
    gateway.textContent = data.gateway === "outbox"
      ? `No SMS gateway: texts are held here (from ${data.number})`
      : `Sent through ${data.gateway} from ${data.number}`;
    const latest = new Set(); // a reply form on each customer's newest held text only
    tbody.replaceChildren(...data.texts.map((text) => {
      const row = document.createElement("tr");
      row.className = "text";
      row.dataset.state = text.state;
      row.dataset.to = text.to;
      row.dataset.conversation = text.conversation_id || "";
      const body = cell("td", text.text, "text-body");
      if (text.state === "held" && !latest.has(text.to)) {
        latest.add(text.to);
        body.append(replyForm(text.to));
      }
      const state = cell("td", "");
      state.append(cell("span", text.state, "state"));
      if (text.last_error) state.append(cell("div", text.last_error, "muted"));
      row.append(cell("td", new Date(text.created_at * 1000).toLocaleString()), cell("td", text.to), body, state);
      return row;
    }));
  }

  async function refresh() {
    try {
      const response = await fetch("/agent/api/outbox", { cache: "no-store" });
      if (response.status === 401) { location.href = "/agent/login"; return; }
      render(await response.json());
      error.textContent = "";
    } catch (exc) {
      error.textContent = `Cannot reach the server: ${exc.message}`;
    }
  }
  refresh();
  setInterval(refresh, 2000);
})();
