"""Commands that write parts: insert a missing stem, generate a song, separate a flattened one."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from midiarr.chords import with_chord_track
from midiarr.cli.common import (
    ENGINE_OPTIONS_DEFAULT,
    MUSICXML_SUFFIXES,
    add_control_options,
    add_diffusion_options,
    add_notation_args,
    controls_from_args,
    default_engine,
    engine_from_args,
    engine_option,
    load_song_with_notes,
    notation_options,
    parse_meter,
    say,
)
from midiarr.errors import OptionError
from midiarr.options import float_in, int_in, output_folder, seed
from midiarr.timing import TIMINGS


def cmd_insert(args: argparse.Namespace) -> int:
    from midiarr.engines import existing_parts, parse_bar_ranges, refuse_existing
    from midiarr.io import check_output_path
    from midiarr.roles import assign_roles, check_stem, parse_role_overrides

    stems = [check_stem(s.strip()) for s in args.stem.split(",") if s.strip()]
    if not stems:
        raise OptionError("--stem: name at least one stem")
    if len(set(stems)) != len(stems):
        raise OptionError(f"--stem {args.stem}: a stem is named twice")
    check_output_path(args.file, args.output, args.force, args.mkdir)
    roles_asked = parse_role_overrides(args.role)
    engine = engine_from_args(args)
    song, chord_index = with_chord_track(load_song_with_notes(args.file))
    if chord_index is not None:  # a lead sheet's chord track: its chords count over the ones heard in the parts
        say(args, f"chords from track {chord_index} {song.tracks[chord_index].name!r}")
    roles = assign_roles(song, roles_asked)
    # insert only adds: a part the song already has is the user's, so ask before replacing it
    if not args.replace:
        refuse_existing(song, stems, roles)
    replacing = [f"track {i} {song.tracks[i].name!r}" for i in existing_parts(song, stems, roles)]
    controls = controls_from_args(args)
    notation = set(MUSICXML_SUFFIXES)
    # a score notates the grid: off-grid ticks would come out as unreadable tuplets and ties
    controls.timing = args.timing or ("grid" if args.output.suffix.lower() in notation else "song")
    active = parse_bar_ranges(args.active, song.num_bars) if args.active is not None else None
    if args.takes > 1:
        return _insert_takes(args, engine, song, stems, controls, active, roles)
    # several stems: each engine decides how they hear each other (in turn, or written together)
    result = engine.insert_stems(
        song, stems, controls, active=active, seed=args.seed, roles=roles, replace=args.replace
    )
    song, new_tracks, replaced = result.song, result.new_tracks, result.replaced_tracks
    _write_inserted(args, song, new_tracks, bool(replaced), args.output)
    for i in new_tracks:
        new = song.tracks[i]
        bars = int(song.bar_activity(new.notes).sum())
        say(args, f"wrote {args.output}: {new.role} by {engine.name}, {len(new.notes)} notes in {bars} bars")
    if replaced:
        say(args, f"replaced the song's own part (--replace): {', '.join(replacing or replaced)}")
    if controls.unknown_words:
        say(args, f"instruction words not used: {', '.join(controls.unknown_words)}")
    if args.report:
        from midiarr.insert_report import write_insert_report

        result.stem = ",".join(stems)
        page = write_insert_report(result, args.report, engine.name, args.instruction, args.seed, args.soundfont)
        say(args, f"report: {page}")
    return 0


def _write_inserted(args: argparse.Namespace, song: Any, new_tracks: list[int], replaced: bool, path: Path) -> None:
    """The song with its new parts, in the output's format (a score in, a score out: the original kept)."""
    from midiarr.io import save

    notation = set(MUSICXML_SUFFIXES)
    if args.file.suffix.lower() in notation and path.suffix.lower() in notation and not replaced:
        # notation in, notation out: keep the original score as it is and add the new parts to it
        from midiarr.io.musicxml import add_parts
        from midiarr.io.musicxml_writer import write_bytes

        write_bytes(path, add_parts(args.file, song, new_tracks, notation_options(args)))
    elif path.suffix.lower() in notation:
        from midiarr.io.musicxml import write_musicxml

        write_musicxml(song, path, notation_options(args), chord_symbols_for=new_tracks)
    else:
        save(song, path)


