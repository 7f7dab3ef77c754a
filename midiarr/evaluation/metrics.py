"""Metrics for a written part against the song and the real part. Plain functions on note arrays.

Times are ticks of ``song`` (the song the part was written for); "beat" is a quarter note.
"""

from __future__ import annotations

import numpy as np

from midiarr.harmony import note_windows, sounding_pitch_classes
from midiarr.roles import PLAYABLE_RANGES
from midiarr.song import Song

# Playable ranges (MIDI pitch) per stem; drums: the General MIDI percussion map.
VALID_RANGES = PLAYABLE_RANGES


def _tol(tpb: int) -> float:
    """Timing tolerance: a 64th note (human-played files drift off the grid)."""
    return tpb / 16


def harmonic_fit(song: Song, part: np.ndarray, context: np.ndarray) -> float:
    """Duration-weighted share of the part's sounding time whose pitch class also sounds in ``context``
    within the same beat (1.0 = every note is a tone of what else plays). A note held over several
    beats is judged in each beat for the time it sounds there; beats where the context is silent are
    left out. NaN if nothing can be judged."""
    if len(part) == 0:
        return float("nan")
    end = max(song.end_tick, int((part["start"] + part["duration"]).max()) + 1)
    beats = song.beat_starts(end)
    bounds = np.append(beats, end + 1)
    sounding = sounding_pitch_classes(context, bounds)
    win, note, overlap = note_windows(part, bounds)
    judged = sounding[win].any(axis=1)
    if not judged.any():
        return float("nan")
    fits = sounding[win, part["pitch"][note] % 12]
    w = overlap.astype(float)
    return float((w * fits)[judged].sum() / w[judged].sum())


def grid_share(part: np.ndarray, tpb: int) -> float:
    """Share of onsets within a 64th note of the 16th-note grid."""
    if len(part) == 0:
        return float("nan")
    step = tpb / 4
    off = np.abs(part["start"] / step - np.round(part["start"] / step)) * step
    return float(np.mean(off <= _tol(tpb)))


def onset_sync(part: np.ndarray, context: np.ndarray, tpb: int) -> float:
    """Share of the part's onsets that coincide (within a 64th note) with an onset of another part."""
    if len(part) == 0 or len(context) == 0:
        return float("nan")
    ctx = np.unique(context["start"])
    onsets = np.unique(part["start"])
    i = np.clip(np.searchsorted(ctx, onsets), 1, len(ctx) - 1) if len(ctx) > 1 else np.zeros(len(onsets), int)
    nearest = np.minimum(np.abs(ctx[i] - onsets), np.abs(ctx[np.maximum(i - 1, 0)] - onsets))
    return float(np.mean(nearest <= _tol(tpb)))


def onset_histogram(song: Song, part: np.ndarray) -> np.ndarray:
    """Onsets per 16th-note position in the bar (16 positions; other meters fold onto them)."""
    hist = np.zeros(16)
    if len(part) == 0:
        return hist
    bars = song.bar_starts(int(part["start"].max()) + 1)
    idx = np.clip(np.searchsorted(bars, part["start"], side="right") - 1, 0, len(bars) - 1)
    pos = np.round((part["start"] - bars[idx]) / (song.ticks_per_beat / 4)).astype(int) % 16
    np.add.at(hist, pos, 1)
    return hist


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity (NaN when either vector is zero)."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def groove_similarity(song: Song, part: np.ndarray, real: np.ndarray) -> float:
    """Cosine of the 16-position onset histograms of the part and the real part."""
    return cosine(onset_histogram(song, part), onset_histogram(song, real))


def density_ratio(part: np.ndarray, real: np.ndarray) -> float:
    """Distinct onsets of the part over those of the real part."""
    n_real = len(np.unique(real["start"])) if len(real) else 0
    return float(len(np.unique(part["start"])) / n_real) if n_real else float("nan")


def pitch_profile(part: np.ndarray, drums: bool = False) -> np.ndarray:
    """Duration-weighted pitch-class profile (drums: weighted histogram over the 128 drum sounds)."""
    size = 128 if drums else 12
    if len(part) == 0:
        return np.zeros(size)
    keys = part["pitch"] if drums else part["pitch"] % 12
    return np.bincount(keys, weights=np.maximum(part["duration"], 1).astype(float), minlength=size)


def profile_similarity(part: np.ndarray, real: np.ndarray, drums: bool = False) -> float:
    """Cosine of the pitch-class (or drum-sound) profiles of the part and the real part."""
    return cosine(pitch_profile(part, drums), pitch_profile(real, drums))


