"""The visitor widget (/widget.js) in real headless Chromium, against an in-process server.

Each test drives the widget the way a visitor does (clicks, typing, the keypad) and checks what
the visitor sees in the page, what went over the chat socket and what the server kept. The server
runs without media workers (tests/serve_fixtures.py), so its hello says calls are unavailable:
tests that need the Call button route the page's socket through the test (`Relay`), which says
calls are available and, for the call itself, plays the server's part with a second page of the
same browser. Real calls to a real server: tests/test_web_widget_calls.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from playwright.async_api import BrowserContext, Locator, Page, WebSocketRoute, expect

from tests.browser import HostSite, LaunchChromium, page_errors
from tests.serve_fixtures import ALICE, FRAME_TIMEOUT_S, Served, prompt_text

CALL_FRAMES = {"call", "hangup"}


class Relay:
    """The page's chat socket, routed through the test to the real server. Every frame the page
    sends is kept in `sent`. The server's hello is replaced by `hello`; the page's call
    signalling (`call`, `hangup`) stops here, for the test to answer, the rest goes through."""

    def __init__(self, hello: dict[str, Any]) -> None:
        self.hello = hello
        self.sent: list[dict[str, Any]] = []
        self.signalling: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._page_side: WebSocketRoute | None = None

    async def install(self, context: BrowserContext) -> None:
        await context.route_web_socket(re.compile(r"/chat/ws$"), self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        self._page_side = ws
        server = ws.connect_to_server()
        ws.send(json.dumps(self.hello))

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            self.sent.append(frame)
            if frame.get("type") in CALL_FRAMES:
                self.signalling.put_nowait(frame)
            else:
                server.send(message)

        def from_server(message: str | bytes) -> None:
            if json.loads(message).get("type") != "hello":
                ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    def to_page(self, frame: dict[str, Any]) -> None:
        """A frame as if the server sent it."""
        assert self._page_side is not None, "the page opened no chat socket"
        self._page_side.send(json.dumps(frame))

    async def next_signalling(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.signalling.get(), FRAME_TIMEOUT_S)

    def sent_of(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.sent if frame.get("type") == kind]


def frames_sent(page: Page) -> list[dict[str, Any]]:
    """A list that fills with the JSON frames the page sends on its websockets."""
    sent: list[dict[str, Any]] = []

    def watch(ws: Any) -> None:
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)))

    page.on("websocket", watch)
    return sent


class Widget:
    """The widget's parts, found as a visitor finds them (roles and labels)."""

    def __init__(self, page: Page, served: Served) -> None:
        self.page = page
        self.served = served
        self.root = page.locator("#ivr-widget")
        self.log = page.get_by_role("log", name="Conversation")
        self.status = self.root.locator(".ivr-status")
        self.input = page.get_by_label("Your message")
        self.call_button = self.root.get_by_role("button", name="Call", exact=True)
        self.hangup_button = self.root.get_by_role("button", name="Hang up")
        self.keypad = page.get_by_role("group", name="Keypad")

    def prompt(self, prompt_id: str) -> str:
        return prompt_text(self.served.prompts, prompt_id)

    def lines(self, kind: str, channel: str | None = None) -> Locator:
        where = f'[data-channel="{channel}"]' if channel else ""
        return self.log.locator(f".ivr-line.ivr-{kind}{where} .ivr-text")

    async def open(self) -> None:
        await self.page.get_by_role("button", name="Talk to us").click()
        await expect(self.page.get_by_role("dialog", name="Talk to us")).to_be_visible()

    async def type(self, text: str) -> None:
        await self.input.fill(text)
        await self.input.press("Enter")

    async def keys(self, digits: str) -> None:
        if not await self.keypad.is_visible():
            await self.root.get_by_role("button", name="Keypad").click()
        for key in digits:
            await self.keypad.locator(f'button[data-key="{key}"]').click()

    async def expect_state(self, state: str, label: str) -> None:
        await expect(self.root).to_have_attribute("data-state", state)
        await expect(self.status).to_have_text(label)

    async def visible_text(self) -> str:
        """Everything the page shows and holds, but the conversation id (random hex digits that
        may hold any four in a row) and the text field's value (checked on its own)."""
        html = await self.page.content()
        conv_id = await self.root.get_attribute("data-conversation")
        return html.replace(conv_id, "<id>") if conv_id else html


