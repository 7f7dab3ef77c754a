"""A light scanner of Standard MIDI File bytes, for what symusic does not keep: MIDI channels.

symusic (the parser and writer midiarr uses) splits each MIDI track into one track per
(channel, program) and then forgets the channel; it writes track i on channel i. This module
recovers, for each track symusic read, the channel its notes were on (`recover_channels`), and
moves the tracks of a file symusic wrote onto chosen channels (`set_channels`).

A per-event Python loop (or mido) is ~40x slower than symusic, so the scan is vectorized:
every byte below 0x80 ends a "token" (a delta time, a data byte, or a status byte with its first
data byte all are a run of high bytes then one low byte). A delta time is one token, a 2-data
channel message two more, a 1-data one (program change, channel pressure) one more, with or
without running status. So a run of channel events of one data length is a fixed stride of
tokens, and only meta/sysex events and switches between the two lengths need a Python step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A file whose events switch between 1- and 2-data messages more often than this (channel
# pressure between every note) is not scanned: its channels are left unknown, never guessed.
MAX_SEGMENTS = 200_000
# The order-preserving match of symusic tracks to (track, channel, program) groups is n x m.
MAX_MATCH_CELLS = 250_000


class ScanError(ValueError):
    """The bytes are not what the scanner can follow (its caller then knows no channels)."""


@dataclass
class TrackScan:
    """One MTrk chunk's channel events, in file order."""

    status: np.ndarray  # status byte of each channel event (running status resolved)
    status_pos: np.ndarray  # byte offset (in the chunk) of each status byte written out
    d1: np.ndarray
    d2: np.ndarray  # 0 for 1-data messages
    tick: np.ndarray  # absolute tick


def chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of the payload of every MTrk chunk, in file order."""
    if not data.startswith(b"MThd") or len(data) < 14:
        raise ScanError("no MThd header")
    pos = 8 + int.from_bytes(data[4:8], "big")
    out = []
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
        start = pos + 8
        if kind == b"MTrk":
            out.append((start, min(size, len(data) - start)))
        pos = start + size
    return out


def _chunk(data: bytes, start: int, size: int) -> np.ndarray:
    """A chunk's payload as a uint8 view (no copy)."""
    return np.frombuffer(data, dtype=np.uint8, count=size, offset=start)


def _vlq(buf: np.ndarray, pos: int) -> tuple[int, int]:
    """A variable-length quantity at ``pos``: (value, offset after it); at most 4 bytes, as minimidi."""
    value = 0
    for k in range(4):
        if pos + k >= len(buf):
            raise ScanError("truncated length")
        byte = int(buf[pos + k])
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + k + 1
    raise ScanError("length longer than 4 bytes")


_SYSTEM_LENGTHS = {0xF2: 3, 0xF3: 2, 0xF6: 1, 0xF8: 1, 0xFA: 1, 0xFB: 1, 0xFC: 1, 0xFE: 1}


