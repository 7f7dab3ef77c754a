"""Parts that come back when the song comes back: a player repeats what they played where the song repeats.

A model engine writes every bar afresh, so the second verse's bass is a new line even where the rest of the
band plays the first verse again note for note. Real players do the opposite. In the train split, a bar
whose other parts repeat an earlier bar (the same pitches on the same 16ths, a Jaccard overlap of at least
`THRESHOLD`), and where the part plays in both, is played exactly as in that earlier bar by most bass, drum
and guitar players, and far fewer pianists, who often carry the tune (`midiarr train-player` fits the share
per stem: the ``repeats`` table). About a third of all bars have such an earlier bar.

`RepeatModel.apply` gives a written part the same habit: for each bar whose context repeats an earlier bar
(the latest such), it plays the earlier bar's written notes again with the stem's learned probability, so a
riff, a groove or a voicing comes back with its section. Otherwise the part is left as the engine wrote it:
- only bars the engine wrote notes in on both sides take part, so no bar goes from silence to notes or back;
- bars of another length than their source (a meter change) are left alone;
- only bars the caller names as writable change (an infill's span), though the source may be any bar.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from midiarr.player.tables import read_table, write_table
from midiarr.song import Song, sort_notes

THRESHOLD = 0.9  # Jaccard overlap of two bars' other parts that counts as the song repeating itself
# the band keeps its groove from one bar to the next: the Jaccard overlap of their onset steps (pitch ignored)
HOLD_THRESHOLD = 0.8
# stems that hold the previous bar: a drummer keeps a groove over the band's; a pitched part playing its last
# bar again would ignore a chord change (the bars where the song repeats itself are `rates`' work)
HOLD_STEMS: tuple[str, ...] = ("drums",)
BUNDLED = "repeats"
STEMS: tuple[str, ...] = ("bass", "drums", "guitar", "piano", "strings")


def bar_grid(song: Song, notes: np.ndarray, end_tick: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The song's bar starts (with the end of the last bar appended) and the bar of each note's onset."""
    ends = notes["start"] + notes["duration"]
    last = max(song.end_tick, int(ends.max()) if len(notes) else 0, 1) if end_tick is None else end_tick
    starts = song.bar_starts(last)
    # the end of the last bar: one bar of the last bar's length, as the meter in force gives it
    length = int(starts[-1] - starts[-2]) if len(starts) > 1 else song.ticks_per_beat * 4
    edges = np.append(starts, starts[-1] + max(length, 1))
    idx = np.clip(np.searchsorted(edges, notes["start"], side="right") - 1, 0, len(starts) - 1)
    return edges, idx


def bar_signatures(song: Song, notes: np.ndarray, edges: np.ndarray) -> list[frozenset[tuple[int, int]]]:
    """Per bar: the set of (16th step from the bar start, pitch) of the notes that start in it."""
    bars = len(edges) - 1
    idx = np.clip(np.searchsorted(edges, notes["start"], side="right") - 1, 0, bars - 1)
    steps = np.round((notes["start"] - edges[idx]) / (song.ticks_per_beat / 4)).astype(np.int64)
    sets: list[set[tuple[int, int]]] = [set() for _ in range(bars)]
    for b, s, p in zip(idx.tolist(), steps.tolist(), notes["pitch"].tolist()):
        sets[b].add((s, p))
    return [frozenset(s) for s in sets]


def bar_rhythms(song: Song, notes: np.ndarray, edges: np.ndarray) -> list[frozenset[int]]:
    """Per bar: the set of 16th steps (from the bar start) where a note of ``notes`` starts."""
    return [frozenset(step for step, _ in sig) for sig in bar_signatures(song, notes, edges)]


def same_rhythm(a: frozenset[int], b: frozenset[int], threshold: float = HOLD_THRESHOLD) -> bool:
    """Whether two bars' onset steps overlap by ``threshold`` or more (Jaccard); an empty bar holds nothing."""
    return bool(a) and bool(b) and len(a & b) >= threshold * len(a | b)


def hold_bars(rhythms: list[frozenset[int]], threshold: float = HOLD_THRESHOLD) -> np.ndarray:
    """Per bar, whether the band keeps the previous bar's groove into it and on into the next bar (or the
    song ends): the onset steps overlap by ``threshold`` or more (Jaccard) both ways. The bar before a change
    is left out, where a player fills into the new section."""

    def same(a: frozenset[int], b: frozenset[int]) -> bool:
        return same_rhythm(a, b, threshold)

    n = len(rhythms)
    return np.array(
        [
            b > 0 and same(rhythms[b], rhythms[b - 1]) and (b + 1 == n or same(rhythms[b + 1], rhythms[b]))
            for b in range(n)
        ],
        dtype=bool,
    )


