"""MusicXML reader and writer (.musicxml, .mxl, .xml) through music21.

Writing quantizes onsets and ends to the nearer of a 16th or an eighth-note
triplet grid (what notation can spell), puts each track in its own part with a
clef for its role, and spells drums as unpitched notes on the usual drum-staff
positions so that MuseScore and friends show a drum part; reading maps those
positions back to General MIDI drum pitches.
"""

from __future__ import annotations

import bisect
import io
import os
import warnings
import xml.etree.ElementTree as ET
import zipfile
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from midiarr.errors import InputError, LimitError
from midiarr.io.files import read_input_bytes
from midiarr.io.limits import (
    MAX_FILE_BYTES,
    MAX_METER_NUMERATOR,
    MAX_MXL_EXPANDED_BYTES,
    MAX_MXL_RATIO,
    MAX_NOTATION_NOTES,
    MAX_NOTATION_WORK,
    MAX_XML_MEASURE_WORK,
    MAX_XML_NOTES,
    MAX_XML_NOTES_PER_MEASURE,
    METER_DENOMINATORS,
    check_song_limits,
)
from midiarr.io.musicxml_writer import add_parts_bytes, score_bytes, write_bytes
from midiarr.io.notation import DRUM_NOTATION, OTHER_DRUM_NOTEHEAD, OTHER_DRUM_SHARP_NOTEHEAD, NotationOptions
from midiarr.song import (
    NOTE_DTYPE,
    ChordSymbol,
    KeySignature,
    Song,
    Tempo,
    TimeSignature,
    Track,
    sort_notes,
)

if TYPE_CHECKING:
    import music21

MUSICXML_SUFFIXES = (".musicxml", ".mxl", ".xml")
XML_TICKS_PER_BEAT = 480
DEFAULT_VELOCITY = 80

_DRUM_FROM_NOTATION = {v: k for k, v in DRUM_NOTATION.items()}
_STEP_SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def _drum_pitch(step: str | None, octave: int | None, notehead: str) -> int:
    """GM pitch of an unpitched note from its staff position and notehead."""
    if step is None or octave is None:
        return 38
    key = (step, int(octave), notehead)
    if key in _DRUM_FROM_NOTATION:
        return _DRUM_FROM_NOTATION[key]
    midi = 12 * (int(octave) + 1) + _STEP_SEMITONES.get(step, 0)
    if notehead in (OTHER_DRUM_NOTEHEAD, OTHER_DRUM_SHARP_NOTEHEAD):
        return int(np.clip(midi + (notehead == OTHER_DRUM_SHARP_NOTEHEAD), 0, 127))
    # Unknown position from another program: the nearest table entry on the staff.
    nearest = min(DRUM_NOTATION.items(), key=lambda kv: abs(12 * (kv[1][1] + 1) + _STEP_SEMITONES[kv[1][0]] - midi))
    return nearest[0]


def _route_music21_warnings() -> None:
    """Send music21's own warnings (it writes them straight to stderr) through `warnings`, so the
    command line can keep them out of a one-line error unless --verbose is given."""
    from music21 import environment

    if getattr(environment.Environment.warn, "_midiarr", False):
        return

    def warn(self: environment.Environment, msg: object, header: str | None = None) -> None:
        text = " ".join(str(m) for m in msg) if isinstance(msg, list | tuple) else str(msg)
        warnings.warn(f"music21: {text.strip()}", stacklevel=2)

    warn._midiarr = True  # type: ignore[attr-defined]
    environment.Environment.warn = warn  # type: ignore[method-assign]


# ----------------------------------------------------------------- reading
def read_musicxml(path: str | os.PathLike[str]) -> Song:
    """Read a MusicXML file (.musicxml, .xml or compressed .mxl) into a `Song`."""
    name = str(path)
    parsed = parse_musicxml_score(path)
    try:
        song = from_music21(parsed)
    except InputError:
        raise
    except Exception as exc:  # music21 objects that parsed but hold values it cannot interpret
        raise InputError(f"{name}: broken MusicXML ({type(exc).__name__}: {_first_line(exc)})") from None
    check_song_limits(song, name)
    song.metadata.setdefault("title", _title(parsed) or Path(path).stem)
    song.metadata["source"] = name
    return song


