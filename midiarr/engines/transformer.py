"""The transformer engine: the stem transformer (Subtractive Training on tokenized MIDI) behind
the common `Engine` interface, with the bundled checkpoint by default."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from midiarr.engines.base import Controls, Engine, register_engine
from midiarr.engines.rules import NAMES, PROGRAMS
from midiarr.errors import InputError
from midiarr.song import Song, Track

if TYPE_CHECKING:
    from midiarr.transformer.sample import TransformerSettings

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
    takes_checkpoint = True

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        settings: TransformerSettings | None = None,
        **options: Any,
    ) -> None:
        """The engine over ``checkpoint`` (default: the bundled one). Its settings are the checkpoint's
        tuned ones, or ``settings``, with ``options`` (any `TransformerSettings` field) over them."""
        from midiarr.transformer.decoder import load_decoder, native_available

        path = Path(checkpoint) if checkpoint is not None else bundled_checkpoint()
        if not path.exists():
            raise InputError(f"transformer checkpoint {path} not found")
        self.settings = self.resolve_settings(path, settings, options)
        int8, half = self.settings.int8, self.settings.half
        if int8 is None:  # int8 in the C step (docs/benchmarks.md); torch's int8 moves the logits ~20x more
            int8 = not half and native_available()
        half = not int8 if half is None else half
        self.decoder, self.config = load_decoder(path, int8=int8, half=half)
        self.checkpoint = path

    @classmethod
    def default_checkpoint(cls) -> Path:
        return bundled_checkpoint()

    @classmethod
    def settings_type(cls) -> type[TransformerSettings]:
        from midiarr.transformer.sample import TransformerSettings

        return TransformerSettings

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
        from midiarr.player.sections import context_tracks, section_changes
        from midiarr.transformer.encode import BarGrid, decode_target, encode_context
        from midiarr.transformer.sample import StemWriter

        grid = BarGrid.with_bars(context, len(active))
        bars = encode_context(context, grid)
        mask = np.asarray(active, dtype=bool)
        changes = section_changes(context, context_tracks(context), grid.starts)
        blocks = StemWriter(self.decoder, self.settings).write(
            bars,
            stem,
            controls.bins,
            mask,
            rng,
            inferred=controls.inferred,
            given=given,
            rate=controls.density_rate,
            changes=changes,
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
