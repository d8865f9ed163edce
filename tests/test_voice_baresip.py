"""A third-party softphone (baresip) calls the server and chooses a menu option by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.conversation import Role, Status
from ivr.web.keys import STORE
from tests.baresip import Baresip, available
from tests.serve_fixtures import ServeApp
from tests.voice_fixtures import start_voice_server

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not available(), reason="baresip is not installed (make test installs it)"),
]

KEYS_FLOW = """
flow: keys
language: en
numbers: ["4000"]
start: menu
steps:
  menu:
    menu:
      prompt: "Press 1 for sales, or 2 for support."
      input: [dtmf]
      options:
        - {key: "1", label: Sales, next: sales}
        - {key: "2", label: Support, next: support}
  sales:
    end: "You chose sales. Goodbye."
  support:
    end: "You chose support. Goodbye."
"""


async def test_baresip_picks_a_menu_option_with_a_key(
    serve_app: ServeApp, flow_files: tuple[Path, Path], tmp_path: Path
) -> None:
    (flow_files[0] / "keys.yaml").write_text(KEYS_FLOW)
    server = await start_voice_server(serve_app, tmp_path)
    async with Baresip(tmp_path / "baresip") as phone:
        phone.command("dial", server.uri("4000"))
        await phone.event("CALL_ESTABLISHED")
        await phone.event("CALL_RTPESTAB")  # the bot's audio arrives: the menu prompt plays
        phone.command("sndcode", "2")  # during the prompt: barge-in is on for questions
        try:
            await phone.event("CALL_CLOSED", timeout=20)  # the flow says goodbye and hangs up
        except TimeoutError:
            recent = await server.served.app[STORE].list_recent(1)
            pytest.fail(f"the call was not closed; conversation: {recent[0].timeline}")
    conv = await server.last_conversation()
    assert conv.status is Status.ENDED
    assert [t.text for t in conv.timeline if t.role is Role.CUSTOMER] == ["2"]
    assert "You chose support. Goodbye." in [t.text for t in conv.timeline if t.role is Role.BOT]
