"""The workspace API: projects from a song or from chords, takes, keep, redo bars, undo, downloads, restarts."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from midiarr.io import write_midi
from midiarr.io.midi import parse_midi_bytes
from midiarr.server import Limits, create_app
from midiarr.song import Song


def _app(tmp_path: Path):
    return create_app(tmp_path / "server", Limits(max_bars=64), data_dir=tmp_path / "data")


@pytest.fixture
def client(tmp_path: Path):
    with TestClient(_app(tmp_path)) as c:
        yield c


def _wait(client: TestClient, project: str, timeout: float = 180) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        body = client.get(f"/api/projects/{project}").json()
        if body["job"] is None:
            return body
        time.sleep(0.2)
    raise AssertionError("job did not finish")


def _open(client: TestClient, song: Song, tmp_path: Path) -> dict:
    path = write_midi(song, tmp_path / "song.mid")
    r = client.post("/api/projects", files={"file": ("my song.mid", path.read_bytes(), "audio/midi")})
    assert r.status_code == 201, r.text
    return r.json()


def _notes(song: Song, index: int) -> list[tuple[int, int, int, int]]:
    n = song.tracks[index].notes
    return list(zip(n["start"].tolist(), n["duration"].tolist(), n["pitch"].tolist(), n["velocity"].tolist()))


def test_the_schema_documents_every_workspace_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/projects",
        "/api/projects/from-chords",
        "/api/projects/{project}",
        "/api/projects/{project}/jobs",
        "/api/projects/{project}/job",
        "/api/projects/{project}/takes/{take}/keep",
        "/api/projects/{project}/takes/{take}/audio",
        "/api/projects/{project}/undo",
        "/api/projects/{project}/song.{fmt}",
    ):
        assert path in paths, path
    health = client.get("/api/health").json()
    assert health["default_engines"]["bass"] == "transformer" and "rules" not in health["default_engines"].values()


def test_add_a_part_keep_a_take_redo_bars_and_undo(client: TestClient, tmp_path: Path, band: Song) -> None:
    original = band.with_tracks([t for t in band.tracks if t.name != "Bass"])
    project = _open(client, original, tmp_path)
    pid = project["id"]
    assert project["name"] == "my song" and len(project["history"]) == 1 and project["current"]["bars"] == 8

    r = client.post(f"/api/projects/{pid}/jobs", json={"stems": ["bass"], "engine": "rules", "takes": 3, "seed": 4})
    assert r.status_code == 202, r.text
    assert r.json()["job"] is not None
    body = _wait(client, pid)
    assert [t["number"] for t in body["takes"]] == [1, 2, 3]
    assert all(t["scores"]["notes"] > 0 for t in body["takes"])
    second = body["takes"][1]
    assert client.get(f"/api/projects/{pid}/takes/{second['id']}/roll").json()["notes"]
    audio = client.get(f"/api/projects/{pid}/takes/{second['id']}/audio")
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"

    body = client.post(f"/api/projects/{pid}/takes/{second['id']}/keep").json()
    assert body["kept_take"] == second["id"] and len(body["history"]) == 2
    kept = parse_midi_bytes(client.get(f"/api/projects/{pid}/song.mid").content)
    take2 = parse_midi_bytes(client.app.state.workspace.take_midi(pid, second["id"]))
    assert [_notes(kept, i) for i in range(len(kept.tracks))] == [_notes(take2, i) for i in range(len(take2.tracks))]
    for i in range(len(original.tracks)):  # the song's own parts are untouched
        assert _notes(kept, i) == _notes(original, i)

    # redo bars 5-8 of the drums: every other note of the song stays
    drums = next(t["index"] for t in body["current"]["tracks"] if t["role"] == "drums")
    r = client.post(f"/api/projects/{pid}/jobs", json={"action": "infill", "stems": ["drums"], "bars": "5-8",
                                                        "engine": "rules", "takes": 2})  # fmt: skip
    assert r.status_code == 202, r.text
    body = _wait(client, pid)
    assert len(body["takes"]) == 2
    body = client.post(f"/api/projects/{pid}/takes/{body['takes'][0]['id']}/keep").json()
    redone = parse_midi_bytes(client.get(f"/api/projects/{pid}/song.mid").content)
    bar = 4 * redone.ticks_per_beat
    for i in range(len(redone.tracks)):
        if i != drums:
            assert _notes(redone, i) == _notes(kept, i)
    outside = [n for n in _notes(kept, drums) if not 4 * bar <= n[0] < 8 * bar]
    assert [n for n in _notes(redone, drums) if not 4 * bar <= n[0] < 8 * bar] == outside
    assert len(body["history"]) == 3 and "redo bars 5-8 of the drums" in body["history"][0]["description"]

    # undo twice: back to the kept bass, then to the song as opened
    body = client.post(f"/api/projects/{pid}/undo").json()
    assert body["current"]["version"] == body["history"][0]["id"] and len(body["history"]) == 2
    again = parse_midi_bytes(client.get(f"/api/projects/{pid}/song.mid").content)
    assert [_notes(again, i) for i in range(len(again.tracks))] == [_notes(kept, i) for i in range(len(kept.tracks))]
    client.post(f"/api/projects/{pid}/undo")
    r = client.post(f"/api/projects/{pid}/undo")
    assert r.status_code == 409 and r.json()["code"] == "nothing_to_undo"
    xml = client.get(f"/api/projects/{pid}/song.musicxml")
    assert xml.status_code == 200 and b"<score-partwise" in xml.content
    # clean-up: a settled job leaves neither its folder nor its copy of the song behind
    server = tmp_path / "server"
    assert not list((server / "jobs").iterdir()) and not list((server / "workspace-songs").iterdir())


def test_a_project_from_chords_and_the_restart(tmp_path: Path) -> None:
    with TestClient(_app(tmp_path)) as client:
        r = client.post(
            "/api/projects/from-chords",
            json={"chords": "C | G | Am F | F G", "stems": ["piano", "drums"], "takes": 2, "tempo": 110,
                  "engine": "rules"},
        )  # fmt: skip
        assert r.status_code == 422 and "cannot write a song from nothing" in r.json()["error"]
        r = client.post(
            "/api/projects/from-chords",
            json={"chords": "C | G | Am F | F G", "stems": ["piano", "drums"], "takes": 2, "tempo": 110},
        )
        assert r.status_code == 202, r.text
        pid = r.json()["id"]
        assert r.json()["current"] is None
        body = _wait(client, pid)
        assert body["last_job"]["state"] == "done", body["last_job"]
        assert len(body["takes"]) == 2
        r = client.post(f"/api/projects/{pid}/jobs", json={"stems": ["bass"]})
        assert r.status_code == 409 and r.json()["code"] == "no_song"  # nothing kept yet
        body = client.post(f"/api/projects/{pid}/takes/{body['takes'][0]['id']}/keep").json()
        assert body["current"]["bars"] == 4 and {t["role"] for t in body["current"]["tracks"]} == {"piano", "drums"}
        before = client.get(f"/api/projects/{pid}/song.mid").content
    # a new server on the same data folder: the project, its history and takes are all there
    with TestClient(_app(tmp_path)) as client:
        assert [p["id"] for p in client.get("/api/projects").json()] == [pid]
        body = client.get(f"/api/projects/{pid}").json()
        assert len(body["history"]) == 1 and len(body["takes"]) == 2
        assert client.get(f"/api/projects/{pid}/song.mid").content == before
        assert client.delete(f"/api/projects/{pid}").status_code == 204
        assert client.get(f"/api/projects/{pid}").status_code == 404


def test_a_long_song_opens_and_a_too_large_one_is_refused(tmp_path: Path) -> None:
    from midiarr.fixtures import band_song

    big = write_midi(band_song(bars=300), tmp_path / "long.mid")
    assert big.stat().st_size > 64 * 1024  # more than any other request body may carry
    with TestClient(create_app(tmp_path / "s", Limits(max_upload_bytes=200_000), data_dir=tmp_path / "d")) as c:
        r = c.post("/api/projects", files={"file": ("long.mid", big.read_bytes(), "audio/midi")})
        assert r.status_code == 201, r.text
        assert r.json()["current"]["bars"] == 300
        r = c.post("/api/projects", files={"file": ("huge.mid", b"MThd" + b"\0" * 300_000, "audio/midi")})
        assert r.status_code == 413


def test_bad_requests_are_clear(client: TestClient, tmp_path: Path, band: Song) -> None:
    pid = _open(client, band, tmp_path)["id"]
    r = client.post(f"/api/projects/{pid}/jobs", json={"stems": ["bass"], "engine": "rules"})
    assert r.status_code == 409 and r.json()["code"] == "existing_part"  # the song has its own bass
    r = client.post(f"/api/projects/{pid}/jobs", json={"action": "infill", "stems": ["bass"], "bars": "7-99"})
    assert r.status_code == 422 and "beyond" in r.json()["error"]
    r = client.post(f"/api/projects/{pid}/jobs", json={"stems": ["bass"], "takes": 99})
    assert r.status_code == 422
    r = client.post(f"/api/projects/{pid}/jobs", json={"stems": ["bass"], "engine": "nope", "replace": True})
    assert r.status_code == 422 and "unknown engine" in r.json()["error"]
    r = client.post("/api/projects/from-chords", json={"chords": "C | H7 | G"})
    assert r.status_code == 422
    assert client.post(f"/api/projects/{pid}/takes/12345/keep").status_code == 404
    assert client.get("/api/projects/nope").status_code == 404
    bad = client.post("/api/projects", files={"file": ("x.mid", io.BytesIO(b"MThd broken"), "audio/midi")})
    assert bad.status_code == 422
    assert len(client.get("/api/projects").json()) == 1  # the broken upload made no project


def test_the_project_count_is_bounded(tmp_path: Path, band: Song) -> None:
    from midiarr.server.workspace import Workspace, WorkspaceError, WorkspaceLimits

    workspace = Workspace(tmp_path / "ws", WorkspaceLimits(max_projects=2, max_versions=2))
    first = workspace.create("a", b"MThd")
    workspace.create("b", b"MThd")
    with pytest.raises(WorkspaceError, match="its most"):
        workspace.create("c", b"MThd")
    db = sqlite3.connect(tmp_path / "ws" / "workspace.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM versions WHERE project = ?", (first,)).fetchone()[0] == 1
    with pytest.raises(WorkspaceError, match="first version"):
        workspace.undo(first)


def test_a_data_folder_that_cannot_hold_the_workspace_is_one_line(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    assert run_cli("serve", "--data-dir", a_file, "-q") == 2
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "workspace.sqlite3").write_text("not a database")
    assert run_cli("serve", "--data-dir", broken, "-q") == 1
