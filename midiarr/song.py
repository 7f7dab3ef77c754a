"""The one `Song` type every midiarr stage reads and writes.

Time is kept in integer ticks (``ticks_per_beat`` per quarter note) so that
subtraction, tokenization and writing never move a note; seconds come from the
tempo map on demand. Notes live in one numpy structured array per track, which
keeps corpus-scale work (``prepare`` over thousands of files) fast.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

NOTE_DTYPE = np.dtype([("start", "i8"), ("duration", "i8"), ("pitch", "i2"), ("velocity", "i2")])
CONTROL_DTYPE = np.dtype([("time", "i8"), ("number", "i2"), ("value", "i2")])
PITCH_BEND_DTYPE = np.dtype([("time", "i8"), ("value", "i4")])

DEFAULT_TICKS_PER_BEAT = 480
DEFAULT_QPM = 120.0


@dataclass(frozen=True)
class Note:
    """One note: onset and length in ticks, MIDI pitch and velocity."""

    start: int
    duration: int
    pitch: int
    velocity: int = 80

    @property
    def end(self) -> int:
        """Tick at which the note stops sounding."""
        return self.start + self.duration


@dataclass(frozen=True)
class Tempo:
    """A tempo change: from ``tick`` on, ``qpm`` quarter notes per minute."""

    tick: int
    qpm: float


@dataclass(frozen=True)
class TimeSignature:
    """A meter change at ``tick`` (e.g. 6/8 is numerator 6, denominator 8)."""

    tick: int
    numerator: int
    denominator: int

    @property
    def beat_ticks_factor(self) -> float:
        """Length of one beat (a 1/denominator note) in quarter notes."""
        return 4.0 / self.denominator


@dataclass(frozen=True)
class KeySignature:
    """A key change: ``key`` counts sharps (positive) or flats (negative)."""

    tick: int
    key: int
    minor: bool = False

    @property
    def tonic_pitch_class(self) -> int:
        """Pitch class (0 = C) of the key's tonic."""
        major_tonic = (self.key * 7) % 12
        return (major_tonic + 9) % 12 if self.minor else major_tonic


@dataclass(frozen=True)
class ChordSymbol:
    """A chord the song states (a lead sheet's chord symbol) from ``tick`` until the next one.

    ``root`` and ``bass`` are pitch classes (0 = C); ``quality`` one of `midiarr.harmony.QUALITIES`;
    ``bass`` is None unless the symbol names a slash bass. A root of None is "N.C." (no chord)."""

    tick: int
    root: int | None
    quality: str = "maj"
    bass: int | None = None


@dataclass(frozen=True)
class Marker:
    """A text marker (section name, lyric-free annotation) at ``tick``."""

    tick: int
    text: str


def empty_notes(size: int = 0) -> np.ndarray:
    """A zero-filled note array of the given length."""
    return np.zeros(size, dtype=NOTE_DTYPE)


def notes_array(notes: Iterable[Note | tuple[int, int, int, int]]) -> np.ndarray:
    """Build a sorted note array from `Note` objects or (start, duration, pitch, velocity) tuples."""
    rows = [(n.start, n.duration, n.pitch, n.velocity) if isinstance(n, Note) else tuple(n) for n in notes]
    arr = np.array(rows, dtype=NOTE_DTYPE) if rows else empty_notes()
    return sort_notes(arr)


def sort_notes(notes: np.ndarray) -> np.ndarray:
    """Notes ordered by onset, then pitch, then duration (the order every writer uses)."""
    if len(notes) < 2:
        return notes
    order = np.lexsort((notes["duration"], notes["pitch"], notes["start"]))
    return notes[order]


