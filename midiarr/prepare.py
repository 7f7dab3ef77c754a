"""`prepare`: turn a folder of songs into Subtractive Training triplets.

For every readable song: a content hash (duplicates across the corpus are kept
once), a split drawn from that hash (so a song lands in the same split on every
machine and every run), and for each removable stem it has, the song without
that stem, the stem alone, and an instruction measured from the stem.

Cache layout::

    CACHE/songs/<id>/full.mid            the song as read
    CACHE/songs/<id>/without_<stem>.mid  the song minus the stem
    CACHE/songs/<id>/<stem>.mid          the stem alone
    CACHE/index.jsonl                    one line per song (source, split, roles, bars, tempo...)
    CACHE/triplets.jsonl                 one line per triplet (paths, instruction, attributes)
    CACHE/splits.json                    ids per split and the rule that drew them
    CACHE/errors.log                     files skipped and why
    CACHE/summary.json                   the counts printed at the end
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from midiarr.attributes import genre_from_text
from midiarr.backends import check_backend, ordered_map
from midiarr.errors import InputError, MidiarrError, OptionError
from midiarr.io import SUPPORTED_SUFFIXES, atomic_write_text, load, write_midi
from midiarr.roles import REMOVABLE_STEMS, assign_roles
from midiarr.song import Song
from midiarr.subtract import make_triplet

SPLITS = ("train", "valid", "test")
# what the measuring commands take for "every song of the cache" (a cache of songs no model was trained on)
ALL_SPLITS = "all"
# Share of the hash space per split, in thousandths: 80% / 10% / 10%.
SPLIT_EDGES = (800, 900)
MIN_STEM_NOTES = 8
MIN_STEM_BARS = 2


def split_of(song_id: str) -> str:
    """The split a song id falls in: a fixed function of its hash."""
    bucket = int(song_id[:8], 16) % 1000
    if bucket < SPLIT_EDGES[0]:
        return "train"
    return "valid" if bucket < SPLIT_EDGES[1] else "test"


def content_hash(song: Song) -> str:
    """Hash of the notes (times in quarter notes, pitch, velocity, drum flag, program), blind to
    track order, names and tick resolution, so re-saved copies of one song share it."""
    scale = 480 / song.ticks_per_beat
    parts = []
    for t in song.tracks:
        n = t.notes
        if len(n) == 0:
            continue
        rows = np.stack(
            [
                np.round(n["start"] * scale),
                np.round(n["duration"] * scale),
                n["pitch"],
                n["velocity"],
                np.full(len(n), int(t.is_drum)),
                np.full(len(n), -1 if t.is_drum else t.program),
            ],
            axis=1,
        ).astype(np.int64)
        parts.append(rows)
    if not parts:
        return hashlib.sha1(b"").hexdigest()
    allrows = np.concatenate(parts)
    allrows = allrows[np.lexsort(allrows.T[::-1])]
    return hashlib.sha1(allrows.tobytes()).hexdigest()


def find_songs(root: Path) -> list[Path]:
    """Every MIDI/MusicXML file below ``root``, in a stable order."""
    suffixes = set(SUPPORTED_SUFFIXES)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


@dataclass
class SongResult:
    """What one worker learned about one file."""

    source: str
    song_id: str | None = None
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict)
    triplets: list[dict[str, Any]] = field(default_factory=list)
    skipped_stems: dict[str, str] = field(default_factory=dict)


def _process(args: tuple[str, str, str]) -> SongResult:
    path_str, root_str, cache_str = args
    path, root, cache = Path(path_str), Path(root_str), Path(cache_str)
    rel = str(path.relative_to(root))
    result = SongResult(source=rel)
    try:
        song = load(path)
        if song.note_count == 0:
            raise InputError(f"{path}: the song has no notes")
        song_id = content_hash(song)
        result.song_id = song_id
        split = split_of(song_id)
        roles = assign_roles(song)
        genre = genre_from_text(song.metadata.get("genre", ""), rel, song.metadata.get("title", ""))
        out_dir = cache / "songs" / song_id
        write_midi(song, out_dir / "full.mid")
        present = sorted({r for i, r in roles.items() if len(song.tracks[i].notes)})
        for stem in REMOVABLE_STEMS:
            if stem not in present:
                continue
            seed = int(song_id[8:16], 16) ^ REMOVABLE_STEMS.index(stem)
            trip = make_triplet(song, stem, roles, genre=genre, seed=seed)
            attrs = trip.attributes
            if attrs.notes < MIN_STEM_NOTES or attrs.active_bars < MIN_STEM_BARS:
                result.skipped_stems[stem] = f"too small ({attrs.notes} notes, {attrs.active_bars} bars)"
                continue
            write_midi(trip.subtraction.partial, out_dir / f"without_{stem}.mid")
            write_midi(trip.subtraction.target, out_dir / f"{stem}.mid")
            result.triplets.append(
                {
                    "id": f"{song_id}:{stem}",
                    "song_id": song_id,
                    "split": split,
                    "stem": stem,
                    "full": f"songs/{song_id}/full.mid",
                    "partial": f"songs/{song_id}/without_{stem}.mid",
                    "target": f"songs/{song_id}/{stem}.mid",
                    "instruction": trip.instruction,
                    "attributes": attrs.to_dict(),
                    "context_tracks": len(trip.subtraction.partial.tracks),
                    "target_tracks": trip.subtraction.track_indices,
                }
            )
        first_ts = song.time_signature_at(0)
        result.record = {
            "id": song_id,
            "source": rel,
            "split": split,
            "genre": genre,
            "tracks": [
                {"name": t.name, "program": t.program, "is_drum": t.is_drum, "role": roles[i], "notes": len(t.notes)}
                for i, t in enumerate(song.tracks)
            ],
            "roles": present,
            "bars": song.num_bars,
            "seconds": round(song.duration_seconds, 3),
            "tempo": round(song.tempo_at(0), 3),
            "tempo_changes": len(song.tempos),
            "time_signature": f"{first_ts.numerator}/{first_ts.denominator}",
            "meter_changes": len(song.time_signatures),
            "ticks_per_beat": song.ticks_per_beat,
        }
    except MidiarrError as exc:
        result.error = str(exc)
    except Exception as exc:  # one odd file must not stop a corpus run; it is logged with its type
        result.error = f"{path}: unexpected {type(exc).__name__}: {exc}"
    return result


@dataclass
class PrepareSummary:
    """Counts printed at the end of `prepare`."""

    files: int = 0
    songs: int = 0
    duplicates: int = 0
    errors: int = 0
    per_split: Counter = field(default_factory=Counter)
    triplets_per_stem: Counter = field(default_factory=Counter)
    triplets_per_split: Counter = field(default_factory=Counter)
    skipped_stems: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {
            "files": self.files,
            "songs": self.songs,
            "duplicates": self.duplicates,
            "errors": self.errors,
            "songs_per_split": dict(self.per_split),
            "triplets_per_stem": dict(self.triplets_per_stem),
            "triplets_per_split": dict(self.triplets_per_split),
            "stems_too_small": dict(self.skipped_stems),
            "seconds": round(self.seconds, 2),
            "files_per_second": round(self.files / self.seconds, 1) if self.seconds else None,
        }

    def lines(self) -> Iterator[str]:
        """Human-readable summary lines."""
        yield f"files: {self.files}  songs: {self.songs}  duplicates: {self.duplicates}  errors: {self.errors}"
        yield "songs per split: " + ", ".join(f"{s} {self.per_split.get(s, 0)}" for s in SPLITS)
        yield "triplets per stem: " + ", ".join(f"{s} {self.triplets_per_stem.get(s, 0)}" for s in REMOVABLE_STEMS)
        yield "triplets per split: " + ", ".join(f"{s} {self.triplets_per_split.get(s, 0)}" for s in SPLITS)
        if self.skipped_stems:
            yield "stems too small to use: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped_stems.items()))
        if self.seconds:
            yield f"time: {self.seconds:.1f} s ({self.files / self.seconds:.1f} files/s)"


def prepare(
    data_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    workers: int | None = None,
    progress: bool = True,
    limit: int | None = None,
    backend: str = "local",
    address: str | None = None,
) -> PrepareSummary:
    """Walk ``data_dir`` and write triplets to ``cache_dir``; returns the summary. ``backend`` "ray" runs the
    files as Ray tasks (on a local instance, or the cluster at ``address``); the cache is the same either way."""
    import time

    from tqdm import tqdm

    root, cache = Path(data_dir), Path(cache_dir)
    if not root.is_dir():
        raise OptionError(f"{root}: not a folder")
    if cache.resolve() == root.resolve() or root.resolve() in cache.resolve().parents:
        raise OptionError(f"the cache {cache} must not lie inside the data folder {root}")
    check_backend(backend, address)  # before anything is written
    files = find_songs(root)
    if limit is not None:
        files = files[:limit]
    if not files:
        raise InputError(f"{root}: no MIDI or MusicXML files found")
    cache.mkdir(parents=True, exist_ok=True)
    workers = max(1, workers or os.cpu_count() or 1)
    summary = PrepareSummary(files=len(files))
    seen: set[str] = set()
    records: list[dict[str, Any]] = []
    triplets: list[dict[str, Any]] = []
    errors: list[str] = []
    start = time.perf_counter()
    jobs = [(str(p), str(root), str(cache)) for p in files]
    # results in order keep the first copy of a duplicate the same on every run and backend
    results = ordered_map(_process, jobs, workers, backend, address, chunksize=16)
    for res in tqdm(results, total=len(jobs), desc="prepare", unit="file", disable=not progress):
        if res.error:
            summary.errors += 1
            errors.append(f"{res.source}\t{res.error}")
            continue
        if res.song_id in seen:
            summary.duplicates += 1
            continue
        seen.add(res.song_id)
        summary.songs += 1
        summary.per_split[res.record["split"]] += 1
        records.append(res.record)
        for t in res.triplets:
            triplets.append(t)
            summary.triplets_per_stem[t["stem"]] += 1
            summary.triplets_per_split[t["split"]] += 1
        for stem in res.skipped_stems:
            summary.skipped_stems[stem] += 1
    summary.seconds = time.perf_counter() - start

    splits = {s: sorted(r["id"] for r in records if r["split"] == s) for s in SPLITS}
    atomic_write_text(cache / "index.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    atomic_write_text(cache / "triplets.jsonl", "".join(json.dumps(t) + "\n" for t in triplets))
    atomic_write_text(
        cache / "splits.json",
        json.dumps(
            {
                "rule": "bucket = int(sha1_content_hash[:8], 16) % 1000; train < 800 <= valid < 900 <= test",
                "source": str(root),
                **splits,
            },
            indent=1,
        ),
    )
    atomic_write_text(cache / "errors.log", "".join(e + "\n" for e in errors))
    atomic_write_text(cache / "summary.json", json.dumps(summary.to_dict(), indent=1))
    return summary


def load_triplets(
    cache_dir: str | os.PathLike[str], split: str | None = None, stem: str | None = None
) -> list[dict[str, Any]]:
    """Triplet records of a prepared cache, filtered by split (None or `ALL_SPLITS`: every song's) and stem."""
    path = Path(cache_dir) / "triplets.jsonl"
    if not path.exists():
        raise InputError(f"{cache_dir}: not a prepared cache (no triplets.jsonl); run `midiarr prepare` first")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    every = split in (None, ALL_SPLITS)
    return [r for r in rows if (every or r["split"] == split) and (stem is None or r["stem"] == stem)]
