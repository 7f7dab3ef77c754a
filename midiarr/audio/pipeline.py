"""Separation, insertion and generation with the stem LDM, on clips and on whole files.

A file is cut into clip-length windows that overlap by `overlap` seconds; each window
is processed on its own and the outputs are cross-faded back together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from midiarr.audio.data import STEMS
from midiarr.audio.features import MelFrontend, MelSpec, denormalize, fit_frames, normalize
from midiarr.audio.ldm import (
    Conditions,
    StemLDM,
    cat_conditions,
    ddim_schedule,
    load_ldm,
    load_noise_schedule,
    noise_schedule,
)
from midiarr.audio.levels import match_level
from midiarr.audio.tuned import (
    GENERATION_ETA,
    INSERT_ESTIMATOR,
    INSERT_LEVEL,
    INSERT_LEVEL_DB,
    INSERT_LEVELS,
    MASKS,
    SEPARATION_ESTIMATOR,
    SEPARATION_GUIDANCE,
    VOCODERS,
)
from midiarr.audio.vae import MelVAE, load_vae
from midiarr.errors import InputError, OptionError
from midiarr.threads import rebalance

if TYPE_CHECKING:
    from midiarr.audio.masks import MaskDecoder
    from midiarr.audio.vocoder import MelVocoder

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_LDM = WEIGHTS / "audio-ldm"
# how separation turns the model into stems: "mean", its estimate of the clean stems from the mix alone
# (the posterior mean: what SI-SDR and MSE reward), or "sample", one DDIM draw (sharper, but its
# invented details count twice against it: once missing where the truth has them, once added)
ESTIMATORS = ("mean", "sample")


def stem_indices(stems: Sequence[str]) -> list[int]:
    unknown = [s for s in stems if s not in STEMS]
    if unknown or not stems:
        raise OptionError(f"unknown stem {', '.join(unknown) or '(none)'}; the audio models know {', '.join(STEMS)}")
    return [STEMS.index(s) for s in stems]


def resolve_vae(ldm_dir: Path, config: dict[str, Any]) -> Path:
    """The VAE a latent model was trained with: beside it (bundled layout) or where training found it."""
    beside = ldm_dir.parent / "audio-vae"
    if (beside / "model.safetensors").is_file():
        return beside
    recorded = Path(str(config.get("vae", "")))
    if (recorded / "model.safetensors").is_file():
        return recorded
    raise InputError(f"{ldm_dir}: cannot find the mel VAE it was trained with ({recorded})")


def weights_digest(folder: str | Path) -> str:
    """A short hash of a checkpoint's weights: ties a mask decoder to the stem LDM it was trained on."""
    weights = Path(folder) / "model.safetensors"
    if not weights.is_file():
        raise InputError(f"{folder}: not a model checkpoint (needs model.safetensors)")
    return hashlib.sha1(weights.read_bytes()).hexdigest()[:12]


def find_mask_decoder(ldm_dir: Path) -> MaskDecoder | None:
    """The mask decoder beside the stem LDM (``audio-masks``), if it was trained on this LDM's estimates."""
    from midiarr.audio.masks import load_mask_decoder

    folder = ldm_dir.parent / "audio-masks"
    if not (folder / "model.safetensors").is_file():
        return None
    model, config = load_mask_decoder(folder)
    return model if config.get("ldm_digest") == weights_digest(ldm_dir) else None


def find_vocoder(ldm_dir: Path, spec: MelSpec) -> MelVocoder | None:
    """The vocoder beside the stem LDM (``audio-vocoder``), else the bundled one, if it reads these mels."""
    from midiarr.audio.vocoder import load_vocoder

    for folder in (ldm_dir.parent / "audio-vocoder", WEIGHTS / "audio-vocoder"):
        if (folder / "model.safetensors").is_file():
            model, _ = load_vocoder(folder)
            if model.spec == spec:
                return model
    return None


