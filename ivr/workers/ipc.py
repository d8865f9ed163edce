"""The framed protocol between our processes: JSON messages and raw audio over Unix sockets.

A frame is a 4-byte big-endian length, one kind byte and the payload: `J` for a UTF-8 JSON
object (commands, events), `A` for audio (16-bit signed PCM, mono, 16 kHz). Audio travels as
bytes, never as Python objects, so a 20 ms frame costs one `write` and no encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from typing import Any

MAX_FRAME = 4 * 1024 * 1024  # a 2-minute utterance at 16 kHz is 3.8 MB; nothing larger is ours
_HEADER = struct.Struct(">IB")
_JSON = ord("J")
_AUDIO = ord("A")

Message = dict[str, Any] | bytes  # a JSON object, or audio


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def encode_json(message: dict[str, Any]) -> bytes:
    # "replace": text from the network (a SIP header with Latin-1 bytes reaches us with lone
    # surrogates) must not make a message unsendable.
    payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "replace"
    )
    return _HEADER.pack(len(payload), _JSON) + payload


def encode_audio(pcm: bytes) -> bytes:
    return _HEADER.pack(len(pcm), _AUDIO) + pcm


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None when the peer closed the connection between frames."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("connection closed inside a frame header") from None
        return None
    length, kind = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes is larger than {MAX_FRAME}")
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed inside a frame") from None
    if kind == _AUDIO:
        return payload
    if kind != _JSON:
        raise ProtocolError(f"unknown frame kind {kind!r}")
    try:
        message = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a JSON frame must hold an object")
    return message


class Link:
    """One connection: send JSON or audio, receive messages. Writes are buffered by asyncio;
    `drain` only when a producer could outrun the peer (audio streams)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, path: str) -> Link:
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_FRAME)
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()

    def send(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode_json(message))

    def send_audio(self, pcm: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode_audio(pcm))

    async def drain(self) -> None:
        await self.writer.drain()

    async def receive(self) -> Message | None:
        return await read_message(self.reader)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
