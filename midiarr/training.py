"""The one training loop every model of midiarr runs through (`fit`), and what it is made of.

A trainer (transformer, diffusion, the audio models, the assignment head) supplies the network, a
source of batches, its loss and how to judge and save the weights; `fit` owns the rest: the budget
in steps or minutes, accelerate (one CPU here, any number of GPUs elsewhere), the learning-rate
schedule, gradient clipping, an exponential moving average of the weights where asked, validation
every ``eval_every`` steps, keeping the best weights, and the JSON-lines log beside them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from midiarr.errors import OptionError

LOG_FILE = "train_log.jsonl"
MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclass
class LoopSettings:
    """How long and how a model trains: the loop's part of a config's ``[train]`` table."""

    max_steps: int
    max_minutes: float
    eval_every: int
    learning_rate: float
    min_learning_rate: float
    warmup_steps: int
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    # the weights judged and saved are an exponential moving average with this decay (None: the weights)
    ema_decay: float | None = None
    clip_norm: float = 1.0
    mixed_precision: str = "no"

    @classmethod
    def from_table(
        cls,
        table: Mapping[str, Any],
        *,
        ema: bool = False,
        **fixed: Any,
    ) -> LoopSettings:
        """Settings from a ``[train]`` table (its other keys are the trainer's; `budget` puts the command
        line's budget over it), ``fixed`` for what a trainer does not leave to its config."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in table.items() if k in names}
        if not ema:
            values.pop("ema_decay", None)
        values.update(fixed)
        try:
            settings = cls(**values)
        except TypeError as exc:
            raise OptionError(f"[train]: {exc}") from None
        return settings.check()

    def check(self) -> LoopSettings:
        if self.mixed_precision not in MIXED_PRECISION:
            raise OptionError(
                f"[train] mixed_precision {self.mixed_precision!r}: choose one of {', '.join(MIXED_PRECISION)}"
            )
        if int(self.max_steps) < 1 or float(self.max_minutes) <= 0 or int(self.eval_every) < 1:
            raise OptionError("[train]: max_steps and eval_every must be at least 1, max_minutes above 0")
        return self

    def learning_rate_at(self, step: int, minutes: float) -> float:
        """Linear warm-up, then cosine decay to ``min_learning_rate``.

        Progress is whichever budget is further spent, steps or minutes: a run that stops on time (the
        usual case on a CPU) still ends at the minimum rate, not mid-schedule.
        """
        peak, low, warmup = float(self.learning_rate), float(self.min_learning_rate), int(self.warmup_steps)
        if step < warmup:
            return peak * (step + 1) / warmup
        by_steps = (step - warmup) / max(1, int(self.max_steps) - warmup)
        by_time = minutes / max(float(self.max_minutes), 1e-9)
        progress = min(1.0, max(by_steps, by_time))
        return low + 0.5 * (peak - low) * (1 + math.cos(math.pi * progress))


@dataclass
class FitResult:
    """How a run ended: steps taken, the best validation figures and the step that had them."""

    steps: int
    best: dict[str, float]
    best_step: int
    parameters: int


LossResult = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def fit(
    model: torch.nn.Module,
    next_batch: Callable[[], Any],
    loss: Callable[[torch.nn.Module, Any], LossResult],
    validate: Callable[[torch.nn.Module], Mapping[str, float]],
    save: Callable[[torch.nn.Module, dict[str, Any]], object],
    settings: LoopSettings,
    out_dir: str | Path,
    *,
    metric: str = "loss",
    warm_ema: bool = True,
    progress: Callable[[int], Mapping[str, Any]] | None = None,
    log: Callable[[str], None] = print,
) -> FitResult:
    """Train ``model`` until the budget is spent and save the best weights.

    - ``next_batch()`` draws a training batch; `fit` moves it to the device.
    - ``loss(model, batch)`` is the loss to minimize, or (loss, the figure to log as ``train_METRIC``).
    - ``validate(model)`` gives the validation figures, ``valid_METRIC`` first; the lowest one wins.
    - ``save(model, facts)`` keeps the weights judged best, with ``facts`` (step and the figures).
    - ``warm_ema``: the average starts with a short decay (a fresh model's first weights are noise);
      a run continued from trained weights averages at the full decay from its first step.
    - ``progress(step)`` adds figures to each log line (tokens or windows seen).
    """
    from accelerate import Accelerator

    out = Path(out_dir)
    accelerator = Accelerator(mixed_precision=settings.mixed_precision)
    # under `accelerate launch` every process trains on its own batches (`data_seed`); the main one logs and saves
    main = accelerator.is_main_process
    log_path = out / LOG_FILE
    if main:
        out.mkdir(parents=True, exist_ok=True)
        log_path.write_text("", encoding="utf-8")
    model.train()
    ema = None
    if settings.ema_decay is not None:
        ema = copy.deepcopy(model).eval().to(accelerator.device)
        for p in ema.parameters():
            p.requires_grad_(False)
    optimizer = adamw(model, float(settings.learning_rate), float(settings.weight_decay), tuple(settings.betas))
    model, optimizer = accelerator.prepare(model, optimizer)
    plain = accelerator.unwrap_model(model)
    judged = ema if ema is not None else plain
    parameters = sum(p.numel() for p in judged.parameters())
    valid_key = f"valid_{metric}"

    def judge() -> dict[str, float]:
        judged.eval()
        with torch.no_grad():
            figures = {k: float(v) for k, v in validate(judged).items()}
        if ema is None:
            plain.train()
        if valid_key not in figures:
            raise ValueError(f"validation gave no {valid_key!r}")
        return figures

    best: dict[str, float] = {}
    best_step, step, running = 0, 0, []
    started = time.time()
    max_steps, max_seconds = int(settings.max_steps), 60 * float(settings.max_minutes)
    while step < max_steps and not _out_of_time(accelerator, step, time.time() - started > max_seconds):
        batch = to_device(next_batch(), accelerator.device)
        lr = settings.learning_rate_at(step, (time.time() - started) / 60)
        for group in optimizer.param_groups:
            group["lr"] = lr
        result = loss(model, batch)
        value, shown = result if isinstance(result, tuple) else (result, result)
        accelerator.backward(value)
        accelerator.clip_grad_norm_(model.parameters(), float(settings.clip_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            decay = float(settings.ema_decay)
            if warm_ema:
                decay = min(decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), plain.parameters(), strict=True):
                    pe.lerp_(pm.detach(), 1 - decay)
        running.append(shown.detach())  # summed at the log: a float() here would stall a GPU every step
        step += 1
        if step % int(settings.eval_every) == 0 or step == max_steps:
            figures = judge()
            entry = {
                "step": step,
                "minutes": round((time.time() - started) / 60, 2),
                **(progress(step) if progress is not None else {}),
                f"train_{metric}": round(float(torch.stack(running).float().mean()), 5),
                **{k: round(v, 5) for k, v in figures.items()},
                "lr": round(lr, 7),
            }
            running = []
            if main:
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")
                log(json.dumps(entry))
            if not best or figures[valid_key] < best[valid_key]:
                best, best_step = figures, step
                if main:
                    save(judged, {"step": step, **figures})
    if not best:  # the time ran out before the first validation: judge and save once
        best, best_step = judge(), step
        if main:
            save(judged, {"step": step, **best})
    accelerator.wait_for_everyone()
    return FitResult(steps=step, best=best, best_step=best_step, parameters=parameters)


def _out_of_time(accelerator: Any, step: int, mine: bool) -> bool:
    """Whether the time budget is spent: the main process decides for all, so no process stops alone
    (the others would wait for its gradients forever). With several processes it is asked every 10th step,
    which all of them reach together, not at every step (each broadcast waits for the devices)."""
    if accelerator.num_processes == 1:
        return mine
    if step % 10:
        return False
    from accelerate.utils import broadcast

    flag = torch.tensor([1.0 if mine else 0.0], device=accelerator.device)
    return bool(broadcast(flag, from_process=0).item())


def process_index() -> int:
    """This process's rank under `accelerate launch` (0 when training alone)."""
    import os

    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)


def data_seed(seed: int) -> int:
    """The seed of this process's training batches: ``seed`` alone, another stream per extra process."""
    return int(seed) + 1_000_003 * process_index()


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (a tensor, or dicts, lists, tuples and dataclasses of them) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(
            batch, **{f.name: to_device(getattr(batch, f.name), device) for f in dataclasses.fields(batch)}
        )
    return batch


def module_device(model: torch.nn.Module) -> torch.device:
    """The device ``model``'s weights are on."""
    return next(model.parameters()).device


def budget(
    table: Mapping[str, Any], max_minutes: float | None, max_steps: int | None, seed: int | None = None
) -> dict[str, Any]:
    """A ``[train]`` table with the budget and seed given on the command line over its own."""
    given = {"max_minutes": max_minutes, "max_steps": max_steps, "seed": seed}
    return {**table, **{k: v for k, v in given.items() if v is not None}}


def start_run(seed: int, threads: int | None) -> None:
    """Seed torch and cap its CPU threads (so two trainings can share the cores) before a network is built."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(int(seed))


def adamw(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms or embeddings' 1-d tables)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def invoked_command() -> str:
    """The `midiarr ...` command line this process runs (empty when called from Python)."""
    return " ".join(["midiarr", *sys.argv[1:]]) if sys.argv and "midiarr" in sys.argv[0] else ""
