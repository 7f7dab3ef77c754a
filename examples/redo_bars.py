"""The songwriter's loop in Python: three takes of a bass, keep the one that plays most to the chords, then redo
two of its bars and check that nothing else moved.

Run: python examples/redo_bars.py --out out/redo_bars
"""

import argparse
from pathlib import Path

import midiarr

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("out/redo_bars"))
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    song = midiarr.subtract(midiarr.load(HERE / "band.mid"), "bass").partial
    arranger = midiarr.Arranger()
    takes = arranger.insert_takes(song, "bass", takes=3, seed=args.seed)
    for t in takes:
        print(f"take {t.number}: {t.scores['notes']:.0f} notes, harmonic fit {t.scores['harmonic_fit']:.2f}")
    best = max(takes, key=lambda t: t.scores["harmonic_fit"])
    redone = arranger.infill(best.song, "bass", "5-6", seed=args.seed)
    bass = best.new_tracks[0]
    bar = 4 * song.ticks_per_beat

    def outside(notes):
        return [tuple(n) for n in notes.tolist() if not 4 * bar <= n[0] < 6 * bar]

    kept = outside(best.song.tracks[bass].notes)
    # the bars after the span stay note for note; a note held into the span may end where the new bars begin
    assert [n for n in outside(redone.tracks[bass].notes) if n[0] >= 6 * bar] == [n for n in kept if n[0] >= 6 * bar]
    others = [t for i, t in enumerate(redone.tracks) if i != bass]
    assert others == [t for i, t in enumerate(best.song.tracks) if i != bass]
    args.out.mkdir(parents=True, exist_ok=True)
    midiarr.save(best.song, args.out / f"take{best.number}.mid")
    midiarr.save(redone, args.out / "redone.mid")
    print(f"kept take {best.number}; bars 5-6 redone in {args.out / 'redone.mid'}, every other bar as it was")


if __name__ == "__main__":
    main()