def held_bars(song: Song, part: np.ndarray, context: np.ndarray) -> tuple[int, int]:
    """(bars the part plays exactly as the bar before, bars where the band holds its groove and the part
    plays in both): how a real part keeps a groove."""
    if not len(context) or not len(part):
        return 0, 0
    edges, _ = bar_grid(song, np.concatenate([part, context]))
    holds = hold_bars(bar_rhythms(song, context, edges))
    played = bar_signatures(song, part, edges)
    same = total = 0
    for b in np.flatnonzero(holds).tolist():
        if played[b] and played[b - 1]:
            total += 1
            same += int(played[b] == played[b - 1])
    return same, total


def repeat_sources(signatures: list[frozenset[tuple[int, int]]], threshold: float = THRESHOLD) -> np.ndarray:
    """Per bar, the latest earlier bar whose signature overlaps this one's by ``threshold`` or more (Jaccard),
    or -1. A bar with nothing in it repeats nothing."""
    out = np.full(len(signatures), -1, dtype=np.int64)
    for b, sig in enumerate(signatures):
        if not sig:
            continue
        for m in range(b - 1, -1, -1):
            other = signatures[m]
            if other and len(sig & other) >= threshold * len(sig | other):
                out[b] = m
                break
    return out


def context_notes(context: Song) -> np.ndarray:
    """Every note of the context's tracks, in one array."""
    arrays = [t.notes for t in context.tracks if len(t.notes)]
    if not arrays:
        from midiarr.song import NOTE_DTYPE

        return np.zeros(0, dtype=NOTE_DTYPE)
    return np.concatenate(arrays)


def repeated_bars(
    song: Song, part: np.ndarray, context: np.ndarray, threshold: float = THRESHOLD, both: bool = False
) -> tuple[int, int]:
    """(bars the part plays exactly as in their source bar, bars that have a source bar), counting the bars
    where the part plays in the bar or its source (``both``: in the bar and its source): how a part follows
    the song's repeats."""
    if not len(context):
        return 0, 0
    edges, _ = bar_grid(song, np.concatenate([part, context]) if len(part) else context)
    sources = repeat_sources(bar_signatures(song, context, edges), threshold)
    played = bar_signatures(song, part, edges)
    same = total = 0
    for b, m in enumerate(sources.tolist()):
        if m < 0 or not ((played[b] and played[m]) if both else (played[b] or played[m])):
            continue
        total += 1
        same += int(played[b] == played[m])
    return same, total