def unpack_mxl(data: bytes, name: str) -> bytes:
    """The score inside a compressed MusicXML (.mxl) archive, expanded under a size and ratio cap.

    Sizes stated in the archive are not trusted: the score is inflated in pieces and refused as
    soon as it passes either cap, so a zip bomb costs no more memory than the cap.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
        if len(names) > 1000:
            raise LimitError(f"{name}: {len(names)} files in the archive; a MusicXML archive holds a few")
        root = _mxl_rootfile(archive, names, name)
    except InputError:
        raise
    except Exception as exc:  # as below: a damaged archive's central directory fails in many ways
        raise InputError(f"{name}: broken compressed MusicXML ({type(exc).__name__}: {_first_line(exc)})") from None
    cap = min(MAX_MXL_EXPANDED_BYTES, max(1 << 20, MAX_MXL_RATIO * len(data)))
    out = bytearray()
    try:
        with archive.open(root) as fh:
            while chunk := fh.read(1 << 20):
                out += chunk
                if len(out) > cap:
                    raise LimitError(
                        f"{name}: the score expands past {cap / 1e6:.0f} MB from {len(data) / 1e6:.1f} MB "
                        "(a zip bomb, or far beyond any real score)"
                    )
    except InputError:
        raise
    except Exception as exc:  # a damaged archive fails in zipfile, zlib or struct with many types
        raise InputError(f"{name}: broken compressed MusicXML ({type(exc).__name__}: {_first_line(exc)})") from None
    return bytes(out)


def _mxl_rootfile(archive: zipfile.ZipFile, names: list[str], name: str) -> str:
    """The score's name in the archive: META-INF/container.xml's rootfile, else its one score file."""
    if "META-INF/container.xml" in names:
        info = archive.getinfo("META-INF/container.xml")
        if info.file_size <= 1 << 20:
            try:
                container = ET.fromstring(archive.read(info))
            except Exception:  # a damaged container: fall back to the archive's one score file
                container = None
            if container is not None:
                for el in container.iter():
                    if el.tag.rsplit("}", 1)[-1] == "rootfile" and el.get("full-path") in names:
                        return str(el.get("full-path"))
    scores = [n for n in names if n.lower().endswith((".xml", ".musicxml")) and not n.startswith("META-INF/")]
    if not scores:
        raise InputError(f"{name}: compressed MusicXML without a score file inside")
    return scores[0]


def _check_xml_work(root: ET.Element, name: str) -> None:
    """Refuse a score whose reading would run for minutes: music21's cost grows with notes per
    measure and with the square of each part's measure count (it re-measures the part as each
    measure is added)."""
    if root.tag != "score-partwise":
        if root.tag == "score-timewise":
            raise InputError(f"{name}: timewise MusicXML is not supported; save it as partwise MusicXML")
        raise InputError(f"{name}: not a MusicXML score (root element <{root.tag[:40]}>)")
    parts = root.findall("part")
    if not parts:
        raise InputError(f"{name}: the score has no parts")
    declared = {sp.get("id") for sp in root.iterfind("part-list/score-part")}
    missing = [p.get("id") or "?" for p in parts if p.get("id") not in declared]
    if missing:
        raise InputError(f"{name}: part {missing[0][:40]!r} is not declared in the part list")
    for time_el in root.iter("time"):
        _check_xml_meter(time_el, name)
    notes = 0
    measure_work = 0
    for part in parts:
        measures = part.findall("measure")
        measure_work += len(measures) ** 2
        for measure in measures:
            count = sum(1 for _ in measure.iter("note"))
            if count > MAX_XML_NOTES_PER_MEASURE:
                raise LimitError(
                    f"{name}: measure {measure.get('number', '?')[:12]} of part {part.get('id', '?')[:40]} holds "
                    f"{count} notes, over the {MAX_XML_NOTES_PER_MEASURE} limit"
                )
            notes += count
    if notes > MAX_XML_NOTES:
        raise LimitError(f"{name}: {notes} notes, over the {MAX_XML_NOTES} limit for MusicXML (MIDI takes more)")
    if measure_work > MAX_XML_MEASURE_WORK:
        most = max(len(p.findall("measure")) for p in parts)
        fits = int((MAX_XML_MEASURE_WORK / len(parts)) ** 0.5)
        raise LimitError(
            f"{name}: {most} measures in {len(parts)} part(s) is more than midiarr reads from MusicXML "
            f"(up to about {fits} measures with {len(parts)} part(s)); save it as MIDI, or split the score"
        )


def _check_xml_meter(time_el: ET.Element, name: str) -> None:
    """The meter of a <time> element, checked as `check_song_values` checks a read song's: music21
    spends minutes building the beat hierarchy of a 999-beat bar before any later check could run."""
    beats = [b.text or "" for b in time_el.iter("beats")]
    types = [t.text or "" for t in time_el.iter("beat-type")]
    shown = f"{'+'.join(beats)[:20]}/{'+'.join(types)[:20]}"
    try:
        numerator = sum(int(part) for b in beats for part in b.split("+"))
        denominators = [int(t) for t in types]
    except ValueError:
        raise InputError(f"{name}: time signature {shown} is not a meter") from None
    bad_denominator = any(d not in METER_DENOMINATORS for d in denominators)
    if beats and (not 1 <= numerator <= MAX_METER_NUMERATOR or bad_denominator):
        raise InputError(
            f"{name}: time signature {shown} is not a meter "
            f"(numerator 1-{MAX_METER_NUMERATOR}, denominator a power of two up to 128)"
        )


def parse_musicxml_score(path: str | os.PathLike[str]) -> music21.stream.Score:
    """The music21 Score of a MusicXML file, with one clear `InputError` for anything broken."""
    data = read_input_bytes(path, MAX_FILE_BYTES)
    return parse_musicxml_bytes(data, str(path), Path(path).suffix.lower() == ".mxl")


def parse_musicxml_bytes(data: bytes, name: str, compressed: bool | None = None) -> music21.stream.Score:
    """The music21 Score of MusicXML bytes (plain, or a .mxl archive when ``compressed``)."""
    if not data.strip():
        raise InputError(f"{name}: empty file")
    if compressed is None:
        compressed = data.startswith(b"PK")
    if compressed:
        if not data.startswith(b"PK"):
            raise InputError(f"{name}: not a compressed MusicXML (.mxl) file")
        data = unpack_mxl(data, name)
    head = data[:4096]
    if b"score-partwise" not in head and b"score-timewise" not in head:
        raise InputError(f"{name}: not a MusicXML score (no score-partwise element)")
    try:
        # expat resolves no external entity (no XXE) and refuses entity expansion bombs
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InputError(f"{name}: broken MusicXML ({_first_line(exc)})") from None
    except LookupError as exc:  # an encoding the declaration names and Python does not know
        raise InputError(f"{name}: broken MusicXML ({_first_line(exc)})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise InputError(f"{name}: broken MusicXML ({type(exc).__name__})") from None
    _check_xml_work(root, name)
    _route_music21_warnings()
    import music21
    from music21.musicxml import xmlToM21

    importer = xmlToM21.MusicXMLImporter()
    importer.xmlRoot = root
    try:
        importer.xmlRootToScore(root, importer.stream)
    except music21.exceptions21.Music21Exception as exc:
        raise InputError(f"{name}: broken MusicXML ({_first_line(exc)})") from None
    except RecursionError:
        raise InputError(f"{name}: broken MusicXML (nested too deeply)") from None
    except Exception as exc:  # music21's XML layer raises many unrelated types on bad input
        raise InputError(f"{name}: broken MusicXML ({type(exc).__name__}: {_first_line(exc)})") from None
    parsed = importer.stream
    if not isinstance(parsed, music21.stream.Score):
        parsed = music21.stream.Score([parsed])
    parsed.midiarr_drum_maps = drum_maps(root)
    return parsed


def drum_maps(root: ET.Element) -> list[dict[tuple[str, int, str], int]]:
    """Per part, the General MIDI note of each drum-staff position (step, octave, notehead), from the
    instruments the score declares (<midi-unpitched>) and the <instrument> each unpitched note names.

    music21 reads one instrument per part, so without this a MuseScore drum part would come back by staff
    position alone, which differs between programs."""
    maps = []
    for part in root.findall("part"):
        sp = root.find(f"part-list/score-part[@id='{part.get('id')}']") if "'" not in (part.get("id") or "") else None
        unpitched: dict[str, int] = {}
        for mi in sp.findall("midi-instrument") if sp is not None else []:
            text = (mi.findtext("midi-unpitched") or "").strip()
            if text.isdigit() and 1 <= int(text) <= 128:
                unpitched[mi.get("id") or ""] = int(text) - 1
        votes: dict[tuple[str, int, str], dict[int, int]] = {}
        if unpitched:
            for note_el in part.iter("note"):
                u, inst = note_el.find("unpitched"), note_el.find("instrument")
                if u is None or inst is None or inst.get("id") not in unpitched:
                    continue
                step, octave = (u.findtext("display-step") or "").strip(), (u.findtext("display-octave") or "").strip()
                if not octave.isdigit():
                    continue
                head = (note_el.findtext("notehead") or "normal").strip() or "normal"
                key = (step, int(octave), head)
                counts = votes.setdefault(key, {})
                counts[unpitched[inst.get("id")]] = counts.get(unpitched[inst.get("id")], 0) + 1
        maps.append({key: max(c, key=c.get) for key, c in votes.items()})
    return maps


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _title(score: music21.stream.Score) -> str | None:
    md = score.metadata
    return (md.title or md.movementName) if md is not None else None


def from_music21(score: music21.stream.Score) -> Song:
    """A `Song` from a music21 Score: one track per part, ties merged, pickups padded to a full bar."""
    _route_music21_warnings()
    from music21 import dynamics, instrument, key, meter, note, stream

    tpb = XML_TICKS_PER_BEAT
    parts = list(score.parts) or [score]
    first_measure = parts[0].getElementsByClass(stream.Measure).first() if parts else None
    pickup = Fraction(first_measure.paddingLeft) if first_measure is not None else Fraction(0)

    def to_tick(offset: float | Fraction) -> int:
        return round((Fraction(offset) + pickup) * tpb)

    tracks: list[Track] = []
    maps = getattr(score, "midiarr_drum_maps", None) or []
    for index, part in enumerate(parts):
        drum_map = maps[index] if index < len(maps) else {}
        # Ties are merged here rather than by music21's stripTies, which deep-copies the whole part
        # (minutes on a long score); the part itself is left as it was.
        flat = part.flatten()
        inst = part.getInstrument(returnDefault=True)
        unpitched = any(isinstance(n, note.Unpitched) for n in flat.notes[:64])
        is_drum = unpitched or isinstance(inst, instrument.UnpitchedPercussion) or inst.midiChannel == 9
        dyn_marks = [(Fraction(d.offset), d.volumeScalar) for d in flat.getElementsByClass(dynamics.Dynamic)]
        dyn_offsets = [off for off, _ in dyn_marks]

        rows: list[tuple[int, int, int, int]] = []
        tied_from: dict[int, int] = {}  # pitch -> the row a tie on that pitch extends
        for el in flat.notes:
            ql = Fraction(el.duration.quarterLength)
            if ql <= 0:  # grace notes take no time in the score
                continue
            offset = Fraction(el.offset)
            start, dur = to_tick(offset), max(1, round(ql * tpb))
            members = list(el.notes) if hasattr(el, "notes") and el.notes else [el]
            chord_velocity = _velocity_of(el, offset, dyn_marks, dyn_offsets)
            for m in members:
                if isinstance(m, note.Unpitched):
                    head = m.notehead or "normal"
                    pitch = drum_map.get((m.displayStep, m.displayOctave, head))
                    if pitch is None:
                        pitch = _drum_pitch(m.displayStep, m.displayOctave, head)
                else:
                    pitch = int(m.pitch.midi)
                pitch = int(np.clip(pitch, 0, 127))
                tie = m.tie if m.tie is not None else (el.tie if m is not el else None)
                tie_type = tie.type if tie is not None else None
                if tie_type in ("continue", "stop") and pitch in tied_from:
                    row = tied_from[pitch]
                    first, length, _, vel = rows[row]
                    rows[row] = (first, max(length, start + dur - first), pitch, vel)
                    if tie_type == "stop":
                        del tied_from[pitch]
                    continue
                vel = int(np.clip(m.volume.velocity, 1, 127)) if m.volume.velocity is not None else chord_velocity
                rows.append((start, dur, pitch, vel))
                if tie_type in ("start", "continue"):
                    tied_from[pitch] = len(rows) - 1
                else:
                    tied_from.pop(pitch, None)
        notes = sort_notes(np.array(rows, dtype=NOTE_DTYPE)) if rows else np.zeros(0, dtype=NOTE_DTYPE)
        program = inst.midiProgram if inst.midiProgram is not None else 0
        name = part.partName or inst.partName or inst.instrumentName or ""
        tracks.append(Track(name=str(name), program=int(program) % 128, is_drum=bool(is_drum), notes=notes))

    ref = parts[0].flatten() if parts else score.flatten()
    time_sigs = [
        TimeSignature(to_tick(ts.offset), int(ts.numerator), int(ts.denominator))
        for ts in ref.getElementsByClass(meter.TimeSignature)
    ]
    if pickup and time_sigs:
        time_sigs[0] = TimeSignature(0, time_sigs[0].numerator, time_sigs[0].denominator)
    keys = []
    for ks in ref.getElementsByClass(key.KeySignature):
        minor = isinstance(ks, key.Key) and ks.mode == "minor"
        keys.append(KeySignature(to_tick(ks.offset), int(ks.sharps), minor))
    if pickup and keys and keys[0].tick == to_tick(0):  # the opening key holds from the (padded) start
        keys[0] = KeySignature(0, keys[0].key, keys[0].minor)
    chord_symbols = _chord_symbols(parts, to_tick)
    tempos = []
    for start, _end, mark in score.metronomeMarkBoundaries():
        qpm = mark.getQuarterBPM()
        if qpm and (not tempos or tempos[-1].qpm != qpm):
            tempos.append(Tempo(0 if start == 0 else to_tick(start), float(qpm)))
    return Song(
        ticks_per_beat=tpb,
        tracks=tracks,
        tempos=_dedupe_by_tick(tempos),
        time_signatures=_dedupe_by_tick(time_sigs),
        key_signatures=_dedupe_by_tick(keys),
        chord_symbols=chord_symbols,
    )


# MusicXML harmony kinds as midiarr's chord qualities (the nearest of them where midiarr has no such chord)
KIND_QUALITIES = {
    "major": "maj", "minor": "min", "dominant": "7", "dominant-seventh": "7", "minor-seventh": "m7",
    "major-seventh": "maj7", "diminished": "dim", "diminished-seventh": "dim", "half-diminished": "dim",
    "suspended-fourth": "sus4", "suspended-second": "sus4", "augmented": "maj", "augmented-seventh": "7",
    "major-sixth": "maj", "minor-sixth": "min", "dominant-ninth": "7", "major-ninth": "maj7",
    "minor-ninth": "m7", "dominant-11th": "7", "major-11th": "maj7", "minor-11th": "m7", "dominant-13th": "7",
    "major-13th": "maj7", "minor-13th": "m7", "minor-major": "min", "power": "maj", "pedal": "maj",
}  # fmt: skip


def _chord_symbols(parts: list, to_tick: object) -> list[ChordSymbol]:
    """The chord symbols (<harmony>) of the first part that has any, in ticks."""
    from music21 import harmony

    for part in parts:
        found = list(part.flatten().getElementsByClass(harmony.ChordSymbol))
        if not found:
            continue
        out = []
        for cs in found:
            tick = max(0, to_tick(cs.offset))
            if isinstance(cs, harmony.NoChord) or cs.root() is None:
                out.append(ChordSymbol(tick, None))
                continue
            bass = cs.bass()
            root = int(cs.root().pitchClass)
            slash = int(bass.pitchClass) if bass is not None and bass.pitchClass != root else None
            out.append(ChordSymbol(tick, root, KIND_QUALITIES.get(str(cs.chordKind), "maj"), slash))
        return _dedupe_by_tick(out)
    return []


def _velocity_of(
    el: music21.base.Music21Object,
    offset: Fraction,
    dyn_marks: list[tuple[Fraction, float]],
    dyn_offsets: list[Fraction],
) -> int:
    """A note's velocity: its own, else the last dynamic mark at or before it, else a default."""
    if el.volume.velocity is not None:
        return int(np.clip(el.volume.velocity, 1, 127))
    i = bisect.bisect_right(dyn_offsets, offset)
    scalar = dyn_marks[i - 1][1] if i else None
    return int(np.clip(round(scalar * 127), 1, 127)) if scalar is not None else DEFAULT_VELOCITY


