"""Piano rolls: exact round trip on quantized input, windows, slots and bar positions."""

from __future__ import annotations

import numpy as np

from midiarr.fixtures import band_song
from midiarr.pianoroll import (
    NUM_DRUM_CLASSES,
    ONSET,
    PITCH_LOW,
    PITCH_ROWS,
    SUSTAIN,
    notes_to_steps,
    position_in_bar,
    rasterize,
    roll_to_steps,
    song_steps,
    song_to_rolls,
    steps_to_notes,
)
from midiarr.song import NOTE_DTYPE, Song, TimeSignature, Track


def _random_quantized(rng: np.random.Generator, song: Song, count: int) -> np.ndarray:
    step = song.ticks_per_beat // 4
    notes = np.zeros(count, dtype=NOTE_DTYPE)
    notes["start"] = rng.integers(0, 256, count) * step
    notes["duration"] = rng.integers(1, 12, count) * step
    notes["pitch"] = rng.integers(PITCH_LOW, PITCH_LOW + PITCH_ROWS, count)
    notes["velocity"] = rng.integers(1, 128, count)
    # no two notes overlap on one pitch: what a roll can hold
    out = []
    for pitch in np.unique(notes["pitch"]):
        end = -1
        for n in notes[notes["pitch"] == pitch]:
            if n["start"] >= end:
                out.append(n)
                end = n["start"] + n["duration"]
    arr = np.array(out, dtype=NOTE_DTYPE)
    return arr[np.lexsort((arr["pitch"], arr["start"]))]


def test_round_trip_is_exact_for_quantized_pitched_notes() -> None:
    song = band_song(bars=16)
    notes = _random_quantized(np.random.default_rng(0), song, 300)
    steps = notes_to_steps(notes, song, drums=False)
    roll = rasterize(steps, 0, song_steps(song) + 64)
    back = steps_to_notes(roll_to_steps(roll, velocity=notes_velocity(notes, steps, roll), drums=False), song, False)
    for field in ("start", "duration", "pitch"):
        assert np.array_equal(back[field], notes[field]), field


def notes_velocity(notes: np.ndarray, steps, roll: np.ndarray) -> np.ndarray:
    """Each onset cell's velocity, as a written part would carry it."""
    grid = np.zeros(roll.shape[1:], dtype=np.int32)
    grid[steps.row, steps.start] = steps.velocity
    return grid


def test_round_trip_keeps_velocities_when_given_per_onset() -> None:
    song = band_song(bars=4)
    notes = _random_quantized(np.random.default_rng(1), song, 40)
    steps = notes_to_steps(notes, song, drums=False)
    roll = rasterize(steps, 0, 300)
    back = roll_to_steps(roll, velocity=notes_velocity(notes, steps, roll))
    assert np.array_equal(back.velocity, steps.velocity)


def test_drums_map_to_classes_and_back_to_their_note() -> None:
    song = band_song(bars=2)
    step = song.ticks_per_beat // 4
    notes = np.array([(0, step, 36, 100), (4 * step, step, 38, 90), (8 * step, step, 42, 80)], dtype=NOTE_DTYPE)
    steps = notes_to_steps(notes, song, drums=True)
    assert steps.row.max() < NUM_DRUM_CLASSES
    back = steps_to_notes(roll_to_steps(rasterize(steps, 0, 32), drums=True), song, drums=True)
    assert back["pitch"].tolist() == [36, 38, 42]
    assert back["start"].tolist() == notes["start"].tolist()


def test_pitches_outside_the_range_move_by_octaves() -> None:
    song = band_song(bars=1)
    notes = np.array([(0, 120, PITCH_LOW - 5, 90), (0, 120, PITCH_LOW + PITCH_ROWS + 2, 90)], dtype=NOTE_DTYPE)
    rows = sorted(notes_to_steps(notes, song, drums=False).row.tolist())
    assert rows == [7, PITCH_ROWS + 2 - 12]


def test_a_window_shows_a_held_note_as_sustain_only() -> None:
    song = band_song(bars=2)
    step = song.ticks_per_beat // 4
    notes = np.array([(2 * step, 8 * step, 60, 90)], dtype=NOTE_DTYPE)
    roll = rasterize(notes_to_steps(notes, song, False), 4, 16)
    row = 60 - PITCH_LOW
    assert not roll[ONSET].any()
    assert roll[SUSTAIN, row].nonzero()[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert len(roll_to_steps(roll)) == 0  # sustain with no note before it belongs to nothing


def test_song_to_rolls_fills_slots_by_role() -> None:
    song = band_song(bars=4)
    song = song.with_tracks([*song.tracks, Track(name="Lead Vocal", program=52, notes=song.tracks[0].notes.copy())])
    rolls = song_to_rolls(song)
    assert set(rolls.present) == {"bass", "drums", "guitar", "piano", "other"}
    assert rolls.steps == 64


def test_bar_positions_follow_meter_changes() -> None:
    song = band_song(bars=2)
    song.time_signatures = [TimeSignature(0, 4, 4), TimeSignature(4 * song.ticks_per_beat, 3, 4)]
    pos = position_in_bar(song, 16 + 24)
    assert pos[:16].tolist() == list(range(16))
    assert pos[16:28].tolist() == list(range(12))
    assert pos[28:40].tolist() == list(range(12))
