"""Audio stem models: features and metrics, the clip set, the three training commands on a tiny
render of fixture songs, and the `audio` / `eval-audio` commands."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from midiarr.audio.data import STEMS, load_clips
from midiarr.audio.evaluate import frechet_distance, onset_sync, si_sdr
from midiarr.audio.features import MelFrontend, MelSpec, denormalize, normalize
from midiarr.audio.io import read_audio, resample
from midiarr.audio.pipeline import overlap_add, windows
from midiarr.errors import InputError, OptionError
from midiarr.fixtures import band_song
from midiarr.io import write_midi
from tests.conftest import run_cli, run_cli_process

SR = 16000

TINY = """
[mel]
sr = 16000
n_fft = 1024
hop = 256
n_mels = 64
clip_seconds = 4.0
frames = 248
[vae]
width = 8
latent_channels = 4
kl_weight = 1e-4
[vae.train]
batch_size = 4
learning_rate = 1e-3
min_learning_rate = 1e-4
warmup_steps = 1
weight_decay = 0.0
max_steps = 3
max_minutes = 5
eval_every = 1
seed = 0
[ldm]
channels = [16, 32, 32]
attention_last = true
train_timesteps = 1000
beta_schedule = "squaredcos_cap_v2"
prediction = "sample"
[ldm.tasks]
separation = 0.4
partial = 0.4
drop_given = 0.1
reveal_activity = 0.7
shared_noise = 0.5
[ldm.train]
batch_size = 4
learning_rate = 1e-3
min_learning_rate = 1e-4
warmup_steps = 1
weight_decay = 0.0
ema_decay = 0.9
max_steps = 2
max_minutes = 5
eval_every = 1
eval_batches = 1
seed = 0
[gmsdi.train]
batch_size = 4
learning_rate = 1e-3
min_learning_rate = 1e-4
warmup_steps = 1
weight_decay = 0.0
ema_decay = 0.9
max_steps = 2
max_minutes = 5
eval_every = 1
eval_batches = 1
drop_label = 0.1
seed = 0
[masks]
channels = 16
depth = 1
dilations = [1]
[masks.train]
batch_size = 2
frames = 32
drop_estimate = 0.5
estimate_clips = 4
valid_clips = 2
learning_rate = 1e-3
min_learning_rate = 1e-4
warmup_steps = 1
weight_decay = 0.0
ema_decay = 0.9
max_steps = 2
max_minutes = 5
eval_every = 1
eval_batches = 1
seed = 0
[vocoder]
channels = 16
depth = 1
[vocoder.train]
batch_size = 2
frames = 16
vae_share = 0.5
learning_rate = 1e-3
min_learning_rate = 1e-4
warmup_steps = 1
weight_decay = 0.0
ema_decay = 0.9
max_steps = 2
max_minutes = 5
eval_every = 1
eval_batches = 1
seed = 0
[sample]
steps = 2
guidance = 2.0
griffin_lim_iters = 4
"""


def tone(freq: float, seconds: float = 1.0, sr: int = SR) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return 0.3 * torch.sin(2 * math.pi * freq * t)


# ------------------------------------------------------------------ features and metrics
def test_log_mel_normalization_round_trips() -> None:
    amp = torch.rand(2, 64, 10) * 3
    assert torch.allclose(denormalize(normalize(amp)), amp, atol=1e-4)


def test_oracle_masks_separate_two_tones() -> None:
    front = MelFrontend(MelSpec())
    low, high = tone(110.0), tone(2000.0)
    mix = (low + high)[None]
    mels = torch.stack([front.mel_amplitude(low[None])[0], front.mel_amplitude(high[None])[0]])[None]
    out = front.masked_sources(mix, mels)
    assert out.shape == (1, 2, len(low))
    assert si_sdr(out[0, 0], low) > 15 and si_sdr(out[0, 1], high) > 15


def test_griffin_lim_recovers_a_tone_spectrum() -> None:
    front = MelFrontend(MelSpec())
    wave = (tone(440.0) + tone(1250.0))[None]
    target = front.stft(wave).abs()

    def spectral_error(iters: int) -> float:
        rebuilt = front.griffin_lim(target, wave.shape[-1], iters=iters)
        return float((front.stft(rebuilt).abs() - target).norm() / target.norm())

    assert spectral_error(32) < 0.25 < spectral_error(0)


def test_vocoding_a_mel_keeps_the_level() -> None:
    front = MelFrontend(MelSpec())
    wave = (tone(220.0) + tone(660.0) + 0.05 * torch.randn(SR))[None]
    rebuilt = front.vocode(front.log_mel(wave), wave.shape[-1], iters=16)
    level = 20 * torch.log10(rebuilt.pow(2).mean().sqrt() / wave.pow(2).mean().sqrt())
    assert abs(float(level)) < 4.0  # mel smoothing and Griffin-Lim lose a little; a lost band scale is -24 dB


def test_si_sdr_and_frechet_distance() -> None:
    x = tone(300.0)
    assert si_sdr(2.0 * x, x) > 60
    assert si_sdr(torch.randn(len(x)), x) < 0
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + np.array([3.0, 0, 0])) == pytest.approx(9.0, rel=1e-3)
    env = torch.rand(100)
    assert onset_sync(env, env) == pytest.approx(1.0) and onset_sync(env, -env) == pytest.approx(-1.0)


def test_windows_overlap_add_rebuild_the_signal() -> None:
    wave = torch.randn(40000)
    parts, starts = windows(wave, 16000, 4000)
    rebuilt = overlap_add(parts[:, None], starts, len(wave), 4000)
    assert torch.allclose(rebuilt[0], wave, atol=1e-5)


def test_read_audio_resamples_and_refuses_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, tone(440.0, 1.0, 44100).numpy(), 44100)
    wave = read_audio(path, SR)
    assert len(wave) == SR
    assert abs(int(torch.fft.rfft(wave).abs().argmax()) - 440) <= 1
    assert len(resample(torch.zeros(100), 100, 100)) == 100
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00not audio")
    with pytest.raises(InputError, match="not a readable audio file"):
        read_audio(bad, SR)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(InputError, match="empty"):
        read_audio(empty, SR)
    with pytest.raises(InputError, match="no such file"):
        read_audio(tmp_path / "missing.wav", SR)


# ------------------------------------------------------------------ a tiny rendered set and models
@pytest.fixture(scope="module")
def audio_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fixture songs rendered into 4 s clips with real FluidSynth, all put in train (and one song in valid)."""
    root = tmp_path_factory.mktemp("audioset")
    midi = root / "midi"
    midi.mkdir()
    for i, qpm in enumerate((100.0, 120.0, 140.0)):
        write_midi(band_song(bars=6, qpm=qpm), midi / f"song{i}.mid")
    data = root / "data"
    assert run_cli("render-dataset", midi, "-o", data, "--clip", "4", "--workers", "1", "-q") == 0
    train = data / "train"
    train.mkdir(exist_ok=True)
    for split in ("valid", "test"):
        if (data / split).is_dir():
            for item in (data / split).iterdir():
                shutil.move(str(item), train / item.name)
    first = sorted(train.iterdir())[0]
    shutil.copytree(first, data / "valid" / first.name)
    return data


