"""Training the stem transformer with `accelerate` (one CPU here, any number of GPUs elsewhere).

Loss counts the target stem's tokens only (Subtractive Training: p(stem | rest, instruction)).
The best checkpoint by validation loss is kept; every evaluation is appended to
``train_log.jsonl`` beside it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from midiarr.config import load_config
from midiarr.errors import InputError
from midiarr.training import adamw, cosine_lr, invoked_command
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
    model.eval()
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
    model.train()
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
    from accelerate import Accelerator
    from transformers import GPT2LMHeadModel

    config = load_config("transformer.toml", config_path)
    tcfg = dict(config["train"])
    if max_minutes is not None:
        tcfg["max_minutes"] = max_minutes
    if max_steps is not None:
        tcfg["max_steps"] = max_steps
    if seed is not None:
        tcfg["seed"] = seed
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus_dir = Path(data) / "transformer"
    suffix = f"-{limit}" if limit else ""
    train_items = load_corpus(build_corpus(data, "train", corpus_dir / f"train{suffix}.pkl", limit=limit))
    valid_items = load_corpus(build_corpus(data, "valid", corpus_dir / f"valid{suffix}.pkl", limit=limit))
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(int(tcfg["seed"]))
    accelerator = Accelerator()
    model = GPT2LMHeadModel(gpt2_config(config["model"]))
    init_meta: dict[str, Any] = {}
    if init_from is not None:
        state, init_config = read_checkpoint(init_from)
        from transformers import GPT2Config

        shape = GPT2Config(**init_config.get("gpt2", {}))
        if (shape.n_layer, shape.n_embd, shape.n_head) != (
            model.config.n_layer,
            model.config.n_embd,
            model.config.n_head,
        ):
            raise InputError(f"{init_from}: its network shape differs from the config's [model]")
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(k != "lm_head.weight" for k in missing):
            raise InputError(f"{init_from}: weights do not match the network ({unexpected or missing})")
        model.tie_weights()
        init_meta = {
            "init_from": {
                "path": str(init_from),
                "step": init_config.get("step"),
                "valid_loss": init_config.get("valid_loss"),
                "command": init_config.get("command"),
            }
        }
    optimizer = adamw(model, float(tcfg["learning_rate"]), float(tcfg["weight_decay"]), (0.9, 0.95))
    model, optimizer = accelerator.prepare(model, optimizer)
    aug = Augmentation(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["augmentation"].items()})
    sampler = WindowSampler(train_items, int(tcfg["seq_len"]), aug, seed=int(tcfg["seed"]))
    # a tiny cache may have no valid songs: then validation reads training windows, and the log says so
    validation_split = "valid" if any(any(i.target) for i in valid_items) else "train"
    windows = fixed_windows(valid_items if validation_split == "valid" else train_items, int(tcfg["seq_len"]))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(windows), size=min(len(windows), int(tcfg["eval_windows"])), replace=False)
    val_batches = _batches([windows[i] for i in sorted(pick)], int(tcfg["batch_size"]))
    n_params = sum(p.numel() for p in model.parameters())
    log_path = out / "train_log.jsonl"
    log_path.write_text("", encoding="utf-8")
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
    best, started, step, seen = float("inf"), time.time(), 0, 0
    running: list[float] = []
    model.train()
    while step < int(tcfg["max_steps"]) and (time.time() - started) < 60 * float(tcfg["max_minutes"]):
        ids, labels = sampler.batch(int(tcfg["batch_size"]))
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, (time.time() - started) / 60, tcfg)
        ids_t = torch.from_numpy(ids).to(accelerator.device)
        labels_t = torch.from_numpy(labels).to(accelerator.device)
        loss = model(input_ids=ids_t, labels=labels_t).loss
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        running.append(float(loss.detach()))
        seen += int(ids.size)
        step += 1
        if step % int(tcfg["eval_every"]) == 0 or step == int(tcfg["max_steps"]):
            val = validation_loss(model, val_batches, accelerator.device)
            entry = {
                "step": step,
                "minutes": round((time.time() - started) / 60, 2),
                "tokens_seen": seen,
                "train_loss": round(float(np.mean(running)), 4),
                "valid_loss": round(val, 4),
                "valid_perplexity": round(perplexity(val), 3),
                "lr": round(cosine_lr(step, (time.time() - started) / 60, tcfg), 6),
            }
            running = []
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            log(json.dumps(entry))
            if val < best and accelerator.is_main_process:
                best = val
                unwrapped = accelerator.unwrap_model(model)
                save_checkpoint(
                    unwrapped, out, {**meta, "step": step, "valid_loss": val, "valid_perplexity": perplexity(val)}
                )
    if best == float("inf"):  # too short to reach an evaluation: evaluate and save once
        val = validation_loss(model, val_batches, accelerator.device)
        best = val
        save_checkpoint(accelerator.unwrap_model(model), out, {**meta, "step": step, "valid_loss": val})
    if config_path is not None:
        shutil.copyfile(config_path, out / "transformer.toml")
    return {"steps": step, "valid_loss": best, "valid_perplexity": perplexity(best), "parameters": n_params}
