"""Writing an evaluation: JSON (everything), a Markdown table per stem, PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from midiarr.io import atomic_write_text
from midiarr.prepare import ALL_SPLITS

# (key, column title, format) in table order.
COLUMNS = [
    ("context_preserved", "context kept", "{:.2f}"),
    ("bar_recall", "bar recall", "{:.3f}"),
    ("bar_precision", "bar precision", "{:.3f}"),
    ("harmonic_fit", "harmonic fit", "{:.3f}"),
    ("grid_share", "on 16th grid", "{:.3f}"),
    ("onset_sync", "onset sync", "{:.3f}"),
    ("groove_similarity", "groove sim", "{:.3f}"),
    ("density_ratio", "density ratio", "{:.2f}"),
    ("profile_similarity", "pitch-class sim", "{:.3f}"),
    ("kit_similarity", "kit-piece sim", "{:.3f}"),
    ("range_validity", "range valid", "{:.3f}"),
    ("oa_mean", "OA mean", "{:.3f}"),
    ("frechet", "Fréchet", "{:.2f}"),
    ("control_density", "ctrl density", "{:.2f}"),
    ("control_dynamics", "ctrl dynamics", "{:.2f}"),
    ("control_rhythm", "ctrl rhythm", "{:.2f}"),
    ("seconds", "s/part", "{:.3f}"),
]


def split_words(split: str) -> str:
    """How reports and errors name a split's songs: "the valid split", or "every song" for split "all"."""
    return "every song" if split == ALL_SPLITS else f"the {split} split"


