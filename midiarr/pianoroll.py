"""Song <-> multi-track piano rolls on a 16th-note grid (the diffusion engine's representation).

Every stem shares one pitch axis (``PITCH_LOW`` .. ``PITCH_LOW + PITCH_ROWS - 1``) so a bass note,
a guitar note and the same note in a flattened mix sit on the same row: separation is then a
question of which stem's row lights up. Drums use the first rows for their drum classes.
Two planes per stem: onset (a note starts in this step) and sustain (a note started earlier
still sounds). Notes are kept as compact step arrays (`StemNotes`) and rasterized per window,
because whole-song rolls of a 3,500-song corpus would not fit in memory.

Conversion is exact for quantized input inside the pitch range: a note starting on a 16th step
and lasting whole steps comes back with the same start, length and pitch. Pitches outside the
range are moved by octaves into it; a note starting while the same pitch still sounds ends it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from midiarr.roles import assign_roles
from midiarr.song import NOTE_DTYPE, Song, Track
from midiarr.transformer.vocab import DRUM_CLASSES, drum_class_table

STEPS_PER_BEAT = 4  # 16th notes
PITCH_LOW = 24  # C1
PITCH_ROWS = 72  # C1 .. B6
NUM_DRUM_CLASSES = len(DRUM_CLASSES)
ONSET, SUSTAIN = 0, 1
# Stem slots of the model, in a fixed order. "other" holds context parts no engine writes
# (lead, strings, ...); "mix" holds the flattened notes to separate. Both are only ever given.
SLOTS: tuple[str, ...] = ("bass", "drums", "guitar", "piano", "other", "mix")
WRITABLE: tuple[str, ...] = ("bass", "drums", "guitar", "piano")
PITCHED: tuple[str, ...] = ("bass", "guitar", "piano")
_DRUM_CLASS = np.array(drum_class_table(), dtype=np.int16)
DRUM_NOTES = np.array([note for _, note, _ in DRUM_CLASSES], dtype=np.int16)


@dataclass
class StemNotes:
    """One stem's notes on the step grid: start step, length in steps, row, velocity."""

    start: np.ndarray
    length: np.ndarray
    row: np.ndarray
    velocity: np.ndarray

    @classmethod
    def empty(cls) -> StemNotes:
        """No notes."""
        z = np.zeros(0, dtype=np.int32)
        return cls(z, z.copy(), z.copy(), z.copy())

    def __len__(self) -> int:
        return len(self.start)

    def shifted(self, semitones: int) -> StemNotes:
        """Pitched notes moved by ``semitones`` (notes leaving the range are dropped)."""
        row = self.row + semitones
        keep = (row >= 0) & (row < PITCH_ROWS)
        return StemNotes(self.start[keep], self.length[keep], row[keep], self.velocity[keep])

    def concat(self, other: StemNotes) -> StemNotes:
        """Both sets of notes, ordered by start."""
        parts = [np.concatenate([a, b]) for a, b in zip(self.arrays(), other.arrays(), strict=True)]
        order = np.argsort(parts[0], kind="stable")
        return StemNotes(*(p[order] for p in parts))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(start, length, row, velocity)."""
        return self.start, self.length, self.row, self.velocity


def step_ticks(song: Song) -> float:
    """Ticks per 16th-note step."""
    return song.ticks_per_beat / STEPS_PER_BEAT


def song_steps(song: Song) -> int:
    """Number of steps that cover the song to the end of its last bar."""
    bars = song.bar_starts()
    ts = song.time_signature_at(int(bars[-1]))
    bar_len = song.ticks_per_beat * 4 * ts.numerator / ts.denominator
    end = max(float(song.end_tick), float(bars[-1]) + bar_len)
    return max(1, int(np.ceil(end / step_ticks(song) - 1e-9)))


def bar_start_steps(song: Song, steps: int | None = None) -> np.ndarray:
    """Step of every bar start (rounded to the grid)."""
    total = song_steps(song) if steps is None else steps
    end = int(np.ceil(total * step_ticks(song)))
    bars = song.bar_starts(max(end, 1))
    return np.unique(np.round(bars / step_ticks(song)).astype(np.int64))


def position_in_bar(song: Song, steps: int) -> np.ndarray:
    """For every step, how many steps after its bar's start it lies (clipped to 31)."""
    starts = bar_start_steps(song, steps)
    idx = np.arange(steps)
    which = np.searchsorted(starts, idx, side="right") - 1
    pos = idx - starts[np.clip(which, 0, None)]
    return np.clip(pos, 0, 31).astype(np.int64)


