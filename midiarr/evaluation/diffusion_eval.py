"""What only the diffusion engine does, measured: separation against the pitch-range split,
activity control, given-stem handling (trained conditional path vs RePaint replacement) and
the 1-pass / 2-pass / K-pass trade-off of writing several stems.

`midiarr eval-diffusion` runs all four on held-out songs of a prepare cache (each cut to its
first ``max_bars`` bars, so the comparison fits a CPU) and writes report.json and report.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from midiarr.diffusion.assign import CONTEXT_ONLY_HEAD, load_head, to_stem_index
from midiarr.engines.base import Controls
from midiarr.engines.diffusion import DiffusionEngine, pitch_range_roles
from midiarr.errors import InputError, MidiarrError
from midiarr.evaluation import metrics as M
from midiarr.evaluation.report import split_words
from midiarr.io import load
from midiarr.pianoroll import PITCHED
from midiarr.prepare import ALL_SPLITS, load_triplets
from midiarr.roles import assign_roles
from midiarr.song import Song, Track


def _nanmean(values: list[float]) -> float:
    """Mean of the values that are numbers; NaN when none is (no warning)."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if len(arr) else float("nan")


def _index_rows(cache: Path, split: str) -> list[dict[str, Any]]:
    path = cache / "index.jsonl"
    if not path.is_file():
        raise InputError(f"{cache}: not a prepare cache (no index.jsonl); run `midiarr prepare` first")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sorted((r for r in rows if split == ALL_SPLITS or r["split"] == split), key=lambda r: r["id"])


def _played_with(cache: Path, split: str, stem: str) -> list[dict[str, Any]]:
    """The split's triplets of ``stem`` that have other parts to play with."""
    return [r for r in load_triplets(cache, split=split, stem=stem) if r["context_tracks"] > 0]


class SeparationCase(NamedTuple):
    """A song whose pitched parts were flattened onto one track, and what separating it must give back."""

    song_id: str
    flat: Song  # the flattened pitched notes as one track, the drums as they were
    truth: np.ndarray  # each flattened note's true stem, an index into ``stems``
    stems: list[str]
    parts: int  # tracks with notes in the song before it was flattened (its band size)


# the groups separation is reported in: bars of the piece separated, and the band (tracks with notes)
LENGTH_GROUPS = ((16, "≤ 16 bars"), (32, "17–32 bars"), (64, "33–64 bars"), (10**9, "over 64 bars"))
BAND_GROUPS = ((4, "2–4 parts"), (7, "5–7 parts"), (10**9, "8 or more parts"))


def separation_cases(cache: Path, split: str, limit: int, max_bars: int) -> list[SeparationCase]:
    """Songs with at least two of bass/guitar/piano, flattened (each cut to its first ``max_bars`` bars)."""
    cases = []
    for row in _index_rows(cache, split):
        if len(cases) >= limit:
            break
        if len(set(row["roles"]) & set(PITCHED)) < 2:
            continue
        try:
            song = load(cache / "songs" / row["id"] / "full.mid").first_bars(max_bars)
        except MidiarrError:
            continue
        roles = assign_roles(song)
        parts = {s: [t.notes for i, t in enumerate(song.tracks) if roles[i] == s and len(t.notes)] for s in PITCHED}
        stems = [s for s in PITCHED if parts[s]]
        if len(stems) < 2:
            continue
        notes = np.concatenate([n for s in stems for n in parts[s]])
        truth = np.concatenate([np.full(sum(len(n) for n in parts[s]), k) for k, s in enumerate(stems)])
        order = np.lexsort((notes["pitch"], notes["start"]))
        notes, truth = notes[order], truth[order]
        flat = song.with_tracks([Track(name="flat", notes=notes), *[t for t in song.tracks if t.is_drum]])
        band = sum(1 for t in song.tracks if len(t.notes))
        cases.append(SeparationCase(row["id"], flat, truth, stems, band))
    return cases


def _group(value: int, groups: tuple[tuple[int, str], ...]) -> str:
    return next(label for top, label in groups if value <= top)


def _accuracy(pred: np.ndarray, truth: np.ndarray, stems: list[str]) -> dict[str, Any]:
    return {
        "accuracy": float(np.mean(pred == truth)),
        "recall": {s: float(np.mean(pred[truth == k] == k)) for k, s in enumerate(stems) if (truth == k).any()},
    }


