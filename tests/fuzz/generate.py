"""The seeded generator of hostile cases.

A case is one ``midiarr`` command line, the files it runs on (built here, in code, when the case is
materialized into its own folder) and what the promise allows it to answer. Every case of a tier
follows from ``(tier, seed)``: the same names, the same bytes, on every machine. The only real-song
seeds are the fixtures of `midiarr.fixtures` (never ../shared/data).

Families:

- ``midi-mutate``: a fixture or random song with bit flips, byte overwrites, truncation, chunk-length
  lies, insertions, deletions, duplicated and spliced chunks, header field lies.
- ``midi-raw``: files written byte by byte: running status, delta times past 2^28 and past 4 bytes,
  notes 2^28 ticks long at PPQ 32767, tempo 0, meters 0/0 0/4 1/2^31 255/1, keys out of range, 64 and
  600 tracks, lying track counts, zero and negative note lengths, note-offs without note-ons, 700k
  notes, sysex and meta events that run past the end, RIFF (.rmi) wrappers that lie.
- ``xml-mutate``: the fixture's MusicXML with elements dropped or doubled, numbers replaced by
  hostile ones, text truncated.
- ``xml-craft``: MusicXML written as strings: no part-list, ``<score-partwise/>``, negative and zero
  durations and divisions, absurd intervals and pitches, tuplets of 0, meters and tempos of 0,
  XXE (a secret file, a FIFO, /dev/zero), billion laughs, 200k notes in a measure, 1,200 and 25,000
  bars, deep nesting.
- ``mxl``: .mxl containers: zip bombs (honest and lying sizes), many entries, container.xml pointing
  nowhere, outside the archive, at itself; broken zips, unknown compression, bad CRCs.
- ``options``: out-of-range, NaN, infinite, huge, negative and malformed option values on every
  command, unknown stems, roles, engines and options.
- ``paths``: FIFOs, /dev/zero and /dev/urandom behind a song's name, folders, missing files, broken
  and looping symlinks, an output that is the input (directly, through ``..``, a symlink, a hard
  link), outputs into missing folders, onto folders, into /proc, names too long.
- ``sigkill``: a command killed with SIGKILL at a random moment while it writes.
- ``engines``: hostile but readable inputs through the model engines (transformer, diffusion).
"""

from __future__ import annotations

import functools
import io
import os
import random
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz import smf

INPUT = frozenset({0, 1})  # a hostile file: read it (0) or refuse it as input (1)
USAGE = frozenset({2})  # an option value no command can mean
REFUSE = frozenset({1, 2})  # refused, as input or usage
ANY = frozenset({0, 1, 2})  # the promise only: one of the three
OK = frozenset({0})

Builder = Callable[[Path], None]


@dataclass
class Case:
    """One command line and the files it runs on."""

    family: str
    name: str
    argv: list[str]  # after ``midiarr``, paths relative to the case folder (the process's cwd)
    build: Builder  # writes the case's files into the (empty) case folder
    expect: frozenset[int] = INPUT
    limit: float = 30.0  # seconds of wall clock before the case counts as a hang
    outputs: tuple[str, ...] = ()  # files or folders the command writes on success
    may_change: tuple[str, ...] = ()  # existing files the command may replace on success (with --force)
    secret: str | None = None  # a token no output, stdout or stderr may contain (XXE)
    kill_after: float | None = None  # SIGKILL the process after this many seconds
    about: str = ""

    @property
    def command(self) -> str:
        """The subcommand (``insert/rules`` for insert with its engine), for the report's counts."""
        words = [a for a in self.argv if not a.startswith("-")]
        name = words[0] if words else "(none)"
        if name in ("insert", "generate") and "--engine" in self.argv:
            name += "/" + self.argv[self.argv.index("--engine") + 1]
        elif name == "insert":
            name += "/transformer"
        elif name == "audio" and len(words) > 1:
            name += " " + words[1]
        return name


# ----------------------------------------------------------------------------- the fixture seeds
@functools.cache
def fixture_midi(bars: int = 8, qpm: float = 120.0, numerator: int = 4, keep: tuple[str, ...] = ()) -> bytes:
    """The band fixture of `midiarr.fixtures` as MIDI bytes (only the tracks named in ``keep``, if given)."""
    from midiarr.fixtures import band_song
    from midiarr.io import write_midi

    song = band_song(bars=bars, qpm=qpm, numerator=numerator)
    if keep:
        song.tracks = [t for t in song.tracks if t.name in keep]
    with tempfile.TemporaryDirectory() as tmp:
        return write_midi(song, Path(tmp) / "band.mid").read_bytes()


def song_without_bass_and_drums() -> bytes:
    """The fixture with piano and guitar only: a song `insert --stem bass` (or drums) can add to."""
    return fixture_midi(4, keep=("Piano", "Guitar"))


@functools.cache
def fixture_musicxml(bars: int = 4) -> bytes:
    """The band fixture as MusicXML bytes."""
    from midiarr.fixtures import band_song
    from midiarr.io import write_musicxml

    with tempfile.TemporaryDirectory() as tmp:
        path = write_musicxml(band_song(bars=bars), Path(tmp) / "band.musicxml")
        return path.read_bytes()


def _files(**files: bytes | str) -> Builder:
    """A builder writing the named files (``name=bytes``; ``__`` in a name stands for ``.``)."""

    def build(folder: Path) -> None:
        for name, data in files.items():
            path = folder / name.replace("__", ".")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)

    return build


def _lazy(name: str, make: Callable[[], bytes | str]) -> Builder:
    """A builder writing one file whose bytes are made only when the case is materialized."""

    def build(folder: Path) -> None:
        data = make()
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)

    return build


def _both(*builders: Builder) -> Builder:
    def build(folder: Path) -> None:
        for b in builders:
            b(folder)

    return build


# ------------------------------------------------------------------------ commands run on an input
# (argv after the input path, outputs, seconds allowed)
QUICK_MIDI_COMMANDS = {
    "stems": 0.35,
    "convert-mid": 0.25,
    "insert-rules": 0.2,
    "subtract": 0.1,
    "separate": 0.05,
    "convert-xml": 0.05,
}
QUICK_XML_COMMANDS = {"stems": 0.55, "convert-mid": 0.35, "insert-rules": 0.1}
LONG_COMMANDS = {
    "stems": 0.2,
    "stems-describe": 0.08,
    "convert-mid": 0.12,
    "convert-xml": 0.08,
    "convert-mxl": 0.04,
    "subtract": 0.08,
    "insert-rules": 0.15,
    "insert-transformer": 0.04,
    "insert-diffusion": 0.03,
    "separate": 0.06,
    "tokenize": 0.06,
    "render": 0.04,
}


def input_command(kind: str, path: str) -> tuple[list[str], tuple[str, ...], float]:
    """The argv, outputs and time limit of running ``kind`` on the file ``path``."""
    if kind == "stems":
        return ["stems", path], (), 30.0
    if kind == "stems-describe":
        return ["stems", path, "--describe", "--json"], (), 30.0
    if kind.startswith("convert-"):
        out = "out." + {"mid": "mid", "xml": "musicxml", "mxl": "mxl"}[kind.split("-")[1]]
        return ["-q", "convert", path, "-o", out], (out,), 45.0
    if kind == "subtract":
        return (
            ["-q", "subtract", path, "--stem", "bass", "-o", "out.mid", "--stem-output", "bass.mid"],
            ("out.mid", "bass.mid"),
            30.0,
        )
    if kind == "insert-rules":
        return (
            ["-q", "insert", path, "--stem", "strings", "--engine", "rules", "--seed", "1", "-o", "out.mid"],
            ("out.mid",),
            60.0,
        )
    if kind == "insert-transformer":
        argv = ["-q", "insert", path, "--stem", "strings", "--engine", "transformer", "-o", "out.mid"]
        return argv, ("out.mid",), 150.0
    if kind == "insert-diffusion":
        argv = ["-q", "insert", path, "--stem", "piano", "--engine", "diffusion", "--steps", "4", "-o", "out.mid"]
        return argv, ("out.mid",), 150.0
    if kind == "separate":
        return ["-q", "separate", path, "--method", "pitch-range", "-o", "out.mid"], ("out.mid",), 30.0
    if kind == "tokenize":
        return ["tokenize", path, "--bars", "2"], (), 45.0
    if kind == "render":
        return ["-q", "render", path, "-o", "audio", "--sr", "8000"], ("audio",), 90.0
    raise ValueError(kind)


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _input_case(
    family: str,
    index: int,
    label: str,
    filename: str,
    build: Builder,
    kind: str,
    expect: frozenset[int] = INPUT,
    about: str = "",
    secret: str | None = None,
) -> Case:
    argv, outputs, limit = input_command(kind, filename)
    if kind == "subtract":  # a song without the stem named is a usage answer (2), as an unknown stem is
        expect = expect | {2}
    name = f"{family}-{index:03d}-{label}-{kind}"
    return Case(family, name, argv, build, expect, limit, outputs, secret=secret, about=about or label)


# ------------------------------------------------------------------------------- midi-mutate
def _mutate_bytes(data: bytes, rng: random.Random, how: str) -> bytes:
    buf = bytearray(data)
    n = len(buf)
    if how == "bitflip":
        for _ in range(rng.choice((1, 2, 4, 16, 64))):
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
    elif how == "byteset":
        for _ in range(rng.choice((1, 3, 10))):
            buf[rng.randrange(n)] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x90, 0xF0, 0xF7, 0x2F, 0x51))
    elif how == "truncate":
        del buf[rng.randrange(1, n) :]
    elif how == "length-lie":
        offsets = smf.chunk_offsets(data)
        pos, length = rng.choice(offsets)
        lie = rng.choice((0, 1, length - 1, length + 1, length * 2, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 32)))
        buf[pos + 4 : pos + 8] = struct.pack(">I", max(0, lie) & 0xFFFFFFFF)
    elif how == "insert":
        i = rng.randrange(n)
        buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 3, 17, 300))))
    elif how == "delete":
        i = rng.randrange(n)
        del buf[i : i + rng.choice((1, 2, 5, 50, 500))]
    elif how == "duplicate-chunk":
        offsets = smf.chunk_offsets(data)
        pos, length = rng.choice(offsets[1:] or offsets)
        piece = bytes(buf[pos : pos + 8 + length])
        buf[pos:pos] = piece * rng.choice((1, 5, 100))
    elif how == "header-lie":
        field_at = rng.choice((8, 10, 12))  # format, track count, division
        buf[field_at : field_at + 2] = struct.pack(">H", rng.choice((0, 1, 2, 3, 0x7FFF, 0x8000, 0xFFFF, 64)))
    elif how == "zero-range":
        i = rng.randrange(n)
        buf[i : i + rng.choice((4, 16, 128))] = bytes(len(buf[i : i + 16]))
    elif how == "status-swap":
        for i in range(len(buf)):
            if buf[i] & 0xF0 in (0x80, 0x90) and rng.random() < 0.2:
                buf[i] = rng.choice((0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0, 0xF7, 0xFF)) | (buf[i] & 0x0F)
    return bytes(buf)