@dataclass
class Track:
    """One instrument part: name, GM program, drum flag and its notes.

    ``role`` is an explicit stem role (``bass``, ``drums``…) when one is known for
    certain (a user override, or a part midiarr wrote); otherwise roles are
    inferred by :mod:`midiarr.roles`.

    ``channel`` is the MIDI channel (0-15, 9 is General MIDI drums) the part was read on, so
    writing puts it back there; None where none is known (a part midiarr wrote, MusicXML), and
    the writer then picks a channel no other part uses.
    """

    name: str = ""
    program: int = 0
    is_drum: bool = False
    notes: np.ndarray = field(default_factory=empty_notes)
    controls: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=CONTROL_DTYPE))
    pitch_bends: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=PITCH_BEND_DTYPE))
    role: str | None = None
    channel: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.notes, np.ndarray) or self.notes.dtype != NOTE_DTYPE:
            self.notes = notes_array(self.notes)
        if not 0 <= int(self.program) <= 127:
            raise ValueError(f"program must be 0..127, got {self.program}")
        if self.channel is not None:
            if not 0 <= int(self.channel) <= 15:
                raise ValueError(f"channel must be 0..15 or None, got {self.channel}")
            self.channel = int(self.channel)

    def __len__(self) -> int:
        return len(self.notes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Track):
            return NotImplemented
        return (
            self.name == other.name
            and self.program == other.program
            and self.is_drum == other.is_drum
            and self.role == other.role
            and self.channel == other.channel
            and np.array_equal(self.notes, other.notes)
            and np.array_equal(self.controls, other.controls)
            and np.array_equal(self.pitch_bends, other.pitch_bends)
        )

    def iter_notes(self) -> Iterator[Note]:
        """The notes as `Note` objects (convenient, slower than ``.notes``)."""
        for start, duration, pitch, velocity in self.notes.tolist():
            yield Note(start, duration, pitch, velocity)

    def add_notes(self, notes: Iterable[Note | tuple[int, int, int, int]]) -> None:
        """Append notes and keep the array sorted."""
        self.notes = sort_notes(np.concatenate([self.notes, notes_array(notes)]))

    @property
    def end_tick(self) -> int:
        """Tick at which the last note ends (0 for an empty track)."""
        if len(self.notes) == 0:
            return 0
        return int((self.notes["start"] + self.notes["duration"]).max())

    def copy(self) -> Track:
        """A deep copy."""
        return copy.deepcopy(self)


