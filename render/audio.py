"""Writing rendered audio: WAV or FLAC, atomically, with one gain for all files of a song."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
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
    audio = audio.reshape(len(audio), audio.shape[1] if audio.ndim > 1 else 1)
    channels = 1 if mono else audio.shape[1]
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".{fmt}", dir=target.parent)
        os.close(fd)
        starts = range(0, len(audio), CHUNK_FRAMES)
        chunks = (_scaled(audio[start : start + CHUNK_FRAMES], gain, mono) for start in starts)
        # float32 samples only: libsndfile converts doubles through another path
        if fmt == "wav" and bits == 24 and channels <= 2 and _scaled(audio[:1], gain, mono).dtype == np.float32:
            _write_wav24(tmp, chunks, len(audio), sr, channels)
        else:
            with sf.SoundFile(tmp, "w", sr, channels, subtype=f"PCM_{bits}", format=fmt.upper()) as out:
                for chunk in chunks:
                    out.write(np.clip(chunk, -1.0, 1.0))  # libsndfile wraps what it does not clip
        publish(tmp, target)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def _scaled(chunk: np.ndarray, gain: float, mono: bool) -> np.ndarray:
    """A chunk times ``gain``, averaged to one channel with ``mono`` (float32, as the file's samples)."""
    if gain != 1.0:
        chunk = chunk * gain
    return chunk.mean(axis=1, keepdims=True) if mono else chunk


def _write_wav24(path: str, chunks: Iterator[np.ndarray], frames: int, sr: int, channels: int) -> None:
    """24-bit PCM WAV of float chunks (frames, channels), byte for byte what libsndfile writes for them (the
    header, the samples clipped to full scale and rounded as it rounds them, the pad byte of an odd-sized
    data chunk), at about a third of its time: the render's files took as long to write as to synthesize."""
    size = frames * channels * 3
    pad = size % 2
    header = b"".join(
        [
            b"RIFF",
            (36 + size + pad).to_bytes(4, "little"),
            b"WAVEfmt ",
            (16).to_bytes(4, "little"),
            (1).to_bytes(2, "little"),  # integer PCM
            channels.to_bytes(2, "little"),
            int(sr).to_bytes(4, "little"),
            (int(sr) * channels * 3).to_bytes(4, "little"),
            (channels * 3).to_bytes(2, "little"),
            (24).to_bytes(2, "little"),
            b"data",
            size.to_bytes(4, "little"),
        ]
    )
    with open(path, "wb") as out:
        out.write(header)
        for chunk in chunks:
            out.write(pcm24(chunk))
        if pad:
            out.write(b"\0")


def pcm24(samples: np.ndarray) -> bytes:
    """Float samples as little-endian 24-bit integers, as libsndfile converts them: clipped to [-1, 1], times
    2^31 and rounded to the nearest integer (ties to even), its top 24 bits kept, full scale kept at 2^23 - 1."""
    y = np.clip(samples.astype(np.float32, copy=False).reshape(-1), -1.0, 1.0)
    # every step is exact in float32: powers of two scale without rounding, and |y| < 2^24 after the shift
    y *= np.float32(2.0**31)
    np.rint(y, out=y)
    y *= np.float32(2.0**-8)
    np.floor(y, out=y)
    np.minimum(y, np.float32(2**23 - 1), out=y)
    values = y.astype(np.int32).view(np.uint32) & np.uint32(0xFFFFFF)
    whole = len(values) // 4 * 4
    # four 24-bit samples a, b, c, d fill three 32-bit words: a|b<<24, b>>8|c<<16, c>>16|d<<8
    a, b, c, d = (values[k:whole:4] for k in range(4))
    words = np.empty((whole // 4, 3), dtype="<u4")
    np.bitwise_or(a, b << np.uint32(24), out=words[:, 0])
    np.bitwise_or(b >> np.uint32(8), c << np.uint32(16), out=words[:, 1])
    np.bitwise_or(c >> np.uint32(16), d << np.uint32(8), out=words[:, 2])
    tail = values[whole:].astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
    return words.tobytes() + tail.tobytes()
