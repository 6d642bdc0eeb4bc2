"""`wfctl serve` under kill -9 at random moments: nothing lost, no internal effect twice, every repeat visible.

Bounded for the default run (three kills); `python tests/bench/bench_kill.py` runs twenty on SQLite and
PostgreSQL. See tests/killkit.py for what is counted.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from killkit import run


def test_kill_nine_under_load_loses_nothing_and_repeats_nothing_silently(tmp_path: Path, store_url: str) -> None:
    """Three kill -9 of a loaded `wfctl serve`, restarted each time: every execution's effects counted."""
    seed = int(os.environ.get("WFC_KILL_SEED") or random.randrange(1 << 30))
    report = run(tmp_path, store_url, cycles=3, tickets_per_cycle=12, seed=seed)
    assert report.kills == 3 and report.effects == 4 * report.tickets
    assert report.ok, (f"seed {seed} (replay with WFC_KILL_SEED={seed}): lost {report.lost}, "
                       f"duplicated {report.duplicated_internal}, invisible {report.invisible_repeats}, "
                       f"metrics {report.miscounted}")


