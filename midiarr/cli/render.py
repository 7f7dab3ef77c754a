"""The render stage: a song to audio through a SoundFont."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from midiarr.cli.common import (
    ROLE_HELP,
    SOUNDFONT_HELP,
    load_song_with_notes,
    sample_rate,
    say,
)
from midiarr.options import float_in, int_in, output_folder


def cmd_render(args: argparse.Namespace) -> int:
    from midiarr.render import render_to_dir
    from midiarr.roles import assign_roles, parse_role_overrides

    song = load_song_with_notes(args.file)
    roles = assign_roles(song, parse_role_overrides(args.role))
    written = render_to_dir(
        song,
        args.output,
        soundfont=args.soundfont,
        sr=args.sr,
        stems=args.stems,
        fmt=args.format,
        loudness_dbfs=args.loudness,
        mono=args.mono,
        roles=roles,
        workers=args.workers,
    )
    say(args, f"wrote {', '.join(str(p) for p in written.values())}")
    return 0


def register(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The render commands."""
    p = add("render", "Render a song to audio through a SoundFont: mix.wav, and with --stems one file per stem role.")
    p.add_argument("file", type=Path)
    p.add_argument("-o", "--output", type=output_folder, required=True, help="folder to write the audio files into")
    p.add_argument("--stems", action="store_true", help="also write one file per stem (bass.wav, drums.wav, ...)")
    p.add_argument("--soundfont", default=None, help=SOUNDFONT_HELP)
    p.add_argument("--sr", type=sample_rate, default=44100, help="sample rate in Hz (default 44100)")
    p.add_argument("--format", choices=["wav", "flac"], default="wav")
    p.add_argument(
        "--loudness",
        type=float_in(-80, 0),
        metavar="DBFS",
        help="bring the mix to this RMS level (e.g. -20); one gain for all files keeps stems summing to it",
    )
    p.add_argument("--mono", action="store_true", help="write mono files")
    p.add_argument("--role", action="append", metavar="TRACK=ROLE", help=ROLE_HELP)
    p.add_argument(
        "--workers",
        type=int_in(1, 256),
        default=None,
        help="processes that render stems side by side (default: the cores present); the output is the same",
    )
    p.set_defaults(func=cmd_render)