async def test_the_script_and_the_demo_page_are_served(server: Served) -> None:
    async with server.session.get(server.url + "/widget.js") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/javascript"
        assert resp.headers["Cache-Control"] == "no-cache"  # pages get a new version at once
        assert "chat/ws" in await resp.text()
    status, page = await server.get("/")
    assert status == 200
    assert '<script src="/widget.js"' in page


async def test_the_demo_page_chats_the_bank_flow_and_the_keypad_keys_the_pin(
    server: Served, chromium: LaunchChromium
) -> None:
    page = await (await chromium()).new_page()
    errors = page_errors(page)
    sent = frames_sent(page)
    widget = Widget(page, server)
    await page.goto(server.url + "/")
    await expect(page).to_have_title(re.compile("Example Bank"))
    await expect(widget.root).to_have_attribute("data-state", "closed")

    await widget.open()
    await expect(widget.lines("bot")).to_have_text(
        [widget.prompt("bank_welcome"), widget.prompt("ask_account")]
    )
    await widget.expect_state("chat", "chat")
    await widget.type(ALICE["account"])
    await expect(widget.lines("customer", "chat")).to_have_text([ALICE["account"]])
    await expect(widget.lines("bot").last).to_have_text(widget.prompt("ask_pin"))
    await expect(widget.input).to_have_attribute("type", "password")  # the PIN is masked

    # The PIN by the keypad, not in a call: the keys gather in the (masked) field and go on #.
    await widget.keys(ALICE["pin"])
    await expect(widget.input).to_have_value(ALICE["pin"])
    await widget.keys("#")
    await expect(widget.lines("bot").nth(3)).to_have_text("Thank you, Alice.")
    await expect(widget.lines("customer")).to_have_text([ALICE["account"], "••••#"])
    await expect(widget.input).to_have_value("")
    await expect(widget.input).to_have_attribute("type", "text")  # the menu is not secret

    # The menu's choices are buttons, and its keys answer at once.
    await expect(widget.lines("bot").last).to_have_text(widget.prompt("main_menu"))
    await widget.root.get_by_role("button", name="1. Check balance").click()
    await expect(widget.lines("bot").nth(5)).to_have_text("Your balance is 1250.40 euros.")
    await expect(widget.lines("bot").nth(6)).to_have_text(widget.prompt("anything_else"))
    await expect(widget.lines("customer")).to_have_text(
        [ALICE["account"], "••••#", "Check balance"]
    )

    # Every line says it came by chat.
    await expect(widget.log.locator(".ivr-line")).to_have_count(10)
    channels = await widget.log.locator(".ivr-line").evaluate_all(
        "lines => lines.map(line => [line.dataset.channel, line.querySelector('.ivr-channel')"
        ".textContent])"
    )
    assert set(map(tuple, channels)) == {("chat", "💬")}

    assert [f for f in sent if f["type"] in ("start", "message", "dtmf")] == [
        {"type": "start", "flow": "bank"},
        {"type": "message", "text": ALICE["account"]},
        {"type": "dtmf", "digits": ALICE["pin"] + "#"},
        {"type": "message", "text": "1"},
    ]
    conv_id = await widget.root.get_attribute("data-conversation")
    assert conv_id
    conv = await server.conversation(conv_id)
    assert conv["channels"] == ["chat"]
    assert conv["identity"]["verified"] is True
    assert conv["identity"]["customer_id"] == ALICE["account"]

    assert ALICE["pin"] not in await widget.visible_text()
    assert ALICE["pin"] not in await widget.root.inner_text()
    assert errors == []


