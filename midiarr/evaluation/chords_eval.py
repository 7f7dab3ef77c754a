"""How well parts written from a chord progression follow it (`midiarr eval-chords`).

The progressions come from real songs: for each song of a split, the chords midiarr hears in its first bars are
written out as `--chords` text, read back, and a band is generated from them alone. Measured per song:
- the harmonic fit of each pitched part to the given chords (the duration-weighted share of its sounding time
  on a chord tone);
- for the bass, the share of chord changes where its first note within a beat of the change is the chord's
  root or its slash bass (a change with no bass note there counts as a miss).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from midiarr.chords import chord_notes, format_progression, parse
from midiarr.engines import Controls, get_engine
from midiarr.evaluation.metrics import harmonic_fit
from midiarr.io import load
from midiarr.song import ChordSymbol, Song


def progression_songs(cache: str | Path, split: str, limit: int, bars: int) -> list[tuple[str, Song]]:
    """Songs of ``split`` in one meter over their first ``bars`` bars, with at least two different chords."""
    from midiarr.harmony import estimate_chords

    root = Path(cache)
    rows = [json.loads(line) for line in (root / "index.jsonl").read_text("utf-8").splitlines() if line.strip()]
    out = []
    for row in rows:
        if row.get("split") != split:
            continue
        song = load(root / "songs" / row["id"] / "full.mid").first_bars(bars)
        if len({(t.numerator, t.denominator) for t in song.time_signatures}) > 1 or song.num_bars < bars:
            continue
        if len({(c.root, c.quality) for c in estimate_chords(song)}) < 2:
            continue
        out.append((row["id"], song))
        if len(out) >= limit:
            break
    return out


def roots_at_changes(song: Song, bass: np.ndarray, chords: list[ChordSymbol]) -> float:
    """Share of chord changes where the bass's first note within a beat is the root (or the slash bass)."""
    changes = [c for c in chords if c.root is not None]
    if not changes:
        return float("nan")
    order = np.argsort(bass["start"], kind="stable")
    starts, pitches = bass["start"][order], bass["pitch"][order]
    hits = 0
    for c in changes:
        ts = song.time_signature_at(c.tick)
        beat = round(song.ticks_per_beat * 4 / ts.denominator)
        i = int(np.searchsorted(starts, c.tick, side="left"))
        if i < len(starts) and starts[i] < c.tick + beat and int(pitches[i]) % 12 in {c.root, c.bass}:
            hits += 1
    return hits / len(changes)


def evaluate_chords(
    cache: str | Path,
    split: str = "valid",
    limit: int = 40,
    bars: int = 16,
    stems: tuple[str, ...] = ("piano", "bass", "drums"),
    engine: str = "transformer",
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Generate a band from each song's progression and measure how it follows; per song and summarized."""
    writer = get_engine(engine)
    rows = []
    for k, (song_id, song) in enumerate(progression_songs(cache, split, limit, bars)):
        meter = (
            (song.time_signatures[0].numerator, song.time_signatures[0].denominator) if song.time_signatures else (4, 4)
        )
        text = format_progression(song, bars=bars)
        progression = parse(text, meter=meter, ticks_per_beat=song.ticks_per_beat)
        qpm = song.tempos[0].qpm if song.tempos else 120.0
        qpm = float(min(max(qpm, 20.0), 300.0))
        out = writer.generate(
            list(stems), progression.bars, Controls(), seed=seed + k, qpm=qpm, meter=meter, chords=progression.chords
        )
        given = chord_notes(out, progression.chords)
        row: dict[str, Any] = {"song": song_id, "progression": text, "changes": len(progression.chords)}
        for t in out.tracks:
            if t.is_drum or t.role not in stems:
                continue
            row[f"{t.role}_fit"] = harmonic_fit(out, t.notes, given)
            if t.role == "bass":
                row["bass_roots"] = roots_at_changes(out, t.notes, progression.chords)
        rows.append(row)
        if log:
            log(json.dumps(row))
    summary: dict[str, Any] = {}
    keys = sorted({k for r in rows for k in r if k.endswith("_fit") or k == "bass_roots"})
    for key in keys:
        values = [r[key] for r in rows if key in r and not np.isnan(r[key])]
        if values:
            summary[key] = {
                "n": len(values),
                "mean": float(np.mean(values)),
                "median": float(statistics.median(values)),
                "q25": float(np.percentile(values, 25)),
                "q75": float(np.percentile(values, 75)),
            }
    return {"split": split, "engine": engine, "bars": bars, "stems": list(stems), "summary": summary, "songs": rows}
