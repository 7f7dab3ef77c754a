"""Shared fixtures: songs built in code, and a CLI runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from midiarr.cli import main
from midiarr.fixtures import band_song
from midiarr.io import write_midi
from midiarr.song import Song


@pytest.fixture
def band() -> Song:
    return band_song(bars=8)


@pytest.fixture
def band_file(tmp_path: Path, band: Song) -> Path:
    return write_midi(band, tmp_path / "band.mid")


def run_cli(*args: str) -> int:
    """Run the CLI in-process; returns the exit status."""
    return main([str(a) for a in args])


def run_cli_process(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a real process (for exit codes and stderr as a user sees them)."""
    return subprocess.run(
        [sys.executable, "-m", "midiarr.cli", *map(str, args)], capture_output=True, text=True, timeout=120
    )
