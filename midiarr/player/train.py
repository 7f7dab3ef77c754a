"""Fitting the player models on a prepare cache: the density regression (`train_density`), the
touch tables (`midiarr.player.touch.fit_touch`) and how parts repeat with the song (`train_repeats`).
They read the train split only; the valid split is for choosing the ridge strength and for the numbers
in the model cards."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from midiarr.errors import InputError, MidiarrError
from midiarr.io import load
from midiarr.io.files import atomic_write_text
from midiarr.player.density import FEATURES, DensityModel, context_features, fit_ridge, in_band, part_rate
from midiarr.player.repeats import HOLD_STEMS, RepeatModel, fit_repeats, held_bars, repeated_bars
from midiarr.player.touch import (
    MAX_DONORS,
    TouchModel,
    context_velocity_spread,
    fit_cells,
    local_level,
    part_deviations,
    song_cells,
)
from midiarr.prepare import load_triplets
from midiarr.roles import assign_roles, tracks_with_role
from midiarr.song import Song, sort_notes

STEMS: tuple[str, ...] = ("bass", "drums", "guitar", "piano", "strings")
ALPHAS: tuple[float, ...] = (0.1, 1.0, 3.0, 10.0, 30.0, 100.0)


def prepared_cache(cache_dir: str | os.PathLike[str]) -> Path:
    """``cache_dir`` as a path, or a one-line `InputError` when it is not a prepare cache."""
    cache = Path(cache_dir)
    if not (cache / "triplets.jsonl").exists():
        raise InputError(f"{cache}: not a prepared cache (no triplets.jsonl); run `midiarr prepare` first")
    return cache


def part_tracks(full: Song, stem: str) -> list[int]:
    """The full song's tracks of ``stem`` that hold notes."""
    return [i for i in tracks_with_role(assign_roles(full), stem) if len(full.tracks[i].notes)]


def real_part(full: Song, stem: str) -> np.ndarray:
    """The notes of ``stem`` in the full song (every track of that role)."""
    parts = [full.tracks[i].notes for i in part_tracks(full, stem)]
    return np.concatenate(parts) if parts else full.tracks[0].notes[:0]


