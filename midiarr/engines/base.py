"""The one interface every engine implements, and the registry that finds engines by name.

An engine writes one stem into a song: it gets the song without that stem (the
context), the controls asked for, a per-bar activity mask and a seed, and
returns the song with the new part added. Other tracks are never touched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from midiarr.attributes import BINS, bin_edges, parse_instruction
from midiarr.engines.settings import EngineSettings
from midiarr.errors import ExistingPartError, LimitError, OptionError
from midiarr.roles import REMOVABLE_STEMS, ROLES, assign_roles, check_stem, tracks_with_role
from midiarr.song import ChordSymbol, KeySignature, Song, Tempo, TimeSignature, Track
from midiarr.timing import TIMINGS, lock_to_feel

# Order in which `generate` writes stems from nothing: harmony first, then bass, then drums.
GENERATE_ORDER: tuple[str, ...] = ("piano", "guitar", "strings", "bass", "drums")


@dataclass
class Controls:
    """What the user asked for: attribute bins (density, dynamics, rhythm, register, polyphony,
    note_value, genre), from an instruction and/or explicit flags (flags win)."""

    bins: dict[str, str] = field(default_factory=dict)
    instruction: str | None = None
    unknown_words: list[str] = field(default_factory=list)
    # "song": onsets follow the other parts' micro-timing (see midiarr.timing); "grid": exact 16ths
    timing: str = "song"
    # a player's touch on the velocities of engines that write none of their own (see midiarr.player.touch)
    touch: bool = True
    # bars played again where the song repeats itself, as real players of the stem do (midiarr.player.repeats)
    repeats: bool = True
    # no density asked: engines that hear density bins get the one real parts play in songs like this
    # (midiarr.player.density); the names of the bins filled in so go to ``inferred``
    song_density: bool = True
    inferred: tuple[str, ...] = ()
    # the onsets per quarter note the density model predicts for the part, when it filled in the bin
    density_rate: float | None = None

    @classmethod
    def build(
        cls,
        instruction: str | None = None,
        timing: str = "song",
        touch: bool = True,
        song_density: bool = True,
        repeats: bool = True,
        **flags: str | None,
    ) -> Controls:
        """Controls from free text plus explicit flags such as ``density="busy"``; ``timing``,
        ``touch``, ``song_density`` and ``repeats`` as the fields."""
        bins: dict[str, str] = {}
        unknown: list[str] = []
        if instruction:
            parsed = parse_instruction(instruction)
            bins.update(parsed.bins)
            unknown = parsed.unknown_words
        bins.update({k: v for k, v in flags.items() if v})
        return cls(
            bins=bins,
            instruction=instruction,
            unknown_words=unknown,
            timing=timing,
            touch=touch,
            song_density=song_density,
            repeats=repeats,
        )


@dataclass
class InsertResult:
    """The song with the new part, which tracks are new, and what was replaced (only with ``replace``)."""

    song: Song
    stem: str
    new_tracks: list[int]
    replaced_tracks: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    # the role of every track of ``song`` (the input's roles, overrides included, and the new stems), so
    # a next insert into ``song`` keeps the user's --role overrides instead of guessing again
    roles: dict[int, str] = field(default_factory=dict)


class Engine(ABC):
    """Writes a missing stem for a song."""

    name: str = "engine"
    stems: tuple[str, ...] = REMOVABLE_STEMS
    can_generate: bool = False  # can write a first part with nothing to listen to
    # the most bars one call writes (None: no limit); a model engine's time grows with every bar, so a
    # song of thousands of bars is refused up front instead of running for many minutes
    max_bars: int | None = None
    # whether the engine writes each note's velocity itself; an engine that does not (one level per part)
    # gets a player's touch from `give_touch`
    writes_touch: bool = False
    # whether the engine plays its bars again where the song repeats (else `give_repeats` does)
    writes_repeats: bool = False
    # whether the engine hears a density bin; one that does is given the song's (`song_density`) when
    # the user asks for none
    hears_density: bool = False
    # whether the engine runs on a checkpoint folder (its ``checkpoint`` option)
    takes_checkpoint: bool = False

    def __init__(self, settings: EngineSettings | None = None, **options: Any) -> None:
        """An engine with ``settings`` (default: its settings' defaults) and ``options`` over them."""
        self.settings = self.resolve_settings(None, settings, options)

    @classmethod
    def resolve_settings(cls, checkpoint: Path | None, settings: EngineSettings | None, options: dict[str, Any]) -> Any:
        """``settings`` with ``options`` over them, or else the checkpoint's tuned settings with them."""
        if settings is not None:
            return settings.replace(**options)
        return cls.settings_type().from_checkpoint(checkpoint, **options)

    @classmethod
    def settings_type(cls) -> type[EngineSettings]:
        """The dataclass of this engine's settings: the options it takes besides ``checkpoint``."""
        return EngineSettings

    @classmethod
    def default_checkpoint(cls) -> Path | None:
        """The checkpoint folder the engine runs on when none is given (None: it needs none)."""
        return None

    def check_bars(self, bars: int) -> None:
        """Raise `LimitError` when a song of ``bars`` bars is longer than this engine works on."""
        if self.max_bars is not None and bars > self.max_bars:
            raise LimitError(
                f"the song has {bars} bars and the {self.name} engine works on songs of up to {self.max_bars}; "
                "use --engine rules, or cut the song"
            )

    @abstractmethod
    def write_part(
        self, context: Song, stem: str, controls: Controls, active: np.ndarray, rng: np.random.Generator
    ) -> list[Track]:
        """The new stem's track(s) for ``context`` (the song without that stem).

        ``active`` holds one flag per bar of the context: write notes only where it is set.
        """

    def insert(
        self,
        song: Song,
        stem: str,
        controls: Controls | None = None,
        active: np.ndarray | None = None,
        seed: int = 0,
        roles: dict[int, str] | None = None,
        replace: bool = False,
    ) -> InsertResult:
        """The song with ``stem`` written by this engine and added as new track(s) at the end.

        Every other track is kept exactly. If the song already has a part of that role this raises
        `ExistingPartError` naming it; with ``replace=True`` that part is taken out and replaced.
        """
        stem = check_stem(stem, self.stems)
        context, kept, existing, roles = make_room(song, [stem], roles, replace)
        self.check_bars(context.num_bars)
        mask = fit_activity(context, active)
        controls = song_density(self, context, stem, controls or Controls())
        tracks = self.write_part(context, stem, controls, mask, np.random.default_rng(seed))
        for t in tracks:
            t.role = stem
        tracks = as_played(self, context, tracks, controls, seed, mask)
        tracks = follow_timing(context, tracks, controls, mask)
        return build_result(song, context, kept, existing, roles, tracks, [stem] * len(tracks), stem)

    def write_infill(
        self,
        context: Song,
        stem: str,
        controls: Controls,
        span: np.ndarray,
        rng: np.random.Generator,
        own: np.ndarray,
    ) -> list[Track]:
        """The part's notes for the bars of ``span`` (`midiarr.infill`). ``own`` holds the part's notes in the
        other bars; this default writes the span from the other parts alone, and an engine that can continue
        a part's own bars overrides it."""
        return self.write_part(context, stem, controls, span, rng)

    def insert_stems(
        self,
        song: Song,
        stems: list[str],
        controls: Controls | None = None,
        active: np.ndarray | None = None,
        seed: int = 0,
        roles: dict[int, str] | None = None,
        replace: bool = False,
    ) -> InsertResult:
        """The song with several stems written; by default one at a time, each hearing the ones
        before it (an engine that writes stems jointly overrides this). ``replace`` as in `insert`."""
        if not stems:
            raise OptionError("name at least one stem")
        stems = [check_stem(s, self.stems) for s in stems]
        roles = roles if roles is not None else assign_roles(song)
        if not replace:  # ask about every stem before writing any
            refuse_existing(song, stems, roles)
        replaced: list[str] = []
        written = 0
        for k, stem in enumerate(stems):
            # new tracks always go to the end, so the last `written` tracks are the new ones
            result = self.insert(song, stem, controls, active=active, seed=seed + k, roles=roles, replace=replace)
            song, roles = result.song, result.roles
            replaced += result.replaced_tracks
            written += len(result.new_tracks)
        return InsertResult(
            song=song,
            stem=",".join(stems),
            new_tracks=list(range(len(song.tracks) - written, len(song.tracks))),
            replaced_tracks=replaced,
            roles=roles,
        )

    def generate(
        self,
        stems: list[str],
        bars: int,
        controls: Controls | None = None,
        seed: int = 0,
        qpm: float = 120.0,
        meter: tuple[int, int] = (4, 4),
        ticks_per_beat: int = 480,
        chords: list[ChordSymbol] | None = None,
        key: KeySignature | None = None,
    ) -> Song:
        """A new song of ``bars`` bars with ``stems``: the first written from nothing (or from ``chords``,
        a progression every part hears as the song's harmony), each next one hearing the parts before it
        (harmony first, then bass, then drums)."""
        if not self.can_generate:
            able = " or ".join(n for n in available_engines() if can_generate(n))
            raise OptionError(f"the {self.name} engine cannot write a song from nothing; use --engine {able}")
        order = sorted({check_stem(s, self.stems) for s in stems}, key=GENERATE_ORDER.index)
        self.check_bars(bars)
        song = empty_song(bars, qpm, meter, ticks_per_beat)
        song.chord_symbols = list(chords or [])
        song.key_signatures = [key] if key is not None else []
        return self.write_song(song, order, bars, controls or Controls(), seed)

    def write_song(self, song: Song, stems: list[str], bars: int, controls: Controls, seed: int) -> Song:
        """`generate`'s writing: ``stems`` (in order) into the empty ``song`` of ``bars`` bars, each hearing the
        ones before it. An engine that writes stems together overrides this."""
        mask = np.ones(bars, dtype=bool)
        for k, stem in enumerate(stems):
            tracks = self.write_part(song, stem, controls, mask, np.random.default_rng(seed + k))
            for t in tracks:
                t.role = stem
            song = song.with_tracks(song.tracks + as_played(self, song, tracks, controls, seed + k))
        return song


def song_density(engine: Engine, context: Song, stem: str, controls: Controls) -> Controls:
    """``controls`` with the density bin real parts of ``stem`` play in songs like ``context``, when the
    engine hears density, none was asked for and ``controls.song_density`` is on."""
    if not engine.hears_density or not controls.song_density or "density" in controls.bins:
        return controls
    from midiarr.player.density import bundled_model

    rate = bundled_model().predict(context, stem)
    if rate is None:
        return controls
    word = BINS["density"][int(np.searchsorted(bin_edges("density", stem), rate, side="right"))]
    return replace(
        controls,
        bins={**controls.bins, "density": word},
        inferred=(*controls.inferred, "density"),
        density_rate=rate,
    )


# the touch and the repeats draw from their own streams of the seed, so the notes stay as written
TOUCH_STREAM = 0x70C4
REPEAT_STREAM = 0x2E9E


def as_played(
    engine: Engine,
    context: Song,
    tracks: list[Track],
    controls: Controls,
    seed: int,
    writable: np.ndarray | None = None,
) -> list[Track]:
    """``tracks`` (written for ``context``) as a player plays them: bars played again where the song repeats
    (`give_repeats`, only in the ``writable`` bars), then accents and ghost notes (`give_touch`)."""
    tracks = give_repeats(engine, context, tracks, controls, seed, writable)
    return give_touch(engine, context, tracks, controls, seed)


def give_repeats(
    engine: Engine,
    context: Song,
    tracks: list[Track],
    controls: Controls,
    seed: int,
    writable: np.ndarray | None = None,
) -> list[Track]:
    """``tracks`` with bars played again where ``context`` repeats an earlier bar, as often as real players
    of the stem do, unless the engine writes its own form or ``controls.repeats`` is off."""
    if engine.writes_repeats or not controls.repeats or not context.tracks:
        return tracks
    from midiarr.player.repeats import bundled_model

    model = bundled_model()
    out = []
    for k, track in enumerate(tracks):
        played = track.copy()
        rng = np.random.default_rng([seed, REPEAT_STREAM, k])
        played.notes = model.apply(context, track.notes, track.role or "", rng, writable)
        out.append(played)
    return out


def give_touch(engine: Engine, context: Song, tracks: list[Track], controls: Controls, seed: int) -> list[Track]:
    """``tracks`` (written for ``context``) with a player's touch on their velocities, unless the engine
    writes its own or ``controls.touch`` is off. Only velocities change."""
    if engine.writes_touch or not controls.touch:
        return tracks
    from midiarr.player.touch import bundled_model, context_velocity_spread

    model = bundled_model()
    spread = context_velocity_spread(context) if any(len(t.notes) >= 2 for t in context.tracks) else None
    out = []
    for k, track in enumerate(tracks):
        stem = track.role or ""
        played = track.copy()
        played.notes = model.apply(context, track.notes, stem, np.random.default_rng([seed, TOUCH_STREAM, k]), spread)
        out.append(played)
    return out


def existing_parts(song: Song, stems: list[str], roles: dict[int, str] | None = None) -> list[int]:
    """Indices of the song's tracks that play one of ``stems`` and hold notes (an empty track of that
    role is no part: nothing of the user's would be lost, so it neither blocks an insert nor goes)."""
    roles = roles if roles is not None else assign_roles(song)
    return sorted({i for s in stems for i in tracks_with_role(roles, s) if len(song.tracks[i].notes)})


def refuse_existing(song: Song, stems: list[str], roles: dict[int, str] | None = None) -> None:
    """Raise `ExistingPartError` (one line naming the tracks and what to do) when the song already
    has a part of one of ``stems``: insert adds parts and never deletes the user's own notes unasked."""
    roles = roles if roles is not None else assign_roles(song)
    found = existing_parts(song, stems, roles)
    if not found:
        return
    tracks = [(i, song.tracks[i].name, roles[i]) for i in found]
    groups = []
    for stem in dict.fromkeys(r for _, _, r in tracks):
        named = ", ".join(f"track {i} {_shown_name(name)}" for i, name, r in tracks if r == stem)
        groups.append(f"{'an' if stem[0] in 'aeiou' else 'a'} {stem} part ({named})")
    first = found[0]
    others = ", ".join(r for r in ROLES if r not in stems)
    raise ExistingPartError(
        f"the song already has {' and '.join(groups)}; insert only adds parts: pass --replace to replace "
        f"{'it' if len(found) == 1 else 'them'}, or re-label a track that plays something else, "
        f"e.g. --role {first}=other (roles: {others})",
        tracks,
    )


def _shown_name(name: str) -> str:
    """A track name as the message shows it: quoted, printable, not endless."""
    clean = "".join(c if c.isprintable() else " " for c in name).strip()
    if not clean:
        return "(no name)"
    return repr(clean if len(clean) <= 40 else clean[:39] + "…")


def make_room(
    song: Song, stems: list[str], roles: dict[int, str] | None, replace: bool
) -> tuple[Song, list[int], list[int], dict[int, str]]:
    """The context to write ``stems`` for, the input's tracks it keeps, those taken out, and the
    input's roles.

    Without ``replace`` the context is the whole song (after `refuse_existing`); with it, the song
    without its tracks of ``stems``.
    """
    roles = roles if roles is not None else assign_roles(song)
    if replace:
        context, existing = split_off(song, stems, roles)
    else:
        refuse_existing(song, stems, roles)
        # a copy, so an engine can never change the caller's song through its context
        context, existing = song.with_tracks(song.tracks), []
        _check_something_to_hear(context, stems)
    kept = [i for i in range(len(song.tracks)) if i not in set(existing)]
    return context, kept, existing, roles


def build_result(
    song: Song,
    context: Song,
    kept: list[int],
    existing: list[int],
    roles: dict[int, str],
    tracks: list[Track],
    new_roles: list[str],
    stem: str,
) -> InsertResult:
    """The `InsertResult` of adding ``tracks`` after the kept tracks of ``song``."""
    out = context.with_tracks(context.tracks + tracks)
    out_roles = {k: roles[i] for k, i in enumerate(kept)}
    out_roles.update({len(kept) + k: r for k, r in enumerate(new_roles)})
    return InsertResult(
        song=out,
        stem=stem,
        new_tracks=list(range(len(context.tracks), len(out.tracks))),
        replaced_tracks=[song.tracks[i].name or f"track {i}" for i in existing],
        roles=out_roles,
    )


def split_off(song: Song, stems: list[str], roles: dict[int, str] | None = None) -> tuple[Song, list[int]]:
    """The song without its tracks of ``stems`` (the context an engine writes for), and their indices."""
    roles = roles if roles is not None else assign_roles(song)
    existing = sorted({i for s in stems for i in tracks_with_role(roles, s)})
    context = song.with_tracks([t for i, t in enumerate(song.tracks) if i not in set(existing)])
    _check_something_to_hear(context, stems)
    return context, existing


def _check_something_to_hear(context: Song, stems: list[str]) -> None:
    if not any(len(t.notes) for t in context.tracks):
        names = ", ".join(stems)
        raise OptionError(f"the song has no parts besides the {names}; nothing to write a {names} part for")


def follow_timing(context: Song, tracks: list[Track], controls: Controls, active: np.ndarray) -> list[Track]:
    """``tracks`` with their onsets on the context's micro-timing (``controls.timing == "song"``)."""
    if controls.timing not in TIMINGS:
        raise OptionError(f"timing {controls.timing!r}: choose one of {', '.join(TIMINGS)}")
    if controls.timing == "grid":
        return tracks
    heard = [t.notes for t in context.tracks if len(t.notes)]
    if not heard:
        return tracks
    others = np.concatenate(heard)
    out = []
    for t in tracks:
        moved = t.copy()
        moved.notes = lock_to_feel(t.notes, others, context, active)
        out.append(moved)
    return out


def fit_activity(context: Song, active: np.ndarray | None) -> np.ndarray:
    """One play/rest flag per bar of ``context``: the mask given (cut or padded), or where the song plays."""
    num_bars = context.num_bars
    if active is None:
        return default_activity(context)
    mask = np.asarray(active, dtype=bool)[:num_bars]
    return np.concatenate([mask, np.zeros(num_bars - len(mask), dtype=bool)])


def empty_song(bars: int, qpm: float, meter: tuple[int, int], ticks_per_beat: int = 480) -> Song:
    """A song with a tempo and a meter and no tracks, after checking the length and tempo asked for."""
    if not 1 <= bars <= 1000:
        raise OptionError(f"--bars {bars}: choose between 1 and 1000")
    if not 20 <= qpm <= 300:
        raise OptionError(f"--tempo {qpm}: choose between 20 and 300 quarter notes per minute")
    return Song(
        ticks_per_beat=ticks_per_beat,
        tempos=[Tempo(0, float(qpm))],
        time_signatures=[TimeSignature(0, int(meter[0]), int(meter[1]))],
    )


def default_activity(context: Song) -> np.ndarray:
    """Bars where any other part plays: the new part plays where the song plays."""
    num_bars = context.num_bars
    active = np.zeros(num_bars, dtype=bool)
    for t in context.tracks:
        active |= context.bar_activity(t.notes, num_bars)
    return active


MAX_BARS = 100_000  # longer than any song midiarr reads (3 hours of 2/4 at 300 bpm is 13,500 bars)


def parse_bar_ranges(text: str, num_bars: int | None = None, option: str = "--active") -> np.ndarray:
    """A mask from 1-based bar ranges such as ``"1-16,33-48"`` (``num_bars`` long when given).

    With ``num_bars`` (the song's bar count) a range beyond the song is refused before anything
    is allocated; without it, ranges are bounded by `MAX_BARS`.
    """
    limit = num_bars if num_bars is not None else MAX_BARS
    spans = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        lo, hi = lo.strip(), hi.strip()

        def digits(text: str) -> bool:
            return text.isascii() and text.isdigit()  # str.isdigit alone takes superscripts such as '²'

        if not digits(lo) or (sep and not digits(hi)) or len(lo) > 9 or len(hi) > 9:
            if digits(lo) and (not sep or digits(hi)):
                raise OptionError(f"{option} {text[:60]!r}: bar {max(lo, hi, key=len)[:12]}... is beyond any song")
            raise OptionError(f"{option} {text[:60]!r}: expected bar ranges like 1-16,33-48")
        a, b = int(lo), int(hi) if sep else int(lo)
        if a < 1 or b < a:
            raise OptionError(f"{option} {text[:60]!r}: bars count from 1 and ranges go upward")
        if b > limit:
            where = f"the song has {num_bars} bars" if num_bars is not None else f"at most {MAX_BARS} bars"
            raise OptionError(f"{option} {text[:60]!r}: bar {b} is beyond the song ({where})")
        spans.append((a, b))
    if not spans:
        raise OptionError(f"{option} {text[:60]!r}: no bars given")
    size = num_bars if num_bars is not None else max(b for _, b in spans)
    mask = np.zeros(size, dtype=bool)
    for a, b in spans:
        mask[a - 1 : b] = True
    return mask


_REGISTRY: dict[str, type[Engine]] = {}


def register_engine(name: str) -> Callable[[type[Engine]], type[Engine]]:
    """Class decorator: make an engine available by name to the CLI and `eval`."""

    def wrap(cls: type[Engine]) -> type[Engine]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def available_engines() -> list[str]:
    """Names of the registered engines."""
    return sorted(_REGISTRY)


def can_generate(name: str) -> bool:
    """Whether the engine registered as ``name`` can write a song from nothing."""
    cls = _REGISTRY.get(name)
    return bool(cls is not None and getattr(cls, "can_generate", False))


def engine_options(name: str) -> list[str]:
    """The options the engine registered as ``name`` takes: ``checkpoint`` where it runs on one, and the
    fields of its settings."""
    cls = engine_class(name)
    return (["checkpoint"] if cls.takes_checkpoint else []) + cls.settings_type().option_names()


def engine_option_types(name: str) -> dict[str, type]:
    """Each option of the engine registered as ``name`` with the plain type a text value converts to (bool,
    int, float or str), read from its settings' fields."""
    cls = engine_class(name)
    return {**({"checkpoint": str} if cls.takes_checkpoint else {}), **cls.settings_type().option_types()}


def engine_settings(name: str, **options: Any) -> EngineSettings:
    """The settings the engine registered as ``name`` would run with, given ``options``, without loading
    its model: how the server and eval refuse a bad option before any work (one-line `OptionError`)."""
    cls = engine_class(name)
    _refuse_unknown(name, options)
    checkpoint = options.pop("checkpoint", None) if cls.takes_checkpoint else None
    if checkpoint is None:
        checkpoint = cls.default_checkpoint()
    return cls.settings_type().from_checkpoint(checkpoint, **options)


def engine_class(name: str) -> type[Engine]:
    """The engine class registered as ``name`` (`OptionError` for an unknown one)."""
    if name not in _REGISTRY:
        raise OptionError(f"unknown engine {name!r} (available: {', '.join(available_engines())})")
    return _REGISTRY[name]


def get_engine(name: str, **kwargs: Any) -> Engine:
    """An engine by name (`OptionError` for an unknown one, or for an option it does not take)."""
    _refuse_unknown(name, {k: v for k, v in kwargs.items() if k != "settings"})  # before any model is loaded
    return _REGISTRY[name](**kwargs)


def _refuse_unknown(name: str, options: dict[str, Any]) -> None:
    known = engine_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        takes = ", ".join(known) if known else "none"
        raise OptionError(f"engine {name!r} takes no option {unknown[0]!r} (its options: {takes})")
