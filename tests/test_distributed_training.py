"""Training across processes: every trainer under `accelerate launch --num_processes 2` on the CPU (gloo).

These are smoke runs of a few steps: the processes start, agree, train on their own batches, and the main one
writes one log and one checkpoint. How to run the same across GPUs and machines: docs/training.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_DIFFUSION, TINY_TRANSFORMER, fixture_cache

ACCELERATE = shutil.which("accelerate", path=str(Path(sys.executable).parent))


def launch(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``accelerate launch`` of the midiarr CLI in two CPU processes."""
    assert ACCELERATE, "accelerate's launcher is installed with midiarr"
    command = [ACCELERATE, "launch", "--num_processes", "2", "--num_machines", "1", "--cpu",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "midiarr.cli", *map(str, args)]  # fmt: skip
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def check_run(out: Path, proc: subprocess.CompletedProcess[str], steps: int) -> None:
    """The run ended well, saved, and logged each validation once (only the main process logs)."""
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    logged = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged)) and logged[-1] == steps, logged


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_cache(tmp_path_factory.mktemp("ddp"), songs=6)


@pytest.mark.parametrize(
    ("command", "config"), [("train-transformer", TINY_TRANSFORMER), ("train-diffusion", TINY_DIFFUSION)]
)
def test_symbolic_trainers_in_two_processes(command: str, config: str, cache: Path, tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(config)
    out = tmp_path / "ckpt"
    proc = launch(command, "--data", cache, "--config", "tiny.toml", "-o", out, "--max-steps", 4, "-q", cwd=tmp_path)
    check_run(out, proc, 4)


def test_data_seed_differs_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from midiarr.training import data_seed

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert data_seed(7) == 7  # alone: the config's seed, so single-process runs are as before
    monkeypatch.setenv("RANK", "1")
    assert data_seed(7) != 7
