"""The eval harness's per-song tables: player distances, spreads, paired bootstrap, control measurement."""

import json
import math
import shutil

import numpy as np
import pytest

from midiarr.errors import OptionError
from midiarr.evaluation import harness as H
from midiarr.evaluation.report import control_table, players_table, spreads_table
from tests.conftest import fixture_cache, run_cli


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return fixture_cache(tmp_path_factory.mktemp("evalh"), songs=12)


def _score(engine, triplet, stem="bass", **values):
    profiles = {"interval": values.pop("interval")} if "interval" in values else {}
    return H.PartScore(engine, stem, triplet, dict(values), song=triplet.split(":")[0], profiles=profiles)


def test_player_distances_against_the_same_songs_real_part_and_another_songs():
    up, down = [0.0] * 25, [0.0] * 25
    up[14], down[10] = 1.0, 1.0
    scores = [
        _score("real", "a:bass", rep_rate=0.5, velocity_sd=4.0, interval=up),
        _score("real", "b:bass", rep_rate=0.2, velocity_sd=10.0, interval=up),
        _score("real", "c:bass", rep_rate=0.9, velocity_sd=1.0, interval=down),
        _score("rules", "a:bass", rep_rate=0.1, velocity_sd=1.0, interval=down),
        _score("rules", "c:bass", rep_rate=float("nan"), velocity_sd=1.0, interval=down),
    ]
    H.player_distances(scores, ["bass"])
    real_a, real_b, real_c, rules_a, rules_c = (s.values for s in scores)
    # engine rows: distance to this song's real part
    assert rules_a["dist_rep_rate"] == pytest.approx(0.4) and rules_a["dist_velocity_sd"] == 3.0
    assert rules_a["dist_interval"] == 1.0 and rules_c["dist_interval"] == 0.0
    assert math.isnan(rules_c["dist_rep_rate"]) and rules_c["dist_velocity_sd"] == 0.0
    # real rows: distance to the next song's real part, the last pairing with the first
    assert real_a["spread_rep_rate"] == pytest.approx(0.3) and real_a["spread_velocity_sd"] == 6.0
    assert real_b["spread_rep_rate"] == pytest.approx(0.7) and real_b["spread_interval"] == 1.0
    assert real_c["spread_rep_rate"] == pytest.approx(0.4) and real_c["spread_interval"] == 1.0
    assert not any(k.startswith("dist_") for k in real_a) and not any(k.startswith("spread_") for k in rules_a)


def test_describe_gives_median_iqr_and_the_share_in_band():
    d = H.describe([0.5, 1.0, 1.2, 2.0, float("nan")], band=(0.7, 1.4))
    assert d["n"] == 4 and d["median"] == pytest.approx(1.1) and d["mean"] == pytest.approx(1.175)
    assert d["in_band"] == 0.5 and d["iqr"] == pytest.approx(d["q75"] - d["q25"])
    assert "in_band" not in H.describe([1.0])
    assert math.isnan(H.describe([float("nan")])["median"])


def test_bootstrap_pairs_engines_by_song():
    rng = np.random.default_rng(0)
    base = rng.normal(1.0, 0.5, size=30)
    noise = rng.normal(0.0, 0.1, size=30)
    scores = [_score("a", f"s{i}:bass", density_ratio=v + 0.3 + e) for i, (v, e) in enumerate(zip(base, noise))]
    scores += [_score("b", f"s{i}:bass", density_ratio=v) for i, v in enumerate(base)]
    scores.append(_score("b", "only-b:bass", density_ratio=100.0))  # no partner: left out
    boot = H.bootstrap(scores, ["a", "b"], ["bass"], resamples=500, seed=1)
    res = boot["bass"]["a - b"]["density_ratio"]
    assert res["n"] == 30 and res["mean_diff"] == pytest.approx(0.3 + noise.mean())
    assert res["mean_lo"] < 0.3 < res["mean_hi"] and res["mean_lo"] > 0.2
    assert H.bootstrap(scores, ["a", "b"], ["bass"], resamples=500, seed=1) == boot


