"""Separation's note assignment: the features the head reads, its training, and the engine with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from midiarr.diffusion.assign import (
    CONTEXT_FEATURES,
    CONTEXT_ONLY_HEAD,
    STEM_FEATURES,
    AssignHead,
    HeadConfig,
    NoteTable,
    StemLogits,
    _neighbour_share,
    context_features,
    load_head,
    read_logits,
    save_head,
    stem_features,
)
from midiarr.diffusion.train_assign import NoteExamples, accuracy, examples_from_raw, fit_head, head_choice, load_raw
from midiarr.engines.diffusion import DiffusionEngine
from midiarr.errors import InputError
from midiarr.fixtures import band_song
from midiarr.io import load, write_midi
from midiarr.pianoroll import PITCH_LOW, PITCHED
from midiarr.song import NOTE_DTYPE, Song, Track
from tests.conftest import run_cli, run_cli_process
from tests.test_diffusion import _flat


def _table(pitch: list[int], start: list[int], length: list[int], velocity: list[int] | None = None) -> NoteTable:
    n = len(pitch)
    return NoteTable(
        pitch=np.array(pitch),
        start=np.array(start),
        length=np.array(length),
        velocity=np.array(velocity or [80] * n),
        bar_position=np.array(start) % 16,
    )


def test_context_features_see_each_notes_place_among_the_sounding_notes() -> None:
    # a held bass C2, a C4-E4-G4 chord on the same step, and a lone melody note later
    notes = _table([36, 60, 64, 67, 72], [0, 0, 0, 0, 8], [16, 4, 4, 4, 2])
    f = context_features(notes)
    assert f.shape == (5, CONTEXT_FEATURES)
    count, together, lowest, highest, gap_low, gap_high = f[:, 4] * 4, f[:, 5] * 4, f[:, 8], f[:, 9], f[:, 10], f[:, 11]
    assert list(count) == [4, 4, 4, 4, 2]  # the melody note hears only the held bass
    assert list(together) == [4, 4, 4, 4, 1]
    assert list(lowest) == [1, 0, 0, 0, 0] and list(highest) == [0, 0, 0, 1, 1]
    assert gap_low[1] == pytest.approx(24 / 12) and gap_low[2] == pytest.approx(4 / 12)
    assert gap_high[0] == pytest.approx(2.0)  # capped at two octaves
    assert gap_high[2] == pytest.approx(3 / 12) and gap_high[3] == pytest.approx(2.0)
    assert gap_low[4] == pytest.approx(2.0)  # 36 semitones down: capped


def test_read_logits_looks_up_each_notes_own_cells() -> None:
    rows, steps = 72, 16
    onset = {"bass": np.zeros((rows, steps), np.float32), "piano": np.zeros((rows, steps), np.float32)}
    sustain = {k: np.zeros_like(v) for k, v in onset.items()}
    onset["bass"][12, 3] = 5.0
    sustain["piano"][40, 4:8] = [1.0, 2.0, 3.0, 6.0]
    notes = _table([36, 64], [3, 4], [1, 4])
    got = read_logits(onset, sustain, np.array([12, 40]), notes)
    assert list(got.asked) == [True, False, True]
    assert got.onset[0, 0] == 5.0 and np.isnan(got.onset[:, 1]).all()
    assert got.sustain_mean[1, 2] == pytest.approx(3.0) and got.sustain_start[1, 2] == pytest.approx(1.0)
    assert list(got.plain_choice()) == [0, 0]  # ties go to the first asked stem; bass wins note 0


def test_neighbour_share_averages_the_other_notes_nearby() -> None:
    share = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    start, pitch = np.array([0, 0, 2, 40]), np.array([60, 62, 61, 60])
    got = _neighbour_share(start, pitch, share, steps=4, semitones=7, alone=np.array([0.5, 0.5]))
    assert got[0] == pytest.approx([0.25, 0.75])  # notes 1 and 2
    assert got[2] == pytest.approx([0.5, 0.5])
    assert got[3] == pytest.approx([0.5, 0.5])  # nobody near: what it is told to use


def test_features_of_a_long_song_do_not_depend_on_the_blocks_they_are_computed_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import midiarr.diffusion.assign as assign

    rng = np.random.default_rng(1)
    n = 600
    notes = _table(list(rng.integers(30, 90, n)), list(np.sort(rng.integers(0, 3000, n))), list(rng.integers(1, 9, n)))
    onset = rng.normal(size=(n, 3)).astype(np.float32)
    logits = StemLogits(onset, onset, onset, np.array([True, True, False]))
    whole = context_features(notes), stem_features(notes, logits)
    monkeypatch.setattr(assign, "_NOTE_CHUNK", 50)
    monkeypatch.setattr(assign, "_STEP_BLOCK", 64)
    blocks = context_features(notes), stem_features(notes, logits)
    assert np.allclose(whole[0], blocks[0]) and np.allclose(whole[1], blocks[1], atol=1e-6)


def test_stem_features_zero_the_stems_not_asked() -> None:
    notes = _table([36, 60, 64], [0, 0, 4], [8, 2, 2])
    onset = np.array([[3.0, np.nan, -1.0], [-2.0, np.nan, 2.0], [-3.0, np.nan, 1.0]], np.float32)
    logits = StemLogits(onset, onset.copy(), onset.copy(), np.array([True, False, True]))
    f = stem_features(notes, logits)
    assert f.shape == (3, 3, STEM_FEATURES)
    assert not f[:, 1].any()
    assert f[0, 0, 3] > 0.9 and f[1, 2, 3] > 0.9  # the softmax share of the plain rule's stem
    assert f[0, 0, 9] == pytest.approx(1 / 3)  # the plain rule gave bass one note of three


def _examples(n_songs: int, rng: np.random.Generator) -> NoteExamples:
    """Songs whose true stem follows pitch (bass low, piano high) with some overlap; the logits are noise."""
    parts = []
    for song in range(n_songs):
        pitch = rng.integers(28, 90, size=60)
        truth = np.where(pitch < 46, 0, np.where(pitch < 64, 1, 2))
        notes = _table(list(pitch), list(rng.integers(0, 64, size=60)), list(rng.integers(1, 8, size=60)))
        onset = rng.normal(size=(60, 3)).astype(np.float32)
        logits = StemLogits(onset, onset, onset, np.ones(3, dtype=bool))
        parts.append(
            NoteExamples(
                context=context_features(notes),
                stem=stem_features(notes, logits),
                asked=np.ones((60, 3), dtype=bool),
                truth=truth,
                plain=logits.plain_choice(),
                pitch_range=truth,
                song=np.full(60, song),
            )
        )
    return NoteExamples(
        **{k: np.concatenate([getattr(p, k) for p in parts]) for k in NoteExamples.__dataclass_fields__}
    )


def test_fit_head_learns_what_the_features_tell(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train, valid = _examples(30, rng), _examples(6, rng)
    log: list[dict] = []
    head = fit_head(train, valid, HeadConfig(hidden=16), epochs=30, seed=0, log=log.append)
    assert len(log) == 30 and "valid" in log[-1]
    assert accuracy(head_choice(head, valid), valid)["note_accuracy"] > 0.85
    assert accuracy(valid.plain, valid)["note_accuracy"] < 0.5  # the noise logits alone do not know


def test_head_saves_loads_and_refuses_other_feature_versions(tmp_path: Path) -> None:
    assert load_head(tmp_path) is None
    head = AssignHead(HeadConfig(hidden=8))
    save_head(head, tmp_path, {"note": "test"})
    back = load_head(tmp_path)
    assert back is not None
    for a, b in zip(head.parameters(), back.parameters(), strict=True):
        assert torch.equal(a, b)
    cfg = json.loads((tmp_path / "assign.json").read_text())
    cfg["head"]["feature_version"] = 99
    (tmp_path / "assign.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="feature version"):
        load_head(tmp_path)


def test_separation_logits_follow_the_notes_own_order(tiny_diffusion: Path) -> None:
    # two notes a step's rounding puts on one step, the higher one first in time: the table must
    # keep the notes' order (the plain rule once read the second note's cell for the first)
    song = band_song(bars=2)
    notes = np.zeros(2, dtype=NOTE_DTYPE)
    notes["start"], notes["pitch"], notes["duration"], notes["velocity"] = [10, 20], [72, 40], [200, 200], 90
    flat = song.with_tracks([Track(name="flat", notes=notes)])
    engine = DiffusionEngine(tiny_diffusion, steps=2)
    got, table, logits = engine.separation_logits(flat, ["bass", "piano"])
    assert list(got["pitch"]) == [72, 40] and list(table.pitch) == [72, 40]
    assert list(table.start) == [0, 0]
    assert logits.onset.shape == (2, len(PITCHED)) and not np.isnan(logits.onset[:, [0, 2]]).any()
    assert PITCH_LOW <= 40


@pytest.fixture(scope="module")
def headed_checkpoint(tiny_diffusion: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("headed") / "ckpt"
    shutil.copytree(tiny_diffusion, folder)
    cache = tiny_diffusion.parent / "cache"
    args = ["--data", cache, "-o", folder, "--checkpoint", folder, "--limit", "3", "--valid-limit", "0"]
    code = run_cli("train-assign", *args, "--max-bars", "4", "--epochs", "2", "--hidden", "4", "-q")
    assert code == 0
    return folder


def test_train_assign_writes_head_log_and_examples(headed_checkpoint: Path) -> None:
    meta = json.loads((headed_checkpoint / "assign.json").read_text())
    assert meta["head"]["hidden"] == 4 and meta["data"]["train_songs"] == 3
    assert "test split is never read" in meta["data"]["split"]
    context_only = load_head(headed_checkpoint, CONTEXT_ONLY_HEAD)
    assert context_only is not None and not context_only.config.use_stem_features
    log = [json.loads(line) for line in (headed_checkpoint / "assign_log.jsonl").read_text().splitlines()]
    assert [e["head"] for e in log] == ["head", "head", "context-only", "context-only"]
    raw = load_raw(headed_checkpoint / "examples-train.npz")
    examples = examples_from_raw(raw)
    assert len(examples) == len(raw["pitch"]) > 0 and len(np.unique(examples.song)) == 3
    assert examples.context.shape[1] == CONTEXT_FEATURES and examples.stem.shape[1:] == (3, STEM_FEATURES)
    assert set(np.unique(examples.truth)) <= set(np.flatnonzero(raw["asked"][0]))


def test_train_assign_reuses_the_examples_it_left(
    headed_checkpoint: Path,
    tiny_diffusion: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "again"
    shutil.copytree(headed_checkpoint, out)
    cache = tiny_diffusion.parent / "cache"
    args = ["--data", cache, "-o", out, "--checkpoint", headed_checkpoint, "--limit", "3", "--valid-limit", "0"]
    assert run_cli("train-assign", *args, "--max-bars", "4", "--epochs", "1", "--hidden", "4", "--reuse") == 0
    assert "reusing" in capsys.readouterr().out
    # other settings than the examples were made with: sampled afresh, not reused
    assert run_cli("train-assign", *args, "--max-bars", "3", "--epochs", "1", "--hidden", "4", "--reuse") == 0
    assert "reusing" not in capsys.readouterr().out


def test_engine_with_a_head_assigns_every_note_once_and_repeats_with_a_seed(headed_checkpoint: Path) -> None:
    flat = _flat(band_song(bars=6))
    engine = DiffusionEngine(headed_checkpoint, steps=3)
    assert engine.head is not None
    out, counts = engine.separate(flat, seed=3)
    again, _ = engine.separate(flat, seed=3)
    pitched = [t for t in out.tracks if not t.is_drum]
    got = np.sort(np.concatenate([t.notes for t in pitched]), order=["start", "pitch", "duration"])
    want = np.sort(flat.tracks[0].notes, order=["start", "pitch", "duration"])
    assert np.array_equal(got, want) and sum(counts.values()) == len(want)
    assert all(np.array_equal(a.notes, b.notes) for a, b in zip(out.tracks, again.tracks, strict=True))
    only_two, _ = engine.separate(flat, ["bass", "piano"], seed=3)
    assert [t.role for t in only_two.tracks if not t.is_drum] == ["bass", "piano"]


def test_separate_cli_takes_assign_and_eval_reports_both(
    headed_checkpoint: Path,
    tiny_diffusion: Path,
    tmp_path: Path,
) -> None:
    src = tmp_path / "flat.mid"
    write_midi(_flat(band_song(bars=4)), src)
    for choice in ("head", "logits"):
        out = tmp_path / f"{choice}.mid"
        args = ["separate", src, "-o", out, "--checkpoint", headed_checkpoint, "--steps", "2", "--assign", choice]
        assert run_cli(*args, "-q") == 0
        assert isinstance(load(out), Song)
    proc = run_cli_process("train-assign", "--data", tmp_path, "-o", src)
    assert proc.returncode != 0 and "it is a file, not a folder" in proc.stderr and "Traceback" not in proc.stderr
    for bad in (["--guidance", "-1"], ["--jobs", "100000"], ["--hidden", "0"]):
        proc = run_cli_process("train-assign", "--data", tmp_path, "-o", tmp_path / "head", *bad)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = run_cli_process("separate", src, "-o", tmp_path / "x.mid", "--assign", "vote")
    assert (
        proc.returncode != 0
        and "--assign" in proc.stderr
        and "'vote'" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    report_dir = tmp_path / "report"
    cache = tiny_diffusion.parent / "cache"
    where = ["--data", cache, "--split", "train", "--checkpoint", headed_checkpoint, "-o", report_dir]
    settings = ["--limit", "2", "--max-bars", "4", "--guidance", "1", "--set", "diffusion.steps=2"]
    code = run_cli("eval-diffusion", *where, *settings, "--parts", "separation", "-q")
    assert code == 0
    methods = json.loads((report_dir / "report.json").read_text())["separation"]["methods"]
    assert set(methods) == {
        "pitch-range",
        "diffusion (guidance 1)",
        "diffusion, logits only (guidance 1)",
        "note classifier without diffusion",
    }
