"""Redo a span of bars of a part (`midiarr infill`): the bars asked are rewritten, every other bar of the part
stays note for note.

The engine writes the span from the other parts (the transformer also hears the part's own bars before the
span, as history it continues from). Several tries are written and the one that joins the bars after the span
best is kept: the smallest register jump at the two seams, for drums the closest hit density. At the seams no
note doubles: a note of the part held into the span ends where the new bars begin to sound, and a new note
held past the span ends where the part's next note starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from midiarr.engines import Controls, Engine
from midiarr.engines.base import as_played, follow_timing, song_density
from midiarr.errors import InputError, OptionError
from midiarr.roles import assign_roles, check_stem, tracks_with_role
from midiarr.song import NOTE_DTYPE, Song, sort_notes

MAX_TRIES = 16


@dataclass
class InfillResult:
    """The song with the span redone; ``track`` is the part's track that holds the new bars."""

    song: Song
    track: int
    span: np.ndarray  # per bar, True where the bars were redone
    new_notes: int
    seam_cost: float
    tries: int


def _bar_of(song: Song, ticks: np.ndarray, count: int) -> np.ndarray:
    bars = song.bar_starts(max(song.end_tick, int(np.max(ticks, initial=0)) + 1))
    return np.clip(np.searchsorted(bars, ticks, side="right") - 1, 0, count - 1)


def seam_cost(song: Song, kept: np.ndarray, new: np.ndarray, span: np.ndarray, drums: bool) -> float:
    """How badly the new bars join their neighbours: register jump (semitones) at each seam, or for drums
    the difference in hits per bar; 0 where a seam has no neighbour."""
    if len(new) == 0:
        return float("inf")
    count = len(span)
    kept_bar, new_bar = _bar_of(song, kept["start"], count), _bar_of(song, new["start"], count)
    first, last = int(np.flatnonzero(span)[0]), int(np.flatnonzero(span)[-1])
    cost = 0.0
    for inside, outside in ((first, first - 1), (last, last + 1)):
        if not 0 <= outside < count:
            continue
        a, b = new[new_bar == inside], kept[kept_bar == outside]
        if len(a) == 0 or len(b) == 0:
            cost += 12.0 if len(b) else 0.0  # a silent bar against a playing neighbour
            continue
        if drums:
            cost += abs(len(a) - len(b)) / max(len(b), 1) * 12.0
        else:
            cost += abs(float(np.median(a["pitch"])) - float(np.median(b["pitch"])))
    return cost


def join(song: Song, kept: np.ndarray, new: np.ndarray, span: np.ndarray) -> np.ndarray:
    """The part's notes outside the span with the new ones in it, with no overlap at the seams."""
    kept = kept.copy()
    new = new.copy()
    if len(new):
        first_new = int(new["start"].min())
        held = (kept["start"] < first_new) & (kept["start"] + kept["duration"] > first_new)
        held &= ~span[_bar_of(song, kept["start"], len(span))]
        kept["duration"][held] = np.maximum(first_new - kept["start"][held], 1)
        later = kept["start"][kept["start"] > new["start"].max()]
        if len(later):
            nxt = int(later.min())
            ends = new["start"] + new["duration"]
            new["duration"] = np.where(ends > nxt, np.maximum(nxt - new["start"], 1), new["duration"])
    return sort_notes(np.concatenate([kept, new]))


def infill(
    engine: Engine,
    song: Song,
    stem: str,
    span: np.ndarray,
    controls: Controls | None = None,
    seed: int = 0,
    roles: dict[int, str] | None = None,
    tries: int = 4,
) -> InfillResult:
    """``song`` with the bars ``span`` (a per-bar mask) of its ``stem`` part written again by ``engine``."""
    stem = check_stem(stem, engine.stems)
    if not 1 <= tries <= MAX_TRIES:
        raise OptionError(f"--tries {tries}: choose between 1 and {MAX_TRIES}")
    roles = roles if roles is not None else assign_roles(song)
    idx = [i for i in tracks_with_role(roles, stem) if len(song.tracks[i].notes)]
    if not idx:
        raise InputError(f"the song has no {stem} part to redo bars of; write one with `midiarr insert`")
    span = np.asarray(span, dtype=bool)
    if len(span) != song.num_bars:
        span = np.resize(np.append(span, np.zeros(max(0, song.num_bars - len(span)), dtype=bool)), song.num_bars)
    if not span.any():
        raise OptionError("--bars: name at least one bar of the song")
    part = np.concatenate([song.tracks[i].notes for i in idx])
    in_span = span[_bar_of(song, part["start"], len(span))]
    context = song.with_tracks([t for i, t in enumerate(song.tracks) if i not in idx])
    controls = song_density(engine, context, stem, controls or Controls())
    kept = part[~in_span]
    best: tuple[float, np.ndarray] | None = None
    for k in range(tries):
        written = engine.write_infill(context, stem, controls, span, np.random.default_rng(seed + k), kept)
        for t in written:
            t.role = stem
        written = follow_timing(context, as_played(engine, context, written, controls, seed + k, span), controls, span)
        notes = np.concatenate([t.notes for t in written]) if written else np.zeros(0, dtype=NOTE_DTYPE)
        notes = notes[span[_bar_of(song, notes["start"], len(span))]] if len(notes) else notes
        cost = seam_cost(song, kept, notes, span, song.tracks[idx[0]].is_drum)
        if best is None or cost < best[0]:
            best = (cost, notes)
    cost, new = best
    home = idx[0]  # the new bars go to the part's first track (its sound and channel)
    out = song.copy()
    offset = 0
    for i in idx:
        n = len(song.tracks[i].notes)
        mine = in_span[offset : offset + n]
        offset += n
        track_kept = song.tracks[i].notes[~mine]
        out.tracks[i].notes = join(song, track_kept, new, span) if i == home else track_kept
    return InfillResult(out, home, span, len(new), float(cost), tries)
