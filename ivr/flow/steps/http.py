"""`http`: call a customer system and keep its JSON answer as `lookups.<as>`.

Timeouts, refused connections, non-2xx answers and non-JSON bodies all lead to the step's
`on_error` (or the flow's default) with the reason on the timeline: never a crash, never a
stuck caller. Secure answers may be sent (`secrets.pin` in a body) but are not kept.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from ivr.flow import model as m
from ivr.flow.engine import FlowRun, Next, StepResult
from ivr.flow.templates import TemplateProblem, render_text, render_value

MAX_BODY = 1024 * 1024


class LookupFailed(Exception):
    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise LookupFailed("answer larger than 1 MiB")
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch_json(run: FlowRun, action: m.HttpAction) -> Any:
    """Perform the request described by `action`; its JSON answer or LookupFailed."""
    session = run.services.http
    if session is None:
        raise LookupFailed("no HTTP client configured")
    context = run.context()
    try:
        url = render_text(action.url, context, "url")
        headers = {k: render_text(v, context, "strict") for k, v in action.headers.items()}
        body = render_value(action.body, context) if action.body is not None else None
    except TemplateProblem as exc:
        raise LookupFailed(str(exc)) from None
    try:
        async with session.request(
            action.method,
            url,
            headers=headers,
            json=body,
            timeout=aiohttp.ClientTimeout(total=action.timeout),
        ) as response:
            if response.status >= 400:
                raise LookupFailed(f"HTTP {response.status}", response.status)
            raw = await _read_capped(response)
    except TimeoutError:
        raise LookupFailed(f"timed out after {action.timeout:g} s") from None
    except (aiohttp.ClientError, asyncio.CancelledError, ValueError) as exc:
        if isinstance(exc, asyncio.CancelledError):
            raise
        # The class only: aiohttp's messages may quote the URL, which may carry a secret.
        raise LookupFailed(f"request failed: {exc.__class__.__name__}") from None
    try:
        return json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise LookupFailed("answer is not JSON") from None


async def run(step: m.HttpStep, run: FlowRun) -> StepResult:
    name = step.http.as_
    try:
        run.conv.lookups[name] = await fetch_json(run, step.http)
    except LookupFailed as exc:
        run.conv.lookups[name] = None
        return await run.give_up(run.error_step(step), f"lookup {name!r} failed: {exc}")
    run.system(f"lookup {name!r} done")
    return Next(step.next)
