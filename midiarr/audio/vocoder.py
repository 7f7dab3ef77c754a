"""A mel vocoder trained here (Vocos-style): normalized log-mel frames to waveforms.

The network predicts, for every STFT frame, the magnitude of each linear bin at the front end's
own STFT (n_fft 1024, hop 256) and how far its phase advances from the previous frame; the phase
is the running sum of those advances, and an inverse STFT turns magnitude and phase into
samples: no upsampling stack, so it runs at the frame rate. Writing each frame's phase freely
(as Vocos does) leaves neighbouring frames incoherent when no discriminator punishes it, and
their overlap-add cancels; summed advances keep them coherent (docs/audio.md). It trains without a
discriminator, on a mel L1 loss and a multi-resolution STFT loss, and it learns both from
true stem mels and from mels that went through the mel VAE (what the stem models decode),
so it vocodes what `audio insert` and `audio generate` write. Griffin-Lim stays the fallback.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from midiarr.audio.convnext import ConvNeXtStack
from midiarr.audio.features import MelFrontend, MelSpec, denormalize
from midiarr.checkpoint import load_pretrained, save_pretrained

KIND = "mel-vocoder"
# the STFT resolutions of the training loss and of the evaluation's multi-resolution distance
RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))
GAIN_FLOOR = 1e-5  # mel amplitude added to both sides of a band's gain: silence stays silence, no 0/0
MAX_LOG_MAGNITUDE = 6.0  # exp(6) = 403: far above any bin of a full-scale signal, keeps a bad step finite


@dataclass(frozen=True)
class VocoderConfig:
    channels: int = 192
    depth: int = 6
    # after the network, each band's level is set back to the given mel's this many times (`mel_consistent`)
    mel_corrections: int = 24


class MelVocoder(nn.Module):
    """(batch, n_mels, frames) normalized log-mel -> (batch, (frames - 1) * hop) samples."""

    def __init__(self, config: VocoderConfig, spec: MelSpec) -> None:
        super().__init__()
        self.config, self.spec = config, spec
        self.bins = spec.n_fft // 2 + 1
        self.front = MelFrontend(spec)
        self.backbone = ConvNeXtStack(spec.n_mels, config.channels, config.depth)
        self.head = nn.Linear(config.channels, 2 * self.bins)
        self.register_buffer("window", torch.hann_window(spec.n_fft), persistent=False)
        # a steady sinusoid at bin k's centre advances 2 pi k hop / n_fft per frame; the network writes the offset
        centre = 2 * math.pi * torch.arange(self.bins) * spec.hop / spec.n_fft
        self.register_buffer("centre_advance", centre[:, None], persistent=False)

    def spectrum(self, log_mel: torch.Tensor) -> torch.Tensor:
        """The complex STFT the network writes, (batch, bins, frames)."""
        out = self.head(self.backbone(log_mel)).transpose(1, 2)
        log_mag, offset = out[:, : self.bins], out[:, self.bins :]
        magnitude = torch.exp(log_mag.clamp(max=MAX_LOG_MAGNITUDE))
        phase = torch.cumsum(self.centre_advance + math.pi * torch.tanh(offset), dim=-1)
        return torch.polar(magnitude, phase)

    def forward(self, log_mel: torch.Tensor, length: int | None = None, corrections: int | None = None) -> torch.Tensor:
        """Waveforms of ``length`` samples (default (frames - 1) * hop); ``corrections`` overrides the config's
        `mel_corrections` (0: the network's output as it is)."""
        frames = log_mel.shape[-1]
        length = (frames - 1) * self.spec.hop if length is None else length
        spec = self.spectrum(log_mel)
        wave = torch.istft(spec, self.spec.n_fft, self.spec.hop, window=self.window, center=True, length=length)
        rounds = self.config.mel_corrections if corrections is None else corrections
        return mel_consistent(self.front, wave, log_mel, rounds)


def mel_consistent(front: MelFrontend, wave: torch.Tensor, log_mel: torch.Tensor, rounds: int) -> torch.Tensor:
    """``wave`` with each mel band's level set to ``log_mel``'s, ``rounds`` times.

    The network's frames overlap-add with phases that never agree exactly, so the level of a band comes out
    a little off what the mel asked for; a gain per band and frame, spread over its bins, puts it back while
    keeping the network's fine structure (harmonics) and phase. Each round is one STFT and one inverse.
    """
    target = denormalize(log_mel)
    for _ in range(rounds):
        spec = front.stft(wave)
        have = front.fb.to(wave.device) @ spec.abs()
        gain = front.fb_back.to(wave.device) @ ((target + GAIN_FLOOR) / (have + GAIN_FLOOR))
        wave = front.istft(spec * gain, wave.shape[-1])
    return wave


# ----------------------------------------------------------------- losses and distances
def stft_magnitude(wave: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=wave.device)
    return torch.stft(wave, n_fft, hop, window=window, center=True, return_complex=True).abs()


def multi_resolution_stft(estimate: torch.Tensor, target: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """Spectral convergence plus log-magnitude L1, averaged over `RESOLUTIONS` (0 for equal signals).

    Spectral convergence divides by the target's spectral norm, which a near-silent target makes
    explode; ``floor`` (RMS, full scale 1) holds that norm at the norm of a signal that quiet.
    """
    total = estimate.new_zeros(())
    quiet = floor * target.shape[-1] ** 0.5
    for n_fft, hop in RESOLUTIONS:
        e, t = stft_magnitude(estimate, n_fft, hop), stft_magnitude(target, n_fft, hop)
        # Parseval for a Hann window at this hop (one-sided bins): a signal's spectral norm is its norm times
        # n_fft sqrt(3 / 16 hop)
        norm_floor = quiet * n_fft * (3 / (16 * hop)) ** 0.5
        convergence = torch.linalg.norm((t - e).flatten(1), dim=1) / torch.linalg.norm(t.flatten(1), dim=1).clamp(
            min=norm_floor
        )
        log_l1 = (torch.log(e.clamp(min=1e-5)) - torch.log(t.clamp(min=1e-5))).abs().mean(dim=(1, 2))
        total = total + (convergence + log_l1).mean()
    return total / len(RESOLUTIONS)


def onset_l1(front: MelFrontend, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the spectral flux (rises of the normalized log-mel, per band and frame):
    how sharply and when notes start, which the magnitude distances above weigh little."""
    e, t = front.log_mel(estimate), front.log_mel(target)
    return (torch.relu(e[..., 1:] - e[..., :-1]) - torch.relu(t[..., 1:] - t[..., :-1])).abs().mean()


def mel_l1(front: MelFrontend, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of normalized log-mels (1.0 is a factor e^2.5 in amplitude)."""
    return (front.log_mel(estimate) - front.log_mel(target)).abs().mean()


# ----------------------------------------------------------------- weights
def save_vocoder(model: MelVocoder, out_dir: str | Path, meta: dict[str, Any]) -> Path:
    config = {"kind": KIND, "network": asdict(model.config), "mel": model.spec.as_dict(), **meta}
    return save_pretrained(model, out_dir, config)


def load_vocoder(path: str | Path) -> tuple[MelVocoder, dict[str, Any]]:
    model, config = load_pretrained(
        path,
        "a vocoder checkpoint",
        lambda c: MelVocoder(VocoderConfig(**c["network"]), MelSpec(**c["mel"])),
        kind=KIND,
    )
    return model.eval(), config