MUTATIONS = (
    "bitflip",
    "byteset",
    "truncate",
    "length-lie",
    "insert",
    "delete",
    "duplicate-chunk",
    "header-lie",
    "zero-range",
    "status-swap",
)


def _mutated_midi(seed: str, source: tuple, hows: tuple[str, ...]) -> Callable[[], bytes]:
    def make() -> bytes:
        rng = random.Random(seed)
        if source[0] == "fixture":
            data = fixture_midi(*source[1:])
        else:
            data = smf.random_song(rng, tracks=source[1], notes=source[2], tpb=source[3])
        for how in hows:
            if how == "splice":
                other = smf.random_song(rng, tracks=2, notes=32)
                data = data[: rng.randrange(1, len(data))] + other[rng.randrange(len(other)) :]
            else:
                data = _mutate_bytes(data, rng, how)
        return data

    return make


def midi_mutate(rng: random.Random, count: int, weights: dict[str, float], tag: str) -> Iterator[Case]:
    for i in range(count):
        if rng.random() < 0.6:
            source: tuple = ("fixture", rng.choice((2, 4, 8, 16)), rng.choice((90.0, 120.0, 140.0)), rng.choice((3, 4)))
        else:
            source = ("random", rng.randint(1, 5), rng.choice((8, 64, 300)), rng.choice((24, 96, 480, 960)))
        hows = tuple(rng.choice((*MUTATIONS, "splice")) for _ in range(rng.choice((1, 1, 2, 3))))
        seed = f"{tag}:midi-mutate:{i}"
        build = _lazy("in.mid", _mutated_midi(seed, source, hows))
        yield _input_case("midi-mutate", i, "+".join(hows), "in.mid", build, _pick(rng, weights))


# ---------------------------------------------------------------------------------- midi-raw
def _conductor(*events: bytes) -> bytes:
    return smf.track([(0, e) for e in events])


def _notes_track(notes: list[tuple[int, int, int, int]], channel: int = 0) -> bytes:
    return smf.track(smf.note_events(notes, channel))


