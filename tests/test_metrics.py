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


# ------------------------------------------------- how a player plays (issue 26, item 3)
def test_rhythm_repetition_counts_bars_whose_16th_pattern_equals_the_previous_bar(song):
    bar = 1920

    def bar_of(b: int, sixteenths: list[int]) -> list[Note]:
        return [Note(b * bar + s * 120, 100, 40, 80) for s in sixteenths]

    # bars 0-2 the same pattern, bar 3 different, bar 4 silent, bar 5 the pattern again
    notes = (
        bar_of(0, [0, 4, 8]) + bar_of(1, [0, 4, 8]) + bar_of(2, [0, 4, 8]) + bar_of(3, [0, 6]) + bar_of(5, [0, 4, 8])
    )
    # pairs where either bar plays: (0,1) same, (1,2) same, (2,3) no, (3,4) no, (4,5) no -> 2/5
    assert M.rhythm_repetition(song, notes_array(notes)) == pytest.approx(2 / 5)
    # onsets a few ticks off the grid still land on the same 16th, pitches do not matter
    shifted = bar_of(0, [0, 4, 8]) + [Note(bar + s * 120 + 7, 50, 45, 60) for s in (0, 4, 8)]
    assert M.rhythm_repetition(song, notes_array(shifted)) == 1.0
    # the fixture bass plays four quarters in every bar: every bar repeats the one before
    assert M.rhythm_repetition(song, song.tracks[1].notes) == 1.0
    assert np.isnan(M.rhythm_repetition(song, notes_array([])))
    assert np.isnan(M.rhythm_repetition(song, notes_array(bar_of(0, [0]))))  # one bar: no pair


def test_length_velocity_and_pitch_spreads():
    # lengths of 1 and 4 beats: log2 lengths 0 and 2, sd 1
    two = notes_array([Note(0, 480, 40, 60), Note(480, 1920, 52, 100)])
    assert M.length_spread(two, 480) == pytest.approx(1.0)
    assert M.velocity_spread(two) == pytest.approx(20.0)
    assert M.pitch_spread(two) == pytest.approx(6.0)
    same = notes_array([Note(i * 480, 240, 40, 90) for i in range(4)])
    assert M.length_spread(same, 480) == 0.0 and M.velocity_spread(same) == 0.0 and M.pitch_spread(same) == 0.0
    # a 1-tick drum hit is floored at a 64th of a beat instead of reaching log2(1/480)
    hits = notes_array([Note(0, 1, 36, 90), Note(480, 480, 36, 90)])
    assert M.length_spread(hits, 480) == pytest.approx(3.0)
    for f in (M.velocity_spread, M.pitch_spread):
        assert np.isnan(f(notes_array([Note(0, 10, 40, 80)])))


def test_interval_profile_follows_the_lowest_line_and_clips_at_an_octave():
    # lowest line 40 -> 42 -> 40 -> 60 (a chord's upper notes are ignored)
    rows = [(0, 40), (0, 47), (480, 42), (960, 40), (960, 55), (1440, 60)]
    notes = notes_array([Note(t, 100, p, 80) for t, p in rows])
    prof = M.interval_profile(notes)
    assert prof.sum() == pytest.approx(1.0) and len(prof) == 25
    expected = np.zeros(25)
    expected[[12 + 2, 12 - 2, 24]] = 1 / 3  # +2, -2, +20 clipped to +12
    np.testing.assert_allclose(prof, expected)
    assert M.total_variation(prof, prof) == 0.0
    repeated = M.interval_profile(notes_array([Note(i * 480, 100, 40, 80) for i in range(4)]))
    assert repeated[12] == 1.0
    assert M.total_variation(prof, repeated) == pytest.approx(1.0)  # no interval in common
    half = np.zeros(25)
    half[[12, 14]] = 0.5
    assert M.total_variation(half, repeated) == pytest.approx(0.5)
    assert not M.interval_profile(notes_array([Note(0, 100, 40, 80)])).any()
    assert np.isnan(M.total_variation(np.zeros(25), repeated))


def test_kit_shares_count_general_midi_names_of_one_piece_together():
    pitches = [35, 36, 38, 42, 42, 46, 45, 50, 49, 57, 51, 39]  # 39: hand clap -> other
    part = notes_array([Note(i * 120, 60, p, 90) for i, p in enumerate(pitches)])
    shares = M.kit_shares(part)
    n = len(pitches)
    assert shares == pytest.approx(
        {"kick": 2 / n, "snare": 1 / n, "hihat": 3 / n, "tom": 2 / n, "crash": 2 / n, "ride": 1 / n, "other": 1 / n}
    )
    assert M.kit_share_vector(part).sum() == pytest.approx(1.0)
    assert all(np.isnan(v) for v in M.kit_shares(part[:0]).values())
    assert not M.kit_share_vector(part[:0]).any()


def test_paired_bootstrap_is_seeded_and_covers_a_known_difference():
    rng = np.random.default_rng(1)
    b = rng.normal(10, 3, size=60)  # songs differ a lot from one another...
    a = b + 0.5 + rng.normal(0, 0.2, size=60)  # ...but A is B plus 0.5 on every song
    res = M.paired_bootstrap(a, b, resamples=2000, seed=7)
    assert res["n"] == 60
    assert res["mean_lo"] < 0.5 < res["mean_hi"]
    assert res["mean_lo"] > 0  # pairing removes the song-to-song spread: the difference is clear
    assert res["mean_hi"] - res["mean_lo"] < 0.2
    assert M.paired_bootstrap(a, b, resamples=2000, seed=7) == res
    assert M.paired_bootstrap(a, b, resamples=2000, seed=8) != res
    # NaN rows are dropped pairwise; no rows at all gives NaN intervals
    a2 = np.append(a, np.nan)
    assert M.paired_bootstrap(a2, np.append(b, 1.0), seed=7) == res
    assert np.isnan(M.paired_bootstrap([np.nan], [1.0])["mean_lo"])
    # no true difference: the interval contains 0
    same = M.paired_bootstrap(b + rng.normal(0, 0.2, size=60), b, seed=3)
    assert same["mean_lo"] < 0 < same["mean_hi"]
