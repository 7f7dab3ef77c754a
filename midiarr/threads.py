"""Thread counts for work run side by side.

Each torch/OpenMP process spins as many threads as the machine has cores. Three such processes on two cores
ran ten times slower each (docs/benchmarks.md, "Concurrent inserts"). Everything midiarr runs in parallel
(server jobs, prepare and render-dataset workers, the training data encoders) gives each process its share of
the cores instead. A command run alone keeps torch's own choice. `--threads N` (or `MIDIARR_THREADS`) sets it
for one command, for users who start several at once.
"""

from __future__ import annotations

import os

_LIBRARY_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def share_of_cores(processes: int) -> int:
    """Threads for each of ``processes`` processes that run at once: the cores divided among them, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(1, int(processes)))


def limit_threads(threads: int) -> None:
    """Use at most ``threads`` compute threads in this process (torch, OpenMP, BLAS), from now on."""
    threads = max(1, int(threads))
    for name in _LIBRARY_VARIABLES:
        os.environ[name] = str(threads)
    import sys

    if "torch" not in sys.modules:  # torch reads the variables when it is imported; a worker without it stays light
        return
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # settable once, before any parallel work; the intra-op count is what matters
        pass


def threads_from_environment() -> int | None:
    """``MIDIARR_THREADS`` as a count, or None when unset."""
    text = os.environ.get("MIDIARR_THREADS", "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        from midiarr.errors import OptionError

        raise OptionError(f"MIDIARR_THREADS={text!r}: a count of threads, 1 or more")
    return int(text)
