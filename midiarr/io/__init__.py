"""Readers and writers, one per format, chosen by file extension."""

from __future__ import annotations

import os
from pathlib import Path

from midiarr.errors import InputError, OutputError
from midiarr.io.files import atomic_write_bytes, atomic_write_text, check_output_path
from midiarr.io.midi import MIDI_SUFFIXES, parse_midi_bytes, read_midi, write_midi
from midiarr.io.musicxml import MUSICXML_SUFFIXES, read_musicxml, write_musicxml
from midiarr.song import Song

SUPPORTED_SUFFIXES = MIDI_SUFFIXES + MUSICXML_SUFFIXES

__all__ = [
    "SUPPORTED_SUFFIXES",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_path",
    "load",
    "parse_midi_bytes",
    "read_midi",
    "read_musicxml",
    "save",
    "write_midi",
    "write_musicxml",
]


def _format_of(path: Path, error: type[Exception]) -> str:
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return "midi"
    if suffix in MUSICXML_SUFFIXES:
        return "musicxml"
    raise error(f"{path}: unknown format {suffix or '(no extension)'!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")


def load(path: str | os.PathLike[str]) -> Song:
    """Read a MIDI or MusicXML file into a `Song` (format from the extension)."""
    p = Path(path)
    if _format_of(p, InputError) == "midi":
        return read_midi(p)
    return read_musicxml(p)


def save(song: Song, path: str | os.PathLike[str]) -> Path:
    """Write a `Song` as MIDI or MusicXML (format from the extension), atomically."""
    p = Path(path)
    if _format_of(p, OutputError) == "midi":
        return write_midi(song, p)
    return write_musicxml(song, p)
