"""Small songs built in code: the bundled example and the test fixtures.

Nothing here reads ../shared/data; every note is written out below.
"""

from __future__ import annotations

import numpy as np

from midiarr.song import NOTE_DTYPE, KeySignature, Song, Tempo, TimeSignature, Track, sort_notes

# I-vi-IV-V in C, one chord per bar: (root pitch class, chord tones)
PROGRESSION = [(0, (0, 4, 7)), (9, (9, 0, 4)), (5, (5, 9, 0)), (7, (7, 11, 2))]


def _arr(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    return sort_notes(np.array(rows, dtype=NOTE_DTYPE)) if rows else np.zeros(0, dtype=NOTE_DTYPE)


def band_song(bars: int = 8, tpb: int = 480, qpm: float = 120.0, numerator: int = 4) -> Song:
    """A four-piece band (piano chords, bass roots, guitar strums, drums) over I-vi-IV-V."""
    bar = numerator * tpb
    piano, bass, guitar, drums = [], [], [], []
    for b in range(bars):
        root, tones = PROGRESSION[b % len(PROGRESSION)]
        t0 = b * bar
        for pc in tones:
            piano.append((t0, bar, 60 + pc, 70))
        for beat in range(numerator):
            bass.append((t0 + beat * tpb, tpb - 10, 36 + root, 96 if beat == 0 else 84))
            for pc in tones:
                guitar.append((t0 + beat * tpb + tpb // 2, tpb // 2, 52 + (pc - 4) % 12, 76))
            drums.append((t0 + beat * tpb, tpb // 4, 36 if beat % 2 == 0 else 38, 100))
            drums.append((t0 + beat * tpb, tpb // 4, 42, 80))
            drums.append((t0 + beat * tpb + tpb // 2, tpb // 4, 42, 70))
    return Song(
        ticks_per_beat=tpb,
        tracks=[
            Track(name="Piano", program=0, notes=_arr(piano)),
            Track(name="Bass", program=33, notes=_arr(bass)),
            Track(name="Guitar", program=25, notes=_arr(guitar)),
            Track(name="Drums", program=0, is_drum=True, notes=_arr(drums)),
        ],
        tempos=[Tempo(0, qpm)],
        time_signatures=[TimeSignature(0, numerator, 4)],
        key_signatures=[KeySignature(0, 0, False)],
        metadata={"title": "I-vi-IV-V band"},
    )