# General MIDI names several notes for one piece of a kit: an acoustic and an electric (or "1" and
# "2") bass drum, snare, crash and ride, and six tom pitches. Files pick among them by habit, and the
# song without its drums does not say which habit, so `kit_similarity` counts each group as one piece.
KIT_PIECES: tuple[tuple[int, ...], ...] = ((35, 36), (38, 40), (41, 43, 45, 47, 48, 50), (49, 57), (51, 59))
_KIT_PIECE_OF = np.arange(128)
for _group in KIT_PIECES:
    _KIT_PIECE_OF[list(_group)] = _group[0]


def _kit_profile(notes: np.ndarray) -> np.ndarray:
    pieces = notes.copy()
    pieces["pitch"] = _KIT_PIECE_OF[notes["pitch"]]
    return pitch_profile(pieces, drums=True)


def kit_similarity(part: np.ndarray, real: np.ndarray) -> float:
    """Cosine of two drum parts' duration-weighted profiles over kit pieces, the General MIDI notes
    that name one piece (`KIT_PIECES`) counted together: a kick on note 35 matches a kick on 36."""
    return cosine(_kit_profile(part), _kit_profile(real))


def range_validity(part: np.ndarray, stem: str) -> float:
    """Share of notes inside the stem's playable range."""
    if len(part) == 0:
        return float("nan")
    lo, hi = VALID_RANGES.get(stem, (0, 127))
    return float(np.mean((part["pitch"] >= lo) & (part["pitch"] <= hi)))


def bar_presence(part_active: np.ndarray, real_active: np.ndarray) -> tuple[float, float]:
    """(recall, precision) of the bars the part plays against the bars the real part plays."""
    n = max(len(part_active), len(real_active))
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[: len(part_active)] = part_active
    b[: len(real_active)] = real_active
    both = float((a & b).sum())
    recall = both / b.sum() if b.sum() else float("nan")
    precision = both / a.sum() if a.sum() else float("nan")
    return recall, precision


# ----------------------------------------------------- set-level distances
FEATURES = ("pitch", "duration", "ioi", "velocity", "density")
# Shared histogram bins per feature, for the overlapping area.
_BINS = {
    "pitch": np.arange(0, 129, 1),
    "duration": np.geomspace(1 / 32, 16, 41),
    "ioi": np.geomspace(1 / 32, 16, 41),
    "velocity": np.arange(0, 132, 4),
    "density": np.arange(0, 66, 2),
}


def note_features(song: Song, part: np.ndarray) -> dict[str, np.ndarray]:
    """Per-note pitch, duration and inter-onset interval (quarter notes), velocity; notes per active bar."""
    tpb = song.ticks_per_beat
    if len(part) == 0:
        return {k: np.zeros(0) for k in FEATURES}
    onsets = np.unique(part["start"])
    active = song.bar_activity(part)
    per_bar = np.bincount(np.clip(song.bar_index(part["start"]), 0, None), minlength=len(active))[: len(active)]
    return {
        "pitch": part["pitch"].astype(float),
        "duration": part["duration"] / tpb,
        "ioi": np.diff(onsets) / tpb,
        "velocity": part["velocity"].astype(float),
        "density": per_bar[active].astype(float),
    }


