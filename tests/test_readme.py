"""The README runs as written: every shell block of its tours, in order, in a fresh clone (see readme_runner)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from readme_runner import blocks, run
from servers import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.readme


def test_the_readme_runs_top_to_bottom(tmp_path: Path) -> None:
    """Each block exits 0 (or the [exit N] it announces); the long-running `wfctl serve` is stopped at the end."""
    clone = tmp_path / "wfctl"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=60)
    readme = ROOT / "README.md"  # the README as it is now, over the committed tree
    outcomes = run(readme, clone, free_port())
    failed = [o for o in outcomes if o.returncode != 0]
    assert not failed, f"README block at line {failed[0].block.line} exited {failed[0].returncode}:\n{failed[0].output}"
    ran = len(outcomes)
    assert ran == sum(1 for b in blocks(readme.read_text()) if not b.directive.startswith(("skip", "background")))


def test_the_two_commands_come_first() -> None:
    """The README begins with the two copy-paste commands: run the controller, run the tests."""
    first, second = blocks((ROOT / "README.md").read_text())[:2]
    assert "wfctl serve" in first.body and first.directive.startswith("background")
    assert second.body.strip() == "pip install -e '.[test]' && python -m pytest -q -n 2"
    assert second.body.strip() in (ROOT / ".ci" / "run").read_text().splitlines()  # CI runs that very command
