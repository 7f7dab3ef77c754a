"""Clips of a `render-dataset` folder as arrays the audio models train on.

A split is read once into ``<dataset>/<split>-clips.npy`` (int16 memmap, clips x
(mix + stems) x samples) and ``<split>-clips.json`` (clip ids and per-stem activity
labels), so later runs start in seconds. Stems a song lacks are silent rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from midiarr.errors import InputError

STEMS = ("bass", "drums", "guitar", "piano")  # the stems the audio models write; the rest stays in the mix
ROWS = ("mix", *STEMS)


@dataclass
class ClipSet:
    """Aligned mix and stems of every clip of a split."""

    audio: np.ndarray  # (clips, 1 + len(STEMS), samples) int16
    active: np.ndarray  # (clips, len(STEMS)) bool: the stem sounds in the clip
    other: np.ndarray  # (clips,) bool: the mix holds parts outside STEMS
    ids: list[str]
    sr: int

    def __len__(self) -> int:
        return len(self.ids)

    def waves(self, index: np.ndarray) -> np.ndarray:
        """float32 (len(index), rows, samples) in -1..1."""
        return self.audio[np.sort(index)].astype(np.float32) / 32768.0


def load_clips(
    dataset: str | Path, split: str, rebuild: bool = False, log: Callable[[str], None] | None = print
) -> ClipSet:
    """The clips of one split of a render-dataset folder (mono, one clip length)."""
    import soundfile as sf

    root = Path(dataset)
    array_path, index_path = root / f"{split}-clips.npy", root / f"{split}-clips.json"
    if array_path.exists() and index_path.exists() and not rebuild:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        return ClipSet(
            np.load(array_path, mmap_mode="r"),
            np.array(index["active"], dtype=bool).reshape(-1, len(STEMS)),
            np.array(index["other"], dtype=bool),
            index["ids"],
            int(index["sr"]),
        )
    folder = root / split
    metas = sorted(folder.glob("*/meta.json")) if folder.is_dir() else []
    if not metas:
        raise InputError(f"{folder}: no rendered clips (run `midiarr render-dataset ... --clip 4` first)")
    first = json.loads(metas[0].read_text(encoding="utf-8"))
    sr = int(first["sr"])
    lengths = []
    for meta_path in metas:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if int(meta["sr"]) != sr or int(meta.get("channels", 1)) != 1:
            raise InputError(f"{meta_path.parent}: every clip must be mono at {sr} Hz")
        lengths.append(round(float(meta["seconds"]) * sr))
    samples = max(set(lengths), key=lengths.count)  # the clip length; a song's short last clip is dropped
    keep = [m for m, n in zip(metas, lengths) if n == samples]
    tmp = array_path.with_suffix(".tmp.npy")
    audio = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=(len(keep), len(ROWS), samples))
    active, other, ids = [], [], []
    for i, meta_path in enumerate(keep):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        for r, row in enumerate(ROWS):
            files = list(meta_path.parent.glob(row + ".*"))
            if files:
                data, _ = sf.read(str(files[0]), dtype="int16", always_2d=True)
                audio[i, r, : min(samples, len(data))] = data[:samples, 0]
        stems_active = set(meta.get("stems_active", []))
        active.append([s in stems_active for s in STEMS])
        other.append(bool(stems_active - set(STEMS)))
        ids.append(meta_path.parent.name)
        if log and (i + 1) % 1000 == 0:
            log(f"read {i + 1}/{len(keep)} clips of {split}")
    audio.flush()
    del audio
    tmp.replace(array_path)
    index = {"ids": ids, "active": active, "other": other, "sr": sr, "samples": samples}
    index_path.write_text(json.dumps(index), encoding="utf-8")
    return load_clips(dataset, split)
