"""SoundFont synthesis of a `Song` into sample-aligned stems and their mix, with FluidSynth.

Each stem role is rendered by its own FluidSynth instance that holds only that role's tracks, and
the mix is the sum of the stems. One instance per stem, not one for the whole song, because
FluidSynth 2.3 ramps a new voice's gain from whatever gain the previous voice in the same voice
slot ended on (``fluid_rvoice_buffers_mix``): in a shared instance the first 64 samples of a note
depend on which other part last used its slot. Separate instances make every stem exactly the
part rendered alone, and independent of the others, so stems can be rendered in separate
processes (``workers``) and come out bit-identical whatever the number of workers.

All stems share one length and start at sample 0, so they are sample-aligned. Reverb and chorus
are off: FluidSynth runs them on shared effect buses that cannot be split by stem.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from midiarr.errors import MidiarrError
from midiarr.render.soundfonts import SoundFontError, resolve_soundfont
from midiarr.roles import ROLES, assign_roles
from midiarr.song import Song, Track
from midiarr.threads import available_cores

MIDI_CHANNELS = 256  # channels of one stem's instance: a stem's tracks share a channel only past 256
BLOCK = 8192  # samples synthesized per call
# Longest song rendered: every stem is held in memory (30 min at 44.1 kHz stereo is ~635 MB a stem).
MAX_RENDER_SECONDS = 30 * 60
FLUID_BLOCK = 64  # FluidSynth applies events at its 64-sample block boundaries
CHANNEL_TYPE_MELODIC, CHANNEL_TYPE_DRUM = 0, 1
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


@dataclass
class _Stem:
    """One stem to render: its role, its tracks with their channels, its events and an estimated cost."""

    role: str
    tracks: list[int]
    channels: list[int]
    events: np.ndarray
    cost: float


class Synthesizer:
    """Renders songs with one SoundFont at one sample rate.

    The SoundFont is loaded once, into a holder instance, and lent to a fresh FluidSynth
    instance per stem (``fluid_synth_add_sfont``): a reused instance carries voice state from
    one render into the next. A fresh instance costs about 4 ms.
    """

    def __init__(
        self,
        soundfont: str | os.PathLike[str] | None = None,
        sr: int = 44100,
        gain: float = 0.3,
        tail_seconds: float = 1.5,
        polyphony: int = 1024,
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
            "synth.audio-channels": 1,
            "synth.audio-groups": 1,
            "synth.reverb.active": 0,
            "synth.chorus.active": 0,
            "synth.polyphony": int(polyphony),
            # one thread: with more, FluidSynth adds its threads' voices in the order they finish, so the float
            # sums (and the output's bits) could change from run to run. The cores go to stems side by side.
            "synth.cpu-cores": 1,
        }
        self._gain = float(gain)
        lib = fs._fl
        self._process = _c_function(
            lib.fluid_synth_process,
            ctypes.c_int,
            [
                ctypes.c_void_p,
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_void_p,
                ctypes.c_int,
                ctypes.POINTER(ctypes.POINTER(ctypes.c_float)),
            ],
        )
        self._active_voices = _c_function(lib.fluid_synth_get_active_voice_count, ctypes.c_int, [ctypes.c_void_p])
        self._set_channel_type = _c_function(
            lib.fluid_synth_set_channel_type, ctypes.c_int, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        )
        self._add_sfont = _c_function(lib.fluid_synth_add_sfont, ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p])
        self._remove_sfont = _c_function(lib.fluid_synth_remove_sfont, ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p])
        sfont_by_id = _c_function(lib.fluid_synth_get_sfont_by_id, ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int])
        self._lock = threading.Lock()
        # the holder only keeps the SoundFont loaded; one core, so it starts no mixer threads
        self._holder = fs.Synth(gain=self._gain, samplerate=float(self.sr), channels=16, **self._settings)
        sfid = self._holder.sfload(str(self.soundfont))
        if sfid < 0:
            self._holder.delete()
            raise SoundFontError(f"SoundFont {self.soundfont}: FluidSynth could not load it (damaged file?)")
        self._sfont = sfont_by_id(self._holder.synth, sfid)

    def close(self) -> None:
        """Free the synthesizer and the SoundFont it holds."""
        self._holder.delete()

    # -------------------------------------------------------------- render
    def render(self, song: Song, roles: dict[int, str] | None = None, workers: int | None = 1) -> Rendered:
        """Every stem role of the song and the mix, all the same length.

        ``workers`` processes render the stems side by side (None: the cores present); the result
        is the same, bit for bit, for any number.
        """
        roles = roles if roles is not None else assign_roles(song)
        seconds = song.duration_seconds + self.tail_seconds
        if seconds > MAX_RENDER_SECONDS:
            raise RenderError(
                f"the song is {seconds / 60:.0f} minutes long; "
                f"rendering is limited to {MAX_RENDER_SECONDS // 60} minutes"
            )
        stems = self._plan(song, roles)
        end = max((int(s.events["sample"].max()) for s in stems if len(s.events)), default=0)
        # a whole number of FluidSynth blocks, so every event lands on a block boundary
        total = -(-(end + round(self.tail_seconds * self.sr)) // FLUID_BLOCK) * FLUID_BLOCK
        workers = max(1, min(len(stems), available_cores() if workers is None else int(workers)))
        with self._lock:
            if workers == 1:
                audio = np.zeros((len(stems), total, 2), dtype=np.float32)
                for k, stem in enumerate(stems):
                    self._render_stem(song, stem, audio[k])
            else:
                audio = self._render_in_processes(song, stems, total, workers)
        by_role = {stem.role: audio[k] for k, stem in enumerate(stems)}
        return Rendered(sr=self.sr, stems=by_role, mix=_sum_stems(list(by_role.values()), total, workers))

    def _plan(self, song: Song, roles: dict[int, str]) -> list[_Stem]:
        """The stems in role order: every role that has a track gets one, silent if its tracks have no notes."""
        stems = []
        for role in ROLES:
            tracks = [i for i in range(len(song.tracks)) if roles[i] == role]
            if not tracks:
                continue
            channels = [k % MIDI_CHANNELS for k in range(len(tracks))]
            events = _event_table(song, dict(zip(tracks, channels)), self.sr)
            notes = [song.tracks[i].notes for i in tracks]
            note_seconds = sum(
                float(np.sum(song.tick_to_seconds(n["start"] + n["duration"]) - song.tick_to_seconds(n["start"])))
                for n in notes
                if len(n)
            )
            # FluidSynth's time goes mostly with the notes started (drum hits and layered presets weigh most)
            cost = len(events) + note_seconds
            stems.append(_Stem(role, tracks, channels, events, cost))
        return stems

    def _render_in_processes(self, song: Song, stems: list[_Stem], total: int, workers: int) -> np.ndarray:
        """Render the stems in ``workers`` processes (this one and forked children) into shared memory.

        The stems wait in a pipe, costliest first, one byte each; every process takes the next one
        when it is free, so a heavy stem never holds back the light ones behind it. Which process
        renders a stem does not change its samples.
        """
        if not hasattr(os, "fork"):
            audio = np.zeros((len(stems), total, 2), dtype=np.float32)
            for k, stem in enumerate(stems):
                self._render_stem(song, stem, audio[k])
            return audio
        shared = mmap.mmap(-1, max(1, len(stems) * total * 2 * 4))  # anonymous and shared with children
        audio = np.frombuffer(shared, dtype=np.float32, count=len(stems) * total * 2).reshape(len(stems), total, 2)
        order = sorted(range(len(stems)), key=lambda k: -stems[k].cost)
        queue_read, queue_write = os.pipe()
        os.write(queue_write, bytes(order))  # fewer stems than roles: a byte each fits, and the pipe never fills

        def work() -> None:
            while token := os.read(queue_read, 1):
                self._render_stem(song, stems[token[0]], audio[token[0]])

        children: dict[int, int] = {}  # pid -> read end of its error pipe
        parent = os.getpid()
        try:
            for _ in range(workers - 1):
                error_read, error_write = os.pipe()
                try:
                    pid = os.fork()
                except OSError as exc:
                    os.close(error_read)
                    os.close(error_write)
                    raise RenderError(f"cannot start a render worker ({exc.strerror or exc})") from None
                if pid == 0:  # the child: render stems until none are left; an error goes back as text
                    code = 0
                    try:
                        _die_with_parent(parent)
                        os.close(error_read)
                        os.close(queue_write)
                        work()
                    except BaseException as exc:  # anything at all goes back to the parent as text
                        os.write(error_write, (str(exc) or type(exc).__name__).encode()[:4000])
                        code = 1
                    finally:
                        os._exit(code)
                os.close(error_write)
                children[pid] = error_read
            os.close(queue_write)
            queue_write = -1
            work()
            errors = []
            while children:
                pid, error_read = next(iter(children.items()))
                _, status = os.waitpid(pid, 0)
                del children[pid]
                try:
                    message = os.read(error_read, 4000).decode(errors="replace")
                finally:
                    os.close(error_read)
                if status != 0:
                    errors.append(message or f"a render worker ended with {_ending(status)}")
            if errors:
                raise RenderError(errors[0])
        finally:
            for pid, error_read in children.items():  # only after an error here: stop and reap the rest
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except OSError:
                    pass
                os.close(error_read)
            os.close(queue_read)
            if queue_write >= 0:
                os.close(queue_write)
        return audio

    def _render_stem(self, song: Song, stem: _Stem, out: np.ndarray) -> None:
        """Render one stem into ``out`` (samples, 2) with a fresh instance that holds only its tracks."""
        synth = self._fs.Synth(gain=self._gain, samplerate=float(self.sr), channels=MIDI_CHANNELS, **self._settings)
        sfid = self._add_sfont(synth.synth, self._sfont)
        if sfid < 0:
            synth.delete()
            raise RenderError(f"FluidSynth could not lend {self.soundfont.name} to a new instance")
        try:
            for index, channel in zip(stem.tracks, stem.channels):
                self._select_program(synth, sfid, song.tracks[index], channel)
            self._play(synth, stem.events, out)
        finally:
            self._remove_sfont(synth.synth, self._sfont)  # the holder owns it
            synth.delete()

    def _select_program(self, synth: object, sfid: int, track: Track, channel: int) -> None:
        """Make ``channel`` play ``track``'s instrument (its bank and program, drums on the drum bank)."""
        self._set_channel_type(synth.synth, channel, CHANNEL_TYPE_DRUM if track.is_drum else CHANNEL_TYPE_MELODIC)
        bank = 128 if track.is_drum else _initial_bank(track.controls)
        if synth.program_select(channel, sfid, bank, int(track.program)) != 0:
            # the SoundFont lacks that preset: fall back to the bank's first program, as GM players do
            fallback = (128, 0) if track.is_drum else (0, int(track.program))
            synth.program_select(channel, sfid, *fallback)

    def _play(self, synth: object, events: np.ndarray, out: np.ndarray) -> None:
        """Send the events at their samples and synthesize in between, into ``out``."""
        buffer = np.zeros((2, BLOCK), dtype=np.float32)
        row = ctypes.POINTER(ctypes.c_float)
        pointers = (row * 2)(*[buffer[i].ctypes.data_as(row) for i in range(2)])
        fs_synth = synth.synth
        total = len(out)

        def advance(start: int, count: int) -> None:
            if self._active_voices(fs_synth) == 0:
                # nothing sounds until the next event: those samples stay zero without synthesizing them (with
                # no voice FluidSynth writes zeros and changes no state a later note reads)
                return
            done = 0
            while done < count:
                k = min(BLOCK, count - done)
                buffer[:, :k] = 0.0  # fluid_synth_process mixes into the buffers
                self._process(fs_synth, k, 0, None, 2, pointers)
                out[start + done : start + done + k] = buffer[:, :k].T
                done += k

        cursor = 0
        samples = events["sample"].tolist()
        kinds, chans = events["kind"].tolist(), events["chan"].tolist()
        a_vals, b_vals = events["a"].tolist(), events["b"].tolist()
        i, n = 0, len(samples)
        while i < n:
            at = samples[i]
            if at > cursor:
                advance(cursor, at - cursor)
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
            advance(cursor, total - cursor)


