"""The stem transformer's network: a GPT-2 from `transformers` for training, saved as
safetensors with its config, and a lean KV-cached decoder over the same weights for sampling.

HF ``generate`` managed ~150 tokens/s for a 5M model on this CPU; the sampler feeds
known context in chunks and decodes one token at a time through preallocated caches,
which is what makes whole-song generation fast enough.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from midiarr.checkpoint import save_pretrained
from midiarr.transformer.decoder import DecoderShape, read_checkpoint, trained_positions
from midiarr.transformer.vocab import VOCAB

__all__ = ["LeanDecoder", "gpt2_config", "read_checkpoint", "save_checkpoint", "trained_positions"]


def gpt2_config(model: dict[str, Any]) -> Any:
    """A GPT2Config from the ``[model]`` table (dropouts off: attention dropout slowed CPU training 3-5x)."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=len(VOCAB),
        n_positions=int(model["n_positions"]),
        n_embd=int(model["n_embd"]),
        n_layer=int(model["n_layer"]),
        n_head=int(model["n_head"]),
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        bos_token_id=VOCAB["BOS"],
        eos_token_id=VOCAB["EOS"],
        pad_token_id=VOCAB["PAD"],
        tie_word_embeddings=True,
    )


def save_checkpoint(model: Any, out_dir: str | Path, meta: dict[str, Any]) -> Path:
    """Weights (the tied output layer once) and config.json (GPT-2 config, vocabulary, training facts)."""
    config = {"gpt2": model.config.to_diff_dict(), "vocab": VOCAB.tokens, **meta}
    return save_pretrained(model, out_dir, config, skip=("lm_head.weight",))


