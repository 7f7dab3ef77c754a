"""A song as pages of engraved notation (SVG), for the insert report and the web page: midiarr's MusicXML of
it, engraved by verovio, with the new parts in red."""

from __future__ import annotations

from midiarr.io.musicxml import check_notation_work
from midiarr.io.musicxml_writer import score_bytes
from midiarr.io.notation import NotationOptions
from midiarr.song import Song

MAX_PAGES = 12  # a report shows the opening of a long song; the MusicXML holds all of it


def score_svg_pages(
    song: Song,
    highlight: list[int] | tuple[int, ...] = (),
    options: NotationOptions | None = None,
    max_pages: int = MAX_PAGES,
) -> list[str]:
    """SVG pages of the song's score, new parts (``highlight``) in red, chord symbols above the first of them."""
    import verovio

    check_notation_work(song, song.metadata.get("title") or "the song")
    pitched = [i for i in highlight if not song.tracks[i].is_drum]
    xml = score_bytes(song, options, chord_symbols_for=pitched[:1], highlight=highlight)
    tk = verovio.toolkit()
    tk.setOptions(
        {"adjustPageHeight": True, "pageWidth": 2100, "scale": 40, "header": "none", "footer": "none", "breaks": "auto"}
    )
    if not tk.loadData(xml.decode("utf-8")):
        return []
    return [tk.renderToSVG(page) for page in range(1, min(tk.getPageCount(), max_pages) + 1)]
