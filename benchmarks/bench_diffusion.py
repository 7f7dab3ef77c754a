"""Speed of the diffusion engine on this machine: model load, one stem for a 3-minute song, a
separation of a 3-minute flattened song, and the time of one denoising step per window.

    python benchmarks/bench_diffusion.py [--checkpoint DIR] [--steps N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from midiarr.engines import Controls
from midiarr.engines.diffusion import DiffusionEngine
from midiarr.fixtures import band_song
from midiarr.song import Track


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    engine = DiffusionEngine(checkpoint=args.checkpoint, steps=args.steps)
    load_s = time.perf_counter() - started
    model = engine.sampler.model
    results = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "load_s": round(load_s, 3),
        "sampling_steps": engine.sampler.settings.steps,
        "scheduler": engine.sampler.settings.scheduler,
    }
    # 90 bars of 4/4 at 120 bpm = 3 minutes
    song = band_song(bars=90, qpm=120)
    for stem in ("bass", "drums", "guitar"):
        t0 = time.perf_counter()
        out = engine.insert(song, stem, Controls(), seed=0)
        results[f"{stem}_3min_s"] = round(time.perf_counter() - t0, 3)
        results[f"{stem}_notes"] = len(out.song.tracks[out.new_tracks[0]].notes)
    t0 = time.perf_counter()
    joint = engine.insert_stems(song, ["bass", "drums", "guitar"], seed=0)
    results["bass_drums_guitar_one_pass_3min_s"] = round(time.perf_counter() - t0, 3)
    results["bass_drums_guitar_notes"] = sum(len(joint.song.tracks[i].notes) for i in joint.new_tracks)
    flat_notes = np.concatenate([t.notes for t in song.tracks if not t.is_drum])
    flat = song.with_tracks([Track(name="flat", notes=flat_notes), *[t for t in song.tracks if t.is_drum]])
    t0 = time.perf_counter()
    engine.separate(flat, seed=0)
    results["separate_3min_s"] = round(time.perf_counter() - t0, 3)
    # one model call on a window of 4 stems (3 given + 1 written), batch 1
    cfg = model.config
    n = cfg.tokens_per_stem
    x = torch.randn(1, 4, 2, cfg.pitch_rows, cfg.window_steps)
    call = (
        x,
        torch.tensor([500]),
        torch.ones(1, 4, dtype=torch.bool),
        torch.zeros(1, 4, n, dtype=torch.bool),
        torch.full((1, 4, n), 2),
        torch.full((1, 4), 3),
        torch.zeros(1, n, dtype=torch.long),
    )
    with torch.no_grad():
        model(*call)
        t0 = time.perf_counter()
        for _ in range(20):
            model(*call)
    results["model_call_ms_4_stems"] = round(1000 * (time.perf_counter() - t0) / 20, 2)
    results["song_seconds"] = round(song.duration_seconds, 1)
    results["torch_threads"] = torch.get_num_threads()
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
