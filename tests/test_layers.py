"""The architecture kept by tests: import-linter's contracts, and every model type has its engine module."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controller.engine import admission, triggers
from controller.engine.interpreter import default_modules
from controller.model import ACTION_TYPES, TRIGGER_TYPES

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold() -> None:
    """`lint-imports` (contracts in pyproject.toml) keeps model/store at the bottom, the web layer SQL-free."""
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if tool is None:
        pytest.fail("lint-imports is not installed; `pip install -e '.[test]'` installs it")
    done = subprocess.run([tool, "--no-cache"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_every_action_type_of_the_model_has_its_engine_module() -> None:
    """A new action type without a module fails here, not in a run."""
    assert set(default_modules()) == set(ACTION_TYPES)
    for module in default_modules().values():
        assert callable(module.run)


def test_every_trigger_type_of_the_model_has_its_trigger_module() -> None:
    """Each trigger type owns its payload shape, record reference and dry-run payload."""
    assert set(triggers.MODULES) == set(TRIGGER_TYPES)
    for kind, module in triggers.MODULES.items():
        assert module.TYPE == kind and callable(module.record_ref) and callable(module.sample)
    assert set(TRIGGER_TYPES) | {"call", "retry"} == set(admission.KINDS)