def test_eval_reports_players_spreads_and_bootstrap(cache):
    result = H.evaluate(["rules", "borrow"], ["bass", "drums"], cache, split="train", limit=4, progress=False)
    rules_bass = [s for s in result["scores"] if s.engine == "rules" and s.stem == "bass"]
    assert rules_bass and all(s.song and "dist_rep_rate" in s.values for s in rules_bass)
    drums_real = next(s for s in result["scores"] if s.engine == "real" and s.stem == "drums").values
    # the fixture drums: kick or snare plus a hat on every beat and a hat between
    assert drums_real["share_hihat"] == pytest.approx(2 / 3) and drums_real["share_tom"] == 0.0
    assert "spread_kit" in drums_real and "spread_interval" not in drums_real
    spreads = result["spreads"]
    dr = spreads["bass"]["rules"]["density_ratio"]
    assert set(dr) >= {"mean", "median", "iqr", "in_band"} and dr["band_lo"] == 0.7
    assert "bass" in players_table(spreads) and "in 0.7–1.4" in spreads_table(spreads)
    # each player distance against the real-vs-real spread on the same songs, with its interval
    vs = spreads["bass"]["rules"]["dist_rep_rate"]["vs_spread"]
    real_bass = {s.triplet: s.values for s in result["scores"] if s.engine == "real" and s.stem == "bass"}
    diffs = (
        [s.values["dist_rep_rate"] for s in rules_bass],
        [real_bass[s.triplet]["spread_rep_rate"] for s in rules_bass],
    )
    assert vs["n"] == len(rules_bass)
    assert vs["median_diff"] == pytest.approx(np.median(diffs[0]) - np.median(diffs[1]))
    assert vs["median_lo"] <= vs["median_diff"] <= vs["median_hi"]
    assert "dist − spread [95%]" in players_table(spreads)
    assert "rules - borrow" in result["bootstrap"]["bass"]


def test_control_measurement_orders_density_with_the_rules_engine(cache):
    result = H.evaluate_control(
        ["rules"],
        ["bass", "drums"],
        cache,
        "density",
        ["sparse", "medium", "busy"],
        split="train",
        limit=3,
        progress=False,
    )
    summary = result["control"]["summary"]
    for stem in ("bass", "drums"):
        s = summary[stem]["rules"]
        assert s["songs"] == 3 and s["ordered_share"] == 1.0 and s["ratio"]["median"] > 1.5
        med = s["median"]
        assert med["sparse"] < med["medium"] < med["busy"]
    row = result["per_song"][0]
    assert row["ordered"] and set(row["values"]) == {"sparse", "medium", "busy"} and row["real"] > 0
    # density is measured as the bins count it, in onsets; the notes (chord tones too) are reported beside
    assert result["control"]["measure"] == "onsets"
    notes = row["also"]["notes"]
    assert all(notes["values"][v] >= row["values"][v] for v in ("sparse", "medium", "busy"))
    assert summary["drums"]["rules"]["also"]["notes"]["ordered_share"] == 1.0
    table = control_table(result["control"])
    assert "ordered sparse < medium < busy" in table and "ordered by notes" in table


def test_the_density_control_counts_a_chord_as_one_onset():
    from midiarr.song import NOTE_DTYPE

    chord = np.array([(0, 480, p, 90) for p in (60, 64, 67)] + [(480, 480, 60, 90)], dtype=NOTE_DTYPE)
    (_, onsets), (_, notes) = H.CONTROL_MEASURES["density"]
    assert onsets(chord) == 2 and notes(chord) == 4


def test_parse_control_checks_attribute_and_levels():
    assert H.parse_control("dynamics=soft,loud") == ("dynamics", ["soft", "loud"])
    for bad in ("density", "tempo=slow,fast", "density=sparse", "density=sparse,huge", "density=busy,busy"):
        with pytest.raises(OptionError):
            H.parse_control(bad)


def test_eval_control_command(cache, tmp_path, capsys):
    args = ["eval", "--engine", "rules", "--stems", "bass", "--data", cache, "--split", "train"]
    out = tmp_path / "ctl"
    assert run_cli(*args, "--limit", "2", "-o", out, "--control", "dynamics=soft,medium,loud") == 0
    report = json.loads((out / "report.json").read_text())
    (ctl,) = report["controls"]
    assert ctl["attribute"] == "dynamics" and ctl["measure"] == "mean velocity" and len(ctl["per_song"]) == 2
    assert ctl["summary"]["bass"]["rules"]["ordered_share"] == 1.0
    assert "dynamics: soft, medium, loud" in (out / "report.md").read_text()
    assert run_cli(*args, "-o", out, "--control", "density=loud,busy") != 0
    capsys.readouterr()


