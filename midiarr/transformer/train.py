"""Training the stem transformer with `accelerate` (one CPU here, any number of GPUs elsewhere).

Loss counts the target stem's tokens only (Subtractive Training: p(stem | rest, instruction)).
The loop is `midiarr.training.fit`: the best checkpoint by validation loss is kept, and every
evaluation is appended to ``train_log.jsonl`` beside it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from midiarr.checkpoint import init_facts
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
)
from midiarr.transformer.data import Augmentation, WindowSampler, build_corpus, fixed_windows, load_corpus
from midiarr.transformer.model import gpt2_config, perplexity, read_checkpoint, save_checkpoint


def _batches(windows: list[tuple[np.ndarray, np.ndarray]], size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for i in range(0, len(windows), size):
        group = windows[i : i + size]
        width = max(len(w[0]) for w in group)
        ids = torch.zeros((len(group), width), dtype=torch.long)
        labels = torch.full((len(group), width), -100, dtype=torch.long)
        for r, (tok, mask) in enumerate(group):
            ids[r, : len(tok)] = torch.from_numpy(tok)
            labels[r, : len(tok)] = torch.from_numpy(np.where(mask, tok, -100))
        out.append((ids, labels))
    return out


@torch.no_grad()
def validation_loss(model: Any, batches: list[tuple[torch.Tensor, torch.Tensor]], device: Any) -> float:
    """Mean loss per target token over fixed validation windows."""
    total, count = 0.0, 0
    for ids, labels in batches:
        ids, labels = ids.to(device), labels.to(device)
        logits = model(input_ids=ids).logits[:, :-1]
        target = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += float(loss)
        count += int((target != -100).sum())
    return total / max(count, 1)


def train(
    data: str | Path,
    out_dir: str | Path,
    config_path: str | Path | None = None,
    max_minutes: float | None = None,
    max_steps: int | None = None,
    limit: int | None = None,
    init_from: str | Path | None = None,
    threads: int | None = None,
    log: Any = print,
    seed: int | None = None,
) -> dict[str, Any]:
    """Train on a prepare cache's train split, validate on its valid split, save the best to ``out_dir``.

    ``init_from`` starts from an earlier checkpoint's weights (same network shape) with a fresh
    schedule; ``threads`` caps torch's CPU threads (so two trainings can share the cores); ``seed``
    overrides the config's (a continued run with a new seed sees other windows than the run before).
    """
    from transformers import GPT2LMHeadModel

    config = load_config("transformer.toml", config_path)
    tcfg = budget(config["train"], max_minutes, max_steps, seed)
    loop = LoopSettings.from_table(tcfg, betas=(0.9, 0.95))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus_dir = Path(data) / "transformer"
    suffix = f"-{limit}" if limit else ""
    train_items = load_corpus(build_corpus(data, "train", corpus_dir / f"train{suffix}.pkl", limit=limit))
    valid_items = load_corpus(build_corpus(data, "valid", corpus_dir / f"valid{suffix}.pkl", limit=limit))
    start_run(int(tcfg["seed"]), threads)
    model = GPT2LMHeadModel(gpt2_config(config["model"]))
    init_meta: dict[str, Any] = {}
    if init_from is not None:
        init_meta = {"init_from": _load_earlier(model, init_from)}
    aug = Augmentation(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["augmentation"].items()})
    sampler = WindowSampler(train_items, int(tcfg["seq_len"]), aug, seed=data_seed(int(tcfg["seed"])))
    # a tiny cache may have no valid songs: then validation reads training windows, and the log says so
    validation_split = "valid" if any(any(i.target) for i in valid_items) else "train"
    windows = fixed_windows(valid_items if validation_split == "valid" else train_items, int(tcfg["seq_len"]))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(windows), size=min(len(windows), int(tcfg["eval_windows"])), replace=False)
    val_batches = _batches([windows[i] for i in sorted(pick)], int(tcfg["batch_size"]))
    n_params = sum(p.numel() for p in model.parameters())
    meta = {
        "command": invoked_command(),
        "config": config,
        "train_items": len(train_items),
        "valid_items": len(valid_items),
        "parameters": n_params,
        **init_meta,
        "data_split": (
            f"prepare cache splits.json: train for training, {validation_split} for validation; test never read"
        ),
    }
    log(f"model: {n_params / 1e6:.2f}M parameters; train {len(train_items)} stems, valid {len(valid_items)}")
    seen = 0

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal seen
        ids, labels = sampler.batch(int(tcfg["batch_size"]))
        seen += int(ids.size)
        return torch.from_numpy(ids), torch.from_numpy(labels)

    def validate(m: Any) -> dict[str, float]:
        val = validation_loss(m, val_batches, module_device(m))
        return {"valid_loss": val, "valid_perplexity": perplexity(val)}

    result = fit(
        model,
        next_batch,
        lambda m, batch: m(input_ids=batch[0], labels=batch[1]).loss,
        validate,
        lambda m, facts: save_checkpoint(m, out, {**meta, **facts}),
        loop,
        out,
        progress=lambda step: {"tokens_seen": seen},
        log=log,
    )
    if config_path is not None and process_index() == 0:  # the main process writes the folder
        shutil.copyfile(config_path, out / "transformer.toml")
    best = result.best["valid_loss"]
    return {"steps": result.steps, "valid_loss": best, "valid_perplexity": perplexity(best), "parameters": n_params}


def _load_earlier(model: Any, path: str | Path) -> dict[str, Any]:
    """Load an earlier checkpoint's weights into ``model`` (same shape); what the new run records of it."""
    from transformers import GPT2Config

    state, config = read_checkpoint(path)
    shape = GPT2Config(**config.get("gpt2", {}))
    if (shape.n_layer, shape.n_embd, shape.n_head) != (model.config.n_layer, model.config.n_embd, model.config.n_head):
        raise InputError(f"{path}: its network shape differs from the config's [model]")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(k != "lm_head.weight" for k in missing):
        raise InputError(f"{path}: weights do not match the network ({unexpected or missing})")
    model.tie_weights()
    return init_facts(path, config)
