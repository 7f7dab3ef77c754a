"""Guided sampling of the stem transformer (harmony, groove, instruction controls) and the int8 decoder.

The tiny session checkpoint is close to an untrained model, so what its parts do here comes from the
guidance: with a weight of 0 the same checks fail, which the tests show side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from midiarr.attributes import measure
from midiarr.engines import Controls, get_engine
from midiarr.evaluation import metrics as M
from midiarr.fixtures import band_song
from midiarr.harmony import estimate_chords
from midiarr.song import Song, TimeSignature
from midiarr.transformer.encode import BarGrid, encode_context
from midiarr.transformer.model import LeanDecoder, int8_available, read_checkpoint
from midiarr.transformer.vocab import VEL0, VOCAB
from tests.conftest import run_cli, run_cli_process


def _without(song: Song, name: str) -> Song:
    return song.with_tracks([t for t in song.tracks if t.name != name])


def _chord_tone_share(song: Song, notes: np.ndarray) -> float:
    chords = estimate_chords(song, [t for t in song.tracks if not t.is_drum and t.name != "Bass"])
    starts = np.array([c.start for c in chords])
    hits = [
        notes["pitch"][i] % 12 in chords[max(0, np.searchsorted(starts, s, "right") - 1)].tones
        for i, s in enumerate(notes["start"])
    ]
    return float(np.mean(hits))


def test_harmony_guidance_keeps_the_bass_on_chord_tones(tiny_checkpoint: Path) -> None:
    song = band_song(bars=8)
    context = _without(song, "Bass")
    shares = []
    for weight in (0.0, 8.0):
        engine = get_engine("transformer", checkpoint=tiny_checkpoint, harmony_weight=weight)
        out = engine.insert(context, "bass", Controls(), seed=1)
        shares.append(_chord_tone_share(out.song, out.song.tracks[out.new_tracks[0]].notes))
    assert shares[1] >= 0.95 and shares[1] > shares[0] + 0.2


def test_sync_guidance_locks_onsets_to_the_song(tiny_checkpoint: Path) -> None:
    song = band_song(bars=8)
    context = _without(song, "Bass")
    others = np.concatenate([t.notes for t in context.tracks])
    by_seed = {}
    for seed in (0, 1, 2):  # one take of a four-step model swings widely: three takes each way
        for weight in (0.0, 8.0):
            engine = get_engine("transformer", checkpoint=tiny_checkpoint, sync_weight=weight)
            out = engine.insert(context, "bass", Controls(), seed=seed)
            notes = out.song.tracks[out.new_tracks[0]].notes
            by_seed[seed, weight] = M.onset_sync(notes, others, song.ticks_per_beat)
    free, guided = (float(np.mean([by_seed[s, w] for s in (0, 1, 2)])) for w in (0.0, 8.0))
    # sync moves onsets onto the song's; an onset the model places after the bar's last one stays (sync
    # may not end the bar for it), so the lock is strong but not total
    assert guided >= 0.85 and guided > free + 0.2, by_seed
    sync = [by_seed[2, 0.0], by_seed[2, 8.0]]
    # per stem: a weight for the guitar only leaves the bass as the model writes it
    engine = get_engine("transformer", checkpoint=tiny_checkpoint)
    engine.settings.sync_weight = {"guitar": 8.0}
    out = engine.insert(context, "bass", Controls(), seed=2)
    assert M.onset_sync(out.song.tracks[out.new_tracks[0]].notes, others, song.ticks_per_beat) == sync[0]
    engine.settings.sync_weight = {"guitar": 1.0, "default": 8.0}
    out = engine.insert(context, "bass", Controls(), seed=2)
    assert M.onset_sync(out.song.tracks[out.new_tracks[0]].notes, others, song.ticks_per_beat) == sync[1]


@pytest.mark.parametrize("stem", ["bass", "drums"])
def test_control_guidance_meets_the_asked_density_and_dynamics(tiny_checkpoint: Path, stem: str) -> None:
    song = band_song(bars=12)
    context = _without(song, {"bass": "Bass", "drums": "Drums"}[stem])
    guided = get_engine("transformer", checkpoint=tiny_checkpoint, control_weight=3.0)
    for density, dynamics in (("sparse", "loud"), ("busy", "soft")):
        controls = Controls.build(density=density, dynamics=dynamics)
        out = guided.insert(context, stem, controls, seed=3)
        got = measure(out.song, out.song.tracks[out.new_tracks[0]].notes, stem).bins
        assert (got["density"], got["dynamics"]) == (density, dynamics)


def test_guidance_weights_are_checked(tiny_checkpoint: Path) -> None:
    from midiarr.errors import OptionError

    with pytest.raises(OptionError, match="harmony-weight"):
        get_engine("transformer", checkpoint=tiny_checkpoint, harmony_weight=-1.0)


@pytest.mark.skipif(not int8_available(), reason="this torch build has no int8 kernels")
def test_int8_decoder_stays_close_to_fp32(tiny_checkpoint: Path) -> None:
    state, config = read_checkpoint(tiny_checkpoint)
    ids = torch.randint(0, len(VOCAB), (2, 60), generator=torch.Generator().manual_seed(0))
    logits = []
    for int8 in (False, True):
        dec = LeanDecoder(state, config["gpt2"], int8=int8)
        assert dec.int8 == int8
        dec.reset(2)
        dec.forward(ids[:, :40])
        logits.append(torch.stack([dec.forward(ids[:, i : i + 1]) for i in range(40, 60)]))
    ref, q = (torch.log_softmax(x, -1) for x in logits)
    kl = (ref.exp() * (ref - q)).sum(-1).mean()
    assert float(kl) < 1e-3 and not torch.equal(ref, q)


def test_eval_set_option_reaches_the_engine_and_rejects_unknown_keys(tmp_path: Path) -> None:
    from midiarr.cli.common import engine_setting as _engine_setting

    assert _engine_setting("transformer.harmony_weight=1.5") == (("transformer", "harmony_weight"), 1.5)
    assert _engine_setting("transformer.int8=true") == (("transformer", "int8"), True)
    assert _engine_setting("diffusion.passes=1") == (("diffusion", "passes"), "1")
    assert run_cli("eval", "--engine", "rules", "--data", tmp_path, "-o", tmp_path / "r", "--set", "rules.x=1") == 2
    for bad in ("transformer.harmony_weight=abc", "transformer.candidates=1.5", "transformer.int8=maybe"):
        assert run_cli("eval", "--engine", "transformer", "--data", tmp_path, "-o", tmp_path / "r", "--set", bad) == 2
    proc = run_cli_process("eval", "--engine", "rules", "--data", tmp_path, "-o", tmp_path / "r", "--set", "oops")
    assert proc.returncode == 2 and "ENGINE.KEY=VALUE" in proc.stderr and "Traceback" not in proc.stderr


def test_guided_generation_from_nothing_still_writes_every_stem(tiny_checkpoint: Path) -> None:
    # the first stem has no other part to lock to: sync guidance must not silence it
    engine = get_engine("transformer", checkpoint=tiny_checkpoint, harmony_weight=3, sync_weight=6, control_weight=2)
    song = engine.generate(["drums", "bass"], bars=4, seed=4, qpm=110)
    assert all(len(t.notes) >= 4 for t in song.tracks)
    assert all(song.bar_activity(t.notes).sum() >= 3 for t in song.tracks)


def _root_share(context: Song, notes: np.ndarray) -> float:
    chords = estimate_chords(context, [t for t in context.tracks if not t.is_drum])
    starts = np.array([c.start for c in chords])
    roots = [chords[max(0, np.searchsorted(starts, s, "right") - 1)].root for s in notes["start"]]
    return float(np.mean(notes["pitch"] % 12 == np.array(roots)))


def test_root_pull_applies_to_the_stems_it_names(tiny_checkpoint: Path) -> None:
    song = band_song(bars=8)
    shares: dict[tuple[str, str], float] = {}
    for stem, name in (("bass", "Bass"), ("guitar", "Guitar")):
        context = _without(song, name)
        for label, root in (("off", 0.0), ("bass only", {"bass": 8.0})):
            engine = get_engine("transformer", checkpoint=tiny_checkpoint, harmony_weight=4.0)
            engine.settings.root_weight = root
            out = engine.insert(context, stem, Controls(), seed=3)
            shares[stem, label] = _root_share(context, out.song.tracks[out.new_tracks[0]].notes)
    # (the test's chord estimate and the model's chord tokens differ at a few chord changes)
    assert shares["bass", "bass only"] >= 0.75 and shares["bass", "bass only"] > shares["bass", "off"] + 0.3
    # the guitar was not named: the same part as without the pull
    assert shares["guitar", "bass only"] == shares["guitar", "off"]
    # a plain number applies to every pitched stem, and the CLI's --root-weight sets it
    engine = get_engine("transformer", checkpoint=tiny_checkpoint, harmony_weight=4.0, root_weight=8.0)
    out = engine.insert(_without(song, "Guitar"), "guitar", Controls(), seed=3)
    share = _root_share(_without(song, "Guitar"), out.song.tracks[out.new_tracks[0]].notes)
    assert share > shares["guitar", "off"] + 0.2


def test_note_temperature_sharpens_which_note_not_how_likely_a_note_is(tiny_checkpoint: Path) -> None:
    from midiarr.transformer.sample import StemWriter, _Row
    from midiarr.transformer.vocab import DRUM0, DRUM_CLASSES, POS0

    engine = get_engine("transformer", checkpoint=tiny_checkpoint, temperature=1.0, top_p=1.0)
    # a next-token distribution after a drum hit on step 3: half on later steps, half on drum sounds
    probs = np.full(len(VOCAB), 1e-12)
    probs[POS0 + 4 : POS0 + 16] = 0.5 / 12
    probs[DRUM0 : DRUM0 + len(DRUM_CLASSES)] = 0.3 / (len(DRUM_CLASSES) - 1)
    probs[DRUM0] = 0.2
    logp = np.log(probs / probs.sum())
    shares = {}
    for value in (None, 0.05, {"bass": 0.05}):
        engine.settings.note_temperature = value
        writer = StemWriter(engine.decoder, engine.settings)
        bars = encode_context(_without(band_song(bars=1), "Drums"), BarGrid.of(band_song(bars=1)))
        writer.write(bars, "drums", {}, np.zeros(1, bool), np.random.default_rng(0))  # sets the stem up
        writer.active = np.ones(1, bool)
        drawn = [writer._sample(_Row(bar=0, state="after", pos=3), logp) for _ in range(3000)]
        notes = [t for t in drawn if DRUM0 <= t < DRUM0 + len(DRUM_CLASSES)]
        shares[str(value)] = (len(notes) / len(drawn), notes.count(DRUM0) / len(notes))
    # the same chance of another hit here; the sound picked near-greedily instead of in proportion
    assert abs(shares["0.05"][0] - shares["None"][0]) < 0.05 and abs(shares["None"][0] - 0.5) < 0.05
    assert abs(shares["None"][1] - 0.4) < 0.05 and shares["0.05"][1] > 0.95
    # a per-stem value that does not name the drums leaves them at the temperature
    assert abs(shares["{'bass': 0.05}"][1] - shares["None"][1]) < 0.05
    with pytest.raises(Exception, match="--note-temperature"):
        get_engine("transformer", checkpoint=tiny_checkpoint, note_temperature=0.0)


def test_kit_guidance_fills_in_the_missing_kit_group(tiny_checkpoint: Path) -> None:
    from midiarr.transformer.sample import KIT_GROUPS, StemWriter, _Row
    from midiarr.transformer.vocab import DRUM0, DRUM_CLASSES, POS0

    shaker, kick, hat = (
        DRUM0 + [n for n, _, _ in DRUM_CLASSES].index(name) for name in ("shaker", "kick", "closed_hat")
    )
    backbone = set((DRUM0 + KIT_GROUPS[0]).tolist())
    # after a hit on step 3: half the mass on later steps, half spread evenly over the drum sounds
    probs = np.full(len(VOCAB), 1e-12)
    probs[POS0 + 4 : POS0 + 16] = 0.5 / 12
    probs[DRUM0 : DRUM0 + len(DRUM_CLASSES)] = 0.5 / len(DRUM_CLASSES)
    logp = np.log(probs / probs.sum())
    bars = encode_context(_without(band_song(bars=1), "Drums"), BarGrid.of(band_song(bars=1)))

    def draw(weight: float, played: list[int]) -> tuple[float, float]:
        engine = get_engine("transformer", checkpoint=tiny_checkpoint, temperature=1.0, top_p=1.0)
        engine.settings.kit_weight, engine.settings.note_temperature = weight, None
        writer = StemWriter(engine.decoder, engine.settings)
        writer.write(bars, "drums", {}, np.zeros(1, bool), np.random.default_rng(0))
        writer.active = np.ones(1, bool)
        row = _Row(bar=0, state="after", pos=3, bar_tokens=[POS0 + 3, VEL0 + 4, *played])
        drawn = [writer._sample(row, logp) for _ in range(3000)]
        notes = [t for t in drawn if DRUM0 <= t < DRUM0 + len(DRUM_CLASSES)]
        return len(notes) / len(drawn), sum(t in backbone for t in notes) / len(notes)

    plain, shaker_only, full_kit = draw(0.0, [shaker]), draw(3.0, [shaker]), draw(3.0, [kick, hat])
    # a bar with only a shaker so far: the backbone (kick, snare, ...) is pulled in, and "another hit" is
    # no likelier than before
    assert abs(plain[1] - 4 / 16) < 0.05 and shaker_only[1] > 0.75
    assert abs(shaker_only[0] - plain[0]) < 0.05
    # a bar that already has both groups is left alone
    assert abs(full_kit[1] - plain[1]) < 0.05


def test_voicing_guidance_spreads_a_part_over_the_chord(tiny_checkpoint: Path) -> None:
    from midiarr.transformer.sample import StemWriter, _Row
    from midiarr.transformer.vocab import DUR0, PITCH0, PITCH_LOW, POS0

    logp = np.full(len(VOCAB), np.log(1.0 / len(VOCAB)))  # every token alike: what changes is the guidance
    c_major = np.zeros(12, dtype=bool)
    c_major[[0, 4, 7]] = True
    bars = encode_context(_without(band_song(bars=1), "Guitar"), BarGrid.of(band_song(bars=1)))

    def shares(weight: float | dict[str, float], stem: str = "guitar") -> dict[str, float]:
        engine = get_engine("transformer", checkpoint=tiny_checkpoint, temperature=1.0, top_p=1.0)
        engine.settings.harmony_weight, engine.settings.root_weight = 1.0, 0.0
        engine.settings.voicing_weight, engine.settings.note_temperature = weight, None
        writer = StemWriter(engine.decoder, engine.settings)
        writer.write(bars, stem, {}, np.zeros(1, bool), np.random.default_rng(0))
        writer.active, writer.chords = np.ones(1, bool), [[(0, c_major, 0)]]
        # a C was played on step 0 of this C major chord; now the next onset's first note, on step 4
        played = [POS0, VEL0 + 4, PITCH0 + 60 - PITCH_LOW, DUR0, POS0 + 4, VEL0 + 4]
        row = _Row(bar=0, state="note", pos=4, bar_tokens=played)
        drawn = np.array([writer._sample(row, logp) for _ in range(4000)])
        pcs = (drawn - PITCH0 + PITCH_LOW) % 12
        return {"C": float(np.mean(pcs == 0)), "E or G": float(np.mean((pcs == 4) | (pcs == 7)))}

    plain, spread = shares(0.0), shares(3.0)
    # the chord's unplayed tones gain (exp(3) times the weight); the tone already played does not
    assert spread["E or G"] > 2.5 * plain["E or G"]
    assert spread["C"] < plain["C"]
    # a per-stem value that does not name the stem leaves it alone
    assert abs(shares({"bass": 3.0})["E or G"] - plain["E or G"]) < 0.03


def _drum_writer(tiny_checkpoint: Path, **settings: object) -> object:
    from midiarr.transformer.sample import StemWriter

    engine = get_engine("transformer", checkpoint=tiny_checkpoint, temperature=1.0, top_p=1.0)
    engine.settings.note_temperature = None
    for name, value in settings.items():
        setattr(engine.settings, name, value)
    writer = StemWriter(engine.decoder, engine.settings)
    bars = encode_context(_without(band_song(bars=1), "Drums"), BarGrid.of(band_song(bars=1)))
    writer.write(bars, "drums", {}, np.zeros(1, bool), np.random.default_rng(0))  # sets the stem up
    writer.active = np.ones(1, bool)
    return writer


def _even_drum_logp() -> np.ndarray:
    """After a hit on step 3: half the mass on later steps, half spread evenly over the drum sounds."""
    from midiarr.transformer.vocab import DRUM0, DRUM_CLASSES, POS0

    probs = np.full(len(VOCAB), 1e-12)
    probs[POS0 + 4 : POS0 + 16] = 0.5 / 12
    probs[DRUM0 : DRUM0 + len(DRUM_CLASSES)] = 0.5 / len(DRUM_CLASSES)
    return np.log(probs / probs.sum())


def test_kit_guidance_offers_a_missing_time_sound_only_after_the_onsets_first_note(tiny_checkpoint: Path) -> None:
    from midiarr.transformer.sample import KIT_GROUPS, _Row
    from midiarr.transformer.vocab import DRUM0, DRUM_CLASSES, POS0

    kick = DRUM0 + [n for n, _, _ in DRUM_CLASSES].index("kick")
    time = set((DRUM0 + KIT_GROUPS[1]).tolist())
    logp = _even_drum_logp()

    def time_share(weight: float, state: str) -> float:
        writer = _drum_writer(tiny_checkpoint, kit_weight=weight)
        # a bar with a lone kick on step 0; now step 3: its first note, or a note after a kick there
        played = [POS0, VEL0 + 4, kick, POS0 + 3, VEL0 + 4] + ([kick] if state == "after" else [])
        row = _Row(bar=0, state=state, pos=3, bar_tokens=played, last_value=kick if state == "after" else -1)
        drawn = [writer._sample(row, logp) for _ in range(3000)]
        notes = [t for t in drawn if DRUM0 <= t < DRUM0 + len(DRUM_CLASSES)]
        return sum(t in time for t in notes) / len(notes)

    # the onset's first note is where the kick goes: a hat or ride must not take its place
    assert abs(time_share(3.0, "note") - time_share(0.0, "note")) < 0.05
    # stacked on the kick, the missing time sound is pulled in
    assert time_share(3.0, "after") > time_share(0.0, "after") + 0.3


def test_kick_guidance_moves_an_onsets_first_note_off_the_kick_and_keeps_the_other_sounds_odds(
    tiny_checkpoint: Path,
) -> None:
    from midiarr.errors import OptionError
    from midiarr.transformer.sample import _Row
    from midiarr.transformer.vocab import DRUM0, DRUM_CLASSES, POS0

    names = [n for n, _, _ in DRUM_CLASSES]
    kick, snare, hat = (DRUM0 + names.index(n) for n in ("kick", "snare", "closed_hat"))
    # an onset's first note: kick 0.4, snare 0.3, hat 0.3, the other sounds a sliver
    probs = np.full(len(VOCAB), 1e-12)
    probs[DRUM0 : DRUM0 + len(DRUM_CLASSES)] = 1e-4
    probs[kick], probs[snare], probs[hat] = 0.4, 0.3, 0.3
    logp = np.log(probs / probs.sum())

    def draw(weight: float) -> np.ndarray:
        writer = _drum_writer(tiny_checkpoint, kit_weight=0.0, fill_weight=0.0, kick_weight=weight)
        row = _Row(bar=0, state="note", pos=3, bar_tokens=[POS0, VEL0 + 4, kick, POS0 + 3, VEL0 + 4])
        return np.array([writer._sample(row, logp) for _ in range(4000)])

    plain, guided = draw(0.0), draw(1.5)
    # the kick's odds against the rest fall by e^1.5 (0.4 / 0.6 -> 0.149 / 0.851: a share of 0.13)
    assert abs(np.mean(plain == kick) - 0.4) < 0.03 and abs(np.mean(guided == kick) - 0.13) < 0.03
    # the onset goes to its other sounds in the model's proportions (snare : hat stays 1 : 1)
    rest = guided[guided != kick]
    assert abs(np.mean(rest == snare) - 0.5) < 0.04
    with pytest.raises(OptionError, match="--kick-weight"):
        get_engine("transformer", checkpoint=tiny_checkpoint, kick_weight=-1.0)


def test_fresh_temperature_picks_a_new_sound_greedily_but_keeps_how_likely_one_is(tiny_checkpoint: Path) -> None:
    from midiarr.transformer.sample import _Row
    from midiarr.transformer.vocab import DRUM0, DRUM_CLASSES, POS0

    names = [n for n, _, _ in DRUM_CLASSES]
    kick, hat, ride, shaker = (DRUM0 + names.index(n) for n in ("kick", "closed_hat", "ride", "shaker"))
    # first note of an onset: a third on later steps; the kit so far (kick, hat) 0.3; new sounds: ride 0.2,
    # shaker 0.1, the others a sliver
    probs = np.full(len(VOCAB), 1e-12)
    probs[POS0 + 4 : POS0 + 16] = 0.35 / 12
    probs[[kick, hat]] = 0.15
    probs[ride], probs[shaker] = 0.2, 0.1
    others = [DRUM0 + i for i in range(len(DRUM_CLASSES)) if DRUM0 + i not in (kick, hat, ride, shaker)]
    probs[others] = 0.05 / len(others)
    logp = np.log(probs / probs.sum())

    def draw(fresh: float | dict[str, float] | None) -> dict[str, float]:
        writer = _drum_writer(tiny_checkpoint, fresh_temperature=fresh)
        row = _Row(bar=0, state="note", pos=3, used={kick, hat})
        drawn = np.array([writer._sample(row, logp) for _ in range(4000)])
        new = (drawn >= DRUM0) & (drawn < DRUM0 + len(DRUM_CLASSES)) & ~np.isin(drawn, [kick, hat])
        kit = np.isin(drawn, [kick, hat])
        return {"new": float(np.mean(new)), "ride": float(np.mean(drawn[new] == ride)), "kit": float(np.mean(kit))}

    plain, greedy, other_stem = draw(None), draw(0.05), draw({"bass": 0.05})
    # which new sound: the model's favourite nearly always, instead of in proportion (0.2 of 0.35)
    assert abs(plain["ride"] - 0.2 / 0.35) < 0.05 and greedy["ride"] > 0.97
    # how likely a new sound is, and the sounds already in the part, are left as the model has them
    assert abs(greedy["new"] - plain["new"]) < 0.03 and abs(greedy["kit"] - plain["kit"]) < 0.03
    assert abs(other_stem["ride"] - plain["ride"]) < 0.05
    with pytest.raises(Exception, match="--fresh-temperature"):
        get_engine("transformer", checkpoint=tiny_checkpoint, fresh_temperature=-1.0)


def test_position_guidance_after_a_note_does_not_thin_out_stacked_notes(tiny_checkpoint: Path) -> None:
    from midiarr.transformer.sample import MAX_STEPS, _Row
    from midiarr.transformer.vocab import DRUM0, DRUM_CLASSES, POS0

    kick = DRUM0 + [n for n, _, _ in DRUM_CLASSES].index("kick")
    logp = _even_drum_logp()

    def draw(weight: float) -> tuple[float, float]:
        writer = _drum_writer(tiny_checkpoint, sync_weight=weight, kit_weight=0.0)
        onsets = np.zeros(MAX_STEPS, dtype=bool)
        onsets[[4, 8, 12]] = True  # the other parts play on beats 2-4
        writer.context_onsets = [onsets]
        row = _Row(bar=0, state="after", pos=3, bar_tokens=[POS0 + 3, VEL0 + 4, kick], last_value=kick)
        drawn = np.array([writer._sample(row, logp) for _ in range(4000)])
        moves = drawn[(drawn >= POS0) & (drawn < POS0 + MAX_STEPS)] - POS0
        hits = (drawn >= DRUM0) & (drawn < DRUM0 + len(DRUM_CLASSES))
        return float(np.mean(hits)), float(np.mean(np.isin(moves, [4, 8, 12])))

    plain, synced = draw(0.0), draw(4.0)
    # where the part moves on to follows the song...
    assert synced[1] > plain[1] + 0.3
    # ...but another hit at this onset stays as likely as the model has it
    assert abs(synced[0] - plain[0]) < 0.04


def test_sync_guidance_moves_onsets_but_never_adds_them(tiny_checkpoint: Path) -> None:
    """Sync chooses where the next onset falls; whether there is one (against ending the bar) stays the
    model's, at the start of a bar and after a note alike."""
    from midiarr.transformer.sample import _EOB, MAX_STEPS, _Row
    from midiarr.transformer.vocab import DRUM0, DRUM_CLASSES, POS0, VEL0

    kick = DRUM0 + [n for n, _, _ in DRUM_CLASSES].index("kick")
    probs = np.full(len(VOCAB), 1e-12)
    probs[POS0 : POS0 + 16] = 0.4 / 16  # the next onset, anywhere in the bar
    probs[_EOB] = 0.3  # or the bar ends here
    probs[DRUM0 : DRUM0 + len(DRUM_CLASSES)] = 0.3 / len(DRUM_CLASSES)  # or another hit at this onset
    logp = np.log(probs / probs.sum())
    onsets = np.zeros(MAX_STEPS, dtype=bool)
    onsets[[4, 8, 12]] = True
    rows = [
        _Row(bar=0, state="start", pos=-1),
        _Row(bar=0, state="after", pos=3, bar_tokens=[POS0 + 3, VEL0 + 4, kick], last_value=kick),
    ]
    for row in rows:
        chances = []
        for weight in (0.0, 6.0):
            writer = _drum_writer(tiny_checkpoint, sync_weight=weight, kit_weight=0.0)
            writer.context_onsets = [onsets]
            drawn = np.array([writer._sample(row, logp) for _ in range(3000)])
            on_song = (drawn >= POS0) & (drawn < POS0 + MAX_STEPS) & np.isin(drawn - POS0, [4, 8, 12])
            chances.append((float(np.mean(drawn == _EOB)), float(np.mean(on_song))))
        (end_plain, on_plain), (end_synced, on_synced) = chances
        assert on_synced > on_plain + 0.2, row.state
        assert abs(end_synced - end_plain) < 0.03, row.state


