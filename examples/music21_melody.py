"""A melody and chord symbols written with music21, accompanied by midiarr (bass, drums, guitar).

Run: python examples/music21_melody.py --out out/music21_melody
"""

import argparse
from pathlib import Path

from music21 import chord, meter, note, stream, tempo

import midiarr


def build_score() -> stream.Score:
    """A waltz: a melody over block chords in 3/4 (music21 objects)."""
    melody, harmony = stream.Part(), stream.Part()
    melody.partName, harmony.partName = "Flute", "Piano"
    for part in (melody, harmony):
        part.append(meter.TimeSignature("3/4"))
    melody.insert(0, tempo.MetronomeMark(number=132))
    tune = ["E5", "D5", "C5", "B4", "C5", "D5", "E5", "E5", "E5", "D5", "D5", "D5"] * 2
    for name in tune:
        melody.append(note.Note(name, quarterLength=1))
    for symbol in [("C4", "E4", "G4"), ("G3", "B3", "D4"), ("A3", "C4", "E4"), ("F3", "A3", "C4")] * 2:
        harmony.append(chord.Chord(symbol, quarterLength=3))
    return stream.Score([melody, harmony])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("out/music21_melody"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    song = midiarr.from_music21(build_score())
    full = midiarr.Arranger().arrange(song, ["bass", "drums", "guitar"], seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    midiarr.save(full, args.out / "waltz.mid")
    print(f"wrote {args.out / 'waltz.mid'}: {', '.join(f'{t.name} ({len(t.notes)} notes)' for t in full.tracks)}")


if __name__ == "__main__":
    main()