def overlapping_area(a: np.ndarray, b: np.ndarray, feature: str) -> float:
    """Overlap (0..1) of the normalized histograms of two samples of one feature, on shared bins."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    bins = _BINS[feature]
    ha, _ = np.histogram(np.clip(a, bins[0], bins[-1]), bins=bins)
    hb, _ = np.histogram(np.clip(b, bins[0], bins[-1]), bins=bins)
    return float(np.minimum(ha / ha.sum(), hb / hb.sum()).sum()) if ha.sum() and hb.sum() else float("nan")


def part_vector(features: dict[str, np.ndarray]) -> np.ndarray:
    """One vector per part: mean and spread of each feature (log scale for times)."""
    out = []
    for k in FEATURES:
        v = features[k]
        if k in ("duration", "ioi"):
            v = np.log2(np.maximum(v, 1 / 64))
        out += [float(np.mean(v)) if len(v) else 0.0, float(np.std(v)) if len(v) else 0.0]
    return np.array(out)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of vectors (rows)."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # trace of the matrix square root of cov_a @ cov_b, through the eigenvalues (real, >= 0 up to noise)
    eig = np.linalg.eigvals(cov_a @ cov_b)
    tr_sqrt = float(np.sum(np.sqrt(np.clip(eig.real, 0, None))))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)


# ------------------------------------------------- how a player plays (issue 26, item 3)
# Per-part attributes whose written value is compared with the real part's, and the same distance between
# the real parts of two different songs is the yardstick: a written part "plays like a player" on an
# attribute when it is no further from its song's real part than one real part is from another song's.


def rhythm_repetition(song: Song, part: np.ndarray) -> float:
    """Share of bars whose onset pattern on the 16th grid equals the previous bar's, over the pairs of
    successive bars where either plays (a bar that goes silent after a playing one counts as a change).
    Positions are 16ths from the bar start, so a bar of another meter has its own number of positions.
    NaN when no pair of successive bars has an onset."""
    if len(part) == 0:
        return float("nan")
    onsets = np.unique(part["start"])
    bars = song.bar_starts(max(song.end_tick, int(onsets.max()) + 1))
    idx = np.clip(np.searchsorted(bars, onsets, side="right") - 1, 0, len(bars) - 1)
    pos = np.round((onsets - bars[idx]) / (song.ticks_per_beat / 4)).astype(np.int64)
    patterns: dict[int, set[int]] = {}
    for b, p in zip(idx.tolist(), pos.tolist()):
        patterns.setdefault(b, set()).add(p)
    same = pairs = 0
    for b in range(1, int(idx.max()) + 1):
        prev, cur = patterns.get(b - 1), patterns.get(b)
        if prev is None and cur is None:
            continue
        pairs += 1
        same += int(prev == cur)
    return float(same / pairs) if pairs else float("nan")


def section_marks(song: Song, part: np.ndarray, changes: np.ndarray) -> tuple[float, float]:
    """How a drum part marks the changes of the band (`midiarr.player.sections.section_changes`, per bar of
    the song): over the bars with a change where the part plays in that bar and the one before, the share
    whose bar before has a tom in its second half (a fill into the change) and the share that has a crash
    within its first 16th. NaN, NaN when the part meets no change."""
    if not len(part) or not changes.any():
        return float("nan"), float("nan")
    bars = song.bar_starts(max(song.end_tick, int(part["start"].max()) + 1))
    n = min(len(bars), len(changes))
    ends = np.append(bars[1:], bars[-1] + 4 * song.ticks_per_beat)
    bar = np.clip(np.searchsorted(bars, part["start"], side="right") - 1, 0, len(bars) - 1)
    offset = part["start"] - bars[bar]
    playing = np.bincount(bar, minlength=len(bars)) > 0
    toms = np.isin(part["pitch"], KIT_SHARES["tom"])
    crash = np.isin(part["pitch"], KIT_SHARES["crash"])
    filled = np.zeros(len(bars), dtype=bool)
    filled[bar[toms & (2 * offset >= ends[bar] - bars[bar])]] = True
    crashed = np.zeros(len(bars), dtype=bool)
    crashed[bar[crash & (offset < song.ticks_per_beat / 4)]] = True
    met = [b for b in range(1, n) if changes[b] > 0 and playing[b] and playing[b - 1]]
    if not met:
        return float("nan"), float("nan")
    return float(np.mean(filled[np.array(met) - 1])), float(np.mean(crashed[met]))


def song_repetition(song: Song, part: np.ndarray, context: np.ndarray) -> float:
    """Share of the bars that repeat an earlier bar of the other parts (`midiarr.player.repeats`) in which
    the part plays exactly what it played in that earlier bar, over the bars where it plays in either;
    NaN when the song repeats no bar where the part plays."""
    from midiarr.player.repeats import repeated_bars

    same, total = repeated_bars(song, part, context)
    return same / total if total else float("nan")


def length_spread(part: np.ndarray, tpb: int) -> float:
    """Standard deviation of log2 note length in beats (a 64th-beat floor, so a 1-tick drum hit does not
    dominate); 0 = every note the same length, 1 = lengths typically a factor of two apart. NaN under 2 notes."""
    if len(part) < 2:
        return float("nan")
    return float(np.std(np.log2(np.maximum(part["duration"] / tpb, 1 / 64))))


def velocity_spread(part: np.ndarray) -> float:
    """Standard deviation of velocity (of 127). NaN under 2 notes."""
    return float(np.std(part["velocity"].astype(float))) if len(part) >= 2 else float("nan")


def pitch_spread(part: np.ndarray) -> float:
    """Standard deviation of pitch in semitones (the spread of the register a part uses). NaN under 2 notes."""
    return float(np.std(part["pitch"].astype(float))) if len(part) >= 2 else float("nan")


INTERVAL_RANGE = 12  # successive intervals beyond an octave are clipped onto +-12


def interval_profile(part: np.ndarray) -> np.ndarray:
    """Distribution (sums to 1; all zeros with fewer than two onsets) of the melodic intervals between
    successive onsets of the part's lowest line (the lowest pitch at each onset), clipped to -12..+12:
    index 0 is an octave or more down, 12 a repeated note, 24 an octave or more up."""
    hist = np.zeros(2 * INTERVAL_RANGE + 1)
    if len(part) < 2:
        return hist
    order = np.lexsort((part["pitch"], part["start"]))
    starts, pitches = part["start"][order], part["pitch"][order].astype(np.int64)
    first = np.r_[True, starts[1:] != starts[:-1]]  # the lowest pitch is the first of each onset
    lowest = pitches[first]
    if len(lowest) < 2:
        return hist
    steps = np.clip(np.diff(lowest), -INTERVAL_RANGE, INTERVAL_RANGE) + INTERVAL_RANGE
    np.add.at(hist, steps, 1)
    return hist / hist.sum()


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance of two distributions (0 = the same, 1 = no overlap); NaN when either is empty."""
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


