"""The local HTTP API (FastAPI) and the songwriter's web page it serves.

Songs are uploaded into their own temporary folder; jobs (insert, generate) run in
background processes with progress to poll and can be cancelled; results are MIDI,
MusicXML and rendered WAV stems. Every file name in a request is checked against
what the server itself wrote, so no request path reaches the file system unchecked.
The OpenAPI schema at /openapi.json is the contract.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import anyio
import numpy as np
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from midiarr import __version__
from midiarr.errors import LimitError, MidiarrError
from midiarr.server.jobs import JobManager, safe_child
from midiarr.server.safety import CODES, ApiError, BodyLimit, clean_filename, clean_text, error_body

ALLOWED_SUFFIXES = (".mid", ".midi", ".kar", ".rmi", ".musicxml", ".mxl", ".xml")
STEMS = ("bass", "drums", "guitar", "piano", "strings")
SEED_MAX = 2**32 - 1  # the range every engine's generators take (NumPy's legacy seeds, diffusion's draws)
MAX_CANDIDATES = 8  # each take is a full sampling pass
SAMPLING = ("temperature", "top_p", "candidates")  # the engine options a job request may carry


@dataclass
class Limits:
    """What the server accepts: upload size, song length, jobs at once and in the queue, songs kept."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_bars: int = 1000
    max_seconds: float = 1800.0
    max_running_jobs: int = 1
    max_queued_jobs: int = 20
    max_songs: int = 100
    song_ttl_seconds: float = 6 * 3600
    max_parsing_uploads: int = 2  # songs read at once, each in a worker thread
    max_pending_uploads: int = 8  # uploads being read or waiting for a reader; more are answered 429
    max_request_bytes: int = 64 * 1024  # any body but an upload's


class Track(BaseModel):
    index: int
    name: str
    role: str
    program: int
    is_drum: bool
    notes: int


class SongInfo(BaseModel):
    id: str
    filename: str
    bars: int
    seconds: float
    tempo: float
    time_signature: str
    tracks: list[Track]


class RollNote(BaseModel):
    track: int
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")
    pitch: int
    velocity: int


class Roll(BaseModel):
    seconds: float
    bar_times: list[float]
    tracks: list[Track]
    notes: list[RollNote]


class JobRequest(BaseModel):
    # JSON's 1e400 and NaN reach the model as inf and nan; no field takes them
    model_config = ConfigDict(populate_by_name=True, allow_inf_nan=False)

    action: Literal["insert", "generate"] = "insert"
    song_id: str | None = Field(None, description="uploaded song (insert)", max_length=64)
    stems: list[Literal["bass", "drums", "guitar", "piano", "strings"]] = Field(default_factory=lambda: ["bass"])
    engine: str = "rules"
    instruction: str | None = Field(None, max_length=300)
    density: Literal["sparse", "medium", "busy"] | None = None
    dynamics: Literal["soft", "medium", "loud"] | None = None
    rhythm: Literal["straight", "syncopated"] | None = None
    register_: Literal["low", "mid", "high"] | None = Field(None, alias="register")
    active: str | None = Field(None, description="bars to play, e.g. 1-16,33-48", max_length=200)
    seed: int = Field(0, ge=0, le=SEED_MAX)
    bars: int = Field(16, ge=1, le=256, description="length of a generated song")
    tempo: float = Field(120.0, ge=20, le=300)
    render: bool = True
    temperature: float | None = Field(None, gt=0, le=10, description="transformer sampling temperature")
    top_p: float | None = Field(None, gt=0, le=1, description="transformer nucleus sampling mass")
    candidates: int | None = Field(None, ge=1, le=MAX_CANDIDATES, description="transformer takes per window")
    replace: bool = Field(
        False, description="insert: replace the song's own part of a stem (without it, such a part answers 409)"
    )


class JobStatus(BaseModel):
    id: str
    action: str
    stems: list[str]
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float
    message: str
    files: list[str] = Field(default_factory=list)
    result: dict[str, Any] | None = None


