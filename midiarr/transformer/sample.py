"""Writing a whole stem with the transformer: windows that slide over the song, a grammar
that keeps every sampled token well formed, and best-of-N candidates per window.

A window starts from a prompt of the instruction and the most recent bars already
written (context and stem), then alternates known context bars (fed in chunks) with the
stem's bars (sampled token by token) until the model's context is nearly full. The next
window starts where the best candidate stopped, so a song of any length gets one part
that carries on from itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from midiarr.attributes import bin_edges
from midiarr.config import per_stem
from midiarr.engines.settings import EngineSettings, check_choice, check_range, sample_table
from midiarr.errors import OptionError
from midiarr.harmony import QUALITIES
from midiarr.player.repeats import same_rhythm
from midiarr.roles import PLAYABLE_RANGES
from midiarr.threads import rebalance
from midiarr.transformer.encode import ContextBar, assemble, bin_velocity, header_tokens
from midiarr.transformer.vocab import (
    CHORD0,
    DRUM0,
    DRUM_CLASSES,
    DUR0,
    DURATIONS,
    MAX_STEPS,
    NUM_VELOCITIES,
    PITCH0,
    PITCH_HIGH,
    PITCH_LOW,
    POS0,
    VEL0,
    VOCAB,
)

if TYPE_CHECKING:
    from midiarr.transformer.model import LeanDecoder
    from midiarr.transformer.native import NativeDecoder

# Pitches the sampler lets each pitched stem write: the instruments' playable ranges.
PITCH_RANGES = {stem: PLAYABLE_RANGES[stem] for stem in ("bass", "guitar", "piano", "strings")}
MAX_BAR_TOKENS = 192  # a bar's stem tokens; the sampler closes the bar at this many
MAX_CONTEXT_BAR_TOKENS = 320  # a context bar longer than this is cut (very dense drum bars)
_EOB, _TGT, _PAD = VOCAB["EOB"], VOCAB["TGT"], VOCAB["PAD"]
_LEN0 = VOCAB.first("LEN_")
_V = len(VOCAB)
_CHORD_TONES = [tuple(iv) for iv, _ in QUALITIES.values()]
_ROLE_IDS = frozenset(VOCAB.family("ROLE_"))
_MAX_GUIDE = 6.0  # cap of the density pull, in log-probability units
_CLASS = {name: i for i, (name, _, _) in enumerate(DRUM_CLASSES)}
# A kit bar has a backbone and something keeping time; these are the drum classes of each group.
CANDIDATE_PICKS = ("likelihood", "consensus")  # the kept take: likeliest, or most like the others
_TOMS = np.array([_CLASS[n] for n in ("low_tom", "mid_tom", "high_tom")])
_CRASH = np.array([_CLASS["crash"]])
_KICK = _CLASS["kick"]
KIT_GROUPS: tuple[np.ndarray, ...] = (
    np.array([_CLASS[n] for n in ("kick", "snare", "side_stick", "clap")]),
    np.array([_CLASS[n] for n in ("closed_hat", "pedal_hat", "open_hat", "ride", "ride_bell", "shaker")]),
)


@dataclass
class TransformerSettings(EngineSettings):
    """The transformer engine's settings: sampling (temperature, nucleus, candidates per window, prompt
    history), guidance, and how its weights are held. Tuned values come from the checkpoint's config."""

    engine: ClassVar[str] = "transformer"

    temperature: float = 0.9
    top_p: float = 0.95
    # nucleus of the choice of a note's length (one number or per stem; None = top_p): the nucleus keeps a
    # part on its likeliest notes, and on lengths it had cut the long and short tails a guitar plays
    length_top_p: float | dict[str, float] | None = None
    # temperature of the choice among notes (which pitch or drum), once the temperature above has set how
    # likely "a note here" is: one number or per stem; None = the same as ``temperature``
    note_temperature: float | dict[str, float] | None = None
    candidates: int | dict[str, int] = 1  # takes per window: one number or per stem
    # how the kept take is chosen: "likelihood" (mean log-probability) or "consensus" (most like the others)
    candidate_pick: str = "likelihood"
    # how many windows, from the part's opening, get candidates (0 = every window): the opening sets the
    # kit and the groove that later windows carry on from their history, at a fraction of the cost
    candidate_windows: int = 0
    # how many bars of such a window the takes write before the kept one is chosen and carries on alone
    # (0 = the whole window): a window holds 10-15 bars, and the takes differ most in their first bars
    candidate_bars: int = 0
    history_tokens: int = 448
    # Guidance, in log-probability units added before sampling (0 = the model alone):
    harmony_weight: float = 0.0  # bonus for pitches of the chord sounding in the other parts
    # a further bonus for that chord's root: one number for every stem, or per stem, e.g. {"bass": 3.0}
    # (bass players mostly play roots; a guitar's voicings would only thin out)
    root_weight: float | dict[str, float] = 0.0
    # preference for onsets where another part has an onset (the song's groove): one number or per stem,
    # with "default" for the stems not named
    sync_weight: float | dict[str, float] = 0.0
    control_weight: float = 0.0  # pull toward the asked dynamics and density bins when the part drifts out
    # drums: bonus for the sounds of a kit group (backbone: kick/snare; time: hats/ride/shaker) that the bar
    # does not have yet (free-running, the model wrote one-sound bars ~10x as often as real parts do)
    kit_weight: float = 0.0
    # drums: malus on the kick as an onset's first note (an onset's notes are written kick first, so this moves
    # the onset to its next sound rather than dropping it): free-running, the model puts more of its notes on the
    # kick than real drummers do (docs/evaluation.md)
    kick_weight: float = 0.0
    # drums: bonus, per change of the band at the next bar (`midiarr.player.sections`, up to 3), for a tom in
    # the second half of the bar before it, and per change at this bar for a crash on its first step; the kick
    # keeps its share. The model hears the next bar's context but seldom fills or crashes into a new section
    fill_weight: float = 0.0
    # pitched stems: bonus for the chord's tones not yet played since the chord began (one number or per stem);
    # spreads a part over the chord instead of dwelling on one tone
    voicing_weight: float | dict[str, float] = 0.0
    # bonus for the next onset falling on a step where the part's previous bar (of the same length) had one
    # (one number or per stem): a player repeats a rhythm from bar to bar; chooses where, never how many
    riff_weight: float | dict[str, float] = 0.0
    # temperature of the choice among the notes the part has not played yet (one number or per stem; None =
    # off); the mass of "something new" against what the part already plays is kept
    fresh_temperature: float | dict[str, float] | None = None
    # pitched stems: malus, per octave beyond REGISTER_FREE semitones, on an onset's first note away from the
    # median first note of the part's latest REGISTER_NOTES onsets (one number or per stem); a player keeps a register
    # and moves it between sections, where free-running parts wandered over it
    register_weight: float | dict[str, float] = 0.0
    # whether the density bin midiarr infers from the song (none asked for) is pulled toward like an
    # asked one, or only heard by the model as its density token (docs/results.md: pulled put as many songs
    # in band as heard-only on every stem, or more)
    pull_inferred_density: bool = False
    # when the density was inferred and is pulled: > 0 pulls the part into the predicted rate's band
    # [rate / (1 + band), rate * (1 + band)] instead of the whole bin (a bin spans 1.6x or more, and its
    # outer bins are open-ended); 0 = the bin's edges
    inferred_density_band: float = 0.0
    # how the linear weights are held. int8 (None: where the C step runs, unless half is asked for): int8
    # with a scale per row, the next-token distribution moved by a KL of ~4e-5 per token, single tokens ~1.7x
    # faster than half floats. half (None: when not int8): KL ~3e-7, ~1.8x faster than float32
    int8: bool | None = None
    half: bool | None = None

    @classmethod
    def tuned(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        return sample_table(config)

    def adjusted(self, given: Mapping[str, Any]) -> TransformerSettings:
        # N takes asked for by hand apply to every window, whatever the config's opening-only default
        if "candidates" in given and "candidate_windows" not in given:
            self.candidate_windows = 0
        if self.fresh_temperature == 0:  # 0 turns it off
            self.fresh_temperature = None
        return self

    def check(self) -> TransformerSettings:
        check_range("temperature", self.temperature, 0, 10, low_open=True)
        check_range("top_p", self.top_p, 0, 1, low_open=True)
        if self.length_top_p is not None:
            check_range("length_top_p", self.length_top_p, 0, 1, low_open=True)
        if self.note_temperature is not None:
            check_range("note_temperature", self.note_temperature, 0, 10, low_open=True)
        if self.fresh_temperature is not None:
            check_range("fresh_temperature", self.fresh_temperature, 0, 10)
        check_range("candidates", self.candidates, 1, 64, kind=int)
        check_choice("pick", self.candidate_pick, CANDIDATE_PICKS)
        check_range("candidate_windows", self.candidate_windows, 0, 1000, kind=int)
        check_range("candidate_bars", self.candidate_bars, 0, 1000, kind=int)
        check_range("history_tokens", self.history_tokens, 0, 1024, kind=int)
        check_range("inferred_density_band", self.inferred_density_band, 0, 10)
        if 0 < self.inferred_density_band < MIN_DENSITY_BAND:
            # the pull acts outside [lo * 1.1, hi * 0.9]: below this the two edges cross and every onset is pushed
            raise OptionError(f"inferred-density-band must be 0 (the bin) or at least {MIN_DENSITY_BAND}")
        for name in (
            "harmony_weight",
            "root_weight",
            "sync_weight",
            "control_weight",
            "kit_weight",
            "kick_weight",
            "fill_weight",
            "voicing_weight",
            "register_weight",
            "riff_weight",
        ):
            check_range(name, getattr(self, name), 0, 20)
        if self.int8 and self.half:
            raise OptionError("half and int8 weights exclude each other")
        return self


def _mask(ids: range | list[int] | np.ndarray) -> np.ndarray:
    m = np.zeros(_V, dtype=bool)
    m[np.asarray(list(ids), dtype=np.int64)] = True
    return m


# the narrowest band around a predicted density that leaves room between the pull's two edges (lo * 1.1 below
# hi * 0.9 needs (1 + band)^2 > 1.1 / 0.9)
MIN_DENSITY_BAND = 0.11

# the register guidance: the part's latest onsets whose first notes set its register, and how far from their
# median an onset's first note is free (real guitar parts' onsets move about 4.4 semitones, sd)
REGISTER_NOTES = 48
REGISTER_FREE = 5

_VEL_MASK = _mask(range(VEL0, VEL0 + NUM_VELOCITIES))
_DUR_MASK = _mask(range(DUR0, DUR0 + len(DURATIONS)))
_MOVE_MASK = _mask([*range(POS0, POS0 + MAX_STEPS), _EOB])  # the tokens that leave an onset


@dataclass
class _Row:
    """One candidate's state: tokens waiting to be fed, grammar state, what it wrote."""

    bar: int
    queue: deque[int] = field(default_factory=deque)
    state: str = "forced"  # forced | start | vel | note | dur | after
    pos: int = -1
    last_value: int = -1
    bar_tokens: list[int] = field(default_factory=list)
    bars: list[list[int]] = field(default_factory=list)
    logprob: float = 0.0
    sampled: int = 0
    done: bool = False
    onsets: int = 0  # onsets written in this window's active bars (for density guidance)
    quarters: float = 0.0  # quarter notes of this window's finished active bars
    used: set[int] = field(default_factory=set)  # note tokens the part has written so far
    pitches: list[int] = field(default_factory=list)  # the part's latest onsets' first pitch tokens, oldest first
    last_steps: np.ndarray | None = None  # per step, whether the part's bar before this one has an onset there
    # what the row had when its current bar began: a bar that runs out of window is taken back
    bar_start: tuple[float, int, int, frozenset[int], int] = (0.0, 0, 0, frozenset(), 0)
    opening_score: float | None = None  # the score after its first candidate_bars bars, as takes are compared

    @property
    def pick_score(self) -> float:
        return self.score if self.opening_score is None else self.opening_score

    @property
    def score(self) -> float:
        return self.logprob / max(self.sampled, 1)


class StemWriter:
    """Samples one stem for a song's context bars with a decoder (`midiarr.transformer.decoder`)."""

    def __init__(self, decoder: NativeDecoder | LeanDecoder, settings: TransformerSettings | None = None) -> None:
        self.decoder = decoder
        self.settings = settings or TransformerSettings()

    def write(
        self,
        context: list[ContextBar],
        stem: str,
        bins: dict[str, str],
        active: np.ndarray,
        rng: np.random.Generator,
        inferred: tuple[str, ...] = (),
        given: dict[int, list[int]] | None = None,
        rate: float | None = None,
        changes: np.ndarray | None = None,
    ) -> list[list[int]]:
        """Target tokens per bar (without TGT/EOB); inactive bars stay empty. ``inferred`` names the
        bins midiarr filled in itself (not asked for by the user), ``rate`` the onsets per quarter note
        predicted for the part when its density bin was inferred. ``given``: bars of the part that are
        already there (an infill's other bars), kept as they are and heard as the part's own history.
        ``changes``: per bar, the changes of the band on its first beat (`midiarr.player.sections`), which
        the drums fill into and crash on with ``fill_weight``."""
        self.inferred = inferred
        self.changes = np.zeros(len(context), dtype=np.int64) if changes is None else np.asarray(changes)
        self.predicted_rate = rate
        self.has_given = bool(given)
        self.stem, self.drums = stem, stem == "drums"
        self.root_weight = per_stem(self.settings.root_weight, stem)
        self.voicing_weight = per_stem(self.settings.voicing_weight, stem)
        self.register_weight = 0.0 if stem == "drums" else per_stem(self.settings.register_weight, stem)
        self.sync_weight = per_stem(self.settings.sync_weight, stem)
        self.riff_weight = per_stem(self.settings.riff_weight, stem)
        temperature, nt = self.settings.temperature, self.settings.note_temperature
        self.note_temperature = temperature if nt is None else per_stem(nt, stem, temperature)
        ft = self.settings.fresh_temperature
        self.fresh_temperature = None if ft is None else per_stem(ft, stem, 0.0) or None
        low, high = PITCH_RANGES.get(stem, (PITCH_LOW, PITCH_HIGH))
        self.note_ids = (
            np.arange(DRUM0, DRUM0 + len(DRUM_CLASSES))
            if self.drums
            else np.arange(PITCH0 + low - PITCH_LOW, PITCH0 + high - PITCH_LOW + 1)
        )
        self.active = np.asarray(active, dtype=bool)
        lt = self.settings.length_top_p
        self.length_top_p = self.settings.top_p if lt is None else per_stem(lt, stem, self.settings.top_p)
        self.header = header_tokens(stem, bins)
        # a window must hold the first bar's context, the next bar's and a full stem bar
        cut = min(MAX_CONTEXT_BAR_TOKENS, (self.decoder.max_length - MAX_BAR_TOKENS - len(self.header) - 8) // 2)
        self.ctx = [bar.tokens()[:cut] for bar in context]
        self.rng = rng
        self._prepare_guidance(context, stem, bins)
        self.used: set[int] = set()
        self.pending = 0  # tokens consumed but not yet fed to the decoder (see `_window`)
        n = len(self.ctx)
        written: list[list[int]] = [[] for _ in range(n)]
        given = given or {}
        for b, tokens in given.items():
            written[b] = list(tokens)
        # an infill's kept bars set the register the written bars keep
        self.pitches = [p for b in sorted(given) for p in _first_pitches(given[b])][-REGISTER_NOTES:]
        bar = 0
        self.windows_done = 0
        while bar < n:
            if bar in given:
                bar += 1
                continue
            rows = self._window(written, bar)
            self.windows_done += 1
            best = self._pick(rows)
            for k, tokens in enumerate(best.bars):
                if bar + k not in given:
                    written[bar + k] = tokens
            self.done_onsets += best.onsets
            self.done_quarters += best.quarters
            self.used = best.used
            self.pitches = best.pitches[-REGISTER_NOTES:]
            bar += max(1, len(best.bars))
        return written

    def _pick(self, rows: list[_Row], bars: int | None = None) -> _Row:
        """The candidate kept for a window: the likeliest under the model, or the consensus take; judged
        on the first ``bars`` bars of each (None: all it wrote)."""
        if len(rows) == 1:
            return rows[0]
        if self.settings.candidate_pick == "likelihood":
            return max(rows, key=lambda r: r.pick_score)
        # consensus (minimum Bayes risk): the take most like the others in which sounds it plays and on
        # which steps. A kit chosen by one unlucky draw (a ride where the other takes keep a hat) loses.
        profiles = np.stack([_take_profile(r, self.note_ids, bars) for r in rows])
        agreement = profiles @ profiles.T
        total = agreement.sum(axis=1) - np.diag(agreement)
        # ties (two takes always agree equally with each other) go to the likelier take
        tied = [r for r, t in zip(rows, total) if t >= total.max() - 1e-9]
        return max(tied, key=lambda r: r.pick_score)

    # ------------------------------------------------------------ guidance
    def _prepare_guidance(self, context: list[ContextBar], stem: str, bins: dict[str, str]) -> None:
        """Per bar: the chords (position, pitch classes) and the steps where another part has an onset;
        the velocity and density ranges the instruction asks for."""
        self.chords: list[list[tuple[int, np.ndarray, int]]] = []
        self.context_onsets: list[np.ndarray] = []
        for bar in context:
            head = bar.head[1:]
            chords = []
            for pos_tok, chord_tok in zip(head[0::2], head[1::2]):
                quality, root = divmod(chord_tok - CHORD0, 12)
                tones = np.zeros(12, dtype=bool)
                tones[[(root + i) % 12 for i in _CHORD_TONES[quality]]] = True
                chords.append((pos_tok - POS0, tones, root))
            self.chords.append(chords)
            self.context_onsets.append(_onset_steps([t for block in bar.roles.values() for t in block]))
        # bars where the band keeps the rhythm of the bar before (as `midiarr.player.repeats` holds a groove)
        rhythms = [frozenset(np.flatnonzero(steps).tolist()) for steps in self.context_onsets]
        self.band_holds = np.array(
            [b > 0 and same_rhythm(rhythms[b], rhythms[b - 1]) for b in range(len(rhythms))], dtype=bool
        )
        self.done_onsets, self.done_quarters = 0, 0.0
        s = self.settings
        self.vel_bias = np.zeros(NUM_VELOCITIES)
        self.density_range: tuple[float, float] | None = None
        if s.control_weight <= 0:
            return
        names = ("soft", "medium", "loud")
        if bins.get("dynamics") in names:
            lo, hi = _bin_range(bin_edges("dynamics", stem), names.index(bins["dynamics"]), 1.0, 128.0)
            vel = np.array([bin_velocity(i) for i in range(NUM_VELOCITIES)], dtype=float)
            # how many velocity bins (16 wide) each token lies outside the asked range
            outside = np.maximum(lo - vel, 0) + np.maximum(vel - hi, 0)
            self.vel_bias = -s.control_weight * np.ceil(outside / (128 / NUM_VELOCITIES))
        names = ("sparse", "medium", "busy")
        pulled = "density" not in self.inferred or s.pull_inferred_density
        if bins.get("density") in names and pulled:
            self.density_range = _bin_range(bin_edges("density", stem), names.index(bins["density"]), 0.0, 1e9)
            band = s.inferred_density_band
            # an infill's kept bars are not counted in the rate, so its span keeps the bin (a band around the
            # song's prediction could pull it away from the density of the part around it)
            if "density" in self.inferred and band > 0 and self.predicted_rate and not self.has_given:
                self.density_range = (self.predicted_rate / (1 + band), self.predicted_rate * (1 + band))

    def _density_bias(self, row: _Row) -> tuple[np.ndarray, float] | None:
        """Bias over the next onset's position that pulls the part back into the asked density bin.

        Density is distinct onsets per quarter note over what is written so far (with a prior of
        two quarter notes at the bin's near edge, so the first bars do not swing it). While it lies
        inside the bin nothing changes. Too sparse: positions within the bin's typical gap from the
        current one get a bonus, later positions and ending the bar a malus; too busy: the reverse. The
        size is ``control_weight`` at the bin's edge and grows with the log distance from it, capped at
        `_MAX_GUIDE`. Returns the bias over positions and the bias of ``EOB``.
        """
        if self.density_range is None:
            return None
        lo, hi = self.density_range
        quarters = self.done_quarters + row.quarters + max(row.pos + 1, 0) / 4
        onsets = self.done_onsets + row.onsets
        if hi < 1e9:
            edge = hi * 0.9
            rate = (onsets + 2 * edge) / (quarters + 2)
            if rate > edge:
                push = -min(_MAX_GUIDE, self.settings.control_weight * (1 + 4 * np.log(rate / edge)))
                gap = 4 / hi  # in 16th steps: onsets closer than this keep the part too busy
                return self._near(row, gap, push), -push
        if lo > 0:
            edge = lo * 1.1
            rate = (onsets + 2 * edge) / (quarters + 2)
            if rate < edge:
                push = min(_MAX_GUIDE, self.settings.control_weight * (1 + 4 * np.log(edge / max(rate, 1e-3))))
                return self._near(row, 4 / (lo * 1.25), push), -push
        return None

    @staticmethod
    def _near(row: _Row, gap: float, value: float) -> np.ndarray:
        """``value`` on the positions less than ``gap`` steps (at least one) after the current one,
        ``-value`` on the later ones: the next onset is pulled closer (or pushed away)."""
        out = np.full(MAX_STEPS, -value)
        first = row.pos + 1
        out[first : first + max(1, int(np.ceil(gap - 1e-9)))] = value
        return out

    def _guidance(self, row: _Row, mask: np.ndarray, logp: np.ndarray) -> np.ndarray | None:
        """Bias added to the model's log-probabilities at this grammar state (None: no bias)."""
        s = self.settings
        if row.state == "vel":
            return np.pad(self.vel_bias, (VEL0, _V - VEL0 - NUM_VELOCITIES)) if self.vel_bias.any() else None
        bias = None
        if row.state in ("start", "after") and self.active[row.bar]:
            positions = np.flatnonzero(mask[POS0 : POS0 + MAX_STEPS]) + POS0
            lift = np.zeros(len(positions))
            if self.sync_weight and self.context_onsets[row.bar].any():
                # onsets where another part has one are exp(sync_weight) times likelier than elsewhere, but
                # the mass of "a next onset in this bar" stays the model's: sync chooses where the next
                # onset falls, never whether there is one (a plain bonus against ending the bar had the
                # bass play 1.7 times the real part's notes)
                lift += self.sync_weight * self.context_onsets[row.bar][positions - POS0]
            if self.riff_weight and row.last_steps is not None and self.band_holds[row.bar]:
                # where the band keeps its rhythm, the steps the part played in its bar before: the rhythm comes
                # back, chosen the same way (everywhere, it pulled the part off the band's groove)
                lift += self.riff_weight * row.last_steps[positions - POS0]
            if len(positions) and lift.any():
                bias = _redistribute(None, positions, lift, logp)
            density = self._density_bias(row)
            if density is not None:
                # the asked density bin is the one guide that may change how many onsets there are
                pull = np.zeros(_V)
                pull[POS0 : POS0 + MAX_STEPS] = density[0]
                pull[_EOB] = density[1]
                if row.state == "after":
                    # after a note, another note at this onset competes with moving on: the guidance may
                    # choose where the part moves on to, but not make moving on likelier than stacking
                    # (a plain bias there had cut the drums' stacked hits by a third, e.g. kick without hat)
                    moves = np.flatnonzero(mask & _MOVE_MASK)
                    bias = _redistribute(bias, moves, pull[moves], logp)
                else:
                    bias = pull if bias is None else bias + pull
        chord_guided = s.harmony_weight or self.root_weight or self.voicing_weight
        if row.state in ("note", "after") and not self.drums and chord_guided and self.chords[row.bar]:
            # the first note of an onset and any further notes stacked on it
            since, tones, root = self.chords[row.bar][0]
            for pos, chord_tones, chord_root in self.chords[row.bar]:
                if pos <= row.pos:
                    since, tones, root = pos, chord_tones, chord_root
            notes = self.note_ids[mask[self.note_ids]]
            if len(notes):
                pitch_class = (notes - PITCH0 + PITCH_LOW) % 12
                lift = s.harmony_weight * tones[pitch_class] + self.root_weight * (pitch_class == root)
                if self.voicing_weight:
                    unplayed = tones & ~_pitch_classes_since(row.bar_tokens, since)
                    lift = lift + self.voicing_weight * unplayed[pitch_class]
                bias = _redistribute(bias, notes, lift, logp)
        if row.state == "note" and self.register_weight and len(row.pitches) >= REGISTER_NOTES // 4:
            # an onset's first note (the notes stacked on it only climb from there)
            notes = self.note_ids[mask[self.note_ids]]
            if len(notes):
                centre = float(np.median(row.pitches[-REGISTER_NOTES:]))
                away = np.maximum(np.abs(notes - centre) - REGISTER_FREE, 0) / 12
                bias = _redistribute(bias, notes, -self.register_weight * away, logp)
        if row.state in ("note", "after") and self.drums and s.kit_weight and self.active[row.bar]:
            played = {t - DRUM0 for t in row.bar_tokens if DRUM0 <= t < DRUM0 + len(DRUM_CLASSES)}
            missing = [group for group in KIT_GROUPS if not played.intersection(group.tolist())]
            if row.state == "note":
                # an onset's notes are written kick first: lifting a time sound at its first note would put
                # it in the kick's place (and pick between hat and ride where neither belongs first), so a
                # missing time sound is offered only as a further note of the onset
                missing = [group for group in missing if group is KIT_GROUPS[0]]
            notes = self.note_ids[mask[self.note_ids]]
            if missing and len(notes):
                lift = s.kit_weight * np.isin(notes - DRUM0, np.concatenate(missing))
                bias = _redistribute(bias, notes, lift, logp)
        if row.state == "note" and self.drums and s.kick_weight and self.active[row.bar]:
            notes = self.note_ids[mask[self.note_ids]]
            if len(notes):
                bias = _redistribute(bias, notes, -s.kick_weight * (notes - DRUM0 == _KICK), logp)
        if row.state in ("note", "after") and self.drums and s.fill_weight and self.active[row.bar]:
            bias = self._fill_guidance(row, mask, logp, bias)
        return bias

    def _fill_guidance(
        self, row: _Row, mask: np.ndarray, logp: np.ndarray, bias: np.ndarray | None
    ) -> np.ndarray | None:
        """The drums' lift toward a tom in the second half of a bar before a change of the band, and toward a
        crash on the first step of a bar with one, by ``fill_weight`` per change; among the notes other than the
        kick, so the kick under a crash or a fill stays where the model puts it."""
        b = row.bar
        ahead = int(self.changes[b + 1]) if b + 1 < len(self.changes) and self.active[b + 1] else 0
        if ahead and 2 * row.pos >= self._bar_len(b):
            pieces, strength = _TOMS, ahead
        elif row.pos == 0 and b < len(self.changes) and self.changes[b]:
            pieces, strength = _CRASH, int(self.changes[b])
        else:
            return bias
        notes = self.note_ids[mask[self.note_ids]]
        notes = notes[notes != DRUM0 + _CLASS["kick"]]
        if len(notes) < 2 or not np.isin(notes - DRUM0, pieces).any():
            return bias
        lift = self.settings.fill_weight * strength * np.isin(notes - DRUM0, pieces)
        return _redistribute(bias, notes, lift, logp)

    # ------------------------------------------------------------ windows
    def _prompt(self, written: list[list[int]], bar: int) -> list[int]:
        """Header plus as many of the latest written bars as fit in the history budget."""
        # what must still fit after the prompt: the next bar's context and a full stem bar
        after = (len(self.ctx[bar + 1]) if bar + 1 < len(self.ctx) else 0) + MAX_BAR_TOKENS + 4
        budget = min(self.settings.history_tokens, self.decoder.max_length - after)
        start, size = bar, len(self.header) + len(self.ctx[bar])
        while start > 0:
            extra = len(self.ctx[start]) + len(written[start - 1]) + 2
            if size + extra > budget:
                break
            size += extra
            start -= 1
        tokens, _ = assemble(self.header, self.ctx, written, start, bar)
        return tokens

    def _begin_bar(self, row: _Row, bar: int) -> None:
        """Queue the next context bar (one bar of look-ahead) and the TGT marker of ``bar``."""
        row.bar = bar
        row.bar_start = (row.logprob, row.sampled, row.onsets, frozenset(row.used), len(row.pitches))
        if bar + 1 < len(self.ctx):
            row.queue.extend(self.ctx[bar + 1])
        row.queue.append(_TGT)
        if not self.active[bar]:
            row.queue.append(_EOB)

    def _window(self, written: list[list[int]], bar: int) -> list[_Row]:
        dec = self.decoder
        count = max(1, int(per_stem(self.settings.candidates, self.stem, 1)))
        if 0 < self.settings.candidate_windows <= self.windows_done:
            count = 1
        dec.reset(1)
        logits = dec.logits(np.array([self._prompt(written, bar)], dtype=np.int64))
        if count > 1:
            dec.expand(count)
            logits = np.broadcast_to(logits, (count, logits.shape[1]))
        last = self._steps(written[bar - 1], bar - 1, bar) if bar > 0 else None
        rows = [_Row(bar=bar, used=set(self.used), pitches=list(self.pitches), last_steps=last) for _ in range(count)]
        for row in rows:
            self._begin_bar(row, bar)
        self.opening_bars = self.settings.candidate_bars if count > 1 else 0
        while not all(r.done for r in rows):
            rebalance()  # other midiarr commands may have started or ended
            if self.opening_bars and len(rows) > 1 and all(len(r.bars) >= self.opening_bars for r in rows):
                # the takes have written their opening: the kept one carries on alone
                keep = self._pick(rows, self.opening_bars)
                index = rows.index(keep)
                dec.select(index)
                rows, logits = [keep], logits[index : index + 1]
                continue
            live = [r for r in rows if not r.done]
            chunk = min(len(r.queue) for r in live)
            if chunk > 1 and len(live) == len(rows):
                # every row has known tokens waiting: feed them together
                feed = [[r.queue.popleft() for _ in range(chunk)] for r in rows]
                for r, toks in zip(rows, feed):
                    for i, t in enumerate(toks):
                        # the tokens of the chunk before this one are not in the decoder yet: a bar that ends
                        # inside the chunk must count them when it asks for room (a silent bar's EOB did not,
                        # and the next bar overran the window)
                        self.pending = i
                        self._consume(r, t)
                self.pending = 0
                logits = dec.logits(np.array(feed, dtype=np.int64))
                continue
            if dec.length >= dec.max_length - 1:
                # the window is full: a bar still being written is taken back and begins the next window
                for r in live:
                    self._take_back(r)
                break
            step = []
            logp = _log_softmax(logits)
            for i, r in enumerate(rows):
                if r.done:
                    step.append(_PAD)
                    continue
                if r.queue:
                    t = r.queue.popleft()
                else:
                    t = self._sample(r, logp[i])
                self._consume(r, t)
                step.append(t)
            logits = dec.logits(np.array(step, dtype=np.int64).reshape(len(rows), 1))
        return rows

    # ------------------------------------------------------------ grammar
    def _allowed(self, row: _Row) -> np.ndarray:
        length = MAX_STEPS
        if row.state == "vel":
            return _VEL_MASK
        if row.state == "dur":
            return _DUR_MASK
        mask = np.zeros(_V, dtype=bool)
        bar_len = self._bar_len(row.bar)
        length = min(length, bar_len)
        full = len(row.bar_tokens) >= MAX_BAR_TOKENS - 4
        if row.state in ("start", "after") and not full:
            mask[POS0 + row.pos + 1 : POS0 + length] = True
        if row.state == "note" or (row.state == "after" and not full):
            ids = self.note_ids[self.note_ids > row.last_value] if row.state != "note" else self.note_ids
            if row.state == "after":
                mask[ids] = True
            else:
                mask[self.note_ids] = True
        if row.state == "after" or (row.state == "start" and (full or not mask.any())):
            mask[_EOB] = True
        return mask

    def _steps(self, tokens: list[int], bar: int, following: int) -> np.ndarray | None:
        """Per step, whether ``tokens`` (bar ``bar`` of the part) has an onset there; None when the ``following``
        bar is of another length or the song ends, so its rhythm is no model for the next bar."""
        if following >= len(self.ctx) or self._bar_len(bar) != self._bar_len(following):
            return None
        return _onset_steps(tokens)

    def _bar_len(self, bar: int) -> int:
        head = self.ctx[bar][1] if len(self.ctx[bar]) > 1 else None
        return head - _LEN0 + 1 if head is not None and _LEN0 <= head < _LEN0 + MAX_STEPS else 16

    def _sample(self, row: _Row, logp: np.ndarray) -> int:
        mask = self._allowed(row)
        s = self.settings
        bias = self._guidance(row, mask, logp)
        guided = logp if bias is None else logp + bias
        scores = np.where(mask, guided / max(s.temperature, 1e-4), -np.inf)
        scores -= scores.max()
        probs = np.exp(scores)
        probs /= probs.sum()
        if row.state in ("note", "after") and self.note_temperature != s.temperature:
            # which note, at its own temperature; the mass of "a note" against moving on is kept
            _sharpen(probs, self.note_ids[mask[self.note_ids]], guided, self.note_temperature)
        if row.state in ("note", "after") and self.fresh_temperature is not None:
            # a sound (or pitch) the part has not played yet: how likely something new is stays the model's
            # call, but which new one is chosen at this lower temperature, so the kit grows by the model's
            # best guesses (at its own temperature, a drum part often took up the ride or a shaker at random
            # and kept it for the song)
            fresh = np.array([t for t in self.note_ids[mask[self.note_ids]] if t not in row.used], dtype=np.int64)
            if len(fresh) > 1:
                with np.errstate(divide="ignore"):
                    _sharpen(probs, fresh, np.log(probs), self.fresh_temperature)
        top_p = self.length_top_p if row.state == "dur" else s.top_p
        if top_p < 1.0:
            order = np.argsort(-probs)
            keep = np.cumsum(probs[order]) - probs[order] < top_p
            trimmed = np.zeros_like(probs)
            trimmed[order[keep]] = probs[order[keep]]
            probs = trimmed / trimmed.sum()
        token = _draw(self.rng, probs)
        row.logprob += float(logp[token])
        row.sampled += 1
        return token

    @staticmethod
    def _likely_bar_tokens(row: _Row) -> int:
        """Room a bar of ``row`` will likely take: its longest of the last 8 bars (16 at least), and EOB."""
        return max(max((len(b) for b in row.bars[-8:]), default=0), 16) + 2

    def _take_back(self, row: _Row) -> None:
        """Forget the bar ``row`` is writing (its tokens, onsets, notes and likelihood) and end the row."""
        if not row.bars:
            # the window's first bar always fits (the prompt leaves it MAX_BAR_TOKENS); never drop it
            raise RuntimeError("a window ran out of room in its first bar")
        row.logprob, row.sampled, row.onsets, used, pitches = row.bar_start
        row.used = set(used)
        del row.pitches[pitches:]
        row.queue.clear()
        row.bar_tokens = []
        row.done = True

    def _consume(self, row: _Row, token: int) -> None:
        """Advance a row's grammar state with a token (forced or sampled)."""
        if row.state == "forced":
            if token == _TGT:
                row.state, row.pos, row.last_value, row.bar_tokens = "start", -1, -1, []
            return
        if token == _EOB:
            if self.active[row.bar]:
                row.quarters += self._bar_len(row.bar) / 4
            row.bars.append(row.bar_tokens)
            if self.riff_weight:
                row.last_steps = self._steps(row.bar_tokens, row.bar, row.bar + 1)
            if len(row.bars) == self.opening_bars:
                row.opening_score = row.score
            row.state = "forced"
            nxt = row.bar + 1
            room = self.decoder.max_length - self.decoder.length - self.pending - 2
            # a bar is begun when its context and a bar as long as the part's longest recent one fit; one
            # that runs longer is taken back when the window fills (a worst-case reserve of MAX_BAR_TOKENS
            # had ended windows after ~3 bars, and every window re-reads its whole prompt)
            need = (len(self.ctx[nxt + 1]) if nxt + 1 < len(self.ctx) else 0) + self._likely_bar_tokens(row) + 2
            if nxt >= len(self.ctx) or need > room:
                row.done = True
            else:
                self._begin_bar(row, nxt)
            return
        row.bar_tokens.append(token)
        if POS0 <= token < POS0 + MAX_STEPS:
            row.pos, row.last_value, row.state = token - POS0, -1, "vel"
            row.onsets += 1
        elif VEL0 <= token < VEL0 + NUM_VELOCITIES:
            row.state = "note"
        elif DUR0 <= token < DUR0 + len(DURATIONS):
            row.state = "after"
        else:  # a pitch or drum
            if self.register_weight and row.state == "note":
                # an onset's first note only: the notes stacked on it climb, and their median would ratchet
                # the register up chord by chord
                row.pitches.append(token)
            row.last_value = token
            row.used.add(token)
            row.state = "after" if self.drums else "dur"


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities of each row's logits (float32, as the decoders give them)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _draw(rng: np.random.Generator, probs: np.ndarray) -> int:
    """A token drawn from ``probs``: the draw ``rng.choice(len(probs), p=probs)`` makes, from the same
    uniform number, without its checks (a tenth of a token's sampling time)."""
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    return int(cdf.searchsorted(rng.random(), side="right"))


def _sharpen(probs: np.ndarray, ids: np.ndarray, logits: np.ndarray, temperature: float) -> None:
    """Re-spread, in place, the mass ``probs`` gives the tokens ``ids`` by ``softmax(logits / temperature)``:
    which of them is chosen changes, how likely one of them is does not."""
    mass = probs[ids].sum() if len(ids) else 0.0
    if mass > 0:
        sharp = logits[ids] / max(temperature, 1e-4)
        sharp = np.exp(sharp - sharp.max())
        probs[ids] = mass * sharp / sharp.sum()


def _onset_steps(tokens: list[int]) -> np.ndarray:
    """Per 16th step of a bar, whether ``tokens`` (a bar's tokens) start a note there."""
    steps = np.zeros(MAX_STEPS, dtype=bool)
    positions = np.array([t - POS0 for t in tokens if POS0 <= t < POS0 + MAX_STEPS], dtype=np.int64)
    steps[positions] = True
    return steps


def _take_profile(row: _Row, note_ids: np.ndarray, bars: int | None = None) -> np.ndarray:
    """A candidate's note counts and onset steps (in its first ``bars`` bars, None: all), each scaled to
    unit length, side by side."""
    tokens = np.array([t for bar in row.bars[:bars] for t in bar], dtype=np.int64)
    notes = np.bincount(tokens[np.isin(tokens, note_ids)] - note_ids[0], minlength=len(note_ids))
    steps = np.bincount(tokens[(tokens >= POS0) & (tokens < POS0 + MAX_STEPS)] - POS0, minlength=MAX_STEPS)
    return np.concatenate([v / max(float(np.linalg.norm(v)), 1e-9) for v in (notes, steps)])


def _pitch_classes_since(bar_tokens: list[int], since: int) -> np.ndarray:
    """Which pitch classes a bar's tokens so far played at or after step ``since``."""
    played = np.zeros(12, dtype=bool)
    pos = -1
    for t in bar_tokens:
        if POS0 <= t < POS0 + MAX_STEPS:
            pos = t - POS0
        elif PITCH0 <= t <= PITCH0 + PITCH_HIGH - PITCH_LOW and pos >= since:
            played[(t - PITCH0 + PITCH_LOW) % 12] = True
    return played


def _first_pitches(tokens: list[int]) -> list[int]:
    """The pitch token of each onset's first note in a bar's target tokens (a velocity, then its notes)."""
    out: list[int] = []
    first = False
    for t in tokens:
        if VEL0 <= t < VEL0 + NUM_VELOCITIES:
            first = True
        elif first and PITCH0 <= t <= PITCH0 + PITCH_HIGH - PITCH_LOW:
            out.append(t)
            first = False
    return out


def _redistribute(bias: np.ndarray | None, ids: np.ndarray, lift: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """Add ``lift`` to the tokens ``ids`` while keeping the total mass the model gives them: guidance
    chooses among the notes (or among the moves on from an onset) but never makes "a note here" likelier
    or less likely than moving on (a plain bonus would stack notes, and chords would climb out of the
    instrument's range)."""
    # the mass as the guides before this one left it: guides stack, and each keeps what the last one kept
    base = logp[ids] if bias is None else logp[ids] + bias[ids]
    p = np.exp(base - base.max())
    shift = np.log((p * np.exp(lift)).sum() / p.sum())
    out = np.zeros(_V) if bias is None else bias
    out[ids] += lift - shift
    return out


def _bin_range(edges: list[float], index: int, floor: float, ceiling: float) -> tuple[float, float]:
    """The value range of bin ``index`` of a three-bin attribute split at ``edges``."""
    bounds = [floor, *edges, ceiling]
    return float(bounds[index]), float(bounds[index + 1])
