"""A player's touch: how hard each note of a written part is struck, around the level the engine chose.

The model engines write velocity in coarse bins (the transformer) or not at all (the diffusion engine), so
their parts come out at one velocity: no accents, no ghost notes. Real parts vary by 5 (bass) to 15
(drums) velocity steps, and the variation has a shape: downbeats and backbeats land harder, snare 16ths
are ghosted, a long bass note is leaned on.

The touch model is a table learned from real parts of the train split. A note falls in a *cell*: the
stem, the metric slot of its onset (the one, other beats, backbeats, eighth offbeats, sixteenths, off the
grid) and, for drums, the kit piece, for pitched parts the note's length and whether it is in a chord.
For every cell the table keeps two distributions over the train songs, as quantiles:
- the cell's mean deviation from the part's local level (a song's *habit*: whether this player ghosts
  that snare or plays it full);
- the spread of single notes around that habit within the song.

Writing a part takes one real train part as its player: among the train songs whose other parts vary in
velocity about as much as this song's do, one is drawn, and its own habit and spread per cell are used
(its correlations kept: a player who plays flat plays flat everywhere). Cells that player never played
come from the distributions. Accents repeat bar after bar as a player's do, and each note deviates
around its habit. The part's mean velocity is kept, so the dynamics the user
asked for (and the engine wrote) stay as they were. No note is added, moved or dropped.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from midiarr.errors import InputError
from midiarr.player.tables import read_table, write_table
from midiarr.song import Song
from midiarr.transformer.vocab import DRUM_CLASSES, drum_class_table

SLOTS: tuple[str, ...] = ("one", "beat", "backbeat", "and", "sixteenth", "off")
LENGTHS: tuple[str, ...] = ("short", "mid", "long")  # under an eighth, up to a half, longer
QUANTILES = np.linspace(0.0, 1.0, 21)
NEAREST = 25  # donors drawn from: the train songs whose other parts' velocity spread is closest
MAX_DONORS = 300  # train songs kept per stem as donors
MIN_SONGS = 12  # a cell heard in fewer train songs falls back to its coarser cell
_DRUM_CLASS = np.array(drum_class_table())
BUNDLED = "touch"


def metric_slots(song: Song, starts: np.ndarray) -> np.ndarray:
    """The metric slot (index into `SLOTS`) of each onset: its place in the bar and the beat."""
    tpb = song.ticks_per_beat
    bars = song.bar_starts(max(song.end_tick, int(starts.max()) + 1 if len(starts) else 1))
    idx = np.clip(np.searchsorted(bars, starts, side="right") - 1, 0, len(bars) - 1)
    quarters = (starts - bars[idx]) / tpb
    beat = np.floor(quarters + 1e-6)
    frac = quarters - beat
    tol = 1 / 12  # a 48th of a whole note either way still counts as on that 16th
    slot = np.full(len(starts), SLOTS.index("off"))
    on = (frac < tol) | (frac > 1 - tol)
    beat = np.where(frac > 1 - tol, beat + 1, beat)
    slot[on & (beat % 2 == 1)] = SLOTS.index("backbeat")
    slot[on & (beat % 2 == 0)] = SLOTS.index("beat")
    slot[on & (beat == 0)] = SLOTS.index("one")
    slot[~on & (np.abs(frac - 0.5) < tol)] = SLOTS.index("and")
    slot[~on & ((np.abs(frac - 0.25) < tol) | (np.abs(frac - 0.75) < tol))] = SLOTS.index("sixteenth")
    return slot


def note_cells(song: Song, notes: np.ndarray, drums: bool) -> tuple[list[str], list[str]]:
    """Per note, its fine cell and the coarser cell it falls back to."""
    slots = metric_slots(song, notes["start"])
    if drums:
        piece = _DRUM_CLASS[np.clip(notes["pitch"], 0, 127)]
        fine = [f"{DRUM_CLASSES[p][0]}|{SLOTS[s]}" for p, s in zip(piece, slots)]
        coarse = [f"{DRUM_CLASSES[p][0]}" for p in piece]
        return fine, coarse
    beats = notes["duration"] / song.ticks_per_beat
    length = np.digitize(beats, [0.45, 2.0])
    _, first, counts = np.unique(notes["start"], return_inverse=True, return_counts=True)
    chord = counts[first] > 1
    fine = [f"{SLOTS[s]}|{LENGTHS[k]}|{'chord' if c else 'single'}" for s, k, c in zip(slots, length, chord)]
    coarse = [SLOTS[s] for s in slots]
    return fine, coarse


def local_level(song: Song, notes: np.ndarray) -> np.ndarray:
    """Each note's local level: the median velocity of the part in its bar and the bars either side
    (a crescendo moves the level, an accent does not)."""
    bars = song.bar_index(notes["start"])
    vel = notes["velocity"].astype(float)
    level = np.empty(len(notes))
    for b in np.unique(bars):
        near = np.abs(bars - b) <= 1
        level[bars == b] = np.median(vel[near])
    return level


@dataclass
class TouchModel:
    """Per stem and cell: the habit quantiles and the within-song spread (velocity steps)."""

    cells: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # per stem: train songs' own cells {cell: [habit, spread]} and their other parts' velocity spread
    donors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def apply(
        self, song: Song, notes: np.ndarray, stem: str, rng: np.random.Generator, context_spread: float | None = None
    ) -> np.ndarray:
        """``notes`` with velocities given this stem's touch; starts, pitches and lengths unchanged.

        ``context_spread`` (`context_velocity_spread` of the other parts) picks the player among train
        songs whose other parts vary as much: a file played in by hand gets a player who accents, a
        step-sequenced one a steadier player.
        """
        if len(notes) < 2 or stem not in self.cells:
            return notes
        fine, coarse = note_cells(song, notes, stem == "drums")
        table = self.cells[stem]
        record = self._donor(stem, rng, context_spread)
        donor = record.get("cells", {})
        steadiness = rng.random()  # where no donor cell: one steadiness for the part, one habit per cell
        habits: dict[str, tuple[float, float]] = {}
        offset = np.zeros(len(notes))
        for k, (f, c) in enumerate(zip(fine, coarse)):
            key = next((x for x in (f, c, "*") if x in donor or x in table), None)
            if key is None:
                continue
            if key not in habits:
                if key in donor:
                    habits[key] = (float(donor[key][0]), float(donor[key][1]))
                else:
                    cell = table[key]
                    habit = float(np.interp(rng.random(), QUANTILES, cell["habit"]))
                    habits[key] = (habit, float(np.interp(steadiness, QUANTILES, cell["within"])))
            habit, spread = habits[key]
            offset[k] = habit + rng.normal(0.0, spread)
        offset -= offset.mean()  # the level the engine wrote (and the dynamics asked for) is kept
        played = notes["velocity"] + offset
        donor_levels = record.get("level_spread")
        if donor_levels is not None:
            # the player's dynamics: the engine's level moves from bar to bar at most as far as the donor's did
            # (a step-sequenced file's player never moved; the transformer's bass had moved 7 velocity steps)
            level = local_level(song, notes)
            moved = float(np.std(level))
            if moved > 1e-9:
                played += (level - level.mean()) * (min(1.0, float(donor_levels) / moved) - 1.0)
        out = notes.copy()
        out["velocity"] = np.clip(np.round(played), 1, 127).astype(notes["velocity"].dtype)
        return out

    def _donor(self, stem: str, rng: np.random.Generator, context_spread: float | None) -> dict[str, Any]:
        """One train song's player: its cells (habit, spread) and how far its level moved (``level_spread``),
        among the `NEAREST` whose context spread is closest."""
        donors = self.donors.get(stem, [])
        if not donors:
            return {}
        if context_spread is None:
            return donors[int(rng.integers(len(donors)))]
        gaps = np.abs(np.array([d["context_spread"] for d in donors]) - context_spread)
        near = np.argsort(gaps, kind="stable")[:NEAREST]
        return donors[int(near[rng.integers(len(near))])]

    def save(self, folder: str | os.PathLike[str]) -> None:
        payload = {
            "slots": list(SLOTS),
            "quantiles": len(QUANTILES),
            "cells": self.cells,
            "donors": self.donors,
            "info": self.info,
        }
        write_table(folder, BUNDLED, payload)

    @classmethod
    def load(cls, folder: str | os.PathLike[str] | None = None) -> TouchModel:
        path, payload = read_table(folder, BUNDLED)
        if payload.get("slots") != list(SLOTS) or payload.get("quantiles") != len(QUANTILES):
            raise InputError(f"touch model {path}: its cells differ from this midiarr's")
        return cls(payload["cells"], payload.get("donors", {}), payload.get("info", {}))


@functools.cache
def bundled_model() -> TouchModel:
    """The shipped touch model, read once."""
    return TouchModel.load()


def part_deviations(song: Song, notes: np.ndarray, drums: bool) -> list[tuple[str, str, float]]:
    """(fine cell, coarse cell, deviation from the local level) of every note of a real part."""
    if len(notes) < 2:
        return []
    deviation = notes["velocity"].astype(float) - local_level(song, notes)
    fine, coarse = note_cells(song, notes, drums)
    return list(zip(fine, coarse, deviation.tolist()))


def fit_cells(parts: list[list[tuple[str, str, float]]]) -> dict[str, dict[str, Any]]:
    """The cells of one stem from its real parts' deviations (each part one song)."""
    habits: dict[str, list[float]] = {}  # cell -> each song's mean deviation there
    spreads: dict[str, list[float]] = {}  # cell -> each song's spread around its own mean there
    for part in parts:
        groups: dict[str, list[float]] = {}
        for fine, coarse, dev in part:
            for key in (fine, coarse, "*"):
                groups.setdefault(key, []).append(dev)
        for key, devs in groups.items():
            habits.setdefault(key, []).append(float(np.mean(devs)))
            if len(devs) >= 3:
                spreads.setdefault(key, []).append(float(np.std(devs)))
    cells = {}
    for key, means in habits.items():
        if len(means) < MIN_SONGS or len(spreads.get(key, [])) < MIN_SONGS:
            continue
        cells[key] = {
            "songs": len(means),
            "habit": [round(float(v), 2) for v in np.quantile(means, QUANTILES)],
            "within": [round(float(v), 2) for v in np.quantile(spreads[key], QUANTILES)],
        }
    return cells


def song_cells(part: list[tuple[str, str, float]]) -> dict[str, list[float]]:
    """One real part's own cells: [mean deviation, spread around it] where it plays three notes or more."""
    groups: dict[str, list[float]] = {}
    for fine, coarse, dev in part:
        for key in (fine, coarse, "*"):
            groups.setdefault(key, []).append(dev)
    return {key: [round(float(np.mean(d)), 1), round(float(np.std(d)), 1)] for key, d in groups.items() if len(d) >= 3}


def context_velocity_spread(song: Song) -> float:
    """The median over the song's tracks (two notes or more) of each track's velocity sd."""
    spreads = [float(np.std(t.notes["velocity"].astype(float))) for t in song.tracks if len(t.notes) >= 2]
    return float(np.median(spreads)) if spreads else 0.0
