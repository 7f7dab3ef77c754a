"""Chord progressions: the text syntax, `generate --chords`, `midiarr chords`, `Arranger().generate(chords=...)`
and `eval-chords`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from midiarr.chords import chord_name, format_progression, parse, parse_chord, parse_key
from midiarr.errors import OptionError
from midiarr.io import load
from tests.conftest import fixture_cache, run_cli, run_cli_process


@pytest.mark.parametrize(
    "name, expected",
    [
        ("C", (0, "maj", None)),
        ("Cm7", (0, "m7", None)),
        ("G7/B", (7, "7", 11)),
        ("F#dim", (6, "dim", None)),
        ("Bbmaj7", (10, "maj7", None)),
        ("Dsus4", (2, "sus4", None)),
        ("Ebm", (3, "min", None)),
        ("A9", (9, "7", None)),
        ("Bm7b5", (11, "dim", None)),
        ("C/C", (0, "maj", None)),
        ("N.C.", None),
    ],
)
def test_chord_names(name: str, expected: tuple | None) -> None:
    assert parse_chord(name) == expected


@pytest.mark.parametrize("bad", ["H7", "Cxyz", "C/Q", "7"])
def test_a_bad_chord_name_says_what_is_wrong(bad: str) -> None:
    with pytest.raises(OptionError, match=repr(bad)):
        parse_chord(bad)


def test_cells_split_bars_and_the_text_round_trips() -> None:
    p = parse("C | G/B | Am F | F G | % | N.C.", key="G")
    assert p.bars == 6 and p.key.key == 1
    ticks = [(c.tick, chord_name(c)) for c in p.chords]
    bar = 1920
    assert ticks == [
        (0, "C"), (bar, "G/B"), (2 * bar, "Am"), (2 * bar + 960, "F"), (3 * bar + 960, "G"),
        (4 * bar, "F"), (4 * bar + 960, "G"), (5 * bar, "N.C."),
    ]  # fmt: skip
    again = parse(p.text(), key="G")
    assert again.chords == p.chords and again.bars == p.bars
    assert parse("C C C G | Am", meter=(4, 4)).text() == "C C C G | Am"
    assert parse("C | G", repeat=3).bars == 6
    assert parse_key("Em").key == 1 and parse_key("Bb").key == -2 and parse_key("F#m").minor


def test_generate_from_chords(tmp_path: Path) -> None:
    out = tmp_path / "band.mid"
    args = ("-q", "generate", "--chords", "C | G | Am F | F G", "--stems", "piano,bass", "--tempo", "100")
    assert run_cli(*args, "--repeat", "2", "--seed", "3", "-o", out) == 0
    song = load(out)
    assert song.num_bars == 8 and len(song.tracks) == 2
    bass = next(t for t in song.tracks if "bass" in t.name.lower())
    starts = bass.notes["start"]
    # the bass's first note of each bar's first chord is a tone of that chord (roots C, G, A, F)
    tones = [{0, 4, 7}, {7, 11, 2}, {9, 0, 4}, {5, 9, 0}] * 2
    firsts = [int(bass.notes["pitch"][np.flatnonzero(starts >= b * 1920)[0]]) % 12 for b in range(8)]
    assert sum(f in t for f, t in zip(firsts, tones, strict=True)) >= 6, firsts
    again = tmp_path / "again.mid"
    assert run_cli(*args, "--repeat", "2", "--seed", "3", "-o", again) == 0
    assert again.read_bytes() == out.read_bytes()
    # the chords a listener of that song hears come back in the same syntax
    proc = run_cli_process("chords", out)
    assert proc.returncode == 0 and proc.stdout.count("|") == 7
    xml = tmp_path / "band.musicxml"
    assert run_cli(*args, "--seed", "3", "-o", xml) == 0
    assert [c.root for c in load(xml).chord_symbols] == [0, 7, 9, 5, 7]


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--chords", "C | Hm"), "unknown chord|starts with its root"),
        (("--chords", "C | G", "--bars", "4"), "progression sets the length"),
        (("--repeat", "2"), "go with --chords"),
        (("--chords", "C", "--engine", "diffusion"), "does not write from a chord progression"),
    ],
)
def test_generate_with_bad_chords_is_one_line(tmp_path: Path, extra: tuple, message: str) -> None:
    proc = run_cli_process("generate", "--stems", "bass", "-o", tmp_path / "x.mid", *extra)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert __import__("re").search(message, proc.stderr)
    assert not (tmp_path / "x.mid").exists()


def test_chords_of_a_lead_sheet_and_the_python_api(tmp_path: Path) -> None:
    from midiarr import Arranger

    song = Arranger().generate(("bass",), chords="Dm7 | G7 | Cmaj7 | %", seed=1)
    assert song.num_bars == 4 and format_progression(song) == "Dm7 | G7 | Cmaj7 | Cmaj7"
    proc = run_cli_process("chords", "--json", Path(__file__).parent / "data" / "missing.mid")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1


def test_eval_chords_reports_fit_and_roots(tmp_path: Path) -> None:
    cache = fixture_cache(tmp_path / "cache", songs=6)
    split = json.loads((cache / "index.jsonl").read_text().splitlines()[0])["split"]
    out = tmp_path / "chords.json"
    assert run_cli("-q", "eval-chords", "--data", cache, "--split", split, "--limit", "1", "--bars", "4",
                   "--stems", "bass", "-o", out) == 0  # fmt: skip
    report = json.loads(out.read_text())
    assert report["songs"] and {"bass_fit", "bass_roots"} <= set(report["summary"])
    assert 0 <= report["summary"]["bass_roots"]["median"] <= 1


def test_a_midi_chord_track_is_the_songs_harmony(tmp_path: Path) -> None:
    from midiarr.io import save
    from midiarr.song import Note, Song, Tempo, TimeSignature, Track

    blocks = [(0, [48, 52, 55]), (1, [52, 55, 60]), (2, [45, 48, 52]), (3, [41, 45, 48]), (4, [43, 47, 50, 53])]
    chord_notes = [Note(bar * 1920, 1920, p, 70) for bar, ps in blocks for p in ps]
    melody = [Note(k * 960, 900, 76 if k % 2 else 74, 90) for k in range(10)]  # E and D over everything
    song = Song(
        tracks=[Track(name="Melody", program=73, notes=melody), Track(name="Chords", program=0, notes=chord_notes)],
        tempos=[Tempo(0, 100.0)],
        time_signatures=[TimeSignature(0, 4, 4)],
    )
    src = save(song, tmp_path / "lead.mid")
    proc = run_cli_process("chords", src)
    assert proc.returncode == 0 and proc.stdout.strip() == "C | C/E | Am | F | G7", proc.stdout
    out = tmp_path / "with_bass.mid"
    proc = run_cli_process("insert", src, "--stem", "bass", "--engine", "rules", "-o", out)
    assert proc.returncode == 0 and "chords from track 1 'Chords'" in proc.stdout
    back = load(out)
    assert [t.notes.tolist() for t in back.tracks[:2]] == [t.notes.tolist() for t in load(src).tracks]
