"""The notation workflow: a MusicXML score in, a stem added, MusicXML out with the original intact."""

import pytest
from music21 import articulations, chord, clef, converter, key, meter, note, stream, tempo
from music21.percussion import PercussionChord

from tests.conftest import run_cli


def _score(pickup: bool):
    """Voice (with lyrics and staccatos) and piano in G major, 3/4, optionally with a one-beat pickup."""
    melody, piano = stream.Part(), stream.Part()
    melody.partName, piano.partName = "Voice", "Piano"
    notes = ["G4", "A4", "B4", "D5", "C5", "B4", "A4", "G4", "E4", "F#4", "G4", "A4"] * 2
    chords = [("G3", "B3", "D4"), ("E3", "G3", "B3"), ("C3", "E3", "G3"), ("D3", "F#3", "A3")] * 2
    offset = 0.0
    if pickup:
        m_mel, m_pno = stream.Measure(number=0), stream.Measure(number=0)
        for m in (m_mel, m_pno):
            m.append([key.KeySignature(1), meter.TimeSignature("3/4")])
            m.paddingLeft = 2
        m_mel.insert(0, tempo.MetronomeMark(number=84))
        m_mel.append(note.Note("D4", quarterLength=1))
        m_pno.append(note.Rest(quarterLength=1))
        melody.insert(0, m_mel)
        piano.insert(0, m_pno)
        offset = 1.0
    for number in range(8):
        m_mel, m_pno = stream.Measure(number=number + 1), stream.Measure(number=number + 1)
        if number == 0 and not pickup:
            for m in (m_mel, m_pno):
                m.append([key.KeySignature(1), meter.TimeSignature("3/4")])
            m_mel.insert(0, tempo.MetronomeMark(number=84))
        for k in range(3):
            n = note.Note(notes[number * 3 + k], quarterLength=1)
            if k == 0:
                n.lyric = f"la{number}"
                n.articulations.append(articulations.Staccato())
            m_mel.append(n)
        m_pno.append(chord.Chord(chords[number], quarterLength=3))
        melody.insert(offset, m_mel)
        piano.insert(offset, m_pno)
        offset += 3
    return stream.Score([melody, piano])


@pytest.mark.parametrize("pickup", [False, True])
@pytest.mark.parametrize(
    "stem, clef_class", [("bass", clef.BassClef), ("guitar", clef.Treble8vbClef), ("drums", clef.PercussionClef)]
)
def test_musicxml_score_gets_a_new_part_and_keeps_the_rest(tmp_path, stem, clef_class, pickup):
    src = tmp_path / "song.musicxml"
    _score(pickup).write("musicxml", fp=str(src))
    out = tmp_path / "with_part.musicxml"
    assert run_cli("-q", "insert", src, "--stem", stem, "-o", out, "--seed", "1") == 0
    before, after = converter.parse(str(src)), converter.parse(str(out))
    assert [p.partName for p in after.parts][:2] == ["Voice", "Piano"]
    assert len(after.parts) == 3
    for old, new in zip(before.parts, after.parts[:2]):
        old_notes = [(n.offset, n.fullName, n.lyric, len(n.articulations)) for n in old.recurse().notes]
        new_notes = [(n.offset, n.fullName, n.lyric, len(n.articulations)) for n in new.recurse().notes]
        assert new_notes == old_notes
    added = after.parts[2]
    assert isinstance(added.recurse().getElementsByClass(clef.Clef).first(), clef_class)
    measures = [len(p.getElementsByClass(stream.Measure)) for p in after.parts]
    assert len(set(measures)) == 1, measures
    assert [str(ts.ratioString) for ts in added.recurse().getElementsByClass(meter.TimeSignature)][:1] == ["3/4"]
    if stem != "drums":  # drum staves carry no key signature
        assert added.recurse().getElementsByClass(key.KeySignature).first().sharps == 1
    numbers = [[m.number for m in p.getElementsByClass(stream.Measure)] for p in after.parts]
    assert numbers[2] == numbers[0]
    if pickup:
        assert added.getElementsByClass(stream.Measure).first().paddingLeft == 2
    if stem == "drums":
        assert all(isinstance(n, (note.Unpitched, PercussionChord)) for n in added.recurse().notes)
    assert len(added.recurse().notes) > 0
