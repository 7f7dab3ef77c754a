"""Training the decoders that turn the stem models' mels into audio (`midiarr train-audio masks|vocoder`).

- ``masks``: the mask decoder (`masks.py`), on the train split's mixes and true stems, conditioned
  on the stem LDM's posterior-mean estimate of each clip (computed once and cached beside the clips).
- ``vocoder``: the mel vocoder (`vocoder.py`), on 1 s excerpts of mixes, stems and "other", from the
  true mels and from the mels the mel VAE gives back.

Like `train.py`: train split to learn, valid split to keep the best weights, the test split never read.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from midiarr.audio.data import STEMS, ClipSet
from midiarr.audio.features import MelFrontend, fit_frames, normalize
from midiarr.audio.levels import ACTIVE_DB
from midiarr.audio.train import _clips, audio_config, keep_config, mel_spec
from midiarr.errors import OptionError
from midiarr.training import (
    LoopSettings,
    budget,
    data_seed,
    fit,
    invoked_command,
    module_device,
    start_run,
)

ACTIVE_RMS = 10 ** (ACTIVE_DB / 20)  # quieter is silent, as in eval: no vocoder example, no SI-SDR term


def _continue_from(model: torch.nn.Module, init_from: str | Path | None, kind: str, what: str,
                   **must_match: Any) -> dict[str, Any]:  # fmt: skip
    """Load an earlier run's weights into ``model`` (same network, and the same values of ``must_match``'s
    config keys); the facts to record under ``init_from`` (empty for a fresh run)."""
    if init_from is None:
        return {}
    from dataclasses import asdict

    from midiarr.checkpoint import init_facts, load_state, read_pretrained
    from midiarr.errors import InputError

    state, earlier = read_pretrained(init_from, what, kind=kind)
    network = json.loads(json.dumps(asdict(model.config)))  # tuples as the JSON lists the config holds
    try:  # an earlier config lacks the fields added since: their defaults
        before = json.loads(json.dumps(asdict(type(model.config)(**earlier.get("network", {})))))
    except TypeError:
        before = earlier.get("network")
    if before != network:
        raise InputError(f"{init_from}: another network ({earlier.get('network')}), this run builds {network}")
    for key, value in must_match.items():
        if earlier.get(key) != value:
            raise InputError(f"{init_from}: trained with another {key} ({earlier.get(key)})")
    load_state(model, state, init_from).train()
    return {"init_from": init_facts(init_from, earlier)}


# ---------------------------------------------------------------------- mask decoder
def estimate_subset(clips: ClipSet, limit: int | None) -> np.ndarray:
    """The clips whose LDM estimates a run computes: all, or ``limit`` of them drawn with a fixed seed
    (one posterior-mean call costs about 0.2 s of a CPU core per clip)."""
    if limit is not None and int(limit) < 1:
        raise OptionError(f"[masks.train] estimate_clips / valid_clips = {limit}: must be at least 1")
    if limit is None or limit >= len(clips):
        return np.arange(len(clips))
    return np.sort(np.random.default_rng(0).choice(len(clips), size=limit, replace=False))


def ldm_estimates(
    data: str | Path, split: str, clips: ClipSet, subset: np.ndarray, ldm_path: str | Path | None,
    guidance: float, log: Callable[[str], None], batch: int = 32,
) -> np.ndarray:  # fmt: skip
    """The stem LDM's posterior-mean stem mels of the clips in ``subset``, normalized log-mel
    (len(subset), K, n_mels, STFT frames) float16, cached beside the clips under the LDM's weights
    digest, the guidance and the subset's size."""
    from midiarr.audio.pipeline import DEFAULT_LDM, StemLDMPipeline, weights_digest

    folder = Path(ldm_path) if ldm_path is not None else DEFAULT_LDM
    cache = Path(data) / f"{split}-ldm-mels-{weights_digest(folder)}-g{guidance:g}-n{len(subset)}.npy"
    if cache.exists():
        return np.load(cache, mmap_mode="r")
    pipe = StemLDMPipeline.load(folder)
    spec = pipe.spec
    frames = spec.clip_samples // spec.hop + 1
    tmp = cache.with_suffix(f".{os.getpid()}.tmp.npy")  # processes of one `accelerate launch` may write at once
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                    shape=(len(subset), len(STEMS), spec.n_mels, frames))  # fmt: skip
    for start in range(0, len(subset), batch):
        rows = np.arange(start, min(len(subset), start + batch))
        mix = torch.from_numpy(clips.waves(subset[rows])[:, 0, : spec.clip_samples])
        cond = pipe._conditions(mix, len(mix), list(range(len(STEMS))), [], [])
        mels = pipe.decode_mels(pipe.posterior_mean(cond, guidance, seed=0), frames)
        out[rows] = normalize(mels).numpy().astype(np.float16)
        if (start // batch) % 20 == 0:
            log(f"stem LDM estimates: {rows[-1] + 1}/{len(subset)} {split} clips")
    out.flush()
    del out
    tmp.replace(cache)
    return np.load(cache, mmap_mode="r")


class MaskBatches:
    """Mix magnitudes, true source magnitudes and the LDM's estimates of random clips, cropped in time."""

    def __init__(self, clips: ClipSet, subset: np.ndarray, estimates: np.ndarray, front: MelFrontend,
                 frames: int | None, drop_estimate: float, seed: int) -> None:  # fmt: skip
        self.clips, self.subset, self.estimates, self.front = clips, subset, estimates, front
        self.frames, self.drop = frames, drop_estimate
        self.rng = np.random.default_rng(seed)

    def __call__(self, count: int) -> dict[str, torch.Tensor]:
        from midiarr.audio.features import denormalize

        rows = np.sort(self.rng.integers(0, len(self.subset), size=count))
        waves = torch.from_numpy(self.clips.waves(self.subset[rows])[..., : self.front.spec.clip_samples])
        mix, stems = waves[:, 0], waves[:, 1:]
        sources = torch.cat([stems, (mix - stems.sum(dim=1)).unsqueeze(1)], dim=1)
        b, s, n = sources.shape
        spectrum = self.front.stft(mix)
        magnitude = spectrum.abs()
        truth = self.front.stft(sources.reshape(b * s, n)).abs().reshape(b, s, *magnitude.shape[1:])
        mels = denormalize(torch.from_numpy(self.estimates[rows].astype(np.float32)))
        total = magnitude.shape[-1]
        f0, count_frames = 0, total
        if self.frames is not None and self.frames < total:
            f0, count_frames = int(self.rng.integers(0, total - self.frames + 1)), self.frames
        cut = slice(f0, f0 + count_frames)
        magnitude, truth, mels, spectrum = magnitude[..., cut], truth[..., cut], mels[..., cut], spectrum[..., cut]
        hop = self.front.spec.hop
        waves = stems[..., f0 * hop : (f0 + count_frames - 1) * hop]  # the samples those frames centre on
        active = waves.pow(2).mean(dim=-1).sqrt() > ACTIVE_RMS
        given = torch.from_numpy((self.rng.random(count) >= self.drop).astype(np.float32))
        return {"magnitude": magnitude, "truth": truth, "mels": mels, "given": given, "real": spectrum.real,
                "imag": spectrum.imag, "waves": waves, "active": active}  # fmt: skip


def train_masks(
    data: str | Path,
    out_dir: str | Path,
    ldm_path: str | Path | None = None,
    config_path: str | Path | None = None,
    max_minutes: float | None = None,
    max_steps: int | None = None,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """Train the mask decoder on the stem LDM's estimates (``ldm_path``: default the bundled stem LDM);
    ``init_from`` continues an earlier mask decoder of the same network and LDM."""
    from midiarr.audio.masks import KIND as MASKS_KIND
    from midiarr.audio.masks import (
        MaskDecoder,
        MaskDecoderConfig,
        mask_loss,
        negative_si_sdr,
        save_mask_decoder,
        stems_from_masks,
    )
    from midiarr.audio.pipeline import DEFAULT_LDM, weights_digest
    from midiarr.audio.tuned import SEPARATION_GUIDANCE

    ldm_digest = weights_digest(ldm_path if ldm_path is not None else DEFAULT_LDM)  # a missing LDM fails first
    config = audio_config(config_path)
    spec = mel_spec(config)
    section = config["masks"]
    tcfg = budget(section["train"], max_minutes, max_steps)
    start_run(int(tcfg["seed"]), threads)
    train, valid, split = _clips(data, spec, log)
    guidance = float(SEPARATION_GUIDANCE["mean"])
    train_set = estimate_subset(train, tcfg.get("estimate_clips"))
    valid_set = estimate_subset(valid, tcfg.get("valid_clips"))
    train_est = ldm_estimates(data, "train", train, train_set, ldm_path, guidance, log)
    valid_est = ldm_estimates(data, split, valid, valid_set, ldm_path, guidance, log)
    front = MelFrontend(spec)
    net = MaskDecoderConfig(channels=int(section["channels"]), depth=int(section["depth"]),
                            dilations=tuple(int(d) for d in section["dilations"]))  # fmt: skip
    model = MaskDecoder(net, spec)
    continued = _continue_from(model, init_from, MASKS_KIND, "a mask decoder checkpoint", ldm_digest=ldm_digest)
    drop = float(tcfg["drop_estimate"])
    sdr_weight = float(tcfg.get("sdr_weight", 0.0))
    batches = MaskBatches(train, train_set, train_est, front, int(tcfg["frames"]), drop, data_seed(int(tcfg["seed"])))
    fixed = [MaskBatches(valid, valid_set, valid_est, front, None, 0.0, 12345 + i)(int(tcfg["batch_size"]))
             for i in range(int(tcfg["eval_batches"]))]  # fmt: skip
    n_params = sum(p.numel() for p in model.parameters())
    ldm_folder = ldm_path if ldm_path is not None else "bundled audio-ldm"
    meta = {
        "command": invoked_command(),
        **continued,
        "config": config,
        "ldm": str(ldm_folder),
        "ldm_digest": ldm_digest,
        "ldm_guidance": guidance,
        "train_clips": len(train_set),
        "valid_clips": len(valid_set),
        "parameters": n_params,
        "data_split": f"render-dataset train split for training ({len(train_set)} of its {len(train)} clips, "
        f"drawn with seed 0), {split} for validation; test never read",
    }
    log(f"mask decoder: {n_params / 1e6:.2f}M parameters; train {len(train)} clips, valid {len(valid)}")

    def objective(masks: torch.Tensor, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Compressed-magnitude L1 of every source, plus the stems' negative SI-SDR (what separation is judged by)."""
        loss = mask_loss(masks, b["magnitude"], b["truth"])
        if sdr_weight > 0:
            spectrum = torch.complex(b["real"], b["imag"])
            waves = stems_from_masks(model.front, masks, spectrum, b["waves"].shape[-1])
            loss = loss + sdr_weight * negative_si_sdr(waves, b["waves"], b["active"])
        return loss

    def loss(m: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return objective(m(batch["magnitude"], batch["mels"], batch["given"]), batch)

    def validate(m: Any) -> dict[str, float]:
        device = module_device(m)
        figures = []
        for b in fixed:
            b = {k: v.to(device) for k, v in b.items()}
            figures.append((float(objective(m(b["magnitude"], b["mels"]), b)),
                            float(objective(m(b["magnitude"], None), b))))  # fmt: skip
        with_ldm, alone = np.mean(figures, axis=0)
        return {"valid_loss": float(with_ldm), "valid_loss_mix_only": float(alone)}

    out = Path(out_dir)
    result = fit(model, lambda: batches(int(tcfg["batch_size"])), loss, validate,
                 lambda m, facts: save_mask_decoder(m, out, {**meta, **facts}),
                 LoopSettings.from_table(tcfg, ema=True), out, warm_ema=not continued, log=log)  # fmt: skip
    keep_config(config_path, out)
    return {"steps": result.steps, "valid_loss": result.best["valid_loss"], "parameters": n_params}


# ---------------------------------------------------------------------- vocoder
class VocoderBatches:
    """Excerpts of sounding rows (mix, a stem or "other") with their log-mels, true or through the VAE."""

    def __init__(self, clips: ClipSet, front: MelFrontend, vae: Any, frames: int, vae_share: float,
                 seed: int) -> None:  # fmt: skip
        self.clips, self.front, self.vae = clips, front, vae
        self.frames, self.vae_share = frames, vae_share
        self.rng = np.random.default_rng(seed)

    def __call__(self, count: int) -> dict[str, torch.Tensor]:
        spec, rng = self.front.spec, self.rng
        index = np.sort(rng.integers(0, len(self.clips), size=count))
        waves = torch.from_numpy(self.clips.waves(index)[..., : spec.clip_samples])
        rows = torch.cat([waves, (waves[:, 0] - waves[:, 1:].sum(dim=1)).unsqueeze(1)], dim=1)  # + "other"
        usable = spec.frames - self.frames  # frames past the VAE's window are padding
        f0 = int(rng.integers(0, usable + 1))
        cut = slice(f0 * spec.hop, (f0 + self.frames - 1) * spec.hop)
        loud = rows[..., cut].pow(2).mean(dim=-1).sqrt() > ACTIVE_RMS  # rows that sound in the excerpt
        chosen = torch.stack([
            row[int(rng.choice(np.flatnonzero(ok.numpy())))] if bool(ok.any()) else row[0]
            for row, ok in zip(rows, loud)
        ])  # fmt: skip
        log_mel = self.front.log_mel(chosen)
        through_vae = torch.from_numpy(rng.random(count) < self.vae_share)
        if bool(through_vae.any()):
            with torch.no_grad():
                rebuilt = self.vae.decode(self.vae.encode(self.front.model_frames(log_mel[through_vae])))
            log_mel[through_vae] = fit_frames(rebuilt, log_mel.shape[-1])
        audio = chosen[:, cut]
        return {"log_mel": log_mel[..., f0 : f0 + self.frames].contiguous(), "audio": audio.contiguous()}


def vocoder_loss(
    model: Any, batch: dict[str, torch.Tensor], front: MelFrontend, mel_weight: float = 1.0, onset_weight: float = 0.0
) -> torch.Tensor:
    """``mel_weight`` x the mel L1 distance + ``onset_weight`` x the spectral-flux L1 distance + the
    multi-resolution STFT distance, of the network's own output (the mel corrections the vocoder applies
    after it are left out of training)."""
    from midiarr.audio.vocoder import mel_l1, multi_resolution_stft, onset_l1

    wave = model(batch["log_mel"], batch["audio"].shape[-1], corrections=0)
    loss = mel_weight * mel_l1(front, wave, batch["audio"]) + multi_resolution_stft(wave, batch["audio"])
    if onset_weight > 0:
        loss = loss + onset_weight * onset_l1(front, wave, batch["audio"])
    return loss


def train_vocoder(
    data: str | Path,
    out_dir: str | Path,
    vae_path: str | Path,
    config_path: str | Path | None = None,
    max_minutes: float | None = None,
    max_steps: int | None = None,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """Train the mel vocoder on rendered clips; ``vae_path``: the mel VAE whose decoded mels it must vocode;
    ``init_from`` continues an earlier vocoder of the same network."""
    from midiarr.audio.vae import load_vae
    from midiarr.audio.vocoder import KIND as VOCODER_KIND
    from midiarr.audio.vocoder import MelVocoder, VocoderConfig, save_vocoder

    config = audio_config(config_path)
    spec = mel_spec(config)
    section = config["vocoder"]
    tcfg = budget(section["train"], max_minutes, max_steps)
    start_run(int(tcfg["seed"]), threads)
    train, valid, split = _clips(data, spec, log)
    vae, _ = load_vae(vae_path)
    front = MelFrontend(spec)
    net = VocoderConfig(channels=int(section["channels"]), depth=int(section["depth"]),
                        mel_corrections=int(section.get("mel_corrections", VocoderConfig.mel_corrections)))  # fmt: skip
    model = MelVocoder(net, spec)
    continued = _continue_from(model, init_from, VOCODER_KIND, "a vocoder checkpoint")
    frames, share = int(tcfg["frames"]), float(tcfg["vae_share"])
    objective = functools.partial(vocoder_loss, front=front, mel_weight=float(tcfg.get("mel_weight", 1.0)),
                                  onset_weight=float(tcfg.get("onset_weight", 0.0)))  # fmt: skip
    batches = VocoderBatches(train, front, vae, frames, share, data_seed(int(tcfg["seed"])))
    fixed = [VocoderBatches(valid, front, vae, frames, share, 12345 + i)(int(tcfg["batch_size"]))
             for i in range(int(tcfg["eval_batches"]))]  # fmt: skip
    n_params = sum(p.numel() for p in model.parameters())
    meta = {
        "command": invoked_command(),
        **continued,
        "config": config,
        "vae": str(vae_path),
        "train_clips": len(train),
        "valid_clips": len(valid),
        "parameters": n_params,
        "data_split": f"render-dataset train split for training, {split} for validation; test never read",
    }
    log(f"mel vocoder: {n_params / 1e6:.2f}M parameters; train {len(train)} clips, valid {len(valid)}")

    def validate(m: Any) -> dict[str, float]:
        device = module_device(m)
        values = [float(objective(m, {k: v.to(device) for k, v in b.items()})) for b in fixed]
        return {"valid_loss": float(np.mean(values))}

    out = Path(out_dir)
    result = fit(model, lambda: batches(int(tcfg["batch_size"])), objective,
                 validate, lambda m, facts: save_vocoder(m, out, {**meta, **facts}),
                 LoopSettings.from_table(tcfg, ema=True), out, warm_ema=not continued, log=log)  # fmt: skip
    keep_config(config_path, out)
    return {"steps": result.steps, "valid_loss": result.best["valid_loss"], "parameters": n_params}
