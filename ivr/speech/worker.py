"""The speech worker process: speech recognition or synthesis behind a Unix socket.

    python -m ivr.speech.worker --socket PATH --role asr [--asr "en=pocketsphinx,ko=vosk:..."]
    python -m ivr.speech.worker --socket PATH --role tts --cache DIR [--voices "en=en-us,ko=ko"]
                                [--rate 170]

Models load *before* the socket is bound, so "the socket accepts connections" means ready. The
socket is private to our user (0600); a stale socket file from a killed worker is replaced, a
live worker's is not. Logs go to stderr; stdout stays empty (the supervisor logs both). SIGTERM
or SIGINT: stop accepting, abandon open utterances, exit 0. The protocols are described in
ivr.speech.asr.service and ivr.speech.tts.service.

Why a process of its own: PocketSphinx holds the GIL while decoding, Vosk runs ~6x slower next
to any busy Python thread, and pyttsx3 wants one engine per process. Here nothing else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ivr.workers.ipc import Link

log = logging.getLogger("ivr.speech.worker")

STOP_GRACE = 3.0  # seconds open connections get to wind down on SIGTERM


class WorkerError(Exception):
    """The worker cannot start (bad arguments, socket in use); exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ivr.speech.worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--socket", required=True, help="Unix socket path to serve")
    parser.add_argument("--role", required=True, choices=("asr", "tts"))
    parser.add_argument(
        "--asr",
        default="en=pocketsphinx",
        help="language=engine pairs: pocketsphinx, vosk:<package>, vosk:<model dir>",
    )
    parser.add_argument("--cache", help="prompt cache directory (tts)")
    parser.add_argument("--voices", default="", help="language=espeak-ng voice pairs (tts)")
    parser.add_argument("--rate", type=int, default=170, help="words per minute (tts)")
    parser.add_argument("--log-level", default="info")
    return parser


def _claim_socket(path: str) -> None:
    """Remove a stale socket file at `path`; refuse a live one or a file that is no socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise WorkerError(f"{path} exists and is not a socket: not touching it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a leftover of a killed worker
        return
    finally:
        probe.close()
    raise WorkerError(f"{path}: another worker is listening there")


@dataclass
class Role:
    """What a role gives the socket server."""

    handle: Callable[[Link], Awaitable[None]]  # serves one connection
    close: Callable[[], None]
    on_stuck: Callable[[Callable[[], None]], None] | None = None  # registers an exit request


def _load(args: argparse.Namespace) -> Role:
    """Load the role's models (the slow part of starting)."""
    started = time.perf_counter()
    if args.role == "asr":
        from ivr.speech.asr.engines import create_engines, parse_asr_map
        from ivr.speech.asr.service import AsrSession

        try:
            specs = parse_asr_map(args.asr)
        except ValueError as exc:
            raise WorkerError(f"--asr: {exc}") from None
        try:
            engines = create_engines(specs)
        except ValueError as exc:
            raise WorkerError(str(exc)) from None
        if any(engine.threaded for engine in engines.values()):
            # Vosk decodes in threads that must win the GIL back after every chunk; the
            # default 5 ms switch interval made it ~6x slower next to busy Python code.
            sys.setswitchinterval(0.0005)
        log.info(
            "ASR engines loaded in %.2f s: %s",
            time.perf_counter() - started,
            ", ".join(f"{lang}={engine.spec}" for lang, engine in engines.items()),
        )

        async def serve_asr(link: Link) -> None:
            await AsrSession(engines, link).serve()

        def close_engines() -> None:
            for engine in engines.values():
                engine.close()

        return Role(serve_asr, close_engines)

    from ivr.speech.tts.render import Renderer, parse_voices
    from ivr.speech.tts.service import TtsService

    if not args.cache:
        raise WorkerError("--role tts needs --cache DIR")
    try:
        renderer = Renderer(args.cache, parse_voices(args.voices), args.rate)
    except ValueError as exc:
        raise WorkerError(f"--voices/--rate: {exc}") from None
    log.info("TTS engine ready in %.2f s (cache %s)", time.perf_counter() - started, args.cache)
    service = TtsService(renderer)

    def on_stuck(callback: Callable[[], None]) -> None:
        service.on_stuck = callback

    return Role(service.serve, renderer.close, on_stuck)


async def _serve(path: str, role: Role) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    status = 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if role.on_stuck is not None:

        def stuck() -> None:
            nonlocal status
            log.error("the speech synthesiser is stuck: exiting so that it is restarted")
            status = 1
            stop.set()

        role.on_stuck(stuck)

    connections: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        link = Link(reader, writer)
        try:
            await role.handle(link)
        except Exception:
            log.exception("connection handler failed")
        finally:
            connections.discard(task)
            await link.close()

    _claim_socket(path)
    old_umask = os.umask(0o177)  # the socket is born 0600: no window where others connect
    try:
        server = await asyncio.start_unix_server(on_connect, path=path)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    log.info("serving on %s", path)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        server.close()
        for task in list(connections):
            task.cancel()
        if connections:
            await asyncio.wait(list(connections), timeout=STOP_GRACE)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )

    def exit_now(signum: int, _frame: object) -> None:  # while models load
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_now)
    try:
        role = _load(args)
        status = asyncio.run(_serve(args.socket, role))
    except WorkerError as exc:
        log.error("%s", exc)
        return 2
    if status:  # a stuck synthesiser thread would keep a normal exit waiting forever
        logging.shutdown()
        os._exit(status)
    role.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
