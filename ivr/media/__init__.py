"""The media worker: SIP calls through pjsua2, prompts, barge-in, DTMF and speech capture.

A media worker is a child process of the control plane. It holds no business state: it answers,
plays, listens, transfers and hangs up when told to, and reports what happened.
"""
