"""On-premise IVR and voice-bot server: one conversation across voice, chat and SMS."""

__version__ = "0.1.0"
