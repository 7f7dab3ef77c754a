"""Work run side by side sizes each process's threads to its share of the cores."""

from __future__ import annotations

import subprocess
import sys

import pytest

from midiarr.errors import OptionError
from midiarr.threads import share_of_cores, threads_from_environment


def test_share_of_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("midiarr.threads.available_cores", lambda: 8)
    assert [share_of_cores(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_limit_threads_holds_for_torch_imported_before_or_after() -> None:
    code = (
        "import os, sys; from midiarr.threads import limit_threads; {first}limit_threads(1); import torch; "
        "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'])"
    )
    for first in ("", "import torch; "):
        out = subprocess.run([sys.executable, "-c", code.format(first=first)], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.split() == ["1", "1"], out.stderr


def test_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIDIARR_THREADS", "3")
    assert threads_from_environment() == 3
    monkeypatch.setenv("MIDIARR_THREADS", "none")
    with pytest.raises(OptionError, match="MIDIARR_THREADS"):
        threads_from_environment()


def test_server_jobs_get_their_share(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from midiarr.server import jobs

    seen = []

    class Recorder:
        def __init__(self, target, args, daemon):
            seen.append(args[1]["threads"])

        def start(self) -> None: ...

        def is_alive(self) -> bool:
            return True

    manager = jobs.JobManager(tmp_path, max_running=2)
    monkeypatch.setattr(manager.context, "Process", Recorder)
    monkeypatch.setattr("midiarr.threads.available_cores", lambda: 8)
    manager.submit({"action": "insert", "stems": ["bass"]})
    assert seen == [4]


# ------------------------------------------------------------------ automatic sharing between commands
# A process that registers in FOLDER the way a computing midiarr command does, then waits for a line on stdin.
_REGISTERED = (
    "import sys, torch; from pathlib import Path; from midiarr import threads; "
    "threads.share_cores_automatically(Path(sys.argv[1])); threads.rebalance(); print('ready', flush=True); "
    "sys.stdin.readline()"
)


def _start_registered(folder) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _REGISTERED, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_running_processes_counts_live_registrations_and_clears_dead_ones(tmp_path) -> None:
    from midiarr.threads import running_processes

    folder = tmp_path / "running"
    first, second = _start_registered(folder), _start_registered(folder)
    assert running_processes(folder) == 2
    first.communicate("\n")  # ends cleanly: removes its file
    assert running_processes(folder) == 1
    second.kill()  # ends without cleaning up: its file stays, unlocked
    second.wait()
    assert len(list(folder.glob("*.lock"))) == 1
    assert running_processes(folder) == 0
    assert not list(folder.glob("*.lock"))  # the stale file is gone


def test_rebalance_shrinks_while_others_compute_and_grows_back(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from midiarr import threads

    folder = tmp_path / "running"
    monkeypatch.setattr(threads, "_sharing", None)
    monkeypatch.setattr(threads, "RECOUNT_SECONDS", 0.0)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    own = torch.get_num_threads()
    try:
        threads.share_cores_automatically(folder)
        threads.rebalance()
        assert torch.get_num_threads() == own  # alone: torch's own choice
        others = [_start_registered(folder), _start_registered(folder), _start_registered(folder)]
        threads.rebalance()
        assert torch.get_num_threads() == 1  # four computing on four cores
        others.pop().communicate("\n")
        threads.rebalance()
        assert torch.get_num_threads() == 1  # 4 // 3
        for proc in others:
            proc.communicate("\n")
        threads.rebalance()
        assert torch.get_num_threads() == own
    finally:
        threads._unregister()
        torch.set_num_threads(own)
    assert not list(folder.glob("*.lock"))


def test_only_a_command_without_threads_shares_automatically(tmp_path) -> None:
    code = (
        "import sys; from midiarr.cli import main; from midiarr import threads; "
        "main(sys.argv[1:]); print(threads._sharing is None)"
    )
    command = ["insert", str(tmp_path / "missing.mid"), "--stem", "bass", "-o", str(tmp_path / "out.mid")]
    for extra, expected in ((["--threads", "1"], "True"), ([], "False")):
        out = subprocess.run([sys.executable, "-c", code, *command, *extra], capture_output=True, text=True)
        assert out.stdout.strip().splitlines()[-1] == expected, out.stderr
