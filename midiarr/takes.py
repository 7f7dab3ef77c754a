"""Takes: the same part written N times from one seed, each with the scores a songwriter picks by.

Take 1 is exactly what one `insert`/`generate` with the seed writes; take k draws from ``seed + TAKE_STRIDE*(k-1)``,
so the same seed always gives the same takes. Scores (`score_take`) describe each take against the song it was
written for: notes and bars played, notes per bar, harmonic fit and onset sync with the other parts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from midiarr.engines import Controls, Engine
from midiarr.evaluation.metrics import harmonic_fit, onset_sync
from midiarr.song import NOTE_DTYPE, ChordSymbol, KeySignature, Song

MAX_TAKES = 16
TAKE_STRIDE = 7919  # seeds of different takes lie far apart (an insert of several stems uses seed, seed+1, ...)


@dataclass
class Take:
    """One take: its number (1 first), the seed it was drawn with, the song with it, its new tracks, scores."""

    number: int
    seed: int
    song: Song
    new_tracks: list[int]
    scores: dict[str, float] = field(default_factory=dict)


def take_seed(seed: int, number: int) -> int:
    """The seed of take ``number`` (1-based) of a run with ``seed``."""
    return seed + TAKE_STRIDE * (number - 1)


def check_takes(n: int) -> int:
    from midiarr.errors import OptionError

    if not 1 <= int(n) <= MAX_TAKES:
        raise OptionError(f"--takes {n}: choose between 1 and {MAX_TAKES}")
    return int(n)


def score_take(song: Song, new_tracks: list[int]) -> dict[str, float]:
    """What a take plays, measured against the song's other parts (NaN where nothing can be judged)."""
    new = [song.tracks[i] for i in new_tracks]
    part = np.concatenate([t.notes for t in new]) if new else np.zeros(0, dtype=NOTE_DTYPE)
    others = [t for i, t in enumerate(song.tracks) if i not in new_tracks]
    context = np.concatenate([t.notes for t in others]) if others else np.zeros(0, dtype=NOTE_DTYPE)
    pitched_part = np.concatenate([t.notes for t in new if not t.is_drum] or [np.zeros(0, dtype=NOTE_DTYPE)])
    pitched_context = np.concatenate([t.notes for t in others if not t.is_drum] or [np.zeros(0, dtype=NOTE_DTYPE)])
    bars = int(song.bar_activity(part).sum()) if len(part) else 0
    return {
        "notes": float(len(part)),
        "bars_played": float(bars),
        "notes_per_bar": len(part) / bars if bars else 0.0,
        "harmonic_fit": harmonic_fit(song, pitched_part, pitched_context) if len(pitched_context) else math.nan,
        "onset_sync": onset_sync(part, context, song.ticks_per_beat),
    }


def insert_takes(
    engine: Engine,
    song: Song,
    stems: list[str],
    controls: Controls,
    takes: int,
    seed: int = 0,
    **insert_options: Any,
) -> list[Take]:
    """``takes`` takes of ``stems`` inserted into ``song`` (each as `Engine.insert_stems` writes it)."""
    out = []
    for k in range(1, check_takes(takes) + 1):
        s = take_seed(seed, k)
        result = engine.insert_stems(song, stems, controls, seed=s, **insert_options)
        out.append(Take(k, s, result.song, result.new_tracks, score_take(result.song, result.new_tracks)))
    return out


def generate_takes(
    engine: Engine,
    stems: list[str],
    bars: int,
    controls: Controls,
    takes: int,
    seed: int = 0,
    chords: list[ChordSymbol] | None = None,
    key: KeySignature | None = None,
    **generate_options: Any,
) -> list[Take]:
    """``takes`` songs generated from one seed (and, when given, one chord progression)."""
    out = []
    for k in range(1, check_takes(takes) + 1):
        s = take_seed(seed, k)
        song = engine.generate(stems, bars, controls, seed=s, chords=chords, key=key, **generate_options)
        tracks = list(range(len(song.tracks)))
        out.append(Take(k, s, song, tracks, score_take(song, tracks)))
    return out


def take_path(output: Path, number: int) -> Path:
    """``out.mid`` -> ``out.take1.mid`` (the same folder and format)."""
    return output.with_name(f"{output.stem}.take{number}{output.suffix}")


def takes_report(takes: list[Take], paths: list[Path]) -> str:
    """The JSON written beside the takes: each take's file, seed and scores."""

    def clean(v: float) -> float | None:
        return None if isinstance(v, float) and math.isnan(v) else round(v, 4)

    rows = [
        {"take": t.number, "file": p.name, "seed": t.seed, "scores": {k: clean(v) for k, v in t.scores.items()}}
        for t, p in zip(takes, paths, strict=True)
    ]
    return json.dumps({"takes": rows}, indent=1)
