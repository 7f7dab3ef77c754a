"""The web page end to end in a real headless Chromium (Selenium): drop a song, add a bass, hear it."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from midiarr.io import write_midi
from midiarr.song import Song

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(DRIVER).exists()),
    reason="needs Debian chromium + chromium-driver (scripts/setup.sh installs them)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    import uvicorn

    from midiarr.server import create_app

    port = _free_port()
    config = uvicorn.Config(create_app(tmp_path / "server"), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_window_size(1200, 1000)
    yield driver
    driver.quit()


def test_drop_a_song_add_a_bass_and_hear_it(server: str, browser, tmp_path: Path, band: Song) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    song = write_midi(band.with_tracks([t for t in band.tracks if t.name != "Bass"]), tmp_path / "no_bass.mid")
    wait = WebDriverWait(browser, 90)
    browser.get(server + "/quick")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    browser.find_element(By.ID, "file").send_keys(str(song))
    wait.until(ec.visibility_of_element_located((By.ID, "song-section")))
    roles = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#tracks tbody tr td:nth-child(3)")]
    assert "bass" not in roles and "drums" in roles
    assert int(browser.find_element(By.ID, "roll").get_attribute("data-notes")) > 0
    # the missing stem is preselected
    checked = [b.get_attribute("value") for b in browser.find_elements(By.CSS_SELECTOR, "#stems input:checked")]
    assert checked == ["bass"]
    Select(browser.find_element(By.ID, "engine")).select_by_value("rules")
    browser.find_element(By.ID, "instruction").send_keys("busy syncopated bass, soft")
    browser.find_element(By.ID, "go").click()
    wait.until(ec.visibility_of_element_located((By.ID, "result-section")))
    assert "done" in browser.find_element(By.ID, "job-status").text
    assert int(browser.find_element(By.ID, "result-roll").get_attribute("data-notes")) > 0
    # the score beside the roll: engraved pages that the browser loaded and drew
    assert int(browser.find_element(By.ID, "score").get_attribute("data-pages")) >= 1
    wait.until(
        lambda d: d.execute_script(
            "const i = document.querySelector('#score img'); return i && i.complete && i.naturalWidth > 0"
        )
    )
    strips = browser.find_elements(By.CSS_SELECTOR, "#mixer .strip")
    assert any("bass" in s.text for s in strips)
    # solo the bass: every other stem is muted
    browser.find_element(By.CSS_SELECTOR, '.solo[data-stem="bass"]').click()
    muted = browser.execute_script(
        "return Object.fromEntries(Object.entries(state.audios).map(([k, a]) => [k, a.muted]))"
    )
    assert muted["bass"] is False and all(v for k, v in muted.items() if k != "bass")
    # the bass audio really plays in the page
    browser.find_element(By.ID, "play").click()
    wait.until(lambda d: d.execute_script("return state.audios.bass.currentTime") > 0.2)
    duration = browser.execute_script("return state.audios.bass.duration")
    assert duration > 10  # 8 bars at 120 bpm
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")]
    assert any(h.endswith("result.mid") for h in links) and any(h.endswith("result.musicxml") for h in links)


def test_bad_file_shows_a_clear_message(server: str, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd not really")
    browser.get(server + "/quick")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, 30).until(lambda d: "broken.mid" in d.find_element(By.ID, "upload-status").text)
    status = browser.find_element(By.ID, "upload-status")
    assert "error" in status.get_attribute("class")
    assert browser.find_element(By.ID, "song-section").get_attribute("hidden") is not None


# ---------------------------------------------------------------- the workspace
class _Server:
    """A real uvicorn server of the app on a free port, stopped and started again on the same data folder."""

    def __init__(self, root: Path, data: Path) -> None:
        import uvicorn

        from midiarr.server import create_app

        self.port = _free_port()
        config = uvicorn.Config(create_app(root, data_dir=data), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        assert self.server.started, "server did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def get(self, path: str) -> bytes:
        import urllib.request

        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            return response.read()


def _notes_by_track(data: bytes) -> list[list[tuple]]:
    from midiarr.io.midi import parse_midi_bytes

    song = parse_midi_bytes(data)
    return [list(zip(*(t.notes[k].tolist() for k in ("start", "duration", "pitch", "velocity")))) for t in song.tracks]


def test_the_songwriters_loop_in_the_workspace(browser, tmp_path: Path) -> None:
    """Four chords typed in, a band heard, the second bass take kept, bars 5-8 of the drums redone, the MIDI
    downloaded with everything else unchanged, undo, and the project still there after the server restarts."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    data = tmp_path / "data"
    server = _Server(tmp_path / "a", data)
    wait = WebDriverWait(browser, 240, poll_frequency=0.1)

    def takes_ready(count: int) -> None:
        # the job shows as started (a spawned job process takes seconds to start), then as ended
        wait.until(lambda d: d.execute_script("return Boolean(state.project && state.project.job)"))
        wait.until(lambda d: d.execute_script("return state.project && !state.project.job && state.project.last_job"))
        last = browser.execute_script("return state.project.last_job")
        assert last["state"] == "done", last
        assert d_text("job-status").startswith("done")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#takes-list tr.take")) == count

    def d_text(element_id: str) -> str:
        return browser.find_element(By.ID, element_id).text

    def take(number: int, button: str):
        return browser.find_element(By.CSS_SELECTOR, f'#takes-list tr.take[data-number="{number}"] button.{button}')

    def versions() -> int:
        return int(browser.find_element(By.ID, "history").get_attribute("data-versions") or 0)

    def hear(number: int) -> None:
        take(number, "play").click()
        wait.until(lambda d: d.execute_script("return state.audio && state.audio.currentTime") > 0.2)

    try:
        browser.get(server.url + "/")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        # four chords, twice: a band of piano, bass and drums, two takes
        browser.find_element(By.ID, "chords").send_keys("C | G | Am F | F G")
        assert browser.find_element(By.ID, "chords-takes").get_attribute("value") == "2"
        browser.find_element(By.ID, "chords-go").click()
        takes_ready(2)
        project = browser.execute_script("return state.project.id")
        hear(1)
        take(1, "keep").click()
        wait.until(lambda d: versions() == 1)
        assert int(browser.find_element(By.ID, "roll").get_attribute("data-notes")) > 0
        roles = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#tracks tbody tr td:nth-child(3)")]
        assert {"piano", "bass", "drums"} <= set(roles)

        # three bass takes (the stem's default engine is the transformer); the band's bass is replaced
        Select(browser.find_element(By.ID, "stem")).select_by_value("bass")
        engine = Select(browser.find_element(By.ID, "engine")).first_selected_option
        assert engine.get_attribute("value") == "transformer"
        takes = browser.find_element(By.ID, "takes")
        takes.clear()
        takes.send_keys("3")
        browser.find_element(By.ID, "add").click()
        wait.until(lambda d: d.find_element(By.ID, "existing").is_displayed())
        browser.find_element(By.ID, "replace-go").click()
        takes_ready(3)
        hear(2)
        take(2, "keep").click()
        wait.until(lambda d: versions() == 2)
        assert "take 2" in browser.find_elements(By.CSS_SELECTOR, "#history li")[-1].text
        kept = server.get(f"/api/projects/{project}/song.mid")

        # drag across bars 5-8 of the roll and redo them on the drums, softly
        Select(browser.find_element(By.ID, "stem")).select_by_value("drums")
        canvas = browser.find_element(By.ID, "roll")
        span = browser.execute_script(
            "const c = document.getElementById('roll'), r = state.roll, w = c.getBoundingClientRect().width;"
            "const x = (t) => rollX(c, r, t) * w / c.width - w / 2;"
            "return [x(r.bar_times[4] + 0.05), x((r.bar_times[7] + (r.bar_times[8] ?? r.seconds)) / 2)];"
        )
        ActionChains(browser).move_to_element_with_offset(canvas, int(span[0]), 0).click_and_hold().move_by_offset(
            int(span[1] - span[0]), 0
        ).release().perform()
        assert browser.find_element(By.ID, "bars").get_attribute("value") == "5-8"
        assert canvas.get_attribute("data-selected") == "5-8"
        soft = browser.find_element(By.CSS_SELECTOR, '.preset[data-value="soft"]')
        soft.click()
        assert soft.get_attribute("aria-pressed") == "true"
        takes.clear()
        takes.send_keys("2")
        browser.find_element(By.ID, "redo").click()
        takes_ready(2)
        take(1, "keep").click()
        wait.until(lambda d: versions() == 3)
        # the download: every part but the drums as kept, and the drums as kept outside bars 5-8
        href = browser.find_element(By.ID, "download-mid").get_attribute("href")
        assert href.endswith(f"/api/projects/{project}/song.mid")
        redone = server.get(f"/api/projects/{project}/song.mid")
        before, after = _notes_by_track(kept), _notes_by_track(redone)
        tracks = browser.execute_script("return state.project.current.tracks")
        drums = next(t["index"] for t in tracks if t["role"] == "drums")
        assert len(before) == len(after)
        for i in range(len(before)):
            if i != drums:
                assert after[i] == before[i], f"track {i} changed"
        bar = 4 * 480  # the band is written at 480 ticks a beat, in 4/4
        outside = [n for n in before[drums] if not 4 * bar <= n[0] < 8 * bar]
        assert [n for n in after[drums] if not 4 * bar <= n[0] < 8 * bar] == outside
        assert after[drums] != before[drums]

        # undo: back to the second bass take
        browser.find_element(By.ID, "undo").click()
        wait.until(lambda d: versions() == 2)
        assert server.get(f"/api/projects/{project}/song.mid") == kept
    finally:
        server.stop()

    # the server restarts on the same data folder: the project, its history and its song are all there
    server = _Server(tmp_path / "b", data)
    try:
        browser.get(f"{server.url}/#project={project}")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        wait.until(lambda d: versions() == 2)
        assert int(browser.find_element(By.ID, "roll").get_attribute("data-notes")) > 0
        assert server.get(f"/api/projects/{project}/song.mid") == kept
        names = [b.get_attribute("data-id") for b in browser.find_elements(By.CSS_SELECTOR, "#projects .project")]
        assert project in names
    finally:
        server.stop()
