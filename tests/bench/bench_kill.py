"""kill -9 loop: `wfctl serve` under load killed at random moments, restarted, every effect counted.

    python tests/bench/bench_kill.py [--cycles 20] [--tickets 15] [--seed N] [--db URL]

On SQLite, and on PostgreSQL too when WFC_TEST_DATABASE_URL is set (a fresh schema, dropped after).
Each ticket starts one execution of five steps: record.create, email.send (outbox), http.request POST,
record.update, set. Prints one row per back end: executions, effects, kills, external steps repeated
(each must show as a logged second attempt with the same key), and the failures (must be 0).
Not part of the default test run; the bounded version is tests/test_durability_kill.py.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import _pg_schema_url
from killkit import run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--tickets", type=int, default=15, help="tickets created before each kill")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = parser.parse_args()
    backends = ["sqlite"] + (["postgresql"] if os.environ.get("WFC_TEST_DATABASE_URL") else [])
    print(f"seed {args.seed}")
    print(f"{'store':<11}{'executions':>11}{'effects':>9}{'kills':>7}{'repeated':>10}{'lost':>6}"
          f"{'doubled':>9}{'invisible':>11}{'miscounted':>12}{'seconds':>9}")
    failed = False
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            urls = (iter([f"sqlite:///{Path(tmp) / 'w.db'}"]) if backend == "sqlite"
                    else _pg_schema_url(os.environ["WFC_TEST_DATABASE_URL"]))
            url = next(urls)
            started = time.perf_counter()
            report = run(Path(tmp), url, cycles=args.cycles, tickets_per_cycle=args.tickets, seed=args.seed)
            elapsed = time.perf_counter() - started
            for _ in urls:  # drops the PostgreSQL schema
                pass
        print(f"{backend:<11}{report.tickets:>11}{report.effects:>9}{report.kills:>7}{report.repeats:>10}"
              f"{len(report.lost):>6}{len(report.duplicated_internal):>9}{len(report.invisible_repeats):>11}"
              f"{len(report.miscounted):>12}{elapsed:>9.1f}")
        for line in report.lost + report.duplicated_internal + report.invisible_repeats + report.miscounted:
            print(f"  {backend}: {line}")
        failed |= not report.ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
