"""The player stage: a stem's density from the song, and a player's touch on the velocities."""

import json

import numpy as np
import pytest

from midiarr.engines import Controls, get_engine
from midiarr.engines.base import Engine, give_touch, song_density
from midiarr.fixtures import band_song
from midiarr.player import density as D
from midiarr.player import touch as T
from midiarr.player.train import train_player
from midiarr.roles import assign_roles
from midiarr.song import Song, Track
from tests.conftest import fixture_cache, run_cli


def _roles(song: Song) -> dict[int, str]:
    return assign_roles(song)


def _part(song: Song, role: str) -> Track:
    return next(t for i, t in enumerate(song.tracks) if _roles(song)[i] == role)


def _without(song: Song, role: str) -> Song:
    roles = _roles(song)
    return song.with_tracks([t for i, t in enumerate(song.tracks) if roles[i] != role])


def _flat(notes: np.ndarray, velocity: int = 90) -> np.ndarray:
    out = notes.copy()
    out["velocity"] = velocity
    return out


@pytest.fixture(scope="module")
def song() -> Song:
    return band_song(bars=8)


@pytest.mark.parametrize("stem", ["bass", "drums", "guitar"])
def test_touch_changes_only_velocities_and_keeps_the_level(song, stem):
    part = _part(song, stem)
    flat = _flat(part.notes)
    model = T.bundled_model()
    played = model.apply(_without(song, stem), flat, stem, np.random.default_rng(3), context_spread=8.0)
    for field in ("start", "duration", "pitch"):
        assert np.array_equal(played[field], flat[field])
    assert played["velocity"].std() > 0  # accents and ghosts, not one level
    # over players (seeds) the spread is a real part's: some steady, most with accents
    spreads = [
        model.apply(_without(song, stem), flat, stem, np.random.default_rng(s), 8.0)["velocity"].std()
        for s in range(30)
    ]
    assert 2.0 < np.median(spreads) < 25.0
    assert abs(played["velocity"].mean() - 90) < 2.0
    assert played["velocity"].min() >= 1 and played["velocity"].max() <= 127
    again = model.apply(_without(song, stem), flat, stem, np.random.default_rng(3), context_spread=8.0)
    assert np.array_equal(again["velocity"], played["velocity"])


def test_touch_keeps_the_engines_levels_no_further_apart_than_the_players(song):
    """A part whose engine wrote two levels (bars 1-4 soft, 5-8 loud): a player whose level never moved plays it
    at one level, one who moved as far keeps both, and the part's mean is the engine's either way."""
    part = _part(song, "bass")
    bars = song.bar_index(part.notes["start"])
    notes = _flat(part.notes, 70)
    notes["velocity"][bars >= 4] = 110
    model = T.bundled_model()
    flat_cells = {cell: [0.0, 0.0] for cell in model.donors["bass"][0]["cells"]}
    levels = {}
    for moved in (0.0, 50.0):
        model_one = T.TouchModel(
            model.cells, {"bass": [{"context_spread": 0.0, "cells": flat_cells, "level_spread": moved}]}
        )
        played = model_one.apply(_without(song, "bass"), notes, "bass", np.random.default_rng(0), 0.0)
        assert abs(played["velocity"].mean() - notes["velocity"].mean()) < 1.0
        levels[moved] = (played["velocity"][bars < 4].mean(), played["velocity"][bars >= 4].mean())
    assert abs(levels[0.0][1] - levels[0.0][0]) < 5  # the two levels brought together
    assert levels[50.0][1] - levels[50.0][0] > 35  # as far apart as written
    # the players fitted by train-player carry how far their level moved
    assert all("level_spread" in donor for donor in model.donors["bass"])


def test_touch_leaves_a_stem_it_has_no_table_for_and_tiny_parts_alone(song):
    part = song.tracks[0]
    model = T.bundled_model()
    assert np.array_equal(model.apply(song, part.notes, "no-such-stem", np.random.default_rng(0)), part.notes)
    assert np.array_equal(model.apply(song, part.notes[:1], "bass", np.random.default_rng(0)), part.notes[:1])


def test_give_touch_only_for_engines_without_their_own_and_only_when_on(song):
    class Flat(Engine):
        name = "flat"

        def write_part(self, *args, **kwargs):
            raise NotImplementedError

    bass = _part(song, "bass").copy()
    bass.notes, bass.role = _flat(bass.notes), "bass"
    context = _without(song, "bass")
    (played,) = give_touch(Flat(), context, [bass], Controls(), seed=1)
    assert played.notes["velocity"].std() > 0 and bass.notes["velocity"].std() == 0  # the input kept
    (kept,) = give_touch(Flat(), context, [bass], Controls(touch=False), seed=1)
    assert np.array_equal(kept.notes, bass.notes)
    rules = get_engine("rules")
    assert rules.writes_touch
    (own,) = give_touch(rules, context, [bass], Controls(), seed=1)
    assert np.array_equal(own.notes, bass.notes)