@dataclass
class _Store:
    root: Path
    limits: Limits
    jobs: JobManager
    songs: dict[str, dict[str, Any]] = field(default_factory=dict)


def _error(status: int, message: str, code: str | None = None) -> ApiError:
    return ApiError(status, message, code)


def _existing_part(tracks: list[Track]) -> JSONResponse:
    """409 naming the song's own parts of the stems asked for (the question `midiarr insert` asks too):
    the usual error shape plus ``tracks``, each with index, name and role."""
    parts = [
        f"{role} part (" + ", ".join(f"track {t.index} {t.name!r}" for t in tracks if t.role == role) + ")"
        for role in dict.fromkeys(t.role for t in tracks)
    ]
    message = (
        f"the song already has its own {' and '.join(parts)}; an insert only adds parts: "
        f"send replace: true to replace {'it' if len(tracks) == 1 else 'them'}"
    )
    body = {**error_body("existing_part", message), "tracks": [t.model_dump() for t in tracks]}
    return JSONResponse(body, status_code=409)


def _validation_message(exc: RequestValidationError) -> str:
    """Where and what for each error, never the value sent (which may be NaN, huge or hostile)."""
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            parts.append("the body is not valid JSON")
            continue
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts[:10]) or "invalid request"


def _check_active(text: str, bars: int) -> None:
    """422 unless ``text`` names bar ranges inside a song of ``bars`` bars; nothing is allocated before."""
    from midiarr.engines import parse_bar_ranges

    for number in re.findall(r"\d+", text):
        if len(number) > 9 or int(number) > bars:
            raise _error(422, f"active {text!r}: bar {number[:12]} is beyond the song's {bars} bars")
    try:
        parse_bar_ranges(text, bars)
    except MidiarrError as exc:
        raise _error(422, str(exc)) from None


def _song_facts(song: Any) -> dict[str, Any]:
    """What the API tells of a song: bars, seconds, opening tempo and meter, tracks with their roles."""
    ts = song.time_signature_at(0)
    return {
        "bars": song.num_bars,
        "seconds": round(song.duration_seconds, 3),
        "tempo": round(song.tempo_at(0), 3),
        "time_signature": f"{ts.numerator}/{ts.denominator}",
        "tracks": _song_tracks(song),
    }


def _check_engine(name: str) -> None:
    """422 unless an engine is registered as ``name``."""
    from midiarr.engines import available_engines

    if name not in available_engines():
        raise _error(422, f"unknown engine {name!r} (available: {', '.join(available_engines())})")


def _song_tracks(song: Any) -> list[Track]:
    from midiarr.roles import assign_roles

    roles = assign_roles(song)
    return [
        Track(
            index=i,
            name=clean_text(t.name or "") or f"track {i}",
            role=roles[i],
            program=t.program,
            is_drum=t.is_drum,
            notes=len(t.notes),
        )
        for i, t in enumerate(song.tracks)
    ]