def density_rows(
    cache: Path, split: str, stems: tuple[str, ...], max_bars: int | None = None, limit: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per stem: the feature matrix of each triplet's context and the real part's log rate."""
    rows = [r for r in load_triplets(cache, split=split) if r["stem"] in stems and r.get("context_tracks", 1) > 0]
    rows.sort(key=lambda r: r["id"])
    out: dict[str, tuple[list[np.ndarray], list[float]]] = {s: ([], []) for s in stems}
    for row in rows:
        xs, ys = out[row["stem"]]
        if limit is not None and len(ys) >= limit:
            continue
        try:
            full, partial = load(cache / row["full"]), load(cache / row["partial"])
        except MidiarrError:
            continue
        if max_bars is not None:
            full, partial = full.first_bars(max_bars), partial.first_bars(max_bars)
        real = real_part(full, row["stem"])
        if not len(real) or not any(len(t.notes) for t in partial.tracks):
            continue
        xs.append(context_features(partial))
        ys.append(math.log(max(part_rate(partial, real), 1e-3)))
    return {s: (np.array(xs).reshape(-1, len(FEATURES)), np.array(ys)) for s, (xs, ys) in out.items() if ys}


def train_density(
    cache_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    stems: tuple[str, ...] = STEMS,
    max_bars: int | None = None,
    log: Callable[[str], None] = print,
) -> DensityModel:
    """Fit the density model on train, choose each stem's ridge strength on valid, save it to ``out``."""
    cache = prepared_cache(cache_dir)
    train = density_rows(cache, "train", stems, max_bars)
    valid = density_rows(cache, "valid", stems, max_bars)
    model = DensityModel(info={"cache": str(cache), "max_bars": max_bars, "valid": {}, "train_rows": {}})
    for stem in stems:
        if stem not in train or stem not in valid:
            continue
        x, y = train[stem]
        vx, vy = valid[stem]
        best: tuple[float, float, np.ndarray] | None = None
        for alpha in ALPHAS:
            w = fit_ridge(x, y, alpha, median_intercept=True)
            share = in_band(np.exp(vy - vx @ w))
            if best is None or share > best[0] + 1e-9:
                best = (share, alpha, w)
        assert best is not None
        share, alpha, w = best
        ratios = np.exp(vy - vx @ w)
        # the same share for a constant guess (the train median), the yardstick the regression must beat
        constant = np.exp(vy - np.median(y))
        stats: dict[str, Any] = {
            "alpha": alpha,
            "rows": len(vy),
            "real_over_predicted_median": round(float(np.median(ratios)), 3),
            "in_band": round(share, 3),
            "in_band_constant_guess": round(in_band(constant), 3),
        }
        model.info["valid"][stem] = stats
        model.info["train_rows"][stem] = len(y)
        # a stem whose regression guesses no better than a constant gets no weights: its engine keeps
        # the density it would write unasked
        stats["used"] = share > stats["in_band_constant_guess"]
        if stats["used"]:
            model.weights[stem] = [round(float(v), 6) for v in w]
            model.residual_sd[stem] = round(float(np.std(y - x @ w)), 4)
        log(f"{stem}: {len(y)} train / {len(vy)} valid rows, alpha {alpha}: {stats}")
    model.save(out)
    return model


def train_touch(
    cache_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    stems: tuple[str, ...] = STEMS,
    log: Callable[[str], None] = print,
) -> TouchModel:
    """Fit the touch tables on the train split's real parts and save them to ``out``."""
    cache = prepared_cache(cache_dir)
    rows = sorted((r for r in load_triplets(cache, split="train") if r["stem"] in stems), key=lambda r: r["id"])
    parts: dict[str, list[list[tuple[str, str, float]]]] = {s: [] for s in stems}
    donors: dict[str, list[dict[str, Any]]] = {s: [] for s in stems}
    for row in rows:
        try:
            full = load(cache / row["full"])
        except MidiarrError:
            continue
        real = sort_notes(real_part(full, row["stem"]))
        devs = part_deviations(full, real, row["stem"] == "drums")
        if devs:
            parts[row["stem"]].append(devs)
            others = [t for i, t in enumerate(full.tracks) if i not in set(part_tracks(full, row["stem"]))]
            spread = round(context_velocity_spread(full.with_tracks(others)), 2)
            levels = round(float(np.std(local_level(full, real))), 2)  # how far the player's level moved
            donors[row["stem"]].append({"context_spread": spread, "cells": song_cells(devs), "level_spread": levels})
    model = TouchModel(info={"cache": str(cache), "split": "train", "parts": {}})
    for stem in stems:
        if parts[stem]:
            model.cells[stem] = fit_cells(parts[stem])
            # evenly over the songs (sorted by id), so the donors span the corpus
            keep = np.linspace(0, len(donors[stem]) - 1, min(MAX_DONORS, len(donors[stem]))).round().astype(int)
            model.donors[stem] = [donors[stem][i] for i in sorted(set(keep.tolist()))]
            model.info["parts"][stem] = len(parts[stem])
            log(f"{stem}: {len(parts[stem])} parts, {len(model.cells[stem])} cells")
    model.save(out)
    return model


def repeat_counts(
    cache: Path, split: str, stems: tuple[str, ...], limit: int | None = None
) -> tuple[dict[str, list[tuple[int, int]]], dict[str, list[tuple[int, int]]]]:
    """Per stem, each real part's (bars played as their source bar, bars with a source bar) in ``split``, and
    for `HOLD_STEMS` its (bars played as the bar before, bars where the band holds its groove)."""
    rows = [r for r in load_triplets(cache, split=split) if r["stem"] in stems and r.get("context_tracks", 1) > 0]
    out: dict[str, list[tuple[int, int]]] = {s: [] for s in stems}
    holds: dict[str, list[tuple[int, int]]] = {s: [] for s in stems if s in HOLD_STEMS}
    for row in sorted(rows, key=lambda r: r["id"]):
        if limit is not None and len(out[row["stem"]]) >= limit:
            continue
        try:
            full, partial = load(cache / row["full"]), load(cache / row["partial"])
        except MidiarrError:
            continue
        others = [t.notes for t in partial.tracks if len(t.notes)]
        if others:
            part = real_part(full, row["stem"])
            out[row["stem"]].append(repeated_bars(full, part, np.concatenate(others), both=True))
            if row["stem"] in holds:
                holds[row["stem"]].append(held_bars(full, part, np.concatenate(others)))
    return out, holds


def train_repeats(
    cache_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    stems: tuple[str, ...] = STEMS,
    log: Callable[[str], None] = print,
) -> RepeatModel:
    """Fit how often real parts play a bar again where the song repeats it (train split), report the same
    share on valid, and save the table to ``out``."""
    cache = prepared_cache(cache_dir)
    counts, holds = repeat_counts(cache, "train", stems)
    model = fit_repeats(counts, holds=holds)
    counts, holds = repeat_counts(cache, "valid", stems)
    valid = fit_repeats(counts, holds=holds)
    model.info.update(
        {"cache": str(cache), "split": "train", "valid_rates": valid.rates, "valid_hold_rates": valid.hold_rates}
    )
    for stem in stems:
        if stem in model.rates:
            log(
                f"{stem}: {model.info['bars'][stem]} bars with a source in {model.info['parts'][stem]} parts, "
                f"played again {model.rates[stem]:.3f} (valid {valid.rates.get(stem, float('nan')):.3f})"
            )
        if stem in model.hold_rates:
            log(
                f"{stem}: holds the bar before where the band keeps its groove {model.hold_rates[stem]:.3f} "
                f"(valid {valid.hold_rates.get(stem, float('nan')):.3f})"
            )
    model.save(out)
    return model


def train_player(
    cache_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    max_bars: int | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Fit the player models into ``out``/density, ``out``/touch and ``out``/repeats, each with its
    training log."""
    folder = Path(out)
    written: list[Path] = []
    for name, fit in (
        ("density", lambda o, say: train_density(cache_dir, o, max_bars=max_bars, log=say)),
        ("touch", lambda o, say: train_touch(cache_dir, o, log=say)),
        ("repeats", lambda o, say: train_repeats(cache_dir, o, log=say)),
    ):
        lines: list[str] = []

        def say(message: str, lines: list[str] = lines) -> None:
            lines.append(message)
            log(message)

        target = folder / name
        fit(target, say)
        atomic_write_text(target / "train_log.txt", "\n".join(lines) + "\n")
        written.append(target)
    return written
