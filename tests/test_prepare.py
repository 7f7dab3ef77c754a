import json

import pytest

from midiarr.errors import InputError
from midiarr.fixtures import band_song
from midiarr.io import read_midi, write_midi
from midiarr.prepare import content_hash, load_triplets, prepare, split_of


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "data"
    for i in range(6):
        song = band_song(bars=4 + i, qpm=90 + 10 * i)
        write_midi(song, root / f"set{i % 2}" / f"song{i}.mid")
    # the same music saved again under another name and resolution is a duplicate
    dup = band_song(bars=4, qpm=90)
    dup_scaled = dup.copy()
    dup_scaled.ticks_per_beat = 960
    for t in dup_scaled.tracks:
        t.notes["start"] *= 2
        t.notes["duration"] *= 2
    dup_scaled.time_signatures = dup.time_signatures
    write_midi(dup_scaled, root / "copy_of_song0.mid")
    (root / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x09")
    (root / "empty.mid").write_bytes(b"")
    (root / "notes.txt").write_text("not a song")
    return root


def _read(cache):
    return {name: (cache / name).read_text() for name in ("index.jsonl", "triplets.jsonl", "splits.json")}


def test_prepare_writes_triplets_and_summary(corpus, tmp_path):
    cache = tmp_path / "cache"
    summary = prepare(corpus, cache, workers=1, progress=False)
    assert summary.files == 9
    assert summary.songs == 6 and summary.duplicates == 1 and summary.errors == 2
    assert dict(summary.triplets_per_stem) == {"bass": 6, "drums": 6, "guitar": 6, "piano": 6}
    errors = (cache / "errors.log").read_text()
    assert "broken.mid" in errors and "empty.mid" in errors
    rows = load_triplets(cache, stem="bass")
    assert len(rows) == 6
    row = rows[0]
    full = read_midi(cache / row["full"])
    partial = read_midi(cache / row["partial"])
    target = read_midi(cache / row["target"])
    assert len(partial.tracks) == len(full.tracks) - 1
    assert target.note_count + partial.note_count == full.note_count
    assert "bass" in row["instruction"].lower()
    assert row["attributes"]["bins"]["rhythm"] == "straight"
    assert row["split"] == split_of(row["song_id"])
    splits = json.loads((cache / "splits.json").read_text())
    assert sorted(splits["train"] + splits["valid"] + splits["test"]) == sorted(r["song_id"] for r in rows)


def test_prepare_is_deterministic_across_worker_counts(corpus, tmp_path):
    prepare(corpus, tmp_path / "a", workers=1, progress=False)
    prepare(corpus, tmp_path / "b", workers=2, progress=False)
    assert _read(tmp_path / "a") == _read(tmp_path / "b")


def test_split_is_a_function_of_content():
    song = band_song(bars=4)
    h = content_hash(song)
    assert h == content_hash(song.copy())
    other = band_song(bars=5)
    assert content_hash(other) != h
    assert split_of(h) in ("train", "valid", "test")
    counts = {s: 0 for s in ("train", "valid", "test")}
    for i in range(2000):
        counts[split_of(f"{i * 2654435761 % 2**32:08x}")] += 1
    assert 1450 < counts["train"] < 1750 and 100 < counts["test"] < 300


def test_prepare_refuses_bad_folders(tmp_path):
    with pytest.raises(Exception, match="not a folder"):
        prepare(tmp_path / "missing", tmp_path / "c", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no MIDI"):
        prepare(tmp_path / "empty", tmp_path / "c", progress=False)
    with pytest.raises(InputError, match="not a prepared cache"):
        load_triplets(tmp_path / "empty")
