"""Research commands: build a corpus, train the models, measure the engines (not needed to use midiarr)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from midiarr.cli.common import (
    SOUNDFONT_HELP,
    add_training_args,
    engine_setting,
    role_list,
    run_training,
    sample_rate,
    say,
)
from midiarr.errors import OptionError
from midiarr.options import float_in, int_in, output_folder, seed
from midiarr.timing import TIMINGS


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
        name, value = engine_setting(item)
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
        "repeats": args.repeats,
    }
    if controls:  # measure the controls instead of the usual pass
        runs = [evaluate_control(engines, stems, args.data, attr, levels, **shared) for attr, levels in controls]
        paths = write_control_report(runs, args.output, command=command)
        for run in runs:
            say(args, control_table(run["control"]))
        say(args, f"wrote {len(paths)} files to {args.output} ({sum(len(r['failures']) for r in runs)} failures)")
        return 0
    result = evaluate(
        engines, stems, args.data, **shared, workers=args.workers, backend=args.backend, address=args.address
    )
    paths = write_report(result, args.output, command=command)
    say(args, markdown_table(result["aggregate"]))
    say(args, f"wrote {len(paths)} files to {args.output} ({len(result['failures'])} failures)")
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
        (owner, name), value = engine_setting(item)
        if owner != "diffusion":
            raise OptionError(f"--set {item!r}: eval-diffusion takes diffusion.KEY=VALUE settings")
        settings[name] = value
    engine = DiffusionEngine(args.checkpoint, **settings)
    result: dict[str, Any] = {"split": args.split, "limit": args.limit, "max_bars": args.max_bars, "seed": args.seed}
    if "separation" in parts:
        cases = D.separation_cases(args.data, args.split, args.limit, args.max_bars)
        result["separation"] = D.evaluate_separation(engine, cases, guidances, args.seed)
        say(
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
            say(args, f"activity F1 ({who}): " + ", ".join(f"{k} {v['f1']:.3f}" for k, v in result[key].items()))
    if "partial" in parts:
        result["partial_modes"] = D.evaluate_partial_modes(
            args.checkpoint, args.data, args.split, stems, args.limit, args.max_bars, args.seed
        )
    if "passes" in parts:
        order = [s for s in ("piano", "guitar", "bass", "drums") if s in stems] or ["piano", "bass", "drums"]
        result["passes"] = D.evaluate_passes(args.checkpoint, order, min(args.max_bars, 16), args.limit)
    command = "midiarr " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "eval-diffusion" in sys.argv else ""
    paths = D.write_diffusion_report(result, args.output, command)
    say(args, f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from midiarr.prepare import prepare

    if args.workers is not None and args.workers < 1:
        raise OptionError("--workers must be at least 1")
    from midiarr.io.files import check_output_dir

    check_output_dir(args.output, args.data_dir)
    summary = prepare(
        args.data_dir,
        args.output,
        workers=args.workers,
        progress=not args.quiet,
        limit=args.limit,
        backend=args.backend,
        address=args.address,
    )
    for line in summary.lines():
        say(args, line)
    say(args, f"wrote {args.output} (triplets.jsonl, index.jsonl, splits.json, errors.log)")
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
        backend=args.backend,
        address=args.address,
    )
    say(
        args,
        f"songs: {totals['songs']}  items written: {totals['items_written']}  "
        f"already done: {totals['songs_skipped_done']}  silent clips dropped: "
        f"{totals['silent_clips_dropped']}  errors: {totals['errors']}",
    )
    say(args, "active stems: " + ", ".join(f"{k} {v}" for k, v in sorted(totals["stems"].items())))
    return 0


def cmd_train_transformer(args: argparse.Namespace) -> int:
    from midiarr.transformer.train import train

    result = run_training(args, train, seed=args.seed)
    say(
        args,
        f"wrote {args.output}: {result['parameters'] / 1e6:.2f}M parameters, {result['steps']} steps, "
        f"valid loss {result['valid_loss']:.4f} (perplexity {result['valid_perplexity']:.2f})",
    )
    return 0


def cmd_train_diffusion(args: argparse.Namespace) -> int:
    from midiarr.diffusion.train import train

    if not 0 <= args.workers <= 64:
        raise OptionError("--workers: choose from 0 (in-process) to 64 processes")
    result = run_training(args, train, seed=args.seed, workers=args.workers)
    say(
        args,
        f"wrote {args.output}: {result['parameters'] / 1e6:.2f}M parameters, {result['steps']} steps, "
        f"valid loss {result['valid_loss']:.5f}",
    )
    return 0


def cmd_train_player(args: argparse.Namespace) -> int:
    from midiarr.player.train import train_player

    paths = train_player(args.data, args.output, max_bars=args.max_bars, log=lambda m: say(args, m))
    say(args, f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def cmd_eval_chords(args: argparse.Namespace) -> int:
    from midiarr.evaluation.chords_eval import evaluate_chords
    from midiarr.io import atomic_write_text
    from midiarr.roles import check_stem

    stems = tuple(check_stem(s.strip()) for s in args.stems.split(",") if s.strip())
    if not stems:
        raise OptionError("--stems: name at least one stem")
    report = evaluate_chords(
        args.data, args.split, args.limit, args.bars, stems, args.engine, args.seed, log=lambda line: say(args, line)
    )
    report["command"] = "midiarr " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["eval-chords"] else None
    atomic_write_text(args.output, json.dumps(report, indent=1))
    for key, s in report["summary"].items():
        say(args, f"{key}: median {s['median']:.3f} [{s['q25']:.3f}-{s['q75']:.3f}], mean {s['mean']:.3f}, n={s['n']}")
    say(args, f"wrote {args.output}")
    return 0


def cmd_eval_infill(args: argparse.Namespace) -> int:
    from midiarr.evaluation.infill_eval import evaluate_infill
    from midiarr.io import atomic_write_text
    from midiarr.roles import check_stem

    stems = tuple(check_stem(s.strip()) for s in args.stems.split(",") if s.strip())
    first, sep, last = args.span.partition("-")
    if not (first.isdigit() and last.isdigit() and sep) or not 1 <= int(first) <= int(last) <= args.bars:
        raise OptionError(f"--span {args.span}: give bars FIRST-LAST within the first --bars {args.bars}")
    report = evaluate_infill(
        args.data,
        args.split,
        args.limit,
        args.bars,
        (int(first), int(last)),
        stems,
        args.engine,
        args.tries,
        args.seed,
        log=lambda line: say(args, line),
    )
    report["command"] = "midiarr " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["eval-infill"] else None
    atomic_write_text(args.output, json.dumps(report, indent=1))
    for key, s in report["summary"].items():
        say(args, f"{key}: median {s['median']:.3f} [{s['q25']:.3f}-{s['q75']:.3f}], n={s['n']}")
    say(args, f"wrote {args.output}")
    return 0


def cmd_train_assign(args: argparse.Namespace) -> int:
    import shlex

    from midiarr.diffusion.train_assign import train_assign_head

    if min(args.limit, args.epochs, args.hidden, args.jobs) < 1 or args.valid_limit < 0 or args.max_bars < 2:
        raise OptionError("--limit, --epochs, --hidden and --jobs must be at least 1, --max-bars at least 2")
    if args.guidance < 0:
        raise OptionError(f"--guidance {args.guidance}: must be 0 or more")
    if args.jobs > (os.cpu_count() or 1) or args.hidden > 1024 or args.epochs > 1000:
        raise OptionError(f"--jobs at most {os.cpu_count() or 1} (this machine's cores), --hidden 1024, --epochs 1000")
    if args.output.exists() and not args.output.is_dir():
        raise OptionError(f"-o {args.output}: a file is there; give a folder for the head, its log and examples")
    command = "midiarr " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train-assign"] else None
    # the options go through under their own names
    same = ("checkpoint", "limit", "valid_limit", "max_bars", "guidance", "seed", "jobs", "hidden", "epochs", "reuse")
    scores = train_assign_head(
        args.data,
        args.output,
        **{name: getattr(args, name) for name in same},
        progress=not getattr(args, "quiet", False),
        log=lambda line: say(args, line),
        command=command,
    )
    for name, score in scores.items():
        say(args, f"valid {name}: note accuracy {score['note_accuracy']:.3f}, per song {score['song_accuracy']:.3f}")
    say(args, f"wrote {args.output / 'assign.safetensors'}")
    return 0


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """Where the work runs: local processes, or Ray tasks (a local instance, or a cluster's address)."""
    p.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="local: worker processes on this machine (default); ray: Ray tasks (pip install 'midiarr[scale]')",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="HOST:PORT",
        help="with --backend ray: the cluster to join (default: start Ray on this machine with --workers CPUs)",
    )