def _insert_takes(
    args: argparse.Namespace, engine: Any, song: Any, stems: list[str], controls: Any, active: Any, roles: Any
) -> int:
    from midiarr.io import atomic_write_text
    from midiarr.takes import insert_takes, take_path, takes_report

    if args.report:
        raise OptionError("--report shows one take; leave out --takes, or open the takes' files")
    takes = insert_takes(
        engine, song, stems, controls, args.takes, seed=args.seed, active=active, roles=roles, replace=args.replace
    )
    paths = [take_path(args.output, t.number) for t in takes]
    for t, path in zip(takes, paths, strict=True):
        _write_inserted(args, t.song, t.new_tracks, args.replace, path)
        sc = t.scores
        say(
            args,
            f"wrote {path}: take {t.number} (seed {t.seed}), {sc['notes']:.0f} notes in {sc['bars_played']:.0f} bars",
        )
    report = args.output.with_name(f"{args.output.stem}.takes.json")
    atomic_write_text(report, takes_report(takes, paths))
    say(args, f"wrote {report}: each take's scores")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from midiarr.io.files import check_output_folder
    from midiarr.roles import check_stem

    stems = [check_stem(s.strip()) for s in args.stems.split(",") if s.strip()]
    if not stems:
        raise OptionError("--stems: name at least one stem")
    if len(set(stems)) != len(stems):
        raise OptionError(f"--stems {args.stems}: a stem is named twice")
    meter = parse_meter(args.meter)
    check_output_folder(args.output, args.mkdir)
    chords, key, bars = None, None, args.bars or 16
    if args.chords is not None:
        from midiarr.chords import parse

        if args.bars is not None:
            raise OptionError("--bars: with --chords the progression sets the length (use --repeat to loop it)")
        progression = parse(args.chords, meter=meter, repeat=args.repeat, key=args.key)
        chords, key, bars = progression.chords, progression.key, progression.bars
    elif args.repeat != 1 or args.key is not None:
        raise OptionError("--repeat and --key go with --chords")
    engine = engine_from_args(args)
    if args.takes > 1:
        from midiarr.io import atomic_write_text
        from midiarr.takes import generate_takes, take_path, takes_report

        opts = {"qpm": args.tempo, "meter": meter}
        takes = generate_takes(
            engine, stems, bars, controls_from_args(args), args.takes, args.seed, chords, key, **opts
        )
        paths = [take_path(args.output, t.number) for t in takes]
        for t, path in zip(takes, paths, strict=True):
            _write_generated(args, t.song, path)
            say(args, f"wrote {path}: take {t.number} (seed {t.seed}), {t.scores['notes']:.0f} notes")
        report = args.output.with_name(f"{args.output.stem}.takes.json")
        atomic_write_text(report, takes_report(takes, paths))
        say(args, f"wrote {report}: each take's scores")
        return 0
    song = engine.generate(
        stems, bars, controls_from_args(args), seed=args.seed, qpm=args.tempo, meter=meter, chords=chords, key=key
    )
    _write_generated(args, song, args.output)
    parts = ", ".join(f"{t.role} {len(t.notes)} notes" for t in song.tracks)
    say(args, f"wrote {args.output}: {bars} bars at {args.tempo:g} bpm in {meter[0]}/{meter[1]}; {parts}")
    return 0


def cmd_infill(args: argparse.Namespace) -> int:
    from midiarr.engines import parse_bar_ranges
    from midiarr.infill import infill
    from midiarr.io import check_output_path, save
    from midiarr.roles import assign_roles, check_stem, parse_role_overrides

    stem = check_stem(args.stem.strip())
    check_output_path(args.file, args.output, args.force, args.mkdir)
    engine = engine_from_args(args)
    song, _ = with_chord_track(load_song_with_notes(args.file))
    roles = assign_roles(song, parse_role_overrides(args.role))
    span = parse_bar_ranges(args.bars, song.num_bars, option="--bars")
    controls = controls_from_args(args)
    notation = args.output.suffix.lower() in MUSICXML_SUFFIXES
    controls.timing = args.timing or ("grid" if notation else "song")
    result = infill(engine, song, stem, span, controls, seed=args.seed, roles=roles, tries=args.tries)
    if notation:
        from midiarr.io.musicxml import write_musicxml

        write_musicxml(result.song, args.output, notation_options(args), chord_symbols_for=[result.track])
    else:
        save(result.song, args.output)
    bars = f"{int(span.sum())} bar{'s' if span.sum() != 1 else ''}"
    say(
        args,
        f"wrote {args.output}: {bars} of the {stem} (track {result.track}) redone by {engine.name}, "
        f"{result.new_notes} notes; best of {result.tries} tries at the seams",
    )
    return 0


