"""The level of an inserted stem, set against the rest of the song as a mixing engineer sets it.

The stem models write a stem's sound but not a trustworthy loudness: inserted piano came out 7.9 dB louder than
the real piano on the test clips and bass 3.3 dB quieter (docs/audio.md). How loud a part sits under the rest of
the band is far steadier: on the train split's clips the bass is a median 6.3 dB below the other parts together,
with a spread of about 4 dB. An inserted stem is scaled, clip by clip, to the rest of the song's level plus its
stem's median offset (`midiarr.audio.tuned.INSERT_LEVEL_DB`), fitted on train by this module:

    python -m midiarr.audio.levels runs/audio/data [--split train]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

import numpy as np
import torch

from midiarr.audio.data import STEMS, ClipSet, load_clips
from midiarr.errors import MidiarrError

ACTIVE_DB = -45.0  # a stem quieter than this (RMS dBFS) does not sound in the clip
SILENT_DB = -80.0  # the rest of the song (or a written stem) this quiet gives no level to match
FIT_CLIPS = 4000  # clips drawn for the fit (the train split has ~9,500)
MAX_GAIN_DB = 20.0  # the most a written stem is raised or lowered


def rms_db(wave: np.ndarray | torch.Tensor) -> np.ndarray:
    """RMS level in dBFS over the last axis."""
    w = wave.double().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave, dtype=np.float64)
    return 20 * np.log10(np.sqrt(np.mean(np.square(w), axis=-1)) + 1e-12)


def level_offsets(clips: ClipSet, limit: int = FIT_CLIPS, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per stem, over the clips where it sounds: the median, mean and spread of its level minus the level of
    the clip without it (dB), and how many clips."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(clips), min(len(clips), limit), replace=False))
    waves = clips.waves(chosen)
    mix = waves[:, 0]
    out: dict[str, dict[str, float]] = {}
    for k, stem in enumerate(STEMS):
        part = waves[:, 1 + k]
        level = rms_db(part)
        rows = level > ACTIVE_DB
        rest = rms_db(mix[rows] - part[rows])
        offset = (level[rows] - rest)[rest > SILENT_DB]
        if len(offset):
            out[stem] = {
                "median": round(float(np.median(offset)), 1),
                "mean": round(float(np.mean(offset)), 1),
                "sd": round(float(np.std(offset)), 1),
                "clips": len(offset),
            }
    return out


def match_level(
    written: torch.Tensor, partial: torch.Tensor, stems: list[str], offsets: Mapping[str, float]
) -> torch.Tensor:
    """``written`` (clips, stems, samples) scaled, per clip and stem, to the level of ``partial`` (clips, samples)
    plus the stem's offset in dB, by `MAX_GAIN_DB` at most; a clip whose rest or written stem is silent is left
    as it is. Stems written together are each set against ``partial`` alone, which lacks the others, so they
    come out somewhat quieter than one written alone."""
    rest = rms_db(partial)
    level = rms_db(written)
    gains = np.ones(level.shape)
    for j, stem in enumerate(stems):
        if stem not in offsets:
            continue
        sounding = (rest > SILENT_DB) & (level[:, j] > SILENT_DB)
        # at most MAX_GAIN_DB either way: a stem the model left near silence (a rest) is not pulled up to a part
        change = np.clip(rest[sounding] + offsets[stem] - level[sounding, j], -MAX_GAIN_DB, MAX_GAIN_DB)
        gains[sounding, j] = 10 ** (change / 20)
    return written * torch.from_numpy(gains).to(written.dtype)[..., None]


def main() -> int:
    parser = argparse.ArgumentParser(description="Fit the inserted stems' levels against the rest of the song.")
    parser.add_argument("data", help="a `midiarr render-dataset --clip 4` folder")
    parser.add_argument("--split", choices=["train", "valid", "test"], default="train")
    args = parser.parse_args()
    try:
        clips = load_clips(args.data, args.split, log=None)
    except MidiarrError as exc:
        print(f"midiarr.audio.levels: error: {exc}", file=sys.stderr)
        return 1
    for stem, row in level_offsets(clips).items():
        print(f"{stem}: {row['median']:+.1f} dB (mean {row['mean']:+.1f}, sd {row['sd']:.1f}, {row['clips']} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
