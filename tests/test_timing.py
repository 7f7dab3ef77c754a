"""Written parts follow the song's micro-timing (midiarr.timing) unless asked for the grid."""

import numpy as np
import pytest

from midiarr.engines import Controls, get_engine
from midiarr.errors import OptionError
from midiarr.evaluation import metrics as M
from midiarr.fixtures import band_song
from midiarr.song import Song, TimeSignature, notes_array
from midiarr.subtract import subtract
from midiarr.timing import lock_to_feel

TPB = 480
STEP = TPB // 4


def _song() -> Song:
    return Song(ticks_per_beat=TPB, time_signatures=[TimeSignature(0, 4, 4)])


def test_an_onset_takes_the_exact_tick_of_the_context_onset_it_stands_for():
    context = notes_array([(0 + 17, 100, 36, 100), (4 * STEP - 9, 100, 38, 100)])
    written = notes_array([(0, 200, 40, 90), (4 * STEP, 100, 43, 90)])
    out = lock_to_feel(written, context, _song())
    assert out["start"].tolist() == [17, 4 * STEP - 9]
    assert out["duration"].tolist() == [200, 100]  # lengths are kept
    assert out["pitch"].tolist() == [40, 43] and out["velocity"].tolist() == [90, 90]


def test_an_onset_with_no_partner_gets_the_local_swing():
    # the context plays swung eighths: every "and" (16th slot 2 of the beat) 40 ticks late
    ctx_rows = []
    for beat in range(16):
        ctx_rows.append((beat * TPB, 60, 42, 80))
        ctx_rows.append((beat * TPB + 2 * STEP + 40, 60, 42, 80))
    context = notes_array(ctx_rows)
    # an "and" where the context rests (beat 17 is past its end: still within two bars) and one far away
    written = notes_array([(16 * TPB + 2 * STEP, 100, 40, 90), (40 * TPB + 2 * STEP, 100, 41, 90)])
    out = lock_to_feel(written, context, _song())
    assert out["start"].tolist() == [16 * TPB + 2 * STEP + 40, 40 * TPB + 2 * STEP]


def test_triplets_and_far_onsets_do_not_count_as_feel_or_partners():
    # context onsets half a 16th or more off the grid are other subdivisions, not a late grid note
    context = notes_array([(STEP // 2, 50, 42, 80), (TPB + STEP // 2 + 10, 50, 42, 80)])
    written = notes_array([(0, 100, 40, 90), (TPB, 100, 40, 90)])
    out = lock_to_feel(written, context, _song())
    assert out["start"].tolist() == [0, TPB]


def test_a_note_never_moves_into_a_bar_that_must_stay_silent():
    bar = 4 * TPB
    context = notes_array([(bar - 12, 100, 36, 100), (2 * bar - 12, 100, 36, 100)])
    written = notes_array([(bar, 100, 40, 90), (2 * bar, 100, 40, 90)])
    active = np.array([False, True, True])
    out = lock_to_feel(written, context, _song(), active)
    # bar 0 is silent: the first downbeat stays; bar 1 plays: the second may be pushed into it
    assert out["start"].tolist() == [bar, 2 * bar - 12]


def test_a_note_pushed_late_never_rings_into_a_bar_that_must_stay_silent():
    bar = 4 * TPB
    context = notes_array([(bar - 4 * STEP + 15, 100, 36, 100), (3 * bar - 4 * STEP + 15, 100, 36, 100)])
    # both notes end on a bar line; played late, each rings into the next bar
    written = notes_array([(bar - 4 * STEP, 4 * STEP, 40, 90), (3 * bar - 4 * STEP, 4 * STEP, 41, 90)])
    active = np.array([True, False, True, True])
    out = lock_to_feel(written, context, _song(), active)
    assert out["start"].tolist() == [bar - 4 * STEP + 15, 3 * bar - 4 * STEP + 15]
    # bar 1 rests: the first note is cut at its line; bar 3 plays: the second rings on
    assert out["duration"].tolist() == [4 * STEP - 15, 4 * STEP]


def test_repeated_pitches_are_cut_rather_than_overlapped():
    context = notes_array([(STEP - 20, 50, 36, 100)])
    written = notes_array([(0, STEP, 40, 90), (STEP, STEP, 40, 90)])
    out = lock_to_feel(written, context, _song())
    assert out["start"].tolist() == [0, STEP - 20]
    assert out["duration"].tolist() == [STEP - 20, STEP]


def _humanized_band(seed: int = 3) -> Song:
    """band_song with every onset nudged by up to +-50 ticks (under a 32nd), as a played file is."""
    song = band_song(bars=8)
    rng = np.random.default_rng(seed)
    for t in song.tracks:
        t.notes["start"] = np.maximum(0, t.notes["start"] + rng.integers(-50, 51, len(t.notes)))
    return song


@pytest.mark.parametrize("stem", ["bass", "drums", "guitar"])
def test_insert_follows_a_played_song_and_grid_timing_stays_on_the_grid(stem):
    partial = subtract(_humanized_band(), stem).partial
    context = np.concatenate([t.notes for t in partial.tracks])
    engine = get_engine("rules")
    song_part = engine.insert(partial, stem, Controls(), seed=2)
    grid_controls = Controls()
    grid_controls.timing = "grid"
    grid_part = engine.insert(partial, stem, grid_controls, seed=2)
    on_song = song_part.song.tracks[song_part.new_tracks[0]].notes
    on_grid = grid_part.song.tracks[grid_part.new_tracks[0]].notes
    assert M.grid_share(on_grid, TPB) == 1.0
    assert len(on_song) == len(on_grid)
    sync_song, sync_grid = M.onset_sync(on_song, context, TPB), M.onset_sync(on_grid, context, TPB)
    # drums also play 16ths where nothing else does: those can only take the feel, not a partner
    assert sync_song >= sync_grid + 0.09
    # same part, same 16th positions: only micro-timing moved
    assert np.array_equal(np.sort(np.round(on_song["start"] / STEP)), np.sort(on_grid["start"] / STEP))


def test_an_unknown_timing_is_refused():
    partial = subtract(band_song(bars=4), "bass").partial
    controls = Controls()
    controls.timing = "swing"
    with pytest.raises(OptionError, match="timing 'swing'"):
        get_engine("rules").insert(partial, "bass", controls)


def test_cli_insert_timing(tmp_path):
    from midiarr.cli import main
    from midiarr.io import load, save

    song_path = tmp_path / "played.mid"
    save(subtract(_humanized_band(), "bass").partial, song_path)
    exact = {}
    for timing in ("song", "grid"):
        out = tmp_path / f"{timing}.mid"
        assert main(["insert", str(song_path), "--stem", "bass", "-o", str(out), "--timing", timing, "-q"]) == 0
        result = load(out)
        starts = result.tracks[-1].notes["start"]
        exact[timing] = float(np.mean(starts % (result.ticks_per_beat // 4) == 0))
    assert exact["grid"] == 1.0 and exact["song"] < 0.5
    assert main(["insert", str(song_path), "--stem", "bass", "-o", str(tmp_path / "x.mid"), "--timing", "x"]) == 2
