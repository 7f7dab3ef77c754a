"""The mask decoder: stem masks at the STFT's full resolution, conditioned on the stem LDM's estimate.

The stem LDM estimates each stem as a 64-band mel spectrogram, decoded from its latent. Spread
back over 513 linear bins as ratio masks, such estimates cap separation low, even when they are
the true stem mels, because guitar and piano share the bands (docs/audio.md). The mask
decoder reads the mix's own STFT magnitude beside the LDM's stem mels and writes one mask per
linear bin for each stem and for the rest of the mix ("other"); the masks sum to one, so the
stems sum to the mix. Its logits start from the LDM's mel-resolution ratio masks (a learned
weight on their log), so before training it separates exactly as the LDM path did. In training the
LDM estimate is withheld from a tenth of the examples, so the decoder also separates from the mix
alone; `eval-audio` reports both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from midiarr.audio.convnext import ConvNeXtStack
from midiarr.audio.data import STEMS
from midiarr.audio.features import LOG_FLOOR, LOG_OFFSET, LOG_SCALE, MelFrontend, MelSpec, normalize
from midiarr.checkpoint import load_pretrained, save_pretrained

KIND = "stem-mask-decoder"
SOURCES = len(STEMS) + 1  # the stems and "other", everything else in the mix
PRIOR_FLOOR = 1e-3  # the smallest prior mask whose log enters the logits


@dataclass(frozen=True)
class MaskDecoderConfig:
    channels: int = 256
    depth: int = 6
    dilations: tuple[int, ...] = (1, 2, 4)


class MaskDecoder(nn.Module):
    """(mix STFT, stem mel amplitudes or None) -> masks (batch, SOURCES, bins, frames)."""

    def __init__(self, config: MaskDecoderConfig, spec: MelSpec) -> None:
        super().__init__()
        self.config, self.spec = config, spec
        self.front = MelFrontend(spec)
        self.bins = spec.n_fft // 2 + 1
        inputs = self.bins + len(STEMS) * spec.n_mels + 1  # mix spectrum, stem mels, "estimate given" flag
        self.backbone = ConvNeXtStack(inputs, config.channels, config.depth, tuple(config.dilations))
        self.head = nn.Linear(config.channels, SOURCES * self.bins)
        nn.init.zeros_(self.head.weight)  # logits start as the prior's alone
        nn.init.zeros_(self.head.bias)
        self.prior_weight = nn.Parameter(torch.ones(()))

    def prior(self, mix_mel: torch.Tensor, stem_mels: torch.Tensor) -> torch.Tensor:
        """The LDM path's ratio masks spread over linear bins, with "other" taking the rest: (B, S, F, T)."""
        stems = self.front.ratio_masks(stem_mels, floor=mix_mel)
        return torch.cat([stems, (1.0 - stems.sum(dim=1, keepdim=True)).clamp(min=0.0)], dim=1)

    def forward(
        self, magnitude: torch.Tensor, stem_mels: torch.Tensor | None, given: torch.Tensor | None = None
    ) -> torch.Tensor:
        """magnitude: |mix STFT| (B, bins, T); stem_mels: the LDM's mel amplitudes (B, K, n_mels, T), or None
        to separate from the mix alone; ``given`` (B,) 0/1 withholds the estimate per example (training)."""
        b, _, t = magnitude.shape
        mix_in = (torch.log(magnitude + LOG_FLOOR) - LOG_OFFSET) / LOG_SCALE
        if stem_mels is None:
            cond = mix_in.new_zeros(b, len(STEMS) * self.spec.n_mels + 1, t)
            prior_logits = mix_in.new_zeros(b, SOURCES, self.bins, t)
        else:
            keep = mix_in.new_ones(b) if given is None else given.to(mix_in.dtype)
            flag = keep.view(b, 1, 1).expand(b, 1, t)
            cond = torch.cat([normalize(stem_mels).reshape(b, -1, t) * flag, flag], dim=1)
            mix_mel = self.front.fb.to(magnitude.device) @ magnitude
            prior_logits = torch.log(self.prior(mix_mel, stem_mels).clamp(min=PRIOR_FLOOR)) * keep.view(b, 1, 1, 1)
        h = self.backbone(torch.cat([mix_in, cond], dim=1))  # (B, T, C)
        logits = self.head(h).reshape(b, t, SOURCES, self.bins).permute(0, 2, 3, 1)
        return torch.softmax(logits + self.prior_weight * prior_logits, dim=1)

    def separate(self, mix: torch.Tensor, stem_mels: torch.Tensor | None) -> torch.Tensor:
        """Waveforms (B, K, samples) of the stems, cut from the mix (B, samples) with the decoder's masks."""
        spec = self.front.stft(mix)
        return stems_from_masks(self.front, self.forward(spec.abs(), stem_mels), spec, mix.shape[-1])


def stems_from_masks(front: MelFrontend, masks: torch.Tensor, spectrum: torch.Tensor, length: int) -> torch.Tensor:
    """The stems' waveforms (B, K, length): their masks (B, SOURCES, bins, T) applied to the mix's complex STFT."""
    return front.cut(spectrum, masks[:, : len(STEMS)], length)


def mask_loss(masks: torch.Tensor, magnitude: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """L1 between the masked mix magnitude and each true source's, compressed (power 0.3) as the ear hears."""
    return ((masks * magnitude.unsqueeze(1)).clamp(min=1e-8).pow(0.3) - sources.clamp(min=1e-8).pow(0.3)).abs().mean()


def negative_si_sdr(estimate: torch.Tensor, reference: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Mean negative SI-SDR (dB) over the (example, stem) pairs marked ``active``; (B, K, samples) each."""
    est = estimate - estimate.mean(dim=-1, keepdim=True)
    ref = reference - reference.mean(dim=-1, keepdim=True)
    scale = (est * ref).sum(dim=-1, keepdim=True) / ref.pow(2).sum(dim=-1, keepdim=True).clamp(min=1e-8)
    target = scale * ref
    ratio = target.pow(2).sum(dim=-1) / (est - target).pow(2).sum(dim=-1).clamp(min=1e-8)
    values = -10 * torch.log10(ratio.clamp(min=1e-8) + 1e-8)
    weight = active.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def save_mask_decoder(model: MaskDecoder, out_dir: str | Path, meta: dict[str, Any]) -> Path:
    config = {"kind": KIND, "network": asdict(model.config), "mel": model.spec.as_dict(), **meta}
    return save_pretrained(model, out_dir, config)


def load_mask_decoder(path: str | Path) -> tuple[MaskDecoder, dict[str, Any]]:
    def build(c: dict[str, Any]) -> MaskDecoder:
        net = dict(c["network"])
        net["dilations"] = tuple(net.get("dilations", (1,)))
        return MaskDecoder(MaskDecoderConfig(**net), MelSpec(**c["mel"]))

    model, config = load_pretrained(path, "a mask decoder checkpoint", build, kind=KIND)
    return model.eval(), config
