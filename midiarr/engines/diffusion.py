"""The diffusion engine: the piano-roll stem diffusion model behind the common `Engine` interface.

Besides writing one stem (`insert`), it writes several stems at once (`generate`: one pass for
all stems, as STEMPHONIC does, or two / K passes where later stems hear earlier ones) and
splits a flattened MIDI into stems (`separate`).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from midiarr.attributes import BINS, bin_edges
from midiarr.engines.base import (
    GENERATE_ORDER,
    Controls,
    Engine,
    InsertResult,
    as_played,
    build_result,
    fit_activity,
    follow_timing,
    make_room,
    register_engine,
    song_density,
)
from midiarr.engines.rules import NAMES, PROGRAMS
from midiarr.errors import InputError, OptionError
from midiarr.pianoroll import (
    PITCHED,
    STEPS_PER_BEAT,
    WRITABLE,
    note_cells,
    notes_to_steps,
    rasterize,
    roll_to_steps,
    song_steps,
    song_to_rolls,
    steps_to_notes,
)
from midiarr.roles import check_stem
from midiarr.song import Song, Track

if TYPE_CHECKING:
    from midiarr.diffusion.assign import NoteTable, StemLogits
    from midiarr.diffusion.sample import DiffusionSettings

BUNDLED = "diffusion"
PASSES = ("1", "2", "k")
ASSIGN = ("head", "logits")


def bundled_checkpoint() -> Path:
    """Folder of the diffusion checkpoint shipped inside the package."""
    return Path(str(resources.files("midiarr.weights").joinpath(BUNDLED)))


def _velocity(stem: str, controls: Controls) -> int:
    """A velocity for written notes from the dynamics word (the model writes no velocities)."""
    low, high = bin_edges("dynamics", stem)
    return {"soft": int(low) - 8, "loud": int(high) + 8}.get(controls.bins.get("dynamics", ""), int((low + high) / 2))


def _density_index(controls: Controls) -> int:
    word = controls.bins.get("density")
    return BINS["density"].index(word) if word in BINS["density"] else 3


@register_engine("diffusion")
class DiffusionEngine(Engine):
    """Writes stems with the piano-roll diffusion model."""

    stems = WRITABLE
    can_generate = True
    hears_density = True
    max_bars = 1000  # 125 windows of 8 bars: about a minute here
    takes_checkpoint = True

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        settings: DiffusionSettings | None = None,
        **options: Any,
    ) -> None:
        """The engine over ``checkpoint`` (default: the bundled one). Its settings are the checkpoint's
        tuned ones, or ``settings``, with ``options`` (any `DiffusionSettings` field) over them."""
        from midiarr.diffusion.assign import load_head
        from midiarr.diffusion.model import load_model, load_noise_schedule
        from midiarr.diffusion.sample import RollDiffusion

        path = Path(checkpoint) if checkpoint is not None else bundled_checkpoint()
        if not (path / "model.safetensors").is_file():
            raise InputError(
                f"diffusion checkpoint {path} not found (train one with `midiarr train-diffusion` "
                "and pass --checkpoint)"
            )
        self.settings = self.resolve_settings(path, settings, options)
        model, self.config = load_model(path)
        schedule = load_noise_schedule(path, self.config.get("config", {}).get("schedule", {}))
        self.sampler = RollDiffusion(model, schedule, self.settings)
        self.passes = self.settings.passes
        self.checkpoint = path
        # separation's note assignment: the learned head when the checkpoint ships one
        self.head = load_head(path)
        self.assign = self.settings.assign

    @classmethod
    def default_checkpoint(cls) -> Path:
        return bundled_checkpoint()

    @classmethod
    def settings_type(cls) -> type[DiffusionSettings]:
        from midiarr.diffusion.sample import DiffusionSettings

        return DiffusionSettings

    # -- one stem -----------------------------------------------------------------------------
    def write_part(
        self, context: Song, stem: str, controls: Controls, active: np.ndarray, rng: np.random.Generator
    ) -> list[Track]:
        return self.write_stems(context, [stem], controls, active, seed=int(rng.integers(2**31)))

    def _track(self, stem: str, roll: np.ndarray, song: Song, controls: Controls) -> Track:
        notes = roll_to_steps(roll, velocity=_velocity(stem, controls), drums=stem == "drums")
        return Track(
            name=NAMES[stem],
            program=PROGRAMS[stem],
            is_drum=stem == "drums",
            notes=steps_to_notes(notes, song, stem == "drums"),
        )

    # -- several stems ------------------------------------------------------------------------
    def write_stems(
        self,
        context: Song,
        stems: list[str],
        controls: Controls,
        active: np.ndarray,
        seed: int = 0,
        min_steps: int = 0,
    ) -> list[Track]:
        """Several stems for ``context``: in one pass (STEMPHONIC), two (harmony first, then the
        rest hearing it) or K (one stem at a time, each hearing the ones before)."""
        from midiarr.diffusion.sample import StemRequest

        order = sorted({check_stem(s, self.stems) for s in stems}, key=GENERATE_ORDER.index)
        if self.passes == "1":
            groups = [order]
        elif self.passes == "2":
            first = [s for s in order if s in ("piano", "guitar")] or order[:1]
            groups = [first, [s for s in order if s not in first]]
        else:
            groups = [[s] for s in order]
        song = context
        tracks: list[Track] = []
        for k, group in enumerate(g for g in groups if g):
            rolls = song_to_rolls(song, min_steps=min_steps)
            requests = [StemRequest(s, np.asarray(active, dtype=bool), _density_index(controls)) for s in group]
            result = self.sampler.run(rolls, requests, seed=seed + 1000 * k)
            new = [self._track(s, result.rolls[s], song, controls) for s in group]
            for s, t in zip(group, new, strict=True):
                t.role = s
            tracks += new
            song = song.with_tracks(song.tracks + new)
        return tracks

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
        """The song with several stems written together (in --passes) and added as new tracks; an
        existing part of one of them raises `ExistingPartError` unless ``replace``, as in `insert`."""
        stems = [check_stem(s, self.stems) for s in stems]
        if not stems:
            raise OptionError("name at least one stem")
        context, kept, existing, roles = make_room(song, stems, roles, replace)
        self.check_bars(context.num_bars)
        mask = fit_activity(context, active)
        controls = controls or Controls()
        if len(stems) == 1:
            controls = song_density(self, context, stems[0], controls)
        tracks = self.write_stems(context, stems, controls, mask, seed)
        for t in tracks:
            t.role = t.role or stems[0]
        tracks = follow_timing(context, as_played(self, context, tracks, controls, seed, mask), controls, mask)
        new_roles = [t.role or stems[0] for t in tracks]
        return build_result(song, context, kept, existing, roles, tracks, new_roles, ",".join(stems))

    def write_song(self, song: Song, stems: list[str], bars: int, controls: Controls, seed: int) -> Song:
        """All ``stems`` of a new song written together (or in --passes)."""
        if song.chord_symbols:
            raise OptionError("the diffusion engine does not write from a chord progression; use --engine transformer")
        meter = song.time_signatures[0]
        steps = int(np.ceil(bars * 4 * meter.numerator / meter.denominator * STEPS_PER_BEAT))
        tracks = self.write_stems(song, stems, controls, np.ones(bars, dtype=bool), seed=seed, min_steps=steps)
        return song.with_tracks(as_played(self, song, tracks, controls, seed))

    # -- separation ---------------------------------------------------------------------------
    def separate(
        self, song: Song, stems: list[str] | None = None, seed: int = 0, progress: Any = None
    ) -> tuple[Song, dict[str, int]]:
        """Split every pitched note of ``song`` into ``stems`` (default bass, guitar, piano).

        Drum tracks stay as they are and are heard as given. Every input note lands in exactly one
        output track, with its original timing, pitch and velocity. Returns the song and the note
        count per stem.
        """
        stems = _check_separation_stems(stems)
        self.check_bars(song.num_bars)
        flat, assigned = self.assign_notes(song, stems, seed=seed, progress=progress)
        return _split_song(song, flat, assigned, stems)

    def assign_notes(
        self, song: Song, stems: list[str], seed: int = 0, progress: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """All pitched notes of ``song`` (sorted by start, pitch) and, per note, the index in
        ``stems`` of its stem: the assignment head's choice, or with ``assign="logits"`` (or no
        head in the checkpoint) the stem whose onset logit is highest at the note's cell."""
        from midiarr.diffusion.assign import to_stem_index

        flat, table, logits = self.separation_logits(song, stems, seed=seed, progress=progress)
        if self.assign == "head" and self.head is not None:
            choice = self.head.choose(table, logits)
        else:
            choice = logits.plain_choice()
        return flat, to_stem_index(choice, stems)

    def separation_logits(
        self, song: Song, stems: list[str], seed: int = 0, progress: Any = None
    ) -> tuple[np.ndarray, NoteTable, StemLogits]:
        """Run the sampler over the mix of ``song``'s pitched notes: the notes (sorted by start,
        pitch), their cells and each asked stem's logits there."""
        from midiarr.diffusion.assign import NoteTable, read_logits
        from midiarr.diffusion.sample import StemRequest

        flat = _pitched_notes(song)
        context = song.with_tracks([t for t in song.tracks if t.is_drum])
        rolls = song_to_rolls(context, min_steps=song_steps(song))
        mix = rasterize(notes_to_steps(flat, song, drums=False), 0, rolls.steps)
        result = self.sampler.run(rolls, [StemRequest(s) for s in stems], seed=seed, mix=mix, progress=progress)
        # the cells of each note in ``flat``'s own order (rounding to steps can reorder notes)
        start, length, rows = note_cells(flat, song, drums=False)
        position = rolls.bar_position[np.clip(start, 0, rolls.steps - 1)]
        table = NoteTable(flat["pitch"].astype(np.int64), start, length, flat["velocity"].astype(np.int64), position)
        return flat, table, read_logits(result.onset_logits, result.sustain_logits, rows, table)


