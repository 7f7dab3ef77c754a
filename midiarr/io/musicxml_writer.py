"""MusicXML writer: a `Song` (or new parts for a user's score) as partwise MusicXML 4.0.

The layout (voices, values, ties, beams) comes from `midiarr.io.notation`; this module spells pitches in the
key, writes instruments so that notation programs play each part on the right channel and sound (drums on
MIDI channel 10, one instrument per kit piece with its General MIDI note), and places chord symbols, tempo
marks, meters and keys.

A part added to a user's score is spliced into the file's own text: every byte of the original parts stays
as it was.
"""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np

from midiarr.errors import InputError, OutputError
from midiarr.io.files import atomic_write_bytes
from midiarr.io.notation import (
    Element,
    Measure,
    MeasureLayout,
    NotationOptions,
    divisions_for,
    drum_position,
    layout_track,
    measure_grid,
)
from midiarr.song import ChordSymbol, Song, Track

DOCTYPE = (
    '<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 Partwise//EN" '
    '"http://www.musicxml.org/dtds/partwise.dtd">'
)
# Pitch spellings by pitch class: sharps for sharp keys, flats for flat keys, the usual mix in C.
_SHARPS = [
    ("C", 0),
    ("C", 1),
    ("D", 0),
    ("D", 1),
    ("E", 0),
    ("F", 0),
    ("F", 1),
    ("G", 0),
    ("G", 1),
    ("A", 0),
    ("A", 1),
    ("B", 0),
]
_FLATS = [
    ("C", 0),
    ("D", -1),
    ("D", 0),
    ("E", -1),
    ("E", 0),
    ("F", 0),
    ("G", -1),
    ("G", 0),
    ("A", -1),
    ("A", 0),
    ("B", -1),
    ("B", 0),
]
_C_MAJOR = [
    ("C", 0),
    ("C", 1),
    ("D", 0),
    ("E", -1),
    ("E", 0),
    ("F", 0),
    ("F", 1),
    ("G", 0),
    ("A", -1),
    ("A", 0),
    ("B", -1),
    ("B", 0),
]
_SHARP_ORDER = "FCGDAEB"
_ACCIDENTAL = {-2: "flat-flat", -1: "flat", 0: "natural", 1: "sharp", 2: "double-sharp"}
# midiarr's chord qualities as MusicXML harmony kinds, with the text a chart prints
HARMONY_KINDS = {
    "maj": ("major", ""),
    "min": ("minor", "m"),
    "7": ("dominant", "7"),
    "m7": ("minor-seventh", "m7"),
    "maj7": ("major-seventh", "maj7"),
    "dim": ("diminished", "dim"),
    "sus4": ("suspended-fourth", "sus4"),
}
HIGHLIGHT = "#D62728"  # the new part's colour, as in the piano rolls (plots.NEW_COLOR)
GM_DRUM_NAMES = {
    35: "Acoustic Bass Drum", 36: "Bass Drum", 37: "Side Stick", 38: "Acoustic Snare", 39: "Hand Clap",
    40: "Electric Snare", 41: "Low Floor Tom", 42: "Closed Hi-Hat", 43: "High Floor Tom", 44: "Pedal Hi-Hat",
    45: "Low Tom", 46: "Open Hi-Hat", 47: "Low-Mid Tom", 48: "Hi-Mid Tom", 49: "Crash Cymbal 1", 50: "High Tom",
    51: "Ride Cymbal 1", 52: "Chinese Cymbal", 53: "Ride Bell", 54: "Tambourine", 55: "Splash Cymbal",
    56: "Cowbell", 57: "Crash Cymbal 2", 58: "Vibraslap", 59: "Ride Cymbal 2", 60: "Hi Bongo", 61: "Low Bongo",
    62: "Mute Hi Conga", 63: "Open Hi Conga", 64: "Low Conga", 65: "High Timbale", 66: "Low Timbale",
    67: "High Agogo", 68: "Low Agogo", 69: "Cabasa", 70: "Maracas", 71: "Short Whistle", 72: "Long Whistle",
    73: "Short Guiro", 74: "Long Guiro", 75: "Claves", 76: "Hi Wood Block", 77: "Low Wood Block",
    78: "Mute Cuica", 79: "Open Cuica", 80: "Mute Triangle", 81: "Open Triangle",
}  # fmt: skip


def spell(pitch: int, fifths: int) -> tuple[str, int, int]:
    """(step, alter, octave) of a MIDI pitch in a key of ``fifths`` sharps (negative: flats)."""
    table = _SHARPS if fifths > 0 else _FLATS if fifths < 0 else _C_MAJOR
    step, alter = table[pitch % 12]
    return step, alter, pitch // 12 - 1


