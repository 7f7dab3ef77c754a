"""`render-dataset`: a MIDI folder or a `prepare` cache rendered into aligned stems + mix per song or clip.

This is how the audio stem models get their data, the way Slakh2100 was made
from Lakh MIDI: every stem role of a song is synthesized on its own, the stems
sum to the mix, and a JSON per item records what is in it. Songs go to worker
processes; each song's stems render in its worker, one after another.

Layout::

    AUDIO_DIR/<split>/<item>/mix.wav, bass.wav, drums.wav, ...   (item = song id, or id_cNNN per clip)
    AUDIO_DIR/<split>/<item>/meta.json                           written last: its presence marks the item done
    AUDIO_DIR/summary.json
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midiarr.backends import check_backend, ordered_map
from midiarr.errors import InputError, MidiarrError, OptionError
from midiarr.io import atomic_write_text, load
from midiarr.prepare import content_hash, find_songs, split_of
from midiarr.roles import assign_roles

SILENCE_DBFS = -60.0


@dataclass
class DatasetItem:
    """One song to render: where it is, its id and split."""

    path: str
    song_id: str
    split: str
    source: str
    roles: tuple[str, ...] = ()


def list_items(src: Path) -> list[DatasetItem]:
    """Songs of a prepare cache (its index and splits) or of a MIDI/MusicXML folder."""
    index = src / "index.jsonl"
    if index.exists():
        rows = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
        return [
            DatasetItem(str(src / "songs" / r["id"] / "full.mid"), r["id"], r["split"], r["source"], tuple(r["roles"]))
            for r in rows
        ]
    if not src.is_dir():
        raise OptionError(f"{src}: not a folder or a prepare cache")
    items, seen = [], set()
    for path in find_songs(src):
        try:
            song = load(path)
        except MidiarrError:
            continue  # unreadable files are reported when rendering is attempted
        song_id = content_hash(song)
        if song_id not in seen:
            seen.add(song_id)
            roles = tuple(sorted(set(assign_roles(song).values())))
            items.append(DatasetItem(str(path), song_id, split_of(song_id), str(path.relative_to(src)), roles))
    return items


@dataclass
class _Job:
    item: DatasetItem
    out_dir: str
    sr: int
    clip_seconds: float | None
    soundfont: str | None
    fmt: str
    stereo: bool


@dataclass
class _Result:
    written: int = 0
    skipped: int = 0
    silent: int = 0
    error: str | None = None
    stems: Counter = field(default_factory=Counter)


def _render_item(job: _Job) -> _Result:
    from midiarr.render import shared_gain, synthesizer, write_audio
    from midiarr.render.audio import rms_dbfs

    item, res = job.item, _Result()
    base = Path(job.out_dir) / item.split / item.song_id
    whole_done = (base / "meta.json").exists()
    clips_done = job.clip_seconds is not None and (Path(f"{base}_c000") / "meta.json").exists()
    if whole_done or clips_done:
        res.skipped += 1
        return res
    try:
        song = load(item.path)
        if song.note_count == 0:
            raise InputError(f"{item.path}: the song has no notes")
        roles = assign_roles(song)
        synth = synthesizer(job.soundfont, job.sr)
        audio = synth.render(song, roles)
        gain = shared_gain(audio.mix, audio.stems, None)
        n = len(audio.mix)
        if job.clip_seconds:
            clip = round(job.clip_seconds * job.sr)
            spans = [(i, s, s + clip) for i, s in enumerate(range(0, n - clip + 1, clip))]
        else:
            spans = [(None, 0, n)]
        bar_seconds = song.bar_times()
        meta_common = {
            "id": item.song_id,
            "source": item.source,
            "split": item.split,
            "sr": job.sr,
            "channels": 2 if job.stereo else 1,
            "gain": gain,
            "soundfont": synth.soundfont.name,
            "tracks": [
                {"name": t.name, "program": t.program, "is_drum": t.is_drum, "role": roles[i], "notes": len(t.notes)}
                for i, t in enumerate(song.tracks)
            ],
            "tempos": [{"seconds": float(song.tick_to_seconds(t.tick)), "qpm": t.qpm} for t in song.tempos],
            "time_signatures": [
                {"seconds": float(song.tick_to_seconds(ts.tick)), "meter": f"{ts.numerator}/{ts.denominator}"}
                for ts in song.time_signatures
            ],
        }
        for index, start, end in spans:
            mix = audio.mix[start:end] * gain
            if rms_dbfs(mix) < SILENCE_DBFS:
                res.silent += 1
                continue
            folder = base if index is None else Path(f"{base}_c{index:03d}")
            stems = {}
            for name, data in [("mix", audio.mix), *audio.stems.items()]:
                part = data[start:end] * gain
                if not job.stereo:
                    part = part.mean(axis=1, keepdims=True)
                # 16-bit: training data, half the disk of 24-bit; the stems still sum to the mix within 1e-4
                write_audio(folder / f"{name}.{job.fmt}", part, job.sr, job.fmt, bits=16)
                if name != "mix":
                    stems[name] = rms_dbfs(part) >= SILENCE_DBFS
            t0, t1 = start / job.sr, end / job.sr
            meta = {
                **meta_common,
                "stems": sorted(stems),
                "stems_active": sorted(k for k, v in stems.items() if v),
                "seconds": (end - start) / job.sr,
                "clip": None if index is None else {"index": index, "offset_seconds": t0, "offset_samples": start},
                "bar_times": [round(float(b) - t0, 6) for b in bar_seconds if t0 <= b < t1],
            }
            atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1))
            res.written += 1
            res.stems.update(meta["stems_active"])
    except MidiarrError as exc:
        res.error = f"{item.source}\t{exc}"
    except Exception as exc:  # one odd song must not stop a corpus run; it is logged with its type
        res.error = f"{item.source}\tunexpected {type(exc).__name__}: {exc}"
    return res


def render_dataset(
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    sr: int = 16000,
    clip_seconds: float | None = None,
    soundfont: str | None = None,
    fmt: str = "wav",
    stereo: bool = False,
    workers: int | None = None,
    split: str | None = None,
    limit: int | None = None,
    require_roles: tuple[str, ...] = (),
    progress: bool = True,
    backend: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Render every song of ``src`` into ``out_dir``; returns the summary (also written as summary.json).
    ``backend`` "ray" renders the songs as Ray tasks (a local instance, or the cluster at ``address``); the files
    are the same either way, and a song already rendered is skipped on both."""
    from tqdm import tqdm

    from midiarr.render import FORMATS, resolve_soundfont

    if fmt not in FORMATS:
        raise OptionError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    if clip_seconds is not None and clip_seconds <= 0:
        raise OptionError("--clip must be a positive number of seconds")
    resolve_soundfont(soundfont)  # fail before starting workers
    check_backend(backend, address)
    items = list_items(Path(src))
    if split:
        items = [i for i in items if i.split == split]
    if require_roles:
        items = [i for i in items if set(require_roles) <= set(i.roles)]
    if limit is not None:
        items = items[:limit]
    if not items:
        raise InputError(f"{src}: no songs to render")
    workers = max(1, workers or os.cpu_count() or 1)
    jobs = [_Job(i, str(out_dir), int(sr), clip_seconds, soundfont, fmt, stereo) for i in items]
    totals: dict[str, Any] = {
        "songs": len(items),
        "items_written": 0,
        "songs_skipped_done": 0,
        "silent_clips_dropped": 0,
        "errors": 0,
        "stems": Counter(),
    }
    errors = []
    for res in tqdm(
        ordered_map(_render_item, jobs, workers, backend, address),
        total=len(jobs),
        desc="render",
        unit="song",
        disable=not progress,
    ):
        totals["items_written"] += res.written
        totals["songs_skipped_done"] += res.skipped
        totals["silent_clips_dropped"] += res.silent
        totals["stems"].update(res.stems)
        if res.error:
            totals["errors"] += 1
            errors.append(res.error)
    totals["stems"] = dict(totals["stems"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "summary.json", json.dumps({**totals, "sr": sr, "clip_seconds": clip_seconds}, indent=1))
    atomic_write_text(out / "errors.log", "".join(e + "\n" for e in errors))
    return totals
