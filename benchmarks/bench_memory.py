"""Peak resident memory (peak RSS) of midiarr commands as a user runs them, beside FluidSynth's command line.

Usage:
    python benchmarks/bench_memory.py [--songs 3,20] [--out benchmarks/results/memory.json] [--tmp DIR]
                                      [--timeout 480] [--serve-engine transformer]

Each song is `midiarr.fixtures.band_song(bars=30 * minutes, qpm=120)` (4/4 at 120 qpm: a bar is 2 s), written
with `midiarr.io.write_midi`; the inserts get the same song written without its bass track. Measured on each
song, every command in its own fresh child process of the real CLI (the `midiarr` next to this Python):

- `midiarr insert SONG_WITHOUT_BASS --stem bass --engine E --seed 0 -o OUT.mid` for E in transformer,
  diffusion, rules;
- `midiarr render SONG --stems -o DIR` (the full song, default SoundFont);
- `fluidsynth -ni -F mix.wav -r 44100 FluidR3_GM.sf2 SONG` (the mix alone: the baseline a user would
  otherwise run); render's peak is also given as a ratio to it;
- `midiarr serve --jobs 2 --host 127.0.0.1 --port PORT`: the song without bass is uploaded (POST /api/songs)
  and two bass inserts are submitted back to back (POST /api/jobs, seeds 0 and 1), then polled
  (GET /api/jobs/ID) until both finish. The server process's peak is its VmHWM in /proc/PID/status, read
  before it is stopped. Each job runs in its own process, so two more figures are given: the largest job
  process (the larger of its VmHWM as last sampled and what wait4 reports for the server once it exits,
  which is the most any of the server and its reaped jobs held) and the sum of RSS over the server and all
  its descendants, sampled every 0.2 s.

A command's peak comes from `os.wait4` on that child (its own ru_maxrss, in kB on Linux). A command that
runs past --timeout is killed and recorded as timed out. 1 MB here is 2^20 bytes. Wall times include Python's
start and imports, and depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from midiarr.fixtures import band_song
from midiarr.io import write_midi

ENGINES = ("transformer", "diffusion", "rules")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
MIDIARR = Path(sys.executable).parent / "midiarr"
POLL_S = 0.2


@dataclass
class Row:
    """One measured command on one song."""

    command: str
    song_minutes: int
    argv: list[str]
    status: str  # "ok", "timed out", "failed (exit N)"
    peak_rss_mb: float | None
    wall_s: float
    ratio_to_fluidsynth: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChildResult:
    status: str
    peak_rss_mb: float
    wall_s: float
    stderr_tail: str


def mb(kilobytes: float) -> float:
    return round(kilobytes / 1024, 1)


def run_child(argv: list[str], log: Path, timeout_s: float) -> ChildResult:
    """Run ``argv`` to its end (or kill it after ``timeout_s``); its own peak RSS from wait4."""
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        status = "ok"
        while True:
            pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout_s:
                proc.kill()
                _, wait_status, usage = os.wait4(proc.pid, 0)
                status = f"timed out after {timeout_s:.0f} s"
                break
            time.sleep(POLL_S)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(wait_status)  # so Popen does not wait for it again
    if status == "ok" and proc.returncode != 0:
        status = f"failed (exit {proc.returncode})"
    tail = log.read_text(errors="replace")[-800:] if status != "ok" else ""
    return ChildResult(status, mb(usage.ru_maxrss), round(wall, 2), tail)


def proc_kb(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, read from /proc/*/stat parent ids."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    text = stat.read()
            except OSError:
                continue
            parents[int(entry)] = int(text.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(url: str, body: bytes | None = None, content_type: str = "application/json") -> Any:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type} if body else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def upload(base: str, path: Path) -> str:
    """POST the file to /api/songs as multipart form data; the song's id."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: audio/midi\r\n\r\n"
    ).encode()
    body = head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return str(http_json(f"{base}/api/songs", body, f"multipart/form-data; boundary={boundary}")["id"])


def stop(proc: subprocess.Popen[bytes], grace_s: float) -> int | None:
    """SIGINT ``proc`` (uvicorn's own shutdown: it ends running jobs and removes its folder), SIGKILL it after
    ``grace_s``; the ru_maxrss (kB) wait4 reports for it, None if it had already been reaped."""
    if proc.returncode is not None:
        return None
    proc.send_signal(signal.SIGINT)
    deadline = time.perf_counter() + grace_s
    while True:
        pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            _, wait_status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(POLL_S)
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    return int(usage.ru_maxrss)


