"""The SQL tables of the runtime store (SQLAlchemy Core).

The store holds the applied projection of git (``workflows``, ``workflow_versions``), the audit
trail (``audit_events``) and the reconciler's bookkeeping (``sources``). Git stays the truth for
definitions; these rows are what the engine runs from. Alembic migrations under ``migrations/``
create exactly these tables; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

# Constraint names are fixed so that migrations on SQLite (batch mode) and PostgreSQL agree.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = JSON().with_variant(JSONB(), "postgresql")


def as_utc(value: datetime) -> datetime:
    """A timezone-aware UTC datetime; a naive one is taken as UTC (what SQLite hands back)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Timestamp(TypeDecorator[datetime]):
    """A UTC timestamp that comes back timezone-aware on every back end (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC) if value.tzinfo else value  # naive: already UTC

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value)


sources = Table(
    "sources",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("location", Text, nullable=False),
    Column("branch", String(255), nullable=False),
    Column("root", String(255), nullable=False),
    # The commit the next incremental pass diffs from: the head of the last pass that applied.
    Column("last_attempted_commit", String(64)),
    Column("last_applied_commit", String(64)),
    Column("conditions", Json, nullable=False, default=list),
    Column("updated_at", Timestamp(), nullable=False),
)

workflows = Table(
    "workflows",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(200), nullable=False, unique=True),  # "<account>/<name>"
    Column("account", String(63), nullable=False, index=True),
    Column("name", String(63), nullable=False),
    Column("path", Text, nullable=False),
    Column("version", Integer, nullable=False, default=0),  # 0: never applied (invalid from the start)
    Column("content_hash", String(64)),
    Column("enabled", Boolean, nullable=False, default=False),
    Column("trigger_type", String(32)),
    Column("calls", Json, nullable=False, default=list),  # workflow.call targets of the applied version
    Column("deleted", Boolean, nullable=False, default=False),
    Column("sync", String(16), nullable=False),  # Synced | Invalid | Blocked
    Column("message", Text, nullable=False, default=""),
    Column("conditions", Json, nullable=False, default=list),
    Column("last_applied_commit", String(64)),
    Column("last_attempted_commit", String(64)),
    # The commit of a restore held back by executions in flight; it and later commits wait.
    Column("blocked_commit", String(64)),
    Column("created_at", Timestamp(), nullable=False),
    Column("updated_at", Timestamp(), nullable=False),
)

# What every sync asks of the workflows without reading all of them: the ones not Synced (the source's
# Ready condition, status), the ones a restore holds back, and the webhook ones (their secrets). Partial
# indexes, so each answer costs its own rows, not a scan of every workflow.
Index("ix_workflows_not_synced", workflows.c.key, sqlite_where=workflows.c.sync != "Synced",
      postgresql_where=workflows.c.sync != "Synced")
Index("ix_workflows_blocked", workflows.c.key, sqlite_where=workflows.c.blocked_commit.is_not(None),
      postgresql_where=workflows.c.blocked_commit.is_not(None))
Index(None, workflows.c.trigger_type, workflows.c.key)

workflow_versions = Table(
    "workflow_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("commit", String(64), nullable=False),
    Column("author", Text, nullable=False),
    Column("author_email", Text, nullable=False),
    Column("committed_at", Timestamp(), nullable=False),
    Column("summary", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("content", Json, nullable=False),  # the normalized definition
    Column("content_hash", String(64), nullable=False),
    Column("source_text", Text, nullable=False),  # the file as committed, for `wfctl restore`
    Column("restored_from", Integer),
    Column("created_at", Timestamp(), nullable=False),
    # Who signed the commit, when --verify-commits verified it: the principal (SSH) or user id (GPG), and the
    # key's fingerprint. NULL: not verified (verification off, or with `head` a commit before the head).
    Column("signer", Text),
    Column("signing_key", String(128)),
    UniqueConstraint("workflow_id", "version"),
    Index(None, "workflow_id", "content_hash"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE")),
    Column("at", Timestamp(), nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(32), nullable=False),
    Column("version", Integer),
    Column("commit", String(64)),
    Column("changes", Json, nullable=False, default=list),
    Column("message", Text, nullable=False, default=""),
    Index(None, "workflow_id", "id"),
)

# -- the account directory (pushed by the host application; `wfctl directory load`) ---------------

directory_entries = Table(
    "directory_entries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(63), nullable=False),
    Column("kind", String(16), nullable=False),  # user | mailbox | channel | object_type
    Column("ref_id", String(200), nullable=False),  # the id after "<kind>:" in a reference
    Column("name", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False, default="active"),
    Column("data", Json, nullable=False, default=dict),  # e-mail, permissions, smtp, webhook_url, ...
    Column("updated_at", Timestamp(), nullable=False),
    UniqueConstraint("account", "kind", "ref_id"),
)

# -- the built-in record store (the embedded default host) ---------------------------------------

records = Table(
    "records",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(63), nullable=False),
    Column("type", String(32), nullable=False),
    Column("data", Json, nullable=False, default=dict),
    Column("created_at", Timestamp(), nullable=False),
    Column("updated_at", Timestamp(), nullable=False),
    Column("last_activity_at", Timestamp(), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Index(None, "account", "type", "last_activity_at"),
)

# One row per (inactivity workflow, record): the quiet spell it already fired for.
inactivity_marks = Table(
    "inactivity_marks",
    metadata,
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True),
    Column("record_id", Integer, ForeignKey("records.id", ondelete="CASCADE"), primary_key=True),
    Column("activity_at", Timestamp(), nullable=False),
)

# -- executions ---------------------------------------------------------------------------------

executions = Table(
    "executions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    Column("workflow_key", String(200), nullable=False),
    Column("version", Integer),  # pinned when it starts running; NULL while queued
    Column("status", String(16), nullable=False),  # queued running waiting succeeded failed terminated
    Column("trigger", Json, nullable=False, default=dict),  # {type, ...payload}: the trigger input
    Column("record_ref", Json),  # {"type", "id"} of the record the execution is about, if any
    Column("state", Json, nullable=False, default=dict),  # vars and step outputs, for resuming
    Column("output", Json),
    Column("error", Text),
    Column("retry_of", Integer, ForeignKey("executions.id")),
    Column("parent_id", Integer, ForeignKey("executions.id")),
    Column("parent_step", String(63)),
    Column("depth", Integer, nullable=False, default=0),
    Column("wake_at", Timestamp()),  # when a waiting execution becomes runnable again
    Column("lease_owner", String(100)),
    Column("lease_until", Timestamp()),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("created_at", Timestamp(), nullable=False),
    Column("started_at", Timestamp()),
    Column("finished_at", Timestamp()),
    Column("updated_at", Timestamp(), nullable=False),
    Column("failure", String(16)),  # the class of the error of a failed or terminated execution
    Column("waited_seconds", Float, nullable=False, default=0.0),  # waiting time so far: active = total - this
    Column("waiting_since", Timestamp()),
    Index(None, "status", "wake_at"),
    Index(None, "workflow_id", "status"),
    Index(None, "parent_id"),
)

execution_steps = Table(
    "execution_steps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("execution_id", Integer, ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("action_id", String(63), nullable=False),
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # running waiting succeeded failed skipped
    Column("input", Json),
    Column("output", Json),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("started_at", Timestamp(), nullable=False),
    Column("finished_at", Timestamp()),
    Column("wait_seconds", Integer),
    # External effects: the key sent with every attempt of the step, and attempts that did not finish
    # (``[{"attempt", "at", "outcome"}]``: a worker lost mid-call shows here, never silently).
    Column("idempotency_key", String(80)),
    Column("attempt_log", Json, nullable=False, default=list),
    Column("failure", String(16)),
    UniqueConstraint("execution_id", "action_id"),
)

# -- the HTTP service: webhook signing secrets, API tokens, rate-limit drops (never in git) -------

# One signing secret per webhook workflow, encrypted with Fernet (controller.security.secrets).
webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True),
    Column("ciphertext", Text, nullable=False),
    Column("fingerprint", String(80), nullable=False),  # "sha256:<first 16 hex of SHA-256(secret)>"
    Column("generation", Integer, nullable=False),  # 1 for the first secret, +1 per rotation
    Column("created_at", Timestamp(), nullable=False),
)

# Bearer tokens of the JSON API; only the SHA-256 of a token is kept.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(63), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("name", String(100)),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("permissions", Json, nullable=False, default=list),
    Column("created_at", Timestamp(), nullable=False),
    Column("revoked_at", Timestamp()),
    Index(None, "account", "name"),
)

# Triggers dropped because a workflow was over its spec.rateLimit, per workflow.
rate_limit_drops = Table(
    "rate_limit_drops",
    metadata,
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True),
    Column("dropped", Integer, nullable=False, default=0),
    Column("last_dropped_at", Timestamp(), nullable=False),
)

# Rate limits count a workflow's executions created in the last `per` seconds.
Index(None, executions.c.workflow_id, executions.c.created_at)

# Signatures of accepted webhook deliveries, kept for the timestamp window: a delivery sent again
# (the same signature) inside it is a replay.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True),
    Column("signature", String(100), primary_key=True),
    Column("received_at", Timestamp(), nullable=False, index=True),
)

# What admission decided for each trigger: the record timeline ("why did this ticket not get the
# e-mail?"). Every decision for a record-bound trigger is kept; for the others, drops and refusals.
# Pruned after the retention period (configuration ``timeline.retention``).
trigger_decisions = Table(
    "trigger_decisions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Timestamp(), nullable=False, index=True),
    Column("account", String(63), nullable=False),
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    Column("workflow_key", String(200), nullable=False),
    Column("version", Integer),
    Column("trigger", String(16), nullable=False),  # record schedule inactivity email webhook manual call retry
    Column("decision", String(16), nullable=False),  # started filtered dropped refused
    Column("reason", Text, nullable=False, default=""),
    Column("execution_id", Integer),  # no foreign key: executions may be pruned before their decisions
    Column("record_type", String(255)),
    Column("record_id", String(200)),
    # A filtered decision's trigger input, for the impact preview's replay (a started one's is the
    # execution's); None when it was larger than ``decisions.EVENT_MAX_BYTES``.
    Column("event", Json),
    Index(None, "account", "record_type", "record_id", "id"),
    Index(None, "workflow_id", "id"),
)

# The health of each background loop of each `wfctl serve` process (supervision), so that /readyz
# and `wfctl status` of any process can tell a stalled loop.
controller_loops = Table(
    "controller_loops",
    metadata,
    Column("owner", String(100), primary_key=True),  # host:pid:nonce of the serving process
    Column("name", String(40), primary_key=True),  # reconcile, scheduler, inactivity, purge, worker-N
    Column("interval_seconds", Integer, nullable=False),
    Column("failures", Integer, nullable=False, default=0),  # failed passes in a row
    Column("failing_since", Timestamp()),  # the first failed pass of the current streak
    Column("error", Text, nullable=False, default=""),
    Column("last_ok_at", Timestamp()),
    Column("updated_at", Timestamp(), nullable=False, index=True),
)

# -- metrics: rollups folded in by the lifecycle hook when an execution ends (controller.metrics) ---

DURATION_BOUNDS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                                      30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)
"""Upper bounds (seconds) of the fixed duration histogram; one more bucket holds what is above."""
HISTOGRAM = tuple(f"h{i:02d}" for i in range(len(DURATION_BOUNDS) + 1))
"""The histogram's count columns of ``metric_buckets``, one per bound and one for +Inf."""