def evaluate_separation(
    engine: DiffusionEngine, cases: list[SeparationCase], guidances: list[float], seed: int
) -> dict[str, Any]:
    """Note-level role accuracy (pooled over notes and averaged over songs) per method, overall and per song
    length and band size (`LENGTH_GROUPS`, `BAND_GROUPS`)."""
    methods: dict[str, list[tuple[np.ndarray, np.ndarray, list[str]]]] = {"pitch-range": []}
    timing: dict[str, float] = {}
    for _, flat, truth, stems, _ in cases:
        notes = flat.tracks[0].notes
        methods["pitch-range"].append((pitch_range_roles(notes, stems), truth, stems))
    head = engine.head if engine.assign == "head" else None
    # a learned note classifier that never hears the model, when the checkpoint ships one
    context_only = load_head(engine.checkpoint, CONTEXT_ONLY_HEAD) if head is not None else None
    if context_only is not None:
        methods["note classifier without diffusion"] = []
    for g in guidances:
        # one sampler run per song serves both choices: the plain rule on its logits, and the head
        name = f"diffusion (guidance {g:g})"
        plain = f"diffusion, logits only (guidance {g:g})"
        engine.sampler.settings.guidance = g
        methods[name], methods[plain] = [], []
        start = time.perf_counter()
        for k, (_, flat, truth, stems, _) in enumerate(cases):
            _, table, logits = engine.separation_logits(flat, stems, seed=seed + k)
            methods[plain].append((to_stem_index(logits.plain_choice(), stems), truth, stems))
            if head is not None:
                methods[name].append((to_stem_index(head.choose(table, logits), stems), truth, stems))
            if context_only is not None and g == guidances[0]:
                chosen = to_stem_index(context_only.choose(table, logits), stems)
                methods["note classifier without diffusion"].append((chosen, truth, stems))
        timing[name] = timing[plain] = (time.perf_counter() - start) / max(len(cases), 1)
        if head is None:  # without a head the engine as shipped is the plain rule
            methods[name] = methods.pop(plain)
    out = {}
    for name, runs in methods.items():
        pooled_pred = np.concatenate([p for p, _, _ in runs])
        pooled_truth = np.concatenate([t for _, t, _ in runs])
        per_song = [float(np.mean(p == t)) for p, t, _ in runs]
        recall: dict[str, list[float]] = {}
        for p, t, stems in runs:
            for s, v in _accuracy(p, t, stems)["recall"].items():
                recall.setdefault(s, []).append(v)
        out[name] = {
            "note_accuracy": float(np.mean(pooled_pred == pooled_truth)),
            "song_accuracy": float(np.mean(per_song)),
            "recall": {s: float(np.mean(v)) for s, v in recall.items()},
            "seconds_per_song": timing.get(name, 0.0),
        }
    groupings = {
        "length": (LENGTH_GROUPS, [case.flat.num_bars for case in cases]),
        "band": (BAND_GROUPS, [case.parts for case in cases]),
    }
    groups: dict[str, dict[str, Any]] = {}
    for kind, (bounds, values) in groupings.items():
        of_case = [_group(value, bounds) for value in values]
        groups[kind] = {}
        for label in (label for _, label in bounds if label in of_case):
            members = [k for k, g in enumerate(of_case) if g == label]
            entry: dict[str, Any] = {"songs": len(members), "notes": int(sum(len(cases[k].truth) for k in members))}
            for name, runs in methods.items():
                pred = np.concatenate([runs[k][0] for k in members])
                truth = np.concatenate([runs[k][1] for k in members])
                entry[name] = float(np.mean(pred == truth))
            groups[kind][label] = entry
    notes = int(sum(len(case.truth) for case in cases))
    return {"songs": len(cases), "notes": notes, "methods": out, "groups": groups}


def _masks(num_bars: int, rng: np.random.Generator) -> np.ndarray:
    """A play/rest pattern of 2-4 bar blocks, starting on or off at random."""
    mask = np.zeros(num_bars, dtype=bool)
    pos, on = 0, bool(rng.integers(2))
    while pos < num_bars:
        size = int(rng.integers(2, 5))
        mask[pos : pos + size] = on
        pos, on = pos + size, not on
    return mask


