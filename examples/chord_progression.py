"""Algorithmic composition with midiarr: a progression and a melody written in plain Python,
then bass, drums and guitar from midiarr, rendered to audio and saved as MIDI and MusicXML.

Run: python examples/chord_progression.py --out out/progression [--soundfont timgm]
"""

import argparse
from pathlib import Path

import midiarr
from midiarr import Note, Song, Tempo, TimeSignature, Track
from midiarr.render import render_to_dir

# ii-V-I-vi in F major, two bars each: (root pitch, chord tones as MIDI pitches)
PROGRESSION = [(43, [55, 58, 62, 65]), (36, [52, 55, 58, 62]), (41, [53, 57, 60, 64]), (38, [50, 53, 57, 60])]
MELODY = [69, 67, 65, 64, 65, 67, 69, 72, 70, 69, 67, 65, 64, 62, 64, 65]


def build_song(tpb: int = 480) -> Song:
    """Eight bars of 4/4: sustained keys and a quarter-note melody."""
    bar = 4 * tpb
    keys, melody = [], []
    for i, (_root, tones) in enumerate(PROGRESSION * 2):
        keys += [Note(i * bar, bar, p, 64) for p in tones]
    for i, pitch in enumerate(MELODY * 2):
        melody.append(Note(i * tpb * 2, tpb * 2 - 20, pitch, 90))
    return Song(
        ticks_per_beat=tpb,
        tracks=[Track(name="Electric Piano", program=4, notes=keys), Track(name="Melody", program=73, notes=melody)],
        tempos=[Tempo(0, 96.0)],
        time_signatures=[TimeSignature(0, 4, 4)],
        metadata={"title": "ii-V-I-vi in F"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("out/progression"))
    parser.add_argument("--soundfont", default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    song = build_song()
    arranger = midiarr.Arranger()
    song = arranger.insert(song, "bass", "steady bass", seed=args.seed)
    song = arranger.insert(song, "drums", "laid-back, soft", seed=args.seed)
    song = arranger.insert(song, "guitar", "sparse chordal guitar", seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    midiarr.save(song, args.out / "song.mid")
    midiarr.save(song, args.out / "song.musicxml")
    files = render_to_dir(song, args.out / "audio", soundfont=args.soundfont, sr=22050)
    print(f"{len(song.tracks)} tracks: {', '.join(t.name for t in song.tracks)}; audio: {', '.join(sorted(files))}")


if __name__ == "__main__":
    main()
