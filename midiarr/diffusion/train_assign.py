"""Training the separation assignment head (``midiarr train-assign``).

Songs of the train split with at least two of bass / guitar / piano are cut to their first bars
and flattened; the diffusion engine separates each (its sampler's logits are all the head needs
from it), and every note becomes one example labelled with the stem it came from. The head is
fitted on those and scored on the valid split's songs, beside the plain rule, the pitch-range
split and a head of the same shape that never hears the diffusion model (so the log says what
the model adds over a note classifier alone).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from midiarr.diffusion.assign import AssignHead, HeadConfig, NoteTable, StemLogits, context_features, stem_features
from midiarr.pianoroll import PITCHED

if TYPE_CHECKING:
    from midiarr.evaluation.diffusion_eval import SeparationCase

# what one separation leaves per note (saved, so the head can be refitted without sampling again)
RAW_FIELDS = (
    "pitch", "start", "length", "velocity", "bar_position",  # the note (NoteTable)
    "onset", "sustain_start", "sustain_mean", "asked",  # the sampler's logits (StemLogits)
    "truth", "pitch_range", "song",  # its true stem, the baseline's choice, its song
)  # fmt: skip


@dataclass
class NoteExamples:
    """Every note of a set of songs as the head reads it: features, asked stems, true stem, song."""

    context: np.ndarray  # (n, CONTEXT_FEATURES)
    stem: np.ndarray  # (n, stems, STEM_FEATURES)
    asked: np.ndarray  # (n, stems) bool
    truth: np.ndarray  # (n,) index into PITCHED
    plain: np.ndarray  # (n,) the plain rule's choice
    pitch_range: np.ndarray  # (n,) the pitch-range split's choice
    song: np.ndarray  # (n,) song number

    def __len__(self) -> int:
        return len(self.truth)


def examples_from_raw(raw: dict[str, np.ndarray]) -> NoteExamples:
    """The features of every note, computed song by song (they compare a note with its song's)."""
    parts: list[NoteExamples] = []
    for number in np.unique(raw["song"]):
        at = raw["song"] == number
        table = NoteTable(*(raw[k][at] for k in ("pitch", "start", "length", "velocity", "bar_position")))
        asked = raw["asked"][at]
        logits = StemLogits(raw["onset"][at], raw["sustain_start"][at], raw["sustain_mean"][at], asked[0])
        parts.append(
            NoteExamples(
                context=context_features(table),
                stem=stem_features(table, logits),
                asked=asked,
                truth=raw["truth"][at],
                plain=logits.plain_choice(),
                pitch_range=raw["pitch_range"][at],
                song=raw["song"][at],
            )
        )
    if not parts:
        raise ValueError("no notes to learn from")
    return NoteExamples(
        **{k: np.concatenate([getattr(p, k) for p in parts]) for k in NoteExamples.__dataclass_fields__}
    )


def save_raw(raw: dict[str, np.ndarray], path: Path) -> None:
    """As one .npz, written atomically."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **raw)
    tmp.replace(path)


def load_raw(path: Path) -> dict[str, np.ndarray]:
    """Read back what ``save_raw`` wrote."""
    with np.load(path) as data:
        return {k: data[k] for k in RAW_FIELDS}


_WORKER: dict[str, Any] = {}


def _start_worker(checkpoint: str, guidance: float) -> None:
    from midiarr.engines.diffusion import DiffusionEngine

    torch.set_num_threads(1)
    _WORKER["engine"] = DiffusionEngine(checkpoint, guidance=guidance)


def _song_record(job: tuple[int, Any, np.ndarray, list[str], int]) -> dict[str, np.ndarray]:
    from midiarr.engines.diffusion import pitch_range_roles

    number, flat, truth, stems, seed = job
    _, table, logits = _WORKER["engine"].separation_logits(flat, stems, seed=seed)
    to_pitched = np.array([PITCHED.index(s) for s in stems])
    n = len(table)
    return {
        "pitch": table.pitch,
        "start": table.start,
        "length": table.length,
        "velocity": table.velocity,
        "bar_position": table.bar_position,
        "onset": logits.onset,
        "sustain_start": logits.sustain_start,
        "sustain_mean": logits.sustain_mean,
        "asked": np.tile(logits.asked, (n, 1)),
        "truth": to_pitched[truth],
        "pitch_range": to_pitched[pitch_range_roles(flat.tracks[0].notes, stems)],
        "song": np.full(n, number),
    }


def collect_raw(
    checkpoint: str | Path,
    cases: list[SeparationCase],
    guidance: float,
    seed: int,
    jobs: int = 1,
    progress: Any = None,
) -> dict[str, np.ndarray]:
    """Separate every case with the diffusion engine (``jobs`` processes) and keep what each note needs."""
    work = [(k, case.flat, case.truth, case.stems, seed + k) for k, case in enumerate(cases)]
    parts: list[dict[str, np.ndarray]] = []
    if jobs <= 1:
        _start_worker(str(checkpoint), guidance)
        for item in work:
            parts.append(_song_record(item))
            if progress is not None:
                progress(len(parts), len(work))
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(jobs, initializer=_start_worker, initargs=(str(checkpoint), guidance)) as pool:
            for part in pool.imap(_song_record, work):
                parts.append(part)
                if progress is not None:
                    progress(len(parts), len(work))
    if not parts:
        raise ValueError("no songs to learn from")
    return {k: np.concatenate([p[k] for p in parts]) for k in RAW_FIELDS}


def _tensors(examples: NoteExamples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(examples.context),
        torch.from_numpy(examples.stem),
        torch.from_numpy(examples.asked),
        torch.from_numpy(examples.truth.astype(np.int64)),
    )


def accuracy(choice: np.ndarray, examples: NoteExamples) -> dict[str, float]:
    """Note accuracy pooled over all notes and averaged over songs."""
    right = choice == examples.truth
    if not len(right):
        return {"note_accuracy": float("nan"), "song_accuracy": float("nan")}
    per_song = [right[examples.song == s].mean() for s in np.unique(examples.song)]
    return {"note_accuracy": float(right.mean()), "song_accuracy": float(np.mean(per_song))}


@torch.no_grad()
def head_choice(head: AssignHead, examples: NoteExamples) -> np.ndarray:
    """The head's stem (index into PITCHED) for every example."""
    context, stem, asked, _ = _tensors(examples)
    return head(context, stem, asked).argmax(dim=1).numpy()


def fit_head(
    train: NoteExamples,
    valid: NoteExamples | None,
    config: HeadConfig,
    epochs: int = 5,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    batch: int = 512,
    seed: int = 0,
    log: Any = None,
) -> AssignHead:
    """Cross-entropy over the asked stems, AdamW, a few epochs (more overfits the train songs)."""
    torch.manual_seed(seed)
    head = AssignHead(config)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    context, stem, asked, truth = _tensors(train)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        head.train()
        order = torch.randperm(len(truth), generator=gen)
        total, count = 0.0, 0
        for b in range(0, len(order), batch):
            idx = order[b : b + batch]
            loss = torch.nn.functional.cross_entropy(head(context[idx], stem[idx], asked[idx]), truth[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        head.eval()
        entry: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": round(total / max(count, 1), 5),
            "minutes": round((time.perf_counter() - start) / 60, 3),
        }
        if valid is not None and len(valid):
            entry["valid"] = {k: round(v, 4) for k, v in accuracy(head_choice(head, valid), valid).items()}
        if log is not None:
            log(entry)
    return head


def write_log(path: Path, entries: list[dict[str, Any]]) -> None:
    """One JSON object per line, written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    tmp.replace(path)


def train_assign_head(
    data: str | Path,
    output: str | Path,
    checkpoint: str | Path | None = None,
    limit: int = 700,
    valid_limit: int = 200,
    max_bars: int = 16,
    guidance: float = 1.0,
    seed: int = 0,
    jobs: int = 1,
    hidden: int = 16,
    epochs: int = 5,
    reuse: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    command: str | None = None,
) -> dict[str, Any]:
    """Fit separation's note-assignment heads (with and without the diffusion engine's features) on the
    diffusion engine's output for train songs, score them on valid, and save both under ``output``.

    Examples are cached per split in ``output`` (``examples-<split>.npz``); ``reuse`` takes them back when they
    were made with the same checkpoint and settings. Returns the valid scores by method."""
    from tqdm import tqdm

    from midiarr.diffusion.assign import CONTEXT_ONLY_HEAD, HeadConfig, save_head
    from midiarr.engines.diffusion import bundled_checkpoint
    from midiarr.errors import MidiarrError
    from midiarr.evaluation.diffusion_eval import separation_cases

    given = checkpoint
    checkpoint = checkpoint or bundled_checkpoint()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    made = {"checkpoint": str(checkpoint), "max_bars": max_bars, "guidance": guidance, "seed": seed}
    examples: dict[str, NoteExamples] = {}
    for split, songs in (("train", limit), ("valid", valid_limit)):
        path = out / f"examples-{split}.npz"
        stamp = out / f"examples-{split}.json"
        wanted = {**made, "split": split, "limit": songs}
        if reuse and path.is_file() and stamp.is_file() and json.loads(stamp.read_text("utf-8")) == wanted:
            examples[split] = examples_from_raw(load_raw(path))
            log(f"{split}: reusing {len(examples[split])} notes from {path}")
            continue
        if songs == 0:
            continue
        cases = separation_cases(data, split, songs, max_bars)
        if not cases:
            raise MidiarrError(f"{data}: no {split} song has two or more of bass, guitar and piano")
        log(f"{split}: separating {len(cases)} songs with {checkpoint}")
        with tqdm(total=len(cases), desc=split, unit="song", disable=not progress) as bar:
            raw = collect_raw(checkpoint, cases, guidance, seed, jobs, lambda done, total: bar.update(1))
        save_raw(raw, path)
        stamp.write_text(json.dumps(wanted), encoding="utf-8")
        examples[split] = examples_from_raw(raw)
    train, valid = examples["train"], examples.get("valid")
    entries: list[dict[str, Any]] = []
    heads = {}
    for name, uses in (("head", True), ("context-only", False)):
        config = HeadConfig(hidden=hidden, use_stem_features=uses)
        heads[name] = fit_head(
            train,
            valid,
            config,
            epochs=epochs,
            seed=seed,
            log=lambda e, name=name: entries.append({"head": name, **e}),
        )
    scores: dict[str, Any] = {}
    if valid is not None:
        scores = {
            "pitch-range split": accuracy(valid.pitch_range, valid),
            "diffusion, plain rule": accuracy(valid.plain, valid),
            "diffusion + head": accuracy(head_choice(heads["head"], valid), valid),
            "head without diffusion (context only)": accuracy(head_choice(heads["context-only"], valid), valid),
        }
        entries.append({"valid_scores": scores})
    write_log(out / "assign_log.jsonl", entries)
    meta = {
        "command": command,
        "diffusion_checkpoint": "bundled" if given is None else str(checkpoint),
        "data": {
            "train_songs": len(np.unique(train.song)),
            "train_notes": len(train),
            "valid_songs": len(np.unique(valid.song)) if valid is not None else 0,
            "split": "train (fit), valid (scores); the test split is never read",
            "max_bars": max_bars,
        },
        "training": {"epochs": epochs, "seed": seed, "guidance": guidance},
        "valid_scores": scores,
    }
    save_head(heads["head"], out, meta)
    save_head(heads["context-only"], out, meta, name=CONTEXT_ONLY_HEAD)
    return scores