async def test_a_denied_microphone_is_explained_and_the_chat_goes_on(
    server: Served, chromium: LaunchChromium
) -> None:
    context = await chromium(microphone="denied")
    relay = Relay({"type": "hello", "call": True, "ice_servers": []})
    await relay.install(context)
    page = await context.new_page()
    errors = page_errors(page)
    widget = Widget(page, server)
    await page.goto(server.url + "/")
    await widget.open()
    await expect(widget.lines("bot").last).to_have_text(widget.prompt("ask_account"))
    await expect(widget.root).to_have_attribute("data-call", "available")

    await widget.call_button.click()
    problem = widget.lines("error", "call")
    await expect(problem).to_have_count(1)
    await expect(problem).to_contain_text(re.compile(r"microphone was denied", re.I))
    await expect(problem).to_contain_text("keep chatting")
    await widget.expect_state("chat", "chat")
    await expect(widget.call_button).to_be_visible()
    await expect(widget.hangup_button).to_be_hidden()
    assert await page.evaluate("window.ivrWidget.pc") is None
    assert relay.sent_of("call") == []  # nothing was offered to the server

    await widget.type(ALICE["account"])
    await expect(widget.lines("bot").last).to_have_text(widget.prompt("ask_pin"))
    assert errors == []


async def test_when_the_server_offers_no_calls_the_call_button_says_so_and_chat_works(
    server: Served, chromium: LaunchChromium
) -> None:
    """Needs the server's hello frame: this server has no media workers, so it says call:false."""
    page = await (await chromium()).new_page()
    errors = page_errors(page)
    sent = frames_sent(page)
    widget = Widget(page, server)
    await page.goto(server.url + "/")
    await widget.open()
    await expect(widget.lines("bot").last).to_have_text(widget.prompt("ask_account"))
    await expect(widget.root).to_have_attribute("data-call", "unavailable")
    await expect(widget.call_button).to_have_accessible_description(
        "Calls are not available here right now; chat works."
    )

    await widget.call_button.click()
    await expect(widget.lines("system", "call")).to_have_text(
        ["Calls are not available on this site right now. You can keep chatting here."]
    )
    await widget.expect_state("chat", "chat")
    assert [f for f in sent if f["type"] == "call"] == []

    await widget.type(ALICE["account"])
    await expect(widget.lines("bot").last).to_have_text(widget.prompt("ask_pin"))
    assert errors == []


# The server's end of a call, played by a second page: it answers the widget's offer with the
# fake microphone's beep and keeps what arrives on the data channel.
PEER_PAGE = """<!doctype html><title>peer</title><script>
window.peer = { keys: [], channels: [] };
window.answer = async (offerSdp) => {
  const pc = new RTCPeerConnection({ iceServers: [] });
  peer.pc = pc;
  pc.ondatachannel = (event) => {
    peer.channels.push(event.channel.label);
    event.channel.onmessage = (message) => peer.keys.push(message.data);
  };
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  await pc.setRemoteDescription({ type: "offer", sdp: offerSdp });
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
  });
  return pc.localDescription.sdp;
};
</script>"""

# A shop on another origin (its own port) that embeds the widget from the server.
SHOP_PAGE = """<!doctype html><title>A shop</title><h1>A shop</h1>
<script src="{server}/widget.js" defer data-flow="bank" data-title="Talk to us" data-open="true"
        data-echo-cancellation="off"></script>"""

INBOUND_AUDIO_ENERGY = """async () => {
  const pc = window.ivrWidget.pc;
  if (!pc) return 0;
  for (const report of (await pc.getStats()).values()) {
    if (report.type === "inbound-rtp" && report.kind === "audio") return report.totalAudioEnergy;
  }
  return 0;
}"""


