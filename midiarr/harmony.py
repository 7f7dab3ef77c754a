"""Harmony of a song from its notes: chroma per beat, chords per half bar (or per beat), key.

Used by the rules engine (what to play) and by evaluation (which pitch classes sound where).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from midiarr.song import NOTE_DTYPE, Song, Track

# Chord qualities as pitch-class sets over the root; the weight is a small prior toward plain triads.
QUALITIES: dict[str, tuple[tuple[int, ...], float]] = {
    "maj": ((0, 4, 7), 1.0),
    "min": ((0, 3, 7), 1.0),
    "7": ((0, 4, 7, 10), 0.96),
    "m7": ((0, 3, 7, 10), 0.96),
    "maj7": ((0, 4, 7, 11), 0.95),
    "dim": ((0, 3, 6), 0.93),
    "sus4": ((0, 5, 7), 0.92),
}
# Krumhansl-Kessler key profiles.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass(frozen=True)
class Chord:
    """A chord sounding from ``start`` to ``end`` (ticks)."""

    start: int
    end: int
    root: int
    quality: str

    @property
    def tones(self) -> tuple[int, ...]:
        """Pitch classes of the chord."""
        return tuple((self.root + i) % 12 for i in QUALITIES[self.quality][0])

    @property
    def fifth(self) -> int:
        """Pitch class of the chord's fifth (the diminished fifth for dim)."""
        return self.tones[2] if self.quality != "sus4" else (self.root + 7) % 12

    @property
    def name(self) -> str:
        """Readable name, e.g. "Am7"."""
        names = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
        suffix = {"maj": "", "min": "m"}.get(self.quality, self.quality)
        return f"{names[self.root]}{suffix}"


def _templates() -> tuple[np.ndarray, list[tuple[int, str]]]:
    rows, labels = [], []
    for quality, (intervals, weight) in QUALITIES.items():
        for root in range(12):
            t = np.zeros(12)
            t[[(root + i) % 12 for i in intervals]] = 1.0
            t[root] += 0.5  # the root matters most
            rows.append(weight * t / np.linalg.norm(t))
            labels.append((root, quality))
    return np.array(rows), labels


_TEMPLATES, _LABELS = _templates()


def pitched_notes(tracks: list[Track]) -> np.ndarray:
    """All notes of the non-drum tracks, merged."""
    arrays = [t.notes for t in tracks if not t.is_drum and len(t.notes)]
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=NOTE_DTYPE)


def chroma(notes: np.ndarray, bounds: np.ndarray, bass_weight: float = 1.0) -> np.ndarray:
    """Duration-weighted pitch-class histogram of ``notes`` in each window [bounds[i], bounds[i+1]).

    Low notes (below G3) count ``1 + bass_weight`` times, since the bass names the root.
    """
    out = np.zeros((len(bounds) - 1, 12))
    if len(notes) == 0 or len(bounds) < 2:
        return out
    win, note_idx, overlap = note_windows(notes, bounds)
    weight = np.where(notes["pitch"] < 55, 1.0 + bass_weight, 1.0)
    pcs = notes["pitch"].astype(np.int64) % 12
    np.add.at(out, (win, pcs[note_idx]), overlap * weight[note_idx])
    return out


