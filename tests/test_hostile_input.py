"""Hostile input meets the readers' checks at their root: values, files, archives, caps, paths, options.

The seeded fuzz suite (tests/fuzz/) throws many more files of these families at the command line;
these tests pin each check to the one place that makes it.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import mido
import pytest

from midiarr.errors import InputError, LimitError, OutputError
from midiarr.fixtures import band_song
from midiarr.io import check_output_path, load, save
from midiarr.io.files import read_input_bytes
from midiarr.io.limits import MAX_XML_NOTES_PER_MEASURE
from midiarr.io.musicxml import check_notation_work, parse_musicxml_bytes, unpack_mxl
from midiarr.song import KeySignature, Tempo, TimeSignature

from .conftest import run_cli, run_cli_process


def _midi(path: Path, tempo: int = 500_000, meter: tuple[int, int] = (4, 4)) -> Path:
    """A one-bar melody with the given raw tempo (microseconds per beat) and meter bytes."""
    mf = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=tempo))
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4))
    for i in range(4):
        track.append(mido.Message("note_on", note=60 + i, velocity=80, time=0))
        track.append(mido.Message("note_off", note=60 + i, velocity=0, time=480))
    mf.tracks.append(track)
    mf.save(path)
    data = bytearray(path.read_bytes())
    at = data.find(b"\xff\x58\x04")
    data[at + 3], data[at + 4] = meter  # numerator byte, denominator exponent byte
    path.write_bytes(bytes(data))
    return path


def _score(measures: int, notes_per_measure: int, part_list: bool = True) -> bytes:
    notes = "<note><pitch><step>C</step><octave>4</octave></pitch><duration>1</duration><type>16th</type></note>"
    body = "".join(
        f'<measure number="{m + 1}">'
        + ("<attributes><divisions>4</divisions><time><beats>4</beats><beat-type>4</beat-type></time></attributes>")
        * (m == 0)
        + notes * notes_per_measure
        + "</measure>"
        for m in range(measures)
    )
    parts = '<part-list><score-part id="P1"><part-name>Piano</part-name></score-part></part-list>' * part_list
    head = '<?xml version="1.0"?><score-partwise version="3.1">'
    return f'{head}{parts}<part id="P1">{body}</part></score-partwise>'.encode()


# ------------------------------------------------------------ song values
@pytest.mark.parametrize(
    ("tempo", "meter", "message"),
    [
        (0, (4, 2), "tempo infinite"),
        (500_000, (0, 2), "time signature 0/4"),
        (500_000, (0, 0), "time signature 0/1"),
        (500_000, (1, 31), "time signature 1/"),  # 2**31 wraps to 0 in the parser
        (500_000, (231, 0), "231/1"),
    ],
)
def test_impossible_tempo_and_meter_are_input_errors(tmp_path: Path, tempo: int, meter: tuple, message: str) -> None:
    path = _midi(tmp_path / "bad.mid", tempo, meter)
    with pytest.raises(InputError, match=message):
        load(path)
    proc = run_cli_process("convert", path, "-o", tmp_path / "out.musicxml")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert not (tmp_path / "out.musicxml").exists()


def test_musicxml_meter_and_key_are_checked_as_midi_is(tmp_path: Path) -> None:
    xml = _score(2, 4).replace(
        b"<beats>4</beats><beat-type>4</beat-type>", b"<beats>999</beats><beat-type>1</beat-type>"
    )
    path = tmp_path / "huge-meter.musicxml"
    path.write_bytes(xml)
    with pytest.raises(InputError, match="999/1"):
        load(path)
    song = band_song(bars=2)
    song.key_signatures = [KeySignature(0, 9, False)]
    song.tempos = [Tempo(0, 120.0)]
    save(song, tmp_path / "key.mid")
    data = bytearray((tmp_path / "key.mid").read_bytes())
    at = data.find(b"\xff\x59\x02")
    data[at + 3] = 12  # twelve sharps
    (tmp_path / "key.mid").write_bytes(bytes(data))
    with pytest.raises(InputError, match="key signature with 12 sharps"):
        load(tmp_path / "key.mid")


def test_a_good_song_passes_every_check(tmp_path: Path) -> None:
    song = band_song(bars=4)
    song.time_signatures = [TimeSignature(0, 4, 4), TimeSignature(1920 * 2, 76, 32)]  # a real file's meter
    save(song, tmp_path / "ok.mid")
    assert load(tmp_path / "ok.mid").note_count == song.note_count


# ------------------------------------------------------------------ files
def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.mid"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(InputError, match="not a regular file"):
        load(fifo)  # no writer: a blocking open would wait forever
    assert time.monotonic() - start < 5
    zero = tmp_path / "zero.mid"
    zero.symlink_to("/dev/zero")
    with pytest.raises(InputError, match="not a regular file"):
        load(zero)
    (tmp_path / "folder.mid").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        load(tmp_path / "folder.mid")


def test_the_byte_cap_holds_while_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.mid"
    path.write_bytes(b"MThd" + b"\0" * 5000)
    assert len(read_input_bytes(path, 6000)) == 5004
    with pytest.raises(InputError, match="over the"):
        read_input_bytes(path, 4096)


# ---------------------------------------------------------------- archives
def _mxl(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_bomb_is_refused_at_the_cap(tmp_path: Path) -> None:
    bomb = _mxl({"score.xml": b'<?xml version="1.0"?><score-partwise>' + b" " * 200_000_000 + b"</score-partwise>"})
    assert len(bomb) < 1_000_000
    with pytest.raises(LimitError, match="expands past"):
        unpack_mxl(bomb, "bomb.mxl")
    path = tmp_path / "bomb.mxl"
    path.write_bytes(bomb)
    proc = run_cli_process("stems", path)
    assert proc.returncode == 1 and "zip bomb" in proc.stderr and proc.stderr.count("\n") == 1


def test_the_container_names_the_score(tmp_path: Path) -> None:
    container = b'<container><rootfiles><rootfile full-path="music/real.musicxml"/></rootfiles></container>'
    data = _mxl(
        {"META-INF/container.xml": container, "a-decoy.xml": b"<not-a-score/>", "music/real.musicxml": _score(2, 4)}
    )
    path = tmp_path / "song.mxl"
    path.write_bytes(data)
    assert load(path).note_count == 8
    path.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(InputError, match="broken compressed MusicXML"):
        load(path)


# --------------------------------------------------------------- MusicXML work
def test_musicxml_structure_and_work_are_checked_before_music21(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no parts"):
        parse_musicxml_bytes(b'<?xml version="1.0"?><score-partwise/>', "empty.musicxml")
    with pytest.raises(InputError, match="not declared in the part list"):
        parse_musicxml_bytes(_score(1, 4, part_list=False), "no-part-list.musicxml")
    start = time.monotonic()
    with pytest.raises(LimitError, match=f"over the {MAX_XML_NOTES_PER_MEASURE} limit"):
        parse_musicxml_bytes(_score(1, MAX_XML_NOTES_PER_MEASURE + 1), "crowded.musicxml")
    with pytest.raises(LimitError, match="measures in 1 part"):
        parse_musicxml_bytes(_score(3000, 1), "long.musicxml")
    assert time.monotonic() - start < 10  # refused before music21 spends minutes on them
    with pytest.raises(InputError, match="broken MusicXML"):
        parse_musicxml_bytes(b'<?xml version="1.0"?><score-partwise><part', "cut.musicxml")


def test_external_entities_are_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = _score(1, 1).replace(
        b'<?xml version="1.0"?>', f'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "file://{secret}">]>'.encode()
    )
    xxe = xxe.replace(b"<part-name>Piano</part-name>", b"<part-name>&x;</part-name>")
    try:
        score = parse_musicxml_bytes(xxe, "xxe.musicxml")
    except InputError:
        return
    assert "TOP-SECRET" not in str(score.parts[0].partName)


def test_notation_work_is_bounded(tmp_path: Path) -> None:
    check_notation_work(band_song(bars=100), "ok")
    with pytest.raises(LimitError, match=r"write a \.mid file"):
        check_notation_work(band_song(bars=1200), "long.musicxml")


# ------------------------------------------------------------------ outputs
def test_the_input_is_never_overwritten_through_a_missing_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    save(band_song(bars=2), "in.mid")
    before = Path("in.mid").read_bytes()
    assert (
        run_cli("insert", "in.mid", "--stem", "guitar", "--engine", "rules", "--replace", "-o", "nosuchdir/../in.mid")
        == 1
    )
    assert not Path("nosuchdir").exists()  # nothing created before the refusal
    args = (
        "insert",
        "in.mid",
        "--stem",
        "guitar",
        "--engine",
        "rules",
        "--replace",
        "--mkdir",
        "-o",
        "nosuchdir/../in.mid",
    )
    assert run_cli(*args) == 1  # the folder is made, then the output is seen to be the input
    assert Path("in.mid").read_bytes() == before
    with pytest.raises(OutputError, match="is the input file"):
        os.link("in.mid", "hard.mid")
        check_output_path("in.mid", "hard.mid", force=False)
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path("in.mid", "missing/out.mid", force=False)
    with pytest.raises(OutputError, match="is a folder"):
        check_output_path("in.mid", tmp_path, force=False)
    assert run_cli("convert", "in.mid", "-o", "made/here/out.musicxml", "--mkdir") == 0
    assert Path("made/here/out.musicxml").is_file()


# ------------------------------------------------------------------ options
@pytest.mark.parametrize(
    "option",
    [
        ("--seed", "-1"),
        ("--seed", str(2**32)),
        ("--seed", "1e400"),
        ("--candidates", "100000"),
        ("--temperature", "nan"),
        ("--temperature", "inf"),
        ("--temperature", "0"),
        ("--top-p", "1.5"),
        ("--harmony-weight", "-inf"),
        ("--active", "1-9999999999"),
        ("--active", "1-99999999999999999999"),
        ("--active", "1-40"),
    ],
)
def test_options_are_bounded_before_any_work(tmp_path: Path, option: tuple[str, str]) -> None:
    save(band_song(bars=4), tmp_path / "in.mid")
    proc = run_cli_process(
        "insert", tmp_path / "in.mid", "--stem", "strings", "--engine", "rules", "-o", tmp_path / "out.mid", *option
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.mid").exists()


def test_library_warnings_stay_out_of_stderr_unless_verbose(tmp_path: Path) -> None:
    from midiarr.song import Note, Track

    song = band_song(bars=1)
    song.tracks.append(Track(name="Perc", is_drum=True, notes=[Note(0, 240, 27, 90)]))  # a note music21 has no name for
    save(song, tmp_path / "odd.musicxml")
    quiet = run_cli_process("convert", tmp_path / "odd.musicxml", "-o", tmp_path / "odd.mid")
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = run_cli_process("-v", "convert", tmp_path / "odd.musicxml", "-o", tmp_path / "odd2.mid")
    assert loud.returncode == 0 and "does not map to a valid instrument" in loud.stderr


def test_model_engines_refuse_songs_longer_than_they_work_on(tmp_path: Path) -> None:
    import numpy as np

    from midiarr.engines import get_engine
    from midiarr.song import NOTE_DTYPE, Song, Track

    engine = get_engine("transformer")
    bars = engine.max_bars + 1
    song = Song(
        tracks=[Track(name="Pad", program=89, notes=np.array([(0, 1920 * bars, 60, 80)], dtype=NOTE_DTYPE))],
        tempos=[Tempo(0, 120.0)],
        time_signatures=[TimeSignature(0, 4, 4)],
    )
    start = time.monotonic()
    with pytest.raises(LimitError, match=f"the song has {bars} bars"):
        engine.insert(song, "bass")
    assert time.monotonic() - start < 5
