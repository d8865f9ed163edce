"""Supervisor of the control plane's child processes.

The control plane (`ivr serve`) starts media workers, speech workers, Kamailio and optionally a
Rasa server as child processes. This module holds what it needs to run them: a `ChildSpec` says
how to run one, a `Supervisor` (an async context manager, fits aiohttp's `cleanup_ctx`) starts
them, forwards their stdout/stderr lines to the `ivr.workers.<name>` loggers, restarts the ones
that exit unexpectedly (per policy, with capped exponential backoff), tells observers about every
unexpected exit (e.g. "media worker lost": end its calls) and stops them all, in reverse start
order, when the context is left.

Each child runs in its own process group (a stop signals the whole group, so grandchildren go
too) and, on Linux, asks the kernel to SIGKILL it when the control plane dies (PR_SET_PDEATHSIG):
a crashed or SIGKILLed control plane never runs its cleanup, and orphaned media workers would keep
the SIP port and their calls forever. (The kernel sends it when the *thread* that forked the child
ends; asyncio forks from the event-loop thread, which lives as long as the control plane.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

log = logging.getLogger(__name__)

RestartPolicy = Literal["always", "on-failure", "never"]
State = Literal["starting", "ready", "running", "backoff", "stopped", "failed"]
ExitObserver = Callable[[str, int | None], Awaitable[None] | None]
_LIVE: frozenset[str] = frozenset({"starting", "ready", "running"})


@dataclass(frozen=True)
class ChildSpec:
    """How to run one child process and what to do when it exits."""

    name: str  # also the logger suffix: ivr.workers.<name>
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)  # overrides over os.environ
    cwd: str | None = None
    restart: RestartPolicy = "on-failure"
    backoff_initial: float = 0.5  # seconds before the first restart; doubles per crash...
    backoff_max: float = 30.0  # ...up to this
    stable_after: float = 30.0  # a child up this long has its backoff reset
    stop_timeout: float = 5.0  # SIGTERM, then SIGKILL after this many seconds
    ready_check: Callable[[], Awaitable[bool]] | None = None  # polled until True
    ready_interval: float = 0.1
    ready_timeout: float = 30.0  # not ready by then: the child is killed (counts as a crash)

    def __post_init__(self) -> None:
        if not self.name or not self.argv:
            raise ValueError("a child needs a name and an argv")
        if self.restart not in ("always", "on-failure", "never"):
            raise ValueError(f"unknown restart policy {self.restart!r}")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise ValueError("need 0 < backoff_initial <= backoff_max")


class ChildFailed(RuntimeError):
    """The child stopped or failed while someone waited for it to become ready."""


if sys.platform.startswith("linux"):
    _libc = ctypes.CDLL(None, use_errno=True)  # loaded here, not in the forked child
    _PR_SET_PDEATHSIG = 1

    def _preexec(parent_pid: int) -> Callable[[], None] | None:
        def die_with_parent() -> None:  # runs in the child between fork and exec
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before prctl: too late to ask
                os._exit(1)

        return die_with_parent
else:  # pragma: no cover - elsewhere children may outlive a crashed control plane

    def _preexec(parent_pid: int) -> Callable[[], None] | None:
        return None


def _describe(rc: int | None) -> str:
    if rc is None:
        return "could not be started"
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-rc).name}"
    return f"exited with code {rc}"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the child leads its own group: pgid == pid


async def _exit_of(proc: asyncio.subprocess.Process) -> int:
    """The child's exit status as soon as it has exited. `Process.wait()` also waits for its
    pipes to close, and grandchildren that outlive it (Kamailio's workers after its main
    process was killed) hold them open: the exit would go unseen, with no restart."""
    waiter = asyncio.ensure_future(proc.wait())
    while proc.returncode is None:
        await asyncio.wait([waiter], timeout=0.5)  # returncode is set on SIGCHLD, pipes or not
    if not waiter.done():
        waiter.cancel()
    return proc.returncode


class Child:
    """One supervised child: the current process of a spec, and its history."""

    def __init__(self, spec: ChildSpec, supervisor: Supervisor) -> None:
        self.spec = spec
        self.state: State = "starting"
        self.restarts = 0
        self.returncode: int | None = None  # of the last process that exited
        self._sup = supervisor
        self._proc: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._out = logging.getLogger(f"ivr.workers.{spec.name}")

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        """Pid of the running process, None between processes."""
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    @property
    def uptime(self) -> float:
        return time.monotonic() - self._started_at if self.state in _LIVE else 0.0

    def snapshot(self) -> dict[str, object]:
        return {
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "uptime_seconds": round(self.uptime, 3),
            "returncode": self.returncode,
        }

    async def wait_until(self, predicate: Callable[[Child], bool], timeout: float) -> None:
        """Wait (at most `timeout` s, else TimeoutError) until `predicate(child)` holds."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                await self._changed.wait()

    async def wait_ready(self, timeout: float) -> None:
        """Wait until the child is ready ("running" when it has no readiness check)."""
        await self.wait_until(
            lambda c: c.state in ("ready", "running", "stopped", "failed"), timeout
        )
        if self.state in ("stopped", "failed"):
            raise ChildFailed(f"{self.name} is {self.state} ({_describe(self.returncode)})")

    def _set(self, state: State) -> None:
        self.state = state
        self._changed.set()  # wake every waiter, then arm a fresh event for the next change
        self._changed = asyncio.Event()

    async def _spawn(self) -> None:
        self._set("starting")
        spec = self.spec
        self._proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **spec.env},
            cwd=spec.cwd,
            process_group=0,  # own group: signals reach grandchildren, ^C at a tty does not
            preexec_fn=_preexec(os.getpid()),
        )
        self._started_at = time.monotonic()
        log.info("%s started (pid %d)", self.name, self._proc.pid)
        self._set("starting" if spec.ready_check else "running")

    async def _supervise(self) -> None:
        """Run loop: wait for the process, then restart it per policy until told to stop."""
        spec, delay = self.spec, self.spec.backoff_initial
        try:
            while True:
                if self._proc is None:
                    try:
                        await self._spawn()
                    except OSError as e:
                        log.error("%s could not be started: %s", self.name, e)
                        self.returncode, uptime = None, 0.0
                if self._proc is not None:
                    uptime = await self._watch(self._proc)
                    self._proc = None
                if self._stopping.is_set():
                    return
                rc = self.returncode
                await self._sup._notify(self.name, rc)
                if spec.restart == "never" or (spec.restart == "on-failure" and rc == 0):
                    level = logging.INFO if rc == 0 else logging.ERROR
                    log.log(
                        level, "%s %s; not restarting (%s)", self.name, _describe(rc), spec.restart
                    )
                    self._set("stopped" if rc == 0 else "failed")
                    return
                if uptime >= spec.stable_after:
                    delay = spec.backoff_initial
                log.warning("%s %s; restarting in %.2fs", self.name, _describe(rc), delay)
                self._set("backoff")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                    return  # stopped during the backoff
                delay = min(delay * 2, spec.backoff_max)
                self.restarts += 1
        except Exception:  # a bug here must not leave a child silently unsupervised
            log.exception("supervising %s failed", self.name)
            self._set("failed")
        finally:  # also on cancellation: never leave a process behind
            if self._proc is not None and self._proc.returncode is None:
                _signal_group(self._proc.pid, signal.SIGKILL)

    async def _watch(self, proc: asyncio.subprocess.Process) -> float:
        """Forward output, probe readiness, wait for exit; return how long it was up."""
        assert proc.stdout and proc.stderr
        pumps = [asyncio.create_task(self._pump(s)) for s in (proc.stdout, proc.stderr)]
        probe = asyncio.create_task(self._probe(proc)) if self.spec.ready_check else None
        if self._stopping.is_set():  # stop() came while we were spawning
            await self._terminate(proc)
        self.returncode = await _exit_of(proc)
        uptime = time.monotonic() - self._started_at
        if probe:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
        _signal_group(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
        _, pending = await asyncio.wait(pumps, timeout=1.0)  # pipes may be held by leftovers
        for task in pending:
            task.cancel()
        return uptime

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # longer than the stream limit; asyncio discarded it
                self._out.warning("(overlong output line dropped)")
                continue
            if not line:
                return
            self._out.info("%s", line.decode(errors="replace").rstrip("\r\n"))

    async def _probe(self, proc: asyncio.subprocess.Process) -> None:
        check, spec = self.spec.ready_check, self.spec
        assert check is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.ready_timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                if await asyncio.wait_for(check(), remaining):
                    log.info("%s is ready", self.name)
                    self._set("ready")
                    return
            except Exception as e:  # a refused connection is just "not yet"
                log.debug("%s readiness check: %r", self.name, e)
            await asyncio.sleep(min(spec.ready_interval, max(deadline - loop.time(), 0)))
        log.error("%s not ready after %.1fs; killing it", self.name, spec.ready_timeout)
        await self._terminate(proc)

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM the child's group; SIGKILL it if it is not gone after `stop_timeout`."""
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.spec.stop_timeout)
        except TimeoutError:
            log.warning(
                "%s ignored SIGTERM for %.1fs; killing it", self.name, self.spec.stop_timeout
            )
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def _stop(self) -> None:
        self._stopping.set()
        if self._proc is not None and self._proc.returncode is None:
            log.info("stopping %s (pid %d)", self.name, self._proc.pid)
            await self._terminate(self._proc)
        if self._task is not None:
            await self._task
        if self.state not in ("stopped", "failed"):
            self._set("stopped")


