"""Typed settings of the engines: one dataclass per engine, one path from options to an engine.

An engine's settings start from the tuned values its checkpoint carries (the ``sample`` table of
the config saved with the weights), then take the options a caller gives by name: the CLI's
flags, ``--set ENGINE.KEY=VALUE`` in eval, the server's job options and keyword arguments in
Python all go through `EngineSettings.from_checkpoint`. An option the engine does not have is a
one-line `OptionError`, and so is a value `check` refuses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from midiarr.errors import InputError, OptionError

CONFIG_FILE = "config.json"


@dataclasses.dataclass
class EngineSettings:
    """Settings of an engine that has none: the base every engine's settings extend."""

    engine: ClassVar[str] = "engine"

    def check(self) -> Self:
        """Self, after refusing values that cannot work (a one-line `OptionError`)."""
        return self

    @classmethod
    def option_names(cls) -> list[str]:
        """The names a caller may set."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def option_types(cls) -> dict[str, type]:
        """Each option with the plain type a text value converts to: bool, int, float or str."""
        hints = typing.get_type_hints(cls)
        out: dict[str, type] = {}
        for name in cls.option_names():
            text = str(hints.get(name, str)).replace("typing.", "")
            # the first plain type named wins: ``float | dict[str, float]`` reads a float
            out[name] = next((k for k in (bool, int, float) if k.__name__ in text), str)
        return out

    @classmethod
    def tuned(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The tuned values a checkpoint's config carries for these settings (none by default)."""
        return {}

    def adjusted(self, given: Mapping[str, Any]) -> Self:
        """Self after options named in ``given`` were set: where one option changes what another means."""
        return self

    @classmethod
    def from_options(cls, base: Mapping[str, Any] | None = None, **options: Any) -> Self:
        """Settings from ``base`` values with ``options`` over them (None leaves a value as it is)."""
        known = set(cls.option_names())
        for where, values in (("the checkpoint's config", base or {}), ("", options)):
            unknown = sorted(set(values) - known)
            if unknown:
                takes = ", ".join(sorted(known)) or "none"
                source = f" (from {where})" if where else ""
                raise OptionError(
                    f"engine {cls.engine!r} takes no option {unknown[0]!r}{source} (its options: {takes})"
                )
        given = {k: v for k, v in options.items() if v is not None}
        return cls(**{**dict(base or {}), **given}).adjusted(given).check()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str] | None, **overrides: Any) -> Self:
        """The checkpoint's tuned settings (the defaults of the fields where it has none) with
        ``overrides`` over them; ``path`` None: the fields' defaults."""
        if path is None:
            return cls.from_options({}, **overrides)
        tuned = cls.tuned(read_config(path))
        try:  # what the checkpoint itself holds must work: if not, the checkpoint is the bad input
            cls.from_options(tuned)
        except (OptionError, TypeError, ValueError) as exc:
            raise InputError(f"{Path(path) / CONFIG_FILE}: {exc}") from None
        return cls.from_options(tuned, **overrides)

    def replace(self, **overrides: Any) -> Self:
        """A copy with ``overrides`` over these settings, checked."""
        return self.from_options({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, **overrides)


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config.json of a checkpoint folder, or a one-line `InputError`."""
    file = Path(path) / CONFIG_FILE
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{Path(path)}: not a checkpoint folder (no {CONFIG_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{file}: cannot read ({str(exc).splitlines()[0][:200]})") from None
    training = config.get("config", {}) if isinstance(config, dict) else None
    # the training config is TOML tables: [model], [train], [sample] ...
    if not isinstance(training, dict) or not all(isinstance(t, dict) for t in training.values()):
        raise InputError(f"{file}: not a checkpoint's config (a JSON object with its training config's tables)")
    return config


def sample_table(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``sample`` table of the training config saved in a checkpoint's config.json."""
    return dict(config.get("config", {}).get("sample", {}))


def stem_values(value: Any, kind: type = float) -> list[float]:
    """The numbers of a setting given as one number or per stem (``{bass = 2.0, default = 4.0}``); a
    value not of ``kind`` (int: whole numbers only; float: any number) becomes NaN, which every range
    check refuses."""
    values = list(value.values()) if isinstance(value, dict) else [value]
    ok = (int,) if kind is int else (int, float)
    return [float(v) if isinstance(v, ok) and not isinstance(v, bool) else float("nan") for v in values]


def check_range(name: str, value: Any, low: float, high: float, kind: type = float, low_open: bool = False) -> None:
    """Refuse ``value`` (one number or per stem) unless every number is in ``low..high`` (above ``low``
    with ``low_open``): a one-line `OptionError` naming the option as its flag."""
    inside = all((low < v if low_open else low <= v) and v <= high for v in stem_values(value, kind))
    if not inside:
        what = "a whole number" if kind is int else "a number"
        shown = f"above {low:g} and up to {high:g}" if low_open else f"from {low:g} to {high:g}"
        raise OptionError(f"--{name.replace('_', '-')} {value}: choose {what} {shown}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Refuse ``value`` unless it is one of ``choices``."""
    if value not in choices:
        raise OptionError(f"--{name.replace('_', '-')} {value!r}: choose one of {', '.join(choices)}")
