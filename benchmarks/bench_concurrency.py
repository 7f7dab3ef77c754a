"""Concurrent inserts: N `midiarr insert --stem bass` processes at once, total wall time, with torch's own thread
count in each and with each process given its share of the cores (`--threads`, as the server's jobs and the
workers of prepare and render-dataset do).

Usage:
    python benchmarks/bench_concurrency.py [--bars 75] [--counts 1,2,4] [--out benchmarks/results/concurrency.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from midiarr.fixtures import band_song
from midiarr.io import save
from midiarr.threads import share_of_cores


def run_at_once(song: Path, out: Path, count: int, threads: int | None) -> float:
    """Wall seconds for ``count`` inserts started together."""
    extra = ["--threads", str(threads)] if threads else []
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "midiarr.cli",
                "-q",
                "insert",
                str(song),
                "--stem",
                "bass",
                "--seed",
                str(k),
                "-o",
                str(out / f"o{count}_{k}_{threads}.mid"),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for k in range(count)
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(err.decode()[-500:])
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=75)
    ap.add_argument("--counts", default="1,2,4")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/concurrency.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        full = band_song(bars=args.bars)
        song = save(full.with_tracks([t for t in full.tracks if t.name != "Bass"]), folder / "song.mid")
        for count in (int(c) for c in args.counts.split(",")):
            default = run_at_once(song, folder, count, None)
            shared = run_at_once(song, folder, count, share_of_cores(count))
            row = {"inserts": count, "torch_default_s": round(default, 2), "share_of_cores_s": round(shared, 2),
                   "threads_each": share_of_cores(count), "ratio": round(default / shared, 2)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = {"date": datetime.date.today().isoformat(), "command": " ".join(["python", *sys.argv]),
              "cores": os.cpu_count(), "bars": args.bars, "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