# Kit pieces whose share of a drum part's notes the report gives: General MIDI's names of one piece counted
# together (`KIT_PIECES`), hats closed/pedal/open as one, the china and splash with the crashes and the bell
# with the ride; every other sound (percussion, side stick, cowbell...) is "other".
KIT_SHARES: dict[str, tuple[int, ...]] = {
    "kick": KIT_PIECES[0],
    "snare": KIT_PIECES[1],
    "hihat": (42, 44, 46),
    "tom": KIT_PIECES[2],
    "crash": (*KIT_PIECES[3], 52, 55),
    "ride": (*KIT_PIECES[4], 53),
}


def kit_shares(part: np.ndarray) -> dict[str, float]:
    """Share of a drum part's notes on each kit piece of `KIT_SHARES`, plus ``other``; the shares sum to 1.
    All NaN for an empty part."""
    names = [*KIT_SHARES, "other"]
    if len(part) == 0:
        return {k: float("nan") for k in names}
    pitch = part["pitch"]
    out = {k: float(np.isin(pitch, group).mean()) for k, group in KIT_SHARES.items()}
    out["other"] = float((~np.isin(pitch, [n for group in KIT_SHARES.values() for n in group])).mean())
    return out


def kit_share_vector(part: np.ndarray) -> np.ndarray:
    """`kit_shares` as a vector in `KIT_SHARES` order then ``other`` (zeros for an empty part)."""
    shares = kit_shares(part)
    return np.nan_to_num(np.array(list(shares.values()), dtype=float))


# ------------------------------------------------- engine-vs-engine differences
def paired_bootstrap(
    a: np.ndarray | list[float], b: np.ndarray | list[float], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Difference A - B of paired per-song values (row i of both is the same song; rows where either is
    NaN are dropped), with percentile bootstrap intervals at ``level``: songs are resampled with replacement
    ``resamples`` times (seeded, so a report is reproducible) and the difference recomputed on each draw.
    ``mean_diff`` is the mean of the per-song differences, ``median_diff`` the median of A minus the median
    of B (what the medians in the report would show), each with ``_lo``/``_hi``; ``n`` the songs used."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = len(x)
    out = {"n": float(n)}
    if n == 0:
        return out | {
            k: float("nan") for k in ("mean_diff", "mean_lo", "mean_hi", "median_diff", "median_lo", "median_hi")
        }
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = (x - y)[idx].mean(axis=1)
    medians = np.median(x[idx], axis=1) - np.median(y[idx], axis=1)
    tail = (1 - level) / 2 * 100
    lo_hi = [tail, 100 - tail]
    m_lo, m_hi = np.percentile(means, lo_hi)
    d_lo, d_hi = np.percentile(medians, lo_hi)
    return out | {
        "mean_diff": float((x - y).mean()),
        "mean_lo": float(m_lo),
        "mean_hi": float(m_hi),
        "median_diff": float(np.median(x) - np.median(y)),
        "median_lo": float(d_lo),
        "median_hi": float(d_hi),
    }
