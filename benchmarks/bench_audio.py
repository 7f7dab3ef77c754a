"""Speed of the audio stem models on a 3-minute song: separation and insertion, model load included.

Usage:
    python benchmarks/bench_audio.py [--threads 2] [--steps 25]

The song is `midiarr.fixtures.band_song(bars=90, qpm=120)` rendered with the default SoundFont at 16 kHz
(3 minutes of 4/4); separation takes its mix, insertion takes the mix without the drums.
"""

from __future__ import annotations

import argparse
import datetime
import time

import torch

from midiarr.audio.gmsdi import GMSDIPipeline
from midiarr.audio.pipeline import StemLDMPipeline, process_file
from midiarr.fixtures import band_song
from midiarr.render import render


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--models", default="ldm,gmsdi", help="which models to time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    audio = render(band_song(bars=90, qpm=120.0), sr=16000, stems=True)
    mix = torch.from_numpy(audio["mix"].mean(axis=1))
    partial = mix - torch.from_numpy(audio["drums"].mean(axis=1))
    seconds = len(mix) / 16000
    print(f"date: {datetime.date.today()}  song: {seconds:.0f} s  threads: {args.threads}  steps: {args.steps}")
    rows = []
    loaders = {"ldm": StemLDMPipeline.load, "gmsdi": GMSDIPipeline.load}
    for name in args.models.split(","):
        loader = loaders[name]
        t0 = time.perf_counter()
        pipe = loader()
        load = time.perf_counter() - t0
        clip, overlap = pipe.spec.clip_samples, pipe.spec.sr // 2
        t0 = time.perf_counter()
        process_file(mix, clip, overlap, lambda x, j, p=pipe: p.separate_clips(x, args.steps, seed=j)["waves"])
        sep = time.perf_counter() - t0
        if name == "ldm":  # the default is the posterior mean (one call per window); time the DDIM draw too
            t0 = time.perf_counter()
            process_file(
                mix, clip, overlap, lambda x, j, p=pipe: p.separate_clips(x, args.steps, seed=j, masks="mel")["waves"]
            )
            mel_masks = time.perf_counter() - t0
            print(f"ldm separation with mel ratio masks (no mask decoder): {mel_masks:.1f} s "
                  f"({seconds / mel_masks:.1f}x real time)")  # fmt: skip
            t0 = time.perf_counter()
            process_file(
                partial, clip, overlap,
                lambda x, j, p=pipe: p.insert_clips(x, ["drums"], args.steps, seed=j, vocoder="griffin-lim")["waves"],
            )  # fmt: skip
            griffin = time.perf_counter() - t0
            print(f"ldm insertion with Griffin-Lim (48 iterations): {griffin:.1f} s ({seconds / griffin:.1f}x)")
            t0 = time.perf_counter()
            process_file(
                mix, clip, overlap,
                lambda x, j, p=pipe: p.separate_clips(x, args.steps, seed=j, estimator="sample")["waves"],
            )  # fmt: skip
            drawn = time.perf_counter() - t0
            print(
                f"ldm separation by a DDIM draw ({args.steps} steps): {drawn:.1f} s ({seconds / drawn:.1f}x real time)"
            )
        t0 = time.perf_counter()
        process_file(
            partial, clip, overlap, lambda x, j, p=pipe: p.insert_clips(x, ["drums"], args.steps, seed=j)["waves"]
        )
        ins = time.perf_counter() - t0
        rows.append((name, load, sep, ins))
    print("| model | load | separate 4 stems | insert drums |")
    print("|---|---|---|---|")
    for name, load, sep, ins in rows:
        print(f"| {name} | {load:.2f} s | {sep:.1f} s ({seconds / sep:.1f}x real time) | "
              f"{ins:.1f} s ({seconds / ins:.1f}x real time) |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