def _bucket_key() -> list[Column[object]]:
    # Per workflow and version, per UTC hour ("h") and per UTC day ("d"): the 24h window reads hours,
    # 7d and 30d read days, so no window reads more than ~60 rows per workflow and version.
    return [Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
            Column("span", String(1), nullable=False),
            Column("start", Timestamp(), nullable=False),
            Column("version", Integer, nullable=False),
            Column("account", String(63), nullable=False)]


metric_buckets = Table(
    "metric_buckets",
    metadata,
    *_bucket_key(),
    Column("executions", Integer, nullable=False, default=0),  # finished: succeeded + failed + terminated
    Column("succeeded", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("terminated", Integer, nullable=False, default=0),
    Column("duration_sum", Float, nullable=False, default=0.0),  # started -> finished, seconds
    Column("duration_max", Float, nullable=False, default=0.0),
    Column("active_sum", Float, nullable=False, default=0.0),  # running: the duration less the waits
    Column("active_max", Float, nullable=False, default=0.0),
    Column("wait_sum", Float, nullable=False, default=0.0),  # durable waits, back-offs, called workflows
    *(Column(name, Integer, nullable=False, default=0) for name in HISTOGRAM),  # of active time
    Column("dropped", Integer, nullable=False, default=0),  # admission: over the rate limit
    Column("refused", Integer, nullable=False, default=0),  # admission: a guard said no
    Column("filtered", Integer, nullable=False, default=0),  # admission: the trigger's when was false
    # Account first: the account's worst performers read one range of the key (on SQLite the key is
    # the table), one workflow's figures come through the index.
    PrimaryKeyConstraint("account", "span", "start", "workflow_id", "version"),
    Index(None, "workflow_id", "span", "start"),
    sqlite_with_rowid=False,
)

metric_failures = Table(
    "metric_failures",
    metadata,
    *_bucket_key(),
    Column("failure", String(16), nullable=False),  # controller.model.statuses.Failure
    Column("count", Integer, nullable=False, default=0),
    PrimaryKeyConstraint("workflow_id", "span", "start", "version", "failure"),
    sqlite_with_rowid=False,
)

metric_actions = Table(
    "metric_actions",
    metadata,
    *_bucket_key(),
    Column("action_id", String(63), nullable=False),
    Column("type", String(32), nullable=False),
    Column("count", Integer, nullable=False, default=0),  # finished steps
    Column("failures", Integer, nullable=False, default=0),
    Column("duration_sum", Float, nullable=False, default=0.0),  # started -> finished, with retries' back-offs (hours only)
    Column("duration_max", Float, nullable=False, default=0.0),
    PrimaryKeyConstraint("workflow_id", "span", "start", "version", "action_id"),
    sqlite_with_rowid=False,
)

# -- safeguards: alerts, their deliveries, suspensions (controller.safeguards) ----------------------

# One row per alert group: a (workflow, kind) while its condition keeps firing; a new row when it
# fires again after it resolved. ``pending`` counts events not yet notified (carried to the next row).
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(63), nullable=False),
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    Column("workflow_key", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # drops | failures | suspended
    Column("status", String(16), nullable=False),  # open | resolved
    Column("first_at", Timestamp(), nullable=False),
    Column("last_at", Timestamp(), nullable=False),
    Column("resolved_at", Timestamp()),
    Column("count", Integer, nullable=False),  # events in this group
    Column("pending", Integer, nullable=False),  # events since the last notification
    Column("notified_at", Timestamp()),  # the last notification of this (workflow, kind)
    Column("notifications", Integer, nullable=False, default=0),
    Column("summary", Text, nullable=False),
    Column("details", Json, nullable=False, default=dict),  # trigger kinds, failing action, last error, ref
    Index(None, "workflow_id", "kind", "id"),
    Index(None, "account", "status", "id"),
)

