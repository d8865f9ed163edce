"""The REST API, /healthz, /metrics and hot reload of the flow files, over real HTTP."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from tests.serve_fixtures import (
    ALICE,
    BOB,
    Chat,
    ServeApp,
    Served,
    assert_never_shows,
    wait_until,
)


def write_atomically(path: Path, text: str) -> None:
    """Replace a file in one step, as editors that save safely do (no half-written file)."""
    scratch = path.with_name(path.name + ".saving")
    scratch.write_text(text, encoding="utf-8")
    os.replace(scratch, path)


async def metric(server: Served, sample_name: str, **labels: str) -> float | None:
    status, text = await server.get("/metrics")
    assert status == 200
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return sample.value
    return None


async def start_chat_at_account_question(server: Served, flow: str = "bank") -> tuple[Chat, str]:
    chat = await server.chat()
    conv_id = await chat.start(flow)
    await chat.expect_prompt("ask_account")
    return chat, conv_id


# ------------------------------------------------------------------ the token


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["no header", "wrong token", "empty token", "basic auth"],
)
@pytest.mark.parametrize("path", ["/api/conversations", "/api/conversations/x", "/api/flows"])
async def test_api_without_the_right_token_is_401_with_a_json_reason(
    server: Served, headers: dict[str, str], path: str
) -> None:
    status, body = await server.get(path, headers=headers)
    assert status == 401
    assert isinstance(body, dict), body
    assert "token" in body["error"]


async def test_api_with_the_token_answers(server: Served) -> None:
    status, body = await server.api("/api/conversations")
    assert status == 200
    assert body == {"conversations": []}
    # The token is what was configured, not a random one.
    status, _ = await server.get(
        "/api/conversations", headers={"Authorization": f"bearer {server.token}"}
    )
    assert status == 200


async def test_flows_are_listed(server: Served) -> None:
    status, body = await server.api("/api/flows")
    assert status == 200
    assert body["flows"] == ["bank", "parcel"]
    bank = next(d for d in body["details"] if d["flow"] == "bank")
    assert bank["file"].endswith("bank.yaml")
    assert bank["steps"] > 10


# ------------------------------------------------------------------ conversations


async def test_list_is_newest_first_and_honours_limit(server: Served) -> None:
    first, first_id = await start_chat_at_account_question(server)
    _, second_id = await start_chat_at_account_question(server)
    _, third_id = await start_chat_at_account_question(server)

    status, body = await server.api("/api/conversations?limit=2")
    assert status == 200
    assert [c["id"] for c in body["conversations"]] == [third_id, second_id]
    status, body = await server.api("/api/conversations")
    assert [c["id"] for c in body["conversations"]] == [third_id, second_id, first_id]
    summary = body["conversations"][0]
    assert summary["channels"] == ["chat"]
    assert summary["flow"] == "bank"
    assert summary["status"] == "active"
    assert summary["turns"] == 2  # the welcome and the question
    assert summary["identity"]["verified"] is False

    # The one the customer just answered comes first again.
    await first.say(ALICE["account"])
    await first.expect_prompt("ask_pin")
    status, body = await server.api("/api/conversations?limit=1")
    assert [c["id"] for c in body["conversations"]] == [first_id]


@pytest.mark.parametrize("limit", ["abc", "0", "-1", "501", "", "2.5"])
async def test_bad_limit_is_400_with_a_json_reason(server: Served, limit: str) -> None:
    status, body = await server.api(f"/api/conversations?limit={limit}")
    assert status == 400
    assert "limit" in body["error"]


async def test_unknown_conversation_is_404_with_a_json_reason(server: Served) -> None:
    status, body = await server.api("/api/conversations/0123456789abcdef")
    assert status == 404
    assert "0123456789abcdef" in body["error"]
    status, body = await server.api("/api/no-such-thing")
    assert status == 404
    assert isinstance(body, dict) and body["error"]


async def test_a_live_conversation_can_be_read_while_it_runs(server: Served) -> None:
    chat, conv_id = await start_chat_at_account_question(server)
    await chat.say(BOB["account"])
    await chat.expect_prompt("ask_pin")
    conv = await server.conversation(conv_id)
    assert conv["status"] == "active"
    assert conv["position"]["step"] == "verify"
    assert [t["role"] for t in conv["timeline"]] == ["bot", "bot", "customer", "bot"]
    assert_never_shows(BOB["pin"], conv)  # the CRM record holds it; the conversation never


# ------------------------------------------------------------------ health and metrics


async def test_healthz_is_200_with_the_flows_in_service(server: Served) -> None:
    status, body = await server.get("/healthz")  # no token needed
    assert status == 200
    assert body["status"] == "ok"
    assert body["problems"] == []
    assert body["flows"]["flows"] == ["bank", "parcel"]
    assert body["flows"]["version"] >= 1
    assert body["flows"]["refused"] == []
    assert body["conversations"] == {"live": 0, "stored": 0}


async def test_metrics_count_the_turns_of_a_chat(server: Served) -> None:
    status, text = await server.get("/metrics")
    assert status == 200
    assert "ivr_flows_version 1.0" in text
    assert await metric(server, "ivr_turns_total", channel="chat", role="customer") is None

    chat, _ = await start_chat_at_account_question(server)
    await chat.say(ALICE["account"])
    await chat.expect_prompt("ask_pin")
    await chat.say("")
    await chat.expect_error("empty")

    assert await metric(server, "ivr_turns_total", channel="chat", role="customer") == 1
    assert await metric(server, "ivr_turns_total", channel="chat", role="bot") == 3
    assert await metric(server, "ivr_conversations_started_total", flow="bank", channel="chat") == 1
    assert await metric(server, "ivr_chat_input_errors_total", reason="empty") == 1
    assert await metric(server, "ivr_live_conversations") == 1
    assert await metric(server, "ivr_flow_loads_refused") == 0
    _, text = await server.get("/metrics")
    assert 'ivr_turns_total{channel="chat",role="customer"} 1.0' in text


# ------------------------------------------------------------------ hot reload


async def test_hot_reload_applies_valid_edits_to_new_conversations(server: Served) -> None:
    before = (await server.health())["flows"]["version"]
    old_chat, _ = await start_chat_at_account_question(server)

    old_pin_question = old_chat.prompt("ask_pin")
    catalogue = server.prompts / "en.yaml"
    yaml = YAML()  # round trip: the file stays as its author wrote it, but for the edit
    document = yaml.load(catalogue.read_text(encoding="utf-8"))
    document["prompts"]["bank_welcome"] = "Welcome to Southwind Bank."
    document["prompts"]["ask_pin"] = "Type your secret PIN now."
    edited = io.StringIO()
    yaml.dump(document, edited)
    write_atomically(catalogue, edited.getvalue())

    flows = await server.wait_for_flows_version(above=before)
    assert flows["refused"] == []
    assert await metric(server, "ivr_flows_version") == flows["version"]

    new_chat = await server.chat()
    await new_chat.start()
    await new_chat.expect_bot("^Welcome to Southwind Bank.$")
    await new_chat.expect_prompt("ask_account")
    await new_chat.say(ALICE["account"])
    await new_chat.expect_question("^Type your secret PIN now.$")

    # The conversation that started before the edit goes on with the flows it started with.
    await old_chat.say(BOB["account"])
    await old_chat.expect_question(f"^{re.escape(old_pin_question)}$")


@pytest.mark.parametrize(
    ("edit", "message", "at"),
    [
        (lambda text: text + "  broken: [unclosed\n", r"YAML|syntax|expected", None),
        (
            lambda text: text.replace("next: identify", "next: nowhere"),
            r"unknown step 'nowhere'",
            "next: nowhere",
        ),
    ],
    ids=["yaml syntax", "unknown step"],
)
async def test_broken_edit_is_refused_and_the_last_good_flow_keeps_serving(
    server: Served, edit: Callable[[str], str], message: str, at: str | None
) -> None:
    before = (await server.health())["flows"]
    flow_file = server.dialogs / "bank.yaml"
    good = flow_file.read_text(encoding="utf-8")
    broken = edit(good)
    write_atomically(flow_file, broken)

    flows = await server.wait_for_refusals()
    assert flows["version"] == before["version"]
    assert flows["flows"] == ["bank", "parcel"]
    refused = [r for r in flows["refused"] if re.search(message, r)]
    assert refused, flows["refused"]
    place = re.match(r"^(.*bank\.yaml):(\d+):\d+: ", refused[0])
    assert place, refused[0]
    assert Path(place[1]).resolve() == flow_file.resolve()
    if at is not None:
        line = next(n for n, text in enumerate(broken.splitlines(), 1) if at in text)
        assert int(place[2]) == line
    assert await metric(server, "ivr_flow_loads_refused") >= 1
    health = await server.health()
    assert health["status"] == "ok"  # still serving: the last good flows are in service

    chat = await server.chat()
    await chat.start("bank")
    await chat.expect_prompt("bank_welcome")
    await chat.expect_prompt("ask_account")
    await chat.say(ALICE["account"])
    await chat.expect_prompt("ask_pin")

    # Mending the file puts it in service and clears the refusal.
    write_atomically(flow_file, good)
    flows = await server.wait_for_flows_version(above=before["version"])
    assert flows["refused"] == []


# ------------------------------------------------------------------ PostgreSQL


@pytest.mark.postgres
async def test_store_on_postgres_serves_the_api(
    serve_app: ServeApp, fresh_postgres_url: str
) -> None:
    server = await serve_app(store_url=fresh_postgres_url)
    chat = await server.chat()
    conv_id = await chat.start()
    await chat.expect_prompt("ask_account")
    await chat.say(ALICE["account"])
    await chat.expect_prompt("ask_pin")
    await chat.keys(ALICE["pin"])
    await chat.expect_prompt("main_menu")
    await chat.close()

    async def left() -> dict | None:
        conv = await server.conversation(conv_id)
        return conv if conv["timeline"][-1]["role"] == "system" else None

    conv = await wait_until(left, timeout=5)
    assert conv["identity"]["verified"] is True
    assert conv["identity"]["method"] == "pin"
    assert conv["position"]["step"] == "menu"
    customer = [t["text"] for t in conv["timeline"] if t["role"] == "customer"]
    assert customer == [ALICE["account"], "[secure input]"]
    assert_never_shows(ALICE["pin"], conv)

    status, body = await server.api("/api/conversations?limit=5")
    assert status == 200
    assert [c["id"] for c in body["conversations"]] == [conv_id]
    health = await server.health()
    assert health["status"] == "ok"
    assert health["conversations"]["stored"] == 1
