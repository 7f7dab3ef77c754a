"""Measured attributes of a part, and instruction text <-> attributes.

Subtractive Training pairs each removed stem with an instruction. Here the
instruction is written from what the removed part measurably does (density,
rhythm, dynamics, register, polyphony, activity per bar) so the words are true
of the target, and the same words parse back into attribute bins that engines
take as controls.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from midiarr.config import load_config
from midiarr.song import Song

NOTE_VALUES = ("whole", "half", "quarter", "eighth", "sixteenth")
BINS: dict[str, tuple[str, ...]] = {
    "density": ("sparse", "medium", "busy"),
    "dynamics": ("soft", "medium", "loud"),
    "register": ("low", "mid", "high"),
    "rhythm": ("straight", "syncopated"),
    "polyphony": ("single", "chords"),
    "note_value": NOTE_VALUES,
}

GENRES: dict[str, str] = {
    # word in a path or metadata -> genre word used in instructions
    "rock": "rock",
    "pop": "pop",
    "jazz": "jazz",
    "blues": "blues",
    "funk": "funk",
    "country": "country",
    "metal": "metal",
    "reggae": "reggae",
    "latin": "latin",
    "disco": "disco",
    "soul": "soul",
    "rnb": "r&b",
    "hiphop": "hip-hop",
    "punk": "punk",
    "folk": "folk",
    "classical": "classical",
    "electronic": "electronic",
    "dance": "dance",
    "gospel": "gospel",
    "christian": "gospel",
    "swing": "swing",
    "bossa": "bossa nova",
    "samba": "samba",
    "ska": "ska",
    "afrobeat": "afrobeat",
    "afrocuban": "afro-cuban",
    "soundtrack": "soundtrack",
    "anime": "anime",
    "irish": "celtic",
    "celtic": "celtic",
    "march": "march",
    "waltz": "waltz",
    "techno": "techno",
    "house": "house",
    "trance": "trance",
    "ragtime": "ragtime",
    "neworleans": "new orleans",
    "highlife": "highlife",
    "middleeastern": "middle-eastern",
    "ballad": "ballad",
}
# RWC collection codes name their genre.
_RWC_GENRES = {"rwc-j": "jazz", "rwc-p": "pop", "rwc-c": "classical"}


@dataclass
class StemAttributes:
    """What a part does, as numbers and as bins."""

    stem: str
    num_bars: int
    active_bars: int
    activity: list[int]
    notes: int
    onsets_per_beat: float
    notes_per_bar: float
    syncopation: float
    sixteenth_share: float
    median_ioi_beats: float
    velocity_mean: float
    velocity_std: float
    pitch_mean: float
    pitch_min: int
    pitch_max: int
    polyphony: float
    genre: str | None = None
    bins: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def _edges(section: str, stem: str) -> Any:
    cfg = load_config("attributes.toml")[section]
    return cfg.get(stem, cfg["default"])


def bin_edges(section: str, stem: str) -> list[float]:
    """The configured edges of one attribute's bins for ``stem`` (configs/attributes.toml)."""
    return list(_edges(section, stem))


def _bin3(value: float, edges: list[float], names: tuple[str, ...]) -> str:
    return names[int(np.searchsorted(edges, value, side="right"))]


def note_value_name(ioi_beats: float) -> str:
    """Name of the note value closest to an inter-onset interval in quarter notes."""
    if ioi_beats >= 3:
        return "whole"
    if ioi_beats >= 1.5:
        return "half"
    if ioi_beats >= 0.75:
        return "quarter"
    if ioi_beats >= 0.375:
        return "eighth"
    return "sixteenth"


