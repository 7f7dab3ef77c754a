"""Converters between `Song` and the objects of other MIDI libraries.

symusic is the fast path (all MIDI reading and writing goes through it);
pretty_midi, mido and music21 are here so Python users can hand midiarr what
they already have.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
import symusic

from midiarr import smf
from midiarr.song import (
    CONTROL_DTYPE,
    NOTE_DTYPE,
    PITCH_BEND_DTYPE,
    KeySignature,
    Marker,
    Song,
    Tempo,
    TimeSignature,
    Track,
    sort_notes,
)

if TYPE_CHECKING:
    import mido
    import music21
    import pretty_midi


# ------------------------------------------------------------------ symusic
def from_symusic(score: symusic.Score) -> Song:
    """A `Song` from a symusic Score (any time unit; converted to ticks).

    A Score keeps no MIDI channels, so the tracks' are None; `from_midi_bytes` and the MIDI
    reader find them in the file (`midi_file_channels`).
    """
    if not isinstance(score.ttype, symusic.core.Tick):
        score = score.to("tick")
    tracks = []
    for tr in score.tracks:
        soa = tr.notes.numpy()
        notes = np.zeros(len(soa["time"]), dtype=NOTE_DTYPE)
        notes["start"] = soa["time"]
        notes["duration"] = soa["duration"]
        notes["pitch"] = soa["pitch"]
        notes["velocity"] = soa["velocity"]
        ctl = tr.controls.numpy()
        controls = np.zeros(len(ctl["time"]), dtype=CONTROL_DTYPE)
        controls["time"], controls["number"], controls["value"] = ctl["time"], ctl["number"], ctl["value"]
        pb = tr.pitch_bends.numpy()
        bends = np.zeros(len(pb["time"]), dtype=PITCH_BEND_DTYPE)
        bends["time"], bends["value"] = pb["time"], pb["value"]
        tracks.append(
            Track(
                name=str(tr.name),
                program=int(tr.program),
                is_drum=bool(tr.is_drum),
                notes=sort_notes(notes),
                controls=controls,
                pitch_bends=bends,
            )
        )
    return Song(
        ticks_per_beat=int(score.ticks_per_quarter),
        tracks=tracks,
        tempos=[Tempo(int(t.time), _clean_qpm(t)) for t in score.tempos],
        time_signatures=[
            TimeSignature(int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures
        ],
        key_signatures=[KeySignature(int(k.time), int(k.key), bool(k.tonality)) for k in score.key_signatures],
        markers=[Marker(int(m.time), str(m.text)) for m in score.markers],
    )


def _clean_qpm(tempo: symusic.core.TempoTick) -> float:
    """The tempo as a person wrote it (90, not 89.99995) when that stores the same microseconds."""
    qpm = float(tempo.qpm)
    for digits in (0, 2, 4):
        rounded = round(qpm, digits)
        if rounded > 0 and round(60_000_000 / rounded) == tempo.mspq:
            return rounded
    return qpm


def to_symusic(song: Song) -> symusic.Score:
    """A symusic Score (tick time) holding the song."""
    score = symusic.Score(song.ticks_per_beat)
    for t in song.tempos:
        score.tempos.append(symusic.Tempo(t.tick, qpm=t.qpm))
    for ts in song.time_signatures:
        score.time_signatures.append(symusic.TimeSignature(ts.tick, ts.numerator, ts.denominator))
    for ks in song.key_signatures:
        score.key_signatures.append(symusic.KeySignature(ks.tick, ks.key, int(ks.minor)))
    for m in song.markers:
        score.markers.append(symusic.TextMeta(m.tick, m.text))
    for track in song.tracks:
        st = symusic.Track(name=track.name, program=int(track.program), is_drum=bool(track.is_drum))
        n = track.notes
        st.notes = symusic.Note.from_numpy(
            n["start"].astype(np.int32),
            n["duration"].astype(np.int32),
            n["pitch"].astype(np.int8),
            n["velocity"].astype(np.int8),
            "tick",
        )
        if len(track.controls):
            c = track.controls
            st.controls = symusic.ControlChange.from_numpy(
                c["time"].astype(np.int32), c["number"].astype(np.uint8), c["value"].astype(np.uint8), "tick"
            )
        if len(track.pitch_bends):
            b = track.pitch_bends
            st.pitch_bends = symusic.PitchBend.from_numpy(
                b["time"].astype(np.int32), b["value"].astype(np.int32), "tick"
            )
        score.tracks.append(st)
    return score


# --------------------------------------------------------------- pretty_midi
def from_pretty_midi(pm: pretty_midi.PrettyMIDI) -> Song:
    """A `Song` from a pretty_midi object (seconds mapped to ticks by its own tempo map)."""
    tpb = int(pm.resolution)

    def tick(seconds: float) -> int:
        return int(pm.time_to_tick(seconds))

    times, qpms = pm.get_tempo_changes()
    tempos = [Tempo(tick(t), float(q)) for t, q in zip(times, qpms)]
    tracks = []
    for inst in pm.instruments:
        rows = [(tick(n.start), max(1, tick(n.end) - tick(n.start)), n.pitch, n.velocity) for n in inst.notes]
        notes = np.array(rows, dtype=NOTE_DTYPE) if rows else np.zeros(0, dtype=NOTE_DTYPE)
        controls = np.array(
            [(tick(c.time), c.number, c.value) for c in inst.control_changes], dtype=CONTROL_DTYPE
        ).reshape(-1)
        bends = np.array([(tick(b.time), b.pitch) for b in inst.pitch_bends], dtype=PITCH_BEND_DTYPE).reshape(-1)
        tracks.append(
            Track(
                name=inst.name,
                program=int(inst.program),
                is_drum=bool(inst.is_drum),
                notes=sort_notes(notes),
                controls=controls,
                pitch_bends=bends,
            )
        )
    return Song(
        ticks_per_beat=tpb,
        tracks=tracks,
        tempos=tempos,
        time_signatures=[
            TimeSignature(tick(ts.time), ts.numerator, ts.denominator) for ts in pm.time_signature_changes
        ],
        key_signatures=[
            KeySignature(tick(ks.time), *_key_number_to_signature(ks.key_number)) for ks in pm.key_signature_changes
        ],
        markers=[Marker(tick(m.time), m.text) for m in getattr(pm, "markers", [])],
    )


def _key_number_to_signature(key_number: int) -> tuple[int, bool]:
    """pretty_midi key number (0-11 major, 12-23 minor) to (sharps, minor)."""
    minor = key_number >= 12
    tonic = key_number % 12
    major_tonic = (tonic + 3) % 12 if minor else tonic
    sharps = (major_tonic * 7) % 12  # position on the circle of fifths
    if sharps > 6:
        sharps -= 12
    return sharps, minor


def to_pretty_midi(song: Song) -> pretty_midi.PrettyMIDI:
    """A pretty_midi object with the same notes, tempo, meter and keys."""
    import pretty_midi as pm_mod

    return pm_mod.PrettyMIDI(io.BytesIO(to_midi_bytes(song)))


# ---------------------------------------------------------------------- mido
def from_mido(mid: mido.MidiFile) -> Song:
    """A `Song` from a mido MidiFile (type 0 files are split by channel)."""
    buffer = io.BytesIO()
    mid.save(file=buffer)
    return from_midi_bytes(buffer.getvalue())


def to_mido(song: Song) -> mido.MidiFile:
    """A mido MidiFile (type 1) holding the song."""
    import mido as mido_mod

    return mido_mod.MidiFile(file=io.BytesIO(to_midi_bytes(song)))


# -------------------------------------------------------------------- music21
def from_music21(stream: music21.stream.Score) -> Song:
    """A `Song` from a music21 Score (parts become tracks)."""
    from midiarr.io.musicxml import from_music21 as _from

    return _from(stream)


def to_music21(song: Song) -> music21.stream.Score:
    """A music21 Score with one part per track, measures, clefs and keys."""
    from midiarr.io.musicxml import to_music21 as _to

    return _to(song)


# --------------------------------------------------------------- raw bytes
def midi_file_channels(data: bytes, song: Song) -> list[int | None]:
    """The MIDI channel of each track of ``song``, just read (`from_symusic`) from the file ``data``.

    symusic drops channels; `midiarr.smf` scans the file for them. A track whose channel cannot be
    told for certain (a file the scanner cannot follow, two groups its notes could be) gets None.
    """
    tracks = []
    for t in song.tracks:
        starts = t.notes["start"] * 128 + t.notes["pitch"]
        tracks.append((t.program, t.is_drum, np.sort(starts)))
    return smf.recover_channels(bytes(data), tracks)


def from_midi_bytes(data: bytes) -> Song:
    """Parse Standard MIDI File bytes (no validation beyond the parser's), channels included."""
    song = from_symusic(symusic.Score.from_midi(data))
    for track, channel in zip(song.tracks, midi_file_channels(data, song), strict=True):
        track.channel = channel
    return song


def write_channels(tracks: list[Track]) -> list[int]:
    """The channel each track is written on.

    A track with a known channel keeps it. Of the others (parts midiarr wrote), drums go on 9 and
    each pitched part on the lowest channel that no other track uses, so a new part never sounds
    on the user's channel (a program or controller of one would change the other); only when all
    15 pitched channels are taken does it share, the least-used one.
    """
    used = [0] * 16
    for t in tracks:
        if t.channel is not None:
            used[t.channel] += 1
    out = []
    for t in tracks:
        if t.channel is not None:
            out.append(t.channel)
            continue
        if t.is_drum:
            channel = 9
        else:
            channel = min((c for c in range(16) if c != 9), key=lambda c: (used[c], c))
        used[channel] += 1
        out.append(channel)
    return out


def to_midi_bytes(song: Song) -> bytes:
    """Standard MIDI File (type 1) bytes for the song, each track on its `write_channels` channel."""
    # symusic writes track i on a channel of its own choosing; the channels are set afterwards
    data = bytes(to_symusic(song).dumps_midi())
    return smf.set_channels(data, write_channels(song.tracks))


def from_any(obj: Any) -> Song:
    """A `Song` from a Song, symusic Score, pretty_midi, mido or music21 object."""
    if isinstance(obj, Song):
        return obj
    if isinstance(obj, symusic.Score):
        return from_symusic(obj)
    module = type(obj).__module__.split(".")[0]
    if module == "pretty_midi":
        return from_pretty_midi(obj)
    if module == "mido":
        return from_mido(obj)
    if module == "music21":
        return from_music21(obj)
    raise TypeError(f"cannot convert {type(obj).__name__} to a Song")
