"""Reading audio for the stem models: any file soundfile reads, as mono at the models' rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from midiarr.errors import InputError

MAX_SECONDS = 30 * 60


def resample(wave: torch.Tensor, sr_from: int, sr_to: int) -> torch.Tensor:
    """Band-limited resampling of a 1-d signal in the frequency domain (whole file at once)."""
    if sr_from == sr_to:
        return wave
    n_out = round(len(wave) * sr_to / sr_from)
    spectrum = torch.fft.rfft(wave.double())
    bins = n_out // 2 + 1
    if bins <= len(spectrum):
        spectrum = spectrum[:bins]
    else:
        spectrum = torch.cat([spectrum, torch.zeros(bins - len(spectrum), dtype=spectrum.dtype)])
    return (torch.fft.irfft(spectrum, n=n_out) * (n_out / len(wave))).float()


def read_audio(path: str | Path, sr: int) -> torch.Tensor:
    """A mono float32 waveform at ``sr``; a one-line `InputError` for anything unreadable."""
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if not p.is_file():
        raise InputError(f"{p}: not a regular file")
    try:
        info = sf.info(str(p))
        if info.frames / max(info.samplerate, 1) > MAX_SECONDS:
            raise InputError(f"{p}: {info.frames / info.samplerate / 60:.0f} minutes of audio; the limit is "
                             f"{MAX_SECONDS // 60}")  # fmt: skip
        data, file_sr = sf.read(str(p), dtype="float32", always_2d=True)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{p}: not a readable audio file ({str(exc).strip().splitlines()[0]})") from None
    if len(data) == 0:
        raise InputError(f"{p}: the audio file is empty")
    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    return resample(mono, int(file_sr), sr)
