"""Where the player models live on disk: one JSON file per model, in a folder of the bundled weights."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from midiarr.errors import InputError
from midiarr.io.files import atomic_write_text


def bundled_folder(name: str) -> Path:
    """``midiarr/weights/NAME``, the shipped model's folder."""
    return Path(str(resources.files("midiarr.weights").joinpath(name)))


def read_table(folder: str | os.PathLike[str] | None, name: str) -> tuple[Path, dict[str, Any]]:
    """The folder and the parsed ``NAME.json`` of a model (the bundled one when ``folder`` is None)."""
    path = Path(folder) if folder is not None else bundled_folder(name)
    try:
        return path, json.loads((path / f"{name}.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{name} model {path}: {exc}") from None


def write_table(folder: str | os.PathLike[str], name: str, payload: dict[str, Any]) -> Path:
    """``folder/NAME.json``, written atomically."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out / f"{name}.json", json.dumps(payload, indent=1) + "\n")
