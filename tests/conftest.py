"""Shared fixtures: songs built in code, and a CLI runner."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import mido
import pytest

from midiarr.cli import main
from midiarr.fixtures import band_song
from midiarr.io import write_midi
from midiarr.prepare import prepare
from midiarr.song import Song


@pytest.fixture(autouse=True)
def _musicxml_read_by_a_second_reader(request: pytest.FixtureRequest):
    """Every MusicXML file midiarr writes in a test is read by verovio too, which must play all its notes."""
    yield
    root = getattr(request.node, "funcargs", {}).get("tmp_path")
    if root is None:
        return
    from tests.notation_readers import check_with_verovio, written_by_midiarr

    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and written_by_midiarr(path):
            check_with_verovio(path)


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


def fixture_cache(root: Path, songs: int) -> Path:
    """``root/cache``: a prepare cache of ``songs`` fixture band songs of growing length and tempo."""
    for i in range(songs):
        write_midi(band_song(bars=4 + i, qpm=90 + 7 * i), root / "data" / f"song{i}.mid")
    prepare(root / "data", root / "cache", workers=1, progress=False)
    return root / "cache"


TINY_TRANSFORMER = """
[model]
n_layer = 1
n_embd = 32
n_head = 2
n_positions = 1024
[train]
seq_len = 256
batch_size = 2
learning_rate = 1e-3
min_learning_rate = 1e-4
warmup_steps = 2
weight_decay = 0.0
max_steps = 4
max_minutes = 5
eval_every = 2
eval_windows = 4
seed = 0
[augmentation]
transpose = [-5, 6]
drop_context_p = 0.5
drop_role_p = 0.5
no_context_p = 0.05
blank_attribute_p = 0.3
blank_all_p = 0.1
[sample]
temperature = 1.0
top_p = 0.95
history_tokens = 300
candidates = 1
"""


def _train_tiny(root: Path, command: str, config_text: str, songs: int) -> Path:
    """``root/ckpt``: a checkpoint trained by ``command`` with ``config_text`` on ``songs`` fixture songs."""
    fixture_cache(root, songs=songs)
    config = root / "tiny.toml"
    config.write_text(config_text)
    assert run_cli(command, "--data", root / "cache", "--config", config, "-o", root / "ckpt", "-q") == 0
    return root / "ckpt"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stem transformer trained for four steps on eight fixture songs (shared by the transformer tests)."""
    return _train_tiny(tmp_path_factory.mktemp("tiny"), "train-transformer", TINY_TRANSFORMER, songs=8)


TINY_DIFFUSION = """
[network]
window_steps = 32
patch = 2
width = 32
depth = 1
heads = 2
[schedule]
train_timesteps = 100
beta_schedule = "squaredcos_cap_v2"
shared_noise = true
[tasks]
separation = 0.3
drop_mix = 0.15
continuation = 0.3
keep_known = 0.6
absent_target = 0.1
hide_activity = 0.4
hide_density = 0.5
transpose = [-2, 2]
[train]
batch_size = 4
learning_rate = 1e-3
min_learning_rate = 1e-4
warmup_steps = 2
weight_decay = 0.0
ema_decay = 0.9
max_steps = 6
max_minutes = 5
eval_every = 3
eval_batches = 2
seed = 0
[sample]
steps = 4
scheduler = "ddim"
guidance = 2.0
partial = "conditional"
overlap_steps = 8
threshold = 0.5
"""


@pytest.fixture(scope="session")
def tiny_diffusion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diffusion checkpoint trained for a few steps on a fixture cache (beside it, ``../cache``)."""
    return _train_tiny(tmp_path_factory.mktemp("tinydiff"), "train-diffusion", TINY_DIFFUSION, songs=6)


def midi_tracks(source: Path | bytes) -> tuple[list[tuple[str, list[tuple]]], list[tuple]]:
    """Each track with channel events, in file order: its name and every channel event (sysex aside)
    at its absolute tick, channel included, a note-on of velocity 0 read as a note-off; and the tempo,
    meter and key events of the whole file. What two MIDI files must share to hold the same music."""
    midi = mido.MidiFile(file=io.BytesIO(source)) if isinstance(source, bytes) else mido.MidiFile(source)
    parts: list[tuple[str, list[tuple]]] = []
    meta: list[tuple] = []
    for track in midi.tracks:
        now, name, events = 0, "", []
        for msg in track:
            now += msg.time
            if msg.type == "track_name":
                name = msg.name
            elif msg.type in ("set_tempo", "time_signature", "key_signature"):
                meta.append((now, str(msg.copy(time=0))))
            elif not msg.is_meta and msg.type != "sysex":
                fields = msg.dict()
                fields.pop("time")
                if fields["type"] == "note_off" or (fields["type"] == "note_on" and fields["velocity"] == 0):
                    fields = {"type": "note_off", "note": fields["note"], "channel": fields["channel"]}
                events.append((now, *sorted(fields.items())))
        if events:
            parts.append((name, sorted(events)))
    return parts, sorted(meta)
