"""Audio features of the stem models: STFT, log-mel, and the way back to waveforms.

Everything runs in torch on (batch, samples) float tensors at one sample rate. The
models see normalized log-mel frames; waveforms come back either through ratio masks
on the mixture's STFT (separation: the mix's phase is right there) or through
Griffin-Lim (generation: there is no phase to borrow, and no downloaded vocoder).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

# log(mel amplitude) is mapped to roughly -2..2 so the VAE sees unit-scale inputs
LOG_FLOOR = 1e-4
LOG_OFFSET = -4.5
LOG_SCALE = 2.5


@dataclass(frozen=True)
class MelSpec:
    """STFT and mel settings shared by every audio model (saved with their weights)."""

    sr: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float = 8000.0
    clip_seconds: float = 4.0
    frames: int = 248  # model frames per clip: divisible by 8 for the VAE and UNet strides

    @property
    def clip_samples(self) -> int:
        return round(self.clip_seconds * self.sr)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(spec: MelSpec) -> torch.Tensor:
    """Triangular filters, (n_mels, n_fft // 2 + 1), each normalized to unit area (Slaney style)."""
    bins = spec.n_fft // 2 + 1
    freqs = torch.linspace(0.0, spec.sr / 2, bins, dtype=torch.float64)
    edges = _mel_to_hz(
        torch.linspace(_hz_to_mel(torch.tensor(spec.fmin)), _hz_to_mel(torch.tensor(spec.fmax)), spec.n_mels + 2)
    ).double()
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs[None] - lower) / (center - lower)
    fall = (upper - freqs[None]) / (upper - center)
    fb = torch.clamp(torch.minimum(rise, fall), min=0.0)
    fb = fb * (2.0 / (upper - lower))
    return fb.float()


class MelFrontend:
    """STFT / mel / inverse for one `MelSpec`."""

    def __init__(self, spec: MelSpec | None = None) -> None:
        self.spec = spec or MelSpec()
        self.window = torch.hann_window(self.spec.n_fft)
        self.fb = mel_filterbank(self.spec)
        # mel -> linear: spread each band back over the bins it covers, weighted by the filter
        weights = self.fb.T  # (bins, mels)
        self.fb_back = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-8)
        # a flat magnitude c gives mel band m the value c * band_sum[m]: divide it out to get magnitudes back
        self.band_sum = self.fb.sum(dim=1).clamp(min=1e-8)

    # ------------------------------------------------------------------ forward
    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        """Complex STFT, (batch, bins, frames)."""
        window = self.window.to(wave.device)
        return torch.stft(wave, self.spec.n_fft, self.spec.hop, window=window, center=True, return_complex=True)

    def istft(self, stft: torch.Tensor, length: int) -> torch.Tensor:
        window = self.window.to(stft.device)
        return torch.istft(stft, self.spec.n_fft, self.spec.hop, window=window, center=True, length=length)

    def mel_amplitude(self, wave: torch.Tensor) -> torch.Tensor:
        """Mel-filtered STFT magnitude, (batch, n_mels, frames)."""
        return self.fb.to(wave.device) @ self.stft(wave).abs()

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Normalized log-mel of waveforms, (batch, n_mels, frames) with frames = STFT frames."""
        return normalize(self.mel_amplitude(wave))

    def model_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Crop or zero-pad (in amplitude: the log floor) the last axis to the models' frame count."""
        return fit_frames(x, self.spec.frames)

    # ------------------------------------------------------------------ inverse
    def linear_magnitude(self, mel_amp: torch.Tensor) -> torch.Tensor:
        """An STFT magnitude that has this mel amplitude: each band's mean magnitude spread back over its bins."""
        return self.fb_back @ (mel_amp / self.band_sum[:, None])

    def griffin_lim(self, magnitude: torch.Tensor, length: int, iters: int = 48, seed: int = 0) -> torch.Tensor:
        """Waveforms whose STFT magnitude approaches ``magnitude`` (fast Griffin-Lim, momentum 0.99)."""
        gen = torch.Generator().manual_seed(seed)
        phase = torch.rand(magnitude.shape, generator=gen) * 2 * math.pi
        angles = torch.polar(torch.ones_like(magnitude), phase)
        previous = torch.zeros_like(angles)
        for _ in range(iters):
            wave = self.istft(magnitude * angles, length)
            rebuilt = self.stft(wave)
            accelerated = rebuilt - (0.99 / 1.99) * previous
            previous = rebuilt
            angles = accelerated / accelerated.abs().clamp(min=1e-8)
        return self.istft(magnitude * angles, length)

    def vocode(self, log_mel: torch.Tensor, length: int, iters: int = 48, seed: int = 0) -> torch.Tensor:
        """Waveforms from normalized log-mels (Griffin-Lim: no vocoder weights to download)."""
        return self.griffin_lim(self.linear_magnitude(denormalize(log_mel)), length, iters, seed)

    def ratio_masks(self, source_mels: torch.Tensor, floor: torch.Tensor | None = None) -> torch.Tensor:
        """Ratio masks over linear bins, (B, K, F, T), from sources' mel amplitudes (B, K, n_mels, T): each band
        spread back over its bins, divided by the sources' sum or by ``floor`` spread the same way, whichever is
        larger."""
        fb_back = self.fb_back.to(source_mels.device)
        lin = fb_back @ source_mels
        total = lin.sum(dim=1)
        if floor is not None:
            total = torch.maximum(total, fb_back @ floor)
        return lin / total.clamp(min=1e-8).unsqueeze(1)

    def masked_sources(
        self, mix: torch.Tensor, source_mels: torch.Tensor, floor: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Sources cut from the mixture's STFT with ratio masks from their estimated mel amplitudes.

        mix: (batch, samples); source_mels: (batch, K, n_mels, frames) mel amplitudes with
        frames matching the mix's STFT. ``floor`` (batch, n_mels, frames), when given, is the
        amplitude of everything else in the mix (e.g. the mix itself): it joins the denominator so
        that mix energy no source claims stays out of every source.
        Returns (batch, K, samples).
        """
        return self.cut(self.stft(mix), self.ratio_masks(source_mels, floor), mix.shape[-1])

    def cut(self, spectrum: torch.Tensor, masks: torch.Tensor, length: int) -> torch.Tensor:
        """Waveforms (B, K, length) of masks (B, K, F, T) applied to a mix's complex STFT (B, F, T)."""
        batch, k = masks.shape[:2]
        parts = (masks * spectrum.unsqueeze(1)).reshape(batch * k, *spectrum.shape[1:])
        return self.istft(parts, length).reshape(batch, k, -1)


def normalize(mel_amp: torch.Tensor) -> torch.Tensor:
    return (torch.log(mel_amp + LOG_FLOOR) - LOG_OFFSET) / LOG_SCALE


def denormalize(log_mel: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.exp(log_mel * LOG_SCALE + LOG_OFFSET) - LOG_FLOOR, min=0.0)


SILENCE = float((math.log(LOG_FLOOR) - LOG_OFFSET) / LOG_SCALE)  # normalized log-mel of digital silence


def fit_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Crop the last axis to ``frames`` or pad it with silence."""
    if x.shape[-1] >= frames:
        return x[..., :frames]
    pad = torch.full((*x.shape[:-1], frames - x.shape[-1]), SILENCE, dtype=x.dtype)
    return torch.cat([x, pad], dim=-1)
