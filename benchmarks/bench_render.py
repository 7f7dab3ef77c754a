"""`midiarr render --stems` beside FluidSynth's command line, on the same songs in one run.

Usage:
    python benchmarks/bench_render.py --cache CACHE --n 20        # full-band songs from a prepare cache
    python benchmarks/bench_render.py SONG.mid [SONG.mid ...]

For each song, one after another: FluidSynth's command line renders the mix alone
(``fluidsynth -ni -F mix.wav -r SR SOUNDFONT song.mid``, its own defaults), then ``midiarr render
--stems`` writes the mix and every stem with its default workers (the cores present), then again with
``--workers 1``. Wall times are whole commands, start-up and SoundFont loading included. The two midiarr
outputs must be the same files byte for byte. Results go to ``benchmarks/results/render.json``.
"""

from __future__ import annotations

import argparse
import datetime
import filecmp
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from midiarr.render import available_cores, resolve_soundfont

RESULTS = Path(__file__).parent / "results" / "render.json"


def pick_songs(cache: Path, n: int, seed: int) -> list[str]:
    """Full-band (bass, drums, guitar) songs longer than a minute, drawn with a seed."""
    rows = [json.loads(line) for line in (cache / "index.jsonl").read_text().splitlines()]
    rows = [r for r in rows if {"bass", "drums", "guitar"} <= set(r["roles"]) and r["seconds"] > 60]
    random.Random(seed).shuffle(rows)
    return [str(cache / "songs" / r["id"] / "full.mid") for r in rows[:n]]


def timed(command: list[str]) -> float:
    """Wall time of a command that must succeed."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def same_files(a: Path, b: Path) -> bool:
    """Whether two folders hold the same file names with the same bytes."""
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("songs", nargs="*")
    parser.add_argument("--cache", type=Path, help="pick songs from this prepare cache")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sr", type=int, default=44100)
    parser.add_argument("--soundfont", default="fluidr3")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = parser.parse_args()
    paths = list(args.songs) + (pick_songs(args.cache, args.n, args.seed) if args.cache else [])
    if not paths:
        parser.error("give songs or --cache")
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None:
        parser.error("FluidSynth's command line is not installed (apt-get install fluidsynth)")
    soundfont = str(resolve_soundfont(args.soundfont))
    # the console script a user runs, beside this Python
    script = shutil.which("midiarr", path=str(Path(sys.executable).parent)) or shutil.which("midiarr")
    if script is None:
        parser.error("the midiarr command is not installed (pip install -e .)")
    midiarr = [script, "render", "--stems", "--soundfont", soundfont, "--sr", str(args.sr)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            out = Path(tmp)
            for folder in ("fs", "all", "one"):
                shutil.rmtree(out / folder, ignore_errors=True)
                (out / folder).mkdir()
            row = {"song": Path(path).parent.name if args.cache else path}
            row["fluidsynth_s"] = timed(
                [fluidsynth, "-ni", "-F", str(out / "fs" / "mix.wav"), "-r", str(args.sr), soundfont, path]
            )
            row["midiarr_s"] = timed([*midiarr, path, "-o", str(out / "all")])
            row["midiarr_one_worker_s"] = timed([*midiarr, path, "-o", str(out / "one"), "--workers", "1"])
            row["identical"] = same_files(out / "all", out / "one")
            row["ratio"] = row["fluidsynth_s"] / row["midiarr_s"]
            rows.append(row)
            print(
                f"{row['song'][:12]}: fluidsynth {row['fluidsynth_s']:.2f} s, midiarr {row['midiarr_s']:.2f} s "
                f"({row['ratio']:.2f}x), one worker {row['midiarr_one_worker_s']:.2f} s, "
                f"identical {row['identical']}",
                flush=True,
            )
    ratios = [r["ratio"] for r in rows]
    summary = {
        "date": str(datetime.date.today()),
        "command": "python benchmarks/bench_render.py " + " ".join(sys.argv[1:]),
        "cores": available_cores(),
        "sr": args.sr,
        "soundfont": Path(soundfont).name,
        "songs": len(rows),
        "fluidsynth_total_s": round(sum(r["fluidsynth_s"] for r in rows), 2),
        "midiarr_total_s": round(sum(r["midiarr_s"] for r in rows), 2),
        "midiarr_one_worker_total_s": round(sum(r["midiarr_one_worker_s"] for r in rows), 2),
        "ratio_of_totals": round(sum(r["fluidsynth_s"] for r in rows) / sum(r["midiarr_s"] for r in rows), 3),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "identical": sum(r["identical"] for r in rows),
        "rows": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(
        f"{summary['songs']} songs: fluidsynth {summary['fluidsynth_total_s']} s, midiarr "
        f"{summary['midiarr_total_s']} s ({summary['ratio_of_totals']}x; per song median "
        f"{summary['ratio_median']}x, {summary['ratio_min']}-{summary['ratio_max']}x), one worker "
        f"{summary['midiarr_one_worker_total_s']} s; identical outputs {summary['identical']}/{summary['songs']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
