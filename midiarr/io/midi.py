"""Standard MIDI File reader and writer (type 0 and 1) through symusic.

Type-0 files and type-1 tracks that mix channels are split into one track per
channel and program by the parser, so roles can be told apart. Each track keeps the
channel it was read on (`midiarr.smf` recovers it; symusic does not), and is written
back on it.
"""

from __future__ import annotations

import os
from pathlib import Path

import symusic

from midiarr.convert import from_symusic, midi_file_channels, to_midi_bytes
from midiarr.errors import InputError
from midiarr.io.files import atomic_write_bytes, read_input_bytes
from midiarr.io.limits import MAX_FILE_BYTES, check_song_limits
from midiarr.song import Song

MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar", ".rmi")


def parse_midi_bytes(data: bytes, name: str = "<bytes>") -> Song:
    """Parse SMF bytes into a `Song`, with one clear `InputError` for anything broken."""
    if len(data) == 0:
        raise InputError(f"{name}: empty file")
    if data.startswith(b"RIFF") and data[8:12] == b"RMID":
        data = _unwrap_rmid(data, name)
    if not data.startswith(b"MThd"):
        raise InputError(f"{name}: not a MIDI file (no MThd header)")
    if len(data) >= 14 and data[12] & 0x80:
        raise InputError(f"{name}: SMPTE time division is not supported; re-save with ticks per quarter note")
    try:
        score = symusic.Score.from_midi(data)
    except (RuntimeError, ValueError) as exc:
        detail = str(exc).replace("MiniMidi: ", "").replace(": iostream error", "").replace("Invaild", "invalid")
        raise InputError(f"{name}: broken MIDI file ({detail})") from None
    if score.ticks_per_quarter <= 0:
        raise InputError(f"{name}: invalid time division {score.ticks_per_quarter}")
    song = from_symusic(score)
    check_song_limits(song, name)  # before the channel scan, which is only worth it for a song that is kept
    for track, channel in zip(song.tracks, midi_file_channels(data, song), strict=True):
        track.channel = channel
    return song


def _unwrap_rmid(data: bytes, name: str) -> bytes:
    """The Standard MIDI File inside a RIFF RMID (.rmi) container's ``data`` chunk."""
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            return data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)
    raise InputError(f"{name}: RIFF MIDI (.rmi) file without a data chunk")


def read_midi(path: str | os.PathLike[str]) -> Song:
    """Read a .mid file into a `Song` (title and source recorded in metadata)."""
    data = read_input_bytes(path, MAX_FILE_BYTES)
    song = parse_midi_bytes(data, str(path))
    song.metadata.setdefault("title", Path(path).stem)
    song.metadata["source"] = str(path)
    return song


def write_midi(song: Song, path: str | os.PathLike[str]) -> Path:
    """Write the song as a type-1 Standard MIDI File, atomically."""
    return atomic_write_bytes(path, to_midi_bytes(song))
