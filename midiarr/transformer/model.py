"""The stem transformer's network: a GPT-2 from `transformers` for training, saved as
safetensors with its config, and a lean KV-cached decoder over the same weights for sampling.

HF ``generate`` managed ~150 tokens/s for a 5M model on this CPU; the sampler feeds
known context in chunks and decodes one token at a time through preallocated caches,
which is what makes whole-song generation fast enough.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from midiarr.errors import InputError
from midiarr.transformer.vocab import VOCAB

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


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
    """Weights (safetensors) and config.json (GPT-2 config, vocabulary, training facts) into ``out_dir``."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(out / WEIGHTS_FILE)
    config = {"gpt2": model.config.to_diff_dict(), "vocab": VOCAB.tokens, **meta}
    tmp_cfg = out / (CONFIG_FILE + ".tmp")
    tmp_cfg.write_text(json.dumps(config, indent=1), encoding="utf-8")
    tmp_cfg.replace(out / CONFIG_FILE)
    return out


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and config of a checkpoint folder, checked against this vocabulary."""
    from safetensors.torch import load_file

    folder = Path(path)
    weights, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if not weights.is_file() or not config_path.is_file():
        raise InputError(f"{folder}: not a transformer checkpoint (needs {WEIGHTS_FILE} and {CONFIG_FILE})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        state = load_file(str(weights))
    except Exception as exc:
        raise InputError(f"{folder}: cannot read the checkpoint ({exc})") from None
    if config.get("vocab") != VOCAB.tokens:
        raise InputError(f"{folder}: the checkpoint was trained with another vocabulary")
    return state, config


@dataclass
class _Layer:
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    qkv_w: torch.Tensor
    qkv_b: torch.Tensor
    out_w: torch.Tensor
    out_b: torch.Tensor
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor
    fc_w: torch.Tensor
    fc_b: torch.Tensor
    proj_w: torch.Tensor
    proj_b: torch.Tensor


class LeanDecoder:
    """GPT-2 inference with a preallocated key/value cache, for batches that advance in lockstep."""

    def __init__(self, state: dict[str, torch.Tensor], gpt2: dict[str, Any]) -> None:
        self.n_layer = int(gpt2["n_layer"])
        self.n_head = int(gpt2["n_head"])
        self.n_embd = int(gpt2["n_embd"])
        self.n_positions = int(gpt2["n_positions"])
        self.eps = float(gpt2.get("layer_norm_epsilon", 1e-5))
        prefix = "transformer." if "transformer.wte.weight" in state else ""

        def w(name: str) -> torch.Tensor:
            return state[prefix + name].float().contiguous()

        self.wte = w("wte.weight")
        self.wpe = w("wpe.weight")
        self.lnf_w, self.lnf_b = w("ln_f.weight"), w("ln_f.bias")
        # HF Conv1D stores weights as (in, out): x @ W + b
        self.layers = [
            _Layer(
                *(w(f"h.{i}.{n}") for n in ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias")),
                *(w(f"h.{i}.{n}") for n in ("attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias")),
                *(
                    w(f"h.{i}.{n}")
                    for n in ("mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")
                ),
            )
            for i in range(self.n_layer)
        ]
        self.head_dim = self.n_embd // self.n_head
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.length = 0

    @classmethod
    def load(cls, path: str | Path) -> tuple[LeanDecoder, dict[str, Any]]:
        """A decoder and the checkpoint's config from a checkpoint folder."""
        state, config = read_checkpoint(path)
        return cls(state, config["gpt2"]), config

    @property
    def num_parameters(self) -> int:
        """Parameters of the network (embeddings counted once, as they are tied)."""
        tensors = [self.wte, self.wpe, self.lnf_w, self.lnf_b]
        tensors += [t for layer in self.layers for t in vars(layer).values()]
        return sum(t.numel() for t in tensors)

    def reset(self, batch: int) -> None:
        """Empty caches for ``batch`` rows."""
        shape = (self.n_layer, batch, self.n_head, self.n_positions, self.head_dim)
        self.keys = torch.zeros(shape)
        self.values = torch.zeros(shape)
        self.length = 0

    def expand(self, batch: int) -> None:
        """Copy row 0's cache to ``batch`` rows (candidates that share a prompt)."""
        assert self.keys is not None and self.values is not None
        self.keys = self.keys[:, :1].expand(-1, batch, -1, -1, -1).contiguous()
        self.values = self.values[:, :1].expand(-1, batch, -1, -1, -1).contiguous()

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed ``ids`` (batch, T) after what is cached; logits of the last position (batch, vocab)."""
        assert self.keys is not None and self.values is not None
        batch, t = ids.shape
        start = self.length
        if start + t > self.n_positions:
            raise RuntimeError("sequence longer than the model's context")
        x = self.wte[ids] + self.wpe[start : start + t]
        h, d = self.n_head, self.head_dim
        mask = None
        if t > 1:
            mask = torch.ones(t, start + t, dtype=torch.bool).tril(diagonal=start)
        for i, layer in enumerate(self.layers):
            a = F.layer_norm(x, (self.n_embd,), layer.ln1_w, layer.ln1_b, self.eps)
            q, k, v = torch.addmm(layer.qkv_b, a.view(-1, self.n_embd), layer.qkv_w).view(batch, t, 3, h, d).unbind(2)
            self.keys[i, :, :, start : start + t] = k.transpose(1, 2)
            self.values[i, :, :, start : start + t] = v.transpose(1, 2)
            att = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                self.keys[i, :, :, : start + t],
                self.values[i, :, :, : start + t],
                attn_mask=mask,
            )
            att = att.transpose(1, 2).reshape(batch * t, self.n_embd)
            x = x + torch.addmm(layer.out_b, att, layer.out_w).view(batch, t, -1)
            m = F.layer_norm(x, (self.n_embd,), layer.ln2_w, layer.ln2_b, self.eps)
            m = F.gelu(torch.addmm(layer.fc_b, m.view(-1, self.n_embd), layer.fc_w), approximate="tanh")
            x = x + torch.addmm(layer.proj_b, m, layer.proj_w).view(batch, t, -1)
        self.length = start + t
        last = F.layer_norm(x[:, -1], (self.n_embd,), self.lnf_w, self.lnf_b, self.eps)
        return last @ self.wte.T


def perplexity(mean_loss: float) -> float:
    """exp of a mean token loss (capped to stay finite)."""
    return math.exp(min(mean_loss, 50.0))