# What each notification still has to reach: a sink of the account, or a workflow's author. Sent by
# the serve loop with retries, so a slow or broken sink never holds up the engine.
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("sink", Json, nullable=False),  # {"type": email|slack|webhook, ...}
    Column("message", Json, nullable=False),  # {"subject", "text", "alert": {...}}
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Timestamp(), nullable=False),
    Column("delivered_at", Timestamp()),
    Column("error", Text, nullable=False, default=""),
    Index(None, "delivered_at", "next_at"),
)

# A workflow the controller disabled because something it depends on went away (a mailbox, a
# channel). Lives in the store, never in git, so a sync cannot undo it; `wfctl resume` ends it.
workflow_suspensions = Table(
    "workflow_suspensions",
    metadata,
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True),
    Column("ref", String(220), nullable=False),  # mailbox:mb_support
    Column("reason", Text, nullable=False),
    Column("since", Timestamp(), nullable=False),
)

# Every `wfctl serve` serving the store, written by its heartbeat; the leader deletes rows long silent.
replicas = Table(
    "replicas",
    metadata,
    Column("id", String(200), primary_key=True),  # host:pid:random
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("role", String(16), nullable=False),  # leader | follower
    Column("version", String(64), nullable=False),  # of wfctl
    Column("ttl", Float, nullable=False),  # its lease time: it is seen recently within 3 of them
    Column("started_at", Timestamp(), nullable=False),
    Column("heartbeat_at", Timestamp(), nullable=False),
)

# The leader lease, one row: whoever holds it unexpired runs the singletons; ``generation`` grows at
# every take-over and fences the leader-only writes (controller.store.leadership).
leader = Table(
    "leader",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200)),
    Column("generation", Integer, nullable=False),
    Column("expires_at", Timestamp(), nullable=False),
)

# One row per schedule instant that queued (or was refused) an execution: the primary key makes a
# second leader firing the same instant a no-op.
schedule_fires = Table(
    "schedule_fires",
    metadata,
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True),
    Column("fire_at", Timestamp(), primary_key=True),
    Column("generation", Integer, nullable=False),  # of the leader that fired it
    Column("execution_id", Integer),  # none when admission did not start one
)

# APScheduler's job store (controller.engine.scheduler): its own columns and index, byte for byte, made by
# the migrations like every other table; the job store no longer makes it at its first start (a CREATE
# TABLE in a read transaction met SQLite's lock under a busy writer and failed the scheduler's pass).
schedule_jobs = Table(
    "apscheduler_jobs",
    metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
