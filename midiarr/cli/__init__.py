"""The ``midiarr`` command line: one module per command group, each registering its commands.

Groups, in the order ``--help`` lists them: `song` (convert, stems, subtract, tokenize), `write` (insert,
generate, separate), `render`, `serve`, `audio` (the audio stem models), and `lab` (prepare, train-*, eval-*,
render-dataset: research commands, not needed to use midiarr). Every command parses its options and calls one
library function. Errors the user can fix come out as one line on stderr with a non-zero exit; set
``MIDIARR_DEBUG=1`` to see a traceback for anything unexpected.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from midiarr import __version__
from midiarr.errors import MidiarrError, OptionError

EXIT_USAGE = 2
EXIT_INPUT = 1
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage text stays behind --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "command", None):
        sys.stderr.write("midiarr: error: name a command, e.g. midiarr insert song.mid --stem bass -o out.mid "
                         "(see midiarr --help)\n")  # fmt: skip
        return EXIT_USAGE
    with warnings.catch_warnings():  # the filter holds for this command only (main may run in-process)
        # music21, diffusers and torch warn about things the user cannot act on; an error stays one line
        # (forked worker processes inherit the filter)
        warnings.simplefilter("default" if getattr(args, "verbose", False) else "ignore")
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """One parsed command, with every error the user can fix as one line on stderr."""
    try:
        from midiarr.threads import limit_threads, share_cores_automatically, threads_from_environment

        threads = getattr(args, "threads", None) or threads_from_environment()
        if threads is not None:  # several commands at once on one machine: each its share of the cores
            limit_threads(threads)
        elif args.command != "serve":  # the server sizes its jobs itself
            share_cores_automatically()
        return int(args.func(args) or 0)
    except MidiarrError as exc:
        sys.stderr.write(f"midiarr: error: {exc}\n")
        return EXIT_USAGE if isinstance(exc, OptionError) else EXIT_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("midiarr: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("MIDIARR_DEBUG"):
            raise
        sys.stderr.write(f"midiarr: internal error: {type(exc).__name__}: {exc} (MIDIARR_DEBUG=1 shows a traceback)\n")
        return EXIT_INTERNAL


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand, user commands first."""
    from midiarr.cli import audio, lab, render, serve, song, write

    parser = _Parser(prog="midiarr", description="MIDI arrangement engine: write the missing stem of a song.")
    parser.add_argument("--version", action="version", version=f"midiarr {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and requested data")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the libraries' warnings")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print only errors")
        p.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="also show the libraries' warnings"
        )
        return p

    for group in (song, write, render, serve, audio, lab):
        group.register(add)
    return parser