@pytest.fixture(scope="module")
def models(audio_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audiomodels")
    config = out / "tiny.toml"
    config.write_text(TINY, encoding="utf-8")
    assert run_cli("train-audio", "vae", "--data", audio_set, "-o", out / "audio-vae", "--config", config, "-q") == 0
    for kind in ("ldm", "gmsdi", "vocoder"):
        args = ("train-audio", kind, "--data", audio_set, "--vae", out / "audio-vae", "--config", config, "-q")
        assert run_cli(*args, "-o", out / f"audio-{kind}") == 0
    args = ("train-audio", "masks", "--data", audio_set, "--ldm", out / "audio-ldm", "--config", config, "-q")
    assert run_cli(*args, "-o", out / "audio-masks") == 0
    return out


def test_audio_trainers_in_two_processes(audio_set: Path, models: Path, tmp_path: Path) -> None:
    """`accelerate launch --num_processes 2` on the CPU: every audio trainer trains and saves."""
    from tests.test_distributed_training import check_run, launch

    config = tmp_path / "tiny.toml"
    config.write_text(TINY, encoding="utf-8")
    runs = {
        "vae": ("--max-steps", 2),
        "ldm": ("--vae", models / "audio-vae", "--max-steps", 2),
        "gmsdi": ("--vae", models / "audio-vae", "--max-steps", 2),
        "masks": ("--ldm", models / "audio-ldm", "--max-steps", 2),
        "vocoder": ("--vae", models / "audio-vae", "--max-steps", 2),
    }
    for kind, extra in runs.items():
        out = tmp_path / kind
        proc = launch(
            "train-audio", kind, "--data", audio_set, "--config", config, "-o", out, *extra, "-q", cwd=tmp_path
        )
        check_run(out, proc, 2)


def test_clip_set_holds_aligned_mix_and_stems(audio_set: Path) -> None:
    clips = load_clips(audio_set, "train")
    assert clips.audio.shape[1:] == (1 + len(STEMS), 4 * SR)
    assert clips.active.shape == (len(clips), len(STEMS)) and clips.active.all()  # the band plays throughout
    waves = clips.waves(np.arange(len(clips)))
    # the mix is the sum of the stems (16-bit rounding aside): the band has no parts outside STEMS
    assert np.abs(waves[:, 0] - waves[:, 1:].sum(axis=1)).max() < 1e-3
    assert (audio_set / "train-clips.npy").exists()  # cached for the next run


def test_training_writes_checkpoints_with_logs(models: Path) -> None:
    for kind in ("vae", "ldm", "gmsdi", "masks", "vocoder"):
        folder = models / f"audio-{kind}"
        config = json.loads((folder / "config.json").read_text())
        assert (folder / "model.safetensors").stat().st_size > 0
        assert len((folder / "train_log.jsonl").read_text().splitlines()) >= 2
        assert "test never read" in config["data_split"]
        assert (folder / "audio.toml").exists()
    assert json.loads((models / "audio-vae" / "config.json").read_text())["latent_scale"] > 0


def test_audio_commands_write_stems_of_the_input_length(models: Path, audio_set: Path, tmp_path: Path) -> None:
    clips = load_clips(audio_set, "train")
    mix = clips.waves(np.array([0, 1]))[:, 0].reshape(-1)  # 8 s: two windows
    mix_path = tmp_path / "mix.wav"
    sf.write(mix_path, mix, SR)
    ldm, gmsdi = models / "audio-ldm", models / "audio-gmsdi"
    out = tmp_path / "sep"
    assert run_cli("audio", "separate", mix_path, "-o", out, "--checkpoint", ldm, "--steps", "2", "-q") == 0
    for stem in STEMS:
        data, sr = sf.read(out / f"{stem}.wav")
        assert sr == SR and len(data) == len(mix)
    out_g = tmp_path / "sep_g"
    args = ("audio", "separate", mix_path, "-o", out_g, "--method", "gmsdi", "--checkpoint", gmsdi)
    assert run_cli(*args, "--steps", "2", "--stems", "bass,drums", "-q") == 0
    assert sorted(p.name for p in out_g.iterdir()) == ["bass.wav", "drums.wav"]
    new = tmp_path / "drums.wav"
    both = tmp_path / "with_drums.wav"
    args = ("audio", "insert", mix_path, "--stem", "drums", "-o", new, "--mix", both, "--checkpoint", ldm)
    assert run_cli(*args, "--steps", "2", "--seed", "3", "-q") == 0
    first = sf.read(new)[0]
    assert len(first) == len(mix) and np.abs(first).max() > 0
    assert run_cli(*args, "--steps", "2", "--seed", "3", "-q") == 0
    assert np.array_equal(sf.read(new)[0], first)  # same seed, same output
    gen = tmp_path / "gen"
    assert run_cli("audio", "generate", "--stems", "bass,piano", "--seconds", "5", "-o", gen, "--checkpoint", ldm,
                   "--steps", "2", "-q") == 0  # fmt: skip
    assert sorted(p.name for p in gen.iterdir()) == ["bass.wav", "mix.wav", "piano.wav"]
    assert len(sf.read(gen / "mix.wav")[0]) == 5 * SR


def test_eval_audio_reports_models_beside_baselines(models: Path, audio_set: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    args = ("eval-audio", "--data", audio_set, "--split", "train", "--ldm", models / "audio-ldm", "--gmsdi",
            models / "audio-gmsdi", "--limit", "3", "--steps", "2", "-o", report_path, "-q")  # fmt: skip
    assert run_cli(*args) == 0
    report = json.loads(report_path.read_text())
    sep = report["separation"]
    assert set(sep) == {"mix", "nmf", "vae_oracle", "ldm", "ldm_mel_masks", "mask_decoder_mix_only", "ldm_sample",
                        "gmsdi"}  # fmt: skip
    assert report["estimator"] == "mean" and report["masks"] == "decoder" and report["separation_x_realtime"] > 0
    assert {"clips", "si_sdr", "mel_mse", "mel_si_sdr", "si_sdri", "si_sdri_median", "mel_si_sdri"} <= set(
        sep["nmf"]["bass"]
    )
    # the mix as its own estimate improves on itself by nothing
    assert abs(sep["mix"]["bass"]["si_sdri"]) < 1e-9 and abs(sep["mix"]["drums"]["mel_si_sdri"]) < 1e-9
    assert {"borrow", "ldm", "ldm_griffin_lim", "gmsdi"} <= set(report["insertion"]["drums"])
    assert "fd" in report["generation"]["mix"]
    voc = report["vocoder"]["bass"]
    for row in ("neural/true_mel", "griffin-lim/true_mel", "neural/vae_mel", "griffin-lim/vae_mel"):
        assert {"mrstft", "mel_l1", "onset_sync", "x_realtime"} <= set(voc[row])


def test_posterior_mean_is_one_call_that_hears_the_mix(models: Path, audio_set: Path, tmp_path: Path) -> None:
    from midiarr.audio.pipeline import StemLDMPipeline

    pipe = StemLDMPipeline.load(models / "audio-ldm")
    mixes = torch.from_numpy(load_clips(audio_set, "train").waves(np.array([0, 1]))[:, 0])
    calls = []
    forward = pipe.ldm.forward
    pipe.ldm.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)  # count the network's calls
    out = pipe.separate_clips(mixes, steps=5, guidance=1.0, estimator="mean")
    assert len(calls) == 1 and out["waves"].shape == (2, len(STEMS), mixes.shape[-1])
    again = pipe.separate_clips(mixes, steps=5, guidance=1.0, estimator="mean")
    assert torch.equal(out["latents"], again["latents"])  # deterministic
    # each clip's estimate depends on its own mix ...
    assert not torch.allclose(out["latents"][0], out["latents"][1])
    # ... and at guidance 0 on no mix at all: the clips swapped, each batch slot (its noise) answers the same
    free = pipe.separate_clips(mixes, steps=5, guidance=0.0, estimator="mean")["latents"]
    assert torch.allclose(free, pipe.separate_clips(mixes.flip(0), guidance=0.0, estimator="mean")["latents"])
    heard = pipe.separate_clips(mixes.flip(0), guidance=1.0, estimator="mean")["latents"]
    assert not torch.allclose(out["latents"], heard)
    drawn = pipe.separate_clips(mixes, steps=3, guidance=2.0, estimator="sample")
    assert len(calls) == 1 + 1 + 1 + 1 + 1 + 3  # a DDIM draw calls the network once per step (both branches batched)
    assert not torch.allclose(drawn["latents"], out["latents"])
    with pytest.raises(OptionError, match="--estimator"):
        pipe.separate_clips(mixes, estimator="median")
    mix_path = tmp_path / "mix.wav"
    sf.write(mix_path, mixes.reshape(-1).numpy(), SR)
    for estimator in ("mean", "sample"):
        out_dir = tmp_path / estimator
        args = ("audio", "separate", mix_path, "-o", out_dir, "--checkpoint", models / "audio-ldm")
        assert run_cli(*args, "--estimator", estimator, "--steps", "2", "-q") == 0
        assert len(sf.read(out_dir / "bass.wav")[0]) == mixes.numel()


def test_latent_training_continues_from_a_checkpoint(models: Path, audio_set: Path, tmp_path: Path) -> None:
    from midiarr.audio.ldm import load_ldm

    config = tmp_path / "tiny.toml"
    config.write_text(TINY, encoding="utf-8")
    base = ("train-audio", "ldm", "--data", audio_set, "--vae", models / "audio-vae", "--config", config, "-q")
    out = tmp_path / "more"
    assert run_cli(*base, "-o", out, "--init-from", models / "audio-ldm", "--max-steps", "1") == 0
    meta = json.loads((out / "config.json").read_text())
    assert meta["init_from"]["path"] == str(models / "audio-ldm") and meta["init_from"]["step"] is not None
    before, _ = load_ldm(models / "audio-ldm")
    after, _ = load_ldm(out)
    # one step with EMA 0.9 moves the weights a little from where they were, not from a fresh start
    drift = [float((a - b).detach().abs().max()) for a, b in zip(after.parameters(), before.parameters(), strict=True)]
    assert 0 < max(drift) < 0.05
    for init, message in ((models / "audio-vae", "expected 'stem-ldm'"), (tmp_path, "not an audio model")):
        proc = run_cli_process(*base, "-o", tmp_path / "bad", "--init-from", init)
        assert proc.returncode != 0 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli_process("train-audio", "vae", "--data", audio_set, "-o", tmp_path / "v", "--init-from", out)
    assert proc.returncode != 0 and "no --init-from" in proc.stderr


def test_audio_command_errors_are_one_line(tmp_path: Path, models: Path) -> None:
    wav = tmp_path / "x.wav"
    sf.write(wav, tone(220.0).numpy(), SR)
    ldm = models / "audio-ldm"
    gmsdi_insert = ("audio", "insert", wav, "--stem", "bass", "-o", tmp_path / "o.wav", "--method", "gmsdi")
    cases = [
        (("audio", "insert", wav, "--stem", "kazoo", "-o", tmp_path / "o.wav", "--checkpoint", ldm), "unknown stem"),
        (("audio", "separate", tmp_path / "none.wav", "-o", tmp_path / "s", "--checkpoint", ldm), "no such file"),
        (("audio", "insert", wav, "--stem", "bass", "-o", wav, "--checkpoint", ldm), "overwrite the input"),
        (("audio", "separate", wav, "-o", tmp_path / "s", "--checkpoint", tmp_path), "not an audio model"),
        (("audio", "separate", wav, "-o", tmp_path / "s", "--steps", "0", "--checkpoint", ldm), "--steps"),
        (("train-audio", "ldm", "--data", tmp_path, "-o", tmp_path / "m"), "needs --vae"),
        (("train-audio", "masks", "--data", tmp_path, "-o", tmp_path / "m", "--ldm", tmp_path / "none"), "checkpoint"),
        (("audio", "separate", wav, "-o", tmp_path / "s", "--masks", "fine"), "invalid choice"),
        (("audio", "insert", wav, "--stem", "bass", "-o", tmp_path / "o.wav", "--vocoder", "x"), "invalid choice"),
        (("audio", "insert", wav, "--stem", "bass", "-o", tmp_path / "o.wav", "--level", "loud"), "invalid choice"),
        ((*gmsdi_insert, "--estimator", "mean"), "--estimator"),
        (("audio", "separate", wav, "-o", tmp_path / "s", "--method", "gmsdi", "--estimator", "mean"), "--estimator"),
    ]
    for args, message in cases:
        proc = run_cli_process(*args)
        assert proc.returncode != 0, args
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_arrange_runs_the_whole_chain(models: Path, tmp_path: Path) -> None:
    song = band_song(bars=4)
    song.tracks = [t for t in song.tracks if t.name != "Bass"]
    src = tmp_path / "no_bass.mid"
    write_midi(song, src)
    out = tmp_path / "arranged"
    args = ("arrange", src, "--stem", "bass", "-o", out, "--audio", "--checkpoint", models / "audio-ldm")
    assert run_cli(*args, "--steps", "2", "-q") == 0
    names = {p.name for p in out.iterdir()}
    assert {"song.mid", "mix.wav", "bass.wav", "audio_bass.wav", "audio_mix.wav"} <= names
    rendered, sr = sf.read(out / "mix.wav")
    audio_mix, audio_sr = sf.read(out / "audio_mix.wav")
    assert sr == 44100 and audio_sr == SR
    assert abs(len(audio_mix) / audio_sr - len(rendered) / sr) < 0.01
    proc = run_cli_process("arrange", src, "--stem", "strings", "-o", out, "--audio")
    assert proc.returncode != 0 and "audio models write" in proc.stderr


# ------------------------------------------------------------------ mask decoder and vocoder
def test_untrained_mask_decoder_separates_as_the_mel_masks(audio_set: Path) -> None:
    """Its logits start from the LDM path's ratio masks: before training it cuts the same stems; its masks
    sum to one, so the stems and "other" add up to the mix."""
    from midiarr.audio.masks import SOURCES, MaskDecoder, MaskDecoderConfig

    spec = MelSpec()
    front = MelFrontend(spec)
    decoder = MaskDecoder(MaskDecoderConfig(channels=16, depth=1, dilations=(1,)), spec)
    waves = torch.from_numpy(load_clips(audio_set, "train").waves(np.array([0, 1])))
    mix, stems = waves[:, 0], waves[:, 1:]
    b, k, n = stems.shape
    mels = front.mel_amplitude(stems.reshape(b * k, n)).reshape(b, k, spec.n_mels, -1) * 0.8  # an imperfect estimate
    with torch.no_grad():
        ours = decoder.separate(mix, mels)
        masks = decoder(front.stft(mix).abs(), mels)
        alone = decoder.separate(mix, None)
    reference = front.masked_sources(mix, mels, floor=front.mel_amplitude(mix))
    for i in range(b):
        for j in range(k):
            assert si_sdr(ours[i, j], reference[i, j]) > 30.0
    assert masks.shape[1] == SOURCES and torch.allclose(masks.sum(dim=1), torch.ones(()), atol=1e-5)
    # with no estimate and untrained, every source gets an equal share
    assert torch.allclose(alone[:, 0], mix / SOURCES, atol=1e-4)


def test_vocoder_loss_falls_when_fitting_a_sound() -> None:
    """A small vocoder fitted to one second of a plucked chord gets closer to it, by both distances the
    evaluation uses, than where it started: by more than half; the mel corrections after the network bring
    its mel closer still."""
    from midiarr.audio.vocoder import MelVocoder, VocoderConfig, mel_l1, multi_resolution_stft

    torch.manual_seed(0)
    spec = MelSpec()
    front = MelFrontend(spec)
    t = torch.arange(63 * spec.hop) / SR
    decay = torch.exp(-4 * (t % 0.25))  # a pluck every quarter second
    wave = (decay * sum(torch.sin(2 * math.pi * f * t) for f in (196.0, 247.0, 294.0)) * 0.1)[None]
    log_mel = front.log_mel(wave)
    model = MelVocoder(VocoderConfig(channels=32, depth=2), spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def distance(corrections: int = 0) -> tuple[float, float]:
        with torch.no_grad():
            out = model(log_mel, wave.shape[-1], corrections=corrections)
        return float(multi_resolution_stft(out, wave)), float(mel_l1(front, out, wave))

    start = distance()
    for _ in range(150):
        out = model(log_mel, wave.shape[-1], corrections=0)
        loss = mel_l1(front, out, wave) + multi_resolution_stft(out, wave)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = distance()
    assert end[0] < 0.5 * start[0] and end[1] < 0.5 * start[1]
    assert distance(corrections=2)[1] < end[1]


def test_mel_corrections_move_a_wave_to_the_given_mel() -> None:
    """A chord at the wrong level, corrected towards the mel of the right one: the mel error shrinks each
    round, the pitch content stays (it is still the same chord, not noise shaped like it)."""
    from midiarr.audio.vocoder import mel_consistent

    spec = MelSpec()
    front = MelFrontend(spec)
    t = torch.arange(SR) / SR
    chord = sum(torch.sin(2 * math.pi * f * t) for f in (220.0, 277.0, 330.0))[None] * 0.05
    louder_top = chord + 0.1 * torch.sin(2 * math.pi * 330.0 * t)[None]
    target = front.log_mel(louder_top)
    errors = [float((front.log_mel(mel_consistent(front, chord, target, n)) - target).abs().mean()) for n in (0, 1, 2)]
    assert errors[2] < errors[1] < errors[0]
    assert si_sdr(mel_consistent(front, chord, target, 2)[0], louder_top[0]) > 10.0


def test_stem_commands_use_the_trained_decoders(models: Path, audio_set: Path, tmp_path: Path) -> None:
    """The mask decoder and vocoder beside the stem LDM are used by default; --masks mel and --vocoder
    griffin-lim choose the older paths; a mask decoder trained on another LDM is not used."""
    from midiarr.audio.pipeline import StemLDMPipeline, find_mask_decoder

    pipe = StemLDMPipeline.load(models / "audio-ldm")
    assert pipe.masks is not None and pipe.vocoder is not None
    mix = load_clips(audio_set, "train").waves(np.array([0]))[0, 0]
    mix_path = tmp_path / "mix.wav"
    sf.write(mix_path, mix, SR)
    ldm = ("--checkpoint", models / "audio-ldm", "--steps", "2", "-q")
    outs = {}
    for masks in ("decoder", "mel"):
        assert run_cli("audio", "separate", mix_path, "-o", tmp_path / masks, "--masks", masks, *ldm) == 0
        outs[masks] = sf.read(tmp_path / masks / "guitar.wav")[0]
    assert run_cli("audio", "separate", mix_path, "-o", tmp_path / "default", *ldm) == 0
    assert np.array_equal(sf.read(tmp_path / "default" / "guitar.wav")[0], outs["decoder"])
    assert not np.allclose(outs["decoder"], outs["mel"])
    written = {}
    for vocoder in ("neural", "griffin-lim"):
        out = tmp_path / f"{vocoder}.wav"
        assert run_cli("audio", "insert", mix_path, "--stem", "bass", "-o", out, "--vocoder", vocoder, *ldm) == 0
        written[vocoder] = sf.read(out)[0]
        assert len(written[vocoder]) == len(mix)
    assert not np.allclose(written["neural"], written["griffin-lim"])
    # a mask decoder is tied to the LDM whose estimates it learned from
    other = tmp_path / "other"
    shutil.copytree(models / "audio-ldm", other / "audio-ldm")
    shutil.copytree(models / "audio-masks", other / "audio-masks")
    assert find_mask_decoder(other / "audio-ldm") is not None
    config = json.loads((other / "audio-masks" / "config.json").read_text())
    (other / "audio-masks" / "config.json").write_text(json.dumps({**config, "ldm_digest": "0" * 12}))
    assert find_mask_decoder(other / "audio-ldm") is None
    proc = run_cli_process("audio", "separate", mix_path, "-o", tmp_path / "x", "--masks", "decoder",
                           "--checkpoint", other / "audio-ldm")  # fmt: skip
    assert proc.returncode == 2 and "no mask decoder" in proc.stderr


def test_an_inserted_stem_sits_under_the_rest_of_the_song_at_its_stems_level() -> None:
    from midiarr.audio.levels import MAX_GAIN_DB, match_level, rms_db

    gen = torch.Generator().manual_seed(0)
    partial = torch.randn((3, 4000), generator=gen) * torch.tensor([[0.1], [0.01], [0.0]])
    written = torch.randn((3, 2, 4000), generator=gen) * 0.3
    written[1, 0] = 0.0  # a silent written stem stays silent
    written[0, 0] *= 1e-3  # one the model left near silence is raised by MAX_GAIN_DB at most
    out = match_level(written, partial, ["bass", "piano"], {"bass": -6.0})
    rest, level, before = rms_db(partial), rms_db(out), rms_db(written)
    assert abs(level[0, 0] - (before[0, 0] + MAX_GAIN_DB)) < 0.01 and level[0, 0] < rest[0] - 6.0
    assert torch.equal(out[1, 0], written[1, 0])
    assert torch.equal(out[:, 1], written[:, 1])  # no offset for the piano: as written
    assert torch.equal(out[2], written[2])  # nothing else in the clip: no level to match
    loud = match_level(written[:1] * 1e3, partial[:1], ["bass"], {"bass": -6.0})  # the bass 20 dB over the rest
    assert abs(rms_db(loud)[0, 0] - (rest[0] - 6.0)) < 0.01


def test_level_offsets_are_the_stems_level_under_the_rest(tmp_path: Path) -> None:
    from midiarr.audio.data import ClipSet
    from midiarr.audio.levels import level_offsets

    rng = np.random.default_rng(0)
    n, samples = 40, 2000
    stems = rng.standard_normal((n, len(STEMS), samples)) * 0.05
    stems[:, 0] *= 10 ** (-6 / 20)  # bass 6 dB under the drums, guitar and piano, one at a time
    stems[:20, 3] = 0.0  # the piano is silent in half the clips
    mix = stems.sum(axis=1, keepdims=True)
    audio = np.round(np.concatenate([mix, stems], axis=1) * 32768).astype(np.int16)
    clips = ClipSet(audio, np.ones((n, len(STEMS)), bool), np.zeros(n, bool), [str(i) for i in range(n)], SR)
    offsets = level_offsets(clips)
    # bass against drums + guitar + piano (three parts of equal level, or two where the piano rests)
    assert abs(offsets["bass"]["median"] - (-6 - 10 * np.log10(2.5))) < 1.0
    assert offsets["piano"]["clips"] == 20


def test_insertion_sets_the_level_unless_asked_for_the_models(models: Path, audio_set: Path) -> None:
    from midiarr.audio.levels import rms_db
    from midiarr.audio.pipeline import StemLDMPipeline
    from midiarr.audio.tuned import INSERT_LEVEL_DB

    pipe = StemLDMPipeline.load(models / "audio-ldm")
    waves = torch.from_numpy(load_clips(audio_set, "train").waves(np.array([0, 1])))[..., : pipe.spec.clip_samples]
    partial = waves[:, 0] - waves[:, 2]
    song = pipe.insert_clips(partial, ["drums"], steps=2, seed=1)["waves"]
    model = pipe.insert_clips(partial, ["drums"], steps=2, seed=1, level="model")["waves"]
    drawn = pipe.insert_clips(partial, ["drums"], steps=2, seed=1, estimator="sample")["waves"]
    assert not torch.equal(drawn, song)  # the posterior mean by default, a DDIM draw when asked
    assert np.allclose(rms_db(song[:, 0]), rms_db(partial) + INSERT_LEVEL_DB["drums"], atol=0.05)
    # the same sound, only its gain moved
    ratio = (song[:, 0] * model[:, 0]).sum(dim=-1) / (model[:, 0].norm(dim=-1) * song[:, 0].norm(dim=-1))
    assert torch.allclose(ratio, torch.ones(2, dtype=ratio.dtype), atol=1e-5)
    with pytest.raises(OptionError, match="--level"):
        pipe.insert_clips(partial, ["drums"], steps=2, level="loud")


def test_the_level_fit_says_in_one_line_when_there_are_no_clips(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "midiarr.audio.levels", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "no rendered clips" in proc.stderr
