"""Finding and checking SoundFonts: the embedded default, FluidR3_GM, or any sf2/sf3 by path."""

from __future__ import annotations

import os
from pathlib import Path

from midiarr.errors import InputError, OptionError

FLUIDR3_PATHS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
    Path("/usr/local/share/soundfonts/FluidR3_GM.sf2"),
)
NAMED = ("default", "fluidr3", "timgm")


class SoundFontError(InputError):
    """A SoundFont is missing, unreadable or not a SoundFont."""


def embedded_soundfont() -> Path:
    """TimGM6mb.sf2, shipped inside the pretty_midi package: always there, no apt needed."""
    import pretty_midi

    path = Path(pretty_midi.__file__).with_name("TimGM6mb.sf2")
    if not path.exists():
        raise SoundFontError(f"the embedded SoundFont {path} is missing; reinstall pretty_midi")
    return path


def fluidr3_soundfont() -> Path | None:
    """FluidR3_GM.sf2 when Debian's fluid-soundfont-gm (or a similar package) is installed."""
    return next((p for p in FLUIDR3_PATHS if p.exists()), None)


def check_soundfont(path: str | os.PathLike[str]) -> Path:
    """Refuse a path that is missing or is not a RIFF sfbk (sf2/sf3) file, with a clear message."""
    p = Path(path)
    if not p.exists():
        raise SoundFontError(f"SoundFont {p}: no such file")
    if p.is_dir():
        raise SoundFontError(f"SoundFont {p}: is a folder, expected an .sf2 or .sf3 file")
    if not p.is_file():  # a FIFO would block the open below forever, a device would never end
        raise SoundFontError(f"SoundFont {p}: not a regular file (a pipe, device or socket)")
    try:
        with p.open("rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise SoundFontError(f"SoundFont {p}: cannot read ({exc.strerror or exc})") from None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise SoundFontError(f"SoundFont {p}: not a SoundFont (expected a RIFF sfbk file, .sf2 or .sf3)")
    return p


def resolve_soundfont(spec: str | os.PathLike[str] | None = None) -> Path:
    """The SoundFont to use: None or "default" picks FluidR3_GM when installed, else the embedded one;
    "fluidr3" and "timgm" name those; anything else is a path."""
    if spec is None or str(spec) == "default":
        return fluidr3_soundfont() or embedded_soundfont()
    if str(spec) == "timgm":
        return embedded_soundfont()
    if str(spec) == "fluidr3":
        found = fluidr3_soundfont()
        if found is None:
            raise OptionError("FluidR3_GM.sf2 is not installed; on Debian/Ubuntu: apt-get install fluid-soundfont-gm")
        return found
    return check_soundfont(spec)
