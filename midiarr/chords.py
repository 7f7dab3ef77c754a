"""Chord progressions as text: ``"C | G/B | Am F | F G"``, one cell per bar, several chords in a cell sharing
the bar equally.

`parse` reads a progression into `ChordSymbol`s on a bar grid; `format_progression` writes the chords of a
song back in the same syntax (`parse(format_progression(song))` gives the same chords). Chord names: a root
(C, F#, Bb), a quality (none or M/maj for major, m/min/- for minor, 7, m7, maj7/M7, dim/o, sus4/sus, and the
common extensions, read as the nearest chord midiarr plays: 6 and add9 as the triad, 9/11/13 as the seventh,
m7b5/ø as dim, aug/+ as major, sus2 as sus4, 5 as major), an optional slash bass (G7/B), or N.C.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from midiarr.errors import OptionError
from midiarr.harmony import QUALITIES
from midiarr.song import ChordSymbol, KeySignature, Song

MAX_BARS = 1000
_ROOT = re.compile(r"^([A-Ga-g])([#b♯♭]?)")
_NATURAL = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# quality spellings (after the root) -> midiarr's quality; longest spellings are tried first
_QUALITY_WORDS = {
    "": "maj", "M": "maj", "maj": "maj", "major": "maj", "6": "maj", "add9": "maj", "aug": "maj", "+": "maj",
    "5": "maj", "69": "maj",
    "m": "min", "min": "min", "minor": "min", "-": "min", "m6": "min", "madd9": "min", "mM7": "min", "m(maj7)": "min",
    "7": "7", "9": "7", "11": "7", "13": "7", "7sus4": "7", "dom7": "7", "7b9": "7", "7#9": "7", "aug7": "7",
    "+7": "7", "7#5": "7",
    "m7": "m7", "min7": "m7", "-7": "m7", "m9": "m7", "m11": "m7", "min9": "m7",
    "maj7": "maj7", "M7": "maj7", "Δ": "maj7", "Δ7": "maj7", "maj9": "maj7", "M9": "maj7", "maj13": "maj7",
    "dim": "dim", "o": "dim", "°": "dim", "dim7": "dim", "o7": "dim", "°7": "dim", "m7b5": "dim", "ø": "dim",
    "ø7": "dim", "min7b5": "dim",
    "sus4": "sus4", "sus": "sus4", "sus2": "sus4", "4": "sus4",
}  # fmt: skip
_SPELLINGS = sorted(_QUALITY_WORDS, key=len, reverse=True)
_NAMES_SHARP = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
_NAMES_FLAT = ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]
_NAMES_C = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
_SUFFIX = {"maj": "", "min": "m", "7": "7", "m7": "m7", "maj7": "maj7", "dim": "dim", "sus4": "sus4"}


@dataclass(frozen=True)
class Progression:
    """Chords on a bar grid: the symbols (ticks), how many bars, the meter and the key they were written in."""

    chords: list[ChordSymbol]
    bars: int
    meter: tuple[int, int]
    ticks_per_beat: int
    key: KeySignature | None = None

    def text(self) -> str:
        """The progression in `parse`'s syntax."""
        return format_progression(self.song(), self.chords, bars=self.bars)

    def song(self, qpm: float = 120.0) -> Song:
        """An empty song of the progression's length that states its chords (for an engine to write into)."""
        from midiarr.song import Tempo, TimeSignature

        return Song(
            ticks_per_beat=self.ticks_per_beat,
            tempos=[Tempo(0, float(qpm))],
            time_signatures=[TimeSignature(0, *self.meter)],
            key_signatures=[self.key] if self.key else [],
            chord_symbols=list(self.chords),
        )


