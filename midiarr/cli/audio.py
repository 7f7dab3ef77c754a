"""The audio stem models' commands: `audio separate|insert|generate` and `arrange` (user commands, `register`);
`train-audio` and `eval-audio` (research commands, `register_lab`, listed with the lab group)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from midiarr.audio.tuned import (
    INSERT_ESTIMATOR,
    INSERT_GUIDANCE,
    INSERT_LEVEL,
    INSERT_LEVELS,
    MASKS,
    SEPARATION_ESTIMATOR,
    SEPARATION_GUIDANCE,
    VOCODERS,
)
from midiarr.cli.common import add_training_args, check_training_options, load_song_with_notes, say
from midiarr.errors import OptionError
from midiarr.options import float_in, int_in, output_folder, seed


def cmd_train_audio(args: argparse.Namespace) -> int:
    from midiarr.audio import train

    check_training_options(args)
    common = dict(config_path=args.config, max_minutes=args.max_minutes, max_steps=args.max_steps,
                  threads=args.threads, log=lambda line: say(args, line))  # fmt: skip
    if args.model == "vae":
        if args.init_from is not None:
            raise OptionError("train-audio vae takes no --init-from (a new VAE means new latents: retrain ldm/gmsdi)")
        result = train.train_vae(args.data, args.output, **common)
    elif args.model in ("masks", "vocoder"):
        from midiarr.audio import train_decoders

        if args.model == "masks":
            result = train_decoders.train_masks(args.data, args.output, args.ldm, init_from=args.init_from, **common)
        else:
            if args.vae is None:
                raise OptionError("train-audio vocoder needs --vae (the mel VAE whose decoded mels it vocodes)")
            result = train_decoders.train_vocoder(args.data, args.output, args.vae, init_from=args.init_from, **common)
    else:
        if args.vae is None:
            raise OptionError(f"train-audio {args.model} needs --vae (a trained mel VAE folder)")
        result = train.train_latent(args.model, args.data, args.output, args.vae, init_from=args.init_from, **common)
    say(args, f"wrote {args.output}: {result['parameters'] / 1e6:.2f}M parameters, {result['steps']} steps, "
               f"valid loss {result['valid_loss']:.5f}")  # fmt: skip
    return 0


def register_lab(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """train-audio and eval-audio."""
    p = add(
        "train-audio",
        "Train an audio stem model (mel VAE, stem LDM, GMSDI, mask decoder or vocoder) on a render-dataset folder.",
    )
    p.add_argument("model", choices=["vae", "ldm", "gmsdi", "masks", "vocoder"])
    add_training_args(
        p,
        "a `midiarr render-dataset --clip 4` folder",
        "TOML (default: the bundled configs/audio.toml)",
        "ldm/gmsdi/masks/vocoder: continue from this checkpoint's weights (same network)",
    )
    p.add_argument("--vae", type=Path, help="the trained mel VAE (ldm and gmsdi work in its latent space)")
    p.add_argument("--ldm", type=Path, help="masks: the stem LDM whose estimates it refines (default: bundled)")
    p.set_defaults(func=cmd_train_audio)
    _register_eval_audio(add)


def register(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """audio separate|insert|generate and arrange."""
    register_audio(add)
    register_arrange(add)


# ------------------------------------------------------------------ audio separate | insert | generate
def _check_sampling(args: argparse.Namespace) -> None:
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise OptionError("--steps must be within 1..1000")
    if getattr(args, "guidance", None) is not None and args.guidance < 0:
        raise OptionError("--guidance must be 0 or more")
    if getattr(args, "overlap", 0.5) is not None and not 0 <= args.overlap < 2.0:
        raise OptionError("--overlap must be within 0..2 seconds")


def _write(path: Path, wave: object, sr: int) -> Path:
    import numpy as np

    from midiarr.render.audio import write_audio

    data = np.asarray(wave, dtype=np.float32)[:, None]
    return write_audio(path, data, sr, fmt=path.suffix.lstrip(".") or "wav", bits=16)


def _check_not_input(src: Path, out: Path) -> None:
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise OptionError(f"{out}: the output would overwrite the input")


def _stems_arg(text: str) -> list[str]:
    from midiarr.audio.pipeline import stem_indices

    names = [s.strip() for s in text.split(",") if s.strip()]
    stem_indices(names)
    if len(set(names)) != len(names):
        raise OptionError(f"--stems {text}: a stem is named twice")
    return names


def cmd_audio_separate(args: argparse.Namespace) -> int:
    from midiarr.audio.data import STEMS
    from midiarr.audio.io import read_audio
    from midiarr.audio.pipeline import process_file

    _check_sampling(args)
    stems = _stems_arg(args.stems) if args.stems else list(STEMS)
    if args.output.exists() and not args.output.is_dir():
        raise OptionError(f"-o {args.output}: not a folder")
    pipe = _load_pipeline(args.method, args.checkpoint)
    wave = read_audio(args.file, pipe.spec.sr)
    steps = args.steps or 25
    if args.method == "ldm":
        estimator = args.estimator or SEPARATION_ESTIMATOR
        guidance = SEPARATION_GUIDANCE[estimator] if args.guidance is None else args.guidance
        masks = args.masks or "decoder"
        if args.masks == "decoder" and pipe.masks is None:
            raise OptionError("--masks decoder: no mask decoder was trained on this stem LDM (`train-audio masks`)")
        fn = lambda x, j: pipe.separate_clips(x, steps, guidance, args.seed + j, estimator, masks)["waves"]  # noqa: E731
    else:
        if args.guidance is not None or args.estimator is not None or args.masks is not None:
            raise OptionError("--guidance/--estimator/--masks apply to --method ldm (GMSDI couples to the mix instead)")
        fn = lambda x, j: pipe.separate_clips(x, steps, seed=args.seed + j)["waves"]  # noqa: E731
    out = process_file(wave, pipe.spec.clip_samples, int(args.overlap * pipe.spec.sr), fn,
                       progress=not args.quiet, desc="separate")  # fmt: skip
    for k, stem in enumerate(STEMS):
        if stem in stems:
            path = _write(args.output / f"{stem}.wav", out[k].numpy(), pipe.spec.sr)
            say(args, f"wrote {path}")
    return 0


def cmd_audio_insert(args: argparse.Namespace) -> int:
    from midiarr.audio.io import read_audio
    from midiarr.audio.pipeline import process_file

    _check_sampling(args)
    stems = _stems_arg(args.stem)
    _check_not_input(args.file, args.output)
    if args.mix is not None:
        _check_not_input(args.file, args.mix)
    pipe = _load_pipeline(args.method, args.checkpoint)
    wave = read_audio(args.file, pipe.spec.sr)
    steps = args.steps or 25
    vocoder = _vocoder(args, pipe)
    if args.method == "ldm":
        guidance = INSERT_GUIDANCE if args.guidance is None else args.guidance
        estimator = args.estimator or INSERT_ESTIMATOR
        fn = lambda x, j: pipe.insert_clips(x, stems, steps, guidance, args.seed + j, vocoder=vocoder,  # noqa: E731
                                            estimator=estimator, level=args.level)["waves"]  # fmt: skip
    else:
        if args.guidance is not None:
            raise OptionError("--guidance applies to --method ldm")
        if args.estimator is not None:
            raise OptionError("--estimator applies to --method ldm")
        fn = lambda x, j: pipe.insert_clips(x, stems, steps, seed=args.seed + j, vocoder=vocoder,  # noqa: E731
                                            level=args.level)["waves"]  # fmt: skip
    out = process_file(wave, pipe.spec.clip_samples, int(args.overlap * pipe.spec.sr), fn,
                       progress=not args.quiet, desc="insert")  # fmt: skip
    written = out.sum(dim=0)
    say(args, f"wrote {_write(args.output, written.numpy(), pipe.spec.sr)}: {', '.join(stems)}")
    if args.mix is not None:
        say(args, f"wrote {_write(args.mix, (wave + written).numpy(), pipe.spec.sr)}: the input with it")
    return 0


def cmd_audio_generate(args: argparse.Namespace) -> int:
    import torch

    from midiarr.audio.pipeline import StemLDMPipeline, process_file

    _check_sampling(args)
    stems = _stems_arg(args.stems)
    if not 1 <= args.seconds <= 600:
        raise OptionError("--seconds must be within 1..600")
    if args.output.exists() and not args.output.is_dir():
        raise OptionError(f"-o {args.output}: not a folder")
    pipe = StemLDMPipeline.load(args.checkpoint)
    steps = args.steps or 25
    length = int(args.seconds * pipe.spec.sr)
    vocoder = _vocoder(args, pipe)

    def fn(x: torch.Tensor, j: int) -> torch.Tensor:
        return pipe.generate_clips(len(x), stems, steps, args.seed + j, vocoder=vocoder)["waves"]

    out = process_file(torch.zeros(length), pipe.spec.clip_samples, int(args.overlap * pipe.spec.sr), fn,
                       progress=not args.quiet, desc="generate")  # fmt: skip
    for k, stem in enumerate(stems):
        say(args, f"wrote {_write(args.output / f'{stem}.wav', out[k].numpy(), pipe.spec.sr)}")
    say(args, f"wrote {_write(args.output / 'mix.wav', out.sum(dim=0).numpy(), pipe.spec.sr)}")
    return 0


def _vocoder(args: argparse.Namespace, pipe: object) -> str:
    """The vocoder asked for: the trained one by default where there is one, else Griffin-Lim."""
    if args.vocoder == "neural" and getattr(pipe, "vocoder", None) is None:
        raise OptionError("--vocoder neural: no vocoder for these mels (`train-audio vocoder`); use griffin-lim")
    if args.vocoder is not None:
        return str(args.vocoder)
    return "neural" if getattr(pipe, "vocoder", None) is not None else "griffin-lim"


def _load_pipeline(method: str, checkpoint: Path | None) -> object:
    from midiarr.audio.gmsdi import GMSDIPipeline
    from midiarr.audio.pipeline import StemLDMPipeline

    return StemLDMPipeline.load(checkpoint) if method == "ldm" else GMSDIPipeline.load(checkpoint)


def cmd_eval_audio(args: argparse.Namespace) -> int:
    import json

    from midiarr.audio.evaluate import evaluate_audio

    _check_sampling(args)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    known = ("separation", "insertion", "generation", "vocoder")
    bad = [p for p in parts if p not in known]
    if bad or not parts:
        raise OptionError(f"--parts {args.parts}: choose from {', '.join(known)}")
    if args.limit < 2:
        raise OptionError("--limit must be at least 2")
    if args.generation_eta is not None and not 0 <= args.generation_eta <= 1:
        raise OptionError("--generation-eta must be within 0..1")
    report = evaluate_audio(
        args.data, args.split, args.ldm, args.gmsdi, limit=args.limit, steps=args.steps or 25,
        estimator=args.estimator, guidance=args.guidance, generation_eta=args.generation_eta,
        insert_guidance=INSERT_GUIDANCE if args.insert_guidance is None else args.insert_guidance,
        insert_estimator=args.insert_estimator or INSERT_ESTIMATOR, insert_level=args.level,
        seed=args.seed, parts=parts,
        log=lambda line: say(args, line),
    )  # fmt: skip
    text = json.dumps(report, indent=1)
    if args.output:
        from midiarr.io import atomic_write_text

        atomic_write_text(args.output, text + "\n")
        say(args, f"wrote {args.output}")
    print(text)
    return 0


def _sampling_options(p: argparse.ArgumentParser, guidance: bool = True) -> None:
    p.add_argument("--steps", type=int_in(1, 1000), help="DDIM steps (default 25)")
    if guidance:
        p.add_argument(
            "--guidance",
            type=float_in(0, 100),
            help="classifier-free guidance on the given audio (default: "
            f"{SEPARATION_GUIDANCE} to separate by estimator, {INSERT_GUIDANCE} to insert)",
        )
    p.add_argument("--seed", type=seed, default=0, help="same seed, same output")
    p.add_argument("--overlap", type=float_in(0, 3.5), default=0.5, help="seconds shared by neighbouring 4 s windows")


def _estimator_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--estimator", choices=list(SEPARATION_GUIDANCE),
                   help=f"separation by the stem LDM: mean (its posterior-mean estimate, one model call) or sample "
                        f"(a DDIM draw); default {SEPARATION_ESTIMATOR}")  # fmt: skip


def _level_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--level",
        choices=list(INSERT_LEVELS),
        default=INSERT_LEVEL,
        help="an inserted stem's level: song (set against the rest of the song, as real parts sit under it; "
        "the default) or model (as the model wrote it)",
    )


def _vocoder_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vocoder", choices=list(VOCODERS),
                   help="how the written mels become audio: neural (the vocoder trained here; the default where "
                        "there is one) or griffin-lim")  # fmt: skip


def register_audio(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = add("audio", "Audio stem models: separate a mix, insert a stem into audio, generate stems.")
    sub = p.add_subparsers(dest="audio_command", metavar="ACTION", parser_class=type(p))
    sub.required = True

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print only errors")
        return q

    q = action("separate", "Split a mix (WAV/FLAC) into bass, drums, guitar and piano stems.")
    q.add_argument("file", type=Path)
    q.add_argument("-o", "--output", type=output_folder, required=True, help="folder for <stem>.wav")
    q.add_argument("--stems", help="comma-separated subset to write (default: all four)")
    q.add_argument("--method", choices=["ldm", "gmsdi"], default="ldm",
                   help="ldm: the stem-trained latent diffusion model; gmsdi: the mixture-trained one")  # fmt: skip
    q.add_argument("--checkpoint", type=Path, help="model folder (default: the bundled weights)")
    _estimator_option(q)
    q.add_argument("--masks", choices=list(MASKS),
                   help="ldm: decoder (masks at the STFT's resolution from the mask decoder trained on this LDM; "
                        "the default where there is one) or mel (ratio masks of the estimated mels)")  # fmt: skip
    _sampling_options(q)
    q.set_defaults(func=cmd_audio_separate)

    q = action("insert", "Write a missing stem for audio of a song without it.")
    q.add_argument("file", type=Path, help="the song without the stem (WAV/FLAC)")
    q.add_argument("--stem", required=True, help="bass, drums, guitar or piano (comma-separated for several)")
    q.add_argument("-o", "--output", type=Path, required=True, help="WAV of the new stem")
    q.add_argument("--mix", type=Path, help="also write the input with the new stem added")
    q.add_argument("--method", choices=["ldm", "gmsdi"], default="ldm")
    q.add_argument("--checkpoint", type=Path, help="model folder (default: the bundled weights)")
    q.add_argument("--estimator", choices=list(SEPARATION_GUIDANCE),
                   help=f"ldm: mean (the posterior mean, one model call) or sample (a DDIM draw of --steps steps); "
                        f"default {INSERT_ESTIMATOR}")  # fmt: skip
    _level_option(q)
    _vocoder_option(q)
    _sampling_options(q)
    q.set_defaults(func=cmd_audio_insert)

    q = action("generate", "Generate stems from nothing (total generation).")
    q.add_argument("--stems", default="bass,drums,guitar,piano", help="comma-separated stems")
    q.add_argument("--seconds", type=float_in(0.1, 600), default=8.0)
    q.add_argument("-o", "--output", type=output_folder, required=True, help="folder for <stem>.wav and mix.wav")
    q.add_argument("--checkpoint", type=Path, help="stem LDM folder (default: the bundled weights)")
    _vocoder_option(q)
    _sampling_options(q, guidance=False)
    q.set_defaults(func=cmd_audio_generate)


def _register_eval_audio(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = add("eval-audio", "Separation, insertion and generation numbers of the audio models on a rendered split.")
    p.add_argument("--data", type=Path, required=True, help="a `midiarr render-dataset --clip 4` folder")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test")
    p.add_argument("--ldm", type=Path, help="stem LDM folder (default: bundled)")
    p.add_argument("--gmsdi", type=Path, help="GMSDI folder (default: bundled, when there is one)")
    p.add_argument("--parts", default="separation,insertion,generation,vocoder")
    p.add_argument(
        "--limit", type=int_in(1, 10_000_000), default=48, help="clips drawn from the split (with 2+ stems sounding)"
    )
    p.add_argument("-o", "--output", type=Path, help="also write the report as JSON here")
    p.add_argument(
        "--insert-guidance", type=float_in(0, 100), help=f"guidance for insertion (default {INSERT_GUIDANCE})"
    )
    p.add_argument(
        "--insert-estimator",
        choices=list(SEPARATION_GUIDANCE),
        help=f"insertion: sample (a DDIM draw) or mean (the posterior mean); default {INSERT_ESTIMATOR}",
    )
    p.add_argument("--generation-eta", type=float_in(0, 1), help="DDIM eta of total generation (0..1; default tuned)")
    _level_option(p)
    _estimator_option(p)
    _sampling_options(p)
    p.set_defaults(func=cmd_eval_audio)


# ------------------------------------------------------------------ arrange: the whole chain
def cmd_arrange(args: argparse.Namespace) -> int:
    """Symbolic insertion -> render through the SoundFont -> (with --audio) the audio models write the stem too."""
    import torch

    from midiarr.audio.data import STEMS
    from midiarr.audio.io import resample
    from midiarr.audio.pipeline import process_file
    from midiarr.engines import Controls, get_engine
    from midiarr.io import save
    from midiarr.render import render, render_to_dir
    from midiarr.roles import check_stem

    stems = [check_stem(s.strip()) for s in args.stem.split(",") if s.strip()]
    if not stems or len(set(stems)) != len(stems):
        raise OptionError(f"--stem {args.stem}: name each stem once")
    if args.audio:
        unknown = [s for s in stems if s not in STEMS]
        if unknown:
            raise OptionError(f"--audio: the audio models write {', '.join(STEMS)}, not {', '.join(unknown)}")
    _check_sampling(args)
    if args.output.exists() and not args.output.is_dir():
        raise OptionError(f"-o {args.output}: not a folder")
    song = load_song_with_notes(args.file)
    engine = get_engine(args.engine)
    result = engine.insert_stems(song, stems, Controls.build(args.instruction), seed=args.seed, replace=args.replace)
    out_dir = args.output
    save(result.song, out_dir / "song.mid")
    say(args, f"wrote {out_dir / 'song.mid'}: {', '.join(stems)} by {engine.name}")
    files = render_to_dir(result.song, out_dir, soundfont=args.soundfont, sr=44100, stems=True)
    say(args, f"rendered {', '.join(sorted(files))} into {out_dir}")
    if not args.audio:
        return 0
    pipe = _load_pipeline(args.method, args.checkpoint)
    sr = pipe.spec.sr
    audio = render(result.song, args.soundfont, 44100, stems=True)
    mono = {name: torch.from_numpy(a.mean(axis=1)) for name, a in audio.items()}
    partial = mono["mix"] - sum(mono[s] for s in stems if s in mono)
    partial = resample(partial, 44100, sr)
    steps = args.steps or 25
    guidance = INSERT_GUIDANCE if args.guidance is None else args.guidance

    def fn(x: torch.Tensor, j: int) -> torch.Tensor:
        if args.method == "ldm":
            return pipe.insert_clips(x, stems, steps, guidance, args.seed + j)["waves"]
        return pipe.insert_clips(x, stems, steps, seed=args.seed + j)["waves"]

    written = process_file(partial, pipe.spec.clip_samples, int(args.overlap * sr), fn,
                           progress=not args.quiet, desc="audio insert")  # fmt: skip
    for k, stem in enumerate(stems):
        say(args, f"wrote {_write(out_dir / f'audio_{stem}.wav', written[k].numpy(), sr)}: {stem} by the audio model")
    say(args, f"wrote {_write(out_dir / 'audio_mix.wav', (partial + written.sum(dim=0)).numpy(), sr)}")
    return 0


def register_arrange(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = add("arrange", "Insert a stem into a MIDI song, render it, and with --audio let the audio models write it too.")
    p.add_argument("file", type=Path, help="MIDI or MusicXML song")
    p.add_argument("--stem", required=True, help="stems to write, e.g. bass or bass,drums")
    p.add_argument(
        "-o", "--output", type=output_folder, required=True, help="folder: song.mid, mix.wav, <role>.wav, audio_*"
    )
    p.add_argument("--engine", default="rules", help="symbolic engine (default: %(default)s)")
    p.add_argument("--instruction", help='free text such as "busy syncopated bass, soft"')
    p.add_argument("--soundfont", default=None, help="SoundFont (default as in `render`)")
    p.add_argument("--audio", action="store_true", help="also write audio_<stem>.wav with the audio stem models")
    p.add_argument("--method", choices=["ldm", "gmsdi"], default="ldm", help="audio model for --audio")
    p.add_argument("--checkpoint", type=Path, help="audio model folder (default: the bundled weights)")
    p.add_argument("--replace", action="store_true", help="replace the song's own part of the stem (default: stop)")
    _sampling_options(p)
    p.set_defaults(func=cmd_arrange)
