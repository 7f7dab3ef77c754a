"""A tiny convolutional VAE over normalized log-mel clips: the latent space of the stem models.

(1, n_mels, frames) -> (latent_channels, n_mels / 8, frames / 2): 8x fewer numbers, kept
smooth by a small KL term; the diffusion models work on latents times `scale` (unit std).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from midiarr.audio.features import MelSpec
from midiarr.checkpoint import load_pretrained, save_pretrained

KIND = "mel-vae"


@dataclass(frozen=True)
class VAEConfig:
    width: int = 24
    latent_channels: int = 4


class _Res(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MelVAE(nn.Module):
    """Encoder/decoder pair; ``scale`` maps latents to unit standard deviation."""

    def __init__(self, config: VAEConfig, spec: MelSpec, scale: float = 1.0) -> None:
        super().__init__()
        self.config, self.spec = config, spec
        w, z = config.width, config.latent_channels
        # full resolution is touched only by the first and last layers: convolutions there cost
        # 16x more than at the latent's size, and this trains on two CPU cores
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 4, stride=2, padding=1), _Res(w),  # mels / 2, frames / 2
            nn.Conv2d(w, 2 * w, 3, stride=(2, 1), padding=1), _Res(2 * w),  # mels / 4
            nn.Conv2d(2 * w, 2 * w, 3, stride=(2, 1), padding=1), _Res(2 * w),  # mels / 8
            nn.GroupNorm(8, 2 * w), nn.SiLU(), nn.Conv2d(2 * w, 2 * z, 1),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Conv2d(z, 2 * w, 3, padding=1), _Res(2 * w),
            nn.ConvTranspose2d(2 * w, 2 * w, (4, 3), stride=(2, 1), padding=1), _Res(2 * w),
            nn.ConvTranspose2d(2 * w, w, (4, 3), stride=(2, 1), padding=1), _Res(w),
            nn.GroupNorm(8, w), nn.SiLU(),
            nn.ConvTranspose2d(w, w // 2, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(w // 2, 1, 3, padding=1),
        )  # fmt: skip
        self.register_buffer("scale", torch.tensor(float(scale)))

    def latent_shape(self) -> tuple[int, int, int]:
        return (self.config.latent_channels, self.spec.n_mels // 8, self.spec.frames // 2)

    def moments(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x) for x of shape (batch, n_mels, frames)."""
        mean, logvar = self.encoder(log_mel.unsqueeze(1)).chunk(2, dim=1)
        return mean, logvar.clamp(-20.0, 10.0)

    def encode(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Scaled latent means, (batch, C, n_mels/8, frames/2)."""
        return self.moments(log_mel)[0] * self.scale

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalized log-mels from scaled latents, (batch, n_mels, frames)."""
        return self.decoder(latent / self.scale).squeeze(1)

    def loss(self, log_mel: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(total, reconstruction L1) for a batch."""
        mean, logvar = self.moments(log_mel)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        rec = (self.decoder(z).squeeze(1) - log_mel).abs().mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return rec + kl_weight * kl, rec


def save_vae(model: MelVAE, out_dir: str | Path, meta: dict[str, Any]) -> Path:
    config = {"kind": KIND, "network": asdict(model.config), "mel": model.spec.as_dict(), **meta}
    return save_pretrained(model, out_dir, config)


def load_vae(path: str | Path) -> tuple[MelVAE, dict[str, Any]]:
    return load_pretrained(
        path,
        "an audio model checkpoint",
        lambda config: MelVAE(VAEConfig(**config["network"]), MelSpec(**config["mel"])),
        kind=KIND,
    )
