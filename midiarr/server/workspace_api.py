"""The workspace's HTTP API: projects, their history, takes to hear and keep, bars to redo, undo, downloads.

Routes under ``/api/projects``; the schema at /openapi.json documents each. A project starts from an uploaded
song or from a typed chord progression. Each job writes takes from the current version; keeping one makes it the
current version, and undo steps back. The store is `midiarr.server.workspace.Workspace` (SQLite).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from midiarr.errors import MidiarrError
from midiarr.server.app import Track
from midiarr.server.safety import ApiError, clean_filename, clean_text, error_body
from midiarr.server.workspace import Workspace, WorkspaceError, run_workspace_job

STEMS = ("bass", "drums", "guitar", "piano", "strings")
MAX_TAKES = 8  # each take is a full pass of the engine
PRESETS = {  # the page's instruction presets, as the controls they set
    "density": ("sparse", "busy"),
    "dynamics": ("soft", "loud"),
    "rhythm": ("straight", "syncopated"),
}


def default_engines() -> dict[str, str]:
    """The engine the page selects for each stem: the one insert uses by default (the transformer, the best
    measured on every stem it writes: docs/evaluation.md), the rules engine where it does not write that stem."""
    from midiarr.engines import available_engines
    from midiarr.engines.base import engine_class

    transformer = engine_class("transformer") if "transformer" in available_engines() else None
    return {stem: "transformer" if transformer and stem in transformer.stems else "rules" for stem in STEMS}


class Presets(BaseModel):
    model_config = ConfigDict(extra="forbid")

    density: Literal["sparse", "medium", "busy"] | None = None
    dynamics: Literal["soft", "medium", "loud"] | None = None
    rhythm: Literal["straight", "syncopated"] | None = None


class WorkRequest(BaseModel):
    """A job on a project's current song: add parts (insert) or redo bars of one part (infill)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    action: Literal["insert", "infill"] = "insert"
    stems: list[Literal["bass", "drums", "guitar", "piano", "strings"]] = Field(default_factory=lambda: ["bass"])
    engine: str | None = Field(None, description="default: the stem's default engine (GET /api/health)")
    instruction: str | None = Field(None, max_length=300)
    presets: Presets = Field(default_factory=Presets)
    bars: str | None = Field(None, max_length=200, description="infill: the bars to redo, e.g. 5-8")
    takes: int = Field(3, ge=1, le=MAX_TAKES)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    replace: bool = Field(False, description="insert: replace the song's own part of a stem (else 409)")


