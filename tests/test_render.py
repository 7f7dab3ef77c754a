import builtins
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from midiarr.render import SoundFontError, render, render_to_dir, resolve_soundfont
from midiarr.render.dataset import render_dataset
from midiarr.render.synth import RenderError, load_fluidsynth
from midiarr.song import Note, Song, Tempo, TimeSignature, Track, notes_array
from tests.conftest import run_cli

SR = 16000


@pytest.fixture(scope="module")
def band_audio():
    from midiarr.fixtures import band_song

    return render(band_song(bars=4), soundfont="timgm", sr=SR)


def test_stems_sum_to_the_mix_and_align(band_audio):
    stems = {k: v for k, v in band_audio.items() if k != "mix"}
    assert set(stems) == {"bass", "drums", "guitar", "piano"}
    lengths = {len(v) for v in band_audio.values()}
    assert len(lengths) == 1
    total = sum(stems.values())
    assert np.abs(total - band_audio["mix"]).max() < 1e-6
    assert band_audio["mix"].shape[1] == 2 and band_audio["mix"].dtype == np.float32


def test_drums_are_audible_on_the_beat(band_audio):
    drums = band_audio["drums"].mean(axis=1)
    assert np.sqrt(np.mean(drums**2)) > 1e-3
    beat = SR // 2  # 120 qpm
    near = np.abs(drums[beat : beat + 400]).max()
    before = np.abs(drums[beat - 2400 : beat - 1600]).max()  # the 8th-note hat sits between beats
    assert near > 0.05 and near > 2 * before


def test_a_stem_with_no_notes_is_silent():
    song = Song(
        tracks=[
            Track(name="Bass", program=33, notes=notes_array([Note(0, 480, 40, 100)])),
            Track(name="Strings", program=48),
        ]
    )
    audio = render(song, soundfont="timgm", sr=SR)
    assert "strings" in audio
    assert not np.any(audio["strings"])
    assert np.any(audio["bass"])


