"""Speed of the stem transformer on this machine: model load, one stem for a 3-minute song, and raw
decoding throughput at batch 1 (tokens per second through the KV-cached loop).

    python benchmarks/bench_transformer.py [--checkpoint DIR] [--int8 | --half | --full] [--json OUT]
        [--results benchmarks/results/transformer.json] [--no-cli]

The engine runs with its bundled sampling settings (guidance included), and each stem is asked for
a medium-density part, so the note counts are comparable from run to run. Each stem is also written
as a user would, with no instruction: through `Arranger` in this process (load included) and through
`midiarr insert` in a fresh process (start-up, imports and load included). ``--results`` appends the
run to a results file and prints each time as a ratio to the previous run there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from midiarr.engines import Controls
from midiarr.engines.transformer import TransformerEngine
from midiarr.fixtures import band_song


def _raw_decoding_speed(dec: Any, ids: torch.Tensor) -> float:
    """Tokens per second decoding positions 256-767 one at a time at batch 1."""
    dec.reset(1)
    dec.forward(ids[:, :256])
    t0 = time.perf_counter()
    for i in range(256, 768):
        dec.forward(ids[:, i : i + 1])
    return round(512 / (time.perf_counter() - t0), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    held = parser.add_mutually_exclusive_group()
    held.add_argument("--int8", action="store_true", help="int8 linear weights (the default where the C step runs)")
    held.add_argument("--half", action="store_true", help="half-float linear weights")
    held.add_argument("--full", action="store_true", help="float32 linear weights")
    parser.add_argument("--json", default=None)
    parser.add_argument("--results", default=None, help="results file to append to and compare with")
    parser.add_argument("--no-cli", action="store_true", help="skip the `midiarr insert` runs")
    args = parser.parse_args()
    started = time.perf_counter()
    # None, None: the engine's default (int8 where the C step runs, else half floats)
    int8 = True if args.int8 else False if (args.half or args.full) else None
    half = True if args.half else False if args.full else None
    engine = TransformerEngine(checkpoint=args.checkpoint, int8=int8, half=half)
    load_s = time.perf_counter() - started
    # 90 bars of 4/4 at 120 bpm = 3 minutes; the bass is taken out and written back
    song = band_song(bars=90, qpm=120)
    context = song.with_tracks([t for t in song.tracks if t.name != "Bass"])
    results = {
        "parameters": engine.decoder.num_parameters,
        "load_s": round(load_s, 3),
        "int8": engine.decoder.int8,
        "half": engine.decoder.half,
        "one_token_step": engine.decoder.step_kind,  # "c" (decode_step.c), "torchscript" or "eager"
    }
    for stem in ("bass", "drums", "guitar"):
        ctx = song.with_tracks([t for t in song.tracks if t.name.lower() != stem]) if stem != "bass" else context
        t0 = time.perf_counter()
        out = engine.insert(ctx, stem, Controls(bins={"density": "medium"}), seed=0)
        results[f"{stem}_3min_s"] = round(time.perf_counter() - t0, 3)
        results[f"{stem}_notes"] = len(out.song.tracks[out.new_tracks[0]].notes)
    results["song_seconds"] = round(song.duration_seconds, 1)
    results.update(_as_a_user_would(song, args.checkpoint, cli=not args.no_cli))
    # raw decoding: one token at a time after a 256-token prompt, batch 1
    dec = engine.decoder
    ids = torch.randint(0, 300, (1, 900), generator=torch.Generator().manual_seed(0))
    results["decode_tokens_per_s_batch1"] = _raw_decoding_speed(dec, ids)
    if dec.step_kind == "c":
        # the TorchScript step over float32 weights (the decoder before the C step), alternated with this
        # decoder three times: this VM's speed drifts within minutes, so only runs taken side by side compare
        from midiarr.transformer.model import LeanDecoder

        scripted, _ = LeanDecoder.load(engine.checkpoint)
        pairs = [(_raw_decoding_speed(dec, ids), _raw_decoding_speed(scripted, ids)) for _ in range(3)]
        results["decode_tokens_per_s_batch1_c_vs_torchscript"] = pairs
    # raw decoding at batch 4 (the rows of best-of-N candidates advance together)
    dec.reset(4)
    dec.forward(ids[:, :256].expand(4, -1).contiguous())
    t0 = time.perf_counter()
    for i in range(256, 512):
        dec.forward(ids[:, i : i + 1].expand(4, -1).contiguous())
    results["decode_tokens_per_s_batch4"] = round(4 * 256 / (time.perf_counter() - t0), 1)
    results["torch_threads"] = torch.get_num_threads()
    results["numpy"] = np.__version__
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    if args.results:
        _append_and_compare(Path(args.results), results)


def _as_a_user_would(song: Any, checkpoint: str | None, cli: bool) -> dict[str, Any]:
    """Per stem, no instruction: `Arranger` in this process, model load included; and `midiarr insert` in a
    fresh process (interpreter start, imports and load included)."""
    from midiarr import Arranger
    from midiarr.io import save

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stem in ("bass", "drums", "guitar"):
            name = {"bass": "Bass", "drums": "Drums", "guitar": "Guitar"}[stem]
            context = song.with_tracks([t for t in song.tracks if t.name != name])
            t0 = time.perf_counter()
            Arranger.load(checkpoint).insert(context, stem, seed=0)
            out[f"arranger_{stem}_s"] = round(time.perf_counter() - t0, 3)
            if not cli:
                continue
            path = Path(tmp) / f"no-{stem}.mid"
            save(context, path)
            cmd = [sys.executable, "-m", "midiarr.cli", "insert", str(path), "--stem", stem, "--seed", "0"]
            cmd += ["-o", str(Path(tmp) / f"with-{stem}.mid"), "-q"]
            if checkpoint:
                cmd += ["--checkpoint", checkpoint]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            out[f"cli_{stem}_s"] = round(time.perf_counter() - t0, 3)
    return out


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _append_and_compare(path: Path, results: dict[str, Any]) -> None:
    """Print every time as a ratio to the previous run in ``path``, then append this run."""
    runs = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    if runs:
        before = runs[-1]["results"]
        print(f"against the previous run ({runs[-1]['date']}, commit {runs[-1]['commit']}):")
        for key, value in results.items():
            if key.endswith("_s") and isinstance(before.get(key), (int, float)) and before[key] > 0:
                print(f"  {key}: {before[key]} -> {value} s ({value / before[key]:.2f}x the time)")
    runs.append(
        {
            "date": datetime.date.today().isoformat(),
            "commit": _commit(),
            "command": " ".join(sys.argv),
            "results": results,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    main()