def measure(song: Song, notes: np.ndarray, stem: str, genre: str | None = None) -> StemAttributes:
    """Attributes of ``notes`` (one stem, possibly several tracks merged) on the song's grid."""
    tpb = song.ticks_per_beat
    bars = song.bar_starts()
    activity = song.bar_activity(notes, len(bars))
    active = int(activity.sum())
    if len(notes) == 0:
        stats = dict(
            onsets_per_beat=0.0,
            notes_per_bar=0.0,
            syncopation=0.0,
            sixteenth_share=0.0,
            median_ioi_beats=0.0,
            velocity_mean=0.0,
            velocity_std=0.0,
            pitch_mean=0.0,
            pitch_min=0,
            pitch_max=0,
            polyphony=0.0,
        )
    else:
        onsets = np.unique(notes["start"])
        # length of active bars in quarter notes: the denominator for density
        bar_ends = np.append(bars[1:], max(song.end_tick, int(bars[-1]) + 1))
        active_beats = float(((bar_ends - bars)[activity]).sum()) / tpb
        # Human-played files drift off the grid, so "on the beat" allows a 32nd note either way.
        tol = tpb / 8
        beat_pos = onsets % tpb
        off_beat = np.minimum(beat_pos, tpb - beat_pos) > tol
        # Syncopation: an off-beat onset whose next beat brings no new onset (an anticipation),
        # so straight eighths count as straight and a pushed "and of 4" counts as syncopated.
        next_beat = (onsets // tpb + 1) * tpb
        lo = np.searchsorted(onsets, next_beat - tol, side="left")
        hi = np.searchsorted(onsets, next_beat + tol, side="right")
        # the last onsets have nothing after them to be judged against
        syncopated = off_beat & (hi == lo) & (next_beat <= onsets[-1] + tol)
        sixteenth = np.abs(np.abs(beat_pos / tpb - 0.5) - 0.25) < 1 / 16  # 2nd and 4th 16th of a beat
        iois = np.diff(onsets) / tpb
        stats = dict(
            onsets_per_beat=float(len(onsets) / max(active_beats, 1e-9)),
            notes_per_bar=float(len(notes) / max(active, 1)),
            syncopation=float(syncopated.mean()),
            sixteenth_share=float(sixteenth.mean()),
            median_ioi_beats=float(np.median(iois)) if len(iois) else 0.0,
            velocity_mean=float(notes["velocity"].mean()),
            velocity_std=float(notes["velocity"].std()),
            pitch_mean=float(notes["pitch"].mean()),
            pitch_min=int(notes["pitch"].min()),
            pitch_max=int(notes["pitch"].max()),
            polyphony=float(len(notes) / len(onsets)),
        )
    attrs = StemAttributes(
        stem=stem,
        num_bars=len(bars),
        active_bars=active,
        activity=activity.astype(int).tolist(),
        notes=len(notes),
        genre=genre,
        **stats,
    )
    attrs.bins = bin_attributes(attrs)
    return attrs


def bin_attributes(a: StemAttributes) -> dict[str, str]:
    """Bins (words) for the measured numbers, with thresholds from configs/attributes.toml."""
    if a.notes == 0:
        return {}
    cfg = load_config("attributes.toml")
    sync_edge = cfg["syncopation"].get(a.stem, cfg["syncopation"]["default"])
    poly_edge = cfg["polyphony"].get(a.stem, cfg["polyphony"]["default"])
    bins = {
        "density": _bin3(a.onsets_per_beat, _edges("density", a.stem), BINS["density"]),
        "dynamics": _bin3(a.velocity_mean, _edges("dynamics", a.stem), BINS["dynamics"]),
        "rhythm": "syncopated" if a.syncopation > sync_edge else "straight",
        "polyphony": "chords" if a.polyphony > poly_edge else "single",
        "note_value": note_value_name(a.median_ioi_beats),
    }
    if a.stem != "drums":
        bins["register"] = _bin3(a.pitch_mean, _edges("register", a.stem), BINS["register"])
    return bins


def genre_from_text(*texts: str) -> str | None:
    """A genre word found in paths, titles or metadata, if any."""
    for text in texts:
        lowered = text.lower()
        for code, genre in _RWC_GENRES.items():
            if code in lowered:
                return genre
        for word in re.split(r"[^a-z0-9&]+", lowered.replace("hip-hop", "hiphop").replace("r&b", "rnb")):
            if word in GENRES:
                return GENRES[word]
            base = word.rstrip("0123456789")
            if base in GENRES:
                return GENRES[base]
    return None


# ------------------------------------------------------------- instructions
_VERBS = ("Add", "Write", "Insert", "Give it", "Create", "Compose", "Bring in", "Lay down")
_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "density": {
        "sparse": ("sparse", "minimal", "laid-back", "spacious"),
        "medium": ("steady", "moderate", "medium-density"),
        "busy": ("busy", "driving", "dense", "energetic"),
    },
    "dynamics": {
        "soft": ("soft", "quiet", "gentle", "played softly"),
        "medium": ("at medium volume", "moderately loud", "medium dynamics"),
        "loud": ("loud", "powerful", "hard-hitting", "played hard"),
    },
    "rhythm": {
        "straight": ("straight", "on-the-beat", "square"),
        "syncopated": ("syncopated", "off-beat", "funky"),
    },
    "register": {
        "low": ("low", "deep", "low-register"),
        "mid": ("mid-register", "mid-range"),
        "high": ("high", "high-register", "bright"),
    },
    "polyphony": {
        "single": ("single-note", "melodic"),
        "chords": ("chordal", "full-chord"),
    },
}
_STEM_NOUNS = {
    "bass": ("bass", "bass line", "bass part"),
    "drums": ("drum part", "beat", "drum groove"),
    "guitar": ("guitar", "guitar part", "rhythm guitar"),
    "piano": ("piano", "piano part", "keyboard part"),
    "strings": ("string part", "string section", "string arrangement"),
}
# Extra words a person might type, mapped onto bins.
_SYNONYMS: dict[str, tuple[str, str]] = {
    "simple": ("density", "sparse"),
    "few": ("density", "sparse"),
    "spare": ("density", "sparse"),
    "calm": ("density", "sparse"),
    "slow": ("density", "sparse"),
    "fast": ("density", "busy"),
    "active": ("density", "busy"),
    "lively": ("density", "busy"),
    "groovy": ("rhythm", "syncopated"),
    "swung": ("rhythm", "syncopated"),
    "offbeat": ("rhythm", "syncopated"),
    "quietly": ("dynamics", "soft"),
    "softly": ("dynamics", "soft"),
    "mellow": ("dynamics", "soft"),
    "delicate": ("dynamics", "soft"),
    "heavy": ("dynamics", "loud"),
    "aggressive": ("dynamics", "loud"),
    "hard": ("dynamics", "loud"),
    "strong": ("dynamics", "loud"),
    "punchy": ("dynamics", "loud"),
    "deep": ("register", "low"),
    "bright": ("register", "high"),
    "chords": ("polyphony", "chords"),
    "strummed": ("polyphony", "chords"),
    "strumming": ("polyphony", "chords"),
    "arpeggiated": ("polyphony", "single"),
    "melodic": ("polyphony", "single"),
}
_NOTE_VALUE_WORDS = {
    "whole-note": "whole",
    "half-note": "half",
    "quarter-note": "quarter",
    "eighth-note": "eighth",
    "sixteenth-note": "sixteenth",
    "8th": "eighth",
    "16th": "sixteenth",
    "eighths": "eighth",
    "sixteenths": "sixteenth",
}


