"""Intent understanding: the built-in matcher, Rasa over HTTP, and the fallback between them."""

from ivr.speech.nlu.base import IntentCatalog, IntentClassifier, NluResult

__all__ = ["IntentCatalog", "IntentClassifier", "NluResult"]
