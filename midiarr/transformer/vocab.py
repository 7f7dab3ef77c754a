"""The stem transformer's compact vocabulary (about 350 tokens).

A sequence reads: instruction tokens (stem and attribute bins), then bar by bar a
context block (``BAR``, bar length, chords, each other part's onsets) and a target
block (``TGT`` ... ``EOB``) holding the stem's notes on a 16th-note grid. The vocabulary
is small on purpose: CPU training and sampling cost grow with it, and every token type
can be masked by the sampler's grammar.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from midiarr.attributes import BINS, GENRES
from midiarr.harmony import QUALITIES

STEMS: tuple[str, ...] = ("bass", "drums", "guitar", "piano", "strings")
CONTEXT_ROLES: tuple[str, ...] = ("drums", "bass", "guitar", "piano", "strings", "other")
# Attributes that steer the model, in the order their tokens appear after the stem token.
CONTROL_ATTRIBUTES: tuple[str, ...] = ("density", "dynamics", "rhythm", "register", "polyphony", "genre")
MAX_STEPS = 32  # 16th-note steps per bar the grid can hold (8 quarter notes)
NUM_VELOCITIES = 8
DURATIONS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)  # in 16th-note steps
PITCH_LOW, PITCH_HIGH = 21, 108
# Drum classes and the GM note each class writes.
DRUM_CLASSES: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    ("kick", 36, (35, 36)),
    ("snare", 38, (38, 40)),
    ("side_stick", 37, (37,)),
    ("clap", 39, (39,)),
    ("closed_hat", 42, (42,)),
    ("pedal_hat", 44, (44,)),
    ("open_hat", 46, (46,)),
    ("low_tom", 45, (41, 43, 45)),
    ("mid_tom", 47, (47, 48)),
    ("high_tom", 50, (50,)),
    ("crash", 49, (49, 52, 55, 57)),
    ("ride", 51, (51, 59)),
    ("ride_bell", 53, (53,)),
    ("shaker", 54, (54, 69, 70, 82)),
    ("latin", 63, tuple(range(60, 69)) + tuple(range(71, 76)) + (78, 79, 80, 81)),
    ("other_perc", 56, ()),
)
GENRE_WORDS: tuple[str, ...] = tuple(sorted(set(GENRES.values())))


def drum_class_table() -> list[int]:
    """Drum class of every MIDI note number (unlisted sounds go to "other_perc")."""
    table = [len(DRUM_CLASSES) - 1] * 128
    for i, (_, _, notes) in enumerate(DRUM_CLASSES):
        for n in notes:
            table[n] = i
    return table


def control_values(name: str) -> tuple[str, ...]:
    """The words an attribute token can hold (plus "any" for unspecified)."""
    return (*GENRE_WORDS, "any") if name == "genre" else (*BINS[name], "any")


@dataclass
class Vocab:
    """Token strings and ids; ranges of the numeric token families for fast masking."""

    tokens: list[str] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tokens:
            return
        self._add("PAD", "BOS", "EOS", "BAR", "TGT", "EOB")
        self._add(*(f"STEM_{s}" for s in STEMS))
        for name in CONTROL_ATTRIBUTES:
            self._add(*(f"{name.upper()}_{v}" for v in control_values(name)))
        self._add(*(f"LEN_{n}" for n in range(1, MAX_STEPS + 1)))
        self._add(*(f"ROLE_{r}" for r in CONTEXT_ROLES))
        self._add(*(f"POS_{p}" for p in range(MAX_STEPS)))
        self._add(*(f"CHORD_{r}_{q}" for q in QUALITIES for r in range(12)))
        self._add(*(f"VEL_{v}" for v in range(NUM_VELOCITIES)))
        self._add(*(f"PITCH_{p}" for p in range(PITCH_LOW, PITCH_HIGH + 1)))
        self._add(*(f"DRUM_{name}" for name, _, _ in DRUM_CLASSES))
        self._add(*(f"DUR_{d}" for d in DURATIONS))

    def _add(self, *names: str) -> None:
        for n in names:
            self.ids[n] = len(self.tokens)
            self.tokens.append(n)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, name: str) -> int:
        return self.ids[name]

    def first(self, prefix: str) -> int:
        """Id of the first token of a family such as ``"POS_"``."""
        return next(i for i, t in enumerate(self.tokens) if t.startswith(prefix))

    def family(self, prefix: str) -> range:
        """Ids of a token family (they are contiguous)."""
        members = [i for i, t in enumerate(self.tokens) if t.startswith(prefix)]
        return range(members[0], members[-1] + 1)


VOCAB = Vocab()
POS0 = VOCAB.first("POS_")
VEL0 = VOCAB.first("VEL_")
PITCH0 = VOCAB.first("PITCH_")
DRUM0 = VOCAB.first("DRUM_")
DUR0 = VOCAB.first("DUR_")
LEN0 = VOCAB.first("LEN_")
CHORD0 = VOCAB.first("CHORD_")
NUM_QUALITIES = len(QUALITIES)
