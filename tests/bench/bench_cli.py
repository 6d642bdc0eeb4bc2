"""Start-up time of `wfctl` commands as whole processes (what a pre-commit hook or a script pays).

    python tests/bench/bench_cli.py [--runs 15]

Each command runs ``--runs`` times in a fresh process (``python -m controller``, as the installed
``wfctl`` script does); prints the median and the fastest run in milliseconds. Aims (issue "First
run"): --help under 150 ms, validate of one file under 300 ms, status of a small store under 400 ms.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gitutil import commit_files, make_repo

WORKFLOW = ("apiVersion: workflows/v1\nkind: Workflow\nmetadata: {name: a}\nspec:\n"
            "  trigger: {type: manual, entities: [ticket]}\n  actions:\n    - {id: a, type: set, vars: {x: 1}}\n")


def timed(command: list[str], runs: int) -> list[float]:
    took = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        took.append((time.perf_counter() - start) * 1000)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        commit_files(make_repo(repo), {"workflows.d/acme/a.yaml": WORKFLOW}, "add")
        base = [sys.executable, "-m", "controller", "--repo", str(repo), "--data-dir", str(Path(tmp) / "data")]
        subprocess.run([*base, "sync"], check=True, capture_output=True)
        commands = {
            "python -c pass (the floor)": [sys.executable, "-c", "pass"],
            "wfctl --help": [*base, "--help"],
            "wfctl validate ONE_FILE": [*base, "validate", str(repo / "workflows.d/acme/a.yaml")],
            "wfctl status (small store)": [*base, "status"],
            "wfctl sync (nothing new)": [*base, "sync"],
        }
        print(f"{'command':<30}{'median ms':>11}{'fastest ms':>12}")
        for name, command in commands.items():
            took = timed(command, args.runs)
            print(f"{name:<30}{statistics.median(took):>11.0f}{min(took):>12.0f}")


if __name__ == "__main__":
    main()
