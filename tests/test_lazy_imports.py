"""What a `wfctl sync` process imports and leaves at exit: only what the pass uses (the imports are most of its time)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from gitutil import commit_files, make_repo

WORKFLOW = ("apiVersion: workflows/v1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n"
            "  trigger: {{type: webhook}}\n  actions:\n    - {{id: a, type: set, vars: {{x: {value}}}}}\n")

# Run `wfctl sync` in a fresh interpreter, then list the modules it imported.
SYNC = """
import json, sys
from controller.cli import main
sys.argv = ["wfctl", "--repo", sys.argv[1], "--data-dir", sys.argv[2], "sync"]
try:
    main()
except SystemExit as e:
    code = e.code
print(json.dumps({"exit": code, "modules": sorted(sys.modules)}))
"""

# Needed only by a cold sync (the process pool), by commands other than sync, by a cron, by an HTTP call or by making a
# secret; a one-file sync of a webhook workflow that already has its secret loads none of them.
NOT_FOR_A_ONE_FILE_SYNC = ("apscheduler", "controller.config", "requests", "urllib3",
                           "controller.engine", "controller.reconcile.pool", "cryptography", "multiprocessing")


def _sync(repo: Path, data: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "WFC_SECRET_KEY"}
    done = subprocess.run([sys.executable, "-c", SYNC, str(repo), str(data)], capture_output=True, text=True,
                          env=env, check=True)
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_one_file_sync_imports_neither_the_pool_nor_the_engine_nor_cryptography(tmp_path: Path) -> None:
    """After the first sync made the secrets, a sync of one edited file imports none of the cold-path modules."""
    repo, data = tmp_path / "repo", tmp_path / "data"
    git = make_repo(repo)
    commit_files(git, {f"workflows.d/acme/w{i}.yaml": WORKFLOW.format(name=f"w{i}", value=i) for i in range(3)}, "add")
    assert _sync(repo, data)["exit"] == 0
    commit_files(git, {"workflows.d/acme/w1.yaml": WORKFLOW.format(name="w1", value=42)}, "edit w1")
    second = _sync(repo, data)
    assert second["exit"] == 0
    modules = second["modules"]
    assert isinstance(modules, list)
    loaded = sorted(m for m in modules if m.startswith(NOT_FOR_A_ONE_FILE_SYNC))
    assert loaded == []
    assert "controller.reconcile.reconciler" in modules and "git" in modules  # it did sync


def test_the_wfctl_process_freezes_its_objects_at_exit_and_clirunner_calls_do_not(tmp_path: Path) -> None:
    """main() (the process) leaves its objects to the exit instead of a last collection; cli() in-process does not."""
    from click.testing import CliRunner

    from controller.cli import cli

    assert CliRunner().invoke(cli, ["--version"]).exit_code == 0
    assert gc.get_freeze_count() == 0  # the caller's collector is left alone
    code = ("import gc, sys\nfrom controller.cli import main\nsys.argv = ['wfctl', '--version']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, gc.get_freeze_count() > 10000)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "0 True"
