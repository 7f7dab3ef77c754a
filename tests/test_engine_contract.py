"""The contract every registered engine keeps, run over all of them: the song's other parts are untouched, the
same seed gives the same part, the bars asked to stay silent stay silent, a bad option is a clean error, and a
one-bar song and a song with no pitched part both work."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from midiarr.engines import Controls, available_engines, get_engine
from midiarr.errors import InputError, MidiarrError, OptionError
from midiarr.fixtures import band_song
from midiarr.song import Song

ENGINES = available_engines()
STEMS = ("bass", "drums")
# what an engine needs to be built at all (the borrow engine borrows from donor songs)
NEEDS = {"borrow": lambda: {"donors": [band_song(bars=8)]}}


def _without(song: Song, stem: str) -> Song:
    from midiarr.roles import assign_roles

    roles = assign_roles(song)
    return song.with_tracks([t for i, t in enumerate(song.tracks) if roles.get(i) != stem])


def _insert(engine_name: str, song: Song, stem: str, seed: int = 0, active: np.ndarray | None = None):
    engine = get_engine(engine_name, **NEEDS.get(engine_name, dict)())
    return engine.insert(song, stem, Controls.build(None), active=active, seed=seed)


@pytest.fixture(scope="module")
def song() -> Song:
    return band_song(bars=4)


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("name", ENGINES)
def test_the_context_is_untouched_and_the_seed_decides(name: str, stem: str, song: Song) -> None:
    context = _without(song, stem)
    before = copy.deepcopy(context)
    first = _insert(name, context, stem, seed=3)
    assert context.tracks == before.tracks  # the input song object itself is not changed
    kept = [t for i, t in enumerate(first.song.tracks) if i not in first.new_tracks]
    assert kept == before.tracks  # every other part exactly as it was
    assert first.new_tracks and all(first.song.tracks[i].role == stem for i in first.new_tracks)
    again = _insert(name, context, stem, seed=3)
    new = [first.song.tracks[i].notes for i in first.new_tracks]
    assert [again.song.tracks[i].notes.tolist() for i in again.new_tracks] == [n.tolist() for n in new]


@pytest.mark.parametrize("name", ENGINES)
def test_silent_bars_stay_silent(name: str, song: Song) -> None:
    context = _without(song, "bass")
    active = np.array([True, False, True, False])
    result = _insert(name, context, "bass", seed=1, active=active)
    notes = np.concatenate([result.song.tracks[i].notes for i in result.new_tracks])
    starts = result.song.bar_index(notes["start"]) if len(notes) else np.zeros(0, dtype=int)
    assert not np.isin(starts, np.flatnonzero(~active)).any()


@pytest.mark.parametrize("name", ENGINES)
def test_a_bad_option_is_a_clean_error(name: str) -> None:
    with pytest.raises(OptionError, match="takes no option 'no_such_option'"):
        get_engine(name, no_such_option=1)


@pytest.mark.parametrize("name", ENGINES)
def test_a_one_bar_song_and_a_song_without_pitched_parts(name: str) -> None:
    one_bar = _without(band_song(bars=1), "bass")
    result = _insert(name, one_bar, "bass")
    assert result.song.num_bars == 1 and result.new_tracks
    drums_only = band_song(bars=2)
    drums_only = drums_only.with_tracks([t for t in drums_only.tracks if t.is_drum])
    try:
        result = _insert(name, drums_only, "bass")
    except MidiarrError as exc:  # an engine that needs harmony may refuse, in one clear line
        assert "\n" not in str(exc)
    else:
        assert [t for i, t in enumerate(result.song.tracks) if i not in result.new_tracks] == drums_only.tracks


@pytest.mark.parametrize(
    "args, message",
    [
        (("--engine", "rules", "--temperature", "0.5"), "--temperature: not an option of the rules engine"),
        (("--engine", "transformer", "--steps", "10"), "--steps: not an option of the transformer engine"),
        (("--engine", "borrow", "--checkpoint", "x"), "--checkpoint: not an option of the borrow engine"),
    ],
)
def test_a_flag_an_engine_does_not_take_is_one_line(tmp_path, args: tuple, message: str) -> None:
    from midiarr.io import save
    from tests.conftest import run_cli_process

    src = save(_without(band_song(bars=2), "bass"), tmp_path / "s.mid")
    proc = run_cli_process("insert", src, "--stem", "bass", "-o", tmp_path / "o.mid", *args)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(message), proc.stderr


def test_eval_settings_are_typed_by_the_engine() -> None:
    from midiarr.cli.common import engine_setting

    assert engine_setting("diffusion.steps=12") == (("diffusion", "steps"), 12)
    assert engine_setting("transformer.pull_inferred_density=false") == (
        ("transformer", "pull_inferred_density"),
        False,
    )
    with pytest.raises(OptionError, match="has no option 'bogus'"):
        engine_setting("transformer.bogus=1")
    with pytest.raises(OptionError, match="needs a number"):
        engine_setting("transformer.temperature=hot")


@pytest.mark.parametrize("name", ENGINES)
def test_settings_are_one_typed_path(name: str) -> None:
    """An engine's settings are a dataclass: what it runs with is what `engine_settings` says without
    loading it, an option passes through by name, and a bad value or key is a one-line OptionError."""
    import dataclasses

    from midiarr.engines.base import engine_options, engine_settings

    engine = get_engine(name, **NEEDS.get(name, dict)())
    cls = type(engine).settings_type()
    assert dataclasses.is_dataclass(cls) and isinstance(engine.settings, cls)
    assert set(cls.option_names()) <= set(engine_options(name))
    if name != "borrow":  # (borrow's settings are its donors)
        assert engine_settings(name) == engine.settings
    for key in cls.option_names():  # every default passes its own check
        value = getattr(cls(), key)
        assert cls.from_options(**{key: value}).check() is not None
    with pytest.raises(OptionError, match="takes no option 'no_such_knob'") as caught:
        cls.from_options(no_such_knob=1)
    assert "\n" not in str(caught.value)


def test_tuned_values_come_from_the_checkpoint(tmp_path) -> None:
    """The bundled checkpoints carry their tuned settings; a copy with other values runs with those, and an
    unknown key in a checkpoint's config is refused, naming where it came from."""
    import json
    import shutil

    from midiarr.engines.base import engine_settings
    from midiarr.engines.transformer import bundled_checkpoint
    from midiarr.transformer.sample import TransformerSettings

    bundled = engine_settings("transformer")
    config = json.loads((bundled_checkpoint() / "config.json").read_text(encoding="utf-8"))
    assert bundled.pull_inferred_density is True and config["config"]["sample"]["pull_inferred_density"] is True
    assert TransformerSettings().pull_inferred_density is False  # the field's default is the model alone
    assert bundled.harmony_weight == config["config"]["sample"]["harmony_weight"]
    copy_dir = tmp_path / "ckpt"
    copy_dir.mkdir()
    shutil.copy(bundled_checkpoint() / "config.json", copy_dir / "config.json")
    config["config"]["sample"]["harmony_weight"] = 1.5
    (copy_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert TransformerSettings.from_checkpoint(copy_dir).harmony_weight == 1.5
    assert TransformerSettings.from_checkpoint(copy_dir, harmony_weight=2.5).harmony_weight == 2.5
    # an option given by hand changes what a tuned one means: N takes then apply to every window
    assert bundled.candidate_windows == 1 and engine_settings("transformer", candidates=2).candidate_windows == 0
    # what the checkpoint holds is the input: an unknown key or a value that cannot work is an input error
    config["config"]["sample"]["retired_knob"] = 1
    (copy_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(InputError, match=r"config.json.*retired_knob.*checkpoint"):
        TransformerSettings.from_checkpoint(copy_dir)
    del config["config"]["sample"]["retired_knob"]
    config["config"]["sample"]["temperature"] = "x"
    (copy_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(InputError, match=r"config.json.*temperature"):
        TransformerSettings.from_checkpoint(copy_dir)
    with pytest.raises(OptionError, match="temperature"):  # a bad value given by hand stays a usage error
        TransformerSettings.from_checkpoint(bundled_checkpoint(), temperature=-1.0)


def test_every_engine_flag_sets_an_option_some_engine_has() -> None:
    """The CLI's engine flags name engine options; none points at an option no engine has."""
    from midiarr.cli import build_parser
    from midiarr.cli.common import ENGINE_OPTIONS_DEFAULT
    from midiarr.engines.base import engine_options

    every = {option for name in ENGINES for option in engine_options(name)}
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    seen = 0
    for command, p in sub.choices.items():
        for option, flag in p.get_default(ENGINE_OPTIONS_DEFAULT) or ():
            assert option in every, f"{command} {flag} sets {option!r}, which no engine has"
            seen += 1
    assert seen > 10


def test_settings_given_whole_take_options_over_them() -> None:
    from midiarr.engines.base import engine_settings

    mine = engine_settings("diffusion", steps=4)
    engine = get_engine("diffusion", settings=mine, guidance=0.5)
    assert engine.settings.steps == 4 and engine.settings.guidance == 0.5
    assert mine.guidance != 0.5  # the caller's settings object is not changed
    with pytest.raises(OptionError, match="--steps"):
        get_engine("diffusion", settings=mine, steps=0)


def test_the_training_configs_carry_the_bundled_sampling_settings() -> None:
    """A run of configs/transformer.toml or transformer-continue.toml saves its [sample] table as the new
    checkpoint's tuned settings, so both must hold what the bundled checkpoint runs with: a setting missing
    there would silently fall back to the model alone in the next checkpoint."""
    import json
    import tomllib
    from pathlib import Path

    from midiarr.engines.transformer import bundled_checkpoint

    bundled = json.loads((bundled_checkpoint() / "config.json").read_text(encoding="utf-8"))["config"]["sample"]
    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in ("transformer.toml", "transformer-continue.toml"):
        sample = tomllib.loads((configs / name).read_text(encoding="utf-8"))["sample"]
        assert sample == bundled, name
