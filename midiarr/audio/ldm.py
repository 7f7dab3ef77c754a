"""Multi-track latent diffusion over stem latents (MSG-LD, with STEMPHONIC's controls).

The stems of a clip are stacked as channels of one latent image; the model denoises
all of them together, conditioned on

* a *given* audio latent: the whole mix (separation), the mix without some stems
  (partial generation: audio-domain Subtractive Training), or nothing (total
  generation). Dropped at random in training, so classifier-free guidance can weigh it;
* per stem, whether it is part of the given audio and whether it must sound or stay
  silent (activity control), or neither (left to the model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from midiarr.checkpoint import load_pretrained, load_scheduler, save_pretrained

KIND = "stem-ldm"


@dataclass(frozen=True)
class LDMConfig:
    stems: int = 4
    latent_channels: int = 4
    latent_height: int = 8
    latent_frames: int = 124
    channels: tuple[int, ...] = (48, 96, 128)
    attention_last: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))


@dataclass
class Conditions:
    """What one batch is conditioned on; every tensor has the batch first."""

    given: torch.Tensor  # (B, C, H, W) scaled latent of the given audio (zeros when absent)
    given_present: torch.Tensor  # (B,) 1 when the given audio is there
    in_given: torch.Tensor  # (B, K) stem is part of the given audio
    active_on: torch.Tensor  # (B, K) stem must sound
    active_off: torch.Tensor  # (B, K) stem must be silent

    def without_given(self) -> Conditions:
        """The unconditional branch of classifier-free guidance: same flags, no audio."""
        return Conditions(
            torch.zeros_like(self.given), torch.zeros_like(self.given_present),
            self.in_given, self.active_on, self.active_off,
        )  # fmt: skip

    def repeat(self, n: int) -> Conditions:
        return Conditions(*(t.repeat_interleave(n, dim=0) for t in asdict_tensors(self)))


def asdict_tensors(c: Conditions) -> list[torch.Tensor]:
    return [c.given, c.given_present, c.in_given, c.active_on, c.active_off]


def cat_conditions(a: Conditions, b: Conditions) -> Conditions:
    return Conditions(*(torch.cat([x, y]) for x, y in zip(asdict_tensors(a), asdict_tensors(b))))


class StemLDM(nn.Module):
    """A diffusers UNet2DModel over (stems x latent channels) with condition planes as extra inputs."""

    def __init__(self, config: LDMConfig, extra_in: int | None = None) -> None:
        from diffusers import UNet2DModel

        super().__init__()
        self.config = config
        k, c = config.stems, config.latent_channels
        in_channels = k * c + c + 1 + 3 * k if extra_in is None else extra_in
        levels = len(config.channels)
        down = ["DownBlock2D"] * levels
        up = ["UpBlock2D"] * levels
        if config.attention_last:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        self.unet = UNet2DModel(
            sample_size=(config.latent_height, config.latent_frames),
            in_channels=in_channels,
            out_channels=k * c,
            block_out_channels=config.channels,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            layers_per_block=1,
            norm_num_groups=16,
            attention_head_dim=32,
        )

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, cond: Conditions) -> torch.Tensor:
        """Predicted noise, (B, K, C, H, W), for noisy stem latents of the same shape."""
        b, k, c, h, w = noisy.shape
        planes = torch.cat([cond.given_present[:, None], cond.in_given, cond.active_on, cond.active_off], dim=1)
        planes = planes[:, :, None, None].expand(b, planes.shape[1], h, w)
        x = torch.cat([noisy.reshape(b, k * c, h, w), cond.given, planes], dim=1)
        return self.unet(x, t).sample.reshape(b, k, c, h, w)


def noise_schedule(config: dict[str, Any]) -> Any:
    """The DDPM training schedule named by a config's [ldm] table (both latent models use it)."""
    from diffusers import DDPMScheduler

    ldm = config["ldm"]
    return DDPMScheduler(num_train_timesteps=int(ldm["train_timesteps"]), beta_schedule=str(ldm["beta_schedule"]))


def ddim_schedule(train_schedule: Any, steps: int, prediction: str = "epsilon") -> Any:
    """DDIM over the training schedule with ``steps`` steps.

    ``clip_sample`` is off: diffusers' default clips x0 to [-1, 1], which wrecks unit-variance latents.
    """
    from diffusers import DDIMScheduler

    from midiarr.errors import OptionError

    if not 1 <= steps <= 1000:
        raise OptionError("--steps must be within 1..1000")
    sched = DDIMScheduler.from_config(train_schedule.config, clip_sample=False, prediction_type=prediction)
    sched.set_timesteps(steps)
    return sched


def load_noise_schedule(folder: str | Path, config: dict[str, Any]) -> Any:
    """The training schedule saved with a latent model (diffusers' ``from_config``); its config's for one
    saved without it."""
    from diffusers import DDPMScheduler

    return load_scheduler(folder, DDPMScheduler) or noise_schedule(config)


def save_ldm(model: StemLDM, out_dir: str | Path, meta: dict[str, Any], scheduler: Any = None) -> Path:
    config = {"kind": KIND, "network": asdict(model.config), **meta}
    return save_pretrained(model, out_dir, config, scheduler=scheduler)


def load_ldm(path: str | Path) -> tuple[StemLDM, dict[str, Any]]:
    return load_pretrained(
        path, "an audio model checkpoint", lambda config: StemLDM(LDMConfig(**config["network"])), kind=KIND
    )
