"""The fuzz suite: hostile MIDI, MusicXML, .mxl, option and path cases run through the real CLI.

`generate` builds the cases from a seed, `runner` runs each one as its own ``midiarr`` process and
checks the promise of README.md (one line on stderr, exit 1 for input, 2 for usage, no traceback,
no hang, input unchanged, no partial output, memory under a cap). The quick tier runs with the test
suite (`test_fuzz_quick.py`); the long tier is ``make fuzz`` (``python -m tests.fuzz``), which
writes docs/reliability.json and the numbers table of docs/reliability.md.
"""
