"""The C decoding step (``decode_step.c``): built with the system C compiler on first use, cached.
It feeds one token per row while sampling, and known tokens (a prompt, a context bar) in one call.

A token of the stem transformer at batch 1 spent about twice as long dispatching ~120 small
torch operations as in its weights (docs/benchmarks.md); the C step runs a whole token in one
OpenMP region. Built once per machine into ``$MIDIARR_CACHE_DIR`` (default ``~/.cache/midiarr``)
under a name that hashes the source, the flags and this CPU's features, so an upgraded source or
another CPU gets its own library. Without a working compiler the decoder keeps its TorchScript
step, which gives the same logits, only slower. ``MIDIARR_NATIVE=0`` turns the C step off.

    python -m midiarr.transformer.native      # build now (setup does this) and report
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from midiarr.threads import compute_threads
from midiarr.transformer.decoder import DecoderShape

SOURCE = Path(__file__).with_name("decode_step.c")
# -fno-trapping-math lets floorf and the clamps in exp_vec vectorize (no result changes: traps are off anyway);
# the second set is for compilers that lack -march=native
_FLAG_SETS = (["-O3", "-march=native", "-fno-trapping-math"], ["-O3", "-fno-trapping-math"])
_LIB: ctypes.CDLL | None = None
_TRIED = False
_REASON = ""


class _Model(ctypes.Structure):
    _fields_ = [
        ("n_layer", ctypes.c_int),
        ("n_embd", ctypes.c_int),
        ("n_head", ctypes.c_int),
        ("n_vocab", ctypes.c_int),
        ("max_len", ctypes.c_int),
        ("eps", ctypes.c_float),
        ("half", ctypes.c_int),
        ("kv_half", ctypes.c_int),
        ("int8", ctypes.c_int),
        ("wte", ctypes.c_void_p),
        ("wpe", ctypes.c_void_p),
        ("lnf_w", ctypes.c_void_p),
        ("lnf_b", ctypes.c_void_p),
        ("layers", ctypes.POINTER(ctypes.c_void_p)),
        ("scales", ctypes.POINTER(ctypes.c_void_p)),
    ]


def cache_dir() -> Path:
    """Where built libraries are kept."""
    env = os.environ.get("MIDIARR_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "midiarr"


def _cpu_signature() -> str:
    """Machine and CPU feature flags: a library built with -march=native only runs where they hold."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.machine()}|{flags.strip()}"


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")


