"""GMSDI: a latent diffusion model of *mixtures* conditioned on which sources they hold.

Trained on mixes only, each labelled with the stems that sound in it (bass, drums,
guitar, piano, other) — no isolated stems. At inference the label of a single source
parameterizes that source (with negative prompting against the other labels), and the
sources are coupled to the mix at every step:

* separation: the sources' clean estimates are decoded to mel amplitudes and rescaled so
  that they sum to the mix (a projection onto the mixture constraint), then re-encoded;
* accompaniment: a mixture estimate of (given audio + new sources) is denoised with the
  union label, and the new sources are set to what it holds beyond the given audio.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from midiarr.audio.data import STEMS
from midiarr.audio.features import MelFrontend, denormalize, fit_frames, normalize
from midiarr.audio.ldm import LDMConfig, StemLDM, ddim_schedule, load_noise_schedule, noise_schedule
from midiarr.audio.levels import match_level
from midiarr.audio.tuned import INSERT_LEVEL, INSERT_LEVEL_DB
from midiarr.audio.vae import MelVAE, load_vae
from midiarr.checkpoint import load_pretrained, save_pretrained
from midiarr.errors import InputError
from midiarr.threads import rebalance

LABELS = (*STEMS, "other")
KIND = "gmsdi"


class MixtureLDM(torch.nn.Module):
    """One latent (a mixture or a source) denoised under a multi-hot source label."""

    def __init__(self, config: LDMConfig) -> None:
        super().__init__()
        self.config = config
        c = config.latent_channels
        # one "stem" slot: the mixture; label planes (sources + null) enter as extra input channels
        self.net = StemLDM(LDMConfig(**{**asdict(config), "stems": 1}), extra_in=c + len(LABELS) + 1)

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """noisy (B, C, H, W), labels (B, len(LABELS)) multi-hot (all zero = unconditional)."""
        b, _, h, w = noisy.shape
        null = (labels.sum(dim=1, keepdim=True) == 0).float()
        planes = torch.cat([labels, null], dim=1)[:, :, None, None].expand(b, len(LABELS) + 1, h, w)
        return self.net.unet(torch.cat([noisy, planes], dim=1), t).sample


def save_gmsdi(model: MixtureLDM, out_dir: str | Path, meta: dict[str, Any], scheduler: Any = None) -> Path:
    config = {"kind": KIND, "network": asdict(model.config), "labels": LABELS, **meta}
    return save_pretrained(model, out_dir, config, scheduler=scheduler)


def load_gmsdi(path: str | Path) -> tuple[MixtureLDM, dict[str, Any]]:
    def build(config: dict[str, Any]) -> MixtureLDM:
        if tuple(config.get("labels", ())) != LABELS:
            raise InputError(f"{path}: trained with other source labels")
        return MixtureLDM(LDMConfig(**config["network"]))

    return load_pretrained(path, "an audio model checkpoint", build, kind=KIND)


def gmsdi_loss(model: MixtureLDM, batch: dict[str, Any], alphas: torch.Tensor) -> torch.Tensor:
    a = alphas.to(batch["t"].device)[batch["t"]].view(-1, 1, 1, 1)
    noisy = a.sqrt() * batch["target"] + (1 - a).sqrt() * batch["noise"]
    return torch.nn.functional.mse_loss(model(noisy, batch["t"], batch["labels"]), batch["noise"])


class GMSDIPipeline:
    """Separation and accompaniment with a mixture-trained model, coupled to the mix at each step."""

    def __init__(self, model: MixtureLDM, vae: MelVAE, config: dict[str, Any], train_schedule: Any = None,
                 vocoder: Any = None) -> None:  # fmt: skip
        """``train_schedule``: the noise schedule saved with the model (default: its config's); ``vocoder``:
        the trained mel vocoder, where there is one (else Griffin-Lim)."""
        self.model, self.vae, self.config = model, vae, config
        self.front = MelFrontend(vae.spec)
        self.spec = vae.spec
        self.train_schedule = train_schedule or noise_schedule(config["config"])
        self.vocoder = vocoder

    @classmethod
    def load(cls, path: str | Path | None = None) -> GMSDIPipeline:
        from midiarr.audio.pipeline import WEIGHTS, find_vocoder, resolve_vae

        folder = Path(path) if path is not None else WEIGHTS / "audio-gmsdi"
        if path is None and not (folder / "model.safetensors").is_file():
            raise InputError("no bundled GMSDI weights; train one with `midiarr train-audio gmsdi`")
        model, config = load_gmsdi(folder)
        vae, _ = load_vae(resolve_vae(folder, config))
        schedule = load_noise_schedule(folder, config["config"])
        return cls(model, vae, config, schedule, find_vocoder(folder, vae.spec))

    def _label(self, b: int, names: list[int]) -> torch.Tensor:
        lab = torch.zeros(b, len(LABELS))
        lab[:, names] = 1.0
        return lab

    def _eps(self, x: torch.Tensor, t: int, source: int, negative: float) -> torch.Tensor:
        """Noise estimate of one source: its own label, pushed away from the other labels."""
        b = len(x)
        tt = torch.full((2 * b,), int(t), dtype=torch.long)
        others = [i for i in range(len(LABELS)) if i != source]
        out = self.model(torch.cat([x, x]), tt, torch.cat([self._label(b, [source]), self._label(b, others)]))
        pos, neg = out[:b], out[b:]
        return pos + negative * (pos - neg)

    def _encode_amp(self, amp: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.vae.encode(fit_frames(normalize(amp), self.spec.frames))

    def _decode_amp(self, latent: torch.Tensor, frames: int) -> torch.Tensor:
        with torch.no_grad():
            return denormalize(fit_frames(self.vae.decode(latent), frames))

    def separate_clips(self, mix: torch.Tensor, steps: int = 25, negative: float = 1.0, seed: int = 0,
                       coupling: float = 1.0) -> dict[str, Any]:  # fmt: skip
        """Stems of each mix clip (B, samples): every source sampled under its label, the sum held to the mix."""
        sched = ddim_schedule(self.train_schedule, steps)
        alphas = sched.alphas_cumprod
        b, n = len(mix), len(LABELS)
        mix_amp = self.front.mel_amplitude(mix)
        frames = mix_amp.shape[-1]
        mix_model = fit_frames(mix_amp, self.spec.frames)
        gen = torch.Generator().manual_seed(int(seed))
        x = torch.randn((b, 1, *self.vae.latent_shape()), generator=gen).expand(b, n, -1, -1, -1).contiguous()
        with torch.no_grad():
            for t in sched.timesteps:
                rebalance()
                a = alphas[int(t)]
                x0 = torch.stack([
                    (x[:, k] - (1 - a).sqrt() * self._eps(x[:, k], int(t), k, negative)) / a.sqrt() for k in range(n)
                ], dim=1)  # fmt: skip
                amps = self._decode_amp(x0.reshape(b * n, *x0.shape[2:]), self.spec.frames).reshape(
                    b, n, self.spec.n_mels, self.spec.frames
                )
                share = amps / amps.sum(dim=1, keepdim=True).clamp(min=1e-6)
                projected = share * mix_model.unsqueeze(1)
                x0_new = self._encode_amp(projected.reshape(b * n, *projected.shape[2:])).reshape(x0.shape)
                x0 = (1 - coupling) * x0 + coupling * x0_new
                eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
                x = torch.stack([sched.step(eps[:, k], t, x[:, k]).prev_sample for k in range(n)], dim=1)
        mels = self._decode_amp(x.reshape(b * n, *x.shape[2:]), frames).reshape(b, n, self.spec.n_mels, frames)
        waves = self.front.masked_sources(mix, mels)  # the "other" source takes its share of the mask too
        return {"waves": waves[:, : len(STEMS)], "mels": mels[:, : len(STEMS)], "latents": x}

    def insert_clips(self, partial: torch.Tensor, stems: list[str], steps: int = 25, negative: float = 1.0,
                     seed: int = 0, vocoder_iters: int = 48, vocoder: str = "neural",
                     level: str = INSERT_LEVEL) -> dict[str, Any]:  # fmt: skip
        """New sources for each partial clip: what the union-label mixture holds beyond the given audio;
        ``level`` as `midiarr.audio.pipeline.StemLDMPipeline.insert_clips` sets it."""
        from midiarr.audio.pipeline import check_level, stem_indices, vocode_mels

        check_level(level)

        target = stem_indices(stems)
        sched = ddim_schedule(self.train_schedule, steps)
        alphas = sched.alphas_cumprod
        b, n = len(partial), len(target)
        given_amp = fit_frames(self.front.mel_amplitude(partial), self.spec.frames)
        frames = self.front.stft(partial[:1]).shape[-1]
        gen = torch.Generator().manual_seed(int(seed))
        x = torch.randn((b, 1, *self.vae.latent_shape()), generator=gen).expand(b, n, -1, -1, -1).contiguous()
        mix_noise = torch.randn((b, *self.vae.latent_shape()), generator=gen)
        union = self._label(b, [i for i in range(len(STEMS)) if i not in target] + target + [len(STEMS)])
        with torch.no_grad():
            for t in sched.timesteps:
                rebalance()
                a = alphas[int(t)]
                x0 = torch.stack([
                    (x[:, j] - (1 - a).sqrt() * self._eps(x[:, j], int(t), k, negative)) / a.sqrt()
                    for j, k in enumerate(target)
                ], dim=1)  # fmt: skip
                amps = self._decode_amp(x0.reshape(b * n, *x0.shape[2:]), self.spec.frames).reshape(
                    b, n, self.spec.n_mels, self.spec.frames
                )
                # the mixture of given audio and current sources, noised to t and denoised under the union label
                y0 = self._encode_amp(given_amp + amps.sum(dim=1))
                yt = a.sqrt() * y0 + (1 - a).sqrt() * mix_noise
                eps_y = self.model(yt, torch.full((b,), int(t), dtype=torch.long), union)
                y_amp = self._decode_amp((yt - (1 - a).sqrt() * eps_y) / a.sqrt(), self.spec.frames)
                extra = (y_amp - given_amp).clamp(min=0.0)
                share = amps / amps.sum(dim=1, keepdim=True).clamp(min=1e-6)
                x0 = self._encode_amp((share * extra.unsqueeze(1)).reshape(b * n, *amps.shape[2:])).reshape(x0.shape)
                eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
                x = torch.stack([sched.step(eps[:, j], t, x[:, j]).prev_sample for j in range(n)], dim=1)
        mels = self._decode_amp(x.reshape(b * n, *x.shape[2:]), frames).reshape(b, n, self.spec.n_mels, frames)
        waves = vocode_mels(self.front, self.vocoder, mels, partial.shape[-1], vocoder, vocoder_iters, seed)
        if level == "song":
            waves = match_level(waves, partial, list(stems), INSERT_LEVEL_DB)
        return {"waves": waves, "mels": mels, "latents": x}
