"""MusicXML as a notation program reads it: midiarr's writer beside music21's own MIDI-to-MusicXML export.

Usage:
    python benchmarks/bench_notation.py --cache CACHE --n 20 [--bars 64] [--out benchmarks/results/notation.json]

For each full-band song (its first N bars), both writers make a MusicXML file; MuseScore 3 (`mscore3`) reads
each and plays it to MIDI. Reported per writer: the share of the song's notes MuseScore plays (median, worst),
the share of drum notes on MIDI channel 10, the most voices a staff uses, and the write time, with the ratio
of write times in one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_render import pick_songs
from midiarr.io import load
from midiarr.io.musicxml import write_musicxml
from midiarr.song import Song
from tests.notation_readers import MUSESCORE, midi_notes


def music21_write(song: Song, path: Path) -> None:
    """What a user of music21 does: read the MIDI file with music21 and write MusicXML."""
    import music21

    from midiarr.io import save

    mid = path.with_suffix(".mid")
    save(song, mid)
    music21.converter.parse(str(mid)).write("musicxml", fp=str(path))


def most_voices(path: Path) -> int:
    root = ET.parse(path).getroot()
    return max(
        (len({n.findtext("voice") for n in m.iter("note")}) for p in root.iter("part") for m in p.iter("measure")),
        default=0,
    )


def played_by_musescore(path: Path) -> tuple[int, int]:
    """(all notes, notes on channel 10) MuseScore plays from the file."""
    out = path.with_name(path.stem + "_ms.mid")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    subprocess.run([MUSESCORE, "-o", str(out), str(path)], env=env, capture_output=True, timeout=300, check=True)
    counts = midi_notes(out)
    return sum(counts.values()), counts.get(9, 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--bars", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/notation.json"))
    args = ap.parse_args()
    if MUSESCORE is None:
        print("bench_notation: MuseScore 3 (mscore3) is not installed", file=sys.stderr)
        return 1
    writers = {"midiarr": lambda s, p: write_musicxml(s, p), "music21": music21_write}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, src in enumerate(pick_songs(args.cache, args.n, args.seed)):
            song = load(src).first_bars(args.bars)
            drums = sum(len(t.notes) for t in song.tracks if t.is_drum)
            row = {"song": Path(src).parent.name, "notes": song.note_count, "drum_notes": drums}
            for name, write in writers.items():
                path = Path(tmp) / f"{k}_{name}.musicxml"
                t0 = time.perf_counter()
                try:
                    write(song, path)
                except Exception as exc:  # a writer that fails on a song counts as playing none of it
                    row.update({f"{name}_error": f"{type(exc).__name__}: {str(exc)[:120]}", f"{name}_played": 0.0})
                    row.update({f"{name}_seconds": None, f"{name}_drums_on_10": 0.0 if drums else None})
                    row[f"{name}_voices"] = 0
                    continue
                row[f"{name}_seconds"] = time.perf_counter() - t0
                played, on_10 = played_by_musescore(path)
                row[f"{name}_played"] = played / max(song.note_count, 1)
                row[f"{name}_drums_on_10"] = on_10 / drums if drums else None
                row[f"{name}_voices"] = most_voices(path)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for name in writers:
        drum_shares = [r[f"{name}_drums_on_10"] for r in rows if r[f"{name}_drums_on_10"] is not None]
        summary[name] = {
            "played_median": statistics.median(r[f"{name}_played"] for r in rows),
            "played_min": min(r[f"{name}_played"] for r in rows),
            "drums_on_channel_10_median": statistics.median(drum_shares) if drum_shares else None,
            "most_voices": max(r[f"{name}_voices"] for r in rows),
            "failed": sum(1 for r in rows if f"{name}_error" in r),
            "seconds_total": sum(r[f"{name}_seconds"] for r in rows if r[f"{name}_seconds"] is not None),
        }
    both = [r for r in rows if r["midiarr_seconds"] is not None and r["music21_seconds"] is not None]
    summary["write_time_ratio_music21_over_midiarr"] = sum(r["music21_seconds"] for r in both) / max(
        sum(r["midiarr_seconds"] for r in both), 1e-9
    )
    report = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python", *sys.argv]),
        "songs": len(rows),
        "bars": args.bars,
        "summary": summary,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
