"""The agents' open desktops: every tab of every signed-in agent, and the frames sent to them.

An agent may have several tabs open; each gets every frame. What the queue service knows of an
agent beyond routing (their name on the timeline, their username, which is their own queue's
name, and their SIP phone if their calls go there) is learnt afresh whenever a tab opens. A tab
whose socket broke is closed as if its agent had closed it (`on_broken`). Nothing here routes
or decides; `agents.py` and `offers.py` do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Desk(Protocol):
    """One open agent desktop (an agent may have several tabs: each gets every frame)."""

    agent_id: str

    async def send(self, frame: dict[str, Any]) -> None: ...


class Desks:
    def __init__(self, on_broken: Callable[[Desk], None]) -> None:
        self._on_broken = on_broken
        self._open: dict[str, set[Desk]] = {}  # agent id -> their tabs
        self._names: dict[str, str] = {}  # agent id -> display name
        self._usernames: dict[str, str] = {}  # agent id -> username (their own queue's name)
        self._phones: dict[str, str] = {}  # agent id -> their SIP phone's URI, if they have one

    def opened(self, desk: Desk, name: str, username: str, phone: str | None) -> None:
        self._open.setdefault(desk.agent_id, set()).add(desk)
        self._names[desk.agent_id] = name
        self._usernames[desk.agent_id] = username
        if phone:
            self._phones[desk.agent_id] = phone
        else:
            self._phones.pop(desk.agent_id, None)

    def closed(self, desk: Desk) -> bool:
        """Forgets the tab; True when it was the agent's last one."""
        desks = self._open.get(desk.agent_id)
        if desks is None:
            return False
        desks.discard(desk)
        if desks:
            return False
        del self._open[desk.agent_id]
        return True

    def is_open(self, agent_id: str) -> bool:
        return agent_id in self._open

    def name(self, agent_id: str) -> str:
        return self._names.get(agent_id, agent_id)

    def username(self, agent_id: str) -> str:
        return self._usernames.get(agent_id, agent_id)

    def phone(self, agent_id: str) -> str | None:
        """The SIP URI of the agent's phone, where their calls go (None: the desktop's own)."""
        return self._phones.get(agent_id)

    def has_username(self, username: str) -> bool:
        return username in self._usernames.values()

    async def send(self, agent_id: str, frame: dict[str, Any]) -> None:
        """To every open tab of the agent (none open: nobody to tell, and that is fine)."""
        for desk in list(self._open.get(agent_id, ())):
            try:
                await desk.send(frame)
            except (ConnectionError, RuntimeError):
                self._on_broken(desk)
