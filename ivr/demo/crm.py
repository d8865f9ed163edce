"""A demo customer system, served at /demo/crm, so the example flows work out of the box.

It stands where a real CRM would: flows reach it only through their http and verify steps at
`env.CRM_URL`, exactly as they would reach a real one. The data is invented and kept in memory.
"""

from __future__ import annotations

import copy
from datetime import date, timedelta
from typing import Any

from aiohttp import web

CUSTOMERS: dict[str, dict[str, Any]] = {
    "12345678": {
        "id": "12345678", "first_name": "Alice", "last_name": "Martin",
        "phone": "+15551234567", "vip": False, "pin": "2580",
        "balance": {"amount": "1250.40", "currency": "euros"}, "card_last4": "4321",
    },
    "87654321": {
        "id": "87654321", "first_name": "Bob", "last_name": "Okafor",
        "phone": "+15557654321", "vip": True, "pin": "9876",
        "balance": {"amount": "98000.00", "currency": "euros"}, "card_last4": "8765",
    },
}  # fmt: skip

PARCELS: dict[str, dict[str, Any]] = {
    "1234567890": {"status": "in_transit", "status_text": "on its way to your local depot"},
    "5555555555": {"status": "delivered", "delivered_on": "Monday"},
}

CRM_DATA = web.AppKey("crm_data", dict)


def _customer(request: web.Request) -> dict[str, Any]:
    customers = request.app[CRM_DATA]["customers"]
    customer = customers.get(request.match_info["id"])
    if customer is None:
        raise web.HTTPNotFound(
            text='{"error": "no such customer"}', content_type="application/json"
        )
    return customer


async def get_customer(request: web.Request) -> web.Response:
    customer = _customer(request)
    public = {k: v for k, v in customer.items() if k not in ("balance", "card_last4")}
    return web.json_response(public)


async def get_balance(request: web.Request) -> web.Response:
    return web.json_response(_customer(request)["balance"])


async def block_card(request: web.Request) -> web.Response:
    customer = _customer(request)
    customer["card_blocked"] = True
    return web.json_response({"blocked": True, "last4": customer["card_last4"]})


async def get_parcel(request: web.Request) -> web.Response:
    parcel = request.app[CRM_DATA]["parcels"].get(request.match_info["number"])
    if parcel is None:
        raise web.HTTPNotFound(text='{"error": "no such parcel"}', content_type="application/json")
    eta = parcel.get("eta") or (date.today() + timedelta(days=2)).isoformat()
    return web.json_response({**parcel, "eta": eta})


async def reschedule_parcel(request: web.Request) -> web.Response:
    parcel = request.app[CRM_DATA]["parcels"].get(request.match_info["number"])
    if parcel is None:
        raise web.HTTPNotFound()
    try:
        body = await request.json()
        new_date = date.fromisoformat(str(body["date"]))
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": 'body must be {"date": "YYYY-MM-DD"}'}, status=400)
    parcel["eta"] = new_date.isoformat()
    return web.json_response({"eta": parcel["eta"]})


def create_demo_crm() -> web.Application:
    app = web.Application()
    app[CRM_DATA] = {"customers": copy.deepcopy(CUSTOMERS), "parcels": copy.deepcopy(PARCELS)}
    app.router.add_get("/customers/{id}", get_customer)
    app.router.add_get("/accounts/{id}/balance", get_balance)
    app.router.add_post("/customers/{id}/cards/block", block_card)
    app.router.add_get("/parcels/{number}", get_parcel)
    app.router.add_post("/parcels/{number}/reschedule", reschedule_parcel)
    return app
