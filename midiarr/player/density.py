"""How many notes a part plays in a song like this one: a small regression from what the other parts
play to the onsets per quarter note a real part of the stem plays, over the bars where the song plays.

It sets a written part's density when the user asks for none. Without it a model engine writes at its
own unconditioned rate, which in sparse songs (a folk ballad) was two to four times the real part's.

The model is ridge regression on the log rate, one per stem, trained on the prepare cache's train split
(`midiarr.player.train.train_density`, `midiarr train-player`); its coefficients and the feature names ship as JSON in
``midiarr/weights/density``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from midiarr.errors import InputError
from midiarr.player.tables import read_table, write_table
from midiarr.roles import assign_roles
from midiarr.song import Song

HEARD_ROLES: tuple[str, ...] = ("drums", "bass", "guitar", "piano", "strings", "lead", "other")
FEATURES: tuple[str, ...] = (
    "bias",
    "log_all_rate",  # distinct onsets of the whole context per quarter note of its playing bars
    *(f"log_rate_{r}" for r in HEARD_ROLES),  # per role heard (0 when absent)
    *(f"has_{r}" for r in HEARD_ROLES),
    "log_qpm",
    "log_parts",
    "log_median_ioi",  # the context's typical gap between onsets, in quarter notes
    "sixteenth_share",  # share of the context's onsets on the 2nd and 4th 16th of a beat
    "log_notes_per_onset",  # how many notes the context stacks on an onset
)
RATE_FLOOR = 1e-2  # onsets per quarter note: a role's rate is floored here before the log
BUNDLED = "density"


def _log_rate(onsets: int, quarters: float) -> float:
    return math.log(max(onsets / max(quarters, 1e-9), RATE_FLOOR))


def playing_quarters(song: Song) -> tuple[float, np.ndarray]:
    """Quarter notes in the bars where any part plays, and those bars' flags."""
    bars = song.bar_starts()
    active = np.zeros(len(bars), dtype=bool)
    for t in song.tracks:
        active |= song.bar_activity(t.notes, len(bars))
    ends = np.append(bars[1:], max(song.end_tick, int(bars[-1]) + 1))
    return float(((ends - bars)[active]).sum()) / song.ticks_per_beat, active


def context_features(song: Song, roles: dict[int, str] | None = None) -> np.ndarray:
    """The feature vector (`FEATURES`) of a song's parts, as heard by the stem to be written."""
    roles = roles if roles is not None else assign_roles(song)
    tpb = song.ticks_per_beat
    quarters, _ = playing_quarters(song)
    by_role: dict[str, list[np.ndarray]] = {}
    for i, t in enumerate(song.tracks):
        if len(t.notes):
            by_role.setdefault(roles.get(i, "other"), []).append(t.notes["start"])
    values = dict.fromkeys(FEATURES, 0.0)
    values["bias"] = 1.0
    starts = [s for group in by_role.values() for s in group]
    every = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    onsets = np.unique(every)
    values["log_all_rate"] = _log_rate(len(onsets), quarters)
    for role in HEARD_ROLES:
        if role in by_role:
            values[f"log_rate_{role}"] = _log_rate(len(np.unique(np.concatenate(by_role[role]))), quarters)
            values[f"has_{role}"] = 1.0
    qpm = song.tempos[0].qpm if song.tempos else 120.0
    values["log_qpm"] = math.log(min(max(qpm, 20.0), 400.0) / 120.0)
    values["log_parts"] = math.log(1 + sum(len(g) for g in by_role.values()))
    if len(onsets) > 1:
        values["log_median_ioi"] = math.log(max(float(np.median(np.diff(onsets))) / tpb, 1 / 32))
        pos = (onsets % tpb) / tpb
        values["sixteenth_share"] = float((np.abs(np.abs(pos - 0.5) - 0.25) < 1 / 16).mean())
        values["log_notes_per_onset"] = math.log(len(every) / len(onsets))
    return np.array([values[f] for f in FEATURES], dtype=float)


def part_rate(song: Song, notes: np.ndarray) -> float:
    """A part's distinct onsets per quarter note over the bars where ``song`` plays."""
    quarters, _ = playing_quarters(song)
    return float(len(np.unique(notes["start"])) / max(quarters, 1e-9)) if len(notes) else 0.0


@dataclass
class DensityModel:
    """Per stem: ridge weights over `FEATURES` for the log rate, and the residual spread on train."""

    weights: dict[str, list[float]] = field(default_factory=dict)
    residual_sd: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, song: Song, stem: str, roles: dict[int, str] | None = None) -> float | None:
        """Onsets per quarter note a real part of ``stem`` would play over the song's playing bars
        (None for a stem the model has no weights for, or a song with nothing to hear)."""
        if stem not in self.weights or not any(len(t.notes) for t in song.tracks):
            return None
        w = np.asarray(self.weights[stem])
        return float(math.exp(float(context_features(song, roles) @ w)))

    def save(self, folder: str | os.PathLike[str]) -> None:
        payload = {
            "features": list(FEATURES),
            "weights": self.weights,
            "residual_sd": self.residual_sd,
            "info": self.info,
        }
        write_table(folder, BUNDLED, payload)

    @classmethod
    def load(cls, folder: str | os.PathLike[str] | None = None) -> DensityModel:
        path, payload = read_table(folder, BUNDLED)
        if payload.get("features") != list(FEATURES):
            raise InputError(f"density model {path}: its features differ from this midiarr's")
        return cls(payload["weights"], payload.get("residual_sd", {}), payload.get("info", {}))


@functools.cache
def bundled_model() -> DensityModel:
    """The shipped density model, read once."""
    return DensityModel.load()


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float, median_intercept: bool = False) -> np.ndarray:
    """Ridge weights (the bias, column 0, is not shrunk). ``median_intercept``: the bias then moves so that
    the median residual is zero. Least squares centres the residuals' mean; the log rates' residuals are
    skewed (a part a few times busier than its song suggests is common, a few times sparser rare), so
    without it the median real part plays more than predicted."""
    penalty = alpha * np.eye(x.shape[1])
    penalty[0, 0] = 0.0
    w = np.linalg.solve(x.T @ x + penalty, x.T @ y)
    if median_intercept:
        w[0] += float(np.median(y - x @ w))
    return w


def in_band(ratios: Iterable[float], low: float = 0.7, high: float = 1.4) -> float:
    values = np.array([r for r in ratios if np.isfinite(r)])
    return float(((values >= low) & (values <= high)).mean()) if len(values) else float("nan")
