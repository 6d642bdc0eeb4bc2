"""`wfctl webhook rotate` and `wfctl token create|revoke`: the HTTP service's credentials."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add this module's commands to the `wfctl` group."""