def _check_separation_stems(stems: list[str] | None) -> list[str]:
    stems = list(stems or PITCHED)
    for s in stems:
        if s not in PITCHED:
            raise OptionError(f"--stems: {s!r} cannot be separated (choose from {', '.join(PITCHED)})")
    return stems


def _pitched_notes(song: Song) -> np.ndarray:
    pitched = [t.notes for t in song.tracks if not t.is_drum and len(t.notes)]
    if not pitched:
        raise InputError("the song has no pitched notes to separate")
    flat = np.concatenate(pitched)
    return flat[np.lexsort((flat["pitch"], flat["start"]))]


def _split_song(song: Song, flat: np.ndarray, assigned: np.ndarray, stems: list[str]) -> tuple[Song, dict[str, int]]:
    tracks = [t for t in song.tracks if t.is_drum]
    counts: dict[str, int] = {}
    for k, s in enumerate(stems):
        notes = flat[assigned == k]
        counts[s] = len(notes)
        tracks.append(Track(name=NAMES[s], program=PROGRAMS[s], notes=notes.copy(), role=s))
    return song.with_tracks(tracks), counts


def pitch_range_roles(notes: np.ndarray, stems: list[str]) -> np.ndarray:
    """The baseline's choice per note: the index in ``stems`` of the stem whose pitch range holds it
    (bass below C3, guitar C3-D#4, piano from E4; a range whose stem is not asked goes to the
    asked stem with the nearest typical pitch)."""
    bounds = {"bass": (0, 48), "guitar": (48, 64), "piano": (64, 128)}
    centers = {"bass": 36, "guitar": 56, "piano": 72}
    owner = np.empty(128, dtype=np.int64)
    for p in range(128):
        home = next(s for s, (lo, hi) in bounds.items() if lo <= p < hi)
        pick = home if home in stems else min(stems, key=lambda s: abs(centers[s] - p))
        owner[p] = stems.index(pick)
    return owner[np.clip(notes["pitch"], 0, 127)]


def pitch_range_split(song: Song, stems: list[str] | None = None) -> Song:
    """The baseline separation: each pitched note to a stem by its pitch alone."""
    stems = _check_separation_stems(stems)
    flat = _pitched_notes(song)
    return _split_song(song, flat, pitch_range_roles(flat, stems), stems)[0]
