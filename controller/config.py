"""Controller configuration: feature flags, limits and retention, globally and per account.

A YAML file (``--config`` / ``WFC_CONFIG``, default ``<data-dir>/config.yaml`` when it exists)::

    features:
      workflow_dry_run: true          # the default for every account
    limits:
      rateLimit: {max: 600, per: 1h}  # for workflows without spec.rateLimit
    timeline:
      retention: 7d                   # how long trigger decisions (record timelines) are kept
    executions:
      retention: 90d                  # finished executions older than this are pruned (default: kept)
    metrics:
      retention: 90d                  # daily and per-action metric buckets kept this long (the rest: 7 days)
    alerts:
      drops: {threshold: 10, window: 15m}      # rate-limit drops that open an alert
      failures: {threshold: 5, window: 10m}    # failed executions that open a burst-failure alert
      cooldown: 1h                             # between two notifications of one workflow and kind
      repeat: 4h                               # an alert still open (a suspension) is notified again
      sinks:                                   # where notifications go (also: log, store, Prometheus)
        - {type: slack, url: "https://hooks.slack.com/services/..."}
        - {type: webhook, url: "https://ops.example.com/wfctl"}
        - {type: email, to: [ops@example.com]}
    notifications:
      smtp: {host: smtp.example.com, port: 587, starttls: true, username: wfctl, password_env: WFC_SMTP_PASSWORD}
      from: wfctl@example.com                  # alert e-mails and notices to workflow authors
    replay:                                 # the impact preview (`wfctl check --replay`)
      max_events: 1000                      # the most recent events one replay request may ask for
      budget: 30s                           # the time one replay request may take; the rest is not replayed
    effects:
      idempotency_header: Idempotency-Key   # sent with non-GET calls and channel posts; "" for none
    outbound:                               # http.request, channel.post and alert webhooks (security.outbound)
      allow: ["intranet.example:8443", 10.0.0.0/8]  # hosts, addresses, CIDRs (optional :port) beyond the public
      max_response_bytes: 10485760          # a larger response fails the step
      timeout: 2m                           # one call, its redirects and its whole body
      max_redirects: 5
      allow_downgrade: false                # follow a redirect from https to http
    accounts:
      globex:
        features: {workflow_dry_run: false}
        limits: {rateLimit: {max: 60, per: 1h}}
        outbound: {allow: [127.0.0.1]}      # the account's keys replace the global ones
        signers: ["ssh-ed25519 AAAA... alice", "SHA256:..."]  # only these keys may change workflows.d/globex/
                                            # (with --verify-commits; SSH keys or fingerprints, GPG fingerprints)

Flags not named anywhere take their built-in default. Unknown flags and keys are errors, so a
typo never silently leaves a feature or a limit in its default state. A workflow's own
``spec.rateLimit`` wins over the account's, the account's over the global one; without any, a
workflow is not rate limited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controller.errors import DefinitionError, FeatureDisabled, Problem, UsageError
from controller.model.durations import Duration, parse_duration
from controller.model.workflow import RateLimit
from controller.outbound import Allow, OutboundPolicy

DEFAULTS: Mapping[str, bool] = {"workflow_dry_run": True, "workflow_metrics": True, "workflow_import_export": True}
TIMELINE_RETENTION = "7d"
METRICS_RETENTION = "90d"
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAY_MAX_EVENTS = 1000
REPLAY_BUDGET = "30s"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Limits(_Strict):
    rateLimit: RateLimit | None = None


class _Timeline(_Strict):
    retention: Duration = TIMELINE_RETENTION


class _Executions(_Strict):
    retention: Duration | None = None


class _Metrics(_Strict):
    retention: Duration = METRICS_RETENTION


class _Replay(_Strict):
    max_events: int = Field(default=REPLAY_MAX_EVENTS, ge=1, le=100_000)
    budget: Duration = REPLAY_BUDGET


class _Effects(_Strict):
    idempotency_header: str = IDEMPOTENCY_HEADER


class _Outbound(_Strict):
    allow: list[str] | None = None
    max_response_bytes: int | None = Field(default=None, ge=1)
    timeout: Duration | None = None
    max_redirects: int | None = Field(default=None, ge=0, le=20)
    allow_downgrade: bool | None = None

    @field_validator("allow")
    @classmethod
    def _entries(cls, allow: list[str] | None) -> list[str] | None:
        for entry in allow or ():
            Allow.parse(entry)  # ValueError names the entry
        return allow


class _Rule(_Strict):
    threshold: int = Field(ge=1)
    window: Duration


class _Sink(_Strict):
    type: Literal["email", "slack", "webhook"]
    url: str | None = None  # slack, webhook: where to POST
    to: list[str] = Field(default_factory=list)  # email: the recipients

    @model_validator(mode="after")
    def _complete(self) -> _Sink:
        if self.type == "email" and not self.to:
            raise ValueError("an email sink needs to: [addresses]")
        if self.type != "email" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError(f"a {self.type} sink needs url: http(s)://...")
        return self


class _Alerts(_Strict):
    drops: _Rule | None = None
    failures: _Rule | None = None
    cooldown: Duration | None = None
    repeat: Duration | None = None
    sinks: list[_Sink] | None = None


class _Smtp(_Strict):
    host: str
    port: int = 587
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password_env: str | None = None


class _Notifications(_Strict):
    smtp: _Smtp | None = None
    from_: str = Field(default="wfctl@localhost", alias="from")


class _Account(_Strict):
    features: dict[str, bool] = Field(default_factory=dict)
    limits: _Limits = Field(default_factory=_Limits)
    alerts: _Alerts = Field(default_factory=_Alerts)
    outbound: _Outbound = Field(default_factory=_Outbound)
    signers: list[str] = Field(default_factory=list)  # checked by controller.source.verify


class _File(_Strict):
    features: dict[str, bool] = Field(default_factory=dict)
    limits: _Limits = Field(default_factory=_Limits)
    timeline: _Timeline = Field(default_factory=_Timeline)
    effects: _Effects = Field(default_factory=_Effects)
    executions: _Executions = Field(default_factory=_Executions)
    metrics: _Metrics = Field(default_factory=_Metrics)
    replay: _Replay = Field(default_factory=_Replay)
    alerts: _Alerts = Field(default_factory=_Alerts)
    notifications: _Notifications = Field(default_factory=_Notifications)
    outbound: _Outbound = Field(default_factory=_Outbound)
    accounts: dict[str, _Account] = Field(default_factory=dict)


@dataclass(frozen=True)
class AlertRule:
    threshold: int  # events ...
    window: int  # ... within this many seconds open an alert


@dataclass(frozen=True)
class AlertPolicy:
    """How one account's alerts fire and where they go (see controller.safeguards.alerts)."""

    drops: AlertRule = AlertRule(10, 15 * 60)
    failures: AlertRule = AlertRule(5, 10 * 60)
    cooldown: int = 3600  # seconds between two notifications of one (workflow, kind)
    repeat: int = 4 * 3600  # an alert still open without news is notified again after this long
    sinks: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Config:
    features: Mapping[str, bool] = field(default_factory=dict)
    accounts: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)
    rate_limits: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # "" is the global default
    timeline_retention: str = TIMELINE_RETENTION
    idempotency_header: str = IDEMPOTENCY_HEADER
    execution_retention: str | None = None  # None: finished executions are kept
    metrics_retention: str = METRICS_RETENTION
    alert_policies: Mapping[str, AlertPolicy] = field(default_factory=dict)  # "" is the global one
    smtp: Mapping[str, Any] | None = None  # the system mailbox: alert e-mails and author notifications
    mail_from: str = "wfctl@localhost"
    outbound_policies: Mapping[str, OutboundPolicy] = field(default_factory=dict)  # "" is the global one
    account_signers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # account -> keys (--verify-commits)
    replay_max_events: int = REPLAY_MAX_EVENTS
    replay_budget: str = REPLAY_BUDGET

    def outbound(self, account: str) -> OutboundPolicy:
        """What ``account``'s HTTP calls and chat posts may reach (see controller.outbound)."""
        return self.outbound_policies.get(account) or replace(self.outbound_policies.get("") or OutboundPolicy(),
                                                              account=account)

    def alerts(self, account: str) -> AlertPolicy:
        return self.alert_policies.get(account) or self.alert_policies.get("") or AlertPolicy()

    def enabled(self, flag: str, account: str) -> bool:
        if flag in self.accounts.get(account, {}):
            return self.accounts[account][flag]
        return self.features.get(flag, DEFAULTS[flag])

    def require(self, flag: str, account: str, what: str) -> None:
        """FeatureDisabled naming the flag when it is off for the account; ``what`` has its verb
        ("dry run is", "metrics are")."""
        if not self.enabled(flag, account):
            raise FeatureDisabled(f"{what} disabled for account {account} (feature flag {flag})", flag=flag)

    def require_metrics(self, account: str) -> None:
        """FeatureDisabled when the account's ``workflow_metrics`` flag is off (the rollups keep being written)."""
        self.require("workflow_metrics", account, "metrics are")

    def require_portable(self, account: str) -> None:
        """FeatureDisabled when the account's ``workflow_import_export`` flag is off."""
        self.require("workflow_import_export", account, "import and export are")

    def rate_limit(self, account: str) -> Mapping[str, object] | None:
        """The default ``{max, per}`` for the account's workflows without ``spec.rateLimit``, or None."""
        return self.rate_limits.get(account) or self.rate_limits.get("")

    @property
    def timeline_retention_seconds(self) -> int:
        return parse_duration(self.timeline_retention)

    @property
    def execution_retention_seconds(self) -> int | None:
        return parse_duration(self.execution_retention) if self.execution_retention else None

    @property
    def metrics_retention_seconds(self) -> int:
        return parse_duration(self.metrics_retention)

    @property
    def replay_budget_seconds(self) -> int:
        return parse_duration(self.replay_budget)


