"""The control plane's web side (aiohttp): REST API, chat websocket, health, metrics, pages.

Depends on the conversation service, the flows and the store; nothing depends on it.
"""