def scan_track(buf: np.ndarray) -> TrackScan:
    """Every channel event of one MTrk payload (uint8 array), with its tick; `ScanError` if it
    cannot be followed. Large temporaries are kept few: on some machines the page faults of
    fresh arrays cost more than the arithmetic."""
    low = buf < 0x80
    ends = np.flatnonzero(low)
    ntok = len(ends)
    if ntok == 0:
        return TrackScan(*(np.zeros(0, np.uint8) for _ in range(4)), tick=np.zeros(0, np.int64))
    # first byte of each token: the byte after the previous token's low byte
    first = np.empty(ntok, dtype=np.uint8)
    first[0] = buf[0]
    first[1:] = buf[1:][low[:-1]][: ntok - 1]
    del low
    one_data = (first >= 0xC0) & (first < 0xE0)
    # Event tokens that end a run: of 2-data messages, a 1-data status or anything from 0xF0;
    # of 1-data messages, any status but another 1-data one. Indexed by phase along the stride.
    breaks2 = one_data | (first >= 0xF0)
    breaks1 = (first >= 0x80) & ~one_data
    table = {
        3: [np.flatnonzero(breaks2[r::3]) * 3 + r for r in range(3)],
        2: [np.flatnonzero(breaks1[r::2]) * 2 + r for r in range(2)],
    }
    del one_data, breaks1, breaks2
    runs: list[tuple[int, int, int]] = []  # (first event token, count, stride)
    other_deltas: list[int] = []  # delta tokens of meta, sysex and system events
    moved_start: dict[int, int] = {}  # delta tokens that begin right after a payload
    status = 0
    i = 0  # token index of the next event's delta time
    while i + 1 < ntok:
        if len(runs) + len(other_deltas) > MAX_SEGMENTS:
            raise ScanError("too many switches between message lengths")
        e = i + 1
        b = int(first[e])
        if b < 0xF0:
            st = b if b >= 0x80 else status
            if st == 0:
                raise ScanError("running status without a status")
            stride = 2 if 0xC0 <= st < 0xE0 else 3
            phase = table[stride][e % stride]
            k = int(np.searchsorted(phase, e + 1))
            if k < len(phase):
                count = (int(phase[k]) - e) // stride
            else:  # no end of track: the run goes to the last whole event
                count = (ntok - 1 - (stride - 2) - e) // stride + 1
            if count <= 0:
                break
            runs.append((e, count, stride))
            tokens = first[e : e + count * stride : stride]
            explicit = np.flatnonzero(tokens >= 0x80)
            if len(explicit):
                status = int(tokens[explicit[-1]])
            i = e + count * stride - 1
            continue
        q = int(ends[e - 1]) + 1
        if b == 0xFF:
            if q + 1 >= len(buf):
                raise ScanError("truncated meta event")
            meta_type = int(buf[q + 1])
            length, pos = _vlq(buf, q + 2)
            end = pos + length
            other_deltas.append(i)
            if meta_type == 0x2F:  # end of track: minimidi reads no further
                break
        elif b in (0xF0, 0xF7):
            length, pos = _vlq(buf, q + 1)
            end = pos + length
            other_deltas.append(i)
        elif b in _SYSTEM_LENGTHS:
            end = q + _SYSTEM_LENGTHS[b]
            other_deltas.append(i)
        else:
            raise ScanError(f"unknown status 0x{b:02x}")
        if end > len(buf):
            raise ScanError("event runs past the chunk")
        # minimidi would repeat this event for data bytes after it, never a channel message
        status = 0
        if end >= len(buf):
            break
        i = int(np.searchsorted(ends, end))  # the token that ends the next delta time
        moved_start[i] = end
    if not runs:
        return TrackScan(*(np.zeros(0, np.uint8) for _ in range(4)), tick=np.zeros(0, np.int64))
    events = np.concatenate([np.arange(e, e + c * s, s) for e, c, s in runs])
    two = np.concatenate([np.full(c, s == 3) for _, c, s in runs])

    def starts(tokens: np.ndarray) -> np.ndarray:
        out = ends[np.maximum(tokens - 1, 0)] + 1
        out[tokens == 0] = 0
        return out

    def delta_values(tokens: np.ndarray) -> np.ndarray:
        """Delta times ending at these tokens (4 bytes at most, as minimidi reads them)."""
        d_end = ends[tokens]
        d_start = starts(tokens)
        if moved_start:
            hit = np.flatnonzero(np.isin(tokens, np.fromiter(moved_start, np.int64)))
            d_start[hit] = [moved_start[t] for t in tokens[hit].tolist()]
        d_len = d_end - d_start + 1
        if len(d_len) and d_len.max() > 4:
            raise ScanError("delta time longer than 4 bytes")
        value = (buf[d_end] & 0x7F).astype(np.int64)
        for k in (1, 2, 3):
            m = np.flatnonzero(d_len > k)
            if len(m):
                value[m] += (buf[d_end[m] - k] & 0x7F).astype(np.int64) << (7 * k)
        return value

    # ticks: every event's delta summed in file order, meta events' deltas included
    tick = np.cumsum(delta_values(events - 1))
    if other_deltas:
        others = np.array(other_deltas, dtype=np.int64)
        before = np.searchsorted(events - 1, others)  # channel events before each meta event
        extra = np.bincount(before, weights=delta_values(others), minlength=len(events) + 1)
        tick += np.cumsum(extra[: len(events)]).astype(np.int64)
    # status of each event: its own, or the last one written before it (running status)
    own = first[events]
    explicit = own >= 0x80
    last = np.where(explicit, np.arange(len(events)), -1)
    np.maximum.accumulate(last, out=last)
    if last[0] < 0:
        raise ScanError("running status without a status")
    status_arr = own[last]
    # a status token is the status and its first data byte; a running one is the data byte alone
    d1_pos = ends[events]
    if np.any(d1_pos - starts(events) + 1 != np.where(explicit, 2, 1)):
        raise ScanError("data byte with the high bit set")
    second = events[two] + 1
    if len(second) and np.any(ends[second] != ends[second - 1] + 1):
        raise ScanError("data byte with the high bit set")
    d2 = np.zeros(len(events), dtype=np.uint8)
    d2[two] = buf[ends[second]]
    return TrackScan(
        status=status_arr,
        status_pos=d1_pos[explicit] - 1,
        d1=buf[d1_pos],
        d2=d2,
        tick=tick,
    )


@dataclass
class _Group:
    """The notes symusic (0.6) puts in one (MIDI track, channel, program) track."""

    channel: int
    program: int
    starts: np.ndarray  # sorted start tick * 128 + pitch of every note-on in the group


