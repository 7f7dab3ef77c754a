"""The decoder that samples a stem: the C step's NumPy decoder where it builds here, else torch's.

`NativeDecoder` (midiarr/transformer/native.py) runs every token through decode_step.c and needs no torch;
`LeanDecoder` (midiarr/transformer/model.py) is the torch one, the fallback without a C compiler and the
reference the C step is tested against. Both read a checkpoint the same way and offer the same calls:
``reset``, ``expand``, ``select``, ``forward`` / ``logits``, ``length``, ``max_length``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from midiarr.checkpoint import read_pretrained
from midiarr.errors import InputError
from midiarr.transformer.vocab import VOCAB

if TYPE_CHECKING:
    from midiarr.transformer.model import LeanDecoder
    from midiarr.transformer.native import NativeDecoder


class DecoderShape:
    """The network's sizes both decoders read from a GPT-2 config, and how long a window may run."""

    def __init__(self, gpt2: Mapping[str, Any], trained_positions: int | None, half: bool, int8: bool) -> None:
        if half and int8:
            raise ValueError("half and int8 weights exclude each other")
        self.n_layer = int(gpt2["n_layer"])
        self.n_head = int(gpt2["n_head"])
        self.n_embd = int(gpt2["n_embd"])
        self.n_positions = int(gpt2["n_positions"])
        self.head_dim = self.n_embd // self.n_head
        # Training windows may be shorter than the position table: the embeddings past them were never
        # trained (random vectors), so a window that ran into them would be written blind.
        self.max_length = min(self.n_positions, int(trained_positions or self.n_positions))
        self.eps = float(gpt2.get("layer_norm_epsilon", 1e-5))


def read_checkpoint(path: str | Path, arrays: str = "torch") -> tuple[dict[str, Any], dict[str, Any]]:
    """Weights ("torch" tensors or "numpy" arrays) and config of a checkpoint folder, checked against this
    vocabulary."""
    state, config = read_pretrained(path, "a transformer checkpoint", arrays=arrays)
    if config.get("vocab") != VOCAB.tokens:
        raise InputError(f"{Path(path)}: the checkpoint was trained with another vocabulary")
    return state, config


def trained_positions(config: dict[str, Any]) -> int | None:
    """Longest window the checkpoint was trained on (``[train] seq_len``), if its config records it."""
    seq_len = config.get("config", {}).get("train", {}).get("seq_len")
    return int(seq_len) if seq_len else None


def native_available() -> bool:
    """Whether the C step is built (or builds now) and is not turned off."""
    from midiarr.transformer.native import load_library

    return load_library() is not None


def make_decoder(
    state: dict[str, Any],
    gpt2: dict[str, Any],
    trained_positions: int | None = None,
    *,
    half: bool = False,
    int8: bool = False,
    native: bool | None = None,
) -> NativeDecoder | LeanDecoder:
    """The C step's decoder over ``state`` where it builds (``native``: None = where available, True =
    required, False = torch's), else torch's `LeanDecoder`."""
    if native is not False:
        from midiarr.transformer.native import NativeDecoder, load_library, unavailable_reason

        lib = load_library()
        if lib is not None:
            return NativeDecoder(lib, state, gpt2, trained_positions, half=half, int8=int8)
        if native:
            raise RuntimeError(f"the C decoding step is not available: {unavailable_reason()}")
    from midiarr.transformer.model import LeanDecoder

    return LeanDecoder(state, gpt2, int8=int8, trained_positions=trained_positions, half=half)


def load_decoder(
    path: str | Path, *, half: bool = False, int8: bool = False, native: bool | None = None
) -> tuple[NativeDecoder | LeanDecoder, dict[str, Any]]:
    """`make_decoder` over a checkpoint folder, and its config; read as NumPy arrays, so the C step's decoder
    loads without torch."""
    state, config = read_checkpoint(path, arrays="numpy")
    decoder = make_decoder(state, config["gpt2"], trained_positions(config), half=half, int8=int8, native=native)
    return decoder, config
