"""The flows the server runs now, and hot reload of the files they come from.

An edit takes effect for conversations that start after it; a broken edit is refused with the
validator's messages (logged, and shown on /healthz) while the last good set keeps serving.
Running conversations keep the FlowSet they started with until they end or change channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchfiles import awatch

from ivr.flow.loader import YAML_SUFFIXES, FlowSet
from ivr.flow.problems import FlowError, Problem, errors_in
from ivr.flow.validator import validate

log = logging.getLogger("ivr.flow.reload")


class FlowRepository:
    def __init__(self, paths: Iterable[Path], env_keys: Iterable[str]) -> None:
        self.paths = [Path(p) for p in paths]
        self.env_keys = list(env_keys)
        self.current: FlowSet | None = None
        self.problems: list[Problem] = []  # of the last load attempt (warnings or refusal)
        self.version = 0
        self.refusals = 0  # loads refused because of errors
        self.loaded_at: float | None = None
        self._listeners: list[Callable[[FlowSet], None]] = []

    def on_change(self, listener: Callable[[FlowSet], None]) -> None:
        """Called with each new set before it is adopted; raising refuses the set."""
        self._listeners.append(listener)

    def _validate(self) -> tuple[FlowSet | None, list[Problem]]:
        """Pure: read and check the files (safe to run in a thread)."""
        try:
            return validate([p for p in self.paths if p.exists()], self.env_keys)
        except Exception as exc:  # e.g. RecursionError from absurdly nested YAML
            log.exception("flows could not be read")
            where = str(self.paths[0]) if self.paths else "-"
            return None, [Problem(where, 1, 1, f"cannot read the flows: {exc.__class__.__name__}")]

    def _adopt(self, flow_set: FlowSet | None, problems: list[Problem]) -> bool:
        errors = errors_in(problems)
        if flow_set is not None and not errors and not flow_set.flows:
            where = str(self.paths[0]) if self.paths else "-"
            errors = problems = [*problems, Problem(where, 1, 1, "no flow found")]
        if flow_set is not None and not errors:
            try:  # what depends on the flows (the intent classifiers) must accept them too
                for listener in self._listeners:
                    listener(flow_set)
            except Exception as exc:
                log.exception("flows refused by a listener")
                errors = problems = [*problems, Problem("-", 1, 1, f"cannot use the flows: {exc}")]
                if self.current is not None:  # restore what depends on the last good set
                    for listener in self._listeners:
                        listener(self.current)
        self.problems = problems
        if flow_set is None or errors:
            self.refusals += 1
            for problem in errors:
                log.error("flow refused: %s", problem)
            if self.current is not None:
                log.error("still serving the last good flows (version %d)", self.version)
            return False
        self.current = flow_set
        self.version += 1
        self.loaded_at = time.time()
        log.info("flows loaded (version %d): %s", self.version, ", ".join(flow_set.flows))
        return True

    def load(self) -> bool:
        """Validate the files; adopt them when clean. False (and the old set kept) otherwise."""
        return self._adopt(*self._validate())

    async def reload(self) -> bool:
        """`load`, with the reading and checking off the event loop."""
        return self._adopt(*await asyncio.to_thread(self._validate))

    def require(self) -> FlowSet:
        if self.current is None:
            raise FlowError(errors_in(self.problems) or self.problems)
        return self.current

    async def watch(self, stop: asyncio.Event | None = None) -> None:
        """Reload on every change of a YAML file below the paths, until `stop` is set."""
        existing = [p for p in self.paths if p.exists()]
        if not existing:
            return
        async for changes in awatch(
            *existing, stop_event=stop, debounce=200, step=50, recursive=True
        ):
            if any(Path(path).suffix in YAML_SUFFIXES for _, path in changes):
                await self.reload()

    def status(self) -> dict[str, object]:
        return {
            "version": self.version,
            "loaded_at": self.loaded_at,
            "flows": sorted(self.current.flows) if self.current else [],
            "refused": [str(p) for p in errors_in(self.problems)],
        }
