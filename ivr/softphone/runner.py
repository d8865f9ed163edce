"""Running a call: dial (or answer), play the script's actions in order, report the outcome.

The outcome is one JSON-ready dict; its shape is the contract with the tests and ops scripts
(see `dial_outcome` and `answer_outcome`). Every wait is bounded by the per-action timeout and
is driven by events (SIP states, audio frames counted in audio time), never by sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.softphone.audio import AudioError, read_wav, silence, synthesise
from ivr.softphone.phone import CallEnded, Leg, Phone, PhoneError
from ivr.softphone.script import Action, ScriptError

MEDIA_SECONDS = 5.0  # after the answer, audio must flow within this
END_SECONDS = 3.0  # waiting for our own hangup to complete, at the very end
# RFC 4733 digits are queued inside pjmedia and leave one every ~240 ms (160 ms tone, then the
# end packets and a gap); waiting this long per digit keeps a following `hangup` from cutting
# the last one off.
RFC4733_SECONDS_PER_DIGIT = 0.26


class ActionFailed(Exception):
    """An action did not do what it should (the message says what happened instead)."""


@dataclass(frozen=True)
class Settings:
    timeout: float = 20.0  # per action, for the answer, and for the far end's hangup
    dtmf_method: str = "rfc4733"  # or "info"
    hold: float = 1.0  # answer mode: keep the call this long after the script
    collect_digits: int = 0  # answer mode: wait for this many DTMF digits first


@dataclass
class ActionResult:
    do: str
    ok: bool
    at: float | None  # seconds since the call was connected, when the action started
    took: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "do": self.do,
            "ok": self.ok,
            "at": None if self.at is None else round(self.at, 3),
            "took": round(self.took, 3),
            "error": self.error,
        }


@dataclass
class Session:
    """What a run did, gathered for the outcome."""

    actions: list[ActionResult] = field(default_factory=list)
    digits_sent: str = ""
    error: str | None = None  # what went wrong outside the actions (no answer, interrupted...)


def prepare_audio(
    actions: list[Action], tts: str = "flite", voice: str | None = None
) -> dict[int, bytes]:
    """Render every `say` and load every `play` before dialling, so a bad file or voice is a
    usage error (with its script line) and no synthesis runs while audio flows. Keyed by the
    action's index."""
    audio: dict[int, bytes] = {}
    rendered: dict[str, bytes] = {}
    for index, action in enumerate(actions):
        try:
            if action.name == "say":
                text = str(action.arg)
                if text not in rendered:
                    rendered[text] = synthesise(text, tts, voice)
                audio[index] = rendered[text]
            elif action.name == "play":
                audio[index] = read_wav(str(action.arg))
        except AudioError as exc:
            raise ScriptError(action.where, str(exc)) from None
    return audio


