"""Record what insert, generate, separate and render write for the bundled example, per engine and seed,
or check a tree against such a record: a refactor that should change no behaviour is run through this.

    python scripts/record_outputs.py -o before.json          # record
    python scripts/record_outputs.py --check before.json     # compare, exit 1 on any difference
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "band.mid"


def _song_hash(song) -> str:  # noqa: ANN001 (a midiarr Song)
    h = hashlib.sha256()
    for track in song.tracks:
        h.update(f"{track.name}|{track.program}|{track.is_drum}|".encode())
        h.update(np.ascontiguousarray(track.notes).tobytes())
    return h.hexdigest()[:16]


def record() -> dict[str, str]:
    from midiarr.engines import get_engine
    from midiarr.io import load
    from midiarr.subtract import subtract

    song = load(EXAMPLE)
    out: dict[str, str] = {}
    for name in ("rules", "transformer", "diffusion"):
        engine = get_engine(name)
        for stem in ("bass", "drums", "guitar"):
            context = subtract(song, stem).partial
            for seed in (0, 1):
                result = engine.insert(context, stem, seed=seed)
                out[f"insert/{name}/{stem}/{seed}"] = _song_hash(result.song)
        if getattr(engine, "can_generate", False):
            out[f"generate/{name}"] = _song_hash(engine.generate(["bass", "drums"], 8, seed=0))
    split, _ = get_engine("diffusion").separate(song, seed=0)
    out["separate/diffusion"] = _song_hash(split)
    from midiarr.render import render

    for stem_name, audio in sorted(render(song, sr=16000).items()):
        out[f"render/{stem_name}"] = hashlib.sha256(np.ascontiguousarray(audio).tobytes()).hexdigest()[:16]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("-o", "--output", type=Path)
    g.add_argument("--check", type=Path)
    args = p.parse_args()
    now = record()
    if args.output:
        args.output.write_text(json.dumps(now, indent=1) + "\n", encoding="utf-8")
        print(f"recorded {len(now)} outputs in {args.output}")
        return 0
    before = json.loads(args.check.read_text(encoding="utf-8"))
    differ = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    for k in differ:
        print(f"differs: {k}: {before.get(k)} -> {now.get(k)}")
    print(f"{len(before) - len(differ)} of {len(before)} outputs unchanged")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
