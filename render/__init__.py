"""The render stage: MIDI to audio through SoundFonts (installed as ``midiarr.render``).

    from midiarr.render import render
    audio = render(song)                 # {"mix": (samples, 2) float32, "bass": ..., "drums": ...}

Stems come from one FluidSynth pass, one audio group per role, so they are
sample-aligned and sum to the mix exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from midiarr.errors import OptionError
from midiarr.render.audio import FORMATS, rms_dbfs, shared_gain, write_audio
from midiarr.render.soundfonts import (
    SoundFontError,
    check_soundfont,
    embedded_soundfont,
    fluidr3_soundfont,
    resolve_soundfont,
)
from midiarr.render.synth import Rendered, RenderError, Synthesizer, synthesizer
from midiarr.song import Song

__all__ = [
    "FORMATS",
    "RenderError",
    "Rendered",
    "SoundFontError",
    "Synthesizer",
    "check_soundfont",
    "embedded_soundfont",
    "fluidr3_soundfont",
    "render",
    "render_to_dir",
    "resolve_soundfont",
    "rms_dbfs",
    "synthesizer",
    "write_audio",
]


def render(
    song: Song,
    soundfont: str | os.PathLike[str] | None = None,
    sr: int = 44100,
    stems: bool = True,
    roles: dict[int, str] | None = None,
) -> dict[str, np.ndarray]:
    """Audio of the song: ``"mix"`` plus, with ``stems``, one (samples, 2) float32 array per role."""
    out = synthesizer(soundfont, sr).render(song, roles)
    return {"mix": out.mix, **out.stems} if stems else {"mix": out.mix}


def render_to_dir(
    song: Song,
    out_dir: str | os.PathLike[str],
    soundfont: str | os.PathLike[str] | None = None,
    sr: int = 44100,
    stems: bool = True,
    fmt: str = "wav",
    loudness_dbfs: float | None = None,
    mono: bool = False,
    roles: dict[int, str] | None = None,
) -> dict[str, Path]:
    """Write ``mix.<fmt>`` and, with ``stems``, ``<role>.<fmt>`` per stem; one shared gain keeps the sum."""
    if fmt not in FORMATS:
        raise OptionError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    audio = render(song, soundfont, sr, stems=True, roles=roles)
    mix = audio.pop("mix")
    gain = shared_gain(mix, audio, loudness_dbfs)
    files = {"mix": mix, **(audio if stems else {})}
    written = {}
    for name, data in files.items():
        data = data * gain
        if mono:
            data = data.mean(axis=1, keepdims=True)
        written[name] = write_audio(Path(out_dir) / f"{name}.{fmt}", data, sr, fmt)
    return written
