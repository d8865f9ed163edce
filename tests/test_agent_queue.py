"""Conversations handed to people: a chat customer waits in a queue, an agent's desktop gets the
offer with the whole context, accepts, and the two talk; wrap-up is stored on the conversation.
Against a real server (HTTP sign-in, the desktop's websocket, the visitor's chat socket)."""

from __future__ import annotations

from typing import Any

from tests.agent_fixtures import (
    add_agent,
    add_parcels_agent,
    open_desk,
    verified_chat_asking_for_an_agent,
)
from tests.serve_fixtures import ALICE, ServeApp, Served, assert_never_shows, wait_until


def texts(card: dict[str, Any]) -> list[str]:
    return [turn["text"] for turn in card["transcript"]]


async def test_a_chat_reaches_an_agent_with_its_whole_context(server: Served) -> None:
    await add_agent(server, "dana", name="Dana Scully")
    desk = await open_desk(server, "dana")
    chat, conv_id = await verified_chat_asking_for_an_agent(server)

    offer = await desk.expect("offer", conversation_id=conv_id)
    card = offer["card"]
    assert offer["queue"] == "cards"
    assert card["customer"]["id"] == ALICE["account"]
    assert card["customer"]["verified"] is True and card["customer"]["method"] == "pin"
    assert card["customer"]["verified_on"] == "chat"
    assert any(ALICE["account"] in text for text in texts(card))  # what was said, in order
    assert_never_shows(ALICE["pin"], card)

    await desk.send({"type": "accept", "conversation_id": conv_id})
    assigned = await desk.expect("assigned")
    assert assigned["card"]["conversation_id"] == conv_id
    await chat.expect("agent_joined", name="Dana Scully")

    await chat.say("My card was swallowed by an ATM")
    said = await desk.expect("message", conversation_id=conv_id, role="customer")
    assert said["text"] == "My card was swallowed by an ATM"
    await desk.send({"type": "send", "conversation_id": conv_id, "text": "I will block it now."})
    await chat.expect("agent", "block it now", name="Dana Scully")

    await desk.send({"type": "end", "conversation_id": conv_id})
    await chat.expect("end")
    await desk.expect("ended", conversation_id=conv_id)
    await desk.send(
        {"type": "wrap_up", "conversation_id": conv_id, "code": "resolved", "notes": "blocked"}
    )
    await desk.expect("wrapped_up", conversation_id=conv_id)
    presences = [f["state"] for f in desk.frames if f["type"] == "presence"]
    assert presences[-2:] == ["wrap_up", "available"]  # free again once wrapped up

    conv = await server.conversation(conv_id)
    assert conv["status"] == "ended"
    assert conv["handoff"]["agent"]["name"] == "Dana Scully"
    assert conv["handoff"]["wrap_up"]["code"] == "resolved"
    roles = [(t["role"], t["text"]) for t in conv["timeline"]]
    assert ("customer", "My card was swallowed by an ATM") in roles
    assert ("agent", "I will block it now.") in roles
    assert_never_shows(ALICE["pin"], conv)
    await desk.close()


async def test_what_a_waiting_customer_types_reaches_the_agent(server: Served) -> None:
    chat, conv_id = await verified_chat_asking_for_an_agent(server)
    await chat.say("it is about my lost card")  # nobody is signed in yet: it waits
    await wait_until(lambda: _has_turn(server, conv_id, "it is about my lost card"), timeout=5)

    await add_agent(server, "fox")
    desk = await open_desk(server, "fox")
    offer = await desk.expect("offer", conversation_id=conv_id)
    assert "it is about my lost card" in texts(offer["card"])
    await desk.close()


async def test_an_unanswered_offer_goes_to_the_next_agent(server: Served) -> None:
    await add_agent(server, "slow")
    slow = await open_desk(server, "slow")
    _chat, conv_id = await verified_chat_asking_for_an_agent(server)
    await slow.expect("offer", conversation_id=conv_id)
    await add_agent(server, "quick")
    quick = await open_desk(server, "quick")
    # The queue's offer timeout (dialogs/queues.yaml) passes: the offer moves on.
    await slow.expect("offer_gone", conversation_id=conv_id, reason="timeout", timeout=30)
    await slow.expect("presence", state="break")
    await quick.expect("offer", conversation_id=conv_id, timeout=5)
    await slow.close()
    await quick.close()


async def test_a_customer_who_leaves_the_queue_is_counted_as_abandoned(server: Served) -> None:
    chat, conv_id = await verified_chat_asking_for_an_agent(server)
    await wait_until(lambda: _status(server, conv_id, "queued"), timeout=5)
    await chat.ws.close()
    await wait_until(lambda: _status(server, conv_id, "ended"), timeout=5)
    await add_agent(server, "late")
    desk = await open_desk(server, "late")
    assert desk.hello["assigned"] == []
    conv = await server.conversation(conv_id)
    assert any("left while waiting" in t["text"] for t in conv["timeline"])
    await desk.close()


