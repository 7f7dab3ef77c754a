"""Throughput and memory of `midiarr prepare` on a MIDI folder.

Usage: python benchmarks/bench_prepare.py DATA_DIR [--workers N]
Prints files/s and peak resident memory (largest single process: the parent or a worker).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import resource
import sys
import tempfile
import time

from midiarr.prepare import prepare


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        summary = prepare(args.data_dir, cache, workers=args.workers, progress=False)
        wall = time.perf_counter() - start
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"date: {datetime.date.today()}  machine: {platform.machine()}, {args.workers} workers")
    print(f"files: {summary.files}  songs: {summary.songs}  triplets: {sum(summary.triplets_per_stem.values())}")
    print(f"wall: {wall:.1f} s  throughput: {summary.files / wall:.1f} files/s")
    print(f"peak RSS: parent {self_mb:.0f} MB, largest worker {child_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
