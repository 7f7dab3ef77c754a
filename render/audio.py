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
CHUNK_FRAMES = 1 << 16  # frames scaled and encoded at a time: whole-song copies of every stem cost more than the work


def db_to_gain(db: float) -> float:
    """Linear gain of a level in dB."""
    return float(10 ** (db / 20))


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-inf for silence)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def peak(audio: np.ndarray) -> float:
    """The largest absolute sample (0 for silence), without a copy of the audio."""
    if not audio.size:
        return 0.0
    return float(max(audio.max(), -audio.min()))


def shared_gain(mix: np.ndarray, stems: dict[str, np.ndarray], loudness_dbfs: float | None, threads: int = 1) -> float:
    """One gain for the mix and every stem, so the stems still sum to the mix.

    With ``loudness_dbfs`` the mix's RMS is brought to that level; in any case the gain is
    lowered so that no file peaks above -1 dBFS (the mix can sum past full scale).
    """
    gain = 1.0
    if loudness_dbfs is not None:
        level = rms_dbfs(mix)
        if np.isfinite(level):
            gain = db_to_gain(loudness_dbfs - level)
    arrays = [mix, *stems.values()]
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:  # numpy lets go of the GIL in max and min
            loudest = max(pool.map(peak, arrays))
    else:
        loudest = max(map(peak, arrays))
    ceiling = db_to_gain(PEAK_CEILING_DBFS)
    if loudest * gain > ceiling:
        gain = ceiling / loudest
    return gain


def write_audio(
    path: str | os.PathLike[str],
    audio: np.ndarray,
    sr: int,
    fmt: str | None = None,
    bits: int = 24,
    gain: float = 1.0,
    mono: bool = False,
) -> Path:
    """Write float audio (samples, channels), times ``gain`` and averaged to one channel with ``mono``,
    as 16- or 24-bit WAV or FLAC through a temporary file. Samples past full scale are clipped."""
    import soundfile as sf

    target = Path(path)
    fmt = (fmt or target.suffix.lstrip(".") or "wav").lower()
    if bits not in (16, 24):
        raise OptionError(f"audio bit depth {bits} is not supported (16 or 24)")
    if fmt not in FORMATS:
        raise OptionError(f"audio format {fmt!r} is not supported (choose from {', '.join(FORMATS)})")
    audio = audio.reshape(len(audio), -1)
    channels = 1 if mono else audio.shape[1]
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".{fmt}", dir=target.parent)
        os.close(fd)
        with sf.SoundFile(tmp, "w", sr, channels, subtype=f"PCM_{bits}", format=fmt.upper()) as out:
            for start in range(0, len(audio), CHUNK_FRAMES):
                chunk = audio[start : start + CHUNK_FRAMES]
                if gain != 1.0:
                    chunk = chunk * gain
                if mono:
                    chunk = chunk.mean(axis=1, keepdims=True)
                out.write(np.clip(chunk, -1.0, 1.0))  # libsndfile wraps what it does not clip
        publish(tmp, target)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
