"""Saving and loading the audio models: safetensors weights beside a config.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from midiarr.errors import InputError

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_checkpoint(model: torch.nn.Module, out_dir: str | Path, kind: str, meta: dict[str, Any]) -> Path:
    """Write weights and config atomically (a reader never sees half a checkpoint)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(out / WEIGHTS_FILE)
    tmp_cfg = out / (CONFIG_FILE + ".tmp")
    tmp_cfg.write_text(json.dumps({"kind": kind, **meta}, indent=1), encoding="utf-8")
    tmp_cfg.replace(out / CONFIG_FILE)
    return out


def read_checkpoint(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and config of a checkpoint folder of this kind, or a one-line `InputError`."""
    from safetensors.torch import load_file

    folder = Path(path)
    weights, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if not weights.is_file() or not config_path.is_file():
        raise InputError(f"{folder}: not an audio model checkpoint (needs {WEIGHTS_FILE} and {CONFIG_FILE})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        state = load_file(str(weights))
    except Exception as exc:
        raise InputError(f"{folder}: cannot read the checkpoint ({exc})") from None
    if config.get("kind") != kind:
        found = f"a {config['kind']!r} checkpoint" if config.get("kind") else "not an audio model checkpoint"
        raise InputError(f"{folder}: {found}, expected {kind!r}")
    return state, config


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], folder: str | Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{folder}: weights do not match the network ({str(exc).splitlines()[0]})") from None
    model.eval()
