"""Training data for the stem transformer: `prepare` triplets encoded once, windows drawn at random.

`build_corpus` encodes every triplet of a split (context bars per role, target bars) into
one pickle; `WindowSampler` draws windows of bars from it with the Subtractive Training
augmentations: transposition of pitched parts, random dropping of context parts (so a
thin context works: guitar alone -> bass, drums alone -> guitar, nothing -> a first part)
and random blanking of instruction attributes (so any subset of controls can be given).
"""

from __future__ import annotations

import json
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from midiarr.errors import InputError
from midiarr.io import load
from midiarr.song import NOTE_DTYPE
from midiarr.threads import limit_threads, share_of_cores
from midiarr.transformer.encode import BarGrid, ContextBar, assemble, encode_context, encode_target, header_tokens
from midiarr.transformer.vocab import CHORD0, CONTEXT_ROLES, NUM_QUALITIES, PITCH0, PITCH_HIGH, PITCH_LOW, VOCAB


@dataclass
class EncodedTriplet:
    """One (context, stem) pair of a song, as bar blocks."""

    id: str
    stem: str
    bins: dict[str, str]
    context: list[ContextBar]
    target: list[list[int]]


def encode_triplet(cache: str | Path, row: dict[str, Any]) -> EncodedTriplet:
    """Encode one row of ``triplets.jsonl``."""
    context = load(Path(cache) / row["partial"])
    target = load(Path(cache) / row["target"])
    grid = BarGrid.of(context, max(context.end_tick, target.end_tick))
    notes = [t.notes for t in target.tracks if len(t.notes)]
    merged = np.concatenate(notes) if notes else np.zeros(0, dtype=NOTE_DTYPE)
    attrs = row.get("attributes", {})
    bins = dict(attrs.get("bins", {}))
    if attrs.get("genre"):
        bins["genre"] = attrs["genre"]
    return EncodedTriplet(
        id=row["id"],
        stem=row["stem"],
        bins=bins,
        context=encode_context(context, grid),
        target=encode_target(merged, grid, row["stem"] == "drums"),
    )


def _encode_job(args: tuple[str, dict[str, Any]]) -> EncodedTriplet | str:
    cache, row = args
    try:
        return encode_triplet(cache, row)
    except Exception as exc:  # a bad file is reported and skipped, never stops the corpus
        return f"{row.get('id')}: {exc}"


def read_triplets(cache: str | Path, split: str, stems: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Rows of a prepare cache's ``triplets.jsonl`` for one split."""
    path = Path(cache) / "triplets.jsonl"
    if not path.is_file():
        raise InputError(f"{cache}: not a prepare cache (no triplets.jsonl); run `midiarr prepare` first")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["split"] == split and (stems is None or r["stem"] in stems)]


def build_corpus(
    cache: str | Path, split: str, out: str | Path, workers: int | None = None, limit: int | None = None
) -> Path:
    """Encode a split's triplets into ``out`` (a pickle of `EncodedTriplet`); skipped when it exists."""
    out = Path(out)
    if out.is_file():
        return out
    rows = read_triplets(cache, split)[:limit]
    workers = workers or min(4, os.cpu_count() or 1)
    items: list[EncodedTriplet] = []
    errors: list[str] = []
    with ProcessPoolExecutor(workers, initializer=limit_threads, initargs=(share_of_cores(workers),)) as pool:
        jobs = pool.map(_encode_job, [(str(cache), r) for r in rows], chunksize=8)
        for item in tqdm(jobs, total=len(rows), desc=f"encode {split}", unit="stem"):
            (errors.append if isinstance(item, str) else items.append)(item)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a temporary name of its own: processes of one `accelerate launch` may build the same corpus at once
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(items, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, out)
    if errors:
        out.with_suffix(".errors.log").write_text("\n".join(errors) + "\n", encoding="utf-8")
    return out


def load_corpus(path: str | Path) -> list[EncodedTriplet]:
    """A corpus written by `build_corpus`."""
    with open(path, "rb") as f:
        return pickle.load(f)


