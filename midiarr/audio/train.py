"""Training the audio models (`midiarr train-audio vae|ldm|gmsdi`) with `accelerate`.

Each run trains on the render-dataset's train split, validates on its valid split
(the test split is never read), keeps the best weights by validation loss and writes
them with config, command and a JSON-lines log.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from midiarr.audio.data import STEMS, ClipSet, load_clips
from midiarr.audio.features import MelFrontend, MelSpec
from midiarr.audio.ldm import noise_schedule
from midiarr.checkpoint import WEIGHTS_FILE, init_facts, load_state, read_pretrained
from midiarr.config import load_config
from midiarr.errors import InputError
from midiarr.training import (
    LoopSettings,
    budget,
    data_seed,
    fit,
    invoked_command,
    module_device,
    process_index,
    start_run,
    to_device,
)


def audio_config(path: str | Path | None) -> dict[str, Any]:
    return load_config("audio.toml", path)


def mel_spec(config: dict[str, Any]) -> MelSpec:
    return MelSpec(**config["mel"])


def _clips(data: str | Path, spec: MelSpec, log: Callable[[str], None]) -> tuple[ClipSet, ClipSet, str]:
    train = load_clips(data, "train", log=log)
    try:
        valid, split = load_clips(data, "valid", log=log), "valid"
    except Exception:
        valid, split = train, "train"
    if train.sr != spec.sr or train.audio.shape[-1] < spec.clip_samples:
        raise ValueError(
            f"{data}: clips are {train.sr} Hz, {train.audio.shape[-1]} samples; the config wants "
            f"{spec.sr} Hz, {spec.clip_samples} samples"
        )
    return train, valid, split


def keep_config(config_path: str | Path | None, out: Path) -> None:
    """The TOML a run was given, copied beside its weights (by the main process only)."""
    if config_path is not None and process_index() == 0:
        shutil.copyfile(config_path, out / "audio.toml")


# ---------------------------------------------------------------------- VAE
def vae_examples(clips: ClipSet, front: MelFrontend, count: int, rng: np.random.Generator) -> torch.Tensor:
    """Normalized log-mels of a random mix, a random stem or the mix without a random stem per clip."""
    index = rng.integers(0, len(clips), size=count)
    waves = torch.from_numpy(clips.waves(index))  # (B, rows, S)
    pick = rng.integers(0, 3, size=count)
    stem = torch.from_numpy(rng.integers(1, 1 + len(STEMS), size=count))
    rows = torch.arange(count)
    chosen = torch.where(
        torch.from_numpy(pick == 0)[:, None],
        waves[:, 0],
        torch.where(torch.from_numpy(pick == 1)[:, None], waves[rows, stem], waves[:, 0] - waves[rows, stem]),
    )
    return front.model_frames(front.log_mel(chosen[:, : front.spec.clip_samples]))


def train_vae(
    data: str | Path,
    out_dir: str | Path,
    config_path: str | Path | None = None,
    max_minutes: float | None = None,
    max_steps: int | None = None,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the mel VAE; its latent scale (1 / latent std on train clips) is saved with it."""
    from midiarr.audio.vae import MelVAE, VAEConfig, save_vae

    config = audio_config(config_path)
    spec = mel_spec(config)
    tcfg = budget(config["vae"]["train"], max_minutes, max_steps)
    loop = LoopSettings.from_table(tcfg, betas=(0.9, 0.99))
    start_run(int(tcfg["seed"]), threads)
    rng = np.random.default_rng(data_seed(int(tcfg["seed"])))  # the training batches' draws
    front = MelFrontend(spec)
    train, valid, split = _clips(data, spec, log)
    net = VAEConfig(width=int(config["vae"]["width"]), latent_channels=int(config["vae"]["latent_channels"]))
    kl_weight = float(config["vae"]["kl_weight"])
    model = MelVAE(net, spec)
    val_x = vae_examples(valid, front, 96, np.random.default_rng(12345))
    out = Path(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    meta = {
        "command": invoked_command(),
        "config": config,
        "train_clips": len(train),
        "valid_clips": len(valid),
        "parameters": n_params,
        "data_split": f"render-dataset train split for training, {split} for validation; test never read",
    }
    log(f"mel VAE: {n_params / 1e3:.0f}k parameters; train {len(train)} clips, valid {len(valid)}")

    def validate(m: Any) -> dict[str, float]:
        x = val_x.to(module_device(m))
        return {"valid_l1": float((m.decoder(m.moments(x)[0]).squeeze(1) - x).abs().mean())}

    def loss(m: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = m.module if hasattr(m, "module") else m  # the VAE's own loss, through a DDP wrapper too
        return net.loss(x, kl_weight)

    best: dict[str, Any] = {}  # the latent scale is measured on the best weights, so they are saved at the end
    result = fit(
        model,
        lambda: vae_examples(train, front, int(tcfg["batch_size"]), rng),
        loss,
        validate,
        lambda m, facts: best.update(state=copy.deepcopy(m.state_dict()), **facts),
        loop,
        out,
        metric="l1",
        log=log,
    )
    plain = MelVAE(net, spec)
    plain.load_state_dict(best["state"])
    plain.eval()
    with torch.no_grad():  # unit-std latents for the diffusion models
        lat = plain.moments(vae_examples(train, front, 256, np.random.default_rng(7)))[0]
        plain.scale.fill_(float(1.0 / lat.std().clamp(min=1e-4)))
    save_vae(
        plain,
        out,
        {
            **meta,
            "step": best["step"],
            "steps_run": result.steps,
            "valid_l1": best["valid_l1"],
            "latent_scale": float(plain.scale),
        },
    )
    keep_config(config_path, out)
    return {"steps": result.steps, "valid_loss": best["valid_l1"], "parameters": n_params}


# ---------------------------------------------------------------------- latents
def encode_waves(vae: Any, front: MelFrontend, waves: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Scaled VAE latents of (N, samples) waveforms, (N, C, H, W)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(waves), batch):
            chunk = waves[i : i + batch, : front.spec.clip_samples]
            out.append(vae.encode(front.model_frames(front.log_mel(chunk))))
    return torch.cat(out) if out else torch.zeros(0, *vae.latent_shape())


def clip_latents(
    data: str | Path, split: str, clips: ClipSet, vae: Any, vae_path: str | Path, log: Callable[[str], None]
) -> torch.Tensor:
    """Latents of every clip's mix and stems, (N, 1 + K, C, H, W) float16, cached beside the clips."""
    from midiarr.audio.pipeline import weights_digest

    digest = weights_digest(vae_path)
    cache = Path(data) / f"{split}-latents-{digest}.pt"
    if cache.exists():
        return torch.load(cache)
    front = MelFrontend(vae.spec)
    rows = []
    for start in range(0, len(clips), 256):
        index = np.arange(start, min(len(clips), start + 256))
        waves = torch.from_numpy(clips.waves(index))
        n, r, s = waves.shape
        rows.append(encode_waves(vae, front, waves.reshape(n * r, s)).reshape(n, r, *vae.latent_shape()).half())
        log(f"encoded {index[-1] + 1}/{len(clips)} {split} clips")
    latents = torch.cat(rows)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")  # processes of one `accelerate launch` may encode at once
    torch.save(latents, tmp)
    tmp.replace(cache)
    return latents


# ---------------------------------------------------------------------- LDM
class LDMBatches:
    """Training batches for the stem LDM: separation, partial and total generation mixed."""

    def __init__(self, clips: ClipSet, latents: torch.Tensor, vae: Any, tasks: dict[str, Any], seed: int) -> None:
        self.clips, self.latents, self.vae, self.tasks = clips, latents, vae, tasks
        self.front = MelFrontend(vae.spec)
        self.rng = np.random.default_rng(seed)

    def __call__(self, count: int) -> dict[str, Any]:
        from midiarr.audio.ldm import Conditions

        rng, tasks = self.rng, self.tasks
        idx = rng.integers(0, len(self.clips), size=count)
        lat = self.latents[idx].float()
        stems = lat[:, 1:]
        k = stems.shape[1]
        active = torch.from_numpy(self.clips.active[idx].copy())
        draw = rng.random(count)
        sep = draw < tasks["separation"]
        partial = (draw >= tasks["separation"]) & (draw < tasks["separation"] + tasks["partial"])
        given = torch.zeros_like(lat[:, 0])
        present = torch.zeros(count)
        in_given = torch.zeros(count, k)
        given[sep], present[sep], in_given[sep] = lat[sep, 0], 1.0, 1.0
        rows = [i for i in np.flatnonzero(partial) if active[i].any()]
        if rows:
            waves = torch.from_numpy(self.clips.waves(idx[rows]))
            order = np.argsort(idx[rows], kind="stable")  # waves() returns rows sorted by clip index
            sub = []
            for j, i in enumerate(np.asarray(rows)[order]):
                on = np.flatnonzero(active[i].numpy())
                drop = rng.choice(on, size=rng.integers(1, min(3, len(on)) + 1), replace=False)
                in_given[i] = 1.0
                in_given[i, drop] = 0.0
                sub.append(waves[j, 0] - waves[j, 1 + drop].sum(dim=0))
                present[i] = 1.0
            given[np.asarray(rows)[order]] = encode_waves(self.vae, self.front, torch.stack(sub))
        for i in np.flatnonzero(partial):
            if not active[i].any():  # nothing to take out: a separation example instead
                given[i], present[i], in_given[i] = lat[i, 0], 1.0, 1.0
        dropped = torch.from_numpy(rng.random(count) < tasks["drop_given"])
        given[dropped], present[dropped] = 0.0, 0.0
        reveal = torch.from_numpy(rng.random((count, k)) < tasks["reveal_activity"])
        cond = Conditions(given, present, in_given, (active & reveal).float(), (~active & reveal).float())
        noise = torch.randn_like(stems)
        shared = torch.from_numpy(rng.random(count) < tasks["shared_noise"])
        noise[shared] = noise[shared, :1].expand(-1, k, -1, -1, -1).clone()
        t = torch.from_numpy(rng.integers(0, self._timesteps, size=count))
        return {"target": stems, "cond": cond, "noise": noise, "t": t}

    _timesteps = 1000


def ldm_loss(model: Any, batch: dict[str, Any], alphas: torch.Tensor, prediction: str = "epsilon") -> torch.Tensor:
    """MSE of the model's output against the noise ("epsilon") or the clean latents ("sample")."""
    a = alphas.to(batch["t"].device)[batch["t"]].view(-1, 1, 1, 1, 1)
    noisy = a.sqrt() * batch["target"] + (1 - a).sqrt() * batch["noise"]
    goal = batch["noise"] if prediction == "epsilon" else batch["target"]
    return torch.nn.functional.mse_loss(model(noisy, batch["t"], batch["cond"]), goal)


@dataclass
class _LatentRun:
    """What both latent diffusion trainings set up the same way."""

    config: dict[str, Any]
    tcfg: dict[str, Any]
    vae: Any
    train: ClipSet
    valid: ClipSet
    split: str
    train_lat: torch.Tensor
    valid_lat: torch.Tensor
    schedule: Any  # the DDPM training schedule, saved with the weights
    init_state: dict[str, torch.Tensor] | None = None
    init_meta: dict[str, Any] = field(default_factory=dict)

    def network(self, stems: int) -> Any:
        from midiarr.audio.ldm import LDMConfig

        c, h, w = self.vae.latent_shape()
        ldm = self.config["ldm"]
        return LDMConfig(stems=stems, latent_channels=c, latent_height=h, latent_frames=w,
                         channels=tuple(ldm["channels"]), attention_last=bool(ldm["attention_last"]))  # fmt: skip

    def start(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` with the weights of the run it continues, if any, ready to train."""
        if self.init_state is not None:
            load_state(model, self.init_state, self.init_meta["init_from"]["path"]).train()
        return model


def _latent_run(data: str | Path, vae_path: str | Path, config_path: str | Path | None, section: str,
                max_minutes: float | None, max_steps: int | None, threads: int | None,
                log: Callable[[str], None], init_from: str | Path | None = None,
                kind: str = "") -> _LatentRun:  # fmt: skip
    """Everything a latent model's training needs; ``init_from`` continues an earlier checkpoint of ``kind``."""
    from midiarr.audio.vae import load_vae

    init_state, init_meta = None, {}
    if init_from is not None:
        init_state, earlier = read_pretrained(init_from, "an audio model checkpoint", kind=kind)
        if Path(str(earlier.get("vae", ""))).resolve() != Path(vae_path).resolve() and not _same_weights(
            earlier.get("vae"), vae_path
        ):
            raise InputError(f"{init_from}: trained in another VAE's latent space ({earlier.get('vae')})")
        init_meta = {"init_from": init_facts(init_from, earlier)}

    config = audio_config(config_path)
    tcfg = budget(config[section]["train"], max_minutes, max_steps)
    start_run(int(tcfg["seed"]), threads)
    vae, _ = load_vae(vae_path)
    train, valid, split = _clips(data, vae.spec, log)
    train_lat = clip_latents(data, "train", train, vae, vae_path, log)
    valid_lat = clip_latents(data, split, valid, vae, vae_path, log)
    schedule = noise_schedule(config)
    return _LatentRun(config, tcfg, vae, train, valid, split, train_lat, valid_lat, schedule, init_state, init_meta)


def _same_weights(a: str | Path | None, b: str | Path) -> bool:
    """Two VAE folders holding identical weights (a bundled copy of the VAE a model was trained with)."""
    if a is None:
        return False
    fa, fb = Path(a) / WEIGHTS_FILE, Path(b) / WEIGHTS_FILE
    return fa.is_file() and fb.is_file() and fa.read_bytes() == fb.read_bytes()


def _latent_fit(
    run: _LatentRun, model: torch.nn.Module, batches: Callable[[int], dict[str, Any]],
    fixed: list[dict[str, Any]], out_dir: str | Path, config_path: str | Path | None,
    save: Callable[[Any, Path, dict[str, Any]], Any], meta: dict[str, Any], log: Callable[[str], None],
    loss_fn: Callable[..., torch.Tensor] = ldm_loss,
) -> dict[str, Any]:  # fmt: skip
    """Both latent models through the training loop: EMA weights judged on fixed validation batches."""
    out = Path(out_dir)
    alphas = run.schedule.alphas_cumprod.float()
    n_params = sum(p.numel() for p in model.parameters())
    meta = {**meta, "parameters": n_params}
    log(f"model: {n_params / 1e6:.2f}M parameters")

    def validate(ema: Any) -> dict[str, float]:
        device = module_device(ema)
        return {"valid_loss": float(np.mean([float(loss_fn(ema, to_device(b, device), alphas)) for b in fixed]))}

    result = fit(
        model,
        lambda: batches(int(run.tcfg["batch_size"])),
        lambda m, batch: loss_fn(m, batch, alphas),
        validate,
        lambda m, facts: save(m, out, {**meta, **facts}),
        LoopSettings.from_table(run.tcfg, ema=True),
        out,
        warm_ema=run.init_state is None,  # a continued run's average starts from trained weights
        log=log,
    )
    keep_config(config_path, out)
    return {"steps": result.steps, "valid_loss": result.best["valid_loss"], "parameters": n_params}


# ---------------------------------------------------------------------- GMSDI
class MixtureBatches:
    """Mixture latents with their source labels: all GMSDI ever sees (no isolated stems)."""

    def __init__(self, clips: ClipSet, latents: torch.Tensor, drop_label: float, seed: int) -> None:
        self.mix = latents[:, 0]
        self.labels = torch.from_numpy(np.concatenate([clips.active, clips.other[:, None]], axis=1).astype(np.float32))
        self.drop = drop_label
        self.rng = np.random.default_rng(seed)

    def __call__(self, count: int) -> dict[str, Any]:
        idx = self.rng.integers(0, len(self.mix), size=count)
        labels = self.labels[idx].clone()
        labels[torch.from_numpy(self.rng.random(count) < self.drop)] = 0.0
        target = self.mix[idx].float()
        return {
            "target": target,
            "labels": labels,
            "noise": torch.randn_like(target),
            "t": torch.from_numpy(self.rng.integers(0, 1000, size=count)),
        }


def _ldm_parts(run: _LatentRun) -> tuple[torch.nn.Module, Any, Any, Callable[..., torch.Tensor], str]:
    """The stem LDM, its training and validation batches (separation, partial and total generation), loss."""
    from midiarr.audio.ldm import StemLDM

    tasks = dict(run.config["ldm"]["tasks"])
    prediction = str(run.config["ldm"].get("prediction", "epsilon"))
    if prediction not in ("epsilon", "sample"):
        raise ValueError(f"[ldm] prediction = {prediction!r}: choose epsilon or sample")
    return (
        StemLDM(run.network(len(STEMS))),
        LDMBatches(run.train, run.train_lat, run.vae, tasks, data_seed(int(run.tcfg["seed"]))),
        LDMBatches(run.valid, run.valid_lat, run.vae, tasks, 12345),
        functools.partial(ldm_loss, prediction=prediction),
        "render-dataset train split for training",
    )


def _gmsdi_parts(run: _LatentRun) -> tuple[torch.nn.Module, Any, Any, Callable[..., torch.Tensor], str]:
    """The GMSDI mixture model, its batches of mixes with source labels, loss."""
    from midiarr.audio.gmsdi import MixtureLDM, gmsdi_loss

    drop = float(run.tcfg["drop_label"])
    return (
        MixtureLDM(run.network(1)),
        MixtureBatches(run.train, run.train_lat, drop, data_seed(int(run.tcfg["seed"]))),
        MixtureBatches(run.valid, run.valid_lat, drop, 12345),
        gmsdi_loss,
        "render-dataset train split (mixes and source labels only) for training",
    )


LATENT_MODELS = {"ldm": ("stem-ldm", _ldm_parts), "gmsdi": ("gmsdi", _gmsdi_parts)}


def train_latent(
    model: str,
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
    """Train a latent diffusion model on the VAE's latents of rendered clips: ``model`` "ldm" (the
    multi-track stem LDM) or "gmsdi" (the mixture model, which sees mix latents and source labels only)."""
    from midiarr.audio.gmsdi import save_gmsdi
    from midiarr.audio.ldm import save_ldm

    kind, parts = LATENT_MODELS[model]
    run = _latent_run(data, vae_path, config_path, model, max_minutes, max_steps, threads, log, init_from, kind)
    network, batches, valid_batches, loss_fn, trained_on = parts(run)
    fixed = [valid_batches(int(run.tcfg["batch_size"])) for _ in range(int(run.tcfg["eval_batches"]))]
    save_model = save_ldm if model == "ldm" else save_gmsdi
    meta = {
        "command": invoked_command(),
        **run.init_meta,
        "config": run.config,
        "train_clips": len(run.train),
        "valid_clips": len(run.valid),
        "data_split": f"{trained_on}, {run.split} for validation; test never read",
    }

    def save(m: Any, out: Path, extra: dict[str, Any]) -> None:
        facts = {**extra, "vae": str(vae_path), "mel": run.vae.spec.as_dict()}
        save_model(m, out, facts, scheduler=run.schedule)

    return _latent_fit(run, run.start(network), batches, fixed, out_dir, config_path, save, meta, log, loss_fn)


train_ldm = functools.partial(train_latent, "ldm")
train_gmsdi = functools.partial(train_latent, "gmsdi")