def key_alters(fifths: int) -> dict[str, int]:
    """The alteration the key signature gives each step."""
    if fifths >= 0:
        return {s: 1 for s in _SHARP_ORDER[:fifths]}
    return {s: -1 for s in _SHARP_ORDER[::-1][:-fifths]}


def clef_of(track: Track, role: str | None) -> tuple[str, int, int]:
    """(sign, line, octave change): bass clef for bass, treble-8vb for guitar, else by the part's median pitch."""
    if track.is_drum:
        return "percussion", 2, 0
    if role == "bass":
        return "F", 4, 0
    if role == "guitar":
        return "G", 2, -1
    median = float(np.median(track.notes["pitch"])) if len(track.notes) else 60.0
    return ("F", 4, 0) if median < 55 else ("G", 2, 0)


def _sub(parent: ET.Element, tag: str, value: object = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.replace("_", "-"): v for k, v in attrs.items()})
    if value is not None:
        el.text = str(value)
    return el


def _number(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


class _PartWriter:
    """Serializes one laid-out track as a <score-part> and a <part>."""

    def __init__(
        self,
        song: Song,
        track: Track,
        part_id: str,
        role: str | None,
        measures: list[Measure],
        divisions: int,
        options: NotationOptions,
        channel: int,
        color: str | None = None,
    ) -> None:
        self.song, self.track, self.part_id, self.role = song, track, part_id, role
        self.color = color  # every note of the part drawn in this colour (a score view's new part)
        self.measures, self.q, self.options, self.channel = measures, divisions, options, channel
        self.layouts = layout_track(track, measures, song.ticks_per_beat, divisions, options, role)

    # -- positions on the song's timeline, as (measure index, local position)
    def _place(self, tick: int) -> tuple[int, int] | None:
        d = round(tick * self.q / self.song.ticks_per_beat)
        first = self.measures[0]
        if d < first.start:
            return None
        for i, m in enumerate(self.measures):
            if d < m.start + m.length:
                return i, d - m.start
        return None

    def score_part(self, name: str) -> ET.Element:
        sp = ET.Element("score-part", {"id": self.part_id})
        _sub(sp, "part-name", name)
        if self.track.is_drum:
            pieces = sorted({int(p) for p in self.track.notes["pitch"].tolist()}) or [38]
            for p in pieces:
                inst = _sub(sp, "score-instrument", id=f"{self.part_id}-I{p + 1}")
                _sub(inst, "instrument-name", GM_DRUM_NAMES.get(p, f"Percussion {p}"))
            for p in pieces:
                mi = _sub(sp, "midi-instrument", id=f"{self.part_id}-I{p + 1}")
                _sub(mi, "midi-channel", 10)
                _sub(mi, "midi-program", 1)
                _sub(mi, "midi-unpitched", p + 1)
        else:
            inst = _sub(sp, "score-instrument", id=f"{self.part_id}-I1")
            _sub(inst, "instrument-name", name)
            mi = _sub(sp, "midi-instrument", id=f"{self.part_id}-I1")
            _sub(mi, "midi-channel", self.channel)
            _sub(mi, "midi-program", int(self.track.program) + 1)
        return sp

    def part(
        self,
        numbers: list[tuple[str, bool]],
        tempos: bool,
        chords: list | None,
    ) -> ET.Element:
        part = ET.Element("part", {"id": self.part_id})
        song = self.song
        keys: dict[int, tuple[int, bool]] = {}
        for ks in song.key_signatures:
            placed = self._place(ks.tick)
            index = placed[0] if placed else 0
            keys[index] = (int(np.clip(ks.key, -7, 7)), bool(ks.minor))
        anchors: dict[int, list[tuple[int, str, object]]] = {}  # measure -> (position, kind, what)
        if tempos:
            for t in song.tempos:
                placed = self._place(t.tick)
                if placed is not None:
                    anchors.setdefault(placed[0], []).append((placed[1], "tempo", t.qpm))
        for c in chords or []:
            placed = self._place(c.tick)
            if placed is not None:
                anchors.setdefault(placed[0], []).append((placed[1], "harmony", c))
        fifths_now = 0
        previous_meter = None
        for i, (layout, (number, implicit)) in enumerate(zip(self.layouts, numbers, strict=True)):
            m = layout.measure
            attrs = {"number": number}
            if implicit:
                attrs["implicit"] = "yes"
            measure = _sub(part, "measure", **attrs)
            meter = (m.numerator, m.denominator)
            attributes = ET.Element("attributes")
            if i == 0:
                _sub(attributes, "divisions", self.q)
            if i in keys or i == 0:
                fifths_now, minor = keys.get(i, (0, False))
                if not self.track.is_drum:  # a drum staff has no key
                    key = _sub(attributes, "key")
                    _sub(key, "fifths", fifths_now)
                    _sub(key, "mode", "minor" if minor else "major")
            if meter != previous_meter:
                time = _sub(attributes, "time")
                _sub(time, "beats", m.numerator)
                _sub(time, "beat-type", m.denominator)
                previous_meter = meter
            if i == 0:
                sign, line, octave = clef_of(self.track, self.role)
                clef = _sub(attributes, "clef")
                _sub(clef, "sign", sign)
                _sub(clef, "line", line)
                if octave:
                    _sub(clef, "clef-octave-change", octave)
            if len(attributes):
                measure.append(attributes)
            placed = sorted(anchors.get(i, []), key=lambda a: (a[0], a[1]))
            self._measure(measure, layout, fifths_now, placed)
        return part

    @staticmethod
    def _anchor(kind: str, what: object, offset: int, fifths: int) -> ET.Element:
        """A tempo mark (a direction) or a chord symbol (a harmony), ``offset`` divisions after the next note."""
        if kind == "tempo":
            node = ET.Element("direction", {"placement": "above"})
            met = _sub(_sub(node, "direction-type"), "metronome", parentheses="no")
            _sub(met, "beat-unit", "quarter")
            _sub(met, "per-minute", _number(float(what)))
        else:
            node = ET.Element("harmony", {"print-frame": "no"})
            if what.root is None:  # N.C.: MusicXML wants a root even for kind "none"
                _sub(_sub(node, "root"), "root-step", "C")
                _sub(node, "kind", "none", text="N.C.")
            else:
                root = _sub(node, "root")
                step, alter, _ = spell(what.root, fifths)
                _sub(root, "root-step", step)
                if alter:
                    _sub(root, "root-alter", alter)
                name, text = HARMONY_KINDS.get(what.quality, ("major", ""))
                _sub(node, "kind", name, text=text)
                if what.bass is not None:
                    bass = _sub(node, "bass")
                    step, alter, _ = spell(what.bass, fifths)
                    _sub(bass, "bass-step", step)
                    if alter:
                        _sub(bass, "bass-alter", alter)
        if offset:
            _sub(node, "offset", offset)
        if kind == "tempo":
            _sub(node, "sound", tempo=_number(float(what)))
        return node

    def _measure(
        self, measure: ET.Element, layout: MeasureLayout, fifths: int, anchors: list[tuple[int, str, object]]
    ) -> None:
        m = layout.measure
        accidentals = self._accidentals(layout, fifths)
        many = len(layout.voices) > 1
        pending = list(anchors)
        for n, (voice, elements) in enumerate(layout.voices.items()):
            if n:
                backup = _sub(measure, "backup")
                _sub(backup, "duration", m.length)
            for el in elements:
                while n == 0 and pending and pending[0][0] < el.end:
                    pos, kind, what = pending.pop(0)
                    measure.append(self._anchor(kind, what, pos - el.start, fifths))
                self._element(measure, el, voice, many, accidentals, fifths)

    def _accidentals(self, layout: MeasureLayout, fifths: int) -> dict[tuple[int, int, int], str]:
        """The accidental printed on each (voice, element start, pitch), by the measure's running state."""
        base = key_alters(fifths)
        state: dict[tuple[str, int], int] = {}
        out: dict[tuple[int, int, int], str] = {}
        events = sorted(
            (el.start, voice, p)
            for voice, elements in layout.voices.items()
            for el in elements
            if el.pitches and not el.tie_stop
            for p in el.pitches
        )
        for start, voice, p in events:
            step, alter, octave = spell(p, fifths)
            current = state.get((step, octave), base.get(step, 0))
            if alter != current:
                out[(voice, start, p)] = _ACCIDENTAL[alter]
                state[(step, octave)] = alter
        return out

    def _element(
        self,
        measure: ET.Element,
        el: Element,
        voice: int,
        many: bool,
        accidentals: dict[tuple[int, int, int], str],
        fifths: int,
    ) -> None:
        drum = self.track.is_drum
        members = list(zip(el.pitches, el.velocities, strict=True)) or [(None, None)]
        for j, (pitch, velocity) in enumerate(members):
            attrs = {} if velocity is None else {"dynamics": _number(velocity / 0.9)}
            if self.color and velocity is not None:
                attrs["color"] = self.color
            note = _sub(measure, "note", **attrs)
            if j:
                _sub(note, "chord")
            if pitch is None:
                rest = _sub(note, "rest")
                if el.measure_rest:
                    rest.set("measure", "yes")
            elif drum:
                step, octave, head = drum_position(pitch)
                unpitched = _sub(note, "unpitched")
                _sub(unpitched, "display-step", step)
                _sub(unpitched, "display-octave", octave)
            else:
                step, alter, octave = spell(pitch, fifths)
                p = _sub(note, "pitch")
                _sub(p, "step", step)
                if alter:
                    _sub(p, "alter", alter)
                _sub(p, "octave", octave)
            _sub(note, "duration", el.length)
            if pitch is not None and el.tie_stop:
                _sub(note, "tie", type="stop")
            if pitch is not None and el.tie_start:
                _sub(note, "tie", type="start")
            if drum and pitch is not None:
                _sub(note, "instrument", id=f"{self.part_id}-I{pitch + 1}")
            _sub(note, "voice", voice)
            if not el.measure_rest:
                _sub(note, "type", el.type)
                for _ in range(el.dots):
                    _sub(note, "dot")
            if pitch is not None and not drum and (voice, el.start, pitch) in accidentals:
                _sub(note, "accidental", accidentals[(voice, el.start, pitch)])
            if el.triplet:
                tm = _sub(note, "time-modification")
                _sub(tm, "actual-notes", 3)
                _sub(tm, "normal-notes", 2)
            if pitch is not None and (drum or many):
                _sub(note, "stem", "up" if voice % 2 else "down")
            if drum and pitch is not None and head != "normal":
                _sub(note, "notehead", head)
            if j == 0:
                for level, kind in sorted(el.beams.items()):
                    _sub(note, "beam", kind, number=str(level))
            notations = ET.Element("notations")
            if pitch is not None and el.tie_stop:
                _sub(notations, "tied", type="stop")
            if pitch is not None and el.tie_start:
                _sub(notations, "tied", type="start")
            if j == 0 and el.tuplet:
                for kind in el.tuplet.split("-"):
                    _sub(notations, "tuplet", type=kind, bracket="yes")
            if len(notations):
                note.append(notations)


def _channels(song: Song) -> list[int]:
    """A MIDI channel (1-16) per track: 10 for drums, the others in turn around it."""
    free = [c for c in range(1, 17) if c != 10]
    out, k = [], 0
    for t in song.tracks:
        if t.is_drum:
            out.append(10)
        else:
            out.append(free[k % len(free)])
            k += 1
    return out


def _parts_xml(
    song: Song,
    indices: list[int],
    roles: dict[int, str],
    options: NotationOptions,
    measures_of: callable,
    numbers: list[tuple[str, bool]] | None,
    id_prefix: str,
    tempo_part: int | None,
    chord_parts: set[int],
    highlight: frozenset[int] = frozenset(),
) -> list[tuple[ET.Element, ET.Element]]:

    divisions = divisions_for(song)
    chords = None
    if chord_parts and options.chord_symbols:
        chords = chord_list(song, chord_parts)
    channels = _channels(song)
    out = []
    for k, i in enumerate(indices):
        track = song.tracks[i]
        measures = measures_of(divisions)
        color = HIGHLIGHT if i in highlight else None
        writer = _PartWriter(
            song, track, f"{id_prefix}{k + 1}", roles.get(i), measures, divisions, options, channels[i], color
        )
        name = track.name or (roles.get(i) or "part").title()
        nums = numbers or [(str(n + 1), False) for n in range(len(measures))]
        above = chords if i in chord_parts and not track.is_drum else None  # a drum staff carries no harmony
        out.append((writer.score_part(name), writer.part(nums, tempos=i == tempo_part, chords=above)))
    return out


def chord_list(song: Song, new_parts: set[int]) -> list[ChordSymbol]:
    """The chords to print: the ones the song states, else the harmony midiarr hears in the other parts."""
    from midiarr.harmony import estimate_chords

    if song.chord_symbols:
        return list(song.chord_symbols)
    if not any(len(t.notes) for t in song.tracks):
        return []
    context = [t for i, t in enumerate(song.tracks) if i not in new_parts and not t.is_drum and len(t.notes)]
    return [ChordSymbol(c.start, c.root, c.quality) for c in estimate_chords(song, context or None)]


def _serialize(root: ET.Element) -> bytes:
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{DOCTYPE}\n{body}\n'.encode()


def score_bytes(
    song: Song,
    options: NotationOptions | None = None,
    roles: dict[int, str] | None = None,
    chord_symbols_for: list[int] | tuple[int, ...] = (),
    highlight: list[int] | tuple[int, ...] = (),
) -> bytes:
    """The whole song as a MusicXML document; the tracks in ``highlight`` are drawn in midiarr's colour for
    new parts."""
    from midiarr.roles import assign_roles

    options = options or NotationOptions()
    roles = roles if roles is not None else assign_roles(song)
    root = ET.Element("score-partwise", {"version": "4.0"})
    work = _sub(root, "work")
    _sub(work, "work-title", song.metadata.get("title", "") or "")
    ident = _sub(root, "identification")
    enc = _sub(ident, "encoding")
    _sub(enc, "software", "midiarr")
    part_list = _sub(root, "part-list")
    indices = list(range(len(song.tracks)))
    if not chord_symbols_for and song.chord_symbols:  # a lead sheet's own chords stay above its first part
        chord_symbols_for = [i for i, t in enumerate(song.tracks) if not t.is_drum][:1]
    parts = _parts_xml(
        song,
        indices,
        roles,
        options,
        lambda d: measure_grid(song, d),
        None,
        "P",
        0 if song.tracks else None,
        set(chord_symbols_for),
        frozenset(highlight),
    )
    for sp, _part in parts:
        part_list.append(sp)
    for _sp, part in parts:
        root.append(part)
    return _serialize(root)


def add_parts_bytes(
    original: bytes,
    name: str,
    song: Song,
    indices: list[int],
    pickup_ticks: int,
    options: NotationOptions | None = None,
) -> bytes:
    """The user's score (its XML text) with tracks ``indices`` of ``song`` added as new parts.

    The original's text is kept byte for byte: the new <score-part>s go at the end of its part list and the
    new <part>s after its last part, on its own measure numbers (and its pickup, when it has one)."""
    options = options or NotationOptions()
    try:
        text = original.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name}: midiarr adds parts to UTF-8 MusicXML only; save the score as UTF-8") from None
    root = ET.fromstring(original)
    first = root.find("part")
    if root.tag != "score-partwise" or first is None:
        raise InputError(f"{name}: not a partwise MusicXML score")
    numbers = [
        (m.get("number", str(k + 1)), m.get("implicit") == "yes") for k, m in enumerate(first.findall("measure"))
    ]
    taken = {sp.get("id") for sp in root.iter("score-part")}
    prefix = "PMIDIARR"
    while any((i or "").startswith(prefix) for i in taken):
        prefix += "X"
    roles = {i: song.tracks[i].role for i in indices if song.tracks[i].role}
    parts = _parts_xml(
        song,
        indices,
        roles,
        options,
        lambda d: measure_grid(song, d, count=len(numbers), pickup_ticks=pickup_ticks),
        numbers,
        prefix,
        None,
        set(indices),
    )
    score_parts = "".join(_fragment(sp, 4) for sp, _ in parts)
    part_text = "".join(_fragment(p, 2) for _, p in parts)
    end_list = text.rfind("</part-list>")
    end_score = text.rfind("</score-partwise>")
    if end_list < 0 or end_score < 0:
        raise InputError(f"{name}: the score has no part list to add a part to")
    text = text[:end_list] + score_parts + text[end_list:end_score] + part_text + text[end_score:]
    return text.encode("utf-8")


