"""Writes examples/band.mid, the bundled example: an 8-bar band (piano, bass, guitar, drums) over I-vi-IV-V.

Run: python examples/make_band.py   (the file is committed; this shows how it was made)
"""

from pathlib import Path

from midiarr.fixtures import band_song
from midiarr.io import write_midi

if __name__ == "__main__":
    song = band_song(bars=16, qpm=104)
    song.metadata["title"] = "Example band"
    path = write_midi(song, Path(__file__).with_name("band.mid"))
    print(f"wrote {path} ({len(song.tracks)} tracks, {song.note_count} notes)")
