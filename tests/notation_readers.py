"""Readers other than midiarr's own for the MusicXML files the tests write: verovio (pip) on every run,
MuseScore 3 where `mscore3` is installed."""

from __future__ import annotations

import base64
import collections
import io
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import mido

MUSESCORE = shutil.which("mscore3") or shutil.which("musescore3")


def written_by_midiarr(path: Path) -> bool:
    """A MusicXML file midiarr's writer made (a whole score, or parts it added to one)."""
    if path.suffix.lower() not in (".musicxml", ".xml"):
        return False
    head = path.read_bytes()
    return b"<software>midiarr</software>" in head or b'id="PMIDIARR' in head


def sounding_notes(path: Path) -> collections.Counter:
    """Notes the file itself says sound, per part id: <note>s that are not rests, grace notes or tie ends."""
    root = ET.parse(path).getroot()
    counts: collections.Counter = collections.Counter()
    for part in root.findall("part"):
        for n in part.iter("note"):
            if n.find("rest") is not None or n.find("grace") is not None:
                continue
            if any(t.get("type") == "stop" for t in n.findall("tie")):
                continue
            counts[part.get("id")] += 1
    return counts


def midi_notes(data: bytes | Path) -> collections.Counter:
    """Note-ons per MIDI channel (0-based) of a MIDI file."""
    mid = mido.MidiFile(file=io.BytesIO(data)) if isinstance(data, bytes) else mido.MidiFile(str(data))
    counts: collections.Counter = collections.Counter()
    for track in mid.tracks:
        for msg in track:
            if msg.type == "note_on" and msg.velocity > 0:
                counts[msg.channel] += 1
    return counts


def verovio_midi(path: Path) -> bytes:
    """The file as verovio reads and plays it (raises when verovio cannot load it)."""
    import verovio

    tk = verovio.toolkit()
    if not tk.loadFile(str(path)):
        raise AssertionError(f"verovio cannot read {path}")
    return base64.b64decode(tk.renderToMIDI())


def check_with_verovio(path: Path) -> None:
    """verovio reads the file and plays every note the file writes, drums on channel 10."""
    notes = sounding_notes(path)
    played = midi_notes(verovio_midi(path))
    assert sum(played.values()) == sum(notes.values()), (path.name, dict(played), dict(notes))
    root = ET.parse(path).getroot()
    drum_parts = {
        sp.get("id") for sp in root.iter("score-part") if sp.find("midi-instrument/midi-unpitched") is not None
    }
    drum_notes = sum(c for pid, c in notes.items() if pid in drum_parts)
    assert played.get(9, 0) == drum_notes, (path.name, dict(played), drum_notes)


def musescore_export(path: Path, out: Path) -> Path:
    """Have MuseScore read ``path`` and write ``out`` (.mid, .musicxml, .pdf, .png by its suffix)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([MUSESCORE, "-o", str(out), str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out
