"""Notation layout: a track's notes as measures of voices that a musician can read.

A piano roll is not a page. This module decides what a notation program draws, and the MusicXML writer only
serializes it:

- onsets and ends go to a grid chosen per beat: straight (16ths by default) or eighth-note triplets, whichever
  the notes sit nearer, so one beat never mixes the two;
- a part takes as few voices as its lines need: a legato overlap is trimmed, not given a voice of its own, and
  notes that start and end together are one chord;
- drums are two voices, hands (stems up) and feet (stems down), each hit lasting to the next one or to the end
  of its beat, so a drum part never ties;
- every note and rest is cut into values the meter can spell (ties across beats and bar lines, rests whole
  beats at most) and short notes are beamed by beat.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from midiarr.song import Song, TimeSignature, Track

BASE_DIVISIONS = 24  # per quarter: 32nd notes and eighth/16th triplets are whole numbers
GRIDS = ("8", "16", "16t", "32")  # straight step (8th, 16th, 32nd); "t": eighth triplets where notes sit on them
MAX_VOICES = 4  # what a MuseScore staff holds
FEET = frozenset({35, 36, 44})  # kicks and the pedal hi-hat: the drum part's lower voice

# GM drum pitch -> (display step, octave, notehead) on a five-line percussion staff.
# Positions follow common drum-set notation; noteheads keep every pitch distinct.
DRUM_NOTATION: dict[int, tuple[str, int, str]] = {
    35: ("E", 4, "normal"),
    36: ("F", 4, "normal"),
    37: ("C", 5, "x"),
    38: ("C", 5, "normal"),
    39: ("D", 5, "x"),
    40: ("C", 5, "diamond"),
    41: ("A", 4, "normal"),
    42: ("G", 5, "x"),
    43: ("G", 4, "normal"),
    44: ("D", 4, "x"),
    45: ("B", 4, "normal"),
    46: ("G", 5, "circle-x"),
    47: ("D", 5, "normal"),
    48: ("E", 5, "normal"),
    49: ("A", 5, "x"),
    50: ("F", 5, "normal"),
    51: ("F", 5, "x"),
    52: ("C", 6, "x"),
    53: ("F", 5, "diamond"),
    55: ("B", 5, "x"),
    56: ("E", 5, "x"),
    57: ("B", 5, "circle-x"),
    59: ("F", 5, "circle-x"),
}
# Pitches outside the table are written at their own staff position: a natural with a
# triangle notehead, a sharp on the natural below with a square one.
OTHER_DRUM_NOTEHEAD = "triangle"
OTHER_DRUM_SHARP_NOTEHEAD = "square"


def drum_position(pitch: int) -> tuple[str, int, str]:
    """(display step, octave, notehead) of a General MIDI drum on the five-line drum staff."""
    if pitch in DRUM_NOTATION:
        return DRUM_NOTATION[pitch]
    names = ["C", "C", "D", "D", "E", "F", "F", "G", "G", "A", "A", "B"]
    head = OTHER_DRUM_SHARP_NOTEHEAD if pitch % 12 in (1, 3, 6, 8, 10) else OTHER_DRUM_NOTEHEAD
    return names[pitch % 12], pitch // 12 - 1, head


_TYPES = ("whole", "half", "quarter", "eighth", "16th", "32nd", "64th", "128th")


@dataclass(frozen=True)
class NotationOptions:
    """How notes become notation: the quantization grid, the voices a staff may use, chord symbols."""

    grid: str = "16t"
    max_voices: int = MAX_VOICES
    merge_voices: bool = True  # trim overlaps shorter than half the earlier note instead of opening a voice
    chord_symbols: bool = True  # harmony above the parts midiarr wrote

    def __post_init__(self) -> None:
        if self.grid not in GRIDS:
            raise ValueError(f"notation grid must be one of {', '.join(GRIDS)}, got {self.grid!r}")
        if not 1 <= int(self.max_voices) <= MAX_VOICES:
            raise ValueError(f"voices must be 1..{MAX_VOICES}, got {self.max_voices}")


@dataclass(frozen=True)
class Measure:
    """One bar on the page: its start on the song's timeline and its length, in divisions."""

    start: int
    length: int
    numerator: int
    denominator: int

    @property
    def compound(self) -> bool:
        return self.denominator >= 8 and self.numerator % 3 == 0 and self.numerator > 3


