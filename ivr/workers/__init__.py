"""Child processes of the control plane.

`ivr serve` is one asyncio process (the control plane); everything that must not run in it —
media workers (pjsua2, at most 4 calls each), speech workers (ASR/TTS that hold the GIL),
Kamailio, an optional Rasa server — runs as a child process. `supervisor` starts, watches and
restarts them; the worker programs and their IPC live next to it.
"""