def describe(attrs: StemAttributes, rng: random.Random | None = None) -> str:
    """An instruction that says what the part does, e.g. "Add a driving eighth-note bass, loud"."""
    rng = rng or random.Random(0)
    b = attrs.bins
    if not b:
        return f"Add a {attrs.stem} part"
    pick = rng.choice
    noun = pick(_STEM_NOUNS.get(attrs.stem, (attrs.stem,)))
    front = [pick(_WORDS["density"][b["density"]])]
    if rng.random() < 0.7:
        front.append(pick(_WORDS["rhythm"][b["rhythm"]]))
    if rng.random() < 0.6 and attrs.stem != "drums":
        front.append(f"{b['note_value']}-note")
    if "register" in b and b["register"] != "mid" and rng.random() < 0.5:
        front.append(pick(_WORDS["register"][b["register"]]))
    if attrs.stem in ("guitar", "piano", "strings") and rng.random() < 0.6:
        front.append(pick(_WORDS["polyphony"][b["polyphony"]]))
    if attrs.genre and rng.random() < 0.8:
        front.append(attrs.genre)
    dyn = pick(_WORDS["dynamics"][b["dynamics"]])
    phrase = " ".join([*front, noun])
    article = "an" if phrase[0] in "aeiou" else "a"
    style = rng.randrange(3)
    if style == 0:
        return f"{pick(_VERBS)} {article} {phrase}, {dyn}"
    if style == 1:
        return f"{pick(_VERBS)} {article} {phrase} ({dyn})"
    return f"The song needs {article} {phrase}, {dyn}"


