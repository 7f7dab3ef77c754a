"""Bars played again where the song repeats itself (midiarr.player.repeats)."""

from __future__ import annotations

import numpy as np
import pytest

from midiarr.engines import Controls, get_engine
from midiarr.evaluation.metrics import song_repetition
from midiarr.fixtures import band_song
from midiarr.player.repeats import (
    RepeatModel,
    bar_grid,
    bar_rhythms,
    bar_signatures,
    bundled_model,
    context_notes,
    fit_repeats,
    held_bars,
    hold_bars,
    repeat_sources,
    repeated_bars,
)
from midiarr.roles import assign_roles, tracks_with_role
from midiarr.song import NOTE_DTYPE, Song, Track

TPB = 480
BAR = 4 * TPB


def _notes(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    return np.array(rows, dtype=NOTE_DTYPE)


def _context_and_part(song: Song, stem: str) -> tuple[Song, np.ndarray]:
    idx = set(tracks_with_role(assign_roles(song), stem))
    context = song.with_tracks([t for i, t in enumerate(song.tracks) if i not in idx])
    return context, np.concatenate([song.tracks[i].notes for i in idx])


def _wandering_bass(bars: int, seed: int = 0) -> np.ndarray:
    """A bass that plays a different line in every bar: four notes at random pitches and 16ths."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(bars):
        for step in sorted(rng.choice(16, size=4, replace=False)):
            rows.append((b * BAR + int(step) * TPB // 4, TPB // 4, int(rng.integers(33, 50)), 90))
    return _notes(rows)


def _bar_sets(song: Song, notes: np.ndarray) -> list[frozenset]:
    edges, _ = bar_grid(song, notes, end_tick=song.end_tick)
    return bar_signatures(song, notes, edges)


def test_a_bar_repeats_the_latest_earlier_bar_that_matches_it() -> None:
    a, b = frozenset({(0, 36), (4, 38)}), frozenset({(0, 40)})
    near = frozenset({*a, (8, 42)}) | {(s, 60) for s in range(9)}  # overlaps ``a`` by 2 of 12
    sources = repeat_sources([a, b, a, frozenset(), b, near, a])
    assert sources.tolist() == [-1, -1, 0, -1, 1, -1, 2]
    assert repeat_sources([a, frozenset({*a, (8, 42)})], threshold=0.6).tolist() == [-1, 0]


def test_apply_plays_the_source_bar_again_where_the_song_repeats() -> None:
    song = band_song(bars=8)  # I-vi-IV-V twice: bars 4-7 repeat bars 0-3
    context, _ = _context_and_part(song, "bass")
    written = _wandering_bass(8)
    model = RepeatModel(rates={"bass": 1.0})
    out = model.apply(context, written, "bass", np.random.default_rng(0))
    sets, before = _bar_sets(song, out), _bar_sets(song, written)
    for b in range(4):
        assert sets[b] == before[b]  # the first time through stays as written
        assert sets[b + 4] == sets[b]  # the second time plays it again
    assert len(out) == len(written)
    assert repeated_bars(context, out, context_notes(context)) == (4, 4)
    assert song_repetition(context, out, context_notes(context)) == 1.0
    assert song_repetition(context, written, context_notes(context)) == 0.0


def test_apply_leaves_what_it_must_not_change() -> None:
    song = band_song(bars=8)
    context, _ = _context_and_part(song, "bass")
    written = _wandering_bass(8)
    model = RepeatModel(rates={"bass": 1.0})
    # a rate of 0, a stem without a rate, an empty context: the part as written
    for stem, rates in (("bass", {"bass": 0.0}), ("guitar", {"bass": 1.0})):
        out = RepeatModel(rates=rates).apply(context, written, stem, np.random.default_rng(0))
        assert np.array_equal(out, written)
    empty = song.with_tracks([])
    assert np.array_equal(model.apply(empty, written, "bass", np.random.default_rng(0)), written)
    # only writable bars change
    writable = np.zeros(8, dtype=bool)
    writable[6] = True
    out = model.apply(context, written, "bass", np.random.default_rng(0), writable)
    sets, before = _bar_sets(song, out), _bar_sets(song, written)
    assert [b for b in range(8) if sets[b] != before[b]] == [6] and sets[6] == before[2]
    # a bar the engine left silent stays silent, and a silent source brings nothing
    holes = written[(written["start"] // BAR != 5) & (written["start"] // BAR != 3)]
    out = model.apply(context, holes, "bass", np.random.default_rng(0))
    sets = _bar_sets(song, out)
    assert not sets[5] and not sets[3] and sets[7] == _bar_sets(song, holes)[7]


def test_apply_follows_the_rate_and_the_seed() -> None:
    song = band_song(bars=64)
    context, _ = _context_and_part(song, "bass")
    written = _wandering_bass(64, seed=3)
    model = RepeatModel(rates={"bass": 0.5})
    runs = [model.apply(context, written, "bass", np.random.default_rng(s)) for s in (7, 7, 8)]
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])
    same, total = repeated_bars(context, runs[0], context_notes(context), both=True)
    assert total == 60 and 0.3 < same / total < 0.9  # about half, and bars repeat repeated bars


def test_a_held_note_played_again_never_overlaps_the_next_note_of_its_pitch() -> None:
    song = band_song(bars=8)
    context, _ = _context_and_part(song, "bass")
    # bar 0 ends on a G held into bar 2; bar 5 opens on a G of its own; only bar 4 (bar 0's repeat) may change
    held = (3 * TPB, 2 * BAR, 43, 90)
    rows = [(0, TPB, 40, 90), held] + [(b * BAR, TPB, 45, 90) for b in (1, 2, 3, 4, 6, 7)] + [(5 * BAR, TPB, 43, 90)]
    written = np.sort(_notes(rows), order="start")
    writable = np.arange(8) == 4
    out = RepeatModel(rates={"bass": 1.0}).apply(context, written, "bass", np.random.default_rng(0), writable)
    again = out[(out["pitch"] == 43) & (out["start"] == 4 * BAR + 3 * TPB)]
    assert len(again) == 1 and again["duration"][0] == BAR - 3 * TPB  # cut where bar 5's G starts
    assert tuple(out[out["start"] == 3 * TPB][0]) == held  # the engine's own held note stays as written
    assert len(out[(out["pitch"] == 43) & (out["start"] == 5 * BAR)]) == 1


def test_a_drummer_holds_the_groove_where_the_band_does_but_not_into_a_change() -> None:
    song = band_song(bars=8)
    context, _ = _context_and_part(song, "drums")
    # the band changes its rhythm for bars 6-7: a lead on the off sixteenths
    lead = _notes([(b * BAR + s * TPB // 4, TPB // 8, 64, 70) for b in (6, 7) for s in range(1, 16, 2)])
    context = context.with_tracks([*context.tracks, Track(name="Lead", program=80, notes=lead)])
    others = context_notes(context)
    edges, _ = bar_grid(context, others)
    # bar 5 comes before the change (a fill's place) and bar 6 is the change: neither holds
    assert hold_bars(bar_rhythms(context, others, edges)).tolist() == [
        False,
        True,
        True,
        True,
        True,
        False,
        False,
        True,
    ]
    rng = np.random.default_rng(1)
    written = _notes(
        sorted(
            (b * BAR + int(step) * TPB // 4, TPB // 4, int(rng.choice([36, 38, 42, 46])), 90)
            for b in range(8)
            for step in rng.choice(16, size=5, replace=False)
        )
    )
    out = RepeatModel(hold_rates={"drums": 1.0}).apply(context, written, "drums", np.random.default_rng(0))
    sets, before = _bar_sets(context, out), _bar_sets(context, written)
    assert all(sets[b] == before[0] for b in range(5))  # bar 0's groove carried through bar 4
    assert sets[5] == before[5] and sets[6] == before[6] and sets[7] == before[6]
    assert held_bars(context, out, others) == (5, 5) and held_bars(context, written, others) == (0, 5)
    # a stem without a hold rate (every pitched one: a held bar would miss a chord change) is left alone
    assert np.array_equal(RepeatModel(hold_rates={"drums": 1.0}).apply(context, written, "bass", rng), written)
    # only the stems that hold get a rate when fitted, pooled over bars
    fitted = fit_repeats({"drums": [(1, 2)]}, holds={"bass": [(3, 4)], "drums": [(1, 4), (2, 4)]})
    assert fitted.hold_rates == {"drums": 0.375}


def test_the_bundled_rates_are_real_players_shares() -> None:
    model = bundled_model()
    assert set(model.rates) == {"bass", "drums", "guitar", "piano", "strings"}
    assert all(0.2 < r < 0.95 for r in model.rates.values())
    assert model.rates["bass"] > model.rates["piano"]  # a pianist carrying the tune varies it more
    assert model.info["split"] == "train" and set(model.info["valid_rates"]) == set(model.rates)
    # drummers play a bar exactly as the one before in about a third of the bars where the band holds its groove
    assert set(model.hold_rates) == {"drums"} and 0.2 < model.hold_rates["drums"] < 0.5


@pytest.mark.parametrize("engine_name", ["diffusion", "transformer"])
def test_insert_plays_bars_again_and_no_repeats_keeps_the_engines_bars(engine_name, tiny_checkpoint, tiny_diffusion):
    song = band_song(bars=12)
    context, _ = _context_and_part(song, "bass")
    checkpoint = tiny_checkpoint if engine_name == "transformer" else tiny_diffusion
    engine = get_engine(engine_name, checkpoint=checkpoint)
    on = engine.insert(context, "bass", Controls(touch=False), seed=5).song
    off = engine.insert(context, "bass", Controls(touch=False, repeats=False), seed=5).song
    assert on.tracks[: len(context.tracks)] == context.tracks == off.tracks[: len(context.tracks)]
    part_on, part_off = on.tracks[-1].notes, off.tracks[-1].notes
    ctx = context_notes(context)
    same_on, _ = repeated_bars(context, part_on, ctx, both=True)
    same_off, total_off = repeated_bars(context, part_off, ctx, both=True)
    assert same_on >= same_off
    if total_off - same_off >= 4:  # at the bundled rate (0.85) some of the bars that differ come back
        assert same_on > same_off
    # the first time through, no note moves; a note held into a bar played again may end where that bar's
    # note of its pitch starts
    first_off, first_on = (p[p["start"] < 4 * BAR] for p in (part_off, part_on))
    for field in ("start", "pitch", "velocity"):
        assert np.array_equal(first_on[field], first_off[field])
    assert np.all(first_on["duration"] <= first_off["duration"])


def test_rules_and_borrow_keep_their_own_form() -> None:
    from midiarr.engines.base import give_repeats

    song = band_song(bars=8)
    context, _ = _context_and_part(song, "bass")
    for name in ("rules", "borrow"):
        engine = get_engine(name)
        tracks = [song.tracks[1].copy()]
        tracks[0].notes = _wandering_bass(8)
        assert give_repeats(engine, context, tracks, Controls(), seed=0)[0] is tracks[0]
