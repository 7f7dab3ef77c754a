"""`midiarr eval`: remove each stem from held-out songs, have engines write it back, measure.

For every triplet of the chosen split and stems, each engine gets the song
without the stem and the triplet's instruction; its part is measured against the
song and against the real part, next to the same measures of the real part (the
ceiling). Set-level distances compare all written parts with all real parts.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from midiarr.attributes import BINS, measure, parse_instruction
from midiarr.engines import Controls, get_engine
from midiarr.errors import InputError, MidiarrError, OptionError
from midiarr.evaluation import metrics as M
from midiarr.evaluation.report import split_words
from midiarr.io import load
from midiarr.player.sections import context_tracks, section_changes
from midiarr.prepare import load_triplets
from midiarr.roles import assign_roles, tracks_with_role
from midiarr.song import Song, sort_notes

REAL = "real"
CONTROLLED = ("density", "dynamics", "rhythm")
INSTRUCTIONS = ("triplet", "none")  # what eval asks each part for (see `evaluate`)


@dataclass
class PartScore:
    """Every per-part metric for one engine on one triplet."""

    engine: str
    stem: str
    triplet: str
    values: dict[str, float] = field(default_factory=dict)
    vector: list[float] = field(default_factory=list)
    features: dict[str, list[float]] = field(default_factory=dict)
    song: str = ""
    # distributions compared as wholes (total variation) by `player_distances`: "interval", "kit"
    profiles: dict[str, list[float]] = field(default_factory=dict)


def _notes_of(song: Song, indices: list[int]) -> np.ndarray:
    arrays = [song.tracks[i].notes for i in indices]
    return sort_notes(np.concatenate(arrays)) if arrays else np.zeros(0, dtype=song.tracks[0].notes.dtype)


def _select_rows(cache: Path, split: str, stems: list[str], limit: int | None) -> list[dict[str, Any]]:
    """The split's triplets of ``stems`` in id order, the first ``limit`` of each stem (split "all": every song's)."""
    # a song with no other part (a drums-only groove) has nothing to insert a stem into
    rows = [r for r in load_triplets(cache, split=split) if r["stem"] in stems and r["context_tracks"] > 0]
    rows.sort(key=lambda r: r["id"])
    if limit is not None:
        rows = [r for stem in stems for r in [x for x in rows if x["stem"] == stem][:limit]]
    if not rows:
        raise InputError(f"{cache}: no triplets for stems {', '.join(stems)} in {split_words(split)}")
    return rows


def _load_row(cache: Path, row: dict[str, Any], max_bars: int | None) -> tuple[Song, Song, np.ndarray, np.ndarray]:
    """(full song, song without the stem, the real part's notes, the other parts' notes) of a triplet."""
    full = load(cache / row["full"])
    partial = load(cache / row["partial"])
    if max_bars is not None:
        full, partial = full.first_bars(max_bars), partial.first_bars(max_bars)
    roles = assign_roles(full)
    real = _notes_of(full, [i for i in tracks_with_role(roles, row["stem"]) if len(full.tracks[i].notes)])
    context = _notes_of(partial, list(range(len(partial.tracks)))) if partial.tracks else real[:0]
    return full, partial, real, context


def score_part(
    song: Song,
    stem: str,
    part: np.ndarray,
    real: np.ndarray,
    context: np.ndarray,
    requested: dict[str, str],
    changes: np.ndarray | None = None,
) -> dict[str, float]:
    """The per-part metrics of ``part`` (written for ``song``) against ``real`` and ``context``; ``changes``
    (per bar, the band's changes: `midiarr.player.sections.section_changes`) for how drums mark them."""
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
        "rep_rate": M.rhythm_repetition(song, part),
        "song_repeat": M.song_repetition(song, part, context),
        "length_sd": M.length_spread(part, tpb),
        "velocity_sd": M.velocity_spread(part),
        "pitch_sd": float("nan") if drums else M.pitch_spread(part),
    }
    if drums:
        values.update({f"share_{k}": v for k, v in M.kit_shares(part).items()})
        if changes is not None:
            values["section_fill"], values["section_crash"] = M.section_marks(song, part, changes)
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
    instructions: str = "triplet",
    repeats: bool = True,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Run the evaluation; returns per-part scores and aggregates (see `report.write_report`).

    ``engine_options`` gives an engine its keyword arguments (a checkpoint, sampling settings);
    ``max_bars`` cuts every song to its first bars (so slow engines can be compared on a CPU);
    ``timing`` is the written parts' timing ("song": the other parts' micro-timing, "grid");
    ``instructions`` what each part is asked for: "triplet" (the triplet's instruction, written from what
    the real part does: its density, dynamics, register ...) or "none" (nothing, as a user who only
    names the stem: the engine must find what suits the song); ``repeats`` off keeps the engines' bars
    where the song repeats (`Controls.repeats`). ``workers`` processes (``backend`` "local") or Ray tasks
    (``backend`` "ray", on the cluster at ``address`` or a local instance) score the parts; each part's seed
    is its position in the list, so the report is the same for any number of workers and either backend.
    """
    from tqdm import tqdm

    from midiarr.backends import check_backend, ordered_map

    if instructions not in INSTRUCTIONS:
        raise OptionError(f"instructions {instructions!r}: choose one of {', '.join(INSTRUCTIONS)}")
    check_backend(backend, address)
    cache = Path(cache_dir)
    rows = _select_rows(cache, split, stems, limit)
    donors = {stem: [str(cache / r["full"]) for r in rows if r["stem"] == stem] for stem in stems}
    options = engine_options or {}
    if backend == "local" and workers <= 1:  # in this process: load the model engines before the first part
        for name in engines:
            if name != "borrow":
                _engine(name, options.get(name, {}))
    shared = (engines, options)
    settings = (max_bars, timing, instructions, repeats, seed)
    jobs = [_PartJob(k, row, str(cache), *shared, donors[row["stem"]], *settings) for k, row in enumerate(rows)]
    scores: list[PartScore] = []
    examples: list[dict[str, Any]] = []
    failures: list[str] = []
    results = ordered_map(_score_part_job, jobs, workers, backend, address)
    for done in tqdm(results, total=len(jobs), desc="eval", unit="part", disable=not progress):
        scores += done.scores
        failures += done.failures
        if done.example is not None and len([e for e in examples if e["stem"] == done.example["stem"]]) < 2:
            examples.append(done.example)
    player_distances(scores, stems)
    names = [REAL, *engines]
    return {
        "scores": scores,
        "aggregate": aggregate(scores, names, stems),
        "spreads": spreads(scores, names, stems, seed=seed),
        "bootstrap": bootstrap(scores, engines, stems, seed=seed),
        "examples": examples,
        "failures": failures,
        "split": split,
        "instructions": instructions,
        "parts": len(rows),
        "seed": seed,
    }


@dataclass
class _PartJob:
    """One part of an evaluation, as a worker gets it."""

    k: int
    row: dict[str, Any]
    cache: str
    engines: list[str]
    options: dict[str, dict[str, Any]]
    donors: list[str]
    max_bars: int | None
    timing: str
    instructions: str
    repeats: bool
    seed: int


@dataclass
class _PartDone:
    scores: list[PartScore]
    failures: list[str]
    example: dict[str, Any] | None


_ENGINES: dict[tuple[str, str], Any] = {}  # each worker process loads a model engine once


def _engine(name: str, options: dict[str, Any]) -> Any:
    key = (name, repr(sorted(options.items())))
    if key not in _ENGINES:
        _ENGINES[key] = get_engine(name, **options)
    return _ENGINES[key]


def _score_part_job(job: _PartJob) -> _PartDone:
    """Write one part with every engine and score each against the real part (in a worker)."""
    cache, row, stem = Path(job.cache), job.row, job.row["stem"]
    done = _PartDone([], [], None)
    try:
        full, partial, real, context = _load_row(cache, row, job.max_bars)
    except MidiarrError as exc:
        done.failures.append(f"{row['id']}: {exc}")
        return done
    instruction = row["instruction"] if job.instructions == "triplet" else None
    requested = {k2: v for k2, v in parse_instruction(instruction or "").bins.items() if k2 in CONTROLLED}
    parts = {REAL: (real, 0.0, True)}
    for name in job.engines:
        if name == "borrow":
            engine = get_engine(name, donors=[d for d in job.donors if d != str(cache / row["full"])])
        else:
            engine = _engine(name, job.options.get(name, {}))
        if stem not in engine.stems:
            continue
        start = time.perf_counter()
        controls = Controls.build(instruction, timing=job.timing, repeats=job.repeats)
        try:
            result = engine.insert(partial, stem, controls, seed=job.seed + job.k, roles=assign_roles(partial))
        except MidiarrError as exc:
            done.failures.append(f"{row['id']} {name}: {exc}")
            continue
        wall = time.perf_counter() - start
        out = result.song
        written = _notes_of(out, result.new_tracks)
        kept = out.tracks[: len(partial.tracks)] == partial.tracks and out.tempos == partial.tempos
        parts[name] = (written, wall, kept)
    changes = section_changes(partial, context_tracks(partial), full.bar_starts()) if stem == "drums" else None
    for name, (part, wall, kept) in parts.items():
        values = score_part(full, stem, part, real, context, requested, changes)
        values["context_preserved"] = float(kept)
        values["seconds"] = wall
        feats = M.note_features(full, part)
        profiles = {"kit": M.kit_share_vector(part).tolist()} if stem == "drums" else {}
        if stem != "drums":  # the lowest line of a drum kit is its kick: no melody to profile
            profiles["interval"] = M.interval_profile(part).tolist()
        done.scores.append(
            PartScore(
                name,
                stem,
                row["id"],
                values,
                M.part_vector(feats).tolist(),
                {f: feats[f].tolist() for f in M.FEATURES},
                song=row.get("song_id", row["id"].rsplit(":", 1)[0]),
                profiles=profiles,
            )
        )
    if len(real) > 16:  # a candidate for the report's examples (the first two per stem are shown)
        done.example = {
            "stem": stem,
            "triplet": row["id"],
            "song": full,
            "context": context,
            "parts": {n: p[0] for n, p in parts.items()},
        }
    return done


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


# ------------------------------------------------- players: written vs real vs another song's real part
# Scalar attributes compared as |written - real|, and distributions compared by total variation.
PLAYER_SCALARS: tuple[str, ...] = (
    "rep_rate",
    "song_repeat",
    "length_sd",
    "velocity_sd",
    "pitch_sd",
    *(f"share_{k}" for k in (*M.KIT_SHARES, "other")),
    "section_fill",
    "section_crash",
)
PLAYER_PROFILES: tuple[str, ...] = ("interval", "kit")


def _player_distance(a: PartScore, b: PartScore) -> dict[str, float]:
    out = {k: abs(a.values[k] - b.values[k]) for k in PLAYER_SCALARS if k in a.values and k in b.values}
    for k in PLAYER_PROFILES:
        if k in a.profiles and k in b.profiles:
            out[k] = M.total_variation(np.asarray(a.profiles[k]), np.asarray(b.profiles[k]))
    return out


def player_distances(scores: list[PartScore], stems: list[str]) -> None:
    """Add ``dist_X`` to every engine's part (|written - real| on this song's real part, total variation
    for the interval profile and kit shares) and ``spread_X`` to every real part: the same distance to the
    real part of a different song, the next song of the stem in triplet-id order (the last pairs with the
    first), so the pairing is deterministic and every real part is used twice. ``spread_X`` is the yardstick:
    a written part is "within the spread between real parts of different songs" when its ``dist_X`` is no
    larger. NaN where a part is missing or too small to measure."""
    for stem in stems:
        real = sorted((s for s in scores if s.stem == stem and s.engine == REAL), key=lambda s: s.triplet)
        by_triplet = {s.triplet: s for s in real}
        for i, s in enumerate(real):
            other = real[(i + 1) % len(real)] if len(real) > 1 else None
            dist = _player_distance(s, other) if other else _player_distance(s, s)
            s.values.update({f"spread_{k}": v if other else float("nan") for k, v in dist.items()})
        for s in scores:
            if s.stem == stem and s.engine != REAL and s.triplet in by_triplet:
                s.values.update({f"dist_{k}": v for k, v in _player_distance(s, by_triplet[s.triplet]).items()})


# ------------------------------------------------- spreads and paired bootstrap intervals
# Where a metric has a target band, the share of songs inside it (issue 26: density ratio 0.7-1.4).
BANDS: dict[str, tuple[float, float]] = {"density_ratio": (0.7, 1.4)}


def describe(values: list[float], band: tuple[float, float] | None = None) -> dict[str, float]:
    """n, mean, median, quartiles and IQR of the non-NaN values (and the share inside ``band``, ends included)."""
    v = np.array([x for x in values if not math.isnan(x)], dtype=float)
    out: dict[str, float] = {"n": float(len(v))}
    if len(v):
        q25, med, q75 = np.percentile(v, [25, 50, 75])
        out.update(mean=float(v.mean()), median=float(med), q25=float(q25), q75=float(q75), iqr=float(q75 - q25))
    else:
        out.update({k: float("nan") for k in ("mean", "median", "q25", "q75", "iqr")})
    if band is not None:
        out["in_band"] = float(np.mean((v >= band[0]) & (v <= band[1]))) if len(v) else float("nan")
        out["band_lo"], out["band_hi"] = band
    return out


def spreads(
    scores: list[PartScore], engines: list[str], stems: list[str], seed: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per stem, engine and metric: `describe` over the songs (a mean alone is ruled by one odd song). Each
    engine's player distance ``dist_X`` also gets ``vs_spread``: `metrics.paired_bootstrap` of its per-song
    distance against the real part's ``spread_X`` on the same song, so "within the spread between real
    parts" can be told from noise (its ``median_diff`` interval holding 0 says the split cannot tell). Two
    neighbouring songs' spreads share a real part, so the pairs are not independent and the interval is
    somewhat narrower than it would be over independent pairs; the yes/no of the report compares the medians
    over every song, the interval only the songs measured on both sides."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for stem in stems:
        out[stem] = {}
        real = {s.triplet: s.values for s in scores if s.stem == stem and s.engine == REAL}
        for engine in engines:
            mine = [s for s in scores if s.stem == stem and s.engine == engine]
            if mine:
                keys = sorted({k for s in mine for k in s.values})
                out[stem][engine] = {
                    k: describe([s.values.get(k, float("nan")) for s in mine], BANDS.get(k)) for k in keys
                }
                for k in keys:
                    if engine != REAL and k.startswith("dist_"):
                        nan = float("nan")
                        spread = [real.get(s.triplet, {}).get("spread_" + k[5:], nan) for s in mine]
                        dist = [s.values.get(k, nan) for s in mine]
                        out[stem][engine][k]["vs_spread"] = M.paired_bootstrap(dist, spread, seed=seed)
    return out


def bootstrap(
    scores: list[PartScore], engines: list[str], stems: list[str], resamples: int = 2000, seed: int = 0
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Per stem, for every pair of engines "A - B" and every metric, `metrics.paired_bootstrap` of A's
    per-song values minus B's, paired by triplet (the same song's part)."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for stem in stems:
        out[stem] = {}
        by_engine = {e: {s.triplet: s.values for s in scores if s.stem == stem and s.engine == e} for e in engines}
        for a, b in itertools.combinations([e for e in engines if by_engine[e]], 2):
            shared = sorted(set(by_engine[a]) & set(by_engine[b]))
            keys = sorted({k for t in shared for k in (*by_engine[a][t], *by_engine[b][t])})
            nan = float("nan")
            out[stem][f"{a} - {b}"] = {
                k: M.paired_bootstrap(
                    [by_engine[a][t].get(k, nan) for t in shared],
                    [by_engine[b][t].get(k, nan) for t in shared],
                    resamples=resamples,
                    seed=seed,
                )
                for k in keys
            }
    return out


# ------------------------------------------------- control measurement (`eval --control`)
def _mean_velocity(notes: np.ndarray) -> float:
    return float(notes["velocity"].mean()) if len(notes) else float("nan")


# What `--control ATTR=...` measures on each written part: (name of the measure, function of the notes), the
# attribute's own measure first (density is onsets, as the density bins count them: a chord is one onset),
# then any others reported beside it (the notes, chord tones included).
CONTROL_MEASURES: dict[str, tuple[tuple[str, Any], ...]] = {
    "density": (
        ("onsets", lambda notes: float(len(np.unique(notes["start"])))),
        ("notes", lambda notes: float(len(notes))),
    ),
    "dynamics": (("mean velocity", _mean_velocity),),
}


def _rises(seq: list[float]) -> dict[str, Any]:
    """Whether the measures at the levels rise strictly in order, and the last over the first."""
    first, last = seq[0], seq[-1]
    return {
        "ordered": bool(all(x < y for x, y in itertools.pairwise(seq))),
        "ratio": float(last / first) if first > 0 else float("nan"),
    }


def parse_control(text: str) -> tuple[str, list[str]]:
    """``density=sparse,medium,busy`` to ("density", ["sparse", "medium", "busy"]), checked."""
    attr, sep, raw = text.partition("=")
    levels = [v.strip() for v in raw.split(",") if v.strip()]
    if not sep or attr not in CONTROL_MEASURES:
        raise OptionError(
            f"--control {text!r}: expected ATTR=LEVEL,LEVEL,... with ATTR one of {', '.join(CONTROL_MEASURES)}"
        )
    bad = [v for v in levels if v not in BINS[attr]]
    if bad or len(levels) < 2 or len(set(levels)) < len(levels):
        raise OptionError(f"--control {text!r}: give two or more different levels of {attr}: {', '.join(BINS[attr])}")
    return attr, levels


def evaluate_control(
    engines: list[str],
    stems: list[str],
    cache_dir: str | Path,
    attribute: str,
    levels: list[str],
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
    engine_options: dict[str, dict[str, Any]] | None = None,
    max_bars: int | None = None,
    timing: str = "song",
    instructions: str = "triplet",
    repeats: bool = True,
) -> dict[str, Any]:
    """Write every part once per level of ``attribute`` (the triplet's instruction with that one bin
    overridden, or that bin alone with ``instructions="none"``; the same seed), and measure whether the
    part follows: per song, the measure of `CONTROL_MEASURES` at each level, whether it rises strictly in
    the order given, the last level's measure over the first's, and whether the measured bin is the one
    asked for."""
    from tqdm import tqdm

    if instructions not in INSTRUCTIONS:
        raise OptionError(f"instructions {instructions!r}: choose one of {', '.join(INSTRUCTIONS)}")
    (measure_name, fn), *others = CONTROL_MEASURES[attribute]
    cache = Path(cache_dir)
    rows = _select_rows(cache, split, stems, limit)
    options = engine_options or {}
    loaded = {name: get_engine(name, **options.get(name, {})) for name in engines if name != "borrow"}
    if len(loaded) < len(engines):
        raise OptionError("--control: borrow copies another song's part and follows no control")
    per_song: list[dict[str, Any]] = []
    failures: list[str] = []
    for k, row in enumerate(tqdm(rows, desc=f"control {attribute}", unit="part", disable=not progress)):
        stem = row["stem"]
        try:
            full, partial, real, _ = _load_row(cache, row, max_bars)
        except MidiarrError as exc:
            failures.append(f"{row['id']}: {exc}")
            continue
        for name, engine in loaded.items():
            if stem not in engine.stems:
                continue
            got: dict[str, float] = {}
            also: dict[str, dict[str, float]] = {other: {} for other, _ in others}
            bins: dict[str, str | None] = {}
            for level in levels:
                instruction = row["instruction"] if instructions == "triplet" else None
                controls = Controls.build(instruction, timing=timing, repeats=repeats, **{attribute: level})
                try:
                    result = engine.insert(partial, stem, controls, seed=seed + k, roles=assign_roles(partial))
                except MidiarrError as exc:
                    failures.append(f"{row['id']} {name} {attribute}={level}: {exc}")
                    break
                written = _notes_of(result.song, result.new_tracks)
                got[level] = fn(written)
                for other, other_fn in others:
                    also[other][level] = other_fn(written)
                bins[level] = measure(full, written, stem).bins.get(attribute) if len(written) else None
            if len(got) < len(levels):
                continue
            per_song.append(
                {
                    "engine": name,
                    "stem": stem,
                    "triplet": row["id"],
                    "song": row.get("song_id", row["id"].rsplit(":", 1)[0]),
                    "real": fn(real),
                    "values": got,
                    "bins": bins,
                    **_rises([got[v] for v in levels]),
                    "bin_match": float(np.mean([bins[v] == v for v in levels])),
                    "also": {
                        other: {"values": values, **_rises([values[v] for v in levels])}
                        for other, values in also.items()
                    },
                }
            )
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for stem in stems:
        for name in engines:
            mine = [r for r in per_song if r["stem"] == stem and r["engine"] == name]
            if not mine:
                continue
            summary.setdefault(stem, {})[name] = {
                "songs": len(mine),
                "ordered_share": float(np.mean([r["ordered"] for r in mine])),
                "ratio": describe([r["ratio"] for r in mine]),
                "bin_match": float(np.mean([r["bin_match"] for r in mine])),
                "median": {v: describe([r["values"][v] for r in mine])["median"] for v in levels},
                "also": {
                    other: {
                        "ordered_share": float(np.mean([r["also"][other]["ordered"] for r in mine])),
                        "ratio": describe([r["also"][other]["ratio"] for r in mine]),
                    }
                    for other, _ in others
                },
            }
    return {
        "control": {"attribute": attribute, "levels": levels, "measure": measure_name, "summary": summary},
        "per_song": per_song,
        "failures": failures,
        "split": split,
        "parts": len(rows),
        "seed": seed,
        "instructions": instructions,
    }


def check_engines(names: list[str], engine_options: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Validate engine names (and load their weights) before a long run."""
    for name in names:
        get_engine(name, **(engine_options or {}).get(name, {}))
    if not names:
        raise OptionError("give at least one --engine")
    return names
