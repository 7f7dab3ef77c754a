"""Background jobs for the HTTP API: each job runs in its own process, writes its progress to a
JSON file in its folder, and is cancelled by ending that process.

A process per job keeps the server responsive while an engine works, makes
cancellation immediate (no engine has to poll a flag), and means a crash in one
job never takes the server down.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midiarr.io import atomic_write_text
from midiarr.server.safety import clean_text
from midiarr.threads import share_of_cores

STATES = ("queued", "running", "done", "failed", "cancelled")


def progress(folder: Path, state: str, progress: float, message: str, **extra: Any) -> None:
    """Write a job's progress.json (read by `Job.status`)."""
    record = {"state": state, "progress": round(progress, 3), "message": message, **extra}
    atomic_write_text(folder / "progress.json", json.dumps(record))


def job_engine(out: Path, spec: dict[str, Any]) -> tuple[Any, Any]:
    """In a job process: its share of the cores, then the engine and controls the spec asks for."""
    from midiarr.engines import Controls, get_engine
    from midiarr.threads import limit_threads

    # jobs run side by side: each takes its share of the cores, not all of them
    limit_threads(int(spec.get("threads", 1)))
    progress(out, "running", 0.02, "loading the engine")
    engine = get_engine(spec["engine"], **spec.get("options", {}))
    return engine, Controls.build(spec.get("instruction"), **spec.get("controls", {}))


def fail(out: Path, exc: Exception) -> None:
    """Report a job's error as its message (a song's own text may be in it: cleaned)."""
    message = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
    progress(out, "failed", 1.0, clean_text(message, limit=500))


def run_job(folder: str, spec: dict[str, Any]) -> None:
    """The body of a job process: insert/generate stems, write MIDI + MusicXML, render audio."""
    out = Path(folder)
    try:
        from midiarr.engines import parse_bar_ranges
        from midiarr.errors import MidiarrError
        from midiarr.io import atomic_write_text, load, save

        engine, controls = job_engine(out, spec)
        stems: list[str] = spec["stems"]
        if spec["action"] == "generate":
            progress(out, "running", 0.1, f"writing {', '.join(stems)}")
            song = engine.generate(stems, int(spec["bars"]), controls, seed=int(spec.get("seed", 0)), qpm=spec["tempo"])
            new_roles = stems
            new_tracks = list(range(len(song.tracks)))
        else:
            song = load(spec["song_path"])
            new_roles = []
            new_tracks = []
            for k, stem in enumerate(stems):
                progress(out, "running", 0.05 + 0.7 * k / len(stems), f"writing the {stem}")
                active = parse_bar_ranges(spec["active"], song.num_bars) if spec.get("active") else None
                seed, replace = int(spec.get("seed", 0)) + k, bool(spec.get("replace"))
                result = engine.insert(song, stem, controls, active=active, seed=seed, replace=replace)
                song = result.song
                new_roles.append(stem)
                new_tracks += [i for i in result.new_tracks if i not in new_tracks]
        progress(out, "running", 0.8, "saving MIDI and MusicXML")
        save(song, out / "result.mid")
        files = ["result.mid"]
        try:
            from midiarr.io.musicxml import write_musicxml
            from midiarr.io.score_view import score_svg_pages

            pitched = [i for i in new_tracks if not song.tracks[i].is_drum]
            write_musicxml(song, out / "result.musicxml", chord_symbols_for=pitched)
            files.append("result.musicxml")
            progress(out, "running", 0.83, "engraving the score")
            for k, svg in enumerate(score_svg_pages(song, new_tracks), start=1):
                atomic_write_text(out / f"score-{k}.svg", svg)
                files.append(f"score-{k}.svg")
        except MidiarrError:  # a song too long to notate still has its MIDI and audio
            pass
        if spec.get("render", True):
            from midiarr.render import render_to_dir

            progress(out, "running", 0.85, "rendering audio")
            audio = render_to_dir(
                song,
                out / "audio",
                soundfont=spec.get("soundfont"),
                sr=int(spec.get("sr", 22050)),
                workers=int(spec.get("threads", 1)),  # its share of the cores, as for the engine
            )
            files += [f"audio/{p.name}" for p in audio.values()]
        summary = {
            "tracks": [
                {"name": clean_text(t.name or ""), "role": t.role, "notes": len(t.notes), "is_drum": t.is_drum}
                for t in song.tracks
            ],
            "new_stems": new_roles,
            "bars": song.num_bars,
        }
        progress(out, "done", 1.0, "finished", files=files, result=summary)
    except Exception as exc:  # reported to the client as the job's message
        fail(out, exc)


