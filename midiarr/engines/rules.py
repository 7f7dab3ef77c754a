"""The rules engine: a style-based auto-accompaniment, no model needed.

It reads the chords and key from the other parts, then writes the stem from
patterns chosen by meter, tempo and the controls (density, dynamics, rhythm,
register, polyphony): bass on roots and fifths with approach notes, drum grooves
for simple and compound meters with fills at phrase ends and crashes on section
starts, guitar strums or arpeggios voiced in range, piano comping, string pads.
It is both a baseline for the learned engines and a fallback that always works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from midiarr.config import load_config
from midiarr.engines.base import Controls, Engine, register_engine
from midiarr.harmony import Chord, estimate_chords, estimate_key
from midiarr.song import NOTE_DTYPE, Song, Track, sort_notes

PROGRAMS = {"bass": 33, "drums": 0, "guitar": 27, "piano": 0, "strings": 48}
NAMES = {"bass": "Bass", "drums": "Drums", "guitar": "Guitar", "piano": "Piano", "strings": "Strings"}
KICK, SNARE, SIDE_STICK, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 37, 42, 44, 46, 49, 51
TOMS = (50, 48, 47, 45, 43, 41)
# Pitch ranges: lowest and highest note each stem writes.
RANGES = {"bass": (28, 55), "guitar": (40, 84), "piano": (36, 88), "strings": (43, 91)}


@dataclass
class Bar:
    """One bar of the song: where it is and how it divides."""

    index: int
    start: int
    end: int
    numerator: int
    denominator: int
    beat: int  # ticks per written beat (1/denominator)
    pulses: list[int]  # ticks of the felt beats (dotted quarters in 6/8, 9/8, 12/8)
    qpm: float

    @property
    def compound(self) -> bool:
        """6/8, 9/8, 12/8: the pulse is a dotted note of three beats."""
        return self.denominator == 8 and self.numerator % 3 == 0 and self.numerator > 3


@dataclass
class Plan:
    """Everything a part writer needs: bars, chords, key and the resolved controls."""

    song: Song
    bars: list[Bar]
    chords: list[Chord]
    key: tuple[int, bool]
    density: str
    dynamics: str
    rhythm: str
    register: str | None
    polyphony: str | None
    genre: str | None

    def chord_at(self, tick: int) -> Chord:
        """The chord sounding at ``tick``."""
        starts = [c.start for c in self.chords]
        i = max(0, int(np.searchsorted(starts, tick, side="right")) - 1)
        return self.chords[i]

    def velocity(self, stem: str, accent: float = 0.0, rng: np.random.Generator | None = None) -> int:
        """A velocity inside the requested dynamics bin of this stem, plus an accent."""
        edges = load_config("attributes.toml")["dynamics"]
        lo, hi = edges.get(stem, edges["default"])
        centre = {"soft": lo - 10, "medium": (lo + hi) / 2, "loud": hi + 8}[self.dynamics]
        jitter = float(rng.integers(-3, 4)) if rng is not None else 0.0
        return int(np.clip(round(centre + accent + jitter), 1, 127))


def make_plan(context: Song, stem: str, controls: Controls) -> Plan:
    """Bars, chords and key of the context, and the controls with defaults filled in."""
    tpb = context.ticks_per_beat
    starts = context.bar_starts()
    ends = np.append(starts[1:], max(context.end_tick, int(starts[-1]) + 1))
    bars = []
    for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
        ts = context.time_signature_at(a)
        beat = max(1, round(tpb * 4 / ts.denominator))
        compound = ts.denominator == 8 and ts.numerator % 3 == 0 and ts.numerator > 3
        step = 3 * beat if compound else beat
        pulses = list(range(a, b, step)) or [a]
        bars.append(Bar(i, a, b, ts.numerator, ts.denominator, beat, pulses, context.tempo_at(a)))
    chords = estimate_chords(context) or [Chord(0, max(context.end_tick, 1), estimate_key(context)[0], "maj")]
    bins = controls.bins
    return Plan(
        song=context,
        bars=bars,
        chords=chords,
        key=estimate_key(context),
        density=bins.get("density", "medium"),
        dynamics=bins.get("dynamics", "medium"),
        rhythm=bins.get("rhythm", "straight"),
        register=bins.get("register"),
        polyphony=bins.get("polyphony"),
        genre=bins.get("genre"),
    )


class _Notes:
    """Collects notes as rows and returns a sorted note array."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, int]] = []

    def add(self, start: int, duration: int, pitch: int, velocity: int) -> None:
        if duration > 0:
            self.rows.append((int(start), int(duration), int(pitch), int(velocity)))

    def array(self) -> np.ndarray:
        return sort_notes(np.array(self.rows, dtype=NOTE_DTYPE)) if self.rows else np.zeros(0, dtype=NOTE_DTYPE)


