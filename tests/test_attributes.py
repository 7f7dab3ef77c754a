import random

import pytest

from midiarr.attributes import describe, genre_from_text, measure, note_value_name, parse_instruction
from midiarr.song import Note, Song, TimeSignature, Track, notes_array


def _song_with(notes, bars=4):
    song = Song(ticks_per_beat=480, time_signatures=[TimeSignature(0, 4, 4)])
    song.tracks.append(Track(notes=notes_array(notes)))
    song.tracks.append(Track(notes=notes_array([Note(0, bars * 1920, 60, 80)])))  # sets the song's length
    return song


def test_straight_eighths_are_straight_and_measured():
    notes = [Note(i * 240, 200, 40, 100) for i in range(32)]
    song = _song_with(notes)
    a = measure(song, song.tracks[0].notes, "bass")
    assert a.syncopation == 0.0
    assert a.onsets_per_beat == pytest.approx(2.0)
    assert a.median_ioi_beats == pytest.approx(0.5)
    assert a.bins["note_value"] == "eighth"
    assert a.bins["rhythm"] == "straight"
    assert a.bins["density"] == "busy"
    assert a.bins["dynamics"] == "medium"
    assert a.activity == [1, 1, 1, 1]


def test_anticipations_are_syncopated():
    # onsets on beat 1 and on the "and" of 2, tied across beat 3 (nothing on beat 3)
    notes = []
    for bar in range(4):
        notes += [Note(bar * 1920, 720, 40, 60), Note(bar * 1920 + 720, 1200, 43, 60)]
    notes.append(Note(4 * 1920, 1920, 40, 60))  # a last downbeat, so every anticipation can be judged
    song = _song_with(notes, bars=5)
    a = measure(song, song.tracks[0].notes, "bass")
    assert a.syncopation == pytest.approx(4 / 9)
    assert a.bins["rhythm"] == "syncopated"
    assert a.bins["dynamics"] == "soft"
    assert a.bins["density"] == "sparse"


def test_activity_marks_silent_bars():
    song = _song_with([Note(0, 480, 40, 90), Note(3 * 1920, 480, 40, 90)])
    a = measure(song, song.tracks[0].notes, "bass")
    assert a.activity == [1, 0, 0, 1]
    assert a.active_bars == 2


def test_note_value_names():
    assert [note_value_name(x) for x in (4, 2, 1, 0.5, 0.25)] == ["whole", "half", "quarter", "eighth", "sixteenth"]


def test_parse_instruction_reads_bins_and_flags_unknown_words():
    p = parse_instruction("busy syncopated bass, soft and wobbly")
    assert p.stem == "bass"
    assert p.bins["density"] == "busy"
    assert p.bins["rhythm"] == "syncopated"
    assert p.bins["dynamics"] == "soft"
    assert p.unknown_words == ["wobbly"]
    q = parse_instruction("Lay down a driving sixteenth-note funk drum groove, played hard")
    assert q.stem == "drums"
    assert q.bins == {"note_value": "sixteenth", "density": "busy", "dynamics": "loud", "genre": "funk"}
    assert q.unknown_words == []


def test_describe_says_what_parse_reads(band):
    from midiarr.subtract import subtract

    for stem in ("bass", "drums", "guitar", "piano"):
        attrs = measure(band, subtract(band, stem).target_notes(), stem, genre="rock")
        for seed in range(20):
            text = describe(attrs, random.Random(seed))
            parsed = parse_instruction(text)
            assert parsed.stem == stem, text
            assert parsed.unknown_words == [], text
            for key in ("density", "dynamics"):
                assert parsed.bins[key] == attrs.bins[key], text


def test_genre_from_paths():
    assert genre_from_text("groove/drummer1/session1/12_funk_92_beat_4-4.mid") == "funk"
    assert genre_from_text("rwc_mdb_midi/RWC-J/RWC_J001.mid") == "jazz"
    assert genre_from_text("some/plain/song.mid") is None
