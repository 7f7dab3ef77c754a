"""The page's workspace: projects, each song's history and the takes waiting to be chosen, in SQLite.

A project holds versions of one song and points at its current version. Each version is a whole MIDI file with
the version it came from and what made it. A job (add a part, redo bars, start from a chord progression) writes
takes from the current version. Keeping a take makes it the new current version, and undo goes back to the
version the current one came from. Nothing is ever rewritten in place, so undo is exact.

Everything lives in one SQLite file under the server's data folder (stdlib ``sqlite3``): a project is still
there after `midiarr serve` restarts. A job's own files are temporary; its takes are copied into the database
when it finishes, and the job folder is deleted.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midiarr.errors import OutputError
from midiarr.io import atomic_write_text

SCHEMA = """
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    current INTEGER,              -- the version shown and worked on (NULL until a first take is kept)
    job TEXT,                     -- the job writing takes now, if any
    job_base INTEGER,             -- the version that job works from
    job_description TEXT,
    kept_take INTEGER,            -- the take of the latest job that was kept
    last_state TEXT,              -- how the latest job ended: done, failed, cancelled or lost
    last_message TEXT             -- and what it said
);
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    parent INTEGER,
    description TEXT NOT NULL,
    midi BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS takes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    base INTEGER,                 -- the version it was written on (NULL: written from nothing)
    number INTEGER NOT NULL,
    description TEXT NOT NULL,
    midi BLOB NOT NULL,
    scores TEXT NOT NULL,
    new_tracks TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS versions_of_project ON versions(project);
