"""`midiarr eval`: remove each stem from held-out songs, have engines write it back, measure.

For every triplet of the chosen split and stems, each engine gets the song
without the stem and the triplet's instruction; its part is measured against the
song and against the real part, next to the same measures of the real part (the
ceiling). Set-level distances compare all written parts with all real parts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from midiarr.attributes import measure, parse_instruction
from midiarr.engines import Controls, get_engine
from midiarr.errors import InputError, MidiarrError, OptionError
from midiarr.evaluation import metrics as M
from midiarr.io import load
from midiarr.prepare import load_triplets
from midiarr.roles import assign_roles, tracks_with_role
from midiarr.song import Song, sort_notes

REAL = "real"
CONTROLLED = ("density", "dynamics", "rhythm")


@dataclass
class PartScore:
    """Every per-part metric for one engine on one triplet."""

    engine: str
    stem: str
    triplet: str
    values: dict[str, float] = field(default_factory=dict)
    vector: list[float] = field(default_factory=list)
    features: dict[str, list[float]] = field(default_factory=dict)


def _notes_of(song: Song, indices: list[int]) -> np.ndarray:
    arrays = [song.tracks[i].notes for i in indices]
    return sort_notes(np.concatenate(arrays)) if arrays else np.zeros(0, dtype=song.tracks[0].notes.dtype)


def score_part(
    song: Song, stem: str, part: np.ndarray, real: np.ndarray, context: np.ndarray, requested: dict[str, str]
) -> dict[str, float]:
    """The per-part metrics of ``part`` (written for ``song``) against ``real`` and ``context``."""
    tpb = song.ticks_per_beat
    drums = stem == "drums"
    recall, precision = M.bar_presence(song.bar_activity(part), song.bar_activity(real))
    values = {
        "bar_recall": recall,
        "bar_precision": precision,
        "harmonic_fit": float("nan") if drums else M.harmonic_fit(song, part, context),
        "grid_share": M.grid_share(part, tpb),
        "onset_sync": M.onset_sync(part, context, tpb),
        "groove_similarity": M.groove_similarity(song, part, real),
        "density_ratio": M.density_ratio(part, real),
        "profile_similarity": M.profile_similarity(part, real, drums),
        "kit_similarity": M.kit_similarity(part, real) if drums else float("nan"),
        "range_validity": M.range_validity(part, stem),
        "notes": float(len(part)),
    }
    if requested and len(part):
        got = measure(song, part, stem).bins
        for attr in CONTROLLED:
            if attr in requested:
                values[f"control_{attr}"] = float(got.get(attr) == requested[attr])
    return values


def evaluate(
    engines: list[str],
    stems: list[str],
    cache_dir: str | Path,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
    engine_options: dict[str, dict[str, Any]] | None = None,
    max_bars: int | None = None,
    timing: str = "song",
) -> dict[str, Any]:
    """Run the evaluation; returns per-part scores and aggregates (see `report.write_report`).

    ``engine_options`` gives an engine its keyword arguments (a checkpoint, sampling settings);
    ``max_bars`` cuts every song to its first bars (so slow engines can be compared on a CPU);
    ``timing`` is the written parts' timing ("song": the other parts' micro-timing, "grid").
    """
    from tqdm import tqdm

    cache = Path(cache_dir)
    # a song with no other part (a drums-only groove) has nothing to insert a stem into
    rows = [r for r in load_triplets(cache, split=split) if r["stem"] in stems and r["context_tracks"] > 0]
    rows.sort(key=lambda r: r["id"])
    if limit is not None:
        rows = [r for stem in stems for r in [x for x in rows if x["stem"] == stem][:limit]]
    if not rows:
        raise InputError(f"{cache}: no {split} triplets for stems {', '.join(stems)}")
    donors = {stem: [str(cache / r["full"]) for r in rows if r["stem"] == stem] for stem in stems}
    options = engine_options or {}
    # model engines load their weights once, not once per part
    loaded = {name: get_engine(name, **options.get(name, {})) for name in engines if name != "borrow"}
    scores: list[PartScore] = []
    examples: list[dict[str, Any]] = []
    failures: list[str] = []
    for k, row in enumerate(tqdm(rows, desc="eval", unit="part", disable=not progress)):
        stem = row["stem"]
        try:
            full = load(cache / row["full"])
            partial = load(cache / row["partial"])
            if max_bars is not None:
                full, partial = full.first_bars(max_bars), partial.first_bars(max_bars)
        except MidiarrError as exc:
            failures.append(f"{row['id']}: {exc}")
            continue
        roles = assign_roles(full)
        real = _notes_of(full, [i for i in tracks_with_role(roles, stem) if len(full.tracks[i].notes)])
        context = _notes_of(partial, list(range(len(partial.tracks)))) if partial.tracks else real[:0]
        requested = {k2: v for k2, v in parse_instruction(row["instruction"]).bins.items() if k2 in CONTROLLED}
        parts = {REAL: (real, 0.0, True)}
        for name in engines:
            if name == "borrow":
                engine = get_engine(name, donors=[d for d in donors[stem] if d != str(cache / row["full"])])
            else:
                engine = loaded[name]
            if stem not in engine.stems:
                continue
            start = time.perf_counter()
            controls = Controls.build(row["instruction"], timing=timing)
            try:
                result = engine.insert(partial, stem, controls, seed=seed + k, roles=assign_roles(partial))
            except MidiarrError as exc:
                failures.append(f"{row['id']} {name}: {exc}")
                continue
            wall = time.perf_counter() - start
            out = result.song
            written = _notes_of(out, result.new_tracks)
            kept = out.tracks[: len(partial.tracks)] == partial.tracks and out.tempos == partial.tempos
            parts[name] = (written, wall, kept)
        for name, (part, wall, kept) in parts.items():
            values = score_part(full, stem, part, real, context, requested)
            values["context_preserved"] = float(kept)
            values["seconds"] = wall
            feats = M.note_features(full, part)
            scores.append(
                PartScore(
                    name,
                    stem,
                    row["id"],
                    values,
                    M.part_vector(feats).tolist(),
                    {f: feats[f].tolist() for f in M.FEATURES},
                )
            )
        if len([e for e in examples if e["stem"] == stem]) < 2 and len(real) > 16:
            examples.append(
                {
                    "stem": stem,
                    "triplet": row["id"],
                    "song": full,
                    "context": context,
                    "parts": {n: p[0] for n, p in parts.items()},
                }
            )
    return {
        "scores": scores,
        "aggregate": aggregate(scores, [REAL, *engines], stems),
        "examples": examples,
        "failures": failures,
        "split": split,
        "parts": len(rows),
        "seed": seed,
    }


def _mean(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return float(np.mean(clean)) if clean else float("nan")


def aggregate(scores: list[PartScore], engines: list[str], stems: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean of every metric per stem and engine, plus set-level distances to the real parts."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for stem in stems:
        out[stem] = {}
        real = [s for s in scores if s.stem == stem and s.engine == REAL]
        for engine in engines:
            mine = [s for s in scores if s.stem == stem and s.engine == engine]
            if not mine:
                continue
            keys = sorted({k for s in mine for k in s.values})
            agg = {k: _mean([s.values.get(k, float("nan")) for s in mine]) for k in keys}
            agg["parts"] = float(len(mine))
            oas = []
            for f in M.FEATURES:
                a = np.concatenate([np.asarray(s.features[f]) for s in mine]) if mine else np.zeros(0)
                b = np.concatenate([np.asarray(s.features[f]) for s in real]) if real else np.zeros(0)
                agg[f"oa_{f}"] = M.overlapping_area(a, b, f)
                oas.append(agg[f"oa_{f}"])
            agg["oa_mean"] = _mean(oas)
            agg["frechet"] = M.frechet_distance(np.array([s.vector for s in mine]), np.array([s.vector for s in real]))
            out[stem][engine] = agg
    return out


def check_engines(names: list[str], engine_options: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Validate engine names (and load their weights) before a long run."""
    for name in names:
        get_engine(name, **(engine_options or {}).get(name, {}))
    if not names:
        raise OptionError("give at least one --engine")
    return names