def measure_serve(song: Path, engine: str, log: Path, timeout_s: float) -> tuple[ChildResult, dict[str, Any]]:
    """Two insert jobs at once on `midiarr serve --jobs 2`: server VmHWM, largest job, sampled total."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [str(MIDIARR), "serve", "--jobs", "2", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as out:
        server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    status, wall, server_hwm, job_hwm, total_peak = "ok", 0.0, 0, 0, 0
    states: dict[str, str] = {}
    try:
        deadline = time.perf_counter() + 60
        while True:  # wait for the server to answer
            try:
                http_json(f"{base}/api/health")
                break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.5)
        song_id = upload(base, song)
        start = time.perf_counter()
        for seed in range(2):
            job = {"action": "insert", "song_id": song_id, "stems": ["bass"], "engine": engine, "seed": seed}
            states[http_json(f"{base}/api/jobs", json.dumps(job).encode())["id"]] = "queued"
        next_poll = 0.0
        while True:
            rss = [proc_kb(server.pid, "VmRSS") or 0]
            for pid in descendants(server.pid):
                rss.append(proc_kb(pid, "VmRSS") or 0)
                job_hwm = max(job_hwm, proc_kb(pid, "VmHWM") or 0)
            total_peak = max(total_peak, sum(rss))
            if time.perf_counter() >= next_poll:
                states = {job_id: http_json(f"{base}/api/jobs/{job_id}")["state"] for job_id in states}
                next_poll = time.perf_counter() + 1.0
                if all(state in ("done", "failed", "cancelled") for state in states.values()):
                    break
            if time.perf_counter() - start > timeout_s:
                status = f"timed out after {timeout_s:.0f} s"
                break
            time.sleep(POLL_S)
        wall = time.perf_counter() - start
        if status == "ok" and any(state != "done" for state in states.values()):
            status = "failed (jobs " + ", ".join(sorted(states.values())) + ")"
        time.sleep(1.0)
        http_json(f"{base}/api/health")  # a request polls the jobs' processes, so the server reaps them
        server_hwm = proc_kb(server.pid, "VmHWM") or 0
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        status = f"failed ({type(exc).__name__}: {exc})"
    finally:
        reaped_kb = stop(server, 30)
    # wait4's figure is the most any of the server and its reaped jobs held: above the server's own
    # high-water mark, it is a job's
    largest_job_kb = max(job_hwm, reaped_kb if reaped_kb and reaped_kb > server_hwm else 0)
    extra: dict[str, Any] = {
        "engine": engine,
        "jobs": 2,
        "job_states": sorted(states.values()),
        "largest_job_mb": mb(largest_job_kb),
        "all_processes_sampled_mb": mb(total_peak),
        "server_and_reaped_jobs_maxrss_mb": mb(reaped_kb) if reaped_kb else None,
    }
    tail = log.read_text(errors="replace")[-800:] if status != "ok" else ""
    return ChildResult(status, mb(server_hwm) if server_hwm else 0.0, round(wall, 2), tail), extra


def check_bars(bars: int) -> list[str]:
    """The model engines that refuse a song of ``bars`` bars (their max_bars)."""
    from midiarr.engines.diffusion import DiffusionEngine
    from midiarr.engines.transformer import TransformerEngine

    return [
        cls.name for cls in (TransformerEngine, DiffusionEngine) if cls.max_bars is not None and bars > cls.max_bars
    ]


def measure_song(minutes: int, folder: Path, args: argparse.Namespace) -> list[Row]:
    bars = 30 * minutes
    full = band_song(bars=bars, qpm=120)
    song = write_midi(full, folder / f"song{minutes}.mid")
    no_bass = write_midi(
        full.with_tracks([t for t in full.tracks if t.name != "Bass"]), folder / f"nobass{minutes}.mid"
    )
    refused = check_bars(bars)
    if refused:
        print(f"warning: {', '.join(refused)} refuse {bars} bars", file=sys.stderr)
    rows: list[Row] = []

    def run(label: str, argv: list[str]) -> Row:
        print(f"[{minutes} min] {label} ...", file=sys.stderr, flush=True)
        result = run_child(argv, folder / "child.log", args.timeout)
        row = Row(label, minutes, argv, result.status, result.peak_rss_mb, result.wall_s)
        if result.stderr_tail:
            row.extra["output_tail"] = result.stderr_tail
        print(f"    {result.status}, {result.peak_rss_mb} MB, {result.wall_s} s", file=sys.stderr, flush=True)
        rows.append(row)
        return row

    fluid = run(
        "fluidsynth -ni -F mix.wav -r 44100 (mix only)",
        ["fluidsynth", "-ni", "-F", str(folder / "mix.wav"), "-r", "44100", str(SOUNDFONT), str(song)],
    )
    render = run("midiarr render --stems", [str(MIDIARR), "render", str(song), "--stems", "-o", str(folder / "render")])
    if fluid.status == "ok" and render.status == "ok" and fluid.peak_rss_mb:
        render.ratio_to_fluidsynth = round((render.peak_rss_mb or 0) / fluid.peak_rss_mb, 2)
    for engine in ENGINES:
        out = folder / f"insert-{engine}.mid"
        argv = [
            str(MIDIARR),
            "insert",
            str(no_bass),
            "--stem",
            "bass",
            "--engine",
            engine,
            "--seed",
            "0",
            "-o",
            str(out),
        ]
        run(f"midiarr insert --stem bass --engine {engine}", argv)

    print(f"[{minutes} min] midiarr serve --jobs 2 ...", file=sys.stderr, flush=True)
    result, extra = measure_serve(no_bass, args.serve_engine, folder / "serve.log", args.timeout)
    if result.stderr_tail:
        extra["output_tail"] = result.stderr_tail
    label = f"midiarr serve --jobs 2, two {args.serve_engine} bass inserts"
    argv = [str(MIDIARR), "serve", "--jobs", "2", "--host", "127.0.0.1", "--port", "PORT"]
    rows.append(Row(label, minutes, argv, result.status, result.peak_rss_mb, result.wall_s, extra=extra))
    print(f"    {result.status}, server {result.peak_rss_mb} MB, {json.dumps(extra)}", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[Row]) -> str:
    lines = [
        "| command | song | peak RSS (MB) | wall (s) | render / fluidsynth |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        peak = f"{row.peak_rss_mb:,.0f}" if row.peak_rss_mb is not None else "—"
        if row.status != "ok":
            peak = f"{row.status} ({peak} so far)" if row.status.startswith("timed out") else f"{row.status}"
        ratio = f"{row.ratio_to_fluidsynth:.2f}x" if row.ratio_to_fluidsynth is not None else ""
        song = f"{row.song_minutes} min"
        if row.command.startswith("midiarr serve"):
            lines.append(f"| {row.command}: server process (VmHWM) | {song} | {peak} | {row.wall_s:.1f} | |")
            lines.append(f"| ... largest job process | {song} | {row.extra['largest_job_mb']:,.0f} | | |")
            total = row.extra["all_processes_sampled_mb"]
            lines.append(f"| ... server and jobs together (sampled sum) | {song} | {total:,.0f} | | |")
        else:
            lines.append(f"| {row.command} | {song} | {peak} | {row.wall_s:.1f} | {ratio} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    with open("/proc/meminfo") as meminfo:
        total_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    fluidsynth = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {
        "nproc": int(nproc),
        "mem_total_mb": mb(total_kb),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "fluidsynth": fluidsynth[0] if fluidsynth else "",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/memory.json"))
    ap.add_argument("--songs", default="3,20", help="song lengths in minutes, comma-separated")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the temporary files (default: the system's)")
    ap.add_argument("--timeout", type=float, default=480.0, help="seconds before a command is killed")
    ap.add_argument("--serve-engine", default="transformer", choices=ENGINES, help="engine of the server's jobs")
    args = ap.parse_args()
    facts = machine()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-", dir=args.tmp) as tmp:
        for minutes in (int(m) for m in args.songs.split(",")):
            folder = Path(tmp) / f"{minutes}min"
            folder.mkdir()
            rows += measure_song(minutes, folder, args)
    table = markdown(rows)
    print(table)
    report = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python", *sys.argv]),
        "machine": facts,
        "songs": {f"{m} min": f"band_song(bars={30 * int(m)}, qpm=120)" for m in args.songs.split(",")},
        "mb": "2^20 bytes",
        "rows": [asdict(row) for row in rows],
        "table": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
