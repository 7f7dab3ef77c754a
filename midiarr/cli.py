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
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from midiarr import __version__
from midiarr.errors import EmptySongError, MidiarrError, OptionError
from midiarr.options import float_in, int_in, output_folder, seed
from midiarr.song import Song
from midiarr.timing import TIMINGS

MUSICXML_SUFFIXES = (".musicxml", ".mxl", ".xml")

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

    check_output_path(args.input, args.output, args.force, args.mkdir)
    song = load(args.input)
    if args.output.suffix.lower() in MUSICXML_SUFFIXES:
        from midiarr.io.musicxml import write_musicxml

        write_musicxml(song, args.output, _notation_options(args))
    else:
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
    check_output_path(args.file, args.output, args.force, args.mkdir)
    if args.stem_output:
        check_output_path(args.file, args.stem_output, args.force, args.mkdir)
    song = load(args.file)
    sub = subtract(song, stem, assign_roles(song, parse_role_overrides(args.role)))
    save(sub.partial, args.output)
    if args.stem_output:
        save(sub.target, args.stem_output)
    removed = ", ".join(f"{i} ({song.tracks[i].name or 'unnamed'})" for i in sub.track_indices)
    _say(args, f"removed {stem}: track {removed}; wrote {args.output}")
    return 0


def _engine_from_args(args: argparse.Namespace) -> Any:
    """The engine named by --engine with its options (donors, checkpoint, sampling)."""
    from midiarr.engines import get_engine

    options: dict[str, Any] = {}
    if args.engine == "borrow":
        options["donors"] = args.donor
    sampling = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "candidates": args.candidates,
        "candidate_pick": args.pick,
        "harmony_weight": args.harmony_weight,
        "root_weight": args.root_weight,
        "sync_weight": args.sync_weight,
        "control_weight": args.control_weight,
    }
    diffusion = {
        "steps": args.steps,
        "scheduler": args.scheduler,
        "guidance": getattr(args, "guidance", None),
        "partial": args.partial,
        "passes": args.passes,
    }
    if args.engine == "diffusion":
        # the guidance both engines share: which pitches a part picks (the diffusion model's rows) and
        # where in the beat its onsets fall, never how many
        for name in ("harmony_weight", "sync_weight"):
            if sampling[name] is not None:
                diffusion[name] = sampling.pop(name)
    if args.engine == "transformer":
        options.update(checkpoint=args.checkpoint, **sampling)
    elif any(v is not None for v in sampling.values()):
        raise OptionError(f"--temperature/--top-p/--candidates/--*-weight apply to the transformer, not {args.engine}")
    if args.engine == "diffusion":
        options.update(checkpoint=args.checkpoint, **{k: v for k, v in diffusion.items() if v is not None})
    elif any(v is not None for v in diffusion.values()):
        raise OptionError(f"--steps/--scheduler/--guidance/--partial/--passes apply to diffusion, not {args.engine}")
    if args.checkpoint is not None and args.engine not in ("transformer", "diffusion"):
        raise OptionError(f"--checkpoint applies to the transformer and diffusion engines, not {args.engine}")
    return get_engine(args.engine, **options)


def _controls_from_args(args: argparse.Namespace) -> Any:
    from midiarr.engines import Controls

    return Controls.build(
        args.instruction,
        density=args.density,
        dynamics=args.dynamics,
        rhythm=args.rhythm,
        register=args.register,
        polyphony=args.polyphony,
        touch=args.touch,
    )


