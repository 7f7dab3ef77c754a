"""Gather full-band songs that no midiarr model has seen, to judge the engines on.

Usage:
    python scripts/outside_songs.py ARCHIVE -o DIR --shared ../shared/data --cache CACHE [--per-site 60]
    midiarr prepare DIR -o DIR-cache
    midiarr eval --engine transformer --data DIR-cache --split all ...

ARCHIVE is the files of the public `reubenson/midi-archive` repository (a checkout, or `git archive HEAD`):
MIDI files of late-1990s web sites, under ``<tree>/assets/<site>/midi/``. ../shared/data copied only its files
that hold a bass, a drum and a guitar track (General MIDI programs, as pretty_midi counts them) and held some
of those back as the maintainers' own evaluation set, so this script takes none of them. It keeps a file when:

- its bytes are not those of any file under ``--shared``, and its notes (midiarr's content hash, blind to
  track order, names and resolution) are not those of any song in the training ``--cache``;
- it is not one of the bass + drums + guitar files (those are in ../shared/data or held back; a bass or guitar
  track counts here even when it is empty);
- it is a band: a drum track and at least two other parts with notes.

At most ``--per-site`` files are taken from each site, drawn with ``--seed``, so that one site's genre (most
files are video-game music) does not make up the set. The files are copied to ``DIR/<site>/``; nothing of
them belongs in the repository (no licence is stated for the MIDI files themselves).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
import warnings
from collections import Counter
from pathlib import Path

MIDI_SUFFIXES = (".mid", ".midi")


def midi_files(folder: Path) -> list[Path]:
    """Every MIDI file under ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


def md5(path: Path) -> str | None:
    """The file's MD5, or None when it cannot be read."""
    try:
        return hashlib.md5(path.read_bytes()).hexdigest()
    except OSError:
        return None


def site_of(path: Path) -> str:
    """The web site a file came from: the folder after ``assets`` (``<tree>/assets/<site>/midi/x.mid``), else
    the folder that holds it, or the one above a ``midi`` folder."""
    parts = path.parts
    if "assets" in parts[:-2]:
        return parts[parts.index("assets") + 1]
    return path.parent.parent.name if path.parent.name.lower() == "midi" else path.parent.name


def band_parts(path: Path) -> tuple[bool, bool, int] | None:
    """(has a bass, drums and a guitar track, has drums with notes, parts with notes) as pretty_midi reads the
    file; None if it cannot. Bass (programs 32-39) and guitar (24-31) tracks count even when empty, so that no
    file of the held-back kind slips through on an empty track."""
    import pretty_midi

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            midi = pretty_midi.PrettyMIDI(str(path))
    except Exception:  # a file pretty_midi cannot read is simply not taken
        return None
    tracks = midi.instruments
    parts = [i for i in tracks if i.notes]
    bass = any(32 <= i.program <= 39 and not i.is_drum for i in tracks)
    guitar = any(24 <= i.program <= 31 and not i.is_drum for i in tracks)
    drums_any = any(i.is_drum for i in tracks)
    drums = any(i.is_drum for i in parts)
    return bass and guitar and drums_any, drums, len(parts)


def seen_content(cache: Path) -> set[str]:
    """The content hashes of a prepare cache's songs (its song folders are named by them)."""
    return {p.name for p in (cache / "songs").iterdir() if p.is_dir()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", type=Path, help="a checkout of reubenson/midi-archive")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder to copy the chosen files to")
    parser.add_argument("--shared", type=Path, required=True, help="the training data folder (../shared/data)")
    parser.add_argument("--cache", type=Path, required=True, help="the prepare cache of the training data")
    parser.add_argument("--per-site", type=int, default=60, help="at most N files a site (default 60, at least 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.per_site < 1:
        parser.error("--per-site must be at least 1")
    for folder in (args.archive, args.shared, args.cache / "songs"):
        if not folder.is_dir():
            print(f"error: {folder} is not a folder", file=sys.stderr)
            return 1
    if args.output.exists() and any(args.output.iterdir()):
        print(f"error: {args.output} is not empty", file=sys.stderr)
        return 1

    from midiarr.io import load
    from midiarr.prepare import content_hash

    shared = {digest for digest in map(md5, midi_files(args.shared)) if digest is not None}
    trained = seen_content(args.cache)
    reasons: Counter[str] = Counter()
    by_site: dict[str, list[Path]] = {}
    taken_bytes: set[str] = set()
    files = midi_files(args.archive)
    if not files:
        print(f"error: no MIDI files under {args.archive}", file=sys.stderr)
        return 1
    for path in files:
        digest = md5(path)
        if digest is None:
            reasons["cannot be read"] += 1
            continue
        if digest in taken_bytes:
            reasons["the same bytes as a file already looked at"] += 1
            continue
        taken_bytes.add(digest)
        if digest in shared:
            reasons["in ../shared/data"] += 1
            continue
        parts = band_parts(path)
        if parts is None:
            reasons["pretty_midi cannot read it"] += 1
            continue
        held_back_kind, drums, count = parts
        if held_back_kind:
            reasons["bass + drums + guitar (shared or held back)"] += 1
            continue
        if not drums or count < 3:
            reasons["not a band (no drums, or fewer than 3 parts)"] += 1
            continue
        try:
            if content_hash(load(path)) in trained:
                reasons["the same notes as a training song"] += 1
                continue
        except Exception:  # midiarr cannot read it: not a song to judge on
            reasons["midiarr cannot read it"] += 1
            continue
        by_site.setdefault(site_of(path), []).append(path)

    rng = random.Random(args.seed)
    for site, paths in sorted(by_site.items()):
        chosen = sorted(rng.sample(paths, min(len(paths), args.per_site)))
        for path in chosen:
            target = args.output / site / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        print(f"{site}: {len(chosen)} of {len(paths)}")
    for reason, n in reasons.most_common():
        print(f"left out, {reason}: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