class _Linear:
    """``x @ W + b`` for one of GPT-2's Conv1D weights (stored (in, out)), in fp32 or int8.

    Decoding one token reads every weight once, and on this CPU matrix-vector speed falls
    off once the weights pass the cache (~12 MB; the 5M model holds 19 MB of fp32 linears).
    Int8 weights with per-output-channel scales are a quarter of that.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, int8: bool) -> None:
        self.weight, self.bias = weight, bias
        self.packed = None
        if int8:
            w = weight.T.contiguous()  # (out, in)
            scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-8).double()
            zero = torch.zeros(w.shape[0], dtype=torch.long)
            with warnings.catch_warnings():  # quantized tensor creation warns of a future deprecation
                warnings.simplefilter("ignore")
                q = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
                self.packed = torch.ops.quantized.linear_prepack(q, bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.quantized.linear_dynamic(x, self.packed)
        return torch.addmm(self.bias, x, self.weight)


@dataclass
class _Layer:
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    qkv: _Linear
    out: _Linear
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor
    fc: _Linear
    proj: _Linear

    def flat(self) -> list[torch.Tensor]:
        """The layer's tensors in the order the one-token steps read them (linear weights as (in, out)):
        ln1 w/b, qkv W/b, out W/b, ln2 w/b, fc W/b, proj W/b."""
        linears = [t for lin in (self.qkv, self.out) for t in (lin.weight, lin.bias)]
        mlp = [t for lin in (self.fc, self.proj) for t in (lin.weight, lin.bias)]
        return [self.ln1_w, self.ln1_b, *linears, self.ln2_w, self.ln2_b, *mlp]


@torch.jit.script
def _decode_one(
    ids: torch.Tensor,
    start: int,
    keys: torch.Tensor,
    values: torch.Tensor,
    wte: torch.Tensor,
    wpe: torch.Tensor,
    lnf: list[torch.Tensor],
    layers: list[list[torch.Tensor]],
    n_head: int,
    eps: float,
) -> torch.Tensor:
    """One token per row (``ids``: (batch,)) through every layer, caches written at ``start``.

    Scripted because a token's cost here was mostly per-operation Python overhead (~20 small
    operations per layer, the weights themselves take ~0.7 ms of a ~2.5 ms token): TorchScript
    runs the same operations without the interpreter between them.
    """
    batch = ids.shape[0]
    n = wte.shape[1]
    d = n // n_head
    end = start + 1
    scale = 1.0 / math.sqrt(d)
    x = wte[ids] + wpe[start]
    for i in range(len(layers)):
        w = layers[i]  # ln1 w/b, qkv W/b, out W/b, ln2 w/b, fc W/b, proj W/b
        a = torch.layer_norm(x, [n], w[0], w[1], eps)
        qkv = torch.addmm(w[3], a, w[2]).view(batch, 3, n_head, d)
        layer_keys, layer_values = keys[i], values[i]
        layer_keys[:, :, start] = qkv[:, 1]
        layer_values[:, :, start] = qkv[:, 2]
        scores = torch.matmul(qkv[:, 0].unsqueeze(2), layer_keys[:, :, :end].transpose(2, 3)) * scale
        att = torch.matmul(torch.softmax(scores, -1), layer_values[:, :, :end]).view(batch, n)
        x = torch.addmm(w[5], att, w[4]) + x
        m = torch.layer_norm(x, [n], w[6], w[7], eps)
        x = torch.addmm(w[11], torch.nn.functional.gelu(torch.addmm(w[9], m, w[8]), approximate="tanh"), w[10]) + x
    return torch.layer_norm(x, [n], lnf[0], lnf[1], eps) @ wte.T


def int8_available() -> bool:
    """Whether this torch build has the int8 dynamic linear kernels (x86 / fbgemm / qnnpack)."""
    try:
        return bool(torch.backends.quantized.supported_engines) and hasattr(torch.ops.quantized, "linear_dynamic")
    except Exception:  # a build without quantization support
        return False


class LeanDecoder(DecoderShape):
    """GPT-2 inference in torch with a preallocated key/value cache, for batches that advance in lockstep:
    the decoder where the C step (`midiarr.transformer.native.NativeDecoder`) does not build, and the
    reference it is tested against (`midiarr.transformer.decoder.make_decoder` picks between them).

    ``int8=True`` runs the linear layers with torch's int8 kernels (dynamic quantization of the
    activations): about twice the decoding speed on this CPU for a small change in the logits.
    ``half=True`` rounds the linear weights to half floats, as the C step holds them.
    """

    def __init__(
        self,
        state: dict[str, Any],  # torch tensors or NumPy arrays
        gpt2: dict[str, Any],
        int8: bool = False,
        trained_positions: int | None = None,
        half: bool = False,
    ) -> None:
        DecoderShape.__init__(self, gpt2, trained_positions, half, int8)
        self.int8 = bool(int8) and int8_available()
        self.half = bool(half)
        prefix = "transformer." if "transformer.wte.weight" in state else ""

        def w(name: str) -> torch.Tensor:
            return torch.as_tensor(state[prefix + name]).float().contiguous()

        def linear(i: int, name: str) -> _Linear:
            # HF Conv1D stores weights as (in, out): x @ W + b
            weight = w(f"h.{i}.{name}.weight")
            if self.half:
                weight = weight.half().float()
            return _Linear(weight, w(f"h.{i}.{name}.bias"), self.int8)

        self.wte = w("wte.weight")
        self.wpe = w("wpe.weight")
        self.lnf_w, self.lnf_b = w("ln_f.weight"), w("ln_f.bias")
        self.layers = [
            _Layer(
                w(f"h.{i}.ln_1.weight"),
                w(f"h.{i}.ln_1.bias"),
                linear(i, "attn.c_attn"),
                linear(i, "attn.c_proj"),
                w(f"h.{i}.ln_2.weight"),
                w(f"h.{i}.ln_2.bias"),
                linear(i, "mlp.c_fc"),
                linear(i, "mlp.c_proj"),
            )
            for i in range(self.n_layer)
        ]
        # the scripted one-token path reads fp32 weights; int8 layers take the eager path
        self._scripted = None if self.int8 else [layer.flat() for layer in self.layers]
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.length = 0

    @classmethod
    def load(cls, path: str | Path, int8: bool = False, half: bool = False) -> tuple[LeanDecoder, dict[str, Any]]:
        """A decoder and the checkpoint's config from a checkpoint folder."""
        state, config = read_checkpoint(path)
        decoder = cls(state, config["gpt2"], int8=int8, trained_positions=trained_positions(config), half=half)
        return decoder, config

    @property
    def step_kind(self) -> str:
        """Which one-token step runs: "torchscript" or "eager" (int8)."""
        return "torchscript" if self._scripted is not None else "eager"

    @property
    def num_parameters(self) -> int:
        """Parameters of the network (embeddings counted once, as they are tied)."""
        tensors = [self.wte, self.wpe, self.lnf_w, self.lnf_b]
        for layer in self.layers:
            tensors += [layer.ln1_w, layer.ln1_b, layer.ln2_w, layer.ln2_b]
            tensors += [t for lin in (layer.qkv, layer.out, layer.fc, layer.proj) for t in (lin.weight, lin.bias)]
        return sum(t.numel() for t in tensors)

    def reset(self, batch: int) -> None:
        """Empty caches for ``batch`` rows."""
        shape = (self.n_layer, batch, self.n_head, self.max_length, self.head_dim)
        self.keys = _cache_tensor(shape)
        self.values = _cache_tensor(shape)
        self.length = 0

    def expand(self, batch: int) -> None:
        """Copy row 0's cache to ``batch`` rows (candidates that share a prompt)."""
        assert self.keys is not None and self.values is not None
        shape = (self.n_layer, batch, self.n_head, self.max_length, self.head_dim)
        keys, values = _cache_tensor(shape), _cache_tensor(shape)
        keys.copy_(self.keys[:, :1].expand(shape))
        values.copy_(self.values[:, :1].expand(shape))
        self.keys, self.values = keys, values

    def select(self, row: int) -> None:
        """Keep only ``row``'s cache (the candidate that carries on alone)."""
        assert self.keys is not None and self.values is not None
        self.keys = self.keys[:, row : row + 1].clone(memory_format=torch.contiguous_format)
        self.values = self.values[:, row : row + 1].clone(memory_format=torch.contiguous_format)

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """`forward` on NumPy token ids (batch, T), as the sampler feeds both decoders; float32 logits."""
        return self.forward(torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))).numpy()

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed ``ids`` (batch, T) after what is cached; logits of the last position (batch, vocab)."""
        assert self.keys is not None and self.values is not None
        batch, t = ids.shape
        start = self.length
        end = start + t
        if end > self.max_length:
            raise RuntimeError("sequence longer than the model's trained context")
        if t == 1 and self._scripted is not None:
            logits = _decode_one(
                ids[:, 0],
                start,
                self.keys,
                self.values,
                self.wte,
                self.wpe,
                [self.lnf_w, self.lnf_b],
                self._scripted,
                self.n_head,
                self.eps,
            )
            self.length = end
            return logits
        x = (self.wte[ids] + self.wpe[start:end]).view(batch * t, self.n_embd)
        h, d, c, eps = self.n_head, self.head_dim, (self.n_embd,), self.eps
        mask = torch.ones(t, end, dtype=torch.bool).tril(diagonal=start) if t > 1 else None
        # torch.layer_norm rather than F.layer_norm: one token is ~25 calls per layer, and the
        # functional wrappers' checks are a measurable share of a token's time on this CPU
        for i, layer in enumerate(self.layers):
            a = torch.layer_norm(x, c, layer.ln1_w, layer.ln1_b, eps)
            if t == 1:  # (batch, 3, heads, 1, d) is already the cache's layout: no permute
                q, k, v = layer.qkv(a).view(batch, 3, h, 1, d).unbind(1)
            else:
                q, k, v = layer.qkv(a).view(batch, t, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)
            keys, values = self.keys[i], self.values[i]
            keys[:, :, start:end] = k
            values[:, :, start:end] = v
            att = F.scaled_dot_product_attention(q, keys[:, :, :end], values[:, :, :end], attn_mask=mask)
            x = x + layer.out(att.transpose(1, 2).reshape(batch * t, self.n_embd))
            m = torch.layer_norm(x, c, layer.ln2_w, layer.ln2_b, eps)
            x = x + layer.proj(F.gelu(layer.fc(m), approximate="tanh"))
        self.length = end
        last = x.view(batch, t, self.n_embd)[:, -1]
        return F.layer_norm(last, (self.n_embd,), self.lnf_w, self.lnf_b, self.eps) @ self.wte.T


def _cache_tensor(shape: tuple[int, ...]) -> torch.Tensor:
    """A zeroed float32 cache in NumPy memory (transparent huge pages, as for the C step's weights in
    midiarr/transformer/native.py)."""
    return torch.from_numpy(np.zeros(shape, dtype=np.float32))


def perplexity(mean_loss: float) -> float:
    """exp of a mean token loss (capped to stay finite)."""
    return math.exp(min(mean_loss, 50.0))
