"""The supervisor with real child processes (`sys.executable -c ...`); every wait is bounded."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ivr.workers.supervisor import ChildFailed, ChildSpec, Supervisor

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[1]
SLEEPER = "import time; time.sleep(60)"


def py(code: str, **kw: object) -> ChildSpec:
    name = str(kw.pop("name", "child"))
    return ChildSpec(name=name, argv=[sys.executable, "-c", textwrap.dedent(code)], **kw)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_crashed_child_is_restarted() -> None:
    exits: list[tuple[str, int | None]] = []
    async with Supervisor() as sup:
        sup.on_exit(lambda name, rc: exits.append((name, rc)))
        child = await sup.start(py(SLEEPER, name="media-1", restart="always", backoff_initial=0.05))
        first = child.pid
        assert first is not None and child.state == "running"

        os.kill(first, signal.SIGKILL)
        await child.wait_until(lambda c: c.state == "running" and c.pid not in (None, first), 5)

        second = child.pid
        assert child.restarts == 1
        assert exits == [("media-1", -signal.SIGKILL)]
        assert sup.snapshot()["media-1"]["pid"] == second
    assert second is not None and gone(second)


async def test_restart_backs_off() -> None:
    loop = asyncio.get_running_loop()
    exit_times: list[float] = []
    spec = py(
        "import sys; sys.exit(1)",
        restart="always",
        backoff_initial=0.1,
        backoff_max=0.4,
        stable_after=60,
    )
    async with Supervisor() as sup:
        sup.on_exit(lambda name, rc: exit_times.append(loop.time()))
        t0 = loop.time()
        child = await sup.start(spec)
        await child.wait_until(lambda c: c.restarts >= 4 and c.state == "backoff", 10)
        elapsed = loop.time() - t0

    # Delays 0.1, 0.2, 0.4, 0.4 (capped): a busy loop would have restarted dozens of times.
    gaps = [b - a for a, b in itertools.pairwise(exit_times)]
    assert len(exit_times) == 5 and child.restarts == 4
    for gap, delay in zip(gaps, [0.1, 0.2, 0.4, 0.4], strict=True):
        assert gap >= delay
    assert gaps[2] > gaps[0] + 0.2  # grows, not a fixed retry interval
    assert elapsed >= 1.1


async def test_stop_escalates_to_kill_for_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    flag = tmp_path / "armed"
    code = f"""
        import pathlib, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path({str(flag)!r}).touch()
        time.sleep(60)
    """

    async def armed() -> bool:
        return flag.exists()

    async with Supervisor() as sup:
        child = await sup.start(py(code, name="stubborn", stop_timeout=0.3, ready_check=armed))
        await child.wait_ready(5)
        pid = child.pid
        t0 = time.monotonic()
        await sup.stop("stubborn")
        took = time.monotonic() - t0

    assert child.returncode == -signal.SIGKILL
    assert child.state == "stopped" and child.pid is None
    assert 0.3 <= took < 3
    assert pid is not None and gone(pid)


async def test_leaving_the_context_stops_every_child_in_reverse_order(tmp_path: Path) -> None:
    record = tmp_path / "stopped.txt"
    names = ["kamailio", "speech", "media-1", "media-2"]
    ready_files = {n: tmp_path / f"{n}.ready" for n in names}

    def spec(name: str) -> ChildSpec:
        code = f"""
            import pathlib, signal, sys, time
            def bye(*_):
                with open({str(record)!r}, "a") as f:
                    f.write({name!r} + "\\n")
                sys.exit(0)
            signal.signal(signal.SIGTERM, bye)
            pathlib.Path({str(ready_files[name])!r}).touch()
            time.sleep(60)
        """

        async def ready() -> bool:
            return ready_files[name].exists()

        return py(code, name=name, ready_check=ready)

    exits: list[str] = []
    async with Supervisor([spec(n) for n in names[:2]]) as sup:  # two started on entering
        sup.on_exit(lambda name, rc: exits.append(name))
        for n in names[2:]:
            await sup.start(spec(n))
        await asyncio.gather(*(c.wait_ready(5) for c in sup.children.values()))
        pids = [c.pid for c in sup.children.values()]
        assert list(sup.children) == names

    assert record.read_text().split() == list(reversed(names))
    assert all(c.state == "stopped" for c in sup.children.values())
    assert all(pid is not None and gone(pid) for pid in pids)
    assert exits == []  # a requested stop is not a lost child


async def test_child_output_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ivr.workers")
    code = """
        import sys
        print("hello from stdout")
        print("oops on stderr", file=sys.stderr)
        print("no newline at the end", end="")
    """
    async with Supervisor() as sup:
        child = await sup.start(py(code, name="talker", restart="never"))
        await child.wait_until(lambda c: c.state == "stopped", 5)

    lines = {r.getMessage() for r in caplog.records if r.name == "ivr.workers.talker"}
    assert {"hello from stdout", "oops on stderr", "no newline at the end"} <= lines


async def test_readiness_check(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"""
        import socket, time
        time.sleep(0.2)  # a slow start: the check must keep polling
        s = socket.create_server(("127.0.0.1", {port}))
        time.sleep(60)
    """

    async def answers() -> bool:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        return True

    async with Supervisor() as sup:
        child = await sup.start(py(code, name="rasa", ready_check=answers, ready_interval=0.05))
        assert child.state == "starting"
        await child.wait_ready(5)
        assert child.state == "ready"
        assert sup.snapshot()["rasa"]["state"] == "ready"


async def test_a_child_that_never_gets_ready_is_killed() -> None:
    async def never() -> bool:
        return False

    async with Supervisor() as sup:
        spec = py(SLEEPER, name="mute", restart="never", ready_check=never, ready_timeout=0.3)
        child = await sup.start(spec)
        with pytest.raises(ChildFailed):
            await child.wait_ready(5)
        assert child.state == "failed" and child.returncode == -signal.SIGTERM


async def test_never_policy_leaves_a_failed_child_stopped() -> None:
    exits: list[tuple[str, int | None]] = []
    async with Supervisor() as sup:
        sup.on_exit(lambda name, rc: exits.append((name, rc)))
        child = await sup.start(py("import sys; sys.exit(3)", name="oneshot", restart="never"))
        await child.wait_until(lambda c: c.state in ("stopped", "failed"), 5)
        assert child.state == "failed" and child.returncode == 3
        assert child.restarts == 0 and child.pid is None
        assert exits == [("oneshot", 3)]
        assert sup.snapshot()["oneshot"] == {
            "state": "failed",
            "pid": None,
            "restarts": 0,
            "uptime_seconds": 0.0,
            "returncode": 3,
        }


async def test_on_failure_policy_lets_a_clean_exit_be() -> None:
    async with Supervisor() as sup:
        child = await sup.start(py("pass", name="job", restart="on-failure"))
        await child.wait_until(lambda c: c.state in ("stopped", "failed"), 5)
        assert child.state == "stopped" and child.restarts == 0
        again = await sup.start(py("pass", name="job"))  # a finished child may be started again
        assert again is sup.children["job"]


async def test_stop_during_backoff_cancels_the_restart() -> None:
    async with Supervisor() as sup:
        spec = py("import sys; sys.exit(1)", name="flaky", restart="always", backoff_initial=30)
        child = await sup.start(spec)
        await child.wait_until(lambda c: c.state == "backoff", 5)
        await asyncio.wait_for(sup.stop("flaky"), 2)
        assert child.state == "stopped" and child.restarts == 0


async def test_starting_a_missing_program_raises() -> None:
    async with Supervisor() as sup:
        with pytest.raises(OSError):
            await sup.start(ChildSpec(name="nope", argv=["/nonexistent/program"]))
        assert "nope" not in sup.children


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfds")
async def test_children_do_not_outlive_a_killed_control_plane() -> None:
    control_plane = f"""
        import asyncio, sys
        from ivr.workers.supervisor import ChildSpec, Supervisor
        async def main():
            async with Supervisor() as sup:
                child = await sup.start(ChildSpec("orphan", [sys.executable, "-c", {SLEEPER!r}]))
                print(child.pid, flush=True)
                await asyncio.sleep(60)
        asyncio.run(main())
    """
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(control_plane),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        orphan = int(await asyncio.wait_for(parent.stdout.readline(), 10))
        pidfd = os.pidfd_open(orphan)
    finally:
        parent.kill()  # SIGKILL: the control plane gets no chance to clean up
        await parent.wait()
    loop = asyncio.get_running_loop()
    died = asyncio.Event()
    loop.add_reader(pidfd, died.set)  # a pidfd becomes readable when its process exits
    try:
        await asyncio.wait_for(died.wait(), 5)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


async def test_an_exit_is_seen_while_a_grandchild_still_holds_the_pipes() -> None:
    # Like Kamailio's main process killed while its workers live on: the pipes stay open.
    exits: list[tuple[str, int | None]] = []
    async with Supervisor() as sup:
        sup.on_exit(lambda name, rc: exits.append((name, rc)))
        child = await sup.start(
            ChildSpec(name="parent", argv=["sh", "-c", "sleep 30 & exit 3"], restart="never")
        )
        await child.wait_until(lambda c: c.state == "failed", timeout=5)
    assert exits == [("parent", 3)]
