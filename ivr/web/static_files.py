"""Our own static pages and scripts (`ivr/web/static/`), with the headers they are served with.

Pages that show agents' or customers' data (the wallboard, the SMS outbox) run nothing but our
own scripts under a strict CSP, are never framed (clickjacking) and never cached. Scripts are
revalidated at each load, so a new version reaches the pages at once.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

VIEW_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}


def read(name: str) -> str:
    return resources.files("ivr.web").joinpath(f"static/{name}").read_text(encoding="utf-8")


def view_page(name: str) -> web.Response:
    return web.Response(text=read(name), content_type="text/html", headers=VIEW_HEADERS)


def script(name: str) -> web.Response:
    return web.Response(
        text=read(name), content_type="text/javascript", headers={"Cache-Control": "no-cache"}
    )
