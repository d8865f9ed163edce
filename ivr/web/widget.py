"""The visitor widget: `/widget.js`, one script that puts chat, keypad and browser calls on any
web page, and `/`, a demo company page that carries it.

The widget talks to `/chat/ws` (ivr/web/chat.py) and nothing else; this module only serves files.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

# Pages embed the script from us: a new version reaches them at the next load.
_REVALIDATE = {"Cache-Control": "no-cache"}


def _static(name: str) -> str:
    return resources.files("ivr.web").joinpath(f"static/{name}").read_text(encoding="utf-8")


async def widget_script(request: web.Request) -> web.Response:
    return web.Response(
        text=_static("widget.js"), content_type="application/javascript", headers=_REVALIDATE
    )


async def demo_page(request: web.Request) -> web.Response:
    return web.Response(text=_static("demo.html"), content_type="text/html", headers=_REVALIDATE)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", demo_page)
    app.router.add_get("/widget.js", widget_script)