def transpose_tokens(tokens: np.ndarray, semitones: int) -> np.ndarray:
    """Shift pitch tokens (an octave back where they leave the range) and chord roots."""
    out = tokens.copy()
    pitch = (out >= PITCH0) & (out <= PITCH0 + PITCH_HIGH - PITCH_LOW)
    p = out[pitch] - PITCH0 + PITCH_LOW + semitones
    p = np.where(p > PITCH_HIGH, p - 12, np.where(p < PITCH_LOW, p + 12, p))
    out[pitch] = p - PITCH_LOW + PITCH0
    chord = (out >= CHORD0) & (out < CHORD0 + 12 * NUM_QUALITIES)
    rel = out[chord] - CHORD0
    out[chord] = CHORD0 + (rel // 12) * 12 + (rel % 12 + semitones) % 12
    return out


@dataclass
class Augmentation:
    """How windows are varied during training."""

    transpose: tuple[int, int] = (-5, 6)
    drop_context_p: float = 0.5  # chance that a window drops some context parts
    drop_role_p: float = 0.5  # each part's chance to go when dropping
    no_context_p: float = 0.05  # chance of no context at all (a first part from nothing)
    blank_attribute_p: float = 0.3  # each attribute's chance to read "any"
    blank_all_p: float = 0.1  # chance that the instruction says nothing


class WindowSampler:
    """Random training windows (token ids and loss masks) of at most ``seq_len`` tokens."""

    def __init__(
        self,
        corpus: list[EncodedTriplet],
        seq_len: int,
        augmentation: Augmentation | None = None,
        seed: int = 0,
    ) -> None:
        self.corpus = [c for c in corpus if any(c.target)]
        if not self.corpus:
            raise InputError("the training corpus holds no target notes")
        self.seq_len = seq_len
        self.aug = augmentation
        self.rng = np.random.default_rng(seed)
        bars = np.array([len(c.target) for c in self.corpus], dtype=float)
        self.weights = bars / bars.sum()  # every bar equally likely, whatever its song's length

    def window(self, item: EncodedTriplet, start: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Tokens and loss mask of one window of ``item`` (random start unless given)."""
        rng, aug = self.rng, self.aug
        n = len(item.target)
        if start is None:
            active = [i for i, t in enumerate(item.target) if t]
            start = int(rng.choice(active)) if active and rng.random() < 0.8 else int(rng.integers(0, n))
            start = max(0, start - int(rng.integers(0, 3)))
        keep: set[str] | None = None
        chords = True
        bins = dict(item.bins)
        if aug is not None:
            present = {r for bar in item.context for r in bar.roles}
            if rng.random() < aug.no_context_p:
                keep, chords = set(), False
            elif rng.random() < aug.drop_context_p and present:
                keep = {r for r in present if rng.random() >= aug.drop_role_p} or {str(rng.choice(sorted(present)))}
            if rng.random() < aug.blank_all_p:
                bins = {}
            else:
                bins = {k: v for k, v in bins.items() if rng.random() >= aug.blank_attribute_p}
        header = header_tokens(item.stem, bins)
        # only the bars that can fit: stop adding once the budget is spent
        context = [bar.tokens(keep, chords) for bar in item.context]
        end, size = start, len(header) + len(context[start])
        while end < n:
            extra = (len(context[end + 1]) if end + 1 < n else 0) + len(item.target[end]) + 2
            if size + extra > self.seq_len and end > start:
                break
            size += extra
            end += 1
        tokens, loss = assemble(header, context, item.target, start, end)
        ids = np.array(tokens[: self.seq_len], dtype=np.int64)
        mask = np.array(loss[: self.seq_len], dtype=bool)
        if aug is not None and item.stem != "drums":
            ids = transpose_tokens(ids, int(rng.integers(aug.transpose[0], aug.transpose[1] + 1)))
        return ids, mask

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """A padded batch: ids (size, T) and labels with -100 where the loss does not count."""
        picks = self.rng.choice(len(self.corpus), size=size, p=self.weights)
        windows = [self.window(self.corpus[i]) for i in picks]
        width = max(len(w[0]) for w in windows)
        ids = np.full((size, width), VOCAB["PAD"], dtype=np.int64)
        labels = np.full((size, width), -100, dtype=np.int64)
        for row, (tok, mask) in enumerate(windows):
            ids[row, : len(tok)] = tok
            labels[row, : len(tok)] = np.where(mask, tok, -100)
        return ids, labels


def fixed_windows(corpus: list[EncodedTriplet], seq_len: int, per_item: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """Deterministic, unaugmented windows for validation loss (the same every evaluation)."""
    sampler = WindowSampler(corpus, seq_len, augmentation=None, seed=1234)
    out = []
    for item in sampler.corpus:
        n = len(item.target)
        for k in range(per_item):
            out.append(sampler.window(item, start=(k * n) // per_item))
    return out


__all__ = [
    "CONTEXT_ROLES",
    "Augmentation",
    "EncodedTriplet",
    "WindowSampler",
    "build_corpus",
    "fixed_windows",
    "load_corpus",
    "read_triplets",
]
