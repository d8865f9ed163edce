"""Registering with an upstream PBX or trunk: digest authentication against sipp as registrar."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.serve_fixtures import ServeApp, wait_until
from tests.voice_fixtures import free_udp_port, start_voice_server

pytestmark = pytest.mark.timeout(60)

SCENARIO = Path(__file__).parent / "sipp" / "registrar.xml"


async def run_registrar(port: int, media_port: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(port),
        "-mi", "127.0.0.1", "-mp", str(media_port), "-m", "1", "-nostdin",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=SCENARIO.parent,
    )  # fmt: skip


@pytest.mark.parametrize(("password", "accepted"), [("s3cret", True), ("wrong", False)])
async def test_the_server_registers_with_digest_credentials(
    serve_app: ServeApp,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    password: str,
    accepted: bool,
) -> None:
    caplog.set_level(logging.INFO)
    registrar_port = free_udp_port()
    registrar = await run_registrar(registrar_port, free_udp_port())
    try:
        await start_voice_server(
            serve_app,
            tmp_path,
            registrar=f"sip:127.0.0.1:{registrar_port}",
            username="ivr",
            password=password,
        )
        await asyncio.wait_for(registrar.wait(), 20)
    finally:
        if registrar.returncode is None:
            registrar.kill()
            await registrar.wait()
    assert registrar.returncode == 0  # sipp saw the whole exchange
    expected = "registration: 200" if accepted else "registration: 403"

    async def reported() -> bool:  # the worker's log line may trail sipp's exit
        return expected in caplog.text

    await wait_until(reported, timeout=10)
    assert password not in caplog.text
