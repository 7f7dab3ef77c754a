"""What midiarr accepts from a file: sizes that keep a hostile input from hanging it, and the
tempo, meter, key and note values every later stage relies on.

Both readers (MIDI and MusicXML) end in `check_song_limits`, so a song that reached the rest of
midiarr has passed one set of checks, whatever its format.
"""

from __future__ import annotations

import math

import numpy as np

from midiarr.errors import InputError, LimitError
from midiarr.song import Song

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_NOTES = 2_000_000
MAX_SECONDS = 3 * 60 * 60.0
MAX_TRACKS = 512
MAX_TICKS_PER_BEAT = 0x7FFF  # the largest division a Standard MIDI File can state

# Real files reach 9.5-300 bpm; the bounds leave room for tempo tricks and refuse only values
# no player can mean (a 0 microseconds-per-beat tempo is an infinite one).
MIN_QPM = 1.0
MAX_QPM = 2000.0
# Denominators are powers of two in MIDI (an exponent byte) and in notation; 76/32 occurs in real files.
METER_DENOMINATORS = (1, 2, 4, 8, 16, 32, 64, 128)
MAX_METER_NUMERATOR = 128
MAX_BAR_QUARTERS = 64  # the longest bar, in quarter notes
MAX_TEMPO_CHANGES = 100_000
MAX_METER_CHANGES = 100_000
# MusicXML's compressed form: what a .mxl may expand to, absolutely and per compressed byte.
MAX_MXL_EXPANDED_BYTES = 128 * 1024 * 1024
MAX_MXL_RATIO = 200
# music21 builds an object per note, and a measure is re-sorted as notes are added to it:
# a measure far beyond any real one would run for minutes.
MAX_XML_NOTES_PER_MEASURE = 4096
MAX_XML_NOTES = 200_000
MAX_XML_MEASURE_WORK = 6_000_000  # the sum over parts of measures squared: 2,449 measures of one part
# Writing MusicXML goes through music21's notation step (measures, voices, spelling), which is
# slower still: parts x bars squared, and notes.
MAX_NOTATION_WORK = 800_000  # 447 bars of a 4-part song, 258 bars of 12 parts
MAX_NOTATION_NOTES = 60_000


def _where(song: Song, tick: int) -> str:
    try:
        bar = int(np.searchsorted(song.bar_starts(), tick, side="right"))
    except Exception:  # the grid itself may be what is broken
        return f"tick {tick}"
    return f"bar {max(bar, 1)}"


def check_song_values(song: Song, name: str) -> None:
    """Raise `InputError` for a tempo, meter, key, time division or note no later stage can use."""
    tpb = song.ticks_per_beat
    if not 1 <= tpb <= MAX_TICKS_PER_BEAT:
        raise InputError(f"{name}: time division {tpb} ticks per beat is out of range (1-{MAX_TICKS_PER_BEAT})")
    if len(song.tempos) > MAX_TEMPO_CHANGES or len(song.time_signatures) > MAX_METER_CHANGES:
        raise LimitError(f"{name}: more than {MAX_TEMPO_CHANGES} tempo or meter changes")
    for t in song.tempos:
        if t.tick < 0:
            raise InputError(f"{name}: a tempo change at negative tick {t.tick}")
        if not math.isfinite(t.qpm) or not MIN_QPM <= t.qpm <= MAX_QPM:
            shown = "infinite" if math.isinf(t.qpm) else f"{t.qpm:g} bpm"
            raise InputError(f"{name}: tempo {shown} at tick {t.tick} is out of range ({MIN_QPM:g}-{MAX_QPM:g} bpm)")
    for ts in song.time_signatures:
        if ts.tick < 0:
            raise InputError(f"{name}: a time signature at negative tick {ts.tick}")
        meter = f"{ts.numerator}/{ts.denominator}"
        if not 1 <= ts.numerator <= MAX_METER_NUMERATOR or ts.denominator not in METER_DENOMINATORS:
            raise InputError(
                f"{name}: time signature {meter} at tick {ts.tick} is not a meter "
                f"(numerator 1-{MAX_METER_NUMERATOR}, denominator a power of two up to 128)"
            )
        if ts.numerator * 4 / ts.denominator > MAX_BAR_QUARTERS:
            raise InputError(f"{name}: time signature {meter} makes bars over {MAX_BAR_QUARTERS} beats long")
    for ks in song.key_signatures:
        if not -7 <= ks.key <= 7:
            raise InputError(f"{name}: key signature with {ks.key} sharps at tick {ks.tick} (expected -7 to 7)")
    for index, track in enumerate(song.tracks):
        notes = track.notes
        if len(notes) == 0:
            continue
        if int(notes["start"].min()) < 0:
            raise InputError(f"{name}: track {index} has a note before the start of the song")
        if int(notes["duration"].min()) < 0:
            tick = int(notes["start"][np.argmin(notes["duration"])])
            raise InputError(f"{name}: track {index} has a note of negative length at {_where(song, tick)}")
        pitch, velocity = notes["pitch"], notes["velocity"]
        if int(pitch.min()) < 0 or int(pitch.max()) > 127 or int(velocity.min()) < 0 or int(velocity.max()) > 127:
            raise InputError(f"{name}: track {index} has a pitch or velocity outside 0-127")


def check_song_limits(song: Song, name: str) -> None:
    """Raise `LimitError` when the song is beyond what midiarr processes, `InputError` for bad values."""
    if song.note_count > MAX_NOTES:
        raise LimitError(f"{name}: {song.note_count} notes, over the {MAX_NOTES} limit")
    if len(song.tracks) > MAX_TRACKS:
        raise LimitError(f"{name}: {len(song.tracks)} tracks, over the {MAX_TRACKS} limit")
    check_song_values(song, name)
    if song.note_count and song.duration_seconds > MAX_SECONDS:
        minutes = song.duration_seconds / 60
        raise LimitError(f"{name}: {minutes:.0f} minutes long, over the {MAX_SECONDS / 60:.0f}-minute limit")
