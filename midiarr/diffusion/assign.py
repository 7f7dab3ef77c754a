"""Separation's last step: which stem each note of a flattened song goes to.

The sampler writes every asked stem over the mix and leaves, per stem, an onset and a sustain
logit at each cell. Taking the stem whose onset logit is highest at the note's cell is the plain
rule. The assignment head does better by also reading what the note's surroundings say, as a
musician splitting a piano reduction would: is the note the lowest or highest one sounding, how
many start with it, how long and loud it is against the rest of the song, how its pitch,
loudness and length sit against the notes the plain rule gave each stem (a track keeps its
register and touch through a song), and which stem the plain rule chose for its neighbours in
time and pitch (a voice and a chord stay on one instrument). It is a small MLP scoring each
(note, stem) pair; a softmax over the asked stems picks one.

The head is trained on the train split by ``midiarr train-assign`` and ships next to the
diffusion weights (``assign.safetensors``, ``assign.json``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from midiarr.checkpoint import load_pretrained, save_pretrained
from midiarr.errors import InputError
from midiarr.pianoroll import PITCHED

HEAD = "assign"  # assign.safetensors + assign.json beside the diffusion weights
# the same head fitted on the context features alone, never hearing the diffusion model: shipped so
# that eval-diffusion can show what the model adds over a learned note classifier
CONTEXT_ONLY_HEAD = "assign_context_only"
FEATURE_VERSION = 1
CONTEXT_FEATURES = 17
# per stem: 4 from the logits, 7 from the stem's notes under the plain rule, 3 neighbourhoods
STEM_FEATURES = 14
# (steps either side, semitones either side) of the neighbourhoods whose plain-rule stems a note hears:
# notes starting with it, the notes around it within a beat, and within a bar
NEIGHBOURHOODS = ((0, 24), (4, 7), (16, 12))


@dataclass
class NoteTable:
    """The notes to assign on the step grid, in the caller's order."""

    pitch: np.ndarray
    start: np.ndarray
    length: np.ndarray
    velocity: np.ndarray
    bar_position: np.ndarray  # 16th step of each note's onset within its bar

    def __len__(self) -> int:
        return len(self.pitch)


@dataclass
class StemLogits:
    """Per note and stem (columns in ``PITCHED`` order; a stem not asked is NaN): the onset logit at
    the note's first cell, the sustain logit there and the sustain logit's mean over the note."""

    onset: np.ndarray
    sustain_start: np.ndarray
    sustain_mean: np.ndarray
    asked: np.ndarray  # (len(PITCHED),) bool

    def plain_choice(self) -> np.ndarray:
        """The plain rule: per note the asked stem (index into ``PITCHED``) with the highest onset logit."""
        return np.argmax(np.where(self.asked[None], np.nan_to_num(self.onset, nan=-1e9), -np.inf), axis=1)


def to_stem_index(choice: np.ndarray, stems: list[str]) -> np.ndarray:
    """Stem choices given as indices into ``PITCHED``, as indices into ``stems`` (-1: not in it)."""
    return np.array([stems.index(s) if s in stems else -1 for s in PITCHED], dtype=np.int64)[choice]


def read_logits(
    onset: dict[str, np.ndarray], sustain: dict[str, np.ndarray], rows: np.ndarray, notes: NoteTable
) -> StemLogits:
    """Look up each note's cells in the sampler's (rows, steps) logit planes, keyed by stem."""
    n = len(notes)
    out = {k: np.full((n, len(PITCHED)), np.nan, dtype=np.float32) for k in ("on", "s0", "sm")}
    asked = np.array([s in onset for s in PITCHED])
    if n == 0:
        return StemLogits(out["on"], out["s0"], out["sm"], asked)
    steps = next(iter(onset.values())).shape[1]
    start = np.clip(notes.start, 0, steps - 1)
    end = np.clip(notes.start + notes.length, start + 1, steps)
    for j, stem in enumerate(PITCHED):
        if stem not in onset:
            continue
        out["on"][:, j] = onset[stem][rows, start]
        plane = sustain[stem]
        out["s0"][:, j] = plane[rows, start]
        # mean over [start, end) of the note's row, by a running sum along time
        run = np.concatenate([np.zeros((plane.shape[0], 1), np.float64), np.cumsum(plane, axis=1, dtype=np.float64)], 1)
        out["sm"][:, j] = (run[rows, end] - run[rows, start]) / (end - start)
    return StemLogits(out["on"], out["s0"], out["sm"], asked)


_NOTE_CHUNK = 32768
_STEP_BLOCK = 4096