def _write_generated(args: argparse.Namespace, song: Any, path: Path) -> None:
    from midiarr.io import save

    if path.suffix.lower() in MUSICXML_SUFFIXES:
        from midiarr.io.musicxml import write_musicxml

        pitched = [i for i, t in enumerate(song.tracks) if not t.is_drum]  # all new: chords above the first
        write_musicxml(song, path, notation_options(args), chord_symbols_for=pitched[:1])
    else:
        save(song, path)


def cmd_separate(args: argparse.Namespace) -> int:
    from midiarr.engines.diffusion import pitch_range_split
    from midiarr.io import check_output_path, save
    from midiarr.pianoroll import PITCHED

    stems = [s.strip() for s in args.stems.split(",") if s.strip()]
    bad = [s for s in stems if s not in PITCHED]
    if not stems or bad:
        raise OptionError(f"--stems {args.stems!r}: choose from {', '.join(PITCHED)}")
    if args.method not in ("diffusion", "pitch-range"):
        raise OptionError(f"--method {args.method!r}: choose diffusion or pitch-range")
    check_output_path(args.file, args.output, args.force, args.mkdir)
    song = load_song_with_notes(args.file)
    if args.method == "pitch-range":
        given = [flag for option, flag in getattr(args, ENGINE_OPTIONS_DEFAULT) if getattr(args, option) is not None]
        if given:
            raise OptionError(f"{'/'.join(given)}: apply to --method diffusion")
        out = pitch_range_split(song, stems)
        counts = {t.role: len(t.notes) for t in out.tracks if not t.is_drum}
    else:
        engine = engine_from_args(args, engine="diffusion")
        out, counts = engine.separate(song, stems, seed=args.seed)
    save(out, args.output)
    parts = ", ".join(f"{s} {n} notes" for s, n in counts.items())
    how = args.method
    if args.method == "diffusion":
        how += " + assignment head" if engine.assign == "head" and engine.head is not None else ", highest onset logit"
    say(args, f"wrote {args.output}: {parts} (by {how})")
    return 0


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int_in(1, 256),
        help="compute threads (default: torch's choice; with several commands at once, give each its share of "
        "the cores; MIDIARR_THREADS sets it too)",
    )


def add_takes_arg(p: argparse.ArgumentParser) -> None:
    from midiarr.takes import MAX_TAKES

    p.add_argument(
        "--takes",
        type=int_in(1, MAX_TAKES),
        default=1,
        help="write N takes from the seed: OUT.take1.mid ... and OUT.takes.json with each take's scores "
        "(take 1 is what one run with the seed writes)",
    )


