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
    browser.get(server + "/")
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
    browser.get(server + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, 30).until(lambda d: "broken.mid" in d.find_element(By.ID, "upload-status").text)
    status = browser.find_element(By.ID, "upload-status")
    assert "error" in status.get_attribute("class")
    assert browser.find_element(By.ID, "song-section").get_attribute("hidden") is not None