@dataclass
class Song:
    """A multi-track song: tracks plus tempo, meter and key maps in ticks."""

    ticks_per_beat: int = DEFAULT_TICKS_PER_BEAT
    tracks: list[Track] = field(default_factory=list)
    tempos: list[Tempo] = field(default_factory=list)
    time_signatures: list[TimeSignature] = field(default_factory=list)
    key_signatures: list[KeySignature] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    # chords the song states (read from a lead sheet); empty: midiarr infers the harmony from the notes
    chord_symbols: list[ChordSymbol] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ticks_per_beat <= 0:
            raise ValueError("ticks_per_beat must be positive")
        self.tempos = sorted(self.tempos, key=lambda t: t.tick)
        self.time_signatures = sorted(self.time_signatures, key=lambda t: t.tick)
        self.key_signatures = sorted(self.key_signatures, key=lambda t: t.tick)
        self.chord_symbols = sorted(self.chord_symbols, key=lambda c: c.tick)

    # ----------------------------------------------------------------- basics
    def copy(self) -> Song:
        """A deep copy (tracks, maps and metadata)."""
        return copy.deepcopy(self)

    @property
    def note_count(self) -> int:
        """Number of notes over all tracks."""
        return sum(len(t.notes) for t in self.tracks)

    @property
    def end_tick(self) -> int:
        """Tick at which the last note ends."""
        return max((t.end_tick for t in self.tracks), default=0)

    @property
    def duration_seconds(self) -> float:
        """Length of the song in seconds (to the end of the last note)."""
        return float(self.tick_to_seconds(np.array([self.end_tick]))[0])

    def with_tracks(self, tracks: list[Track]) -> Song:
        """A copy of this song with other tracks and the same maps."""
        out = Song(
            ticks_per_beat=self.ticks_per_beat,
            tracks=[t.copy() for t in tracks],
            tempos=list(self.tempos),
            time_signatures=list(self.time_signatures),
            key_signatures=list(self.key_signatures),
            markers=list(self.markers),
            metadata=dict(self.metadata),
            chord_symbols=list(self.chord_symbols),
        )
        return out

    def first_bars(self, count: int) -> Song:
        """The song's first ``count`` bars: later notes and events dropped, held notes cut at the end."""
        bars = self.bar_starts(max(self.end_tick, 1))
        if count >= len(bars):
            return self.with_tracks(self.tracks)
        end = int(bars[count])
        tracks = []
        for t in self.tracks:
            c = t.copy()
            c.notes = c.notes[c.notes["start"] < end]
            c.notes["duration"] = np.minimum(c.notes["duration"], end - c.notes["start"])
            c.controls = c.controls[c.controls["time"] < end]
            c.pitch_bends = c.pitch_bends[c.pitch_bends["time"] < end]
            tracks.append(c)
        out = self.with_tracks(tracks)
        out.tempos = [x for x in out.tempos if x.tick < end] or out.tempos[:1]
        out.time_signatures = [x for x in out.time_signatures if x.tick < end] or out.time_signatures[:1]
        out.key_signatures = [x for x in out.key_signatures if x.tick < end]
        out.markers = [x for x in out.markers if x.tick < end]
        out.chord_symbols = [x for x in out.chord_symbols if x.tick < end]
        return out

    # -------------------------------------------------------------- tempo map
    def _tempo_segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start tick, start second and seconds-per-tick of each tempo segment."""
        tempos = [t for t in self.tempos if t.qpm > 0] or [Tempo(0, DEFAULT_QPM)]
        if tempos[0].tick > 0:
            tempos = [Tempo(0, tempos[0].qpm), *tempos]
        ticks = np.array([t.tick for t in tempos], dtype=np.int64)
        sec_per_tick = np.array([60.0 / (t.qpm * self.ticks_per_beat) for t in tempos])
        starts = np.zeros(len(tempos))
        if len(tempos) > 1:
            starts[1:] = np.cumsum(np.diff(ticks) * sec_per_tick[:-1])
        return ticks, starts, sec_per_tick

    def tick_to_seconds(self, ticks: np.ndarray | int) -> np.ndarray:
        """Seconds at the given ticks, following every tempo change."""
        ticks_arr = np.asarray(ticks, dtype=np.int64)
        seg_ticks, seg_starts, seg_spt = self._tempo_segments()
        idx = np.searchsorted(seg_ticks, ticks_arr, side="right") - 1
        idx = np.clip(idx, 0, len(seg_ticks) - 1)
        return seg_starts[idx] + (ticks_arr - seg_ticks[idx]) * seg_spt[idx]

    def seconds_to_ticks(self, seconds: np.ndarray | float) -> np.ndarray:
        """Nearest ticks at the given seconds (inverse of `tick_to_seconds`)."""
        sec = np.asarray(seconds, dtype=np.float64)
        seg_ticks, seg_starts, seg_spt = self._tempo_segments()
        idx = np.clip(np.searchsorted(seg_starts, sec, side="right") - 1, 0, len(seg_ticks) - 1)
        return np.round(seg_ticks[idx] + (sec - seg_starts[idx]) / seg_spt[idx]).astype(np.int64)

    def tempo_at(self, tick: int) -> float:
        """Tempo (quarter notes per minute) sounding at ``tick``."""
        qpm = self.tempos[0].qpm if self.tempos else DEFAULT_QPM
        for t in self.tempos:
            if t.tick > tick:
                break
            qpm = t.qpm
        return qpm

    # ------------------------------------------------------------ meter grid
    def time_signature_at(self, tick: int) -> TimeSignature:
        """Meter in force at ``tick`` (4/4 where the file names none)."""
        current = TimeSignature(0, 4, 4)
        for ts in self.time_signatures:
            if ts.tick > tick:
                break
            current = ts
        return current

    def bar_starts(self, end_tick: int | None = None) -> np.ndarray:
        """Tick of every bar start up to ``end_tick`` (the song's end by default).

        A meter change that falls inside a bar starts a new bar where it falls,
        as notation programs and DAWs do.
        """
        end = self.end_tick if end_tick is None else end_tick
        sigs = [ts for ts in self.time_signatures if ts.numerator > 0 and ts.denominator > 0]
        if not sigs or sigs[0].tick > 0:
            sigs = [TimeSignature(0, 4, 4), *sigs]
        starts: list[np.ndarray] = []
        for i, ts in enumerate(sigs):
            seg_end = sigs[i + 1].tick if i + 1 < len(sigs) else max(end, ts.tick + 1)
            if seg_end <= ts.tick:
                continue
            bar_len = max(1, round(ts.numerator * self.ticks_per_beat * 4 / ts.denominator))
            starts.append(np.arange(ts.tick, seg_end, bar_len, dtype=np.int64))
        out = np.unique(np.concatenate(starts)) if starts else np.zeros(1, dtype=np.int64)
        return out if len(out) else np.zeros(1, dtype=np.int64)

    def beat_starts(self, end_tick: int | None = None) -> np.ndarray:
        """Tick of every beat (a 1/denominator note of the meter in force)."""
        bars = self.bar_starts(end_tick)
        end = self.end_tick if end_tick is None else end_tick
        bounds = np.append(bars, max(end, int(bars[-1]) + 1))
        beats = []
        for b0, b1 in itertools.pairwise(bounds):
            ts = self.time_signature_at(int(b0))
            beat_len = max(1, round(self.ticks_per_beat * 4 / ts.denominator))
            beats.append(np.arange(b0, b1, beat_len, dtype=np.int64))
        return np.concatenate(beats)

    @property
    def num_bars(self) -> int:
        """Number of bars that hold any part of the song."""
        return len(self.bar_starts())

    def bar_index(self, ticks: np.ndarray | int) -> np.ndarray:
        """Index of the bar each tick falls in."""
        bars = self.bar_starts(max(self.end_tick, int(np.max(ticks, initial=0)) + 1))
        return np.searchsorted(bars, np.asarray(ticks), side="right") - 1

    def bar_activity(self, notes: np.ndarray, num_bars: int | None = None) -> np.ndarray:
        """Per bar, whether any of ``notes`` sounds in it (a note held over a bar line counts)."""
        bars = self.bar_starts()
        count = len(bars) if num_bars is None else num_bars
        active = np.zeros(count, dtype=bool)
        if len(notes) == 0:
            return active
        first = np.searchsorted(bars, notes["start"], side="right") - 1
        last = np.searchsorted(bars, notes["start"] + np.maximum(notes["duration"], 1) - 1, side="right") - 1
        diff = np.zeros(count + 1, dtype=np.int64)
        np.add.at(diff, np.clip(first, 0, count), 1)
        np.add.at(diff, np.clip(last + 1, 0, count), -1)
        return np.cumsum(diff)[:count] > 0

    def bar_times(self) -> np.ndarray:
        """Start of every bar in seconds."""
        return self.tick_to_seconds(self.bar_starts())

    # ------------------------------------------------------------ transforms
    def quantized(self, steps_per_beat: int) -> Song:
        """A copy with onsets and durations snapped to 1/steps_per_beat of a quarter note."""
        step = self.ticks_per_beat / steps_per_beat
        out = self.copy()
        for track in out.tracks:
            n = track.notes
            if len(n) == 0:
                continue
            starts = np.round(n["start"] / step) * step
            ends = np.round((n["start"] + n["duration"]) / step) * step
            n["start"] = np.round(starts).astype(np.int64)
            n["duration"] = np.maximum(np.round(ends - starts).astype(np.int64), round(step))
            track.notes = sort_notes(n)
        return out