def note_windows(notes: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (window, note) pair where a note sounds in window [bounds[i], bounds[i+1]), with the
    overlap in ticks: arrays of window index, note index and overlap."""
    starts = notes["start"].astype(np.int64)
    ends = starts + np.maximum(notes["duration"].astype(np.int64), 1)
    first = np.clip(np.searchsorted(bounds, starts, side="right") - 1, 0, len(bounds) - 2)
    last = np.clip(np.searchsorted(bounds, ends - 1, side="right") - 1, 0, len(bounds) - 2)
    span = last - first + 1
    note_idx = np.repeat(np.arange(len(notes)), span)
    # window of each pair: the note's first window plus the pair's offset within the note's span
    win = np.repeat(first, span) + np.arange(len(note_idx)) - np.repeat(np.cumsum(span) - span, span)
    overlap = np.minimum(ends[note_idx], bounds[win + 1]) - np.maximum(starts[note_idx], bounds[win])
    return win, note_idx, np.maximum(overlap, 0)


def best_chord(vec: np.ndarray) -> tuple[int, str, float]:
    """Root, quality and match score of the template closest to a chroma vector (score 0 when silent)."""
    norm = np.linalg.norm(vec)
    if norm == 0:
        return 0, "maj", 0.0
    scores = _TEMPLATES @ (vec / norm)
    i = int(np.argmax(scores))
    return _LABELS[i][0], _LABELS[i][1], float(scores[i])


def stated_chords(song: Song) -> list[Chord]:
    """The chords the song states (`Song.chord_symbols`, from a lead sheet) as `Chord` spans: each lasts to the
    next; "N.C." and the stretch before the first symbol carry the nearest chord, so every tick is covered."""
    symbols = [c for c in song.chord_symbols if c.root is not None and c.quality in QUALITIES]
    if not symbols:
        return []
    end = max(song.end_tick, symbols[-1].tick + 1)
    chords: list[Chord] = []
    for i, c in enumerate(symbols):
        start = 0 if i == 0 else c.tick
        stop = symbols[i + 1].tick if i + 1 < len(symbols) else end
        if stop <= start:
            continue
        if chords and (chords[-1].root, chords[-1].quality) == (c.root, c.quality):
            chords[-1] = Chord(chords[-1].start, stop, c.root, c.quality)
        else:
            chords.append(Chord(start, stop, int(c.root), c.quality))
    return chords


def estimate_chords(song: Song, tracks: list[Track] | None = None, split_margin: float = 0.12) -> list[Chord]:
    """Chords of the song from the given tracks (default: all pitched tracks); the chords the song states
    (a lead sheet's symbols) count over any it would infer.

    One chord per half bar; a beat whose own best chord beats the half-bar chord on that beat by
    ``split_margin`` gets its own chord (harmony that moves on the beat). Silent stretches carry the
    previous chord so every tick of the song is covered.
    """
    stated = stated_chords(song)
    if stated:
        return stated
    notes = pitched_notes(tracks if tracks is not None else song.tracks)
    end = max(song.end_tick, 1)
    beats = song.beat_starts(end)
    bounds = np.append(beats, max(end, int(beats[-1]) + 1))
    beat_chroma = chroma(notes, bounds)
    bars = song.bar_starts(end)
    # half-bar groups of beats
    groups: list[list[int]] = []
    for b, bar_start in enumerate(bars):
        bar_end = bars[b + 1] if b + 1 < len(bars) else bounds[-1]
        idx = np.flatnonzero((beats >= bar_start) & (beats < bar_end)).tolist()
        if not idx:
            continue
        half = (len(idx) + 1) // 2
        groups += [idx[:half], idx[half:]] if len(idx) > 1 else [idx]
    chords: list[Chord] = []
    previous = None
    for group in groups:
        if not group:
            continue
        root, quality, score = best_chord(beat_chroma[group].sum(axis=0))
        segments: list[tuple[list[int], int, str]] = [(group, root, quality)]
        if len(group) > 1 and score > 0:
            own = [best_chord(beat_chroma[i]) for i in group]
            tmpl = _TEMPLATES[_LABELS.index((root, quality))]
            group_scores = [
                float(tmpl @ (beat_chroma[i] / n)) if (n := np.linalg.norm(beat_chroma[i])) else 0.0 for i in group
            ]
            if any(o[2] - g > split_margin for o, g in zip(own, group_scores)):
                segments = [([i], o[0], o[1]) if o[2] > 0 else ([i], root, quality) for i, o in zip(group, own)]
        for idx, r, q in segments:
            silent = beat_chroma[idx].sum() == 0
            if silent and previous is not None:
                r, q = previous.root, previous.quality
            start, stop = int(bounds[idx[0]]), int(bounds[idx[-1] + 1])
            if previous is not None and (previous.root, previous.quality) == (r, q) and previous.end == start:
                previous = Chord(previous.start, stop, r, q)
                chords[-1] = previous
            else:
                previous = Chord(start, stop, r, q)
                chords.append(previous)
    return chords


def estimate_key(song: Song, tracks: list[Track] | None = None) -> tuple[int, bool]:
    """Tonic pitch class and minor flag, from the notes (Krumhansl-Kessler), else the key signature."""
    notes = pitched_notes(tracks if tracks is not None else song.tracks)
    if len(notes):
        hist = np.bincount(notes["pitch"] % 12, weights=notes["duration"].astype(float), minlength=12)
        if hist.sum() > 0:
            best, best_key = -2.0, (0, False)
            for tonic in range(12):
                for minor, profile in ((False, _MAJOR_PROFILE), (True, _MINOR_PROFILE)):
                    r = float(np.corrcoef(hist, np.roll(profile, tonic))[0, 1])
                    if r > best:
                        best, best_key = r, (tonic, minor)
            return best_key
    if song.key_signatures:
        ks = song.key_signatures[0]
        return ks.tonic_pitch_class, ks.minor
    return 0, False


def sounding_pitch_classes(notes: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Boolean (windows, 12): which pitch classes sound at any time in each window."""
    return chroma(notes, bounds, bass_weight=0.0) > 0
