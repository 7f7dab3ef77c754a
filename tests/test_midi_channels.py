"""MIDI channels survive a midiarr round trip (issue 26, item 1).

symusic forgets channels when it reads and numbers them by track position when it writes;
midiarr recovers them (`midiarr.smf`) and writes every track back on its own. The files are
built in code with mido and checked with mido, never through midiarr's reader alone.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import mido
import numpy as np
import pytest
import symusic

from midiarr import smf
from midiarr.convert import from_midi_bytes, to_midi_bytes, write_channels
from midiarr.io import load, save
from midiarr.io.midi import parse_midi_bytes
from midiarr.song import Song, Track, notes_array
from tests.conftest import midi_tracks, run_cli


def _msg(kind: str, **fields) -> mido.Message:
    return mido.Message(kind, **fields)


def _part(name: str, channel: int, program: int, pitches: list[int], bars: int = 4) -> mido.MidiTrack:
    """A named part on one channel: program, volume, a pitch bend and a note per beat."""
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
    track.append(_msg("program_change", channel=channel, program=program, time=0))
    track.append(_msg("control_change", channel=channel, control=7, value=90 + channel, time=0))
    track.append(_msg("pitchwheel", channel=channel, pitch=300 * channel - 2000, time=0))
    for beat in range(4 * bars):
        pitch = pitches[beat % len(pitches)]
        track.append(_msg("note_on", channel=channel, note=pitch, velocity=60 + beat % 40, time=0))
        track.append(_msg("note_off", channel=channel, note=pitch, velocity=0, time=480))
    return track


def _file(tracks: list[mido.MidiTrack], kind: int = 1) -> bytes:
    mid = mido.MidiFile(type=kind, ticks_per_beat=480)
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=600_000, time=0)])
    mid.tracks.extend([conductor, *tracks] if kind == 1 else tracks)
    buffer = io.BytesIO()
    mid.save(file=buffer)
    return buffer.getvalue()


def _events(data: bytes) -> list[list[tuple]]:
    """Per MTrk with channel events: every such event at its absolute tick, channel included."""
    return [events for _, events in midi_tracks(data)[0]]


def _channels(events: list[tuple]) -> set[int]:
    return {dict(e[1:])["channel"] for e in events}


CHORDS = [[60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62]]


@pytest.fixture
def band_bytes() -> bytes:
    """Parts on channels 3, 5, 9 (drums) and 12, none where symusic would put them."""
    return _file(
        [
            _part("Piano", 3, 0, [60, 64, 67, 72]),
            _part("Guitar", 5, 25, [64, 67, 71]),
            _part("Drums", 9, 0, [36, 42, 38, 42]),
            _part("Strings", 12, 48, [72, 76]),
        ]
    )


def test_read_gives_each_track_its_channel(band_bytes: bytes) -> None:
    song = parse_midi_bytes(band_bytes)
    assert [(t.name, t.channel, t.is_drum) for t in song.tracks] == [
        ("Piano", 3, False),
        ("Guitar", 5, False),
        ("Drums", 9, True),
        ("Strings", 12, False),
    ]
    assert [t.channel for t in from_midi_bytes(band_bytes).tracks] == [3, 5, 9, 12]


def test_round_trip_keeps_every_channel_and_event(band_bytes: bytes, tmp_path: Path) -> None:
    src = tmp_path / "band.mid"
    src.write_bytes(band_bytes)
    out = save(load(src), tmp_path / "back.mid")
    assert _events(out.read_bytes()) == _events(band_bytes)
    assert [t.channel for t in load(out).tracks] == [3, 5, 9, 12]
    # byte for byte the same, run after run
    assert to_midi_bytes(load(src)) == out.read_bytes() == to_midi_bytes(load(out))


def test_insert_keeps_the_song_and_gives_the_new_part_a_free_channel(band_bytes: bytes, tmp_path: Path) -> None:
    src, out = tmp_path / "band.mid", tmp_path / "out.mid"
    src.write_bytes(band_bytes)
    assert run_cli("-q", "insert", src, "--stem", "bass", "--engine", "rules", "-o", out) == 0
    before, after = _events(band_bytes), _events(out.read_bytes())
    assert len(after) == len(before) + 1
    assert after[: len(before)] == before  # notes, velocities, programs, controllers, bends, channels
    bass = after[-1]
    assert len(_channels(bass)) == 1 and any(("type", "note_on") in e for e in bass)
    assert not _channels(bass) & {3, 5, 9, 12}
    song = load(out)
    assert [t.channel for t in song.tracks] == [3, 5, 9, 12, *_channels(bass)]


def test_type0_file_keeps_its_channels(tmp_path: Path) -> None:
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0)])
    for channel, program in ((7, 33), (2, 0), (9, 0)):
        track.append(_msg("program_change", channel=channel, program=program, time=0))
    for step in range(8):
        for channel, pitch in ((7, 40), (2, 64 + step % 3), (9, 36 + step % 2)):
            track.append(_msg("note_on", channel=channel, note=pitch, velocity=90, time=0))
        for k, (channel, pitch) in enumerate(((7, 40), (2, 64 + step % 3), (9, 36 + step % 2))):
            track.append(_msg("note_off", channel=channel, note=pitch, velocity=0, time=240 if k == 0 else 0))
    data = _file([track], kind=0)
    song = parse_midi_bytes(data)
    # symusic splits the track and orders the parts by channel
    assert [(t.channel, t.program, t.is_drum) for t in song.tracks] == [(2, 0, False), (7, 33, False), (9, 0, True)]
    written = to_midi_bytes(song)
    assert [_channels(e) for e in _events(written)] == [{2}, {7}, {9}]
    assert [t.channel for t in parse_midi_bytes(written).tracks] == [2, 7, 9]


def test_mixed_channel_track_and_program_change_mid_track() -> None:
    mixed = mido.MidiTrack([mido.MetaMessage("track_name", name="Keys", time=0)])
    mixed += [_msg("program_change", channel=11, program=4, time=0), _msg("program_change", channel=6, program=0)]
    for channel, pitch in ((11, 70), (6, 50), (11, 72)):
        mixed += [
            _msg("note_on", channel=channel, note=pitch, velocity=80),
            _msg("note_off", channel=channel, note=pitch, time=120),
        ]
    change = mido.MidiTrack([_msg("program_change", channel=4, program=10)])
    change += [_msg("note_on", channel=4, note=60, velocity=80), _msg("note_off", channel=4, note=60, time=100)]
    change += [_msg("program_change", channel=4, program=20)]
    change += [_msg("note_on", channel=4, note=62, velocity=80), _msg("note_off", channel=4, note=62, time=100)]
    song = parse_midi_bytes(_file([mixed, change]))
    got = [(t.channel, t.program, t.notes["pitch"].tolist()) for t in song.tracks]
    assert got == [(6, 0, [50]), (11, 4, [70, 72]), (4, 10, [60]), (4, 20, [62])]


def test_running_status_and_meta_events_are_followed() -> None:
    """Hand-made bytes: running status, a meta event and a sysex between notes, long deltas."""
    body = bytes.fromhex(
        "00c305"  # program change, channel 3
        "00933c50"
        "8100 3c00"  # note on, then a running-status note-off 128 ticks later
        "00 ff0103 80ff41"  # a text meta event whose payload has high bytes
        "00 f003 017f7f"  # a sysex
        "00 933e50"  # note on 62 (no running status after them: symusic does not take it)
        "ff7f 3e00"  # 16383 ticks later, its note-off
        "00 d340 00 41"  # channel pressure, with running status
        "00ff2f00"
    )
    mtrk = b"MTrk" + len(body).to_bytes(4, "big") + body
    data = b"MThd" + (6).to_bytes(4, "big") + bytes.fromhex("000000010060") + mtrk
    scan = smf.scan_track(np.frombuffer(body, dtype=np.uint8))
    assert (scan.status & 0x0F).tolist() == [3] * 7
    assert scan.tick.tolist() == [0, 0, 128, 128, 128 + 16383, 128 + 16383, 128 + 16383]
    song = parse_midi_bytes(data)
    assert [(t.channel, t.program, t.notes["pitch"].tolist()) for t in song.tracks] == [(3, 5, [60, 62])]


def test_unknown_channels_are_none_never_guesses() -> None:
    # a file the scanner cannot follow: every track's channel is unknown
    tracks = [(0, False, np.array([60], dtype=np.int64))]
    assert smf.recover_channels(
        b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60MTrk\x00\x00\x00\x02\x00\xf1", tracks
    ) == [None]
    # from MusicXML, pretty_midi or code: None, and written on channels no known part uses
    song = Song(tracks=[Track(name="a", notes=notes_array([(0, 480, 60, 80)])), Track(name="b", channel=0)])
    assert song.tracks[0].channel is None
    assert write_channels(song.tracks) == [1, 0]
    with pytest.raises(ValueError, match="channel"):
        Track(channel=16)


def test_sixteen_pitched_tracks_share_the_least_used_channel(tmp_path: Path) -> None:
    # 16 pitched parts (channel 0 twice, then 1-8 and 10-15) and drums: no channel is free
    layout = [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15]
    parts = [_part(f"P{k}", ch, k, [48 + k], bars=1) for k, ch in enumerate(layout)]
    data = _file([*parts, _part("Drums", 9, 0, [36], bars=1)])
    src, out = tmp_path / "full.mid", tmp_path / "out.mid"
    src.write_bytes(data)
    assert [t.channel for t in load(src).tracks] == [*layout, 9]
    assert run_cli("-q", "insert", src, "--stem", "bass", "--engine", "rules", "-o", out) == 0
    after = _events(out.read_bytes())
    assert after[:-1] == _events(data)
    assert _channels(after[-1]) == {1}  # the lowest of the channels used once
    # a second new pitched part shares the next least-used one, never channel 9
    new = [Track(name="x", notes=notes_array([(0, 480, 60, 80)])) for _ in range(2)]
    assert write_channels([*load(src).tracks, *new])[-2:] == [1, 2]


def test_reading_channels_stays_fast() -> None:
    """A 100k-note file: the channel scan costs about what the symusic read and conversion do."""
    rng = np.random.default_rng(0)
    parts = []
    for k in range(10):
        channel = k if k < 9 else 9
        track = mido.MidiTrack([_msg("program_change", channel=channel, program=k)])
        for _ in range(10_000):
            pitch = int(rng.integers(40, 80))
            track.append(_msg("note_on", channel=channel, note=pitch, velocity=90, time=int(rng.integers(0, 60))))
            track.append(_msg("note_off", channel=channel, note=pitch, time=int(rng.integers(1, 60))))
        parts.append(track)
    data = _file(parts)
    song = from_midi_bytes(data)
    assert song.note_count == 100_000 and [t.channel for t in song.tracks] == list(range(10))

    def best(f) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return min(times)

    from midiarr.convert import from_symusic, midi_file_channels

    plain = best(lambda: from_symusic(symusic.Score.from_midi(data)))
    scan = best(lambda: midi_file_channels(data, song))
    assert scan < 3 * plain + 0.05, (scan, plain)  # generous: the machine may be shared