def cmd_insert(args: argparse.Namespace) -> int:
    from midiarr.engines import existing_parts, parse_bar_ranges, refuse_existing
    from midiarr.io import check_output_path, save
    from midiarr.roles import assign_roles, check_stem, parse_role_overrides

    stems = [check_stem(s.strip()) for s in args.stem.split(",") if s.strip()]
    if not stems:
        raise OptionError("--stem: name at least one stem")
    if len(set(stems)) != len(stems):
        raise OptionError(f"--stem {args.stem}: a stem is named twice")
    check_output_path(args.file, args.output, args.force, args.mkdir)
    roles_asked = parse_role_overrides(args.role)
    engine = _engine_from_args(args)
    song = _load_song_with_notes(args.file)
    roles = assign_roles(song, roles_asked)
    # insert only adds: a part the song already has is the user's, so ask before replacing it
    if not args.replace:
        refuse_existing(song, stems, roles)
    replacing = [f"track {i} {song.tracks[i].name!r}" for i in existing_parts(song, stems, roles)]
    controls = _controls_from_args(args)
    notation = set(MUSICXML_SUFFIXES)
    # a score notates the grid: off-grid ticks would come out as unreadable tuplets and ties
    controls.timing = args.timing or ("grid" if args.output.suffix.lower() in notation else "song")
    active = parse_bar_ranges(args.active, song.num_bars) if args.active is not None else None
    # several stems: each engine decides how they hear each other (in turn, or written together)
    result = engine.insert_stems(
        song, stems, controls, active=active, seed=args.seed, roles=roles, replace=args.replace
    )
    song, new_tracks, replaced = result.song, result.new_tracks, result.replaced_tracks
    if args.file.suffix.lower() in notation and args.output.suffix.lower() in notation and not replaced:
        # notation in, notation out: keep the original score as it is and add the new parts to it
        from midiarr.io.musicxml import add_parts
        from midiarr.io.musicxml_writer import write_bytes

        write_bytes(args.output, add_parts(args.file, song, new_tracks, _notation_options(args)))
    elif args.output.suffix.lower() in notation:
        from midiarr.io.musicxml import write_musicxml

        write_musicxml(song, args.output, _notation_options(args), chord_symbols_for=new_tracks)
    else:
        save(song, args.output)
    for i in new_tracks:
        new = song.tracks[i]
        bars = int(song.bar_activity(new.notes).sum())
        _say(args, f"wrote {args.output}: {new.role} by {engine.name}, {len(new.notes)} notes in {bars} bars")
    if replaced:
        _say(args, f"replaced the song's own part (--replace): {', '.join(replacing or replaced)}")
    if controls.unknown_words:
        _say(args, f"instruction words not used: {', '.join(controls.unknown_words)}")
    if args.report:
        from midiarr.insert_report import write_insert_report

        result.stem = ",".join(stems)
        page = write_insert_report(result, args.report, engine.name, args.instruction, args.seed, args.soundfont)
        _say(args, f"report: {page}")
    return 0


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
    song = _load_song_with_notes(args.file)
    if args.method == "pitch-range":
        if any(v is not None for v in (args.checkpoint, args.steps, args.guidance, args.scheduler, args.assign)):
            raise OptionError("--checkpoint/--steps/--guidance/--scheduler/--assign apply to --method diffusion")
        out = pitch_range_split(song, stems)
        counts = {t.role: len(t.notes) for t in out.tracks if not t.is_drum}
    else:
        from midiarr.engines.diffusion import DiffusionEngine

        if args.guidance is not None and args.guidance < 0:
            raise OptionError(f"--guidance {args.guidance}: must be 0 or more")
        engine = DiffusionEngine(
            checkpoint=args.checkpoint,
            steps=args.steps,
            guidance=args.guidance,
            scheduler=args.scheduler,
            assign=args.assign or "head",
        )
        out, counts = engine.separate(song, stems, seed=args.seed)
    save(out, args.output)
    parts = ", ".join(f"{s} {n} notes" for s, n in counts.items())
    how = args.method
    if args.method == "diffusion":
        how += " + assignment head" if engine.assign == "head" and engine.head is not None else ", highest onset logit"
    _say(args, f"wrote {args.output}: {parts} (by {how})")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from midiarr.io import save
    from midiarr.io.files import check_output_folder
    from midiarr.roles import check_stem

    stems = [check_stem(s.strip()) for s in args.stems.split(",") if s.strip()]
    if not stems:
        raise OptionError("--stems: name at least one stem")
    if len(set(stems)) != len(stems):
        raise OptionError(f"--stems {args.stems}: a stem is named twice")
    meter = _meter(args.meter)
    check_output_folder(args.output, args.mkdir)
    engine = _engine_from_args(args)
    song = engine.generate(stems, args.bars, _controls_from_args(args), seed=args.seed, qpm=args.tempo, meter=meter)
    if args.output.suffix.lower() in MUSICXML_SUFFIXES:
        from midiarr.io.musicxml import write_musicxml

        pitched = [i for i, t in enumerate(song.tracks) if not t.is_drum]  # all new: chords above the first
        write_musicxml(song, args.output, _notation_options(args), chord_symbols_for=pitched[:1])
    else:
        save(song, args.output)
    parts = ", ".join(f"{t.role} {len(t.notes)} notes" for t in song.tracks)
    _say(args, f"wrote {args.output}: {args.bars} bars at {args.tempo:g} bpm in {meter[0]}/{meter[1]}; {parts}")
    return 0


def _meter(text: str) -> tuple[int, int]:
    num, sep, den = text.partition("/")
    if not sep or not num.isdigit() or not den.isdigit() or int(den) not in (2, 4, 8) or not 1 <= int(num) <= 12:
        raise OptionError(f"--meter {text!r}: expected e.g. 4/4, 3/4, 6/8 (denominator 2, 4 or 8)")
    return int(num), int(den)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from midiarr.server import Limits, create_app

    if not 0 < args.port < 65536:
        raise OptionError(f"--port {args.port}: choose 1-65535")
    if args.jobs < 1:
        raise OptionError("--jobs must be at least 1")
    if not 0 < args.max_upload_mb <= 1024:
        raise OptionError(f"--max-upload-mb {args.max_upload_mb:g}: choose more than 0 and at most 1024")
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_running_jobs=args.jobs)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.stderr.write(f"midiarr: warning: serving on {args.host}, reachable from other machines\n")
    _say(args, f"midiarr serve: http://{args.host}:{args.port}/ (API schema at /openapi.json; Ctrl+C stops)")
    uvicorn.run(create_app(limits=limits), host=args.host, port=args.port, log_level="warning")
    return 0


# Engine settings `eval --set` may change (keyword arguments of each engine's constructor) and their types.
ENGINE_SETTINGS: dict[str, dict[str, type]] = {
    "transformer": {
        "temperature": float,
        "note_temperature": float,
        "fresh_temperature": float,
        "top_p": float,
        "candidates": int,
        "candidate_pick": str,
        "candidate_windows": int,
        "harmony_weight": float,
        "root_weight": float,
        "sync_weight": float,
        "control_weight": float,
        "kit_weight": float,
        "voicing_weight": float,
        "int8": bool,
        "half": bool,
        "pull_inferred_density": bool,
    },
    "diffusion": {
        "assign": str,
        "steps": int,
        "guidance": float,
        "scheduler": str,
        "partial": str,
        "passes": str,
        "harmony_weight": float,
        "sync_weight": float,
        "density_pull": bool,
        "bar_floor": float,
        "snap_steps": int,
        "root_weight": float,
        "voicing_weight": float,
    },
}


