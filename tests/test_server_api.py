"""HTTP API: upload, tracks and roles, jobs with progress and cancel, downloads, limits, errors."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from midiarr.io import load, write_midi
from midiarr.server import Limits, create_app
from midiarr.song import Song


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = create_app(tmp_path / "server", Limits(max_upload_bytes=200_000, max_bars=64, max_queued_jobs=3))
    with TestClient(app) as c:
        yield c


def _upload(client: TestClient, path: Path, name: str | None = None) -> dict:
    with open(path, "rb") as f:
        r = client.post("/api/songs", files={"file": (name or path.name, f, "audio/midi")})
    assert r.status_code == 201, r.text
    return r.json()


def _wait(client: TestClient, job_id: str, timeout: float = 120) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] not in ("queued", "running"):
            return status
        time.sleep(0.2)
    raise AssertionError("job did not finish")


def test_openapi_schema_is_the_contract(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in (
        "/api/songs",
        "/api/songs/{song_id}",
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/files/{name}",
    ):
        assert path in schema["paths"]
    assert "JobRequest" in schema["components"]["schemas"]


def test_upload_lists_tracks_and_roles(client: TestClient, tmp_path: Path, band: Song) -> None:
    path = write_midi(band.with_tracks([t for t in band.tracks if t.name != "Bass"]), tmp_path / "no_bass.mid")
    info = _upload(client, path)
    roles = {t["role"] for t in info["tracks"]}
    assert {"drums", "piano", "guitar"} <= roles and "bass" not in roles
    assert info["bars"] == 8 and info["time_signature"] == "4/4"
    assert client.get(f"/api/songs/{info['id']}").json() == info
    roll = client.get(f"/api/songs/{info['id']}/roll").json()
    assert len(roll["notes"]) == sum(t["notes"] for t in info["tracks"])
    assert len(roll["bar_times"]) == 8


def test_insert_job_writes_midi_musicxml_and_audio(client: TestClient, tmp_path: Path, band: Song) -> None:
    path = write_midi(band.with_tracks([t for t in band.tracks if t.name != "Bass"]), tmp_path / "no_bass.mid")
    info = _upload(client, path)
    r = client.post("/api/jobs", json={"song_id": info["id"], "stems": ["bass"], "engine": "rules", "seed": 3})
    assert r.status_code == 202, r.text
    status = _wait(client, r.json()["id"])
    assert status["state"] == "done", status
    assert status["progress"] == 1.0
    assert {"result.mid", "result.musicxml", "audio/mix.wav", "audio/bass.wav"} <= set(status["files"])
    midi = client.get(f"/api/jobs/{status['id']}/files/result.mid")
    assert midi.status_code == 200
    out = tmp_path / "out.mid"
    out.write_bytes(midi.content)
    song = load(out)
    assert len(song.tracks) == len(info["tracks"]) + 1
    wav = client.get(f"/api/jobs/{status['id']}/files/audio/bass.wav")
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    roll = client.get(f"/api/jobs/{status['id']}/roll").json()
    assert any(roll["tracks"][n["track"]]["role"] == "bass" for n in roll["notes"])


def test_paths_from_requests_never_reach_the_file_system(client: TestClient, tmp_path: Path, band_file: Path) -> None:
    info = _upload(client, band_file, name="../../etc/evil.mid")
    assert info["filename"] == "evil.mid"
    request = {"song_id": info["id"], "stems": ["bass"], "engine": "rules", "render": False, "replace": True}
    r = client.post("/api/jobs", json=request)
    status = _wait(client, r.json()["id"])
    for name in ("../progress.json", "/etc/passwd", "..%2F..%2Fsecret", "audio/../../../x"):
        assert client.get(f"/api/jobs/{status['id']}/files/{name}").status_code == 404


def test_clear_errors_with_status_codes(client: TestClient, tmp_path: Path, band_file: Path) -> None:
    r = client.post("/api/songs", files={"file": ("notes.txt", io.BytesIO(b"hello"), "text/plain")})
    assert r.status_code == 415 and "MIDI or MusicXML" in r.json()["error"]
    r = client.post("/api/songs", files={"file": ("broken.mid", io.BytesIO(b"MThd garbage"), "audio/midi")})
    assert r.status_code == 422 and "broken.mid" in r.json()["error"]
    r = client.post("/api/songs", files={"file": ("big.mid", io.BytesIO(b"0" * 300_000), "audio/midi")})
    assert r.status_code == 413
    assert client.get("/api/songs/nope").status_code == 404
    assert client.get("/api/jobs/nope").status_code == 404
    r = client.post("/api/jobs", json={"song_id": "nope", "stems": ["bass"]})
    assert r.status_code == 404
    r = client.post("/api/jobs", json={"song_id": "x", "stems": ["kazoo"]})
    assert r.status_code == 422
    info = _upload(client, band_file)
    r = client.post("/api/jobs", json={"song_id": info["id"], "stems": ["bass"], "engine": "nope"})
    assert r.status_code == 422 and "unknown engine" in r.json()["error"]
    r = client.post("/api/jobs", json={"song_id": info["id"], "stems": ["bass"], "active": "5-2"})
    assert r.status_code == 422
    r = client.post("/api/jobs", json={"action": "generate", "stems": ["bass"], "engine": "rules"})
    assert r.status_code == 422 and "cannot write a song from nothing" in r.json()["error"]


def test_long_song_is_refused(client: TestClient, tmp_path: Path) -> None:
    from midiarr.fixtures import band_song

    path = write_midi(band_song(bars=80), tmp_path / "long.mid")
    with open(path, "rb") as f:
        r = client.post("/api/songs", files={"file": ("long.mid", f, "audio/midi")})
    assert r.status_code == 413 and "bars" in r.json()["error"]


def test_cancel_a_job(client: TestClient, band_file: Path) -> None:
    info = _upload(client, band_file)
    request = {"song_id": info["id"], "stems": ["bass", "drums", "guitar"], "engine": "rules", "replace": True}
    r = client.post("/api/jobs", json=request)
    job = r.json()["id"]
    cancelled = client.delete(f"/api/jobs/{job}").json()
    assert cancelled["state"] in ("cancelled", "done")
    if cancelled["state"] == "cancelled":
        assert client.get(f"/api/jobs/{job}/files/result.mid").status_code == 409


def test_delete_song_removes_its_files(client: TestClient, tmp_path: Path, band_file: Path) -> None:
    info = _upload(client, band_file)
    folder = tmp_path / "server" / "songs" / info["id"]
    assert folder.is_dir()
    assert client.delete(f"/api/songs/{info['id']}").status_code == 204
    assert not folder.exists()
    assert client.get(f"/api/songs/{info['id']}").status_code == 404


def test_page_and_static_files(client: TestClient) -> None:
    page = client.get("/")  # the workspace
    assert page.status_code == 200 and "midiarr" in page.text and "/static/workspace.js" in page.text
    quick = client.get("/quick")  # one part, one result
    assert quick.status_code == 200 and "/static/app.js" in quick.text
    for name in ("app.js", "page.js", "workspace.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/api/health").json()["status"] == "ok"


def test_insert_asks_before_replacing_the_songs_own_part(client: TestClient, tmp_path: Path) -> None:
    from midiarr.fixtures import misleading_band

    src = write_midi(misleading_band(), tmp_path / "folk.mid")
    info = _upload(client, src)
    r = client.post("/api/jobs", json={"song_id": info["id"], "stems": ["guitar"], "engine": "rules"})
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "existing_part"
    assert "track 0 'Lead Guitar', track 3 'Banjo', track 4 'Tenor Banjo'" in body["error"]
    assert "replace: true" in body["error"]
    assert [(t["index"], t["name"]) for t in body["tracks"]] == [(0, "Lead Guitar"), (3, "Banjo"), (4, "Tenor Banjo")]
    # a stem the song lacks (its "Bass" plays above C4: role other) is simply added, every track kept
    r = client.post("/api/jobs", json={"song_id": info["id"], "stems": ["bass"], "engine": "rules", "render": False})
    assert r.status_code == 202, r.text
    assert _wait(client, r.json()["id"])["state"] == "done"
    request = {"song_id": info["id"], "stems": ["guitar"], "engine": "rules", "render": False, "replace": True}
    r = client.post("/api/jobs", json=request)
    assert r.status_code == 202, r.text
    status = _wait(client, r.json()["id"])
    assert status["state"] == "done", status
    names = [t["name"] for t in status["result"]["tracks"]]
    assert names == ["Bass Drum", "Bass", "Piano", "Drums", "Guitar"]
    # the page asks the same question and offers the replace
    page = client.get("/").text
    assert 'id="existing"' in page and 'id="replace-go"' in page
    script = client.get("/static/app.js").text
    assert "existing_part" in script and "replace" in script
