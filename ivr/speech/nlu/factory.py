"""Which classifier answers for which language, built from the settings and the intent files.

The built-in matcher always exists for every language with intents; with `[nlu] engine = rasa`
the Rasa server answers first and the built-in matcher takes over when it is down or slow.
Rebuilt whenever the flows are reloaded, since the intent examples may have changed.
"""

from __future__ import annotations

import aiohttp

from ivr.config import NluSettings
from ivr.speech.nlu.base import IntentCatalog, IntentClassifier
from ivr.speech.nlu.builtin import BuiltinMatcher
from ivr.speech.nlu.fallback import FallbackClassifier
from ivr.speech.nlu.rasa import RasaClassifier


def build_classifiers(
    catalogs: dict[str, IntentCatalog],
    settings: NluSettings,
    session: aiohttp.ClientSession | None = None,
) -> dict[str, IntentClassifier]:
    classifiers: dict[str, IntentClassifier] = {}
    for language, catalog in catalogs.items():
        builtin = BuiltinMatcher(catalog, threshold=settings.threshold)
        if settings.engine == "rasa":
            rasa = RasaClassifier(settings.rasa_url, session, timeout=settings.rasa_timeout)
            classifiers[language] = FallbackClassifier(
                rasa, builtin, settings.rasa_threshold, timeout=settings.rasa_timeout
            )
        else:
            classifiers[language] = builtin
    return classifiers
