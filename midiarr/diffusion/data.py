"""Training windows for the diffusion engine, drawn from a `prepare` cache.

`build_roll_corpus` turns every song of a split into step notes per slot once (a pickle);
`GroupSampler` draws windows and decides, per window, what the model is asked to do, so that
one model learns every mode: total generation (nothing given), partial generation (any subset
of stems given, possibly none of the others, so thin contexts work), continuation (the first
steps of the written stems given: how whole songs are stitched), and separation (the mix of
the written stems given, dropped at random so classifier-free guidance has an unconditional
model to push against). Activity and density are shown per stem, or hidden ("unspecified").
"""

from __future__ import annotations

import json
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from midiarr.attributes import bin_edges
from midiarr.diffusion.model import ACTIVITY_ANY, DENSITY_ANY, DiTConfig
from midiarr.errors import InputError
from midiarr.io import load
from midiarr.pianoroll import (
    NUM_DRUM_CLASSES,
    ONSET,
    PITCH_ROWS,
    SLOTS,
    STEPS_PER_BEAT,
    SUSTAIN,
    WRITABLE,
    SongRolls,
    rasterize,
    song_to_rolls,
)
from midiarr.threads import limit_threads, share_of_cores

MIX = SLOTS.index("mix")
OTHER = SLOTS.index("other")
DRUMS = SLOTS.index("drums")
PITCHED_SLOTS = tuple(SLOTS.index(s) for s in ("bass", "guitar", "piano"))


@dataclass
class TaskMix:
    """How often each kind of training task is drawn (the rest is plain generation)."""

    separation: float = 0.25
    drop_mix: float = 0.15  # of separation tasks: the unconditional half of classifier-free guidance
    continuation: float = 0.3
    keep_known: float = 0.6  # chance a present, not-written stem is given
    absent_target: float = 0.1  # ask for a stem the window lacks, with activity off
    hide_activity: float = 0.4
    hide_density: float = 0.5
    transpose: tuple[int, int] = (-5, 6)


def _song_job(args: tuple[str, str]) -> tuple[str, SongRolls] | str:
    cache, rel = args
    try:
        song = load(Path(cache) / rel)
        return rel, song_to_rolls(song)
    except Exception as exc:  # a bad file is reported and skipped
        return f"{rel}: {exc}"