def load_config(path: Path | None) -> Config:
    if path is None or not path.exists():
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read the configuration: {getattr(e, 'strerror', None) or e}") from None
    # Imported here: a worker process gets its configuration made and never loads the YAML loader.
    from controller.model import yamlfile

    try:
        raw = yamlfile.parse(text, str(path)) or {}
        if not isinstance(raw, dict):
            raise DefinitionError([Problem(str(path), 1, 1, "expected a mapping (features, limits, timeline, "
                                                           "effects, accounts)")])
        try:
            parsed = _File.model_validate(raw)
        except ValidationError as e:
            raise DefinitionError(yamlfile.problems(str(path), text, e)) from None
    except DefinitionError as e:  # one line: the first problem, located; how many more
        more = f" (and {len(e.problems) - 1} more)" if len(e.problems) > 1 else ""
        raise UsageError(f"{e.problems[0]}{more}") from None
    flags = [*parsed.features, *(f for a in parsed.accounts.values() for f in a.features)]
    unknown = sorted(set(flags) - set(DEFAULTS))
    if unknown:
        raise UsageError(f"{path}: unknown feature flag(s) {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}")
    limits = {"": parsed.limits.rateLimit, **{name: a.limits.rateLimit for name, a in parsed.accounts.items()}}
    base = _policy(parsed.alerts, AlertPolicy())
    policies = {"": base, **{name: _policy(a.alerts, base) for name, a in parsed.accounts.items()}}
    smtp = parsed.notifications.smtp
    if smtp is None and any(s.get("type") == "email" for p in policies.values() for s in p.sinks):
        raise UsageError(f"{path}: an email alert sink needs notifications.smtp (the system mailbox)")
    config = Config(parsed.features, {name: a.features for name, a in parsed.accounts.items()},
                  {name: limit.model_dump() for name, limit in limits.items() if limit is not None},
                  parsed.timeline.retention, parsed.effects.idempotency_header, parsed.executions.retention,
                  parsed.metrics.retention, policies, smtp.model_dump() if smtp else None,
                  parsed.notifications.from_, _outbound_policies(parsed))
    return replace(config, account_signers={name: tuple(a.signers) for name, a in parsed.accounts.items() if a.signers},
                   replay_max_events=parsed.replay.max_events, replay_budget=parsed.replay.budget)