def _basic_notes(count: int = 16, tpb: int = 480) -> list[tuple[int, int, int, int]]:
    return [(i * tpb, tpb // 2, 48 + (i * 5) % 24, 90) for i in range(count)]


def _song(*, division: int = 480, meta_events: tuple[bytes, ...] = (), notes: list | None = None) -> bytes:
    notes = _basic_notes(tpb=max(division, 1)) if notes is None else notes
    return smf.smf([_conductor(*meta_events), _notes_track(notes)], fmt=1, division=division)


def _running_status() -> bytes:
    # note-ons with running status, and a meta event in the middle that (by the standard) cancels it
    body = [(0, b"\x90\x3c\x64"), (240, b"\x3e\x64"), (0, smf.tempo(500000)), (240, b"\x40\x64")]
    body += [(240, b"\x80\x3c\x00"), (0, b"\x3e\x00"), (0, b"\x40\x00")]
    return smf.smf([smf.track(body)], fmt=0)


def _running_status_at_start() -> bytes:
    return smf.smf([smf.track([(0, b"\x3c\x64"), (480, b"\x3c\x00")])], fmt=0)


def _running_status_after_sysex() -> bytes:
    body = [(0, b"\x90\x3c\x64"), (0, b"\xf0\x03\x7e\x7f\xf7"), (480, b"\x3c\x00")]
    return smf.smf([smf.track(body)], fmt=0)


def _huge_delta(delta: int) -> bytes:
    body = [(0, b"\x90\x3c\x64"), (480, b"\x80\x3c\x00"), (delta, b"\x90\x3e\x64"), (480, b"\x80\x3e\x00")]
    return smf.smf([smf.track(body)], fmt=0)


def _delta_overflow() -> bytes:
    # deltas of 2^28-1 summing past 2^31 and 2^32 ticks
    body = [(0, b"\x90\x3c\x64")]
    body += [(0x0FFFFFFF, b"\x90\x3e\x64") for _ in range(40)]
    body += [(10, b"\x80\x3c\x00")]
    return smf.smf([smf.track(body)], fmt=0)


def _vlq_five_bytes() -> bytes:
    body = b"\x00\x90\x3c\x64" + b"\x81\x80\x80\x80\x80\x00" + b"\x80\x3c\x00" + b"\x00\xff\x2f\x00"
    return smf.header(0, 1, 480) + smf.chunk(b"MTrk", body)


def _vlq_unterminated() -> bytes:
    body = b"\x00\x90\x3c\x64" + b"\x81\x80\x80\x80\x80\x80\x80\x80"
    return smf.header(0, 1, 480) + smf.chunk(b"MTrk", body)


def _long_note(ticks: int, division: int) -> bytes:
    return _song(division=division, notes=[(0, ticks, 60, 100), (0, ticks, 36, 100), (ticks // 2, 480, 64, 80)])


def _many_tracks(count: int, notes: int = 4) -> bytes:
    tracks = [_conductor(smf.tempo(500000))]
    for t in range(count):
        events = [
            (0, smf.track_name(f"T{t}".encode())),
            *smf.note_events([(i * 480 + t, 240, 40 + t % 40, 80) for i in range(notes)], t % 16),
        ]
        tracks.append(smf.track(events))
    return smf.smf(tracks, fmt=1)


def _many_notes(count: int) -> bytes:
    # running status keeps each note at about 8 bytes
    body = bytearray(b"\x00\x90")
    for i in range(count):
        pitch = 36 + i % 48
        body += bytes([pitch, 90]) + b"\x0a" + bytes([pitch, 0]) + (b"\x0a" if i + 1 < count else b"")
    body += b"\x00\xff\x2f\x00"
    return smf.header(0, 1, 96) + smf.chunk(b"MTrk", bytes(body))


def _many_events(count: int, event: bytes) -> bytes:
    body = [(0, b"\x90\x3c\x64")] + [(1, event) for _ in range(count)] + [(10, b"\x80\x3c\x00")]
    return smf.smf([smf.track(body)], fmt=0)


def _notes_edge(kind: str) -> bytes:
    if kind == "zero-length":
        body = [(0, b"\x90\x3c\x64"), (0, b"\x80\x3c\x00")] * 50
    elif kind == "off-before-on":
        body = [(0, b"\x80\x3c\x00"), (0, b"\x90\x3c\x64"), (480, b"\x80\x3c\x00")] * 20
    elif kind == "off-without-on":
        body = [(i and 120, bytes([0x80, 30 + i % 60, 64])) for i in range(200)]
    elif kind == "on-without-off":
        body = [(120, bytes([0x90, 30 + i % 60, 100])) for i in range(200)]
    elif kind == "same-pitch-overlap":
        body = [(0, b"\x90\x3c\x64"), (10, b"\x90\x3c\x64"), (10, b"\x90\x3c\x64"), (480, b"\x80\x3c\x00")] * 10
    elif kind == "velocity0-off":
        body = [(0, b"\x90\x3c\x64"), (480, b"\x90\x3c\x00")] * 30
    elif kind == "data-byte-high":
        body = [(0, b"\x90\xbc\xe4"), (480, b"\x80\xbc\x00")]
    elif kind == "system-common":
        body = [(0, b"\x90\x3c\x64"), (0, b"\xf4"), (0, b"\xf5"), (0, b"\xfd"), (0, b"\xf8"), (480, b"\x80\x3c\x00")]
    elif kind == "drums-only":
        body = [(120 if i else 0, bytes([0x99 if i % 2 == 0 else 0x89, 36 + i % 12, 100])) for i in range(400)]
    elif kind == "sixteen-channels":
        body = []
        for ch in range(16):
            body += [(0, bytes([0xC0 | ch, ch * 8])), (0, bytes([0x90 | ch, 40 + ch * 2, 90]))]
        body += [(480 if ch == 0 else 0, bytes([0x80 | ch, 40 + ch * 2, 0])) for ch in range(16)]
    else:
        raise ValueError(kind)
    return smf.smf([smf.track(body)], fmt=0)


def _rmi(midi: bytes, lie: str) -> bytes:
    data_chunk = b"data" + struct.pack("<I", len(midi) if lie != "data-size" else 0x7FFFFFFF) + midi
    riff_size = 4 + len(data_chunk) if lie != "riff-size" else 0xFFFFFFFF
    if lie == "no-data":
        data_chunk = b"LIST" + struct.pack("<I", 4) + b"INFO"
    if lie == "nested":
        inner = b"RIFF" + struct.pack("<I", 4 + len(data_chunk)) + b"RMID" + data_chunk
        data_chunk = b"data" + struct.pack("<I", len(inner)) + inner
    if lie == "odd-chunk":
        data_chunk = b"JUNK" + struct.pack("<I", 0xFFFFFFF0) + data_chunk
    return b"RIFF" + struct.pack("<I", riff_size & 0xFFFFFFFF) + b"RMID" + data_chunk


def raw_midi_cases(rng: random.Random, big: bool) -> list[tuple[str, str, Callable[[], bytes], frozenset[int]]]:
    """(label, file name, make bytes, allowed exits) of every crafted MIDI file."""
    band = functools.partial(fixture_midi, 4)
    cases: list[tuple[str, str, Callable[[], bytes], frozenset[int]]] = [
        ("running-status", "in.mid", _running_status, INPUT),
        ("running-status-at-start", "in.mid", _running_status_at_start, INPUT),
        ("running-status-after-sysex", "in.mid", _running_status_after_sysex, INPUT),
        ("delta-2^28", "in.mid", lambda: _huge_delta(0x0FFFFFFF), INPUT),
        ("delta-2^35", "in.mid", lambda: _huge_delta(1 << 35), INPUT),
        ("delta-sum-past-2^32", "in.mid", _delta_overflow, INPUT),
        ("vlq-5-bytes", "in.mid", _vlq_five_bytes, INPUT),
        ("vlq-unterminated", "in.mid", _vlq_unterminated, INPUT),
        ("note-2^28-ticks-ppq32767", "in.mid", lambda: _long_note(1 << 28, 32767), INPUT),
        ("note-2^28-ticks-ppq1", "in.mid", lambda: _long_note(1 << 28, 1), INPUT),
        ("ppq-0", "in.mid", lambda: _song(division=0), INPUT),
        ("ppq-1", "in.mid", lambda: _song(division=1), INPUT),
        ("ppq-32767", "in.mid", lambda: _song(division=32767), INPUT),
        ("smpte-division", "in.mid", lambda: _song(division=0xE728), INPUT),
        ("tempo-0", "in.mid", lambda: _song(meta_events=(smf.tempo(0),)), INPUT),
        ("tempo-1us", "in.mid", lambda: _song(meta_events=(smf.tempo(1),)), INPUT),
        ("tempo-max", "in.mid", lambda: _song(meta_events=(smf.tempo(0xFFFFFF),)), INPUT),
        ("tempo-len-0", "in.mid", lambda: _song(meta_events=(smf.meta(0x51, b""),)), INPUT),
        ("tempo-len-1", "in.mid", lambda: _song(meta_events=(smf.meta(0x51, b"\x05"),)), INPUT),
        ("tempo-len-lie", "in.mid", lambda: _song(meta_events=(smf.meta(0x51, b"\x07\xa1\x20", length=200),)), INPUT),
        ("meter-0/0", "in.mid", lambda: _song(meta_events=(smf.time_signature(0, 0),)), INPUT),
        ("meter-0/4", "in.mid", lambda: _song(meta_events=(smf.time_signature(0, 2),)), INPUT),
        ("meter-1/2^31", "in.mid", lambda: _song(meta_events=(smf.time_signature(1, 31),)), INPUT),
        ("meter-1/2^255", "in.mid", lambda: _song(meta_events=(smf.time_signature(1, 255),)), INPUT),
        ("meter-255/1", "in.mid", lambda: _song(meta_events=(smf.time_signature(255, 0),)), INPUT),
        ("meter-231/1", "in.mid", lambda: _song(meta_events=(smf.time_signature(231, 0),)), INPUT),
        ("meter-clocks-0", "in.mid", lambda: _song(meta_events=(smf.time_signature(4, 2, 0, 0),)), INPUT),
        ("meter-len-2", "in.mid", lambda: _song(meta_events=(smf.meta(0x58, b"\x04\x02"),)), INPUT),
        ("key-100-sharps", "in.mid", lambda: _song(meta_events=(smf.key_signature(100),)), INPUT),
        ("key--128", "in.mid", lambda: _song(meta_events=(smf.key_signature(-128, 7),)), INPUT),
        (
            "meter-changes-every-tick",
            "in.mid",
            lambda: smf.smf(
                [
                    smf.track([(1, smf.time_signature(1 + i % 12, i % 4)) for i in range(5000)]),
                    _notes_track(_basic_notes(64)),
                ]
            ),
            INPUT,
        ),
        ("64-tracks", "in.mid", lambda: _many_tracks(64), INPUT),
        ("600-tracks", "in.mid", lambda: _many_tracks(600, notes=1), INPUT),
        ("ntracks-says-10-has-1", "in.mid", lambda: smf.smf([_notes_track(_basic_notes())], ntracks=10), INPUT),
        (
            "ntracks-says-1-has-5",
            "in.mid",
            lambda: smf.smf([_notes_track(_basic_notes()) for _ in range(5)], ntracks=1),
            INPUT,
        ),
        ("ntracks-0", "in.mid", lambda: smf.smf([_notes_track(_basic_notes())], ntracks=0), INPUT),
        ("ntracks-65535", "in.mid", lambda: smf.smf([_notes_track(_basic_notes())], ntracks=65535), INPUT),
        ("format-0-3-tracks", "in.mid", lambda: smf.smf([_notes_track(_basic_notes())] * 3, fmt=0), INPUT),
        ("format-2", "in.mid", lambda: smf.smf([_notes_track(_basic_notes())] * 2, fmt=2), INPUT),
        ("format-7", "in.mid", lambda: smf.smf([_notes_track(_basic_notes())], fmt=7), INPUT),
        ("header-len-0", "in.mid", lambda: smf.header(length=0) + _notes_track(_basic_notes()), INPUT),
        ("header-len-100", "in.mid", lambda: smf.header(length=100) + _notes_track(_basic_notes()), INPUT),
        ("header-len-2^32-1", "in.mid", lambda: smf.header(length=0xFFFFFFFF) + _notes_track(_basic_notes()), INPUT),
        ("track-len-0", "in.mid", lambda: smf.header(0, 1) + smf.chunk(b"MTrk", b"", 0) + b"\x00\x90\x3c\x64", INPUT),
        ("track-len-2^32-1", "in.mid", lambda: smf.smf([smf.track(_notes_events(), length=0xFFFFFFFF)]), INPUT),
        ("track-len-short", "in.mid", lambda: smf.smf([smf.track(_notes_events(), length=5)]), INPUT),
        ("no-end-of-track", "in.mid", lambda: smf.smf([smf.track(_notes_events(), end=False)]), INPUT),
        ("data-after-end", "in.mid", lambda: smf.smf([smf.track([(0, smf.END_OF_TRACK), *_notes_events()])]), INPUT),
        (
            "alien-chunk-huge",
            "in.mid",
            lambda: smf.header(1, 2) + smf.chunk(b"XFIH", b"\x00" * 16, 0x7FFFFFFF) + _notes_track(_basic_notes()),
            INPUT,
        ),
        (
            "alien-chunk-first",
            "in.mid",
            lambda: smf.header(1, 1) + smf.chunk(b"JUNK", b"\xff" * 64) + _notes_track(_basic_notes()),
            INPUT,
        ),
        ("zero-length-notes", "in.mid", lambda: _notes_edge("zero-length"), INPUT),
        ("off-before-on", "in.mid", lambda: _notes_edge("off-before-on"), INPUT),
        ("off-without-on", "in.mid", lambda: _notes_edge("off-without-on"), INPUT),
        ("on-without-off", "in.mid", lambda: _notes_edge("on-without-off"), INPUT),
        ("same-pitch-overlap", "in.mid", lambda: _notes_edge("same-pitch-overlap"), INPUT),
        ("velocity-0-off", "in.mid", lambda: _notes_edge("velocity0-off"), INPUT),
        ("data-byte-high-bit", "in.mid", lambda: _notes_edge("data-byte-high"), INPUT),
        ("system-common-in-track", "in.mid", lambda: _notes_edge("system-common"), INPUT),
        ("drums-only", "in.mid", lambda: _notes_edge("drums-only"), INPUT),
        ("sixteen-channels-type-0", "in.mid", lambda: _notes_edge("sixteen-channels"), INPUT),
        (
            "sysex-unterminated",
            "in.mid",
            lambda: smf.smf([smf.track([(0, b"\xf0\x05\x7e\x7f"), *_notes_events()], end=False)]),
            INPUT,
        ),
        (
            "sysex-len-huge",
            "in.mid",
            lambda: smf.smf([smf.track([(0, b"\xf0" + smf.vlq(0x0FFFFFFF) + b"\x7e"), *_notes_events()])]),
            INPUT,
        ),
        (
            "meta-len-past-end",
            "in.mid",
            lambda: smf.smf([smf.track([*_notes_events(), (0, smf.meta(0x03, b"abc", length=0x0FFFFFFF))])]),
            INPUT,
        ),
        (
            "text-meta-4mb",
            "in.mid",
            lambda: smf.smf([smf.track([(0, smf.meta(0x01, b"x" * (4 << 20))), *_notes_events()])]),
            INPUT,
        ),
        (
            "track-name-binary",
            "in.mid",
            lambda: smf.smf([smf.track([(0, smf.track_name(bytes(range(256)) * 4)), *_notes_events()])]),
            INPUT,
        ),
        ("no-notes", "in.mid", lambda: smf.smf([_conductor(smf.tempo(500000), smf.time_signature(4, 2))]), INPUT),
        ("program-changes-only", "in.mid", lambda: _many_events(500, b"\xc0\x05"), INPUT),
        ("cc-storm-100k", "in.mid", lambda: _many_events(100_000, b"\xb0\x07\x64"), INPUT),
        ("pitch-bend-storm-100k", "in.mid", lambda: _many_events(100_000, b"\xe0\x00\x40"), INPUT),
        ("tempo-changes-200k", "in.mid", lambda: _many_events(200_000, smf.tempo(500_000)), INPUT),
        ("empty-file", "in.mid", lambda: b"", INPUT),
        ("mthd-only", "in.mid", lambda: b"MThd", INPUT),
        ("header-no-tracks", "in.mid", lambda: smf.header(1, 0), INPUT),
        ("random-bytes", "in.mid", lambda: random.Random(7).randbytes(2000), INPUT),
        ("header-then-random", "in.mid", lambda: smf.header(1, 2) + random.Random(8).randbytes(4000), INPUT),
        (
            "slow-tempo-long-song",
            "in.mid",
            lambda: _song(division=1, meta_events=(smf.tempo(0xFFFFFF),), notes=[(0, 1, 60, 90), (500_000, 1, 62, 90)]),
            INPUT,
        ),
        ("rmi-valid", "in.rmi", lambda: _rmi(band(), ""), INPUT),
        ("rmi-riff-size-lie", "in.rmi", lambda: _rmi(band(), "riff-size"), INPUT),
        ("rmi-data-size-lie", "in.rmi", lambda: _rmi(band(), "data-size"), INPUT),
        ("rmi-no-data", "in.rmi", lambda: _rmi(band(), "no-data"), INPUT),
        ("rmi-nested", "in.rmi", lambda: _rmi(band(), "nested"), INPUT),
        ("rmi-junk-chunk-huge", "in.rmi", lambda: _rmi(band(), "odd-chunk"), INPUT),
        ("rmi-header-only", "in.rmi", lambda: b"RIFF\x04\x00\x00\x00RMID", INPUT),
        ("midi-in-kar", "in.kar", band, INPUT),
        ("700k-notes", "in.mid", lambda: _many_notes(700_000), INPUT),
    ]
    if big:
        cases += [
            ("2.1M-notes", "in.mid", lambda: _many_notes(2_100_000), INPUT),
            ("1000-tracks", "in.mid", lambda: _many_tracks(1000, notes=1), INPUT),
            ("cc-storm-2M", "in.mid", lambda: _many_events(2_000_000, b"\xb0\x07\x64"), INPUT),
            ("file-70mb", "in.mid", lambda: smf.smf([smf.track([(0, smf.meta(0x01, b"y" * (70 << 20)))])]), INPUT),
        ]
    return cases


def _notes_events() -> list[tuple[int, bytes]]:
    return smf.note_events(_basic_notes())


def midi_raw(rng: random.Random, weights: dict[str, float], big: bool, repeat: int = 1) -> Iterator[Case]:
    index = 0
    for _ in range(repeat):
        for label, filename, make, expect in raw_midi_cases(rng, big):
            kind = _pick(rng, weights)
            if label in ("700k-notes", "2.1M-notes", "cc-storm-2M") and kind not in ("stems", "convert-mid"):
                kind = "stems"  # the engines on 700k notes are a benchmark, not a fuzz case
            yield _input_case("midi-raw", index, label, filename, _lazy(filename, make), kind, expect)
            index += 1


# ------------------------------------------------------------------------------- MusicXML
XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
DOCTYPE = (
    '<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 Partwise//EN" '
    '"http://www.musicxml.org/dtds/partwise.dtd">\n'
)


def xnote(
    step: str = "C", octave: int | str = 4, duration: int | str = 1, *, alter: str | None = None, extra: str = ""
) -> str:
    alter_xml = f"<alter>{alter}</alter>" if alter is not None else ""
    return (
        f"<note><pitch><step>{step}</step>{alter_xml}<octave>{octave}</octave></pitch>"
        f"<duration>{duration}</duration><voice>1</voice><type>quarter</type>{extra}</note>"
    )


def attributes(
    divisions: int | str = 1, beats: str = "4", beat_type: str = "4", fifths: str = "0", more: str = ""
) -> str:
    return (
        f"<attributes><divisions>{divisions}</divisions><key><fifths>{fifths}</fifths></key>"
        f"<time><beats>{beats}</beats><beat-type>{beat_type}</beat-type></time>"
        f"<clef><sign>G</sign><line>2</line></clef>{more}</attributes>"
    )


def score(
    measures: list[str],
    *,
    part_list: bool = True,
    parts: int = 1,
    prolog: str = DOCTYPE,
    header: str = "",
    part_ids: list[str] | None = None,
) -> str:
    """A score-partwise document; ``measures`` are each part's measure contents."""
    ids = part_ids or [f"P{i + 1}" for i in range(parts)]
    plist = ""
    if part_list:
        plist = "<part-list>" + "".join(
            f'<score-part id="{p}"><part-name>Part {p}</part-name></score-part>' for p in dict.fromkeys(ids)
        )
        plist += "</part-list>"
    body = "".join(
        f'<part id="{p}">'
        + "".join(f'<measure number="{i + 1}">{m}</measure>' for i, m in enumerate(measures))
        + "</part>"
        for p in ids
    )
    return f'{XML_DECL}{prolog}<score-partwise version="4.0">{header}{plist}{body}</score-partwise>\n'


def _bars(count: int, first: str = "", note: Callable[[int], str] | None = None) -> list[str]:
    note = note or (lambda i: xnote("CDEFGAB"[i % 7], 3 + i % 3))
    return [(first if i == 0 else "") + "".join(note(i * 4 + j) for j in range(4)) for i in range(count)]


def _plain(first: str = "", count: int = 4, note: Callable[[int], str] | None = None, **kw: object) -> str:
    return score(_bars(count, first or attributes(), note), **kw)


UNPITCHED = (
    "<note><unpitched><display-step>E</display-step><display-octave>4</display-octave></unpitched>"
    "<duration>1</duration><instrument id='X9'/></note>"
)
XINCLUDE = '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{href}" parse="text"/>'


def _huge_measure(notes: int) -> str:
    body = "".join(
        "<note><pitch><step>C</step><octave>4</octave></pitch><duration>1</duration></note>" for _ in range(notes)
    )
    return score([attributes() + body])


def _deep(levels: int) -> str:
    inner = "<a>" * levels + "</a>" * levels
    return _plain(attributes() + f"<direction><direction-type><words>{inner}</words></direction-type></direction>")


def _laughs(levels: int, fan: int) -> str:
    ents = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * fan}">' for i in range(1, levels + 1)
    ]
    dtd = "<!DOCTYPE score-partwise [" + "".join(ents) + "]>\n"
    return score(_bars(2, attributes()), prolog=dtd, header=f"<work><work-title>&lol{levels};</work-title></work>")


def _quadratic(size: int, refs: int) -> str:
    dtd = f'<!DOCTYPE score-partwise [<!ENTITY big "{"x" * size}">]>\n'
    return score(
        _bars(2, attributes()), prolog=dtd, header="<work><work-title>" + "&big;" * refs + "</work-title></work>"
    )


def _xxe(target: str, where: str = "title") -> str:
    dtd = f'<!DOCTYPE score-partwise [<!ENTITY xxe SYSTEM "{target}">]>\n'
    if where == "title":
        return score(_bars(2, attributes()), prolog=dtd, header="<work><work-title>&xxe;</work-title></work>")
    return score(
        _bars(2, attributes(), lambda i: xnote("C", 4, 1, extra="<lyric><text>&xxe;</text></lyric>")), prolog=dtd
    )


def _param_entity(target: str) -> str:
    dtd = f'<!DOCTYPE score-partwise [<!ENTITY % ext SYSTEM "{target}"> %ext;]>\n'
    return score(_bars(2, attributes()), prolog=dtd)


def _external_dtd(target: str) -> str:
    return score(_bars(2, attributes()), prolog=f'<!DOCTYPE score-partwise SYSTEM "{target}">\n')


def xml_craft_cases(big: bool) -> list[tuple[str, str, Builder, frozenset[int], str | None]]:
    """(label, input name, builder, allowed exits, secret) of every crafted MusicXML file."""
    secret = "FUZZ-SECRET-7f3a9c"
    fifo_xxe = "fifo"

    def with_secret(name: str, make: Callable[[Path], str]) -> Builder:
        def build(folder: Path) -> None:
            (folder / "secret.txt").write_text(secret + "\n")
            (folder / name).write_text(make(folder))

        return build

    def with_fifo(name: str, make: Callable[[Path], str]) -> Builder:
        def build(folder: Path) -> None:
            os.mkfifo(folder / fifo_xxe)
            (folder / name).write_text(make(folder))

        return build

    def text(s: str | Callable[[], str], name: str = "in.musicxml") -> Builder:
        return _lazy(name, s if callable(s) else (lambda: s))

    n = "in.musicxml"
    cases: list[tuple[str, str, Builder, frozenset[int], str | None]] = [
        ("score-partwise-empty", n, text("<score-partwise/>"), INPUT, None),
        ("score-partwise-empty-decl", n, text(XML_DECL + '<score-partwise version="4.0"/>'), INPUT, None),
        ("no-part-list", n, text(lambda: _plain(part_list=False)), INPUT, None),
        ("part-list-no-parts", n, text(lambda: score([], parts=1).replace('<part id="P1"></part>', "")), INPUT, None),
        ("part-no-measures", n, text(lambda: score([])), INPUT, None),
        ("measure-empty", n, text(lambda: score(["", "", ""])), INPUT, None),
        (
            "score-timewise",
            n,
            text(XML_DECL + '<score-timewise version="4.0"><part-list/></score-timewise>'),
            INPUT,
            None,
        ),
        ("root-html", n, text("<html><body>not a score</body></html>"), INPUT, None),
        ("empty-file", n, text(""), INPUT, None),
        ("decl-only", n, text(XML_DECL), INPUT, None),
        ("binary", n, _files(in__musicxml=bytes(range(256)) * 10), INPUT, None),
        ("truncated", n, text(lambda: _plain()[: len(_plain()) * 2 // 3]), INPUT, None),
        ("bom-utf8", n, _files(in__musicxml=b"\xef\xbb\xbf" + _plain().encode()), INPUT, None),
        ("utf16", n, _files(in__musicxml=_plain().replace("UTF-8", "UTF-16").encode("utf-16")), INPUT, None),
        (
            "encoding-lie",
            n,
            _files(in__musicxml=_plain().replace("C</step>", "\xff\xfe</step>", 1).encode("latin-1")),
            INPUT,
            None,
        ),
        ("unknown-encoding", n, text(lambda: _plain().replace("UTF-8", "X-NOPE-9")), INPUT, None),
        ("duration-negative", n, text(lambda: _plain(note=lambda i: xnote("C", 4, -4))), INPUT, None),
        ("duration-zero", n, text(lambda: _plain(note=lambda i: xnote("C", 4, 0))), INPUT, None),
        ("duration-10^12", n, text(lambda: _plain(note=lambda i: xnote("C", 4, 10**12))), INPUT, None),
        ("duration-nan", n, text(lambda: _plain(note=lambda i: xnote("C", 4, "nan"))), INPUT, None),
        ("duration-text", n, text(lambda: _plain(note=lambda i: xnote("C", 4, "four"))), INPUT, None),
        ("divisions-0", n, text(lambda: _plain(attributes(divisions=0))), INPUT, None),
        ("divisions-negative", n, text(lambda: _plain(attributes(divisions=-4))), INPUT, None),
        ("divisions-10^9", n, text(lambda: _plain(attributes(divisions=10**9))), INPUT, None),
        ("divisions-inf", n, text(lambda: _plain(attributes(divisions="inf"))), INPUT, None),
        (
            "transpose-1000",
            n,
            text(
                lambda: _plain(
                    attributes(
                        more="<transpose><chromatic>1000</chromatic><octave-change>-99</octave-change></transpose>"
                    )
                )
            ),
            INPUT,
            None,
        ),
        (
            "transpose-diatonic-huge",
            n,
            text(
                lambda: _plain(
                    attributes(more="<transpose><diatonic>-2147483648</diatonic><chromatic>0</chromatic></transpose>")
                )
            ),
            INPUT,
            None,
        ),
        ("step-H", n, text(lambda: _plain(note=lambda i: xnote("H", 4))), INPUT, None),
        ("octave-99", n, text(lambda: _plain(note=lambda i: xnote("C", 99))), INPUT, None),
        ("octave-negative", n, text(lambda: _plain(note=lambda i: xnote("C", -5))), INPUT, None),
        ("alter-10^9", n, text(lambda: _plain(note=lambda i: xnote("C", 4, alter="1000000000"))), INPUT, None),
        ("alter-nan", n, text(lambda: _plain(note=lambda i: xnote("C", 4, alter="nan"))), INPUT, None),
        (
            "backup-huge",
            n,
            text(lambda: _plain(attributes() + "<backup><duration>100000</duration></backup>")),
            INPUT,
            None,
        ),
        (
            "forward-10^9",
            n,
            text(lambda: _plain(attributes() + "<forward><duration>1000000000</duration></forward>")),
            INPUT,
            None,
        ),
        ("beats-0", n, text(lambda: _plain(attributes(beats="0"))), INPUT, None),
        ("beat-type-0", n, text(lambda: _plain(attributes(beat_type="0"))), INPUT, None),
        ("beat-type-3", n, text(lambda: _plain(attributes(beat_type="3"))), INPUT, None),
        ("beats-999", n, text(lambda: _plain(attributes(beats="999"))), INPUT, None),
        ("beats-3+2", n, text(lambda: _plain(attributes(beats="3+2", beat_type="8"))), INPUT, None),
        ("beat-type-2^31", n, text(lambda: _plain(attributes(beats="1", beat_type="2147483648"))), INPUT, None),
        ("beats-negative", n, text(lambda: _plain(attributes(beats="-4"))), INPUT, None),
        ("tempo-0", n, text(lambda: _plain(attributes() + '<sound tempo="0"/>')), INPUT, None),
        ("tempo-negative", n, text(lambda: _plain(attributes() + '<sound tempo="-120"/>')), INPUT, None),
        ("tempo-nan", n, text(lambda: _plain(attributes() + '<sound tempo="nan"/>')), INPUT, None),
        ("tempo-1e308", n, text(lambda: _plain(attributes() + '<sound tempo="1e308"/>')), INPUT, None),
        (
            "metronome-0",
            n,
            text(
                lambda: _plain(
                    attributes() + "<direction><direction-type><metronome><beat-unit>quarter</beat-unit>"
                    "<per-minute>0</per-minute></metronome></direction-type></direction>"
                )
            ),
            INPUT,
            None,
        ),
        ("fifths-100", n, text(lambda: _plain(attributes(fifths="100"))), INPUT, None),
        (
            "tuplet-actual-0",
            n,
            text(
                lambda: _plain(
                    note=lambda i: xnote(
                        "C",
                        4,
                        extra="<time-modification><actual-notes>0</actual-notes><normal-notes>1</normal-notes></time-modification>",
                    )
                )
            ),
            INPUT,
            None,
        ),
        (
            "chord-first",
            n,
            text(lambda: _plain(note=lambda i: xnote("E", 4, extra="").replace("<note>", "<note><chord/>"))),
            INPUT,
            None,
        ),
        (
            "grace-only",
            n,
            text(lambda: _plain(note=lambda i: xnote("E", 4).replace("<note>", "<note><grace/>"))),
            INPUT,
            None,
        ),
        (
            "unpitched-no-instrument",
            n,
            text(lambda: _plain(note=lambda i: UNPITCHED)),
            INPUT,
            None,
        ),
        (
            "voice-huge",
            n,
            text(
                lambda: _plain(note=lambda i: xnote("C", 4).replace("<voice>1</voice>", "<voice>99999999999</voice>"))
            ),
            INPUT,
            None,
        ),
        ("staff-0", n, text(lambda: _plain(note=lambda i: xnote("C", 4, extra="<staff>0</staff>"))), INPUT, None),
        (
            "tie-start-never-stop",
            n,
            text(lambda: _plain(count=200, note=lambda i: xnote("C", 4, extra='<tie type="start"/>'))),
            INPUT,
            None,
        ),
        ("part-not-in-list", n, text(lambda: _plain().replace('<part id="P1">', '<part id="Q7">')), INPUT, None),
        ("duplicate-part-ids", n, text(lambda: score(_bars(2, attributes()), part_ids=["P1", "P1"])), INPUT, None),
        ("600-parts", n, text(lambda: score(_bars(1, attributes()), parts=600)), INPUT, None),
        (
            "measure-number-text",
            n,
            text(lambda: _plain().replace('number="2"', 'number="X-1" implicit="yes"')),
            INPUT,
            None,
        ),
        ("cdata-step", n, text(lambda: _plain(note=lambda i: xnote("<![CDATA[C]]>", 4))), INPUT, None),
        (
            "comments-in-numbers",
            n,
            text(lambda: _plain(note=lambda i: xnote("C", "<!-- x -->4", "1<!-- y -->"))),
            INPUT,
            None,
        ),
        (
            "huge-attribute-8mb",
            n,
            text(lambda: _plain(attributes() + f'<sound tempo="120" x="{"z" * (8 << 20)}"/>')),
            INPUT,
            None,
        ),
        ("deep-nesting-100k", n, text(lambda: _deep(100_000)), INPUT, None),
        ("billion-laughs", n, text(lambda: _laughs(9, 10)), INPUT, None),
        ("quadratic-blowup", n, text(lambda: _quadratic(50_000, 50_000)), INPUT, None),
        ("xxe-secret-title", n, with_secret(n, lambda d: _xxe(f"file://{d / 'secret.txt'}")), INPUT, secret),
        ("xxe-secret-lyric", n, with_secret(n, lambda d: _xxe(f"file://{d / 'secret.txt'}", "lyric")), INPUT, secret),
        ("xxe-relative", n, with_secret(n, lambda d: _xxe("secret.txt")), INPUT, secret),
        ("xxe-param-entity", n, with_secret(n, lambda d: _param_entity(f"file://{d / 'secret.txt'}")), INPUT, secret),
        ("xxe-fifo", n, with_fifo(n, lambda d: _xxe(f"file://{d / fifo_xxe}")), INPUT, None),
        ("xxe-dev-zero", n, text(lambda: _xxe("file:///dev/zero")), INPUT, None),
        ("external-dtd-fifo", n, with_fifo(n, lambda d: _external_dtd(str(d / fifo_xxe))), INPUT, None),
        ("external-dtd-closed-port", n, text(lambda: _external_dtd("http://127.0.0.1:9/score.dtd")), INPUT, None),
        (
            "xinclude",
            n,
            with_secret(
                n,
                lambda d: _plain(attributes()).replace(
                    "<part-list>",
                    XINCLUDE.format(href=d / "secret.txt") + "<part-list>",
                ),
            ),
            INPUT,
            secret,
        ),
        ("200k-notes-one-measure", n, text(lambda: _huge_measure(200_000)), INPUT, None),
        ("1200-bars", n, text(lambda: _plain(count=1200)), INPUT, None),
        ("as-xml-suffix", "in.xml", text(_plain, "in.xml"), INPUT, None),
    ]
    if big:
        cases += [
            ("25000-bars", n, text(lambda: _plain(count=25_000)), INPUT, None),
            ("400k-notes", n, text(lambda: score([attributes() + xnote() * 1000 for _ in range(400)])), INPUT, None),
        ]
    return cases


def xml_craft(rng: random.Random, weights: dict[str, float], big: bool) -> Iterator[Case]:
    for i, (label, filename, build, expect, secret) in enumerate(xml_craft_cases(big)):
        kind = _pick(rng, weights)
        if label in ("1200-bars", "25000-bars", "400k-notes") and kind == "insert-rules":
            kind = "stems"
        yield _input_case("xml-craft", i, label, filename, build, kind, expect, secret=secret)


NUMBER_TAGS = ("duration", "divisions", "octave", "alter", "beats", "beat-type", "fifths", "staff", "voice")
HOSTILE_NUMBERS = ("-1", "0", "1e12", "nan", "inf", "-2147483649", "", "١٢", "0x10", "9" * 400, "1.5", " 3 ")


def _mutated_xml(seed: str, hows: tuple[str, ...]) -> Callable[[], bytes]:
    import re

    def make() -> bytes:
        rng = random.Random(seed)
        text = fixture_musicxml().decode("utf-8")
        for how in hows:
            if how == "number":
                spots = [m for tag in NUMBER_TAGS for m in re.finditer(rf"<{tag}>([^<]*)</{tag}>", text)]
                if spots:
                    m = rng.choice(spots)
                    text = text[: m.start(1)] + rng.choice(HOSTILE_NUMBERS) + text[m.end(1) :]
            elif how in ("drop", "double"):
                tags = list(re.finditer(r"<(\w[\w-]*)[^>/]*>.*?</\1>", text, re.S))
                if tags:
                    m = rng.choice(tags)
                    piece = m.group(0) * (2 if how == "double" else 0)
                    text = text[: m.start()] + piece + text[m.end() :]
            elif how == "truncate":
                text = text[: rng.randrange(1, len(text))]
            elif how == "bytes":
                raw = bytearray(text.encode("utf-8"))
                for _ in range(rng.choice((1, 5, 30))):
                    raw[rng.randrange(len(raw))] = rng.randrange(256)
                text = raw.decode("utf-8", "replace")
            elif how == "rename-tag":
                tags = sorted(set(re.findall(r"<(\w[\w-]*)[ >]", text)))
                if tags:
                    old, new = rng.choice(tags), rng.choice(tags)
                    text = text.replace(f"<{old}>", f"<{new}>").replace(f"</{old}>", f"</{new}>")
        return text.encode("utf-8")

    return make


def xml_mutate(rng: random.Random, count: int, weights: dict[str, float], tag: str) -> Iterator[Case]:
    for i in range(count):
        hows = tuple(
            rng.choice(("number", "number", "drop", "double", "truncate", "bytes", "rename-tag"))
            for _ in range(rng.choice((1, 2, 3)))
        )
        build = _lazy("in.musicxml", _mutated_xml(f"{tag}:xml-mutate:{i}", hows))
        yield _input_case("xml-mutate", i, "+".join(hows), "in.musicxml", build, _pick(rng, weights))


# ------------------------------------------------------------------------------------- .mxl
CONTAINER = (
    '<?xml version="1.0" encoding="UTF-8"?><container><rootfiles>'
    '<rootfile full-path="{path}" media-type="application/vnd.recordare.musicxml+xml"/>'
    "</rootfiles></container>"
)


def _zip(entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


def _mxl(score_bytes: bytes | None = None, path: str = "score.musicxml", container: str | None = None) -> bytes:
    score_bytes = fixture_musicxml() if score_bytes is None else score_bytes
    entries = [("META-INF/container.xml", (container or CONTAINER.format(path=path)).encode())]
    return _zip([*entries, (path if not path.startswith(("/", "..")) else "score.musicxml", score_bytes)])


def _bomb(expanded: int, lie: bool = False) -> bytes:
    """A .mxl whose score entry inflates to ``expanded`` bytes (``lie``: the zip says it is 1 KB)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/container.xml", CONTAINER.format(path="score.musicxml"))
        with z.open("score.musicxml", "w", force_zip64=expanded >= 1 << 31) as fh:
            fh.write(XML_DECL.encode() + b"<score-partwise><!--")
            block = b" " * (1 << 20)
            for _ in range(expanded >> 20):
                fh.write(block)
            fh.write(b"--></score-partwise>")
    data = bytearray(buf.getvalue())
    if lie and expanded < 1 << 31:  # without zip64 the 32-bit size fields hold the truth: make them lie
        for at, name in _zip_headers(bytes(data)):
            if name == b"score.musicxml":
                size_at = at + (22 if data[at + 2] == 3 else 24)
                data[size_at : size_at + 4] = struct.pack("<I", 1024)
    return bytes(data)


def _zip_headers(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, name) of every local (PK 3 4) and central (PK 1 2) header that names a file."""
    out = []
    for sig, name_len_at, name_at in ((b"PK\x03\x04", 26, 30), (b"PK\x01\x02", 28, 46)):
        pos = data.find(sig)
        while pos != -1:
            n = struct.unpack("<H", data[pos + name_len_at : pos + name_len_at + 2])[0]
            out.append((pos, data[pos + name_at : pos + name_at + n]))
            pos = data.find(sig, pos + 4)
    return out


def _many_entries(count: int) -> bytes:
    entries = [("META-INF/container.xml", CONTAINER.format(path="score.musicxml").encode())]
    entries += [(f"junk/{i}.txt", b"x") for i in range(count)]
    entries.append(("score.musicxml", fixture_musicxml()))
    return _zip(entries, zipfile.ZIP_STORED)


def _patched_zip(kind: str) -> bytes:
    data = bytearray(_mxl())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("score.musicxml")
    at = info.header_offset
    central = data.rfind(b"PK\x01\x02")  # the last central entry is the score
    if kind == "encrypted":
        data[at + 6] |= 1
        data[central + 8] |= 1
    elif kind == "method-99":
        data[at + 8 : at + 10] = struct.pack("<H", 99)
        data[central + 10 : central + 12] = struct.pack("<H", 99)
    elif kind == "bad-crc":
        data[at + 14 : at + 18] = b"\x00\x00\x00\x00"
        data[central + 16 : central + 20] = b"\x00\x00\x00\x00"
    return bytes(data)


def _mxl_symlink_entry() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("META-INF/container.xml", CONTAINER.format(path="score.musicxml"))
        info = zipfile.ZipInfo("score.musicxml")
        info.create_system = 3
        info.external_attr = (0o120777) << 16
        z.writestr(info, "/etc/passwd")
    return buf.getvalue()


def mxl_cases(big: bool) -> list[tuple[str, Callable[[], bytes], frozenset[int]]]:
    band = fixture_musicxml
    cases: list[tuple[str, Callable[[], bytes], frozenset[int]]] = [
        ("valid", lambda: _mxl(), INPUT),
        ("bomb-200mb", lambda: _bomb(200 << 20), INPUT),
        ("bomb-200mb-size-lie", lambda: _bomb(200 << 20, lie=True), INPUT),
        ("bomb-100mb-ratio", lambda: _bomb(100 << 20), INPUT),
        ("entries-20k", lambda: _many_entries(20_000), INPUT),
        ("rootfile-missing", lambda: _mxl(container=CONTAINER.format(path="nowhere.musicxml")), INPUT),
        ("rootfile-dotdot", lambda: _mxl(container=CONTAINER.format(path="../../../../etc/passwd")), INPUT),
        ("rootfile-absolute", lambda: _mxl(container=CONTAINER.format(path="/etc/passwd")), INPUT),
        ("rootfile-itself", lambda: _mxl(container=CONTAINER.format(path="META-INF/container.xml")), INPUT),
        ("rootfile-empty", lambda: _mxl(container=CONTAINER.format(path="")), INPUT),
        ("rootfile-10k-chars", lambda: _mxl(container=CONTAINER.format(path="a" * 10_000)), INPUT),
        ("container-garbage", lambda: _mxl(container="<<<not xml"), INPUT),
        ("container-laughs", lambda: _mxl(container=_laughs(9, 10).replace("score-partwise", "container")), INPUT),
        (
            "container-xxe-dev-zero",
            lambda: _mxl(container=_xxe("file:///dev/zero").replace("score-partwise", "container")),
            INPUT,
        ),
        ("no-meta-inf", lambda: _zip([("score.musicxml", band())]), INPUT),
        ("no-meta-inf-no-score", lambda: _zip([("readme.txt", b"hello")]), INPUT),
        ("empty-zip", lambda: _zip([]), INPUT),
        (
            "nested-mxl",
            lambda: _zip(
                [("META-INF/container.xml", CONTAINER.format(path="inner.mxl").encode()), ("inner.mxl", _mxl())]
            ),
            INPUT,
        ),
        ("score-is-midi", lambda: _mxl(score_bytes=fixture_midi(2)), INPUT),
        ("score-laughs", lambda: _mxl(score_bytes=_laughs(9, 10).encode()), INPUT),
        ("score-no-part-list", lambda: _mxl(score_bytes=_plain(part_list=False).encode()), INPUT),
        ("truncated", lambda: _mxl()[: len(_mxl()) // 2], INPUT),
        ("truncated-central", lambda: _mxl()[:-10], INPUT),
        ("bitflips", lambda: bytes(b ^ (0x10 if i % 97 == 5 else 0) for i, b in enumerate(_mxl())), INPUT),
        ("not-a-zip", lambda: b"PK\x03\x04" + bytes(500), INPUT),
        ("plain-xml-named-mxl", band, INPUT),
        ("empty-file", lambda: b"", INPUT),
        ("encrypted-flag", lambda: _patched_zip("encrypted"), INPUT),
        ("compression-99", lambda: _patched_zip("method-99"), INPUT),
        ("bad-crc", lambda: _patched_zip("bad-crc"), INPUT),
        ("symlink-entry", _mxl_symlink_entry, INPUT),
        (
            "stored-no-compression",
            lambda: _zip(
                [("META-INF/container.xml", CONTAINER.format(path="s.xml").encode()), ("s.xml", band())],
                zipfile.ZIP_STORED,
            ),
            INPUT,
        ),
        (
            "bzip2",
            lambda: _zip(
                [("META-INF/container.xml", CONTAINER.format(path="s.xml").encode()), ("s.xml", band())],
                zipfile.ZIP_BZIP2,
            ),
            INPUT,
        ),
    ]
    if big:
        cases += [
            ("bomb-3gb-zip64", lambda: _bomb(3 << 30), INPUT),
            ("entries-200k", lambda: _many_entries(200_000), INPUT),
        ]
    return cases


def mxl(rng: random.Random, weights: dict[str, float], big: bool) -> Iterator[Case]:
    for i, (label, make, expect) in enumerate(mxl_cases(big)):
        yield _input_case("mxl", i, label, "in.mxl", _lazy("in.mxl", make), _pick(rng, weights), expect)


# ------------------------------------------------------------------------------------ options
def _band_build(name: str = "in.mid") -> Builder:
    return _lazy(name, lambda: fixture_midi(4))


INSERT = ["-q", "insert", "in.mid", "--stem", "bass", "--engine", "rules", "-o", "out.mid"]
INSERT_T = ["-q", "insert", "in.mid", "--stem", "bass", "--engine", "transformer", "-o", "out.mid"]
INSERT_D = ["-q", "insert", "in.mid", "--stem", "bass", "--engine", "diffusion", "-o", "out.mid"]
GENERATE = ["-q", "generate", "--stems", "bass", "--bars", "2", "-o", "new.mid"]
RENDER = ["-q", "render", "in.mid", "-o", "audio", "--sr", "8000"]
SEPARATE = ["-q", "separate", "in.mid", "-o", "out.mid"]
NO_DATA = ["--data", "no-such-cache", "-o", "runs"]

# (base argv, extra argv, allowed exits); a valid option that starts real work keeps to cheap commands
OPTION_POOL: list[tuple[list[str], list[str], frozenset[int]]] = [
    *[(INSERT, ["--seed", v], ANY) for v in ("-1", str(2**64), "9" * 30, " 7", "0x10")],
    *[(INSERT, ["--seed", v], USAGE) for v in ("1e3", "", "nan", "seven", "9" * 5000)],
    *[(INSERT, ["--active", v], frozenset({0, 2})) for v in ("1-9999999999", "99999-99999", "1-2", "1-4," * 3000)],
    *[(INSERT, ["--active", v], USAGE) for v in ("0-4", "5-3", "-", ",,,", "1-2-3", "a-b", "", "-5")],
    *[(INSERT, ["--active", v], ANY) for v in ("١-٤", "²-³", "1-²", "1 - 4", "+1-4", "1_000-2")],
    *[(INSERT_T, ["--candidates", v], USAGE) for v in ("100000", "0", "-1", "nan", "1e2", "65")],
    *[(INSERT_T, ["--temperature", v], USAGE) for v in ("nan", "inf", "-inf", "0", "-1", "1e308", "NaN", "infinity")],
    *[(INSERT_T, ["--top-p", v], USAGE) for v in ("0", "2", "nan", "-0.5")],
    *[(INSERT_T, [opt, v], USAGE) for opt in ("--harmony-weight", "--sync-weight") for v in ("-1", "nan", "1e9")],
    *[(INSERT_T, ["--root-weight", v], USAGE) for v in ("inf", "-0.001")],
    *[(INSERT_D, ["--steps", v], USAGE) for v in ("0", "100000", "-3", "2.5")],
    *[(INSERT, ["--engine", v], USAGE) for v in ("nosuch", "", "RULES ", "../rules")],
    *[(INSERT, ["--temperature", "1.0"], USAGE)],  # a transformer option on the rules engine
    *[(INSERT, ["--steps", "4"], USAGE)],  # a diffusion option on the rules engine
    *[(INSERT, ["--checkpoint", "nowhere"], USAGE)],
    *[(INSERT_T, ["--checkpoint", v], REFUSE) for v in ("nowhere", "in.mid", "/dev/zero", ".")],
    *[
        (INSERT[:3] + INSERT[5:], ["--stem", v], USAGE)
        for v in ("nosuch", "", "bass,bass", ",,,", "vocals", "bass;drums", "b" * 10_000)
    ],
    *[(INSERT[:3] + INSERT[5:], ["--stem", v], frozenset({0, 2})) for v in ("BASS", " drums ", "bass,,drums")],
    *[(INSERT, ["--role", v], USAGE) for v in ("x=y", "0=banana", "-1=bass", "=", "3", "1=bass=drums")],
    *[(INSERT, ["--role", v], ANY) for v in ("99=bass", "9" * 30 + "=bass", "٣=bass")],
    *[(INSERT, [opt, "huge"], USAGE) for opt in ("--density", "--dynamics", "--rhythm", "--register", "--polyphony")],
    *[(INSERT, ["--timing", v], USAGE) for v in ("nope", "")],
    *[(INSERT, ["--instruction", v], frozenset({0, 2})) for v in ("busy " * 20_000, "\x1b[31m☃ bass 🎸", "")],
    *[(INSERT, ["--report", "in.mid"], REFUSE)],
    *[(INSERT, v, USAGE) for v in (["--frobnicate"], ["--seed"], ["-o"], ["--stem"])],
    *[(["-q", "insert", "in.mid", "--stem", "bass"], [], USAGE)],  # no -o
    *[(["-q", "insert"], [], USAGE)],
    *[([], [], USAGE)],  # no command at all
    *[([], [v], USAGE) for v in ("nosuch-command", "--nope", "-x")],
    *[(GENERATE, ["--bars", v], USAGE) for v in ("0", "-5", str(10**9), "nan", "1e3", "")],
    *[(GENERATE, ["--tempo", v], USAGE) for v in ("0", "-1", "nan", "inf", "1e308", "-inf")],
    *[
        (GENERATE, ["--meter", v], USAGE)
        for v in ("0/0", "4/0", "0/4", "1/2147483648", "999/1", "4/4/4", "", "x/4", "4/3")
    ],
    *[(GENERATE, ["--stems", v], USAGE) for v in ("", "nosuch", "bass,bass", ",")],
    *[(GENERATE, ["--engine", v], REFUSE) for v in ("rules", "borrow", "nosuch")],
    *[(GENERATE, ["--temperature", v], USAGE) for v in ("nan", "0")],
    *[(["-q", "convert", "in.mid", "-o", v], [], REFUSE) for v in ("out.txt", "out", "out.", ".mid", "")],
    *[(RENDER[:-2], ["--sr", v], USAGE) for v in ("0", "1000000000", "-1", "abc", "nan", "44100.5")],
    *[(RENDER, ["--loudness", v], USAGE) for v in ("nan", "inf", "1e308", "-1e308")],
    *[(RENDER, ["--format", "mp3"], USAGE)],
    *[(RENDER, ["--soundfont", v], REFUSE) for v in ("nowhere.sf2", "in.mid", "/dev/zero", "fifo.sf2", ".")],
    *[(["tokenize", "in.mid", "--bars"], [v], ANY) for v in ("-1", "0", str(10**12))],
    *[(["tokenize", "in.mid", "--config"], [v], REFUSE) for v in ("nowhere.toml", "in.mid", "/dev/zero", "fifo.sf2")],
    *[(SEPARATE, ["--stems", v], USAGE) for v in ("", "nosuch", "drums", ",,")],
    *[(SEPARATE, ["--method", v], USAGE) for v in ("nope", "")],
    *[(SEPARATE, ["--guidance", v], USAGE) for v in ("-1", "nan", "inf")],
    *[(SEPARATE, ["--method", "pitch-range", "--steps", "4"], USAGE)],
    *[(["-q", "stems", "in.mid"], ["--role", v], USAGE) for v in ("a=b", "1=nope", "=")],
    *[(["-q", "prepare", "data", "-o", "cache"], ["--workers", v], USAGE) for v in ("0", "-1", "100000", "nan")],
    *[(["-q", "prepare", "data", "-o", "cache"], ["--limit", v], ANY) for v in ("-1", "0")],
    *[(["-q", "serve"], ["--port", v], USAGE) for v in ("0", "70000", "-1", "http")],
    *[(["-q", "serve"], ["--jobs", v], USAGE) for v in ("0", "-3")],
    *[(["-q", "serve"], ["--max-upload-mb", v], USAGE) for v in ("nan", "inf", "0", "-1", "1e9")],
    *[
        (["-q", "eval", "--engine", "rules", *NO_DATA], [o, v], USAGE)
        for o, v in (("--max-bars", "0"), ("--set", "foo"), ("--set", "transformer.nope=1"), ("--checkpoint", "x"))
    ],
    *[
        (["-q", "eval", "--engine", "rules", *NO_DATA], ["--set", v], REFUSE)
        for v in ("transformer.temperature=nan", "transformer.candidates=100000", "diffusion.steps=-1")
    ],
    *[(["-q", "eval", "--engine", "nosuch", *NO_DATA], [], REFUSE)],
    *[
        (["-q", "train-transformer", *NO_DATA], [o, v], USAGE)
        for o, v in (
            ("--max-minutes", "0"),
            ("--max-minutes", "nan"),
            ("--max-steps", "0"),
            ("--threads", "0"),
            ("--seed", "-1"),
        )
    ],
    *[(["-q", "train-diffusion", *NO_DATA], ["--workers", v], USAGE) for v in ("1000", "-1")],
    *[
        (["-q", "train-assign", *NO_DATA], [o, v], USAGE)
        for o, v in (("--jobs", "0"), ("--hidden", "100000"), ("--epochs", "0"), ("--guidance", "nan"))
    ],
    *[
        (["-q", "eval-diffusion", *NO_DATA], [o, v], USAGE)
        for o, v in (("--limit", "0"), ("--guidance", "nan,x"), ("--parts", "nope"), ("--max-bars", "1"))
    ],
    *[
        (["-q", "render-dataset", "data", "-o", "ds"], [o, v], USAGE)
        for o, v in (
            ("--clip", "-1"),
            ("--clip", "nan"),
            ("--sr", "0"),
            ("--require-roles", "kazoo"),
            ("--workers", "0"),
        )
    ],
    *[
        (["-q", "audio", "separate", "mix.wav", "-o", "stems"], [o, v], REFUSE)
        for o, v in (("--steps", "0"), ("--steps", "nan"), ("--seed", "-1"))
    ],
    *[
        (["-q", "audio", "generate", "-o", "gen"], [o, v], USAGE)
        for o, v in (("--seconds", "0"), ("--seconds", "nan"), ("--seconds", "1e9"))
    ],
]


def _options_build(folder: Path) -> None:
    (folder / "in.mid").write_bytes(song_without_bass_and_drums())
    (folder / "data").mkdir()
    (folder / "data" / "song.mid").write_bytes(fixture_midi(2))
    os.mkfifo(folder / "fifo.sf2")


def options(rng: random.Random, count: int | None) -> Iterator[Case]:
    pool = list(enumerate(OPTION_POOL))
    chosen = pool if count is None or count >= len(pool) else sorted(rng.sample(pool, count))
    for index, (base, extra, expect) in chosen:
        argv = [*base, *extra]
        shown = " ".join(a if len(a) < 24 else a[:20] + "..." for a in extra) or " ".join(base[:2]) or "(none)"
        label = "".join(ch if ch.isalnum() or ch in "-.=" else "_" for ch in shown)[:40]
        outputs = tuple(a for a in ("out.mid", "new.mid") if a in argv)
        limit = 120.0 if any(e in argv for e in ("transformer", "diffusion", "generate")) else 45.0
        yield Case("options", f"options-{index:03d}-{label}", argv, _options_build, expect, limit, outputs, about=shown)


# -------------------------------------------------------------------------------------- paths
def _special(kind: str, name: str, target: str = "") -> Builder:
    def build(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "symlink":
            path.symlink_to(target)
        elif kind == "folder":
            path.mkdir()
        elif kind == "hardlink":
            os.link(folder / target, path)

    return build


def path_cases() -> list[tuple[str, list[str], Builder, frozenset[int], tuple[str, ...], tuple[str, ...]]]:
    """(label, argv, builder, allowed exits, outputs, may change) of every path case."""
    band = _band_build()
    band_xml = _lazy("in.musicxml", fixture_musicxml)
    conv = ["-q", "convert", "in.mid", "-o"]
    ins = ["-q", "insert", "in.mid", "--stem", "strings", "--engine", "rules", "-o"]
    long_name = "n" * 300 + ".mid"
    return [
        ("fifo-input-stems", ["stems", "in.mid"], _special("fifo", "in.mid"), INPUT - {0}, (), ()),
        (
            "fifo-input-convert",
            ["-q", "convert", "in.mid", "-o", "out.musicxml"],
            _special("fifo", "in.mid"),
            INPUT - {0},
            (),
            (),
        ),
        ("fifo-input-musicxml", ["stems", "in.musicxml"], _special("fifo", "in.musicxml"), INPUT - {0}, (), ()),
        ("fifo-input-mxl", ["stems", "in.mxl"], _special("fifo", "in.mxl"), INPUT - {0}, (), ()),
        ("fifo-input-insert", [*ins, "out.mid"], _special("fifo", "in.mid"), INPUT - {0}, (), ()),
        ("dev-zero-as-mid", ["stems", "zero.mid"], _special("symlink", "zero.mid", "/dev/zero"), INPUT - {0}, (), ()),
        (
            "dev-zero-as-musicxml",
            ["stems", "zero.musicxml"],
            _special("symlink", "zero.musicxml", "/dev/zero"),
            INPUT - {0},
            (),
            (),
        ),
        ("dev-zero-as-mxl", ["stems", "zero.mxl"], _special("symlink", "zero.mxl", "/dev/zero"), INPUT - {0}, (), ()),
        (
            "dev-urandom-as-mid",
            ["-q", "convert", "r.mid", "-o", "o.mid"],
            _special("symlink", "r.mid", "/dev/urandom"),
            INPUT - {0},
            (),
            (),
        ),
        ("dev-null-as-mid", ["stems", "n.mid"], _special("symlink", "n.mid", "/dev/null"), INPUT - {0}, (), ()),
        (
            "proc-file-as-mid",
            ["stems", "p.mid"],
            _special("symlink", "p.mid", "/proc/self/status"),
            INPUT - {0},
            (),
            (),
        ),
        ("folder-input", ["stems", "dir.mid"], _special("folder", "dir.mid"), INPUT - {0}, (), ()),
        ("folder-input-musicxml", ["stems", "dir.musicxml"], _special("folder", "dir.musicxml"), INPUT - {0}, (), ()),
        ("missing-input", ["stems", "nothere.mid"], _files(), INPUT - {0}, (), ()),
        ("missing-input-insert", [*ins[:2], "nothere.mid", *ins[3:], "out.mid"], _files(), INPUT - {0}, (), ()),
        ("broken-symlink", ["stems", "b.mid"], _special("symlink", "b.mid", "nowhere.mid"), INPUT - {0}, (), ()),
        (
            "symlink-loop",
            ["stems", "a.mid"],
            _both(_special("symlink", "a.mid", "b.mid"), _special("symlink", "b.mid", "a.mid")),
            INPUT - {0},
            (),
            (),
        ),
        ("no-extension", ["stems", "song"], _lazy("song", lambda: fixture_midi(2)), REFUSE, (), ()),
        ("unknown-extension", ["stems", "song.txt"], _lazy("song.txt", lambda: fixture_midi(2)), REFUSE, (), ()),
        ("uppercase-extension", ["stems", "SONG.MID"], _lazy("SONG.MID", lambda: fixture_midi(2)), OK, (), ()),
        ("midi-named-musicxml", ["stems", "s.musicxml"], _lazy("s.musicxml", lambda: fixture_midi(2)), INPUT, (), ()),
        ("musicxml-named-mid", ["stems", "s.mid"], _lazy("s.mid", fixture_musicxml), INPUT, (), ()),
        ("leading-dash-name", ["stems", "./-x.mid"], _lazy("-x.mid", lambda: fixture_midi(2)), OK, (), ()),
        ("unicode-name", ["stems", "sóng ☃.mid"], _lazy("sóng ☃.mid", lambda: fixture_midi(2)), OK, (), ()),
        ("empty-input-name", ["stems", ""], _files(), REFUSE, (), ()),
        ("output-is-input", [*conv, "in.mid"], band, REFUSE, (), ()),
        ("output-is-input-insert", [*ins, "in.mid"], band, REFUSE, (), ()),
        (
            "output-is-input-subtract",
            ["-q", "subtract", "in.mid", "--stem", "bass", "-o", "in.mid"],
            band,
            REFUSE,
            (),
            (),
        ),
        (
            "stem-output-is-input",
            ["-q", "subtract", "in.mid", "--stem", "bass", "-o", "o.mid", "--stem-output", "in.mid"],
            band,
            REFUSE,
            (),
            (),
        ),
        (
            "output-is-input-separate",
            ["-q", "separate", "in.mid", "--method", "pitch-range", "-o", "in.mid"],
            band,
            REFUSE,
            (),
            (),
        ),
        ("output-nosuchdir-dotdot-input", [*conv, "nosuchdir/../in.mid"], band, REFUSE, (), ()),
        ("output-nosuchdir-dotdot-input-insert", [*ins, "nosuchdir/../in.mid"], band, REFUSE, (), ()),
        ("output-nosuchdir-dotdot-mkdir", [*conv, "nosuchdir/../in.mid", "--mkdir"], band, REFUSE, (), ()),
        ("output-dot-slash-input", [*conv, "./in.mid"], band, REFUSE, (), ()),
        ("output-sub-dotdot-input", [*conv, "sub/../in.mid"], _both(band, _special("folder", "sub")), REFUSE, (), ()),
        (
            "output-symlink-to-input",
            [*conv, "link.mid"],
            _both(band, _special("symlink", "link.mid", "in.mid")),
            REFUSE,
            (),
            (),
        ),
        (
            "output-hardlink-of-input",
            [*conv, "hard.mid"],
            _both(band, _special("hardlink", "hard.mid", "in.mid")),
            REFUSE,
            (),
            (),
        ),
        (
            "input-via-symlink-output-real",
            ["-q", "convert", "link.mid", "-o", "in.mid"],
            _both(band, _special("symlink", "link.mid", "in.mid")),
            REFUSE,
            (),
            (),
        ),
        ("output-is-input-musicxml", ["-q", "convert", "in.musicxml", "-o", "in.musicxml"], band_xml, REFUSE, (), ()),
        ("output-is-input-force", [*conv, "in.mid", "--force"], band, OK, ("in.mid",), ("in.mid",)),
        ("output-missing-folder", [*conv, "missing/out.mid"], band, REFUSE, (), ()),
        ("output-missing-folder-insert", [*ins, "missing/deeper/out.mid"], band, REFUSE, (), ()),
        (
            "output-missing-folder-mkdir",
            [*conv, "made/deeper/out.mid", "--mkdir"],
            band,
            OK,
            ("made/deeper/out.mid",),
            (),
        ),
        ("output-is-folder", [*conv, "sub"], _both(band, _special("folder", "sub")), REFUSE, (), ()),
        ("output-is-folder-mid", [*conv, "sub.mid"], _both(band, _special("folder", "sub.mid")), REFUSE, (), ()),
        ("output-trailing-slash", [*conv, "out.mid/"], band, ANY, (), ()),
        ("output-under-a-file", [*conv, "in.mid/out.mid"], band, REFUSE, (), ()),
        ("output-in-proc", [*conv, "/proc/midiarr-fuzz.mid"], band, REFUSE, (), ()),
        ("output-in-proc-self", [*conv, "/proc/self/midiarr-fuzz.mid"], band, REFUSE, (), ()),
        ("output-in-sys", [*ins, "/sys/midiarr-fuzz.mid"], band, REFUSE, (), ()),
        ("output-name-too-long", [*conv, long_name], band, REFUSE, (), ()),
        ("output-unknown-extension", [*conv, "out.wav"], band, REFUSE, (), ()),
        ("output-empty", [*conv, ""], band, REFUSE, (), ()),
        (
            "output-dangling-symlink",
            [*conv, "dangle.mid"],
            _both(band, _special("symlink", "dangle.mid", "nowhere/x.mid")),
            ANY,
            (),
            ("dangle.mid",),  # the name given is the link: replacing the link with the song is fine
        ),
        (
            "existing-output-kept-on-failure",
            ["-q", "convert", "bad.mid", "-o", "old.mid"],
            _files(bad__mid=b"MThd\x00\x00\x00\x06garbage", old__mid=b"OLD CONTENT"),
            INPUT - {0},
            (),
            (),
        ),
        (
            "existing-output-replaced",
            [*conv, "old.mid"],
            _both(band, _files(old__mid=b"OLD")),
            OK,
            ("old.mid",),
            ("old.mid",),
        ),
        (
            "stem-output-equals-output",
            ["-q", "subtract", "in.mid", "--stem", "bass", "-o", "o.mid", "--stem-output", "o.mid"],
            band,
            ANY,
            (),
            (),
        ),
        ("report-onto-file", [*ins, "out.mid", "--report", "in.mid"], band, REFUSE, (), ()),
        ("render-onto-file", ["-q", "render", "in.mid", "-o", "in.mid", "--sr", "8000"], band, REFUSE, (), ()),
        ("render-onto-missing-deep", ["-q", "render", "in.mid", "-o", "a/b/c", "--sr", "8000"], band, ANY, (), ()),
        (
            "prepare-hostile-folder",
            ["-q", "prepare", "data", "-o", "cache", "--workers", "1"],
            _both(
                _files(**{"data/empty.mid": b""}),
                _special("fifo", "data/fifo.mid"),
                _special("symlink", "data/zero.mid", "/dev/zero"),
                _special("folder", "data/dir.mid"),
                _special("symlink", "data/loop.mid", "loop.mid"),
                _lazy("data/song.mid", lambda: fixture_midi(4)),
                _lazy("data/bad.musicxml", lambda: _laughs(9, 10)),
            ),
            ANY,
            ("cache",),
            (),
        ),
        (
            "prepare-output-is-file",
            ["-q", "prepare", "data", "-o", "in.mid"],
            _both(band, _lazy("data/s.mid", lambda: fixture_midi(2))),
            REFUSE,
            (),
            (),
        ),
        ("prepare-input-is-fifo", ["-q", "prepare", "data", "-o", "cache"], _special("fifo", "data"), REFUSE, (), ()),
        ("tokenize-fifo", ["tokenize", "in.mid"], _special("fifo", "in.mid"), INPUT - {0}, (), ()),
        ("render-fifo", ["-q", "render", "in.mid", "-o", "audio"], _special("fifo", "in.mid"), INPUT - {0}, (), ()),
    ]


def paths(rng: random.Random) -> Iterator[Case]:
    for i, (label, argv, build, expect, outputs, may_change) in enumerate(path_cases()):
        limit = 60.0 if "prepare" in argv or "render" in argv else 30.0
        yield Case("paths", f"paths-{i:03d}-{label}", argv, build, expect, limit, outputs, may_change, about=label)


# ------------------------------------------------------------------------------------ SIGKILL
def sigkill(rng: random.Random, count: int) -> Iterator[Case]:
    kinds = [
        ("convert-xml", ["-q", "convert", "in.mid", "-o", "out.musicxml"], 5.0),
        ("convert-mxl", ["-q", "convert", "in.mid", "-o", "out.mxl"], 5.0),
        ("convert-mid", ["-q", "convert", "in.mid", "-o", "out.mid"], 2.0),
        ("insert-rules", ["-q", "insert", "in.mid", "--stem", "strings", "--engine", "rules", "-o", "out.mid"], 3.0),
        ("subtract", ["-q", "subtract", "in.mid", "--stem", "drums", "-o", "out.mid"], 2.0),
    ]
    for i in range(count):
        kind, argv, span = kinds[i % len(kinds)]
        at = round(rng.uniform(0.3, span), 2)
        bars = rng.choice((64, 200))
        old = rng.random() < 0.5  # an older output is already there: it must survive whole, or be replaced whole
        out = argv[-1]
        build = _lazy("in.mid", functools.partial(fixture_midi, bars))
        if old:
            build = _both(build, _files(**{out.replace(".", "__"): b"OLD OUTPUT"}))
        name = f"sigkill-{i:03d}-{kind}-{bars}bars-at-{at}s" + ("-over-old" if old else "")
        yield Case("sigkill", name, argv, build, ANY, 60.0, (out,), (out,), kill_after=at, about=f"SIGKILL at {at}s")


# ------------------------------------------------------------------------------------ engines
def engines(rng: random.Random, count: int) -> Iterator[Case]:
    """Readable but odd songs through the model engines (where each case costs seconds)."""
    sources: list[tuple[str, Callable[[], bytes]]] = [
        ("tempo-2000-one-bar", lambda: _song(meta_events=(smf.tempo(30_000),), notes=_basic_notes(4))),
        ("meter-7/8", lambda: _song(meta_events=(smf.time_signature(7, 3),), notes=_basic_notes(28))),
        ("ppq-1", lambda: _song(division=1)),
        ("drums-only", lambda: _notes_edge("drums-only")),
        ("one-note", lambda: _song(notes=[(0, 10, 60, 1)])),
        ("zero-length-notes", lambda: _notes_edge("zero-length")),
        ("ppq-32767-long-note", lambda: _long_note(1 << 20, 32767)),
        ("64-tracks", lambda: _many_tracks(64)),
    ]
    chosen = rng.sample(sources, min(count, len(sources)))
    for i, (label, make) in enumerate(chosen):
        kind = "insert-transformer" if i % 3 != 2 else "insert-diffusion"
        yield _input_case("engines", i, label, "in.mid", _lazy("in.mid", make), kind, INPUT)


# -------------------------------------------------------------------------------------- tiers
@dataclass
class Tier:
    mutate_midi: int
    mutate_xml: int
    raw_repeat: int
    options: int | None  # None: the whole pool
    sigkill: int
    engines: int
    big: bool
    midi_weights: dict[str, float] = field(default_factory=dict)
    xml_weights: dict[str, float] = field(default_factory=dict)


TIERS = {
    "quick": Tier(36, 12, 1, 36, 4, 2, False, QUICK_MIDI_COMMANDS, QUICK_XML_COMMANDS),
    "long": Tier(600, 250, 3, None, 30, 8, True, LONG_COMMANDS, LONG_COMMANDS),
}


def build_cases(tier: str = "quick", seed: int = 0) -> list[Case]:
    """Every case of ``tier`` for ``seed`` (names unique; the same list on every machine)."""
    t = TIERS[tier]
    tag = f"{tier}:{seed}"

    def rng(family: str) -> random.Random:
        return random.Random(f"{tag}:{family}")

    cases: list[Case] = [
        *midi_mutate(rng("midi-mutate"), t.mutate_midi, t.midi_weights, tag),
        *midi_raw(rng("midi-raw"), t.midi_weights, t.big, t.raw_repeat),
        *xml_mutate(rng("xml-mutate"), t.mutate_xml, t.xml_weights, tag),
        *xml_craft(rng("xml-craft"), t.xml_weights, t.big),
        *mxl(rng("mxl"), t.xml_weights, t.big),
        *options(rng("options"), t.options),
        *paths(rng("paths")),
        *sigkill(rng("sigkill"), t.sigkill),
        *engines(rng("engines"), t.engines),
    ]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases
