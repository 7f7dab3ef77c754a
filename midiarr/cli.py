"""The ``midiarr`` command line.

Every subcommand is a small function taking parsed arguments. Errors the user
can fix come out as one line on stderr with a non-zero exit; set
``MIDIARR_DEBUG=1`` to see a traceback for anything unexpected.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from midiarr import __version__
from midiarr.errors import EmptySongError, MidiarrError, OptionError
from midiarr.song import Song

EXIT_USAGE = 2
EXIT_INPUT = 1
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage text stays behind --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def _say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text)


# ------------------------------------------------------------------ commands
def _load_song_with_notes(path: Path) -> Song:
    """Load a song for a command that needs notes to work on."""
    from midiarr.io import load

    song = load(path)
    if song.note_count == 0:
        raise EmptySongError(f"{path}: the song has no notes")
    return song


def cmd_convert(args: argparse.Namespace) -> int:
    from midiarr.io import check_output_path, load, save

    check_output_path(args.input, args.output, args.force)
    song = load(args.input)
    save(song, args.output)
    _say(args, f"wrote {args.output} ({len(song.tracks)} tracks, {song.note_count} notes, {song.num_bars} bars)")
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
    check_output_path(args.file, args.output, args.force)
    if args.stem_output:
        check_output_path(args.file, args.stem_output, args.force)
    song = load(args.file)
    sub = subtract(song, stem, assign_roles(song, parse_role_overrides(args.role)))
    save(sub.partial, args.output)
    if args.stem_output:
        save(sub.target, args.stem_output)
    removed = ", ".join(f"{i} ({song.tracks[i].name or 'unnamed'})" for i in sub.track_indices)
    _say(args, f"removed {stem}: track {removed}; wrote {args.output}")
    return 0


def cmd_insert(args: argparse.Namespace) -> int:
    from midiarr.engines import Controls, get_engine, parse_bar_ranges
    from midiarr.io import check_output_path, save
    from midiarr.roles import assign_roles, check_stem, parse_role_overrides

    stem = check_stem(args.stem)
    check_output_path(args.file, args.output, args.force)
    engine = get_engine(args.engine, **({"donors": args.donor} if args.engine == "borrow" else {}))
    song = _load_song_with_notes(args.file)
    controls = Controls.build(
        args.instruction,
        density=args.density,
        dynamics=args.dynamics,
        rhythm=args.rhythm,
        register=args.register,
        polyphony=args.polyphony,
    )
    active = parse_bar_ranges(args.active) if args.active else None
    roles = assign_roles(song, parse_role_overrides(args.role))
    result = engine.insert(song, stem, controls, active=active, seed=args.seed, roles=roles)
    notation = {".musicxml", ".mxl", ".xml"}
    if args.file.suffix.lower() in notation and args.output.suffix.lower() in notation and not result.replaced_tracks:
        # notation in, notation out: keep the original score as it is and add the new part to it
        from midiarr.io.musicxml import add_parts, parse_musicxml_score, write_score

        write_score(add_parts(parse_musicxml_score(args.file), result.song, result.new_tracks), args.output)
    else:
        save(result.song, args.output)
    new = result.song.tracks[result.new_tracks[0]]
    bars = int(result.song.bar_activity(new.notes).sum())
    _say(args, f"wrote {args.output}: {stem} by {engine.name}, {len(new.notes)} notes in {bars} bars")
    if result.replaced_tracks:
        _say(args, f"replaced the song's own {stem}: {', '.join(result.replaced_tracks)}")
    if controls.unknown_words:
        _say(args, f"instruction words not used: {', '.join(controls.unknown_words)}")
    if args.report:
        from midiarr.insert_report import write_insert_report

        page = write_insert_report(result, args.report, engine.name, args.instruction, args.seed, args.soundfont)
        _say(args, f"report: {page}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import shlex

    from midiarr.evaluation.harness import check_engines, evaluate
    from midiarr.evaluation.report import markdown_table, write_report
    from midiarr.roles import check_stem

    engines = check_engines(args.engine)
    stems = [check_stem(s) for s in args.stems.split(",") if s.strip()]
    result = evaluate(
        engines, stems, args.data, split=args.split, limit=args.limit, seed=args.seed, progress=not args.quiet
    )
    command = "midiarr " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "eval" in sys.argv[1:] else ""
    paths = write_report(result, args.output, command=command)
    _say(args, markdown_table(result["aggregate"]))
    _say(args, f"wrote {len(paths)} files to {args.output} ({len(result['failures'])} failures)")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from midiarr.prepare import prepare

    if args.workers is not None and args.workers < 1:
        raise OptionError("--workers must be at least 1")
    summary = prepare(args.data_dir, args.output, workers=args.workers, progress=not args.quiet, limit=args.limit)
    for line in summary.lines():
        _say(args, line)
    _say(args, f"wrote {args.output} (triplets.jsonl, index.jsonl, splits.json, errors.log)")
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
    _say(args, f"{sum(map(len, bars))} tokens in {len(bars)} bars (vocabulary {tok.vocab_size})")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from midiarr.render import render_to_dir
    from midiarr.roles import assign_roles, parse_role_overrides

    song = _load_song_with_notes(args.file)
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
    )
    _say(args, f"wrote {', '.join(str(p) for p in written.values())}")
    return 0


def cmd_render_dataset(args: argparse.Namespace) -> int:
    from midiarr.render.dataset import render_dataset

    totals = render_dataset(
        args.src,
        args.output,
        sr=args.sr,
        clip_seconds=args.clip,
        soundfont=args.soundfont,
        fmt=args.format,
        stereo=args.stereo,
        workers=args.workers,
        split=args.split,
        limit=args.limit,
        progress=not args.quiet,
    )
    _say(
        args,
        f"songs: {totals['songs']}  items written: {totals['items_written']}  "
        f"already done: {totals['songs_skipped_done']}  silent clips dropped: "
        f"{totals['silent_clips_dropped']}  errors: {totals['errors']}",
    )
    _say(args, "active stems: " + ", ".join(f"{k} {v}" for k, v in sorted(totals["stems"].items())))
    return 0


def _sample_rate(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"sample rate must be a whole number of Hz, got {text!r}") from None
    if not 8000 <= value <= 96000:
        raise argparse.ArgumentTypeError(f"sample rate {value} is outside 8000..96000 Hz")
    return value


# -------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(prog="midiarr", description="MIDI arrangement engine: write the missing stem of a song.")
    parser.add_argument("--version", action="version", version=f"midiarr {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and requested data")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print only errors")
        return p

    role_help = "override a track's role, e.g. --role 3=bass (repeatable; track numbers as in `midiarr stems`)"

    p = add("convert", "Convert between MIDI (.mid) and MusicXML (.musicxml, .mxl, .xml) by file extension.")
    p.add_argument("input", type=Path, help="song to read")
    p.add_argument("-o", "--output", type=Path, required=True, help="file to write; its extension picks the format")
    p.add_argument("--force", action="store_true", help="allow the output to be the input file")
    p.set_defaults(func=cmd_convert)

    p = add("stems", "List a song's tracks with their stem roles.")
    p.add_argument("file", type=Path)
    p.add_argument("--role", action="append", metavar="TRACK=ROLE", help=role_help)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--describe", action="store_true", help="also describe each removable stem as an instruction")
    p.set_defaults(func=cmd_stems)

    p = add("subtract", "Write the song with one stem removed; everything else is kept exactly.")
    p.add_argument("file", type=Path)
    p.add_argument("--stem", required=True, help="bass, drums, guitar, piano or strings")
    p.add_argument("-o", "--output", type=Path, required=True, help="the song without the stem")
    p.add_argument("--stem-output", type=Path, help="also write the removed stem alone here")
    p.add_argument("--role", action="append", metavar="TRACK=ROLE", help=role_help)
    p.add_argument("--force", action="store_true", help="allow an output to be the input file")
    p.set_defaults(func=cmd_subtract)

    p = add("insert", "Write a missing stem into a song with an engine; the other tracks are kept exactly.")
    p.add_argument("file", type=Path)
    p.add_argument("--stem", required=True, help="bass, drums, guitar, piano or strings")
    p.add_argument("-o", "--output", type=Path, required=True, help="the song with the new part (.mid or MusicXML)")
    p.add_argument("--engine", default="rules", help="which engine writes the part (default: rules)")
    p.add_argument("--instruction", help='free text, e.g. "busy syncopated bass, soft"')
    p.add_argument("--density", choices=["sparse", "medium", "busy"])
    p.add_argument("--dynamics", choices=["soft", "medium", "loud"])
    p.add_argument("--rhythm", choices=["straight", "syncopated"])
    p.add_argument("--register", choices=["low", "mid", "high"])
    p.add_argument("--polyphony", choices=["single", "chords"], help="single notes (arpeggios) or chords")
    p.add_argument(
        "--active",
        metavar="BARS",
        help="bars to play, 1-based ranges, e.g. 1-16,33-48 (default: wherever the song plays)",
    )
    p.add_argument("--seed", type=int, default=0, help="same seed, same part")
    p.add_argument("--donor", action="append", type=Path, help="donor song for --engine borrow (repeatable)")
    p.add_argument("--report", type=Path, metavar="DIR", help="also write an HTML page with a piano roll and audio")
    p.add_argument("--soundfont", default=None, help="SoundFont for the report's audio (default as in `render`)")
    p.add_argument("--role", action="append", metavar="TRACK=ROLE", help=role_help)
    p.add_argument("--force", action="store_true", help="allow the output to be the input file")
    p.set_defaults(func=cmd_insert)

    p = add(
        "eval", "Remove each stem from held-out songs, let engines write it back, and measure against the real part."
    )
    p.add_argument("--engine", action="append", required=True, help="engine to evaluate (repeatable)")
    p.add_argument("--stems", default="bass,drums,guitar", help="comma-separated stems (default bass,drums,guitar)")
    p.add_argument("--data", type=Path, required=True, help="a `midiarr prepare` cache")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test")
    p.add_argument("-o", "--output", type=Path, required=True, help="report folder (JSON, Markdown, PNG)")
    p.add_argument("--limit", type=int, help="at most N parts per stem")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_eval)

    p = add("prepare", "Build Subtractive Training triplets (full, without stem, instruction) from a folder.")
    p.add_argument("data_dir", type=Path, help="folder searched recursively for MIDI and MusicXML")
    p.add_argument("-o", "--output", type=Path, required=True, help="cache folder to write")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--limit", type=int, default=None, help="take only the first N files (sorted by path)")
    p.set_defaults(func=cmd_prepare)

    sf_help = "default (FluidR3_GM when installed, else the embedded TimGM6mb), fluidr3, timgm, or an .sf2/.sf3 path"
    p = add("render", "Render a song to audio through a SoundFont: mix.wav, and with --stems one file per stem role.")
    p.add_argument("file", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="folder to write the audio files into")
    p.add_argument("--stems", action="store_true", help="also write one file per stem (bass.wav, drums.wav, ...)")
    p.add_argument("--soundfont", default=None, help=sf_help)
    p.add_argument("--sr", type=_sample_rate, default=44100, help="sample rate in Hz (default 44100)")
    p.add_argument("--format", choices=["wav", "flac"], default="wav")
    p.add_argument(
        "--loudness",
        type=float,
        metavar="DBFS",
        help="bring the mix to this RMS level (e.g. -20); one gain for all files keeps stems summing to it",
    )
    p.add_argument("--mono", action="store_true", help="write mono files")
    p.add_argument("--role", action="append", metavar="TRACK=ROLE", help=role_help)
    p.set_defaults(func=cmd_render)

    p = add("render-dataset", "Render a MIDI folder or a prepare cache into aligned stems + mix per song or clip.")
    p.add_argument("src", type=Path, help="a folder of MIDI/MusicXML files, or a `midiarr prepare` cache")
    p.add_argument("-o", "--output", type=Path, required=True, help="audio dataset folder (resumable)")
    p.add_argument("--sr", type=_sample_rate, default=16000, help="sample rate in Hz (default 16000)")
    p.add_argument("--clip", type=float, metavar="SECONDS", help="cut each song into clips of this length")
    p.add_argument("--soundfont", default=None, help=sf_help)
    p.add_argument("--format", choices=["wav", "flac"], default="wav")
    p.add_argument("--stereo", action="store_true", help="keep two channels (default: mono, as the audio models use)")
    p.add_argument("--split", choices=["train", "valid", "test"], help="render only this split")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--limit", type=int, default=None, help="take only the first N songs")
    p.set_defaults(func=cmd_render_dataset)

    p = add("tokenize", "Show a song's REMI tokens bar by bar.")
    p.add_argument("file", type=Path)
    p.add_argument("--config", type=Path, help="tokenizer TOML (default: the bundled configs/tokenizer.toml)")
    p.add_argument("--bars", type=int, help="show only the first N bars")
    p.add_argument("--json", action="store_true", help="print token ids per bar as JSON")
    p.set_defaults(func=cmd_tokenize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except MidiarrError as exc:
        sys.stderr.write(f"midiarr: error: {exc}\n")
        return EXIT_USAGE if isinstance(exc, OptionError) else EXIT_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("midiarr: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("MIDIARR_DEBUG"):
            raise
        sys.stderr.write(f"midiarr: internal error: {type(exc).__name__}: {exc} (MIDIARR_DEBUG=1 shows a traceback)\n")
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