def test_silence_is_not_synthesized_and_nothing_changes_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no voice sounds until the next event the synthesizer is not run: the song comes out the same, bit for
    bit, as when every sample is synthesized, gaps, release tails and the notes after the gaps included."""
    from midiarr.fixtures import band_song
    from midiarr.render import synth

    song = band_song(bars=6)
    for track in song.tracks:  # bars 3 and 4 silent in every part: a gap of 4 s
        bar = song.bar_index(track.notes["start"])
        track.notes = track.notes[(bar < 2) | (bar > 3)]
    skipped = render(song, soundfont="timgm", sr=SR)
    calls = []
    original = synth.Synthesizer.__init__

    def synthesize_everything(self: synth.Synthesizer, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        self._active_voices = lambda fs_synth: calls.append(1) or 1  # as if a voice always sounded

    monkeypatch.setattr(synth.Synthesizer, "__init__", synthesize_everything)
    monkeypatch.setattr(synth, "_CACHE", {})  # a fresh synthesizer, built by the patched __init__
    full = render(song, soundfont="timgm", sr=SR)
    assert calls, "the second render must synthesize every span"
    assert skipped.keys() == full.keys()
    for name in full:
        assert np.array_equal(skipped[name], full[name]), name
    gap = skipped["mix"][int(7 * SR) : int(8 * SR)]
    assert not np.any(gap)  # the gap is silence once the tails of bar 2 have died


def test_note_after_a_tempo_change_starts_on_time():
    song = Song(
        ticks_per_beat=480, tempos=[Tempo(0, 120.0), Tempo(1920, 60.0)], time_signatures=[TimeSignature(0, 4, 4)]
    )
    tick = 1920 + 3 * 480 + 240  # in the second bar, at 60 qpm: 2 s + 3.5 s
    song.tracks.append(Track(name="Piano", program=0, notes=notes_array([Note(tick, 480, 72, 110)])))
    audio = render(song, soundfont="timgm", sr=44100)["piano"].mean(axis=1)
    onset = int(np.argmax(np.abs(audio) > 1e-3))
    expected = song.tick_to_seconds(tick) * 44100
    assert expected == pytest.approx(5.5 * 44100)
    assert abs(onset - expected) / 44100 < 0.005


def test_pitch_bend_and_volume_are_played():
    from midiarr.song import CONTROL_DTYPE

    loud = Track(name="Lead", program=80, notes=notes_array([Note(0, 1920, 69, 100)]))
    soft = loud.copy()
    soft.controls = np.array([(0, 7, 30)], dtype=CONTROL_DTYPE)
    a = render(Song(tracks=[loud]), soundfont="timgm", sr=SR)["lead"]
    b = render(Song(tracks=[soft]), soundfont="timgm", sr=SR)["lead"]
    assert np.abs(b).max() < 0.5 * np.abs(a).max()


def test_rendering_is_deterministic(band_audio):
    from midiarr.fixtures import band_song

    again = render(band_song(bars=4), soundfont="timgm", sr=SR)
    assert all(np.array_equal(again[k], band_audio[k]) for k in band_audio)


def test_render_to_dir_keeps_the_sum_with_one_gain(tmp_path, band):
    written = render_to_dir(band, tmp_path, soundfont="timgm", sr=SR, loudness_dbfs=-16.0)
    assert set(written) == {"mix", "bass", "drums", "guitar", "piano"}
    data = {k: sf.read(p)[0] for k, p in written.items()}
    assert len({len(v) for v in data.values()}) == 1
    total = sum(v for k, v in data.items() if k != "mix")
    assert np.abs(total - data["mix"]).max() < 1e-4
    rms = 20 * np.log10(np.sqrt(np.mean(data["mix"] ** 2)))
    assert rms <= -16.0 + 0.1  # the level asked for, or lower where the -1 dBFS peak ceiling holds it back
    assert np.abs(data["mix"]).max() <= 10 ** (-1 / 20) + 1e-4


def test_bad_soundfonts_are_clear(tmp_path):
    with pytest.raises(SoundFontError, match="no such file"):
        resolve_soundfont(tmp_path / "missing.sf2")
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    with pytest.raises(SoundFontError, match="not a SoundFont"):
        resolve_soundfont(fake)


def test_missing_library_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_fluidsynth(name, *args, **kwargs):
        if name == "fluidsynth":
            raise ImportError("Couldn't find the FluidSynth library.")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fluidsynth)
    with pytest.raises(RenderError, match="apt-get install fluidsynth"):
        load_fluidsynth()


def test_render_dataset_clips_meta_and_resume(tmp_path):
    from midiarr.fixtures import band_song
    from midiarr.io import write_midi

    for i in range(2):
        write_midi(band_song(bars=8 + 2 * i), tmp_path / "src" / f"s{i}.mid")
    out = tmp_path / "audio"
    totals = render_dataset(
        tmp_path / "src", out, sr=SR, clip_seconds=4.0, soundfont="timgm", workers=1, progress=False
    )
    assert totals["errors"] == 0 and totals["items_written"] > 4
    metas = sorted(out.rglob("meta.json"))
    assert len(metas) == totals["items_written"]
    meta = json.loads(metas[0].read_text())
    assert meta["clip"]["index"] == 0 and meta["sr"] == SR
    assert set(meta["stems"]) == {"bass", "drums", "guitar", "piano"}
    assert meta["bar_times"][0] == 0.0
    folder = metas[0].parent
    mix, sr = sf.read(folder / "mix.wav")
    assert sr == SR and len(mix) == 4 * SR and mix.ndim == 1
    again = render_dataset(tmp_path / "src", out, sr=SR, clip_seconds=4.0, soundfont="timgm", workers=1, progress=False)
    assert again["songs_skipped_done"] == 2 and again["items_written"] == 0


def test_render_cli(tmp_path, band_file, capsys):
    assert (
        run_cli(
            "render",
            band_file,
            "-o",
            tmp_path / "out",
            "--stems",
            "--soundfont",
            "timgm",
            "--sr",
            "16000",
            "--format",
            "flac",
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "bass.flac",
        "drums.flac",
        "guitar.flac",
        "mix.flac",
        "piano.flac",
    ]
    assert run_cli("render", band_file, "-o", tmp_path / "x", "--soundfont", str(band_file)) == 1
    assert "not a SoundFont" in capsys.readouterr().err


def test_overlong_song_is_refused(monkeypatch):
    import midiarr.render.synth as synth_mod

    monkeypatch.setattr(synth_mod, "MAX_RENDER_SECONDS", 1)
    song = Song(tracks=[Track(name="Bass", program=33, notes=notes_array([Note(0, 4800, 40, 100)]))])
    with pytest.raises(RenderError, match="limited to"):
        render(song, soundfont="timgm", sr=SR)


def test_render_dataset_cli(tmp_path, band, capsys):
    from midiarr.io import write_midi

    write_midi(band, tmp_path / "src" / "a.mid")
    assert (
        run_cli(
            "render-dataset",
            tmp_path / "src",
            "-o",
            tmp_path / "ds",
            "--sr",
            "16000",
            "--soundfont",
            "timgm",
            "--workers",
            "1",
        )
        == 0
    )
    assert "items written: 1" in capsys.readouterr().out
    meta = json.loads(next((tmp_path / "ds").rglob("meta.json")).read_text())
    assert meta["clip"] is None and len(meta["bar_times"]) == 8
    assert run_cli("render-dataset", tmp_path / "src", "-o", tmp_path / "ds", "--clip", "-3") == 2


# ---------------------------------------------------------------- stems in processes
def _busy_band() -> Song:
    """The fixture band plus a second piano and a string part, so several roles hold several tracks."""
    from midiarr.fixtures import band_song

    song = band_song(bars=6)
    strings = Track(name="Strings", program=48, notes=notes_array([Note(b * 1920, 1920, 55 + b, 70) for b in range(6)]))
    organ = song.tracks[0].copy()
    organ.name, organ.program = "Piano 2", 1
    song.tracks += [strings, organ]
    return song


@pytest.mark.parametrize("soundfont", ["timgm", "fluidr3"])
def test_stems_are_the_same_for_any_number_of_workers(soundfont):
    from midiarr.render import fluidr3_soundfont, synthesizer

    if soundfont == "fluidr3" and fluidr3_soundfont() is None:
        pytest.skip("FluidR3_GM is not installed")
    song = _busy_band()
    synth = synthesizer(soundfont, SR)
    one = synth.render(song, workers=1)
    assert list(one.stems) == ["drums", "bass", "guitar", "piano", "strings"]  # role order
    for workers in (2, 3, 8):
        other = synth.render(song, workers=workers)
        assert list(other.stems) == list(one.stems)
        for role in one.stems:
            assert np.array_equal(other.stems[role], one.stems[role]), (workers, role)
        assert np.array_equal(other.mix, one.mix)


def test_the_mix_is_the_stems_added_in_role_order():
    out = render(_busy_band(), soundfont="timgm", sr=SR, workers=2)
    mix = out.pop("mix")
    expected = np.zeros_like(mix)
    for audio in out.values():
        expected += audio
    assert np.array_equal(mix, expected)


def test_a_stem_is_the_part_rendered_alone():
    """No stem depends on the other parts (one FluidSynth instance per stem)."""
    song = _busy_band()
    whole = render(song, soundfont="timgm", sr=SR, workers=2)
    piano_only = Song(ticks_per_beat=song.ticks_per_beat, tempos=song.tempos, time_signatures=song.time_signatures)
    piano_only.tracks = [song.tracks[0], song.tracks[-1]]
    alone = render(piano_only, soundfont="timgm", sr=SR, workers=1)["piano"]
    n = len(alone)
    assert np.array_equal(whole["piano"][:n], alone)
    assert not np.any(whole["piano"][n:])  # the whole song only runs longer with silence


def test_a_failing_worker_is_one_clear_error_and_leaves_no_process(monkeypatch):
    import os

    from midiarr.render.synth import Synthesizer

    def broken(self, song, stem, out):
        raise RenderError(f"could not render the {stem.role}")

    def children() -> set[int]:  # this process's children, zombies included, from /proc
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                found.add(int(stat.parent.name))
        return found

    before = children()
    monkeypatch.setattr(Synthesizer, "_render_stem", broken)
    with pytest.raises(RenderError, match="could not render the "):
        render(_busy_band(), soundfont="timgm", sr=SR, workers=3)
    assert children() == before  # every worker was reaped


def test_render_cli_writes_the_same_files_for_any_workers(tmp_path):
    from midiarr.io import save

    save(_busy_band(), tmp_path / "song.mid")
    for workers in ("1", "2"):
        assert run_cli("render", tmp_path / "song.mid", "--stems", "--soundfont", "timgm", "--sr", SR,
                       "--workers", workers, "-o", tmp_path / workers, "-q") == 0  # fmt: skip
    names = sorted(p.name for p in (tmp_path / "1").iterdir())
    assert names == ["bass.wav", "drums.wav", "guitar.wav", "mix.wav", "piano.wav", "strings.wav"]
    for name in names:
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes(), name
    assert run_cli("render", tmp_path / "song.mid", "--workers", "0", "-o", tmp_path / "x") == 2


def test_write_audio_encodes_as_libsndfile_does_in_one_call(tmp_path):
    from midiarr.render import write_audio

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((200_000, 2)) * 0.4).astype(np.float32)  # some samples past full scale
    for bits in (16, 24):
        write_audio(tmp_path / f"chunks{bits}.wav", audio, SR, bits=bits, gain=0.7)
        sf.write(tmp_path / f"whole{bits}.wav", np.clip(audio * 0.7, -1, 1), SR, subtype=f"PCM_{bits}")
        assert (tmp_path / f"chunks{bits}.wav").read_bytes() == (tmp_path / f"whole{bits}.wav").read_bytes()
    write_audio(tmp_path / "mono.flac", audio, SR, mono=True)
    data, _ = sf.read(tmp_path / "mono.flac", dtype="float32")
    assert data.ndim == 1 and np.abs(data - np.clip(audio.mean(axis=1), -1, 1)).max() < 2e-7


@pytest.mark.parametrize("frames", [0, 1, 3, 4, 65_537])
@pytest.mark.parametrize("mono", [False, True])
def test_the_24_bit_wav_encoder_writes_libsndfiles_bytes_at_the_edges(tmp_path, frames, mono):
    """midiarr encodes 24-bit WAV itself (a third of libsndfile's time); full scale, past it, the smallest
    steps, a mono file's pad byte and an empty file must come out as libsndfile writes them."""
    from midiarr.render import write_audio

    rng = np.random.default_rng(frames)
    audio = (rng.standard_normal((frames, 2)) * 0.6).astype(np.float32)
    edges = np.array([1.0, -1.0, 1.5, -1.5, 2.0**-31, -(2.0**-31), 2.0**-9, -(2.0**-9)], dtype=np.float32)
    audio.reshape(-1)[: min(len(edges), audio.size)] = edges[: audio.size]
    for gain in (1.0, 0.7):
        mine = write_audio(tmp_path / f"mine{gain}.wav", audio, SR, gain=gain, mono=mono)
        scaled = audio * gain if gain != 1.0 else audio
        scaled = scaled.mean(axis=1, keepdims=True) if mono else scaled
        sf.write(tmp_path / f"lib{gain}.wav", np.clip(scaled, -1, 1), SR, subtype="PCM_24", format="WAV")
        assert mine.read_bytes() == (tmp_path / f"lib{gain}.wav").read_bytes()
