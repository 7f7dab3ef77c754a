"""How well redone bars fit (`midiarr eval-infill`): bars of real parts are taken out, written again with
`midiarr.infill`, and compared with the real bars.

Per part: notes against the real bars' (ratio), harmonic fit with the other parts, register (median pitch)
against the real bars', and the seams: the register jump into and out of the span (semitones; for drums, the
change in hits per bar) and the onset gap at the span's start against the real part's own gap there (beats).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from midiarr.engines import Controls, get_engine
from midiarr.evaluation.metrics import harmonic_fit
from midiarr.infill import infill, seam_cost
from midiarr.io import load
from midiarr.roles import assign_roles, tracks_with_role
from midiarr.song import Song


def _gap_at(song: Song, notes: np.ndarray, start: int) -> float:
    """Beats from the last onset before ``start`` to the first at or after it (NaN without both)."""
    before, after = notes["start"][notes["start"] < start], notes["start"][notes["start"] >= start]
    if not len(before) or not len(after):
        return float("nan")
    return float(after.min() - before.max()) / song.ticks_per_beat


def evaluate_infill(
    cache: str | Path,
    split: str = "valid",
    limit: int = 40,
    bars: int = 16,
    span: tuple[int, int] = (5, 8),
    stems: tuple[str, ...] = ("bass", "drums", "guitar"),
    engine: str = "transformer",
    tries: int = 4,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Infill bars ``span`` (1-based, inclusive) of real parts on ``split`` and measure them against the real bars."""
    writer = get_engine(engine)
    root = Path(cache)
    index = [json.loads(line) for line in (root / "index.jsonl").read_text("utf-8").splitlines() if line.strip()]
    rows: list[dict[str, Any]] = []
    for stem in stems:
        done = 0
        for entry in index:
            if entry.get("split") != split or done >= limit:
                continue
            song = load(root / "songs" / entry["id"] / "full.mid").first_bars(bars)
            if song.num_bars < bars:
                continue
            roles = assign_roles(song)
            idx = [i for i in tracks_with_role(roles, stem) if len(song.tracks[i].notes)]
            if not idx:
                continue
            mask = np.zeros(song.num_bars, dtype=bool)
            mask[span[0] - 1 : span[1]] = True
            starts = song.bar_starts()
            lo, hi = int(starts[span[0] - 1]), int(starts[span[1]]) if span[1] < len(starts) else song.end_tick + 1
            real = np.concatenate([song.tracks[i].notes for i in idx])
            real_in = real[(real["start"] >= lo) & (real["start"] < hi)]
            if len(real_in) == 0:
                continue
            result = infill(writer, song, stem, mask, Controls(), seed=seed + done, roles=roles, tries=tries)
            part = result.song.tracks[result.track].notes
            new_in = part[(part["start"] >= lo) & (part["start"] < hi)]
            kept = real[(real["start"] < lo) | (real["start"] >= hi)]
            drums = song.tracks[idx[0]].is_drum
            others = [t for i, t in enumerate(song.tracks) if i not in idx and not t.is_drum]
            context = np.concatenate([t.notes for t in others]) if others else real[:0]
            row = {
                "song": entry["id"],
                "stem": stem,
                "note_ratio": len(new_in) / len(real_in),
                "seam": seam_cost(song, kept, new_in, mask, drums),
                "real_seam": seam_cost(song, kept, real_in, mask, drums),
                "gap_diff": abs(_gap_at(song, np.concatenate([kept, new_in]), lo) - _gap_at(song, real, lo)),
            }
            if not drums:
                row["harmonic_fit"] = harmonic_fit(song, new_in, context) if len(context) else float("nan")
                row["register_diff"] = abs(float(np.median(new_in["pitch"])) - float(np.median(real_in["pitch"])))
            rows.append(row)
            done += 1
            if log:
                log(json.dumps(row))
    summary: dict[str, Any] = {}
    for stem in stems:
        mine = [r for r in rows if r["stem"] == stem]
        for key in ("note_ratio", "seam", "real_seam", "gap_diff", "harmonic_fit", "register_diff"):
            values = [r[key] for r in mine if key in r and np.isfinite(r[key])]
            if values:
                summary[f"{stem}.{key}"] = {
                    "n": len(values),
                    "median": float(statistics.median(values)),
                    "q25": float(np.percentile(values, 25)),
                    "q75": float(np.percentile(values, 75)),
                    "mean": float(np.mean(values)),
                }
    return {"split": split, "engine": engine, "bars": bars, "span": list(span), "tries": tries,
            "summary": summary, "parts": rows}  # fmt: skip