class Runner:
    def __init__(self, phone: Phone, settings: Settings) -> None:
        self.phone = phone
        self.settings = settings
        self.session = Session()

    # ---------------------------------------------------------------- helpers

    def _ended(self) -> bool:
        leg = self.phone.current
        return leg is None or leg.disconnected

    async def _wait(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait for `condition` or the end of the call; raises CallEnded on the latter."""
        ok = await self.phone.wait_for(
            lambda: condition() or self._ended(), timeout or self.settings.timeout
        )
        if ok and not condition():
            raise CallEnded("the far end hung up" if self._far_end_left() else "the call ended")
        return ok

    def _far_end_left(self) -> bool:
        leg = self.phone.current
        return leg is not None and leg.disconnected and not leg.local_hangup

    async def wait_connected(self, leg: Leg) -> None:
        """After answer/200 OK: the ACK is through and audio flows (bounded)."""
        await self.phone.wait_for(lambda: leg.connected or leg.disconnected, self.settings.timeout)
        if leg.connected and not leg.disconnected:
            await self.phone.wait_for(lambda: leg.media_ready or leg.disconnected, MEDIA_SECONDS)

    # ---------------------------------------------------------------- the script

    async def run_actions(
        self, actions: list[Action], audio: dict[int, bytes], since: float
    ) -> bool:
        """Run actions in order; the first failure stops the script (later actions are
        reported as not run), since every later action assumes the earlier ones worked."""
        failed = False
        for index, action in enumerate(actions):
            if failed:
                self.session.actions.append(
                    ActionResult(action.source, False, None, error="not run: an earlier one failed")
                )
                continue
            started = time.monotonic()
            result = ActionResult(action.source, False, started - since)
            try:
                await self._perform(action, audio.get(index))
                result.ok = True
            except (ActionFailed, CallEnded, PhoneError) as exc:
                result.error = str(exc)
                failed = True
            except Exception as exc:  # a pjsua2 error (pj.Error) or a bug: report, stop
                info = getattr(exc, "info", None)
                result.error = info() if callable(info) else f"{type(exc).__name__}: {exc}"
                failed = True
            result.took = time.monotonic() - started
            self.session.actions.append(result)
        return not failed

    async def _perform(self, action: Action, pcm: bytes | None) -> None:
        name = action.name
        if name == "wait-prompt":
            await self._wait_prompt()
        elif name == "wait-speech":
            await self._wait_speech()
        elif name == "dtmf":
            await self._dtmf(str(action.arg))
        elif name in ("say", "play"):
            assert pcm is not None
            await self._send(pcm)
        elif name == "silence":
            await self._send(silence(float(action.arg or 0)))
        elif name == "hangup":
            await self._hangup()
        elif name == "expect-transfer":
            await self._expect_transfer()
        elif name == "wait-file":
            await self._wait_file(Path(str(action.arg)))
        else:  # the parser only lets known actions through
            raise ActionFailed(f"no such action {name!r}")

    async def _wait_prompt(self) -> None:
        detector = self.phone.detector
        prompts, onsets, speaking = detector.prompts, detector.onsets, detector.speaking
        try:
            ended = await self._wait(lambda: detector.prompts > prompts)
        except CallEnded:
            if detector.onsets > onsets or speaking:
                return  # it spoke, then hung up ("Goodbye."): that ends a prompt too
            raise
        if not ended:
            timeout = self.settings.timeout
            if detector.onsets > onsets or detector.speaking:
                raise ActionFailed(f"the far end was still speaking after {timeout:g} s")
            raise ActionFailed(f"the far end said nothing within {timeout:g} s")

    async def _wait_speech(self) -> None:
        detector = self.phone.detector
        onsets = detector.onsets
        if not await self._wait(lambda: detector.speaking or detector.onsets > onsets):
            raise ActionFailed(f"the far end said nothing within {self.settings.timeout:g} s")

    async def _dtmf(self, digits: str) -> None:
        if self.settings.dtmf_method == "info":
            for digit in digits:
                await self._send_info(digit)
                self.session.digits_sent += digit
            return
        self.phone.dial_dtmf(digits)
        # Time for pjmedia to send them: bounded, and the call ending cuts it short.
        await self.phone.wait_for(self._ended, RFC4733_SECONDS_PER_DIGIT * len(digits))
        if self._ended():
            raise CallEnded("the call ended while digits were being sent")
        self.session.digits_sent += digits

    async def _send_info(self, digit: str) -> None:
        """One INFO at a time, each waiting for its answer: pjsua would otherwise send all
        digits at once as parallel transactions, free to arrive out of order."""
        leg = self.phone.current
        if leg is None:
            raise CallEnded("the call has ended")
        replies = len(leg.info_replies)
        self.phone.send_info_digit(digit)
        if not await self._wait(lambda: len(leg.info_replies) > replies):
            raise ActionFailed(f"no answer to the INFO for digit {digit!r}")
        status = leg.info_replies[replies]
        if not 200 <= status < 300:
            raise ActionFailed(f"the INFO for digit {digit!r} was answered {status}")

    async def _send(self, pcm: bytes) -> None:
        clip = self.phone.send_audio(pcm)
        seconds = len(pcm) / 32000  # 16 kHz, 2 bytes a sample
        bound = seconds + self.settings.timeout
        if not await self._wait(lambda: self.phone.clip_sent(clip), bound):
            raise ActionFailed(f"{seconds:.1f} s of audio not sent within the timeout")

    async def _hangup(self) -> None:
        leg = self.phone.current
        if leg is None or leg.disconnected:
            raise CallEnded("the far end had already hung up")
        self.phone.hangup(leg)
        if not await self.phone.wait_for(lambda: leg.disconnected, self.settings.timeout):
            raise ActionFailed("the far end did not answer our BYE")

    async def _wait_file(self, path: Path) -> None:
        """Until `path` exists: another program says when to go on (the call stays up)."""
        if not await self._wait(path.exists):
            raise ActionFailed(f"{path} did not appear within {self.settings.timeout:g} s")

    async def _expect_transfer(self) -> None:
        if not await self._wait(lambda: self.phone.transfer is not None):
            raise ActionFailed(f"no REFER within {self.settings.timeout:g} s")
        transfer = self.phone.transfer
        assert transfer is not None
        new = transfer.leg
        if new is None:
            return
        await self.phone.wait_for(lambda: new.connected or new.disconnected, self.settings.timeout)
        if not new.connected:
            status = f"{new.status} {new.status_reason}" if new.status else "no answer"
            raise ActionFailed(f"the transfer target {transfer.target} did not answer ({status})")
        await self.phone.wait_for(lambda: new.media_ready or new.disconnected, MEDIA_SECONDS)

    # ---------------------------------------------------------------- ending

    async def wait_remote_hangup(self, timeout: float) -> bool:
        return await self.phone.wait_for(self._ended, timeout)

    async def finish(self) -> None:
        """Hang up whatever is still up and wait (briefly) for pjsua2 to confirm."""
        live = [leg for leg in self.phone.legs if not leg.disconnected and leg.call is not None]
        for leg in live:
            self.phone.hangup(leg)
        await self.phone.wait_for(lambda: all(leg.disconnected for leg in live), END_SECONDS)


# ------------------------------------------------------------------ the two modes


async def dial(
    phone: Phone,
    uri: str,
    headers: list[tuple[str, str]],
    actions: list[Action],
    audio: dict[int, bytes],
    settings: Settings,
) -> tuple[dict[str, Any], int]:
    runner = Runner(phone, settings)
    session = runner.session
    ok = True
    try:
        leg = phone.dial(uri, headers)
    except PhoneError as exc:
        session.error = str(exc)
        return dial_outcome(phone, phone.legs[-1], session), 1
    try:
        await runner.wait_connected(leg)
        if not leg.connected:
            ok = False
            if not leg.disconnected:
                session.error = f"no answer within {settings.timeout:g} s"
        elif not leg.media_ready and not leg.disconnected:
            ok = False
            session.error = "connected but no audio"
        else:
            since = time.monotonic()
            ok = await runner.run_actions(actions, audio, since)
            scripted_hangup = bool(actions) and actions[-1].name == "hangup"
            if ok and not scripted_hangup:
                # No hangup in the script: the far end is expected to end the call.
                started = time.monotonic()
                if not await runner.wait_remote_hangup(settings.timeout):
                    ok = False
                    session.actions.append(
                        ActionResult(
                            "wait-hangup",
                            False,
                            started - since,
                            settings.timeout,
                            f"the far end did not hang up within {settings.timeout:g} s",
                        )
                    )
    except asyncio.CancelledError:
        _uncancel()
        ok = False
        session.error = "interrupted"
    await runner.finish()
    if not leg.connected and leg.status is None:
        # Nothing final came back (e.g. nobody listens: pjsip would retry for 32 s).
        leg.status, leg.status_reason = 408, "Request Timeout (no final response)"
    return dial_outcome(phone, leg, session), 0 if ok and leg.connected else 1


def dial_outcome(phone: Phone, first: Leg, session: Session) -> dict[str, Any]:
    last = phone.current or first
    ends = [leg.ended_at for leg in phone.legs if leg.ended_at is not None]
    duration = 0.0
    if first.confirmed_at is not None:
        duration = max(ends or [phone.loop.time()]) - first.confirmed_at
    transfer = phone.transfer
    return {
        "connected": first.connected,
        "sip_status": first.status or 0,
        "transport": first.transport,  # udp, tcp or tls; "" when the call was not answered
        "reason": session.error or (last.end_reason if first.connected else first.status_reason),
        "duration": round(duration, 3),
        "hung_up_by": last.hung_up_by,
        "transfer_target": transfer.target if transfer else None,
        "transfer_headers": transfer.headers if transfer else {},
        "transfer_refer_to": transfer.refer_to if transfer else None,
        "refer_headers": transfer.refer_headers if transfer else {},
        "transfer_status": transfer.leg.status if transfer and transfer.leg else None,
        "digits_sent": session.digits_sent,
        "heard_seconds": round(phone.detector.heard_seconds, 2),
        "actions": [result.as_dict() for result in session.actions],
        "remote_headers": first.remote_headers,
    }


async def answer(
    phone: Phone, actions: list[Action], audio: dict[int, bytes], settings: Settings
) -> tuple[dict[str, Any], int]:
    runner = Runner(phone, settings)
    session = runner.session
    leg: Leg | None = None
    ok = True
    try:
        if not await phone.wait_for(lambda: bool(phone.incoming), settings.timeout):
            session.error = f"no call within {settings.timeout:g} s"
            return {"answered": False, "error": session.error}, 1
        leg = phone.incoming.popleft()
        phone.answer(leg)  # raises CallEnded / PhoneError: caught below
        await runner.wait_connected(leg)
        if not leg.connected or not leg.media_ready:
            ok = False
            session.error = "the call did not get through (no ACK or no audio)"
        else:
            since = time.monotonic()
            if settings.collect_digits:
                wanted = settings.collect_digits
                await phone.wait_for(
                    lambda: len(leg.digits) >= wanted or leg.disconnected, settings.timeout
                )
                if len(leg.digits) < wanted:
                    ok = False
                    session.error = f"got {len(leg.digits)} of {wanted} digits"
            if ok and actions:
                ok = await runner.run_actions(actions, audio, since)
            if not leg.disconnected:
                await phone.wait_for(lambda: leg.disconnected, settings.hold)
    except (CallEnded, PhoneError) as exc:
        ok = False
        session.error = str(exc)
    except asyncio.CancelledError:
        _uncancel()
        ok = False
        session.error = "interrupted"
    await runner.finish()
    if leg is None:
        return {"answered": False, "error": session.error}, 1
    return answer_outcome(phone, leg, session), 0 if ok else 1


def answer_outcome(phone: Phone, leg: Leg, session: Session) -> dict[str, Any]:
    duration = 0.0
    if leg.confirmed_at is not None:
        duration = (leg.ended_at or phone.loop.time()) - leg.confirmed_at
    return {
        "answered": True,
        "from": leg.from_uri,
        "request_uri": leg.request_uri,
        "transport": leg.transport,
        "headers": leg.invite_headers,
        "digits": "".join(leg.digits),
        "connected": leg.connected,
        "duration": round(duration, 3),
        "hung_up_by": leg.hung_up_by,
        "heard_seconds": round(phone.detector.heard_seconds, 2),
        "actions": [result.as_dict() for result in session.actions],
        "error": session.error,
    }


def _uncancel() -> None:
    """We were interrupted (Ctrl-C): carry on to hang up and report, without the pending
    cancellation breaking the awaits that follow."""
    task = asyncio.current_task()
    if task is not None:
        while task.cancelling():
            task.uncancel()