def _place(pc: int, low: int, high: int, near: int | None = None) -> int:
    """The pitch of class ``pc`` inside [low, high], nearest to ``near`` (default: the lowest)."""
    candidates = [p for p in range(low, high + 1) if p % 12 == pc]
    if not candidates:
        return low
    if near is None:
        return candidates[0]
    return min(candidates, key=lambda p: abs(p - near))


# Onset positions in quarter notes over a 4/4 bar, per stem, density and rhythm. Syncopated
# patterns leave some beats empty after an off-beat onset and end on a push (the "and" of the
# last beat) that ties over the next downbeat; densities sit inside the bins of attributes.toml.
RHYTHMS: dict[str, dict[str, dict[str, list[float]]]] = {
    "bass": {
        "sparse": {"straight": [0, 2], "syncopated": [0, 1.5, 3.5]},
        "medium": {"straight": [0, 1, 2, 3], "syncopated": [0, 1, 1.5, 2.5, 3.5]},
        "busy": {"straight": [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5], "syncopated": [0, 0.5, 0.75, 1.5, 2, 2.5, 2.75, 3.5]},
    },
    "guitar": {
        "sparse": {"straight": [0, 2], "syncopated": [0, 1.5, 3.5]},
        "medium": {"straight": [0, 1, 1.5, 2, 2.5, 3, 3.5], "syncopated": [0, 0.5, 1, 1.5, 2.5, 3, 3.5]},
        "busy": {
            "straight": [0, 0.5, 0.75, 1, 1.5, 1.75, 2, 2.5, 2.75, 3, 3.5, 3.75],
            "syncopated": [0, 0.5, 0.75, 1.25, 1.5, 1.75, 2.25, 2.5, 2.75, 3.25, 3.5],
        },
    },
    "piano": {
        "sparse": {"straight": [0, 2], "syncopated": [0, 1.5, 3.5]},
        "medium": {"straight": [0, 0.5, 1, 1.5, 2, 3, 3.5], "syncopated": [0, 0.5, 1, 1.5, 2.5, 3, 3.5]},
        "busy": {
            "straight": [0, 0.5, 0.75, 1, 1.5, 1.75, 2, 2.5, 2.75, 3, 3.5],
            "syncopated": [0, 0.5, 0.75, 1.25, 1.5, 1.75, 2.25, 2.5, 2.75, 3.25, 3.5],
        },
    },
}


def bar_onsets(plan: Plan, stem: str, bar: Bar, pushed_into: bool) -> list[int]:
    """Onset ticks of one bar from the rhythm table (compound meters: from their pulses).

    ``pushed_into``: the previous bar ended on a push that ties over this downbeat, so it is left out.
    """
    tpb = plan.song.ticks_per_beat
    length = (bar.end - bar.start) / tpb
    if bar.compound:
        eighth = bar.beat
        base = {"sparse": bar.pulses[:1], "medium": list(bar.pulses), "busy": list(range(bar.start, bar.end, eighth))}
        onsets = list(base[plan.density])
        if plan.rhythm == "syncopated":
            onsets = [t for t in onsets if t < bar.end - eighth] + [bar.end - eighth]
    else:
        pattern = RHYTHMS[stem][plan.density][plan.rhythm]
        positions = [chunk + p for chunk in range(0, int(np.ceil(length / 4)) * 4, 4) for p in pattern]
        if plan.rhythm == "syncopated":
            positions = [p for p in positions if p < length - 0.5] + [length - 0.5]
        onsets = sorted({bar.start + round(p * tpb) for p in positions if 0 <= p < length})
    if pushed_into:
        onsets = [t for t in onsets if t != bar.start]
    return onsets


@dataclass
class Onset:
    """One onset of a pattern part: where it is, when the next one comes, whether it pushes."""

    bar: Bar
    index: int  # position among the bar's onsets
    tick: int
    next_tick: int  # the next onset, or the bar end (a beat past it for a push that ties over)
    is_push: bool

    @property
    def harmony_tick(self) -> int:
        """Where to read the chord: a push anticipates the next bar's chord."""
        return self.bar.end if self.is_push else self.tick


