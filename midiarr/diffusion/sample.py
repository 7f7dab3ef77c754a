"""Sampling the diffusion engine: windows of a song denoised in turn, any stems given or written.

One call, `RollDiffusion.run`, covers every mode: the stems to write are noised, the rest of
what the song holds is given. Given stems enter the model clean and flagged as known (the
trained conditional path) or, with ``partial="repaint"``, are noised to the current step and
put back at every step (MSG-LD's replacement). Separation gives the flattened notes as the
"mix" stem and mixes the model's answer with and without it (classifier-free guidance);
each input note then goes to the stem whose onset logit is highest at that note. Whole songs
are windows that overlap: the overlap of the next window is given from the one before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from midiarr.attributes import bin_edges
from midiarr.config import per_stem
from midiarr.diffusion.model import ACTIVITY_ANY, DENSITY_ANY, StemDiT, noise_schedule
from midiarr.diffusion.train import expand_tokens
from midiarr.engines.diffusion import ASSIGN, PASSES
from midiarr.engines.settings import EngineSettings, check_choice, check_range, sample_table, stem_values
from midiarr.errors import OptionError
from midiarr.harmony import best_chord
from midiarr.pianoroll import (
    NUM_DRUM_CLASSES,
    ONSET,
    PITCH_LOW,
    PITCH_ROWS,
    SLOTS,
    STEPS_PER_BEAT,
    SUSTAIN,
    SongRolls,
    rasterize,
)
from midiarr.threads import rebalance

SCHEDULERS = ("ddim", "dpm")
PARTIAL_MODES = ("conditional", "repaint")
DECODERS = ("columns", "cells")
# most notes a stem starts at once when decoding by columns
MAX_CHORD = {"bass": 2, "guitar": 6, "piano": 8}
# slots whose rows are pitches (the harmony pull reads and steers only these)
_PITCHED_SLOTS = frozenset(i for i, name in enumerate(SLOTS) if name not in ("drums", "mix"))


def decode_roll(logits: np.ndarray, stem: str, threshold: float, mode: str = "columns") -> np.ndarray:
    """A boolean (2, rows, steps) roll from final logits.

    "cells" keeps every cell whose probability passes ``threshold``. "columns" (pitched stems)
    first decides whether a step starts notes at all (the expected number of onsets there,
    the sum of the column's probabilities, reaches ``threshold``), then starts that many notes,
    rounded, on the likeliest rows: a model unsure between a root and its octave still plays one
    of them instead of neither. A started note is held while its sustain probability passes 0.5.
    Drums are always decided per cell: each class is its own instrument.
    """
    prob = 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))
    roll = np.zeros(prob.shape, dtype=bool)
    if stem == "drums":
        roll[ONSET, :NUM_DRUM_CLASSES] = prob[ONSET, :NUM_DRUM_CLASSES] > threshold
        return roll
    if mode == "cells":
        roll[ONSET] = prob[ONSET] > threshold
        roll[SUSTAIN] = (prob[SUSTAIN] > 0.5) & ~roll[ONSET]
        return roll
    expected = prob[ONSET].sum(axis=0)
    ranked = np.argsort(-prob[ONSET], axis=0)
    for step in np.flatnonzero(expected >= threshold):
        count = int(np.clip(np.rint(expected[step]), 1, MAX_CHORD.get(stem, 6)))
        roll[ONSET, ranked[:count, step], step] = True
    # hold each started note while its row's sustain stays likely and no new onset takes the row
    steps = prob.shape[-1]
    rows, cols = np.nonzero(roll[ONSET])
    for row, col in zip(rows, cols, strict=True):
        nxt = col + 1
        while nxt < steps and not roll[ONSET, row, nxt] and prob[SUSTAIN, row, nxt] > 0.5:
            roll[SUSTAIN, row, nxt] = True
            nxt += 1
    return roll


@dataclass
class DiffusionSettings(EngineSettings):
    """The diffusion engine's settings: how to sample (tuned values from the checkpoint's config, the
    ``sample`` table of configs/diffusion.toml it was trained with), and how several stems and
    separation's notes are written."""

    engine: ClassVar[str] = "diffusion"

    steps: int = 20
    scheduler: str = "ddim"
    guidance: float = 2.0
    partial: str = "conditional"
    overlap_steps: int = 32
    # onset probability that makes a note: one number, or per stem with "default" for the rest,
    # e.g. {"bass" = 0.35, "default" = 0.5} (a sparse bass model still plays where it leans to)
    threshold: float | dict[str, float] = 0.5
    shared_noise: bool = True
    hard_activity: bool = True
    decode: str = "columns"  # pitched stems: "columns" (notes per step by expected count) or "cells"
    assign_to_mix: bool = True  # separation: each mix cell belongs to exactly one written stem
    eta: float = 0.0  # DDIM: 0 deterministic, 1 ancestral (DDPM-like fresh noise each step)
    logit_bias: float = 0.0  # added to every written cell's logit: trades silence against busyness
    # pitched stems: at every denoising step, a step's onsets prefer the pitch classes the other parts
    # sound in that beat by this many logits (0 = the model alone); how many onsets stays the model's
    harmony_weight: float = 0.0
    # pitched stems: a further pull toward the root of the chord the other parts sound in each beat, one
    # number or per stem with "default" (bass players mostly play roots; a guitar's voicings would thin out)
    root_weight: float | dict[str, float] = 0.0
    # pitched stems: a further pull toward the tones of each beat's sounding chord that the stem does not
    # play yet in that beat (one number or per stem with "default"): the pulls above lift every chord
    # tone alike, so a part could dwell on one tone, doubled in octaves; this spreads it over the chord
    voicing_weight: float | dict[str, float] = 0.0
    # every stem: at every denoising step, onsets move toward the steps where the other parts have onsets,
    # by this many logits, within each beat (how many onsets a beat gets stays the model's); one number,
    # or per stem with "default" for the rest
    sync_weight: float | dict[str, float] = 0.0
    # controls the model heeds only loosely, kept at every denoising step by one shift of a stem's onset
    # logits (where it plays, which rows and steps stay the model's): the asked density bin (True), and at
    # least this many expected onset steps in every bar the stem is asked to play in (0 = off; one number,
    # or per stem with "default" for the rest)
    density_pull: bool = False
    bar_floor: float | dict[str, float] = 0.0
    # a written onset at most this many steps from an onset of the other parts, where they have none,
    # moves onto theirs (0 = off); one number, or per stem with "default" for the rest
    snap_steps: int | dict[str, int] = 0
    # several stems: one pass for all (STEMPHONIC), two (harmony first, then the rest hearing it) or
    # one per stem ("k")
    passes: str = "1"
    # separation's note assignment: the learned head ("head", when the checkpoint ships one) or the plain
    # rule on the model's logits ("logits")
    assign: str = "head"

    @classmethod
    def tuned(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        schedule = config.get("config", {}).get("schedule", {})
        return {**sample_table(config), "shared_noise": bool(schedule.get("shared_noise", True))}

    def threshold_for(self, stem: str) -> float:
        """The onset threshold of ``stem``."""
        return per_stem(self.threshold, stem, 0.5)

    def bar_floor_for(self, stem: str) -> float:
        """The least expected onset steps of ``stem`` in each bar it is asked to play in."""
        return per_stem(self.bar_floor, stem)

    def snap_steps_for(self, stem: str) -> int:
        """How far ``stem``'s onsets may move onto the other parts' onsets."""
        return int(per_stem(self.snap_steps, stem))

    def root_weight_for(self, stem: str) -> float:
        """The root pull of ``stem``."""
        return per_stem(self.root_weight, stem)

    def voicing_weight_for(self, stem: str) -> float:
        """The voicing pull of ``stem``."""
        return per_stem(self.voicing_weight, stem)

    def sync_weight_for(self, stem: str) -> float:
        """The sync pull of ``stem``."""
        return per_stem(self.sync_weight, stem)

    def check(self) -> DiffusionSettings:
        """Self, after refusing settings that cannot work."""
        check_range("steps", self.steps, 1, 1000, kind=int)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        check_choice("partial", self.partial, PARTIAL_MODES)
        check_range("guidance", self.guidance, 0, 100)
        check_choice("decode", self.decode, DECODERS)
        check_range("eta", self.eta, 0, 1)
        if not all(0 < v < 1 for v in stem_values(self.threshold)):
            raise OptionError(f"--threshold {self.threshold}: choose a number between 0 and 1")
        check_range("harmony_weight", self.harmony_weight, 0, 20)
        check_range("bar_floor", self.bar_floor, 0, 16)
        check_range("snap_steps", self.snap_steps, 0, 3, kind=int)
        for name in ("root_weight", "voicing_weight", "sync_weight"):
            check_range(name, getattr(self, name), 0, 20)
        check_choice("passes", self.passes, PASSES)
        check_choice("assign", self.assign, ASSIGN)
        return self


@dataclass
class StemRequest:
    """A stem to write: per-bar activity (None: play wherever the song plays) and a density bin."""

    stem: str
    active_bars: np.ndarray | None = None
    density: int = DENSITY_ANY


@dataclass
class SongResult:
    """Written rolls per stem for the whole song, and the final onset and sustain logits (for
    separation's note assignment)."""

    rolls: dict[str, np.ndarray]
    onset_logits: dict[str, np.ndarray] = field(default_factory=dict)
    sustain_logits: dict[str, np.ndarray] = field(default_factory=dict)


def _share_the_mix(logits: torch.Tensor, mix_on: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """Separation's constraint inside the sampler: a written stem holds nothing the mix lacks, and
    each cell the mix holds is shared out among the written stems (their probabilities there sum
    to one, a softmax of their logits), so the estimate of every step already adds up to the mix."""
    out = logits.clone()
    idx = torch.tensor(targets)
    share = torch.softmax(logits[idx], dim=0)  # (targets, 2, rows, steps)
    # back to logits of the shared probabilities, clipped away from 0 and 1
    shared = torch.logit(share.clamp(1e-4, 1 - 1e-4))
    out[idx] = torch.where(mix_on[None], shared, torch.full_like(shared, -30.0))
    return out


def beat_chord_rows(context: np.ndarray, bar_position: np.ndarray) -> np.ndarray:
    """(rows, steps) float: 1 where a row's pitch class sounds in ``context`` ((slots, 2, rows, steps)
    rolls) somewhere in the same beat, 0 elsewhere and in beats where the context is silent.

    Rows share one pitch axis: row r is MIDI pitch ``PITCH_LOW + r``.
    """
    steps = context.shape[-1]
    out = np.zeros((PITCH_ROWS, steps), dtype=np.float32)
    if not len(context):
        return out
    sounding = context.any(axis=(0, 1))  # (rows, steps)
    row_pc = (PITCH_LOW + np.arange(PITCH_ROWS)) % 12
    pcs = np.stack([sounding[row_pc == pc].any(axis=0) for pc in range(12)])
    # a beat starts at every 4th 16th of the bar (odd meters: counted from the bar line)
    beat = beat_index(bar_position[:steps])
    per_beat = np.zeros((12, beat.max(initial=0) + 1), dtype=bool)
    for pc in range(12):
        np.logical_or.at(per_beat[pc], beat, pcs[pc])
    in_beat = per_beat[:, beat]  # (12, steps)
    out[:] = in_beat[row_pc]
    return out


def beat_root_rows(context: np.ndarray, bar_position: np.ndarray) -> np.ndarray:
    """(rows, steps) float: 1 on the rows of the root of the chord ``context`` ((slots, 2, rows, steps)
    rolls) sounds in each beat (the best chord template over the beat's sounding cells, low rows
    counted twice as they name the root), 0 elsewhere and in silent beats."""
    steps = context.shape[-1]
    out = np.zeros((PITCH_ROWS, steps), dtype=np.float32)
    if not len(context):
        return out
    sounding = context.any(axis=(0, 1)).astype(np.float64)  # (rows, steps)
    pitch = PITCH_LOW + np.arange(PITCH_ROWS)
    weight = np.where(pitch < 55, 2.0, 1.0)
    beat = beat_index(bar_position[:steps])
    per_beat = np.zeros((beat.max(initial=0) + 1, 12))
    np.add.at(per_beat, (beat[None, :], (pitch % 12)[:, None]), sounding * weight[:, None])
    for b, vec in enumerate(per_beat):
        if vec.any():
            root = best_chord(vec)[0]
            cols = beat == b
            out[np.ix_(pitch % 12 == root, cols)] = 1.0
    return out


def _pull_keeping_sums(
    onset_logits: torch.Tensor,
    bias: torch.Tensor,
    sums: Callable[[torch.Tensor], torch.Tensor],
    spread: Callable[[torch.Tensor], torch.Tensor],
    iterations: int = 4,
) -> torch.Tensor:
    """``onset_logits + bias``, with each group of cells shifted by the constant that gives the group
    back the expected onset count (sum of probabilities) it had before. ``sums`` adds cells up per
    group and ``spread`` hands each group's value back to its cells. Newton's method starts from the
    first-order guess, which is exact only for unlikely cells."""
    prob = torch.sigmoid(onset_logits)
    mass = sums(prob)
    moved = onset_logits + bias
    shift = torch.log(sums(prob * torch.exp(bias)).clamp_min(1e-12) / mass.clamp_min(1e-12))
    for _ in range(iterations):
        p = torch.sigmoid(moved - spread(shift))
        shift = shift + (sums(p) - mass) / sums(p * (1 - p)).clamp_min(1e-6)
    return moved - spread(shift)


def pull_rows(onset_logits: torch.Tensor, bias: torch.Tensor, iterations: int = 4) -> torch.Tensor:
    """Onset logits (rows, steps) with ``bias`` (rows, steps) moving each step's probability mass
    between rows while the step's expected number of onsets stays what it was (column sums kept)."""

    def columns(values: torch.Tensor) -> torch.Tensor:
        return values.sum(dim=0, keepdim=True)

    return _pull_keeping_sums(onset_logits, bias, columns, lambda shift: shift, iterations)


def voicing_bias(stem_logits: torch.Tensor, tones: torch.Tensor, beats: torch.Tensor) -> torch.Tensor:
    """(rows, steps) bias toward the chord tones a stem does not play yet in each beat, for `pull_rows`.

    ``stem_logits`` (2, rows, steps) are the stem's onset and sustain logits now; ``tones`` (rows, steps)
    is the weight where a row's pitch class sounds in the other parts in that beat (0 elsewhere);
    ``beats`` (steps,) numbers the beats. A pitch class the stem already sounds for a step or more of
    the beat (any octave, struck or held) gets no bonus; one it does not sound gets the full weight.
    """
    rows, steps = tones.shape
    prob = torch.sigmoid(stem_logits)
    sounding = 1 - (1 - prob[ONSET]) * (1 - prob[SUSTAIN])  # (rows, steps)
    pitch_class = torch.from_numpy((PITCH_LOW + np.arange(rows)) % 12)
    count = int(beats.max()) + 1 if steps else 0
    per_class = torch.zeros(12, steps, dtype=sounding.dtype).index_add_(0, pitch_class, sounding)
    played = torch.zeros(12, count, dtype=sounding.dtype).index_add_(1, beats, per_class)
    unplayed = (1 - played).clamp(0, 1)[pitch_class][:, beats]  # (rows, steps)
    return tones * unplayed


def beat_index(bar_position: np.ndarray) -> np.ndarray:
    """Beat number of every step (a beat starts at every 4th 16th from the bar line; odd meters too)."""
    beat = np.cumsum(bar_position % STEPS_PER_BEAT == 0) - 1
    return beat - beat.min(initial=0)


def pull_steps(
    onset_logits: torch.Tensor, bias: torch.Tensor, group: torch.Tensor, iterations: int = 4
) -> torch.Tensor:
    """Onset logits (rows, steps) with ``bias`` (steps,) moving each row's probability mass between the
    steps of a group (a beat) while the row's expected number of onsets in that group stays what it was:
    the `pull_rows` idea along time. ``group`` (steps,) numbers the groups 0..G-1."""
    count = int(group.max()) + 1 if len(group) else 0
    rows = onset_logits.shape[0]

    def per_group(values: torch.Tensor) -> torch.Tensor:  # (rows, steps) -> (rows, G) sums
        return torch.zeros(rows, count, dtype=values.dtype).index_add_(1, group, values)

    return _pull_keeping_sums(onset_logits, bias[None], per_group, lambda shift: shift[:, group], iterations)


def snap_onsets(
    roll: np.ndarray,
    logits: np.ndarray,
    heard: np.ndarray,
    reach: int,
    start: int = 0,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """``roll`` (2, rows, steps) with every onset at a step where the other parts start nothing moved
    onto the nearest step within ``reach`` where they do (the likelier one by ``logits`` on a tie),
    if the stem starts nothing there yet; steps before ``start`` are given and stay, and steps outside
    ``allowed`` (steps,) (bars asked to rest) are never moved onto. A note moved earlier is held
    into its old start; one moved later starts later. ``heard`` (steps,) marks the others' onsets."""
    out = roll.copy()
    steps = roll.shape[-1]
    if allowed is not None:
        heard = heard & allowed
    rows, cols = np.nonzero(roll[ONSET] & ~heard[None])
    for row, col in zip(rows, cols, strict=True):
        if col < start:
            continue
        near = [c for d in range(1, reach + 1) for c in (col - d, col + d) if start <= c < steps and heard[c]]
        # a step where the stem already starts a note is taken: moving there would merge two onsets;
        # the nearest free one within reach is used instead
        near = [c for c in near if not out[ONSET, :, c].any()]
        near = [c for c in near if abs(c - col) == abs(near[0] - col)]
        if not near:
            continue
        to = max(near, key=lambda c: logits[ONSET, row, c])
        out[ONSET, row, col] = False
        if to < col:
            out[SUSTAIN, row, to + 1 : col + 1] = True
        out[ONSET, row, to] = True
        out[SUSTAIN, row, to] = False
        if to > col:
            out[SUSTAIN, row, col:to] = False
    return out


def fill_silent_bars(roll: np.ndarray, logits: np.ndarray, budget: OnsetBudget) -> np.ndarray:
    """``roll`` with a note on each of the likeliest ``floor`` (rounded, at least 1) free steps of every
    asked-for bar that still starts nothing once decoded (its likeliest row there, held while its
    sustain stays likely): the floor's promise kept where the model's onsets stayed under the threshold."""
    if budget.floor <= 0:
        return roll
    out = roll.copy()
    rows = budget.rows
    bar, free = budget.bar.numpy(), budget.free.numpy()
    playing = out[ONSET, :rows].any(axis=0) | budget.given.numpy()
    prob = 1.0 / (1.0 + np.exp(-np.clip(logits[:, :rows], -30, 30)))
    count = max(1, round(budget.floor))
    for b in np.unique(bar[free]):
        in_bar = bar == b
        if playing[in_bar & budget.active.numpy()].any():
            continue
        steps = np.flatnonzero(in_bar & free)
        for col in steps[np.argsort(-prob[ONSET].sum(axis=0)[steps], kind="stable")[:count]]:
            row = int(prob[ONSET, :, col].argmax())
            out[ONSET, row, col] = True
            nxt = col + 1
            while nxt < out.shape[-1] and in_bar[nxt] and not out[ONSET, row, nxt] and prob[SUSTAIN, row, nxt] > 0.5:
                out[SUSTAIN, row, nxt] = True
                nxt += 1
    return out


@dataclass
class OnsetBudget:
    """How many onsets one written stem owes in a window, for `pull_budget`.

    ``free`` (steps,) marks the steps the sampler writes in a bar the stem is asked to play in;
    ``bar`` (steps,) numbers the window's bars 0..B-1; ``given`` (steps,) marks onset steps already
    fixed (the overlap with the window before); ``active`` (steps,) the steps of asked-for bars.
    ``density`` is the asked range of onset steps per beat (None: none asked); ``floor`` the least
    expected onset steps in every asked-for bar; ``rows`` how many rows are the stem's.
    ``lead_row_only``: a shift that adds onsets moves only each step's likeliest row. Drum rows are
    separate instruments decided cell by cell, so raising every row would strike the whole kit at once
    where more onset steps are owed (pitched stems are decoded by columns, whose notes per step are
    capped). A shift that removes onsets moves every row either way.
    """

    free: torch.Tensor
    bar: torch.Tensor
    given: torch.Tensor
    active: torch.Tensor
    density: tuple[float, float] | None
    floor: float
    rows: int
    lead_row_only: bool = False


def _onset_steps(onset_logits: torch.Tensor) -> torch.Tensor:
    """Per step, the probability that any row starts a note there (rows independent)."""
    return 1.0 - torch.exp(torch.nn.functional.logsigmoid(-onset_logits).sum(dim=0))


def _solve_shift(
    expected: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor, low: float, high: float
) -> torch.Tensor:
    """Per group, the shift in [low, high] whose ``expected`` count (increasing in the shift) meets ``target``."""
    lo = torch.full_like(target, low)
    hi = torch.full_like(target, high)
    for _ in range(30):
        mid = (lo + hi) / 2
        below = expected(mid) < target
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return (lo + hi) / 2


def pull_budget(onset_logits: torch.Tensor, budget: OnsetBudget, margin: float = 0.1) -> torch.Tensor:
    """Onset logits (rows, steps) shifted so the stem keeps its asked density and plays in every bar
    it is asked to play in.

    The asked density (onset steps per beat over the asked-for bars) is met by one shift of every
    free cell, only when the expected density lies outside the range (``margin`` inside its edges);
    then each asked-for bar whose expected onset steps fall below the floor is lifted by its own
    shift. Shifts move all of a bar's cells alike (drums: a shift that adds onsets moves each step's
    likeliest sound only): which rows and steps play stays the model's. A target the 16th grid cannot
    hold is not aimed at.
    """
    out = onset_logits.clone()
    rows = budget.rows
    free_steps = budget.free.float()
    # the cells a shift that adds onsets moves: every row of the free steps, or only each one's
    # likeliest (a shift that removes onsets always moves every row: lowering all sounds stacks none)
    adding = free_steps
    if budget.lead_row_only:
        lead = torch.zeros_like(out[:rows])
        lead.scatter_(0, out[:rows].argmax(dim=0, keepdim=True), 1.0)
        adding = lead * free_steps
    beats = float(budget.active.sum()) / STEPS_PER_BEAT
    if budget.density is not None and beats > 0:
        low, high = budget.density
        fixed = float((budget.given & budget.active).sum())

        def density(shift: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
            q = _onset_steps(out[:rows] + shift[..., None, None] * moved)
            return (fixed + (q * free_steps).sum(dim=-1)) / beats

        now = float(density(torch.zeros(()), free_steps))
        # the grid holds at most one onset step per 16th: a target past that (an open-ended top bin
        # plus the margin) would drive the shift to its limit; aim halfway between the bin's edge and it
        floor_aim = min(low * (1 + margin), STEPS_PER_BEAT - (STEPS_PER_BEAT - low) / 2)
        want, moved = None, free_steps
        if now < floor_aim:
            want, moved = floor_aim, adding
        elif now > high * (1 - margin):
            want = high * (1 - margin)
        if want is not None:
            shift = _solve_shift(lambda x: density(x, moved), torch.tensor(want), -20.0, 20.0)
            out[:rows] = out[:rows] + shift * moved
    if budget.floor > 0:
        bars = int(budget.bar.max()) + 1
        asked = torch.zeros(bars).index_add_(0, budget.bar, budget.active.float()) > 0
        fixed = torch.zeros(bars).index_add_(0, budget.bar, (budget.given & budget.active).float())

        def per_bar(shift: torch.Tensor) -> torch.Tensor:  # (bars,) shifts -> (bars,) expected onset steps
            q = _onset_steps(out[:rows] + shift[budget.bar] * adding)
            return fixed + torch.zeros(bars).index_add_(0, budget.bar, q * free_steps)

        short = asked & (per_bar(torch.zeros(bars)) < budget.floor)
        if short.any():
            shift = _solve_shift(per_bar, torch.full((bars,), budget.floor), 0.0, 20.0)
            shift = torch.where(short, shift, torch.zeros_like(shift))
            out[:rows] = out[:rows] + shift[budget.bar] * adding
    return out


SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type")


class RollDiffusion:
    """A trained StemDiT with its noise schedule, sampling whole songs window by window."""

    def __init__(self, model: StemDiT, schedule: Any, settings: DiffusionSettings | None = None) -> None:
        """``schedule``: the training noise schedule (a diffusers scheduler, as saved with the checkpoint,
        or the ``[schedule]`` table of its config)."""
        self.model = model
        self.train_schedule = noise_schedule(schedule) if isinstance(schedule, Mapping) else schedule
        self.settings = (settings or DiffusionSettings()).check()
        self.window = model.config.window_steps
        self.patch = model.config.patch
        if not 0 <= self.settings.overlap_steps < self.window:
            # a window that overlaps the one before by all of itself would never move on
            raise OptionError(
                f"overlap_steps {self.settings.overlap_steps}: choose from 0 to {self.window - 1} "
                f"(the model's window is {self.window} steps)"
            )

    def _scheduler(self) -> object:
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        # the sampler takes the training schedule's betas and prediction, and its own defaults for the rest
        # (DPM-Solver spaces its steps otherwise than DDPM)
        trained = self.train_schedule.config
        common = {k: trained[k] for k in SCHEDULE_KEYS if k in trained}
        if self.settings.scheduler == "dpm":
            sched = DPMSolverMultistepScheduler.from_config(common, algorithm_type="dpmsolver++", solver_order=2)
        else:
            sched = DDIMScheduler.from_config(common, clip_sample=False, set_alpha_to_one=True)
        sched.set_timesteps(self.settings.steps)
        return sched

    def _window_starts(self, rolls: SongRolls) -> list[int]:
        bar_starts = np.flatnonzero(rolls.bar_position == 0)
        starts, begin = [0], 0
        while begin + self.window < rolls.steps:
            limit = begin + self.window - self.settings.overlap_steps
            nxt = bar_starts[(bar_starts > begin) & (bar_starts <= limit)]
            begin = int(nxt[-1]) if len(nxt) else limit
            starts.append(begin)
        return starts

    @torch.no_grad()
    def run(
        self,
        rolls: SongRolls,
        requests: list[StemRequest],
        seed: int = 0,
        mix: np.ndarray | None = None,
        progress: object | None = None,
    ) -> SongResult:
        """Write the requested stems for the whole song, hearing every other slot ``rolls`` holds.

        ``mix`` (2, rows, steps) makes it separation: the written stems should add up to it.
        """
        s = self.settings
        steps_total, window, patch = rolls.steps, self.window, self.patch
        targets = [SLOTS.index(r.stem) for r in requests]
        out = {r.stem: np.zeros((2, PITCH_ROWS, steps_total), dtype=bool) for r in requests}
        logits_out = {r.stem: np.full((2, PITCH_ROWS, steps_total), -30.0, dtype=np.float32) for r in requests}
        bar_id = np.cumsum(rolls.bar_position == 0) - 1
        gen = torch.Generator().manual_seed(int(seed))
        written_until = 0
        starts = self._window_starts(rolls)
        for w, begin in enumerate(starts):
            given = np.zeros((len(SLOTS), 2, PITCH_ROWS, window), dtype=bool)
            present = np.zeros(len(SLOTS), dtype=bool)
            for slot, name in enumerate(SLOTS[:-1]):
                if slot in targets or name not in rolls.stems or not len(rolls.stems[name]):
                    continue
                given[slot] = rasterize(rolls.stems[name], begin, window)
                present[slot] = given[slot].any()
            if mix is not None:
                seg = mix[:, :, begin : begin + window]
                given[SLOTS.index("mix"), :, :, : seg.shape[-1]] = seg
                present[SLOTS.index("mix")] = True
            present[targets] = True
            n = window // patch
            known = np.zeros((len(SLOTS), n), dtype=bool)
            known[present] = True
            known[targets] = False
            overlap_tokens = max(0, min(written_until - begin, window)) // patch if w else 0
            for r, slot in zip(requests, targets, strict=True):
                have = out[r.stem][:, :, begin : begin + overlap_tokens * patch]
                given[slot, :, :, : have.shape[-1]] = have
                known[slot, :overlap_tokens] = True
            bar_position = np.zeros(window, dtype=np.int64)
            seg_pos = rolls.bar_position[begin : begin + window]
            bar_position[: len(seg_pos)] = seg_pos
            if len(seg_pos) < window:
                tail = np.arange(window - len(seg_pos)) + (seg_pos[-1] + 1 if len(seg_pos) else 0)
                bar_position[len(seg_pos) :] = tail % 16
            activity = np.full((len(SLOTS), n), ACTIVITY_ANY, dtype=np.int64)
            density = np.full(len(SLOTS), DENSITY_ANY, dtype=np.int64)
            cell_active = np.ones((len(SLOTS), window), dtype=bool)
            for r, slot in zip(requests, targets, strict=True):
                density[slot] = r.density
                if r.active_bars is not None:
                    ids = bar_id[begin : begin + window]
                    on = np.zeros(window, dtype=bool)
                    ok = ids < len(r.active_bars)
                    on[: len(ids)][ok] = np.asarray(r.active_bars, dtype=bool)[ids[ok]]
                    cell_active[slot] = on
                    activity[slot] = on.reshape(n, patch).any(axis=1).astype(np.int64)
            harmony, voicing = {}, {}
            roots = {slot: s.root_weight_for(r.stem) for r, slot in zip(requests, targets, strict=True)}
            voices = {slot: s.voicing_weight_for(r.stem) for r, slot in zip(requests, targets, strict=True)}
            if (s.harmony_weight or any(roots.values()) or any(voices.values())) and mix is None:
                heard = [i for i in _PITCHED_SLOTS if present[i] and i not in targets]
                tones = beat_chord_rows(given[heard], bar_position)
                root = beat_root_rows(given[heard], bar_position) if any(roots.values()) else 0.0
                beats = torch.from_numpy(beat_index(bar_position))
                for slot in targets:
                    if slot in _PITCHED_SLOTS:
                        if s.harmony_weight or roots[slot]:
                            pull = s.harmony_weight * tones + roots[slot] * root
                            harmony[slot] = torch.from_numpy(np.asarray(pull, dtype=np.float32))
                        if voices[slot] and tones.any():
                            voicing[slot] = (torch.from_numpy(voices[slot] * tones), beats)
            sync = None
            weights = {slot: s.sync_weight_for(r.stem) for r, slot in zip(requests, targets, strict=True)}
            if any(weights.values()) and mix is None:
                heard = [i for i in range(len(SLOTS) - 1) if present[i] and i not in targets]
                onsets = given[heard, ONSET].any(axis=(0, 1)) if heard else np.zeros(window, dtype=bool)
                if onsets.any():
                    bias = torch.from_numpy(onsets.astype(np.float32))
                    group = torch.from_numpy(beat_index(bar_position))
                    sync = {slot: (w * bias, group) for slot, w in weights.items() if w}
            budgets = {}
            if mix is None:
                ids = np.full(window, -1, dtype=np.int64)
                ids[: len(bar_id[begin : begin + window])] = bar_id[begin : begin + window]
                ids[ids < 0] = ids.max() + 1
                for r, slot in zip(requests, targets, strict=True):
                    budget = self._budget(r, cell_active[slot], ids - ids.min(), given[slot], overlap_tokens * patch)
                    if budget is not None:
                        budgets[slot] = budget
            logits = self._denoise(
                given,
                present,
                known,
                activity,
                density,
                bar_position[::patch],
                targets,
                gen,
                harmony,
                sync,
                budgets,
                voicing,
            )
            keep_from = overlap_tokens * patch
            end = min(begin + window, steps_total)
            for r, slot in zip(requests, targets, strict=True):
                lg = logits[slot]
                if s.hard_activity and r.active_bars is not None:
                    lg = np.where(cell_active[slot][None, None, :], lg, -30.0)
                if mix is not None:  # a separated stem can only hold what the mix holds
                    lg = np.where(given[SLOTS.index("mix")], lg, -30.0)
                roll = decode_roll(lg, r.stem, s.threshold_for(r.stem), s.decode if mix is None else "cells")
                if slot in budgets:
                    roll = fill_silent_bars(roll, lg, budgets[slot])
                reach = s.snap_steps_for(r.stem) if mix is None else 0
                if reach:
                    heard = [i for i in range(len(SLOTS) - 1) if present[i] and i not in targets]
                    if heard:
                        onsets = given[heard, ONSET].any(axis=(0, 1))
                        allowed = cell_active[slot] if s.hard_activity else None
                        roll = snap_onsets(roll, lg, onsets, reach, keep_from, allowed)
                span = end - begin
                out[r.stem][:, :, begin + keep_from : end] = roll[:, :, keep_from:span]
                logits_out[r.stem][:, :, begin + keep_from : end] = lg[:, :, keep_from:span]
            written_until = end
            if progress is not None:
                progress(w + 1, len(starts))
        return SongResult(
            rolls=out,
            onset_logits={k: v[ONSET] for k, v in logits_out.items()},
            sustain_logits={k: v[SUSTAIN] for k, v in logits_out.items()},
        )

    def _budget(
        self, request: StemRequest, active: np.ndarray, bar: np.ndarray, given: np.ndarray, fixed_steps: int
    ) -> OnsetBudget | None:
        """The onset budget of one written stem in one window (None when no control asks for one)."""
        s = self.settings
        asked = s.density_pull and request.density != DENSITY_ANY
        floor = s.bar_floor_for(request.stem)
        if request.active_bars is None or not (asked or floor > 0):
            return None
        density = None
        if asked:
            edges = [0.0, *bin_edges("density", request.stem), float("inf")]
            density = (edges[request.density], edges[request.density + 1])
        rows = NUM_DRUM_CLASSES if request.stem == "drums" else PITCH_ROWS
        written = np.arange(len(active)) >= fixed_steps
        onset_steps = given[ONSET, :rows].any(axis=0) & ~written
        return OnsetBudget(
            free=torch.from_numpy(active & written),
            bar=torch.from_numpy(bar),
            given=torch.from_numpy(onset_steps),
            active=torch.from_numpy(active.copy()),
            density=density,
            floor=floor,
            rows=rows,
            lead_row_only=request.stem == "drums",
        )

    def _model_logits(
        self,
        x: torch.Tensor,
        t: int,
        present: np.ndarray,
        known: np.ndarray,
        activity: np.ndarray,
        density: np.ndarray,
        bar_position: np.ndarray,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cols = torch.from_numpy(np.flatnonzero(present.any(axis=0)))
        b = x.shape[0]
        return self.model(
            x[:, cols],
            torch.full((b,), int(t), dtype=torch.long),
            torch.from_numpy(present[:, cols.numpy()]),
            torch.from_numpy(known[:, cols.numpy()]),
            torch.from_numpy(activity[None].repeat(b, 0)[:, cols.numpy()]),
            torch.from_numpy(density[None].repeat(b, 0)[:, cols.numpy()]),
            torch.from_numpy(bar_position[None].repeat(b, 0)),
            slot_ids=cols,
        ), cols

    def _denoise(
        self,
        given: np.ndarray,
        present: np.ndarray,
        known: np.ndarray,
        activity: np.ndarray,
        density: np.ndarray,
        bar_position: np.ndarray,
        targets: list[int],
        gen: torch.Generator,
        harmony: dict[int, torch.Tensor] | None = None,
        sync: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
        budgets: dict[int, OnsetBudget] | None = None,
        voicing: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> np.ndarray:
        s = self.settings
        sched = self._scheduler()
        x0_given = torch.from_numpy(np.where(given, 1.0, -1.0).astype(np.float32))[None]
        shape = (1, 1 if s.shared_noise else len(SLOTS), 2, PITCH_ROWS, self.window)
        x = torch.randn(shape, generator=gen).expand(1, len(SLOTS), 2, PITCH_ROWS, self.window).clone()
        mix_slot = SLOTS.index("mix")
        guided = bool(present[mix_slot]) and s.guidance != 1.0
        if s.partial == "repaint":
            # MSG-LD: the model writes every slot; given ones are overwritten with their noised truth
            model_known = np.zeros_like(known)
            model_known[mix_slot] = known[mix_slot]
            replace = expand_tokens(torch.from_numpy(known)[None], self.patch)
            replace[:, mix_slot] = False
        else:
            model_known = known
            replace = None
        known_cells = expand_tokens(torch.from_numpy(model_known)[None], self.patch)
        pres = present[None]
        if guided:
            uncond = present.copy()
            uncond[mix_slot] = False
            pres = np.stack([present, uncond])
        repaint_noise = torch.randn(x.shape, generator=gen)
        alphas = sched.alphas_cumprod
        logits = None
        for t in sched.timesteps:
            rebalance()
            inp = torch.where(known_cells, x0_given, x)
            if replace is not None:
                ab = alphas[int(t)]
                noised = ab.sqrt() * x0_given + (1 - ab).sqrt() * repaint_noise
                inp = torch.where(replace, noised, inp)
            inp = torch.where(torch.from_numpy(present)[None, :, None, None, None], inp, torch.zeros_like(inp))
            batch_known = np.repeat(model_known[None], pres.shape[0], 0)
            batch_inp = inp.expand(pres.shape[0], *inp.shape[1:])
            out, cols = self._model_logits(batch_inp, int(t), pres, batch_known, activity, density, bar_position)
            lg = out[0] if not guided else out[1] + s.guidance * (out[0] - out[1])
            logits = torch.full((len(SLOTS), 2, PITCH_ROWS, self.window), -30.0)
            logits[cols] = lg + s.logit_bias
            # how many onsets first; the pulls after it move them between rows and steps, keeping the count
            for slot, budget in (budgets or {}).items():
                logits[slot, ONSET] = pull_budget(logits[slot, ONSET], budget)
            for slot, bias in (harmony or {}).items():
                logits[slot, ONSET] = pull_rows(logits[slot, ONSET], bias)
            for slot, (tones, beats) in (voicing or {}).items():
                logits[slot, ONSET] = pull_rows(logits[slot, ONSET], voicing_bias(logits[slot], tones, beats))
            for slot, (bias, group) in (sync or {}).items():
                logits[slot, ONSET] = pull_steps(logits[slot, ONSET], bias, group)
            if present[mix_slot] and s.assign_to_mix:
                logits = _share_the_mix(logits, x0_given[0, mix_slot] > 0, targets)
            x0_hat = torch.tanh(logits / 2)[None]
            if s.scheduler == "ddim":
                x = sched.step(x0_hat, t, x, eta=s.eta, generator=gen).prev_sample
            else:
                x = sched.step(x0_hat, t, x, generator=gen).prev_sample
        return logits.numpy() if logits is not None else np.full(given.shape, -30.0, dtype=np.float32)