def _dedupe_by_tick(items: list) -> list:
    """Keep the last event at each tick (parts repeat the same signature)."""
    by_tick = {item.tick: item for item in items}
    return [by_tick[t] for t in sorted(by_tick)]


# ----------------------------------------------------------------- writing
def to_music21(
    song: Song, roles: dict[int, str] | None = None, options: NotationOptions | None = None
) -> music21.stream.Score:
    """The song as a music21 Score: midiarr's MusicXML of it, read back by music21."""
    return parse_musicxml_bytes(score_bytes(song, options, roles), song.metadata.get("title") or "the song")


def pickup_ticks(score: music21.stream.Score, ticks_per_beat: int = XML_TICKS_PER_BEAT) -> int:
    """Length of the score's pickup (anacrusis) in ticks, 0 when the first bar is full."""
    _route_music21_warnings()
    from music21 import stream

    parts = list(score.parts) or [score]
    first = parts[0].getElementsByClass(stream.Measure).first()
    return round(Fraction(first.paddingLeft) * ticks_per_beat) if first is not None else 0


def add_parts(
    path: str | os.PathLike[str], song: Song, indices: list[int], options: NotationOptions | None = None
) -> bytes:
    """The MusicXML score at ``path`` with tracks ``indices`` of ``song`` (read from it) added as new parts.

    The original parts stay byte for byte as they were (articulations, lyrics, layout and all); the new parts
    get measures on the same bar lines and numbers, a clef for their role, the score's pickup when it has one,
    and chord symbols of the harmony midiarr heard (unless ``options.chord_symbols`` is off)."""
    check_notation_work(song, song.metadata.get("title") or "the song")
    data = read_input_bytes(path, MAX_FILE_BYTES)
    name = str(path)
    if Path(path).suffix.lower() == ".mxl" or data.startswith(b"PK"):
        data = unpack_mxl(data, name)
    pickup = pickup_ticks(parse_musicxml_bytes(data, name, compressed=False), song.ticks_per_beat)
    tracks = list(song.tracks)
    for i in indices:
        t = song.tracks[i].copy()
        t.notes = t.notes[t.notes["start"] >= pickup]  # nothing may sound before the pickup begins
        tracks[i] = t
    return add_parts_bytes(data, name, song.with_tracks(tracks), list(indices), pickup, options)


