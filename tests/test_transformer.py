"""The stem transformer: encoding round trip, training command, lean decoder, sampling and the engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from midiarr.engines import Controls, get_engine
from midiarr.errors import OptionError
from midiarr.fixtures import band_song
from midiarr.io import load, write_midi
from midiarr.song import Song, TimeSignature, Track
from midiarr.transformer.decoder import make_decoder
from midiarr.transformer.encode import BarGrid, decode_target, encode_context, encode_target
from midiarr.transformer.model import LeanDecoder, read_checkpoint
from midiarr.transformer.native import load_library as native_library
from midiarr.transformer.native import unavailable_reason as native_unavailable_reason
from midiarr.transformer.vocab import VOCAB
from tests.conftest import run_cli


def test_target_round_trip_on_the_grid(band: Song) -> None:
    grid = BarGrid.of(band)
    for track in band.tracks:
        notes = track.notes.copy()
        blocks = encode_target(notes, grid, track.is_drum)
        back = decode_target(blocks, grid, track.is_drum)
        assert np.array_equal(back["start"], np.sort(notes["start"]))
        if not track.is_drum:
            assert sorted(back["pitch"].tolist()) == sorted(notes["pitch"].tolist())


def test_context_names_bar_length_chords_and_parts(band: Song) -> None:
    waltz = band_song(bars=4, numerator=3)
    grid = BarGrid.of(waltz)
    bars = encode_context(waltz.with_tracks([t for t in waltz.tracks if t.name != "Bass"]), grid)
    tokens = [VOCAB.tokens[i] for i in bars[0].tokens()]
    assert tokens[:2] == ["BAR", "LEN_12"]
    assert any(t.startswith("CHORD_") for t in tokens)
    assert "ROLE_drums" in tokens and "ROLE_bass" not in tokens
    assert bars[0].tokens(keep=set(), chords=False) == [VOCAB["BAR"], VOCAB["LEN_12"]]


def test_grid_handles_meter_changes_and_extra_bars() -> None:
    song = band_song(bars=4)
    song.time_signatures = [TimeSignature(0, 4, 4), TimeSignature(2 * 1920, 7, 8)]
    grid = BarGrid.with_bars(song, 6)
    assert len(grid) == 6
    assert grid.lengths.tolist()[:3] == [16, 16, 14]


def test_training_command_writes_checkpoint_config_and_log(tiny_checkpoint: Path) -> None:
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["vocab"] == VOCAB.tokens and config["gpt2"]["attn_pdrop"] == 0.0
    assert "test never read" in config["data_split"]
    log = [json.loads(line) for line in (tiny_checkpoint / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [2, 4] and all(np.isfinite(e["valid_loss"]) for e in log)
    assert (tiny_checkpoint / "transformer.toml").is_file()


def _native_or_skip(native: bool) -> None:
    if native and native_library() is None:
        pytest.skip(f"C decoding step not built here: {native_unavailable_reason()}")


@pytest.mark.parametrize("native", [True, False], ids=["c-step", "torchscript-step"])
def test_lean_decoder_matches_transformers(tiny_checkpoint: Path, native: bool) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    _native_or_skip(native)
    state, config = read_checkpoint(tiny_checkpoint)
    model = GPT2LMHeadModel(GPT2Config(**config["gpt2"]))
    model.load_state_dict(state, strict=False)
    model.eval()
    ids = torch.randint(0, len(VOCAB), (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(input_ids=ids).logits[0]
    dec = make_decoder(state, config["gpt2"], native=native)
    assert dec.step_kind == ("c" if native else "torchscript")
    dec.reset(1)
    first = _logits(dec, ids[:, :25])
    assert torch.allclose(first[0], ref[24], atol=1e-4)
    for i in range(25, 40):
        out = _logits(dec, ids[:, i : i + 1])  # one token: the one-token step
        assert torch.allclose(out[0], ref[i], atol=1e-4)
    # rows of a batch (candidates) advance together and stay independent
    both = torch.cat([ids, ids.flip(1)])
    with torch.no_grad():
        ref2 = model(input_ids=both).logits
    dec.reset(2)
    dec.forward(both[:, :10])
    for i in range(10, 40):
        out = _logits(dec, both[:, i : i + 1])
        assert torch.allclose(out, ref2[:, i], atol=1e-4)


def _logits(decoder: object, ids: torch.Tensor) -> torch.Tensor:
    """The logits of either decoder (the C step's are NumPy arrays) as a torch tensor."""
    return torch.as_tensor(np.asarray(decoder.logits(ids.numpy())))


def _random_gpt2(
    positions: int, width: int, heads: int, tokens: int, seed: int
) -> tuple[Any, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """A randomly initialised two-layer GPT-2 (transformers), its weights, three rows of token ids and the
    logits transformers gives for them."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2Config(
        vocab_size=len(VOCAB), n_positions=positions, n_embd=width, n_head=heads, n_layer=2, attn_pdrop=0.0
    )
    model = GPT2LMHeadModel(gpt2).eval()
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    ids = torch.randint(0, len(VOCAB), (3, tokens), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
    return gpt2, state, ids, ref


@pytest.mark.parametrize("threads", [1, 2])
def test_c_step_matches_transformers_on_odd_sizes(threads: int) -> None:
    """Widths that do not split evenly (3 heads of 12, rows not a multiple of 4) and batches of 3; half-float
    weights through the vector path (width 144) and the portable one (width 36)."""
    _native_or_skip(True)
    gpt2, state, ids, ref = _random_gpt2(positions=64, width=36, heads=3, tokens=30, seed=1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dec = make_decoder(state, gpt2.to_dict(), native=True)
        half = make_decoder(state, gpt2.to_dict(), native=True, half=True)
        half_scripted = make_decoder(state, gpt2.to_dict(), native=False, half=True)
        for d in (dec, half, half_scripted):
            d.reset(3)
            d.forward(ids[:, :5])
        rounding = exact = 0.0
        for i in range(5, 30):
            full = _logits(dec, ids[:, i : i + 1])
            assert torch.allclose(full, ref[:, i], atol=1e-4)
            exact = max(exact, float((full - ref[:, i]).abs().max()))
            # half weights: the C step (half caches too) and the TorchScript step over the same rounded weights
            # stay near each other and near the float32 model, and differ from it (the weights were rounded)
            out, scripted = _logits(half, ids[:, i : i + 1]), _logits(half_scripted, ids[:, i : i + 1])
            assert torch.allclose(out, scripted, atol=1e-2)
            assert torch.allclose(out, ref[:, i], atol=2e-2)
            rounding = max(rounding, float((out - ref[:, i]).abs().max()))
        assert rounding > 10 * exact
        with pytest.raises(RuntimeError, match="outside the vocabulary"):
            dec.forward(np.full((3, 1), len(VOCAB)))
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_c_step_feeds_prompts_and_chunks_with_half_caches(threads: int) -> None:
    """Heads of 64 (the stem transformer's: the vector attention over half caches) and enough tokens per call
    for the four-by-four kernel: a prompt, a chunk of known tokens and single tokens, three rows, against
    transformers; the float32 C step stays exact, and candidates keep their own rows through ``select``."""
    _native_or_skip(True)
    gpt2, state, ids, ref = _random_gpt2(positions=96, width=128, heads=2, tokens=60, seed=2)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        exact = None
        for held, atol in (({}, 1e-4), ({"half": True}, 2e-2), ({"int8": True}, 5e-2)):
            dec = make_decoder(state, gpt2.to_dict(), native=True, **held)
            assert dec.keys is None and dec.step_kind == "c"
            dec.reset(3)
            assert dec.keys is not None and dec.keys.dtype == (np.float16 if held else np.float32)
            first = _logits(dec, ids[:, :23])
            assert torch.allclose(first, ref[:, 22], atol=atol), held
            for a, b in [(23, 40), *[(i, i + 1) for i in range(40, 50)], (50, 55)]:
                out = _logits(dec, ids[:, a:b])
                assert torch.allclose(out, ref[:, b - 1], atol=atol), (held, a, b)
            # half and int8 weights move the logits, each by its own rounding
            exact = first if not held else exact
            assert not held or not torch.equal(first, exact)
            dec.select(1)  # the second row carries on alone
            assert dec.keys.shape[1] == 1 and dec.keys.flags.c_contiguous
            out = _logits(dec, ids[1:2, 55:60])
            assert torch.allclose(out[0], ref[1, 59], atol=atol)
        with pytest.raises(RuntimeError, match="longer than the model's trained context"):
            dec.forward(ids[1:2].repeat(1, 2))
    finally:
        torch.set_num_threads(before)


def test_decoder_falls_back_when_the_c_step_cannot_be_built(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from midiarr.transformer import native

    monkeypatch.setattr(native, "_TRIED", False)
    monkeypatch.setattr(native, "_LIB", None)
    monkeypatch.setenv("MIDIARR_CACHE_DIR", str(tmp_path / "kernels"))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setattr(native, "_compiler", lambda: "false")
    state, config = read_checkpoint(tiny_checkpoint)
    dec = make_decoder(state, config["gpt2"])
    assert isinstance(dec, LeanDecoder) and dec.step_kind == "torchscript"
    assert "false failed" in native.unavailable_reason()
    with pytest.raises(RuntimeError, match="not available"):
        make_decoder(state, config["gpt2"], native=True)
    monkeypatch.setattr(native, "_TRIED", False)
    monkeypatch.setenv("MIDIARR_NATIVE", "0")
    assert make_decoder(state, config["gpt2"]).step_kind == "torchscript"
    assert "MIDIARR_NATIVE=0" in native.unavailable_reason()
    assert not list((tmp_path / "kernels").glob("*.so"))  # no half-built library left behind


def test_engine_writes_a_part_in_range_and_is_deterministic(tiny_checkpoint: Path, band: Song) -> None:
    engine = get_engine("transformer", checkpoint=tiny_checkpoint)
    context = band.with_tracks([t for t in band.tracks if t.name != "Bass"])
    a = engine.insert(context, "bass", Controls.build("busy bass"), seed=5)
    b = engine.insert(context, "bass", Controls.build("busy bass"), seed=5)
    notes = a.song.tracks[a.new_tracks[0]].notes
    assert len(notes) > 0 and np.array_equal(notes, b.song.tracks[b.new_tracks[0]].notes)
    assert notes["pitch"].min() >= 23 and notes["pitch"].max() <= 67
    assert a.song.bar_activity(notes).all()  # every bar where the song plays gets notes
    # the context is untouched
    for old, new in zip(context.tracks, a.song.tracks[: len(context.tracks)]):
        assert np.array_equal(old.notes, new.notes)


def test_activity_mask_and_existing_stem(tiny_checkpoint: Path, band: Song) -> None:
    engine = get_engine("transformer", checkpoint=tiny_checkpoint, candidates=2)
    mask = np.array([True, True, False, False, True, False, False, False])
    result = engine.insert(band, "drums", active=mask, seed=1, replace=True)
    assert result.replaced_tracks == ["Drums"]
    played = result.song.bar_activity(result.song.tracks[result.new_tracks[0]].notes, 8)
    assert not played[~mask].any() and played[mask].all()


def test_one_bar_and_very_long_songs(tiny_checkpoint: Path) -> None:
    engine = get_engine("transformer", checkpoint=tiny_checkpoint)
    one = band_song(bars=1)
    result = engine.insert(one.with_tracks(one.tracks[:1]), "guitar", seed=0)
    assert len(result.song.tracks[-1].notes) > 0
    long = band_song(bars=1000)
    context = long.with_tracks([t for t in long.tracks if t.name == "Piano"])
    mask = np.zeros(1000, dtype=bool)
    mask[[0, 500, 999]] = True
    result = engine.insert(context, "bass", active=mask, seed=0)
    played = np.flatnonzero(result.song.bar_activity(result.song.tracks[-1].notes, 1000))
    assert played.tolist() == [0, 500, 999]


def test_windows_stay_within_the_trained_length(tiny_checkpoint: Path) -> None:
    # the tiny model trains on 256-token windows of a 1,024-position table: positions past 256
    # were never trained, so no window may reach them, however dense the song
    engine = get_engine("transformer", checkpoint=tiny_checkpoint)
    assert engine.decoder.n_positions == 1024 and engine.decoder.max_length == 256
    longest = 0
    forward = engine.decoder.forward

    def watched(ids: torch.Tensor) -> torch.Tensor:
        nonlocal longest
        logits = forward(ids)
        longest = max(longest, engine.decoder.length)
        return logits

    engine.decoder.forward = watched  # type: ignore[method-assign]
    song = band_song(bars=24)
    result = engine.insert(song.with_tracks([t for t in song.tracks if t.name != "Guitar"]), "guitar", seed=0)
    assert 0 < longest <= 256
    assert len(result.song.tracks[result.new_tracks[0]].notes) > 0


def test_generate_from_nothing(tiny_checkpoint: Path) -> None:
    engine = get_engine("transformer", checkpoint=tiny_checkpoint)
    song = engine.generate(["drums", "bass", "piano"], bars=4, seed=2, qpm=100, meter=(3, 4))
    assert [t.role for t in song.tracks] == ["piano", "bass", "drums"]
    assert song.num_bars <= 4 and song.time_signatures[0].numerator == 3
    assert all(len(t.notes) for t in song.tracks)
    assert get_engine("transformer", checkpoint=tiny_checkpoint).generate(["bass"], 2, seed=2).note_count > 0
    with pytest.raises(OptionError, match="use --engine diffusion or transformer"):  # the engines that can
        get_engine("rules").generate(["bass"], 2)


def test_cli_insert_several_stems_and_generate(tiny_checkpoint: Path, tmp_path: Path, band: Song) -> None:
    src = write_midi(band.with_tracks([t for t in band.tracks if t.name == "Piano"]), tmp_path / "piano.mid")
    out = tmp_path / "out.mid"
    code = run_cli(
        "insert",
        src,
        "--stem",
        "bass,drums",
        "--engine",
        "transformer",
        "--checkpoint",
        tiny_checkpoint,
        "--instruction",
        "soft, sparse",
        "--seed",
        "3",
        "--candidates",
        "2",
        "-o",
        out,
        "-q",
    )
    assert code == 0
    song = load(out)
    assert len(song.tracks) == 3 and song.tracks[2].is_drum
    gen = tmp_path / "gen.mid"
    code = run_cli("generate", "--stems", "piano,bass", "--bars", "4", "--checkpoint", tiny_checkpoint, "-o", gen, "-q")
    assert code == 0 and len(load(gen).tracks) == 2
    assert run_cli("generate", "--stems", "bass", "--bars", "0", "--checkpoint", tiny_checkpoint, "-o", gen) == 2
    assert run_cli("generate", "--engine", "rules", "--stems", "bass", "-o", gen) == 2
    assert run_cli("insert", src, "--stem", "bass", "--engine", "rules", "--temperature", "1", "-o", out) == 2


def test_bad_checkpoint_is_a_clear_error(tmp_path: Path, band_file: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    code = run_cli(
        "insert",
        band_file,
        "--stem",
        "bass",
        "--engine",
        "transformer",
        "--checkpoint",
        tmp_path / "ckpt",
        "-o",
        tmp_path / "o.mid",
    )
    assert code == 1


def test_song_with_no_other_parts_is_refused(tiny_checkpoint: Path) -> None:
    from midiarr.errors import OptionError

    lonely = Song(tracks=[Track(name="Bass", program=33, notes=band_song(bars=2).tracks[1].notes)])
    with pytest.raises(OptionError, match="no parts besides"):
        get_engine("transformer", checkpoint=tiny_checkpoint).insert(lonely, "bass", replace=True)


def test_bundled_weights_write_a_bass_offline(band: Song) -> None:
    import midiarr

    arranger = midiarr.Arranger.load()
    context = band.with_tracks([t for t in band.tracks if t.name != "Bass"])
    song = arranger.insert(context, "bass", "busy bass", seed=0)
    bass = song.tracks[-1].notes
    assert len(bass) >= 8 and song.bar_activity(bass).all()
    assert 23 <= bass["pitch"].min() and bass["pitch"].max() <= 67
    card = (Path(midiarr.__file__).parent / "weights" / "transformer" / "MODEL_CARD.md").read_text()
    assert "non-commercial" in card and "train-transformer" in card


@pytest.mark.parametrize(
    "option, message",
    [(("--seed", "-1"), "--seed"), (("--threads", "0"), "--threads"), (("--max-minutes", "0"), "--max-minutes")],
)
def test_train_transformer_rejects_bad_options(tmp_path: Path, capsys, option, message) -> None:
    assert run_cli("train-transformer", "--data", tmp_path, "-o", tmp_path / "out", *option) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags", [["-mavx2", "-mfma", "-mf16c"], []], ids=["avx2", "portable"])
def test_c_step_without_avx512_matches_transformers(flags: list[str], tmp_path: Path) -> None:
    """The step built for CPUs without AVX-512 (AVX2 with F16C, and no vector extension at all): the setup
    build uses -march=native, so on this machine only this test runs those code paths."""
    import shutil
    import subprocess

    from midiarr.transformer.native import SOURCE, NativeDecoder, open_library

    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    target = tmp_path / "step.so"
    cmd = [compiler, "-O2", *flags, "-fopenmp", "-shared", "-fPIC", str(SOURCE), "-o", str(target), "-lm"]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip(f"{' '.join(flags) or 'a plain build'} does not compile here")
    lib = open_library(target)
    gpt2, state, ids, ref = _random_gpt2(positions=96, width=128, heads=2, tokens=40, seed=3)
    for held, atol in (({}, 1e-4), ({"half": True}, 2e-2), ({"int8": True}, 5e-2)):
        dec = NativeDecoder(lib, state, gpt2.to_dict(), half=held.get("half", False), int8=held.get("int8", False))
        dec.reset(3)
        out = _logits(dec, ids[:, :20])
        assert torch.allclose(out, ref[:, 19], atol=atol), held
        for i in range(20, 40):
            out = _logits(dec, ids[:, i : i + 1])
            assert torch.allclose(out, ref[:, i], atol=atol), (held, i)
