"""ConvNeXt blocks over STFT frames: the backbone of the vocoder and the mask decoder.

A frame's spectrum enters as a vector of channels and the blocks mix frames along time
(depthwise convolutions) and channels (pointwise layers), as in Vocos. Every layer works
at the frame rate, so the cost is a few million multiply-adds per frame: these train and
run on two CPU cores.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvNeXtBlock(nn.Module):
    """Depthwise time convolution, layer norm, pointwise MLP, scaled residual."""

    def __init__(self, channels: int, expansion: int = 3, kernel: int = 7, dilation: int = 1) -> None:
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.depthwise = nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.up = nn.Linear(channels, expansion * channels)
        self.down = nn.Linear(expansion * channels, channels)
        # small residual scale: a deep stack starts close to the identity and trains stably
        self.gamma = nn.Parameter(torch.full((channels,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, frames)."""
        h = self.depthwise(x).transpose(1, 2)
        h = self.down(nn.functional.gelu(self.up(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class ConvNeXtStack(nn.Module):
    """An input projection, ``depth`` blocks and a final layer norm; (B, inputs, T) -> (B, T, channels)."""

    def __init__(self, inputs: int, channels: int, depth: int, dilations: tuple[int, ...] = (1,)) -> None:
        super().__init__()
        self.embed = nn.Conv1d(inputs, channels, 7, padding=3)
        self.norm_in = nn.LayerNorm(channels)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(channels, dilation=dilations[i % len(dilations)]) for i in range(depth)
        )
        self.norm_out = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_in(self.embed(x).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            h = block(h)
        return self.norm_out(h.transpose(1, 2))
