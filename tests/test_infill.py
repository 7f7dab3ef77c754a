"""Redo a span of bars: the span is new, every other bar and part is kept note for note, the seams join."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from midiarr.io import load, save
from midiarr.song import Song
from tests.conftest import run_cli, run_cli_process

BAR = 1920


def _outside(notes: np.ndarray, first: int, last: int) -> list:
    keep = (notes["start"] < (first - 1) * BAR) | (notes["start"] >= last * BAR)
    return sorted(map(tuple, notes[keep].tolist()))


@pytest.mark.parametrize("engine, stem", [("transformer", "bass"), ("transformer", "drums"), ("rules", "bass")])
def test_infill_keeps_every_other_bar_and_part(tmp_path: Path, band: Song, engine: str, stem: str) -> None:
    src = save(band, tmp_path / "song.mid")
    out = tmp_path / "out.mid"
    assert (
        run_cli("-q", "infill", src, "--stem", stem, "--bars", "3-4", "--engine", engine, "--seed", "2", "-o", out) == 0
    )
    before, after = load(src), load(out)
    index = next(i for i, t in enumerate(before.tracks) if t.name.lower() == stem)
    for i, (a, b) in enumerate(zip(before.tracks, after.tracks, strict=True)):
        if i != index:
            assert a == b  # every other part exactly
    a, b = before.tracks[index].notes, after.tracks[index].notes
    # outside the span note for note, except a note held into the span, which may end where the new bars start
    assert [n[:1] + n[2:] for n in _outside(a, 3, 4)] == [n[:1] + n[2:] for n in _outside(b, 3, 4)]
    inside = b[(b["start"] >= 2 * BAR) & (b["start"] < 4 * BAR)]
    assert len(inside) > 0
    # no pitch sounds twice at once anywhere in the part (no doubled note at the seams)
    for p in np.unique(b["pitch"]):
        same = np.sort(b[b["pitch"] == p], order="start")
        assert (same["start"][1:] >= (same["start"] + same["duration"])[:-1]).all() or stem == "drums"
    again = tmp_path / "again.mid"
    assert (
        run_cli("-q", "infill", src, "--stem", stem, "--bars", "3-4", "--engine", engine, "--seed", "2", "-o", again)
        == 0
    )
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (("--stem", "strings", "--bars", "1-2"), 1, "no strings part"),
        (("--stem", "bass", "--bars", "0-2"), 2, "bars"),
        (("--stem", "bass", "--bars", "90-99"), 2, "bars"),
        (("--stem", "bass", "--bars", "1-2", "--tries", "0"), 2, "tries"),
    ],
)
def test_bad_infill_is_one_line(tmp_path: Path, band: Song, args: tuple, code: int, message: str) -> None:
    src = save(band, tmp_path / "song.mid")
    proc = run_cli_process("infill", src, *args, "-o", tmp_path / "o.mid")
    assert proc.returncode == code and proc.stderr.count("\n") == 1 and message in proc.stderr.lower(), proc.stderr
    assert not (tmp_path / "o.mid").exists()


def test_infill_from_python(band: Song) -> None:
    from midiarr import Arranger

    out = Arranger().infill(band, "bass", "2-3", seed=4, tries=2)
    assert [t for i, t in enumerate(out.tracks) if i != 1] == [t for i, t in enumerate(band.tracks) if i != 1]
    assert len(out.tracks[1].notes) > 0


def test_eval_infill_reports_seams(tmp_path: Path) -> None:
    import json

    from tests.conftest import fixture_cache

    cache = fixture_cache(tmp_path / "cache", songs=6)
    split = json.loads((cache / "index.jsonl").read_text().splitlines()[0])["split"]
    out = tmp_path / "infill.json"
    args = ("--data", cache, "--split", split, "--limit", "1", "--bars", "4", "--span", "2-3", "--stems", "bass")
    assert run_cli("-q", "eval-infill", *args, "--tries", "2", "-o", out) == 0
    report = json.loads(out.read_text())
    assert report["parts"] and {"bass.note_ratio", "bass.seam", "bass.real_seam"} <= set(report["summary"])
    proc = run_cli_process("eval-infill", *args[:-2], "--span", "3-9", "-o", tmp_path / "x.json")
    assert proc.returncode == 2 and "--span" in proc.stderr


def test_infill_beside_a_dense_band_never_overruns_the_window() -> None:
    """Kept bars are silent in the window: their context and an empty bar go in as one chunk. A bar ended
    inside such a chunk used to ask for room without counting the chunk's earlier tokens, and beside a busy
    band the next bar overran the model's context (an internal error on real songs)."""
    from midiarr.engines import Controls, get_engine
    from midiarr.fixtures import band_song
    from midiarr.infill import infill
    from midiarr.song import NOTE_DTYPE, Track

    song = band_song(bars=32)
    # a synth holding five-note chords on every sixteenth: context bars near their token limit
    rows = [(b * 1920 + s * 120, 110, p, 70) for b in range(32) for s in range(16) for p in (60, 64, 67, 71, 74)]
    song = song.with_tracks([*song.tracks, Track(name="Synth", program=81, notes=np.array(rows, dtype=NOTE_DTYPE))])
    span = np.zeros(32, dtype=bool)
    span[12:16] = True
    result = infill(get_engine("transformer"), song, "bass", span, Controls(), seed=1, tries=1)
    bass = next(t for t in result.song.tracks if t.name == "Bass")
    bars = np.searchsorted(song.bar_starts(), bass.notes["start"], side="right") - 1
    assert set(range(12, 16)) <= set(bars.tolist())
