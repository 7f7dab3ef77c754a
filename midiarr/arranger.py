"""`Arranger`: the Python entry point for writing parts into songs.

import midiarr
song = midiarr.load("song.mid")
full = midiarr.Arranger().arrange(song, ["bass", "drums"], instruction="laid-back, soft", seed=1)
midiarr.save(full, "song_arranged.mid")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from midiarr.convert import from_any
from midiarr.engines import Controls, Engine, get_engine, parse_bar_ranges, refuse_existing
from midiarr.roles import check_stem
from midiarr.song import Song

if TYPE_CHECKING:
    from midiarr.chords import Progression
    from midiarr.takes import Take


class Arranger:
    """Writes stems into songs with one engine (by name or instance).

    The default is the stem transformer with its bundled weights (its numbers against the other engines:
    docs/evaluation.md); ``Arranger("rules")`` gives the rules engine, `Arranger.load()` a transformer
    checkpoint of your own.
    """

    def __init__(self, engine: str | Engine = "transformer", **engine_options: Any) -> None:
        self.engine = get_engine(engine, **engine_options) if isinstance(engine, str) else engine

    @classmethod
    def load(cls, checkpoint: str | os.PathLike[str] | None = None, **sampling: Any) -> Arranger:
        """An arranger with the stem transformer: the bundled weights, or a checkpoint folder.

        ``sampling`` takes the `TransformerEngine` options: temperature, top_p, candidates, candidate_pick,
        the guidance weights, ...
        """
        return cls("transformer", checkpoint=checkpoint, **sampling)

    def insert(
        self,
        song: Any,
        stem: str,
        instruction: str | None = None,
        *,
        seed: int = 0,
        active: str | np.ndarray | None = None,
        timing: str = "song",
        replace: bool = False,
        **controls: str | None,
    ) -> Song:
        """The song (a Song, or a pretty_midi / mido / music21 / symusic object) with ``stem`` written in.

        ``instruction`` is free text ("busy syncopated bass, soft"); keyword controls (density, dynamics,
        rhythm, register, polyphony) override it; ``active`` names bars ("1-16,33-48") or is a per-bar mask;
        ``timing="song"`` plays the part with the other parts' micro-timing, ``"grid"`` on exact 16ths.
        The part is added as new track(s); every other track is kept exactly. If the song already has
        a part of that role, `midiarr.ExistingPartError` names it (its ``tracks``: number, name, role);
        ``replace=True`` replaces that part instead. Use ``arranger.engine.insert`` for what was
        replaced and which tracks are new.
        """
        song = from_any(song)
        mask = parse_bar_ranges(active, song.num_bars) if isinstance(active, str) else active
        asked = Controls.build(instruction, timing=timing, **controls)
        return self.engine.insert(song, stem, asked, active=mask, seed=seed, replace=replace).song

    def insert_takes(
        self,
        song: Any,
        stem: str,
        takes: int = 4,
        instruction: str | None = None,
        *,
        seed: int = 0,
        active: str | np.ndarray | None = None,
        timing: str = "song",
        replace: bool = False,
        **controls: str | None,
    ) -> list[Take]:
        """``takes`` takes of `insert` (several stems as ``"bass,drums"``), each a `midiarr.takes.Take` with
        ``.song``, ``.seed`` and ``.scores``; take 1 is what `insert` with the seed writes."""
        from midiarr.takes import insert_takes

        song = from_any(song)
        mask = parse_bar_ranges(active, song.num_bars) if isinstance(active, str) else active
        asked = Controls.build(instruction, timing=timing, **controls)
        stems = [s.strip() for s in stem.split(",") if s.strip()]
        return insert_takes(self.engine, song, stems, asked, takes, seed=seed, active=mask, replace=replace)

    def infill(
        self,
        song: Any,
        stem: str,
        bars: str | np.ndarray,
        instruction: str | None = None,
        *,
        seed: int = 0,
        tries: int = 4,
        timing: str = "song",
        **controls: str | None,
    ) -> Song:
        """The song with the bars ``bars`` ("9-16", or a per-bar mask) of its ``stem`` part written again;
        every other bar of the part and every other track stay as they are (`midiarr.infill`)."""
        from midiarr.infill import infill

        song = from_any(song)
        mask = parse_bar_ranges(bars, song.num_bars, option="bars") if isinstance(bars, str) else bars
        asked = Controls.build(instruction, timing=timing, **controls)
        return infill(self.engine, song, stem, mask, asked, seed=seed, tries=tries).song

    def arrange(
        self,
        song: Any,
        stems: Sequence[str] = ("bass", "drums", "guitar"),
        instruction: str | None = None,
        *,
        seed: int = 0,
        replace: bool = False,
        **controls: str | None,
    ) -> Song:
        """Write several stems in turn, each one hearing the parts written before it. Parts the song
        already has raise `midiarr.ExistingPartError` (all named at once, before anything is written)
        unless ``replace=True``."""
        out = from_any(song)
        if not replace:
            refuse_existing(out, [check_stem(s, self.engine.stems) for s in stems])
        for k, stem in enumerate(stems):
            out = self.insert(out, stem, instruction, seed=seed + k, replace=replace, **controls)
        return out

    def generate(
        self,
        stems: Sequence[str] = ("piano", "bass", "drums"),
        bars: int = 16,
        instruction: str | None = None,
        *,
        tempo: float = 120.0,
        meter: tuple[int, int] = (4, 4),
        seed: int = 0,
        chords: str | Progression | None = None,
        key: str | None = None,
        **controls: str | None,
    ) -> Song:
        """A new song with ``stems`` (harmony first, then bass, then drums), from nothing or from ``chords``:
        a progression (`midiarr.chords.parse` text such as ``"C | G | Am F | F G"``, or its result) that every
        part plays to; it sets the length, so ``bars`` is then ignored."""
        bars, meter, given, signature = _progression(chords, bars, meter, key)
        return self.engine.generate(
            list(stems),
            bars,
            Controls.build(instruction, **controls),
            seed=seed,
            qpm=tempo,
            meter=meter,
            chords=given,
            key=signature,
        )

    def generate_takes(
        self,
        stems: Sequence[str] = ("piano", "bass", "drums"),
        takes: int = 4,
        bars: int = 16,
        instruction: str | None = None,
        *,
        tempo: float = 120.0,
        meter: tuple[int, int] = (4, 4),
        seed: int = 0,
        chords: str | Progression | None = None,
        key: str | None = None,
        **controls: str | None,
    ) -> list[Take]:
        """``takes`` takes of `generate` from one seed, each a `midiarr.takes.Take` with its scores."""
        from midiarr.takes import generate_takes

        bars, meter, given, signature = _progression(chords, bars, meter, key)
        controls_ = Controls.build(instruction, **controls)
        return generate_takes(
            self.engine, list(stems), bars, controls_, takes, seed, given, signature, qpm=tempo, meter=meter
        )


def _progression(
    chords: str | Progression | None, bars: int, meter: tuple[int, int], key: str | None
) -> tuple[int, tuple[int, int], list | None, Any]:
    """(bars, meter, chord symbols, key signature) for `generate`: the progression's own when one is given."""
    from midiarr.chords import parse

    progression = parse(chords, meter=meter, key=key) if isinstance(chords, str) else chords
    if progression is None:
        return bars, meter, None, None
    return progression.bars, progression.meter, progression.chords, progression.key
