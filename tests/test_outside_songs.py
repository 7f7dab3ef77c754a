"""scripts/outside_songs.py: which archive files count as songs nobody here has seen."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from midiarr.fixtures import band_song
from midiarr.io import write_midi
from midiarr.prepare import prepare

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "outside_songs.py"


def _without(song, *roles: str):
    """The fixture band without the tracks whose name holds one of ``roles``."""
    return song.with_tracks([t for t in song.tracks if not any(r in t.name.lower() for r in roles)])


def _run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_it_takes_bands_that_are_neither_shared_nor_trained_on_nor_the_held_back_kind(tmp_path):
    shared, archive, training = tmp_path / "shared", tmp_path / "archive", tmp_path / "training"
    site = archive / "src" / "assets" / "site_a" / "midi"
    write_midi(band_song(bars=6, qpm=100), shared / "in_shared.mid")
    write_midi(_without(band_song(bars=7, qpm=110), "guitar"), training / "trained.mid")
    prepare(training, tmp_path / "cache", workers=1, progress=False)
    site.mkdir(parents=True)
    shutil.copyfile(shared / "in_shared.mid", site / "copy_of_shared.mid")  # the same bytes as a shared file
    write_midi(band_song(bars=5, qpm=96), site / "full_band.mid")  # bass + drums + guitar: shared or held back
    write_midi(_without(band_song(bars=7, qpm=110), "guitar"), site / "resaved_training_song.mid")
    write_midi(_without(band_song(bars=6, qpm=90), "guitar", "piano"), site / "two_parts.mid")  # not a band
    write_midi(_without(band_song(bars=6, qpm=90), "drums"), site / "no_drums.mid")
    write_midi(_without(band_song(bars=8, qpm=128), "guitar"), site / "outside_a.mid")
    write_midi(_without(band_song(bars=9, qpm=132), "bass"), site / "outside_b.mid")
    (site / "broken.mid").write_bytes(b"MThd not really a MIDI file")
    other = archive / "docs" / "assets" / "site_a" / "midi"
    other.mkdir(parents=True)
    shutil.copyfile(site / "outside_a.mid", other / "outside_a.mid")  # the archive's second tree
    write_midi(_without(band_song(bars=10, qpm=140), "guitar"), archive / "src" / "perso" / "outside_c.mid")

    out = tmp_path / "outside"
    result = _run(archive, "-o", out, "--shared", shared, "--cache", tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "site_a").iterdir()) == ["outside_a.mid", "outside_b.mid"]
    assert [p.name for p in (out / "perso").iterdir()] == ["outside_c.mid"]  # a site without assets/<site>/midi
    assert "site_a: 2 of 2" in result.stdout
    assert "the same notes as a training song: 1" in result.stdout
    assert "pretty_midi cannot read it: 1" in result.stdout

    capped = tmp_path / "capped"
    assert (
        _run(archive, "-o", capped, "--shared", shared, "--cache", tmp_path / "cache", "--per-site", "1").returncode
        == 0
    )
    assert len(list((capped / "site_a").iterdir())) == 1
    assert (
        _run(
            archive, "-o", tmp_path / "none", "--shared", shared, "--cache", tmp_path / "cache", "--per-site", "0"
        ).returncode
        == 2
    )
    # a filled output folder is refused rather than mixed with a new draw
    again = _run(archive, "-o", out, "--shared", shared, "--cache", tmp_path / "cache")
    assert again.returncode == 1 and "not empty" in again.stderr