def _sum_stems(stems: list[np.ndarray], total: int, threads: int) -> np.ndarray:
    """The mix: the stems added in role order, a cache-sized span at a time, spans shared among threads.

    Every sample is 0 + the first stem + the second ..., the same sum for any number of threads.
    """
    mix = np.zeros((total, 2), dtype=np.float32)
    span = 1 << 15

    def add(start: int) -> None:
        part = mix[start : start + span]
        for stem in stems:
            part += stem[start : start + span]

    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:  # numpy lets go of the GIL while it adds
            list(pool.map(add, range(0, total, span)))
    else:
        for start in range(0, total, span):
            add(start)
    return mix


def _die_with_parent(parent: int) -> None:
    """In a forked render worker: end when the process that forked it ends, however it ends (a cancelled
    server job is terminated without running its clean-up), instead of rendering on for nobody."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):  # not Linux: the parent's own clean-up still stops the workers
        return
    if os.getppid() != parent:  # the parent ended before the signal was asked for
        os._exit(1)


def _ending(status: int) -> str:
    """A wait status in words: its exit code or the signal that ended it."""
    code = os.waitstatus_to_exitcode(status)
    return f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"


def _c_function(function: object, restype: object, argtypes: list[object]) -> object:
    function.restype = restype
    function.argtypes = argtypes
    return function


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


def _event_table(song: Song, channels: dict[int, int], sr: int) -> np.ndarray:
    """The note, control and pitch-bend events of the tracks in ``channels`` (track index -> MIDI
    channel), sorted by sample and kind."""
    parts = []
    for index, chan in channels.items():
        track = song.tracks[index]
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


_CACHE: dict[tuple[Path, int], Synthesizer] = {}
_CACHE_LOCK = threading.Lock()


def synthesizer(soundfont: str | os.PathLike[str] | None = None, sr: int = 44100) -> Synthesizer:
    """A shared `Synthesizer` for this SoundFont and rate (loading FluidR3 takes a while; do it once)."""
    path = resolve_soundfont(soundfont)
    key = (path.resolve(), int(sr))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = Synthesizer(path, sr)
        return _CACHE[key]
