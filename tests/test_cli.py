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


def test_insert_command(band_file, tmp_path, capsys):
    partial = tmp_path / "no_bass.mid"
    assert run_cli("-q", "subtract", band_file, "--stem", "bass", "-o", partial) == 0
    out, again = tmp_path / "with_bass.mid", tmp_path / "again.mid"
    options = ["--stem", "bass", "--instruction", "busy bass, soft and wobbly", "--seed", "3", "--active", "1-4"]
    assert run_cli("insert", partial, "-o", out, *options) == 0
    text = capsys.readouterr().out
    assert "bass by transformer" in text and "not used: wobbly" in text
    song = read_midi(out)
    assert [t.name for t in song.tracks] == ["Piano", "Guitar", "Drums", "Bass"]
    assert song.bar_activity(song.tracks[3].notes).tolist() == [True] * 4 + [False] * 4
    assert run_cli("-q", "insert", partial, "-o", again, *options) == 0
    assert again.read_bytes() == out.read_bytes()  # same seed, same part
    assert run_cli("insert", partial, "--stem", "bass", "-o", tmp_path / "x.mid", "--engine", "nope") == 2
    assert run_cli("insert", partial, "--stem", "bass", "-o", tmp_path / "x.mid", "--active", "9-x") == 2


def test_insert_to_musicxml(band_file, tmp_path):
    out = tmp_path / "song.musicxml"
    assert run_cli("-q", "insert", band_file, "--stem", "guitar", "-o", out, "--replace") == 0
    assert [t.name for t in read_musicxml(out).tracks][-1] == "Guitar"


def test_eval_command(tmp_path, capsys):
    from midiarr.fixtures import band_song

    for i in range(12):
        write_midi(band_song(bars=4 + i), tmp_path / "data" / f"s{i}.mid")
    assert run_cli("-q", "prepare", tmp_path / "data", "-o", tmp_path / "cache", "--workers", "1") == 0
    split = json.loads((tmp_path / "cache" / "splits.json").read_text())
    use = "train" if split["train"] else "valid"
    assert (
        run_cli(
            "eval",
            "--engine",
            "rules",
            "--engine",
            "borrow",
            "--stems",
            "bass,drums",
            "--data",
            tmp_path / "cache",
            "--split",
            use,
            "-o",
            tmp_path / "rep",
            "--limit",
            "3",
        )
        == 0
    )
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    rules = report["aggregate"]["bass"]["rules"]
    assert rules["context_preserved"] == 1.0 and rules["harmonic_fit"] > 0.9 and rules["bar_recall"] > 0.9
    assert report["aggregate"]["bass"]["real"]["groove_similarity"] == 1.0
    # kit-piece similarity is a drum measure: the real drums match themselves, a bass has none
    assert report["aggregate"]["drums"]["real"]["kit_similarity"] == 1.0
    assert 0.0 < report["aggregate"]["drums"]["rules"]["kit_similarity"] <= 1.0
    assert report["aggregate"]["bass"]["rules"].get("kit_similarity") is None
    # per-song rows, spreads and engine-vs-engine intervals beside the means
    assert all(row["song"] for row in report["scores"])
    assert report["spreads"]["bass"]["rules"]["density_ratio"]["median"] is not None
    assert "density_ratio" in report["bootstrap"]["bass"]["rules - borrow"]
    assert "## Players" in (tmp_path / "rep" / "report.md").read_text()
    names = {p.name for p in (tmp_path / "rep").iterdir()}
    assert {"report.json", "report.md", "metrics.png"} <= names
    assert any(n.startswith("example_") for n in names)
    assert "| rules |" in (tmp_path / "rep" / "report.md").read_text()
    capsys.readouterr()
    assert run_cli("eval", "--engine", "nope", "--data", tmp_path / "cache", "-o", tmp_path / "r2") == 2


def test_insert_report_page(band_file, tmp_path):
    report = tmp_path / "report"
    assert (
        run_cli(
            "-q",
            "insert",
            band_file,
            "--stem",
            "drums",
            "-o",
            tmp_path / "o.mid",
            "--report",
            report,
            "--soundfont",
            "timgm",
            "--instruction",
            "busy drums",
            "--replace",
        )
        == 0
    )
    page = (report / "index.html").read_text()
    assert '<img src="pianoroll.png"' in page and 'src="audio/mix.wav"' in page and 'src="audio/drums.wav"' in page
    assert "busy drums" in page and "Drums" in page  # the instruction and what was replaced
    assert (report / "pianoroll.png").read_bytes().startswith(b"\x89PNG")
    # the score as notation, the new drums in red
    pages = sorted(report.glob("score-*.svg"))
    assert pages and all(f'src="{p.name}"' in page for p in pages)
    svg = pages[0].read_text()
    assert svg.lstrip().startswith(("<svg", "<?xml")) and "#D62728" in svg
    for name in ("mix", "drums", "bass"):
        assert (report / "audio" / f"{name}.wav").stat().st_size > 1000
