"""Writing rendered audio: WAV or FLAC, atomically, with one gain for all files of a song."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from midiarr.errors import OptionError, OutputError
from midiarr.io.files import publish

FORMATS = ("wav", "flac")
PEAK_CEILING_DBFS = -1.0


def db_to_gain(db: float) -> float:
    """Linear gain of a level in dB."""
    return float(10 ** (db / 20))


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-inf for silence)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def shared_gain(mix: np.ndarray, stems: dict[str, np.ndarray], loudness_dbfs: float | None) -> float:
    """One gain for the mix and every stem, so the stems still sum to the mix.

    With ``loudness_dbfs`` the mix's RMS is brought to that level; in any case the gain is
    lowered so that no file peaks above -1 dBFS (the mix can sum past full scale).
    """
    gain = 1.0
    if loudness_dbfs is not None:
        level = rms_dbfs(mix)
        if np.isfinite(level):
            gain = db_to_gain(loudness_dbfs - level)
    peak = max([float(np.abs(mix).max(initial=0.0))] + [float(np.abs(s).max(initial=0.0)) for s in stems.values()])
    ceiling = db_to_gain(PEAK_CEILING_DBFS)
    if peak * gain > ceiling:
        gain = ceiling / peak
    return gain


def write_audio(
    path: str | os.PathLike[str], audio: np.ndarray, sr: int, fmt: str | None = None, bits: int = 24
) -> Path:
    """Write float audio (samples, channels) as 16- or 24-bit WAV or FLAC through a temporary file."""
    import soundfile as sf

    target = Path(path)
    fmt = (fmt or target.suffix.lstrip(".") or "wav").lower()
    if bits not in (16, 24):
        raise OptionError(f"audio bit depth {bits} is not supported (16 or 24)")
    if fmt not in FORMATS:
        raise OptionError(f"audio format {fmt!r} is not supported (choose from {', '.join(FORMATS)})")
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".{fmt}", dir=target.parent)
        os.close(fd)
        sf.write(tmp, np.clip(audio, -1.0, 1.0), sr, subtype=f"PCM_{bits}", format=fmt.upper())
        publish(tmp, target)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
