"""Piano-roll pictures (PNG) shared by the eval report and the insert report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from midiarr.song import Song

CONTEXT_COLOR, REAL_COLOR, NEW_COLOR = "#c8c8c8", "#1f77b4", "#d62728"


def piano_roll_png(
    path: str | Path,
    song: Song,
    rows: list[tuple[str, list[tuple[np.ndarray, str]]]],
    title: str = "",
    max_bars: int = 16,
) -> Path:
    """One roll per row (label, layers of (notes, colour)), sharing the song's first ``max_bars`` bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    bars = song.bar_starts()
    end = int(bars[max_bars]) if len(bars) > max_bars else max(song.end_tick, 1)
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 1.9 * len(rows) + 0.4), sharex=True, squeeze=False)
    for ax, (label, layers) in zip(axes[:, 0], rows):
        low, high = 127, 0
        for notes, color in layers:
            sel = notes[notes["start"] < end]
            if len(sel):
                low, high = min(low, int(sel["pitch"].min())), max(high, int(sel["pitch"].max()))
            boxes = [
                Rectangle((s, p - 0.4), d, 0.8)
                for s, d, p in zip(sel["start"].tolist(), sel["duration"].tolist(), sel["pitch"].tolist())
            ]
            ax.add_collection(PatchCollection(boxes, facecolor=color, edgecolor="none"))
        ax.set_ylim(max(0, low - 3), min(127, high + 3) if high >= low else 100)
        ax.set_ylabel(label, fontsize=8)
        for b in bars[bars < end]:
            ax.axvline(b, color="#eeeeee", lw=0.5, zorder=0)
    axes[0, 0].set_xlim(0, end)
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    axes[-1, 0].set_xlabel("ticks (bar lines in grey)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return Path(path)
