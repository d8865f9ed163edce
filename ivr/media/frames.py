"""Moving 20 ms audio frames in and out of pjsua2 without the SWIG copy.

`bytes(frame.buf)` goes through SWIG element by element: ~300 µs for a 640-byte frame, which
saturates pjsua2's single clock thread at a few dozen calls. A `ByteVector` is a libstdc++
`std::vector<unsigned char>`: three pointers (begin, end, end of storage). Reading `begin..end`
with ctypes costs ~1 µs. This relies on that layout, so `fast_frames_work()` checks it once
against the slow path and callers fall back when it does not hold.
"""

from __future__ import annotations

import ctypes
from functools import cache

import pjsua2 as pj

from ivr.media.audio import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, SILENCE

__all__ = ["FRAME_BYTES", "FRAME_MS", "SAMPLE_RATE", "SILENCE", "fast_frames_work", "frame_io"]

_Pointers = ctypes.c_void_p * 3


def _pointers(vector: pj.ByteVector) -> _Pointers:
    return _Pointers.from_address(int(vector.this))


def read_fast(vector: pj.ByteVector) -> bytes:
    begin, end, _ = _pointers(vector)
    if not begin or not end:
        return b""
    return ctypes.string_at(begin, end - begin)


def write_fast(vector: pj.ByteVector, data: bytes) -> None:
    if vector.size() != len(data):
        vector.resize(len(data))
    begin = _pointers(vector)[0]
    if begin:
        ctypes.memmove(begin, data, len(data))


def read_slow(vector: pj.ByteVector) -> bytes:
    return bytes(vector)


def write_slow(vector: pj.ByteVector, data: bytes) -> None:
    vector.resize(0)
    for byte in data:
        vector.append(byte)


@cache
def fast_frames_work() -> bool:
    """Does the vector layout hold in this build? (Checked once, both directions.)"""
    try:
        probe = pj.ByteVector()
        sample = bytes(range(256)) + bytes(384)
        write_fast(probe, sample)
        if bytes(probe) != sample:
            return False
        return read_fast(probe) == sample
    except Exception:  # any surprise in the layout: use the slow, safe path
        return False


def frame_io() -> tuple[object, object]:
    """(read, write) functions for `MediaFrame.buf`: fast when the layout check passed."""
    if fast_frames_work():
        return read_fast, write_fast
    return read_slow, write_slow
