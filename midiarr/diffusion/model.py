"""The stem diffusion transformer: every stem of a window as tokens in one sequence.

A token is one stem's roll over ``patch`` 16th steps (both planes, all pitch rows). STEMPHONIC's
idea of stems as members of one group is literal here: each stem's tokens carry its slot
(stem type) embedding, tokens of all stems attend to one another, and a slot that is not in
the group is masked out, so any set of stems is one forward pass. Per token the model also
gets whether it is given (clean, known) or to be written (noisy), the requested activity
(off / on / unspecified) and the position in the bar; per stem the requested density.
The diffusion time enters through adaptive layer norm (DiT). The output is a logit per roll
cell: the model predicts the clean roll (x0), which suits binary data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from midiarr.checkpoint import load_pretrained, load_scheduler, save_pretrained
from midiarr.errors import InputError
from midiarr.pianoroll import PITCH_ROWS, SLOTS

ACTIVITY_OFF, ACTIVITY_ON, ACTIVITY_ANY = 0, 1, 2
DENSITY_ANY = 3


@dataclass
class DiTConfig:
    """Network shape."""

    window_steps: int = 128
    patch: int = 2
    width: int = 192
    depth: int = 6
    heads: int = 6
    pitch_rows: int = PITCH_ROWS
    slots: int = len(SLOTS)

    @property
    def tokens_per_stem(self) -> int:
        """Tokens one stem's window becomes."""
        return self.window_steps // self.patch


def _timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class _Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)  # adaLN-Zero: every block starts as the identity
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(cond))[:, None].chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        b, n, w = h.shape
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + gate1 * self.proj(h.transpose(1, 2).reshape(b, n, w))
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


class StemDiT(nn.Module):
    """x0-predicting transformer over the tokens of a group of stems."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        cells = 2 * config.pitch_rows * config.patch
        self.proj_in = nn.Linear(cells, w)
        self.slot = nn.Embedding(config.slots, w)
        self.known = nn.Embedding(2, w)
        self.activity = nn.Embedding(3, w)
        self.density = nn.Embedding(4, w)
        self.bar_position = nn.Embedding(32, w)
        self.position = nn.Parameter(torch.randn(config.tokens_per_stem, w) * 0.02)
        self.time = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.blocks = nn.ModuleList(_Block(w, config.heads) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False)
        self.modulation_out = nn.Linear(w, 2 * w)
        nn.init.zeros_(self.modulation_out.weight)
        nn.init.zeros_(self.modulation_out.bias)
        self.proj_out = nn.Linear(w, cells)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.constant_(self.proj_out.bias, -4.0)  # rolls are sparse: start by predicting "off"

    def forward(
        self,
        rolls: torch.Tensor,
        timesteps: torch.Tensor,
        present: torch.Tensor,
        known: torch.Tensor,
        activity: torch.Tensor,
        density: torch.Tensor,
        bar_position: torch.Tensor,
        slot_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of the clean rolls.

        rolls (B, S, 2, P, T) in [-1, 1]; timesteps (B,); present (B, S) bool; known, activity
        (B, S, N) per token; density (B, S); bar_position (B, N). Returns (B, S, 2, P, T).
        ``slot_ids`` (S,) names the slot of each stem column when only some slots are passed
        (a batch with no mix skips that column's compute).
        """
        cfg = self.config
        b, s, planes, p, t = rolls.shape
        n, k = cfg.tokens_per_stem, cfg.patch
        # (B, S, 2, P, N, k) -> (B, S, N, 2*P*k): one token per stem per patch of steps
        tokens = rolls.view(b, s, planes, p, n, k).permute(0, 1, 4, 2, 3, 5).reshape(b, s, n, planes * p * k)
        h = self.proj_in(tokens)
        if slot_ids is None:
            slot_ids = torch.arange(s, device=rolls.device)
        h = h + self.slot(slot_ids)[None, :, None] + self.position[None, None]
        h = h + self.known(known.long()) + self.activity(activity) + self.density(density)[:, :, None]
        h = h + self.bar_position(bar_position)[:, None]
        h = h.reshape(b, s * n, -1)
        cond = self.time(_timestep_features(timesteps, cfg.width))
        keep = present[:, :, None].expand(b, s, n).reshape(b, 1, 1, s * n)
        for block in self.blocks:
            h = block(h, cond, keep)
        shift, scale = self.modulation_out(F.silu(cond))[:, None].chunk(2, dim=-1)
        h = self.norm_out(h) * (1 + scale) + shift
        out = self.proj_out(h).view(b, s, n, planes, p, k)
        return out.permute(0, 1, 3, 4, 2, 5).reshape(b, s, planes, p, t)


def noise_schedule(table: Mapping[str, Any]) -> Any:
    """The DDPM schedule (x0 prediction) a ``[schedule]`` table names: how training noises a roll."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=int(table["train_timesteps"]),
        beta_schedule=str(table["beta_schedule"]),
        prediction_type="sample",
        clip_sample=False,
    )


def load_noise_schedule(path: str | Path, table: Mapping[str, Any]) -> Any:
    """The noise schedule saved with a checkpoint (diffusers' ``from_config``); ``table``'s for one saved
    without it."""
    from diffusers import DDPMScheduler

    return load_scheduler(path, DDPMScheduler) or noise_schedule(table)


def save_model(model: StemDiT, out_dir: str | Path, meta: dict[str, Any], scheduler: Any = None) -> Path:
    """Weights, config.json (network shape plus training facts) and the noise schedule into ``out_dir``."""
    config = {"network": asdict(model.config), "slots": SLOTS, **meta}
    return save_pretrained(model, out_dir, config, scheduler=scheduler)


def load_model(path: str | Path) -> tuple[StemDiT, dict[str, Any]]:
    """A saved model (eval mode) and its config."""

    def build(config: dict[str, Any]) -> StemDiT:
        if tuple(config.get("slots", ())) != SLOTS:
            raise InputError(f"{Path(path)}: the checkpoint was trained with other stem slots")
        return StemDiT(DiTConfig(**config["network"]))

    return load_pretrained(path, "a diffusion checkpoint", build)
