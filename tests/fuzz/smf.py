"""A tiny Standard MIDI File writer that will write anything, including what the format forbids.

The fuzz cases need files no sane library writes: lying chunk lengths, running status across a meta
event, five-byte delta times, a tempo of zero. Everything here is bytes in, bytes out.
"""

from __future__ import annotations

import random
import struct


def vlq(value: int) -> bytes:
    """A variable-length quantity (the SMF delta-time encoding) of any size, even over the 4-byte limit."""
    value = max(0, value)
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def chunk(tag: bytes, data: bytes, length: int | None = None) -> bytes:
    """A chunk: four-byte tag, big-endian length (``length`` when it should lie), data."""
    stated = len(data) if length is None else length
    return tag + struct.pack(">I", stated & 0xFFFFFFFF) + data


def header(fmt: int = 1, ntracks: int = 1, division: int = 480, length: int | None = None) -> bytes:
    data = struct.pack(">HHH", fmt & 0xFFFF, ntracks & 0xFFFF, division & 0xFFFF)
    return chunk(b"MThd", data, length)


def meta(kind: int, data: bytes, length: int | None = None) -> bytes:
    return bytes([0xFF, kind]) + vlq(len(data) if length is None else length) + data


def tempo(us_per_beat: int) -> bytes:
    return meta(0x51, (us_per_beat & 0xFFFFFF).to_bytes(3, "big"))


def time_signature(numerator: int, denominator_exponent: int, clocks: int = 24, thirty_seconds: int = 8) -> bytes:
    return meta(0x58, bytes([numerator & 0xFF, denominator_exponent & 0xFF, clocks & 0xFF, thirty_seconds & 0xFF]))


def key_signature(sharps: int, minor: int = 0) -> bytes:
    return meta(0x59, bytes([sharps & 0xFF, minor & 0xFF]))


def track_name(name: bytes) -> bytes:
    return meta(0x03, name)


END_OF_TRACK = meta(0x2F, b"")


def track(events: list[tuple[int, bytes]], end: bool = True, length: int | None = None) -> bytes:
    """An MTrk chunk from (delta, event bytes) pairs; ``end`` appends the end-of-track meta event."""
    body = b"".join(vlq(delta) + event for delta, event in events)
    if end:
        body += b"\x00" + END_OF_TRACK
    return chunk(b"MTrk", body, length)


def note_events(notes: list[tuple[int, int, int, int]], channel: int = 0) -> list[tuple[int, bytes]]:
    """(start, duration, pitch, velocity) notes as delta-timed note-on/note-off events."""
    timed: list[tuple[int, int, bytes]] = []
    for start, duration, pitch, velocity in notes:
        timed.append((start, 1, bytes([0x90 | channel, pitch & 0x7F, velocity & 0x7F])))
        timed.append((start + duration, 0, bytes([0x80 | channel, pitch & 0x7F, 0])))
    timed.sort(key=lambda e: (e[0], e[1]))
    out, now = [], 0
    for tick, _, event in timed:
        out.append((tick - now, event))
        now = tick
    return out


def smf(tracks: list[bytes], fmt: int | None = None, division: int = 480, ntracks: int | None = None) -> bytes:
    """A whole file from finished track chunks."""
    fmt = (0 if len(tracks) == 1 else 1) if fmt is None else fmt
    return header(fmt, len(tracks) if ntracks is None else ntracks, division) + b"".join(tracks)


def random_notes(rng: random.Random, count: int, tpb: int, low: int = 36, high: int = 84) -> list[tuple]:
    """Plausible notes on a 16th-note grid: what a real part of ``count`` notes might look like."""
    step = max(1, tpb // 4)
    notes, tick = [], 0
    for _ in range(count):
        tick += step * rng.choice((0, 1, 1, 2, 2, 4))
        notes.append((tick, step * rng.choice((1, 2, 4)), rng.randint(low, high), rng.randint(30, 127)))
    return notes


def random_song(rng: random.Random, tracks: int = 3, notes: int = 64, tpb: int = 480) -> bytes:
    """A small, valid type-1 file: a conductor track (tempo, meter, key) and pitched and drum tracks."""
    conductor = track(
        [
            (0, tempo(rng.choice((400_000, 500_000, 600_000, 750_000)))),
            (0, time_signature(rng.choice((3, 4, 5, 6, 7)), rng.choice((2, 3)))),
            (0, key_signature(rng.randint(-7, 7), rng.randint(0, 1))),
        ]
    )
    chunks = [conductor]
    for i in range(tracks):
        channel = 9 if i == tracks - 1 and tracks > 1 else i
        events = [(0, track_name(f"Track {i}".encode())), (0, bytes([0xC0 | channel, rng.randint(0, 127)]))]
        events += note_events(random_notes(rng, notes, tpb), channel)
        chunks.append(track(events))
    return smf(chunks, fmt=1, division=tpb)


def chunk_offsets(data: bytes) -> list[tuple[int, int]]:
    """(offset, stated length) of each chunk header found by walking the file as its lengths say."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        out.append((pos, length))
        pos += 8 + length
    return out


def is_complete_smf(data: bytes) -> bool:
    """True when the file is an MThd header followed by chunks whose lengths add up to the file exactly."""
    if not data.startswith(b"MThd"):
        return False
    pos = 0
    while pos < len(data):
        if pos + 8 > len(data):
            return False
        pos += 8 + struct.unpack(">I", data[pos + 4 : pos + 8])[0]
    return pos == len(data)
