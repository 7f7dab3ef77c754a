"""Run fuzz cases as real ``midiarr`` processes and check the promise on each.

Each case gets its own empty folder (the process's working directory) with its files built in it,
runs as ``python -m midiarr.cli ARGS`` in a new session with stdin from /dev/null, a wall-clock limit
(the whole process group is killed past it) and an address-space cap (``RLIMIT_AS``), and is then
checked:

- the exit status is 0, 1 or 2 (3 is midiarr's "internal error", a signal is a crash) and one the
  case allows (e.g. 2 for a NaN option value, 1 for a FIFO given as the song);
- on failure stderr is exactly one line, starting ``midiarr``, with no traceback; on success stderr
  is empty but for ``midiarr: warning:`` lines;
- every file that was in the folder before is byte for byte the same after (the input is never
  changed; an older output survives a failed run), unless the case lets the command replace it;
- a failed run leaves no new file behind (no partial output, no ``.NAME.*.tmp``); a successful
  one leaves no temporary file and its outputs are whole (a MIDI file whose chunks add up, XML that
  parses, a zip that opens);
- a secret planted for an XXE case appears in no output, stdout or stderr;
- a SIGKILLed run leaves each output either absent, as it was, or whole.

``python -m tests.fuzz`` (the long tier, ``make fuzz``) runs a whole tier and writes the report.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime as dt
import hashlib
import io
import json
import os
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.fuzz.generate import TIERS, Case, build_cases
from tests.fuzz.smf import is_complete_smf

ROOT = Path(__file__).resolve().parents[2]
# A normal transformer insert needs under 1 GB of address space here (measured with prlimit); the cap
# leaves room for torch, numpy and music21 while stopping a run that tries to inflate a bomb.
MEMORY_CAP_MB = int(os.environ.get("MIDIARR_FUZZ_MEM_MB", "4096"))
DEFAULT_JOBS = int(os.environ.get("MIDIARR_FUZZ_JOBS", "2"))
STDERR_ON_SUCCESS = ("midiarr: warning:",)
TEMP_MARK = ".tmp"


@dataclass
class Result:
    name: str
    family: str
    command: str
    argv: list[str]
    rc: int | None
    seconds: float
    peak_rss_mb: float
    first_stderr: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _preexec() -> None:
    cap = MEMORY_CAP_MB * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MIDIARR_DEBUG"}
    # two processes at a time on a shared machine: one thread each
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def midiarr_argv(case: Case) -> list[str]:
    return [sys.executable, "-m", "midiarr.cli", *case.argv]


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` and what it is: a file's hash, a link's target, a FIFO, a folder.

    FIFOs and devices are never opened, links never followed.
    """
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(folder))
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256()
                with open(path, "rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        digest.update(block)
                out[rel] = ("file", digest.hexdigest(), info.st_size)
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("special", stat.S_IFMT(info.st_mode))
    return out


def whole_output_problem(path: Path) -> str | None:
    """Why the output at ``path`` is not a whole file (None when it is, or is a folder)."""
    if path.is_dir():
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"output {path.name} cannot be read back ({exc.strerror})"
    suffix = path.suffix.lower()
    if suffix in (".mid", ".midi", ".rmi", ".kar", ".smf"):
        if not is_complete_smf(data):
            return f"output {path.name} is not a whole MIDI file ({len(data)} bytes)"
    elif suffix in (".musicxml", ".xml"):
        try:
            ET.fromstring(data)
        except ET.ParseError as exc:
            return f"output {path.name} is not whole XML ({exc})"
    elif suffix == ".mxl":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                bad = z.testzip()
                if bad is not None:
                    return f"output {path.name}: entry {bad} is broken"
        except zipfile.BadZipFile as exc:
            return f"output {path.name} is not a whole zip ({exc})"
    return None


def _contains(folder: Path, rels: list[str], token: bytes) -> list[str]:
    hits = []
    for rel in rels:
        path = folder / rel
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 256 << 20:
            if token in path.read_bytes():
                hits.append(rel)
    return hits


def run_case(case: Case, base: Path | None = None, keep: bool = False) -> Result:
    """Build the case in a fresh folder, run it, check it; the folder is removed unless ``keep``."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz-", dir=base))
    try:
        return _run_in(case, folder)
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _run_in(case: Case, folder: Path) -> Result:
    case.build(folder)
    before = _snapshot(folder)
    stdout_path, stderr_path = folder.parent / f".{folder.name}.out", folder.parent / f".{folder.name}.err"
    killed = {"timeout": False, "sigkill": False}
    start = time.monotonic()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            midiarr_argv(case),
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=_env(),
            preexec_fn=_preexec,
            start_new_session=True,
        )

    def kill(reason: str) -> None:
        killed[reason] = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timers = [threading.Timer(case.limit, kill, ("timeout",))]
    if case.kill_after is not None:
        timers.append(threading.Timer(case.kill_after, kill, ("sigkill",)))
    for t in timers:
        t.daemon = True
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    for t in timers:
        t.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    try:  # anything the command left running (worker processes) goes with it
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    rc = proc.returncode
    stdout = stdout_path.read_bytes()
    stderr = stderr_path.read_bytes().decode("utf-8", "replace")
    stdout_path.unlink(missing_ok=True)
    stderr_path.unlink(missing_ok=True)
    after = _snapshot(folder)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    result = Result(
        case.name,
        case.family,
        case.command,
        list(case.argv),
        rc,
        round(seconds, 2),
        round(usage.ru_maxrss / 1024, 1),
        lines[0][:300] if lines else "",
    )
    problems = result.problems

    if killed["timeout"]:
        problems.append(f"hang: still running after {case.limit:g}s, killed")
    elif killed["sigkill"]:
        _check_killed(case, folder, before, after, result)
        return result
    else:
        if rc not in (0, 1, 2):
            what = "internal error" if rc == 3 else (f"killed by signal {-rc}" if rc < 0 else "unexpected status")
            problems.append(f"exit {rc} ({what})")
        elif rc not in case.expect:
            problems.append(f"exit {rc}, expected {'/'.join(map(str, sorted(case.expect)))}")
    if "Traceback" in stderr:
        problems.append("traceback on stderr")
    if rc not in (0, None) and not killed["timeout"]:
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr, expected 1")
        elif not lines[0].startswith("midiarr"):
            problems.append("stderr line does not start with 'midiarr'")
    if rc == 0:
        noise = [ln for ln in lines if not ln.startswith(STDERR_ON_SUCCESS)]
        if noise:
            problems.append(
                f"stderr on success: {noise[0][:160]!r}" + (f" (+{len(noise) - 1} lines)" if len(noise) > 1 else "")
            )

    for rel, was in before.items():
        now = after.get(rel)
        if now == was:
            continue
        if rc == 0 and rel in case.may_change:
            continue
        problems.append(f"{rel} {'deleted' if now is None else 'changed'} by the run")
    new = [rel for rel in after if rel not in before]
    new_files = [rel for rel in new if after[rel][0] != "dir"]
    if rc == 0:
        temps = [rel for rel in new_files if Path(rel).name.startswith(".") and rel.endswith(TEMP_MARK)]
        if temps:
            problems.append(f"temporary file left: {temps[0]}")
        for rel in case.outputs:
            if (folder / rel).exists():
                bad = whole_output_problem(folder / rel)
                if bad:
                    problems.append(bad)
            else:
                problems.append(f"exit 0 but no output {rel}")
    elif new_files:
        problems.append(f"failed run left {len(new_files)} new file(s): {', '.join(sorted(new_files)[:3])}")
    if case.secret:
        token = case.secret.encode()
        leaked = _contains(folder, new_files, token)
        if token in stdout or case.secret in stderr or leaked:
            problems.append(
                f"XXE: the secret file's content came out ({'stdout' if token in stdout else leaked or 'stderr'})"
            )
    if usage.ru_maxrss / 1024 > MEMORY_CAP_MB:
        problems.append(f"peak memory {usage.ru_maxrss / 1024:.0f} MB over the {MEMORY_CAP_MB} MB cap")
    return result


def _check_killed(case: Case, folder: Path, before: dict, after: dict, result: Result) -> None:
    """A SIGKILLed run: the input as it was, each output absent, unchanged or whole."""
    result.notes.append(f"SIGKILL at {case.kill_after}s" + (f", exit {result.rc}" if result.rc != -9 else ""))
    for rel, was in before.items():
        if rel in case.outputs:
            continue
        if after.get(rel) != was:
            result.problems.append(f"{rel} changed by a killed run")
    for rel in case.outputs:
        if rel in after and after[rel] != before.get(rel):
            bad = whole_output_problem(folder / rel)
            if bad:
                result.problems.append(f"killed mid-write: {bad}")
    temps = [rel for rel in after if rel not in before and rel.endswith(TEMP_MARK)]
    if temps:  # nothing can clean up after SIGKILL; readers never see it under the output's name
        result.notes.append(f"temporary file left by the kill: {temps[0]}")


def run_cases(
    cases: list[Case], jobs: int = DEFAULT_JOBS, base: Path | None = None, progress: bool = False
) -> list[Result]:
    """Run ``cases`` with at most ``jobs`` processes at once; results in the order of ``cases``."""
    results: list[Result | None] = [None] * len(cases)
    done = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(run_case, c, base): i for i, c in enumerate(cases)}
        for fut in concurrent.futures.as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except Exception as exc:  # the harness itself failed on this case: report it as a failure
                c = cases[i]
                results[i] = Result(c.name, c.family, c.command, c.argv, None, 0.0, 0.0, "", [f"harness: {exc!r}"])
            done += 1
            if progress:
                r = results[i]
                mark = "ok " if r.ok else "FAIL"
                print(
                    f"[{done}/{len(cases)}] {mark} {r.name} rc={r.rc} {r.seconds}s {'; '.join(r.problems)}", flush=True
                )
    return [r for r in results if r is not None]


# ------------------------------------------------------------------------------------ report
def reproduce(tier: str, seed: int, name: str) -> str:
    name = name.removeprefix(f"s{seed}-")  # several seeds in one run prefix the names with their seed
    return f".venv/bin/python -m tests.fuzz --tier {tier} --seed {seed} --case {name}"


def summarize(results: list[Result], tier: str, seeds: list[int], wall: float, command: str = "") -> dict:
    by_family: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    by_command: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        for table, key in ((by_family, r.family), (by_command, r.command)):
            table[key]["cases"] += 1
            table[key]["failed"] += 0 if r.ok else 1
    return {
        "tier": tier,
        "seeds": seeds,
        "date": dt.date.today().isoformat(),
        "command": command or f".venv/bin/python -m tests.fuzz --tier {tier}",
        "cases": len(results),
        "failed": sum(not r.ok for r in results),
        "wall_seconds": round(wall, 1),
        "memory_cap_mb": MEMORY_CAP_MB,
        "slowest_seconds": max((r.seconds for r in results), default=0.0),
        "peak_rss_mb": max((r.peak_rss_mb for r in results), default=0.0),
        "families": {k: dict(v) for k, v in sorted(by_family.items())},
        "commands": {k: dict(v) for k, v in sorted(by_command.items())},
        "failures": [{**asdict(r), "reproduce": reproduce(tier, seeds_of(r), r.name)} for r in results if not r.ok],
    }


_SEED_OF: dict[str, int] = {}


def seeds_of(result: Result) -> int:
    return _SEED_OF.get(result.name, 0)


START, END = "<!-- fuzz-numbers:start -->", "<!-- fuzz-numbers:end -->"


def numbers_table(summary: dict) -> str:
    lines = [
        f"Tier `{summary['tier']}`, seeds {', '.join(map(str, summary['seeds']))}, run on {summary['date']} with "
        f"`{summary['command']}`: **{summary['cases']} cases, {summary['failed']} failed**, "
        f"{summary['wall_seconds']:.0f} s wall clock, slowest case {summary['slowest_seconds']:.1f} s, "
        f"peak RSS {summary['peak_rss_mb']:.0f} MB (cap {summary['memory_cap_mb']} MB of address space).",
        "",
        "| family | cases | failed |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {v['cases']} | {v.get('failed', 0)} |" for k, v in summary["families"].items()]
    lines += ["", "| command | cases | failed |", "|---|---:|---:|"]
    lines += [f"| `{k}` | {v['cases']} | {v.get('failed', 0)} |" for k, v in summary["commands"].items()]
    if summary["failures"]:
        lines += ["", "Failures (first 40; all of them in `docs/reliability.json`):", ""]
        for f in summary["failures"][:40]:
            lines.append(f"- `{f['name']}`: {'; '.join(f['problems'])} — `{f['first_stderr'][:120]}`")
    return "\n".join(lines)


def update_doc(doc: Path, summary: dict) -> None:
    text = doc.read_text("utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{doc}: no {START} ... {END} block to fill")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{START}\n{numbers_table(summary)}\n{END}{tail}", "utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description="Run the midiarr fuzz suite.")
    p.add_argument("--tier", choices=sorted(TIERS), default="long")
    p.add_argument("--seed", type=int, action="append", help="generator seed (repeatable; default 0)")
    p.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="processes at once (default 2)")
    p.add_argument("--family", action="append", help="only these families (repeatable)")
    p.add_argument("--case", help="run one case by name, keep its folder and print how to rerun it by hand")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--report", type=Path, help="write the JSON report here (make fuzz: docs/reliability.json)")
    p.add_argument("--doc", type=Path, help="fill the numbers table of this page (make fuzz: docs/reliability.md)")
    args = p.parse_args(argv)
    seeds = args.seed or [0]
    cases: list[Case] = []
    for s in seeds:
        for c in build_cases(args.tier, s):
            if len(seeds) > 1:
                c.name = f"s{s}-{c.name}"
            _SEED_OF[c.name] = s
            cases.append(c)
    if args.family:
        cases = [c for c in cases if c.family in args.family]
    if args.list:
        for c in cases:
            print(f"{c.name}\t{c.command}\t{shlex.join(c.argv)[:150]}")
        return 0
    if args.case:
        wanted = [c for c in cases if c.name == args.case or c.name.endswith("-" + args.case)]
        if not wanted:
            print(f"no case {args.case!r} in tier {args.tier} seed {seeds}", file=sys.stderr)
            return 2
        case = wanted[0]
        folder = Path(tempfile.mkdtemp(prefix=f"fuzz-{case.family}-"))
        result = _run_in(case, folder)
        print(f"case {case.name}: {case.about}")
        line = shlex.join([str(ROOT / ".venv/bin/midiarr"), *case.argv])
        print(f"  cd {folder} && {line if len(line) < 600 else line[:600] + f'... ({len(line)} characters)'}")
        print(
            f"  exit {result.rc} in {result.seconds}s, peak RSS {result.peak_rss_mb} MB; stderr: {result.first_stderr}"
        )
        print("  " + ("ok" if result.ok else "FAILED: " + "; ".join(result.problems)))
        for note in result.notes:
            print(f"  note: {note}")
        print(f"  (the folder after the run is kept: {folder})")
        return 0 if result.ok else 1
    start = time.monotonic()
    results = run_cases(cases, jobs=args.jobs, progress=True)
    command = ".venv/bin/python -m tests.fuzz " + shlex.join(sys.argv[1:] if argv is None else argv)
    summary = summarize(results, args.tier, seeds, time.monotonic() - start, command)
    print(numbers_table(summary))
    if args.report:
        args.report.write_text(json.dumps(summary, indent=1) + "\n", "utf-8")
    if args.doc:
        update_doc(args.doc, summary)
    return 0 if summary["failed"] == 0 else 1
