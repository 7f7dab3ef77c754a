"""`python -m midiarr.cli`."""

from midiarr.cli import main

raise SystemExit(main())
