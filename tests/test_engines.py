import numpy as np
import pytest

from midiarr.attributes import measure
from midiarr.engines import Controls, available_engines, get_engine, parse_bar_ranges
from midiarr.errors import OptionError
from midiarr.evaluation import metrics as M
from midiarr.fixtures import band_song
from midiarr.song import TimeSignature
from midiarr.subtract import subtract

STEMS = ("bass", "drums", "guitar", "piano", "strings")


def test_registry_lists_builtin_engines():
    assert {"rules", "borrow"} <= set(available_engines())
    with pytest.raises(OptionError, match="unknown engine"):
        get_engine("nope")


@pytest.mark.parametrize("stem", STEMS)
def test_rules_writes_every_stem_in_range_and_keeps_the_context(stem):
    song = band_song(bars=8)
    partial = subtract(song, stem).partial if stem != "strings" else song
    result = get_engine("rules").insert(partial, stem, seed=1)
    out = result.song
    assert out.tracks[: len(partial.tracks)] == partial.tracks
    assert out.tempos == partial.tempos and out.time_signatures == partial.time_signatures
    part = out.tracks[result.new_tracks[0]]
    assert part.role == stem and len(part.notes) > 0
    assert part.is_drum == (stem == "drums")
    assert M.range_validity(part.notes, stem) == 1.0
    assert M.grid_share(part.notes, out.ticks_per_beat) == 1.0
    assert part.end_tick <= partial.end_tick + out.ticks_per_beat


@pytest.mark.parametrize("words, floor", [(None, 0.99), ("busy bass", 0.95), ("busy syncopated bass", 0.85)])
def test_rules_bass_fits_the_harmony(words, floor):
    # anticipations sound the next chord's root half a beat early, so syncopated parts fit a little less
    song = band_song(bars=8)
    partial = subtract(song, "bass").partial
    bass = get_engine("rules").insert(partial, "bass", Controls.build(words), seed=2)
    notes = bass.song.tracks[bass.new_tracks[0]].notes
    ctx = np.concatenate([t.notes for t in partial.tracks if not t.is_drum])
    assert M.harmonic_fit(partial, notes, ctx) >= floor


@pytest.mark.parametrize("numerator, denominator", [(3, 4), (6, 8), (5, 4), (7, 8)])
def test_rules_follows_odd_meters(numerator, denominator):
    song = band_song(bars=6, numerator=numerator)
    song.time_signatures = [TimeSignature(0, numerator, 4 if denominator == 4 else 8)]
    if denominator == 8:  # re-time the fixture onto eighth-note beats
        for t in song.tracks:
            t.notes["start"] //= 2
            t.notes["duration"] = np.maximum(t.notes["duration"] // 2, 1)
    partial = subtract(song, "drums").partial
    drums = get_engine("rules").insert(partial, "drums", seed=0)
    notes = drums.song.tracks[drums.new_tracks[0]].notes
    bars = partial.bar_starts()
    kicks = notes[notes["pitch"] == 36]["start"]
    assert set(bars[: partial.num_bars - 1].tolist()) <= set(kicks.tolist())  # a kick on every downbeat


@pytest.mark.parametrize(
    "words, attr, value",
    [
        ("sparse soft bass", "density", "sparse"),
        ("busy bass", "density", "busy"),
        ("loud bass", "dynamics", "loud"),
        ("soft bass", "dynamics", "soft"),
        ("syncopated bass", "rhythm", "syncopated"),
        ("straight bass", "rhythm", "straight"),
    ],
)
def test_rules_obeys_controls(words, attr, value):
    song = band_song(bars=8)
    partial = subtract(song, "bass").partial
    result = get_engine("rules").insert(partial, "bass", Controls.build(words), seed=0)
    notes = result.song.tracks[result.new_tracks[0]].notes
    assert measure(partial, notes, "bass").bins[attr] == value


def test_activity_mask_and_determinism():
    song = band_song(bars=8)
    partial = subtract(song, "guitar").partial
    engine = get_engine("rules")
    mask = parse_bar_ranges("1-2,5-6", partial.num_bars)
    a = engine.insert(partial, "guitar", active=mask, seed=4)
    b = engine.insert(partial, "guitar", active=mask, seed=4)
    notes = a.song.tracks[a.new_tracks[0]].notes
    assert np.array_equal(notes, b.song.tracks[b.new_tracks[0]].notes)
    assert partial.bar_activity(notes, 8).tolist() == mask.tolist()


def test_existing_stem_is_replaced_and_reported():
    song = band_song(bars=4)
    result = get_engine("rules").insert(song, "bass", seed=0, replace=True)
    assert result.replaced_tracks == ["Bass"]
    assert [t.name for t in result.song.tracks] == ["Piano", "Guitar", "Drums", "Bass"]


def test_song_with_only_the_stem_is_refused():
    song = band_song(bars=4)
    song.tracks = [t for t in song.tracks if t.name == "Bass"]
    with pytest.raises(OptionError, match="no parts besides"):
        get_engine("rules").insert(song, "bass", replace=True)


def test_borrow_moves_a_donor_onto_the_grid():
    donor = band_song(bars=4, qpm=90)
    song = band_song(bars=8, qpm=140)
    partial = subtract(song, "bass").partial
    result = get_engine("borrow", donors=[donor]).insert(partial, "bass", seed=0)
    notes = result.song.tracks[result.new_tracks[0]].notes
    assert len(notes) == 2 * len(donor.tracks[1].notes)  # the 4-bar donor loops over 8 bars
    assert set(notes["start"] % 480) == {0}
    with pytest.raises(OptionError, match="donor"):
        get_engine("borrow").insert(partial, "bass")


def test_bar_ranges():
    assert parse_bar_ranges("1-2,4", 5).tolist() == [True, True, False, True, False]
    for bad in ("x", "3-1", "0-2", ""):
        with pytest.raises(OptionError):
            parse_bar_ranges(bad)
