import numpy as np
import pytest

from midiarr.song import NOTE_DTYPE, Note, Song, Tempo, TimeSignature, Track, notes_array


def test_bar_grid_follows_meter_changes():
    song = Song(
        ticks_per_beat=480,
        time_signatures=[TimeSignature(0, 4, 4), TimeSignature(3840, 3, 4), TimeSignature(3840 + 2 * 1440, 6, 8)],
    )
    song.tracks.append(Track(notes=notes_array([Note(0, 10000, 60, 80)])))
    bars = song.bar_starts()
    assert bars[:4].tolist() == [0, 1920, 3840, 5280]
    assert bars[4] == 6720  # 6/8 bars are 1440 ticks too, starting at the change
    assert song.num_bars == len(bars)
    beats = song.beat_starts()
    assert beats[:5].tolist() == [0, 480, 960, 1440, 1920]
    sixeight = beats[beats >= 6720][:3]
    assert sixeight.tolist() == [6720, 6960, 7200]  # eighth-note beats in 6/8


def test_tempo_map_seconds_both_ways():
    song = Song(ticks_per_beat=480, tempos=[Tempo(0, 120.0), Tempo(1920, 60.0)])
    assert song.tick_to_seconds(1920) == pytest.approx(2.0)
    assert song.tick_to_seconds(2400) == pytest.approx(3.0)
    ticks = np.array([0, 100, 1920, 2400, 5000])
    assert song.seconds_to_ticks(song.tick_to_seconds(ticks)).tolist() == ticks.tolist()
    assert song.tempo_at(2000) == 60.0


def test_bar_activity_counts_held_notes():
    song = Song(ticks_per_beat=4)
    # bar = 16 ticks; a note from tick 10 held to 40 sounds in bars 0, 1 and 2
    song.tracks.append(Track(notes=notes_array([Note(10, 30, 60, 80), Note(64, 4, 60, 80)])))
    assert song.bar_activity(song.tracks[0].notes).tolist() == [True, True, True, False, True]


def test_quantize_snaps_to_grid():
    song = Song(ticks_per_beat=480, tracks=[Track(notes=notes_array([Note(7, 233, 60, 80), Note(470, 5, 62, 80)]))])
    q = song.quantized(4)
    assert q.tracks[0].notes["start"].tolist() == [0, 480]
    assert q.tracks[0].notes["duration"].tolist() == [240, 120]  # never shorter than one step


def test_track_rejects_bad_program():
    with pytest.raises(ValueError):
        Track(program=200)


def test_track_equality_and_copy(band):
    copy = band.copy()
    assert copy.tracks == band.tracks
    copy.tracks[0].notes["pitch"][0] += 1
    assert copy.tracks != band.tracks
    assert band.tracks[0].notes.dtype == NOTE_DTYPE