def _pitch_class(letter: str, accidental: str) -> int:
    return (_NATURAL[letter.upper()] + {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(accidental, 0)) % 12


def parse_chord(name: str) -> tuple[int, str, int | None] | None:
    """(root, quality, slash bass or None) of one chord name; None for N.C. Raises `OptionError` otherwise."""
    text = name.strip()
    if text.upper().replace(".", "") in ("NC", "N/C", "X"):
        return None
    bass = None
    if "/" in text:
        text, _, slash = text.rpartition("/")
        m = _ROOT.match(slash)
        if m is None or m.end() != len(slash):
            raise OptionError(f"chord {name!r}: the bass after '/' must be a note name, e.g. G7/B")
        bass = _pitch_class(m.group(1), m.group(2))
    m = _ROOT.match(text)
    if m is None:
        raise OptionError(f"chord {name!r}: a chord starts with its root (A-G), e.g. C, F#m7, Bbmaj7, N.C.")
    root = _pitch_class(m.group(1), m.group(2))
    rest = text[m.end() :]
    for spelling in _SPELLINGS:
        if rest == spelling:
            quality = _QUALITY_WORDS[spelling]
            return root, quality, (bass if bass != root else None)
    raise OptionError(f"chord {name!r}: unknown chord kind {rest!r} (e.g. m, 7, m7, maj7, dim, sus4, 9, m7b5)")


def parse_key(text: str) -> KeySignature:
    """A key name (C, G, Bb, F#m, Em, "A minor") as a key signature."""
    t = text.strip().replace(" major", "").replace(" minor", "m")
    m = _ROOT.match(t)
    if m is None or t[m.end() :] not in ("", "m", "min", "M", "maj"):
        raise OptionError(f"--key {text!r}: a key is a note name, with m for minor (C, Bb, F#m, Em)")
    tonic = _pitch_class(m.group(1), m.group(2))
    minor = t[m.end() :] in ("m", "min")
    major_tonic = (tonic + 3) % 12 if minor else tonic
    fifths = {0: 0, 7: 1, 2: 2, 9: 3, 4: 4, 11: 5, 6: 6, 1: -5, 8: -4, 3: -3, 10: -2, 5: -1}[major_tonic]
    if m.group(2) in ("b", "♭") and fifths > 0:  # Gb, Db: flats, not F#, C#
        fifths -= 12
    return KeySignature(0, fifths, minor)


def parse(
    text: str,
    meter: tuple[int, int] = (4, 4),
    ticks_per_beat: int = 480,
    repeat: int = 1,
    key: str | None = None,
) -> Progression:
    """A progression from text: ``|`` between bars, chords in a bar split it equally, ``%`` repeats the last bar."""
    if not 1 <= repeat <= MAX_BARS:
        raise OptionError(f"--repeat {repeat}: choose between 1 and {MAX_BARS}")
    cells = [c.strip() for c in text.strip().strip("|").split("|")]
    if not any(cells):
        raise OptionError('--chords: give at least one bar, e.g. "C | G | Am F | F G"')
    bar_ticks = round(meter[0] * ticks_per_beat * 4 / meter[1])
    bars: list[list[tuple[int, str, int | None] | None]] = []
    for k, cell in enumerate(cells, start=1):
        if cell == "%" and bars:
            bars.append(bars[-1])
            continue
        names = cell.split()
        if not names:
            raise OptionError(f"--chords: bar {k} is empty (write N.C. for a bar without a chord)")
        if len(names) > meter[0] * 4:
            raise OptionError(f"--chords: bar {k} holds {len(names)} chords, more than its 16ths")
        bars.append([parse_chord(n) for n in names])
    bars = bars * repeat
    if len(bars) > MAX_BARS:
        raise OptionError(f"--chords: {len(bars)} bars is more than {MAX_BARS}")
    symbols: list[ChordSymbol] = []
    for b, cell in enumerate(bars):
        for j, chord in enumerate(cell):
            tick = b * bar_ticks + round(j * bar_ticks / len(cell))
            symbol = ChordSymbol(tick, None) if chord is None else ChordSymbol(tick, *chord)
            if symbols and (symbols[-1].root, symbols[-1].quality, symbols[-1].bass) == (
                symbol.root,
                symbol.quality,
                symbol.bass,
            ):
                continue  # a chord that goes on is one symbol
            symbols.append(symbol)
    return Progression(symbols, len(bars), meter, ticks_per_beat, parse_key(key) if key else None)


def chord_name(chord: ChordSymbol, fifths: int = 0) -> str:
    """A chord symbol as text (Am7, G7/B, N.C.), spelled for the key."""
    if chord.root is None:
        return "N.C."
    names = _NAMES_SHARP if fifths > 0 else _NAMES_FLAT if fifths < 0 else _NAMES_C
    text = names[chord.root] + _SUFFIX.get(chord.quality, "")
    return text + (f"/{names[chord.bass]}" if chord.bass is not None else "")


def song_chords(song: Song) -> list[ChordSymbol]:
    """The chords of a song: the ones it states, else the ones midiarr hears in its pitched parts."""
    from midiarr.harmony import estimate_chords

    if song.chord_symbols:
        return list(song.chord_symbols)
    return [ChordSymbol(c.start, c.root, c.quality) for c in estimate_chords(song)]


def format_progression(song: Song, chords: list[ChordSymbol] | None = None, bars: int | None = None) -> str:
    """The song's chords in `parse`'s syntax, one cell per bar.

    A bar's cell has as few equal slots as put every chord change on a slot (a change off every slot goes to
    the nearest one); a chord that holds from the bar before is named again at the bar's start."""
    chords = [c for c in (chords if chords is not None else song_chords(song))]
    if not chords:
        return "N.C."
    fifths = song.key_signatures[0].key if song.key_signatures else 0
    end = max(song.end_tick, chords[-1].tick + 1)
    starts = song.bar_starts(end)
    if bars is not None:  # a progression's own length: its last bars may hold no change
        bar_len = int(starts[1] - starts[0]) if len(starts) > 1 else _bar_ticks(song)
        end = max(end, int(starts[0]) + bars * bar_len)
        starts = song.bar_starts(end)[:bars]
    bars = starts
    bounds = np.append(bars, max(end, int(bars[-1]) + 1))
    ticks = np.array([c.tick for c in chords])
    cells = []
    for b in range(len(bars)):
        start, stop = int(bounds[b]), int(bounds[b + 1])
        ts = song.time_signature_at(start)
        inside = [i for i in range(len(chords)) if start < ticks[i] < stop]
        current = int(np.searchsorted(ticks, start, side="right")) - 1
        if not inside:
            cells.append(chord_name(chords[current], fifths) if current >= 0 else "N.C.")
            continue
        slots = _slots(start, stop, [int(ticks[i]) for i in inside], ts.numerator)
        names = []
        for s in range(slots):
            at = start + (stop - start) * s / slots
            k = int(np.searchsorted(ticks, at + 1e-6, side="right")) - 1
            names.append(chord_name(chords[k], fifths) if k >= 0 else "N.C.")
        cells.append(" ".join(names))
    return " | ".join(cells)


def _bar_ticks(song: Song) -> int:
    ts = song.time_signature_at(0)
    return round(ts.numerator * song.ticks_per_beat * 4 / ts.denominator)


def _slots(start: int, stop: int, changes: list[int], beats: int) -> int:
    """The fewest equal slots of the bar (among divisors of its 16ths) that hold every change on a slot."""
    length = stop - start
    sixteenths = max(1, beats * 4)
    candidates = [n for n in range(1, sixteenths + 1) if sixteenths % n == 0] or [sixteenths]
    sixteenth = length / sixteenths
    for n in candidates:
        step = length / n
        # up to a beat per slot, a change a 16th off the slot (a chord played early or late) goes on it
        tolerance = sixteenth * 1.01 if n <= beats else 1e-6
        if all(abs(c - start - round((c - start) / step) * step) <= tolerance for c in changes):
            return n
    # no exact fit: the finest slots, each change at its nearest
    return candidates[-1]


def chord_notes(song: Song, chords: list[ChordSymbol]) -> np.ndarray:
    """The chords as sustained notes (their tones, one octave), for measuring parts against them."""
    from midiarr.song import NOTE_DTYPE

    end = max(song.end_tick, chords[-1].tick + 1) if chords else song.end_tick
    rows = []
    for i, c in enumerate(chords):
        if c.root is None or c.quality not in QUALITIES:
            continue
        stop = chords[i + 1].tick if i + 1 < len(chords) else end
        for iv in QUALITIES[c.quality][0]:
            rows.append((c.tick, max(1, stop - c.tick), 60 + (c.root + iv) % 12, 64))
    return np.array(rows, dtype=NOTE_DTYPE) if rows else np.zeros(0, dtype=NOTE_DTYPE)


CHORD_TRACK_NAMES = ("chord", "chords", "chord track", "chord symbols", "harmony")


def chord_track(song: Song) -> int | None:
    """The song's chord track, by name ("Chords", as lead-sheet and accompaniment programs export them): a
    pitched track with notes, when exactly one such track is there."""
    found = [
        i
        for i, t in enumerate(song.tracks)
        if not t.is_drum and len(t.notes) and t.name.strip().lower() in CHORD_TRACK_NAMES
    ]
    return found[0] if len(found) == 1 else None


def chords_of_track(song: Song, index: int) -> list[ChordSymbol]:
    """The chords a chord track plays: one per onset of its block chords (the notes starting together), with
    its lowest note as a slash bass when that is not the root."""
    from midiarr.harmony import best_chord

    notes = song.tracks[index].notes
    out: list[ChordSymbol] = []
    for tick in np.unique(notes["start"]):
        block = notes[notes["start"] == tick]
        chroma = np.zeros(12)
        np.add.at(chroma, block["pitch"] % 12, 1.0)
        if np.count_nonzero(chroma) < 2:
            continue  # a single note is a melody or a bass note, not a chord
        root, quality, _ = best_chord(chroma)
        low = int(block["pitch"].min()) % 12
        symbol = ChordSymbol(int(tick), root, quality, low if low != root else None)
        if not out or (out[-1].root, out[-1].quality, out[-1].bass) != (symbol.root, symbol.quality, symbol.bass):
            out.append(symbol)
    return out


def with_chord_track(song: Song) -> tuple[Song, int | None]:
    """``song`` stating the chords of its chord track (when it has one and states no chords yet), and the track."""
    index = chord_track(song) if not song.chord_symbols else None
    if index is None:
        return song, None
    out = song.with_tracks(song.tracks)
    out.chord_symbols = chords_of_track(song, index)
    return (out, index) if out.chord_symbols else (song, None)