CREATE INDEX IF NOT EXISTS takes_of_project ON takes(project);
"""


@dataclass
class WorkspaceLimits:
    """How much the workspace keeps: projects, versions per project."""

    max_projects: int = 200
    max_versions: int = 500


class WorkspaceError(Exception):
    """A request the workspace refuses: ``status`` is the HTTP status it answers with."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def default_data_dir() -> Path:
    """Where `midiarr serve` keeps its workspace: ``$XDG_DATA_HOME/midiarr``, else ``~/.local/share/midiarr``."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "midiarr"


class Workspace:
    """The SQLite store behind the page's projects. Safe to use from the server's threads."""

    def __init__(self, folder: str | Path, limits: WorkspaceLimits | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.limits = limits or WorkspaceLimits()
        self.audio_folder = self.folder / "audio"  # rendered takes and versions: a cache, made again when missing
        self._lock = threading.RLock()
        path = self.folder / "workspace.sqlite3"
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:  # not a database, read-only, locked for good
            raise OutputError(f"{path}: cannot open the workspace database ({exc})") from None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------ projects
    def create(self, name: str, midi: bytes | None = None, description: str = "opened") -> str:
        """A new project, with ``midi`` as its first version when given; its id."""
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM projects").fetchone()[0]
            if count >= self.limits.max_projects:
                raise WorkspaceError(429, f"the workspace holds {count} projects, its most; delete some first")
            project = uuid.uuid4().hex[:16]
            self._db.execute("INSERT INTO projects (id, name, created) VALUES (?, ?, ?)", (project, name, time.time()))
            if midi is not None:
                version = self._add_version(project, None, description, midi)
                self._db.execute("UPDATE projects SET current = ? WHERE id = ?", (version, project))
            return project

    def delete(self, project: str) -> None:
        """Forget a project, its versions and takes."""
        with self._lock:
            self._row(project)
            self._db.execute("DELETE FROM projects WHERE id = ?", (project,))
        shutil.rmtree(self.audio_folder / project, ignore_errors=True)

    def projects(self) -> list[dict[str, Any]]:
        """Every project, newest first: id, name, created, versions."""
        with self._lock:
            rows = self._db.execute(
                "SELECT p.id, p.name, p.created, COUNT(v.id) AS versions FROM projects p "
                "LEFT JOIN versions v ON v.project = p.id GROUP BY p.id ORDER BY p.created DESC"
            ).fetchall()
        return [dict(r) for r in rows]

    def project(self, project: str) -> dict[str, Any]:
        """A project: its row, its history (current first, back to the first version) and its takes."""
        with self._lock:
            row = dict(self._row(project))
            history = []
            version = row["current"]
            while version is not None:
                v = self._db.execute(
                    "SELECT id, parent, description, created FROM versions WHERE id = ?", (version,)
                ).fetchone()
                history.append(dict(v))
                version = v["parent"]
            takes = self._db.execute(
                "SELECT id, base, number, description, scores, new_tracks FROM takes WHERE project = ? ORDER BY number",
                (project,),
            ).fetchall()
        row["history"] = history
        row["takes"] = [
            {**dict(t), "scores": json.loads(t["scores"]), "new_tracks": json.loads(t["new_tracks"])} for t in takes
        ]
        return row

    def _row(self, project: str) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM projects WHERE id = ?", (project,)).fetchone()
        if row is None:
            raise WorkspaceError(404, f"no project {project!r}")
        return row

    # ------------------------------------------------------------ versions
    def _add_version(self, project: str, parent: int | None, description: str, midi: bytes) -> int:
        count = self._db.execute("SELECT COUNT(*) FROM versions WHERE project = ?", (project,)).fetchone()[0]
        if count >= self.limits.max_versions:
            raise WorkspaceError(
                429, f"the project's history holds {count} versions, its most; start a new project from this song"
            )
        cursor = self._db.execute(
            "INSERT INTO versions (project, parent, description, midi, created) VALUES (?, ?, ?, ?, ?)",
            (project, parent, description, midi, time.time()),
        )
        return int(cursor.lastrowid)

    def current_midi(self, project: str) -> tuple[int, bytes]:
        """The current version's id and MIDI bytes (409 when the project has no song yet)."""
        with self._lock:
            row = self._row(project)
            if row["current"] is None:
                raise WorkspaceError(409, "the project has no song yet: keep a take first", "no_song")
            midi = self._db.execute("SELECT midi FROM versions WHERE id = ?", (row["current"],)).fetchone()[0]
            return int(row["current"]), bytes(midi)

    def undo(self, project: str) -> None:
        """Go back to the version the current one came from (409 at the first version)."""
        with self._lock:
            row = self._row(project)
            if row["current"] is None:
                raise WorkspaceError(409, "nothing to undo", "nothing_to_undo")
            parent = self._db.execute("SELECT parent FROM versions WHERE id = ?", (row["current"],)).fetchone()[0]
            if parent is None:
                raise WorkspaceError(409, "nothing to undo: this is the project's first version", "nothing_to_undo")
            self._db.execute("UPDATE projects SET current = ?, kept_take = NULL WHERE id = ?", (parent, project))

    # ------------------------------------------------------------ jobs and takes
    def start_job(self, project: str, job: str, base: int | None, description: str) -> None:
        """Record the job writing the project's next takes (409 while another one runs)."""
        with self._lock:
            row = self._row(project)
            if row["job"] is not None:
                raise WorkspaceError(409, "the project already has a job running; wait for it or cancel it", "busy")
            self._db.execute(
                "UPDATE projects SET job = ?, job_base = ?, job_description = ? WHERE id = ?",
                (job, base, description, project),
            )

    def running_job(self, project: str) -> str | None:
        """The id of the job writing takes now, if any."""
        with self._lock:
            return self._row(project)["job"]

    def finish_job(self, project: str, job: str, folder: Path | None, state: str, message: str = "") -> bool:
        """Take in the ended job ``job``'s takes (they replace the previous job's) and forget the job; False when
        the project's job is no longer ``job`` (another request took it in first).

        A job that did not finish (failed, cancelled, or lost in a restart) leaves the takes as they were. The
        takes are read before anything is written, and written in one transaction: a take that cannot be read
        marks the job failed and keeps the old takes.
        """
        listing: list[tuple[dict[str, Any], bytes]] = []
        if state == "done" and folder is not None:
            try:
                for take in json.loads((folder / "takes.json").read_text(encoding="utf-8")):
                    listing.append((take, (folder / take["file"]).read_bytes()))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                state, message, listing = "failed", f"the job's takes could not be read ({exc})", []
        with self._lock:
            row = self._row(project)
            if row["job"] != job:
                return False
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if state == "done":
                    self._db.execute("DELETE FROM takes WHERE project = ?", (project,))
                    for take, midi in listing:
                        self._db.execute(
                            "INSERT INTO takes (project, base, number, description, midi, scores, new_tracks, "
                            "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (
                                project,
                                row["job_base"],
                                int(take["number"]),
                                row["job_description"],
                                midi,
                                json.dumps(take["scores"]),
                                json.dumps(take["new_tracks"]),
                                time.time(),
                            ),
                        )
                    self._db.execute("UPDATE projects SET kept_take = NULL WHERE id = ?", (project,))
                    shutil.rmtree(self.audio_folder / project, ignore_errors=True)  # the old takes' audio
                self._db.execute(
                    "UPDATE projects SET job = NULL, job_base = NULL, job_description = NULL, last_state = ?, "
                    "last_message = ? WHERE id = ?",
                    (state, message, project),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return True

    def take_midi(self, project: str, take: int) -> bytes:
        """A take's MIDI bytes."""
        with self._lock:
            self._row(project)
            row = self._db.execute("SELECT midi FROM takes WHERE id = ? AND project = ?", (take, project)).fetchone()
            if row is None:
                raise WorkspaceError(404, f"the project has no take {take}")
            return bytes(row[0])

    def keep(self, project: str, take: int) -> int:
        """Make a take the project's new current version; its id."""
        with self._lock:
            self._row(project)
            row = self._db.execute(
                "SELECT base, number, description, midi FROM takes WHERE id = ? AND project = ?", (take, project)
            ).fetchone()
            if row is None:
                raise WorkspaceError(404, f"the project has no take {take}")
            description = f"{row['description']}, take {row['number']}"
            version = self._add_version(project, row["base"], description, bytes(row["midi"]))
            self._db.execute("UPDATE projects SET current = ?, kept_take = ? WHERE id = ?", (version, take, project))
            return version

    def projects_with_jobs(self) -> list[tuple[str, str]]:
        """(project, job) for every project with a job recorded."""
        with self._lock:
            rows = self._db.execute("SELECT id, job FROM projects WHERE job IS NOT NULL").fetchall()
        return [(r["id"], r["job"]) for r in rows]


# ---------------------------------------------------------------- the job body (in its own process)
def run_workspace_job(folder: str, spec: dict[str, Any]) -> None:
    """Write a workspace job's takes: ``take<k>.mid`` and ``takes.json`` (number, file, seed, scores, new tracks)."""
    out = Path(folder)
    from midiarr.server.jobs import fail, job_engine, progress

    try:
        from midiarr.engines import parse_bar_ranges
        from midiarr.io import load, save
        from midiarr.takes import Take, generate_takes, insert_takes, score_take, take_seed

        engine, controls = job_engine(out, spec)
        count, seed, action = int(spec["takes"]), int(spec.get("seed", 0)), spec["action"]
        progress(out, "running", 0.1, f"writing {count} take{'s' if count > 1 else ''}")
        if action == "generate":
            from midiarr.chords import parse

            chords = parse(spec["chords"], meter=tuple(spec["meter"]), key=spec.get("key"))
            takes = generate_takes(
                engine, spec["stems"], chords.bars, controls, count, seed, chords.chords, chords.key,
                qpm=spec["tempo"], meter=chords.meter,
            )  # fmt: skip
        elif action == "insert":
            song = load(spec["song_path"])
            takes = insert_takes(engine, song, spec["stems"], controls, count, seed, replace=bool(spec["replace"]))
        else:  # infill
            from midiarr.infill import infill

            song = load(spec["song_path"])
            span = parse_bar_ranges(spec["bars"], song.num_bars, option="bars")
            takes = []
            for k in range(1, count + 1):
                result = infill(engine, song, spec["stems"][0], span, controls, seed=take_seed(seed, k))
                new = [result.track]
                takes.append(Take(k, take_seed(seed, k), result.song, new, score_take(result.song, new)))
        listing = []
        for take in takes:
            name = f"take{take.number}.mid"
            save(take.song, out / name)
            scores = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in take.scores.items()}
            listing.append(
                {
                    "number": take.number,
                    "file": name,
                    "seed": take.seed,
                    "scores": scores,
                    "new_tracks": take.new_tracks,
                }
            )
        atomic_write_text(out / "takes.json", json.dumps(listing))
        progress(out, "done", 1.0, "finished", files=[t["file"] for t in listing])
    except Exception as exc:  # reported to the client as the job's message
        fail(out, exc)