def _fragment(el: ET.Element, indent: int) -> str:
    ET.indent(el, space="  ", level=indent // 2)
    return " " * indent + ET.tostring(el, encoding="unicode").rstrip() + "\n" + " " * (indent - 2)


def pack_mxl(xml: bytes, inner_name: str = "score.musicxml") -> bytes:
    """A compressed MusicXML (.mxl) archive holding ``xml`` (fixed timestamps: same score, same bytes)."""
    buf = io.BytesIO()
    container = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<container><rootfiles>'
        f'<rootfile full-path="{inner_name}" media-type="application/vnd.recordare.musicxml+xml"/>'
        "</rootfiles></container>\n"
    )
    with zipfile.ZipFile(buf, "w") as archive:
        mimetype = zipfile.ZipInfo("mimetype", date_time=(2020, 1, 1, 0, 0, 0))
        archive.writestr(mimetype, "application/vnd.recordare.musicxml", compress_type=zipfile.ZIP_STORED)
        for path, data in (("META-INF/container.xml", container.encode()), (inner_name, xml)):
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def write_bytes(path: str | os.PathLike[str], xml: bytes) -> Path:
    """Write MusicXML text to ``path`` atomically: compressed for .mxl, plain otherwise."""
    target = Path(path)
    data = pack_mxl(xml) if target.suffix.lower() == ".mxl" else xml
    try:
        return atomic_write_bytes(target, data)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
