"""The diffusion engine: training windows, the training command, sampling modes, separation, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from midiarr.diffusion.data import GroupSampler, TaskMix, mix_roll
from midiarr.diffusion.model import DiTConfig, StemDiT, load_model, save_model
from midiarr.engines import Controls, get_engine
from midiarr.engines.diffusion import DiffusionEngine, pitch_range_split
from midiarr.fixtures import band_song
from midiarr.io import load, write_midi
from midiarr.pianoroll import NUM_DRUM_CLASSES, SLOTS, song_to_rolls
from midiarr.roles import assign_roles
from midiarr.song import Song, Track
from tests.conftest import run_cli, run_cli_process


def _flat(song: Song) -> Song:
    pitched = np.concatenate([t.notes for t in song.tracks if not t.is_drum])
    return song.with_tracks([Track(name="flat", notes=pitched), *[t for t in song.tracks if t.is_drum]])


def test_training_windows_hold_every_task() -> None:
    sampler = GroupSampler([song_to_rolls(band_song(bars=16))], DiTConfig(window_steps=32, patch=2), TaskMix(), 0)
    batch = sampler.batch(64)
    mix = SLOTS.index("mix")
    assert batch["present"][:, mix].any() and (~batch["present"][:, mix]).any()
    # loss only on written cells: never on a given token, never on drum rows past the classes
    known = batch["known"].repeat_interleave(2, dim=-1)[:, :, None, None, :].expand_as(batch["loss_mask"])
    assert not (batch["loss_mask"] & known).any()
    assert not batch["loss_mask"][:, SLOTS.index("drums"), :, NUM_DRUM_CLASSES:].any()
    assert not batch["loss_mask"][:, mix].any()
    # absent slots are silent (-1 everywhere)
    absent = ~batch["present"]
    assert (batch["x0"][absent] == -1).all()


def test_the_mix_of_a_separation_window_is_the_union_of_its_stems() -> None:
    rolls = [np.zeros((2, 4, 8), dtype=bool) for _ in range(2)]
    rolls[0][0, 1, 0] = rolls[0][1, 1, 1] = True
    rolls[1][0, 1, 1] = True
    mix = mix_roll(rolls)
    assert mix[0, 1, :2].tolist() == [True, True]
    assert not mix[1, 1, 1]  # a new onset wins over a held note


def test_model_saves_and_loads(tmp_path: Path) -> None:
    model = StemDiT(DiTConfig(window_steps=16, width=16, depth=1, heads=2))
    save_model(model, tmp_path, {"note": "x"})
    back, config = load_model(tmp_path)
    for a, b in zip(model.state_dict().values(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert config["note"] == "x"


def test_training_command_writes_weights_log_and_config(tiny_diffusion: Path) -> None:
    log = [json.loads(line) for line in (tiny_diffusion / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [3, 6]
    config = json.loads((tiny_diffusion / "config.json").read_text())
    assert config["network"]["width"] == 32 and "test never read" in config["data_split"]
    assert (tiny_diffusion / "diffusion.toml").is_file()


def test_insert_same_seed_same_part_and_activity_mask(tiny_diffusion: Path) -> None:
    engine = get_engine("diffusion", checkpoint=tiny_diffusion, steps=3)
    song = band_song(bars=8)
    active = np.zeros(8, dtype=bool)
    active[2:4] = True
    a = engine.insert(song, "bass", Controls.build("soft bass"), active=active, seed=5, replace=True)
    b = engine.insert(song, "bass", Controls.build("soft bass"), active=active, seed=5, replace=True)
    assert a.song.tracks[-1] == b.song.tracks[-1]
    assert a.replaced_tracks  # the song's own bass was replaced
    notes = a.song.tracks[-1].notes
    bars = a.song.bar_index(notes["start"]) if len(notes) else np.zeros(0, dtype=int)
    assert set(bars.tolist()) <= {2, 3}


def test_every_mode_and_sampler_runs(tiny_diffusion: Path) -> None:
    song = band_song(bars=6)
    for options in ({"partial": "repaint"}, {"scheduler": "dpm"}, {"passes": "k"}, {"passes": "2"}):
        engine = DiffusionEngine(tiny_diffusion, steps=3, **options)
        result = engine.insert_stems(song, ["bass", "drums"], seed=1, replace=True)
        assert [song_role for song_role in (t.role for t in result.song.tracks[-2:])] == ["bass", "drums"]


def test_generate_writes_the_bars_asked_for(tiny_diffusion: Path) -> None:
    engine = DiffusionEngine(tiny_diffusion, steps=3)
    song = engine.generate(["bass", "drums", "piano"], bars=6, seed=2, qpm=100)
    assert [t.role for t in song.tracks] == ["piano", "bass", "drums"]
    for t in song.tracks:
        if len(t.notes):
            assert int(t.notes["start"].max()) < 6 * 4 * song.ticks_per_beat


def test_separation_assigns_every_note_exactly_once(tiny_diffusion: Path) -> None:
    song = band_song(bars=6)
    flat = _flat(song)
    out, counts = DiffusionEngine(tiny_diffusion, steps=3).separate(flat, seed=0)
    pitched = [t for t in out.tracks if not t.is_drum]
    assert [t.role for t in pitched] == ["bass", "guitar", "piano"]
    got = np.sort(np.concatenate([t.notes for t in pitched]), order=["start", "pitch", "duration"])
    want = np.sort(flat.tracks[0].notes, order=["start", "pitch", "duration"])
    assert np.array_equal(got, want)
    assert sum(counts.values()) == len(want)
    assert next(t for t in out.tracks if t.is_drum) == next(t for t in flat.tracks if t.is_drum)


def test_pitch_range_split_is_by_pitch() -> None:
    out = pitch_range_split(_flat(band_song(bars=4)), ["bass", "piano"])
    bass, piano = (t for t in out.tracks if not t.is_drum)
    assert bass.notes["pitch"].max() < piano.notes["pitch"].min()


def test_cli_insert_separate_generate(tiny_diffusion: Path, tmp_path: Path) -> None:
    src = tmp_path / "song.mid"
    write_midi(_flat(band_song(bars=4)), src)
    out = tmp_path / "sep.mid"
    assert run_cli("separate", src, "-o", out, "--checkpoint", tiny_diffusion, "--steps", "2", "-q") == 0
    written = load(out)
    roles = assign_roles(written)
    assert sorted(roles[i] for i, t in enumerate(written.tracks) if not t.is_drum) == ["bass", "guitar", "piano"]
    gen = tmp_path / "gen.mid"
    code = run_cli(
        "generate",
        "--engine",
        "diffusion",
        "--checkpoint",
        tiny_diffusion,
        "--stems",
        "bass,drums",
        "--bars",
        "4",
        "--steps",
        "2",
        "-o",
        gen,
        "-q",
    )
    assert code == 0 and gen.is_file()
    ins = tmp_path / "ins.mid"
    code = run_cli(
        "insert",
        src,
        "--stem",
        "drums,bass",
        "--engine",
        "diffusion",
        "--checkpoint",
        tiny_diffusion,
        "--steps",
        "2",
        "-o",
        ins,
        "-q",
        "--force",
        "--replace",
    )
    assert code == 0


def test_bad_options_are_one_line_errors(tiny_diffusion: Path, tmp_path: Path) -> None:
    src = tmp_path / "song.mid"
    write_midi(band_song(bars=2), src)
    cases = [
        ("insert", src, "--stem", "bass", "--engine", "diffusion", "--checkpoint", tiny_diffusion, "--steps", "0"),
        ("insert", src, "--stem", "strings", "--engine", "diffusion", "--checkpoint", tiny_diffusion),
        ("insert", src, "--stem", "bass", "--engine", "rules", "--steps", "3"),
        ("insert", src, "--stem", "bass", "--engine", "diffusion", "--checkpoint", tmp_path / "nope"),
        ("separate", src, "--stems", "drums"),
        ("separate", src, "--method", "magic"),
        ("separate", src, "--checkpoint", tiny_diffusion, "--guidance", "-1"),
        ("eval-diffusion", "--data", tmp_path, "--set", "transformer.top_p=0.9"),
        ("eval-diffusion", "--data", tmp_path, "--checkpoint", tiny_diffusion, "--set", "diffusion.bar_floor=-1"),
        ("eval-diffusion", "--data", tmp_path, "--checkpoint", tiny_diffusion, "--set", "diffusion.snap_steps=9"),
    ]
    for args in cases:
        proc = run_cli_process(*args, "-o", tmp_path / "o.mid")
        assert proc.returncode in (1, 2), args
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_eval_diffusion_reports_every_measurement(tiny_diffusion: Path, tmp_path: Path) -> None:
    cache = tiny_diffusion.parent / "cache"
    out = tmp_path / "report"
    code = run_cli(
        "eval-diffusion",
        "--data",
        cache,
        "--split",
        "train",
        "--checkpoint",
        tiny_diffusion,
        "--limit",
        "2",
        "--max-bars",
        "4",
        "--guidance",
        "0,2",
        "--stems",
        "bass,drums",
        "--set",
        "diffusion.steps=4",
        "-o",
        out,
        "-q",
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    methods = report["separation"]["methods"]
    assert set(methods) == {"pitch-range", "diffusion (guidance 0)", "diffusion (guidance 2)"}
    assert all(0 <= m["note_accuracy"] <= 1 for m in methods.values())
    # the same accuracies per song length and band size: the groups hold every song and add up to the whole
    groups = report["separation"]["groups"]
    for kind in ("length", "band"):
        rows = groups[kind].values()
        assert sum(g["songs"] for g in rows) == report["separation"]["songs"]
        assert sum(g["notes"] for g in rows) == report["separation"]["notes"]
        for name, m in methods.items():
            pooled = sum(g[name] * g["notes"] for g in rows) / report["separation"]["notes"]
            assert abs(pooled - m["note_accuracy"]) < 1e-9
    assert list(groups["length"]) == ["≤ 16 bars"]  # cut to 4 bars
    assert "### Note accuracy by song length" in (out / "report.md").read_text()
    assert set(report["activity"]) == set(report["activity_engine"]) == {"bass", "drums"}
    assert set(report["partial_modes"]) == {"conditional", "repaint"}
    assert set(report["passes"]["modes"]) == {"1-pass", "2-pass", "K-pass (K=2)"}
    assert "## Separation" in (out / "report.md").read_text()


def test_first_bars_cuts_the_song() -> None:
    song = band_song(bars=8)
    cut = song.first_bars(3)
    assert cut.num_bars == 3
    end = 3 * 4 * song.ticks_per_beat
    for t in cut.tracks:
        assert (t.notes["start"] + t.notes["duration"] <= end).all()


def test_training_continues_from_a_checkpoint(tiny_diffusion: Path, tmp_path: Path) -> None:
    cache = tiny_diffusion.parent / "cache"
    config = tiny_diffusion.parent / "tiny.toml"
    out = tmp_path / "more"
    code = run_cli(
        "train-diffusion",
        "--data",
        cache,
        "--config",
        config,
        "-o",
        out,
        "--init-from",
        tiny_diffusion,
        "--max-steps",
        "1",
        "--seed",
        "7",
        "-q",
    )
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["init_from"]["step"] == 6
    assert saved["config"]["train"]["seed"] == 7  # a continued run records the seed it drew its windows with


def test_training_with_window_workers_is_repeatable(tiny_diffusion: Path, tmp_path: Path) -> None:
    """--workers draws windows in DataLoader processes (for a GPU); a seed still gives the same weights."""
    from safetensors.torch import load_file

    cache = tiny_diffusion.parent / "cache"
    config = tiny_diffusion.parent / "tiny.toml"
    weights = []
    for run in ("a", "b"):
        out = tmp_path / run
        args = ["train-diffusion", "--data", cache, "--config", config, "-o", out, "--max-steps", "2"]
        assert run_cli(*args, "--workers", "2", "--seed", "3", "-q") == 0
        weights.append(load_file(str(out / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # and the stream really is the workers' own: another worker count draws other windows
    out = tmp_path / "c"
    args = ["train-diffusion", "--data", cache, "--config", config, "-o", out, "--max-steps", "2"]
    assert run_cli(*args, "--workers", "1", "--seed", "3", "-q") == 0
    other = load_file(str(out / "model.safetensors"))
    assert any(not torch.equal(weights[0][k], other[k]) for k in other)
    assert run_cli(*args, "--workers", "-1", "-q") != 0
    assert run_cli(*args, "--workers", "100000", "-q") == 2  # refused before any process starts
    # a precision accelerate does not know is a one-line option error, not a traceback
    odd = tmp_path / "odd.toml"
    odd.write_text(config.read_text().replace("[train]", '[train]\nmixed_precision = "fp4"'))
    odd_args = ["train-diffusion", "--data", cache, "--config", odd, "-o", tmp_path / "d", "--max-steps", "1"]
    assert run_cli(*odd_args, "-q") == 2


def test_beat_chord_rows_marks_the_pitch_classes_each_beat_sounds() -> None:
    from midiarr.diffusion.sample import beat_chord_rows
    from midiarr.pianoroll import ONSET, PITCH_LOW, SUSTAIN

    context = np.zeros((1, 2, 72, 12), dtype=bool)
    for pitch in (48, 52, 55):  # C major in the first beat
        context[0, ONSET, pitch - PITCH_LOW, 0] = True
        context[0, SUSTAIN, pitch - PITCH_LOW, 1:3] = True
    context[0, ONSET, 57 - PITCH_LOW, 9] = True  # an A in the third beat
    rows = beat_chord_rows(context, np.arange(12) % 16)
    chord = {r for r in range(72) if rows[r, 0]}
    assert {(PITCH_LOW + r) % 12 for r in chord} == {0, 4, 7} and len(chord) == 18  # every octave
    assert (rows[:, 0:4] == rows[:, :1]).all()  # the whole beat
    assert not rows[:, 4:8].any()  # a silent beat is left alone
    assert {(PITCH_LOW + r) % 12 for r in np.flatnonzero(rows[:, 8])} == {9}


def test_harmony_pull_moves_mass_between_rows_not_onsets() -> None:
    from midiarr.diffusion.sample import pull_rows

    logits = torch.full((72, 3), -8.0)
    logits[13], logits[12] = 1.0, -1.0  # C# likelier than C at every step
    bias = torch.zeros(72, 3)
    bias[12] = 3.0  # C sounds in the other parts
    pulled = pull_rows(logits, bias)
    assert (pulled[12] > pulled[13]).all()
    before, after = torch.sigmoid(logits).sum(0), torch.sigmoid(pulled).sum(0)
    assert torch.allclose(before, after, rtol=1e-3)
    assert torch.allclose(pull_rows(logits, torch.zeros(72, 3)), logits, atol=1e-5)


def test_sync_pull_moves_onsets_within_a_beat_toward_the_songs_onsets() -> None:
    from midiarr.diffusion.sample import beat_index, pull_steps

    assert beat_index(np.array([0, 1, 2, 3, 4, 5, 0, 1, 2])).tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2]
    logits = torch.full((3, 8), -6.0)
    logits[0, 1] = 0.5  # an onset most likely just after the beat
    logits[1, 4:8] = -1.0  # a row that spreads over the second beat
    bias = torch.zeros(8)
    bias[[0, 4]] = 8.0  # the other parts play on both beats (more than the 6.5 logits step 1 leads by)
    group = torch.from_numpy(beat_index(np.arange(8) % 16))
    pulled = pull_steps(logits, bias, group)
    assert pulled[0, 0] > pulled[0, 1]  # moved onto the beat
    before = torch.sigmoid(logits).view(3, 2, 4).sum(-1)
    after = torch.sigmoid(pulled).view(3, 2, 4).sum(-1)
    assert torch.allclose(before, after, rtol=1e-3)  # each row's onsets per beat are kept
    assert torch.allclose(pull_steps(logits, torch.zeros(8), group), logits, atol=1e-5)


@pytest.mark.parametrize(
    ("option", "named"),
    [("harmony_weight", "--harmony-weight"), ("sync_weight", "--sync-weight"), ("voicing_weight", "--voicing-weight")],
)
def test_diffusion_guidance_weights_are_checked(tiny_diffusion: Path, option: str, named: str) -> None:
    from midiarr.errors import OptionError

    with pytest.raises(OptionError, match=named):
        DiffusionEngine(tiny_diffusion, **{option: -1})
    engine = DiffusionEngine(tiny_diffusion, **{option: 3})
    song = band_song(bars=4)
    out = engine.insert(song.with_tracks([t for t in song.tracks if t.name != "Bass"]), "bass", seed=0)
    assert out.song.tracks[out.new_tracks[0]].role == "bass"


def test_onset_threshold_can_differ_per_stem() -> None:
    from midiarr.diffusion.sample import DiffusionSettings, decode_roll
    from midiarr.errors import OptionError
    from midiarr.pianoroll import ONSET

    settings = DiffusionSettings(threshold={"bass": 0.3, "default": 0.6}).check()
    assert settings.threshold_for("bass") == 0.3 and settings.threshold_for("guitar") == 0.6
    assert DiffusionSettings(threshold=0.4).check().threshold_for("drums") == 0.4
    with pytest.raises(OptionError, match="threshold"):
        DiffusionSettings(threshold={"bass": 1.5}).check()
    logits = np.full((2, 72, 4), -30.0, dtype=np.float32)
    logits[ONSET, 20, 1] = -0.4  # p = 0.40: a note at 0.3, none at 0.6
    assert decode_roll(logits, "bass", settings.threshold_for("bass"))[ONSET].sum() == 1
    assert decode_roll(logits, "guitar", settings.threshold_for("guitar"))[ONSET].sum() == 0


def test_sync_weight_puts_the_written_onsets_on_the_songs(tiny_diffusion: Path) -> None:
    from midiarr.evaluation import metrics as M

    song = band_song(bars=4)
    context = song.with_tracks([t for t in song.tracks if t.name != "Guitar"])
    others = np.concatenate([t.notes for t in context.tracks])
    sync = []
    for weight in (0.0, 10.0):
        engine = DiffusionEngine(tiny_diffusion, sync_weight=weight, threshold=0.2)
        out = engine.insert(context, "guitar", Controls.build(timing="grid"), seed=0)
        notes = out.song.tracks[out.new_tracks[0]].notes
        assert len(notes)
        sync.append(M.onset_sync(notes, others, song.ticks_per_beat))
    assert sync[1] > sync[0] and sync[1] >= 0.9


def _budget(steps: int, bars_of: int = 16, **kw: object) -> object:
    from midiarr.diffusion.sample import OnsetBudget

    fields = dict(
        free=torch.ones(steps, dtype=torch.bool),
        bar=torch.arange(steps) // bars_of,
        given=torch.zeros(steps, dtype=torch.bool),
        active=torch.ones(steps, dtype=torch.bool),
        density=None,
        floor=0.0,
        rows=72,
    )
    fields.update(kw)
    return OnsetBudget(**fields)


def _onset_steps(logits: torch.Tensor) -> torch.Tensor:
    return 1 - torch.prod(1 - torch.sigmoid(logits), dim=0)


def test_budget_pull_brings_the_density_into_the_asked_bin() -> None:
    from midiarr.diffusion.sample import pull_budget

    logits = torch.full((72, 32), -9.0)
    logits[30, ::4] = -2.0  # the model leans to one note a beat, weakly
    for low, high in ((1.0, 2.0), (0.0, 0.1)):
        pulled = pull_budget(logits, _budget(32, density=(low, high)))
        per_beat = float(_onset_steps(pulled).sum()) / 8
        assert low <= per_beat <= high
        assert int(pulled[:, 0].argmax()) == 30  # which row plays stays the model's
    inside = pull_budget(logits, _budget(32, density=(0.0, 5.0)))
    assert torch.equal(inside, logits)  # already in the bin: untouched


def test_budget_pull_for_busy_drums_adds_onset_steps_not_the_whole_kit() -> None:
    from midiarr.diffusion.sample import pull_budget

    logits = torch.full((16, 32), -8.0)
    logits[4, ::2] = -1.0  # a closed hat on the eighths, weakly
    logits[4, 1::2] = -5.0  # the sixteenths between them, weaker still
    logits[0, ::8] = 0.0  # kick on 1 and 3
    busy = (3.7, float("inf"))  # the open top bin: every 16th but a few
    pulled = pull_budget(logits, _budget(32, rows=16, density=busy, lead_row_only=True))
    per_beat = float(_onset_steps(pulled).sum()) / 8
    assert 3.7 <= per_beat < 4.0  # aimed inside what the grid can hold, not past it
    sounds_per_step = torch.sigmoid(pulled).sum(dim=0)
    assert float(sounds_per_step.max()) < 2.5  # the new onsets are the hat's, not all 16 sounds at once
    assert bool((pulled.argmax(dim=0)[1::2] == 4).all())
    every_row = pull_budget(logits, _budget(32, rows=16, density=busy))
    assert float(torch.sigmoid(every_row).sum(dim=0).mean()) > 2 * float(sounds_per_step.mean())
    # fewer onsets: every sound is lowered alike, so the leading one is not silenced under the others
    loud = logits.clone()
    loud[4] = 3.0  # a hat on every 16th ...
    loud[11, ::2] = 1.0  # ... and a ride beside it on the eighths
    sparse = pull_budget(loud, _budget(32, rows=16, density=(0.0, 1.0), lead_row_only=True))
    assert float(_onset_steps(sparse).sum()) / 8 <= 1.0
    assert bool((sparse.argmax(dim=0) == 4).all())


def test_an_overlap_as_long_as_the_window_is_refused(tiny_diffusion: Path) -> None:
    from midiarr.diffusion.sample import DiffusionSettings, RollDiffusion
    from midiarr.errors import OptionError

    model, config = load_model(tiny_diffusion)
    window = model.config.window_steps
    RollDiffusion(model, config["config"]["schedule"], DiffusionSettings(overlap_steps=window - 1))
    for overlap in (window, -1):  # the next window would start where this one did: the song never ends
        with pytest.raises(OptionError, match="overlap_steps"):
            RollDiffusion(model, config["config"]["schedule"], DiffusionSettings(overlap_steps=overlap))


def test_budget_pull_lifts_silent_bars_to_the_floor_only_where_asked() -> None:
    from midiarr.diffusion.sample import pull_budget

    logits = torch.full((72, 48), -12.0)
    logits[30, 16:32:4] = 3.0  # bar 1 plays; bars 0 and 2 are silent
    active = torch.ones(48, dtype=torch.bool)
    active[32:] = False  # bar 2 is asked to rest
    pulled = pull_budget(logits, _budget(48, active=active, free=active, floor=2.0))
    per_bar = _onset_steps(pulled).view(3, 16).sum(-1)
    assert abs(float(per_bar[0]) - 2.0) < 0.05
    assert torch.equal(pulled[:, 16:], logits[:, 16:])  # playing bar and resting bar untouched
    given = torch.zeros(48, dtype=torch.bool)
    given[[0, 4]] = True  # bar 0's two onsets are already given (an overlap): nothing owed
    free = active & (torch.arange(48) >= 8)
    kept = pull_budget(logits, _budget(48, active=active, free=free, given=given, floor=2.0))
    assert torch.equal(kept, logits)


def test_snap_moves_near_misses_onto_the_songs_onsets() -> None:
    from midiarr.diffusion.sample import snap_onsets
    from midiarr.pianoroll import ONSET, SUSTAIN

    roll = np.zeros((2, 72, 16), dtype=bool)
    roll[ONSET, 10, 1], roll[SUSTAIN, 10, 2:4] = True, True  # one step late
    roll[ONSET, 12, 7] = True  # one step early
    roll[ONSET, 14, 11] = True  # where the song is silent two steps either way
    roll[ONSET, 15, 13], roll[ONSET, 16, 12] = True, True  # the step it would move to is taken
    heard = np.zeros(16, dtype=bool)
    heard[[0, 8, 12]] = True
    logits = np.zeros((2, 72, 16), dtype=np.float32)
    out = snap_onsets(roll, logits, heard, reach=1)
    assert out[ONSET, 10, 0] and out[SUSTAIN, 10, 1:4].all() and not out[ONSET, 10, 1]
    assert out[ONSET, 12, 8] and not out[ONSET, 12, 7]
    assert out[ONSET, 14, 11] and out[ONSET, 15, 13]  # nothing near / no merging
    assert out[ONSET].sum() == roll[ONSET].sum()
    given_part = snap_onsets(roll, logits, heard, reach=1, start=4)
    assert given_part[ONSET, 10, 1] and given_part[ONSET, 12, 8]  # steps before start are given
    resting = np.ones(16, dtype=bool)
    resting[8:] = False  # the second bar half is asked to rest: nothing moves into it
    kept = snap_onsets(roll, logits, heard, reach=1, allowed=resting)
    assert kept[ONSET, 12, 7] and not kept[ONSET, 12, 8] and kept[ONSET, 10, 0]


def test_snap_goes_to_the_nearest_free_onset_when_the_nearest_is_taken() -> None:
    from midiarr.diffusion.sample import snap_onsets
    from midiarr.pianoroll import ONSET

    roll = np.zeros((2, 72, 16), dtype=bool)
    roll[ONSET, 20, 4] = True  # the stem already starts a note on the song's onset at step 4
    roll[ONSET, 21, 5] = True  # one step from 4 (taken), two steps from 7 (free)
    heard = np.zeros(16, dtype=bool)
    heard[[4, 7]] = True
    logits = np.zeros((2, 72, 16), dtype=np.float32)
    near_only = snap_onsets(roll, logits, heard, reach=1)
    assert near_only[ONSET, 21, 5]  # within one step only the taken onset: it stays
    out = snap_onsets(roll, logits, heard, reach=2)
    assert out[ONSET, 21, 7] and not out[ONSET, 21, 5] and out[ONSET, 20, 4]
    assert out[ONSET].sum() == roll[ONSET].sum()  # nothing merged


def test_beat_root_rows_finds_each_beats_chord_root() -> None:
    from midiarr.diffusion.sample import beat_root_rows
    from midiarr.pianoroll import ONSET, PITCH_LOW

    context = np.zeros((1, 2, 72, 12), dtype=bool)
    for pitch in (64, 67, 72):  # C major in first inversion: E G C
        context[0, ONSET, pitch - PITCH_LOW, 0] = True
    for pitch in (45, 60, 64):  # A minor over a low A
        context[0, ONSET, pitch - PITCH_LOW, 8] = True
    rows = beat_root_rows(context, np.arange(12) % 16)
    assert {(PITCH_LOW + r) % 12 for r in np.flatnonzero(rows[:, 0])} == {0}
    assert not rows[:, 4:8].any()
    assert {(PITCH_LOW + r) % 12 for r in np.flatnonzero(rows[:, 9])} == {9}


def test_asked_density_and_bar_floor_reach_the_written_part(tiny_diffusion: Path) -> None:
    song = band_song(bars=8)
    context = song.with_tracks([t for t in song.tracks if t.name != "Bass"])
    counts = {}
    for word in ("sparse", "busy"):
        engine = DiffusionEngine(tiny_diffusion, density_pull=True, bar_floor=2.0)
        out = engine.insert(context, "bass", Controls.build(density=word, timing="grid"), seed=0)
        notes = out.song.tracks[out.new_tracks[0]].notes
        bars = out.song.bar_starts(int(notes["start"].max()) + 1)
        playing = set(np.searchsorted(bars, notes["start"], side="right") - 1)
        assert playing == set(range(8))  # every bar the song plays in
        counts[word] = len(np.unique(notes["start"]))
    assert counts["busy"] > counts["sparse"]


def test_voicing_bias_lifts_only_the_chord_tones_the_stem_does_not_sound_yet() -> None:
    from midiarr.diffusion.sample import beat_chord_rows, beat_index, voicing_bias
    from midiarr.pianoroll import ONSET, PITCH_LOW, SUSTAIN

    steps = 8
    context = np.zeros((1, 2, 72, steps), dtype=bool)
    for pitch in (60, 64, 67):  # C major in beat 0; beat 1 silent
        context[0, ONSET, pitch - PITCH_LOW, 0] = True
    positions = np.arange(steps) % 16
    tones = torch.from_numpy(3.0 * beat_chord_rows(context, positions))
    beats = torch.from_numpy(beat_index(positions))
    stem = torch.full((2, 72, steps), -30.0)
    stem[ONSET, 48 - PITCH_LOW, 0] = 30.0  # the stem strikes a low C ...
    stem[SUSTAIN, 48 - PITCH_LOW, 1:4] = 30.0  # ... and holds it through the beat
    bias = voicing_bias(stem, tones, beats)
    lifted = {(PITCH_LOW + r) % 12 for r in np.flatnonzero(bias[:, 0].numpy() > 0)}
    assert lifted == {4, 7}  # E and G; C sounds already (in another octave)
    assert torch.allclose(bias[64 - PITCH_LOW, :4], torch.tensor(3.0))
    assert not bias[:, 4:].any()  # the silent beat has no chord to spread over
    assert not bias[61 - PITCH_LOW].any()  # C# is no chord tone
