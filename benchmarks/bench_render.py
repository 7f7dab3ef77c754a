"""Real-time factor of the render stage: stems and mix of whole songs, per SoundFont.

Usage:
    python benchmarks/bench_render.py SONG.mid [SONG.mid ...]
    python benchmarks/bench_render.py --cache CACHE --n 20      # full-band songs from a prepare cache

Real-time factor = seconds of song audio per wall-clock second, for all stems and the mix together
(one pass makes both). ``--baseline`` also times the plain way for comparison: one pyfluidsynth
synth with default settings rendering only the mix with ``get_samples``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import statistics
import time
from pathlib import Path

from midiarr.io import load
from midiarr.render import Synthesizer
from midiarr.render.synth import _event_table, _silence_fluidsynth_log, load_fluidsynth
from midiarr.song import Song


def pick_songs(cache: Path, n: int, seed: int) -> list[str]:
    """Full-band (bass, drums, guitar) songs longer than a minute, drawn with a seed."""
    rows = [json.loads(line) for line in (cache / "index.jsonl").read_text().splitlines()]
    rows = [r for r in rows if {"bass", "drums", "guitar"} <= set(r["roles"]) and r["seconds"] > 60]
    random.Random(seed).shuffle(rows)
    return [str(cache / "songs" / r["id"] / "full.mid") for r in rows[:n]]


def baseline_seconds(song: Song, soundfont: Path, sr: int) -> float:
    """Wall time of a plain pyfluidsynth mix render (default settings, int16 get_samples)."""
    fs = load_fluidsynth()
    _silence_fluidsynth_log(fs)
    synth = fs.Synth(samplerate=float(sr))
    sfid = synth.sfload(str(soundfont))
    channels = [9 if t.is_drum else i % 16 if i % 16 != 9 else 15 for i, t in enumerate(song.tracks)]
    for t, ch in zip(song.tracks, channels):
        synth.program_select(ch, sfid, 128 if t.is_drum else 0, t.program)
    events = _event_table(song, channels, sr)
    total = int(events["sample"].max()) + sr
    start, cursor = time.perf_counter(), 0
    for at, kind, ch, a, b in zip(*(events[k].tolist() for k in ("sample", "kind", "chan", "a", "b"))):
        if at > cursor:
            synth.get_samples(at - cursor)
            cursor = at
        if kind == 3:
            synth.noteon(ch, a, b)
        elif kind == 0:
            synth.noteoff(ch, a)
        elif kind == 1:
            synth.cc(ch, a, b)
    synth.get_samples(total - cursor)
    wall = time.perf_counter() - start
    synth.delete()
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("songs", nargs="*")
    parser.add_argument("--cache", type=Path, help="pick songs from this prepare cache")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sr", type=int, default=44100)
    parser.add_argument("--soundfont", nargs="+", default=["timgm", "fluidr3"])
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="one line per song")
    args = parser.parse_args()
    paths = list(args.songs) + (pick_songs(args.cache, args.n, args.seed) if args.cache else [])
    songs = [load(p) for p in paths]
    audio_seconds = 0.0
    print(f"date: {datetime.date.today()}  sr: {args.sr}  songs: {len(songs)}")
    for sf in args.soundfont:
        t0 = time.perf_counter()
        synth = Synthesizer(sf, args.sr)
        load_s = time.perf_counter() - t0
        walls, factors, base_walls = [], [], []
        audio_seconds = 0.0
        for path, song in zip(paths, songs):
            t0 = time.perf_counter()
            out = synth.render(song)
            wall = time.perf_counter() - t0
            walls.append(wall)
            factors.append(out.seconds / wall)
            audio_seconds += out.seconds
            if args.baseline:
                base_walls.append(baseline_seconds(song, synth.soundfont, args.sr))
            if args.verbose:
                print(f"  {sf}: {Path(path).name}: {out.seconds:.0f} s, {len(out.stems)} stems, {factors[-1]:.0f}x")
        line = (
            f"{sf:8s} (load {load_s:.2f} s): stems+mix {audio_seconds / sum(walls):.0f}x real time overall, "
            f"median {statistics.median(factors):.0f}x, min {min(factors):.0f}x, max {max(factors):.0f}x"
        )
        if base_walls:
            line += f" | plain mix-only baseline {audio_seconds / sum(base_walls):.0f}x overall"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