def register(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The lab commands (the audio models' train-audio and eval-audio among them)."""
    from midiarr.cli.audio import register_lab as register_audio_lab

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
    p.add_argument(
        "--no-repeats",
        dest="repeats",
        action="store_false",
        help="keep the engines' own bars where the song repeats itself (as `insert --no-repeats`)",
    )
    p.add_argument("--stems", default="bass,drums,guitar", help="comma-separated stems (default bass,drums,guitar)")
    p.add_argument("--data", type=Path, required=True, help="a `midiarr prepare` cache")
    p.add_argument(
        "--split",
        choices=["train", "valid", "test", "all"],  # prepare.SPLITS and ALL_SPLITS (not imported: CLI start-up)
        default="test",
        help="the cache's split to score (all: every song, for a cache of songs no model was trained on)",
    )
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
    p.add_argument("--workers", type=int_in(1, 256), default=1, help="processes scoring parts side by side (default 1)")
    add_backend_args(p)
    p.set_defaults(func=cmd_eval)

    p = add("eval-diffusion", "Measure separation, activity control, partial modes and passes of the diffusion engine.")
    p.add_argument("--data", type=Path, required=True, help="a `midiarr prepare` cache")
    p.add_argument(
        "--split",
        choices=["train", "valid", "test", "all"],  # prepare.SPLITS and ALL_SPLITS (not imported: CLI start-up)
        default="valid",
        help="the cache's split (all: every song, for a cache of songs no model was trained on)",
    )
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

    p = add("eval-chords", "Generate bands from the chord progressions of held-out songs and measure how they follow.")
    p.add_argument("--data", type=Path, required=True, help="a `midiarr prepare` cache")
    p.add_argument("--split", choices=["train", "valid", "test"], default="valid")
    p.add_argument("--limit", type=int_in(1, 100_000), default=40, help="songs (default 40)")
    p.add_argument("--bars", type=int_in(2, 256), default=16, help="bars of each progression (default 16)")
    p.add_argument("--stems", default="piano,bass,drums", help="stems to write (default piano,bass,drums)")
    p.add_argument("--engine", default="transformer", help="engine (default transformer)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("-o", "--output", type=Path, required=True, help="report (JSON)")
    p.set_defaults(func=cmd_eval_chords)

    p = add("eval-infill", "Take bars out of held-out real parts, infill them, and compare with the real bars.")
    p.add_argument("--data", type=Path, required=True, help="a `midiarr prepare` cache")
    p.add_argument("--split", choices=["train", "valid", "test"], default="valid")
    p.add_argument("--limit", type=int_in(1, 100_000), default=40, help="parts per stem (default 40)")
    p.add_argument("--bars", type=int_in(2, 256), default=16, help="bars of each song (default 16)")
    p.add_argument("--span", default="5-8", help="the bars redone, e.g. 5-8 (default)")
    p.add_argument("--stems", default="bass,drums,guitar", help="stems (default bass,drums,guitar)")
    p.add_argument("--engine", default="transformer", help="engine (default transformer)")
    p.add_argument("--tries", type=int_in(1, 16), default=4, help="tries per span, best seam kept (default 4)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("-o", "--output", type=Path, required=True, help="report (JSON)")
    p.set_defaults(func=cmd_eval_infill)

    p = add("prepare", "Build Subtractive Training triplets (full, without stem, instruction) from a folder.")
    p.add_argument("data_dir", type=Path, help="folder searched recursively for MIDI and MusicXML")
    p.add_argument("-o", "--output", type=output_folder, required=True, help="cache folder to write")
    p.add_argument("--workers", type=int_in(1, 256), default=None, help="processes (default: all cores)")
    p.add_argument(
        "--limit", type=int_in(1, 10_000_000), default=None, help="take only the first N files (sorted by path)"
    )
    add_backend_args(p)
    p.set_defaults(func=cmd_prepare)

    p = add("render-dataset", "Render a MIDI folder or a prepare cache into aligned stems + mix per song or clip.")
    p.add_argument("src", type=Path, help="a folder of MIDI/MusicXML files, or a `midiarr prepare` cache")
    p.add_argument("-o", "--output", type=output_folder, required=True, help="audio dataset folder (resumable)")
    p.add_argument("--sr", type=sample_rate, default=16000, help="sample rate in Hz (default 16000)")
    p.add_argument(
        "--clip", type=float_in(0.1, 3600), metavar="SECONDS", help="cut each song into clips of this length"
    )
    p.add_argument("--soundfont", default=None, help=SOUNDFONT_HELP)
    p.add_argument("--format", choices=["wav", "flac"], default="wav")
    p.add_argument("--stereo", action="store_true", help="keep two channels (default: mono, as the audio models use)")
    p.add_argument("--split", choices=["train", "valid", "test"], help="render only this split")
    p.add_argument("--workers", type=int_in(1, 256), default=None, help="processes (default: all cores)")
    p.add_argument("--limit", type=int_in(1, 10_000_000), default=None, help="take only the first N songs")
    p.add_argument(
        "--require-roles",
        type=role_list,
        default=(),
        metavar="ROLES",
        help="render only songs that have all these roles, e.g. bass,drums,guitar",
    )
    add_backend_args(p)
    p.set_defaults(func=cmd_render_dataset)

    p = add("train-transformer", "Train the stem transformer on a prepare cache (train split; valid for validation).")
    add_training_args(
        p,
        "a `midiarr prepare` cache",
        "model/training TOML (default: the bundled configs/transformer.toml)",
        "start from this checkpoint's weights (same network shape)",
    )
    p.add_argument("--limit", type=int_in(1, 10_000_000), help="use only the first N stems of each split (smoke runs)")
    p.add_argument("--seed", type=seed, help="seed of the start weights and training windows (default: the config's)")
    p.set_defaults(func=cmd_train_transformer)

    p = add("train-diffusion", "Train the piano-roll diffusion engine on a prepare cache (train split).")
    add_training_args(
        p,
        "a `midiarr prepare` cache",
        "network/training TOML (default: the bundled configs/diffusion.toml)",
        "start from this checkpoint's weights (same network)",
    )
    p.add_argument("--limit", type=int_in(1, 10_000_000), help="use only the first N songs of each split (smoke runs)")
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
    register_audio_lab(add)