def evaluate_activity(
    engine: DiffusionEngine,
    cache: Path,
    split: str,
    stems: list[str],
    limit: int,
    max_bars: int,
    seed: int,
    learned: bool = True,
) -> dict[str, Any]:
    """Bar-level F1 of where the written stem plays against the activity asked for: with ``learned``
    the model's control alone (the engine's hard mask, onset budget and snap switched off), else the
    engine's as shipped."""
    shipped = engine.sampler.settings
    if learned:  # the model's own control: no mask, no onset budget in the bars asked to play, no snap
        engine.sampler.settings = replace(shipped, hard_activity=False, bar_floor=0.0, density_pull=False, snap_steps=0)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    try:
        for stem in stems:
            tp = fp = fn = tn = 0
            rows = _played_with(cache, split, stem)
            for k, row in enumerate(sorted(rows, key=lambda r: r["id"])[:limit]):
                partial = load(cache / row["partial"]).first_bars(max_bars)
                if not any(len(t.notes) for t in partial.tracks):
                    continue
                mask = _masks(partial.num_bars, rng)
                result = engine.insert(partial, stem, Controls(), active=mask, seed=seed + k)
                notes = result.song.tracks[result.new_tracks[0]].notes if result.new_tracks else np.zeros(0)
                plays = result.song.bar_activity(notes, len(mask)) if len(notes) else np.zeros(len(mask), bool)
                tp += int((plays & mask).sum())
                fp += int((plays & ~mask).sum())
                fn += int((~plays & mask).sum())
                tn += int((~plays & ~mask).sum())
            precision = tp / (tp + fp) if tp + fp else float("nan")
            recall = tp / (tp + fn) if tp + fn else float("nan")
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else float("nan")
            out[stem] = {"f1": f1, "precision": precision, "recall": recall, "silent_bars_kept": tn / max(tn + fp, 1)}
    finally:
        engine.sampler.settings = shipped
    return out


def _cross_stem_scores(song: Song) -> dict[str, float]:
    """How well the written stems fit each other: onset sync and harmonic fit of each against the rest."""
    sync, fit = [], []
    for i, t in enumerate(song.tracks):
        others = [o.notes for j, o in enumerate(song.tracks) if j != i and len(o.notes)]
        if not len(t.notes) or not others:
            continue
        rest = np.concatenate(others)
        sync.append(M.onset_sync(t.notes, rest, song.ticks_per_beat))
        if not t.is_drum:
            pitched_rest = np.concatenate([o.notes for j, o in enumerate(song.tracks) if j != i and not o.is_drum])
            if len(pitched_rest):
                fit.append(M.harmonic_fit(song, t.notes, pitched_rest))
    return {
        "onset_sync": _nanmean(sync),
        "harmonic_fit": _nanmean(fit),
    }


def evaluate_passes(
    checkpoint: Path | None, stems: list[str], bars: int, seeds: int, steps: int | None = None
) -> dict[str, Any]:
    """Writing ``stems`` from nothing in 1, 2 or K passes: time per song and how the stems fit together."""
    out = {}
    for passes in ("1", "2", "k"):
        engine = DiffusionEngine(checkpoint, passes=passes, steps=steps)
        scores, notes = [], []
        start = time.perf_counter()
        for seed in range(seeds):
            song = engine.generate(stems, bars, seed=seed)
            scores.append(_cross_stem_scores(song))
            notes.append(sum(len(t.notes) for t in song.tracks))
        elapsed = (time.perf_counter() - start) / seeds
        out[f"{passes}-pass" if passes != "k" else f"K-pass (K={len(stems)})"] = {
            "seconds_per_song": elapsed,
            "onset_sync": _nanmean([s["onset_sync"] for s in scores]),
            "harmonic_fit": _nanmean([s["harmonic_fit"] for s in scores]),
            "notes_per_song": float(np.mean(notes)),
        }
    return {"stems": stems, "bars": bars, "songs": seeds, "modes": out}


