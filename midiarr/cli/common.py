"""What the command modules share: output, loading a song, engines and controls from options, option groups."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from midiarr.errors import EmptySongError, OptionError
from midiarr.options import float_in, int_in, output_folder
from midiarr.song import Song

MUSICXML_SUFFIXES = (".musicxml", ".mxl", ".xml")
SOUNDFONT_HELP = "default (FluidR3_GM when installed, else the embedded TimGM6mb), fluidr3, timgm, or an .sf2/.sf3 path"
ROLE_HELP = "override a track's role, e.g. --role 3=bass (repeatable; track numbers as in `midiarr stems`)"

ENGINE_OPTIONS_DEFAULT = "engine_option_flags"  # the namespace attribute: (option, flag) of each engine flag


def say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text)


def load_song_with_notes(path: Path) -> Song:
    """Load a song for a command that needs notes to work on."""
    from midiarr.io import load

    song = load(path)
    if song.note_count == 0:
        raise EmptySongError(f"{path}: the song has no notes")
    return song


def engine_from_args(args: argparse.Namespace, engine: str | None = None) -> Any:
    """The engine named by --engine (or ``engine``) with the options its flags set. The flags' names
    are the engine options they set (`engine_option`); which engine takes which option is the engine's
    own settings' business, and a flag given to an engine without that option is a usage error."""
    from midiarr.engines import get_engine
    from midiarr.engines.base import engine_options

    name = engine or args.engine
    flags = dict(getattr(args, ENGINE_OPTIONS_DEFAULT, ()))
    given = {option: getattr(args, option) for option in flags if getattr(args, option) is not None}
    if name in available_engine_names():
        wrong = [flags[option] for option in given if option not in engine_options(name)]
        if wrong:
            raise OptionError(f"{'/'.join(wrong)}: not an option of the {name} engine")
    return get_engine(name, **given)


def engine_option(group: Any, flag: str, option: str, **kwargs: Any) -> None:
    """Add ``flag`` to ``group`` as the engine option ``option`` (no default: the engine's own stands)."""
    group.add_argument(flag, dest=option, default=None, **kwargs)
    # an argument group shares its parser's defaults
    known = list(group.get_default(ENGINE_OPTIONS_DEFAULT) or [])
    group.set_defaults(**{ENGINE_OPTIONS_DEFAULT: (*known, (option, flag))})


def available_engine_names() -> list[str]:
    from midiarr.engines import available_engines

    return available_engines()


def controls_from_args(args: argparse.Namespace) -> Any:
    from midiarr.engines import Controls

    return Controls.build(
        args.instruction,
        density=args.density,
        dynamics=args.dynamics,
        rhythm=args.rhythm,
        register=args.register,
        polyphony=args.polyphony,
        touch=args.touch,
        repeats=args.repeats,
    )


def parse_meter(text: str) -> tuple[int, int]:
    num, sep, den = text.partition("/")
    if not sep or not num.isdigit() or not den.isdigit() or int(den) not in (2, 4, 8) or not 1 <= int(num) <= 12:
        raise OptionError(f"--meter {text!r}: expected e.g. 4/4, 3/4, 6/8 (denominator 2, 4 or 8)")
    return int(num), int(den)


def engine_setting(item: str) -> tuple[tuple[str, str], Any]:
    """``ENGINE.KEY=VALUE`` to ((engine, key), value) with the value in the option's type (the engine's own)."""
    from midiarr.engines.base import engine_option_types

    key, sep, raw = item.partition("=")
    engine, dot, name = key.partition(".")
    if not sep or not dot or engine not in available_engine_names():
        raise OptionError(
            f"--set {item!r}: expected ENGINE.KEY=VALUE, ENGINE one of {', '.join(available_engine_names())}"
        )
    types = engine_option_types(engine)
    kind = types.get(name)
    if kind is None:
        raise OptionError(
            f"--set {item!r}: the {engine} engine has no option {name!r} (it has: {', '.join(types) or 'none'})"
        )
    if kind is bool:
        if raw.lower() not in ("true", "false"):
            raise OptionError(f"--set {item!r}: {name} is true or false")
        return (engine, name), raw.lower() == "true"
    try:
        return (engine, name), kind(raw)
    except ValueError:
        raise OptionError(f"--set {item!r}: {name} needs {'an integer' if kind is int else 'a number'}") from None


