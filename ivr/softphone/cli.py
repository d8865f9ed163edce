"""The softphone's command line (`python -m ivr.softphone`, later `ivr call`): dial a SIP URI
and run a call script, or answer one call; print the outcome as one JSON object on stdout.

    python -m ivr.softphone sip:bank@127.0.0.1:5080 --do wait-prompt --do "dtmf 1234#" \\
        --do 'say "I want to check my account balance"' --do wait-prompt --do hangup
    python -m ivr.softphone 'sip:bank@10.0.0.5:5060;transport=tcp' --do wait-prompt --do hangup
    python -m ivr.softphone sips:bank@ivr.example.com:5061 --tls-ca ca.pem --do wait-prompt
    python -m ivr.softphone answer --port 5090 --ready-file /tmp/agent.ready

Exit status: 0 every action worked and the call ended as expected, 1 otherwise, 2 bad arguments.

Wiring into another argparse program: `add_arguments(parser)` then `run(args)`. Once pjsua2 is
up, `run` does not return: it prints the outcome and ends the process with `os._exit` (a pjsua2
object finalised after the library is destroyed would abort the interpreter).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ivr.softphone.audio import DEFAULT_THRESHOLD, TTS_ENGINES
from ivr.softphone.script import Action, ScriptError, load_script

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CODECS = ("PCMU", "PCMA", "G722")
_HEADER = re.compile(r"^([A-Za-z0-9!%*_+`'~.-]+)\s*:\s*(.*)$")

log = logging.getLogger("ivr.softphone")


class UsageError(ValueError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="URI|answer",
        help="SIP URI to dial (sip:bank@127.0.0.1:5080), or `answer` to wait for one call",
    )
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to bind SIP and RTP to")
    net.add_argument(
        "--port",
        type=int,
        default=0,
        help="local SIP UDP port (default: any free one); TCP and TLS listen on any free port",
    )
    net.add_argument("--from", dest="identity", metavar="URI", help="our From URI")
    net.add_argument(
        "--header",
        action="append",
        default=[],
        metavar='"NAME: VALUE"',
        help="extra header on the INVITE (repeatable)",
    )
    net.add_argument("--codec", choices=CODECS, default="PCMU", type=str.upper)
    net.add_argument("--dtmf-method", choices=("rfc4733", "info"), default="rfc4733")
    net.add_argument("--sip-log", type=int, default=1, metavar="N", help="pjsip log level 0-6")
    tls = parser.add_argument_group(
        "TLS (the URI picks the transport: sip:...;transport=tcp, sips:... or ;transport=tls)"
    )
    tls.add_argument(
        "--tls-ca",
        metavar="FILE.pem",
        help="CA certificates the server's certificate must chain to (default: the system's "
        "CA store); the certificate must also name the host dialled",
    )
    tls.add_argument(
        "--tls-no-verify",
        action="store_true",
        help="accept any server certificate: still encrypted, but anyone could be answering "
        "(self-signed test servers only)",
    )

    script = parser.add_argument_group("call script (run once the call is up)")
    script.add_argument(
        "--do",
        action="append",
        default=[],
        metavar="ACTION",
        help="wait-prompt | wait-speech | dtmf DIGITS | say TEXT | play FILE.wav | "
        "silence SECONDS | hangup | expect-transfer | wait-file PATH (repeatable, in order)",
    )
    script.add_argument("--script", metavar="FILE", help="actions, one a line, # comment lines")
    script.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="bound on each action, on the answer and on the far end's hangup (default 20)",
    )
    script.add_argument("--record", metavar="FILE.wav", help="record what the far end says")
    script.add_argument(
        "--follow-transfer",
        action="store_true",
        help="on a REFER call the target and carry on there (default: decline it with 603)",
    )
    script.add_argument("--tts", choices=TTS_ENGINES, default="flite", help="for `say`")
    script.add_argument(
        "--voice", help="flite voice (default slt) or espeak-ng voice/language (default en)"
    )
    script.add_argument(
        "--energy-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="RMS",
        help=f"frame RMS that counts as speech (default {DEFAULT_THRESHOLD:g}, about -38 dBFS)",
    )

    answer = parser.add_argument_group("answer mode")
    answer.add_argument("--ready-file", metavar="FILE", help="written once listening")
    answer.add_argument(
        "--hold",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="keep the call this long (or until the caller hangs up), default 1",
    )
    answer.add_argument(
        "--collect-digits", type=int, default=0, metavar="N", help="wait for N DTMF digits first"
    )


def parse_header(text: str) -> tuple[str, str]:
    match = _HEADER.match(text.strip())
    if not match or not match.group(2):
        raise UsageError(f'--header {text!r}: expected "Name: value"')
    return match.group(1), match.group(2)


@dataclass(frozen=True)
class Plan:
    answering: bool
    headers: list[tuple[str, str]]
    actions: list[Action]
    audio: dict[int, bytes]  # rendered `say` / loaded `play`, by action index
    codecs: tuple[str, ...]
    tls: bool = False  # the target is reached over TLS
    tls_ca: str = ""  # absolute path of --tls-ca


def uses_tls(uri: str) -> bool:
    """A `sips:` URI, or one with `;transport=tls` among its parameters (case does not matter;
    the parameters end where the URI's headers, `?...`, begin)."""
    if uri.lower().startswith("sips:"):
        return True
    params = uri.split("?", 1)[0].split(";")[1:]
    return any(p.strip().lower() == "transport=tls" for p in params)


def _tls_options(args: argparse.Namespace, tls: bool) -> str:
    """Check the TLS flags against the target; the CA file's absolute path (or "")."""
    if not (args.tls_ca or args.tls_no_verify):
        return ""
    if not tls:
        raise UsageError(
            "--tls-ca and --tls-no-verify are for dialling a sips: or ;transport=tls URI"
        )
    if args.tls_ca and args.tls_no_verify:
        raise UsageError("--tls-ca and --tls-no-verify contradict each other: choose one")
    if not args.tls_ca:
        return ""
    path = Path(args.tls_ca).resolve()
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise UsageError(f"--tls-ca {args.tls_ca}: {exc.strerror}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise UsageError(f"--tls-ca {args.tls_ca}: no PEM certificate in it")
    return str(path)


def _plan(args: argparse.Namespace) -> Plan:
    """Everything checked and prepared before pjsua2 starts; UsageError/ScriptError if bad."""
    from ivr.softphone.runner import prepare_audio

    answering = args.target == "answer"
    if not answering and not re.match(r"^sips?:[^\s]+$", args.target):
        raise UsageError(f"{args.target!r}: not a SIP URI (like sip:bank@127.0.0.1:5080)")
    if answering and (args.header or args.follow_transfer):
        raise UsageError("--header and --follow-transfer are for dialling, not answer mode")
    if not answering and (args.ready_file or args.collect_digits):
        raise UsageError("--ready-file and --collect-digits are for answer mode")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a port number")
    for name in ("timeout", "hold"):
        if getattr(args, name) < 0 or (name == "timeout" and args.timeout == 0):
            raise UsageError(f"--{name} must be positive")
    if args.collect_digits < 0:
        raise UsageError("--collect-digits must be 0 or more")
    if not 0 <= args.sip_log <= 6:
        raise UsageError("--sip-log must be 0-6")
    tls = not answering and uses_tls(args.target)
    tls_ca = _tls_options(args, tls)
    headers = [parse_header(h) for h in args.header]
    actions = load_script(args.script, args.do)
    audio = prepare_audio(actions, args.tts, args.voice)
    # Dialling offers only the chosen codec (so a test can force it); answering accepts them all.
    others = tuple(c for c in CODECS if c != args.codec) if answering else ()
    return Plan(answering, headers, actions, audio, (args.codec, *others), tls, tls_ca)


def run(args: argparse.Namespace) -> int:
    """Run the call described by `args` (from `add_arguments`). Returns only on bad arguments;
    otherwise prints the outcome and exits the process."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="softphone: %(message)s")
    try:
        plan = _plan(args)
    except (UsageError, ScriptError) as exc:
        print(f"softphone: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = _claim_stdout()
    holder: dict[str, Any] = {}
    code = EXIT_FAILED
    try:
        outcome, code = asyncio.run(_session(args, plan, holder))
    except BaseException as exc:  # still report, and still shut pjsua2 down cleanly
        if callable(getattr(exc, "info", None)):  # pjsua2 refused (a busy port...): say why
            print(f"softphone: {_describe(exc)}", file=sys.stderr)
        else:  # a bug
            traceback.print_exc()
        outcome = {"error": _describe(exc)}
    out.write(json.dumps(outcome) + "\n")
    out.flush()
    endpoint = holder.pop("endpoint", None)
    from ivr.media.endpoint import current_endpoint, shutdown_and_exit

    if endpoint is None and current_endpoint() is None:  # pjsua2 never started
        sys.exit(code)
    shutdown_and_exit(endpoint, code)
    return code  # not reached: shutdown_and_exit leaves the process


def _describe(exc: BaseException) -> str:
    info = getattr(exc, "info", None)  # pjsua2's Error: info() has the reason and the call
    return info() if callable(info) else f"{type(exc).__name__}: {exc}"


def _claim_stdout() -> TextIO:
    """Keep the real stdout for the JSON outcome and point fd 1 at stderr: pjlib's log writer
    printf()s to stdout, which would corrupt the one-object output."""
    sys.stdout.flush()
    saved = os.dup(1)
    _c_stdio("fflush")
    os.dup2(2, 1)
    _c_stdio("setvbuf")  # line-buffered: pjlib's lines then reach stderr as they are written
    return os.fdopen(saved, "w", encoding="utf-8")


def _c_stdio(what: str) -> None:
    """fflush(NULL) or setvbuf(stdout, NULL, _IOLBF, 0) in the C library (glibc; no-op else)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None)
        if what == "fflush":
            libc.fflush(None)
        else:
            stdout = ctypes.c_void_p.in_dll(libc, "stdout")
            libc.setvbuf(stdout, None, 1, 0)  # 1: _IOLBF


@contextlib.contextmanager
def _quiet_startup(quiet: bool) -> Iterator[None]:
    """pjlib logs a dozen banner lines at library creation, before our log level applies;
    drop them unless a detailed SIP log was asked for (failures still raise, with a reason)."""
    if not quiet:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    _c_stdio("fflush")
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        _c_stdio("fflush")
        os.dup2(2, 1)
        os.close(devnull)


async def _session(
    args: argparse.Namespace, plan: Plan, holder: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    from ivr.softphone import runner
    from ivr.softphone.audio import WavRecorder
    from ivr.softphone.phone import Phone, PhoneConfig

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, task.cancel)  # type: ignore[union-attr]
    config = PhoneConfig(
        host=args.host,
        port=args.port,
        identity=args.identity or "",
        codecs=plan.codecs,
        sip_log=args.sip_log,
        energy_threshold=args.energy_threshold,
        follow_transfer=args.follow_transfer,
        tls=plan.tls,
        sips=args.target.lower().startswith("sips:"),
        tls_ca=plan.tls_ca,
        tls_verify=not args.tls_no_verify,
    )
    settings = runner.Settings(
        timeout=args.timeout,
        dtmf_method=args.dtmf_method,
        hold=args.hold,
        collect_digits=args.collect_digits,
    )
    phone = Phone(config, loop)
    try:
        with _quiet_startup(args.sip_log < 4):
            phone.start()
    finally:
        holder["endpoint"] = phone.endpoint  # shut down even if start() failed half-way
    try:
        if args.record:
            phone.record_to(WavRecorder(Path(args.record)))
        if plan.answering:
            _announce_ready(phone, args.ready_file)
            return await runner.answer(phone, plan.actions, plan.audio, settings)
        if phone.endpoint is not None and phone.endpoint.utilVerifySipUri(args.target) != 0:
            return {"connected": False, "sip_status": 0, "reason": "invalid SIP URI"}, EXIT_USAGE
        return await runner.dial(
            phone, args.target, plan.headers, plan.actions, plan.audio, settings
        )
    finally:
        phone.close()


def _announce_ready(phone: Any, ready_file: str | None) -> None:
    """Tell a waiting test where we listen: the ready file (written whole, then renamed into
    place, so its appearance means it is complete) and a `ready` line on stderr."""
    if ready_file:
        path = Path(ready_file)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"uri": phone.uri, "port": phone.local_port}) + "\n")
        tmp.replace(path)
    print("ready", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ivr.softphone",
        description="Test softphone: dial and run a call script, or answer one call. "
        "Prints the outcome as one JSON object.",
    )
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed why
        return int(exc.code or 0)
    return run(args)
