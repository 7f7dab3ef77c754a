"""Work run side by side sizes each process's threads to its share of the cores."""

from __future__ import annotations

import subprocess
import sys

import pytest

from midiarr.errors import OptionError
from midiarr.threads import share_of_cores, threads_from_environment


def test_share_of_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
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
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    manager.submit({"action": "insert", "stems": ["bass"]})
    assert seen == [4]
