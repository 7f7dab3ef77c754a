"""Saving and loading every model midiarr trains: safetensors weights beside a JSON config.

A checkpoint is a folder. ``model.safetensors`` holds the weights and ``config.json`` the network's
shape, the training config and the facts of the run (command, data split, step, validation loss), so
a folder is all it takes to rebuild the model (`load_pretrained`). A diffusion model's noise schedule
is saved beside them as diffusers' ``scheduler_config.json`` and read back with ``from_config``.
Other files of the same folder (the diffusion engine's assignment head) use the same calls with
their own names. Every write is atomic: a reader never sees half a checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from midiarr.errors import InputError
from midiarr.io.files import atomic_write_text

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
SCHEDULER_FILE = "scheduler_config.json"  # the name diffusers' save_config writes

if TYPE_CHECKING:  # torch is imported where a model is built: reading a checkpoint as NumPy arrays needs none
    import numpy as np
    import torch

ModelT = TypeVar("ModelT", bound="torch.nn.Module")


def save_pretrained(
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    folder: str | os.PathLike[str],
    config: Mapping[str, Any],
    *,
    scheduler: Any = None,
    skip: tuple[str, ...] = (),
    weights_file: str = WEIGHTS_FILE,
    config_file: str = CONFIG_FILE,
) -> Path:
    """Write ``model``'s weights (less the tensors named in ``skip``, e.g. tied ones) and ``config``
    into ``folder``; ``scheduler`` (a diffusers scheduler) goes beside them through its ``save_config``."""
    import torch
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = model.state_dict() if isinstance(model, torch.nn.Module) else model
    state = {k: v.detach().cpu().contiguous() for k, v in tensors.items() if k not in skip}
    tmp = out / (weights_file + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(out / weights_file)
    atomic_write_text(out / config_file, json.dumps(dict(config), indent=1))
    if scheduler is not None:
        with tempfile.TemporaryDirectory(dir=out) as staging:
            scheduler.save_config(staging)
            (Path(staging) / SCHEDULER_FILE).replace(out / SCHEDULER_FILE)
    return out


def read_pretrained(
    folder: str | os.PathLike[str],
    what: str,
    *,
    kind: str | None = None,
    weights_file: str = WEIGHTS_FILE,
    config_file: str = CONFIG_FILE,
    arrays: str = "torch",
) -> tuple[dict[str, torch.Tensor] | dict[str, np.ndarray], dict[str, Any]]:
    """The weights and config of the checkpoint in ``folder``, or a one-line `InputError` that names
    ``what`` the folder should hold (``"a transformer checkpoint"``); ``kind``: the config's ``kind``
    must be this (the audio models, which share a layout, say which one they are). ``arrays``: "torch"
    tensors, or "numpy" arrays (no torch import)."""
    if arrays == "numpy":
        from safetensors.numpy import load_file
    else:
        from safetensors.torch import load_file

    path = Path(folder)
    weights, config_path = path / weights_file, path / config_file
    if not weights.is_file() or not config_path.is_file():
        raise InputError(f"{path}: not {what} (needs {weights_file} and {config_file})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own errors for a damaged file
        raise InputError(f"{path}: cannot read the checkpoint ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: {config_file} is not a JSON object")
    if kind is not None and config.get("kind") != kind:
        found = f"a {config['kind']!r} checkpoint" if config.get("kind") else f"not {what}"
        raise InputError(f"{path}: {found}, expected {kind!r}")
    return state, config


def load_state(model: ModelT, state: Mapping[str, torch.Tensor], folder: str | os.PathLike[str]) -> ModelT:
    """``model`` with ``state`` loaded, in eval mode, or a one-line `InputError` when they do not match."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{folder}: weights do not match the network ({str(exc).splitlines()[0]})") from None
    return model.eval()


def load_pretrained(
    folder: str | os.PathLike[str],
    what: str,
    build: Callable[[dict[str, Any]], ModelT],
    **read: Any,
) -> tuple[ModelT, dict[str, Any]]:
    """The network ``build`` makes from the checkpoint's config, with its weights, in eval mode, and
    the config (``read``: `read_pretrained`'s options). ``build`` may raise `InputError` for a config
    this code cannot use."""
    state, config = read_pretrained(folder, what, **read)
    try:
        model = build(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{Path(folder)}: its config does not describe {what} ({exc})") from None
    return load_state(model, state, folder), config


def load_scheduler(folder: str | os.PathLike[str], scheduler_type: Any) -> Any:
    """The noise schedule saved with a checkpoint, as ``scheduler_type`` (a diffusers class), through
    ``from_config``; None for a checkpoint saved without one."""
    file = Path(folder) / SCHEDULER_FILE
    if not file.is_file():
        return None
    try:
        return scheduler_type.from_config(scheduler_type.load_config(str(Path(folder))))
    except (OSError, ValueError) as exc:  # JSON errors are ValueErrors
        raise InputError(f"{file}: cannot read the noise schedule ({str(exc).splitlines()[0][:200]})") from None


def init_facts(path: str | os.PathLike[str], config: Mapping[str, Any]) -> dict[str, Any]:
    """What a run continued from an earlier checkpoint records of it (saved under ``init_from``)."""
    return {"path": str(path), **{k: config.get(k) for k in ("step", "valid_loss", "command")}}
