"""Controller configuration: feature flags, per account.

A YAML file (``--config`` / ``WFC_CONFIG``, default ``<data-dir>/config.yaml`` when it exists)::

    features:
      workflow_dry_run: true          # the default for every account
    accounts:
      globex:
        features: {workflow_dry_run: false}

Flags not named anywhere take their built-in default. Unknown flags are errors, so a typo never
silently leaves a feature in its default state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from controller.errors import GuardError, UsageError

DEFAULTS: Mapping[str, bool] = {"workflow_dry_run": True}


class _Account(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: dict[str, bool] = Field(default_factory=dict)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: dict[str, bool] = Field(default_factory=dict)
    accounts: dict[str, _Account] = Field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    features: Mapping[str, bool] = field(default_factory=dict)
    accounts: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)

    def enabled(self, flag: str, account: str) -> bool:
        if flag in self.accounts.get(account, {}):
            return self.accounts[account][flag]
        return self.features.get(flag, DEFAULTS[flag])

    def require(self, flag: str, account: str, what: str) -> None:
        """GuardError naming the flag when it is off for the account."""
        if not self.enabled(flag, account):
            raise GuardError(f"{what} is disabled for account {account} (feature flag {flag})")


def load_config(path: Path | None) -> Config:
    if path is None or not path.exists():
        return Config()
    try:
        raw = YAML(typ="safe", pure=False).load(path.read_text()) or {}
        parsed = _File.model_validate(raw)
    except (OSError, YAMLError, ValidationError) as e:
        raise UsageError(f"{path}: not a valid configuration file: {e}") from None
    flags = [*parsed.features, *(f for a in parsed.accounts.values() for f in a.features)]
    unknown = sorted(set(flags) - set(DEFAULTS))
    if unknown:
        raise UsageError(f"{path}: unknown feature flag(s) {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}")
    return Config(parsed.features, {name: a.features for name, a in parsed.accounts.items()})
