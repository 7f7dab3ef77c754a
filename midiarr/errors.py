"""Exceptions midiarr raises on purpose; the CLI prints them as one line."""

from __future__ import annotations


class MidiarrError(Exception):
    """Base of every error that is the user's input or options, not a bug."""


class InputError(MidiarrError):
    """A file could not be read: missing, unreadable, broken or of an unknown format."""


class EmptySongError(InputError):
    """The song holds no notes at all."""


class LimitError(InputError):
    """The input is larger than midiarr accepts (size, notes, length)."""


class OptionError(MidiarrError):
    """An option has a value midiarr does not understand."""


class OutputError(MidiarrError):
    """An output could not be written (or would overwrite the input)."""