def note_cells(notes: np.ndarray, song: Song, drums: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start step, length in steps and row of each note, in the order given (pitches outside the
    roll fold by octaves into it; drums become drum-class rows of one step)."""
    st = step_ticks(song)
    start = np.round(notes["start"] / st).astype(np.int32)
    end = np.round((notes["start"] + notes["duration"]) / st).astype(np.int32)
    length = np.maximum(end - start, 1).astype(np.int32)
    if drums:
        row = _DRUM_CLASS[np.clip(notes["pitch"], 0, 127)].astype(np.int32)
        length = np.ones_like(length)
    else:
        row = notes["pitch"].astype(np.int32) - PITCH_LOW
        row = np.where(row < 0, row + 12 * np.ceil(-row / 12), row)
        over = row - (PITCH_ROWS - 1)
        row = np.where(over > 0, row - 12 * np.ceil(over / 12), row).astype(np.int32)
    return start, length, row


def notes_to_steps(notes: np.ndarray, song: Song, drums: bool) -> StemNotes:
    """A NOTE_DTYPE array as a stem's step notes (drums become drum-class rows)."""
    if len(notes) == 0:
        return StemNotes.empty()
    start, length, row = note_cells(notes, song, drums)
    velocity = notes["velocity"].astype(np.int32)
    order = np.lexsort((row, start))
    return StemNotes(start[order], length[order], row[order], velocity[order])


def steps_to_notes(stem_notes: StemNotes, song: Song, drums: bool) -> np.ndarray:
    """Step notes back to a NOTE_DTYPE array in the song's ticks."""
    out = np.zeros(len(stem_notes), dtype=NOTE_DTYPE)
    if len(stem_notes) == 0:
        return out
    st = step_ticks(song)
    start = np.round(stem_notes.start * st).astype(np.int64)
    end = np.round((stem_notes.start + stem_notes.length) * st).astype(np.int64)
    out["start"] = start
    out["duration"] = np.maximum(end - start, 1)
    if drums:
        out["pitch"] = DRUM_NOTES[np.clip(stem_notes.row, 0, NUM_DRUM_CLASSES - 1)]
        out["duration"] = max(1, round(st))
    else:
        out["pitch"] = stem_notes.row + PITCH_LOW
    out["velocity"] = np.clip(stem_notes.velocity, 1, 127)
    return out[np.lexsort((out["pitch"], out["start"]))]


def rasterize(stem_notes: StemNotes, begin: int, steps: int) -> np.ndarray:
    """The (2, PITCH_ROWS, steps) boolean roll of the window ``[begin, begin + steps)``.

    A note that started before the window and still sounds in it shows as sustain only.
    """
    roll = np.zeros((2, PITCH_ROWS, steps), dtype=bool)
    if len(stem_notes) == 0:
        return roll
    s, n, r = stem_notes.start - begin, stem_notes.length, stem_notes.row
    keep = (s < steps) & (s + n > 0)
    s, n, r = s[keep], n[keep], r[keep]
    inside = s >= 0
    roll[ONSET, r[inside], s[inside]] = True
    # sustain cells: each note's steps after its onset, cut at the window's edges
    lengths = np.maximum(n - 1, 0)
    if lengths.sum():
        rows = np.repeat(r, lengths)
        first = np.repeat(s + 1, lengths)
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        cols = first + offsets
        ok = (cols >= 0) & (cols < steps)
        roll[SUSTAIN, rows[ok], cols[ok]] = True
    # a later onset on the same row ends the earlier note: its cell is an onset, not sustain
    roll[SUSTAIN] &= ~roll[ONSET]
    return roll


def roll_to_steps(roll: np.ndarray, begin: int = 0, velocity: int | np.ndarray = 90, drums: bool = False) -> StemNotes:
    """Notes of a (2, rows, steps) roll: an onset starts a note, following sustain cells extend it.

    Sustain with no note sounding before it is ignored (it belongs to nothing). ``velocity`` may be
    a (rows, steps) array giving each onset its velocity.
    """
    onset = np.asarray(roll[ONSET], dtype=bool)
    sustain = np.asarray(roll[SUSTAIN], dtype=bool) & ~onset
    rows, cols = np.nonzero(onset)
    if len(rows) == 0:
        return StemNotes.empty()
    if drums:
        length = np.ones(len(rows), dtype=np.int32)
    else:
        # run length of sustain after each onset: distance to the first non-sustain cell
        steps = onset.shape[1]
        length = np.ones(len(rows), dtype=np.int32)
        padded = np.concatenate([sustain, np.zeros((sustain.shape[0], 1), dtype=bool)], axis=1)
        # next "stop" column at or after each column, per row
        stop = np.where(~padded, np.arange(steps + 1)[None, :], steps)
        next_stop = np.minimum.accumulate(stop[:, ::-1], axis=1)[:, ::-1]
        length = (next_stop[rows, np.minimum(cols + 1, steps)] - cols).astype(np.int32)
        length = np.maximum(length, 1)
    vel = velocity[rows, cols] if isinstance(velocity, np.ndarray) else np.full(len(rows), int(velocity))
    order = np.lexsort((rows, cols))
    return StemNotes(
        (cols[order] + begin).astype(np.int32),
        length[order],
        rows[order].astype(np.int32),
        np.asarray(vel, dtype=np.int32)[order],
    )


@dataclass
class SongRolls:
    """A song as step notes per slot, with its length in steps and each step's place in its bar."""

    stems: dict[str, StemNotes]
    steps: int
    bar_position: np.ndarray

    @property
    def present(self) -> list[str]:
        """Slots that hold notes."""
        return [s for s in SLOTS if s in self.stems and len(self.stems[s])]


def slot_of_role(role: str) -> str:
    """The model slot a track of ``role`` goes to."""
    return role if role in WRITABLE else "other"


def song_to_rolls(song: Song, roles: dict[int, str] | None = None, min_steps: int = 0) -> SongRolls:
    """Every track's notes in its slot (tracks of one role merged; lead, strings, ... in "other").

    ``min_steps`` lengthens the grid past the song's last note (a song being written from nothing).
    """
    roles = roles if roles is not None else assign_roles(song)
    steps = max(song_steps(song), int(min_steps))
    stems: dict[str, StemNotes] = {}
    for i, track in enumerate(song.tracks):
        if not len(track.notes):
            continue
        slot = "drums" if track.is_drum else slot_of_role(roles.get(i, "other"))
        if slot == "drums" and not track.is_drum:
            slot = "other"  # a pitched track named like drums still plays pitches
        part = notes_to_steps(track.notes, song, drums=slot == "drums")
        stems[slot] = stems[slot].concat(part) if slot in stems else part
    return SongRolls(stems=stems, steps=steps, bar_position=position_in_bar(song, steps))


def stem_track(stem: str, stem_notes: StemNotes, song: Song, program: int | None = None) -> Track:
    """A new track for a written stem."""
    drums = stem == "drums"
    default_program = {"bass": 33, "guitar": 25, "piano": 0}.get(stem, 0)
    return Track(
        name=stem.capitalize(),
        program=default_program if program is None else program,
        is_drum=drums,
        notes=steps_to_notes(stem_notes, song, drums),
        role=stem,
    )