@dataclass
class Element:
    """A note, chord or rest in one voice of one measure (positions local to the measure, in divisions)."""

    start: int
    length: int
    pitches: tuple[int, ...]  # empty: a rest
    velocities: tuple[int, ...]
    type: str
    dots: int = 0
    triplet: bool = False
    tie_start: bool = False
    tie_stop: bool = False
    tuplet: str | None = None  # "start" / "stop" of a triplet bracket
    beams: dict[int, str] = field(default_factory=dict)  # beam level -> begin / continue / end / hooks
    measure_rest: bool = False

    @property
    def is_rest(self) -> bool:
        return not self.pitches

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass
class MeasureLayout:
    measure: Measure
    voices: dict[int, list[Element]]  # voice number (1 first) -> its elements in time order


def divisions_for(song: Song) -> int:
    """Divisions per quarter note: 24, more when a meter's beat is shorter than a 32nd."""
    longest = max((ts.denominator for ts in song.time_signatures), default=4)
    return BASE_DIVISIONS * max(1, longest // 32)


def measure_grid(song: Song, divisions: int, count: int | None = None, pickup_ticks: int = 0) -> list[Measure]:
    """The song's bars as measures, in divisions from the song's start.

    ``pickup_ticks`` > 0 makes the first measure a pickup that begins there (the rest of the first bar).
    ``count`` extends or cuts the list to that many measures, continuing the last meter."""
    tpb = song.ticks_per_beat
    end = max(song.end_tick, 1)
    bars = [int(b) for b in song.bar_starts(end)]
    out: list[Measure] = []

    def to_div(tick: float) -> int:
        return round(tick * divisions / tpb)

    for i, start in enumerate(bars):
        ts = song.time_signature_at(start)
        stop = bars[i + 1] if i + 1 < len(bars) else start + _bar_ticks(ts, tpb)
        out.append(Measure(to_div(start), to_div(stop) - to_div(start), ts.numerator, ts.denominator))
    if count is not None:
        while len(out) < count:
            last = out[-1]
            out.append(Measure(last.start + last.length, last.length, last.numerator, last.denominator))
        out = out[:count]
    if pickup_ticks and out:
        first = out[0]
        cut = min(to_div(pickup_ticks), first.length - 1)
        out[0] = Measure(first.start + cut, first.length - cut, first.numerator, first.denominator)
    return out


def _bar_length(m: Measure, divisions: int) -> int:
    return m.numerator * divisions * 4 // m.denominator


def _bar_ticks(ts: TimeSignature, tpb: int) -> int:
    return max(1, round(ts.numerator * tpb * 4 / ts.denominator))


def note_values(divisions: int) -> list[tuple[int, str, int]]:
    """Every (length, type, dots) a single note can spell at this resolution, longest first."""
    values = []
    for k, name in enumerate(_TYPES):
        base = Fraction(4 * divisions, 2**k)
        if base.denominator != 1:
            break
        values.append((int(base), name, 0))
        dotted = base * 3 / 2
        if dotted.denominator == 1 and k <= 5:
            values.append((int(dotted), name, 1))
    return sorted(values, reverse=True)


class _Grid:
    """Per-beat quantization of one track: each quarter of each measure is straight or triplet."""

    def __init__(self, measures: list[Measure], divisions: int, grid: str) -> None:
        self.measures = measures
        self.q = divisions
        self.starts = [m.start for m in measures]
        self.end = measures[-1].start + measures[-1].length
        step = {"8": divisions // 2, "16": divisions // 4, "16t": divisions // 4, "32": divisions // 8}[grid]
        self.step = max(1, step)
        self.triplets_allowed = grid.endswith("t")
        self.triplet: set[tuple[int, int]] = set()  # (measure index, quarter index) written as triplets

    def locate(self, x: float) -> tuple[int, float]:
        m = max(0, bisect.bisect_right(self.starts, x) - 1)
        return m, x - self.measures[m].start

    def decide(self, positions: np.ndarray) -> None:
        if not self.triplets_allowed or not len(positions):
            return
        q, third = self.q, self.q / 3
        errors: dict[tuple[int, int], list[float]] = {}
        for x in positions.tolist():
            m, local = self.locate(x)
            measure = self.measures[m]
            k = int(local // q)
            if measure.compound or measure.denominator > 4 or (k + 1) * q > measure.length:
                continue
            inner = local - k * q
            e = errors.setdefault((m, k), [0.0, 0.0])
            e[0] += abs(inner - round(inner / self.step) * self.step)
            e[1] += abs(inner - round(inner / third) * third)
        # a beat is written in triplets only when its notes sit clearly nearer that grid
        self.triplet = {key for key, (straight, trip) in errors.items() if trip < 0.5 * straight}

    def step_at(self, m: int, local: float) -> int:
        k = int(local // self.q)
        return self.q // 3 if (m, k) in self.triplet else self.step

    def snap(self, x: float) -> int:
        x = min(max(x, self.measures[0].start), self.end)
        m, local = self.locate(x)
        measure = self.measures[m]
        k = int(local // self.q)
        base = k * self.q
        step = self.step_at(m, local)
        snapped = base + round((local - base) / step) * step
        return measure.start + min(int(snapped), measure.length)


def _quantize(track: Track, grid: _Grid, tpb: int) -> list[tuple[int, int, int, int]]:
    """(start, end, pitch, velocity) in divisions, on the per-beat grid, every note at least one step long."""
    n = track.notes
    if not len(n):
        return []
    scale = grid.q / tpb
    starts = n["start"].astype(float) * scale
    ends = (n["start"] + n["duration"]).astype(float) * scale
    grid.decide(np.concatenate([starts, ends]))
    out = []
    for s, e, p, v in zip(starts.tolist(), ends.tolist(), n["pitch"].tolist(), n["velocity"].tolist()):
        qs, qe = grid.snap(s), grid.snap(e)
        if qs >= grid.end:
            qs = grid.end - 1
        m, local = grid.locate(qs)
        qe = min(max(qe, qs + grid.step_at(m, local)), grid.end)
        out.append((qs, qe, int(p), int(v)))
    return out


# ------------------------------------------------------------------ voices
def _pitched_voices(
    notes: list[tuple[int, int, int, int]], options: NotationOptions, line: bool = False
) -> list[list[list]]:
    """Chords assigned to voices: each voice a list of [start, end, {pitch: velocity}], never overlapping.

    ``line``: the part is one line (a bass): a note that rings past the next onset ends there."""
    # one key cannot sound twice: a pitch struck again while it still sounds ends there (else notation
    # programs drop the second strike when they play the unison in two voices)
    last_of: dict[int, list[int]] = {}
    held = []
    for s, e, p, v in sorted(notes):
        if p in last_of and last_of[p][1] > s and last_of[p][0] < s:
            last_of[p][1] = s
        row = [s, e, p, v]
        last_of[p] = row
        held.append(row)
    strikes: dict[int, list[int]] = {}
    for s, _e, p, _v in held:
        strikes.setdefault(p, []).append(s)
    by_onset: dict[int, dict[int, list[tuple[int, int]]]] = {}
    for s, e, p, v in held:
        by_onset.setdefault(s, {}).setdefault(p, []).append((e, v))
    events: list[list] = []
    for s in sorted(by_onset):
        members = {p: max(ev) for p, ev in by_onset[s].items()}  # a repeated pitch keeps its longest note
        ends = sorted({e for e, _ in members.values()})
        if options.merge_voices:
            # notes that start together are one chord unless their ends are far apart
            common = max(ends, key=lambda e: (sum(1 for x, _ in members.values() if x == e), e))
            short = min(e - s for e in ends)
            # ...and unless the common end would run a note into its own pitch's next strike
            close = max(ends) - min(ends) <= max(short / 2, 0)
            groups = (
                {common: members} if close and all(_next_strike(strikes, p, s) >= common for p in members) else None
            )
            if groups is None:
                groups = {}
                for p, (e, v) in members.items():
                    groups.setdefault(e, {})[p] = (e, v)
        else:
            groups = {}
            for p, (e, v) in members.items():
                groups.setdefault(e, {})[p] = (e, v)
        for e in sorted(groups, reverse=True):  # the longest first: the line that holds takes the lower voice number
            events.append([s, e, {p: v for p, (_, v) in groups[e].items()}])
    voices: list[list[list]] = []
    for ev in events:
        s = ev[0]
        free = [i for i, v in enumerate(voices) if v[-1][1] <= s]
        if free:
            voices[free[0]].append(ev)
            continue
        if options.merge_voices:
            trimmable = [
                i
                for i, v in enumerate(voices)
                if v[-1][0] < s and (line or v[-1][1] - s <= max((v[-1][1] - v[-1][0]) / 2, 0))
            ]
            if trimmable:
                last = voices[trimmable[0]][-1]
                last[1] = s
                voices[trimmable[0]].append(ev)
                continue
        if len(voices) < options.max_voices:
            voices.append([ev])
            continue
        # every voice is busy: the one that frees first is cut short here (its note keeps its onset)
        i = min(range(len(voices)), key=lambda k: voices[k][-1][1])
        last = voices[i][-1]
        if last[0] < s:
            last[1] = s
            voices[i].append(ev)
        else:  # same onset: the chord takes the new pitches
            for p, v in ev[2].items():
                last[2].setdefault(p, v)
            last[1] = max(last[1], ev[1])
    return voices


def _next_strike(strikes: dict[int, list[int]], pitch: int, after: int) -> float:
    """The next onset of ``pitch`` after ``after`` (infinity when there is none)."""
    onsets = strikes[pitch]
    i = bisect.bisect_right(onsets, after)
    return onsets[i] if i < len(onsets) else float("inf")


def _drum_voices(notes: list[tuple[int, int, int, int]], measures: list[Measure], q: int) -> list[list[list]]:
    """Hands and feet, each hit lasting to the voice's next hit or to the end of its beat."""
    hands = [n for n in notes if n[2] not in FEET]
    feet = [n for n in notes if n[2] in FEET]
    groups = [hands, feet] if hands else [feet]
    starts = [m.start for m in measures]
    voices = []
    for group in groups:
        by_onset: dict[int, dict[int, int]] = {}
        for s, _e, p, v in group:
            by_onset.setdefault(s, {})[p] = max(v, by_onset.get(s, {}).get(p, 0))
        onsets = sorted(by_onset)
        voice = []
        for i, s in enumerate(onsets):
            m = measures[max(0, bisect.bisect_right(starts, s) - 1)]
            unit = _unit(m, q)
            local = s - m.start
            beat_end = m.start + min(m.length, (local // unit + 1) * unit)
            nxt = onsets[i + 1] if i + 1 < len(onsets) else beat_end
            voice.append([s, min(nxt, beat_end), by_onset[s]])
        if voice:
            voices.append(voice)
    return voices


def _unit(m: Measure, q: int) -> int:
    """The beat that groups beams and bounds a drum hit: a dotted quarter in compound meters, else a quarter
    (a shorter beat where the meter's is shorter)."""
    if m.compound:
        return q * 3 // 2
    return min(q, max(1, q * 4 // m.denominator))


def _beat(m: Measure, q: int) -> int:
    return q * 3 // 2 if m.compound else max(1, q * 4 // m.denominator)


# ---------------------------------------------------------------- spelling
def _split_span(
    a: int, b: int, m: Measure, mi: int, grid: _Grid, values: list[tuple[int, str, int]], rest: bool, drum: bool
) -> list[tuple[int, int, str, int, bool]]:
    """Cut the local span [a, b) of a measure into notatable (start, length, type, dots, triplet) pieces."""
    q = grid.q
    cuts = {a, b}
    for mk, k in grid.triplet:
        if mk == mi:
            for edge in (k * q, (k + 1) * q):
                if a < edge < b:
                    cuts.add(edge)
    points = sorted(cuts)
    out = []
    for lo, hi in itertools.pairwise(points):
        k = lo // q
        if (mi, k) in grid.triplet and hi <= (k + 1) * q:
            third = q // 3
            pos = lo
            while pos < hi:
                length = hi - pos
                if length >= q:
                    out.append((pos, q, "quarter", 0, False))
                    pos += q
                elif length >= 2 * third and (pos - k * q) % third == 0:
                    out.append((pos, 2 * third, _TYPES[2], 0, True))
                    pos += 2 * third
                else:
                    piece = min(third, length)
                    out.append((pos, piece, _TYPES[3], 0, True))
                    pos += piece
        else:
            out.extend(_split_straight(lo, hi, m, q, values, rest))
    if drum and out:
        # a hit is one value: what is left of its span is silence, not a tie
        first = out[0]
        return [first]
    return out


def _split_straight(
    a: int, b: int, m: Measure, q: int, values: list[tuple[int, str, int]], rest: bool
) -> list[tuple[int, int, str, int, bool]]:
    beat = _beat(m, q)
    half = m.length // 2 if (not m.compound and m.numerator % 2 == 0 and m.numerator >= 4) else None
    out = []
    pos = a
    while pos < b:
        remaining = b - pos
        chosen = None
        for v, name, dots in values:
            if v > remaining:
                continue
            crosses = pos // beat != (pos + v - 1) // beat
            if crosses:
                if pos % beat:
                    continue
                if (pos + v) % beat and (rest or v * 2 != beat * 3):
                    continue  # beats are not obscured; a dotted beat from a beat is the one exception
            if half is not None and pos < half < pos + v and pos != 0:
                continue  # the middle of an even bar stays visible
            if rest and dots:
                continue
            chosen = (v, name, dots)
            break
        if chosen is None:  # a sliver finer than the smallest value: spell it as that value's duration
            v, name, dots = remaining, values[-1][1], 0
        else:
            v, name, dots = chosen
        out.append((pos, v, name, dots, False))
        pos += v
    return out


def layout_track(
    track: Track,
    measures: list[Measure],
    tpb: int,
    divisions: int,
    options: NotationOptions,
    role: str | None = None,
) -> list[MeasureLayout]:
    """Lay one track out as measures of voices (a bass, by ``role``, as one line)."""
    grid = _Grid(measures, divisions, options.grid)
    notes = _quantize(track, grid, tpb)
    if track.is_drum:
        voices = _drum_voices(notes, measures, divisions)
    else:
        voices = _pitched_voices(notes, options, line=role == "bass")
    values = note_values(divisions)
    starts = [m.start for m in measures]
    layouts = [MeasureLayout(m, {}) for m in measures]
    for number, voice in enumerate(voices, start=1):
        if track.is_drum and len(voices) == 1 and not any(p not in FEET for ev in voice for p in ev[2]):
            number = 1
        per_measure: dict[int, list[tuple[int, int, dict[int, int], bool, bool]]] = {}
        for s, e, members in voice:
            mi = max(0, bisect.bisect_right(starts, s) - 1)
            first = True
            while s < e and mi < len(measures):
                m = measures[mi]
                stop = min(e, m.start + m.length)
                per_measure.setdefault(mi, []).append((s - m.start, stop - m.start, members, not first, stop < e))
                first = False
                s = stop
                mi += 1
        for mi, items in per_measure.items():
            m = measures[mi]
            elements: list[Element] = []
            pos = 0
            for a, b, members, cont_in, cont_out in items:
                if a > pos:
                    elements += _rests(pos, a, m, mi, grid, values)
                pieces = _split_span(a, b, m, mi, grid, values, False, track.is_drum)
                pitches = tuple(sorted(members))
                vels = tuple(members[p] for p in pitches)
                for j, (ps, pl, name, dots, trip) in enumerate(pieces):
                    tie_stop = (j > 0 or cont_in) and not track.is_drum
                    tie_start = (j < len(pieces) - 1 or cont_out) and not track.is_drum
                    elements.append(Element(ps, pl, pitches, vels, name, dots, trip, tie_start, tie_stop))
                pos = pieces[-1][0] + pieces[-1][1] if track.is_drum else b
            if pos < m.length:
                elements += _rests(pos, m.length, m, mi, grid, values)
            _beam(elements, m, divisions)
            _tuplets(elements, grid, mi)
            layouts[mi].voices[number] = elements
    for mi, layout in enumerate(layouts):
        if 1 not in layout.voices:
            m = layout.measure
            if m.length == _bar_length(m, divisions):
                layout.voices[1] = [Element(0, m.length, (), (), "whole", measure_rest=True)]
            else:  # a pickup: a measure rest would fill the whole bar
                layout.voices[1] = _rests(0, m.length, m, mi, grid, values)
        layout.voices = dict(sorted(layout.voices.items()))
    return layouts


def _rests(a: int, b: int, m: Measure, mi: int, grid: _Grid, values: list[tuple[int, str, int]]) -> list[Element]:
    return [
        Element(ps, pl, (), (), name, dots, trip)
        for ps, pl, name, dots, trip in _split_span(a, b, m, mi, grid, values, True, False)
    ]


_BEAM_LEVELS = {"eighth": 1, "16th": 2, "32nd": 3, "64th": 4, "128th": 5}


def _beam(elements: list[Element], m: Measure, q: int) -> None:
    """Beam runs of eighths and shorter within each beat; a rest or a longer note breaks the run."""
    unit = _unit(m, q)
    runs: list[list[Element]] = []
    current: list[Element] = []
    current_beat = None
    for el in elements:
        level = 0 if el.is_rest else _BEAM_LEVELS.get(el.type, 0)
        beat = el.start // unit
        if level and (el.end - 1) // unit == beat and beat == current_beat and current:
            current.append(el)
            continue
        if len(current) > 1:
            runs.append(current)
        current, current_beat = ([el], beat) if level and (el.end - 1) // unit == beat else ([], None)
    if len(current) > 1:
        runs.append(current)
    for run in runs:
        levels = [_BEAM_LEVELS[el.type] for el in run]
        for lv in range(1, max(levels) + 1):
            i = 0
            while i < len(run):
                if levels[i] < lv:
                    i += 1
                    continue
                j = i
                while j + 1 < len(run) and levels[j + 1] >= lv:
                    j += 1
                if j > i:
                    run[i].beams[lv] = "begin"
                    for k in range(i + 1, j):
                        run[k].beams[lv] = "continue"
                    run[j].beams[lv] = "end"
                else:
                    run[i].beams[lv] = "forward hook" if i == 0 else "backward hook"
                i = j + 1


def _tuplets(elements: list[Element], grid: _Grid, mi: int) -> None:
    """A triplet bracket over each beat's triplet notes and rests."""
    by_beat: dict[int, list[Element]] = {}
    for el in elements:
        if el.triplet:
            by_beat.setdefault(el.start // grid.q, []).append(el)
    for group in by_beat.values():
        group[0].tuplet = "start"
        if len(group) > 1:
            group[-1].tuplet = "stop"
        else:  # a lone triplet value cannot close its own bracket: it opens and closes it
            group[0].tuplet = "start-stop"


def voice_count(layouts: list[MeasureLayout]) -> int:
    """The most voices any measure of a laid-out part uses."""
    return max((len(lay.voices) for lay in layouts), default=1)


__all__ = [
    "DRUM_NOTATION",
    "GRIDS",
    "MAX_VOICES",
    "Element",
    "Measure",
    "MeasureLayout",
    "NotationOptions",
    "divisions_for",
    "drum_position",
    "layout_track",
    "measure_grid",
    "note_values",
    "voice_count",
]
