"""The wheel works on its own: built from the repository, installed into a fresh virtual environment, it writes a
part offline with its bundled weights, from a folder that is not the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from midiarr.io import save

REPO = Path(__file__).resolve().parents[1]


def _run(*args: object, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)


def test_the_wheel_installs_and_writes_a_part_offline(tmp_path: Path, band) -> None:
    build = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path, REPO)
    assert build.returncode == 0, build.stderr[-2000:]
    assert "warning" not in (build.stdout + build.stderr).lower().replace("warning: location", "")
    wheel = next(tmp_path.glob("midiarr-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "midiarr/weights/transformer/model.safetensors" in names and "midiarr/server/static/app.js" in names
    assert any(n.endswith("/LICENSE") for n in names) and "midiarr/transformer/decode_step.c" in names
    assert not [n for n in names if n.endswith(".jsonl") or "train_log" in n or "-gpu" in n]  # the repo keeps those

    venv = tmp_path / "fresh"
    assert _run(sys.executable, "-m", "venv", venv).returncode == 0
    python = venv / "bin" / "python"
    install = _run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel)
    assert install.returncode == 0, install.stderr[-2000:]
    # the dependencies (the pinned CPU torch among them) come from this environment's site-packages, which
    # carry midiarr only as an editable link that a plain path entry does not follow
    env = {
        **os.environ,
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    work = tmp_path / "work"
    work.mkdir()
    where = _run(python, "-c", "import midiarr; print(midiarr.__file__)", env=env, cwd=work)
    assert where.returncode == 0 and str(venv) in where.stdout, where.stdout + where.stderr
    save(band.with_tracks([t for t in band.tracks if t.name != "Bass"]), work / "no_bass.mid")
    insert = _run(
        venv / "bin" / "midiarr", "insert", "no_bass.mid", "--stem", "bass", "-o", "out.mid", env=env, cwd=work
    )
    assert insert.returncode == 0, insert.stderr[-2000:]
    assert "bass by transformer" in insert.stdout and (work / "out.mid").stat().st_size > 100
    # the audio models find their bundled mask decoder and vocoder inside the installed package
    for folder in ("audio-masks", "audio-vocoder"):
        assert f"midiarr/weights/{folder}/model.safetensors" in names
    found = _run(python, "-c", "from midiarr.audio.pipeline import StemLDMPipeline as P; p = P.load(); "
                 "print(p.masks is not None, p.vocoder is not None)", env=env, cwd=work)  # fmt: skip
    assert found.returncode == 0 and found.stdout.split() == ["True", "True"], found.stdout + found.stderr