def test_consensus_pick_keeps_the_take_most_like_the_others(tiny_checkpoint: Path) -> None:
    from midiarr.transformer.sample import _Row
    from midiarr.transformer.vocab import DRUM0, DRUM_CLASSES, POS0

    names = [n for n, _, _ in DRUM_CLASSES]
    kick, snare, hat, ride = (DRUM0 + names.index(n) for n in ("kick", "snare", "closed_hat", "ride"))

    def take(time: int, logprob: float, every: int = 2) -> _Row:
        bar = []
        for step in range(0, 16, every):
            bar += [POS0 + step, VEL0 + 4]
            bar += [kick] if step % 8 == 0 else [snare] if step % 8 == 4 else []
            bar += [time]
        return _Row(bar=0, bars=[bar, bar], logprob=logprob, sampled=10)

    # three hat takes (one in 16ths) and a ride take the model liked best
    rows = [take(hat, -9.0), take(ride, -2.0), take(hat, -8.0, every=1), take(hat, -8.5)]
    writer = _drum_writer(tiny_checkpoint, candidate_pick="likelihood")
    assert writer._pick(rows) is rows[1]
    writer.settings.candidate_pick = "consensus"
    assert writer._pick(rows) is rows[3]  # of the two alike, the likelier
    assert writer._pick(rows[:2]) is rows[1]  # two takes agree equally: the likelier
    with pytest.raises(Exception, match="--pick"):
        get_engine("transformer", checkpoint=tiny_checkpoint, candidate_pick="best")