def build_roll_corpus(cache: str | Path, split: str, out: str | Path, limit: int | None = None) -> Path:
    """Step notes of every song of ``split`` in a prepare cache, pickled to ``out`` (kept if present)."""
    out = Path(out)
    if out.is_file():
        return out
    index = Path(cache) / "index.jsonl"
    if not index.is_file():
        raise InputError(f"{cache}: not a prepare cache (no index.jsonl); run `midiarr prepare` first")
    rows = [json.loads(line) for line in index.read_text(encoding="utf-8").splitlines() if line.strip()]
    jobs = [(str(cache), f"songs/{r['id']}/full.mid") for r in rows if r["split"] == split]
    jobs = [j for j in jobs if (Path(cache) / j[1]).is_file()][:limit]
    songs: list[SongRolls] = []
    workers = min(4, os.cpu_count() or 1)
    with ProcessPoolExecutor(workers, initializer=limit_threads, initargs=(share_of_cores(workers),)) as pool:
        for result in tqdm(pool.map(_song_job, jobs, chunksize=8), total=len(jobs), desc=f"rolls {split}"):
            if not isinstance(result, str) and result[1].present:
                songs.append(result[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    # a temporary name of its own: processes of one `accelerate launch` may build the same corpus at once
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(songs, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(out)
    return out


def load_roll_corpus(path: str | Path) -> list[SongRolls]:
    """The songs of a roll corpus pickle."""
    with open(path, "rb") as f:
        return pickle.load(f)


def density_bin(roll: np.ndarray, stem: str, active_steps: int) -> int:
    """0 sparse / 1 medium / 2 busy: distinct onset steps per quarter note over active bars."""
    onsets = int(roll[ONSET].any(axis=0).sum())
    if onsets == 0 or active_steps == 0:
        return DENSITY_ANY
    per_beat = onsets / (active_steps / STEPS_PER_BEAT)
    return int(np.searchsorted(bin_edges("density", stem), per_beat, side="right"))


def token_activity(roll: np.ndarray, bar_position: np.ndarray, patch: int) -> np.ndarray:
    """Per token, whether the stem plays in the bar the token lies in (0 off / 1 on)."""
    steps = roll.shape[-1]
    bar_id = np.cumsum(bar_position == 0)
    sounding = roll.reshape(-1, steps).any(axis=0)
    active_bars = np.zeros(int(bar_id.max()) + 2, dtype=bool)
    np.logical_or.at(active_bars, bar_id, sounding)
    per_step = active_bars[bar_id]
    return per_step.reshape(-1, patch).any(axis=1).astype(np.int64)


def mix_roll(rolls: list[np.ndarray]) -> np.ndarray:
    """The flattened roll of several stems: onset where any starts a note, sustain where any holds one."""
    onset = np.any([r[ONSET] for r in rolls], axis=0)
    sustain = np.any([r[SUSTAIN] for r in rolls], axis=0) & ~onset
    return np.stack([onset, sustain])


class GroupSampler:
    """Random training windows with their task (what is given, what is written)."""

    def __init__(self, songs: list[SongRolls], config: DiTConfig, tasks: TaskMix, seed: int = 0) -> None:
        if not songs:
            raise InputError("the roll corpus holds no songs")
        self.songs, self.config, self.tasks = songs, config, tasks
        self.rng = np.random.default_rng(seed)
        writable = np.array([sum(1 for s in WRITABLE if s in song.present) for song in songs], dtype=float)
        weight = np.array([max(song.steps, 1) for song in songs], dtype=float) * np.maximum(writable, 0.5)
        self.weight = weight / weight.sum()

    def batch(self, size: int) -> dict[str, torch.Tensor]:
        """``size`` windows as model inputs plus ``x0`` and the ``loss_mask`` of cells to learn."""
        items = [self.window() for _ in range(size)]
        return {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}

    def window(self) -> dict[str, np.ndarray]:
        """One window and its task."""
        for _ in range(100):
            song = self.songs[int(self.rng.choice(len(self.songs), p=self.weight))]
            item = self._try(song)
            if item is not None:
                return item
        raise InputError("could not draw a training window with notes from the corpus")

    def _try(self, song: SongRolls) -> dict[str, np.ndarray] | None:
        cfg, tasks, rng = self.config, self.tasks, self.rng
        steps, patch = cfg.window_steps, cfg.patch
        n = cfg.tokens_per_stem
        bar_starts = np.flatnonzero(song.bar_position == 0)
        candidates = bar_starts[bar_starts < max(song.steps - steps // 4, 1)]
        begin = int(rng.choice(candidates)) if len(candidates) else 0
        shift = int(rng.integers(tasks.transpose[0], tasks.transpose[1] + 1))
        rolls = np.zeros((len(SLOTS), 2, PITCH_ROWS, steps), dtype=bool)
        for slot, name in enumerate(SLOTS[:-1]):
            notes = song.stems.get(name)
            if notes is None or not len(notes):
                continue
            if name != "drums":
                notes = notes.shifted(shift)
            rolls[slot] = rasterize(notes, begin, steps)
        bar_position = np.zeros(steps, dtype=np.int64)
        seg = song.bar_position[begin : begin + steps]
        bar_position[: len(seg)] = seg
        # past the song's end, bars continue in the last meter's rhythm: keep counting
        if len(seg) < steps:
            bar_position[len(seg) :] = (np.arange(len(seg), steps) - len(seg) + (seg[-1] + 1 if len(seg) else 0)) % 16
        tok_bar_position = bar_position[::patch]
        present_writable = [SLOTS.index(s) for s in WRITABLE if rolls[SLOTS.index(s)].any()]
        if not present_writable:
            return None
        present = np.zeros(len(SLOTS), dtype=bool)
        target = np.zeros(len(SLOTS), dtype=bool)
        pitched_here = [s for s in PITCHED_SLOTS if s in present_writable]
        separation = bool(pitched_here) and rng.random() < tasks.separation
        if separation:
            chosen = pitched_here if rng.random() < 0.7 else [s for s in pitched_here if rng.random() < 0.5]
            chosen = chosen or [int(rng.choice(pitched_here))]
            target[chosen] = True
            if rng.random() >= tasks.drop_mix:
                rolls[MIX] = mix_roll([rolls[s] for s in chosen])
                present[MIX] = True
        else:
            chosen = [s for s in present_writable if rng.random() < 0.5] or [int(rng.choice(present_writable))]
            target[chosen] = True
            absent = [SLOTS.index(s) for s in WRITABLE if SLOTS.index(s) not in present_writable]
            if absent and rng.random() < tasks.absent_target:
                target[int(rng.choice(absent))] = True
        for slot in range(len(SLOTS) - 1):
            if not target[slot] and rolls[slot].any() and rng.random() < tasks.keep_known:
                present[slot] = True
        present |= target
        known = np.zeros((len(SLOTS), n), dtype=bool)
        known[present & ~target] = True
        if rng.random() < tasks.continuation:
            prefix = int(rng.choice([n // 4, n // 2]))
            known[target, :prefix] = True
        activity = np.full((len(SLOTS), n), ACTIVITY_ANY, dtype=np.int64)
        density = np.full(len(SLOTS), DENSITY_ANY, dtype=np.int64)
        for slot in np.flatnonzero(target):
            tok_act = token_activity(rolls[slot], bar_position, patch)
            if rng.random() >= tasks.hide_activity or not rolls[slot].any():
                activity[slot] = tok_act
            if rng.random() >= tasks.hide_density:
                density[slot] = density_bin(rolls[slot], SLOTS[slot], int(tok_act.sum()) * patch)
        rolls[~present] = False
        loss_mask = np.zeros(rolls.shape, dtype=bool)
        for slot in np.flatnonzero(target):
            cell_mask = np.repeat(~known[slot], patch)[None, None, :]
            loss_mask[slot] = np.broadcast_to(cell_mask, rolls.shape[1:])
        loss_mask[DRUMS, :, NUM_DRUM_CLASSES:] = False
        loss_mask[DRUMS, SUSTAIN] = False
        return {
            "x0": np.where(rolls, 1.0, -1.0).astype(np.float32),
            "present": present,
            "known": known,
            "activity": activity,
            "density": density,
            "bar_position": tok_bar_position,
            "loss_mask": loss_mask,
        }
