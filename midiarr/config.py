"""Loading the TOML configs in ``configs/`` (installed as ``midiarr.configs``)."""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from midiarr.errors import OptionError


@lru_cache(maxsize=32)
def _load_bundled(name: str) -> dict[str, Any]:
    text = resources.files("midiarr.configs").joinpath(name).read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_config(name: str, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """A config by bundled file name (``"tokenizer.toml"``) or from an explicit path."""
    if path is None:
        return _load_bundled(name)
    from midiarr.errors import InputError
    from midiarr.io.files import read_input_bytes

    p = Path(path)
    try:
        return tomllib.loads(read_input_bytes(p, MAX_CONFIG_BYTES).decode("utf-8"))
    except InputError as exc:
        raise OptionError(f"config {exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OptionError(f"config {p}: cannot read ({_first_line(exc)})") from None


MAX_CONFIG_BYTES = 1 << 20  # a config is a page of TOML


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def per_stem(value: float | dict[str, float], stem: str, fallback: float = 0.0) -> float:
    """A sampling setting given as one number or per stem, e.g. ``{bass = 2.0, default = 4.0}``
    (``"default"`` for the stems not named, else ``fallback``)."""
    if isinstance(value, dict):
        return float(value.get(stem, value.get("default", fallback)))
    return float(value)
