"""Concurrent inserts: N `midiarr insert --stem bass` processes, total wall time, three ways: one after another;
all at once as a user starts them (the CLI shares the cores automatically); and all at once with `--threads` set to
every core in each, which is what every process did before it shared (torch's own count).

Usage:
    python benchmarks/bench_concurrency.py [--bars 75] [--counts 1,2,4] [--out benchmarks/results/concurrency.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from midiarr.fixtures import band_song
from midiarr.io import save
from midiarr.threads import available_cores


def run(song: Path, out: Path, count: int, threads: int | None, at_once: bool) -> float:
    """Wall seconds for ``count`` inserts, started together or one after another."""
    extra = ["--threads", str(threads)] if threads else []

    def start(k: int) -> subprocess.Popen:
        command = [sys.executable, "-m", "midiarr.cli", "-q", "insert", str(song), "--stem", "bass", "--seed", str(k),
                   "-o", str(out / f"o{count}_{k}.mid"), *extra]  # fmt: skip
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(proc: subprocess.Popen) -> None:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(err.decode()[-500:])

    began = time.perf_counter()
    if at_once:
        for proc in [start(k) for k in range(count)]:
            finish(proc)
    else:
        for k in range(count):
            finish(start(k))
    return time.perf_counter() - began


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
            row = {"inserts": count, "one_after_another_s": round(run(song, folder, count, None, False), 2)}
            row["at_once_s"] = round(run(song, folder, count, None, True), 2)
            row["at_once_every_core_each_s"] = round(run(song, folder, count, available_cores(), True), 2)
            row["at_once_over_one_after_another"] = round(row["at_once_s"] / row["one_after_another_s"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = {"date": datetime.date.today().isoformat(), "command": " ".join(["python", *sys.argv]),
              "cores": available_cores(), "bars": args.bars, "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