def evaluate_partial_modes(
    checkpoint: Path | None, cache: Path, split: str, stems: list[str], limit: int, max_bars: int, seed: int
) -> dict[str, Any]:
    """The same insertions with given stems entering clean (trained path) or replaced each step (RePaint)."""
    out: dict[str, Any] = {}
    for mode in ("conditional", "repaint"):
        engine = DiffusionEngine(checkpoint, partial=mode)
        per_stem: dict[str, dict[str, list[float]]] = {}
        for stem in stems:
            rows = _played_with(cache, split, stem)
            acc: dict[str, list[float]] = {"harmonic_fit": [], "onset_sync": [], "groove_sim": [], "density_ratio": []}
            for k, row in enumerate(sorted(rows, key=lambda r: r["id"])[:limit]):
                full = load(cache / row["full"]).first_bars(max_bars)
                partial = load(cache / row["partial"]).first_bars(max_bars)
                if not any(len(t.notes) for t in partial.tracks):
                    continue
                roles = assign_roles(full)
                real = [t.notes for i, t in enumerate(full.tracks) if roles[i] == stem and len(t.notes)]
                if not real:
                    continue
                real_notes = np.concatenate(real)
                result = engine.insert(partial, stem, Controls.build(row["instruction"]), seed=seed + k)
                part = result.song.tracks[result.new_tracks[0]].notes
                context = np.concatenate([t.notes for t in partial.tracks if len(t.notes)])
                tpb = full.ticks_per_beat
                if stem != "drums":
                    acc["harmonic_fit"].append(M.harmonic_fit(full, part, context))
                acc["onset_sync"].append(M.onset_sync(part, context, tpb))
                acc["groove_sim"].append(M.groove_similarity(full, part, real_notes))
                acc["density_ratio"].append(M.density_ratio(part, real_notes))
            per_stem[stem] = {k2: _nanmean(v) for k2, v in acc.items()}
        out[mode] = per_stem
    return out


def write_diffusion_report(result: dict[str, Any], out_dir: Path, command: str) -> list[Path]:
    """report.json and report.md (tables) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps({"command": command, **result}, indent=1), encoding="utf-8")
    lines = [f"# Diffusion engine: {split_words(result['split'])}", "", f"Command: `{command}`", ""]
    sep = result.get("separation")
    if sep:
        lines += [
            f"## Separation ({sep['songs']} songs, {sep['notes']} notes)",
            "",
            "| method | note accuracy | song accuracy | recall per stem | s/song |",
            "|---|---|---|---|---|",
        ]
        for name, m in sep["methods"].items():
            rec = ", ".join(f"{s} {v:.2f}" for s, v in m["recall"].items())
            lines.append(
                f"| {name} | {m['note_accuracy']:.3f} | {m['song_accuracy']:.3f} | {rec} | "
                f"{m['seconds_per_song']:.1f} |"
            )
        lines.append("")
        names = list(sep["methods"])
        for kind, title in (("length", "song length (bars separated)"), ("band", "band size (tracks with notes)")):
            rows = sep.get("groups", {}).get(kind)
            if not rows:
                continue
            lines += [
                f"### Note accuracy by {title}",
                "",
                "| group | songs | notes | " + " | ".join(names) + " |",
                "|---|---|---|" + "---|" * len(names),
            ]
            for label, g in rows.items():
                cells = " | ".join(f"{g[n]:.3f}" for n in names)
                lines.append(f"| {label} | {g['songs']} | {g['notes']} | {cells} |")
            lines.append("")
    titles = {
        "activity": "Activity control (the model alone: no hard mask, onset budget or snap)",
        "activity_engine": "Activity control (the engine as shipped: hard mask, onset budget, snap)",
    }
    for key, title in titles.items():
        act = result.get(key)
        if not act:
            continue
        lines += [f"## {title}", "", "| stem | bar F1 | precision | recall |", "|---|---|---|---|"]
        lines += [f"| {s} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} |" for s, m in act.items()]
        lines.append("")
    partial = result.get("partial_modes")
    if partial:
        lines += [
            "## Given stems: trained conditional path vs RePaint replacement",
            "",
            "| mode | stem | harmonic fit | onset sync | groove sim | density ratio |",
            "|---|---|---|---|---|---|",
        ]
        for mode, per_stem in partial.items():
            for s, m in per_stem.items():
                lines.append(
                    f"| {mode} | {s} | {m['harmonic_fit']:.3f} | {m['onset_sync']:.3f} | "
                    f"{m['groove_sim']:.3f} | {m['density_ratio']:.2f} |"
                )
        lines.append("")
    passes = result.get("passes")
    if passes:
        lines += [
            f"## Several stems from nothing: {', '.join(passes['stems'])}, {passes['bars']} bars, "
            f"{passes['songs']} songs",
            "",
            "| passes | s/song | onset sync | harmonic fit | notes/song |",
            "|---|---|---|---|---|",
        ]
        for mode, m in passes["modes"].items():
            lines.append(
                f"| {mode} | {m['seconds_per_song']:.1f} | {m['onset_sync']:.3f} | "
                f"{m['harmonic_fit']:.3f} | {m['notes_per_song']:.0f} |"
            )
        lines.append("")
    (out_dir / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return [out_dir / "report.json", out_dir / "report.md"]
