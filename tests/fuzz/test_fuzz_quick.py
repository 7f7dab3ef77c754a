"""The quick fuzz tier: a few hundred hostile cases, each its own ``midiarr`` process (seed 0).

All selected cases run once, two processes at a time, the first time any of them is asked for;
each test then reports its own case. Nothing is expected to fail: a case that breaks the promise
fails here, with the command to reproduce it (``python -m tests.fuzz --tier quick --case NAME``).
"""

from __future__ import annotations

import shlex

import pytest

from tests.fuzz.generate import Case, build_cases
from tests.fuzz.runner import Result, reproduce, run_cases

CASES = build_cases("quick", seed=0)
BY_NAME = {c.name: c for c in CASES}

pytestmark = pytest.mark.fuzz_quick


@pytest.fixture(scope="session")
def quick_results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    wanted = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and item.module.__name__ == __name__ and "case" in callspec.params:
            wanted.append(BY_NAME[callspec.params["case"]])
    results = run_cases(wanted, base=tmp_path_factory.mktemp("fuzz"))
    return {r.name: r for r in results}


def test_tier_is_seeded_and_sized() -> None:
    again = build_cases("quick", seed=0)
    assert [c.name for c in again] == list(BY_NAME)
    assert 300 <= len(CASES) <= 400
    assert {c.family for c in CASES} >= {
        "midi-mutate",
        "midi-raw",
        "xml-mutate",
        "xml-craft",
        "mxl",
        "options",
        "paths",
        "sigkill",
        "engines",
    }


@pytest.mark.parametrize("case", list(BY_NAME))
def test_case_keeps_the_promise(case: str, quick_results: dict[str, Result]) -> None:
    c: Case = BY_NAME[case]
    r = quick_results[case]
    assert r.ok, (
        f"{'; '.join(r.problems)}\n  exit {r.rc}, stderr: {r.first_stderr}\n  midiarr {shlex.join(c.argv)}\n"
        f"  reproduce: {reproduce('quick', 0, case)}"
    )
