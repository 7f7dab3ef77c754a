"""The transformer engine: the stem transformer (Subtractive Training on tokenized MIDI) behind
the common `Engine` interface, with the bundled checkpoint by default."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from midiarr.engines.base import Controls, Engine, register_engine
from midiarr.engines.rules import NAMES, PROGRAMS
from midiarr.errors import InputError, OptionError
from midiarr.song import Song, Track

BUNDLED = "transformer"


def bundled_checkpoint() -> Path:
    """Folder of the checkpoint shipped inside the package."""
    return Path(str(resources.files("midiarr.weights").joinpath(BUNDLED)))


@register_engine("transformer")
class TransformerEngine(Engine):
    """Writes a stem bar by bar with the stem transformer."""

    can_generate = True
    hears_density = True
    max_bars = 1000  # written bar by bar: about a minute here

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        candidates: int | None = None,
        candidate_pick: str | None = None,
        candidate_windows: int | None = None,
        note_temperature: float | None = None,
        fresh_temperature: float | None = None,
        harmony_weight: float | None = None,
        root_weight: float | None = None,
        sync_weight: float | None = None,
        control_weight: float | None = None,
        kit_weight: float | None = None,
        voicing_weight: float | None = None,
        int8: bool = False,
        half: bool | None = None,
        pull_inferred_density: bool | None = None,
    ) -> None:
        from midiarr.transformer.model import LeanDecoder
        from midiarr.transformer.sample import SampleSettings

        path = Path(checkpoint) if checkpoint is not None else bundled_checkpoint()
        if not path.exists():
            raise InputError(f"transformer checkpoint {path} not found")
        # half-float linear weights unless int8 is asked for: the next-token distribution moves by a KL of
        # ~4e-8 per token and decoding is ~1.8x faster (docs/benchmarks.md)
        half = not int8 if half is None else half
        if half and int8:
            raise OptionError("half and int8 weights exclude each other")
        self.decoder, self.config = LeanDecoder.load(path, int8=int8, half=half)
        defaults: dict[str, Any] = dict(self.config.get("config", {}).get("sample", {}))
        settings = SampleSettings(**{k: v for k, v in defaults.items() if k in SampleSettings.__dataclass_fields__})
        if temperature is not None:
            if temperature <= 0:
                raise OptionError("--temperature must be positive")
            settings.temperature = temperature
        if top_p is not None:
            if not 0 < top_p <= 1:
                raise OptionError("--top-p must be in (0, 1]")
            settings.top_p = top_p
        if note_temperature is not None:
            if note_temperature <= 0:
                raise OptionError("note temperature must be positive")
            settings.note_temperature = note_temperature
        if fresh_temperature is not None:
            if fresh_temperature < 0:
                raise OptionError("fresh temperature must be positive (0 turns it off)")
            settings.fresh_temperature = fresh_temperature or None
        if pull_inferred_density is not None:
            settings.pull_inferred_density = bool(pull_inferred_density)
        if candidates is not None:
            if candidates < 1:
                raise OptionError("--candidates must be at least 1")
            settings.candidates = candidates
            # N takes asked for by hand apply to every window, whatever the config's opening-only default
            settings.candidate_windows = 0
        if candidate_pick is not None:
            if candidate_pick not in ("likelihood", "consensus"):
                raise OptionError("--pick must be likelihood or consensus")
            settings.candidate_pick = candidate_pick
        if candidate_windows is not None:
            if candidate_windows < 0:
                raise OptionError("candidate windows must be 0 (every window) or more")
            settings.candidate_windows = candidate_windows
        for name, value in (
            ("harmony_weight", harmony_weight),
            ("root_weight", root_weight),
            ("sync_weight", sync_weight),
            ("control_weight", control_weight),
            ("kit_weight", kit_weight),
            ("voicing_weight", voicing_weight),
        ):
            if value is not None:
                if not 0 <= value <= 20:
                    raise OptionError(f"{name.replace('_', '-')} must be between 0 and 20")
                setattr(settings, name, float(value))
        self.settings = settings
        self.checkpoint = path

    def write_infill(
        self,
        context: Song,
        stem: str,
        controls: Controls,
        span: np.ndarray,
        rng: np.random.Generator,
        own: np.ndarray,
    ) -> list[Track]:
        """The span written after the part's own bars: they are the history the model continues from."""
        from midiarr.transformer.encode import BarGrid, encode_target

        grid = BarGrid.with_bars(context, len(span))
        blocks = encode_target(own, grid, stem == "drums")
        given = {b: blocks[b] for b in range(len(span)) if not span[b] and b < len(blocks)}
        return self.write_part(context, stem, controls, span, rng, given=given)

    def write_part(
        self,
        context: Song,
        stem: str,
        controls: Controls,
        active: np.ndarray,
        rng: np.random.Generator,
        given: dict[int, list[int]] | None = None,
    ) -> list[Track]:
        from midiarr.transformer.encode import BarGrid, decode_target, encode_context
        from midiarr.transformer.sample import StemWriter

        grid = BarGrid.with_bars(context, len(active))
        bars = encode_context(context, grid)
        mask = np.asarray(active, dtype=bool)
        blocks = StemWriter(self.decoder, self.settings).write(
            bars, stem, controls.bins, mask, rng, inferred=controls.inferred, given=given
        )
        if given:  # the part's own bars were history; only the bars written are returned
            blocks = [[] if b in given else tokens for b, tokens in enumerate(blocks)]
        # one silent bar past the end keeps notes from ringing past the song's last bar
        starts = np.append(grid.starts, grid.starts[-1] + round(grid.lengths[-1] * grid.step))
        notes = _stop_at_silent_bars(decode_target(blocks, grid, stem == "drums"), starts, np.append(mask, False))
        return [Track(name=NAMES[stem], program=PROGRAMS[stem], is_drum=stem == "drums", notes=notes)]


def _stop_at_silent_bars(notes: np.ndarray, bar_starts: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Cut notes held into a bar the mask keeps silent."""
    silent = np.flatnonzero(~active)
    if len(notes) == 0 or len(silent) == 0:
        return notes
    bar = np.searchsorted(bar_starts, notes["start"], side="right") - 1
    # next silent bar after each note's bar
    nxt = np.searchsorted(silent, bar + 1)
    has = nxt < len(silent)
    limit = np.where(has, bar_starts[np.minimum(silent[np.minimum(nxt, len(silent) - 1)], len(bar_starts) - 1)], 0)
    end = notes["start"] + notes["duration"]
    cut = has & (end > limit)
    notes["duration"][cut] = np.maximum(limit[cut] - notes["start"][cut], 1)
    return notes
