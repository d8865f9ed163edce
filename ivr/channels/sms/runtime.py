"""SMS inside `ivr serve`: the gateway `[sms]` names, the outbox's sender, the SMS threads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from ivr.channels.sms.gateway import SmsGateway, gateway_for
from ivr.channels.sms.outbox import Outbox
from ivr.channels.sms.service import SmsConversations
from ivr.config import Settings
from ivr.conversation_service import ConversationService
from ivr.store.database import Database
from ivr.store.sms import SmsStore


@dataclass
class Sms:
    settings: Settings
    store: SmsStore
    gateway: SmsGateway
    outbox: Outbox
    threads: SmsConversations


@asynccontextmanager
async def sms_service(
    settings: Settings,
    database: Database,
    http: aiohttp.ClientSession,
    conversations: ConversationService,
) -> AsyncIterator[Sms]:
    store = SmsStore(database)
    gateway = gateway_for(settings, http)
    outbox = Outbox(store, gateway, settings.sms)
    threads = SmsConversations(
        settings.sms, store, outbox, conversations, holds=conversations.services.queues
    )
    outbox.start()
    await threads.start()
    try:
        yield Sms(settings, store, gateway, outbox, threads)
    finally:
        await threads.close()
        await outbox.close()