@dataclass
class ParsedInstruction:
    """Bins named by an instruction, the stem if it names one, and words midiarr did not use."""

    bins: dict[str, str]
    stem: str | None
    unknown_words: list[str]


_FILLER = {
    "a",
    "an",
    "the",
    "add",
    "write",
    "insert",
    "give",
    "it",
    "create",
    "compose",
    "bring",
    "in",
    "lay",
    "down",
    "song",
    "needs",
    "keep",
    "part",
    "line",
    "with",
    "and",
    "some",
    "play",
    "played",
    "please",
    "me",
    "of",
    "to",
    "at",
    "volume",
    "dynamics",
    "section",
    "groove",
    "beat",
    "style",
    "feel",
    "register",
    "range",
    "but",
    "note",
    "notes",
    "that",
    "is",
    "very",
    "more",
    "less",
    "bit",
    "little",
    "rather",
    "quite",
    "kind",
    "sort",
}


def parse_instruction(text: str) -> ParsedInstruction:
    """Bins from free text ("busy syncopated bass, soft"); later words win over earlier ones."""
    lowered = text.lower()
    bins: dict[str, str] = {}
    for phrase, value in _NOTE_VALUE_WORDS.items():
        if phrase in lowered:
            bins["note_value"] = value
    for value in NOTE_VALUES:
        if re.search(rf"\b{value}[- ]notes?\b", lowered):
            bins["note_value"] = value
    # Longest phrases first, each consumed once, so "moderately loud" is medium, not loud.
    phrases = [(p, attr, value) for attr, table in _WORDS.items() for value, ps in table.items() for p in ps]
    phrases += [(word, attr, value) for word, (attr, value) in _SYNONYMS.items()]
    known: set[str] = set()
    remaining = lowered
    for phrase, attr, value in sorted(phrases, key=lambda x: -len(x[0])):
        pattern = rf"\b{re.escape(phrase)}\b"
        if re.search(pattern, remaining):
            bins.setdefault(attr, value)
            known.update(phrase.replace("-", " ").split())
            remaining = re.sub(pattern, " ", remaining)
    stem = None  # looked for after the attribute phrases are consumed: "off-beat" names no drum "beat"
    for candidate, nouns in _STEM_NOUNS.items():
        if any(re.search(rf"\b{re.escape(n)}\b", remaining) for n in (candidate, *nouns)):
            stem = candidate
            break
    if stem is None and re.search(r"\bdrum", remaining):
        stem = "drums"
    for attr, values in BINS.items():
        for value in values:
            if re.search(rf"\b{value}\b", remaining) and attr != "note_value":
                bins.setdefault(attr, value)
                known.add(value)
    known.update(w for nouns in _STEM_NOUNS.values() for n in nouns for w in n.split())
    known.update(re.split(r"[- ]", " ".join(_NOTE_VALUE_WORDS)))
    known.update(NOTE_VALUES)
    known.update(g for genre in GENRES.values() for g in genre.split())
    genre = genre_from_text(lowered)
    if genre:
        bins["genre"] = genre
    words = re.findall(r"[a-z&0-9]+", lowered.replace("-", " "))
    unknown = [w for w in words if w not in known and w not in _FILLER and w not in ("drum", "drums")]
    return ParsedInstruction(bins=bins, stem=stem, unknown_words=unknown)