def test_eval_without_instructions_asks_for_nothing_but_the_stem(cache, tmp_path, monkeypatch):
    asked = []
    build = H.Controls.build

    def spy(instruction=None, **kwargs):
        asked.append((instruction, kwargs))
        return build(instruction, **kwargs)

    monkeypatch.setattr(H.Controls, "build", staticmethod(spy))
    result = H.evaluate(["rules"], ["bass"], cache, split="train", limit=2, progress=False, instructions="none")
    assert result["instructions"] == "none" and asked and all(a[0] is None for a in asked)
    asked.clear()
    H.evaluate(["rules"], ["bass"], cache, split="train", limit=2, progress=False)
    assert asked and all(a[0] for a in asked)  # the triplet's own instruction
    asked.clear()
    H.evaluate_control(
        ["rules"],
        ["bass"],
        cache,
        "density",
        ["sparse", "busy"],
        split="train",
        limit=1,
        progress=False,
        instructions="none",
    )
    assert [a[1]["density"] for a in asked] == ["sparse", "busy"] and all(a[0] is None for a in asked)
    with pytest.raises(OptionError):
        H.evaluate(["rules"], ["bass"], cache, split="train", limit=1, progress=False, instructions="some")


def test_eval_command_records_what_it_asked_for(cache, tmp_path):
    out = tmp_path / "none"
    args = ["eval", "--engine", "rules", "--stems", "bass", "--data", cache, "--split", "train", "--limit", "1"]
    assert run_cli(*args, "--instructions", "none", "-o", out, "-q") == 0
    assert json.loads((out / "report.json").read_text())["instructions"] == "none"
    assert run_cli(*args, "--instructions", "some", "-o", out, "-q") == 2


def test_eval_split_all_scores_every_song_of_the_cache(cache, tmp_path):
    mixed = tmp_path / "cache"
    shutil.copytree(cache, mixed)
    rows = [json.loads(line) for line in (mixed / "triplets.jsonl").read_text().splitlines()]
    songs = sorted({r["id"].split(":")[0] for r in rows})
    for row in rows:  # the fixture's songs all fall in train: move every other one to test
        row["split"] = "test" if songs.index(row["id"].split(":")[0]) % 2 else "train"
    (mixed / "triplets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bass = {r["id"] for r in rows if r["stem"] == "bass" and r["context_tracks"] > 0}
    result = H.evaluate(["rules"], ["bass"], mixed, split="all", progress=False)
    assert result["split"] == "all" and result["parts"] == len(bass)
    assert {s.triplet for s in result["scores"] if s.engine == "rules"} == bass
    train = H.evaluate(["rules"], ["bass"], mixed, split="train", progress=False)
    assert 0 < train["parts"] < len(bass)
    out = tmp_path / "all"
    args = ["eval", "--engine", "rules", "--stems", "bass", "--data", mixed, "-o", out, "-q", "--limit", "1"]
    assert run_cli(*args, "--split", "all") == 0
    assert json.loads((out / "report.json").read_text())["split"] == "all"
    assert run_cli(*args, "--split", "every") == 2


def test_eval_diffusion_split_all_takes_every_song(cache, tmp_path):
    from midiarr.evaluation import diffusion_eval as D

    mixed = tmp_path / "cache"
    shutil.copytree(cache, mixed)
    rows = [json.loads(line) for line in (mixed / "index.jsonl").read_text().splitlines()]
    for k, row in enumerate(sorted(rows, key=lambda r: r["id"])):  # half the songs to valid
        row["split"] = "valid" if k % 2 else "train"
    (mixed / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    every = D.separation_cases(mixed, "all", 100, 4)
    train = D.separation_cases(mixed, "train", 100, 4)
    valid = D.separation_cases(mixed, "valid", 100, 4)
    assert train and valid and len(every) == len(train) + len(valid)
    assert {c[0] for c in every} == {c[0] for c in train} | {c[0] for c in valid}
    # activity and partial modes read the triplets: every song's with "all"
    triplets = [json.loads(line) for line in (mixed / "triplets.jsonl").read_text().splitlines()]
    songs = sorted({r["id"].split(":")[0] for r in triplets})
    for row in triplets:
        row["split"] = "valid" if songs.index(row["id"].split(":")[0]) % 2 else "train"
    (mixed / "triplets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in triplets))
    ids = {r["id"] for r in D._played_with(mixed, "all", "bass")}
    assert ids == {r["id"] for r in D._played_with(mixed, "train", "bass")} | {
        r["id"] for r in D._played_with(mixed, "valid", "bass")
    }
    assert len(ids) > len(D._played_with(mixed, "train", "bass")) > 0