def _outbound_policies(parsed: _File) -> dict[str, OutboundPolicy]:
    """The global policy and each account's: the keys an account sets replace the global ones."""
    def policy(given: _Outbound, base: OutboundPolicy, account: str) -> OutboundPolicy:
        return replace(
            base, account=account,
            allow=base.allow if given.allow is None else tuple(Allow.parse(entry) for entry in given.allow),
            max_response_bytes=given.max_response_bytes or base.max_response_bytes,
            timeout=float(parse_duration(given.timeout)) if given.timeout else base.timeout,
            max_redirects=base.max_redirects if given.max_redirects is None else given.max_redirects,
            allow_downgrade=base.allow_downgrade if given.allow_downgrade is None else given.allow_downgrade)

    base = policy(parsed.outbound, OutboundPolicy(), "")
    return {"": base, **{name: policy(a.outbound, base, name) for name, a in parsed.accounts.items()}}


def _policy(given: _Alerts, base: AlertPolicy) -> AlertPolicy:
    """``given`` over ``base``: what an account's file says, else the global policy."""
    def rule(r: _Rule | None, default: AlertRule) -> AlertRule:
        return AlertRule(r.threshold, parse_duration(r.window)) if r else default

    return AlertPolicy(rule(given.drops, base.drops), rule(given.failures, base.failures),
                       parse_duration(given.cooldown) if given.cooldown else base.cooldown,
                       parse_duration(given.repeat) if given.repeat else base.repeat,
                       tuple(s.model_dump(exclude_none=True) for s in given.sinks) if given.sinks is not None
                       else base.sinks)
