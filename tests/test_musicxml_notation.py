"""MusicXML as notation: drum parts, voices, values, triplets, keys, beams and chord symbols, checked in the
file itself and, where `mscore3` is installed, in MuseScore."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from midiarr.io import load, save
from midiarr.io.notation import FEET
from midiarr.song import KeySignature, Note, Song, TimeSignature, Track, notes_array
from tests.conftest import run_cli
from tests.notation_readers import MUSESCORE, midi_notes, musescore_export, sounding_notes

VALUE_NAMES = {"whole", "half", "quarter", "eighth", "16th", "32nd", "64th", "128th"}


def _root(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def _part(root: ET.Element, name: str) -> tuple[ET.Element, ET.Element]:
    sp = next(sp for sp in root.iter("score-part") if sp.findtext("part-name") == name)
    return sp, next(p for p in root.findall("part") if p.get("id") == sp.get("id"))


def _voices(measure: ET.Element) -> set[str]:
    return {n.findtext("voice") for n in measure.iter("note")}


def _check_measures_add_up(root: ET.Element) -> None:
    """Every voice of every measure fills the measure exactly, with named values only."""
    for part in root.findall("part"):
        divisions, beats, beat_type = None, 4, 4
        for measure in part.findall("measure"):
            attrs = measure.find("attributes")
            if attrs is not None:
                divisions = int(attrs.findtext("divisions") or divisions)
                if attrs.find("time") is not None:
                    beats, beat_type = int(attrs.findtext("time/beats")), int(attrs.findtext("time/beat-type"))
            length = beats * divisions * 4 // beat_type
            totals: dict[str, int] = {}
            for n in measure.iter("note"):
                if n.find("chord") is not None:
                    continue
                voice = n.findtext("voice")
                totals[voice] = totals.get(voice, 0) + int(n.findtext("duration"))
                rest = n.find("rest")
                if rest is None or rest.get("measure") != "yes":
                    assert n.findtext("type") in VALUE_NAMES
            assert set(totals.values()) == {length}, (part.get("id"), measure.get("number"), totals)


def test_drums_are_a_percussion_part_on_channel_10(tmp_path: Path, band: Song) -> None:
    path = save(band, tmp_path / "band.musicxml")
    root = _root(path)
    sp, part = _part(root, "Drums")
    used = sorted({int(p) for p in band.tracks[3].notes["pitch"]})
    instruments = {si.get("id") for si in sp.findall("score-instrument")}
    unpitched = {mi.get("id"): int(mi.findtext("midi-unpitched")) for mi in sp.findall("midi-instrument")}
    assert {mi.findtext("midi-channel") for mi in sp.findall("midi-instrument")} == {"10"}
    assert sorted(v - 1 for v in unpitched.values()) == used and set(unpitched) == instruments
    assert part.find("measure/attributes/clef/sign").text == "percussion"
    for n in part.iter("note"):
        if n.find("rest") is not None:
            continue
        gm = unpitched[n.find("instrument").get("id")] - 1
        assert n.find("tie") is None  # a drum hit never ties
        assert (n.findtext("voice"), n.findtext("stem")) == (("2", "down") if gm in FEET else ("1", "up"))
        if gm == 42:
            assert n.findtext("notehead") == "x" and n.findtext("unpitched/display-step") == "G"
        if gm == 36:
            assert (n.findtext("unpitched/display-step"), n.findtext("unpitched/display-octave")) == ("F", "4")
    _check_measures_add_up(root)
    back = next(t for t in load(path).tracks if t.is_drum)
    assert sorted(zip(back.notes["start"].tolist(), back.notes["pitch"].tolist())) == sorted(
        zip(band.tracks[3].notes["start"].tolist(), band.tracks[3].notes["pitch"].tolist())
    )


def test_a_drum_part_from_another_program_reads_by_its_instruments(tmp_path: Path, band: Song) -> None:
    """Positions on the staff differ between programs; the declared <midi-unpitched> is what counts."""
    text = save(band, tmp_path / "band.musicxml").read_text()
    moved = text.replace("<display-step>F</display-step>", "<display-step>A</display-step>")  # kick elsewhere
    (tmp_path / "moved.musicxml").write_text(moved)
    back = next(t for t in load(tmp_path / "moved.musicxml").tracks if t.is_drum)
    assert sorted(back.notes["pitch"].tolist()) == sorted(band.tracks[3].notes["pitch"].tolist())


def _song(notes: list[Note], program: int = 33, name: str = "Bass", key: int = 0) -> Song:
    track = Track(name=name, program=program, notes=notes_array(notes))
    return Song(tracks=[track], time_signatures=[TimeSignature(0, 4, 4)], key_signatures=[KeySignature(0, key)])


def test_a_legato_bass_is_one_voice(tmp_path: Path) -> None:
    # each note overlaps the next by a 16th, as a played legato line does
    notes = [Note(i * 480, 600, 40 + (i * 5) % 12, 90) for i in range(16)]
    path = save(_song(notes), tmp_path / "bass.musicxml")
    root = _root(path)
    assert all(_voices(m) == {"1"} for m in root.iter("measure"))
    _check_measures_add_up(root)
    back = load(path).tracks[0].notes
    assert back["start"].tolist() == [n.start for n in notes]
    assert back["duration"].tolist() == [480] * 15 + [600]  # each overlap is trimmed, nothing else


def test_lines_that_truly_overlap_get_voices_up_to_the_limit(tmp_path: Path) -> None:
    held = [Note(bar * 1920, 1920, 48, 80) for bar in range(2)]
    moving = [Note(i * 240, 240, 64 + i % 5, 80) for i in range(16)]
    path = save(_song(held + moving, program=0, name="Piano"), tmp_path / "two.musicxml")
    assert {len(_voices(m)) for m in _root(path).iter("measure")} == {2}
    # six lines entering a 16th apart and held for a bar: more than a staff holds
    dense = [Note(k * 120 + bar * 1920, 1800, 60 + 3 * k, 80) for bar in range(2) for k in range(6)]
    song = _song(dense, program=0, name="Piano")
    for voices, most in (("4", 4), ("1", 1)):
        out = tmp_path / f"dense{voices}.musicxml"
        save(song, tmp_path / "dense.mid")
        assert run_cli("-q", "convert", tmp_path / "dense.mid", "-o", out, "--voices", voices) == 0
        root = _root(out)
        assert max(len(_voices(m)) for m in root.iter("measure")) <= most
        _check_measures_add_up(root)
        back = load(out).tracks[0].notes
        assert sorted(zip(back["start"].tolist(), back["pitch"].tolist())) == sorted((n.start, n.pitch) for n in dense)


def test_triplets_are_spelled_with_brackets(tmp_path: Path) -> None:
    triplets = [Note(i * 160, 160, 60 + i, 80) for i in range(3)]  # beat 1: eighth triplets
    sixteenths = [Note(480 + i * 120, 120, 67, 80) for i in range(4)]  # beat 2: straight 16ths
    path = save(_song(triplets + sixteenths, program=0, name="Piano"), tmp_path / "t.musicxml")
    notes = [n for n in _root(path).iter("note") if n.find("rest") is None]
    marked = [n for n in notes if n.find("time-modification") is not None]
    assert len(marked) == 3
    assert [t.get("type") for n in marked for t in n.iter("tuplet")] == ["start", "stop"]
    back = load(path).tracks[0].notes
    assert back["start"].tolist() == [n.start for n in triplets + sixteenths]
    _check_measures_add_up(_root(path))


def test_pitches_are_spelled_in_the_key(tmp_path: Path) -> None:
    notes = [Note(0, 480, 66, 80), Note(480, 480, 65, 80), Note(960, 480, 65, 80), Note(1440, 480, 66, 80)]
    path = save(_song(notes, program=0, name="Piano", key=1), tmp_path / "g.musicxml")
    root = _root(path)
    assert root.findtext("part/measure/attributes/key/fifths") == "1"
    pitched = [n for n in root.iter("note") if n.find("pitch") is not None]
    spelled = [(n.findtext("pitch/step"), n.findtext("pitch/alter"), n.findtext("accidental")) for n in pitched]
    # F# is in the key; F natural needs its sign once; F# again needs its sharp back
    assert spelled == [("F", "1", None), ("F", None, "natural"), ("F", None, None), ("F", "1", "sharp")]


def test_short_notes_are_beamed_by_beat(tmp_path: Path) -> None:
    notes = [Note(i * 240, 240, 60, 80) for i in range(8)]
    path = save(_song(notes, program=0, name="Piano"), tmp_path / "b.musicxml")
    beams = [n.findtext("beam") for n in _root(path).iter("note") if n.find("pitch") is not None]
    assert beams == ["begin", "end"] * 4


def test_the_grid_option_sets_what_notation_holds(tmp_path: Path) -> None:
    save(_song([Note(i * 120, 120, 60, 80) for i in range(8)], program=0, name="Piano"), tmp_path / "s.mid")
    assert run_cli("-q", "convert", tmp_path / "s.mid", "-o", tmp_path / "e.musicxml", "--notation-grid", "8") == 0
    types = {n.findtext("type") for n in _root(tmp_path / "e.musicxml").iter("note") if n.find("pitch") is not None}
    assert types == {"eighth"}


def test_chord_symbols_sit_above_the_new_part(tmp_path: Path, band: Song) -> None:
    from midiarr.harmony import estimate_chords
    from midiarr.io.musicxml_writer import HARMONY_KINDS

    save(band.with_tracks([band.tracks[0], band.tracks[2], band.tracks[3]]), tmp_path / "no_bass.mid")
    out = tmp_path / "with_bass.musicxml"
    assert run_cli("-q", "insert", tmp_path / "no_bass.mid", "--stem", "bass", "--engine", "rules", "-o", out) == 0
    root = _root(out)
    by_part = {p.get("id"): list(p.iter("harmony")) for p in root.findall("part")}
    new_id = next(sp.get("id") for sp in root.iter("score-part") if "bass" in sp.findtext("part-name").lower())
    assert all(not h for pid, h in by_part.items() if pid != new_id)
    kinds = {k for k, _ in HARMONY_KINDS.values()}
    assert by_part[new_id] and all(h.findtext("kind") in kinds for h in by_part[new_id])
    song = load(tmp_path / "no_bass.mid")
    expected = [c.name[0] for c in estimate_chords(song)]
    assert [h.findtext("root/root-step") for h in by_part[new_id]] == expected
    plain = tmp_path / "plain.musicxml"
    args = ("-q", "insert", tmp_path / "no_bass.mid", "--stem", "bass", "--engine", "rules", "-o", plain)
    assert run_cli(*args, "--no-chord-symbols") == 0
    assert _root(plain).find(".//harmony") is None


@pytest.mark.skipif(MUSESCORE is None, reason="MuseScore 3 (mscore3) is not installed")
def test_musescore_plays_and_prints_what_midiarr_writes(tmp_path: Path, band: Song) -> None:
    """A MuseScore user's score with midiarr's bass and drums added: every part there with its notes, the drums
    on channel 10 with their General MIDI notes, the same measures and meters, a bass in one voice."""
    save(band.with_tracks([band.tracks[0], band.tracks[2]]), tmp_path / "no_rhythm.mid")
    score = tmp_path / "score.musicxml"
    assert run_cli("-q", "convert", tmp_path / "no_rhythm.mid", "-o", score) == 0
    out = tmp_path / "with_rhythm.musicxml"
    assert run_cli("-q", "insert", score, "--stem", "bass,drums", "--engine", "rules", "-o", out, "--seed", "1") == 0
    original, added = score.read_text(), out.read_text()
    for part in ET.fromstring(original.encode()).findall("part"):  # every original part, byte for byte
        start = original.index(f'<part id="{part.get("id")}"')
        assert original[start : original.index("</part>", start)] in added
    ours = load(out)
    written = sounding_notes(out)
    played = midi_notes(musescore_export(out, tmp_path / "ms.mid"))
    drums = next(t for t in ours.tracks if t.is_drum)
    assert played[9] == len(drums.notes)
    assert sum(played.values()) >= 0.99 * sum(written.values())
    gm = set()
    import mido

    for track in mido.MidiFile(str(tmp_path / "ms.mid")).tracks:
        gm |= {m.note for m in track if m.type == "note_on" and m.velocity > 0 and m.channel == 9}
    assert gm == {int(p) for p in drums.notes["pitch"]}
    exported_path = musescore_export(out, tmp_path / "ms.musicxml")
    exported, ours_root = _root(exported_path), _root(out)
    # every part is there, in order, with its notes
    theirs = list(sounding_notes(exported_path).values())
    mine = [written[p.get("id")] for p in ours_root.findall("part")]
    assert len(theirs) == len(mine) and all(abs(a - b) <= 0.01 * b for a, b in zip(theirs, mine, strict=True))
    assert [len(p.findall("measure")) for p in exported.findall("part")] == [
        len(p.findall("measure")) for p in ours_root.findall("part")
    ]
    meters = [(t.findtext("beats"), t.findtext("beat-type")) for t in exported.iter("time")]
    assert set(meters) == {(t.findtext("beats"), t.findtext("beat-type")) for t in ours_root.iter("time")}
    for part in exported.findall("part"):
        assert max(len(_voices(m)) for m in part.findall("measure")) <= 4
    bass_id = next(sp.get("id") for sp in exported.iter("score-part") if "bass" in sp.findtext("part-name").lower())
    bass = next(p for p in exported.findall("part") if p.get("id") == bass_id)
    assert all(len(_voices(m)) <= 1 for m in bass.findall("measure"))
    assert musescore_export(out, tmp_path / "page.pdf").stat().st_size > 1000


def _lead_sheet(path: Path) -> Path:
    """A melody that sits on one note (E) under the chords C | Am | F | G7/B, as a music21 lead sheet."""
    from music21 import harmony, meter, note, stream

    part = stream.Part()
    part.partName = "Melody"
    part.append(meter.TimeSignature("4/4"))
    for bar, figure in enumerate(["C", "Am", "F", "G7/B"] * 2):
        part.insert(bar * 4.0, harmony.ChordSymbol(figure))
        for beat in range(4):
            part.insert(bar * 4.0 + beat, note.Note("E5", quarterLength=1))
    stream.Score([part]).write("musicxml", fp=str(path))
    return path


def test_a_lead_sheets_chords_are_the_songs_chords(tmp_path: Path) -> None:
    from midiarr.harmony import estimate_chords

    song = load(_lead_sheet(tmp_path / "lead.musicxml"))
    stated = [(c.tick, c.root, c.quality, c.bass) for c in song.chord_symbols]
    assert stated == [(k * 1920 + 7680 * r, *chord) for r in range(2) for k, chord in enumerate(
        [(0, "maj", None), (9, "min", None), (5, "maj", None), (7, "7", 11)]
    )]  # fmt: skip
    assert [c.name for c in estimate_chords(song)] == ["C", "Am", "F", "G7"] * 2  # the notes alone say E
    out = tmp_path / "with_bass.musicxml"
    assert run_cli("-q", "insert", tmp_path / "lead.musicxml", "--stem", "bass", "--engine", "rules", "-o", out) == 0
    bass = next(t for t in load(out).tracks if t.name != "Melody")
    roots = [0, 9, 5, 7] * 2
    firsts = [int(bass.notes["pitch"][bass.notes["start"] >= bar * 1920][0]) % 12 for bar in range(8)]
    assert sum(f == r for f, r in zip(firsts, roots, strict=True)) >= 6, firsts
    # converting the lead sheet keeps its chords, slash bass included
    assert run_cli("-q", "convert", tmp_path / "lead.musicxml", "-o", tmp_path / "again.musicxml") == 0
    assert [(c.tick, c.root, c.quality, c.bass) for c in load(tmp_path / "again.musicxml").chord_symbols] == stated
