import numpy as np
import pytest

from midiarr.errors import InputError
from midiarr.io import load, save
from midiarr.io.musicxml import DRUM_NOTATION
from midiarr.song import KeySignature, Note, Song, Tempo, TimeSignature, Track, notes_array


def _notes(song):
    """Every note; a drum hit's notated length is the page's (to the next hit), so drums compare without it."""
    return {
        (t.name, t.is_drum): sorted((s, p, v) if t.is_drum else (s, d, p, v) for s, d, p, v in t.notes.tolist())
        for t in song.tracks
    }


@pytest.mark.parametrize("suffix", [".musicxml", ".mxl", ".xml"])
def test_musicxml_round_trip_keeps_quantized_notes(tmp_path, band, suffix):
    band = band.quantized(4)  # notation holds 16ths and triplets; the fixture's bass is 10 ticks short
    band.time_signatures.append(TimeSignature(4 * 1920, 3, 4))
    band.key_signatures = [KeySignature(0, -2, False)]
    band.tempos = [Tempo(0, 96.0)]
    path = save(band, tmp_path / f"band{suffix}")
    back = load(path)
    assert back.ticks_per_beat == 480
    assert _notes(back) == _notes(band)
    assert [(t.numerator, t.denominator) for t in back.time_signatures] == [(4, 4), (3, 4)]
    assert back.time_signatures[1].tick == 4 * 1920
    assert back.key_signatures[0].key == -2
    assert back.tempos[0].qpm == pytest.approx(96.0)
    assert [t.program for t in back.tracks] == [t.program for t in band.tracks]


def test_every_drum_pitch_survives_musicxml(tmp_path):
    pitches = list(range(27, 88))
    drums = Track(
        name="Kit", is_drum=True, notes=notes_array([Note(i * 240, 240, p, 90) for i, p in enumerate(pitches)])
    )
    song = Song(tracks=[drums], time_signatures=[TimeSignature(0, 4, 4)])
    back = load(save(song, tmp_path / "drums.musicxml"))
    assert back.tracks[0].is_drum
    assert back.tracks[0].notes["pitch"].tolist() == pitches
    assert len({v for v in DRUM_NOTATION.values()}) == len(DRUM_NOTATION)  # positions are unambiguous


def test_clefs_follow_roles(tmp_path, band):
    from music21 import clef, converter

    score = converter.parse(str(save(band, tmp_path / "c.musicxml")))
    clefs = {p.partName: type(p.recurse().getElementsByClass(clef.Clef).first()).__name__ for p in score.parts}
    assert clefs == {"Piano": "TrebleClef", "Bass": "BassClef", "Guitar": "Treble8vbClef", "Drums": "PercussionClef"}


def test_pickup_bar_is_padded_to_the_bar_grid(tmp_path):
    from music21 import meter, note, stream

    part = stream.Part()
    m0 = stream.Measure(number=0)
    m0.append(meter.TimeSignature("4/4"))
    m0.append(note.Note("G4", quarterLength=1))
    m0.paddingLeft = 3
    m1 = stream.Measure(number=1)
    m1.append(note.Note("C5", quarterLength=4))
    part.append([m0, m1])
    score = stream.Score([part])
    path = tmp_path / "pickup.musicxml"
    score.write("musicxml", fp=str(path))
    song = load(path)
    assert song.tracks[0].notes["start"].tolist() == [3 * 480, 4 * 480]  # the downbeat stays a downbeat


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("empty.musicxml", b"", "empty file"),
        ("junk.musicxml", b"<html><body>not a score</body></html>", "not a MusicXML score"),
        (
            "cut.musicxml",
            b'<?xml version="1.0"?><score-partwise version="3.1"><part-list><score-part id="P1">',
            "broken",
        ),
        ("bad.mxl", b"this is not a zip", "not a compressed MusicXML"),
    ],
)
def test_bad_musicxml_raises_input_error(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError, match=message):
        load(path)


def test_velocity_survives_musicxml(tmp_path, band):
    back = load(save(band, tmp_path / "v.musicxml"))
    assert np.array_equal(back.tracks[1].notes["velocity"], band.tracks[1].notes["velocity"])
