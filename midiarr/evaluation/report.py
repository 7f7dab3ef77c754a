"""Writing an evaluation: JSON (everything), a Markdown table per stem, PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from midiarr.io import atomic_write_text

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
        "parts": result["parts"],
        "seed": result["seed"],
        "aggregate": result["aggregate"],
        "failures": result["failures"],
        "scores": [{"engine": s.engine, "stem": s.stem, "triplet": s.triplet, **s.values} for s in result["scores"]],
    }
    written = [atomic_write_text(out / "report.json", json.dumps(_clean(data), indent=1))]
    md = [
        f"# midiarr eval — {result['split']} split",
        "",
        f"Command: `{command}`" if command else "",
        "",
        markdown_table(result["aggregate"]),
    ]
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
