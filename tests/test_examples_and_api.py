"""The public Python API and the runnable examples."""

import subprocess
import sys
from pathlib import Path

import pretty_midi
import pytest

import midiarr
from midiarr.fixtures import band_song

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_arranger_inserts_and_arranges():
    song = band_song(bars=4)
    partial = midiarr.subtract(song, "bass").partial
    with_bass = midiarr.Arranger().insert(partial, "bass", "busy bass", seed=2, active="1-2")
    assert [t.name for t in with_bass.tracks][-1] == "Bass"
    assert with_bass.bar_activity(with_bass.tracks[-1].notes).tolist() == [True, True, False, False]
    keys_only = song.with_tracks([song.tracks[0]])
    full = midiarr.Arranger().arrange(keys_only, ["bass", "drums", "guitar"], seed=0)
    assert [midiarr.assign_roles(full)[i] for i in range(4)] == ["piano", "bass", "drums", "guitar"]


def test_arranger_takes_other_libraries_objects():
    pm = midiarr.to_pretty_midi(band_song(bars=4))
    out = midiarr.Arranger().insert(pm, "strings", density="sparse")
    assert isinstance(pm, pretty_midi.PrettyMIDI)
    assert out.tracks[-1].name == "Strings"


@pytest.mark.parametrize(
    "script, expected",
    [
        ("chord_progression.py", ["song.mid", "song.musicxml", "audio/mix.wav", "audio/bass.wav"]),
        ("music21_melody.py", ["waltz.mid"]),
        ("lead_sheet.py", ["song.mid", "song.musicxml", "audio/mix.wav", "audio/bass.wav"]),
        ("redo_bars.py", ["redone.mid"]),
    ],
)
def test_examples_run(tmp_path, script, expected):
    args = [sys.executable, str(EXAMPLES / script), "--out", str(tmp_path)]
    if script in ("chord_progression.py", "lead_sheet.py"):
        args += ["--soundfont", "timgm"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in expected:
        assert (tmp_path / name).exists(), name
    song = midiarr.load(tmp_path / expected[0])
    roles = set(midiarr.assign_roles(song).values())
    assert {"bass", "drums"} <= roles and (script == "lead_sheet.py" or "guitar" in roles)
    if script == "lead_sheet.py":  # the score carries the progression as chord symbols
        sheet = midiarr.load(tmp_path / "song.musicxml")
        assert midiarr.chords.format_progression(sheet) == "Am | F | C | G | Am | F | C G | E7"
