"""Command-line values with their bounds, as argparse ``type=`` functions.

Every number a command takes is checked here, before any work or allocation, so an
out-of-range, infinite or NaN value is a one-line usage error (exit 2), never a huge
request or a crash deep inside an engine. Bounds that depend on the song (bars) are
checked where the song is known.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

MAX_SEED = 2**32 - 1  # numpy's and torch's seeds share this range


def _number(text: str, kind: type) -> float | int:
    text = text.strip()
    if len(text) > 40:  # no real value is this long; int() of thousands of digits is slow
        raise argparse.ArgumentTypeError(f"{text[:20]}...: not a number")
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in ``low..high``."""

    def parse(text: str) -> int:
        value = int(_number(text, int))
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    parse.__name__ = "whole number"
    return parse


def float_in(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in ``low..high`` (above ``low`` when ``low_open``)."""

    def parse(text: str) -> float:
        value = float(_number(text, float))
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value < low or value > high or (low_open and value == low):
            shown = f"above {low:g} and up to {high:g}" if low_open else f"{low:g}..{high:g}"
            raise argparse.ArgumentTypeError(f"{value:g} is outside {shown}")
        return value

    parse.__name__ = "number"
    return parse


seed = int_in(0, MAX_SEED)
seed.__name__ = "seed"


def output_folder(text: str) -> Path:
    """An argparse type: a folder a command writes into (made by the command): never an existing file,
    and a name the file system can hold."""
    from midiarr.errors import OutputError
    from midiarr.io.files import check_output_dir

    try:
        return check_output_dir(text)
    except OutputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