def _engine_setting(item: str) -> tuple[tuple[str, str], Any]:
    """``ENGINE.KEY=VALUE`` to ((engine, key), value) with the value in the setting's type."""
    key, sep, raw = item.partition("=")
    engine, dot, name = key.partition(".")
    kind = ENGINE_SETTINGS.get(engine, {}).get(name)
    if not sep or not dot or kind is None:
        known = ", ".join(f"{e}.{k}" for e, keys in ENGINE_SETTINGS.items() for k in keys)
        raise OptionError(f"--set {item!r}: expected ENGINE.KEY=VALUE with one of {known}")
    if kind is bool:
        if raw.lower() not in ("true", "false"):
            raise OptionError(f"--set {item!r}: {name} is true or false")
        return (engine, name), raw.lower() == "true"
    try:
        return (engine, name), kind(raw)
    except ValueError:
        raise OptionError(f"--set {item!r}: {name} needs {'an integer' if kind is int else 'a number'}") from None


def cmd_eval(args: argparse.Namespace) -> int:
    import shlex

    from midiarr.evaluation.harness import check_engines, evaluate, evaluate_control, parse_control
    from midiarr.evaluation.report import control_table, markdown_table, write_control_report, write_report
    from midiarr.roles import check_stem

    options: dict[str, dict[str, Any]] = {}
    for item in args.checkpoint or []:
        name, sep, path = item.partition("=")
        if not sep or name not in ("transformer", "diffusion") or not path:
            raise OptionError(f"--checkpoint {item!r}: expected transformer=PATH or diffusion=PATH")
        options.setdefault(name, {})["checkpoint"] = Path(path)
    for item in args.set or []:
        name, value = _engine_setting(item)
        options.setdefault(name[0], {})[name[1]] = value
    if args.max_bars is not None and args.max_bars < 1:
        raise OptionError("--max-bars must be at least 1")
    controls = [parse_control(c) for c in args.control or []]
    engines = check_engines(args.engine, options)
    stems = [check_stem(s) for s in args.stems.split(",") if s.strip()]
    command = "midiarr " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "eval" in sys.argv[1:] else ""
    shared = {
        "split": args.split,
        "limit": args.limit,
        "seed": args.seed,
        "progress": not args.quiet,
        "engine_options": options,
        "max_bars": args.max_bars,
        "timing": args.timing,
        "instructions": args.instructions,
    }
    if controls:  # measure the controls instead of the usual pass
        runs = [evaluate_control(engines, stems, args.data, attr, levels, **shared) for attr, levels in controls]
        paths = write_control_report(runs, args.output, command=command)
        for run in runs:
            _say(args, control_table(run["control"]))
        _say(args, f"wrote {len(paths)} files to {args.output} ({sum(len(r['failures']) for r in runs)} failures)")
        return 0
    result = evaluate(engines, stems, args.data, **shared)
    paths = write_report(result, args.output, command=command)
    _say(args, markdown_table(result["aggregate"]))
    _say(args, f"wrote {len(paths)} files to {args.output} ({len(result['failures'])} failures)")
    return 0


