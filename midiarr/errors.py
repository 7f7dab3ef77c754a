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


class ExistingPartError(InputError):
    """The song already has a part of a stem asked for; `insert` only adds parts unless told to replace.

    ``tracks`` lists ``(track number as in `midiarr stems`, track name, role)`` for each such part, so a
    caller (the CLI, the HTTP API) can name them and ask what to do.
    """

    def __init__(self, message: str, tracks: list[tuple[int, str, str]]) -> None:
        super().__init__(message)
        self.tracks = tracks
