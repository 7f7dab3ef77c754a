"""`midiarr insert --report DIR`: a small HTML page to look at and listen to the new part."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from midiarr.engines import InsertResult
from midiarr.io import atomic_write_text
from midiarr.plots import CONTEXT_COLOR, NEW_COLOR, piano_roll_png
from midiarr.song import Song


def write_insert_report(
    result: InsertResult,
    out_dir: str | Path,
    engine: str,
    instruction: str | None,
    seed: int,
    soundfont: str | None = None,
    sr: int = 22050,
) -> Path:
    """Write index.html with a piano roll and the score of the song with the new part, and players for the
    rendered audio."""
    from midiarr.render import render_to_dir

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    song = result.song
    new = np.concatenate([song.tracks[i].notes for i in result.new_tracks])
    # the other pitched parts as the background (drum "pitches" are sounds, not notes)
    others = [t.notes for i, t in enumerate(song.tracks) if i not in result.new_tracks and not t.is_drum]
    context = np.concatenate(others) if others else new[:0]
    piano_roll_png(
        out / "pianoroll.png",
        song,
        [("song", [(context, CONTEXT_COLOR)]), (f"new {result.stem}", [(context, "#eeeeee"), (new, NEW_COLOR)])],
        f"{result.stem} by {engine}",
        max_bars=32,
    )
    score_pages = _write_score_pages(song, result.new_tracks, out)
    audio = render_to_dir(song, out / "audio", soundfont=soundfont, sr=sr)
    players = "".join(
        f"<figure><figcaption>{html.escape(name)}{' (new)' if name == result.stem else ''}</figcaption>"
        f'<audio controls preload="none" src="audio/{html.escape(path.name)}"></audio></figure>'
        for name, path in sorted(audio.items(), key=lambda kv: (kv[0] != "mix", kv[0] != result.stem, kv[0]))
    )
    bars = int(song.bar_activity(new).sum())
    facts = [
        ("stem", result.stem),
        ("engine", engine),
        ("instruction", instruction or "—"),
        ("seed", str(seed)),
        ("notes written", str(len(new))),
        ("bars played", f"{bars} of {song.num_bars}"),
        ("replaced", ", ".join(result.replaced_tracks) or "—"),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    title = html.escape(song.metadata.get("title", "song"))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>midiarr — {title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}th,td{{text-align:left;padding:2px 12px 2px 0}}img{{max-width:100%}}
figure{{display:inline-block;margin:0 1em 1em 0}}figcaption{{font-size:90%}}</style></head>
<body><h1>{title}: new {html.escape(result.stem)}</h1><table>{rows}</table>
<h2>Piano roll</h2><img src="pianoroll.png" alt="piano roll of the song with the new part in red">
<h2>Score</h2>{score_pages}
<h2>Listen</h2>{players}</body></html>
"""
    return atomic_write_text(out / "index.html", page)


def _write_score_pages(song: Song, new_tracks: list[int], out: Path) -> str:
    """score-N.svg pages of the song's notation (new part in red) and the HTML that shows them."""
    from midiarr.errors import LimitError
    from midiarr.io.score_view import score_svg_pages

    try:
        pages = score_svg_pages(song, new_tracks)
    except LimitError as exc:
        return f"<p>{html.escape(str(exc))}</p>"
    for k, svg in enumerate(pages, start=1):
        atomic_write_text(out / f"score-{k}.svg", svg)
    return "".join(
        f'<img class="score" src="score-{k}.svg" alt="page {k} of the score, the new part in red">'
        for k in range(1, len(pages) + 1)
    )
