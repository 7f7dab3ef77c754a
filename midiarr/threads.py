"""Thread counts for work run side by side.

Each torch/OpenMP process spins as many threads as the machine has cores. Three such processes on two cores
ran ten times slower each (docs/benchmarks.md, "Concurrent inserts"). Everything midiarr runs in parallel
(server jobs, prepare and render-dataset workers, the training data encoders) gives each process its share of
the cores instead. `--threads N` (or `MIDIARR_THREADS`) sets it for one command.

Commands started separately, by a user or a script, cannot be told how many others run. Without `--threads` the
CLI shares the cores automatically: a process that computes registers a locked file in a per-user folder, counts
the files whose lock is held (their processes still run), and takes its share of the cores. It counts again at
most every 0.2 s from the engines' loops (`rebalance`), so processes shrink when others start and grow back
when they end. A command run alone keeps torch's own choice. The transformer's C step, which runs without torch,
reads the same count (`compute_threads`).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

_LIBRARY_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_REGISTRATION = re.compile(r"\d+\.\d+\.lock")  # <pid>.<ns>.lock, as `_register` names them
RECOUNT_SECONDS = 0.2  # a part takes ~2 s: at 0.5 s, four started at once overlapped on both cores for a quarter of it


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def share_of_cores(processes: int) -> int:
    """Threads for each of ``processes`` processes that run at once: the cores divided among them, at least 1."""
    return max(1, available_cores() // max(1, int(processes)))


_compute_threads: int | None = None  # set by limit_threads and rebalance, for the C step where torch is not loaded


def compute_threads() -> int:
    """Threads this process's compute may use now: torch's count where torch is loaded; else the count set by
    `limit_threads` or `rebalance`, ``OMP_NUM_THREADS``, or the cores available (torch's own default)."""
    if "torch" in sys.modules:
        import torch

        return torch.get_num_threads()
    if _compute_threads:
        return _compute_threads
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else available_cores()


def _set_compute_threads(threads: int) -> None:
    global _compute_threads
    _compute_threads = threads
    if "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def limit_threads(threads: int) -> None:
    """Use at most ``threads`` compute threads in this process (torch, OpenMP, BLAS, the C step), from now on."""
    global _compute_threads
    threads = max(1, int(threads))
    _compute_threads = threads
    for name in _LIBRARY_VARIABLES:
        os.environ[name] = str(threads)
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


# ------------------------------------------------------------------ automatic sharing between commands
class _Sharing:
    """This process's registration: its locked file, torch's own thread count, and when it last counted."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fd: int | None = None
        self.path: Path | None = None
        self.own_threads = 0
        self.last_count = float("-inf")


_sharing: _Sharing | None = None


def running_folder() -> Path:
    """The per-user folder where computing midiarr processes register."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(base) / f"midiarr-{uid}" / "running"


def _private_folder(folder: Path) -> None:
    """Make ``folder`` (and its parent) for this user alone, or refuse one that is not: the temporary folder is
    shared, and a folder or link another user put there first must not decide which files get removed."""
    import stat

    for path in (folder.parent, folder):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        info = os.lstat(path)
        mine = not hasattr(os, "getuid") or info.st_uid == os.getuid()
        if not stat.S_ISDIR(info.st_mode) or not mine or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise OSError(f"{path} is not a private folder of this user")


def share_cores_automatically(folder: Path | None = None) -> None:
    """From now on, size this process's threads by how many registered midiarr processes compute at once.

    The registration itself waits for the first `rebalance`, so a command that never computes never counts.
    """
    global _sharing
    try:
        import fcntl  # noqa: F401 - only where file locks exist (not on Windows)
    except ImportError:
        return
    if _sharing is None:
        _sharing = _Sharing(folder or running_folder())


def running_processes(folder: Path | None = None) -> int:
    """How many processes hold a registration lock in ``folder`` (this one included when registered).

    A file whose lock nobody holds belongs to a process that ended without cleaning up; it is removed.
    """
    import fcntl

    folder = folder or running_folder()
    count = 0
    for path in folder.glob("*.lock"):
        if not _REGISTRATION.fullmatch(path.name):  # only the files this module writes
            continue
        if _sharing is not None and path == _sharing.path:
            count += 1
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # gone meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            count += 1  # held: that process still runs
        else:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return count


def _register(sharing: _Sharing) -> None:
    import atexit
    import fcntl

    _private_folder(sharing.folder)
    # locked under a temporary name, then renamed: a visible .lock file is always locked while its process runs
    temporary = sharing.folder / f"{os.getpid()}.{time.monotonic_ns()}.new"
    fd = os.open(temporary, os.O_CREAT | os.O_WRONLY, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    path = temporary.with_suffix(".lock")
    os.replace(temporary, path)
    sharing.fd, sharing.path = fd, path
    atexit.register(_unregister)


def _unregister() -> None:
    global _sharing
    sharing = _sharing
    if sharing is None or sharing.fd is None:
        return
    if sharing.path is not None:
        sharing.path.unlink(missing_ok=True)
    os.close(sharing.fd)
    sharing.fd = sharing.path = None


def rebalance() -> None:
    """Take this process's share of the cores among the midiarr processes computing now (cheap: a clock read
    between recounts). Does nothing unless `share_cores_automatically` was called; engines call it in their loops."""
    sharing = _sharing
    if sharing is None:
        return
    now = time.monotonic()
    if now - sharing.last_count < RECOUNT_SECONDS:
        return
    sharing.last_count = now
    try:
        if sharing.fd is None:
            if sharing.path is None and sharing.own_threads == 0:
                sharing.own_threads = compute_threads()
            _register(sharing)
        running = running_processes(sharing.folder)
    except OSError:  # no writable temporary folder: keep the threads as they are
        return
    threads = sharing.own_threads if running <= 1 else max(1, available_cores() // running)
    if compute_threads() != threads:
        _set_compute_threads(threads)
