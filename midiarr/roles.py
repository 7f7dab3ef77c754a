"""Stem roles: which part of the band each track plays.

A role comes from, in order: an explicit ``Track.role`` or user override, the
drum flag (channel 10), words in the track name, and the General MIDI program.
Names win over programs because amateur files often leave a bass or guitar on
program 0 but rarely mislabel the part by name.
"""

from __future__ import annotations

import re

import numpy as np

from midiarr.errors import OptionError
from midiarr.song import Song, Track

ROLES: tuple[str, ...] = ("drums", "bass", "guitar", "piano", "strings", "lead", "other")
# Stems that `subtract`/`prepare` take out and engines write back.
REMOVABLE_STEMS: tuple[str, ...] = ("bass", "drums", "guitar", "piano", "strings")
# MIDI pitches each stem can play (drums: the GM percussion keys). Writers keep within them; the
# evaluation's range validity counts notes inside them.
PLAYABLE_RANGES: dict[str, tuple[int, int]] = {
    "bass": (23, 67),
    "guitar": (40, 88),
    "piano": (21, 108),
    "strings": (28, 103),
    "drums": (27, 87),
}

# Word patterns per role, tried in this order (drums before bass: "bass drum").
_NAME_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (role, re.compile(pattern))
    for role, pattern in (
        (
            "drums",
            r"drum|\bkit\b|percus|\bperc\b|kick|snare|hi-?hat|cymbal|\btoms?\b|conga|bongo|shaker|tambourin|batterie|schlagzeug",
        ),
        ("bass", r"bass(?!oon)|\bbajo\b|\bbaixo\b|\bbasso\b"),
        ("guitar", r"guit|gtr|gitar|\bgit\b|\bdist(ortion)?\b|overdrive|banjo|mandolin|ukulele"),
        ("piano", r"piano|\bpno\b|\bkeys?\b|keyboard|rhodes|wurli|\bclav|\bep\b|e\.piano|harpsichord"),
        ("strings", r"string|violin|viola|cello|\bstr\b|\bvln\b|\bvla\b|\bvc\b|orchestr|ensemble|\bharp\b"),
        ("lead", r"melod|vocal|\bvox\b|voice|\blead\b|\bsolo\b|\bsing|\bsax|trumpet|flute|clarinet|oboe|whistle"),
    )
)


def role_from_program(program: int) -> str:
    """Role of a pitched part from its General MIDI program (0-127)."""
    if 0 <= program <= 7:
        return "piano"
    if 24 <= program <= 31:
        return "guitar"
    if 32 <= program <= 39:
        return "bass"
    if 40 <= program <= 46 or 48 <= program <= 51:
        return "strings"
    if 56 <= program <= 60 or 64 <= program <= 87:
        return "lead"
    return "other"


def role_from_name(name: str) -> str | None:
    """Role named by words in a track name, if any."""
    lowered = name.lower()
    for role, pattern in _NAME_PATTERNS:
        if pattern.search(lowered):
            return role
    return None


def infer_role(track: Track) -> str:
    """Best guess at a track's role from its drum flag, name and program."""
    if track.role in ROLES:
        return track.role
    if track.is_drum:
        return "drums"
    by_name = role_from_name(track.name)
    by_program = role_from_program(track.program)
    role = by_name or by_program
    if role == "drums":  # a pitched track named "drums" plays melodic percussion, not the kit
        role = by_program
    if len(track.notes):
        median = float(np.median(track.notes["pitch"]))
        if role == "bass" and median >= 60:  # "bass" in the name of a part that plays high
            role = by_program if by_program != "bass" else "other"
        elif role == "strings" and track.program == 43 and median < 48:  # contrabass lines are bass lines
            role = "bass"
    return role


def assign_roles(song: Song, overrides: dict[int, str] | None = None) -> dict[int, str]:
    """Role of every track by index; ``overrides`` (index -> role) win."""
    overrides = overrides or {}
    for index, role in overrides.items():
        if not 0 <= index < len(song.tracks):
            raise OptionError(f"--role {index}={role}: the song has tracks 0..{len(song.tracks) - 1}")
    return {i: overrides.get(i) or infer_role(t) for i, t in enumerate(song.tracks)}


def parse_role_overrides(items: list[str] | None) -> dict[int, str]:
    """Parse ``["3=bass", "5=drums"]`` into ``{3: "bass", 5: "drums"}``."""
    out: dict[int, str] = {}
    for item in items or []:
        index, sep, role = item.partition("=")
        role = role.strip().lower()
        if not sep or not index.strip().isdigit():
            raise OptionError(f"--role {item!r}: expected TRACK=ROLE, e.g. 3=bass")
        if role not in ROLES:
            raise OptionError(f"--role {item!r}: unknown role {role!r} (choose from {', '.join(ROLES)})")
        out[int(index)] = role
    return out


def check_stem(stem: str, allowed: tuple[str, ...] = REMOVABLE_STEMS) -> str:
    """Validate a stem name given by a user (case-insensitive)."""
    name = stem.strip().lower()
    if name not in allowed:
        raise OptionError(f"unknown stem {stem!r} (choose from {', '.join(allowed)})")
    return name


def tracks_with_role(roles: dict[int, str], role: str) -> list[int]:
    """Indices of the tracks that play ``role``."""
    return [i for i, r in sorted(roles.items()) if r == role]