def _build(compiler: str) -> Path | None:
    """Compile the step into the cache (atomically: a half-written library is never loaded)."""
    global _REASON
    source = SOURCE.read_bytes()
    for flags in _FLAG_SETS:
        key = hashlib.sha1(source + " ".join(flags).encode() + _cpu_signature().encode()).hexdigest()[:16]
        target = cache_dir() / f"decode_step-{key}.so"
        if target.is_file():
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
            os.close(fd)
        except OSError as exc:
            _REASON = f"cache folder {target.parent} not writable ({exc.strerror})"
            return None
        cmd = [compiler, *flags, "-fopenmp", "-shared", "-fPIC", str(SOURCE), "-o", tmp, "-lm"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            done = None
            _REASON = f"{compiler} failed: {exc}"
        if done is not None and done.returncode == 0:
            os.replace(tmp, target)
            return target
        Path(tmp).unlink(missing_ok=True)
        if done is not None:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            _REASON = f"{compiler} failed: {last}"
    return None


def load_library() -> ctypes.CDLL | None:
    """The built step, building it if needed; None when off or no compiler could build it."""
    global _LIB, _TRIED, _REASON
    if os.environ.get("MIDIARR_NATIVE", "1") == "0":
        _REASON = "turned off by MIDIARR_NATIVE=0"
        return None
    if _TRIED:
        return _LIB
    _TRIED = True
    compiler = _compiler()
    if compiler is None:
        _REASON = "no C compiler (cc, gcc or clang) found"
        return None
    path = _build(compiler)
    if path is None:
        return None
    try:
        lib = open_library(path)
    except OSError as exc:
        _REASON = f"cannot load {path}: {exc}"
        return None
    _LIB = lib
    return lib


def open_library(path: str | os.PathLike[str]) -> ctypes.CDLL:
    """A built step library, with its function's signature declared (OSError when it cannot be loaded)."""
    lib = ctypes.CDLL(str(path))
    lib.midiarr_decode.restype = ctypes.c_int
    lib.midiarr_decode.argtypes = [
        ctypes.POINTER(_Model),
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    return lib


def unavailable_reason() -> str:
    """Why the C step is not in use ("" when it is or was not tried yet)."""
    return _REASON


class NativeDecoder(DecoderShape):
    """GPT-2 inference through the C step, over NumPy arrays alone: a command that writes with the
    transformer never imports torch (~1.5 s of its start here). The same interface as
    `midiarr.transformer.model.LeanDecoder`: caches for a batch of rows that advance in lockstep,
    ``forward`` feeds tokens and gives the logits after each row's last one.

    Linear weights are held as (out, in) rows: float32, half floats (``half``) or int8 with a scale per
    row (``int8``); with half or int8 weights the key/value caches are half floats as well.
    """

    step_kind = "c"

    def __init__(
        self,
        lib: ctypes.CDLL,
        state: Mapping[str, Any],
        gpt2: Mapping[str, Any],
        trained_positions: int | None = None,
        half: bool = False,
        int8: bool = False,
    ) -> None:
        DecoderShape.__init__(self, gpt2, trained_positions, half, int8)
        self.lib = lib
        self.half, self.int8 = bool(half), bool(int8)
        prefix = "transformer." if "transformer.wte.weight" in state else ""

        def w(name: str) -> np.ndarray:  # NumPy arrays, or torch tensors (their __array__)
            return np.ascontiguousarray(np.asarray(state[prefix + name]), dtype=np.float32)

        singles = [w("wte.weight"), w("wpe.weight"), w("ln_f.weight"), w("ln_f.bias")]
        self.n_vocab = int(singles[0].shape[0])
        self.num_parameters = sum(a.size for a in singles)  # embeddings counted once: the head is tied
        packed: list[np.ndarray] = []  # linear weights in half floats or int8
        row_scales: list[np.ndarray] = []
        slots: list[tuple[bool, int]] = []  # per layer tensor: (in ``packed``?, index in its arena)
        reduced = self.half or self.int8
        names = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight")
        names += ("attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias")
        names += ("mlp.c_proj.weight", "mlp.c_proj.bias")
        for i in range(self.n_layer):
            for k, name in enumerate(names):
                t = w(f"h.{i}.{name}")
                self.num_parameters += t.size
                if k in (2, 4, 8, 10):  # GPT-2's Conv1D weights are (in, out); the C step reads (out, in) rows
                    rows = np.ascontiguousarray(t.T)
                    if self.int8:
                        scale = np.maximum(np.abs(rows).max(axis=1) / np.float32(127), np.float32(1e-12))
                        rows = np.clip(np.round(rows / scale[:, None]), -127, 127)
                        row_scales.append(scale.astype(np.float32))
                    target = packed if reduced else singles
                    slots.append((reduced, len(target)))
                    target.append(rows)
                else:
                    slots.append((False, len(singles)))
                    singles.append(t)
        self._arena, single_ptrs = _pack(singles, np.float32)
        self._packed_arena, packed_ptrs = _pack(packed, np.int8 if self.int8 else np.float16)
        self._scale_arena, scale_ptrs = _pack(row_scales, np.float32)
        wte, wpe, lnf_w, lnf_b = single_ptrs[:4]
        pointers = [packed_ptrs[i] if is_packed else single_ptrs[i] for is_packed, i in slots]
        self._layers = (ctypes.c_void_p * len(pointers))(*pointers)
        self._scales = (ctypes.c_void_p * max(1, len(scale_ptrs)))(*scale_ptrs)
        # a token streams every earlier position's keys and values once per row: at the end of a window
        # they weigh as much as the weights, so they are halved with them
        self.cache_dtype = np.float16 if reduced else np.float32
        self.model = _Model(
            n_layer=self.n_layer,
            n_embd=self.n_embd,
            n_head=self.n_head,
            n_vocab=self.n_vocab,
            max_len=self.max_length,
            eps=self.eps,
            half=int(self.half),
            kv_half=int(reduced),
            int8=int(self.int8),
            wte=wte,
            wpe=wpe,
            lnf_w=lnf_w,
            lnf_b=lnf_b,
            layers=ctypes.cast(self._layers, ctypes.POINTER(ctypes.c_void_p)),
            scales=ctypes.cast(self._scales, ctypes.POINTER(ctypes.c_void_p)),
        )
        self.keys: np.ndarray | None = None
        self.values: np.ndarray | None = None
        self.length = 0

    def _shape(self, batch: int) -> tuple[int, ...]:
        return (self.n_layer, batch, self.n_head, self.max_length, self.head_dim)

    def reset(self, batch: int) -> None:
        """Empty caches for ``batch`` rows."""
        self.keys = np.zeros(self._shape(batch), dtype=self.cache_dtype)
        self.values = np.zeros(self._shape(batch), dtype=self.cache_dtype)
        self.length = 0

    def expand(self, batch: int) -> None:
        """Copy row 0's cache to ``batch`` rows (candidates that share a prompt)."""
        assert self.keys is not None and self.values is not None
        self.keys = np.broadcast_to(self.keys[:, :1], self._shape(batch)).copy()
        self.values = np.broadcast_to(self.values[:, :1], self._shape(batch)).copy()

    def select(self, row: int) -> None:
        """Keep only ``row``'s cache (the candidate that carries on alone)."""
        assert self.keys is not None and self.values is not None
        self.keys = np.ascontiguousarray(self.keys[:, row : row + 1])
        self.values = np.ascontiguousarray(self.values[:, row : row + 1])

    def forward(self, ids: Any) -> np.ndarray:
        """Feed ``ids`` (batch, T) after what is cached; float32 logits after each row's last token (batch, vocab)."""
        assert self.keys is not None and self.values is not None
        ids = np.ascontiguousarray(np.asarray(ids), dtype=np.int64)
        batch, length = (int(n) for n in ids.shape)
        start = self.length
        if start + length > self.max_length:
            raise RuntimeError("sequence longer than the model's trained context")
        if batch != self.keys.shape[1]:
            raise RuntimeError(f"{batch} rows fed to caches of {self.keys.shape[1]}")
        logits = np.empty((batch, self.n_vocab), dtype=np.float32)
        status = self.lib.midiarr_decode(
            ctypes.byref(self.model),
            batch,
            length,
            start,
            ids.ctypes.data,
            self.keys.ctypes.data,
            self.values.ctypes.data,
            logits.ctypes.data,
            compute_threads(),
        )
        if status == -1:
            raise MemoryError("the C decoding step ran out of memory")
        if status != 0:
            raise RuntimeError("token id outside the vocabulary or position outside the cache")
        self.length = start + length
        return logits

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """`forward`: the sampler's entry, shared with `LeanDecoder`."""
        return self.forward(ids)


def _pack(tensors: list[np.ndarray], dtype: type[np.generic]) -> tuple[np.ndarray, list[int]]:
    """Copies of ``tensors`` (contiguous, in ``dtype``) in one arena; their addresses.

    One aligned NumPy buffer: rows start on cache lines, and NumPy asks the kernel for transparent
    huge pages on large allocations (torch does not). The huge pages measured no faster on their
    own here but cost nothing.
    """
    itemsize = np.dtype(dtype).itemsize
    align = 64 // itemsize  # elements per cache line (one AVX-512 vector)
    sizes = [int(t.size) for t in tensors]
    offsets, total = [], 0
    for size in sizes:
        offsets.append(total)
        total += -(-size // align) * align
    arena = np.zeros(total + align, dtype=dtype)
    shift = (-(arena.ctypes.data // itemsize)) % align
    for t, offset, size in zip(tensors, offsets, sizes):
        start = shift + offset
        arena[start : start + size] = np.asarray(t, dtype=np.float32).reshape(-1).astype(dtype)
    base = arena.ctypes.data
    return arena, [base + itemsize * (shift + offset) for offset in offsets]


def main() -> int:
    lib = load_library()
    if lib is None:
        print(f"midiarr: C decoding step not built ({unavailable_reason()}); the TorchScript step will be used")
        return 0
    print(f"midiarr: C decoding step ready ({lib._name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
