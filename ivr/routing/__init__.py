"""Routing conversations handed to humans: queues, agents and offers, as pure logic.

- `acd.py`: the `Router`, in memory and deterministic (time is passed in): agents and their
  presence, skills and capacity; waiting conversations in priority order with aging; offers,
  accepts, declines and missed offers. The routing rules are written in its docstring.
- `estimate.py`: recent handling times per queue and the expected wait of a queue position.

No I/O here: the control plane feeds the router events, persists what it must and sends the
offers to agents' desktops.
"""