@dataclass
class RepeatModel:
    """Per stem, how often a real part plays a bar again where the song repeats it."""

    rates: dict[str, float] = field(default_factory=dict)
    threshold: float = THRESHOLD
    info: dict[str, Any] = field(default_factory=dict)
    # per stem (`HOLD_STEMS`), how often a real part plays a bar exactly as the bar before where the band
    # keeps its groove (`hold_bars`)
    hold_rates: dict[str, float] = field(default_factory=dict)

    def apply(
        self,
        context: Song,
        notes: np.ndarray,
        stem: str,
        rng: np.random.Generator,
        writable: np.ndarray | None = None,
    ) -> np.ndarray:
        """``notes`` (a part written for ``context``) with bars played as the bar before where the band keeps
        its groove (`HOLD_STEMS`), then bars played again where the song repeats. ``writable``: per bar,
        whether it may change (default: every bar)."""
        rate = float(self.rates.get(stem, 0.0))
        hold = float(self.hold_rates.get(stem, 0.0))
        others = context_notes(context)
        if (rate <= 0 and hold <= 0) or not len(notes) or not len(others):
            return notes
        edges, idx = bar_grid(context, np.concatenate([notes, others]))
        idx = idx[: len(notes)]
        sources = repeat_sources(bar_signatures(context, others, edges), self.threshold)
        bars: list[np.ndarray] = [notes[idx == b] for b in range(len(edges) - 1)]
        played_again = np.zeros(len(bars), dtype=bool)
        lengths = np.diff(edges)
        if hold > 0:
            # first, so a bar the song repeats later is played again as held (holding after the repeats
            # would change a bar that a later repeat had copied)
            holds = hold_bars(bar_rhythms(context, others, edges))
            for b in np.flatnonzero(holds).tolist():
                if writable is not None and (b >= len(writable) or not writable[b]):
                    continue
                if not len(bars[b]) or not len(bars[b - 1]) or lengths[b] != lengths[b - 1]:
                    continue
                if rng.random() >= hold:
                    continue
                bars[b] = _moved(bars[b - 1], edges[b] - edges[b - 1])
                played_again[b] = True
        for b, m in enumerate(sources.tolist()):
            if m < 0 or (writable is not None and (b >= len(writable) or not writable[b])):
                continue
            if not len(bars[b]) or not len(bars[m]) or lengths[b] != lengths[m]:
                continue
            if rng.random() >= rate:
                continue
            bars[b] = _moved(bars[m], edges[b] - edges[m])
            played_again[b] = True
        if not played_again.any():
            return notes
        moved = np.concatenate([np.full(len(notes_b), flag) for notes_b, flag in zip(bars, played_again)])
        return _no_overlaps(np.concatenate(bars), moved)

    def save(self, folder: str | os.PathLike[str]) -> None:
        payload = {"threshold": self.threshold, "rates": self.rates, "hold_rates": self.hold_rates, "info": self.info}
        write_table(folder, BUNDLED, payload)

    @classmethod
    def load(cls, folder: str | os.PathLike[str] | None = None) -> RepeatModel:
        _, data = read_table(folder, BUNDLED)
        return cls(
            rates={k: float(v) for k, v in data["rates"].items()},
            threshold=float(data["threshold"]),
            info=data.get("info", {}),
            hold_rates={k: float(v) for k, v in data.get("hold_rates", {}).items()},
        )


def _moved(notes: np.ndarray, ticks: int) -> np.ndarray:
    """A copy of a bar's ``notes`` played ``ticks`` later."""
    again = notes.copy()
    again["start"] += ticks
    return again


def _no_overlaps(notes: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """``notes`` (sorted) where a note played again (``moved``) meets a note of its pitch: the earlier of the
    two is cut where the later starts, and of two on the same tick one is kept. Notes the engine wrote beside
    each other stay as it wrote them."""
    order = np.lexsort((notes["start"], notes["pitch"]))
    ordered, moved = notes[order], moved[order]
    same = ordered["pitch"][1:] == ordered["pitch"][:-1]
    involved = same & (moved[1:] | moved[:-1])
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ~(involved & (ordered["start"][1:] == ordered["start"][:-1]))
    ordered, moved = ordered[keep], moved[keep]
    same = ordered["pitch"][1:] == ordered["pitch"][:-1]
    involved = same & (moved[1:] | moved[:-1])
    room = ordered["start"][1:] - ordered["start"][:-1]
    cut = np.where(involved, np.minimum(ordered["duration"][:-1], room), ordered["duration"][:-1])
    ordered["duration"][:-1] = np.maximum(cut, 1)
    return sort_notes(ordered)


@functools.lru_cache(maxsize=1)
def bundled_model() -> RepeatModel:
    """The shipped model (``midiarr/weights/repeats``)."""
    return RepeatModel.load()


def fit_repeats(
    parts: dict[str, list[tuple[int, int]]],
    threshold: float = THRESHOLD,
    holds: dict[str, list[tuple[int, int]]] | None = None,
) -> RepeatModel:
    """The model from, per stem, each real part's (bars played as their source, bars with a source), and
    for `HOLD_STEMS` its (bars played as the bar before, bars where the band holds its groove): shares pooled
    over bars, so a long song counts by its bars."""
    hold_rates: dict[str, float] = {}
    for stem, counts in (holds or {}).items():
        total = sum(t for _, t in counts)
        if stem in HOLD_STEMS and total:
            hold_rates[stem] = round(sum(s for s, _ in counts) / total, 4)
    rates: dict[str, float] = {}
    info: dict[str, Any] = {"parts": {}, "bars": {}}
    for stem, counts in parts.items():
        same = sum(s for s, _ in counts)
        total = sum(t for _, t in counts)
        if total:
            rates[stem] = round(same / total, 4)
            info["parts"][stem] = sum(1 for _, t in counts if t)
            info["bars"][stem] = total
    return RepeatModel(rates=rates, threshold=threshold, info=info, hold_rates=hold_rates)