def _sounding_ranks(running: np.ndarray, start: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Per note: how many pitches sound at its onset, how many below and above it, and the gaps (in
    octaves, capped at 2) to the nearest sounding pitch below and above."""
    n = len(start)
    rows = np.arange(n)
    sounding = running[start] > 0  # (n, 128)
    sounding[rows, pitch] = True
    below = np.cumsum(sounding, axis=1, dtype=np.int32)
    count = below[:, -1]
    rank_low = below[rows, pitch] - 1
    rank_high = count - below[rows, pitch]
    index = np.where(sounding, np.arange(128, dtype=np.int32)[None], -1)
    index[rows, pitch] = -1
    next_low = np.maximum.accumulate(index, axis=1)[rows, pitch]
    index = np.where(sounding, np.arange(128, dtype=np.int32)[None], 999)
    index[rows, pitch] = 999
    next_high = np.minimum.accumulate(index[:, ::-1], axis=1)[:, ::-1][rows, pitch]
    gap_low = np.where(next_low >= 0, np.minimum((pitch - next_low) / 12, 2.0), 2.0)
    gap_high = np.where(next_high < 999, np.minimum((next_high - pitch) / 12, 2.0), 2.0)
    return np.stack([count, rank_low, rank_high, gap_low, gap_high], axis=1)


def context_features(notes: NoteTable) -> np.ndarray:
    """(notes, CONTEXT_FEATURES): where each note sits among the song's notes, stem aside."""
    n = len(notes)
    if n == 0:
        return np.zeros((0, CONTEXT_FEATURES), dtype=np.float32)
    pitch = np.clip(notes.pitch.astype(np.int64), 0, 127)
    start, length = notes.start.astype(np.int64), np.maximum(notes.length.astype(np.int64), 1)
    start = start - start.min()
    steps = int((start + length).max()) + 1
    # which pitches sound at each step: +1 at a note's start, -1 at its end, summed along time
    change = np.zeros((steps + 1, 128), dtype=np.int32)
    np.add.at(change, (start, pitch), 1)
    np.add.at(change, (start + length, pitch), -1)
    running = np.cumsum(change, axis=0, dtype=np.int32)
    del change
    ranks = np.zeros((n, 5), dtype=np.float64)
    for a in range(0, n, _NOTE_CHUNK):  # (notes, 128) tables per chunk: memory stays flat on long songs
        ranks[a : a + _NOTE_CHUNK] = _sounding_ranks(running, start[a : a + _NOTE_CHUNK], pitch[a : a + _NOTE_CHUNK])
    count, rank_low, rank_high, gap_low, gap_high = ranks.T
    together = np.bincount(start, minlength=steps)[start]
    q10, q50, q90 = np.percentile(pitch, [10, 50, 90])
    velocity = notes.velocity.astype(np.float64)
    columns = [
        (pitch - 60) / 12,
        (pitch - q50) / 12,
        (pitch - q10) / 12,
        (pitch - q90) / 12,
        count / 4,
        together / 4,
        np.minimum(rank_low, 4) / 4,
        np.minimum(rank_high, 4) / 4,
        rank_low == 0,
        rank_high == 0,
        gap_low,
        gap_high,
        np.log(length) / 2,
        velocity / 127,
        (velocity - np.median(velocity)) / 32,
        notes.bar_position % 4 == 0,
        notes.bar_position == 0,
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def _neighbour_share(
    start: np.ndarray, pitch: np.ndarray, share: np.ndarray, steps: int, semitones: int, alone: np.ndarray
) -> np.ndarray:
    """Per note, the mean ``share`` row of the other notes within ``steps`` and ``semitones`` of it
    (``alone`` where there are none). Box sums over a (time, pitch) grid, one block of time at a time
    so that a long song never needs the whole grid at once."""
    n, k = share.shape
    out = np.empty((n, k), dtype=np.float64)
    order = np.argsort(start, kind="stable")
    ordered = start[order]
    for t0 in range(0, int(ordered[-1]) + 1 if n else 0, _STEP_BLOCK):
        lo, hi = np.searchsorted(ordered, [t0 - steps, t0 + _STEP_BLOCK + steps])
        near = order[lo:hi]  # every note that can be a neighbour of one starting in the block
        mine = (start[near] >= t0) & (start[near] < t0 + _STEP_BLOCK)
        block = _box_share(start[near] - (t0 - steps), pitch[near], share[near], steps, semitones, alone)
        out[near[mine]] = block[mine]
    return out


def _box_share(
    start: np.ndarray, pitch: np.ndarray, share: np.ndarray, steps: int, semitones: int, alone: np.ndarray
) -> np.ndarray:
    n, k = share.shape
    span = int(start.max()) + 1
    grid = np.zeros((span + 2 * steps + 1, 128 + 2 * semitones + 1, k + 1), dtype=np.float64)
    np.add.at(grid, (start + steps + 1, pitch + semitones + 1), np.concatenate([share, np.ones((n, 1))], axis=1))
    total = grid.cumsum(axis=0).cumsum(axis=1)
    t0, t1, p0, p1 = start, start + 2 * steps + 1, pitch, pitch + 2 * semitones + 1
    box = total[t1, p1] - total[t0, p1] - total[t1, p0] + total[t0, p0]
    box[:, :k] -= share
    box[:, k] -= 1
    others = box[:, k : k + 1]
    return np.where(others > 0.5, box[:, :k] / np.maximum(others, 1), alone[None])


def stem_features(notes: NoteTable, logits: StemLogits) -> np.ndarray:
    """(notes, len(PITCHED), STEM_FEATURES): what the sampler and the plain rule say about each
    (note, stem) pair. A stem not asked gets zeros (the head masks it out anyway)."""
    n, k = len(notes), len(PITCHED)
    if n == 0:
        return np.zeros((0, k, STEM_FEATURES), dtype=np.float32)
    masked = np.where(logits.asked[None], np.nan_to_num(logits.onset, nan=-1e9), -1e9)
    share = np.exp(masked - masked.max(axis=1, keepdims=True))
    share /= share.sum(axis=1, keepdims=True)
    plain = logits.plain_choice()
    pitch = notes.pitch.astype(np.float64)
    velocity = notes.velocity.astype(np.float64)
    log_length = np.log(np.maximum(notes.length, 1))
    out = np.zeros((n, k, STEM_FEATURES), dtype=np.float32)
    for j in range(k):
        if not logits.asked[j]:
            continue
        mine = plain == j
        mean_pitch = pitch[mine].mean() if mine.any() else pitch.mean()
        mean_velocity = velocity[mine].mean() if mine.any() else velocity.mean()
        mean_length = log_length[mine].mean() if mine.any() else log_length.mean()
        spread = pitch[mine].std() if mine.sum() > 1 else 12.0
        out[:, j, :11] = np.stack(
            [
                np.nan_to_num(logits.onset[:, j]) / 10,
                np.nan_to_num(logits.sustain_mean[:, j]) / 10,
                np.nan_to_num(logits.sustain_start[:, j]) / 10,
                share[:, j],
                (pitch - mean_pitch) / 12,
                np.abs(pitch - mean_pitch) / 12,
                (velocity - mean_velocity) / 32,
                np.abs(velocity - mean_velocity) / 32,
                log_length - mean_length,
                np.full(n, mine.mean()),
                np.full(n, spread / 12),
            ],
            axis=1,
        )
    start = notes.start.astype(np.int64) - int(notes.start.min())
    pitch_index = np.clip(notes.pitch.astype(np.int64), 0, 127)
    alone = logits.asked / logits.asked.sum()  # a note with no neighbours hears every asked stem alike
    for m, (steps, semitones) in enumerate(NEIGHBOURHOODS):
        out[:, :, 11 + m] = _neighbour_share(start, pitch_index, share, steps, semitones, alone)
    return out


@dataclass
class HeadConfig:
    """The head's shape and what it reads."""

    hidden: int = 16
    context_features: int = CONTEXT_FEATURES
    stem_features: int = STEM_FEATURES
    feature_version: int = FEATURE_VERSION
    use_stem_features: bool = True  # False: a note classifier that never hears the diffusion model


class AssignHead(nn.Module):
    """Scores every (note, stem) pair; not-asked stems get -inf."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        width = config.context_features + (config.stem_features if config.use_stem_features else 0) + len(PITCHED)
        self.net = nn.Sequential(
            nn.Linear(width, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, 1),
        )

    def forward(self, context: torch.Tensor, stem: torch.Tensor, asked: torch.Tensor) -> torch.Tensor:
        n, k = context.shape[0], len(PITCHED)
        parts = [context[:, None].expand(n, k, -1)]
        if self.config.use_stem_features:
            parts.append(stem)
        parts.append(torch.eye(k)[None].expand(n, k, k))
        return self.net(torch.cat(parts, dim=-1)).squeeze(-1).masked_fill(~asked, float("-inf"))

    @torch.no_grad()
    def choose(self, notes: NoteTable, logits: StemLogits) -> np.ndarray:
        """Per note the index into ``PITCHED`` of its stem."""
        if len(notes) == 0:
            return np.zeros(0, dtype=np.int64)
        context = torch.from_numpy(context_features(notes))
        stem = torch.from_numpy(stem_features(notes, logits))
        asked = torch.from_numpy(np.tile(logits.asked, (len(notes), 1)))
        return self(context, stem, asked).argmax(dim=1).numpy()


def save_head(head: AssignHead, folder: str | Path, meta: dict[str, Any], name: str = HEAD) -> None:
    """``NAME.safetensors`` and ``NAME.json`` (shape plus training facts) into ``folder``, atomically."""
    config = {"head": asdict(head.config), **meta}
    save_pretrained(head, folder, config, weights_file=f"{name}.safetensors", config_file=f"{name}.json")


def load_head(folder: str | Path, name: str = HEAD) -> AssignHead | None:
    """The head ``name`` saved in ``folder``; None when the folder has none."""
    path = Path(folder)
    if not (path / f"{name}.safetensors").is_file():
        return None
    head, _ = load_pretrained(
        path,
        "an assignment head",
        lambda config: AssignHead(HeadConfig(**config["head"])),
        weights_file=f"{name}.safetensors",
        config_file=f"{name}.json",
    )
    if head.config.feature_version != FEATURE_VERSION:
        raise InputError(
            f"{path}: the assignment head reads feature version {head.config.feature_version}, not {FEATURE_VERSION}"
        )
    return head
