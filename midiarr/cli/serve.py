"""The HTTP API and web page."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from midiarr.cli.common import (
    say,
)
from midiarr.errors import OptionError
from midiarr.options import float_in, int_in


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from midiarr.server import Limits, create_app

    if not 0 < args.port < 65536:
        raise OptionError(f"--port {args.port}: choose 1-65535")
    if args.jobs < 1:
        raise OptionError("--jobs must be at least 1")
    if not 0 < args.max_upload_mb <= 1024:
        raise OptionError(f"--max-upload-mb {args.max_upload_mb:g}: choose more than 0 and at most 1024")
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_running_jobs=args.jobs)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.stderr.write(f"midiarr: warning: serving on {args.host}, reachable from other machines\n")
    say(args, f"midiarr serve: http://{args.host}:{args.port}/ (API schema at /openapi.json; Ctrl+C stops)")
    from midiarr.server.workspace import default_data_dir

    data_dir = args.data_dir or default_data_dir()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptionError(f"--data-dir {data_dir}: cannot use it as a folder ({exc.strerror or exc})") from None
    say(args, f"projects are kept in {data_dir}")
    uvicorn.run(create_app(limits=limits, data_dir=data_dir), host=args.host, port=args.port, log_level="warning")
    return 0


def register(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The serve commands."""
    p = add("serve", "Serve the HTTP API and the web page on this machine (loopback by default).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_in(0, 65535), default=8765, help="port (default 8765)")
    p.add_argument("--jobs", type=int_in(1, 64), default=1, help="jobs that run at once (default 1)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder of the page's projects, kept between runs (default $XDG_DATA_HOME/midiarr or "
        "~/.local/share/midiarr)",
    )
    p.add_argument(
        "--max-upload-mb", type=float_in(0, 4096, low_open=True), default=20.0, help="largest upload in MB (default 20)"
    )
    p.set_defaults(func=cmd_serve)
