"""A songwriter's lead sheet in plain Python: a chord progression and a melody, then a band that plays to those
chords, rendered to audio and saved as MIDI and as a score with the chord symbols.

Run: python examples/lead_sheet.py --out out/lead_sheet [--soundfont timgm]
"""

import argparse
from pathlib import Path

import midiarr
from midiarr import Note, Track
from midiarr.render import render_to_dir

CHORDS = "Am | F | C | G | Am | F | C G | E7"
MELODY = [  # (bar, beat, MIDI pitch, beats)
    (0, 0, 72, 1.5), (0, 1.5, 71, 0.5), (0, 2, 69, 2), (1, 0, 69, 1), (1, 1, 72, 1), (1, 2, 77, 2),
    (2, 0, 76, 1.5), (2, 1.5, 74, 0.5), (2, 2, 72, 2), (3, 0, 71, 2), (3, 2, 74, 2),
    (4, 0, 72, 1.5), (4, 1.5, 71, 0.5), (4, 2, 69, 2), (5, 0, 69, 1), (5, 1, 72, 1), (5, 2, 77, 2),
    (6, 0, 76, 2), (6, 2, 74, 2), (7, 0, 71, 4),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("out/lead_sheet"))
    parser.add_argument("--soundfont", default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    progression = midiarr.chords.parse(CHORDS, key="Am")
    # the band first, from the chords alone; the melody joins it as the song's lead
    band = midiarr.Arranger().generate(["piano", "bass", "drums"], chords=progression, tempo=92, seed=args.seed)
    tpb = band.ticks_per_beat
    melody = [Note(round((4 * bar + beat) * tpb), round(beats * tpb) - 10, p, 96) for bar, beat, p, beats in MELODY]
    song = band.with_tracks([Track(name="Melody", program=73, notes=melody), *band.tracks])
    args.out.mkdir(parents=True, exist_ok=True)
    midiarr.save(song, args.out / "song.mid")
    midiarr.save(song, args.out / "song.musicxml")  # chord symbols above the melody, as on a lead sheet
    files = render_to_dir(song, args.out / "audio", soundfont=args.soundfont, sr=22050)
    print(f"chords: {midiarr.chords.format_progression(song)}")
    print(f"{len(song.tracks)} tracks: {', '.join(t.name for t in song.tracks)}; audio: {', '.join(sorted(files))}")


if __name__ == "__main__":
    main()