async def test_the_desk_refuses_strangers_and_other_queues(server: Served) -> None:
    status, body = await server.get("/agent/ws")
    assert status == 401 and "sign in" in body["error"]
    _chat, conv_id = await verified_chat_asking_for_an_agent(server)
    await add_agent(server, "parcels", queues=["parcels"], skills={"logistics": 5})
    desk = await open_desk(server, "parcels")
    async with desk.session.get(f"{server.url}/agent/api/conversations/{conv_id}") as resp:
        assert resp.status == 404  # not a queue this agent serves
    await desk.send({"type": "accept", "conversation_id": conv_id})
    error = await desk.expect("error")
    assert conv_id in error["reason"] or "not" in error["reason"]
    await desk.send({"type": "dance"})
    await desk.expect("error")
    await desk.close()


async def _status(server: Served, conv_id: str, status: str) -> bool | None:
    conv = await server.conversation(conv_id)
    return True if conv["status"] == status else None


async def _has_turn(server: Served, conv_id: str, text: str) -> bool | None:
    conv = await server.conversation(conv_id)
    return True if any(t["text"] == text for t in conv["timeline"]) else None


async def test_the_queue_survives_a_restart_of_the_server(serve_app: ServeApp, tmp_path) -> None:
    store_url = f"sqlite:///{tmp_path}/restart.db"
    first = await serve_app(store_url)
    _chat, conv_id = await verified_chat_asking_for_an_agent(first)
    await wait_until(lambda: _status(first, conv_id, "queued"), timeout=5)
    await first.stop()

    second = await serve_app(store_url)
    conv = await second.conversation(conv_id)
    assert conv["status"] == "queued"  # not abandoned: the server went, not the customer
    await add_agent(second, "night")
    desk = await open_desk(second, "night")
    offer = await desk.expect("offer", conversation_id=conv_id)
    assert offer["card"]["customer"]["verified"] is True
    assert offer["card"]["waited"] >= 0
    await desk.close()


async def test_an_agent_transfers_to_another_queue_and_to_a_colleague_with_a_note(
    server: Served,
) -> None:
    await add_agent(server, "dana", name="Dana Scully")
    await add_parcels_agent(server)
    await add_agent(server, "kim", name="Kim Lee", queues=())  # serves no queue: by name only
    dana = await open_desk(server, "dana")
    gus = await open_desk(server, "gus")
    kim = await open_desk(server, "kim")
    chat, conv_id = await verified_chat_asking_for_an_agent(server)
    await dana.expect("offer", conversation_id=conv_id)
    await dana.send({"type": "accept", "conversation_id": conv_id})
    await dana.expect("assigned")

    status, targets = await server.get(
        "/agent/api/transfer-targets", headers={"Cookie": _cookie(dana)}
    )
    assert status == 200, targets
    assert {"cards", "general", "parcels"} <= set(targets["queues"])
    assert {a["queue"] for a in targets["agents"]} == {"@gus", "@kim"}  # not dana herself

    await dana.send(
        {"type": "transfer", "conversation_id": conv_id, "to": "parcels", "note": "lost parcel"}
    )
    await dana.expect("transferred", conversation_id=conv_id, to="queue parcels")
    await chat.expect("notice", "transferring you")
    offer = await gus.expect("offer", conversation_id=conv_id)
    said = [turn["text"] for turn in offer["card"]["transcript"]]
    assert "Dana Scully transferred the conversation to queue parcels: lost parcel" in said
    await gus.send({"type": "accept", "conversation_id": conv_id})
    await chat.expect("agent_joined", name="Gus Grissom")

    await gus.send({"type": "transfer", "conversation_id": conv_id, "to": "@kim", "note": ""})
    await gus.expect("transferred", conversation_id=conv_id, to="agent kim")
    await kim.expect("offer", conversation_id=conv_id)
    await kim.send({"type": "accept", "conversation_id": conv_id})
    await chat.expect("agent_joined", name="Kim Lee")
    await chat.say("Thanks")
    await kim.expect("message", conversation_id=conv_id, role="customer", text="Thanks")

    await kim.send({"type": "transfer", "conversation_id": conv_id, "to": "nowhere"})
    # an unknown queue is refused before anything changes
    refused = await kim.expect("error", conversation_id=conv_id)
    assert "nowhere" in refused["reason"]
    for desk in (dana, gus, kim):
        await desk.close()


def _cookie(desk: Any) -> str:
    return "; ".join(f"{c.key}={c.value}" for c in desk.session.cookie_jar)
