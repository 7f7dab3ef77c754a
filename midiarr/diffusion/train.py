"""Training the diffusion engine with `accelerate` (one CPU here, any number of GPUs elsewhere).

DDPM training with diffusers' noise schedule: the model sees written stems noised to a random
step (all written stems of a window with one shared noise when ``shared_noise``, as STEMPHONIC
does), given stems clean, and learns the clean roll with a binary cross-entropy per cell.
The loop is `midiarr.training.fit`: an exponential moving average of the weights is what gets
validated and saved, the best by validation loss is kept, and every evaluation goes to
``train_log.jsonl`` beside it. The noise schedule is saved with the weights.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from midiarr.checkpoint import init_facts
from midiarr.config import load_config
from midiarr.diffusion.data import GroupSampler, TaskMix, build_roll_corpus, load_roll_corpus
from midiarr.diffusion.model import DiTConfig, StemDiT, load_model, noise_schedule, save_model
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


def expand_tokens(flags: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, S, N) per-token flags as (B, S, 1, 1, T) per-step flags."""
    return flags.repeat_interleave(patch, dim=-1)[:, :, None, None, :]


def diffusion_loss(
    model: Any,
    batch: dict[str, torch.Tensor],
    alphas_cumprod: torch.Tensor,
    shared_noise: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean binary cross-entropy of the predicted clean roll over the cells to learn."""
    present = batch["present"]
    cols = torch.nonzero(present.any(dim=0)).flatten()  # slot columns no window uses cost nothing
    x0 = batch["x0"][:, cols]
    b, _s = x0.shape[:2]
    device = x0.device
    # a seeded validation generator lives on the CPU; training draws on the batch's own device
    # (on a GPU a CPU draw and copy per step would cost more than the step)
    draw_on = "cpu" if generator is not None else device
    t = torch.randint(0, len(alphas_cumprod), (b,), generator=generator, device=draw_on).to(device)
    shape = (b, 1, *x0.shape[2:]) if shared_noise else x0.shape
    noise = torch.randn(shape, generator=generator, device=draw_on).to(device).expand_as(x0)
    ab = alphas_cumprod.to(device)[t].view(b, 1, 1, 1, 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    patch = model.config.patch if hasattr(model, "config") else model.module.config.patch
    known = batch["known"][:, cols]
    inputs = torch.where(expand_tokens(known, patch), x0, xt)
    inputs = torch.where(present[:, cols][:, :, None, None, None], inputs, torch.zeros_like(inputs))
    logits = model(
        inputs,
        t,
        present[:, cols],
        known,
        batch["activity"][:, cols],
        batch["density"][:, cols],
        batch["bar_position"],
        slot_ids=cols,
    )
    mask = batch["loss_mask"][:, cols]
    return F.binary_cross_entropy_with_logits(logits[mask], (x0[mask] > 0).float())


VALID_BATCH = 16


class SamplerStream(torch.utils.data.IterableDataset):
    """Endless training batches for a DataLoader: each worker runs its own seeded GroupSampler.

    The sampler's numpy work, not the network, bounds a GPU run; workers draw batches in parallel.
    Worker ``i`` is seeded ``seed * 1000 + i + 1``, so a run is repeatable for a given worker count.
    """

    def __init__(self, songs: list[Any], net: DiTConfig, tasks: TaskMix, seed: int, batch_size: int) -> None:
        self.songs, self.net, self.tasks, self.seed, self.batch_size = songs, net, tasks, seed, batch_size

    def __iter__(self):  # noqa: ANN204 (an iterator of batch dicts)
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        sampler = GroupSampler(self.songs, self.net, self.tasks, seed=self.seed * 1000 + worker + 1)
        while True:
            yield sampler.batch(self.batch_size)


def train(
    data: str | Path,
    out_dir: str | Path,
    config_path: str | Path | None = None,
    max_minutes: float | None = None,
    max_steps: int | None = None,
    limit: int | None = None,
    threads: int | None = None,
    init_from: str | Path | None = None,
    log: Any = print,
    seed: int | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """Train on a prepare cache's train split, validate on its valid split, save the best EMA weights.

    ``init_from`` starts from an earlier checkpoint's weights (same network) with a fresh schedule;
    ``seed`` overrides the config's, so a continued run draws other windows and tasks than the run before.
    ``workers`` > 0 draws training windows in that many DataLoader processes (for a GPU, where drawing
    them in the training process would leave the device idle); 0 draws them in-process.
    """
    config = load_config("diffusion.toml", config_path)
    tcfg = budget(config["train"], max_minutes, max_steps, seed)
    # "bf16" on a GPU (train.mixed_precision); the CPU runs keep full precision. Checked before the
    # corpus loads, so a wrong config fails at once
    loop = LoopSettings.from_table(tcfg, ema=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = f"-{limit}" if limit else ""
    corpus = Path(data) / "diffusion"
    train_songs = load_roll_corpus(build_roll_corpus(data, "train", corpus / f"train{suffix}.pkl", limit=limit))
    valid_songs = load_roll_corpus(build_roll_corpus(data, "valid", corpus / f"valid{suffix}.pkl", limit=limit))
    validation_split = "valid" if valid_songs else "train"
    net = DiTConfig(**config["network"])
    tasks = TaskMix(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["tasks"].items()})
    shared = bool(config["schedule"]["shared_noise"])
    schedule = noise_schedule(config["schedule"])
    alphas = schedule.alphas_cumprod.float()
    start_run(int(tcfg["seed"]), threads)
    model = StemDiT(net)
    init_meta: dict[str, Any] = {}
    if init_from is not None:
        earlier, earlier_config = load_model(init_from)
        if asdict(earlier.config) != asdict(net):
            raise InputError(f"{init_from}: its network differs from the config's [network]")
        model.load_state_dict(earlier.state_dict())
        init_meta = {"init_from": init_facts(init_from, earlier_config)}
    batch_size = int(tcfg["batch_size"])
    if workers > 0:
        stream = SamplerStream(train_songs, net, tasks, data_seed(int(tcfg["seed"])), batch_size)
        loader = torch.utils.data.DataLoader(
            stream, batch_size=None, num_workers=workers, pin_memory=torch.cuda.is_available(), prefetch_factor=4
        )
        batches = iter(loader)
    else:
        sampler = GroupSampler(train_songs, net, tasks, seed=data_seed(int(tcfg["seed"])))
        batches = iter(lambda: sampler.batch(batch_size), None)
    val_sampler = GroupSampler(valid_songs or train_songs, net, tasks, seed=12345)
    # validation windows are fixed at 16 per batch whatever the training batch, so every run's
    # valid loss is measured on the same windows and runs compare
    val_batches = [val_sampler.batch(VALID_BATCH) for _ in range(int(tcfg["eval_batches"]))]
    n_params = sum(p.numel() for p in model.parameters())
    meta = {
        "command": invoked_command(),
        "config": {**config, "train": tcfg},
        "train_songs": len(train_songs),
        "valid_songs": len(valid_songs),
        "parameters": n_params,
        **init_meta,
        "data_split": f"prepare cache splits.json: train for training, {validation_split} for validation; "
        "test never read",
    }
    log(f"model: {n_params / 1e6:.2f}M parameters; train {len(train_songs)} songs, valid {len(valid_songs)}")

    def validate(ema: Any) -> dict[str, float]:
        gen = torch.Generator().manual_seed(0)
        device = module_device(ema)
        losses = [float(diffusion_loss(ema, to_device(b, device), alphas, shared, gen)) for b in val_batches]
        return {"valid_loss": sum(losses) / len(losses)}

    result = fit(
        model,
        lambda: next(batches),
        lambda m, batch: diffusion_loss(m, batch, alphas, shared),
        validate,
        lambda m, facts: save_model(m, out, {**meta, **facts}, scheduler=schedule),
        loop,
        out,
        warm_ema=init_from is None,
        progress=lambda step: {"windows_seen": step * batch_size},
        log=log,
    )
    if config_path is not None and process_index() == 0:  # the main process writes the folder
        shutil.copyfile(config_path, out / "diffusion.toml")
    return {"steps": result.steps, "valid_loss": result.best["valid_loss"], "parameters": n_params}
