"""Commands on a song itself: convert between formats, list its stems, take one out, show its tokens."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from midiarr.cli.common import (
    MUSICXML_SUFFIXES,
    ROLE_HELP,
    add_notation_args,
    load_song_with_notes,
    notation_options,
    say,
)
from midiarr.options import int_in


def cmd_convert(args: argparse.Namespace) -> int:
    from midiarr.io import check_output_path, load, save

    check_output_path(args.input, args.output, args.force, args.mkdir)
    song = load(args.input)
    if args.output.suffix.lower() in MUSICXML_SUFFIXES:
        from midiarr.io.musicxml import write_musicxml

        write_musicxml(song, args.output, notation_options(args))
    else:
        save(song, args.output)
    say(args, f"wrote {args.output} ({len(song.tracks)} tracks, {song.note_count} notes, {song.num_bars} bars)")
    return 0


def cmd_stems(args: argparse.Namespace) -> int:
    from midiarr.attributes import describe, genre_from_text, measure
    from midiarr.io import load
    from midiarr.roles import REMOVABLE_STEMS, assign_roles, parse_role_overrides, tracks_with_role
    from midiarr.subtract import subtract

    song = load(args.file)
    roles = assign_roles(song, parse_role_overrides(args.role))
    num_bars = song.num_bars
    rows = []
    for i, t in enumerate(song.tracks):
        active = int(song.bar_activity(t.notes, num_bars).sum())
        rows.append(
            {
                "track": i,
                "name": t.name,
                "program": "drums" if t.is_drum else t.program,
                "role": roles[i],
                "notes": len(t.notes),
                "bars_active": active,
            }
        )
    if args.json:
        print(json.dumps({"file": str(args.file), "bars": num_bars, "tracks": rows}, indent=1))
        return 0
    headers = ["track", "name", "program", "role", "notes", "bars active"]
    table = [
        [
            str(r["track"]),
            r["name"][:28],
            str(r["program"]),
            r["role"],
            str(r["notes"]),
            f"{r['bars_active']}/{num_bars}",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(row[c]) for row in table)) if table else len(h) for c, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    if args.describe:
        genre = genre_from_text(song.metadata.get("title", ""), str(args.file))
        for stem in REMOVABLE_STEMS:
            if any(len(song.tracks[i].notes) for i in tracks_with_role(roles, stem)):
                attrs = measure(song, subtract(song, stem, roles).target_notes(), stem, genre)
                bins = ", ".join(f"{k} {v}" for k, v in attrs.bins.items())
                print(f"{stem}: {describe(attrs)}  [{bins}]")
    return 0


def cmd_subtract(args: argparse.Namespace) -> int:
    from midiarr.io import check_output_path, load, save
    from midiarr.roles import assign_roles, check_stem, parse_role_overrides
    from midiarr.subtract import subtract

    stem = check_stem(args.stem)
    check_output_path(args.file, args.output, args.force, args.mkdir)
    if args.stem_output:
        check_output_path(args.file, args.stem_output, args.force, args.mkdir)
    song = load(args.file)
    sub = subtract(song, stem, assign_roles(song, parse_role_overrides(args.role)))
    save(sub.partial, args.output)
    if args.stem_output:
        save(sub.target, args.stem_output)
    removed = ", ".join(f"{i} ({song.tracks[i].name or 'unnamed'})" for i in sub.track_indices)
    say(args, f"removed {stem}: track {removed}; wrote {args.output}")
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    from midiarr.io import load
    from midiarr.tokenize import SongTokenizer

    tok = SongTokenizer(args.config)
    song = load(args.file)
    bars = tok.encode_bars(song)
    if args.json:
        print(json.dumps({"vocab_size": tok.vocab_size, "bars": bars}))
        return 0
    shown = bars if args.bars is None else bars[: args.bars]
    for i, ids in enumerate(shown):
        print(f"bar {i + 1}: " + " ".join(tok.tokens(ids)))
    say(args, f"{sum(map(len, bars))} tokens in {len(bars)} bars (vocabulary {tok.vocab_size})")
    return 0


def cmd_chords(args: argparse.Namespace) -> int:
    from midiarr.chords import format_progression, song_chords, with_chord_track

    song, _ = with_chord_track(load_song_with_notes(args.file))
    if args.json:
        chords = song_chords(song)
        rows = [{"tick": c.tick, "root": c.root, "quality": c.quality, "bass": c.bass} for c in chords]
        print(json.dumps({"ticks_per_beat": song.ticks_per_beat, "stated": bool(song.chord_symbols), "chords": rows}))
    else:
        print(format_progression(song))
    return 0


def register(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The song commands."""
    p = add("convert", "Convert between MIDI (.mid) and MusicXML (.musicxml, .mxl, .xml) by file extension.")
    p.add_argument("input", type=Path, help="song to read")
    p.add_argument("-o", "--output", type=Path, required=True, help="file to write; its extension picks the format")
    p.add_argument("--force", action="store_true", help="allow the output to be the input file")
    p.add_argument("--mkdir", action="store_true", help="create the output's folder if it is missing")
    add_notation_args(p, chord_symbols=False)
    p.set_defaults(func=cmd_convert)

    p = add("stems", "List a song's tracks with their stem roles.")
    p.add_argument("file", type=Path)
    p.add_argument("--role", action="append", metavar="TRACK=ROLE", help=ROLE_HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--describe", action="store_true", help="also describe each removable stem as an instruction")
    p.set_defaults(func=cmd_stems)

    p = add("subtract", "Write the song with one stem removed; everything else is kept exactly.")
    p.add_argument("file", type=Path)
    p.add_argument("--stem", required=True, help="bass, drums, guitar, piano or strings")
    p.add_argument("-o", "--output", type=Path, required=True, help="the song without the stem")
    p.add_argument("--stem-output", type=Path, help="also write the removed stem alone here")
    p.add_argument("--role", action="append", metavar="TRACK=ROLE", help=ROLE_HELP)
    p.add_argument("--force", action="store_true", help="allow an output to be the input file")
    p.add_argument("--mkdir", action="store_true", help="create the output folders if they are missing")
    p.set_defaults(func=cmd_subtract)

    p = add("chords", "Print the chords midiarr hears in a song (or the ones it states), in --chords syntax.")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true", help="print the chords with their ticks as JSON")
    p.set_defaults(func=cmd_chords)

    p = add("tokenize", "Show a song's REMI tokens bar by bar.")
    p.add_argument("file", type=Path)
    p.add_argument("--config", type=Path, help="tokenizer TOML (default: the bundled configs/tokenizer.toml)")
    p.add_argument("--bars", type=int_in(1, 100_000), help="show only the first N bars")
    p.add_argument("--json", action="store_true", help="print token ids per bar as JSON")
    p.set_defaults(func=cmd_tokenize)