class ChordsRequest(BaseModel):
    """A new project from a chord progression: the band written to it, as takes to choose from."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    chords: str = Field(..., min_length=1, max_length=2000, description='one cell per bar: "C | G | Am F | F G"')
    name: str | None = Field(None, max_length=200)
    tempo: float = Field(100.0, ge=20, le=300)
    meter: str = Field("4/4", pattern=r"^\d{1,2}/\d{1,2}$")
    key: str | None = Field(None, max_length=12)
    repeat: int = Field(1, ge=1, le=16)
    stems: list[Literal["bass", "drums", "guitar", "piano", "strings"]] = Field(
        default_factory=lambda: ["piano", "bass", "drums"]
    )
    engine: str = "transformer"
    instruction: str | None = Field(None, max_length=300)
    presets: Presets = Field(default_factory=Presets)
    takes: int = Field(2, ge=1, le=MAX_TAKES)
    seed: int = Field(0, ge=0, le=2**32 - 1)


class Version(BaseModel):
    id: int
    description: str
    created: float


class CurrentSong(BaseModel):
    version: int
    bars: int
    seconds: float
    tempo: float
    time_signature: str
    tracks: list[Track]


class TakeInfo(BaseModel):
    id: int
    number: int
    description: str
    scores: dict[str, float | None]
    new_tracks: list[int]


class JobInfo(BaseModel):
    id: str
    state: str
    progress: float
    message: str


class Project(BaseModel):
    id: str
    name: str
    created: float
    current: CurrentSong | None = Field(None, description="the song now (None until a first take is kept)")
    history: list[Version] = Field(description="the current version first, back to the first")
    takes: list[TakeInfo] = Field(description="the latest job's takes")
    kept_take: int | None = Field(None, description="the take of the latest job that was kept")
    job: JobInfo | None = Field(None, description="the job writing takes now")
    last_job: JobInfo | None = Field(None, description="how the latest job ended (its state and message)")


class ProjectSummary(BaseModel):
    id: str
    name: str
    created: float
    versions: int


def add_workspace_routes(app: FastAPI, store: Any, workspace: Workspace) -> Callable[[], None]:
    """Register the ``/api/projects`` routes on ``app`` (jobs go to ``store.jobs``); returns the function that
    takes in every finished job, for the server to call before it stops."""
    from midiarr.server.app import (
        _check_active,
        _check_engine,
        _error,
        _existing_part,
        _read_upload,
        _roll,
        _song_facts,
        _song_tracks,
    )

    limits = store.limits

    @app.exception_handler(WorkspaceError)
    async def workspace_error(request: Request, exc: WorkspaceError) -> JSONResponse:
        code = exc.code or {404: "not_found", 409: "conflict", 429: "too_many"}.get(exc.status, "error")
        return JSONResponse(error_body(code, str(exc)), status_code=exc.status)

    def load_midi(data: bytes) -> Any:
        from midiarr.io.midi import parse_midi_bytes

        return parse_midi_bytes(data, "the project's song")

    def midi_bytes(song: Any) -> bytes:
        from midiarr.io import save

        with tempfile.TemporaryDirectory() as tmp:
            return save(song, Path(tmp) / "song.mid").read_bytes()

    def settle(project: str) -> None:
        """Take in the project's job if it has ended (done: its takes; else only forget it)."""
        job_id = workspace.running_job(project)
        if job_id is None:
            return
        job = store.jobs.get(job_id)
        if job is None:  # the server restarted while it ran: its process is gone
            message = "the server stopped while the job ran; start it again"
            workspace.finish_job(project, job_id, None, "lost", message)
            return
        status = job.status()
        if status["state"] in ("queued", "running"):
            return
        if workspace.finish_job(project, job_id, job.folder, status["state"], status["message"]):
            forget(job)

    def forget(job: Any) -> None:
        """Remove an ended job's folder and its copy of the song."""
        shutil.rmtree(job.folder, ignore_errors=True)
        if job.spec.get("song_path"):
            Path(job.spec["song_path"]).unlink(missing_ok=True)

    def describe(project: str) -> Project:
        settle(project)
        row = workspace.project(project)
        current = None
        if row["current"] is not None:
            version, data = workspace.current_midi(project)
            current = CurrentSong(version=version, **_song_facts(load_midi(data)))
        job = None
        if row["job"] is not None and (found := store.jobs.get(row["job"])) is not None:
            status = found.status()
            job = JobInfo(id=found.id, state=status["state"], progress=status["progress"], message=status["message"])
        return Project(
            id=row["id"],
            name=row["name"],
            created=row["created"],
            current=current,
            history=[Version(**{k: v[k] for k in ("id", "description", "created")}) for v in row["history"]],
            takes=[TakeInfo(**{k: t[k] for k in TakeInfo.model_fields}) for t in row["takes"]],
            kept_take=row["kept_take"],
            job=job,
            last_job=None
            if row["last_state"] is None
            else JobInfo(id="", state=row["last_state"], progress=1.0, message=row["last_message"] or ""),
        )

    def submit(project: str, spec: dict[str, Any], base: int | None, description: str) -> None:
        try:
            if not store.jobs.can_accept():
                raise _error(429, "too many jobs waiting; try again when one has finished")
            if workspace.running_job(project) is not None:
                raise WorkspaceError(409, "the project already has a job running; wait for it or cancel it", "busy")
        except (ApiError, WorkspaceError):
            if spec.get("song_path"):
                Path(spec["song_path"]).unlink(missing_ok=True)
            raise
        job = store.jobs.submit(spec, target=run_workspace_job)
        try:
            workspace.start_job(project, job.id, base, description)
        except WorkspaceError:  # another request started a job first
            store.jobs.cancel(job.id)
            forget(job)
            raise

    def controls_of(presets: Presets) -> dict[str, str]:
        return {k: v for k, v in presets.model_dump().items() if v}

    def check_engine(name: str, stems: list[str]) -> None:
        from midiarr.engines.base import engine_class

        _check_engine(name)
        cls = engine_class(name)
        missing = [s for s in stems if s not in cls.stems]
        if missing:
            raise _error(422, f"the {name} engine does not write {', '.join(missing)}")

    @app.get("/api/projects", response_model=list[ProjectSummary])
    def list_projects() -> list[ProjectSummary]:
        """Every project in the workspace, newest first."""
        return [ProjectSummary(**p) for p in workspace.projects()]

    @app.post("/api/projects", response_model=Project, status_code=201)
    async def open_song(file: UploadFile = File(...)) -> Project:  # noqa: B008  (FastAPI's form file)
        """A new project from an uploaded MIDI or MusicXML song (its first version)."""
        import anyio

        from midiarr.server.app import ALLOWED_SUFFIXES

        filename = clean_filename(file.filename)
        if Path(filename).suffix.lower() not in ALLOWED_SUFFIXES:
            raise _error(415, f"{filename}: not a MIDI or MusicXML file (use {', '.join(ALLOWED_SUFFIXES)})")
        folder = Path(tempfile.mkdtemp(prefix="midiarr-open-"))
        try:
            song, _ = await anyio.to_thread.run_sync(
                _read_upload, file.file, folder / "upload", uuid.uuid4().hex[:16], filename, limits
            )
            data = await anyio.to_thread.run_sync(midi_bytes, song)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        name = clean_text(Path(filename).stem) or "song"
        project = await anyio.to_thread.run_sync(workspace.create, name, data, f"opened {filename}")
        return await anyio.to_thread.run_sync(describe, project)

    @app.post("/api/projects/from-chords", response_model=Project, status_code=202)
    def from_chords(request: ChordsRequest) -> Project:
        """A new project from a chord progression: a job writes the band as takes; keep one to start."""
        from midiarr.chords import parse

        numerator, denominator = (int(x) for x in request.meter.split("/"))
        text = " | ".join([request.chords.strip().strip("|")] * request.repeat)
        try:
            progression = parse(text, meter=(numerator, denominator), key=request.key)
        except MidiarrError as exc:
            raise _error(422, str(exc)) from None
        if progression.bars > 256:
            raise _error(422, f"the progression is {progression.bars} bars long; 256 at most")
        check_engine(request.engine, request.stems)
        from midiarr.engines.base import can_generate

        if not can_generate(request.engine):
            raise _error(422, f"the {request.engine} engine cannot write a song from nothing")
        stems = list(dict.fromkeys(request.stems))
        spec = {
            "action": "generate",
            "stems": stems,
            "engine": request.engine,
            "instruction": request.instruction,
            "controls": controls_of(request.presets),
            "chords": text,
            "meter": [numerator, denominator],
            "key": request.key,
            "tempo": request.tempo,
            "takes": request.takes,
            "seed": request.seed,
        }
        name = clean_text(request.name or request.chords)[:80] or "chords"
        project = workspace.create(name)
        try:
            submit(project, spec, None, f"band ({', '.join(stems)}) from {text[:60]}")
        except (ApiError, WorkspaceError):
            workspace.delete(project)
            raise
        return describe(project)

    @app.get("/api/projects/{project}", response_model=Project)
    def get_project(project: str) -> Project:
        """The project: its current song, history, the latest takes and the job writing new ones."""
        return describe(project)

    @app.delete("/api/projects/{project}", status_code=204)
    def delete_project(project: str) -> Response:
        """Forget a project (a running job of it is cancelled)."""
        job_id = workspace.running_job(project)
        if job_id is not None and (job := store.jobs.cancel(job_id)) is not None:
            forget(job)
        workspace.delete(project)
        return Response(status_code=204)

    @app.post("/api/projects/{project}/jobs", response_model=Project, status_code=202)
    def work(project: str, request: WorkRequest) -> Project:
        """Write takes on the current song: parts added (insert) or bars of a part redone (infill)."""
        settle(project)
        base, data = workspace.current_midi(project)
        song = load_midi(data)
        stems = list(dict.fromkeys(request.stems))
        if not stems:
            raise _error(422, "name at least one stem")
        engine = request.engine or default_engines()[stems[0]]
        check_engine(engine, stems)
        spec: dict[str, Any] = {
            "action": request.action,
            "stems": stems,
            "engine": engine,
            "instruction": request.instruction,
            "controls": controls_of(request.presets),
            "takes": request.takes,
            "seed": request.seed,
            "replace": request.replace,
        }
        tracks = _song_tracks(song)
        if request.action == "infill":
            if len(stems) != 1:
                raise _error(422, "redo bars of one stem at a time")
            if not request.bars:
                raise _error(422, "name the bars to redo, e.g. 5-8")
            _check_active(request.bars, song.num_bars)
            if not any(t.role == stems[0] and t.notes for t in tracks):
                raise _error(409, f"the song has no {stems[0]} part to redo bars of", "no_part")
            spec["bars"] = request.bars
            description = f"redo bars {request.bars} of the {stems[0]} ({engine})"
        else:
            existing = [t for t in tracks if t.role in stems and t.notes > 0]
            if existing and not request.replace:
                return _existing_part(existing)  # type: ignore[return-value]
            description = f"{'replace' if existing else 'add'} {', '.join(stems)} ({engine})"
        if request.instruction:
            description += f": {clean_text(request.instruction)[:60]}"
        folder = store.root / "workspace-songs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uuid.uuid4().hex}.mid"
        path.write_bytes(data)
        spec["song_path"] = str(path)
        submit(project, spec, base, description)
        return describe(project)

    @app.delete("/api/projects/{project}/job", response_model=Project)
    def cancel(project: str) -> Project:
        """Cancel the project's running job (its takes are not kept)."""
        job = workspace.running_job(project)
        if job is None:
            raise WorkspaceError(409, "the project has no job running", "no_job")
        store.jobs.cancel(job)
        return describe(project)

    @app.post("/api/projects/{project}/takes/{take}/keep", response_model=Project)
    def keep(project: str, take: int) -> Project:
        """Keep a take: it becomes the current song (the version it was written on is its undo)."""
        workspace.keep(project, take)
        return describe(project)

    @app.post("/api/projects/{project}/undo", response_model=Project)
    def undo(project: str) -> Project:
        """Go back to the version the current song came from."""
        workspace.undo(project)
        return describe(project)

    @app.get("/api/projects/{project}/roll", response_model=Any)
    def roll(project: str) -> Any:
        """The current song's notes, for drawing a piano roll (the same shape as /api/songs/{id}/roll)."""
        return _roll(load_midi(workspace.current_midi(project)[1]))

    @app.get("/api/projects/{project}/takes/{take}/roll", response_model=Any)
    def take_roll(project: str, take: int) -> Any:
        """A take's notes."""
        return _roll(load_midi(workspace.take_midi(project, take)))

    renders: dict[str, Any] = {"slots": None}  # made on first use, in the event loop

    async def audio_file(project: str, key: str, data: bytes) -> FileResponse:
        """The song ``data`` rendered to a WAV, once (then from the cache); one render at a time, waiting in
        the event loop, so a burst of requests holds no worker threads that other routes need."""
        import anyio

        from midiarr.render import render_to_dir

        if renders["slots"] is None:
            renders["slots"] = anyio.CapacityLimiter(1)
        folder = workspace.audio_folder / project / key
        wav = folder / "mix.wav"
        if not wav.is_file():
            song = load_midi(data)
            if song.duration_seconds > limits.max_seconds:
                raise _error(413, f"the song is longer than {limits.max_seconds / 60:.0f} minutes")
            try:
                await anyio.to_thread.run_sync(
                    lambda: render_to_dir(song, folder, sr=22050, stems=False), limiter=renders["slots"]
                )
            except MidiarrError as exc:
                raise _error(503, f"cannot render the song: {exc}") from None
        return FileResponse(wav, media_type="audio/wav", filename=f"{key}.wav")

    @app.get("/api/projects/{project}/takes/{take}/audio")
    async def take_audio(project: str, take: int) -> FileResponse:
        """A take rendered to audio (the whole song with it, WAV)."""
        import anyio

        data = await anyio.to_thread.run_sync(workspace.take_midi, project, take)
        return await audio_file(project, f"take-{take}", data)

    @app.get("/api/projects/{project}/audio")
    async def song_audio(project: str) -> FileResponse:
        """The current song rendered to audio (WAV)."""
        import anyio

        version, data = await anyio.to_thread.run_sync(workspace.current_midi, project)
        return await audio_file(project, f"version-{version}", data)

    @app.get("/api/projects/{project}/song.{fmt}")
    def download(project: str, fmt: Literal["mid", "musicxml"]) -> Response:
        """The current song as MIDI or MusicXML."""
        data = workspace.current_midi(project)[1]
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", workspace.project(project)["name"])[:60] or "song"
        if fmt == "mid":
            return Response(data, media_type="audio/midi", headers=_attachment(f"{name}.mid"))
        from midiarr.io.musicxml import write_musicxml

        with tempfile.TemporaryDirectory() as tmp:
            text = write_musicxml(load_midi(data), Path(tmp) / "song.musicxml").read_bytes()
        return Response(
            text, media_type="application/vnd.recordare.musicxml+xml", headers=_attachment(f"{name}.musicxml")
        )

    def settle_all() -> None:
        for project, _ in workspace.projects_with_jobs():
            settle(project)

    return settle_all


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}