def register(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The write commands."""
    p = add("insert", "Write a missing stem into a song with an engine; the other tracks are kept exactly.")
    p.add_argument("file", type=Path)
    p.add_argument("--stem", required=True, help="bass, drums, guitar, piano or strings; several as bass,drums")
    p.add_argument("-o", "--output", type=Path, required=True, help="the song with the new part (.mid or MusicXML)")
    p.add_argument("--engine", default=default_engine(), help="which engine writes the part (default: %(default)s)")
    add_control_options(p)
    p.add_argument(
        "--active",
        metavar="BARS",
        help="bars to play, 1-based ranges, e.g. 1-16,33-48 (default: wherever the song plays)",
    )
    p.add_argument("--seed", type=seed, default=0, help="same seed, same part")
    p.add_argument(
        "--timing",
        choices=TIMINGS,
        help="song: onsets follow the other parts' micro-timing (swing, a late kick); grid: exact 16th notes "
        "(default: song, or grid when writing MusicXML, which notates the grid)",
    )
    p.add_argument(
        "--report", type=output_folder, metavar="DIR", help="also write an HTML page with a piano roll and audio"
    )
    p.add_argument("--soundfont", default=None, help="SoundFont for the report's audio (default as in `render`)")
    p.add_argument(
        "--role",
        action="append",
        metavar="TRACK=ROLE",
        help="re-label a track, e.g. --role 3=other for a track that is not the stem you insert (repeatable; "
        "track numbers as in `midiarr stems`; roles: drums, bass, guitar, piano, strings, lead, other)",
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace the song's own part of the stem (by default insert only adds, and stops if the song has one)",
    )
    p.add_argument("--force", action="store_true", help="allow the output to be the input file")
    p.add_argument("--mkdir", action="store_true", help="create the output's folder if it is missing")
    add_takes_arg(p)
    add_notation_args(p, chord_symbols=True)
    add_threads_arg(p)
    p.set_defaults(func=cmd_insert)

    p = add(
        "generate",
        "Write a new song from nothing or from a chord progression: the stems named, each hearing the ones before it.",
    )
    p.add_argument("--stems", default="piano,bass,drums", help="comma-separated stems (default piano,bass,drums)")
    p.add_argument("--bars", type=int_in(1, 2000), help="length in bars (default 16; with --chords, the progression's)")
    p.add_argument(
        "--chords",
        metavar="PROGRESSION",
        help="a chord progression every part plays to: bars between |, chords in a bar share it, e.g. "
        '"C | G/B | Am F | F G" (names: C, Cm7, G7/B, F#dim, Bbmaj7, Dsus4, N.C.; %% repeats a bar)',
    )
    p.add_argument("--repeat", type=int_in(1, 1000), default=1, help="with --chords: play the progression N times")
    p.add_argument("--key", help="with --chords: the key signature (C, Bb, F#m, Em)")
    p.add_argument("--tempo", type=float_in(20, 400), default=120.0, help="quarter notes per minute (default 120)")
    p.add_argument("--meter", default="4/4", help="time signature (default 4/4)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the new song (.mid or MusicXML)")
    p.add_argument("--mkdir", action="store_true", help="create the output's folder if it is missing")
    p.add_argument(
        "--engine", default="transformer", help="engine (default transformer; rules cannot start from nothing)"
    )
    add_control_options(p)
    p.add_argument("--seed", type=seed, default=0, help="same seed, same song")
    add_takes_arg(p)
    add_notation_args(p, chord_symbols=True)
    add_threads_arg(p)
    p.set_defaults(func=cmd_generate)

    p = add("infill", "Redo a span of bars of a part; every other bar of it, and every other part, stays as it is.")
    p.add_argument("file", type=Path)
    p.add_argument("--stem", required=True, help="the part to redo: bass, drums, guitar, piano or strings")
    p.add_argument("--bars", required=True, help="bars to redo, 1-based ranges, e.g. 9-16 or 5-8,13-16")
    p.add_argument("-o", "--output", type=Path, required=True, help="the song with the bars redone (.mid or MusicXML)")
    p.add_argument("--engine", default=default_engine(), help="which engine writes the bars (default: %(default)s)")
    add_control_options(p)
    p.add_argument("--seed", type=seed, default=0, help="same seed, same bars")
    p.add_argument(
        "--tries", type=int_in(1, 16), default=4, help="write N tries and keep the one that joins the bars after best"
    )
    p.add_argument("--timing", choices=TIMINGS, help="as for insert")
    p.add_argument("--role", action="append", metavar="TRACK=ROLE", help="re-label a track (as for insert)")
    p.add_argument("--force", action="store_true", help="allow the output to be the input file")
    p.add_argument("--mkdir", action="store_true", help="create the output's folder if it is missing")
    add_notation_args(p, chord_symbols=True)
    add_threads_arg(p)
    p.set_defaults(func=cmd_infill)

    p = add("separate", "Split a flattened MIDI (pitched notes on one track) into bass, guitar and piano tracks.")
    p.add_argument("file", type=Path, help="the flattened song; drum tracks are kept as they are")
    p.add_argument("-o", "--output", type=Path, required=True, help="the song with one track per stem")
    p.add_argument("--stems", default="bass,guitar,piano", help="stems to split into (default bass,guitar,piano)")
    p.add_argument("--method", default="diffusion", help="diffusion (default) or pitch-range (the baseline)")
    g = p.add_argument_group("diffusion options")
    engine_option(
        g,
        "--guidance",
        "guidance",
        type=float_in(0, 100),
        help="classifier-free guidance on the mix (0 free ... >=1 follow it)",
    )
    add_diffusion_options(g)
    engine_option(
        g, "--checkpoint", "checkpoint", type=Path, help="diffusion checkpoint folder (default: the bundled weights)"
    )
    engine_option(
        g,
        "--assign",
        "assign",
        choices=["head", "logits"],
        help="how notes pick their stem: head (default: the learned assignment head, when the checkpoint has "
        "one) or logits (the stem with the highest onset logit at the note)",
    )
    p.add_argument("--seed", type=seed, default=0, help="same seed, same split")
    p.add_argument("--force", action="store_true", help="allow the output to be the input file")
    p.add_argument("--mkdir", action="store_true", help="create the output's folder if it is missing")
    add_threads_arg(p)
    p.set_defaults(func=cmd_separate)
