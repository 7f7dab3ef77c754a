"""Tokenization: a miditok REMI tokenizer configured from ``configs/tokenizer.toml``.

The stream is bar-aligned (every bar opens with a Bar token), carries program
tokens so several tracks share one stream, and quantizes to the grid in the
config; `SongTokenizer.quantize` gives exactly what a round trip preserves.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import miditok
import numpy as np

from midiarr.config import load_config
from midiarr.convert import from_symusic, to_symusic
from midiarr.errors import OptionError
from midiarr.song import Song

_TOKENIZERS = {"REMI": miditok.REMI}


def tokenizer_config(config: dict[str, Any]) -> miditok.TokenizerConfig:
    """A miditok TokenizerConfig from the ``[tokenizer]`` table of the TOML config."""
    table = dict(config["tokenizer"])
    table.pop("kind", None)
    beat_res = {tuple(int(x) for x in k.split("_")): int(v) for k, v in table.pop("beat_res").items()}
    ts_range = {int(k): list(v) for k, v in table.pop("time_signature_range").items()}
    return miditok.TokenizerConfig(
        beat_res=beat_res,
        time_signature_range=ts_range,
        pitch_range=tuple(table.pop("pitch_range")),
        tempo_range=tuple(table.pop("tempo_range")),
        one_token_stream_for_programs=True,
        **table,
    )


class SongTokenizer:
    """REMI tokens for a `Song`, one stream for all tracks, split by bar on request."""

    def __init__(self, config_path: str | os.PathLike[str] | None = None) -> None:
        self.config = load_config("tokenizer.toml", config_path)
        kind = self.config["tokenizer"].get("kind", "REMI")
        if kind not in _TOKENIZERS:
            raise OptionError(f"tokenizer kind {kind!r} is not supported (choose from {', '.join(_TOKENIZERS)})")
        self.tokenizer = _TOKENIZERS[kind](tokenizer_config(self.config))
        self.bar_id = self.tokenizer.vocab["Bar_None"]

    @property
    def vocab_size(self) -> int:
        """Number of distinct token ids."""
        return len(self.tokenizer)

    def quantize(self, song: Song) -> Song:
        """The song as the tokenizer sees it: grid-snapped times, binned velocities and tempos."""
        score = self.tokenizer.preprocess_score(to_symusic(song))
        return _rescale(from_symusic(score), song.ticks_per_beat)

    def encode(self, song: Song) -> list[int]:
        """Token ids of the whole song (empty tracks dropped)."""
        seq = self.tokenizer.encode(to_symusic(song))
        return list(seq.ids)

    def decode(self, ids: list[int], ticks_per_beat: int = 480) -> Song:
        """A `Song` from token ids, at ``ticks_per_beat``."""
        score = self.tokenizer.decode(list(ids))
        return _rescale(from_symusic(score), ticks_per_beat)

    def tokens(self, ids: list[int]) -> list[str]:
        """Readable token strings for ids."""
        return [self.tokenizer[int(i)] for i in ids]

    def encode_bars(self, song: Song) -> list[list[int]]:
        """Token ids grouped per bar; each group starts with the Bar token."""
        return split_bars(self.encode(song), self.bar_id)


def split_bars(ids: list[int], bar_id: int) -> list[list[int]]:
    """Split a bar-aligned stream at its Bar tokens (tokens before the first bar are dropped)."""
    arr = np.asarray(ids)
    starts = np.flatnonzero(arr == bar_id)
    bounds = np.append(starts, len(arr))
    return [arr[a:b].tolist() for a, b in itertools.pairwise(bounds)]


def _rescale(song: Song, ticks_per_beat: int) -> Song:
    """The same song expressed at another tick resolution."""
    if song.ticks_per_beat == ticks_per_beat:
        return song
    from dataclasses import replace

    from midiarr.song import KeySignature, Marker, Tempo, TimeSignature

    factor = ticks_per_beat / song.ticks_per_beat

    def scale(t: int) -> int:
        return round(t * factor)

    for track in song.tracks:
        n = track.notes
        ends = np.round((n["start"] + n["duration"]) * factor).astype(np.int64)
        n["start"] = np.round(n["start"] * factor).astype(np.int64)
        n["duration"] = np.maximum(ends - n["start"], 1)
        if len(track.controls):
            track.controls["time"] = np.round(track.controls["time"] * factor)
        if len(track.pitch_bends):
            track.pitch_bends["time"] = np.round(track.pitch_bends["time"] * factor)
    return Song(
        ticks_per_beat=ticks_per_beat,
        tracks=song.tracks,
        tempos=[Tempo(scale(t.tick), t.qpm) for t in song.tempos],
        time_signatures=[TimeSignature(scale(t.tick), t.numerator, t.denominator) for t in song.time_signatures],
        key_signatures=[KeySignature(scale(k.tick), k.key, k.minor) for k in song.key_signatures],
        markers=[Marker(scale(m.tick), m.text) for m in song.markers],
        metadata=song.metadata,
        chord_symbols=[replace(c, tick=scale(c.tick)) for c in song.chord_symbols],
    )
