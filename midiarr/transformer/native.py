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
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
        ("wte", ctypes.c_void_p),
        ("wpe", ctypes.c_void_p),
        ("lnf_w", ctypes.c_void_p),
        ("lnf_b", ctypes.c_void_p),
        ("layers", ctypes.POINTER(ctypes.c_void_p)),
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
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        _REASON = f"cannot load {path}: {exc}"
        return None
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
    _LIB = lib
    return lib


def unavailable_reason() -> str:
    """Why the C step is not in use ("" when it is or was not tried yet)."""
    return _REASON


class NativeStep:
    """The C step over one decoder's weights: its own copies, linear weights as (out, in) rows and in half
    floats when the decoder rounds them (``decoder.half``), the rest in float32. With half weights the
    key/value caches are half floats too (``cache_dtype``)."""

    def __init__(self, lib: ctypes.CDLL, decoder: Any) -> None:
        self.lib = lib
        singles = [decoder.wte, decoder.wpe, decoder.lnf_w, decoder.lnf_b]
        halves: list[torch.Tensor] = []
        slots: list[tuple[bool, int]] = []  # per layer tensor: (half?, index in its arena)
        for layer in decoder.layers:
            for k, t in enumerate(layer.flat()):
                if k in (2, 4, 8, 10):  # linear weights, read by the C step as (out, in): one row per output
                    target = halves if decoder.half else singles
                    slots.append((decoder.half, len(target)))
                    target.append(t.T)
                else:
                    slots.append((False, len(singles)))
                    singles.append(t)
        self._arena, single_ptrs = _pack(singles, np.float32)
        self._half_arena, half_ptrs = _pack(halves, np.float16)
        wte, wpe, lnf_w, lnf_b = single_ptrs[:4]
        pointers = [half_ptrs[i] if is_half else single_ptrs[i] for is_half, i in slots]
        self._layers = (ctypes.c_void_p * len(pointers))(*pointers)
        self.n_vocab = int(decoder.wte.shape[0])
        # a token streams every earlier position's keys and values once per row: at the end of a window
        # they weigh as much as the weights, so they are halved with them
        self.cache_dtype = torch.float16 if decoder.half else torch.float32
        self.model = _Model(
            n_layer=decoder.n_layer,
            n_embd=decoder.n_embd,
            n_head=decoder.n_head,
            n_vocab=self.n_vocab,
            max_len=decoder.max_length,
            eps=decoder.eps,
            half=int(decoder.half),
            kv_half=int(decoder.half),
            wte=wte,
            wpe=wpe,
            lnf_w=lnf_w,
            lnf_b=lnf_b,
            layers=ctypes.cast(self._layers, ctypes.POINTER(ctypes.c_void_p)),
        )

    def __call__(self, ids: torch.Tensor, start: int, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Logits (batch, vocab) after each row's last token of ``ids`` (batch, T), fed at positions
        ``start`` on; their keys and values are written into the caches there."""
        ids = ids.to(torch.int64).contiguous()
        batch, length = (int(n) for n in ids.shape)
        for cache in (keys, values):
            if not cache.is_contiguous() or cache.dtype != self.cache_dtype:
                raise RuntimeError(f"the C step needs contiguous {self.cache_dtype} caches")
        logits = torch.empty(batch, self.n_vocab)
        status = self.lib.midiarr_decode(
            ctypes.byref(self.model),
            batch,
            length,
            int(start),
            ids.data_ptr(),
            keys.data_ptr(),
            values.data_ptr(),
            logits.data_ptr(),
            max(1, torch.get_num_threads()),
        )
        if status == -1:
            raise MemoryError("the C decoding step ran out of memory")
        if status != 0:
            raise RuntimeError("token id outside the vocabulary or position outside the cache")
        return logits


def _pack(tensors: list[torch.Tensor], dtype: type[np.generic]) -> tuple[np.ndarray, list[int]]:
    """Copies of ``tensors`` (contiguous, in ``dtype``) in one arena; their addresses.

    One aligned NumPy buffer: rows start on cache lines, and NumPy asks the kernel for transparent
    huge pages on large allocations (torch does not). The huge pages measured no faster on their
    own here but cost nothing.
    """
    itemsize = np.dtype(dtype).itemsize
    align = 64 // itemsize  # elements per cache line (one AVX-512 vector)
    sizes = [int(t.numel()) for t in tensors]
    offsets, total = [], 0
    for size in sizes:
        offsets.append(total)
        total += -(-size // align) * align
    arena = np.zeros(total + align, dtype=dtype)
    shift = (-(arena.ctypes.data // itemsize)) % align
    for t, offset, size in zip(tensors, offsets, sizes):
        start = shift + offset
        arena[start : start + size] = t.detach().float().contiguous().reshape(-1).numpy().astype(dtype)
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