class StemLDMPipeline:
    """The stem LDM with its VAE and mel front end, and the decoders that turn its mels into audio."""

    def __init__(self, ldm: StemLDM, vae: MelVAE, config: dict[str, Any], train_schedule: Any = None,
                 masks: MaskDecoder | None = None, vocoder: MelVocoder | None = None) -> None:  # fmt: skip
        """``train_schedule``: the noise schedule saved with the model (default: its config's); ``masks`` and
        ``vocoder``: the trained decoders, where there are any (else mel ratio masks and Griffin-Lim)."""
        self.ldm, self.vae, self.config = ldm, vae, config
        self.front = MelFrontend(vae.spec)
        self.spec = vae.spec
        self.train_schedule = train_schedule or noise_schedule(config["config"])
        self.masks, self.vocoder = masks, vocoder

    @classmethod
    def load(cls, path: str | Path | None = None) -> StemLDMPipeline:
        folder = Path(path) if path is not None else DEFAULT_LDM
        if path is None and not (folder / "model.safetensors").is_file():
            raise InputError("no bundled audio LDM weights; train one with `midiarr train-audio ldm`")
        ldm, config = load_ldm(folder)
        vae, _ = load_vae(resolve_vae(folder, config))
        schedule = load_noise_schedule(folder, config["config"])
        return cls(ldm, vae, config, schedule, find_mask_decoder(folder), find_vocoder(folder, vae.spec))

    # ----------------------------------------------------------------- sampling
    def encode(self, waves: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.vae.encode(self.front.model_frames(self.front.log_mel(waves)))

    def sample(
        self, cond: Conditions, steps: int = 25, guidance: float = 2.0, seed: int = 0, eta: float = 0.0
    ) -> torch.Tensor:
        """Stem latents (B, K, C, H, W) by DDIM with classifier-free guidance on the given audio.

        Guidance combines the model's two outputs linearly whichever it predicts (noise or clean latents).
        ``eta`` 0 is deterministic DDIM; 1 adds fresh noise at every step (ancestral, DDPM-like).

        Every stem of a clip starts from the same noise (STEMPHONIC's shared noise).
        """
        prediction = str(self.config["config"]["ldm"].get("prediction", "epsilon"))
        sched = ddim_schedule(self.train_schedule, steps, prediction)
        b, k = cond.in_given.shape
        gen = torch.Generator().manual_seed(int(seed))
        x = torch.randn((b, 1, *self.vae.latent_shape()), generator=gen).expand(b, k, -1, -1, -1).contiguous()
        use_cfg = guidance != 1.0 and bool(cond.given_present.any())
        with torch.no_grad():
            for t in sched.timesteps:
                rebalance()
                tt = torch.full((b,), int(t), dtype=torch.long)
                if guidance == 0.0:
                    eps = self.ldm(x, tt, cond.without_given())
                elif use_cfg:
                    out = self.ldm(torch.cat([x, x]), torch.cat([tt, tt]), cat_conditions(cond, cond.without_given()))
                    eps_c, eps_u = out[:b], out[b:]
                    eps = eps_u + guidance * (eps_c - eps_u)
                else:
                    eps = self.ldm(x, tt, cond)
                x = sched.step(eps, t, x, eta=eta, generator=gen).prev_sample
        return x

    def posterior_mean(self, cond: Conditions, guidance: float = 1.0, seed: int = 0) -> torch.Tensor:
        """The model's clean-latent estimate (B, K, C, H, W) from pure noise: one call at the last timestep.

        Trained to predict clean latents under a squared loss, the model answers E[stems | condition]
        there, since the noisy input carries almost nothing; guidance mixes the answers with and
        without the given audio as in `sample`.
        """
        if self.config["config"]["ldm"].get("prediction", "epsilon") != "sample":
            raise OptionError("the posterior-mean estimator needs a model that predicts clean latents")
        b, k = cond.in_given.shape
        gen = torch.Generator().manual_seed(int(seed))
        x = torch.randn((b, 1, *self.vae.latent_shape()), generator=gen).expand(b, k, -1, -1, -1).contiguous()
        t = torch.full((b,), int(self.train_schedule.config.num_train_timesteps) - 1, dtype=torch.long)
        with torch.no_grad():
            if guidance == 1.0 or not bool(cond.given_present.any()):
                return self.ldm(x, t, cond if guidance != 0.0 else cond.without_given())
            out = self.ldm(torch.cat([x, x]), torch.cat([t, t]), cat_conditions(cond, cond.without_given()))
        return out[b:] + guidance * (out[:b] - out[b:])

    def decode_mels(self, latents: torch.Tensor, frames: int) -> torch.Tensor:
        """Mel amplitudes (B, K, n_mels, frames) of stem latents, padded to the STFT's frame count."""
        b, k = latents.shape[:2]
        with torch.no_grad():
            log_mel = self.vae.decode(latents.reshape(b * k, *latents.shape[2:]))
        return denormalize(fit_frames(log_mel, frames)).reshape(b, k, self.spec.n_mels, frames)

    def _conditions(self, given: torch.Tensor | None, b: int, in_given: list[int],
                    active_on: list[int], active_off: list[int]) -> Conditions:  # fmt: skip
        k = len(STEMS)
        flags = [torch.zeros(b, k) for _ in range(3)]
        for flag, idx in zip(flags, (in_given, active_on, active_off)):
            flag[:, idx] = 1.0
        if given is None:
            return Conditions(torch.zeros(b, *self.vae.latent_shape()), torch.zeros(b), *flags)
        return Conditions(self.encode(given), torch.ones(b), *flags)

    # ------------------------------------------------------------ clip tasks
    def separate_clips(
        self, mix: torch.Tensor, steps: int = 25, guidance: float | None = None, seed: int = 0,
        estimator: str = SEPARATION_ESTIMATOR, masks: str = "decoder",
    ) -> dict[str, Any]:  # fmt: skip
        """Each clip's stems cut from its mix with masks from the estimated stem mels.

        mix: (B, clip samples). ``estimator``: "mean" (one model call; ``steps`` unused) or
        "sample" (DDIM, ``steps`` steps); ``guidance`` None is the estimator's tuned default.
        ``masks``: "decoder" (the mask decoder, where one was trained on this LDM) or "mel".
        Returns waves (B, K, samples) and mels (B, K, n_mels, frames).
        """
        if estimator not in ESTIMATORS:
            raise OptionError(f"--estimator {estimator!r}: choose one of {', '.join(ESTIMATORS)}")
        if masks not in MASKS:
            raise OptionError(f"--masks {masks!r}: choose one of {', '.join(MASKS)}")
        guidance = SEPARATION_GUIDANCE[estimator] if guidance is None else guidance
        cond = self._conditions(mix, len(mix), list(range(len(STEMS))), [], [])
        if estimator == "mean":
            latents = self.posterior_mean(cond, guidance, seed)
        else:
            latents = self.sample(cond, steps, guidance, seed)
        frames = self.front.stft(mix[:1]).shape[-1]
        mels = self.decode_mels(latents, frames)
        if masks == "decoder" and self.masks is not None:
            with torch.no_grad():
                waves = self.masks.separate(mix, mels)
        else:
            waves = self.front.masked_sources(mix, mels, floor=self.front.mel_amplitude(mix))
        return {"waves": waves, "mels": mels, "latents": latents}

    def insert_clips(self, partial: torch.Tensor, stems: Sequence[str], steps: int = 25, guidance: float = 2.0,
                     seed: int = 0, vocoder_iters: int = 48, vocoder: str = "neural",
                     estimator: str = INSERT_ESTIMATOR, level: str = INSERT_LEVEL) -> dict[str, Any]:  # fmt: skip
        """New stems written for each clip of a partial mix (the song without them), vocoded.

        ``estimator``: "sample" (a DDIM draw, ``steps`` steps) or "mean" (the posterior mean, one call).
        ``level``: "song" (each clip's stem set against the rest of the song, `midiarr.audio.levels`) or
        "model" (as written).
        """
        check_level(level)
        if estimator not in ESTIMATORS:
            raise OptionError(f"--estimator {estimator!r}: choose one of {', '.join(ESTIMATORS)}")
        target = stem_indices(stems)
        given_idx = [i for i in range(len(STEMS)) if i not in target]
        cond = self._conditions(partial, len(partial), given_idx, target, [])
        if estimator == "mean":
            latents = self.posterior_mean(cond, guidance, seed)
        else:
            latents = self.sample(cond, steps, guidance, seed)
        frames = self.front.stft(partial[:1]).shape[-1]
        mels = self.decode_mels(latents[:, target], frames)
        waves = self.vocode(mels, partial.shape[-1], vocoder, vocoder_iters, seed)
        if level == "song":
            waves = match_level(waves, partial, list(stems), INSERT_LEVEL_DB)
        return {"waves": waves, "mels": mels, "latents": latents}

    def generate_clips(self, count: int, stems: Sequence[str], steps: int = 25, seed: int = 0,
                       vocoder_iters: int = 48, eta: float = GENERATION_ETA,
                       vocoder: str = "neural") -> dict[str, Any]:  # fmt: skip
        """Stems written from nothing; stems not asked for are held silent."""
        target = stem_indices(stems)
        silent = [i for i in range(len(STEMS)) if i not in target]
        cond = self._conditions(None, count, [], target, silent)
        latents = self.sample(cond, steps, 0.0, seed, eta)
        mels = self.decode_mels(latents[:, target], self.spec.clip_samples // self.spec.hop + 1)
        waves = self.vocode(mels, self.spec.clip_samples, vocoder, vocoder_iters, seed)
        return {"waves": waves, "mels": mels, "latents": latents}

    def vocode(self, mels: torch.Tensor, length: int, vocoder: str = "neural", iters: int = 48,
               seed: int = 0) -> torch.Tensor:  # fmt: skip
        return vocode_mels(self.front, self.vocoder, mels, length, vocoder, iters, seed)


def check_level(level: str) -> None:
    """Refuse an inserted stem's level that is not one of `INSERT_LEVELS`."""
    if level not in INSERT_LEVELS:
        raise OptionError(f"--level {level!r}: choose one of {', '.join(INSERT_LEVELS)}")


def vocode_mels(front: MelFrontend, model: MelVocoder | None, mels: torch.Tensor, length: int,
                vocoder: str = "neural", iters: int = 48, seed: int = 0) -> torch.Tensor:  # fmt: skip
    """Waveforms (B, K, length) of mel amplitudes (B, K, n_mels, frames): the trained vocoder ``model`` where
    there is one and ``vocoder`` is "neural", else Griffin-Lim (``iters`` iterations from a seeded phase)."""
    if vocoder not in VOCODERS:
        raise OptionError(f"--vocoder {vocoder!r}: choose one of {', '.join(VOCODERS)}")
    b, k = mels.shape[:2]
    flat = mels.reshape(b * k, *mels.shape[2:])
    if vocoder == "neural" and model is not None:
        with torch.no_grad():
            return model(normalize(flat), length).reshape(b, k, -1)
    return front.griffin_lim(front.linear_magnitude(flat), length, iters, seed).reshape(b, k, -1)


# ------------------------------------------------------------------ whole files
def windows(wave: torch.Tensor, clip: int, overlap: int) -> tuple[torch.Tensor, list[int]]:
    """Clip-length windows (N, clip) starting every clip - overlap samples, the last zero-padded."""
    hop = clip - overlap
    starts = list(range(0, max(1, len(wave) - overlap), hop)) or [0]
    out = torch.zeros(len(starts), clip)
    for i, s in enumerate(starts):
        piece = wave[s : s + clip]
        out[i, : len(piece)] = piece
    return out, starts


def overlap_add(parts: torch.Tensor, starts: list[int], length: int, overlap: int) -> torch.Tensor:
    """Cross-fade window outputs (N, K, clip) back into (K, length) with linear fades over the overlap."""
    n, k, clip = parts.shape
    fade = torch.ones(clip)
    if overlap > 0:
        ramp = torch.linspace(0.0, 1.0, overlap + 2)[1:-1]
        fade[:overlap] = ramp
        fade[clip - overlap :] = ramp.flip(0)
    total = torch.zeros(k, length + clip)
    weight = torch.zeros(length + clip)
    for i, s in enumerate(starts):
        w = fade.clone()
        if i == 0:
            w[:overlap] = 1.0
        if i == n - 1:
            w[clip - overlap :] = 1.0
        total[:, s : s + clip] += parts[i] * w
        weight[s : s + clip] += w
    return (total / weight.clamp(min=1e-6))[:, :length]


def process_file(
    wave: torch.Tensor, clip: int, overlap: int, fn: Callable[[torch.Tensor, int], torch.Tensor], batch: int = 8,
    progress: bool = False, desc: str = "",
) -> torch.Tensor:  # fmt: skip
    """Run ``fn(windows, batch_number) -> (n, K, clip)`` over a whole waveform in batches."""
    from tqdm import tqdm

    parts, starts = windows(wave, clip, overlap)
    outs = []
    for j in tqdm(range(0, len(parts), batch), desc=desc, unit="batch", disable=not progress):
        outs.append(fn(parts[j : j + batch], j // batch))
    return overlap_add(torch.cat(outs), starts, len(wave), overlap)
