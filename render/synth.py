"""SoundFont synthesis of a `Song` into sample-aligned stems and their mix, with FluidSynth.

One FluidSynth instance renders the whole song in one pass. Each stem role owns an
audio group of the synth (FluidSynth sends MIDI channel c to group c mod groups),
so every stem comes out of the same pass on its own buffer: the stems are aligned
to the sample, and their sum is the mix by construction. Reverb and chorus are off
because FluidSynth runs them on shared effect buses that cannot be split by stem.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from midiarr.errors import MidiarrError
from midiarr.render.soundfonts import SoundFontError, resolve_soundfont
from midiarr.roles import ROLES, assign_roles
from midiarr.song import Song

GROUPS = 8  # one audio group per role (7 roles), a power of two for the channel arithmetic
MIDI_CHANNELS = 256
BLOCK = 8192  # samples synthesized per call
# Longest song rendered: every stem is held in memory (30 min at 44.1 kHz stereo is ~635 MB a stem).
MAX_RENDER_SECONDS = 30 * 60
FLUID_BLOCK = 64  # FluidSynth applies events at its 64-sample block boundaries
CHANNEL_TYPE_MELODIC, CHANNEL_TYPE_DRUM = 0, 1
_ROLE_GROUP = {role: i for i, role in enumerate(ROLES)}
# Event kinds, in the order they apply when they fall on the same sample.
_NOTE_OFF, _CONTROL, _BEND, _NOTE_ON = 0, 1, 2, 3
_SKIPPED_CONTROLS = {0, 32}  # bank select acts through program_select, not as a live control


class RenderError(MidiarrError):
    """The synthesizer cannot run (library missing, SoundFont refused)."""


def load_fluidsynth() -> object:
    """The pyfluidsynth module, or a `RenderError` that says how to install libfluidsynth."""
    try:
        import fluidsynth
    except (ImportError, OSError) as exc:
        raise RenderError(
            "libfluidsynth was not found (" + str(exc).strip().splitlines()[0] + "); install it with "
            "'apt-get install fluidsynth' on Debian/Ubuntu, 'brew install fluid-synth' on macOS, "
            "or run scripts/setup.sh"
        ) from None
    return fluidsynth


@dataclass
class Rendered:
    """Audio of one song: a float32 (samples, 2) array per stem role and the mix."""

    sr: int
    stems: dict[str, np.ndarray]
    mix: np.ndarray

    @property
    def seconds(self) -> float:
        """Length in seconds."""
        return len(self.mix) / self.sr


class Synthesizer:
    """Renders songs with one SoundFont at one sample rate.

    Each song gets a fresh FluidSynth instance: a reused one carries voice state from
    the previous song into the next, so the same song would not render bit-identically.
    The SoundFont's samples stay loaded (FluidSynth shares them between instances while
    one holds them), so a fresh instance costs about 10 ms (TimGM6mb) to 110 ms (FluidR3).
    """

    def __init__(
        self,
        soundfont: str | os.PathLike[str] | None = None,
        sr: int = 44100,
        gain: float = 0.3,
        tail_seconds: float = 1.5,
        polyphony: int = 1024,
        cpu_cores: int | None = None,
    ) -> None:
        if not 8000 <= int(sr) <= 96000:
            raise RenderError(f"sample rate {sr} is outside 8000..96000 Hz")
        fs = load_fluidsynth()
        self.soundfont = resolve_soundfont(soundfont)
        self.sr = int(sr)
        self.tail_seconds = float(tail_seconds)
        self._fs = fs
        _silence_fluidsynth_log(fs)
        self._settings = {
            "synth.audio-channels": GROUPS,
            "synth.audio-groups": GROUPS,
            "synth.reverb.active": 0,
            "synth.chorus.active": 0,
            "synth.polyphony": int(polyphony),
            # FluidSynth renders voices on extra threads; the output stays bit-identical
            "synth.cpu-cores": int(cpu_cores or min(2, os.cpu_count() or 1)),
        }
        self._gain = float(gain)
        lib = fs._fl
        self._process = lib.fluid_synth_process
        self._process.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.POINTER(ctypes.c_float)),
        ]
        self._process.restype = ctypes.c_int
        self._set_channel_type = lib.fluid_synth_set_channel_type
        self._set_channel_type.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self._buffer = np.zeros((2 * GROUPS, BLOCK), dtype=np.float32)
        row = ctypes.POINTER(ctypes.c_float)
        self._pointers = (row * (2 * GROUPS))(*[self._buffer[i].ctypes.data_as(row) for i in range(2 * GROUPS)])
        self._lock = threading.Lock()
        self._holder, _ = self._new_synth()  # keeps the samples loaded between songs
        self._synth = self._holder

    def _new_synth(self) -> tuple[object, int]:
        synth = self._fs.Synth(gain=self._gain, samplerate=float(self.sr), channels=MIDI_CHANNELS, **self._settings)
        sfid = synth.sfload(str(self.soundfont))
        if sfid < 0:
            synth.delete()
            raise SoundFontError(f"SoundFont {self.soundfont}: FluidSynth could not load it (damaged file?)")
        self._sfid = sfid
        return synth, sfid

    def close(self) -> None:
        """Free the synthesizer and the SoundFont it holds."""
        self._holder.delete()

    # --------------------------------------------------------------- setup
    def _assign_channels(self, song: Song, roles: dict[int, str]) -> list[int]:
        """A MIDI channel per track, chosen so that channel mod GROUPS is the track's role group."""
        used: dict[int, int] = {}
        channels = []
        for index, track in enumerate(song.tracks):
            group = _ROLE_GROUP[roles[index]]
            k = used.get(group, 0)
            used[group] = k + 1
            channel = group + GROUPS * (k % (MIDI_CHANNELS // GROUPS))
            channels.append(channel)
            self._set_channel_type(
                self._synth.synth, channel, CHANNEL_TYPE_DRUM if track.is_drum else CHANNEL_TYPE_MELODIC
            )
            bank = 128 if track.is_drum else _initial_bank(track.controls)
            if self._synth.program_select(channel, self._sfid, bank, int(track.program)) != 0:
                # the SoundFont lacks that preset: fall back to the bank's first program, as GM players do
                fallback = (128, 0) if track.is_drum else (0, int(track.program))
                self._synth.program_select(channel, self._sfid, *fallback)
        return channels

    # -------------------------------------------------------------- render
    def render(self, song: Song, roles: dict[int, str] | None = None) -> Rendered:
        """Every stem role of the song and the mix, all the same length, in one pass."""
        roles = roles if roles is not None else assign_roles(song)
        minutes = (song.duration_seconds + self.tail_seconds) / 60
        if minutes * 60 > MAX_RENDER_SECONDS:
            raise RenderError(
                f"the song is {minutes:.0f} minutes long; rendering is limited to {MAX_RENDER_SECONDS // 60} minutes"
            )
        with self._lock:
            self._synth, _ = self._new_synth()
            try:
                by_group, total = self._render_groups(song, roles)
            finally:
                self._synth.delete()
                self._synth = self._holder
        stems = {ROLES[g]: audio for g, audio in by_group.items()}
        mix = np.zeros((total, 2), dtype=np.float32)
        for audio in stems.values():
            mix += audio
        return Rendered(sr=self.sr, stems=stems, mix=mix)

    def _render_groups(self, song: Song, roles: dict[int, str]) -> tuple[dict[int, np.ndarray], int]:
        """Audio per role group from the current synth instance, and the length in samples."""
        channels = self._assign_channels(song, roles)
        events = _event_table(song, channels, self.sr)
        end = int(events["sample"].max()) if len(events) else 0
        # a whole number of FluidSynth blocks, so every event lands on a block boundary
        total = -(-(end + round(self.tail_seconds * self.sr)) // FLUID_BLOCK) * FLUID_BLOCK
        # every role that has a track gets a stem, silent if the track has no notes
        groups = sorted({_ROLE_GROUP[roles[i]] for i in range(len(song.tracks))})
        by_group = {g: np.zeros((total, 2), dtype=np.float32) for g in groups}
        cursor = 0
        synth, fs_synth = self._synth, self._synth.synth
        samples = events["sample"].tolist()
        kinds, chans = events["kind"].tolist(), events["chan"].tolist()
        a_vals, b_vals = events["a"].tolist(), events["b"].tolist()
        i, n = 0, len(samples)
        while i < n:
            at = samples[i]
            if at > cursor:
                self._advance(by_group, cursor, at - cursor)
                cursor = at
            while i < n and samples[i] == at:
                kind, chan, a, b = kinds[i], chans[i], a_vals[i], b_vals[i]
                if kind == _NOTE_ON:
                    synth.noteon(chan, a, b)
                elif kind == _NOTE_OFF:
                    synth.noteoff(chan, a)
                elif kind == _CONTROL:
                    synth.cc(chan, a, b)
                else:
                    self._fs.fluid_synth_pitch_bend(fs_synth, chan, a)
                i += 1
        if total > cursor:
            self._advance(by_group, cursor, total - cursor)
        return by_group, total

    def _advance(self, stems: dict[int, np.ndarray], start: int, count: int) -> None:
        """Synthesize ``count`` samples into each used group's buffer from ``start``."""
        buf = self._buffer
        done = 0
        while done < count:
            k = min(BLOCK, count - done)
            buf[:, :k] = 0.0  # fluid_synth_process mixes into the buffers
            self._process(self._synth.synth, k, 0, None, 2 * GROUPS, self._pointers)
            at = start + done
            for g, out in stems.items():
                out[at : at + k] = buf[2 * g : 2 * g + 2, :k].T
            done += k


def _silence_fluidsynth_log(fs: object) -> None:
    """Stop FluidSynth printing to stderr (a missing preset is handled here, by falling back)."""
    set_log = fs._fl.fluid_set_log_function
    set_log.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    for level in range(5):  # FLUID_PANIC .. FLUID_DBG
        set_log(level, None, None)


def _initial_bank(controls: np.ndarray) -> int:
    """The bank a track selects with CC0 before it plays (0 when it names none)."""
    if len(controls) == 0:
        return 0
    bank = controls[controls["number"] == 0]
    return int(bank["value"][0]) if len(bank) else 0


_EVENT_DTYPE = np.dtype([("sample", "i8"), ("kind", "i1"), ("chan", "i2"), ("a", "i4"), ("b", "i4")])


def _event_table(song: Song, channels: list[int], sr: int) -> np.ndarray:
    """All note, control and pitch-bend events of the song, sorted by sample and kind."""
    parts = []
    for track, chan in zip(song.tracks, channels):
        n = track.notes[track.notes["velocity"] > 0]
        if len(n):
            on = np.zeros(len(n), dtype=_EVENT_DTYPE)
            on["sample"] = _to_sample(song, n["start"], sr)
            on["kind"], on["chan"], on["a"], on["b"] = _NOTE_ON, chan, n["pitch"], n["velocity"]
            off = np.zeros(len(n), dtype=_EVENT_DTYPE)
            # a note lasts at least one FluidSynth block, or its note-off would cancel it unheard
            off["sample"] = np.maximum(_to_sample(song, n["start"] + n["duration"], sr), on["sample"] + FLUID_BLOCK)
            off["kind"], off["chan"], off["a"] = _NOTE_OFF, chan, n["pitch"]
            parts += [on, off]
        c = track.controls[~np.isin(track.controls["number"], list(_SKIPPED_CONTROLS))]
        if len(c):
            cc = np.zeros(len(c), dtype=_EVENT_DTYPE)
            cc["sample"] = _to_sample(song, c["time"], sr)
            cc["kind"], cc["chan"], cc["a"], cc["b"] = _CONTROL, chan, c["number"], c["value"]
            parts.append(cc)
        if len(track.pitch_bends):
            pb = track.pitch_bends
            bends = np.zeros(len(pb), dtype=_EVENT_DTYPE)
            bends["sample"] = _to_sample(song, pb["time"], sr)
            bends["kind"], bends["chan"] = _BEND, chan
            bends["a"] = np.clip(pb["value"].astype(np.int64) + 8192, 0, 16383)
            parts.append(bends)
    if not parts:
        return np.zeros(0, dtype=_EVENT_DTYPE)
    events = np.concatenate(parts)
    return events[np.lexsort((events["kind"], events["sample"]))]


def _to_sample(song: Song, ticks: np.ndarray, sr: int) -> np.ndarray:
    """Sample index of each tick, snapped to FluidSynth's 64-sample event grid (1.5 ms at 44.1 kHz)."""
    samples = np.round(song.tick_to_seconds(ticks) * sr).astype(np.int64)
    return (samples + FLUID_BLOCK // 2) // FLUID_BLOCK * FLUID_BLOCK


_CACHE: dict[tuple[Path, int, int | None], Synthesizer] = {}
_CACHE_LOCK = threading.Lock()


def synthesizer(
    soundfont: str | os.PathLike[str] | None = None, sr: int = 44100, cpu_cores: int | None = None
) -> Synthesizer:
    """A shared `Synthesizer` for this SoundFont and rate (loading FluidR3 takes a while; do it once)."""
    path = resolve_soundfont(soundfont)
    key = (path.resolve(), int(sr), cpu_cores)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = Synthesizer(path, sr, cpu_cores=cpu_cores)
        return _CACHE[key]