def _fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def markdown_table(aggregate: dict[str, dict[str, dict[str, float]]]) -> str:
    """One table per stem: a row per engine (the real part first)."""
    lines = []
    for stem, engines in aggregate.items():
        parts = int(next(iter(engines.values()))["parts"]) if engines else 0
        lines += [f"### {stem} ({parts} parts)", ""]
        lines.append("| engine | " + " | ".join(title for _, title, _ in COLUMNS) + " |")
        lines.append("|---" * (len(COLUMNS) + 1) + "|")
        for engine, agg in engines.items():
            cells = [_fmt(agg.get(k), pattern) for k, _, pattern in COLUMNS]
            lines.append(f"| {engine} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# Metrics whose per-song spread the Markdown shows (median [q25-q75]); the JSON has every metric.
SPREAD_COLUMNS = [
    ("bar_recall", "bar recall"),
    ("harmonic_fit", "harmonic fit"),
    ("onset_sync", "onset sync"),
    ("groove_similarity", "groove sim"),
    ("profile_similarity", "pitch-class sim"),
    ("kit_similarity", "kit-piece sim"),
]

# (attribute, title, format) of the players table: written and real medians, then distances.
PLAYER_ROWS = [
    ("rep_rate", "bars repeating the last bar's rhythm", "{:.2f}"),
    ("song_repeat", "bars played again where the song repeats", "{:.2f}"),
    ("length_sd", "sd of log2 length (beats)", "{:.2f}"),
    ("velocity_sd", "sd of velocity", "{:.1f}"),
    ("pitch_sd", "sd of pitch (semitones)", "{:.1f}"),
    ("interval", "interval profile (TV)", "{:.2f}"),
    ("share_kick", "share on kick", "{:.3f}"),
    ("share_snare", "share on snare", "{:.3f}"),
    ("share_hihat", "share on hi-hat", "{:.3f}"),
    ("share_tom", "share on toms", "{:.3f}"),
    ("share_crash", "share on crashes", "{:.3f}"),
    ("share_ride", "share on ride", "{:.3f}"),
    ("kit", "kit shares (TV)", "{:.2f}"),
    ("section_fill", "changes of the band filled into (toms)", "{:.2f}"),
    ("section_crash", "changes of the band crashed on", "{:.2f}"),
]


def _stat(d: dict[str, float] | None, key: str, pattern: str) -> str:
    return _fmt(d.get(key) if d else None, pattern)


def _median_iqr(d: dict[str, float] | None, pattern: str) -> str:
    if not d or d.get("median") is None or math.isnan(d["median"]):
        return "—"
    return f"{pattern.format(d['median'])} [{pattern.format(d['q25'])}–{pattern.format(d['q75'])}]"


def spreads_table(spreads: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Per stem: the density ratio's mean, median, IQR and share in band, and median [IQR] of the main metrics."""
    lines = []
    for stem, engines in spreads.items():
        lines += [f"### {stem}", ""]
        head = ["engine", "density ratio mean", "median", "IQR", "in 0.7–1.4", *(t for _, t in SPREAD_COLUMNS)]
        lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for engine, metrics in engines.items():
            dr = metrics.get("density_ratio")
            cells = [
                _stat(dr, "mean", "{:.2f}"),
                _stat(dr, "median", "{:.2f}"),
                _stat(dr, "iqr", "{:.2f}"),
                _stat(dr, "in_band", "{:.0%}"),
                *(_median_iqr(metrics.get(k), "{:.2f}") for k, _ in SPREAD_COLUMNS),
            ]
            lines.append(f"| {engine} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def players_table(spreads: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Per stem and attribute: the real parts' median, the real-vs-real spread (median distance between the
    real parts of two different songs) and, per engine, the written median and median |written - real|;
    "yes" where that median distance is no larger than the spread, with the difference of the two medians
    and its 95% paired bootstrap interval (an interval holding 0: the songs cannot tell them apart)."""
    lines = []
    for stem, engines in spreads.items():
        real = engines.get("real", {})
        others = [e for e in engines if e != "real"]
        # a row only where the real parts were measured (no pitch spread for drums, no kit for a bass)
        rows = [r for r in PLAYER_ROWS if _stat(real.get(f"spread_{r[0]}"), "median", "{}") != "—"]
        if not rows:
            continue
        lines += [f"### {stem}", ""]
        head = ["attribute", "real", "real vs real"]
        for e in others:
            head += [e, f"{e} dist", "within", "dist − spread [95%]"]
        lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for key, title, pattern in rows:
            spread = real.get(f"spread_{key}", {}).get("median")
            cells = [title, _stat(real.get(key), "median", pattern), _fmt(spread, pattern)]
            for e in others:
                dist = engines[e].get(f"dist_{key}", {}).get("median")
                within = "—" if dist is None or spread is None or math.isnan(dist) or math.isnan(spread) else ""
                within = within or ("yes" if dist <= spread else "no")
                boot = engines[e].get(f"dist_{key}", {}).get("vs_spread", {})
                interval = "—"
                if boot and not math.isnan(boot.get("median_diff", float("nan"))):
                    interval = "{:+.3f} [{:+.3f}, {:+.3f}]".format(
                        boot["median_diff"], boot["median_lo"], boot["median_hi"]
                    )
                cells += [_stat(engines[e].get(key), "median", pattern), _fmt(dist, pattern), within, interval]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def bootstrap_table(boot: dict[str, dict[str, dict[str, dict[str, float]]]]) -> str:
    """Per stem: a row per metric, a column per engine pair: mean difference [95% interval]."""
    lines = []
    for stem, pairs in boot.items():
        if not pairs:
            continue
        lines += [f"### {stem}", ""]
        names = list(pairs)
        keys = sorted({k for p in pairs.values() for k in p})
        lines += ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for key in keys:
            cells = []
            for name in names:
                b = pairs[name].get(key)
                if not b or b.get("mean_diff") is None or math.isnan(b["mean_diff"]):
                    cells.append("—")
                else:
                    cells.append(f"{b['mean_diff']:+.3g} [{b['mean_lo']:+.3g}, {b['mean_hi']:+.3g}]")
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def control_table(control: dict[str, Any]) -> str:
    """Per stem and engine: songs, share ordered, last/first ratio median [IQR], bin match, median per level."""
    levels = control["levels"]
    head = ["stem", "engine", "songs", f"ordered {' < '.join(levels)}", f"{levels[-1]}/{levels[0]} median [IQR]"]
    head += ["bin match", *(f"median {control['measure']} ({v})" for v in levels)]
    others = list(next(iter(next(iter(control["summary"].values())).values())).get("also", {}))
    head += [f"{label} by {other}" for other in others for label in ("ordered", f"{levels[-1]}/{levels[0]}")]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for stem, engines in control["summary"].items():
        for engine, s in engines.items():
            cells = [stem, engine, str(s["songs"]), f"{s['ordered_share']:.0%}", _median_iqr(s["ratio"], "{:.2f}")]
            cells += [f"{s['bin_match']:.2f}", *(_fmt(s["median"][v], "{:.1f}") for v in levels)]
            for other in others:
                also = s["also"][other]
                cells += [f"{also['ordered_share']:.0%}", _median_iqr(also["ratio"], "{:.2f}")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_control_report(results: list[dict[str, Any]], out_dir: str | Path, command: str = "") -> list[Path]:
    """report.json (every control's summary and per-song rows) and report.md (a table per control)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = results[0]
    data = {
        "command": command,
        "split": first["split"],
        "instructions": first.get("instructions", "triplet"),
        "parts": first["parts"],
        "seed": first["seed"],
    }
    data["controls"] = [{**r["control"], "per_song": r["per_song"], "failures": r["failures"]} for r in results]
    md = [
        f"# midiarr eval --control — {split_words(first['split'])}",
        "",
        f"Command: `{command}`" if command else "",
        "",
    ]
    for r in results:
        c = r["control"]
        md += [f"## {c['attribute']}: {', '.join(c['levels'])} (measure: {c['measure']})", "", control_table(c)]
        if r["failures"]:
            md += [f"Failures ({len(r['failures'])}):", ""] + [f"- {f}" for f in r["failures"][:50]] + [""]
    return [
        atomic_write_text(out / "report.json", json.dumps(_clean(data), indent=1)),
        atomic_write_text(out / "report.md", "\n".join(md) + "\n"),
    ]


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def write_report(result: dict[str, Any], out_dir: str | Path, command: str = "") -> list[Path]:
    """Write report.json, report.md, metrics.png and one piano-roll PNG per example; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "command": command,
        "split": result["split"],
        "instructions": result.get("instructions", "triplet"),
        "parts": result["parts"],
        "seed": result["seed"],
        "aggregate": result["aggregate"],
        "failures": result["failures"],
        # the per-song table: one row per song, stem and engine with every metric
        "scores": [
            {"engine": s.engine, "stem": s.stem, "triplet": s.triplet, "song": s.song, **s.values}
            for s in result["scores"]
        ],
        "spreads": result.get("spreads", {}),
        "bootstrap": result.get("bootstrap", {}),
    }
    written = [atomic_write_text(out / "report.json", json.dumps(_clean(data), indent=1))]
    md = [
        f"# midiarr eval — {split_words(result['split'])}",
        "",
        f"Command: `{command}`" if command else "",
        "",
        markdown_table(result["aggregate"]),
    ]
    if result.get("spreads"):
        md += [
            "## Per-song spreads",
            "",
            spreads_table(result["spreads"]),
            "## Players",
            "",
            players_table(result["spreads"]),
        ]
    if result.get("bootstrap"):
        md += ["## Engine vs engine (paired bootstrap, 95%)", "", bootstrap_table(result["bootstrap"])]
    if result["failures"]:
        md += ["", f"Failures ({len(result['failures'])}):", ""] + [f"- {f}" for f in result["failures"][:50]]
    written.append(atomic_write_text(out / "report.md", "\n".join(md) + "\n"))
    written.append(plot_metrics(result["aggregate"], out / "metrics.png"))
    for i, ex in enumerate(result["examples"]):
        written.append(plot_example(ex, out / f"example_{i}_{ex['stem']}.png"))
    return written


def plot_metrics(aggregate: dict[str, dict[str, dict[str, float]]], path: Path) -> Path:
    """Grouped bars of the main metrics, one panel per stem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["bar_recall", "harmonic_fit", "onset_sync", "groove_similarity", "profile_similarity", "oa_mean"]
    stems = list(aggregate)
    fig, axes = plt.subplots(1, max(1, len(stems)), figsize=(5 * max(1, len(stems)), 3.6), squeeze=False)
    for ax, stem in zip(axes[0], stems):
        engines = list(aggregate[stem])
        width = 0.8 / max(1, len(engines))
        for j, engine in enumerate(engines):
            vals = [aggregate[stem][engine].get(k, float("nan")) for k in keys]
            ax.bar(np.arange(len(keys)) + j * width, np.nan_to_num(vals), width, label=engine)
        ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2)
        ax.set_xticklabels([k.replace("_", "\n") for k in keys], fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(stem)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_example(example: dict[str, Any], path: Path, max_bars: int = 16) -> Path:
    """Piano rolls: the other parts in grey, then the real part and each engine's part, first bars only."""
    from midiarr.plots import CONTEXT_COLOR, NEW_COLOR, REAL_COLOR, piano_roll_png

    rows = [
        (name, [(example["context"], CONTEXT_COLOR), (notes, REAL_COLOR if name == "real" else NEW_COLOR)])
        for name, notes in example["parts"].items()
    ]
    return piano_roll_png(path, example["song"], rows, f"{example['stem']} — {example['triplet']}", max_bars)