def test_candidate_windows_limits_the_takes_to_the_opening(tiny_checkpoint: Path) -> None:
    song = band_song(bars=24)
    context = _without(song, "Drums")
    expanded = {}
    for windows in (0, 1):
        engine = get_engine("transformer", checkpoint=tiny_checkpoint, candidates=3, candidate_windows=windows)
        calls = []
        original = engine.decoder.expand
        engine.decoder.expand = lambda batch, original=original, calls=calls: (calls.append(batch), original(batch))
        engine.insert(context, "drums", Controls(), seed=4)
        expanded[windows] = calls
    # every window auditions three takes, or only the first
    assert len(expanded[0]) > 1 and set(expanded[0]) == {3}
    assert expanded[1] == [3]
    with pytest.raises(Exception, match="--candidate-windows"):
        get_engine("transformer", checkpoint=tiny_checkpoint, candidate_windows=-1)


def test_candidate_bars_lets_the_kept_take_carry_on_alone(tiny_checkpoint: Path) -> None:
    song = band_song(bars=24)
    context = _without(song, "Drums")
    seen: dict[int, tuple[list[int], list[int]]] = {}
    parts = {}
    for bars in (0, 2):
        engine = get_engine(
            "transformer", checkpoint=tiny_checkpoint, candidates=3, candidate_windows=1, candidate_bars=bars
        )
        expanded: list[int] = []
        selected: list[int] = []
        dec = engine.decoder
        expand, select = dec.expand, dec.select
        dec.expand = lambda batch, f=expand, log=expanded: (log.append(batch), f(batch))
        dec.select = lambda row, f=select, log=selected, d=dec: (log.append(d.keys.shape[1]), f(row))
        parts[bars] = engine.insert(context, "drums", Controls(), seed=3)
        seen[bars] = (expanded, selected)
    # the opening is auditioned three ways either way; with candidate_bars the takes stop after two bars
    assert seen[0] == ([3], []) and seen[2] == ([3], [3])
    again = get_engine("transformer", checkpoint=tiny_checkpoint, candidates=3, candidate_windows=1, candidate_bars=2)
    same = again.insert(context, "drums", Controls(), seed=3)
    new = parts[2].new_tracks[0]
    assert np.array_equal(same.song.tracks[new].notes, parts[2].song.tracks[new].notes)
    with pytest.raises(Exception, match="--candidate-bars"):
        get_engine("transformer", checkpoint=tiny_checkpoint, candidate_bars=-1)


