"""The contract every registered engine keeps, run over all of them: the song's other parts are untouched, the
same seed gives the same part, the bars asked to stay silent stay silent, a bad option is a clean error, and a
one-bar song and a song with no pitched part both work."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from midiarr.engines import Controls, available_engines, get_engine
from midiarr.errors import MidiarrError, OptionError
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
