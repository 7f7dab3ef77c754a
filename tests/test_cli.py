import json

import pytest

from midiarr.io import read_midi, read_musicxml, write_midi
from midiarr.song import Song, Track
from tests.conftest import run_cli, run_cli_process


def test_stems_table(band_file, capsys):
    assert run_cli("stems", band_file, "--describe") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["track", "name", "program", "role", "notes", "bars", "active"]
    assert lines[2].split()[:4] == ["1", "Bass", "33", "bass"]
    assert "8/8" in lines[2]
    assert any(line.startswith("bass: ") for line in lines)


def test_stems_json_with_override(band_file, capsys):
    assert run_cli("stems", band_file, "--json", "--role", "0=strings") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tracks"][0]["role"] == "strings"
    assert data["bars"] == 8


def test_subtract_and_convert(band_file, tmp_path):
    out = tmp_path / "no_bass.mid"
    assert run_cli("-q", "subtract", band_file, "--stem", "bass", "-o", out, "--stem-output", tmp_path / "b.mid") == 0
    assert [t.name for t in read_midi(out).tracks] == ["Piano", "Guitar", "Drums"]
    assert [t.name for t in read_midi(tmp_path / "b.mid").tracks] == ["Bass"]
    xml = tmp_path / "no_bass.musicxml"
    assert run_cli("convert", out, "-o", xml) == 0
    assert len(read_musicxml(xml).tracks) == 3


def test_tokenize_command(band_file, capsys):
    assert run_cli("tokenize", band_file, "--bars", "1") == 0
    out = capsys.readouterr().out
    assert out.startswith("bar 1: Bar_None")


def test_prepare_command(tmp_path, band, capsys):
    write_midi(band, tmp_path / "data" / "a.mid")
    assert run_cli("prepare", tmp_path / "data", "-o", tmp_path / "cache", "--workers", "1") == 0
    out = capsys.readouterr().out
    assert "songs: 1" in out and "triplets per stem: bass 1" in out


def test_output_equal_to_input_is_refused(band_file, capsys):
    before = band_file.read_bytes()
    assert run_cli("subtract", band_file, "--stem", "bass", "-o", band_file) != 0
    assert "is the input file" in capsys.readouterr().err
    assert band_file.read_bytes() == before
    assert run_cli("subtract", band_file, "--stem", "bass", "-o", band_file, "--force") == 0


def _bad_inputs(tmp_path, band_file):
    data = band_file.read_bytes()
    (tmp_path / "trunc.mid").write_bytes(data[: len(data) // 3])
    (tmp_path / "random.mid").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "empty.mid").write_bytes(b"")
    write_midi(Song(tracks=[Track(name="silent")]), tmp_path / "silent.mid")
    (tmp_path / "bad.musicxml").write_text('<?xml version="1.0"?><score-partwise><part id="P1"><measure>')
    return {
        "truncated": ["stems", tmp_path / "trunc.mid"],
        "random bytes": ["stems", tmp_path / "random.mid"],
        "empty": ["subtract", tmp_path / "empty.mid", "--stem", "bass", "-o", tmp_path / "o.mid"],
        "no notes": ["subtract", tmp_path / "silent.mid", "--stem", "bass", "-o", tmp_path / "o.mid"],
        "broken musicxml": ["convert", tmp_path / "bad.musicxml", "-o", tmp_path / "o.mid"],
        "unknown stem": ["subtract", band_file, "--stem", "kazoo", "-o", tmp_path / "o.mid"],
        "missing path": ["stems", tmp_path / "nowhere.mid"],
        "unknown format": ["convert", band_file, "-o", tmp_path / "o.wav"],
        "bad role": ["stems", band_file, "--role", "9=bass"],
        "unknown option": ["stems", band_file, "--frobnicate"],
    }


def test_bad_input_gives_one_line_and_nonzero_exit_in_process(tmp_path, band_file, capsys):
    for case, args in _bad_inputs(tmp_path, band_file).items():
        try:
            code = run_cli(*args)
        except SystemExit as exc:  # argparse errors exit from inside
            code = exc.code
        err = capsys.readouterr().err
        assert code != 0, case
        assert len(err.strip().splitlines()) == 1, (case, err)
        assert "Traceback" not in err and "internal error" not in err, (case, err)
    assert not (tmp_path / "o.mid").exists()


@pytest.mark.parametrize("case", ["truncated", "broken musicxml", "unknown stem", "unknown option"])
def test_bad_input_as_a_real_process(tmp_path, band_file, case):
    proc = run_cli_process(*_bad_inputs(tmp_path, band_file)[case])
    assert proc.returncode in (1, 2)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("midiarr")
