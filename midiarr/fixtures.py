"""Small songs built in code: the bundled example and the test fixtures.

Nothing here reads ../shared/data; every note is written out below.
"""

from __future__ import annotations

import numpy as np

from midiarr.song import (
    CONTROL_DTYPE,
    NOTE_DTYPE,
    PITCH_BEND_DTYPE,
    KeySignature,
    Song,
    Tempo,
    TimeSignature,
    Track,
    sort_notes,
)

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


def misleading_band(bars: int = 4, tpb: int = 480) -> Song:
    """A band whose track names mislead the role guesser, with controllers and pitch bends on its
    parts: the song `insert` must never take a note from unasked.

    Tracks (roles as `assign_roles` sees them): 0 "Lead Guitar" on a synth-lead program (guitar, by
    name), 1 a pitched "Bass Drum" on taiko (other), 2 a "Bass" playing above C4 (other), 3 "Banjo" and
    4 "Tenor Banjo" (guitar), 5 "Piano" (piano), 6 "Drums" (drums).
    """
    bar = 4 * tpb
    lead, taiko, high, banjo, tenor, piano, drums = ([] for _ in range(7))
    for b in range(bars):
        root, tones = PROGRESSION[b % len(PROGRESSION)]
        t0 = b * bar
        for pc in tones:
            piano.append((t0, bar - 7, 60 + pc, 64 + b))
        for beat in range(4):
            at = t0 + beat * tpb
            lead.append((at + 13, tpb - 40, 72 + tones[beat % 3] % 12, 90 - beat))
            taiko.append((at, tpb // 3, 45 + beat % 2, 110))
            high.append((at + tpb // 2, tpb // 2 - 5, 64 + root % 12, 70 + beat))
            banjo.append((at, tpb // 4, 55 + tones[beat % 3] % 12, 81))
            tenor.append((at + tpb // 4, tpb // 4, 50 + tones[(beat + 1) % 3] % 12, 77))
            drums.append((at, 60, 36 if beat % 2 == 0 else 38, 100 + beat))
            drums.append((at + tpb // 2 + 9, 60, 42, 66))

    def ctl(rows: list[tuple[int, int, int]]) -> np.ndarray:
        return np.array(rows, dtype=CONTROL_DTYPE)

    end = bars * bar
    swell = [(k * tpb, 11, 40 + (k * 7) % 80) for k in range(bars * 4)]
    bends = np.array([(13, 0), (200, 1200), (400, -800), (479, 0), (end - tpb, 4000), (end - 1, 0)], PITCH_BEND_DTYPE)
    return Song(
        ticks_per_beat=tpb,
        tracks=[
            Track(
                name="Lead Guitar",
                program=81,
                notes=_arr(lead),
                controls=ctl([(0, 7, 100), (0, 10, 30), *swell]),
                pitch_bends=bends,
            ),
            Track(name="Bass Drum", program=116, notes=_arr(taiko), controls=ctl([(0, 7, 90), (0, 91, 40)])),
            Track(
                name="Bass", program=33, notes=_arr(high), controls=ctl([(0, 10, 100), (tpb, 1, 64), (2 * tpb, 1, 0)])
            ),
            Track(name="Banjo", program=105, notes=_arr(banjo), controls=ctl([(0, 7, 110)])),
            Track(name="Tenor Banjo", program=105, notes=_arr(tenor), controls=ctl([(0, 10, 90)])),
            Track(name="Piano", program=0, notes=_arr(piano), controls=ctl([(0, 64, 127), (bar - 1, 64, 0)])),
            Track(name="Drums", program=0, is_drum=True, notes=_arr(drums), controls=ctl([(0, 7, 120)])),
        ],
        tempos=[Tempo(0, 96.0), Tempo(2 * bar, 100.0)],
        time_signatures=[TimeSignature(0, 4, 4)],
        key_signatures=[KeySignature(0, 2, False)],
        metadata={"title": "misleading names"},
    )