def create_app(
    root: str | Path | None = None, limits: Limits | None = None, data_dir: str | Path | None = None
) -> FastAPI:
    """The API app. Uploads and job folders live under ``root`` (a fresh temporary folder by default); the
    workspace's projects in ``data_dir`` (default ``root/workspace``; `midiarr serve` gives a per-user folder)."""
    from midiarr.server.workspace import Workspace
    from midiarr.server.workspace_api import add_workspace_routes

    own_root = root is None
    base = Path(tempfile.mkdtemp(prefix="midiarr-serve-")) if root is None else Path(root)
    base.mkdir(parents=True, exist_ok=True)
    limits = limits or Limits()
    store = _Store(base, limits, JobManager(base, limits.max_running_jobs, limits.max_queued_jobs))
    workspace = Workspace(Path(data_dir) if data_dir is not None else base / "workspace")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        settle_all()  # takes of jobs that finished are kept before the server goes
        store.jobs.shutdown()
        workspace.close()
        if own_root:
            shutil.rmtree(base, ignore_errors=True)

    app = FastAPI(
        title="midiarr",
        version=__version__,
        description="Write the missing stem of a song: upload, insert or generate parts, render, download.",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.workspace = workspace

    # one error shape, {"error": message, "code": code}, for the API's own errors, the router's 404
    # and 405, validation errors and anything unexpected
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such address {request.url.path}"
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_value", _validation_message(exc)), status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body("internal_error", f"internal error ({type(exc).__name__})"), status_code=500)

    def body_limit(path: str) -> int:
        # multipart framing around the file is small; 64 KB leaves room for any name a browser sends
        uploads = ("/api/songs", "/api/projects")  # a song, or a song opened as a project
        return limits.max_upload_bytes + 64 * 1024 if path in uploads else limits.max_request_bytes

    app.add_middleware(BodyLimit, limit_for=body_limit)
    # uploads being read; touched on the event loop only. The limiter is made on first use, in the loop.
    parsing: dict[str, Any] = {"pending": 0, "slots": None}

    def expire() -> None:
        now = time.time()
        for sid, entry in list(store.songs.items()):
            if now - entry["created"] > limits.song_ttl_seconds:
                shutil.rmtree(entry["folder"], ignore_errors=True)
                del store.songs[sid]

    def song_entry(song_id: str) -> dict[str, Any]:
        entry = store.songs.get(song_id)
        if entry is None:
            raise _error(404, f"no song {song_id!r} (upload one with POST /api/songs)")
        return entry

    settle_all = add_workspace_routes(app, store, workspace)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(resources.files("midiarr.server").joinpath("static/workspace.html").read_text("utf-8"))

    @app.get("/quick", response_class=HTMLResponse, include_in_schema=False)
    def quick_page() -> HTMLResponse:
        return HTMLResponse(resources.files("midiarr.server").joinpath("static/index.html").read_text("utf-8"))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        files = {
            "app.js": "text/javascript",
            "page.js": "text/javascript",
            "workspace.js": "text/javascript",
            "style.css": "text/css",
        }
        if name not in files:
            raise _error(404, "no such file")
        text = resources.files("midiarr.server").joinpath(f"static/{name}").read_text("utf-8")
        return Response(text, media_type=files[name])

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        """Server version, the engines it can use, and the engine the page selects for each stem."""
        from midiarr.engines import available_engines
        from midiarr.server.workspace_api import default_engines

        return {
            "status": "ok",
            "version": __version__,
            "engines": available_engines(),
            "stems": list(STEMS),
            "default_engines": default_engines(),
        }

    @app.post("/api/songs", response_model=SongInfo, status_code=201)
    async def upload(file: UploadFile = File(...)) -> SongInfo:  # noqa: B008  (FastAPI's way to declare a form file)
        """Upload a MIDI or MusicXML song; returns its tracks and roles."""
        expire()
        if len(store.songs) >= limits.max_songs:
            raise _error(429, "too many songs on the server; delete some with DELETE /api/songs/{id}")
        filename = clean_filename(file.filename)
        suffix = Path(filename).suffix.lower()
        if suffix not in ALLOWED_SUFFIXES:
            raise _error(415, f"{filename}: not a MIDI or MusicXML file (use {', '.join(ALLOWED_SUFFIXES)})")
        if parsing["pending"] >= limits.max_pending_uploads:
            raise _error(429, "the server is reading other songs; try again in a moment")
        if parsing["slots"] is None:
            parsing["slots"] = anyio.CapacityLimiter(limits.max_parsing_uploads)
        song_id = uuid.uuid4().hex[:16]
        folder = base / "songs" / song_id
        parsing["pending"] += 1
        try:
            # reading a long score takes seconds of CPU: a worker thread does it, so the loop keeps
            # answering, and the limiter bounds how many run at once
            song, info = await anyio.to_thread.run_sync(
                _read_upload, file.file, folder, song_id, filename, limits, limiter=parsing["slots"]
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            parsing["pending"] -= 1
        if len(store.songs) >= limits.max_songs:  # others may have been stored while this one was read
            shutil.rmtree(folder, ignore_errors=True)
            raise _error(429, "too many songs on the server; delete some with DELETE /api/songs/{id}")
        store.songs[song_id] = {
            "folder": folder,
            "path": folder / f"upload{suffix}",
            "info": info,
            "song": song,
            "created": time.time(),
        }
        return info

    @app.get("/api/songs/{song_id}", response_model=SongInfo)
    def song_info(song_id: str) -> SongInfo:
        """Tracks and roles of an uploaded song."""
        return song_entry(song_id)["info"]

    @app.get("/api/songs/{song_id}/roll", response_model=Roll)
    def song_roll(song_id: str) -> Roll:
        """Every note of the song in seconds, for drawing a piano roll."""
        return _roll(song_entry(song_id)["song"])  # the song read at upload, not read again per request

    @app.delete("/api/songs/{song_id}", status_code=204)
    def delete_song(song_id: str) -> Response:
        """Forget a song and delete its files."""
        entry = song_entry(song_id)
        shutil.rmtree(entry["folder"], ignore_errors=True)
        del store.songs[song_id]
        return Response(status_code=204)

    @app.post("/api/jobs", response_model=JobStatus, status_code=202)
    def submit(request: JobRequest) -> JobStatus:
        """Start an insert (stems written into an uploaded song) or a generate (a song from nothing)."""
        from midiarr.engines.base import can_generate, engine_settings

        _check_engine(request.engine)
        spec: dict[str, Any] = {
            "action": request.action,
            "engine": request.engine,
            "stems": list(dict.fromkeys(request.stems)),
            "instruction": request.instruction,
            "controls": {
                k: v
                for k, v in {
                    "density": request.density,
                    "dynamics": request.dynamics,
                    "rhythm": request.rhythm,
                    "register": request.register_,
                }.items()
                if v
            },
            "active": request.active,
            "seed": request.seed,
            "render": request.render,
        }
        if not spec["stems"]:
            raise _error(422, "name at least one stem")
        options = {name: getattr(request, name) for name in SAMPLING if getattr(request, name) is not None}
        try:  # the engine's own settings refuse what it does not take, before a job starts
            engine_settings(request.engine, **options)
        except MidiarrError as exc:
            raise _error(422, str(exc)) from None
        spec["options"] = options
        if request.action == "insert":
            if not request.song_id:
                raise _error(422, "an insert needs song_id (upload a song first)")
            entry = song_entry(request.song_id)
            spec["song_path"] = str(entry["path"])
            bars = entry["info"].bars
        else:
            if not can_generate(request.engine):
                raise _error(422, f"the {request.engine} engine cannot write a song from nothing")
            spec["bars"], spec["tempo"] = request.bars, request.tempo
            bars = request.bars
        if request.active:
            _check_active(request.active, bars)
        if request.action == "insert":
            # insert only adds: a part the song already has is the user's, so ask before replacing it
            existing = [t for t in entry["info"].tracks if t.role in spec["stems"] and t.notes > 0]
            if existing and not request.replace:
                return _existing_part(existing)
            spec["replace"] = request.replace
        if not store.jobs.can_accept():
            raise _error(429, "too many jobs waiting; try again when one has finished")
        job = store.jobs.submit(spec)
        return JobStatus(**job.status())

    @app.get("/api/jobs/{job_id}", response_model=JobStatus)
    def job_status(job_id: str) -> JobStatus:
        """A job's state and progress (0-1); when done, the files it made."""
        job = store.jobs.get(job_id)
        if job is None:
            raise _error(404, f"no job {job_id!r}")
        return JobStatus(**job.status())

    @app.delete("/api/jobs/{job_id}", response_model=JobStatus)
    def cancel_job(job_id: str) -> JobStatus:
        """Cancel a queued or running job."""
        job = store.jobs.cancel(job_id)
        if job is None:
            raise _error(404, f"no job {job_id!r}")
        return JobStatus(**job.status())

    @app.get("/api/jobs/{job_id}/roll", response_model=Roll)
    def job_roll(job_id: str) -> Roll:
        """The finished song's notes, for drawing a piano roll."""
        from midiarr.io import load

        path = _job_file(job_id, "result.mid")
        return _roll(load(path))

    @app.get("/api/jobs/{job_id}/files/{name:path}")
    def job_file(job_id: str, name: str) -> FileResponse:
        """Download one of a finished job's files (result.mid, result.musicxml, score-N.svg, audio/<stem>.wav)."""
        path = _job_file(job_id, name)
        media = {
            ".mid": "audio/midi",
            ".musicxml": "application/vnd.recordare.musicxml+xml",
            ".wav": "audio/wav",
            ".svg": "image/svg+xml",
        }
        return FileResponse(path, media_type=media.get(path.suffix, "application/octet-stream"), filename=path.name)

    def _job_file(job_id: str, name: str) -> Path:
        job = store.jobs.get(job_id)
        if job is None:
            raise _error(404, f"no job {job_id!r}")
        status = job.status()
        if status["state"] != "done":
            raise _error(409, f"job {job_id} is {status['state']}; files come when it is done")
        if name not in status.get("files", []):
            raise _error(404, f"job {job_id} made no file {name!r}")
        path = safe_child(job.folder, name)
        if path is None:
            raise _error(404, f"job {job_id} made no file {name!r}")
        return path

    return app


def _read_upload(source: Any, folder: Path, song_id: str, filename: str, limits: Limits) -> tuple[Any, SongInfo]:
    """Store an upload as ``folder/upload.<ext>`` and read it (in a worker thread): the song and its facts.

    Every failure is an `ApiError`: 413 over a size or length limit, 422 a song that cannot be read.
    """
    from midiarr.io import load

    suffix = Path(filename).suffix.lower()
    folder.mkdir(parents=True)
    path = folder / f"upload{suffix}"  # the client's name is kept as data only, never as a path
    source.seek(0)
    size = 0
    with open(path, "wb") as out:
        while chunk := source.read(1 << 20):
            size += len(chunk)
            if size > limits.max_upload_bytes:
                raise _error(413, f"{filename}: larger than {limits.max_upload_bytes // (1024 * 1024)} MB")
            out.write(chunk)
    if not size:
        raise _error(400, f"{filename}: the file is empty")
    try:
        song = load(path)
    except LimitError as exc:
        raise _error(413, _reader_message(exc, path, filename)) from None
    except MidiarrError as exc:
        raise _error(422, _reader_message(exc, path, filename), "unreadable_song") from None
    except Exception as exc:  # a reader's own failure on a broken file (or one too big for memory)
        raise _error(422, f"{filename}: cannot read the song ({type(exc).__name__})", "unreadable_song") from None
    if song.note_count == 0:
        raise _error(422, f"{filename}: the song has no notes", "unreadable_song")
    if song.num_bars > limits.max_bars or song.duration_seconds > limits.max_seconds:
        raise _error(413, f"{filename}: longer than {limits.max_bars} bars or {limits.max_seconds / 60:.0f} minutes")
    return song, SongInfo(id=song_id, filename=filename, **_song_facts(song))


def _reader_message(exc: Exception, path: Path, filename: str) -> str:
    """A reader's message about ``path`` told with the client's file name, once."""
    text = str(exc).replace(str(path), filename).replace(path.name, filename)
    return text if text.startswith(filename) else f"{filename}: {text}"


def _roll(song: Any) -> Roll:
    tracks = _song_tracks(song)
    notes: list[RollNote] = []
    for i, t in enumerate(song.tracks):
        if not len(t.notes):
            continue
        starts = song.tick_to_seconds(t.notes["start"])
        ends = song.tick_to_seconds(t.notes["start"] + t.notes["duration"])
        notes += [
            RollNote(track=i, start=round(float(s), 4), end=round(float(e), 4), pitch=int(p), velocity=int(v))
            for s, e, p, v in zip(starts, ends, t.notes["pitch"], t.notes["velocity"])
        ]
    bar_times = [round(float(x), 4) for x in np.asarray(song.bar_times())]
    return Roll(seconds=round(song.duration_seconds, 3), bar_times=bar_times, tracks=tracks, notes=notes)
