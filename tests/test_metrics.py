import numpy as np
import pytest

from midiarr.evaluation import metrics as M
from midiarr.fixtures import PROGRESSION, band_song
from midiarr.song import Note, notes_array


@pytest.fixture
def song():
    return band_song(bars=8)


def _context(song, skip="Bass"):
    return np.concatenate([t.notes for t in song.tracks if t.name != skip and not t.is_drum])


def _roots(song, shift=0):
    rows = []
    for bar in range(8):
        root = PROGRESSION[bar % 4][0]
        rows += [Note(bar * 1920 + b * 480, 480, 36 + root + shift, 90) for b in range(4)]
    return notes_array(rows)


def test_bass_on_chord_roots_fits_and_a_semitone_off_does_not(song):
    ctx = _context(song)
    assert M.harmonic_fit(song, _roots(song), ctx) == pytest.approx(1.0)
    assert M.harmonic_fit(song, _roots(song, shift=1), ctx) < 0.1


def test_identical_part_has_perfect_similarity(song):
    bass = song.tracks[1].notes
    assert M.groove_similarity(song, bass, bass) == pytest.approx(1.0)
    assert M.profile_similarity(bass, bass) == pytest.approx(1.0)
    assert M.density_ratio(bass, bass) == pytest.approx(1.0)
    assert M.bar_presence(song.bar_activity(bass), song.bar_activity(bass)) == (1.0, 1.0)
    feats = M.note_features(song, bass)
    for f in M.FEATURES:
        assert M.overlapping_area(feats[f], feats[f], f) == pytest.approx(1.0)


def test_grid_and_sync(song):
    on = notes_array([Note(0, 100, 40, 80), Note(480, 100, 40, 80)])
    off = notes_array([Note(70, 100, 40, 80), Note(550, 100, 40, 80)])
    assert M.grid_share(on, 480) == 1.0 and M.grid_share(off, 480) == 0.0
    ctx = song.tracks[0].notes  # piano whole notes on every downbeat
    assert M.onset_sync(on, ctx, 480) == pytest.approx(0.5)
    assert M.onset_sync(off, ctx, 480) == 0.0


def test_groove_histogram_positions(song):
    eighths = notes_array([Note(i * 240, 100, 40, 80) for i in range(8)])
    hist = M.onset_histogram(song, eighths)
    assert hist.tolist() == [1, 0] * 8
    offbeats = notes_array([Note(120 + i * 480, 50, 40, 80) for i in range(4)])
    assert M.groove_similarity(song, eighths, offbeats) == 0.0


def test_bar_presence_recall_and_precision():
    written = np.array([1, 1, 0, 0], bool)
    real = np.array([1, 0, 1, 0], bool)
    assert M.bar_presence(written, real) == (0.5, 0.5)


def test_frechet_distance_is_zero_for_the_same_set_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 4))
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert M.frechet_distance(a, a + 3.0) == pytest.approx(36.0, rel=0.01)


def test_range_validity():
    assert M.range_validity(notes_array([Note(0, 10, 40, 80), Note(0, 10, 90, 80)]), "bass") == 0.5


def test_kit_similarity_counts_the_general_midi_names_of_one_kit_piece_as_one():
    def kit(kick: int, snare: int, hat: int = 42) -> np.ndarray:
        notes = []
        for beat in range(8):
            notes.append(Note(beat * 480, 60, kick if beat % 2 == 0 else snare, 100))
            notes.append(Note(beat * 480, 60, hat, 80))
        return notes_array(notes)

    real = kit(35, 40)
    other_names = kit(36, 38)
    # note by note, the two kits share only the hi-hat; piece by piece they are the same part
    assert M.profile_similarity(other_names, real, drums=True) == pytest.approx(2 / 3)
    assert M.kit_similarity(other_names, real) == pytest.approx(1.0)
    # a different piece is still a different piece: a ride is not a hi-hat
    assert M.kit_similarity(kit(36, 38, hat=51), real) == pytest.approx(1 / 3)
    assert np.isnan(M.kit_similarity(real[:0], real))