class Supervisor:
    """Starts, watches, restarts and stops child processes; `async with` stops them all."""

    def __init__(self, specs: Iterable[ChildSpec] = ()) -> None:
        self._specs = list(specs)  # started, in order, on entering the context
        self._children: dict[str, Child] = {}  # insertion order == start order
        self._observers: list[ExitObserver] = []

    @property
    def children(self) -> Mapping[str, Child]:
        return MappingProxyType(self._children)

    def on_exit(self, callback: ExitObserver) -> Callable[[], None]:
        """Call `callback(name, returncode)` (sync or async) after every unexpected exit,
        before any restart; returncode is negative for a signal, None if it could not start.
        Returns a function that unsubscribes."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback)

    async def start(self, spec: ChildSpec) -> Child:
        """Start a child; returns once its process exists (OSError if it cannot be started)."""
        old = self._children.get(spec.name)
        if old is not None and old.state not in ("stopped", "failed"):
            raise ValueError(f"child {spec.name!r} is already supervised")
        child = Child(spec, self)
        await child._spawn()
        self._children.pop(spec.name, None)
        self._children[spec.name] = child
        child._task = asyncio.create_task(child._supervise(), name=f"supervise {spec.name}")
        return child

    async def stop(self, name: str) -> None:
        """Stop a child (SIGTERM, SIGKILL after its stop timeout); it will not be restarted."""
        await self._children[name]._stop()

    async def stop_all(self) -> None:
        """Stop every child, last started first; raise the collected errors at the end."""
        errors: list[Exception] = []
        for child in reversed(list(self._children.values())):
            try:
                await child._stop()
            except Exception as e:
                log.exception("stopping %s failed", child.name)
                errors.append(e)
        if errors:
            raise ExceptionGroup("errors while stopping child processes", errors)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Per child: state, pid, restarts, uptime_seconds, returncode (for /healthz, metrics)."""
        return {name: child.snapshot() for name, child in self._children.items()}

    async def _notify(self, name: str, returncode: int | None) -> None:
        for callback in list(self._observers):
            try:
                result = callback(name, returncode)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("on_exit observer %r failed for %s", callback, name)

    async def __aenter__(self) -> Supervisor:
        try:
            for spec in self._specs:
                await self.start(spec)
        except BaseException:
            await self.stop_all()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_all()
