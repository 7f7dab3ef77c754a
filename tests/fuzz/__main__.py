"""``python -m tests.fuzz``: run a fuzz tier (the long one by default) and report; see `runner`."""

from tests.fuzz.runner import main

raise SystemExit(main())
