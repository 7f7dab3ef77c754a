import io

import mido
import numpy as np
import pretty_midi
import pytest

from midiarr import convert
from midiarr.errors import InputError
from midiarr.io import load, read_midi, save, write_midi
from midiarr.io.midi import parse_midi_bytes
from midiarr.song import KeySignature, Marker, Tempo, TimeSignature


def _assert_same_music(a, b):
    assert a.ticks_per_beat == b.ticks_per_beat
    assert [(t.name, t.program, t.is_drum) for t in a.tracks] == [(t.name, t.program, t.is_drum) for t in b.tracks]
    for ta, tb in zip(a.tracks, b.tracks):
        assert np.array_equal(ta.notes, tb.notes)
    assert [(t.tick, round(t.qpm, 3)) for t in a.tempos] == [(t.tick, round(t.qpm, 3)) for t in b.tempos]
    assert a.time_signatures == b.time_signatures
    assert a.key_signatures == b.key_signatures


def test_midi_round_trip_is_exact(tmp_path, band):
    band.tempos.append(Tempo(3840, 90.0))
    band.time_signatures.append(TimeSignature(7680, 3, 4))
    band.key_signatures.append(KeySignature(3840, -3, True))
    band.markers.append(Marker(1920, "Chorus"))
    path = write_midi(band, tmp_path / "a.mid")
    back = read_midi(path)
    _assert_same_music(band, back)
    assert back.markers == band.markers
    assert back.metadata["title"] == "a"


def test_type0_file_is_split_by_channel(tmp_path):
    mid = mido.MidiFile(type=0, ticks_per_beat=96)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=600000, time=0))
    track.append(mido.Message("program_change", channel=0, program=33, time=0))
    track.append(mido.Message("program_change", channel=1, program=25, time=0))
    for ch, pitch in ((0, 40), (1, 64), (9, 36)):
        track.append(mido.Message("note_on", channel=ch, note=pitch, velocity=90, time=0))
    for i, (ch, pitch) in enumerate(((0, 40), (1, 64), (9, 36))):
        track.append(mido.Message("note_off", channel=ch, note=pitch, velocity=0, time=96 if i == 0 else 0))
    path = tmp_path / "type0.mid"
    mid.save(path)
    song = load(path)
    assert len(song.tracks) == 3
    by_program = {(t.program, t.is_drum): t.notes["pitch"].tolist() for t in song.tracks}
    assert by_program[(33, False)] == [40]
    assert by_program[(25, False)] == [64]
    assert by_program[(0, True)] == [36]
    assert song.tempos[0].qpm == pytest.approx(100.0)


def test_rmi_container_is_unwrapped(band):
    smf = convert.to_midi_bytes(band)
    body = b"RMID" + b"data" + len(smf).to_bytes(4, "little") + smf
    rmi = b"RIFF" + len(body).to_bytes(4, "little") + body
    song = parse_midi_bytes(rmi, "x.rmi")
    assert song.note_count == band.note_count


def test_pretty_midi_round_trip(band):
    pm = convert.to_pretty_midi(band)
    assert isinstance(pm, pretty_midi.PrettyMIDI)
    assert sum(len(i.notes) for i in pm.instruments) == band.note_count
    back = convert.from_pretty_midi(pm)
    for ta, tb in zip(band.tracks, back.tracks):
        assert np.array_equal(ta.notes, tb.notes)
    assert back.key_signatures[0].key == 0 and not back.key_signatures[0].minor


def test_pretty_midi_minor_key_maps_to_signature():
    pm = pretty_midi.PrettyMIDI(resolution=480)
    pm.key_signature_changes.append(pretty_midi.KeySignature(pretty_midi.key_name_to_key_number("E minor"), 0.0))
    inst = pretty_midi.Instrument(program=33)
    inst.notes.append(pretty_midi.Note(velocity=90, pitch=40, start=0.0, end=0.5))
    pm.instruments.append(inst)
    song = convert.from_pretty_midi(pm)
    assert song.key_signatures[0] == KeySignature(0, 1, True)
    assert song.key_signatures[0].tonic_pitch_class == 4


def test_mido_and_symusic_round_trips(band):
    mid = convert.to_mido(band)
    buffer = io.BytesIO()
    mid.save(file=buffer)
    _assert_same_music(band, convert.from_mido(mid))
    _assert_same_music(band, convert.from_symusic(convert.to_symusic(band)))
    assert convert.from_any(mid).note_count == band.note_count


def test_save_picks_format_by_extension(tmp_path, band):
    save(band, tmp_path / "x.midi")
    assert (tmp_path / "x.midi").read_bytes().startswith(b"MThd")
    with pytest.raises(Exception, match="unknown format"):
        save(band, tmp_path / "x.wav")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty file"),
        (b"hello world, not midi at all", "not a MIDI file"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\xff\xff", "broken MIDI"),
    ],
)
def test_bad_midi_bytes_raise_input_error(data, message):
    with pytest.raises(InputError, match=message):
        parse_midi_bytes(data, "bad.mid")


def test_truncated_file_raises_input_error(tmp_path, band):
    data = convert.to_midi_bytes(band)
    path = tmp_path / "cut.mid"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="broken MIDI"):
        read_midi(path)


def test_program_change_mid_track_splits_into_tracks():
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.Message("program_change", channel=0, program=0, time=0))
    track.append(mido.Message("note_on", channel=0, note=60, velocity=90, time=0))
    track.append(mido.Message("note_off", channel=0, note=60, velocity=0, time=480))
    track.append(mido.Message("program_change", channel=0, program=48, time=0))
    track.append(mido.Message("note_on", channel=0, note=67, velocity=90, time=0))
    track.append(mido.Message("note_off", channel=0, note=67, velocity=0, time=480))
    buffer = io.BytesIO()
    mid.save(file=buffer)
    song = parse_midi_bytes(buffer.getvalue())
    assert [(t.program, t.notes["start"].tolist()) for t in song.tracks] == [(0, [0]), (48, [480])]
