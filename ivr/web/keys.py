"""Typed application keys: what the web handlers may reach in the app."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from ivr.channels.links import ContinueLinks
from ivr.channels.sms.runtime import Sms
from ivr.config import Settings
from ivr.conversation_service import ConversationService
from ivr.flow.repository import FlowRepository
from ivr.metrics import Metrics
from ivr.routing.service import QueueService
from ivr.store import AgentStore, ConversationStore
from ivr.workers.supervisor import Supervisor

SETTINGS = web.AppKey("settings", Settings)
API_TOKEN = web.AppKey("api_token", str)
METRICS = web.AppKey("metrics", Metrics)
STORE = web.AppKey("store", ConversationStore)
AGENTS = web.AppKey("agents", AgentStore)  # agents' accounts and sessions, same database
HTTP = web.AppKey("http", aiohttp.ClientSession)
FLOWS = web.AppKey("flows", FlowRepository)
CONVERSATIONS = web.AppKey("conversations", ConversationService)
QUEUES = web.AppKey("queues", QueueService)  # human queues, agents' desktops, the ACD
SUPERVISOR = web.AppKey("supervisor", Supervisor)
PHONE = web.AppKey("phone", object)  # ivr.channels.voice.phone.PhoneService when SIP is on
BROWSER_CALLS = web.AppKey("browser_calls", object)  # ivr.channels.voice.browser.BrowserCalls
LINKS = web.AppKey("links", ContinueLinks)  # signed links that continue a conversation
SMS = web.AppKey("sms", Sms)  # texts in and out: gateway, outbox, SMS threads