def check_notation_work(song: Song, name: str) -> None:
    """Refuse a song whose notation would take minutes: the notation step's cost grows with the
    square of each part's bar count and with its notes."""
    bars = song.num_bars
    parts = max(1, len(song.tracks))
    if song.note_count > MAX_NOTATION_NOTES:
        raise LimitError(
            f"{name}: {song.note_count} notes is more than midiarr notates as MusicXML "
            f"({MAX_NOTATION_NOTES}); write a .mid file, or convert a part of the song"
        )
    if parts * bars**2 > MAX_NOTATION_WORK:
        most = int((MAX_NOTATION_WORK / parts) ** 0.5)
        raise LimitError(
            f"{name}: {bars} bars in {parts} parts is more than midiarr notates as MusicXML "
            f"(up to {most} bars with {parts} parts); write a .mid file, or convert a part of the song"
        )


def write_musicxml(
    song: Song,
    path: str | os.PathLike[str],
    options: NotationOptions | None = None,
    chord_symbols_for: list[int] | tuple[int, ...] = (),
) -> Path:
    """Write MusicXML (.musicxml/.xml plain, .mxl compressed), atomically.

    ``chord_symbols_for``: the tracks (midiarr's new parts) that get the song's chords above them."""
    check_notation_work(song, str(path))
    return write_bytes(path, score_bytes(song, options, chord_symbols_for=chord_symbols_for))