@dataclass
class Job:
    """A job's folder, process and when it was made."""

    id: str
    folder: Path
    spec: dict[str, Any]
    created: float = field(default_factory=time.time)
    process: Any = None
    cancelled: bool = False
    target: Callable[[str, dict[str, Any]], None] | None = None

    def status(self) -> dict[str, Any]:
        """State, progress (0-1), message and, when done, the files it made."""
        record: dict[str, Any] = {"state": "queued", "progress": 0.0, "message": "waiting for a free slot"}
        path = self.folder / "progress.json"
        if path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                pass
        if self.cancelled:
            record = {"state": "cancelled", "progress": record.get("progress", 0.0), "message": "cancelled"}
        elif record["state"] in ("queued", "running") and self.process is not None and not self.process.is_alive():
            if self.process.exitcode not in (0, None):
                record = {
                    "state": "failed",
                    "progress": 1.0,
                    "message": f"the job stopped (exit {self.process.exitcode})",
                }
        return {"id": self.id, "action": self.spec["action"], "stems": self.spec["stems"], **record}


class JobManager:
    """Starts at most ``max_running`` job processes; the rest wait in order."""

    def __init__(self, root: Path, max_running: int = 1, max_jobs: int = 50) -> None:
        self.root = root
        self.max_running = max_running
        self.max_jobs = max_jobs
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.context = mp.get_context("spawn")  # no fork of a threaded server

    def submit(self, spec: dict[str, Any], target: Callable[[str, dict[str, Any]], None] | None = None) -> Job:
        """Queue a job run by ``target(folder, spec)`` (default `run_job`); the caller checks limits first with
        `can_accept`."""
        job_id = uuid.uuid4().hex[:16]
        folder = self.root / "jobs" / job_id
        folder.mkdir(parents=True)
        job = Job(job_id, folder, spec, target=target or run_job)
        with self.lock:
            self.jobs[job_id] = job
        self.pump()
        return job

    def can_accept(self) -> bool:
        """Whether another job fits in the queue."""
        with self.lock:
            waiting = sum(1 for j in self.jobs.values() if j.status()["state"] in ("queued", "running"))
        return waiting < self.max_jobs

    def running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.process is not None and j.process.is_alive()]

    def pump(self) -> None:
        """Start queued jobs while slots are free."""
        with self.lock:
            free = self.max_running - len(self.running())
            for job in sorted(self.jobs.values(), key=lambda j: j.created):
                if free <= 0:
                    break
                if job.process is None and not job.cancelled:
                    spec = {**job.spec, "threads": share_of_cores(self.max_running)}
                    job.process = self.context.Process(
                        target=job.target or run_job, args=(str(job.folder), spec), daemon=True
                    )
                    job.process.start()
                    free -= 1

    def get(self, job_id: str) -> Job | None:
        self.pump()
        return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """End a job's process (if it runs) and mark it cancelled."""
        job = self.jobs.get(job_id)
        if job is None:
            return None
        if job.status()["state"] in ("queued", "running"):
            job.cancelled = True
            if job.process is not None and job.process.is_alive():
                job.process.terminate()
                job.process.join(5)
        self.pump()
        return job

    def shutdown(self) -> None:
        """End every running job."""
        for job in list(self.jobs.values()):
            if job.process is not None and job.process.is_alive():
                job.process.terminate()
                job.process.join(5)


def safe_child(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it stays inside ``folder`` and exists as a file, else None."""
    if not name or name.startswith(("/", "\\")) or "\x00" in name:
        return None
    base = folder.resolve()
    target = (base / name).resolve()
    if os.path.commonpath([str(base), str(target)]) != str(base) or not target.is_file():
        return None
    return target