def test_song_density_fills_the_bin_only_when_none_was_asked(song):
    class Hears(Engine):
        name = "hears"
        hears_density = True

        def write_part(self, *args, **kwargs):
            raise NotImplementedError

    context = _without(song, "bass")
    filled = song_density(Hears(), context, "bass", Controls())
    assert filled.bins["density"] in ("sparse", "medium", "busy") and filled.inferred == ("density",)
    # the predicted rate goes along, for engines that pull toward it rather than the whole bin
    assert filled.density_rate == pytest.approx(D.bundled_model().predict(context, "bass"))
    asked = song_density(Hears(), context, "bass", Controls.build(density="busy"))
    assert asked.bins["density"] == "busy" and asked.inferred == () and asked.density_rate is None
    off = song_density(Hears(), context, "bass", Controls(song_density=False))
    assert "density" not in off.bins
    # strings has no weights (its regression guessed no better than a constant): nothing filled in
    assert "density" not in song_density(Hears(), context, "strings", Controls()).bins
    assert "density" not in song_density(get_engine("rules"), context, "bass", Controls()).bins


def test_density_prediction_follows_how_busy_the_song_is():
    model = D.bundled_model()
    sparse = _without(band_song(bars=8, qpm=70), "bass")
    busy = sparse.copy()
    for track in busy.tracks:  # every other part plays twice as many onsets
        notes = track.notes
        half = notes.copy()
        shift = half["duration"] // 2
        half["start"] = half["start"] + shift
        track.notes = np.sort(np.concatenate([notes, half]), order="start")
    a, b = model.predict(sparse, "bass"), model.predict(busy, "bass")
    assert a is not None and b is not None and b > a > 0
    assert model.predict(Song(tracks=[Track(name="empty")]), "bass") is None


def test_engine_insert_with_touch_keeps_every_note_but_the_velocity(song, tiny_diffusion):
    engine = get_engine("diffusion", checkpoint=tiny_diffusion)
    context = _without(song, "bass")
    on = engine.insert(context, "bass", Controls(), seed=4)
    off = engine.insert(context, "bass", Controls(touch=False), seed=4)
    (a,), (b,) = ([r.song.tracks[i] for i in r.new_tracks] for r in (on, off))
    for field in ("start", "duration", "pitch"):
        assert np.array_equal(a.notes[field], b.notes[field])
    if len(a.notes) >= 2:
        assert not np.array_equal(a.notes["velocity"], b.notes["velocity"])
    assert on.song.tracks[: len(context.tracks)] == context.tracks  # the user's notes untouched


def test_density_fit_puts_the_median_part_on_the_prediction():
    """Skewed residuals (some parts far busier than their songs suggest): least squares predicts above
    the median part's rate; with the median intercept, half the parts play more than predicted."""
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(400), rng.normal(size=400)])
    y = 0.5 * x[:, 1] + rng.exponential(0.6, size=400)
    plain = D.fit_ridge(x, y, 1.0)
    centred = D.fit_ridge(x, y, 1.0, median_intercept=True)
    assert abs(np.median(y - x @ plain)) > 0.1
    assert abs(np.median(y - x @ centred)) < 1e-9
    assert np.allclose(plain[1:], centred[1:])


def test_train_player_fits_and_saves_both_models(tmp_path):
    cache = fixture_cache(tmp_path, songs=12)
    paths = train_player(cache, tmp_path / "player", log=lambda m: None)
    assert [p.name for p in paths] == ["density", "touch", "repeats"]
    dens = D.DensityModel.load(tmp_path / "player" / "density")
    assert set(dens.info["valid"]) <= {"bass", "drums", "guitar", "piano", "strings"}
    touch = T.TouchModel.load(tmp_path / "player" / "touch")
    assert {"bass", "drums"} <= set(touch.cells) and touch.donors["drums"]
    assert all(donor["level_spread"] >= 0 for donor in touch.donors["drums"])
    assert (tmp_path / "player" / "touch" / "train_log.txt").read_text().startswith("bass")
    saved = json.loads((tmp_path / "player" / "density" / "density.json").read_text())
    assert saved["features"] == list(D.FEATURES)
    assert run_cli("train-player", "--data", tmp_path / "nothing", "-o", tmp_path / "p2", "-q") == 1


def test_cli_no_touch_keeps_the_engines_velocities(band_file, tmp_path, tiny_diffusion):
    from midiarr.io import load, write_midi

    context = write_midi(_without(load(band_file), "bass"), tmp_path / "nobass.mid")
    parts = {}
    for flag in ([], ["--no-touch"]):
        out = tmp_path / f"out{len(flag)}.mid"
        args = ["--engine", "diffusion", "--checkpoint", tiny_diffusion, "--seed", "2", "-o", out, *flag, "-q"]
        assert run_cli("insert", context, "--stem", "bass", *args) == 0
        parts[len(flag)] = load(out).tracks[-1].notes
    touched, plain = parts[0], parts[1]
    for field in ("start", "duration", "pitch"):
        assert np.array_equal(touched[field], plain[field])
    assert len(plain) < 2 or touched["velocity"].std() > plain["velocity"].std()
