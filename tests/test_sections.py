"""Changes of the band (midiarr.player.sections) and how a drum part marks them (eval)."""

from __future__ import annotations

import numpy as np

from midiarr.evaluation.metrics import section_marks
from midiarr.player.sections import MAX_CHANGES, section_changes
from midiarr.song import NOTE_DTYPE, Song, Track

TPB = 480
BAR = 4 * TPB


def _notes(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    return np.array(rows, dtype=NOTE_DTYPE)


def _steady(bars: range, pitch: int, per_bar: int = 4) -> np.ndarray:
    step = BAR // per_bar
    return _notes([(b * BAR + k * step, step, pitch, 90) for b in bars for k in range(per_bar)])


def _song(tracks: list[np.ndarray]) -> Song:
    return Song(ticks_per_beat=TPB, tracks=[Track(name=f"t{i}", program=0, notes=n) for i, n in enumerate(tracks)])


def test_changes_count_entries_stops_and_a_busier_band() -> None:
    bass = _steady(range(0, 8), 40)
    keys = _steady(range(4, 8), 60)  # enters at bar 4
    pad = _steady(range(0, 2), 72)  # stops after bar 1
    lead = np.concatenate([_steady(range(0, 6), 76, 1), _steady(range(6, 8), 76, 16)])  # busier at bar 6
    bars = np.arange(8) * BAR
    changes = section_changes(_song([bass, keys, pad, lead]), [bass, keys, pad, lead], bars)
    # bar 4: the keys enter and the band's onsets rise from 5 to 9 a bar, two changes at once
    assert changes.tolist() == [0, 0, 1, 0, 2, 0, 1, 0]


def test_a_part_back_after_one_silent_bar_is_no_entry_and_the_count_is_capped() -> None:
    bass = _steady(range(0, 8), 40, 16)  # busy enough that the gap's return is no busier band
    gap = _steady([0, 1, 3, 4], 60)  # one bar out: a breath, not a new section
    bars = np.arange(8) * BAR
    assert section_changes(_song([bass, gap]), [bass, gap], bars)[3] == 0
    many = [_steady(range(4, 8), 48 + k) for k in range(6)]
    assert section_changes(_song([bass, *many]), [bass, *many], bars)[4] == MAX_CHANGES
    assert section_changes(_song([bass]), [bass], bars[:1]).tolist() == [0]


def test_section_marks_find_the_fill_before_and_the_crash_on_a_change() -> None:
    song = _song([_steady(range(0, 8), 40)])
    changes = np.array([0, 0, 0, 0, 2, 0, 0, 0])
    groove = _notes([(b * BAR + k * TPB, 10, 42, 80) for b in range(8) for k in range(4)])
    fill = _notes([(3 * BAR + 3 * TPB, 10, 45, 100), (3 * BAR + 3 * TPB + 240, 10, 43, 100)])
    crash = _notes([(4 * BAR, 10, 49, 110)])
    early_tom = _notes([(3 * BAR, 10, 45, 100)])  # first half of the bar: not a fill into the change
    assert section_marks(song, groove, changes) == (0.0, 0.0)
    assert section_marks(song, np.concatenate([groove, fill, crash]), changes) == (1.0, 1.0)
    assert section_marks(song, np.concatenate([groove, early_tom]), changes) == (0.0, 0.0)
    # no change met where the part plays in the bar and the one before
    assert all(np.isnan(section_marks(song, groove[groove["start"] < 2 * BAR], changes)))


def test_a_part_coming_in_a_few_ticks_early_enters_on_the_bar_and_a_longer_bar_is_no_busier_band() -> None:
    bass = _steady(range(0, 8), 40)
    keys = _steady(range(4, 8), 60)
    keys["start"][0] -= 10  # pushed ahead of the bar line, as a humanized part often is
    bars = np.arange(8) * BAR
    changes = section_changes(_song([bass, keys]), [bass, keys], bars)
    assert changes[3] == 0 and changes[4] >= 1
    # a 2/4 bar then 4/4 bars, the same four notes a beat: twice the notes, not a busier band
    half = BAR // 2
    starts = np.array([0, half, half + BAR, half + 2 * BAR])
    steady = _notes([(int(s) + k * TPB, TPB, 40, 90) for s, n in zip(starts, (2, 4, 4, 4)) for k in range(n)])
    assert section_changes(_song([steady]), [steady], starts).tolist() == [0, 0, 0, 0]
