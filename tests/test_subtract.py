import numpy as np
import pytest

from midiarr.errors import OptionError
from midiarr.io import read_midi, write_midi
from midiarr.song import Note, Tempo, TimeSignature, Track, notes_array
from midiarr.subtract import make_triplet, subtract


def test_subtract_keeps_everything_else_exactly(tmp_path, band):
    band.tempos.append(Tempo(1920 * 3, 100.0))
    band.time_signatures.append(TimeSignature(1920 * 4, 7, 8))
    src = read_midi(write_midi(band, tmp_path / "in.mid"))
    sub = subtract(src, "bass")
    assert sub.track_indices == [1]
    out = read_midi(write_midi(sub.partial, tmp_path / "out.mid"))
    kept = [t for i, t in enumerate(src.tracks) if i != 1]
    assert len(out.tracks) == len(kept)
    for a, b in zip(out.tracks, kept):
        assert a.name == b.name and a.program == b.program and a.is_drum == b.is_drum
        assert np.array_equal(a.notes, b.notes)
    assert out.tempos == src.tempos
    assert out.time_signatures == src.time_signatures
    assert out.key_signatures == src.key_signatures
    assert np.array_equal(sub.target.tracks[0].notes, src.tracks[1].notes)


def test_several_tracks_of_one_role_are_removed_together(band):
    band.tracks.append(Track(name="Fretless", program=35, notes=notes_array([Note(0, 480, 41, 80)])))
    sub = subtract(band, "bass")
    assert sub.track_indices == [1, 4]
    assert len(sub.target_notes()) == len(band.tracks[1].notes) + 1
    assert all(t.role == "bass" for t in sub.target.tracks)


def test_missing_stem_is_a_clear_error(band):
    band.tracks = [t for t in band.tracks if t.name != "Guitar"]
    with pytest.raises(OptionError, match="no guitar part"):
        subtract(band, "guitar")


def test_triplet_instruction_describes_the_stem(band):
    trip = make_triplet(band, "bass", seed=3)
    assert "bass" in trip.instruction.lower()
    assert trip.attributes.bins["rhythm"] == "straight"
    assert trip.attributes.active_bars == 8
    assert make_triplet(band, "bass", seed=3).instruction == trip.instruction