def pattern_onsets(plan: Plan, stem: str) -> list[Onset]:
    """Every onset of a pattern part over the song, with pushes carried into the next bar."""
    tpb = plan.song.ticks_per_beat
    out: list[Onset] = []
    pushed = False
    for bar in plan.bars:
        onsets = bar_onsets(plan, stem, bar, pushed)
        pushes = _pushes(plan, bar, onsets) and bar.end < plan.song.end_tick
        for k, t in enumerate(onsets):
            is_push = pushes and k == len(onsets) - 1
            nxt = onsets[k + 1] if k + 1 < len(onsets) else bar.end + (tpb if is_push else 0)
            out.append(Onset(bar, k, t, nxt, is_push))
        pushed = pushes
    return out


def _pushes(plan: Plan, bar: Bar, onsets: list[int]) -> bool:
    """Whether the bar ends on a push into a next bar."""
    eighth = bar.beat if bar.compound else plan.song.ticks_per_beat // 2
    return plan.rhythm == "syncopated" and bool(onsets) and onsets[-1] == bar.end - eighth


# ------------------------------------------------------------------ bass
def write_bass(plan: Plan, rng: np.random.Generator) -> np.ndarray:
    """Roots on chord changes and downbeats, fifths and octaves between, passing notes in busy parts."""
    out = _Notes()
    low, high = {"low": (28, 40), "high": (40, 52), "mid": (31, 45)}.get(plan.register or "mid", (31, 45))
    last_pitch: int | None = None
    pushed = False
    for bar in plan.bars:
        onsets = bar_onsets(plan, "bass", bar, pushed)
        pushes = _pushes(plan, bar, onsets) and bar.end < plan.song.end_tick
        played_chords: set[int] = set()
        for k, t in enumerate(onsets):
            is_push = pushes and k == len(onsets) - 1
            nxt = onsets[k + 1] if k + 1 < len(onsets) else bar.end
            chord = plan.chord_at(bar.end if is_push else t)
            if is_push or chord.start not in played_chords or t == bar.start:
                pc = chord.root
            elif plan.density == "busy" and nxt < bar.end and plan.chord_at(nxt) != chord and rng.random() < 0.5:
                # a passing note a whole step from the next root
                pc = (plan.chord_at(nxt).root + int(rng.choice([-2, 2]))) % 12
            else:
                pc = int(rng.choice([chord.root, chord.root, chord.fifth]))
            played_chords.add(chord.start)
            # roots sit near the middle of the register; other notes move as little as they can
            pitch = _place(pc, low, high, (low + high) // 2 - 2 if pc == chord.root else last_pitch)
            if pc == chord.root and k % 2 == 1 and plan.density == "busy" and rng.random() < 0.3 and pitch + 12 <= 55:
                pitch += 12  # octave jump, the busy-bass staple
            # a push rings over the bar line into the downbeat it anticipates
            until = bar.end + (plan.song.ticks_per_beat if is_push else 0) if k == len(onsets) - 1 else nxt
            length = max(1, int((until - t) * (0.92 if plan.density != "sparse" else 0.97)))
            out.add(t, length, pitch, plan.velocity("bass", 8 if t == bar.start else 0, rng))
            last_pitch = pitch
        pushed = pushes
    return out.array()


# ----------------------------------------------------------------- drums
def _beat_groups(n: int) -> list[int]:
    """Beats of a bar grouped in twos and threes (5 = 3+2, 7 = 2+2+3)."""
    return {1: [1], 2: [2], 3: [3], 4: [2, 2], 5: [3, 2], 6: [3, 3], 7: [2, 2, 3]}.get(
        n, [2] * (n // 2) + [n % 2] * (n % 2)
    )


def write_drums(plan: Plan, rng: np.random.Generator) -> np.ndarray:
    """A groove for the meter and tempo, fills before phrase starts, crashes on section starts."""
    out = _Notes()
    tpb = plan.song.ticks_per_beat
    swing = plan.genre in ("jazz", "swing", "blues")
    timekeeper = RIDE if plan.genre in ("jazz", "swing") else CLOSED_HAT
    phrase = 8 if len(plan.bars) >= 16 else 4
    section_starts = {m.tick for m in plan.song.markers}
    for bar in plan.bars:
        qpm = bar.qpm
        if plan.density == "sparse":
            sub = tpb if qpm >= 90 else tpb // 2
        elif plan.density == "busy":
            sub = tpb // 4 if qpm < 170 else tpb // 2
        else:
            sub = tpb // 2
        if bar.compound:
            sub = bar.beat if plan.density != "sparse" else 3 * bar.beat
        ticks = list(range(bar.start, bar.end, max(1, sub)))
        if swing and sub == tpb // 2:
            ticks = [t if (t - bar.start) % tpb == 0 else t + tpb // 6 for t in ticks]  # triplet swing
        for k, t in enumerate(ticks):
            on_pulse = t in bar.pulses
            out.add(t, max(1, sub // 2), timekeeper, plan.velocity("drums", 6 if on_pulse else -8 - 4 * (k % 2), rng))
        # kick and snare on the beat groups (pulses in compound meters)
        pulses = bar.pulses
        groups = _beat_groups(len(pulses))
        i = 0
        for g in groups:
            out.add(pulses[i], tpb // 4, KICK, plan.velocity("drums", 10, rng))
            if g >= 2 and i + 1 < len(pulses):
                out.add(pulses[i + 1], tpb // 4, SNARE, plan.velocity("drums", 8, rng))
            if g == 3 and i + 2 < len(pulses) and len(pulses) == 3:  # waltz: a second, lighter backbeat
                out.add(pulses[i + 2], tpb // 4, SNARE, plan.velocity("drums", -10, rng))
            i += g
        if plan.density == "medium" and not bar.compound:
            # ghost notes a 16th before each backbeat: the groove's "a"
            for p in pulses[1::2]:
                out.add(p - tpb // 4, tpb // 8, SNARE, plan.velocity("drums", -30, rng))
        if plan.rhythm == "syncopated" and len(pulses) >= 3:
            # the kick pushes ahead of the middle pulse, which is left empty
            middle = pulses[len(pulses) // 2]
            out.rows = [r for r in out.rows if r[0] != middle]
            out.add(middle - (bar.beat if bar.compound else tpb // 2), tpb // 4, KICK, plan.velocity("drums", 4, rng))
        # crash on section starts, fill before them
        if bar.index % phrase == 0 or bar.start in section_starts:
            out.add(bar.start, tpb, CRASH, plan.velocity("drums", 12, rng))
        next_starts_section = (bar.index + 1) % phrase == 0 and bar.index + 1 < len(plan.bars)
        if next_starts_section:
            _fill(out, plan, bar, rng)
    return out.array()


def _fill(out: _Notes, plan: Plan, bar: Bar, rng: np.random.Generator) -> None:
    """Replace the last pulse of the bar with 16th notes down the toms."""
    tpb = plan.song.ticks_per_beat
    start = bar.pulses[-1] if len(bar.pulses) > 1 else bar.start + (bar.end - bar.start) // 2
    if plan.density == "busy" and len(bar.pulses) > 2:
        start = bar.pulses[-2]
    out.rows = [r for r in out.rows if not (start <= r[0] < bar.end and r[2] in (CLOSED_HAT, RIDE, SNARE))]
    step = tpb // 4
    voices = [SNARE, SNARE, *TOMS]
    for k, t in enumerate(range(start, bar.end, step)):
        pitch = voices[min(k, len(voices) - 1)] if rng.random() < 0.8 else SNARE
        out.add(t, step, pitch, plan.velocity("drums", 4 + k, rng))


# ---------------------------------------------------------------- guitar
def _guitar_voicing(chord: Chord, register: str | None) -> list[int]:
    """A five-note barre-style voicing (root, fifth, octave, third, fifth) in the guitar's range."""
    low = {"low": 40, "high": 52, "mid": 45}.get(register or "mid", 45)
    root = _place(chord.root, low, low + 11)
    third = [t for t in chord.tones if t != chord.root and t != chord.fifth]
    third_pc = third[0] if third else chord.fifth
    voicing = [root, root + ((chord.fifth - chord.root) % 12), root + 12, _place(third_pc, root + 13, root + 24)]
    voicing.append(voicing[1] + 12)
    return sorted(p for p in voicing if p <= RANGES["guitar"][1])


def write_guitar(plan: Plan, rng: np.random.Generator) -> np.ndarray:
    """Strummed chords (or arpeggios when single notes are asked for) following the chords."""
    out = _Notes()
    tpb = plan.song.ticks_per_beat
    arpeggio = plan.polyphony == "single"
    for o in pattern_onsets(plan, "guitar"):
        voicing = _guitar_voicing(plan.chord_at(o.harmony_tick), plan.register)
        length = max(1, int((o.next_tick - o.tick) * 0.9))
        if arpeggio:
            pitch = voicing[[0, 2, 3, 4, 1, 3][o.index % 6] % len(voicing)]
            out.add(o.tick, length, pitch, plan.velocity("guitar", 0, rng))
        else:
            down = (o.tick - o.bar.start) % tpb == 0
            vel = plan.velocity("guitar", 6 if down else -6, rng)
            for p in voicing if down else voicing[2:]:  # upstrokes catch the top strings
                out.add(o.tick, length, p, vel)
    return out.array()


# ----------------------------------------------------------------- piano
def _upper_voicing(chord: Chord, low: int, high: int, previous: list[int] | None) -> list[int]:
    """Chord tones in [low, high], three or four notes, moving as little as possible from the last voicing."""
    centre = int(np.mean(previous)) if previous else (low + high) // 2
    notes = sorted({_place(pc, low, high, centre) for pc in chord.tones})
    return notes[:4]


def write_piano(plan: Plan, rng: np.random.Generator) -> np.ndarray:
    """Left hand on roots at chord changes, right hand comping voice-led chords."""
    out = _Notes()
    previous: list[int] | None = None
    for o in pattern_onsets(plan, "piano"):
        chord = plan.chord_at(o.harmony_tick)
        voicing = _upper_voicing(chord, 55, 76, previous)
        previous = voicing
        vel = plan.velocity("piano", 5 if o.tick == o.bar.start else 0, rng)
        for p in voicing:
            out.add(o.tick, max(1, int((o.next_tick - o.tick) * 0.9)), p, vel)
        if o.tick == o.bar.start or o.is_push or chord.start >= o.tick - 1:
            out.add(o.tick, max(1, int((o.next_tick - o.tick) * 0.95)), _place(chord.root, 36, 47), vel)
    return out.array()


# --------------------------------------------------------------- strings
def write_strings(plan: Plan, rng: np.random.Generator) -> np.ndarray:
    """Sustained, voice-led chords: one per chord (sparse), per half bar, or pulsing eighths (busy)."""
    out = _Notes()
    tpb = plan.song.ticks_per_beat
    previous: list[int] | None = None
    for bar in plan.bars:
        if plan.density == "sparse":
            onsets = [bar.start]
        elif plan.density == "busy":
            onsets = list(range(bar.start, bar.end, tpb // 2))
        else:
            onsets = list(bar.pulses)
        onsets = sorted(set(onsets) | {c.start for c in plan.chords if bar.start < c.start < bar.end})
        for k, t in enumerate(onsets):
            nxt = onsets[k + 1] if k + 1 < len(onsets) else bar.end
            voicing = _upper_voicing(plan.chord_at(t), 55, 81, previous)
            previous = voicing
            vel = plan.velocity("strings", 0, rng)
            for p in voicing:
                out.add(t, max(1, nxt - t - 4), p, vel)
    return out.array()


WRITERS = {
    "bass": write_bass,
    "drums": write_drums,
    "guitar": write_guitar,
    "piano": write_piano,
    "strings": write_strings,
}


def keep_active(notes: np.ndarray, bars: list[Bar], active: np.ndarray) -> np.ndarray:
    """Notes that start in active bars, cut where an inactive bar begins."""
    if len(notes) == 0:
        return notes
    starts = np.array([b.start for b in bars])
    idx = np.clip(np.searchsorted(starts, notes["start"], side="right") - 1, 0, len(bars) - 1)
    mask = np.asarray(active, dtype=bool)
    if len(mask) < len(bars):
        mask = np.concatenate([mask, np.zeros(len(bars) - len(mask), dtype=bool)])
    kept = notes[mask[idx]].copy()
    kept_idx = idx[mask[idx]]
    # a note may ring into the next bar only if that bar is active too
    bar_end = np.array([b.end for b in bars])[kept_idx]
    next_active = np.append(mask[1:], False)[kept_idx]
    limit = np.where(
        next_active, kept["start"] + kept["duration"], np.minimum(kept["start"] + kept["duration"], bar_end)
    )
    kept["duration"] = np.maximum(limit - kept["start"], 1)
    return kept


@register_engine("rules")
class RulesEngine(Engine):
    """Style-based accompaniment from chords, meter, tempo and the controls."""

    writes_touch = True  # its accents and ghost notes are written with the notes
    writes_repeats = True  # its patterns repeat by design

    def write_part(
        self, context: Song, stem: str, controls: Controls, active: np.ndarray, rng: np.random.Generator
    ) -> list[Track]:
        plan = make_plan(context, stem, controls)
        notes = keep_active(WRITERS[stem](plan, rng), plan.bars, active)
        return [Track(name=NAMES[stem], program=PROGRAMS[stem], is_drum=stem == "drums", notes=notes)]
