"""The framed protocol between our processes: what crosses it, and what is refused."""

from __future__ import annotations

import asyncio
import struct

import pytest

from ivr.workers.ipc import MAX_FRAME, ProtocolError, encode_audio, encode_json, read_message


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_json_and_audio_frames_arrive_as_sent() -> None:
    reader = reader_of(encode_json({"op": "play", "n": 1}) + encode_audio(b"\x01\x02" * 320))
    assert await read_message(reader) == {"op": "play", "n": 1}
    assert await read_message(reader) == b"\x01\x02" * 320
    assert await read_message(reader) is None  # closed between frames


async def test_text_from_the_network_with_undecodable_bytes_can_still_be_sent() -> None:
    # pjsua2 hands a Latin-1 SIP header to Python with a lone surrogate in it.
    frame = encode_json({"from": "M\udcfcller"})
    assert await read_message(reader_of(frame)) == {"from": "M?ller"}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (struct.pack(">IB", MAX_FRAME + 1, ord("J")), "larger than"),
        (struct.pack(">IB", 2, ord("Z")) + b"{}", "unknown frame kind"),
        (struct.pack(">IB", 3, ord("J")) + b"[1]", "must hold an object"),
        (struct.pack(">IB", 4, ord("J")) + b"{no}", "not JSON"),
        (struct.pack(">IB", 10, ord("J")) + b"{}", "inside a frame"),
        (b"\x00\x00", "inside a frame header"),
    ],
)
async def test_malformed_frames_are_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        await read_message(reader_of(data))