def cmd_eval_diffusion(args: argparse.Namespace) -> int:
    import shlex

    from midiarr.engines.diffusion import DiffusionEngine
    from midiarr.evaluation import diffusion_eval as D
    from midiarr.roles import check_stem

    if args.limit < 1 or args.max_bars < 2:
        raise OptionError("--limit must be at least 1 and --max-bars at least 2")
    try:
        guidances = [float(g) for g in args.guidance.split(",") if g.strip()]
    except ValueError:
        raise OptionError(f"--guidance {args.guidance!r}: expected numbers such as 0,1,2") from None
    if not guidances or min(guidances) < 0:
        raise OptionError(f"--guidance {args.guidance!r}: give one or more values of 0 or more")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    known = ("separation", "activity", "partial", "passes")
    if not parts or any(p not in known for p in parts):
        raise OptionError(f"--parts {args.parts!r}: choose from {', '.join(known)}")
    stems = [check_stem(s.strip(), ("bass", "drums", "guitar", "piano")) for s in args.stems.split(",") if s.strip()]
    settings: dict[str, Any] = {}
    for item in args.set or []:
        (owner, name), value = _engine_setting(item)
        if owner != "diffusion":
            raise OptionError(f"--set {item!r}: eval-diffusion takes diffusion.KEY=VALUE settings")
        settings[name] = value
    engine = DiffusionEngine(args.checkpoint, **settings)
    result: dict[str, Any] = {"split": args.split, "limit": args.limit, "max_bars": args.max_bars, "seed": args.seed}
    if "separation" in parts:
        cases = D.separation_cases(args.data, args.split, args.limit, args.max_bars)
        result["separation"] = D.evaluate_separation(engine, cases, guidances, args.seed)
        _say(
            args,
            "separation: "
            + ", ".join(f"{k} {v['note_accuracy']:.3f}" for k, v in result["separation"]["methods"].items()),
        )
    if "activity" in parts:
        for key, learned in (("activity", True), ("activity_engine", False)):
            result[key] = D.evaluate_activity(
                engine, args.data, args.split, stems, args.limit, args.max_bars, args.seed, learned=learned
            )
            who = "model alone" if learned else "engine"
            _say(args, f"activity F1 ({who}): " + ", ".join(f"{k} {v['f1']:.3f}" for k, v in result[key].items()))
    if "partial" in parts:
        result["partial_modes"] = D.evaluate_partial_modes(
            args.checkpoint, args.data, args.split, stems, args.limit, args.max_bars, args.seed
        )
    if "passes" in parts:
        order = [s for s in ("piano", "guitar", "bass", "drums") if s in stems] or ["piano", "bass", "drums"]
        result["passes"] = D.evaluate_passes(args.checkpoint, order, min(args.max_bars, 16), args.limit)
    command = "midiarr " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "eval-diffusion" in sys.argv else ""
    paths = D.write_diffusion_report(result, args.output, command)
    _say(args, f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from midiarr.prepare import prepare

    if args.workers is not None and args.workers < 1:
        raise OptionError("--workers must be at least 1")
    from midiarr.io.files import check_output_dir

    check_output_dir(args.output, args.data_dir)
    summary = prepare(args.data_dir, args.output, workers=args.workers, progress=not args.quiet, limit=args.limit)
    for line in summary.lines():
        _say(args, line)
    _say(args, f"wrote {args.output} (triplets.jsonl, index.jsonl, splits.json, errors.log)")
    return 0


def _check_training_options(args: argparse.Namespace) -> None:
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise OptionError("--max-minutes must be positive")
    if args.max_steps is not None and args.max_steps < 1:
        raise OptionError("--max-steps must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise OptionError("--threads must be at least 1")
    if getattr(args, "seed", None) is not None and args.seed < 0:
        raise OptionError("--seed must be 0 or more")


def _run_training(args: argparse.Namespace, train: Any, **extra: Any) -> dict[str, Any]:
    """Check the options every training command shares, then train with them."""
    _check_training_options(args)
    return train(
        args.data,
        args.output,
        config_path=args.config,
        max_minutes=args.max_minutes,
        max_steps=args.max_steps,
        limit=args.limit,
        init_from=args.init_from,
        threads=args.threads,
        log=lambda line: _say(args, line),
        **extra,
    )


def cmd_train_diffusion(args: argparse.Namespace) -> int:
    from midiarr.diffusion.train import train

    if not 0 <= args.workers <= 64:
        raise OptionError("--workers: choose from 0 (in-process) to 64 processes")
    result = _run_training(args, train, seed=args.seed, workers=args.workers)
    _say(
        args,
        f"wrote {args.output}: {result['parameters'] / 1e6:.2f}M parameters, {result['steps']} steps, "
        f"valid loss {result['valid_loss']:.5f}",
    )
    return 0


def cmd_train_player(args: argparse.Namespace) -> int:
    from midiarr.player.train import train_player

    paths = train_player(args.data, args.output, max_bars=args.max_bars, log=lambda m: _say(args, m))
    _say(args, f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def cmd_train_assign(args: argparse.Namespace) -> int:
    import shlex
    import sys

    import numpy as np
    from tqdm import tqdm

    from midiarr.diffusion.assign import CONTEXT_ONLY_HEAD, HeadConfig, save_head
    from midiarr.diffusion.train_assign import (
        NoteExamples,
        accuracy,
        collect_raw,
        examples_from_raw,
        fit_head,
        head_choice,
        load_raw,
        save_raw,
        write_log,
    )
    from midiarr.engines.diffusion import bundled_checkpoint
    from midiarr.evaluation.diffusion_eval import separation_cases

    if min(args.limit, args.epochs, args.hidden, args.jobs) < 1 or args.valid_limit < 0 or args.max_bars < 2:
        raise OptionError("--limit, --epochs, --hidden and --jobs must be at least 1, --max-bars at least 2")
    if args.guidance < 0:
        raise OptionError(f"--guidance {args.guidance}: must be 0 or more")
    if args.jobs > (os.cpu_count() or 1) or args.hidden > 1024 or args.epochs > 1000:
        raise OptionError(f"--jobs at most {os.cpu_count() or 1} (this machine's cores), --hidden 1024, --epochs 1000")
    checkpoint = args.checkpoint or bundled_checkpoint()
    out = args.output
    if out.exists() and not out.is_dir():
        raise OptionError(f"-o {out}: a file is there; give a folder for the head, its log and examples")
    out.mkdir(parents=True, exist_ok=True)
    made = {"checkpoint": str(checkpoint), "max_bars": args.max_bars, "guidance": args.guidance, "seed": args.seed}
    examples: dict[str, NoteExamples] = {}
    for split, limit in (("train", args.limit), ("valid", args.valid_limit)):
        path = out / f"examples-{split}.npz"
        stamp = out / f"examples-{split}.json"
        wanted = {**made, "split": split, "limit": limit}
        if args.reuse and path.is_file() and stamp.is_file() and json.loads(stamp.read_text("utf-8")) == wanted:
            examples[split] = examples_from_raw(load_raw(path))
            _say(args, f"{split}: reusing {len(examples[split])} notes from {path}")
            continue
        if limit == 0:
            continue
        cases = separation_cases(args.data, split, limit, args.max_bars)
        if not cases:
            raise MidiarrError(f"{args.data}: no {split} song has two or more of bass, guitar and piano")
        _say(args, f"{split}: separating {len(cases)} songs with {checkpoint}")
        with tqdm(total=len(cases), desc=split, unit="song", disable=getattr(args, "quiet", False)) as bar:
            raw = collect_raw(checkpoint, cases, args.guidance, args.seed, args.jobs, lambda done, total: bar.update(1))
        save_raw(raw, path)
        stamp.write_text(json.dumps(wanted), encoding="utf-8")
        examples[split] = examples_from_raw(raw)
    train, valid = examples["train"], examples.get("valid")
    entries: list[dict[str, Any]] = []
    heads = {}
    for name, uses in (("head", True), ("context-only", False)):
        config = HeadConfig(hidden=args.hidden, use_stem_features=uses)
        heads[name] = fit_head(
            train,
            valid,
            config,
            epochs=args.epochs,
            seed=args.seed,
            log=lambda e, name=name: entries.append({"head": name, **e}),
        )
    scores: dict[str, Any] = {}
    if valid is not None:
        scores = {
            "pitch-range split": accuracy(valid.pitch_range, valid),
            "diffusion, plain rule": accuracy(valid.plain, valid),
            "diffusion + head": accuracy(head_choice(heads["head"], valid), valid),
            "head without diffusion (context only)": accuracy(head_choice(heads["context-only"], valid), valid),
        }
        entries.append({"valid_scores": scores})
    write_log(out / "assign_log.jsonl", entries)
    meta = {
        "command": "midiarr " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train-assign"] else None,
        "diffusion_checkpoint": "bundled" if args.checkpoint is None else str(checkpoint),
        "data": {
            "train_songs": len(np.unique(train.song)),
            "train_notes": len(train),
            "valid_songs": len(np.unique(valid.song)) if valid is not None else 0,
            "split": "train (fit), valid (scores); the test split is never read",
            "max_bars": args.max_bars,
        },
        "training": {"epochs": args.epochs, "seed": args.seed, "guidance": args.guidance},
        "valid_scores": scores,
    }
    save_head(heads["head"], out, meta)
    save_head(heads["context-only"], out, meta, name=CONTEXT_ONLY_HEAD)
    for name, score in scores.items():
        _say(args, f"valid {name}: note accuracy {score['note_accuracy']:.3f}, per song {score['song_accuracy']:.3f}")
    _say(args, f"wrote {out / 'assign.safetensors'}")
    return 0


def cmd_train_transformer(args: argparse.Namespace) -> int:
    from midiarr.transformer.train import train

    result = _run_training(args, train, seed=args.seed)
    _say(
        args,
        f"wrote {args.output}: {result['parameters'] / 1e6:.2f}M parameters, {result['steps']} steps, "
        f"valid loss {result['valid_loss']:.4f} (perplexity {result['valid_perplexity']:.2f})",
    )
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
        require_roles=tuple(args.require_roles),
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


def _role_list(text: str) -> tuple[str, ...]:
    from midiarr.roles import ROLES

    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in ROLES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown role {', '.join(unknown) or text!r}; roles: {', '.join(ROLES)}")
    return names


# -------------------------------------------------------------------- parser
def _default_engine() -> str:
    """The engine `insert` uses unless told: the stem transformer, since it meets the quality bar on the
    test split (docs/evaluation.md, "Drums: stacked hits, a conservative kit and a consensus take")."""
    return "transformer"


def _add_control_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--instruction", help='free text, e.g. "busy syncopated bass, soft"')
    p.add_argument("--density", choices=["sparse", "medium", "busy"])
    p.add_argument("--dynamics", choices=["soft", "medium", "loud"])
    p.add_argument("--rhythm", choices=["straight", "syncopated"])
    p.add_argument("--register", choices=["low", "mid", "high"])
    p.add_argument("--polyphony", choices=["single", "chords"], help="single notes (arpeggios) or chords")
    p.add_argument(
        "--no-touch",
        dest="touch",
        action="store_false",
        help="keep the engine's own velocities (default: accents and ghost notes as real players of the stem play)",
    )
    p.add_argument(
        "--temperature",
        type=float_in(0, 10, low_open=True),
        help="transformer sampling temperature (default from its config)",
    )
    p.add_argument(
        "--top-p",
        type=float_in(0, 1, low_open=True),
        help="transformer nucleus sampling mass (default from its config)",
    )
    p.add_argument(
        "--candidates", type=int_in(1, 64), help="transformer: sample N takes per window and keep one (--pick)"
    )
    p.add_argument(
        "--pick",
        choices=["likelihood", "consensus"],
        help="transformer: keep the likeliest take or the one most like the others (default from its config)",
    )
    p.add_argument(
        "--harmony-weight",
        type=float_in(0, 100),
        help="transformer, diffusion: pull toward the song's chord tones (0 = the model alone)",
    )
    p.add_argument("--root-weight", type=float_in(0, 100), help="transformer: a further pull toward the chord's root")
    p.add_argument(
        "--sync-weight",
        type=float_in(0, 100),
        help="transformer, diffusion: pull onsets onto the other parts' onsets (0 = off)",
    )
    p.add_argument(
        "--control-weight",
        type=float_in(0, 100),
        help="transformer: pull toward the asked density and dynamics (0 = off)",
    )
    p.add_argument("--checkpoint", type=Path, help="model checkpoint folder (default: the engine's bundled weights)")
    p.add_argument("--steps", type=int_in(1, 1000), help="diffusion: sampling steps (default from its config)")
    p.add_argument("--scheduler", choices=["ddim", "dpm"], help="diffusion: sampler (default from its config)")
    p.add_argument(
        "--partial",
        choices=["conditional", "repaint"],
        help="diffusion: given stems enter clean (conditional) or are re-noised each step (repaint)",
    )
    p.add_argument("--passes", choices=["1", "2", "k"], help="diffusion, several stems: one pass, two, or one per stem")


def _add_notation_args(p: argparse.ArgumentParser, chord_symbols: bool) -> None:
    """Options for MusicXML output (ignored for .mid)."""
    from midiarr.io.notation import GRIDS, MAX_VOICES

    g = p.add_argument_group("MusicXML output")
    g.add_argument(
        "--notation-grid",
        choices=GRIDS,
        default="16t",
        help="grid notes are written on: straight 8ths, 16ths or 32nds; 16t: 16ths, or eighth triplets in "
        "a beat whose notes sit on them (default 16t)",
    )
    g.add_argument(
        "--voices",
        type=int_in(1, MAX_VOICES),
        default=MAX_VOICES,
        help=f"most voices on one staff (default {MAX_VOICES}, what MuseScore holds)",
    )
    g.add_argument(
        "--no-merge-voices",
        action="store_true",
        help="give every overlapping note its own voice (default: a short legato overlap is trimmed instead)",
    )
    if chord_symbols:
        g.add_argument(
            "--no-chord-symbols", action="store_true", help="leave out the chord symbols written above new parts"
        )


def _notation_options(args: argparse.Namespace) -> Any:
    from midiarr.io.notation import NotationOptions

    return NotationOptions(
        grid=args.notation_grid,
        max_voices=args.voices,
        merge_voices=not args.no_merge_voices,
        chord_symbols=not getattr(args, "no_chord_symbols", False),
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(prog="midiarr", description="MIDI arrangement engine: write the missing stem of a song.")
    parser.add_argument("--version", action="version", version=f"midiarr {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and requested data")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the libraries' warnings")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print only errors")
        p.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="also show the libraries' warnings"
        )
        return p

    role_help = "override a track's role, e.g. --role 3=bass (repeatable; track numbers as in `midiarr stems`)"

    p = add("convert", "Convert between MIDI (.mid) and MusicXML (.musicxml, .mxl, .xml) by file extension.")
    p.add_argument("input", type=Path, help="song to read")
    p.add_argument("-o", "--output", type=Path, required=True, help="file to write; its extension picks the format")
    p.add_argument("--force", action="store_true", help="allow the output to be the input file")
    p.add_argument("--mkdir", action="store_true", help="create the output's folder if it is missing")
    _add_notation_args(p, chord_symbols=False)
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
    p.add_argument("--mkdir", action="store_true", help="create the output folders if they are missing")
    p.set_defaults(func=cmd_subtract)

    p = add("insert", "Write a missing stem into a song with an engine; the other tracks are kept exactly.")
    p.add_argument("file", type=Path)
    p.add_argument("--stem", required=True, help="bass, drums, guitar, piano or strings; several as bass,drums")
    p.add_argument("-o", "--output", type=Path, required=True, help="the song with the new part (.mid or MusicXML)")
    p.add_argument("--engine", default=_default_engine(), help="which engine writes the part (default: %(default)s)")
    _add_control_options(p)
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
    p.add_argument("--donor", action="append", type=Path, help="donor song for --engine borrow (repeatable)")
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
    _add_notation_args(p, chord_symbols=True)
    p.set_defaults(func=cmd_insert)

    p = add("generate", "Write a new song from nothing: the stems named, each hearing the ones before it.")
    p.add_argument("--stems", default="piano,bass,drums", help="comma-separated stems (default piano,bass,drums)")
    p.add_argument("--bars", type=int_in(1, 2000), default=16, help="length in bars (default 16)")
    p.add_argument("--tempo", type=float_in(20, 400), default=120.0, help="quarter notes per minute (default 120)")
    p.add_argument("--meter", default="4/4", help="time signature (default 4/4)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the new song (.mid or MusicXML)")
    p.add_argument("--mkdir", action="store_true", help="create the output's folder if it is missing")
    p.add_argument(
        "--engine", default="transformer", help="engine (default transformer; rules cannot start from nothing)"
    )
    _add_control_options(p)
    p.add_argument("--seed", type=seed, default=0, help="same seed, same song")
    p.add_argument("--donor", action="append", type=Path, help=argparse.SUPPRESS)
    _add_notation_args(p, chord_symbols=True)
    p.set_defaults(func=cmd_generate)

    p = add("eval-diffusion", "Measure separation, activity control, partial modes and passes of the diffusion engine.")
    p.add_argument("--data", type=Path, required=True, help="a `midiarr prepare` cache")
    p.add_argument("--split", choices=["train", "valid", "test"], default="valid")
    p.add_argument("-o", "--output", type=output_folder, required=True, help="report folder")
    p.add_argument("--checkpoint", type=Path, help="diffusion checkpoint folder (default: the bundled weights)")
    p.add_argument("--stems", default="bass,drums,guitar", help="stems for activity and partial modes")
    p.add_argument("--limit", type=int_in(1, 10_000_000), default=12, help="songs per measurement (default 12)")
    p.add_argument(
        "--max-bars", type=int_in(1, 100_000), default=16, help="each song cut to its first N bars (default 16)"
    )
    p.add_argument("--guidance", default="0,1,2,4", help="guidance weights for separation (default 0,1,2,4)")
    p.add_argument("--parts", default="separation,activity,partial,passes", help="which measurements to run")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--set",
        action="append",
        metavar="diffusion.KEY=VALUE",
        help="a sampling setting instead of its default, e.g. diffusion.guidance=2 (repeatable)",
    )
    p.set_defaults(func=cmd_eval_diffusion)

    p = add("separate", "Split a flattened MIDI (pitched notes on one track) into bass, guitar and piano tracks.")
    p.add_argument("file", type=Path, help="the flattened song; drum tracks are kept as they are")
    p.add_argument("-o", "--output", type=Path, required=True, help="the song with one track per stem")
    p.add_argument("--stems", default="bass,guitar,piano", help="stems to split into (default bass,guitar,piano)")
    p.add_argument("--method", default="diffusion", help="diffusion (default) or pitch-range (the baseline)")
    p.add_argument(
        "--guidance", type=float_in(0, 100), help="classifier-free guidance on the mix (0 free ... >=1 follow it)"
    )
    p.add_argument("--steps", type=int_in(1, 1000), help="sampling steps (default from the model's config)")
    p.add_argument("--scheduler", choices=["ddim", "dpm"], help="sampler (default from the model's config)")
    p.add_argument("--checkpoint", type=Path, help="diffusion checkpoint folder (default: the bundled weights)")
    p.add_argument(
        "--assign",
        help="how notes pick their stem: head (default: the learned assignment head, when the checkpoint has "
        "one) or logits (the stem with the highest onset logit at the note)",
    )
    p.add_argument("--seed", type=seed, default=0, help="same seed, same split")
    p.add_argument("--force", action="store_true", help="allow the output to be the input file")
    p.add_argument("--mkdir", action="store_true", help="create the output's folder if it is missing")
    p.set_defaults(func=cmd_separate)

    p = add("serve", "Serve the HTTP API and the web page on this machine (loopback by default).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_in(0, 65535), default=8765, help="port (default 8765)")
    p.add_argument("--jobs", type=int_in(1, 64), default=1, help="jobs that run at once (default 1)")
    p.add_argument(
        "--max-upload-mb", type=float_in(0, 4096, low_open=True), default=20.0, help="largest upload in MB (default 20)"
    )
    p.set_defaults(func=cmd_serve)

    p = add(
        "eval", "Remove each stem from held-out songs, let engines write it back, and measure against the real part."
    )
    p.add_argument("--engine", action="append", required=True, help="engine to evaluate (repeatable)")
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="ENGINE=PATH",
        help="weights for a model engine instead of the bundled ones, e.g. diffusion=runs/diffusion (repeatable)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="ENGINE.KEY=VALUE",
        help="an engine setting instead of its default, e.g. transformer.harmony_weight=1.5 (repeatable)",
    )
    p.add_argument("--max-bars", type=int_in(1, 100_000), help="cut every song to its first N bars (all engines alike)")
    p.add_argument(
        "--timing",
        choices=TIMINGS,
        default="song",
        help="written parts on the other parts' micro-timing (song, as `insert` does) or on exact 16ths (grid)",
    )
    p.add_argument(
        "--instructions",
        choices=["triplet", "none"],
        default="triplet",
        help="what each part is asked for: triplet (the instruction written from the real part: its density, "
        "dynamics ...) or none (only the stem, as a user who names nothing; --control sets just its bin)",
    )
    p.add_argument("--stems", default="bass,drums,guitar", help="comma-separated stems (default bass,drums,guitar)")
    p.add_argument("--data", type=Path, required=True, help="a `midiarr prepare` cache")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test")
    p.add_argument("-o", "--output", type=output_folder, required=True, help="report folder (JSON, Markdown, PNG)")
    p.add_argument("--limit", type=int_in(1, 10_000_000), help="at most N parts per stem")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--control",
        action="append",
        metavar="ATTR=LEVEL,LEVEL,...",
        help="instead of the usual pass, write every part at each level (density=sparse,medium,busy or "
        "dynamics=soft,medium,loud) and report whether the measured notes / mean velocity rise in that order "
        "(repeatable)",
    )
    p.set_defaults(func=cmd_eval)

    p = add("prepare", "Build Subtractive Training triplets (full, without stem, instruction) from a folder.")
    p.add_argument("data_dir", type=Path, help="folder searched recursively for MIDI and MusicXML")
    p.add_argument("-o", "--output", type=output_folder, required=True, help="cache folder to write")
    p.add_argument("--workers", type=int_in(1, 256), default=None, help="processes (default: all cores)")
    p.add_argument(
        "--limit", type=int_in(1, 10_000_000), default=None, help="take only the first N files (sorted by path)"
    )
    p.set_defaults(func=cmd_prepare)

    sf_help = "default (FluidR3_GM when installed, else the embedded TimGM6mb), fluidr3, timgm, or an .sf2/.sf3 path"
    p = add("render", "Render a song to audio through a SoundFont: mix.wav, and with --stems one file per stem role.")
    p.add_argument("file", type=Path)
    p.add_argument("-o", "--output", type=output_folder, required=True, help="folder to write the audio files into")
    p.add_argument("--stems", action="store_true", help="also write one file per stem (bass.wav, drums.wav, ...)")
    p.add_argument("--soundfont", default=None, help=sf_help)
    p.add_argument("--sr", type=_sample_rate, default=44100, help="sample rate in Hz (default 44100)")
    p.add_argument("--format", choices=["wav", "flac"], default="wav")
    p.add_argument(
        "--loudness",
        type=float_in(-80, 0),
        metavar="DBFS",
        help="bring the mix to this RMS level (e.g. -20); one gain for all files keeps stems summing to it",
    )
    p.add_argument("--mono", action="store_true", help="write mono files")
    p.add_argument("--role", action="append", metavar="TRACK=ROLE", help=role_help)
    p.set_defaults(func=cmd_render)

    p = add("render-dataset", "Render a MIDI folder or a prepare cache into aligned stems + mix per song or clip.")
    p.add_argument("src", type=Path, help="a folder of MIDI/MusicXML files, or a `midiarr prepare` cache")
    p.add_argument("-o", "--output", type=output_folder, required=True, help="audio dataset folder (resumable)")
    p.add_argument("--sr", type=_sample_rate, default=16000, help="sample rate in Hz (default 16000)")
    p.add_argument(
        "--clip", type=float_in(0.1, 3600), metavar="SECONDS", help="cut each song into clips of this length"
    )
    p.add_argument("--soundfont", default=None, help=sf_help)
    p.add_argument("--format", choices=["wav", "flac"], default="wav")
    p.add_argument("--stereo", action="store_true", help="keep two channels (default: mono, as the audio models use)")
    p.add_argument("--split", choices=["train", "valid", "test"], help="render only this split")
    p.add_argument("--workers", type=int_in(1, 256), default=None, help="processes (default: all cores)")
    p.add_argument("--limit", type=int_in(1, 10_000_000), default=None, help="take only the first N songs")
    p.add_argument(
        "--require-roles",
        type=_role_list,
        default=(),
        metavar="ROLES",
        help="render only songs that have all these roles, e.g. bass,drums,guitar",
    )
    p.set_defaults(func=cmd_render_dataset)

    p = add("train-transformer", "Train the stem transformer on a prepare cache (train split; valid for validation).")
    p.add_argument("--data", type=Path, required=True, help="a `midiarr prepare` cache")
    p.add_argument(
        "-o", "--output", type=output_folder, required=True, help="checkpoint folder (safetensors, config, log)"
    )
    p.add_argument("--config", type=Path, help="model/training TOML (default: the bundled configs/transformer.toml)")
    p.add_argument(
        "--max-minutes", type=float_in(0, 1e6, low_open=True), help="wall-clock budget (overrides the config)"
    )
    p.add_argument("--max-steps", type=int_in(1, 10**9), help="optimizer steps (overrides the config)")
    p.add_argument("--limit", type=int_in(1, 10_000_000), help="use only the first N stems of each split (smoke runs)")
    p.add_argument("--init-from", type=Path, help="start from this checkpoint's weights (same network shape)")
    p.add_argument("--threads", type=int_in(1, 256), help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--seed", type=seed, help="seed of the start weights and training windows (default: the config's)")
    p.set_defaults(func=cmd_train_transformer)

    p = add("train-diffusion", "Train the piano-roll diffusion engine on a prepare cache (train split).")
    p.add_argument("--data", type=Path, required=True, help="a `midiarr prepare` cache")
    p.add_argument(
        "-o", "--output", type=output_folder, required=True, help="checkpoint folder (safetensors, config, log)"
    )
    p.add_argument("--config", type=Path, help="network/training TOML (default: the bundled configs/diffusion.toml)")
    p.add_argument(
        "--max-minutes", type=float_in(0, 1e6, low_open=True), help="wall-clock budget (overrides the config)"
    )
    p.add_argument("--max-steps", type=int_in(1, 10**9), help="optimizer steps (overrides the config)")
    p.add_argument("--limit", type=int_in(1, 10_000_000), help="use only the first N songs of each split (smoke runs)")
    p.add_argument("--threads", type=int_in(1, 256), help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--init-from", type=Path, help="start from this checkpoint's weights (same network)")
    p.add_argument("--seed", type=seed, help="seed of the start weights and training windows (default: the config's)")
    p.add_argument(
        "--workers",
        type=int_in(0, 64),
        default=0,
        help="processes drawing training windows (default 0: in-process; GPU: ~7)",
    )
    p.set_defaults(func=cmd_train_diffusion)

    p = add(
        "train-player",
        "Fit the player models (a stem's notes per bar from the song; accents and ghost notes) on a prepare cache.",
    )
    p.add_argument("--data", type=Path, required=True, help="a `midiarr prepare` cache (train to fit, valid to choose)")
    p.add_argument(
        "-o", "--output", type=output_folder, required=True, help="folder for density/density.json and touch/touch.json"
    )
    p.add_argument("--max-bars", type=int_in(1, 100_000), help="fit the density model on each song's first N bars")
    p.set_defaults(func=cmd_train_player)

    p = add("train-assign", "Train separation's note-assignment head on the diffusion engine's output (train split).")
    p.add_argument("--data", type=Path, required=True, help="a `midiarr prepare` cache")
    p.add_argument(
        "-o", "--output", type=output_folder, required=True, help="folder for assign.safetensors, assign.json, log"
    )
    p.add_argument("--checkpoint", type=Path, help="diffusion checkpoint to separate with (default: the bundled one)")
    p.add_argument("--limit", type=int_in(1, 10_000_000), default=700, help="train songs to learn from (default 700)")
    p.add_argument(
        "--valid-limit", type=int_in(0, 10_000_000), default=200, help="valid songs to score on (default 200; 0: none)"
    )
    p.add_argument(
        "--max-bars", type=int_in(1, 100_000), default=16, help="cut each song to its first N bars (default 16)"
    )
    p.add_argument("--guidance", type=float_in(0, 100), default=1.0, help="separation guidance weight (default 1)")
    p.add_argument("--epochs", type=int_in(1, 100_000), default=5, help="passes over the notes (default 5)")
    p.add_argument("--hidden", type=int_in(1, 4096), default=16, help="hidden width of the head (default 16)")
    p.add_argument("--jobs", type=int_in(1, 64), default=1, help="processes separating songs (default 1)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the sampler and the head (default 0)")
    p.add_argument("--reuse", action="store_true", help="reuse the examples a previous run left in -o")
    p.set_defaults(func=cmd_train_assign)

    p = add("tokenize", "Show a song's REMI tokens bar by bar.")
    p.add_argument("file", type=Path)
    p.add_argument("--config", type=Path, help="tokenizer TOML (default: the bundled configs/tokenizer.toml)")
    p.add_argument("--bars", type=int_in(1, 100_000), help="show only the first N bars")
    p.add_argument("--json", action="store_true", help="print token ids per bar as JSON")
    p.set_defaults(func=cmd_tokenize)

    from midiarr.audio.commands import register as register_audio

    register_audio(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "command", None):
        sys.stderr.write("midiarr: error: name a command, e.g. midiarr insert song.mid --stem bass -o out.mid "
                         "(see midiarr --help)\n")  # fmt: skip
        return EXIT_USAGE
    with warnings.catch_warnings():  # the filter holds for this command only (main may run in-process)
        # music21, diffusers and torch warn about things the user cannot act on; an error stays one line
        # (forked worker processes inherit the filter)
        warnings.simplefilter("default" if getattr(args, "verbose", False) else "ignore")
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """One parsed command, with every error the user can fix as one line on stderr."""
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
