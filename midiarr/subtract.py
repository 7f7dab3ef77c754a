"""Subtraction: take one stem out of a song (the Subtractive Training triplet).

The partial song keeps every other track, tempo, meter, key and marker exactly
as they were; the removed tracks come back as their own song on the same grid.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from midiarr.attributes import StemAttributes, describe, measure
from midiarr.errors import EmptySongError, OptionError
from midiarr.roles import assign_roles, check_stem, tracks_with_role
from midiarr.song import Song, sort_notes


@dataclass
class Subtraction:
    """A song split into the part without ``stem`` and the stem alone."""

    stem: str
    partial: Song
    target: Song
    track_indices: list[int]

    def target_notes(self) -> np.ndarray:
        """All notes of the removed stem merged into one sorted array."""
        return sort_notes(np.concatenate([t.notes for t in self.target.tracks]))


def subtract(song: Song, stem: str, roles: dict[int, str] | None = None) -> Subtraction:
    """Remove every track of role ``stem``; raises `OptionError` when the song has none."""
    stem = check_stem(stem)
    if song.note_count == 0:
        raise EmptySongError("the song has no notes")
    roles = roles if roles is not None else assign_roles(song)
    indices = [i for i in tracks_with_role(roles, stem) if len(song.tracks[i].notes)]
    if not indices:
        present = sorted({r for i, r in roles.items() if len(song.tracks[i].notes)})
        raise OptionError(f"the song has no {stem} part (its parts: {', '.join(present) or 'none'})")
    removed = set(indices)
    partial = song.with_tracks([t for i, t in enumerate(song.tracks) if i not in removed])
    target = song.with_tracks([song.tracks[i] for i in indices])
    for track in target.tracks:
        track.role = stem
    return Subtraction(stem=stem, partial=partial, target=target, track_indices=indices)


@dataclass
class Triplet:
    """One Subtractive Training example: full song, song without the stem, instruction."""

    full: Song
    subtraction: Subtraction
    attributes: StemAttributes
    instruction: str


def make_triplet(
    song: Song, stem: str, roles: dict[int, str] | None = None, genre: str | None = None, seed: int = 0
) -> Triplet:
    """Subtract ``stem`` and describe it; the wording is drawn with ``seed``."""
    sub = subtract(song, stem, roles)
    attrs = measure(song, sub.target_notes(), sub.stem, genre=genre)
    instruction = describe(attrs, random.Random(seed))
    return Triplet(full=song, subtraction=sub, attributes=attrs, instruction=instruction)
