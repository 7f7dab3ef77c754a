"""The borrow baseline: the same stem taken from another song, moved onto this song's grid.

Bar k of the donor's part lands on bar k of the song (the donor loops if shorter),
each onset keeping its position as a fraction of the bar, and pitched parts are
transposed from the donor's key to the song's. It shows what a real, human part
that ignores this song's harmony and groove scores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from midiarr.engines.base import Controls, Engine, register_engine
from midiarr.engines.settings import EngineSettings
from midiarr.errors import OptionError
from midiarr.harmony import estimate_key
from midiarr.io import load
from midiarr.roles import assign_roles, tracks_with_role
from midiarr.song import NOTE_DTYPE, Song, Track, sort_notes


@dataclass
class BorrowSettings(EngineSettings):
    """The borrow engine's settings: the donor songs (each a `Song` or a MIDI/MusicXML file)."""

    engine: ClassVar[str] = "borrow"

    donors: list[Song | str | os.PathLike[str]] = field(default_factory=list)

    def check(self) -> BorrowSettings:
        if isinstance(self.donors, (str, os.PathLike, Song)):  # one donor given bare
            self.donors = [self.donors]
        bad = [d for d in self.donors if not isinstance(d, (Song, str, os.PathLike))]
        if bad:
            raise OptionError(f"--donor {bad[0]!r}: a donor is a song or its file")
        return self


@register_engine("borrow")
class BorrowEngine(Engine):
    """Writes the stem by borrowing it from donor songs (chosen by the seed)."""

    writes_touch = True  # a real part, played as it was
    writes_repeats = True  # a real part, its form as it was

    def __init__(self, settings: BorrowSettings | None = None, **options: Any) -> None:
        """``donors`` (an option): the songs, or their files, whose parts are borrowed."""
        super().__init__(settings, **options)
        self.donors = list(self.settings.donors)

    @classmethod
    def settings_type(cls) -> type[BorrowSettings]:
        return BorrowSettings

    def write_part(
        self, context: Song, stem: str, controls: Controls, active: np.ndarray, rng: np.random.Generator
    ) -> list[Track]:
        # donors in a seeded order; the first one that has the stem is used (loaded lazily)
        for k in rng.permutation(len(self.donors)).tolist():
            donor = self.donors[k]
            donor = donor if isinstance(donor, Song) else load(Path(donor))
            idx = [i for i in tracks_with_role(assign_roles(donor), stem) if len(donor.tracks[i].notes)]
            if idx:
                break
        else:
            raise OptionError(f"the borrow engine needs a donor song with a {stem} part (--donor FILE)")
        notes = np.concatenate([donor.tracks[i].notes for i in idx])
        moved = move_onto_grid(notes, donor, context, active)
        if stem != "drums":
            shift = (estimate_key(context)[0] - estimate_key(donor)[0] + 6) % 12 - 6
            moved["pitch"] = np.clip(moved["pitch"] + shift, 0, 127)
        first = donor.tracks[idx[0]]
        return [Track(name=first.name or stem.title(), program=first.program, is_drum=first.is_drum, notes=moved)]


def move_onto_grid(notes: np.ndarray, donor: Song, target: Song, active: np.ndarray) -> np.ndarray:
    """Donor notes re-timed bar by bar onto the target's bars (looping the donor), in active bars only."""
    d_bars = donor.bar_starts()
    d_ends = np.append(d_bars[1:], max(donor.end_tick, int(d_bars[-1]) + 1))
    t_bars = target.bar_starts()
    t_ends = np.append(t_bars[1:], max(target.end_tick, int(t_bars[-1]) + 1))
    d_idx = np.clip(np.searchsorted(d_bars, notes["start"], side="right") - 1, 0, len(d_bars) - 1)
    d_len = (d_ends - d_bars)[d_idx].astype(float)
    frac_start = (notes["start"] - d_bars[d_idx]) / d_len
    frac_dur = notes["duration"] / d_len
    rows = []
    used_donor_bars = int(d_idx.max()) + 1 if len(notes) else 0
    for k in range(len(t_bars)):
        if used_donor_bars == 0 or (k < len(active) and not active[k]):
            continue
        sel = d_idx == (k % used_donor_bars)
        if not sel.any():
            continue
        length = float(t_ends[k] - t_bars[k])
        out = np.zeros(int(sel.sum()), dtype=NOTE_DTYPE)
        out["start"] = t_bars[k] + np.round(frac_start[sel] * length)
        out["duration"] = np.maximum(np.round(frac_dur[sel] * length), 1)
        out["pitch"], out["velocity"] = notes["pitch"][sel], notes["velocity"][sel]
        rows.append(out)
    return sort_notes(np.concatenate(rows)) if rows else np.zeros(0, dtype=NOTE_DTYPE)
