import random

import numpy as np
import pytest

from midiarr.augment import augment, jitter_velocity, transpose
from midiarr.song import Tempo, TimeSignature
from midiarr.tokenize import SongTokenizer


@pytest.fixture(scope="module")
def tok():
    return SongTokenizer()


def _notes(song):
    return sorted(
        (t.is_drum, t.program if not t.is_drum else -1, *row) for t in song.tracks for row in t.notes.tolist()
    )


def test_round_trip_keeps_every_quantized_note(tok, band):
    band.tempos = [Tempo(0, 120.0), Tempo(1920 * 4, 90.0)]
    band.time_signatures.append(TimeSignature(1920 * 6, 3, 4))
    expected = tok.quantize(band)
    decoded = tok.decode(tok.encode(band))
    assert len(_notes(expected)) == band.note_count
    assert _notes(decoded) == _notes(expected)
    assert [t.qpm for t in decoded.tempos] == [120.0, 90.0]  # common tempos stay exact
    assert [(t.numerator, t.denominator) for t in decoded.time_signatures] == [(4, 4), (3, 4)]


def test_tokens_are_bar_aligned(tok, band):
    bars = tok.encode_bars(band)
    assert len(bars) == band.num_bars == 8
    assert all(b[0] == tok.bar_id for b in bars)
    assert tok.tokens(bars[0])[0] == "Bar_None"


def test_triplets_and_sixteenths_fit_the_grid(tok, band):
    t = band.tracks[0]
    t.notes = t.notes[:0]
    from midiarr.song import Note

    t.add_notes([Note(160, 160, 60, 80), Note(320, 160, 62, 80), Note(600, 120, 64, 80)])
    decoded = tok.decode(tok.encode(band))
    piano = next(tr for tr in decoded.tracks if tr.program == 0 and not tr.is_drum)
    assert piano.notes["start"].tolist() == [160, 320, 600]


def test_transpose_moves_pitched_tracks_only(band):
    out = transpose(band, 3)
    for a, b in zip(band.tracks, out.tracks):
        delta = 0 if a.is_drum else 3
        assert np.array_equal(b.notes["pitch"], a.notes["pitch"] + delta)


def test_transpose_stays_in_range(band):
    out = transpose(band, 60)
    top = max(int(t.notes["pitch"].max()) for t in out.tracks if not t.is_drum)
    assert top <= 108


def test_velocity_jitter_is_bounded_and_seeded(band):
    a = jitter_velocity(band, 8, random.Random(1))
    b = jitter_velocity(band, 8, random.Random(1))
    for orig, x, y in zip(band.tracks, a.tracks, b.tracks):
        assert np.array_equal(x.notes, y.notes)
        assert np.all(np.abs(x.notes["velocity"].astype(int) - orig.notes["velocity"]) <= 8)
    assert any(not np.array_equal(x.notes, o.notes) for x, o in zip(a.tracks, band.tracks))
    aug = augment(band, random.Random(5))
    assert aug.note_count == band.note_count
