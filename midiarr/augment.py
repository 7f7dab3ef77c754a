"""Data augmentation for training: transposition of pitched stems, velocity jitter."""

from __future__ import annotations

import random

import numpy as np

from midiarr.song import Song


def transpose(song: Song, semitones: int, pitch_range: tuple[int, int] = (21, 109)) -> Song:
    """A copy with every pitched (non-drum) track moved by ``semitones``; drums keep their sounds.

    The shift is reduced toward zero until every pitched note stays inside ``pitch_range``.
    """
    low, high = pitch_range
    pitched = [t.notes["pitch"] for t in song.tracks if not t.is_drum and len(t.notes)]
    if pitched:
        lo = int(min(p.min() for p in pitched))
        hi = int(max(p.max() for p in pitched))
        if lo >= low and hi < high:
            semitones = int(np.clip(semitones, low - lo, high - 1 - hi))
        else:  # already outside the range: leave the pitches alone
            semitones = 0
    out = song.copy()
    if semitones:
        for track in out.tracks:
            if not track.is_drum:
                track.notes["pitch"] += semitones
    return out


def jitter_velocity(song: Song, amount: int, rng: random.Random) -> Song:
    """A copy with each velocity moved by a random integer in [-amount, amount], kept in 1..127."""
    out = song.copy()
    gen = np.random.default_rng(rng.getrandbits(63))
    for track in out.tracks:
        n = track.notes
        if len(n):
            n["velocity"] = np.clip(n["velocity"] + gen.integers(-amount, amount + 1, len(n)), 1, 127)
    return out


def augment(
    song: Song, rng: random.Random, transpose_range: tuple[int, int] = (-5, 6), velocity_jitter: int = 8
) -> Song:
    """One random augmentation: a transposition in ``transpose_range`` (upper bound excluded) and jitter."""
    shift = rng.randrange(transpose_range[0], transpose_range[1])
    return jitter_velocity(transpose(song, shift), velocity_jitter, rng)
