"""Engines that write a missing stem, all behind one interface (`Engine.insert`).

Importing this package registers every built-in engine; `get_engine(name)` finds one.
"""

from midiarr.engines import borrow, diffusion, rules, transformer  # noqa: F401  (registration happens on import)
from midiarr.engines.base import (
    Controls,
    Engine,
    InsertResult,
    available_engines,
    default_activity,
    existing_parts,
    get_engine,
    parse_bar_ranges,
    refuse_existing,
    register_engine,
)

__all__ = [
    "Controls",
    "Engine",
    "InsertResult",
    "available_engines",
    "default_activity",
    "existing_parts",
    "get_engine",
    "parse_bar_ranges",
    "refuse_existing",
    "register_engine",
]