def test_a_bar_that_outruns_its_window_is_taken_back_and_written_in_the_next(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows run until they are full; the bar cut off is forgotten (tokens, onsets, notes, likelihood) and
    begins the next window, so every bar is written once and whole."""
    from midiarr.transformer import sample

    song = band_song(bars=32)
    context = _without(song, "Bass")
    taken: list[tuple[int, int]] = []
    original = sample.StemWriter._take_back

    def take_back(self: object, row: object) -> None:
        taken.append((row.bar, len(row.bar_tokens)))
        before = row.bar_start
        original(self, row)
        assert row.done and row.bar_tokens == [] and not row.queue
        assert (row.logprob, row.sampled, row.onsets, frozenset(row.used), len(row.pitches)) == before

    # windows seldom fill mid-bar (a bar is begun only when one as long as the part's longest recent bar
    # fits): here every bar is begun when its context fits, so bars are cut off
    monkeypatch.setattr(sample.StemWriter, "_take_back", take_back)
    monkeypatch.setattr(sample.StemWriter, "_likely_bar_tokens", staticmethod(lambda row: 1))
    # with a register, the pitches that set it are taken back with their bar too
    engine = get_engine("transformer", checkpoint=tiny_checkpoint, register_weight=2.0)
    out = engine.insert(context, "bass", Controls(), seed=1)
    assert len(taken) >= 2 and all(tokens for _, tokens in taken), taken
    # each bar taken back was written in the next window: the part plays in every bar the song plays
    notes = out.song.tracks[out.new_tracks[0]].notes
    grid = BarGrid.of(context)
    played = set(np.searchsorted(grid.starts, notes["start"], side="right") - 1)
    assert {bar for bar, _ in taken} <= played
    again = get_engine("transformer", checkpoint=tiny_checkpoint, register_weight=2.0).insert(
        context, "bass", Controls(), seed=1
    )
    assert np.array_equal(again.song.tracks[again.new_tracks[0]].notes, notes)


def test_the_first_bar_of_a_window_is_never_taken_back() -> None:
    from midiarr.transformer.sample import StemWriter, _Row

    writer = StemWriter.__new__(StemWriter)
    with pytest.raises(RuntimeError, match="first bar"):
        writer._take_back(_Row(bar=0, state="note"))


def test_length_top_p_lets_a_part_take_lengths_from_the_whole_distribution(tiny_checkpoint: Path) -> None:
    song = band_song(bars=12)
    context = _without(song, "Guitar")
    lengths = {}
    for length_top_p in (None, {"guitar": 1.0}, {"bass": 1.0}):
        engine = get_engine("transformer", checkpoint=tiny_checkpoint, top_p=0.3)
        engine.settings.length_top_p = length_top_p
        out = engine.insert(context, "guitar", Controls(), seed=5)
        notes = out.song.tracks[out.new_tracks[0]].notes
        lengths[str(length_top_p)] = len(np.unique(notes["duration"]))
    # a narrow nucleus keeps the likeliest lengths; the guitar's own setting lifts it for the lengths alone, and
    # another stem's leaves the guitar as it was
    assert lengths["{'guitar': 1.0}"] > lengths["None"], lengths
    assert lengths["{'bass': 1.0}"] == lengths["None"]
    with pytest.raises(Exception, match="--length-top-p"):
        get_engine("transformer", checkpoint=tiny_checkpoint, length_top_p=0)


@pytest.mark.parametrize("stem", ["bass", "drums"])
def test_an_inferred_density_pulls_toward_the_predicted_rate_not_the_whole_bin(
    tiny_checkpoint: Path, stem: str
) -> None:
    """With a band, a part whose density bin midiarr filled in lands near the rate the density model
    predicted (here given by hand at both ends of one bin); without one, anywhere in the bin."""
    from midiarr.attributes import bin_edges
    from midiarr.player.density import part_rate

    song = band_song(bars=12)
    context = _without(song, {"bass": "Bass", "drums": "Drums"}[stem])
    low, _high = bin_edges("density", stem)
    rates = {}
    for band in (0.0, 0.15):
        engine = get_engine(
            "transformer",
            checkpoint=tiny_checkpoint,
            control_weight=3.0,
            pull_inferred_density=True,
            inferred_density_band=band,
        )
        for target in (low * 1.05, low * 1.45):  # both inside the medium bin
            controls = Controls(bins={"density": "medium"}, inferred=("density",), density_rate=target)
            out = engine.insert(context, stem, controls, seed=3)
            rates[band, target] = part_rate(out.song, out.song.tracks[out.new_tracks[0]].notes) / target
    assert all(0.8 <= ratio <= 1.25 for (band, _), ratio in rates.items() if band), rates
    # the bin alone leaves the two targets' parts at about the same rate
    assert not all(0.8 <= ratio <= 1.25 for (band, _), ratio in rates.items() if not band), rates


def _first_note_spread(notes: np.ndarray) -> float:
    """Sd of each onset's lowest pitch past the first 12 onsets (which set the register freely): how far
    the part moves from its register."""
    starts = np.unique(notes["start"])[12:]
    return float(np.std([notes["pitch"][notes["start"] == s].min() for s in starts]))


def test_register_guidance_keeps_the_part_in_its_register(tiny_checkpoint: Path) -> None:
    song = band_song(bars=24)
    context = _without(song, "Guitar")
    spreads = {}
    for weight in (0.0, 12.0):
        engine = get_engine("transformer", checkpoint=tiny_checkpoint, register_weight={"guitar": weight})
        for seed in (0, 1):
            out = engine.insert(context, "guitar", Controls(), seed=seed)
            spreads[weight, seed] = _first_note_spread(out.song.tracks[out.new_tracks[0]].notes)
    free, kept = (np.mean([spreads[w, s] for s in (0, 1)]) for w in (0.0, 12.0))
    assert kept < 0.7 * free, spreads
    # drums have no register: the weight leaves them as they were
    drums = [
        get_engine("transformer", checkpoint=tiny_checkpoint, register_weight=w)
        .insert(_without(song, "Drums"), "drums", Controls(), seed=0)
        .song.tracks[-1]
        .notes
        for w in (0.0, 6.0)
    ]
    assert np.array_equal(drums[0], drums[1])


def test_a_density_band_too_narrow_for_the_pull_is_refused(tiny_checkpoint: Path) -> None:
    from midiarr.errors import OptionError

    with pytest.raises(OptionError, match="inferred-density-band") as caught:
        get_engine("transformer", checkpoint=tiny_checkpoint, inferred_density_band=0.05)
    assert "\n" not in str(caught.value)
    get_engine("transformer", checkpoint=tiny_checkpoint, inferred_density_band=0.0)  # the bin


def test_an_infills_kept_bars_set_the_register_and_keep_the_bin(tiny_checkpoint: Path, monkeypatch) -> None:
    """The kept bars' onsets seed the register; the span keeps the bin's edges (the kept bars are not in
    the rate the band would measure)."""
    from midiarr.attributes import bin_edges
    from midiarr.transformer import sample
    from midiarr.transformer.vocab import DUR0, PITCH0, PITCH_LOW, POS0

    tokens = [POS0, VEL0 + 3, PITCH0 + 64 - PITCH_LOW, DUR0, PITCH0 + 67 - PITCH_LOW, DUR0]
    tokens += [POS0 + 8, VEL0 + 3, PITCH0 + 60 - PITCH_LOW, DUR0]
    assert sample._first_pitches(tokens) == [PITCH0 + 64 - PITCH_LOW, PITCH0 + 60 - PITCH_LOW]
    seen: list[tuple[object, list[int]]] = []
    original = sample.StemWriter._window

    def spy(self, written, bar):
        seen.append((self.density_range, list(self.pitches)))
        return original(self, written, bar)

    monkeypatch.setattr(sample.StemWriter, "_window", spy)
    song = band_song(bars=4)
    engine = get_engine(
        "transformer",
        checkpoint=tiny_checkpoint,
        control_weight=2.0,
        pull_inferred_density=True,
        inferred_density_band=0.15,
        register_weight=2.0,
    )
    controls = Controls(bins={"density": "medium"}, inferred=("density",), density_rate=2.0)
    active = np.ones(4, dtype=bool)
    engine.write_part(_without(song, "Guitar"), "guitar", controls, active, np.random.default_rng(0), given={0: tokens})
    assert seen[0] == (tuple(float(e) for e in bin_edges("density", "guitar")), sample._first_pitches(tokens))
    seen.clear()
    engine.write_part(_without(song, "Guitar"), "guitar", controls, active, np.random.default_rng(0))
    assert seen[0][0] == pytest.approx((2.0 / 1.15, 2.0 * 1.15)) and seen[0][1] == []


def test_fill_guidance_marks_a_change_of_the_band_with_toms_before_and_a_crash_on_it(tiny_checkpoint: Path) -> None:
    from midiarr.transformer.sample import _Row
    from midiarr.transformer.vocab import DRUM0, DRUM_CLASSES, POS0

    names = [n for n, _, _ in DRUM_CLASSES]
    kick, crash = DRUM0 + names.index("kick"), DRUM0 + names.index("crash")
    toms = {DRUM0 + names.index(n) for n in ("low_tom", "mid_tom", "high_tom")}
    logp = _even_drum_logp()

    def shares(
        weight: float, bar: int, pos: int, state: str = "note", changes: tuple = (0, 2), kit: float = 0.0
    ) -> dict:
        writer = _drum_writer(tiny_checkpoint, fill_weight=weight, kit_weight=kit)
        writer.active, writer.changes, writer.ctx = np.ones(2, bool), np.array(changes), writer.ctx * 2
        last = kick if state == "after" else -1
        row = _Row(bar=bar, state=state, pos=pos, bar_tokens=[POS0 + pos, VEL0 + 4], last_value=last)
        drawn = np.array([writer._sample(row, logp) for _ in range(3000)])
        notes = drawn[(drawn >= DRUM0) & (drawn < DRUM0 + len(DRUM_CLASSES))]
        return {
            "note": float(np.mean((drawn >= DRUM0) & (drawn < DRUM0 + len(DRUM_CLASSES)))),
            "toms": float(np.isin(notes, list(toms)).mean()),
            "crash": float(np.mean(notes == crash)),
            "kick": float(np.mean(notes == kick)),
        }

    # the second half of the bar before a change: toms pulled in as an onset's first note, the kick left alone
    plain, filled = shares(0.0, 0, 10), shares(1.5, 0, 10)
    assert filled["toms"] > plain["toms"] + 0.3
    assert abs(filled["kick"] - plain["kick"]) < 0.04
    # its first half, and a bar before no change, are left as the model has them
    assert abs(shares(1.5, 0, 4)["toms"] - plain["toms"]) < 0.04
    assert abs(shares(1.5, 0, 10, changes=(0, 0))["toms"] - plain["toms"]) < 0.04
    # the change's first step: a crash stacked on the kick
    on_it = shares(1.5, 1, 0, state="after")
    assert on_it["crash"] > shares(0.0, 1, 0, state="after")["crash"] + 0.3
    # stacked on the kit guide (a hat lifted there too), whether a further note comes at all stays the model's
    kit_only, both = (
        shares(0.0, 1, 0, state="after", kit=3.0),
        shares(1.5, 1, 0, state="after", kit=3.0, changes=(0, 3)),
    )
    assert both["crash"] > kit_only["crash"] + 0.2
    assert abs(both["note"] - kit_only["note"]) < 0.03 and abs(kit_only["note"] - on_it["note"]) < 0.03
    # more changes, a stronger pull
    assert shares(1.0, 0, 10, changes=(0, 3))["toms"] > shares(1.0, 0, 10, changes=(0, 1))["toms"] + 0.1


def test_riff_guidance_brings_the_last_bars_rhythm_back_but_never_adds_onsets(tiny_checkpoint: Path) -> None:
    """Where the band keeps its rhythm, the next onset is pulled to the steps the part played in its bar
    before; ending the bar stays as likely as the model has it, and with both guides on, sync and riff add up."""
    from midiarr.transformer.sample import _EOB, MAX_STEPS, _Row
    from midiarr.transformer.vocab import DRUM0, DRUM_CLASSES, POS0

    probs = np.full(len(VOCAB), 1e-12)
    probs[POS0 : POS0 + 16] = 0.4 / 16
    probs[_EOB] = 0.3
    probs[DRUM0 : DRUM0 + len(DRUM_CLASSES)] = 0.3 / len(DRUM_CLASSES)
    logp = np.log(probs / probs.sum())
    last = np.zeros(MAX_STEPS, dtype=bool)
    last[[0, 6, 10]] = True
    kick = DRUM0 + [n for n, _, _ in DRUM_CLASSES].index("kick")

    def draw(
        riff: float, sync: float = 0.0, steps: np.ndarray | None = last, holds: bool = True
    ) -> tuple[float, float]:
        writer = _drum_writer(tiny_checkpoint, riff_weight=riff, sync_weight=sync, kit_weight=0.0)
        writer.context_onsets = [np.isin(np.arange(MAX_STEPS), [4, 8, 12])]
        writer.band_holds = np.array([holds])
        # after a kick on step 0: the next onset, or the bar ends here (a further hit is the third choice)
        row = _Row(bar=0, state="after", pos=0, bar_tokens=[POS0, VEL0 + 4, kick], last_value=kick, last_steps=steps)
        drawn = np.array([writer._sample(row, logp) for _ in range(3000)])
        on_riff = (drawn >= POS0) & (drawn < POS0 + MAX_STEPS) & np.isin(drawn - POS0, [0, 6, 10])
        return float(np.mean(drawn == _EOB)), float(np.mean(on_riff))

    (end_plain, on_plain), (end_riff, on_riff) = draw(0.0), draw(4.0)
    assert on_riff > on_plain + 0.3 and abs(end_riff - end_plain) < 0.03
    # no bar before to follow (silent, another length), or a band that changes its rhythm: the model alone
    assert abs(draw(4.0, steps=None)[1] - on_plain) < 0.04
    assert abs(draw(4.0, holds=False)[1] - on_plain) < 0.04
    # the song's onsets still pull beside the riff
    assert draw(4.0, sync=4.0)[1] < on_riff - 0.1


def test_the_last_bars_rhythm_is_no_model_across_a_change_of_meter(tiny_checkpoint: Path) -> None:
    from midiarr.transformer.sample import POS0, StemWriter

    engine = get_engine("transformer", checkpoint=tiny_checkpoint, riff_weight=2.0)
    song = band_song(bars=3)
    song.time_signatures = [TimeSignature(0, 4, 4), TimeSignature(2 * 4 * song.ticks_per_beat, 3, 4)]
    writer = StemWriter(engine.decoder, engine.settings)
    bars = encode_context(song, BarGrid.of(song))
    writer.write(bars, "bass", {}, np.zeros(len(bars), bool), np.random.default_rng(0))
    steps = writer._steps([POS0, POS0 + 8], 0, 1)
    assert steps is not None and np.flatnonzero(steps).tolist() == [0, 8]
    assert writer._steps([POS0], 1, 2) is None  # 4/4 into 3/4
    assert writer._steps([POS0], len(bars) - 1, len(bars)) is None  # the song ends


def test_the_band_holds_where_the_other_parts_keep_the_bar_befores_rhythm(tiny_checkpoint: Path) -> None:
    from midiarr.transformer.sample import StemWriter

    engine = get_engine("transformer", checkpoint=tiny_checkpoint)
    song = _without(band_song(bars=4), "Bass")
    busy = next(t for t in song.tracks if not t.is_drum)
    # bar 3: the other parts play on every 16th, a rhythm unlike the bars before
    extra = np.array([(3 * 4 * song.ticks_per_beat + k * song.ticks_per_beat // 4, 60, 72, 80) for k in range(16)])
    notes = np.zeros(len(extra), dtype=busy.notes.dtype)
    notes["start"], notes["duration"], notes["pitch"], notes["velocity"] = extra.T
    busy.notes = np.sort(np.concatenate([busy.notes, notes]), order="start")
    writer = StemWriter(engine.decoder, engine.settings)
    bars = encode_context(song, BarGrid.of(song))
    writer.write(bars, "bass", {}, np.zeros(len(bars), bool), np.random.default_rng(0))
    assert writer.band_holds[:4].tolist() == [False, True, True, False]
