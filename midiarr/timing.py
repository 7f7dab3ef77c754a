"""Play a written part with the song's feel: its onsets move from the 16th-note grid onto the
micro-timing of the parts it accompanies.

Engines write on a grid, but the songs they write for are played by people (or humanized):
a kick lands a few ticks late, a swung eighth sits a third of the way to the next 16th. A
grid-exact bass over such drums flams against them. Quantizing the real bass of the valid
songs onto the 16th grid drops its onset sync with the other parts from 0.97 to 0.80
(drums 0.80 -> 0.70, guitar 0.84 -> 0.70); moving each onset to the other parts' onset it
stands for brings it back (0.98 / 0.82 / 0.86). So, per written onset:

1. an onset of the other parts within a 32nd note of it: take that onset's exact tick
   (the part now plays *with* that kick or chord);
2. otherwise: shift it by the median deviation from the grid of the other parts' onsets at
   the same position within the beat (on the beat, "e", "and", "a") in the bars around it,
   so a part plays swing or a laid-back feel where nothing else happens to play.

Durations are kept; a note is never moved into a bar the activity mask keeps silent, and a
repeated pitch is cut short rather than left overlapping the next one.
"""

from __future__ import annotations

import numpy as np

from midiarr.song import Song

TIMINGS = ("song", "grid")
# how many bars either side count towards the local feel of an onset with no partner
FEEL_BARS = 2


def lock_to_feel(notes: np.ndarray, context: np.ndarray, song: Song, active: np.ndarray | None = None) -> np.ndarray:
    """``notes`` (written on the 16th grid of ``song``) moved onto the micro-timing of ``context``
    (the other parts' notes). ``active`` (one flag per bar) keeps notes out of silent bars."""
    if len(notes) == 0 or len(context) == 0:
        return notes
    step = song.ticks_per_beat / 4
    window = step / 2  # a 32nd: nearer than that, a context onset is this onset played by a person
    ctx = np.unique(context["start"])
    starts = notes["start"].astype(np.int64)
    unique = np.unique(starts)

    # 1. partners: the nearest context onset within the window
    i = np.clip(np.searchsorted(ctx, unique), 1, max(len(ctx) - 1, 1))
    left, right = ctx[np.maximum(i - 1, 0)], ctx[np.minimum(i, len(ctx) - 1)]
    nearest = np.where(np.abs(left - unique) <= np.abs(right - unique), left, right)
    has_partner = np.abs(nearest - unique) < window
    moved = np.where(has_partner, nearest, unique)

    # 2. the local feel for onsets with no partner
    lonely = ~has_partner
    if lonely.any():
        moved[lonely] = unique[lonely] + _local_feel(unique[lonely], ctx, song, step)

    moved = _keep_in_playing_bars(unique, moved, song, active)
    out = notes.copy()
    out["start"] = moved[np.searchsorted(unique, starts)]
    return _no_overlaps(_end_before_silent_bars(out, song, active))


def _local_feel(onsets: np.ndarray, ctx: np.ndarray, song: Song, step: float) -> np.ndarray:
    """Per onset, the median grid deviation of context onsets at the same 16th-of-the-beat
    position within ``FEEL_BARS`` bars (0 where there are none)."""
    end = int(max(onsets.max(), ctx.max())) + 1
    bars = song.bar_starts(end)
    grid = np.round(ctx / step)
    deviation = ctx - grid * step
    ctx_slot = grid.astype(np.int64) % 4
    ctx_bar = np.searchsorted(bars, ctx, side="right") - 1
    on_slot = np.round(onsets / step).astype(np.int64) % 4
    on_bar = np.searchsorted(bars, onsets, side="right") - 1
    shift = np.zeros(len(onsets), dtype=np.int64)
    # a deviation of half a step or more is a note between the grid lines (a triplet), not feel
    usable = np.abs(deviation) < step / 2
    # ctx is sorted, so its bar indices are too: the bars around an onset are one slice
    for bar, slot in {(int(b), int(s)) for b, s in zip(on_bar, on_slot, strict=True)}:
        lo = np.searchsorted(ctx_bar, bar - FEEL_BARS, side="left")
        hi = np.searchsorted(ctx_bar, bar + FEEL_BARS, side="right")
        near = usable[lo:hi] & (ctx_slot[lo:hi] == slot)
        if near.any():
            shift[(on_bar == bar) & (on_slot == slot)] = round(float(np.median(deviation[lo:hi][near])))
    return shift


def _keep_in_playing_bars(before: np.ndarray, after: np.ndarray, song: Song, active: np.ndarray | None) -> np.ndarray:
    """Onsets that the move would carry into another bar that must stay silent (or before the
    song's start) stay where they were."""
    after = np.maximum(after, 0)
    if active is None:
        return after
    end = int(max(before.max(), after.max())) + 1
    bars = song.bar_starts(end)
    bar_before = np.searchsorted(bars, before, side="right") - 1
    bar_after = np.searchsorted(bars, after, side="right") - 1
    mask = np.asarray(active, dtype=bool)
    allowed = np.array([b < len(mask) and bool(mask[b]) for b in bar_after], dtype=bool)
    return np.where((bar_after == bar_before) | allowed, after, before)


def _end_before_silent_bars(notes: np.ndarray, song: Song, active: np.ndarray | None) -> np.ndarray:
    """Notes that a later start now holds over a bar line into a bar that must stay silent end at
    that bar line instead."""
    if active is None or len(notes) == 0:
        return notes
    mask = np.asarray(active, dtype=bool)
    ends = notes["start"].astype(np.int64) + np.maximum(notes["duration"].astype(np.int64), 1)
    bars = song.bar_starts(int(ends.max()) + 1)
    first = np.searchsorted(bars, notes["start"], side="right") - 1
    last = np.searchsorted(bars, ends - 1, side="right") - 1
    out = notes.copy()
    for k in np.flatnonzero(last > first):
        silent = [b for b in range(first[k] + 1, last[k] + 1) if b >= len(mask) or not mask[b]]
        if silent:
            out["duration"][k] = max(1, int(bars[silent[0]]) - int(out["start"][k]))
    return out


def _no_overlaps(notes: np.ndarray) -> np.ndarray:
    """Sorted notes where a note no longer runs into the next onset of its own pitch."""
    order = np.lexsort((notes["pitch"], notes["start"]))
    out = notes[order]
    for pitch in np.unique(out["pitch"]):
        idx = np.flatnonzero(out["pitch"] == pitch)
        if len(idx) < 2:
            continue
        starts = out["start"][idx]
        limit = np.append(starts[1:] - starts[:-1], np.iinfo(np.int64).max)
        out["duration"][idx] = np.maximum(1, np.minimum(out["duration"][idx], limit))
    return out