async def test_a_call_plays_the_bot_shows_captions_sends_keys_on_the_data_channel_and_hangs_up(
    server: Served, chromium: LaunchChromium, host_site: HostSite
) -> None:
    """The widget's side of a call, on another origin's page: offer, answer, connected, the
    bot's voice playing, states and captions, keys on the data channel, hang up back to chat."""
    context = await chromium()
    relay = Relay({"type": "hello", "call": True, "ice_servers": []})
    await relay.install(context)
    pages = {"/shop": SHOP_PAGE.format(server=server.url), "/peer": PEER_PAGE}
    shop = await host_site(pages)
    peer = await context.new_page()
    await peer.goto(shop + "/peer")
    page = await context.new_page()
    errors = page_errors(page)
    widget = Widget(page, server)
    await page.goto(shop + "/shop")

    # data-open: the panel is open at once; the chat starts and reaches the PIN.
    await expect(widget.lines("bot").last).to_have_text(widget.prompt("ask_account"))
    await widget.type(ALICE["account"])
    await expect(widget.lines("bot").last).to_have_text(widget.prompt("ask_pin"))

    await widget.call_button.click()
    offer = await relay.next_signalling()
    assert offer["type"] == "call"
    assert offer["flow"] == "bank"
    assert "m=audio" in offer["sdp"]
    assert "m=application" in offer["sdp"]  # the keys' data channel
    await widget.expect_state("connecting", "call connecting…")
    await expect(widget.hangup_button).to_be_visible()
    answer = await asyncio.wait_for(
        peer.evaluate("sdp => answer(sdp)", offer["sdp"]), FRAME_TIMEOUT_S
    )
    relay.to_page({"type": "call_answer", "sdp": answer})
    await widget.expect_state("connected", "call connected")
    settings = await page.evaluate(
        "window.ivrWidget.pc.getSenders()[0].track.getSettings().echoCancellation"
    )
    assert settings is False  # data-echo-cancellation="off"
    # The bot's voice is decoded and plays (it would not without the <audio> element).
    await page.wait_for_function(f"({INBOUND_AUDIO_ENERGY})().then(e => e > 0)")

    relay.to_page({"type": "call_state", "state": "waiting"})
    await widget.expect_state("waiting", "thinking…")
    relay.to_page({"type": "call_state", "state": "listening"})
    await widget.expect_state("listening", "listening")

    # The call went on at the chat's question, the PIN: what is said or keyed shows as dots.
    # Keys go each at once on the "keys" data channel, none on the socket.
    pin_words = "two five eight zero"
    relay.to_page({"type": "caption", "who": "customer", "text": pin_words, "final": True})
    await widget.keys(ALICE["pin"])
    await peer.wait_for_function(f"peer.keys.join('') === '{ALICE['pin']}'")
    assert await peer.evaluate("peer.channels") == ["keys"]
    await expect(widget.lines("customer", "call")).to_have_text(["••••", "••••"])
    assert relay.sent_of("dtmf") == []

    # The bot's words and what it heard, marked as the call's; a partial caption is replaced
    # in place by the final one.
    relay.to_page({"type": "call_state", "state": "speaking"})
    await widget.expect_state("speaking", "bot speaking")
    said = "Thank you, Alice. What can I do for you?"
    relay.to_page({"type": "caption", "who": "bot", "text": said, "final": True})
    await expect(widget.lines("bot", "call")).to_have_text([said])
    relay.to_page({"type": "caption", "who": "customer", "text": "check", "final": False})
    heard = widget.log.locator('.ivr-customer[data-channel="call"]').last
    await expect(heard).to_have_class(re.compile("ivr-partial"))
    relay.to_page({"type": "caption", "who": "customer", "text": "check balance", "final": True})
    await expect(heard).not_to_have_class(re.compile("ivr-partial"))
    await expect(widget.lines("customer", "call")).to_have_text(["••••", "••••", "check balance"])
    await expect(heard.locator(".ivr-channel")).to_have_text("📞")
    assert pin_words not in await widget.visible_text()

    # Hang up: the server is told, the call is gone, the chat carries on at the same step.
    await widget.hangup_button.click()
    assert await relay.next_signalling() == {"type": "hangup"}
    await widget.expect_state("chat", "chat")
    assert await page.evaluate("window.ivrWidget.pc") is None
    await expect(widget.call_button).to_be_visible()
    await widget.keys(ALICE["pin"] + "#")
    await expect(widget.lines("bot", "chat").last).to_have_text(widget.prompt("main_menu"))
    assert relay.sent_of("dtmf") == [{"type": "dtmf", "digits": ALICE["pin"] + "#"}]

    # A call the server refuses: said, and the chat is still there.
    await widget.call_button.click()
    assert (await relay.next_signalling())["type"] == "call"
    relay.to_page({"type": "call_error", "reason": "every line is busy"})
    await expect(widget.lines("error", "call").last).to_have_text(
        "The call could not go on: every line is busy. You can keep chatting here."
    )
    await widget.expect_state("chat", "chat")
    assert await page.evaluate("window.ivrWidget.pc") is None
    assert ALICE["pin"] not in await widget.visible_text()
    assert errors == []
