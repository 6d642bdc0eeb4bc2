"""The permissions an API token (and a directory user) can hold; ``admin`` holds them all."""

from __future__ import annotations

PERMISSIONS = ("workflow.read", "workflow.run_manual", "workflow.dry_run", "workflow.replay", "workflow.retry",
               "workflow.manage", "records.write", "directory.write", "admin")
