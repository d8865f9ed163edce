"""`ivr call`: a small pjsua2 test softphone for ops staff and the test suite.

It dials a SIP URI (or answers one call), runs a script of caller actions (wait for the bot's
prompt, send DTMF, say or play audio, expect a transfer, hang up) and prints what happened as
one JSON object. Modules: `script` (parsing actions), `audio` (TTS, WAV, speech detection),
`phone` (pjsua2), `runner` (the actions and the outcome), `cli` (the command line, also run by
`python -m ivr.softphone`).
"""

from ivr.softphone.cli import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
