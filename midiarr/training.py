"""Pieces the training commands share: the learning-rate schedule, the optimizer, the command line."""

from __future__ import annotations

import math
import sys
from typing import Any

import torch


def cosine_lr(step: int, minutes: float, cfg: dict[str, Any]) -> float:
    """Linear warm-up, then cosine decay to ``min_learning_rate``.

    Progress is whichever budget is further spent, ``max_steps`` or ``max_minutes``: a run that
    stops on time (the usual case on a CPU) still ends at the minimum rate, not mid-schedule.
    """
    peak, low = float(cfg["learning_rate"]), float(cfg["min_learning_rate"])
    warmup = int(cfg["warmup_steps"])
    if step < warmup:
        return peak * (step + 1) / warmup
    by_steps = (step - warmup) / max(1, int(cfg["max_steps"]) - warmup)
    by_time = minutes / max(float(cfg["max_minutes"]), 1e-9)
    progress = min(1.0, max(by_steps, by_time))
    return low + 0.5 * (peak - low) * (1 + math.cos(math.pi * progress))


def adamw(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms or embeddings' 1-d tables)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def invoked_command() -> str:
    """The `midiarr ...` command line this process runs (empty when called from Python)."""
    return " ".join(["midiarr", *sys.argv[1:]]) if sys.argv and "midiarr" in sys.argv[0] else ""
