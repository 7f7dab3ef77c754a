"""prepare, render-dataset and eval on a real local Ray instance with 2 workers: the same outputs as the local
backend, file for file. Ray comes with the `scale` extra (scripts/setup.sh installs it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from midiarr.fixtures import band_song
from midiarr.io import write_midi
from tests.conftest import run_cli

pytest.importorskip("ray", reason="Ray is the optional 'scale' extra (pip install 'midiarr[scale]')")


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path, as a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six songs of different lengths and tempos, one of them twice (the first copy must win on both backends),
    and one broken file."""
    root = tmp_path_factory.mktemp("scale") / "data"
    for i in range(6):
        write_midi(band_song(bars=3 + i, qpm=90 + 9 * i), root / f"song{i}.mid")
    write_midi(band_song(bars=5, qpm=108), root / "z_copy_of_song2.mid")
    (root / "broken.mid").write_bytes(b"MThd broken")
    return root


@pytest.fixture(scope="module")
def caches(data: Path) -> tuple[Path, Path]:
    local, ray = data.parent / "cache-local", data.parent / "cache-ray"
    assert run_cli("prepare", data, "-o", local, "--workers", "2", "-q") == 0
    assert run_cli("prepare", data, "-o", ray, "--workers", "2", "--backend", "ray", "-q") == 0
    return local, ray


def test_prepare_on_ray_writes_the_same_cache(caches: tuple[Path, Path]) -> None:
    local, ray = caches
    summary = json.loads((local / "summary.json").read_text())
    assert summary["duplicates"] == 1 and summary["errors"] == 1
    local_files, ray_files = _files(local), _files(ray)
    local_files.pop("summary.json"), ray_files.pop("summary.json")  # holds the wall time
    assert ray_files == local_files
    timing = {"seconds", "files_per_second"}
    ray_summary = json.loads((ray / "summary.json").read_text())
    assert {k: v for k, v in ray_summary.items() if k not in timing} == {
        k: v for k, v in summary.items() if k not in timing
    }


def test_render_dataset_on_ray_writes_the_same_files_and_resumes(caches: tuple[Path, Path]) -> None:
    from midiarr.render.dataset import render_dataset

    cache = caches[0]
    local, ray = cache.parent / "audio-local", cache.parent / "audio-ray"
    common = {"sr": 8000, "clip_seconds": 2.0, "soundfont": "timgm", "workers": 2, "progress": False}
    render_dataset(cache, local, **common)
    totals = render_dataset(cache, ray, backend="ray", **common)
    assert totals["items_written"] > 0 and totals["errors"] == 0
    assert _files(ray) == _files(local)
    again = render_dataset(cache, ray, backend="ray", **common)  # resumable: every song is already done
    assert again["songs_skipped_done"] == again["songs"] and again["items_written"] == 0


def test_eval_on_ray_scores_the_same_parts(caches: tuple[Path, Path]) -> None:
    from midiarr.evaluation.harness import evaluate

    cache = caches[0]

    def scores(**backend: object) -> list[tuple]:
        result = evaluate(["rules"], ["bass", "drums"], cache, split="train", limit=3, progress=False, **backend)
        assert not result["failures"]
        # as text, so NaN (a measure with nothing to judge) compares equal to NaN
        return [
            (s.engine, s.stem, s.triplet, repr({k: float(v) for k, v in s.values.items() if k != "seconds"}), s.vector)
            for s in result["scores"]
        ]

    local = scores(workers=2)
    assert len(local) == 2 * 2 * 3  # real + rules, two stems, three parts each
    assert scores(workers=2, backend="ray") == local
    assert scores(workers=1) == local


def test_bad_backend_options_are_one_line_errors(tmp_path: Path, data: Path) -> None:
    assert run_cli("prepare", data, "-o", tmp_path / "c", "--backend", "spark") == 2
    assert run_cli("prepare", data, "-o", tmp_path / "c", "--address", "10.0.0.1:6379") == 2
    # an address that is not HOST:PORT, or where nothing answers: refused at once (Ray would retry for minutes)
    for address in ("nonsense", "127.0.0.1:99999", "127.0.0.1:1"):
        assert run_cli("prepare", data, "-o", tmp_path / "c", "--backend", "ray", "--address", address) == 2
    assert not (tmp_path / "c").exists()
