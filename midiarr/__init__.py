"""midiarr: write the missing stem of a song (bass, drums, guitar, piano, strings).

The public API starts here::

    import midiarr
    song = midiarr.load("song.mid")        # MIDI or MusicXML
    print(midiarr.assign_roles(song))       # {track index: role}
    partial = midiarr.subtract(song, "bass").partial
    full = midiarr.Arranger().insert(partial, "bass", "busy syncopated bass, soft", seed=1)
    midiarr.save(full, "song_new_bass.musicxml")

    from midiarr.render import render
    audio = render(full)                     # {"mix": ..., "bass": ..., ...} float32 (samples, 2)
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from midiarr.errors import ExistingPartError, InputError, MidiarrError, OptionError, OutputError
from midiarr.roles import ROLES, assign_roles
from midiarr.song import ChordSymbol, KeySignature, Marker, Note, Song, Tempo, TimeSignature, Track
from midiarr.subtract import subtract  # eager: the submodule of the same name would shadow a lazy function

# The rest loads on first use, so a command that needs only a little (render, stems) starts fast.
_LAZY = {
    "chords": "midiarr.chords",
    "Arranger": "midiarr.arranger",
    "load": "midiarr.io",
    "save": "midiarr.io",
    **{
        name: "midiarr.convert"
        for name in (
            "from_any",
            "from_mido",
            "from_music21",
            "from_pretty_midi",
            "from_symusic",
            "to_mido",
            "to_music21",
            "to_pretty_midi",
            "to_symusic",
        )
    },
}

if TYPE_CHECKING:
    from midiarr import chords
    from midiarr.arranger import Arranger
    from midiarr.convert import (
        from_any,
        from_mido,
        from_music21,
        from_pretty_midi,
        from_symusic,
        to_mido,
        to_music21,
        to_pretty_midi,
        to_symusic,
    )
    from midiarr.io import load, save


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module 'midiarr' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name == "chords" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ROLES",
    "Arranger",
    "ChordSymbol",
    "ExistingPartError",
    "InputError",
    "KeySignature",
    "Marker",
    "MidiarrError",
    "Note",
    "OptionError",
    "OutputError",
    "Song",
    "Tempo",
    "TimeSignature",
    "Track",
    "__version__",
    "assign_roles",
    "chords",
    "from_any",
    "from_mido",
    "from_music21",
    "from_pretty_midi",
    "from_symusic",
    "load",
    "save",
    "subtract",
    "to_mido",
    "to_music21",
    "to_pretty_midi",
    "to_symusic",
]
