"""Takes: N takes from one seed, on insert and generate, in the CLI and the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from midiarr.io import save
from midiarr.song import Song
from tests.conftest import run_cli, run_cli_process


@pytest.fixture
def no_bass(tmp_path: Path, band: Song) -> Path:
    return save(band.with_tracks([t for t in band.tracks if t.name != "Bass"]).first_bars(4), tmp_path / "nb.mid")


def test_insert_writes_takes_with_their_scores(tmp_path: Path, no_bass: Path) -> None:
    out = tmp_path / "out.mid"
    assert run_cli("-q", "insert", no_bass, "--stem", "bass", "--takes", "3", "--seed", "5", "-o", out) == 0
    files = [tmp_path / f"out.take{k}.mid" for k in (1, 2, 3)]
    assert all(f.is_file() for f in files) and not out.exists()
    report = json.loads((tmp_path / "out.takes.json").read_text())
    assert [r["take"] for r in report["takes"]] == [1, 2, 3] and [r["file"] for r in report["takes"]] == [
        f.name for f in files
    ]
    scores = report["takes"][0]["scores"]
    assert set(scores) == {"notes", "bars_played", "notes_per_bar", "harmonic_fit", "onset_sync"}
    assert scores["notes"] > 0 and 0 <= scores["harmonic_fit"] <= 1
    # take 1 is the plain insert with the seed; the same seed gives the same takes; takes differ
    single = tmp_path / "single.mid"
    assert run_cli("-q", "insert", no_bass, "--stem", "bass", "--seed", "5", "-o", single) == 0
    assert single.read_bytes() == files[0].read_bytes()
    again = tmp_path / "again.mid"
    assert run_cli("-q", "insert", no_bass, "--stem", "bass", "--takes", "3", "--seed", "5", "-o", again) == 0
    assert [(tmp_path / f"again.take{k}.mid").read_bytes() for k in (1, 2, 3)] == [f.read_bytes() for f in files]
    assert len({f.read_bytes() for f in files}) == 3


def test_generate_takes_from_chords(tmp_path: Path) -> None:
    out = tmp_path / "band.musicxml"
    args = ("-q", "generate", "--chords", "C | F | G | C", "--stems", "bass", "--takes", "2", "-o", out)
    assert run_cli(*args) == 0
    assert (tmp_path / "band.take1.musicxml").is_file() and (tmp_path / "band.take2.musicxml").is_file()
    assert len(json.loads((tmp_path / "band.takes.json").read_text())["takes"]) == 2


@pytest.mark.parametrize("extra", [("--takes", "0"), ("--takes", "17"), ("--takes", "2", "--report", "rep")])
def test_bad_takes_are_one_line(tmp_path: Path, no_bass: Path, extra: tuple) -> None:
    proc = run_cli_process("insert", no_bass, "--stem", "bass", "-o", tmp_path / "o.mid", *extra)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert not list(tmp_path.glob("o.*"))


def test_takes_from_python(band: Song) -> None:
    from midiarr import Arranger

    song = band.with_tracks([t for t in band.tracks if t.name != "Bass"]).first_bars(4)
    arranger = Arranger()
    takes = arranger.insert_takes(song, "bass", takes=2, seed=1)
    assert [t.number for t in takes] == [1, 2] and takes[0].seed == 1
    first = takes[0].song.tracks[takes[0].new_tracks[0]].notes
    assert first.tolist() == arranger.insert(song, "bass", seed=1).tracks[-1].notes.tolist()
    songs = arranger.generate_takes(("bass",), takes=2, chords="Am | Dm | E7 | Am", seed=2)
    assert len(songs) == 2 and all(t.song.num_bars == 4 for t in songs)
