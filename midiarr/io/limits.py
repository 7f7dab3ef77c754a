"""Size limits that keep a huge or hostile input from hanging midiarr."""

from __future__ import annotations

from midiarr.errors import LimitError
from midiarr.song import Song

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_NOTES = 2_000_000
MAX_SECONDS = 3 * 60 * 60.0
MAX_TRACKS = 512


def check_song_limits(song: Song, name: str) -> None:
    """Raise `LimitError` when the song is beyond what midiarr processes."""
    if song.note_count > MAX_NOTES:
        raise LimitError(f"{name}: {song.note_count} notes, over the {MAX_NOTES} limit")
    if len(song.tracks) > MAX_TRACKS:
        raise LimitError(f"{name}: {len(song.tracks)} tracks, over the {MAX_TRACKS} limit")
    if song.note_count and song.duration_seconds > MAX_SECONDS:
        minutes = song.duration_seconds / 60
        raise LimitError(f"{name}: {minutes:.0f} minutes long, over the {MAX_SECONDS / 60:.0f}-minute limit")
