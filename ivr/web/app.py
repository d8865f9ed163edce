"""`ivr serve`: the control plane's aiohttp application and the order its parts live in.

Resources that start and must stop are async context managers listed in `RESOURCES`, in
dependency order (store, HTTP client, flows, child-process supervisor, conversations, phone
calls), entered as one `cleanup_ctx` and torn down in reverse, also when a later one fails to
start. The web side only routes requests to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from ivr.channels.links import ContinueLinks
from ivr.channels.other_ways import ChannelWays
from ivr.channels.sms.handoff import SmsHandoff
from ivr.channels.sms.runtime import sms_service
from ivr.config import Settings
from ivr.conversation_service import ConversationService, persister
from ivr.demo.crm import create_demo_crm
from ivr.flow.engine import FlowServices
from ivr.flow.loader import FlowSet
from ivr.flow.repository import FlowRepository
from ivr.metrics import Metrics
from ivr.routing.runtime import queue_service
from ivr.speech.nlu.base import IntentClassifier
from ivr.speech.nlu.factory import build_classifiers
from ivr.speech.nlu.fallback import FallbackClassifier
from ivr.store import AgentStore, open_store
from ivr.store.links import LinkStore
from ivr.web import (
    agent_auth,
    agent_desktop,
    api,
    chat,
    continue_page,
    health,
    outbox_page,
    sms,
    wallboard,
    widget,
)
from ivr.web.errors import json_errors
from ivr.web.keys import (
    AGENTS,
    API_TOKEN,
    BROWSER_CALLS,
    CONVERSATIONS,
    FLOWS,
    HTTP,
    LINKS,
    METRICS,
    PHONE,
    QUEUES,
    SETTINGS,
    SMS,
    STORE,
    SUPERVISOR,
)
from ivr.workers.supervisor import Supervisor

log = logging.getLogger("ivr.serve")

MAX_REQUEST_LINE = 32 * 1024


async def _store(app: web.Application) -> AsyncIterator[None]:
    async with open_store(app[SETTINGS].store.url) as store:
        app[STORE] = store
        app[AGENTS] = AgentStore(store.database)
        yield


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[HTTP] = session
        yield


async def _flows(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    repo = FlowRepository(
        [Path(settings.flows.dialogs), Path(settings.flows.prompts)],
        settings.flow_env_with_defaults(),
    )
    repo.load()
    app[METRICS].flows_version.set_function(lambda: repo.version)
    app[METRICS].flow_reloads_refused.set_function(lambda: repo.refusals)
    app[FLOWS] = repo
    stop = asyncio.Event()
    watcher = asyncio.create_task(repo.watch(stop)) if settings.flows.reload else None
    try:
        yield
    finally:  # also when a later resource fails (the exit stack throws its error in here)
        stop.set()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def _supervisor(app: web.Application) -> AsyncIterator[None]:
    async with Supervisor() as supervisor:
        app[SUPERVISOR] = supervisor
        yield


async def _conversations(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    repo = app[FLOWS]
    classifiers: dict[str, IntentClassifier] = {}

    def rebuild(flow_set: FlowSet) -> None:
        fresh = build_classifiers(flow_set.intents, settings.nlu, app[HTTP])
        classifiers.clear()
        classifiers.update(fresh)

    if repo.current is not None:
        rebuild(repo.current)
    repo.on_change(rebuild)
    metrics = app[METRICS]
    metrics.nlu_fallbacks.set_function(
        lambda: sum(c.fallbacks for c in classifiers.values() if isinstance(c, FallbackClassifier))
    )
    services = FlowServices(
        persist=persister(app[STORE]),
        http=app[HTTP],
        nlu=classifiers.get,
        env=settings.flow_env_with_defaults(),
        observers=[metrics],
    )
    service = ConversationService(repo, app[STORE], services)
    metrics.live_conversations.set_function(lambda: service.live_count)
    app[CONVERSATIONS] = service
    try:
        yield
    finally:  # live conversations are closed (and stored) before the store goes
        await service.close()


async def _links(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = LinkStore(app[STORE].database)
    secret = settings.http.link_secret.encode() or await store.secret("continue_links")
    ttl = settings.http.link_minutes * 60
    app[LINKS] = ContinueLinks(secret, settings.public_url, ttl, store)
    yield


async def _queues(app: web.Application) -> AsyncIterator[None]:
    async with queue_service(app[FLOWS], app[CONVERSATIONS], app[STORE]) as queues:
        app[QUEUES] = queues
        yield


async def _sms(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    conversations = app[CONVERSATIONS]
    async with sms_service(settings, app[STORE].database, app[HTTP], conversations) as texts:
        app[SMS] = texts
        # The flows' `escalate` step: a text with a continue link.
        conversations.services.handoff = SmsHandoff(app[LINKS], texts.threads)
        try:
            yield
        finally:
            conversations.services.handoff = None


async def _voice_calls(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    queues = app[QUEUES]
    if not settings.sip.enabled:  # no media workers: neither phone nor browser calls
        queues.attach_other_ways(ChannelWays(None, app[SMS].threads))
        try:
            yield
        finally:
            queues.attach_other_ways(None)
        return
    from ivr.channels.voice.runtime import voice_calls  # pjsua2 only where calls are taken

    async with voice_calls(settings, app[SUPERVISOR], app[CONVERSATIONS]) as voice:
        app[PHONE] = voice.phone
        app[BROWSER_CALLS] = voice.browser
        # What a queue may offer a waiting caller: a callback (with [sip] callback_uri), a text.
        dialler = voice.phone if settings.sip.callback_uri else None
        queues.attach_other_ways(ChannelWays(dialler, app[SMS].threads))
        try:
            yield
        finally:
            queues.attach_other_ways(None)


async def _keep_queues_on_shutdown(app: web.Application) -> None:
    queues = app.get(QUEUES)
    if queues is not None:
        queues.stop_taking_leavers()


RESOURCES = (
    _store,
    _http_client,
    _flows,
    _supervisor,
    _conversations,
    _links,
    _queues,
    _sms,
    _voice_calls,
)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    """Everything the app holds, started in order and stopped in reverse. One context, not one
    each: aiohttp does not clean up after a failed start, and those started before the failure
    (the store, the workers) must still be closed, not left to the garbage collector. An error
    is thrown into the earlier ones at their `yield`: each stops in a `finally`."""
    async with contextlib.AsyncExitStack() as stack:
        for resource in RESOURCES:
            await stack.enter_async_context(contextlib.asynccontextmanager(resource)(app))
        yield


def create_app(settings: Settings, api_token: str | None = None) -> web.Application:
    app = web.Application(
        middlewares=[json_errors, api.require_token, agent_auth.same_origin],
        client_max_size=1024 * 1024,
        # Kannel gives a received text in its get-url's query: a long UCS-2 text (1,600
        # characters, url-coded bytes) is ~10 kB, over aiohttp's default 8 kB request line.
        handler_args={"max_line_size": MAX_REQUEST_LINE},
    )
    app[SETTINGS] = settings
    app[API_TOKEN] = api_token or settings.api.token or secrets.token_urlsafe(24)
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_resources)
    health.add_routes(app)
    api.add_routes(app)
    chat.add_routes(app)
    continue_page.add_routes(app)
    widget.add_routes(app)
    agent_auth.add_routes(app)
    agent_desktop.add_routes(app)
    wallboard.add_routes(app)
    sms.add_routes(app)
    outbox_page.add_routes(app)
    # Before the chat sockets close (chat.add_routes' on_shutdown): their customers still wait.
    app.on_shutdown.insert(0, _keep_queues_on_shutdown)
    if settings.demo.crm:
        app.add_subapp("/demo/crm", create_demo_crm())
    return app