def _groups(scan: TrackScan) -> list[_Group]:
    """One group per (channel, program) a note starts on, in symusic's order (channel, then program).

    symusic makes a track when a note-on comes, for the note-on's channel and the program then in
    force there; the note stays in it whenever and wherever its note-off comes (a note never
    closed is dropped, but its track stays).
    """
    kind = scan.status & 0xF0
    ons = np.flatnonzero((kind == 0x90) & (scan.d2 > 0))
    if len(ons) == 0:
        return []
    channel = (scan.status[ons] & 0x0F).astype(np.int64)
    program = np.zeros(len(ons), dtype=np.int64)
    changes = np.flatnonzero(kind == 0xC0)
    change_channel = scan.status[changes] & 0x0F
    for ch in np.unique(change_channel).tolist():
        at = changes[change_channel == ch]
        here = np.flatnonzero(channel == ch)
        k = np.searchsorted(at, ons[here]) - 1
        program[here] = np.where(k >= 0, scan.d1[at[np.maximum(k, 0)]], 0)
    key = channel * 128 + program
    code = scan.tick[ons] * 128 + scan.d1[ons]
    order = np.lexsort((code, key))
    key, code = key[order], code[order]
    bounds = np.flatnonzero(np.diff(key)) + 1
    return [
        _Group(int(k) // 128, int(k) % 128, c)
        for k, c in zip(key[np.r_[0, bounds]].tolist(), np.split(code, bounds), strict=True)
    ]


def _fits(notes: np.ndarray, group: _Group) -> bool:
    """Whether every note of a symusic track is a note-on of the group (as multisets)."""
    if len(notes) > len(group.starts):
        return False
    if len(notes) == len(group.starts):
        return bool(np.array_equal(notes, group.starts))
    have, have_n = np.unique(group.starts, return_counts=True)
    want, want_n = np.unique(notes, return_counts=True)
    pos = np.searchsorted(have, want)
    if np.any(pos >= len(have)):
        return False
    return bool(np.all(have[pos] == want) and np.all(have_n[pos] >= want_n))


def recover_channels(data: bytes, tracks: list[tuple[int, bool, np.ndarray]]) -> list[int | None]:
    """The channel of each track symusic read from ``data``.

    ``tracks`` holds, per symusic track in its order, (program, is_drum, sorted note starts as
    start tick * 128 + pitch). symusic emits, MIDI track by MIDI track, one track per (channel,
    program) that a note starts on, sorted; the tracks are matched to those groups in that order,
    by program, drum channel and notes (a group left unmatched, as a file the scan reads
    differently would leave, is allowed for). A track that could match groups on different
    channels gets None, and so does every track when the scan fails or nothing matches.
    """
    unknown: list[int | None] = [None] * len(tracks)
    if not tracks:
        return []
    try:
        groups = [g for start, size in chunks(data) for g in _groups(scan_track(_chunk(data, start, size)))]
    except (ScanError, IndexError, ValueError):  # a file it cannot follow: read on, channels unknown
        return unknown
    n, m = len(tracks), len(groups)
    cache: dict[tuple[int, int], bool] = {}

    def fits(i: int, j: int) -> bool:
        if (i, j) not in cache:
            program, drum, notes = tracks[i]
            g = groups[j]
            cache[i, j] = g.program == program and (g.channel == 9) == drum and _fits(notes, g)
        return cache[i, j]

    if n == m and all(fits(i, i) for i in range(n)):  # the usual case: no group left out
        return [g.channel for g in groups]
    if n > m or n * m > MAX_MATCH_CELLS:
        return unknown
    # can tracks[:i] be matched in order into groups[:j] (fwd), tracks[i:] into groups[j:] (bwd)
    fwd = np.zeros((n + 1, m + 1), dtype=bool)
    fwd[0, :] = True
    for i in range(1, n + 1):
        for j in range(i, m + 1):
            fwd[i, j] = fwd[i, j - 1] or (fwd[i - 1, j - 1] and fits(i - 1, j - 1))
    if not fwd[n, m]:
        return unknown
    bwd = np.zeros((n + 1, m + 1), dtype=bool)
    bwd[n, :] = True
    for i in range(n - 1, -1, -1):
        for j in range(m - 1 - (n - 1 - i), -1, -1):
            bwd[i, j] = bwd[i, j + 1] or (fits(i, j) and bwd[i + 1, j + 1])
    out = list(unknown)
    for i in range(n):
        options = {groups[j].channel for j in range(m) if fwd[i, j] and bwd[i + 1, j + 1] and fits(i, j)}
        if len(options) == 1:
            out[i] = options.pop()
    return out


def set_channels(data: bytes, channels: list[int]) -> bytes:
    """A file symusic wrote, with the k-th track that has channel events moved onto ``channels[k]``.

    symusic writes each track as one MTrk on one channel (with running status), so setting the low
    nibble of every status byte in it keeps running status valid and the file the same length.
    """
    out = bytearray(data)
    k = 0
    for start, size in chunks(data):
        scan = scan_track(_chunk(data, start, size))
        if len(scan.status) == 0:
            continue  # the tempo and meter track
        if k >= len(channels):
            raise RuntimeError("the written file has more tracks than the song")
        pos = scan.status_pos + start
        arr = np.frombuffer(out, dtype=np.uint8)  # a view: edits go into out
        arr[pos] = (arr[pos] & 0xF0) | channels[k]
        k += 1
    if k != len(channels):
        raise RuntimeError("the written file has fewer tracks than the song")
    return bytes(out)