def check_training_options(args: argparse.Namespace) -> None:
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise OptionError("--max-minutes must be positive")
    if args.max_steps is not None and args.max_steps < 1:
        raise OptionError("--max-steps must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise OptionError("--threads must be at least 1")
    if getattr(args, "seed", None) is not None and args.seed < 0:
        raise OptionError("--seed must be 0 or more")


def run_training(args: argparse.Namespace, train: Any, **extra: Any) -> dict[str, Any]:
    """Check the options every training command shares, then train with them."""
    check_training_options(args)
    return train(
        args.data,
        args.output,
        config_path=args.config,
        max_minutes=args.max_minutes,
        max_steps=args.max_steps,
        limit=args.limit,
        init_from=args.init_from,
        threads=args.threads,
        log=lambda line: say(args, line),
        **extra,
    )


def sample_rate(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"sample rate must be a whole number of Hz, got {text!r}") from None
    if not 8000 <= value <= 96000:
        raise argparse.ArgumentTypeError(f"sample rate {value} is outside 8000..96000 Hz")
    return value


def role_list(text: str) -> tuple[str, ...]:
    from midiarr.roles import ROLES

    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in ROLES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown role {', '.join(unknown) or text!r}; roles: {', '.join(ROLES)}")
    return names


def default_engine() -> str:
    """The engine `insert` uses unless told: the stem transformer, whose groove and onset sync lead every
    other engine's on every stem (docs/evaluation.md, "Current numbers")."""
    return "transformer"


def add_control_options(p: argparse.ArgumentParser) -> None:
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
        "--no-repeats",
        dest="repeats",
        action="store_false",
        help="keep the engine's own bars where the song repeats itself (default: a bar is played again where "
        "the rest of the band repeats it, as often as real players of the stem do)",
    )
    add_engine_options(p)


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """The engines' sampling flags; each names the engine option it sets."""
    g = p.add_argument_group("engine options (an engine refuses the ones it does not take)")
    engine_option(
        g,
        "--temperature",
        "temperature",
        type=float_in(0, 10, low_open=True),
        help="transformer sampling temperature (default from its checkpoint)",
    )
    engine_option(
        g,
        "--top-p",
        "top_p",
        type=float_in(0, 1, low_open=True),
        help="transformer nucleus sampling mass (default from its checkpoint)",
    )
    engine_option(
        g,
        "--candidates",
        "candidates",
        type=int_in(1, 64),
        help="transformer: sample N takes per window and keep one (--pick)",
    )
    engine_option(
        g,
        "--pick",
        "candidate_pick",
        choices=["likelihood", "consensus"],
        help="transformer: keep the likeliest take or the one most like the others (default from its checkpoint)",
    )
    engine_option(
        g,
        "--harmony-weight",
        "harmony_weight",
        type=float_in(0, 20),
        help="transformer, diffusion: pull toward the song's chord tones (0 = the model alone)",
    )
    engine_option(
        g,
        "--root-weight",
        "root_weight",
        type=float_in(0, 20),
        help="transformer, diffusion: a further pull toward the chord's root",
    )
    engine_option(
        g,
        "--sync-weight",
        "sync_weight",
        type=float_in(0, 20),
        help="transformer, diffusion: pull onsets onto the other parts' onsets (0 = off)",
    )
    engine_option(
        g,
        "--control-weight",
        "control_weight",
        type=float_in(0, 20),
        help="transformer: pull toward the asked density and dynamics (0 = off)",
    )
    engine_option(
        g,
        "--checkpoint",
        "checkpoint",
        type=Path,
        help="model checkpoint folder (default: the engine's bundled weights)",
    )
    add_diffusion_options(g)
    engine_option(
        g,
        "--partial",
        "partial",
        choices=["conditional", "repaint"],
        help="diffusion: given stems enter clean (conditional) or are re-noised each step (repaint)",
    )
    engine_option(
        g,
        "--passes",
        "passes",
        choices=["1", "2", "k"],
        help="diffusion, several stems: one pass, two, or one per stem",
    )
    engine_option(
        g,
        "--donor",
        "donors",
        action="append",
        type=Path,
        help="borrow: a donor song whose part is borrowed (repeatable)",
    )


def add_diffusion_options(g: Any) -> None:
    """The diffusion model's sampler flags, shared by the commands that write with it."""
    engine_option(
        g, "--steps", "steps", type=int_in(1, 1000), help="diffusion: sampling steps (default from its checkpoint)"
    )
    engine_option(
        g, "--scheduler", "scheduler", choices=["ddim", "dpm"], help="diffusion: sampler (default from its checkpoint)"
    )


def add_notation_args(p: argparse.ArgumentParser, chord_symbols: bool) -> None:
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


def notation_options(args: argparse.Namespace) -> Any:
    from midiarr.io.notation import NotationOptions

    return NotationOptions(
        grid=args.notation_grid,
        max_voices=args.voices,
        merge_voices=not args.no_merge_voices,
        chord_symbols=not getattr(args, "no_chord_symbols", False),
    )


def add_training_args(p: argparse.ArgumentParser, data_help: str, config_help: str, init_help: str) -> None:
    """The options every train-* command shares: data, output folder, config, budget, threads, warm start."""
    p.add_argument("--data", type=Path, required=True, help=data_help)
    p.add_argument(
        "-o", "--output", type=output_folder, required=True, help="checkpoint folder (safetensors, config, log)"
    )
    p.add_argument("--config", type=Path, help=config_help)
    p.add_argument(
        "--max-minutes", type=float_in(0, 1e6, low_open=True), help="wall-clock budget (overrides the config)"
    )
    p.add_argument("--max-steps", type=int_in(1, 10**9), help="optimizer steps (overrides the config)")
    p.add_argument("--threads", type=int_in(1, 256), help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--init-from", type=Path, help=init_help)
