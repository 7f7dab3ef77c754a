"""The render stage: MIDI to audio through SoundFonts (installed as ``midiarr.render``).

    from midiarr.render import render
    audio = render(song)                 # {"mix": (samples, 2) float32, "bass": ..., "drums": ...}

Each stem comes from its own FluidSynth instance, in as many processes as there are cores; the
stems are sample-aligned, sum to the mix exactly, and do not depend on the number of processes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
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
from midiarr.render.synth import Rendered, RenderError, Synthesizer, available_cores, synthesizer
from midiarr.song import Song

__all__ = [
    "FORMATS",
    "RenderError",
    "Rendered",
    "SoundFontError",
    "Synthesizer",
    "available_cores",
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
    workers: int | None = 1,
) -> dict[str, np.ndarray]:
    """Audio of the song: ``"mix"`` plus, with ``stems``, one (samples, 2) float32 array per role.

    ``workers`` processes render the stems (None: the cores present; more than one forks this process, so a
    threaded program should keep 1); the output is the same for any number.
    """
    out = synthesizer(soundfont, sr).render(song, roles, workers=workers)
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
    workers: int | None = 1,
) -> dict[str, Path]:
    """Write ``mix.<fmt>`` and, with ``stems``, ``<role>.<fmt>`` per stem; one shared gain keeps the sum.

    ``workers`` processes render and as many threads write (None: the cores present; `midiarr render`'s default).
    """
    if fmt not in FORMATS:
        raise OptionError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    workers = max(1, available_cores() if workers is None else int(workers))
    audio = render(song, soundfont, sr, stems=True, roles=roles, workers=workers)
    mix = audio.pop("mix")
    gain = shared_gain(mix, audio, loudness_dbfs, threads=workers)
    files = {"mix": mix, **(audio if stems else {})}

    def write(name: str) -> Path:
        return write_audio(Path(out_dir) / f"{name}.{fmt}", files[name], sr, fmt, gain=gain, mono=mono)

    # the encoders and numpy let go of the GIL, so threads write the files side by side
    with ThreadPoolExecutor(max_workers=workers) as pool:
        paths = list(pool.map(write, files))
    return dict(zip(files, paths))
