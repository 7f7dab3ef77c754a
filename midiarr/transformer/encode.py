"""Songs to bar blocks of the stem transformer's tokens, and target tokens back to notes.

Times are 16th-note steps from the bar start, so tempo changes do not matter and odd
meters only change the bar length token. A note belongs to the bar its rounded onset
falls in (a note pushed a 32nd early onto the downbeat belongs to the next bar).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from midiarr.harmony import QUALITIES, estimate_chords
from midiarr.roles import assign_roles
from midiarr.song import NOTE_DTYPE, Song, Track, sort_notes
from midiarr.transformer.vocab import (
    CHORD0,
    CONTEXT_ROLES,
    CONTROL_ATTRIBUTES,
    DRUM0,
    DRUM_CLASSES,
    DUR0,
    DURATIONS,
    LEN0,
    MAX_STEPS,
    NUM_VELOCITIES,
    PITCH0,
    PITCH_HIGH,
    PITCH_LOW,
    POS0,
    VEL0,
    VOCAB,
    control_values,
    drum_class_table,
)

_DRUM_CLASS = np.array(drum_class_table())
_QUALITY_INDEX = {q: i for i, q in enumerate(QUALITIES)}
_LOG_DURATIONS = np.log(np.array(DURATIONS, dtype=float))
MAX_NOTES_PER_STEP = 6


@dataclass
class BarGrid:
    """Bar starts (ticks), bar lengths (16th steps) and the step size in ticks."""

    starts: np.ndarray
    lengths: np.ndarray
    step: float

    @classmethod
    def of(cls, song: Song, end_tick: int | None = None) -> BarGrid:
        end = max(song.end_tick if end_tick is None else end_tick, 1)
        starts = song.bar_starts(end)
        step = song.ticks_per_beat / 4
        last = song.time_signature_at(int(starts[-1]))
        last_len = last.numerator * song.ticks_per_beat * 4 / last.denominator
        ends = np.append(starts[1:], starts[-1] + last_len)
        lengths = np.clip(np.round((ends - starts) / step).astype(int), 1, MAX_STEPS)
        return cls(starts=starts, lengths=lengths, step=step)

    @classmethod
    def with_bars(cls, song: Song, count: int) -> BarGrid:
        """The first ``count`` bars of the song's meter map (bars past the last note included)."""
        tpb = song.ticks_per_beat
        grid = cls.of(song, max(song.end_tick, 1))
        while len(grid) < count:  # extend far enough: at most 8 quarter notes per bar
            grid = cls.of(song, int(grid.starts[-1]) + (count - len(grid) + 1) * 8 * tpb)
        return cls(starts=grid.starts[:count], lengths=grid.lengths[:count], step=grid.step)

    def __len__(self) -> int:
        return len(self.starts)

    def locate(self, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bar index and step within the bar of each tick, rounded to the nearest step."""
        ticks = np.asarray(ticks, dtype=np.int64)
        bar = np.clip(np.searchsorted(self.starts, ticks, side="right") - 1, 0, len(self) - 1)
        pos = np.round((ticks - self.starts[bar]) / self.step).astype(np.int64)
        # steps in each bar up to the next bar line (the last bar is open-ended)
        full = np.append(np.round(np.diff(self.starts) / self.step), np.inf)
        over = (pos >= full[bar]) & (bar + 1 < len(self))
        bar = np.where(over, bar + 1, bar)
        pos = np.where(over, 0, pos)
        return bar, np.maximum(pos, 0)


@dataclass
class ContextBar:
    """One bar of the other parts: bar length and chord tokens, plus one token block per role."""

    head: list[int]
    roles: dict[str, list[int]] = field(default_factory=dict)

    def tokens(self, keep: set[str] | None = None, chords: bool = True) -> list[int]:
        """``BAR LEN [chords] [role blocks]``; ``keep`` limits the roles heard."""
        out = [VOCAB["BAR"], self.head[0]] + (self.head[1:] if chords else [])
        for role in CONTEXT_ROLES:
            if role in self.roles and (keep is None or role in keep):
                out += self.roles[role]
        return out


def velocity_bin(velocity: np.ndarray | int) -> np.ndarray:
    """Velocity (1-127) to one of `NUM_VELOCITIES` bins."""
    return np.clip(np.asarray(velocity) * NUM_VELOCITIES // 128, 0, NUM_VELOCITIES - 1)


def bin_velocity(index: int) -> int:
    """A bin's representative velocity."""
    return int(index * 128 // NUM_VELOCITIES + 64 // NUM_VELOCITIES)


def duration_bin(steps: np.ndarray) -> np.ndarray:
    """Duration in steps to the nearest `DURATIONS` entry (on a log scale)."""
    logs = np.log(np.maximum(np.asarray(steps, dtype=float), 0.5))
    return np.abs(logs[:, None] - _LOG_DURATIONS[None, :]).argmin(axis=1)


def context_roles(song: Song) -> dict[str, list[Track]]:
    """The song's tracks grouped by context role ("lead" and unknown parts count as "other")."""
    roles = assign_roles(song)
    out: dict[str, list[Track]] = {}
    for i, track in enumerate(song.tracks):
        if not len(track.notes):
            continue
        role = roles[i] if roles[i] in CONTEXT_ROLES else "other"
        out.setdefault(role, []).append(track)
    return out


def _merged(tracks: list[Track]) -> np.ndarray:
    return np.concatenate([t.notes for t in tracks]) if tracks else np.zeros(0, dtype=NOTE_DTYPE)


def encode_context(song: Song, grid: BarGrid) -> list[ContextBar]:
    """Context bars of ``song`` (the parts other than the stem being written)."""
    bars = [ContextBar(head=[LEN0 + int(n) - 1]) for n in grid.lengths]
    groups = context_roles(song)
    pitched = [t for role, ts in groups.items() if role != "drums" for t in ts]
    if pitched or song.chord_symbols:  # a progression with no part yet is heard as chords alone
        for chord in estimate_chords(song, pitched):
            bar, pos = grid.locate(np.array([chord.start]))
            b, p = int(bar[0]), int(pos[0])
            if p >= grid.lengths[b]:
                continue
            token = CHORD0 + _QUALITY_INDEX[chord.quality] * 12 + chord.root
            bars[b].head += [POS0 + p, token]
        # every bar names the chord sounding at its start, even when it began earlier
        current = None
        for bar in bars:
            if len(bar.head) > 1 and bar.head[1] == POS0:
                current = bar.head[2]
            elif current is not None:
                bar.head[1:1] = [POS0, current]
            if len(bar.head) > 1:
                current = bar.head[-1]
    for role, tracks in groups.items():
        notes = _merged(tracks)
        bar, pos = grid.locate(notes["start"])
        keep = pos < grid.lengths[bar]
        bar, pos, pitch = bar[keep], pos[keep], notes["pitch"][keep]
        role_token = VOCAB[f"ROLE_{role}"]
        if role == "drums":
            cls = _DRUM_CLASS[np.clip(pitch, 0, 127)]
            keys = np.unique(np.stack([bar, pos, cls], axis=1), axis=0) if len(bar) else np.zeros((0, 3), int)
        else:
            keys = np.unique(np.stack([bar, pos], axis=1), axis=0) if len(bar) else np.zeros((0, 2), int)
        for b in np.unique(keys[:, 0]) if len(keys) else []:
            rows = keys[keys[:, 0] == b]
            block = [role_token]
            last_pos = -1
            for row in rows:
                if row[1] != last_pos:
                    block.append(POS0 + int(row[1]))
                    last_pos = row[1]
                if role == "drums":
                    block.append(DRUM0 + int(row[2]))
            bars[int(b)].roles[role] = block
    return bars


def encode_target(notes: np.ndarray, grid: BarGrid, drums: bool) -> list[list[int]]:
    """The stem's notes as token lists per bar (without the TGT/EOB markers)."""
    out: list[list[int]] = [[] for _ in range(len(grid))]
    if len(notes) == 0:
        return out
    bar, pos = grid.locate(notes["start"])
    keep = pos < grid.lengths[bar]
    notes, bar, pos = notes[keep], bar[keep], pos[keep]
    if drums:
        value = _DRUM_CLASS[np.clip(notes["pitch"], 0, 127)]
        dur = np.zeros(len(notes), dtype=int)
    else:
        value = np.clip(notes["pitch"], PITCH_LOW, PITCH_HIGH)
        dur = duration_bin(notes["duration"] / grid.step)
    vel = velocity_bin(notes["velocity"])
    order = np.lexsort((value, pos, bar))
    b_prev, p_prev, v_prev, count = -1, -1, -1, 0
    for i in order:
        b, p, v = int(bar[i]), int(pos[i]), int(value[i])
        if (b, p) != (b_prev, p_prev):
            step_vel = int(vel[(bar == b) & (pos == p)].max())
            out[b] += [POS0 + p, VEL0 + step_vel]
            b_prev, p_prev, v_prev, count = b, p, -1, 0
        if v == v_prev or count >= MAX_NOTES_PER_STEP:
            continue
        out[b] += [DRUM0 + v] if drums else [PITCH0 + v - PITCH_LOW, DUR0 + int(dur[i])]
        v_prev, count = v, count + 1
    return out


def decode_target(blocks: list[list[int]], grid: BarGrid, drums: bool) -> np.ndarray:
    """Notes from per-bar target token lists (inverse of `encode_target` up to the grid)."""
    rows: list[tuple[int, int, int, int]] = []
    drum_notes = [n for _, n, _ in DRUM_CLASSES]
    for b, tokens in enumerate(blocks[: len(grid)]):
        pos, vel, pitch = 0, 64, None
        for t in tokens:
            if POS0 <= t < POS0 + MAX_STEPS:
                pos = t - POS0
            elif VEL0 <= t < VEL0 + NUM_VELOCITIES:
                vel = bin_velocity(t - VEL0)
            elif drums and DRUM0 <= t < DRUM0 + len(DRUM_CLASSES):
                start = round(grid.starts[b] + pos * grid.step)
                rows.append((start, max(1, round(grid.step)), drum_notes[t - DRUM0], vel))
            elif not drums and PITCH0 <= t <= PITCH0 + PITCH_HIGH - PITCH_LOW:
                pitch = t - PITCH0 + PITCH_LOW
            elif not drums and DUR0 <= t < DUR0 + len(DURATIONS) and pitch is not None:
                start = round(grid.starts[b] + pos * grid.step)
                rows.append((start, max(1, round(DURATIONS[t - DUR0] * grid.step)), pitch, vel))
                pitch = None
    notes = np.zeros(len(rows), dtype=NOTE_DTYPE)
    if rows:
        arr = np.array(rows, dtype=np.int64)
        notes["start"], notes["duration"], notes["pitch"], notes["velocity"] = arr.T
        if not drums:
            _trim_overlaps(notes)
    return sort_notes(notes)


def _trim_overlaps(notes: np.ndarray) -> None:
    """Cut a note that would still sound when the same pitch starts again (no overlapping unisons)."""
    order = np.lexsort((notes["start"], notes["pitch"]))
    for a, b in itertools.pairwise(order):
        if notes["pitch"][a] == notes["pitch"][b]:
            end = notes["start"][b]
            if notes["start"][a] + notes["duration"][a] > end:
                notes["duration"][a] = max(1, end - notes["start"][a])


def header_tokens(stem: str, bins: dict[str, str]) -> list[int]:
    """``BOS STEM_x`` and one token per control attribute ("any" where unspecified)."""
    out = [VOCAB["BOS"], VOCAB[f"STEM_{stem}"]]
    for name in CONTROL_ATTRIBUTES:
        value = bins.get(name)
        if value not in control_values(name):
            value = "any"
        out.append(VOCAB[f"{name.upper()}_{value}"])
    return out


def assemble(
    header: list[int],
    context: list[list[int]],
    target: list[list[int]],
    start: int,
    end: int,
) -> tuple[list[int], list[bool]]:
    """Header, then the window's bars with one bar of look-ahead: CTX(s), CTX(s+1), TGT(s), CTX(s+2), ...

    Returns the tokens and, per token, whether it is a target token the loss counts.
    """
    tokens = list(header)
    loss = [False] * len(header)
    tokens += context[start]
    loss += [False] * len(context[start])
    for j in range(start, end):
        if j + 1 < len(context):
            tokens += context[j + 1]
            loss += [False] * len(context[j + 1])
        block = [VOCAB["TGT"], *target[j], VOCAB["EOB"]]
        tokens += block
        loss += [False] + [True] * (len(block) - 1)
    return tokens, loss
